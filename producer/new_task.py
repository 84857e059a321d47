"""Publish COUNT tasks to the work queue: the tutorial's new_task.py, made robust.

    python -m workqueue.producer.new_task COUNT [MESSAGE] [--mode ack|noack] [--rate N] [--url URL]

Task i is ``Hello World! #i`` and i dots (i seconds of work), or ``MESSAGE #i``.
In ack mode the tasks are persistent and every one must be confirmed by the
broker (publisher confirms, taken as they come while up to 256 tasks are in
flight: producer/confirms.py). When the connection is lost, the producer
reconnects (within --connect-timeout) and sends again every task the broker had
not confirmed: a task whose confirmation was lost on the way may then be stored
twice (at-least-once). It exits 0 only when every task is confirmed, else 1
naming those that were not. In noack mode nothing is confirmed: when the
connection is lost, the tasks not yet sent are named as not sent (exit 1).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from collections import deque
from dataclasses import dataclass, field
from typing import NoReturn

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from workqueue import cli
from workqueue.connection import BrokerError, connect, describe, node_of
from workqueue.output import Output
from workqueue.queues import EVENTS_EXCHANGE, Mode, QueueSpec, declare, declare_events
from workqueue.tasks import MAX_TASKS, new_run_id, seq_list, task_body, task_properties

from .blocked import Blocked
from .confirms import ConfirmWindow

PROG = "new_task.py"
LOST = (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError)


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, cli.BrokerOptions]:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("count", metavar="COUNT", help="how many tasks to publish (1 or more)")
    parser.add_argument("message", metavar="MESSAGE", nargs="?", help="task text; each dot is a unit of work")
    parser.add_argument(
        "--rate", help="tasks per second, to spread a run over time (env PUBLISH_RATE; default: at once)"
    )
    cli.add_broker_options(parser)
    args = parser.parse_args(argv)
    try:
        args.count = cli.positive_int(args.count)
    except ValueError as exc:
        parser.error(f"COUNT: {exc}")
    if args.count > MAX_TASKS:
        parser.error(f"COUNT: {args.count} is more tasks than a run may have ({MAX_TASKS})")
    args.rate = cli.option(parser, args.rate, "--rate", "PUBLISH_RATE", cli.non_negative_float, 0.0)
    return args, cli.resolve_broker_options(parser, args)


@dataclass
class Run:
    """One run's tasks and what became of each on the producer's side."""

    run_id: str
    count: int
    message: str | None
    spec: QueueSpec
    sent: list[int] = field(default_factory=list)  # confirmed by the broker in ack mode
    resent: list[int] = field(default_factory=list)
    not_sent: list[int] = field(default_factory=list)  # ack: never confirmed; noack: never sent


class Producer:
    def __init__(self, options: cli.BrokerOptions, out: Output) -> None:
        self.options = options
        self.out = out
        self.ack = options.mode is Mode.ACK
        self.connection: pika.BlockingConnection | None = None
        self.node = ""  # the broker node it is connected to, host:port
        self.channel: BlockingChannel | None = None
        self.feed: BlockingChannel | None = None  # the live views' events: a channel without confirms
        self.window: ConfirmWindow | None = None  # ack mode: the tasks awaiting confirmation
        self.blocked = Blocked(out)  # the broker's resource alarms

    def open(self) -> None:
        """Connect (retrying within --connect-timeout) and declare the queue, as the workers do."""
        self.connection = connect(
            self.options.broker,
            self.options.connect_timeout,
            on_retry=lambda reason, delay: self.out.warn(
                f" [!] broker not answering ({reason}); retrying in {delay:g} s"
            ),
        )
        assert self.connection is not None  # no stop flag here: connect only returns None when asked to stop
        self.node = node_of(self.connection)
        self.blocked.watch(self.connection)
        self.channel = self.connection.channel()
        declare(self.channel, self.options.queue)
        self.feed = self.connection.channel()
        declare_events(self.feed)
        if self.ack:
            self.window = ConfirmWindow(self.connection, self.channel)

    def close(self) -> None:
        if self.connection is not None and self.connection.is_open:
            self.connection.close()

    def tell_feed(self) -> None:
        """The run's events so far, to the live views' feed (best effort: the record is in the logs)."""
        lines = self.out.take_feed()
        if not lines or self.feed is None or not self.feed.is_open:
            return
        with contextlib.suppress(*LOST):
            self.feed.basic_publish(
                EVENTS_EXCHANGE, "", lines.encode(), pika.BasicProperties(content_type="application/x-ndjson")
            )

    def publish(self, run: Run, seq: int) -> None:
        """Send one task (in ack mode, into the confirm window). Raises what a lost connection raises."""
        assert self.channel is not None
        body = task_body(seq, run.message)
        properties = task_properties(
            run.run_id, seq, run.count, persistent=run.spec.persistent_messages, user=self.options.broker.user
        )
        if self.window is not None:
            self.window.publish(seq, run.spec.name, body.encode(), properties)
        else:
            self.channel.basic_publish("", run.spec.name, body.encode(), properties)
            run.sent.append(seq)
        self.out.say(f" [x] Sent {body!r}")

    def pause(self, seconds: float) -> None:
        """Wait between tasks (--rate) while taking the broker's confirmations and heartbeats."""
        assert self.connection is not None
        self.connection.sleep(seconds)

    def publish_run(self, run: Run, rate: float) -> str:
        """Every task of the run, all confirmed in ack mode; the reason the connection was lost for good, or ''."""
        to_send = deque(range(1, run.count + 1))
        while True:
            try:
                while to_send:
                    if rate and to_send[0] > 1:
                        self.pause(1 / rate)
                    self.publish(run, to_send[0])
                    to_send.popleft()
                if self.window is not None:
                    self.window.drain()
                    self._settle(run)
                return ""
            except LOST as exc:
                reason = describe(exc)
                if self.window is not None:  # every task the broker had not confirmed goes out again
                    again = self._settle(run)
                    resend = set(again)
                    to_send = deque([*again, *(seq for seq in to_send if seq not in resend)])
                else:
                    again = []
                seq = to_send[0] if to_send else run.count
                self.out.warn(f" [!] connection lost while sending #{seq} ({reason})")
                self.out.event("connection_lost", run_id=run.run_id, seq=seq, reason=reason)
                if not self.ack or not self._reopen(run, again):
                    run.not_sent.extend(to_send)
                    return reason

    def _settle(self, run: Run) -> list[int]:
        """Book what the window's broker confirmed or refused; the tasks it had not confirmed."""
        assert self.window is not None
        run.sent.extend(self.window.confirmed)
        run.not_sent.extend(self.window.refused)
        self.window.confirmed.clear()
        self.window.refused.clear()
        return self.window.unconfirmed()

    def _reopen(self, run: Run, again: list[int]) -> bool:
        """Reconnect; the tasks in ``again`` will be sent again: their confirmation never came (they may be stored)."""
        try:
            self.open()
        except BrokerError as exc:
            self.out.warn(f" [!] {exc}")
            return False
        if again:
            run.resent.extend(again)
            self.out.say(f" [*] Reconnected: sending again {seq_list(again)}, unconfirmed when the connection was lost")
            for seq in again:
                self.out.event("resent", run_id=run.run_id, seq=seq)
        else:
            self.out.say(" [*] Reconnected: every task sent so far was confirmed")
        return True


