"""`make soak`: a long ack-mode run while faults strike at random, then a ledger of every task.

    python -m workqueue.demo.soak [--minutes M] [--seed N] [--brokers 1|3] [--rate R]   (the tests add --lab demolab)

On the virtual lab: site.yml, then a run of short tasks published at a steady rate for
``--minutes``; meanwhile the faults drawn from the seed (``workqueue/soak/schedule.py``) strike one
after another through playbooks/drill.yml, each healed before the next (a stop or a kill by
site.yml, as in the lesson; a lasting fault by itself). Once the run is over and the broker's queue
is empty, the ledger (``workqueue/soak/ledger.py``, which shares no code with the report) balances
what the producer had confirmed against what the workers said done. Prints the table and writes it
to reports/soak-SEED.md (soak-SEED-cluster.md with three brokers); exits 1 when a confirmed task was lost.
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import docker

from workqueue.machine import engine, images
from workqueue.machine.packages import SetupError
from workqueue.soak.ledger import Ledger, LedgerError, WorkerWitness, balance, read_producer
from workqueue.soak.schedule import Strike, draw, heals_by_itself, too_late
from workqueue.virtual_lab import hosts, lab_runs
from workqueue.virtual_lab.hosts import DEFAULT_LAB, DEMO_TEST_LAB, ROOT, Lab
from workqueue.virtual_lab.lab_runs import on, on_result, read_on, run_id_of, wait_until

CLUSTER_HOSTS = 6  # three brokers, two worker hosts, the producer
# Short tasks (one dot) at a steady rate, well under what the workers do (a quarter second a task
# each): the queue stays short, and a fault's backlog drains before the next.
SECONDS_PER_DOT = 0.25
MESSAGE = "soak."
RATE = 2.0
# A cluster notices a partition after net_ticktime: shorter than RabbitMQ's 60 s, so that a soak's
# partitions pause a node (the drill's own partition test sets the same).
CLUSTER_SETTINGS = ("-e", "rabbitmq_net_ticktime=15")
SETTLE_SECONDS = 600.0
RUNS_DIR = "/var/lib/workqueue-lab/runs"  # producer_runs_dir
LABS = {lab.name: lab for lab in (DEFAULT_LAB, DEMO_TEST_LAB)}  # the user's, and the tests' own


@dataclass
class Soak:
    client: docker.DockerClient
    lab: Lab
    brokers: list[str]
    workers: list[str]
    producer: str
    settings: list[str]
    log: Path
    struck: Counter[str] = field(default_factory=Counter)
    not_struck: int = 0  # faults drawn that came too late in the run (the faults before them ran long)

    def playbook(self, name: str, *args: str, log: Path | None = None) -> str:
        """A playbook's output; its whole output also in the soak's log (or ``log``: the producer's, run beside)."""
        log = log or self.log
        done = lab_runs.playbook(self.lab, name, *self.settings, *args, log=log)
        if done.returncode != 0:
            raise SetupError(f"{name} {' '.join(args)} failed (the whole output: {log}):\n{done.stdout[-1500:]}")
        return done.stdout

    def publishing(self) -> bool:
        return "workqueue-producer" in on(self.client, self.producer, "docker", "ps", "--format", "{{.Names}}")

    def strike(self, strike: Strike) -> None:
        self.playbook("drill.yml", *strike.drill_args())
        self.struck[strike.fault] += 1
        if not heals_by_itself(strike.fault):
            self.playbook("site.yml")  # the worker back, as the lesson undoes a stop

    def serving(self) -> str | None:
        """A broker node that runs, to ask; None if none does."""
        running = ("rabbitmq-diagnostics", "-q", "is_running")
        return next((b for b in self.brokers if on_result(self.client, b, *running)[0] == 0), None)

    def held(self) -> int | None:
        """What the broker's queues still hold of the lab's tasks, as a node that serves says; None if none answers."""
        if (broker := self.serving()) is None:
            return None
        queues = ("task_queue", "task_queue.rejected")
        return sum(int(lab_runs.queue_row(self.client, broker, q, "messages").get("messages", 0)) for q in queues)

    def consumers(self) -> int:
        if (broker := self.serving()) is None:
            return 0
        return int(lab_runs.queue_row(self.client, broker, "task_queue", "consumers").get("consumers", 0))

    def only_its_workers_consume(self) -> None:
        """The ledger reads the lab's workers' logs: another consumer of task_queue would do tasks no witness saw."""
        wait_until(lambda: self.consumers() >= len(self.workers), 120, "the workers consuming")
        time.sleep(5)  # one that connects late
        if (found := self.consumers()) != len(self.workers):
            raise SetupError(
                f"task_queue has {found} consumers and the lab's worker hosts run {len(self.workers)}: another"
                " program takes tasks the ledger cannot see (a worker left on a host of another role?)"
            )

    def ledger(self, run_id: str) -> Ledger:
        record = read_on(self.client, self.producer, "cat", f"{RUNS_DIR}/{run_id}.producer.jsonl")
        producer = read_producer(record.splitlines(), run_id)
        workers = WorkerWitness()
        for host in self.workers:
            logs = self.client.containers.get(host).exec_run(
                ["docker", "logs", lab_runs.WORKER_CONTAINER.format(1)], demux=True
            )
            if logs.exit_code != 0:
                raise LedgerError(f"the worker's logs on {host} cannot be read")
            workers.read(host, (logs.output[1] or b"").decode(errors="replace").splitlines(), run_id, producer.count)
        held = self.held()
        if held is None:
            raise LedgerError("no broker node answers: what it holds is unknown")
        return balance(producer, workers, held)


def run(soak: Soak, strikes: list[Strike], minutes: float, rate: float) -> tuple[Ledger, float]:
    count = max(1, round(minutes * 60 * rate))
    produced: dict[str, str] = {}

    def produce() -> None:
        try:
            settings = ["-e", f"task_count={count}", "-e", f"publish_rate={rate}", "-e", f"task_message={MESSAGE}"]
            produced["out"] = soak.playbook("produce.yml", *settings, log=soak.log.with_suffix(".producer.log"))
        except SetupError as exc:
            produced["error"] = str(exc)

    producing = threading.Thread(target=produce, daemon=True)
    producing.start()
    wait_until(soak.publishing, 120, "the producer publishing")
    started = time.monotonic()
    # A fault that runs too late (the ones before it took long) is not struck, nor any after it.
    for index, strike in enumerate(strikes):
        while time.monotonic() - started < strike.after:
            time.sleep(1)
        at = time.monotonic() - started
        if at >= too_late(minutes) or not soak.publishing():
            soak.not_struck = len(strikes) - index
            print(f"  {at:6.0f} s  too late in the run: {soak.not_struck} fault(s) drawn, not struck", flush=True)
            break
        print(f"  {at:6.0f} s  {strike.fault} {strike.target or ''} {strike.duration or ''}".rstrip(), flush=True)
        soak.strike(strike)
    producing.join(timeout=minutes * 60 * 3 + 600)
    if "out" not in produced:
        raise SetupError(produced.get("error", "the producer did not finish"))
    run_id = run_id_of(produced["out"])
    settle_started = time.monotonic()
    wait_until(lambda: soak.held() == 0, SETTLE_SECONDS, "the broker's queues empty")
    return soak.ledger(run_id), time.monotonic() - settle_started


def table(ledger: Ledger, struck: Counter[str], not_struck: int, seed: int, minutes: float, brokers: int) -> str:
    faults = ", ".join(f"{fault} {n}" for fault, n in sorted(struck.items())) or "none"
    rows = [
        ("seed", str(seed)),
        ("lab", f"{brokers} broker{'s' if brokers > 1 else ''}, {minutes:g} minutes"),
        ("run", ledger.run_id),
        ("faults struck", f"{sum(struck.values())}: {faults}"),
        ("faults drawn, not struck (too late in the run)", str(not_struck)),
        ("tasks confirmed", str(ledger.confirmed)),
        ("done", str(ledger.done)),
        ("done twice", str(ledger.done_twice)),
        ("lost", f"{len(ledger.lost)}" + (f" ({', '.join(f'#{n}' for n in ledger.lost[:20])})" if ledger.lost else "")),
        ("held by the broker", str(ledger.held)),
        ("longest stall (s)", f"{ledger.longest_stall:g}"),
    ]
    return "\n".join(["| | |", "|---|---:|", *(f"| {name} | {value} |" for name, value in rows)]) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workqueue.demo.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", default="30", help="how long the run publishes (default 30)")
    parser.add_argument("--seed", default="", help="the faults' seed, to replay a soak (default: a new one)")
    parser.add_argument("--brokers", default="1", help="1 (default), or 3: a cluster, and its faults")
    parser.add_argument("--rate", default=str(RATE), help=f"tasks a second (default {RATE:g})")
    parser.add_argument("--lab", choices=sorted(LABS), default=DEFAULT_LAB.name, help="which virtual lab (default lab)")
    args = parser.parse_args(argv)
    try:
        minutes, rate = float(args.minutes), float(args.rate)
        seed = int(args.seed) if args.seed else random.SystemRandom().randrange(1, 1_000_000)
    except ValueError:
        parser.error("--minutes (MINUTES=) and --rate are numbers, --seed (SEED=) a whole number")
    if not 3 <= minutes <= 600:
        parser.error(f"--minutes (MINUTES=): 3 to 600, not {args.minutes}")
    if not 0.1 <= rate <= 20:
        parser.error(f"--rate: 0.1 to 20 tasks a second, not {args.rate}")
    if args.brokers not in ("1", "3"):
        parser.error(f"--brokers (BROKERS=): 1 or 3, not {args.brokers}")
    brokers = int(args.brokers)
    lab = LABS[args.lab]
    # The user's soak in reports/, a test's in build/.
    reports = ROOT / "reports" if lab == DEFAULT_LAB else ROOT / "build" / f"{lab.name}-soak"
    reports.mkdir(parents=True, exist_ok=True)
    name = f"soak-{seed}" + ("-cluster" if brokers > 1 else "")  # a seed replayed on either lab
    log = reports / f"{name}.log"
    print(f"soak: seed {seed}, {minutes:g} minutes, {brokers} broker(s); the playbooks' output in {log}", flush=True)
    try:
        client = engine.ensure_engine()
        images.program_images(client)
        up = hosts.up(client, CLUSTER_HOSTS if brokers > 1 else hosts.DEFAULT_HOSTS, lab, brokers=brokers)
        workers = [h.name for h in up if "workers" in h.groups]
        soak = Soak(
            client,
            lab,
            [h.name for h in up if "broker" in h.groups],
            workers,
            next(h.name for h in up if "producer" in h.groups),
            ["-e", f"seconds_per_dot={SECONDS_PER_DOT}", *(CLUSTER_SETTINGS if brokers > 1 else ())],
            log,
        )
        soak.playbook("site.yml")
        soak.only_its_workers_consume()
        strikes = draw(seed, minutes, workers, brokers)
        print(f"  {len(strikes)} faults drawn; the run publishes {round(minutes * 60 * rate)} tasks", flush=True)
        ledger, settled = run(soak, strikes, minutes, rate)
    except (SetupError, LedgerError, TimeoutError, docker.errors.DockerException) as exc:
        print(f"soak: error: {exc}", file=sys.stderr)
        return 1
    text = table(ledger, soak.struck, soak.not_struck, seed, minutes, brokers)
    out = reports / f"{name}.md"
    out.write_text(text)
    print(f"\n{text}\n(settled {settled:.0f} s after the run; written to {out.relative_to(ROOT)})")
    if not ledger.kept_the_promise:
        print(f"soak: {len(ledger.lost)} confirmed task(s) lost: replay with SEED={seed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
