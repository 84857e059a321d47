"""`make drills`: every fault of playbooks/drill.yml, in both modes, on the virtual lab; one table.

    python -m workqueue.demo.drills [--seconds-per-dot S] [--faults stop,kill,...] [--brokers 1|3]

For each fault and mode: site.yml (which also undoes the drill before), a run of
TASKS tasks, the fault on the second worker host while it holds a task (or, for
broker-down and broker-disk, while the producer still publishes), then report.yml. Prints the
table and writes it to reports/drills.md: what was sent, done, lost, done twice,
and the seconds from the fault until every task was settled.

With ``--brokers 3`` the lab has a cluster of three brokers, and the cluster's own
faults (a node killed, stopped, partitioned away: on the node leading task_queue)
join the matrix, in ack mode only: they find the node by task_queue, which noack
mode does not use. Each strikes once a worker holds a task of a longer run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import docker

from workqueue.machine import engine, images
from workqueue.machine.packages import SetupError
from workqueue.queues import Mode
from workqueue.virtual_lab import hosts, lab_runs
from workqueue.virtual_lab.hosts import DEFAULT_LAB, ROOT
from workqueue.virtual_lab.lab_runs import done_by, drill_on_cue, on, run_id_of, unfinished, wait_until

FAULTS = ("stop", "kill", "freeze", "cut", "lossy", "broker-restart", "broker-down", "broker-disk", "students")
# A cluster's: on the node leading task_queue, in ack mode (they find it by task_queue).
CLUSTER_FAULTS = ("broker-node-kill", "broker-node-stop", "partition")
CLUSTER_HOSTS = 6  # three brokers, two worker hosts, the producer
# The broker's faults that strike while the producer publishes (a run spread out), not on a worker's task.
WHILE_PUBLISHING = ("broker-down", "broker-disk")
TASKS = 8
SETTLE_TIMEOUT = 300.0
TABLE = ROOT / "reports" / "drills.md"
HEADER = ["fault", "mode", "sent", "done", "lost", "not sent", "done twice", "settled after (s)", "verdict"]


@dataclass(frozen=True)
class Outcome:
    fault: str
    mode: Mode
    report: dict[str, Any]
    settled_after: float | None  # seconds from the fault; None: not within SETTLE_TIMEOUT

    def row(self) -> list[str]:
        counts = self.report.get("counts", {})
        twice = sum(1 for t in self.report.get("tasks", []) if len(t.get("done_by", [])) > 1)
        settled = f"{self.settled_after:.0f}" if self.settled_after is not None else "not settled"
        return [
            self.fault,
            self.mode,
            str(self.report.get("sent")),
            str(counts.get("done", 0)),
            str(counts.get("lost", 0)),
            str(counts.get("not sent", 0)),
            str(twice),
            settled,
            self.report.get("verdict", ""),
        ]


class Drills:
    def __init__(self, client: docker.DockerClient, workers: list[str], producer: str, settings: list[str]) -> None:
        self.client = client
        self.workers = workers
        self.target = workers[1] if len(workers) > 1 else workers[0]
        self.producer = producer
        self.settings = settings

    def playbook(self, name: str, *args: str) -> subprocess.CompletedProcess[str]:
        done = lab_runs.playbook(DEFAULT_LAB, name, *self.settings, *args)
        if done.returncode != 0 and name != "produce.yml":
            raise SetupError(f"{name} {' '.join(args)} failed:\n{done.stdout[-2000:]}")
        return done

    def settled(self, run_id: str, mode: Mode, count: int) -> bool:
        """Every task done (ack), or nothing left in the hands of a running worker (noack)."""
        if mode is Mode.ACK:
            return set(done_by(self.client, self.workers, run_id)) >= set(range(1, count + 1))
        running = on(self.client, self.target, "docker", "ps", "--format", "{{.Names}}").split()
        holders = [h for h in self.workers if h != self.target or lab_runs.WORKER_CONTAINER.format(1) in running]
        return not any(unfinished(self.client, h, run_id) for h in holders)

    def run(self, fault: str, mode: Mode) -> Outcome:
        mode_args = ["-e", f"task_mode={mode}"]
        self.playbook("site.yml", *mode_args)
        with ThreadPoolExecutor(max_workers=2) as pool:
            if fault in WHILE_PUBLISHING:
                producing = pool.submit(
                    self.playbook,
                    "produce.yml",
                    *mode_args,
                    "-e",
                    f"task_count={TASKS * 2}",
                    "-e",
                    "publish_rate=1",
                    "-e",
                    "task_message=work..",
                )
                wait_until(self._publishing, 60, "the producer publishing")
                started = time.time()
                self.playbook("drill.yml", *mode_args, "-e", f"fault={fault}")
                run_id = run_id_of(producing.result(timeout=600).stdout)
                settling = pool.submit(self._settled_after, run_id, mode, TASKS * 2, started)
            elif fault in CLUSTER_FAULTS:
                # A run long enough to outlast the fault (a partition's node pauses 45 to 75 s after the cut).
                published = self.playbook(
                    "produce.yml", *mode_args, "-e", f"task_count={TASKS * 4}", "-e", "task_message=work.........."
                )
                run_id = run_id_of(published.stdout)
                wait_until(lambda: any(unfinished(self.client, h, run_id) for h in self.workers), 60, "a task in hand")
                self.playbook("drill.yml", *mode_args, "-e", f"fault={fault}")
                struck = float(lab_runs.last_fault(self.client, self.producer)["start"])
                settling = pool.submit(self._settled_after, run_id, mode, TASKS * 4, struck)
            else:
                # The drill watches the target first and strikes the moment it holds a task of the run.
                def produce() -> str:
                    produced = self.playbook(
                        "produce.yml", *mode_args, "-e", f"task_count={TASKS}", "-e", "task_message=work.........."
                    )
                    return run_id_of(produced.stdout)

                fault_args = [*self.settings, *mode_args, "-e", f"fault={fault}", "-e", f"target={self.target}"]
                done, produced = drill_on_cue(DEFAULT_LAB, produce, *fault_args)
                if done.returncode != 0 or produced is None:
                    raise SetupError(f"drill.yml {' '.join(fault_args)} failed:\n{done.stdout[-2000:]}")
                run_id = produced
                struck = float(lab_runs.last_fault(self.client, self.producer)["start"])
                settling = pool.submit(self._settled_after, run_id, mode, TASKS, struck)
            settled_after = settling.result()
        folder = ROOT / "reports"
        self.playbook("report.yml", "-e", f"run_id={run_id}", "-e", f"report_dir={folder}")
        report = json.loads((folder / run_id / "report.json").read_text())
        return Outcome(fault, mode, report, settled_after)

    def _publishing(self) -> bool:
        return "workqueue-producer" in on(self.client, self.producer, "docker", "ps", "--format", "{{.Names}}")

    def _settled_after(self, run_id: str, mode: Mode, count: int, started: float) -> float | None:
        """Seconds from the fault (``started``, the epoch's) until every task is settled; None past SETTLE_TIMEOUT."""
        while time.time() - started < SETTLE_TIMEOUT:
            if self.settled(run_id, mode, count):
                return time.time() - started
            time.sleep(1)
        return None


def markdown(outcomes: list[Outcome]) -> str:
    def row(cells: list[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    lines = [row(HEADER), row(["---"] * len(HEADER)), *(row(o.row()) for o in outcomes)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workqueue.demo.drills", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds-per-dot", type=float, default=0.5, help="work per dot (default 0.5 s)")
    every = f"{','.join(FAULTS)}, and with a cluster {','.join(CLUSTER_FAULTS)}"
    parser.add_argument("--faults", help=f"which, comma-separated (default all: {every})")
    parser.add_argument("--brokers", default="1", help="1 (default), or 3: a cluster, and its faults")
    args = parser.parse_args(argv)
    if args.brokers not in ("1", "3"):
        parser.error(f"--brokers (BROKERS=): 1 or 3, not {args.brokers}")
    brokers = int(args.brokers)
    known = FAULTS + (CLUSTER_FAULTS if brokers > 1 else ())
    faults = [f for f in (args.faults or ",".join(known)).split(",") if f]
    unknown = sorted(set(faults) - set(known))
    if unknown and set(unknown) <= set(CLUSTER_FAULTS):
        parser.error(f"--faults: {', '.join(unknown)} needs a cluster: BROKERS=3 make drills (--brokers 3)")
    if unknown:
        parser.error(f"--faults: unknown {', '.join(unknown)}: use {', '.join(known)}")
    try:
        client = engine.ensure_engine()
        images.program_images(client)
        count = CLUSTER_HOSTS if brokers > 1 else hosts.DEFAULT_HOSTS
        lab = hosts.up(client, count, DEFAULT_LAB, brokers=brokers)
        workers = [h.name for h in lab if "workers" in h.groups]
        producer = next(h.name for h in lab if "producer" in h.groups)
        drills = Drills(client, workers, producer, ["-e", f"seconds_per_dot={args.seconds_per_dot}"])
        outcomes = []
        for fault in faults:
            for mode in (Mode.ACK,) if fault in CLUSTER_FAULTS else (Mode.ACK, Mode.NOACK):
                print(f"=== {fault}, {mode} mode", flush=True)
                outcome = drills.run(fault, mode)
                print(f"    {outcome.report.get('verdict')}", flush=True)
                outcomes.append(outcome)
        drills.playbook("site.yml")  # every worker back, in the inventory's mode
    except (SetupError, TimeoutError, docker.errors.DockerException) as exc:
        print(f"drills: error: {exc}", file=sys.stderr)
        return 1
    table = markdown(outcomes)
    TABLE.parent.mkdir(parents=True, exist_ok=True)
    TABLE.write_text(table)
    print(f"\n{table}\n(written to {TABLE.relative_to(ROOT)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
