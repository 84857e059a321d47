"""The web view's AMQP side, in a thread of its own: hear the feed, count the queues, come back after a loss.

The first connection is made before the server starts, so that a wrong password
or an unreachable broker is one line and exit 1. After that, a lost broker is
said on the page, and the thread connects again until the broker answers.
"""

from __future__ import annotations

import contextlib
import threading
import time

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from workqueue import cli
from workqueue.connection import BrokerError, connect, describe
from workqueue.queues import DEAD_LETTER_QUEUE, Mode
from workqueue.report import feed
from workqueue.report.alarm import AlarmProbe
from workqueue.report.gathered import QueueState
from workqueue.report.leader import LeaderProbe
from workqueue.report.web.heard import FeedState, Heard

RECONNECT_TIMEOUT = 3600.0  # keeps trying while the page is open; the view's --duration bounds it


class Listener(threading.Thread):
    def __init__(self, options: cli.BrokerOptions, heard: Heard, interval: float, stop: threading.Event) -> None:
        super().__init__(name="amqp-listener", daemon=True)
        self.options = options
        self.heard = heard
        self.interval = interval
        self.stop = stop
        self._connection: pika.BlockingConnection | None = None
        self._leader = LeaderProbe(options.broker)
        self._alarm = AlarmProbe(options.broker)

    def connect_first(self) -> None:
        """Raises BrokerError (one line) when the broker cannot be reached or refuses the login."""
        self._connection = self._open(self.options.connect_timeout)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                if self._connection is None:
                    self._connection = self._open(RECONNECT_TIMEOUT)
                    if self._connection is None:
                        return  # asked to stop while waiting
                self._hear(self._connection)
            except BrokerError as exc:
                self.heard.feed(FeedState(False, f"{exc}; trying again"))
                self.stop.wait(2.0)
            except (pika.exceptions.AMQPError, OSError) as exc:
                when = time.strftime("%H:%M:%S")
                self.heard.feed(FeedState(False, f"lost the broker at {when} ({describe(exc)}); reconnecting"))
            finally:
                if self.stop.is_set() or not self._is_open():
                    self._close()

    def _open(self, timeout: float) -> pika.BlockingConnection | None:
        return connect(self.options.broker, timeout, should_stop=self.stop.is_set)

    def _is_open(self) -> bool:
        return self._connection is not None and self._connection.is_open

    def _close(self) -> None:
        self._alarm.close()
        if self._connection is not None and self._connection.is_open:
            with contextlib.suppress(pika.exceptions.AMQPError, OSError):
                self._connection.close()
        self._connection = None

    def _hear(self, connection: pika.BlockingConnection) -> None:
        feed.listen(connection.channel(), self.heard.add, self.heard.reader)
        self.heard.feed(FeedState(True, f"listening to {self.options.broker.where}"))
        counts: BlockingChannel | None = None
        while not self.stop.is_set():
            next_count = time.monotonic() + self.interval
            while (left := next_count - time.monotonic()) > 0 and not self.stop.is_set():
                connection.process_data_events(time_limit=min(left, 0.2))
            counts, consumed, queues = self._count(connection, counts)
            self.heard.counted(queues, consumed)
            self.heard.alarm(self._alarm.state())

    def _count(
        self, connection: pika.BlockingConnection, channel: BlockingChannel | None
    ) -> tuple[BlockingChannel | None, str, list[QueueState]]:
        """The mode's queue (and in ack mode the dead-letter queue) as the broker counts them; who leads the first."""
        mode, spec = feed.mode_queue(self.options, self.heard.mode)
        names = [spec.name] + ([DEAD_LETTER_QUEUE] if mode is Mode.ACK else [])
        queues = []
        for name in names:
            channel, count = feed.queue_count(connection, channel, name)
            if count.ready is not None:  # not declared yet: not listed
                leader = self._leader.leader(name) if name == spec.name else ""
                queues.append(QueueState(name, count.ready, 0, count.consumers, leader))
        return channel, spec.name, queues
