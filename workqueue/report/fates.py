"""What became of each task of one run, told from the workers' and the producer's events.

A task's journey is a list of attempts: each time a worker received it, until
it was done, abandoned (``docker stop``), or is still in hand. From the
attempts, the producer's record and the broker's queues follows its fate:

    done          a worker finished it (after how many deliveries; done twice when a worker
                  that stood still past the broker's heartbeat timeout finished it too)
    lost          noack mode: its worker was stopped before finishing it, or it waited in
                  the transient queue when the broker restarted
    requeued      ack mode: its worker was stopped; the broker holds it for another
    in progress   a running worker has it in hand
    queued        no worker has seen it and the broker still holds tasks
    rejected      a worker refused it (empty, not UTF-8, too long, or unreadable)
    unknown       it may be with a worker whose events could not be read
    unaccounted   sent, seen by no worker, not in the queue: the report says so
    not sent      the producer could not send it (noack) or the broker never confirmed it (ack)
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from workqueue.queues import DEAD_LETTER_QUEUE, Mode, queue_spec
from workqueue.report.foreign import ForeignTask, foreign_tasks
from workqueue.report.foreign import summary as foreign_summary
from workqueue.report.gathered import Clock, Container, Event, Fault, Gathered, QueueState
from workqueue.tasks import seq_list

DONE, LOST, REQUEUED, IN_PROGRESS = "done", "lost", "requeued", "in progress"
QUEUED, REJECTED, UNKNOWN, UNACCOUNTED = "queued", "rejected", "unknown", "unaccounted"
NOT_SENT = "not sent"
# An attempt whose work was done after its worker stood still past the broker's heartbeat
# timeout: the broker had given the task to another worker and refused the acknowledgement.
REFUSED = "done, acknowledgement refused"
WORKED = (DONE, REFUSED)


@dataclass
class Attempt:
    """A task in one worker's hands: from received to done, abandoned, or now."""

    seq: int
    worker: str
    received: float
    redelivered: bool
    ended: float | None = None
    outcome: str = IN_PROGRESS  # done, lost, requeued (abandoned), or in progress
    work_seconds: float = 0.0
    work_started: float | None = None  # before it, the task waited in the worker behind others


@dataclass
class TaskFate:
    seq: int
    fate: str
    attempts: list[Attempt]
    note: str = ""

    @property
    def done_by(self) -> list[str]:
        return [a.worker for a in self.attempts if a.outcome in WORKED]

    @property
    def done_twice(self) -> bool:
        """Its work was done more than once: at-least-once delivery's price."""
        return len(self.done_by) > 1

    @property
    def dispatched_to(self) -> str | None:
        return self.attempts[-1].worker if self.attempts else None


@dataclass
class WorkerSummary:
    worker: str  # host/worker-N: what the worker calls itself
    host: str
    container: str
    running: bool | None
    status: str
    stopped_at: float | None  # the last docker stop during the run
    attempts: list[Attempt] = field(default_factory=list)  # its deliveries of the run, as received
    # The broker nodes it consumed from during the run (host:port), in turn: more than one when its node went.
    nodes: list[str] = field(default_factory=list)

    @property
    def received(self) -> list[int]:
        return [a.seq for a in self.attempts]

    @property
    def done(self) -> list[int]:
        return [a.seq for a in self.attempts if a.outcome == DONE]

    @property
    def redelivered(self) -> list[int]:
        """What it received with the redelivered flag: a task another worker had held."""
        return [a.seq for a in self.attempts if a.redelivered]

    @property
    def not_finished(self) -> list[int]:
        return [a.seq for a in self.attempts if a.outcome not in WORKED]

    @property
    def state(self) -> str:
        if self.running is None:
            return self.status or "unknown"
        if not self.running:
            return f"stopped at {clock(self.stopped_at)}" if self.stopped_at else "stopped"
        return f"running (stopped at {clock(self.stopped_at)}, started again)" if self.stopped_at else "running"


