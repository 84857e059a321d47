"""Consume tasks from the work queue: the tutorial's worker.py, made robust.

    python -m workqueue.worker_image.worker [--mode ack|noack] [--prefetch N] [--seconds-per-dot S] [--url URL]

Each dot in a task is ``--seconds-per-dot`` seconds of work. The connection's
I/O (heartbeats included) stays on the main thread while a second thread does
the work, so that a long task does not starve the heartbeats; the work thread
hands acknowledgements back with ``add_callback_threadsafe``, as pika requires.

SIGTERM (``docker stop``) and SIGINT stop the worker at once: the task in hand
is not finished and, in ack mode, not acknowledged, so the broker gives it to
another worker; in noack mode it and every task waiting in this worker are lost.

A task is a student's input as much as the producer's: whatever its properties,
headers and body, the worker does it or rejects it with a one-line reason (a task
whose work would pass ``--max-task-seconds`` too). Whatever the broker does to it
(its consumer cancelled when the queue is deleted, a channel closed), the worker
declares what it needs again and goes on consuming.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import NoReturn

import pika
import pika.exceptions
import pika.spec
from pika.adapters.blocking_connection import BlockingChannel

from workqueue import cli
from workqueue.connection import connect, describe, node_of
from workqueue.output import Output
from workqueue.queues import Mode, declare
from workqueue.tasks import TaskLabel, as_text, task_label, task_origin, work_seconds

from .fast_paths import NO_WORK, REDELIVERED, BurstAcks
from .feed import Feed

PROG = "worker.py"
# How long the I/O loop waits before it looks at the stop flag again.
POLL_SECONDS = 0.2
HEALTH_TOUCH_SECONDS = 5.0
# The longest task a worker does by default: half of RabbitMQ's consumer timeout (30 minutes),
# past which the broker would close the channel of a task still unacknowledged.
MAX_TASK_SECONDS = 900.0
# After the broker closes a channel (a queue or exchange deleted, a right refused), the worker
# connects again after a pause that doubles while the next channel fails as fast, up to the longest.
CHANNEL_RETRY_FIRST, CHANNEL_RETRY_LONGEST = 0.5, 10.0


@dataclass(frozen=True)
class WorkerConfig:
    options: cli.BrokerOptions
    prefetch: int
    seconds_per_dot: float
    max_task_seconds: float
    host: str
    name: str
    health_file: Path | None

    @property
    def ack(self) -> bool:
        return self.options.mode is Mode.ACK


@dataclass(frozen=True)
class Delivery:
    """A task in this worker's hands, from its arrival until it is done or given up."""

    channel: BlockingChannel
    tag: int
    label: TaskLabel
    seconds: float  # of work: the body's dots times --seconds-per-dot
    # Set when the task must not be finished: the worker is stopping or, in
    # ack mode, the connection it came on is gone (the broker redelivers it).
    cancelled: threading.Event
    # The task's fields in its events (run_id, seq, message_id), encoded once.
    encoded: str


class Stalled(Exception):
    """The worker stood still (frozen) past the broker's heartbeat timeout: its connection is not to be trusted."""


class ChannelLost(Exception):
    """The broker closed the tasks' channel (a right refused, a queue gone): connect again and declare anew."""


