"""What a class of students' programs send to the lab, by mistake or to see what happens.

    python -m workqueue.producer.students [--run RUN_ID] [--lab-user NAME] [--url URL] [--password-file FILE]
        [--mode ...]

``playbooks/drill.yml -e fault=students`` runs it during a run, with the class's account
(guest in guest mode). One line for each try, and what the broker said:

- poison tasks into the mode's queue (allowed: a student may publish tasks): ids and
  headers of every type and encoding, a forged run label, escapes, a megabyte, a day of
  work, an empty body, a body that is not UTF-8. The workers do or reject each
  one, one line each, and keep running; the report lists them apart from the run.
- events forged on the live views' feed, a run's task forged with the lab's own
  ``user_id``, a queue of another name: refused to the class account (its rights,
  docs/students.md). Guest has every right: the lab then copes instead (the views drop
  and count forged events; the forged task is listed apart from the run).

It never purges or deletes the task queue, which the class's rights allow (one right
declares and deletes a queue): the run's waiting tasks would go with it. Nor does it
delete the feed, which guest may: the workers would declare it again, but the live views
open now would hear nothing more. Exit 0 once every try is made, whatever the broker
answered; 1, in one line, when it cannot connect.
"""

from __future__ import annotations

import argparse
import datetime
import decimal
import json
import time
from collections.abc import Callable

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from workqueue import cli
from workqueue.connection import BrokerError, connect, describe
from workqueue.queues import EVENTS_EXCHANGE
from workqueue.tasks import MAX_TASKS, RUN_ID, new_run_id

PROG = "students.py"
Try = Callable[[BlockingChannel], object]


def poison(run_id: str | None = None) -> list[tuple[pika.BasicProperties, bytes]]:
    """Tasks of every shape a class's programs send; ``run_id``: the run whose label one of them copies."""
    forged_run = {"run_id": run_id or new_run_id(), "seq": 3}
    return [
        (pika.BasicProperties(message_id=b"\xff\xfe not UTF-8"), b"id of bytes ."),  # once killed every worker
        (pika.BasicProperties(headers={"run_id": b"\xff", "seq": "3"}), b"headers of the wrong types"),
        (pika.BasicProperties(headers={"seq": 10**15, "run_id": "../../x"}), b"a task number from nowhere"),
        (pika.BasicProperties(headers=forged_run), b"a run's label, sent by another user"),
        (
            pika.BasicProperties(
                headers={"d": decimal.Decimal("1.5"), "t": datetime.datetime(2026, 1, 1), "n": {"l": [1, None, b"x"]}}
            ),
            b"every table type",
        ),
        (pika.BasicProperties(app_id="pc7\n\x1b[2J", content_type="\x00"), b"escapes in the properties"),
        (pika.BasicProperties(), b"a" * 1_000_000),  # a megabyte, no work
        # A day of work at a second a dot: past any worker's limit (max_task_seconds), whatever its pace.
        (pika.BasicProperties(), b"Hello World! " + b"." * 100_000),
        (pika.BasicProperties(), b""),
        (pika.BasicProperties(), b"\xc3\x28 not UTF-8"),
        (pika.BasicProperties(message_id="\u2028\x85 line ends"), b"line ends in the id"),
    ]


# Events no program writes, as anyone who may publish to the feed can send them.
FORGED_EVENTS = (
    {"event": "alive", "host": "x", "worker": "y", "ts": "a"},
    {"event": "alive", "host": "x", "worker": "y"},
    {"event": "alive", "host": "x", "worker": "y", "ts": 1e300},
    {"event": "received", "host": "\x1b[2J", "worker": "w", "ts": time.time(), "seq": 10**9},
)


def publish_poison(queue: str, persistent: bool, messages: list[tuple[pika.BasicProperties, bytes]]) -> Try:
    """Mandatory: a queue that does not exist (no worker has declared it yet) hands them back, and it is said."""

    def publish(channel: BlockingChannel) -> None:
        for properties, body in messages:
            properties.delivery_mode = 2 if persistent else 1
            channel.basic_publish("", queue, body, properties, mandatory=True)

    return publish


def forge_events(channel: BlockingChannel) -> None:
    for event in FORGED_EVENTS:
        channel.basic_publish(EVENTS_EXCHANGE, "", json.dumps(event).encode())


def forge_run_task(queue: str, run_id: str | None, lab_user: str) -> Try:
    """A task labelled as the run's last, with the lab's login as its sender: past the run's count, if let in."""
    headers = {"run_id": run_id or new_run_id(), "seq": MAX_TASKS}

    def publish(channel: BlockingChannel) -> None:
        channel.basic_publish("", queue, b"a forged task .", pika.BasicProperties(user_id=lab_user, headers=headers))

    return publish


def tries(queue: str, persistent: bool, run_id: str | None, lab_user: str) -> list[tuple[str, Try]]:
    """What the class tries, in turn: each on a channel of its own (a refusal closes its channel)."""
    messages = poison(run_id)
    return [
        (f"{len(messages)} poison tasks into {queue}", publish_poison(queue, persistent, messages)),
        (f"{len(FORGED_EVENTS)} forged events on the live-view feed {EVENTS_EXCHANGE}", forge_events),
        (
            f"a task of run {run_id or '(a new id)'} forged with user_id {lab_user}",
            forge_run_task(queue, run_id, lab_user),
        ),
        # Exclusive: where it is let in (guest), it goes with this connection.
        ("a queue of another name declared (my_queue)", lambda ch: ch.queue_declare("my_queue", exclusive=True)),
    ]


def attempt(connection: pika.BlockingConnection, action: Try) -> str:
    """``allowed``, or ``refused (CODE TEXT)``. With confirms on, a refused publish closes its channel at once."""
    channel = connection.channel()
    try:
        channel.confirm_delivery()
        action(channel)
        connection.process_data_events(time_limit=0.3)
        channel.basic_qos(prefetch_count=1)  # a call on a channel the broker closed raises why
    except pika.exceptions.ChannelClosedByBroker as refused:
        return f"refused ({refused.reply_code} {refused.reply_text.split(' ')[0]})"
    except pika.exceptions.UnroutableError:
        return "allowed, but routed to no queue (none of that name declared yet)"
    if channel.is_open:
        channel.close()
    return "allowed"


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, cli.BrokerOptions]:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", help="the run whose label a poison task copies (default: a new id)")
    parser.add_argument("--lab-user", default="workqueue", help="the lab's own login, which a forged task claims")
    cli.add_broker_options(parser)
    args = parser.parse_args(argv)
    if args.run is not None and not RUN_ID.match(args.run):
        parser.error(f"--run: {args.run!r} is not a run id like 20261127-120304-3fa2")
    return args, cli.resolve_broker_options(parser, args)


def main(argv: list[str] | None = None) -> int:
    args, options = parse_args(argv)
    connection = connect(options.broker, options.connect_timeout)
    if connection is None:
        return 130
    queue = options.queue
    # No quotes in the lines: drill.yml shows them as YAML, which would double them.
    print(f"{PROG}: as user {options.broker.user}, during the run {args.run or '(none)'}")
    try:
        for what, action in tries(queue.name, queue.persistent_messages, args.run, args.lab_user):
            print(f"{PROG}: {what}: {attempt(connection, action)}", flush=True)
    except pika.exceptions.AMQPConnectionError as exc:
        raise BrokerError(f"lost the broker ({describe(exc)}): what is said above was tried") from None
    finally:
        if connection.is_open:
            connection.close()
    return 0


if __name__ == "__main__":
    cli.run(PROG, main)