@dataclass(frozen=True)
class Went:
    """What took the tasks waiting in the queue with it, if anything did: the broker (noack: when every
    worker lost its connection; the transient queue went with it), or the queue itself, deleted."""

    broker: float | None = None
    queue_deleted: float | None = None
    queue: str | None = None

    @property
    def what(self) -> str | None:
        """What the verdict says of the tasks it took."""
        if self.broker is not None:
            return f"lost with the broker at {clock(self.broker)}"
        if self.queue_deleted is not None:
            return f"lost with {self.queue}, deleted at {clock(self.queue_deleted)}"
        return None

    def note(self) -> str | None:
        """What a task it took says."""
        why = "the transient queue went with it" if self.broker is not None else "it waited there"
        return f"{self.what}: {why}" if self.what else None


@dataclass
class RunReport:
    run_id: str
    mode: Mode | None
    queue: str | None
    sent: int | None  # None: the producer's record is missing
    confirmed: int | None
    started: float | None
    workers: list[WorkerSummary]
    tasks: list[TaskFate]
    queue_state: QueueState | None
    missing: list[str]
    # Tasks from other producers that the workers received while this run was the newest.
    foreign: list[ForeignTask] = field(default_factory=list)
    # The drills' faults while the run went on (playbooks/drill.yml).
    faults: list[Fault] = field(default_factory=list)
    # What took the tasks waiting in the queue with it, if anything did: the broker, or the queue deleted.
    went: Went = field(default_factory=Went)
    # ack: the tasks the broker holds in task_queue.rejected (a worker refused them, or they passed
    # the delivery limit of the lab's policy), whichever run they came from; None: not read.
    dead_lettered: int | None = None
    # Deliveries labelled with the run but numbered past what its producer sent: no task of the run.
    strays: list[Attempt] = field(default_factory=list)
    # The hosts' and workers' clocks against this machine's; each event was put on this machine's clock.
    clocks: list[Clock] = field(default_factory=list)

    def count(self, fate: str) -> int:
        return sum(1 for task in self.tasks if task.fate == fate)

    def seqs(self, fate: str) -> list[int]:
        return [task.seq for task in self.tasks if task.fate == fate]

    @property
    def broker_nodes(self) -> set[str]:
        """Every broker node a worker consumed from during the run: more than one with a cluster."""
        return {node for worker in self.workers for node in worker.nodes}

    @property
    def settled(self) -> bool:
        return not any(task.fate in (IN_PROGRESS, QUEUED, REQUEUED) for task in self.tasks)

    @property
    def redelivered(self) -> list[TaskFate]:
        return [task for task in self.tasks if len(task.attempts) > 1]

    @property
    def done_twice(self) -> list[TaskFate]:
        return [task for task in self.tasks if task.done_twice]

    @property
    def verdict(self) -> str:
        return verdict(self)


def clock(ts: float | None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts)) if ts is not None else "?"


def runs_seen(gathered: Gathered) -> list[str]:
    """Every run id in the gathered events, oldest first (run ids sort by time)."""
    found = {e.get("run_id") for e in gathered.producer_events}
    found |= {e.get("run_id") for c in gathered.containers for e in c.events}
    return sorted(run for run in found if isinstance(run, str))


def last_run(gathered: Gathered) -> str | None:
    producer_runs = sorted(str(e["run_id"]) for e in gathered.producer_events if isinstance(e.get("run_id"), str))
    if producer_runs:
        return producer_runs[-1]
    seen = runs_seen(gathered)
    return seen[-1] if seen else None


