"""Publisher confirms with a window of tasks in flight, on pika's blocking connection.

pika's ``BlockingChannel.confirm_delivery`` confirms one message at a time:
each ``basic_publish`` then waits for its own confirmation, a round trip per
task (0.07 of unconfirmed publishing, measured). RabbitMQ's publisher-confirms
tutorial gives the better strategy, used here: keep publishing while up to
``size`` tasks wait for their confirmation, and take confirmations as they
come (the broker confirms several at once with ``multiple``). The guarantee is
the same: a task counts as sent only once the broker confirmed it, and a task
the broker nacks or returns (no queue to route it to) is refused, by name.

pika has asynchronous confirms on the channel its blocking one wraps
(``BlockingChannel._impl``); this module is the one place that reaches it.
Publishing itself goes through the blocking channel as usual.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pika
import pika.exceptions
import pika.frame
import pika.spec
from pika.adapters.blocking_connection import BlockingChannel

from workqueue.tasks import task_label

# Tasks in flight at most. Past a few hundred the rate no longer grows (bench/throughput.py).
WINDOW = 256
# How long a pump of the connection waits for confirmations at most before looking again.
PUMP_SECONDS = 1.0
SELECT_TIMEOUT = 30.0  # seconds for the broker to turn confirms on


class ConfirmWindow:
    """The tasks one channel has published and the broker has not yet confirmed.

    Delivery tags count the channel's publishes from 1 (the protocol's rule), so
    every publish on this channel must go through ``publish``.
    """

    def __init__(self, connection: pika.BlockingConnection, channel: BlockingChannel, size: int = WINDOW) -> None:
        self._connection = connection
        self._channel = channel
        self._size = size
        self._next_tag = 1
        self._waiting: dict[int, int] = {}  # delivery tag -> task seq, oldest first (a dict keeps its order)
        self._returned: set[int] = set()  # seqs the broker handed back (confirmed next, but not stored)
        self.confirmed: list[int] = []
        self.refused: list[int] = []
        # While the connection is pumped for a condition, the condition; see _pump_until.
        self._enough: Callable[[], bool] | None = None
        selected: list[pika.frame.Method] = []

        def on_selected(frame: pika.frame.Method) -> None:
            selected.append(frame)
            self._wake_if_enough()

        impl = channel._impl  # see the module's docstring
        impl.add_on_return_callback(self._on_return)
        impl.confirm_delivery(ack_nack_callback=self._on_confirm, callback=on_selected)
        deadline = time.monotonic() + SELECT_TIMEOUT
        self._pump_until(lambda: bool(selected) or time.monotonic() > deadline)
        if not selected:
            raise pika.exceptions.ChannelClosed(0, "the broker did not turn confirms on")

    def publish(self, seq: int, routing_key: str, body: bytes, properties: pika.BasicProperties) -> None:
        """Send task ``seq``; it counts as unconfirmed from now on, even if the send fails."""
        if len(self._waiting) >= self._size:
            # Let half the window drain rather than pump after every publish.
            self._pump_until(lambda: len(self._waiting) <= self._size // 2)
        self._waiting[self._next_tag] = seq
        self._next_tag += 1
        self._channel.basic_publish("", routing_key, body, properties, mandatory=True)

    def drain(self) -> None:
        """Wait until the broker has confirmed or refused every task sent. Raises what a lost connection raises."""
        self._pump_until(lambda: not self._waiting)

    def unconfirmed(self) -> list[int]:
        """The tasks sent and not confirmed, in the order they were sent."""
        return list(self._waiting.values())

    def _pump_until(self, enough: Callable[[], bool]) -> None:
        """Process the connection's I/O until ``enough()``.

        ``process_data_events`` returns early only for the blocking adapter's own events,
        not for the callbacks this module gives the channel beneath: so the callback that
        makes ``enough()`` true schedules a timer at 0 s, which is such an event.
        """
        self._enough = enough
        try:
            while not enough():
                self._connection.process_data_events(time_limit=PUMP_SECONDS)
        finally:
            self._enough = None

    def _wake_if_enough(self) -> None:
        if self._enough is not None and self._enough():
            self._enough = None
            self._connection.call_later(0, _nothing)

    def _on_confirm(self, frame: pika.frame.Method) -> None:
        method = frame.method
        assert isinstance(method, pika.spec.Basic.Ack | pika.spec.Basic.Nack)
        nacked = isinstance(method, pika.spec.Basic.Nack)
        if method.multiple:  # every tag up to this one; the oldest are first
            tags = []
            for tag in self._waiting:
                if tag > method.delivery_tag:
                    break
                tags.append(tag)
        else:
            tags = [method.delivery_tag]
        for tag in tags:
            seq = self._waiting.pop(tag, None)
            if seq is None:
                continue
            if nacked or seq in self._returned:
                self._returned.discard(seq)
                self.refused.append(seq)
            else:
                self.confirmed.append(seq)
        self._wake_if_enough()

    def _on_return(
        self, channel: object, method: pika.spec.Basic.Return, properties: pika.BasicProperties, body: bytes
    ) -> None:
        # A returned task is confirmed right after (it was handled: dropped for want of a queue).
        seq = task_label(properties, lab_user=properties.user_id).seq  # our own task, sent as our user
        if seq is not None:
            self._returned.add(seq)


def _nothing() -> None:
    pass
