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

from report import lab_settings
from report.gathered import Event
from workqueue import cli
from workqueue.output import read_events
from workqueue.queues import EVENTS_EXCHANGE, declare_events


@dataclass(frozen=True)
class QueueCount:
    ready: int | None  # None: the queue does not exist (yet)
    consumers: int


def add_lab_options(parser: argparse.ArgumentParser) -> None:
    """The broker options, and an inventory to find them from when no URL is given."""
    cli.add_broker_options(parser)
    parser.add_argument(
        "--inventory",
        type=Path,
        help="find the broker from this inventory when no --url or AMQP_URL is given "
        "(default inventory/lab.yml, else the virtual lab's)",
    )


def resolve_lab_options(prog: str, parser: argparse.ArgumentParser, args: argparse.Namespace) -> cli.BrokerOptions:
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


def listen(channel: BlockingChannel, heard: Callable[[list[Event]], None]) -> None:
    """Hear the feed on a queue of our own, gone when we are; ``heard`` gets each message's events."""
    declare_events(channel)
    ours = channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
    channel.queue_bind(ours, EVENTS_EXCHANGE)

    def on_message(ch: BlockingChannel, method: object, properties: object, body: bytes) -> None:
        heard(list(read_events(body.decode("utf-8", "replace").splitlines())))

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
