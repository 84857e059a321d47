"""Publish COUNT tasks to the work queue: the tutorial's new_task.py, made robust.

    python producer/new_task.py COUNT [MESSAGE] [--mode ack|noack] [--url URL]

Task i is ``Hello World! #i`` and i dots (i seconds of work), or ``MESSAGE #i``.
In ack mode the tasks are persistent and every one must be confirmed by the
broker (publisher confirms); the program exits 1 naming those that were not.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script from a checkout or the image
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pika.exceptions

from workqueue import cli
from workqueue.connection import BrokerError, connect, describe
from workqueue.output import Output
from workqueue.queues import Mode, declare
from workqueue.tasks import new_run_id, seq_list, task_body, task_properties

PROG = "new_task.py"


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, cli.BrokerOptions]:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("count", metavar="COUNT", help="how many tasks to publish (1 or more)")
    parser.add_argument("message", metavar="MESSAGE", nargs="?", help="task text; each dot is a unit of work")
    cli.add_broker_options(parser)
    args = parser.parse_args(argv)
    try:
        args.count = cli.positive_int(args.count)
    except ValueError as exc:
        parser.error(f"COUNT: {exc}")
    return args, cli.resolve_broker_options(parser, args)


def publish(args: argparse.Namespace, options: cli.BrokerOptions, out: Output) -> int:
    ack = options.mode is Mode.ACK
    spec = options.queue
    connection = connect(
        options.broker,
        options.connect_timeout,
        on_retry=lambda reason, delay: out.warn(f" [!] broker not answering ({reason}); retrying in {delay:g} s"),
    )
    assert connection is not None  # no stop flag here: connect only returns None when asked to stop
    channel = connection.channel()
    declare(channel, spec)
    if ack:
        channel.confirm_delivery()

    run_id = new_run_id()
    guarantee = "persistent, confirmed by the broker" if ack else "transient, not confirmed"
    out.say(f" [*] Run {run_id}: {args.count} tasks to queue '{spec.name}' ({options.mode.value} mode: {guarantee})")
    out.event("run_started", run_id=run_id, count=args.count, mode=options.mode.value, queue=spec.name)

    unconfirmed: list[int] = []
    lost_connection = ""
    sent = 0
    for seq in range(1, args.count + 1):
        body = task_body(seq, args.message)
        properties = task_properties(run_id, seq, args.count, persistent=spec.persistent_messages)
        try:
            channel.basic_publish("", spec.name, body.encode(), properties, mandatory=ack)
        except (pika.exceptions.UnroutableError, pika.exceptions.NackError):
            unconfirmed.append(seq)
            continue
        except (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError) as exc:
            lost_connection = describe(exc)
            unconfirmed.extend(range(seq, args.count + 1))
            break
        sent += 1
        out.say(f" [x] Sent {body!r}")

    confirmed = sent if ack else None
    out.event("run_finished", run_id=run_id, sent=sent, confirmed=confirmed, unconfirmed=unconfirmed)
    if ack:
        out.say(f" [x] Run {run_id}: {sent} sent, {sent} confirmed by the broker")
    else:
        out.say(f" [x] Run {run_id}: {sent} sent (noack mode: no confirmation asked)")
    out.flush()
    if lost_connection or unconfirmed:
        what = "not confirmed by the broker" if ack else "not sent"
        reason = f" (connection lost: {lost_connection})" if lost_connection else ""
        raise BrokerError(f"{len(unconfirmed)} of {args.count} tasks {what}: {seq_list(unconfirmed)}{reason}")
    if connection.is_open:
        connection.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    args, options = parse_args(argv)
    # As PID 1 in a container a process ignores SIGTERM unless it handles it.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    out = Output({"program": "producer"})
    try:
        return publish(args, options, out)
    finally:
        out.flush()


if __name__ == "__main__":
    cli.run(PROG, main)