def build(gathered: Gathered, run_id: str) -> RunReport:
    missing = list(gathered.missing)
    started = _producer_event(gathered, "run_started", run_id)
    finished = _producer_event(gathered, "run_finished", run_id)
    mode = Mode.named(started.get("mode") if started else _mode_from_workers(gathered.containers))
    run_start = started["ts"] if started else None
    workers, rejected = _follow_workers(gathered.containers, run_id, mode, run_start)
    count = int(started.get("count", 0)) if started else 0
    strays = _strays(workers, rejected, max(count, int(finished.get("sent") or 0) if finished else 0))
    attempts = [a for w in workers for a in w.attempts]
    if run_start is None and attempts:
        run_start = min(a.received for a in attempts)
    newer = _created_after(gathered.containers, run_start, missing)

    sent = _sent(started, finished, run_id, attempts, missing)
    queue_name = started.get("queue") if started else _queue_of(mode)
    queue_state = _queue(gathered.queues, queue_name)
    # What the producer could not send (noack) or the broker never confirmed (ack), after any resend.
    not_sent = {seq for seq in (finished or {}).get("unconfirmed") or [] if isinstance(seq, int)}
    highest = max([sent or 0, count, *(a.seq for a in attempts), *rejected])
    unread = sorted({*gathered.unread_hosts, *(f"{c.host}/{c.name}" for c in newer)})
    broker_went = _broker_went(gathered.containers, run_start) if mode is Mode.NOACK else None
    went = Went(broker_went, _queue_deleted(gathered.containers, run_start, queue_name), queue_name)
    tasks = _fates(highest, attempts, rejected, mode, unread, queue_state, went, not_sent)
    if any(t.fate == UNACCOUNTED for t in tasks):
        missing.append(
            "tasks seen by no worker and not in the queue: they may have been on their way to a worker as it "
            "stopped (noack mode: the broker counts a task sent as done with, and the worker drops what comes "
            "after its stop), or gone to a worker whose logs are gone (container recreated) or to a consumer "
            "outside the lab"
        )
    return RunReport(
        run_id=run_id,
        mode=mode,
        queue=queue_name,
        sent=sent,
        confirmed=finished.get("confirmed") if finished else None,
        started=run_start,
        workers=workers,
        tasks=tasks,
        queue_state=queue_state,
        missing=missing,
        foreign=foreign_tasks(gathered, run_id, run_start),
        faults=_faults_during(gathered.faults, attempts, run_start),
        went=went,
        dead_lettered=_dead_lettered(gathered.queues) if mode is Mode.ACK else None,
        strays=strays,
        clocks=list(gathered.clocks),
    )


def _strays(workers: list[WorkerSummary], rejected: set[int], sent: int) -> list[Attempt]:
    """Take out of the run what is numbered past the tasks its producer sent (0: no record, nothing to go by)."""
    if not sent:
        return []
    strays = []
    for worker in workers:
        strays += [a for a in worker.attempts if a.seq > sent]
        worker.attempts = [a for a in worker.attempts if a.seq <= sent]
    rejected.difference_update({seq for seq in rejected if seq > sent})
    return strays


def _follow_workers(
    containers: list[Container], run_id: str, mode: Mode | None, run_start: float | None
) -> tuple[list[WorkerSummary], set[int]]:
    workers: list[WorkerSummary] = []
    rejected: set[int] = set()
    for container in containers:
        summary, its_rejected = _follow_container(container, run_id, mode, run_start)
        workers.append(summary)
        rejected |= its_rejected
    return workers, rejected


def _created_after(containers: list[Container], run_start: float | None, missing: list[str]) -> list[Container]:
    """Workers created after the run began: their predecessors' events of the run are gone."""
    newer = [c for c in containers if run_start is not None and c.created is not None and c.created > run_start]
    for container in newer:
        missing.append(
            f"{container.host}/{container.name} was created at {clock(container.created)}, after the run began: "
            "its events of the run went with the container it replaced (site.yml recreates workers when "
            "a setting such as task_mode changes; report a run before changing them)"
        )
    return newer


def _faults_during(faults: list[Fault], attempts: list[Attempt], run_start: float | None) -> list[Fault]:
    """The faults from the run's start until its last task ended (or now, while it goes on)."""
    if run_start is None:
        return []
    ends = [a.ended for a in attempts]
    last = max((e for e in ends if e is not None), default=run_start) if None not in ends else float("inf")
    return sorted((f for f in faults if f.end >= run_start and f.start <= last), key=lambda f: f.start)


def _producer_event(gathered: Gathered, kind: str, run_id: str) -> Event | None:
    return next((e for e in gathered.producer_events if e.get("event") == kind and e.get("run_id") == run_id), None)


