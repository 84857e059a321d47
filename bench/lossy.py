"""A lossy link between a worker host and the broker: what each loss rate costs, at each heartbeat.

    python bench/lossy.py [--losses 10,30,50] [--heartbeats 8,30] [--duration 60]   (make bench-lossy)

A virtual lab of its own (benchlab, 10.210.5.0/24: a broker, two worker hosts, a producer),
ack mode. For each heartbeat: site.yml with it; then for each loss rate, a run of one-second
tasks and `drill.yml -e fault=lossy -e loss=PERCENT` on the second worker host for `duration`
seconds (the drill strikes when it holds a task). Measured, from the workers' own events and
report.yml's: how often the lossy worker's connection dropped (the broker or the worker gave up
on it: missed heartbeats), whether its process ended (Docker's restart count: 0 expected), the
tasks done twice, the tasks the lossy worker finished while the loss lasted (its pace against the
healthy one's), and the lost (0 expected). Traffic stays on
the lab's own network. The lab is removed at the end (`--keep` keeps it).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import docker

from workqueue.machine import engine, images
from workqueue.virtual_lab import hosts, lab_runs
from workqueue.virtual_lab.lab_runs import container_events, done_by, drill_on_cue, run_id_of, wait_until

BENCH_LAB = hosts.Lab(name="benchlab", subnet_prefix="10.210.5")
SECONDS_PER_DOT = 0.2
MESSAGE = "work....."  # five dots: one second of work
SETTLE_TIMEOUT = 600.0
WORKER = lab_runs.WORKER_CONTAINER.format(1)
PACE = "done during the loss, lossy / healthy (pace)"


@dataclass(frozen=True)
class Trial:
    heartbeat: int
    loss: int
    drops: int  # the lossy worker's connections lost while the loss lasted (and one heartbeat timeout after)
    twice: int
    lost: int
    restarts: int  # the lossy worker's process ended and Docker started it again (a crash: 0 expected)
    lossy_done: int  # tasks the lossy worker finished while the loss lasted
    healthy_done: int  # the same, for the healthy worker
    reasons: tuple[str, ...]

    def row(self) -> str:
        pace = f"{self.lossy_done / self.healthy_done:.2f}" if self.healthy_done else "-"
        why = "; ".join(sorted(set(self.reasons))) or "-"
        return (
            f"| {self.heartbeat} s | {self.loss} % | {self.drops} | {self.twice} | {self.lost} | {self.restarts} "
            f"| {self.lossy_done} / {self.healthy_done} ({pace}) | {why} |"
        )


class Bench:
    def __init__(self, client: docker.DockerClient, workers: list[str], producer: str, duration: int) -> None:
        self.client = client
        self.healthy, self.lossy = workers
        self.producer = producer
        self.duration = duration

    def playbook(self, name: str, *args: str) -> str:
        done = lab_runs.playbook(BENCH_LAB, name, "-e", f"seconds_per_dot={SECONDS_PER_DOT}", *args)
        if done.returncode != 0:
            raise SystemExit(f"{name} {' '.join(args)} failed:\n{done.stdout[-2000:]}")
        return done.stdout

    def restarts(self) -> int:
        state = lab_runs.on(self.client, self.lossy, "docker", "inspect", "--format", "{{.RestartCount}}", WORKER)
        return int(state.strip())

    def trial(self, heartbeat: int, loss: int) -> Trial:
        settings = ("-e", f"heartbeat_seconds={heartbeat}")
        # Enough one-second tasks that both workers are still busy when the loss heals.
        tasks = 3 * self.duration

        def produce() -> str:
            return run_id_of(
                self.playbook("produce.yml", *settings, "-e", f"task_count={tasks}", "-e", f"task_message={MESSAGE}")
            )

        fault = (
            "-e",
            "fault=lossy",
            "-e",
            f"loss={loss}",
            "-e",
            f"target={self.lossy}",
            "-e",
            f"duration={self.duration}",
        )
        restarts = self.restarts()
        done, run_id = drill_on_cue(BENCH_LAB, produce, "-e", f"seconds_per_dot={SECONDS_PER_DOT}", *settings, *fault)
        if done.returncode != 0 or run_id is None:
            raise SystemExit(f"drill.yml failed:\n{done.stdout[-2000:]}")
        record = lab_runs.last_fault(self.client, self.producer)
        start, end = float(record["start"]), float(record["end"])
        workers = [self.healthy, self.lossy]
        every = set(range(1, tasks + 1))
        wait_until(lambda: set(done_by(self.client, workers, run_id)) >= every, SETTLE_TIMEOUT, "every task done")
        # A drop noticed up to two heartbeats after the heal was caused by the loss too.
        noticed = end + 2 * heartbeat + 5
        events = container_events(self.client, self.lossy)
        drops = [e for e in events if e["event"] == "connection_lost" and start <= e["ts"] <= noticed]

        def done_during(host: str) -> int:
            return sum(
                1
                for e in container_events(self.client, host)
                if e["event"] == "done" and e.get("run_id") == run_id and start <= e["ts"] <= end
            )

        with tempfile.TemporaryDirectory() as folder:
            self.playbook("report.yml", "-e", f"run_id={run_id}", "-e", f"report_dir={folder}")
            report = json.loads((Path(folder) / run_id / "report.json").read_text())
        twice = sum(1 for t in report.get("tasks", []) if len(t.get("done_by", [])) > 1)
        return Trial(
            heartbeat,
            loss,
            len(drops),
            twice,
            int(report.get("counts", {}).get("lost", 0)),
            self.restarts() - restarts,
            done_during(self.lossy),
            done_during(self.healthy),
            tuple(str(e.get("reason", "")) for e in drops),
        )


def numbers(text: str, what: str, low: int, high: int) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part]
    except ValueError:
        raise SystemExit(f"bench/lossy.py: error: {what}: whole numbers, comma-separated, not {text!r}") from None
    if not values or not all(low <= v <= high for v in values):
        raise SystemExit(f"bench/lossy.py: error: {what} must be from {low} to {high}, not {text!r}")
    return values


def main() -> int:
    parser = argparse.ArgumentParser(prog="python bench/lossy.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--losses", default="10,30,50", help="loss rates in percent (default 10,30,50)")
    parser.add_argument("--heartbeats", default="8,30", help="heartbeat_seconds to compare (default 8,30)")
    parser.add_argument("--duration", type=int, default=60, help="seconds each loss lasts (default 60)")
    parser.add_argument("--repeat", type=int, default=1, help="trials per loss and heartbeat (default 1)")
    parser.add_argument("--keep", action="store_true", help="keep the lab afterwards")
    args = parser.parse_args()
    losses = numbers(args.losses, "--losses", 1, 100)
    heartbeats = numbers(args.heartbeats, "--heartbeats", 1, 600)
    if not 5 <= args.duration <= 600:
        raise SystemExit("bench/lossy.py: error: --duration must be from 5 to 600")
    client = engine.ensure_engine()
    images.program_images(client)
    lab = hosts.up(client, 4, BENCH_LAB)
    workers = [h.name for h in lab if "workers" in h.groups]
    producer = next(h.name for h in lab if "producer" in h.groups)
    bench = Bench(client, workers, producer, args.duration)
    trials: list[Trial] = []
    try:
        for heartbeat in heartbeats:
            bench.playbook("site.yml", "-e", f"heartbeat_seconds={heartbeat}")
            for loss in losses:
                for _ in range(args.repeat):
                    trial = bench.trial(heartbeat, loss)
                    print(trial.row(), flush=True)
                    trials.append(trial)
    finally:
        if not args.keep:
            hosts.down(client, BENCH_LAB)
    print(f"\n{args.duration} s of loss on one of two worker hosts, ack mode, one-second tasks")
    print(f"| heartbeat | loss | connections dropped | done twice | lost | worker restarts | {PACE} | why dropped |")
    print("|---|---|---|---|---|---|---|---|")
    for trial in trials:
        print(trial.row())
    return 0


if __name__ == "__main__":
    sys.exit(main())
