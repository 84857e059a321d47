"""What the producer says while the broker blocks it: a resource alarm is flow control, not an error.

When RabbitMQ runs low on disk or memory it raises an alarm and stops reading from every connection
that publishes, telling it so (``connection.blocked``, with the reason: "low on disk"); it tells it
again when the alarm clears (``connection.unblocked``). Nothing is refused or lost meanwhile: the
tasks wait in the producer's socket, and their confirmations with them. Said nothing, a blocked
producer looks hung; this says so and since when, then how long it waited.
"""

from __future__ import annotations

import time

import pika
import pika.frame

from workqueue.connection import blocked_reason
from workqueue.output import Output


class Blocked:
    """Whether the broker blocks this producer now, and for how long it did in all."""

    def __init__(self, out: Output) -> None:
        self.out = out
        self.since: float | None = None
        self.seconds = 0.0

    def watch(self, connection: pika.BlockingConnection) -> None:
        """Hear the broker's word on this connection (each new one after a reconnection)."""
        self.since = None  # a lost connection's block went with it; the broker says so again if it still holds
        connection.add_on_connection_blocked_callback(self._on_blocked)
        connection.add_on_connection_unblocked_callback(self._on_unblocked)

    def _on_blocked(self, _connection: object, frame: pika.frame.Method) -> None:
        reason = blocked_reason(frame)
        self.since = time.time()
        when = time.strftime("%H:%M:%S", time.localtime(self.since))
        self.out.warn(
            f" [!] blocked by the broker since {when}: {reason} (a resource alarm: it takes no task until"
            " the alarm clears; waiting)"
        )
        self.out.event("blocked", reason=reason)
        self.out.flush()  # said now: the producer may wait long before it writes again

    def _on_unblocked(self, _connection: object, _frame: pika.frame.Method) -> None:
        if self.since is None:
            return
        seconds = time.time() - self.since
        self.seconds += seconds
        self.since = None
        self.out.say(f" [*] the broker takes tasks again, after {seconds:.1f} s blocked")
        self.out.event("unblocked", seconds=round(seconds, 1))
        self.out.flush()
