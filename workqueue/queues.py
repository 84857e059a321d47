"""The tutorial's two modes and the queue each one uses, declared in one place.

The queues are declared exactly as the tutorial declares them, so that a
student's own ``new_task.py`` and ``worker.py`` work beside the lab's programs:
the broker refuses a declaration whose arguments differ from the existing
queue's (PRECONDITION_FAILED), and the tutorial passes none. Two styles are in
use: the seed's ``durable=True`` alone, and today's tutorial, which adds
``x-queue-type: quorum``. The lab's broker makes both equivalent by giving its
vhost a default queue type (the ``rabbitmq`` role; RabbitMQ 3.10 already has
it), so the lab's programs name no type unless told to. What the lab adds to a
queue (dead-lettering, a delivery limit) is a broker policy, never an argument.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from workqueue.connection import BrokerError

# "": no x-queue-type argument, the vhost's default type (the seed's declaration).
QUEUE_TYPES = ("", "classic", "quorum")
# Where the lab's broker policy dead-letters rejected tasks (roles/rabbitmq:
# rabbitmq_policies). The programs declare it so that it exists for the policy.
DEAD_LETTER_QUEUE = "task_queue.rejected"
# The workers' events, published in batches for the live view (workqueue/report/watch.py)
# to hear: a fanout exchange, so that any number of views can listen.
EVENTS_EXCHANGE = "workqueue.events"


class Mode(enum.StrEnum):
    """``noack``: the tutorial's first worker; ``ack``: its robust one (its text, in events and options)."""

    ACK = "ack"
    NOACK = "noack"

    @classmethod
    def named(cls, value: object) -> Mode | None:
        """The mode an event names, or None when it names none (or one this version does not know)."""
        return next((mode for mode in cls if mode.value == value), None)


@dataclass(frozen=True)
class QueueSpec:
    """Everything about a mode's queue that both sides must agree on."""

    name: str
    durable: bool
    persistent_messages: bool
    arguments: dict[str, str] = field(default_factory=dict)
    # Where rejected tasks go (ack mode): a queue a person can inspect.
    dead_letter_queue: str | None = None


def queue_spec(mode: Mode, queue_type: str = "") -> QueueSpec:
    """The queue of a mode. Raises ValueError for a combination that cannot work."""
    if queue_type not in QUEUE_TYPES:
        named = ", ".join(t for t in QUEUE_TYPES if t)
        raise ValueError(f"unknown queue type {queue_type!r}: use {named}, or none for the vhost's default")
    if mode is Mode.NOACK:
        if queue_type == "quorum":
            raise ValueError("noack mode uses a transient classic queue: drop --queue-type quorum")
        # The tutorial's first queue, as it declares it: queue_declare(queue="hello").
        return QueueSpec(name="hello", durable=False, persistent_messages=False)
    return QueueSpec(
        name="task_queue",
        durable=True,
        persistent_messages=True,
        arguments={"x-queue-type": queue_type} if queue_type else {},
        dead_letter_queue=DEAD_LETTER_QUEUE,
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
            f"queue '{spec.name}' already exists with other settings ({exc.reply_text}): "
            f"declare it as it was made, or delete it with 'rabbitmqctl delete_queue {spec.name}'"
        ) from None


def declare_events(channel: BlockingChannel) -> None:
    """Declare the exchange of the workers' events (transient: the feed is for the live view only)."""
    channel.exchange_declare(EVENTS_EXCHANGE, exchange_type="fanout", durable=False)
