"""The live view: while tasks run, the queue and every worker, refreshed in the terminal.

    python -m report.watch [--url URL] [--password-file FILE] [--mode ack|noack] [--run RUN_ID]
    make watch   (finds the broker and its password from the inventory, as the playbooks do)

It listens on two sources, each for what only it knows:
- the broker, asked at every refresh on the AMQP port (a passive declare of the
  mode's queue): how many tasks wait in the queue and how many workers consume.
  Only the broker counts tasks that no worker has seen yet.
- the workers' events, which every worker publishes in batches (at most five
  a second, and a word every 5 s when idle) to the fanout exchange
  ``workqueue.events``: the task each one has in hand and its counts. Only a
  worker knows which task it is doing.
No management plugin is needed (the lab leaves it off by default): the view
uses the programs' own port, user and password. In ack mode the broker's
unacknowledged count is the tasks the workers hold, which the events tell.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from report import lab_settings
from report.live import LiveState
from report.terminal import columns
from workqueue import cli
from workqueue.connection import BrokerError, connect, describe
from workqueue.output import read_events
from workqueue.queues import EVENTS_EXCHANGE, Mode, QueueSpec, declare_events, queue_spec
from workqueue.tasks import RUN_ID

PROG = "python -m report.watch"
CLEAR = "\x1b[H\x1b[2J"
HEADER = ["worker", "state", "in hand", "received", "done", "redelivered to it", "not finished"]


@dataclass(frozen=True)
class QueueCount:
    ready: int | None  # None: the queue does not exist (yet)
    consumers: int


@dataclass(frozen=True)
class WatchConfig:
    options: cli.BrokerOptions
    run: str | None
    interval: float
    duration: float


def parse_args(argv: list[str] | None) -> WatchConfig:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    cli.add_broker_options(parser)
    parser.add_argument(
        "--inventory",
        type=Path,
        help="find the broker from this inventory when no --url or AMQP_URL is given "
        "(default inventory/lab.yml, else the virtual lab's)",
    )
    parser.add_argument("--run", help="follow this run (default: the newest one the workers work on)")
    parser.add_argument("--interval", help="seconds between refreshes (default 1)")
    parser.add_argument("--duration", help="stop after this many seconds (default 3600)")
    args = parser.parse_args(argv)
    if args.run is not None and not RUN_ID.match(args.run):
        parser.error(f"--run: {args.run!r} is not a run id like 20261127-120304-3fa2 (the producer prints it)")
    if args.url is None and not os.environ.get("AMQP_URL"):
        try:
            settings = lab_settings.from_inventory(args.inventory or lab_settings.default_inventory())
        except lab_settings.SettingsError as exc:
            cli.fail(PROG, str(exc))
        args.url = settings.url
        args.password_file = args.password_file or settings.password_file
        args.ca_file = args.ca_file or settings.ca_file
        args.mode = args.mode or settings.mode
    return WatchConfig(
        options=cli.resolve_broker_options(parser, args),
        run=args.run,
        interval=cli.option(parser, args.interval, "--interval", "WATCH_INTERVAL", cli.non_negative_float, 1.0),
        duration=cli.option(parser, args.duration, "--duration", "WATCH_DURATION", cli.non_negative_float, 3600.0),
    )


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    options = config.options
    connection = connect(options.broker, options.connect_timeout)
    assert connection is not None  # no stop flag: connect returns None only when asked to stop
    state = LiveState(run_filter=config.run, mode=options.mode)
    counts_channel: BlockingChannel | None = None
    tty = sys.stdout.isatty()
    deadline = time.monotonic() + config.duration
    try:
        listen(connection.channel(), state)
        while True:
            # Hear the workers until the next refresh (pika returns early when events came in).
            next_frame = time.monotonic() + max(config.interval, 0.05)
            while (left := next_frame - time.monotonic()) > 0:
                connection.process_data_events(time_limit=left)
            # The workers say which mode they run in; until one speaks, the mode asked for.
            mode = state.mode or options.mode
            spec = queue_spec(mode) if mode is not options.mode else options.queue
            counts_channel, count = queue_count(connection, counts_channel, spec)
            frame = render(state, count, spec, mode, options, time.time())
            print(CLEAR + frame if tty else frame + "\n", flush=True)
            if time.monotonic() >= deadline:
                return 0
    except pika.exceptions.AMQPConnectionError as exc:
        raise BrokerError(f"lost the broker ({describe(exc)}): start the view again when it is back") from None
    finally:
        if connection.is_open:
            connection.close()


def listen(channel: BlockingChannel, state: LiveState) -> None:
    """Hear the workers' events on a queue of our own, gone when we are."""
    declare_events(channel)
    ours = channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
    channel.queue_bind(ours, EVENTS_EXCHANGE)

    def heard(ch: BlockingChannel, method: object, properties: object, body: bytes) -> None:
        for event in read_events(body.decode("utf-8", "replace").splitlines()):
            state.apply(event)

    channel.basic_consume(ours, heard, auto_ack=True)


def queue_count(
    connection: pika.BlockingConnection, channel: BlockingChannel | None, spec: QueueSpec
) -> tuple[BlockingChannel | None, QueueCount]:
    """The broker's count of ready tasks; a queue not declared yet closes the channel, so it is kept apart."""
    if channel is None or not channel.is_open:
        channel = connection.channel()
    try:
        declared = channel.queue_declare(spec.name, passive=True).method
    except pika.exceptions.ChannelClosedByBroker:
        return None, QueueCount(None, 0)
    return channel, QueueCount(declared.message_count, declared.consumer_count)


def render(
    state: LiveState, count: QueueCount, spec: QueueSpec, mode: Mode, options: cli.BrokerOptions, now: float
) -> str:
    lines = [f"workqueue live view, {time.strftime('%H:%M:%S', time.localtime(now))} (Ctrl+C to stop)"]
    lines.append(f"broker: {options.broker.where}, {mode.value} mode")
    if count.ready is None:
        lines.append(f"queue '{spec.name}': not declared yet (no worker or producer has started in this mode)")
    else:
        if mode is Mode.ACK:
            unacked = f"{state.unacknowledged()} unacknowledged (held by workers)"
        else:
            unacked = "0 unacknowledged (noack: acknowledged on delivery)"
        lines.append(f"queue '{spec.name}': {count.ready} ready (broker), {unacked}, {count.consumers} consumers")
    lines.append(f"run: {state.run_id or 'none yet (no task received since the view started)'}")
    if foreign := state.foreign_line():
        lines.append(foreign + " (not part of the run)")
    lines.append("")
    rows = state.rows(now)
    if rows:
        lines += columns(HEADER + (["broker node"] if state.nodes_column else []), rows)
    else:
        lines.append("no worker heard yet: each one speaks within 5 s once it consumes")
    return "\n".join(lines)


if __name__ == "__main__":
    cli.run(PROG, main)