def _mode_from_workers(containers: list[Container]) -> str | None:
    modes = [e.get("mode") for c in containers for e in c.events if e.get("event") == "worker_started"]
    return modes[-1] if modes else None


def _sent(
    started: Event | None, finished: Event | None, run_id: str, attempts: list[Attempt], missing: list[str]
) -> int | None:
    if finished is not None:
        return int(finished.get("sent", 0))
    if started is not None:
        missing.append(f"the producer's record of run {run_id} has no end: it may still be publishing")
        return int(started.get("count", 0))
    seen = max((a.seq for a in attempts), default=0)
    missing.append(
        f"no producer record of run {run_id}: how many tasks were sent is unknown; "
        f"the report counts the tasks the workers saw (up to #{seen})"
    )
    return None


def _queue_of(mode: Mode | None) -> str | None:
    """The queue a mode uses (its default type: the name is the same for both)."""
    return queue_spec(mode).name if mode is not None else None


def _dead_lettered(queues: list[QueueState] | None) -> int | None:
    held = _queue(queues, DEAD_LETTER_QUEUE)
    return held.ready + held.unacknowledged if held is not None else None


def _queue(queues: list[QueueState] | None, name: str | None) -> QueueState | None:
    if queues is None or name is None:
        return None
    return next((q for q in queues if q.name == name), QueueState(name, 0, 0, 0))


def _follow_container(
    container: Container, run_id: str, mode: Mode | None, run_start: float | None
) -> tuple[WorkerSummary, set[int]]:
    """Pair each received event of the run with the done or abandoned event that ended it."""
    summary = WorkerSummary(container.worker, container.host, container.name, container.running, container.status, None)
    # What a worker holds is gone with it when it goes: lost in noack mode, back in the queue in ack mode.
    gone = LOST if mode is Mode.NOACK else REQUEUED
    held: dict[int, list[Attempt]] = {}
    rejected: set[int] = set()
    for event in container.events:
        kind = event.get("event")
        if kind == "worker_stopped" or (kind == "connection_lost" and mode is Mode.ACK):
            # The worker says "abandoned" first, so what it still holds is what it could not say.
            # A noack worker keeps working on what it holds when its connection drops.
            _end_held(held, event["ts"], gone)
            during_run = event["ts"] >= run_start if run_start is not None else bool(summary.attempts)
            if kind == "worker_stopped" and during_run:
                summary.stopped_at = event["ts"]
        elif kind == "consuming" and isinstance(event.get("node"), str):
            before_run = run_start is not None and event["ts"] < run_start
            if before_run:
                summary.nodes = [event["node"]]
            elif event["node"] not in summary.nodes[-1:]:
                summary.nodes.append(event["node"])
        elif event.get("run_id") == run_id and isinstance(event.get("seq"), int):
            if kind == "rejected":
                rejected.add(event["seq"])
            else:
                _follow_task(event, summary, held)
    if container.running is False and container.events:
        # Killed (SIGKILL, docker kill): it said nothing of what it held, which went with it after its last word.
        _end_held(held, float(container.events[-1]["ts"]), gone)
    _work_starts(summary.attempts)
    if container.running is False and summary.stopped_at is None:
        summary.stopped_at = next((a.ended for a in reversed(summary.attempts) if a.outcome in (LOST, REQUEUED)), None)
    return summary, rejected


def _follow_task(event: Event, summary: WorkerSummary, held: dict[int, list[Attempt]]) -> None:
    """A received event opens an attempt; the task's next done or abandoned event ends it."""
    seq, kind = event["seq"], event.get("event")
    if kind == "received":
        attempt = Attempt(seq, summary.worker, event["ts"], bool(event.get("redelivered")))
        summary.attempts.append(attempt)
        held.setdefault(seq, []).append(attempt)
    elif kind in ("done", "abandoned") and held.get(seq):
        attempt = held[seq].pop(0)
        attempt.ended = event["ts"]
        if kind == "done":
            attempt.outcome = REFUSED if event.get("refused") else DONE
        else:
            attempt.outcome = str(event.get("fate", LOST))
        attempt.work_seconds = float(event.get("work_seconds", 0.0))
    elif kind == "done" and event.get("refused"):
        # A thawed worker's two threads race: when the I/O thread said connection_lost first, that
        # ended the attempt as given back; the work thread's late done says its work was done all the same.
        given_back = [a for a in summary.attempts if a.seq == seq and a.outcome == REQUEUED]
        if given_back:
            given_back[-1].ended, given_back[-1].outcome = event["ts"], REFUSED
            given_back[-1].work_seconds = float(event.get("work_seconds", 0.0))


