"""The live view: while tasks run, the queue and every worker, refreshed in the terminal.

    python -m workqueue.report.watch [--url URL] [--password-file FILE] [--mode ack|noack] [--run RUN_ID]
    make watch   (finds the broker and its password from the inventory, as the playbooks do)

It listens on two sources, each for what only it knows:
- the broker, asked at every refresh on the AMQP port (a passive declare of the
  mode's queue): how many tasks wait in the queue and how many workers consume.
  Only the broker counts tasks that no worker has seen yet.
- the workers' events, which every worker publishes in batches (at most five
  a second, and a word every 5 s when idle) to the fanout exchange
  ``workqueue.events``: the task each one has in hand and its counts. Only a
  worker knows which task it is doing.
No management plugin is needed: the view uses the programs' own port, user and
password. In ack mode the broker's unacknowledged count is the tasks the workers
hold, which the events tell. Where the management plugin is on (a cluster of
brokers turns it on), the view also names the node that leads the queue
(``report.leader``). While the broker blocks its publishers (a resource alarm: low on
disk or memory), the view says so, and since when (``report.alarm``).
"""

from __future__ import annotations

import argparse
import sys
import time

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from workqueue import cli
from workqueue.connection import BrokerError, connect, describe
from workqueue.events import EventReader
from workqueue.queues import Mode, QueueSpec
from workqueue.report import feed
from workqueue.report.alarm import AlarmProbe
from workqueue.report.leader import LeaderProbe, led_by
from workqueue.report.live import LiveState
from workqueue.report.terminal import columns

PROG = "python -m workqueue.report.watch"
CLEAR = "\x1b[H\x1b[2J"
HEADER = ["worker", "state", "in hand", "received", "done", "redelivered to it", "not finished"]


def parse_args(argv: list[str] | None) -> feed.ViewOptions:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    return feed.parse_view_args(PROG, parser, argv, interval=1.0, duration=3600.0)[0]


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    options = config.broker
    connection = connect(options.broker, options.connect_timeout)
    assert connection is not None  # no stop flag: connect returns None only when asked to stop
    state = LiveState(run_filter=config.run, mode=options.mode)
    reader = EventReader()
    leader = LeaderProbe(options.broker)
    alarm = AlarmProbe(options.broker)
    counts_channel: BlockingChannel | None = None
    tty = sys.stdout.isatty()
    deadline = time.monotonic() + config.duration
    try:
        feed.listen(connection.channel(), lambda events: state.apply_all(events, time.time()), reader)
        while True:
            # Hear the workers until the next refresh (pika returns early when events came in).
            next_frame = time.monotonic() + max(config.interval, 0.05)
            while (left := next_frame - time.monotonic()) > 0:
                connection.process_data_events(time_limit=left)
            mode, spec = feed.mode_queue(options, state.mode)
            counts_channel, count = feed.queue_count(connection, counts_channel, spec.name)
            frame = render(
                state, count, spec, mode, options, time.time(), leader.leader(spec.name), reader.dropped, alarm.state()
            )
            print(CLEAR + frame if tty else frame + "\n", flush=True)
            if time.monotonic() >= deadline:
                return 0
    except pika.exceptions.AMQPConnectionError as exc:
        raise BrokerError(f"lost the broker ({describe(exc)}): start the view again when it is back") from None
    finally:
        alarm.close()
        if connection.is_open:
            connection.close()


def render(
    state: LiveState,
    count: feed.QueueCount,
    spec: QueueSpec,
    mode: Mode,
    options: cli.BrokerOptions,
    now: float,
    leader: str = "",
    dropped: int = 0,
    alarm: str = "",
) -> str:
    lines = [f"workqueue live view, {time.strftime('%H:%M:%S', time.localtime(now))} (Ctrl+C to stop)"]
    lines.append(f"broker: {options.broker.where}, {mode.value} mode")
    if alarm:
        lines.append(alarm)
    if count.ready is None:
        lines.append(f"queue '{spec.name}': not declared yet (no worker or producer has started in this mode)")
    else:
        if mode is Mode.ACK:
            unacked = f"{state.unacknowledged()} unacknowledged (held by workers)"
        else:
            unacked = "0 unacknowledged (noack: acknowledged on delivery)"
        consumers = f"{count.consumers} consumers{led_by(leader)}"
        lines.append(f"queue '{spec.name}': {count.ready} ready (broker), {unacked}, {consumers}")
    lines.append(f"run: {state.run_id or 'none yet (no task received since the view started)'}")
    if foreign := state.foreign_line():
        lines.append(foreign + " (not part of the run)")
    if dropped:
        lines.append(f"feed: {dropped} malformed events dropped (not the programs'; someone publishes to the feed)")
    lines.append("")
    rows = state.rows(now)
    if rows:
        lines += columns(HEADER + (["broker node"] if state.nodes_column else []), rows)
    else:
        lines.append("no worker heard yet: each one speaks within 5 s once it consumes")
    return "\n".join(lines)


if __name__ == "__main__":
    cli.run(PROG, main)
