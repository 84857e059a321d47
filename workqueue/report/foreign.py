"""Tasks the lab's workers did that no run of the lab's producer sent: a student's, say.

They carry no run id or task number, so they are never part of a run's fates
(never lost or unknown in its verdict); the report of a run counts apart those
its workers received while that run was the newest.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from workqueue.queues import Mode
from workqueue.report.gathered import Container, Event, Gathered

DONE = "done"


@dataclass(frozen=True)
class ForeignTask:
    worker: str  # host/worker-N
    received: float
    origin: str  # the sender, if it said, and the start of its text
    outcome: str  # done, rejected, requeued, lost, or in progress


def from_a_run(event: Event) -> bool:
    """Whether an event is about a task of one of the producer's runs (workqueue.tasks.TaskLabel)."""
    return isinstance(event.get("run_id"), str) and isinstance(event.get("seq"), int)


def window(gathered: Gathered, run_id: str, run_start: float | None) -> tuple[float, float]:
    """From the run's start until the next run's first event: while this run was the newest."""
    later = [
        float(e["ts"])
        for c in gathered.containers
        for e in c.events
        if isinstance(e.get("run_id"), str) and e["run_id"] > run_id and isinstance(e.get("ts"), int | float)
    ]
    return (run_start if run_start is not None else float("-inf")), min(later, default=float("inf"))


def foreign_tasks(gathered: Gathered, run_id: str, run_start: float | None) -> list[ForeignTask]:
    start, end = window(gathered, run_id, run_start)
    found = [task for c in gathered.containers for task in _follow(c)]
    return sorted((t for t in found if start <= t.received < end), key=lambda t: t.received)


def _follow(container: Container) -> list[ForeignTask]:
    """Pair a worker's foreign deliveries with their ends: it works its tasks in order of arrival."""
    worker = container.worker
    mode = next((e.get("mode") for e in container.events if e.get("event") == "worker_started"), None)
    tasks: list[ForeignTask] = []
    held: list[Event] = []
    for event in container.events:
        kind = event.get("event")
        if kind == "worker_started":
            mode = event.get("mode", mode)
        if kind == "worker_stopped" or (kind == "connection_lost" and mode == Mode.ACK.value):
            gone = "lost" if mode == Mode.NOACK.value else "requeued"
            tasks += [_task(worker, e, gone) for e in held]
            held = []
        if kind not in ("received", "done", "abandoned", "rejected") or from_a_run(event):
            continue
        if kind == "received":
            held.append(event)
        elif kind == "rejected":
            tasks.append(_task(worker, event, "rejected"))
        elif held:
            outcome = DONE if kind == "done" else str(event.get("fate", "lost"))
            tasks.append(_task(worker, held.pop(0), outcome))
    return tasks + [_task(worker, e, "in progress") for e in held]


def _task(worker: str, received: Event, outcome: str) -> ForeignTask:
    return ForeignTask(worker, float(received.get("ts", 0.0)), str(received.get("origin", "another producer")), outcome)


def summary(tasks: list[ForeignTask]) -> str:
    """``3 tasks from other producers, done by lab2/worker-1 (2), lab3/worker-1 (1)``; '' when none."""
    if not tasks:
        return ""
    done = Counter(t.worker for t in tasks if t.outcome == DONE)
    text = f"{len(tasks)} task{'s' if len(tasks) > 1 else ''} from other producers"
    if done:
        text += ", done by " + ", ".join(f"{worker} ({count})" for worker, count in sorted(done.items()))
    others = Counter(t.outcome for t in tasks if t.outcome != DONE)
    if others:
        text += "; " + ", ".join(f"{count} {outcome}" for outcome, count in sorted(others.items()))
    return text