class Worker:
    def __init__(self, config: WorkerConfig, out: Output) -> None:
        self.config = config
        self.out = out
        self._stop_signal: str | None = None  # written by the signal handler, read by the I/O loop
        self._inbox: queue.SimpleQueue[Delivery | None] = queue.SimpleQueue()
        # Tasks handed to the work thread and not yet finished: while there are
        # any, a new task must queue behind them, whatever its length.
        self._pending = 0
        self._acks = BurstAcks(config.prefetch, record=out.flush)  # ack mode
        self._pending_lock = threading.Lock()
        # The tasks of the current connection are given up when it is set: by the I/O
        # thread when the connection is lost, by the work thread when it finds it stood
        # still past the broker's patience (the I/O loop then reconnects), and at the stop.
        # Each connection has its own (ack mode): a late set of an old one touches no other.
        self._cancel = threading.Event()
        self._work_thread = threading.Thread(target=self._work_loop, name="work", daemon=True)
        self._health_touched = 0.0
        self._said_stopped = False
        # The live views' words, on a connection of their own: their loss or block never touches the tasks.
        self._feed = Feed(config.options.broker, out, Output.encode(mode=config.options.mode.value))
        self._consumer_cancelled = False  # by the broker: the queue was deleted (set by pika's callback)
        self._channel_retry = CHANNEL_RETRY_FIRST
        self._lab_user = config.options.broker.user  # a task is a run's only when sent as this user; read per task

    # --- signals: set a flag only; pika must not be called from a handler (pika#686)
    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        self._stop_signal = signal.Signals(signum).name

    def _stopping(self) -> bool:
        return self._stop_signal is not None

    # --- the I/O thread
    def run(self) -> int:
        options = self.config.options
        self.out.event("worker_started", mode=options.mode.value, queue=options.queue.name, prefetch=self._prefetch())
        self._work_thread.start()
        try:
            first = True
            while not self._stopping():
                connection = connect(options.broker, options.connect_timeout, self._stopping, self._retrying)
                if connection is None:
                    break
                consumed_since = time.monotonic()
                try:
                    self._consume(connection, first)
                except pika.exceptions.AMQPConnectionError as exc:
                    self._connection_lost(describe(exc))
                except (Stalled, ChannelLost, pika.exceptions.AMQPChannelError) as exc:
                    self._connection_lost(describe(exc))
                    with contextlib.suppress(pika.exceptions.AMQPError, OSError):
                        connection.close()  # if the broker has not closed it yet: it then requeues our tasks
                    if not isinstance(exc, Stalled):
                        self._pause_before_retry(time.monotonic() - consumed_since)
                first = False
        finally:
            self._stop_work_thread()
        self._say_stopped()
        return 0

    def _say_stopped(self) -> None:
        if not self._said_stopped:
            self._said_stopped = True
            self.out.say(f" [*] Stopped ({self._stop_signal})")
            self.out.event("worker_stopped", signal=self._stop_signal)

    def _prefetch(self) -> int | None:
        return self.config.prefetch if self.config.ack else None

    def _retrying(self, reason: str, delay: float) -> None:
        self.out.warn(f" [!] broker not answering ({reason}); retrying in {delay:g} s")

    def _pause_before_retry(self, consumed_for: float) -> None:
        """Wait before connecting again after a closed channel: longer each time it fails at once."""
        if consumed_for > CHANNEL_RETRY_LONGEST:
            self._channel_retry = CHANNEL_RETRY_FIRST
        end = time.monotonic() + self._channel_retry
        while not self._stopping() and time.monotonic() < end:
            time.sleep(0.1)
        self._channel_retry = min(self._channel_retry * 2, CHANNEL_RETRY_LONGEST)

    def _consume(self, connection: pika.BlockingConnection, first: bool) -> None:
        spec = self.config.options.queue
        channel = connection.channel()
        self._acks.new_channel()
        if self.config.ack:
            channel.basic_qos(prefetch_count=self.config.prefetch)
        channel.add_on_cancel_callback(self._on_consumer_cancelled)
        self._feed.renew()
        self._start_consuming(channel)
        node = node_of(connection)
        self.out.say(" [*] Waiting for messages. To exit press CTRL+C" if first else f" [*] Reconnected to {node}")
        self.out.event("consuming", queue=spec.name, node=node)
        while not self._stopping():
            if self._cancel.is_set():
                raise Stalled("this worker stood still past the broker's heartbeat timeout")
            # Returns after each burst of deliveries, or after POLL_SECONDS with none.
            connection.process_data_events(time_limit=POLL_SECONDS)
            if channel.is_closed:
                # pika keeps why; it raises it only from a call on that channel.
                raise ChannelLost(describe(channel._closing_reason or Exception("channel closed")))
            if self._consumer_cancelled:
                self._consume_again(channel, node)
            self._acks.end_of_burst()
            self.out.flush_when_due()
            self._feed.publish()
            self._touch_health()
        self._cancel.set()
        self._stop_work_thread()
        # Acknowledgements of tasks finished just before the stop are still queued as callbacks.
        connection.process_data_events(time_limit=0)
        self._acks.end_of_burst()
        self._say_stopped()  # while connected, so that the live view hears it
        self._feed.publish(final=True)
        self._feed.close()
        connection.close()

    def _start_consuming(self, channel: BlockingChannel) -> None:
        declare(channel, self.config.options.queue)
        self._consumer_cancelled = False
        channel.basic_consume(self.config.options.queue.name, self._on_message, auto_ack=not self.config.ack)

    def _on_consumer_cancelled(self, frame: object) -> None:
        self._consumer_cancelled = True  # acted on in the I/O loop, between two turns

    def _consume_again(self, channel: BlockingChannel, node: str) -> None:
        """The broker cancelled our consumer: the queue was deleted (by a person, a student's program).

        Declare it again and consume from it, on the same channel: the tasks in hand are
        finished and acknowledged as before. The tasks that waited in the deleted queue went with it.
        """
        name = self.config.options.queue.name
        self.out.warn(
            f" [!] the broker cancelled this worker's consumer: queue '{name}' was deleted; declaring it again"
        )
        self.out.event("consumer_cancelled", queue=name)
        self._start_consuming(channel)
        self.out.event("consuming", queue=name, node=node)

    def _on_message(
        self,
        channel: BlockingChannel,
        method: pika.spec.Basic.Deliver,
        properties: pika.BasicProperties,
        body: bytes,
    ) -> None:
        try:
            self._take(channel, method, properties, body)
        except pika.exceptions.AMQPError:
            raise  # the channel or the connection: the I/O loop connects again
        except Exception as exc:  # a delivery no rule foresaw: refused, never the worker's end
            label = TaskLabel(None, None, as_text(getattr(properties, "message_id", None)))
            self._reject(channel, method.delivery_tag, label, "unreadable", f"{type(exc).__name__}: {exc}"[:200])

    def _take(
        self,
        channel: BlockingChannel,
        method: pika.spec.Basic.Deliver,
        properties: pika.BasicProperties,
        body: bytes,
    ) -> None:
        """Do a task, or reject it with its reason: empty, not UTF-8, or longer than this worker does."""
        label = task_label(properties, self._lab_user)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            text = ""
        if not text:
            why = "not UTF-8" if body else "empty"
            self._reject(channel, method.delivery_tag, label, why, f"its body is {why} ({len(body)} bytes)")
            return
        seconds = work_seconds(text, self.config.seconds_per_dot)
        if seconds > self.config.max_task_seconds:
            limit = f"{seconds:g} s of work, past this worker's limit of {self.config.max_task_seconds:g} s"
            self._reject(channel, method.delivery_tag, label, "too long", f"{limit} (--max-task-seconds)")
            return
        received = f" [x] Received {text!r}{' (redelivered)' if method.redelivered else ''}"
        encoded = label.encoded()
        origin = "" if label.from_a_run else Output.encode(origin=task_origin(properties, text))
        received_fields = encoded + REDELIVERED[method.redelivered] + origin
        # No work to wait for and nothing ahead of it: done at once, here on the I/O thread (fast_paths.py).
        # (No lock to read _pending: only this thread raises it, so a 0 read here stays 0.)
        if seconds == 0 and self._pending == 0:  # received and done: two lines, two events, one write
            events = self.out.event_pair("received", received_fields, "done", encoded + NO_WORK)
            self.out.write(f"{received}\n [x] Done {label.number}\n", events)
            if self.config.ack:
                self._acks.done_at_once(channel, method.delivery_tag)
            return
        with self._pending_lock:
            self._pending += 1
        self.out.write(received + "\n", self.out.event_line("received", received_fields))
        delivery = Delivery(channel, method.delivery_tag, label, seconds, self._cancel, encoded)
        if self.config.ack:
            self._acks.handed(delivery.tag)
        self._inbox.put(delivery)

    def _reject(self, channel: BlockingChannel, tag: int, label: TaskLabel, reason: str, detail: str) -> None:
        """Refuse a task: ``reason`` for the events (empty, not UTF-8, too long, unreadable), ``detail`` for people."""
        spec = self.config.options.queue
        where = f"dead-lettered to '{spec.dead_letter_queue}' by the broker's policy" if self.config.ack else "dropped"
        self.out.say(f" [!] Rejected task {label.number}: {detail}; {where}")
        self.out.event("rejected", label.encoded(), reason=reason)
        if self.config.ack:
            self.out.flush()  # said before the broker hears, as for a task done
            channel.basic_reject(tag, requeue=False)

    def _connection_lost(self, reason: str) -> None:
        self.out.warn(f" [!] connection lost ({reason}); reconnecting")
        self.out.event("connection_lost", reason=reason)
        if self.config.ack:
            # Unacknowledged tasks of the lost connection go back to the queue
            # and are redelivered: finishing them here would do them twice.
            self._cancel.set()
            self._cancel = threading.Event()

    def _stop_work_thread(self) -> None:
        """Let the work thread give up what it holds and end (idempotent)."""
        if self._work_thread.is_alive():
            self._cancel.set()
            self._inbox.put(None)
            self._work_thread.join(timeout=5)
        self.out.flush()

    def _touch_health(self) -> None:
        health = self.config.health_file
        now = time.monotonic()
        if health is None or now - self._health_touched < HEALTH_TOUCH_SECONDS:
            return
        with contextlib.suppress(OSError):  # the health check reports it; the work goes on
            health.touch()
        self._health_touched = now

    # --- the work thread
    def _work_loop(self) -> None:
        while (delivery := self._inbox.get()) is not None:
            started = time.monotonic()
            cancelled = delivery.cancelled.wait(delivery.seconds)
            stalled = time.monotonic() - started - delivery.seconds
            late = stalled > self._broker_gives_up_after()
            # A frozen worker, thawed, has its work time behind it: the work is done, whichever
            # thread wakes first (the I/O thread may find the connection gone and cancel).
            if cancelled and not (late and self.config.ack):
                self._abandon(delivery)
            elif not late:
                self._task_done(delivery)
            elif self.config.ack:
                self._task_done_late(delivery, stalled)
            else:  # acknowledged on arrival: late, but neither lost nor done twice
                self._task_done(delivery, late=stalled)
            with self._pending_lock:
                self._pending -= 1

    def _task_done(self, delivery: Delivery, late: float | None = None) -> None:
        if late is None:
            self.out.say(f" [x] Done {delivery.label.number}")
            self.out.event("done", delivery.encoded, work_seconds=round(delivery.seconds, 3))
        else:
            self.out.say(f" [x] Done {delivery.label.number}, late: stalled {late:.0f} s")
            self.out.event("done", delivery.encoded, work_seconds=round(delivery.seconds, 3), late=round(late, 1))
        if self.config.ack:
            # The event reaches the log before the broker hears: killed a moment later, this worker
            # has still said it did the task the broker will not hand out again (make soak's ledger).
            self.out.flush()
            self._ack_from_work_thread(delivery)

    def _broker_gives_up_after(self) -> float:
        """Seconds of silence after which the broker has closed our connection: two missed heartbeats."""
        heartbeat = self.config.options.broker.parameters.heartbeat
        return 2 * heartbeat if isinstance(heartbeat, int | float) and heartbeat > 0 else float("inf")

    def _task_done_late(self, delivery: Delivery, stalled: float) -> None:
        """The work is done, but this worker stood still (frozen, a hung machine) past the broker's patience.

        The broker has closed the connection and given the task to another worker: the
        acknowledgement would be refused, so the task is not claimed. The work was done all
        the same, and so the task is done twice: the price of at-least-once delivery.
        """
        # The tasks behind it came on the same dead connection; and the I/O loop, seeing it set,
        # makes sure the connection is dead (were the broker still to wait, this task would
        # stay unacknowledged). Once the connection is known lost, this is an old event: no effect.
        delivery.cancelled.set()
        self.out.say(
            f" [x] Done {delivery.label.number}, late: stalled {stalled:.0f} s, past the broker's heartbeat timeout;"
            " its acknowledgement is refused and another worker does it again"
        )
        self.out.event(
            "done", delivery.encoded, work_seconds=round(delivery.seconds, 3), late=round(stalled, 1), refused=True
        )

    def _ack_from_work_thread(self, delivery: Delivery) -> None:
        ack = self._acks.from_work_thread(delivery.channel, delivery.tag)  # run on the I/O thread
        with contextlib.suppress(pika.exceptions.AMQPError):  # connection gone: the broker redelivers
            delivery.channel.connection.add_callback_threadsafe(ack)

    def _abandon(self, delivery: Delivery) -> None:
        if self.config.ack:
            fate, line = "requeued", "not acknowledged: the broker gives it to another worker"
        else:
            fate, line = "lost", "lost: it was acknowledged on arrival (noack mode)"
        self.out.say(f" [!] Not finished {delivery.label.number}: {line}")
        self.out.event("abandoned", delivery.encoded, fate=fate)


