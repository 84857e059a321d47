"""Whether the broker blocks its publishers now (a resource alarm), for the live views.

Low on disk or memory, RabbitMQ stops reading from every connection that publishes, and tells it
so (``connection.blocked``, with the reason), then again when the alarm clears. The programs' own
words about it reach no view meanwhile: their events are published, so they wait with everything
else. The views learn it first-hand instead: a connection of their own publishes a word to no queue
(the default exchange, a routing key no queue has: the broker drops it) every few seconds, and the
broker's notices on that connection are the view's answer. Blocked, it publishes nothing more until
the broker lets it go; the view's own connection, which only consumes and asks, is never blocked.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import pika
import pika.exceptions
import pika.frame
from pika.adapters.blocking_connection import BlockingChannel

from workqueue.connection import Broker, BrokerError, blocked_reason, connect

PROBE_EVERY = 2.0  # seconds between two words: how soon a view sees an alarm
NOWHERE = "workqueue.alarm-probe"  # a routing key no queue is named: the default exchange drops the word
ASK_AGAIN_AFTER = 30.0  # after the probe could not connect (the view's own connection says why)


class AlarmProbe:
    def __init__(self, broker: Broker, clock: Callable[[], float] = time.monotonic) -> None:
        self.broker = broker
        self.clock = clock
        self.blocked: str | None = None  # the broker's reason, while it blocks
        self.since: float | None = None  # wall-clock time it began
        self._connection: pika.BlockingConnection | None = None
        self._channel: BlockingChannel | None = None
        self._probed = -PROBE_EVERY
        self._quiet_until = 0.0

    def state(self) -> str:
        """One line while the broker blocks publishers; "" otherwise (or when the probe cannot connect)."""
        try:
            self._hear()
        except (pika.exceptions.AMQPError, BrokerError):
            self._connection = self._channel = None
            self.blocked = self.since = None
            self._quiet_until = self.clock() + ASK_AGAIN_AFTER
        if self.blocked is None or self.since is None:
            return ""
        since = time.strftime("%H:%M:%S", time.localtime(self.since))
        return (
            f"ALARM: the broker blocks every publisher since {since}: {self.blocked} (a resource alarm; producers"
            " wait, and the workers' words with them, until it clears)"
        )

    def _hear(self) -> None:
        if self._connection is None or self._channel is None or not self._connection.is_open:
            if self.clock() < self._quiet_until:
                return
            connection = connect(self.broker, 0)
            assert connection is not None  # no stop flag: connect returns None only when asked to stop
            connection.add_on_connection_blocked_callback(self._on_blocked)
            connection.add_on_connection_unblocked_callback(self._on_unblocked)
            self._connection, self._channel = connection, connection.channel()
        self._connection.process_data_events(time_limit=0)
        if self.blocked is None and self.clock() - self._probed >= PROBE_EVERY:
            self._probed = self.clock()
            self._channel.basic_publish("", NOWHERE, b"")
            self._connection.process_data_events(time_limit=0)

    def _on_blocked(self, _connection: object, frame: pika.frame.Method) -> None:
        self.blocked = blocked_reason(frame)
        self.since = time.time()

    def _on_unblocked(self, _connection: object, _frame: pika.frame.Method) -> None:
        self.blocked = self.since = None

    def close(self) -> None:
        """Close the probe's connection; a blocked one is left to the process's end (the broker reads nothing
        from it, a close handshake included, until the alarm clears)."""
        if self._connection is not None and self._connection.is_open and self.blocked is None:
            with contextlib.suppress(pika.exceptions.AMQPError, OSError):  # a broker gone: nothing to close
                self._connection.close()
        self._connection = self._channel = None
