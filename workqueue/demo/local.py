"""The tutorial on this machine, as processes: a broker, three workers, a producer, one worker stopped.

    python -m workqueue.demo.local [--seconds-per-dot S]   (the tests add --node tests: their own RabbitMQ node)

Two rounds, the same ten tasks each: first in noack mode, where the stopped
worker's tasks are lost; then in ack mode, where they are redelivered to the
other workers. The workers' lines are shown live, then what became of each task.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import pika

from workqueue.machine import local_broker
from workqueue.machine.packages import SetupError
from workqueue.queues import Mode
from workqueue.report import fates, terminal
from workqueue.report.gathered import Container, Gathered, QueueState
from workqueue.virtual_lab.processes import LocalLab, Program, done_seqs

TASKS = 10
QUEUES = ("hello", "task_queue", "task_queue.rejected")


def follow(programs: list[Program], stop: threading.Event) -> None:
    """Print the programs' lines as they come, each with its name."""
    offsets = dict.fromkeys((p.name for p in programs), 0)
    while not stop.is_set():
        for program in programs:
            lines = program.lines()
            for line in lines[offsets[program.name] :]:
                print(f"  {program.name:9} |{line}", flush=True)
            offsets[program.name] = len(lines)
        time.sleep(0.1)


NODES = {"machine": local_broker.MACHINE, "tests": local_broker.TESTS}
VHOST = "workqueue-demo"


def fresh_queues(url: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    for name in QUEUES:
        channel.queue_delete(name)
    connection.close()


def round_of(node: local_broker.Node, mode: Mode, seconds_per_dot: float, workdir: Path) -> None:
    url = node.url(VHOST)
    fresh_queues(url)
    (workdir / mode).mkdir()
    lab = LocalLab(workdir / mode, url)
    stop = threading.Event()
    workers = lab.workers(3, "--mode", mode, "--seconds-per-dot", str(seconds_per_dot))
    viewer = threading.Thread(target=follow, args=(workers, stop), daemon=True)
    viewer.start()
    try:
        producer = lab.produce(str(TASKS), "--mode", mode)
        print(f"  producer  |{producer.lines()[-1]}", flush=True)
        victim = workers[1]
        victim.wait_for_event("done", timeout=60)
        print(f"\n  >>> stopping {victim.name} (SIGTERM, what docker stop sends) while it holds tasks\n", flush=True)
        victim.signal(signal.SIGTERM)
        victim.wait(timeout=10)
        survivors = [w for w in workers if w is not victim]

        def finished() -> bool:
            if mode is Mode.ACK:  # every task, the redelivered ones included
                return set(done_seqs(workers)) == set(range(1, TASKS + 1))
            return all(len(w.events("done")) == len(w.events("received")) for w in survivors)

        survivors[0].wait_for(finished, TASKS * TASKS * seconds_per_dot + 30, "the tasks finished")
        time.sleep(0.3)
        stop.set()
        viewer.join()
        summarize(node, mode, workers, victim, producer)  # while the others still run
    finally:
        stop.set()
        viewer.join()
        lab.stop_all()


def summarize(node: local_broker.Node, mode: Mode, workers: list[Program], victim: Program, producer: Program) -> None:
    """The report of the round, as playbooks/report.yml gives it for a lab (the workers are processes here)."""
    queues = [
        QueueState(name, ready, unacked, 0) for name, (ready, unacked) in local_broker.queue_counts(node, VHOST).items()
    ]
    gathered = Gathered(
        containers=[Container("local", w.name, w is not victim, "", w.events()) for w in workers],
        producer_events=producer.events(),
        queues=queues,
    )
    run_id = fates.last_run(gathered)
    assert run_id is not None  # the producer's record names it
    print(f"\n  {mode} mode: what became of the {TASKS} tasks")
    for line in terminal.render(fates.build(gathered, run_id)).splitlines():
        print(f"    {line}")
    print(flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m workqueue.demo.local", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds-per-dot", type=float, default=0.3, help="work per dot (default 0.3 s)")
    parser.add_argument("--node", choices=sorted(NODES), default="machine", help=argparse.SUPPRESS)
    args = parser.parse_args()
    node = NODES[args.node]
    try:
        local_broker.ensure_broker(node)
        local_broker.prepare_vhost(node, VHOST)
    except SetupError as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        for mode, lesson in [
            (Mode.NOACK, "noack: each task is acknowledged as soon as it is delivered"),
            (Mode.ACK, "ack: durable queue, persistent tasks, acknowledged after the work"),
        ]:
            print(f"=== {lesson}\n", flush=True)
            round_of(node, mode, args.seconds_per_dot, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
