"""The tutorial's two modes and the queue each one uses, declared in one place.

The producer and the workers declare the same queue with the same arguments:
the broker refuses a declaration that differs from the existing queue
(PRECONDITION_FAILED), so nothing outside this module says what a queue is.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from workqueue.connection import BrokerError

QUEUE_TYPES = ("classic", "quorum")
# The workers' events, published in batches for the live view (report/watch.py)
# to hear: a fanout exchange, so that any number of views can listen.
EVENTS_EXCHANGE = "workqueue.events"


class Mode(enum.Enum):
    """``noack``: the tutorial's first worker; ``ack``: its robust one."""

    ACK = "ack"
    NOACK = "noack"


@dataclass(frozen=True)
class QueueSpec:
    """Everything about a mode's queue that both sides must agree on."""

    name: str
    durable: bool
    persistent_messages: bool
    arguments: dict[str, str] = field(default_factory=dict)
    # Where rejected tasks go (ack mode): a queue a person can inspect.
    dead_letter_queue: str | None = None


def queue_spec(mode: Mode, queue_type: str = "classic") -> QueueSpec:
    """The queue of a mode. Raises ValueError for a combination that cannot work."""
    if queue_type not in QUEUE_TYPES:
        raise ValueError(f"unknown queue type {queue_type!r}: use one of {', '.join(QUEUE_TYPES)}")
    if mode is Mode.NOACK:
        if queue_type != "classic":
            raise ValueError("noack mode uses a transient classic queue: drop --queue-type quorum")
        return QueueSpec(name="hello", durable=False, persistent_messages=False)
    dead_letters = "task_queue.rejected"
    arguments = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead_letters}
    if queue_type == "quorum":
        arguments["x-queue-type"] = "quorum"
    return QueueSpec(
        name="task_queue",
        durable=True,
        persistent_messages=True,
        arguments=arguments,
        dead_letter_queue=dead_letters,
    )


def declare(channel: BlockingChannel, spec: QueueSpec) -> None:
    """Declare the queue (and its dead-letter queue), as both sides must."""
    try:
        if spec.dead_letter_queue:
            channel.queue_declare(spec.dead_letter_queue, durable=True)
        channel.queue_declare(spec.name, durable=spec.durable, arguments=spec.arguments)
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code != 406:
            raise
        raise BrokerError(
            f"queue '{spec.name}' already exists with other settings "
            f"(durable, type or dead-lettering): delete it with "
            f"'rabbitmqctl delete_queue {spec.name}' or use the settings it was made with"
        ) from None


def declare_events(channel: BlockingChannel) -> None:
    """Declare the exchange of the workers' events (transient: the feed is for the live view only)."""
    channel.exchange_declare(EVENTS_EXCHANGE, exchange_type="fanout", durable=False)