def _end_held(held: dict[int, list[Attempt]], when: float, outcome: str) -> None:
    for attempt in (a for attempts in held.values() for a in attempts):
        attempt.ended, attempt.outcome = when, outcome
    held.clear()


def _broker_went(containers: list[Container], run_start: float | None) -> float | None:
    """When the broker went during the run, if it did: every worker lost its connection, not one alone."""
    firsts = []
    for container in containers:
        lost = [
            float(e["ts"])
            for e in container.events
            if e.get("event") == "connection_lost" and (run_start is None or e["ts"] >= run_start)
        ]
        if not lost:
            return None
        firsts.append(min(lost))
    return min(firsts) if firsts else None


def _queue_deleted(containers: list[Container], run_start: float | None, queue: str | None) -> float | None:
    """When the run's queue was deleted during the run, if it was: the broker cancels every consumer of a deleted
    queue, and a worker says so (``consumer_cancelled``) before it declares the queue again."""
    cancelled = [
        float(e["ts"])
        for container in containers
        for e in container.events
        if e.get("event") == "consumer_cancelled"
        and e.get("queue") == queue
        and (run_start is None or e["ts"] >= run_start)
    ]
    return min(cancelled, default=None)


def _work_starts(attempts: list[Attempt]) -> None:
    """A worker does one task at a time: each starts when it arrived or when the one before ended."""
    free_at = 0.0
    for attempt in sorted(attempts, key=lambda a: a.received):
        if attempt.outcome == DONE and attempt.ended is not None:
            attempt.work_started = max(attempt.received, attempt.ended - attempt.work_seconds)
        else:
            attempt.work_started = max(attempt.received, free_at)
            if attempt.ended is not None and attempt.work_started > attempt.ended:
                attempt.work_started = attempt.ended  # it never started: abandoned while waiting
        # In its hands now: what came after it waits behind it, until now at least.
        free_at = math.inf if attempt.ended is None else max(free_at, attempt.ended)


def _fates(
    highest: int,
    attempts: list[Attempt],
    rejected: set[int],
    mode: Mode | None,
    unread: list[str],
    queue_state: QueueState | None,
    went: Went | None = None,
    not_sent: set[int] | None = None,
) -> list[TaskFate]:
    by_seq: dict[int, list[Attempt]] = {}
    for attempt in sorted(attempts, key=lambda a: a.received):
        by_seq.setdefault(attempt.seq, []).append(attempt)
    not_sent = not_sent or set()
    unseen = [seq for seq in range(1, highest + 1) if seq not in by_seq and seq not in rejected | not_sent]
    # FIFO: the broker holds the newest tasks; as many as it says are ready are queued. A count the
    # events have not caught up with may have handed out tasks whose receipt is not known yet:
    # until one has, every task seen by no worker may still be on its way, and is queued.
    ready = queue_state.ready if queue_state is not None else 0
    if queue_state is not None and not queue_state.complete:
        ready = len(unseen)
    queued = set(unseen[len(unseen) - min(ready, len(unseen)) :]) if ready else set()
    fates = []
    for seq in range(1, highest + 1):
        tries = by_seq.get(seq, [])
        if seq in not_sent and not tries:
            why = "never confirmed by the broker" if mode is Mode.ACK else "the producer lost its connection"
            fates.append(TaskFate(seq, NOT_SENT, tries, f"not sent: {why}"))
            continue
        fates.append(_fate(seq, tries, seq in rejected, seq in queued, mode, unread, went or Went()))
    return fates


