"""What both live views hear from the broker: the programs' event feed and the queue's counts.

- the feed: every worker (and the producer, at a run's start and end) publishes its
  events to the fanout exchange ``workqueue.events``; a view binds a queue of its own.
- the counts: a passive declare of a queue answers how many tasks wait in it and
  how many consumers it has. Only the broker knows the tasks no worker has seen yet.

Also the options both views take to find the broker: ``--url`` and friends, or
the lab's inventory, as the playbooks find it.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from workqueue import cli
from workqueue.events import EventReader
from workqueue.queues import EVENTS_EXCHANGE, Mode, QueueSpec, declare_events, queue_spec
from workqueue.report import lab_settings
from workqueue.report.gathered import Event
from workqueue.tasks import RUN_ID


@dataclass(frozen=True)
class QueueCount:
    ready: int | None  # None: the queue does not exist (yet)
    consumers: int


@dataclass(frozen=True)
class ViewOptions:
    """What both live views are told: the broker, the run to follow, how often, for how long."""

    broker: cli.BrokerOptions
    run: str | None
    interval: float
    duration: float


def parse_view_args(
    prog: str, parser: argparse.ArgumentParser, argv: list[str] | None, interval: float, duration: float
) -> tuple[ViewOptions, argparse.Namespace]:
    """Add the options both views take (the broker, or an inventory to find it; the run; the timing), and parse."""
    cli.add_broker_options(parser)
    parser.add_argument(
        "--inventory",
        type=Path,
        help="find the broker from this inventory when no --url or AMQP_URL is given "
        "(default inventory/lab.yml, else the virtual lab's)",
    )
    parser.add_argument("--run", help="follow this run (default: the newest one)")
    parser.add_argument("--interval", help=f"seconds between refreshes (default {interval:g})")
    parser.add_argument("--duration", help=f"stop after this many seconds (default {duration:g})")
    args = parser.parse_args(argv)
    if args.run is not None and not RUN_ID.match(args.run):
        parser.error(f"--run: {args.run!r} is not a run id like 20261127-120304-3fa2 (the producer prints it)")
    options = ViewOptions(
        broker=_broker_options(prog, parser, args),
        run=args.run,
        interval=cli.option(parser, args.interval, "--interval", "WATCH_INTERVAL", cli.non_negative_float, interval),
        duration=cli.option(parser, args.duration, "--duration", "WATCH_DURATION", cli.non_negative_float, duration),
    )
    return options, args


def _broker_options(prog: str, parser: argparse.ArgumentParser, args: argparse.Namespace) -> cli.BrokerOptions:
    if args.url is None and not os.environ.get("AMQP_URL"):
        try:
            settings = lab_settings.from_inventory(args.inventory or lab_settings.default_inventory())
        except lab_settings.SettingsError as exc:
            cli.fail(prog, str(exc))
        args.url = settings.url
        args.password_file = args.password_file or settings.password_file
        args.ca_file = args.ca_file or settings.ca_file
        args.mode = args.mode or settings.mode
    return cli.resolve_broker_options(parser, args)


def mode_queue(options: cli.BrokerOptions, heard: Mode | None) -> tuple[Mode, QueueSpec]:
    """The mode the workers say they run in (until one speaks, the mode asked for) and its queue."""
    mode = heard or options.mode
    return mode, queue_spec(mode) if mode is not options.mode else options.queue


def listen(channel: BlockingChannel, heard: Callable[[list[Event]], None], reader: EventReader) -> None:
    """Hear the feed on a queue of our own, gone when we are; ``heard`` gets each message's events.

    Anyone with the right to publish to the feed can send anything: ``reader`` keeps only
    well-formed events and counts the rest, and a message whose events ``heard`` cannot take
    is counted with them; the view carries on either way.
    """
    declare_events(channel)
    ours = channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
    channel.queue_bind(ours, EVENTS_EXCHANGE)

    def on_message(ch: BlockingChannel, method: object, properties: object, body: bytes) -> None:
        events = list(reader.read(body.decode("utf-8", "replace").splitlines()))
        try:
            heard(events)
        except Exception:  # a combination no check foresaw: that message is dropped, not the view
            reader.dropped += len(events)

    channel.basic_consume(ours, on_message, auto_ack=True)


def queue_count(
    connection: pika.BlockingConnection, channel: BlockingChannel | None, name: str
) -> tuple[BlockingChannel | None, QueueCount]:
    """The broker's count of ready tasks; a queue not declared yet closes the channel, so it is kept apart."""
    if channel is None or not channel.is_open:
        channel = connection.channel()
    try:
        declared = channel.queue_declare(name, passive=True).method
    except pika.exceptions.ChannelClosedByBroker:
        return None, QueueCount(None, 0)
    return channel, QueueCount(declared.message_count, declared.consumer_count)
