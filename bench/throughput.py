"""The worker's and producer's throughput against bare pika loops, in one run, on one broker.

    python bench/throughput.py [--messages N] [--rounds R]

Zero-dot tasks, so that only the messaging is measured. Each program is timed
by its own events (first received to last done; run started to run finished),
each bare loop from its first to its last message, so process start-up and
connecting count on neither side. Rates move from run to run: compare ratios,
medians of rounds that interleave both sides, of runs long enough (seconds, not
a fraction of one) that a moment of the machine's does not decide them.

Columns: ``bare`` is a bare pika loop; ``second`` is, for the worker, bare pika
printing the tutorial's two lines per task (the tutorial's own worker), and for
the producer in ack mode, pika's blocking confirms (one task at a time). The
producer's ``bare`` is unconfirmed publishing, in ack mode too (persistent tasks).
Targets (issue 12): worker at least 0.9 of the tutorial's loop (1.0 at prefetch 1);
producer with confirms at least 0.5 of unconfirmed publishing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pika

from workqueue.events import read_events
from workqueue.machine import local_broker
from workqueue.queues import Mode, declare, queue_spec
from workqueue.tasks import new_run_id, task_properties
from workqueue.virtual_lab.processes import PRODUCER, WORKER

ROOT = Path(__file__).resolve().parents[1]
RUN = new_run_id()

NODE = local_broker.MACHINE
# A vhost of the benchmark's own, set up as the lab's (default queue type, policies).
VHOST = "workqueue-bench"
URL = NODE.url(VHOST)
# Where a task costs a round trip (pika's blocking confirms, about 1,800 tasks a second; a
# consumer at prefetch 1, about 2,200), the rate is steady and taken on this many tasks.
ROUND_TRIP_SAMPLE = 20_000


def channel_for(mode: Mode) -> tuple[pika.BlockingConnection, pika.adapters.blocking_connection.BlockingChannel]:
    connection = pika.BlockingConnection(pika.URLParameters(URL))
    channel = connection.channel()
    spec = queue_spec(mode)
    channel.queue_delete(spec.name)
    declare(channel, spec)
    return connection, channel


def bare_publish(mode: Mode, count: int, confirms: bool) -> float:
    """Bare pika publishing the mode's tasks; with ``confirms``, waiting for each confirmation (pika's blocking way)."""
    connection, channel = channel_for(mode)
    spec = queue_spec(mode)
    if confirms:
        channel.confirm_delivery()
    start = time.perf_counter()
    for seq in range(1, count + 1):
        properties = task_properties(RUN, seq, count, persistent=spec.persistent_messages, user="guest")
        channel.basic_publish("", spec.name, b"task #%d" % seq, properties, mandatory=confirms)
    elapsed = time.perf_counter() - start
    connection.close()
    return count / elapsed


def fill(mode: Mode, count: int) -> None:
    """Queue tasks for a drain measurement: unconfirmed (faster), then wait until the broker holds them all."""
    connection, channel = channel_for(mode)
    spec = queue_spec(mode)
    for seq in range(1, count + 1):
        properties = task_properties(RUN, seq, count, persistent=spec.persistent_messages, user="guest")
        channel.basic_publish("", spec.name, b"task #%d" % seq, properties)
    deadline = time.monotonic() + 120
    while channel.queue_declare(spec.name, passive=True).method.message_count < count:
        if time.monotonic() > deadline:
            raise SystemExit("the broker did not queue every task within 120 s")
        time.sleep(0.1)
    connection.close()


def bare_consume(mode: Mode, count: int, prefetch: int, prints: bool = False) -> float:
    """A bare pika consumer; with ``prints``, one that prints the tutorial's two lines per task (to a file)."""
    fill(mode, count)
    connection = pika.BlockingConnection(pika.URLParameters(URL))
    channel = connection.channel()
    spec = queue_spec(mode)
    ack = mode is Mode.ACK
    if ack:
        channel.basic_qos(prefetch_count=prefetch)
    seen = 0
    first = last = 0.0
    sink = open(os.devnull if not prints else tempfile.mktemp(), "w")  # noqa: SIM115

    def on_message(ch: Any, method: Any, properties: Any, body: bytes) -> None:
        nonlocal seen, first, last
        if seen == 0:
            first = time.perf_counter()
        seen += 1
        if prints:
            print(f" [x] Received {body.decode()!r}", file=sink)
        if ack:
            ch.basic_ack(method.delivery_tag)
        if prints:
            print(" [x] Done", file=sink)
        if seen == count:
            last = time.perf_counter()
            ch.stop_consuming()

    channel.basic_consume(spec.name, on_message, auto_ack=not ack)
    channel.start_consuming()
    connection.close()
    sink.close()
    return (count - 1) / (last - first)


def run_events(command: list[str], workdir: Path, name: str) -> tuple[subprocess.Popen[bytes], Path]:
    out, err = workdir / f"{name}.out", workdir / f"{name}.err"
    process = subprocess.Popen(command, stdout=out.open("wb"), stderr=err.open("wb"))
    return process, err