def parse_args(argv: list[str] | None) -> WorkerConfig:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    cli.add_broker_options(parser)
    parser.add_argument("--prefetch", help="ack mode: unacknowledged tasks a worker may hold (env PREFETCH; default 1)")
    parser.add_argument("--seconds-per-dot", help="seconds of work per dot (env SECONDS_PER_DOT; default 1.0)")
    parser.add_argument(
        "--max-task-seconds",
        help=f"reject a task whose work would take longer (env MAX_TASK_SECONDS; default {MAX_TASK_SECONDS:g}); "
        "keep it below the broker's consumer timeout",
    )
    parser.add_argument("--name", help="this worker's name in events (env WORKER_NAME; default: the hostname)")
    args = parser.parse_args(argv)
    options = cli.resolve_broker_options(parser, args)
    prefetch = cli.option(parser, args.prefetch, "--prefetch", "PREFETCH", cli.positive_int, 1)
    seconds = cli.option(
        parser, args.seconds_per_dot, "--seconds-per-dot", "SECONDS_PER_DOT", cli.non_negative_float, 1.0
    )
    longest = cli.option(
        parser,
        args.max_task_seconds,
        "--max-task-seconds",
        "MAX_TASK_SECONDS",
        cli.non_negative_float,
        MAX_TASK_SECONDS,
    )
    name = cli.option(parser, args.name, "--name", "WORKER_NAME", str, socket.gethostname())
    if options.mode is Mode.NOACK and args.prefetch is not None:
        print(
            f"{PROG}: note: --prefetch is ignored in noack mode (the broker pushes every task at once)", file=sys.stderr
        )
    host = os.environ.get("WORKER_HOST") or socket.gethostname()
    health = os.environ.get("HEALTH_FILE")
    return WorkerConfig(options, prefetch, seconds, longest, host, name, Path(health) if health else None)


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    out = Output({"program": "worker", "host": config.host, "worker": config.name}, feed=True)
    worker = Worker(config, out)
    signal.signal(signal.SIGTERM, worker.request_stop)
    signal.signal(signal.SIGINT, worker.request_stop)
    return worker.run()


def entry_point() -> NoReturn:
    """``workqueue-worker`` (the console script) and ``python -m workqueue.worker_image.worker``."""
    cli.run(PROG, main)


if __name__ == "__main__":
    entry_point()
