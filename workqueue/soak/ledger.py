"""The soak's ledger: what became of every task of a run, counted apart from the report.

It shares no code with ``workqueue.report`` nor with the event reader the report uses
(``workqueue.events``): a mistake there cannot hide a lost task here. It reads three
witnesses, each from where the lab keeps it:

- the producer's log: the run's ``run_started`` (how many tasks) and ``run_finished`` (which
  the broker never confirmed); every other task of the run the broker confirmed;
- the workers' logs: each ``done`` of a task of the run, by whom and when;
- the broker: the messages its queues still hold once the run has settled.

A task confirmed and done by nobody, while the broker holds nothing, is lost: ack mode's
promise is that there is none. A task done twice is the price of at-least-once delivery,
counted, not a fault.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from dataclasses import dataclass, field

# What a run may hold: the producer refuses more (its own MAX_TASKS; said again here on purpose).
MOST_TASKS = 100_000


class LedgerError(Exception):
    """A witness that cannot be read for this run: the ledger would be a guess."""


def _objects(lines: Iterable[str]) -> Iterable[dict[str, object]]:
    """The JSON objects among a log's lines; anything else (people's lines, broken JSON) is not a witness."""
    for line in lines:
        text = line.strip()
        if not text.startswith("{"):
            continue
        try:
            value = json.loads(text)
        except ValueError:
            continue
        if isinstance(value, dict):
            yield value


def _task_number(value: object, count: int) -> int | None:
    return value if type(value) is int and 1 <= value <= count else None


def _time(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class ProducerWitness:
    run_id: str
    count: int
    confirmed: frozenset[int]


def read_producer(lines: Iterable[str], run_id: str) -> ProducerWitness:
    """The run's tasks the broker confirmed, from the producer's own log."""
    count: int | None = None
    unconfirmed: set[int] | None = None
    for event in _objects(lines):
        if event.get("run_id") != run_id:
            continue
        if event.get("event") == "run_started":
            started = event.get("count")
            if type(started) is int and 1 <= started <= MOST_TASKS:
                count = started
        elif event.get("event") == "run_finished" and count is not None:
            listed = event.get("unconfirmed")
            if isinstance(listed, list):
                unconfirmed = {n for n in (_task_number(v, count) for v in listed) if n is not None}
    if count is None:
        raise LedgerError(f"the producer's log has no start of run {run_id}")
    if unconfirmed is None:
        raise LedgerError(f"the producer's log has no end of run {run_id}: it did not finish")
    return ProducerWitness(run_id, count, frozenset(range(1, count + 1)) - unconfirmed)


@dataclass
class WorkerWitness:
    """Each task of the run a worker said done: by whom, and when (on its host's clock)."""

    done_by: dict[int, list[str]] = field(default_factory=dict)
    done_at: list[float] = field(default_factory=list)

    def read(self, worker: str, lines: Iterable[str], run_id: str, count: int) -> None:
        for event in _objects(lines):
            if event.get("event") != "done" or event.get("run_id") != run_id:
                continue
            seq = _task_number(event.get("seq"), count)
            if seq is None:
                continue
            self.done_by.setdefault(seq, []).append(worker)
            at = _time(event.get("ts"))
            if at is not None:
                self.done_at.append(at)


@dataclass(frozen=True)
class Ledger:
    run_id: str
    confirmed: int
    done: int
    done_twice: int
    lost: tuple[int, ...]  # confirmed, done by nobody, while the broker held nothing of the run
    held: int  # messages the broker's queues still hold
    longest_stall: float  # seconds: the longest time between two tasks done, over the run

    @property
    def kept_the_promise(self) -> bool:
        return not self.lost


def balance(producer: ProducerWitness, workers: WorkerWitness, held: int) -> Ledger:
    """What became of the run's tasks. While the broker holds messages, no task is called lost:
    one of them may be it (the soak waits for the queues to empty before it balances)."""
    done = set(workers.done_by)
    missing = sorted(producer.confirmed - done)
    times = sorted(workers.done_at)
    stall = max((later - earlier for earlier, later in itertools.pairwise(times)), default=0.0)
    return Ledger(
        run_id=producer.run_id,
        confirmed=len(producer.confirmed),
        done=len(done & producer.confirmed),
        done_twice=sum(1 for seq in producer.confirmed if len(workers.done_by.get(seq, ())) > 1),
        lost=() if held else tuple(missing),
        held=held,
        longest_stall=round(stall, 1),
    )