def events_of(err: Path, kind: str) -> list[dict[str, Any]]:
    return [e for e in read_events(err.read_text().splitlines()) if e["event"] == kind]


def worker_drain(mode: Mode, count: int, prefetch: int, workdir: Path, connect: tuple[str, ...] = ()) -> float:
    """The worker's rate; ``connect``: how it reaches the broker (default --url URL)."""
    fill(mode, count)
    command = [
        *WORKER,
        "--mode",
        mode.value,
        "--seconds-per-dot",
        "0",
        *(connect or ("--url", URL)),
    ]
    if mode is Mode.ACK:
        command += ["--prefetch", str(prefetch)]
    process, err = run_events(command, workdir, f"worker-{mode.value}-{prefetch}")
    deadline = time.monotonic() + 300
    # Counted from the new bytes only: parsing the whole log every turn would take the CPU
    # the worker and the broker share with this loop (a bare loop runs in this process, unwatched).
    done, partial = 0, b""
    with err.open("rb") as log:
        while done < count and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.5)
            data = partial + log.read()
            whole = data.rfind(b"\n") + 1  # a line being written is counted next time
            done += data[:whole].count(b'"event":"done"')
            partial = data[whole:]
    process.terminate()
    process.wait(timeout=30)
    received, finished = events_of(err, "received"), events_of(err, "done")
    if len(finished) < count:
        raise SystemExit(f"worker did {len(finished)} of {count} tasks: see {err}")
    # Event times are in milliseconds: long runs keep the rounding negligible.
    return (count - 1) / (float(finished[-1]["ts"]) - float(received[0]["ts"]))


def producer_publish(mode: Mode, count: int, workdir: Path, connect: tuple[str, ...] = ()) -> float:
    channel_for(mode)[0].close()  # an empty queue, as for the bare loop
    command = [
        *PRODUCER,
        str(count),
        "task",
        "--mode",
        mode.value,
        *(connect or ("--url", URL)),
    ]
    process, err = run_events(command, workdir, f"producer-{mode.value}")
    if process.wait(timeout=600) != 0:
        raise SystemExit(f"producer failed: see {err}")
    started, finished = events_of(err, "run_started")[0], events_of(err, "run_finished")[0]
    return count / (float(finished["ts"]) - float(started["ts"]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # 20,000 tasks drained in under half a second: too short, the machine's moods decided the ratios.
    parser.add_argument("--messages", type=int, default=100_000, help="messages per measurement (default 100000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds, each measuring everything once (default 5)")
    args = parser.parse_args()
    local_broker.ensure_broker(NODE)
    local_broker.prepare_vhost(NODE, VHOST)
    n = args.messages
    n_round_trip = min(n, ROUND_TRIP_SAMPLE)  # where each task waits for the broker (see ROUND_TRIP_SAMPLE)
    consume = [
        ("consume, noack", Mode.NOACK, 0),
        ("consume, ack, prefetch 1", Mode.ACK, 1),
        ("consume, ack, prefetch 50", Mode.ACK, 50),
    ]
    publish = [("publish, noack (no confirms)", Mode.NOACK), ("publish, ack (confirms, window)", Mode.ACK)]
    samples: dict[str, list[tuple[float, float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for _ in range(args.rounds):
            # Rounds interleave the two sides, so that a slow moment of the machine hits both.
            for label, mode, prefetch in consume:
                count = n_round_trip if prefetch == 1 else n
                bare = bare_consume(mode, count, prefetch)
                printing = bare_consume(mode, count, prefetch, prints=True)
                ours = worker_drain(mode, count, prefetch, workdir)
                samples.setdefault(f"worker: {label}", []).append((ours, bare, printing))
            for label, mode in publish:
                # The baseline is unconfirmed publishing (persistent tasks in ack mode); in ack mode the
                # second column is pika's blocking confirms, one task at a time.
                bare = bare_publish(mode, n, confirms=False)
                blocking = float("nan")
                if mode is Mode.ACK:
                    blocking = bare_publish(mode, n_round_trip, confirms=True)
                ours = producer_publish(mode, n, workdir)
                samples.setdefault(f"producer: {label}", []).append((ours, bare, blocking))
        for mode in Mode:
            channel_for(mode)[0].close()
    print(
        f"{n} zero-dot tasks per measurement ({n_round_trip} at prefetch 1 and for blocking confirms),"
        f" broker on loopback, median of {args.rounds} rounds"
    )
    print(f"{'measurement':40} {'ours/s':>8} {'bare/s':>8} {'ratio':>6} {'second/s':>13} {'ratio':>6}")
    for label, rows in samples.items():
        ours, bare, printing = (statistics.median(column) for column in zip(*rows, strict=True))
        extra = f"{printing:13.0f} {ours / printing:6.2f}" if printing == printing else ""
        print(f"{label:40} {ours:8.0f} {bare:8.0f} {ours / bare:6.2f} {extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
