"""The worker's words to the live views: its events, published on a connection of their own.

Not on the tasks' connection: under a resource alarm (low on disk or memory) RabbitMQ stops
reading from every connection that publishes, whatever else it carries. A worker that published
its events beside its tasks would have its acknowledgements go unread with them, and stand still
until the alarm cleared (measured: one task done in 12 s of alarm, against forty); on a
connection of their own the events wait, and the tasks go on, as the tutorial's worker's would.
The feed is best effort: its loss or its block never touches the tasks, and the events are in
the worker's logs whatever becomes of them here.
"""

from __future__ import annotations

import contextlib
import copy
import time

import pika
import pika.exceptions
import pika.frame
from pika.adapters.blocking_connection import BlockingChannel

from workqueue.connection import UNREACHABLE, Broker, describe
from workqueue.output import Output
from workqueue.queues import EVENTS_EXCHANGE, declare_events

# Published at most this often, and at least every ALIVE_SECONDS, if only to say the worker is alive.
INTERVAL = 0.2
ALIVE_SECONDS = 5.0
# After the feed's connection could not be made, it is tried again no sooner (or once the tasks' connection
# is made again): the tasks' loop waits while it connects, at most CONNECT_SECONDS.
RETRY_SECONDS = 30.0
CONNECT_SECONDS = 2.0
_PROPERTIES = pika.BasicProperties(content_type="application/x-ndjson")


class Feed:
    def __init__(self, broker: Broker, out: Output, alive: str) -> None:
        self.out = out
        self._alive = alive
        # The broker's nodes, each given up on sooner than the tasks' connection would be.
        self._nodes = [copy.copy(node) for node in broker.nodes]
        for node in self._nodes:
            node.socket_timeout = node.stack_timeout = CONNECT_SECONDS
            node.connection_attempts = 1
        self._connection: pika.BlockingConnection | None = None
        self._channel: BlockingChannel | None = None
        self._fed = 0.0  # when it was last published
        self._retry_at = 0.0
        self._unheard = False  # the broker handed the last message back: no live view listens
        self._blocked = False  # a resource alarm: nothing is published until the broker lets go

    def publish(self, final: bool = False) -> None:
        """The events since the last call, as one message to the live views' exchange.

        At most every INTERVAL: the I/O loop comes round after every burst of deliveries, and a
        publish each time would cost the worker a fifth of its pace. Published ``mandatory``:
        when the broker hands it back, no live view listens, and until one does only a short
        ``alive`` line goes out (same pace), to find out; the events meanwhile wait in ``Output``
        (its last FEED_LIMIT writes) for the view that comes, which has them within two
        intervals. Sending every event to nobody cost a tenth of the worker's pace at zero-dot tasks.
        """
        now = time.monotonic()
        since = now - self._fed
        if (not final and since < INTERVAL) or not self._open(now):
            return
        assert self._connection is not None and self._channel is not None
        try:
            self._connection.process_data_events(time_limit=0)  # the broker's returns, blocks and heartbeats
            if self._blocked:
                self._fed = now  # asked again an interval later; the events wait in Output
                return
            if self._unheard:
                if final:  # nobody to tell that this worker stops
                    return
                body = self.out.event_line("alive", self._alive)
                self._unheard = False  # until the broker hands this one back too
            else:
                if since >= ALIVE_SECONDS:
                    # A worker with nothing to say still says it is there, in the feed only.
                    self.out.feed_only("alive", self._alive)
                body = self.out.take_feed()
                if not body:
                    return
            self._fed = now
            self._channel.basic_publish(EVENTS_EXCHANGE, "", body.encode(), _PROPERTIES, mandatory=True)
        except pika.exceptions.AMQPChannelError as exc:
            # The exchange deleted, a right refused: the events stay in the logs; a new channel next time.
            self.out.warn(f" [!] the live views' feed refused this worker's events ({describe(exc)}); trying again")
            self._channel = None
        except (pika.exceptions.AMQPConnectionError, OSError):
            self._connection = self._channel = None  # lost: connected again at the next publish, if the broker answers

    def renew(self) -> None:
        """The tasks' connection is new: the broker answers, so a lost feed is connected again now, before
        the worker consumes (its first tasks then wait for no connection of the feed's)."""
        self._retry_at = 0.0
        self._open(time.monotonic())

    def close(self) -> None:
        """Close the feed's connection; a blocked one is dropped with the process (the broker reads nothing
        from it, a close handshake included, until the alarm clears)."""
        if self._connection is not None and self._connection.is_open and not self._blocked:
            with contextlib.suppress(pika.exceptions.AMQPError, OSError):
                self._connection.close()
        self._connection = self._channel = None

    def _open(self, now: float) -> bool:
        """The feed's connection and channel, opened if need be; False while it cannot be."""
        connection, channel = self._connection, self._channel
        if connection is not None and connection.is_open and channel is not None and channel.is_open:
            return True
        if now < self._retry_at:
            return False
        try:
            if self._connection is None or not self._connection.is_open:
                self._blocked = False
                self._connection = pika.BlockingConnection(self._nodes)
                self._connection.add_on_connection_blocked_callback(self._on_blocked)
                self._connection.add_on_connection_unblocked_callback(self._on_unblocked)
            self._channel = self._connection.channel()
            declare_events(self._channel)
            self._channel.add_on_return_callback(self._on_returned)
        except pika.exceptions.AMQPChannelError as exc:
            self.out.warn(f" [!] the live views' feed refused this worker's events ({describe(exc)}); trying again")
            self._channel, self._retry_at = None, now + RETRY_SECONDS
            return False
        except UNREACHABLE:
            self._connection, self._channel, self._retry_at = None, None, now + RETRY_SECONDS
            return False
        return True

    def _on_returned(self, *returned: object) -> None:
        self._unheard = True

    def _on_blocked(self, _connection: object, _frame: pika.frame.Method) -> None:
        self._blocked = True

    def _on_unblocked(self, _connection: object, _frame: pika.frame.Method) -> None:
        self._blocked = False
