"""The soak's ledger and its schedule: pure logic, on logs written as the programs write them and as a
student's program could."""

from __future__ import annotations

import itertools
import json
import time
from collections import Counter
from pathlib import Path
from typing import cast

import pytest

from workqueue.soak.ledger import LedgerError, ProducerWitness, WorkerWitness, balance, read_producer
from workqueue.soak.schedule import CLUSTER_FAULTS, WORKER_FAULTS, Strike, draw

RUN = "20261207-001500-abcd"


def line(**fields: object) -> str:
    return json.dumps(fields)


def producer_log(count: int, unconfirmed: list[object]) -> list[str]:
    return [
        " [*] Run ...: people's words, not a witness",
        line(event="run_started", run_id="20261207-000000-ffff", count=99),  # another run
        line(event="run_started", run_id=RUN, count=count),
        "{not json",
        line(event="run_finished", run_id=RUN, unconfirmed=unconfirmed, resent=[]),
    ]


def test_the_producer_witnesses_what_the_broker_confirmed_and_no_forged_number() -> None:
    witness = read_producer(producer_log(5, [2, True, 99, "3", 4]), RUN)
    assert (witness.count, sorted(witness.confirmed)) == (5, [1, 3, 5])


@pytest.mark.parametrize(
    "lines, says",
    [([line(event="run_started", run_id=RUN, count=5)], "did not finish"), ([], "no start")],
)
def test_a_producer_log_without_its_run_is_an_error_not_a_guess(lines: list[str], says: str) -> None:
    with pytest.raises(LedgerError, match=says):
        read_producer(lines, RUN)


def test_the_ledger_finds_the_lost_the_twice_done_and_the_longest_stall() -> None:
    producer = ProducerWitness(RUN, 6, frozenset({1, 2, 3, 4, 5}))  # 6 never confirmed
    workers = WorkerWitness()
    workers.read(
        "a", [line(event="done", run_id=RUN, seq=1, ts=100.0), line(event="done", run_id=RUN, seq=2, ts=101)], RUN, 6
    )
    workers.read(
        "b",
        [
            line(event="done", run_id=RUN, seq=2, ts=130.5),  # again, after a redelivery
            line(event="done", run_id=RUN, seq=3, ts=131.0),
            line(event="done", run_id=RUN, seq=6, ts=132.0),  # done, though its confirmation never came
            line(event="done", run_id="20261207-000000-ffff", seq=4, ts=132.0),  # another run's
            line(event="done", run_id=RUN, seq=False, ts=132.0),  # a student's forged number
            line(event="received", run_id=RUN, seq=5, ts=133.0),  # received is not done
        ],
        RUN,
        6,
    )
    ledger = balance(producer, workers, held=0)
    assert (ledger.confirmed, ledger.done, ledger.done_twice, ledger.lost) == (5, 3, 1, (4, 5))
    assert not ledger.kept_the_promise
    assert ledger.longest_stall == 29.5
    # While the broker still holds messages, a missing task may be among them: none is called lost.
    assert balance(producer, workers, held=2).lost == ()


def test_a_seed_draws_the_same_faults_and_a_cluster_draws_its_own() -> None:
    hosts = ["w1", "w2"]
    single = draw(7, 30, hosts, brokers=1)
    assert single == draw(7, 30, hosts, brokers=1) and single != draw(8, 30, hosts, brokers=1)
    assert len(single) >= 10 and all(s.after < 29 * 60 for s in single)  # none in the last minute
    short = draw(7, 3, hosts, brokers=1)  # the suite's few minutes: faults all the same
    assert short and all(s.after < 2 * 60 for s in short)
    assert all(s.target in hosts for s in single if s.fault in WORKER_FAULTS)
    assert not any(s.fault in ("broker-node-kill", "broker-node-stop", "partition") for s in single)
    cluster = draw(7, 60, hosts, brokers=3)
    assert {s.fault for s in cluster} & set(CLUSTER_FAULTS)
    assert all(s.duration is not None and s.duration >= 40 for s in cluster if s.fault == "partition")
    assert all(later.after > earlier.after + (earlier.duration or 0) for earlier, later in itertools.pairwise(cluster))


@pytest.mark.parametrize(
    "args, says",
    [
        (["--minutes", "half an hour"], "--minutes (MINUTES=) and --rate are numbers"),
        (["--minutes", "1"], "--minutes (MINUTES=): 3 to 600"),
        (["--seed", "0x1f"], "--seed (SEED=) a whole number"),
        (["--brokers", "2"], "--brokers (BROKERS=): 1 or 3"),
        (["--rate", "500"], "--rate: 0.1 to 20"),
    ],
)
def test_make_soak_refuses_what_it_cannot_run_in_one_line_before_touching_a_lab(
    args: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from workqueue.demo import soak

    with pytest.raises(SystemExit) as exited:
        soak.main(args)
    assert exited.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert says in error and "Traceback" not in error


class LateLab:
    """The soak's lab, as run() uses it (pure logic): each fault, with the site.yml that heals it, takes
    ``takes`` seconds of the soak's clock; the producer publishes until ``done_at``; the broker ends empty."""

    def __init__(self, clock: list[float], takes: float, done_at: float) -> None:
        self.clock, self.takes, self.done_at, self.log = clock, takes, done_at, Path("/nonexistent/soak.log")
        self.struck: Counter[str] = Counter()
        self.not_struck = 0

    def playbook(self, name: str, *args: str, log: Path | None = None) -> str:
        return f" [x] Run {RUN}: 240 sent, 240 confirmed" if name == "produce.yml" else ""

    def publishing(self) -> bool:
        return self.clock[0] < self.done_at

    def strike(self, strike: Strike) -> None:
        self.struck[strike.fault] += 1
        self.clock[0] += self.takes

    def held(self) -> int:
        return 0

    def ledger(self, run_id: str) -> str:
        return run_id


@pytest.mark.parametrize(
    ("takes", "done_at"),
    [
        # Two minutes: too late from 100 s on. Drawn for 20 and 50 s; the first, on a busy machine, ends at 120 s.
        (100.0, 1000.0),
        # Each fault on time, but the producer done at 40 s: the second, drawn for 50 s, finds no task to catch.
        (10.0, 40.0),
    ],
    ids=["the faults before ran long", "the producer is done"],
)
def test_faults_that_come_too_late_are_not_struck_and_are_counted(
    takes: float, done_at: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workqueue.demo import soak

    clock = [0.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    monkeypatch.setattr(time, "monotonic", lambda: clock[0])  # the soak's clock, for this test only
    monkeypatch.setattr(time, "sleep", sleep)
    strikes = [Strike(20.0, "stop", "lab2", None), Strike(50.0, "kill", "lab3", None)]
    lab = LateLab(clock, takes, done_at)
    ledger, _ = soak.run(cast(soak.Soak, lab), strikes, 2.0, 2.0)
    assert cast(str, ledger) == RUN
    assert lab.struck == Counter(stop=1) and lab.not_struck == 1