def _fate(
    seq: int,
    tries: list[Attempt],
    rejected: bool,
    queued: bool,
    mode: Mode | None,
    unread: list[str],
    went: Went,
) -> TaskFate:
    if any(a.outcome in WORKED for a in tries):
        by = [
            f"{a.worker}{' (late: acknowledgement refused)' if a.outcome == REFUSED else ''}"
            for a in tries
            if a.outcome in WORKED
        ]
        return TaskFate(seq, DONE, tries, f"done {len(by)} times: {', '.join(by)}" if len(by) > 1 else "")
    if rejected:
        where = "moved to the dead-letter queue" if mode is Mode.ACK else "dropped"
        why = "empty, not UTF-8, too long or unreadable"
        return TaskFate(seq, REJECTED, tries, f"refused by a worker ({why}): {where}")
    if tries:
        last = tries[-1]
        if last.outcome == LOST:
            return TaskFate(seq, LOST, tries, f"dispatched to {last.worker}, stopped at {clock(last.ended)}")
        if last.outcome == REQUEUED:
            return TaskFate(seq, REQUEUED, tries, f"{last.worker} stopped at {clock(last.ended)}; the broker holds it")
        return TaskFate(seq, IN_PROGRESS, tries, f"in {last.worker}'s hands")
    if queued:
        return TaskFate(seq, QUEUED, tries, "not delivered yet: the broker holds it")
    if (lost_with := went.note()) is not None and not unread:
        return TaskFate(seq, LOST, tries, lost_with)
    if unread:
        return TaskFate(seq, UNKNOWN, tries, f"seen by no worker that was read; not read: {', '.join(unread)}")
    return TaskFate(seq, UNACCOUNTED, tries, "seen by no worker, not in the queue")


def verdict(report: RunReport) -> str:
    """The line a person reads first: ``10 sent, 8 done, 2 lost (#6, #9: dispatched to ...)``."""
    sent = f"{report.sent} sent" if report.sent is not None else f"{len(report.tasks)} seen (number sent unknown)"
    parts = [sent, f"{report.count(DONE)} done", f"{report.count(LOST)} lost"]
    lost_by_worker: dict[str, list[TaskFate]] = {}
    lost_with: list[TaskFate] = []  # with the broker, or the queue: report.went
    for task in report.tasks:
        if task.fate == LOST and task.dispatched_to:
            lost_by_worker.setdefault(task.dispatched_to, []).append(task)
        elif task.fate == LOST:
            lost_with.append(task)
    text = ", ".join(parts)
    groups = [
        f"{seq_list(t.seq for t in tasks)}: dispatched to {worker}, stopped at {clock(tasks[0].attempts[-1].ended)}"
        for worker, tasks in lost_by_worker.items()
    ]
    if lost_with:
        groups.append(f"{seq_list(t.seq for t in lost_with)}: {report.went.what}")
    if groups:
        text += f" ({'; '.join(groups)})"
    again = report.redelivered
    if again:
        moves = [f"#{t.seq} {' -> '.join(a.worker for a in t.attempts)}" for t in again]
        text += f"; {len(again)} redelivered ({', '.join(moves)})"
    if twice := report.done_twice:
        text += f"; {len(twice)} done twice ({seq_list(t.seq for t in twice)})"
    for fate in (NOT_SENT, REJECTED, UNKNOWN, UNACCOUNTED):
        if report.count(fate):
            text += f"; {report.count(fate)} {fate} ({seq_list(report.seqs(fate))})"
    if report.foreign:
        text += f"; {foreign_summary(report.foreign)}"
    if report.strays:
        by = sorted({a.worker for a in report.strays})
        numbers = seq_list(sorted({a.seq for a in report.strays}))
        text += (
            f"; {len(report.strays)} not of the run ({numbers}, past the tasks it sent; received by {', '.join(by)})"
        )
    if not report.settled:
        waiting = [f"{report.count(f)} {f}" for f in (IN_PROGRESS, REQUEUED, QUEUED) if report.count(f)]
        text += f"; still running: {', '.join(waiting)} (report again when it settles)"
    return text