def main(argv: list[str] | None = None) -> int:
    args, options = parse_args(argv)
    # As PID 1 in a container a process ignores SIGTERM unless it handles it.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    out = Output({"program": "producer"}, feed=True)
    try:
        return produce(args, options, out)
    finally:
        out.flush()


def produce(args: argparse.Namespace, options: cli.BrokerOptions, out: Output) -> int:
    producer = Producer(options, out)
    producer.open()
    run = Run(new_run_id(), args.count, args.message, options.queue)
    guarantee = "persistent, confirmed by the broker" if producer.ack else "transient, not confirmed"
    out.say(
        f" [*] Run {run.run_id}: {run.count} tasks to queue '{run.spec.name}' ({options.mode.value} mode: {guarantee})"
    )
    out.event(
        "run_started",
        run_id=run.run_id,
        count=run.count,
        mode=options.mode.value,
        queue=run.spec.name,
        node=producer.node,
    )
    producer.tell_feed()
    lost_for_good = producer.publish_run(run, args.rate)
    out.event(
        "run_finished",
        run_id=run.run_id,
        sent=len(run.sent),
        confirmed=len(run.sent) if producer.ack else None,
        unconfirmed=run.not_sent,
        resent=run.resent,
    )
    producer.tell_feed()
    again = f" ({len(run.resent)} sent again after a lost connection: {seq_list(run.resent)})" if run.resent else ""
    if producer.blocked.seconds:
        again += f" (blocked {producer.blocked.seconds:.1f} s by the broker's resource alarm)"
    if producer.ack:
        out.say(f" [x] Run {run.run_id}: {len(run.sent)} sent, {len(run.sent)} confirmed by the broker{again}")
    else:
        out.say(f" [x] Run {run.run_id}: {len(run.sent)} sent (noack mode: no confirmation asked)")
    out.flush()
    if run.not_sent:
        what = "not confirmed by the broker" if producer.ack else "not sent"
        reason = f" (connection lost: {lost_for_good})" if lost_for_good else ""
        raise BrokerError(f"{len(run.not_sent)} of {run.count} tasks {what}: {seq_list(run.not_sent)}{reason}")
    producer.close()
    return 0


def entry_point() -> NoReturn:
    """``workqueue-new-task`` (the console script) and ``python -m workqueue.producer.new_task``."""
    cli.run(PROG, main)


if __name__ == "__main__":
    entry_point()
