"""The report as rows: the same tables for the terminal and for Markdown."""

from __future__ import annotations

from workqueue.queues import DEAD_LETTER_QUEUE
from workqueue.report.fates import DONE, Attempt, RunReport, clock
from workqueue.report.gathered import Fault
from workqueue.report.leader import led_by
from workqueue.report.partition import story
from workqueue.tasks import seq_list

# A terminal lists every task up to this many; beyond, only those not simply done once.
TERMINAL_TASK_ROWS = 40

WORKER_HEADER = ["worker", "state", "received", "done", "redelivered to it", "not finished"]
TASK_HEADER = ["task", "fate", "done by", "deliveries", "how"]
FOREIGN_HEADER = ["received", "by", "outcome", "from"]


def heading(report: RunReport) -> str:
    parts = [f"Run {report.run_id}"]
    if report.mode:
        parts.append(f"{report.mode.value} mode")
    if report.queue:
        parts.append(f"queue '{report.queue}'")
    if report.started is not None:
        parts.append(f"started {clock(report.started)}")
    return ", ".join(parts)


def broker_line(report: RunReport) -> str:
    state = report.queue_state
    if state is None:
        return "broker: not read (see what is missing)"
    # Never dropped silently: what a worker refused, or what passed the policy's delivery limit.
    kept = (
        f"; {report.dead_lettered} in '{DEAD_LETTER_QUEUE}' (refused, or redelivered past the delivery limit)"
        if report.dead_lettered
        else ""
    )
    return (
        f"broker now: queue '{state.name}' holds {state.ready} ready and "
        f"{state.unacknowledged} unacknowledged, {state.consumers} consumers{led_by(state.leader)}{kept}"
    )


def _with_nodes(report: RunReport) -> bool:
    """With a cluster of brokers, a column says which node each worker consumed from, and to which it moved."""
    return len(report.broker_nodes) > 1


def worker_header(report: RunReport) -> list[str]:
    return WORKER_HEADER + (["broker node"] if _with_nodes(report) else [])


def worker_rows(report: RunReport) -> list[list[str]]:
    nodes = _with_nodes(report)
    return [
        [w.worker, w.state, _counted(w.received), _counted(w.done), _counted(w.redelivered), _counted(w.not_finished)]
        + ([" -> ".join(w.nodes) or "?"] if nodes else [])
        for w in report.workers
    ]


def task_rows(report: RunReport, all_tasks: bool) -> tuple[list[list[str]], int]:
    """The task rows, and how many plain ones were left out."""
    tasks = report.tasks
    if not all_tasks and len(tasks) > TERMINAL_TASK_ROWS:
        tasks = [t for t in tasks if t.fate != DONE or len(t.attempts) != 1 or t.note]
    rows = [
        [f"#{t.seq}", t.fate, ", ".join(t.done_by) or "-", str(len(t.attempts)), _how(t.note, t.attempts)]
        for t in tasks
    ]
    return rows, len(report.tasks) - len(tasks)


def _how(note: str, attempts: list[Attempt]) -> str:
    if note:
        return note
    if len(attempts) > 1:
        return " -> ".join(a.worker for a in attempts)
    return ""


def _counted(seqs: list[int]) -> str:
    return f"{len(seqs)}: {seq_list(sorted(seqs))}" if seqs else "0"


def foreign_rows(report: RunReport) -> list[list[str]]:
    """Tasks from other producers: apart from the run's, never among its lost or unknown."""
    return [[clock(t.received), t.worker, t.outcome, t.origin] for t in report.foreign]


def _caught(fault: Fault, run_id: str) -> str:
    """``, caught #3``: the task the worker held when the fault struck."""
    if fault.caught_seq is not None and fault.caught_run == run_id:
        return f", caught #{fault.caught_seq}"
    return ", caught a task of another run" if fault.caught_run or fault.caught_seq is not None else ""


def _where(f: Fault) -> str:
    if f.worker:
        return f"{f.host}/{f.worker}"
    if f.fault.startswith("broker-node"):
        return f"broker node {f.host}"
    if f.fault == "partition":
        return "every broker node, each alone" if f.host == "each" else f"broker node {f.host}, from the others"
    return f"the broker ({f.host})"


def fault_lines(report: RunReport) -> list[str]:
    """``freeze on lab3/worker-1, 02:22:04 to 02:22:44 (40 s)``: the drills' faults during the run."""
    lines = []
    for f in report.faults:
        where = _where(f)
        span = f"{clock(f.start)} to {clock(f.end)} ({f.end - f.start:.0f} s)" if f.end > f.start else clock(f.start)
        told = f": {story(f.partition)}" if f.partition else ""
        lines.append(f"{f.kind} on {where}, {span}{_caught(f, report.run_id)}{told}")
    return lines


# Where a clock's difference is worth a reader's attention (what a lab without NTP drifts to).
CLOCK_WORTH_SAYING = 1.0


def clock_lines(report: RunReport) -> list[str]:
    """``lab3/worker-1 is 40.0 s behind this machine (±0.02 s): ...``: the clocks more than a second off."""
    lines = []
    for c in report.clocks:
        if abs(c.offset) > CLOCK_WORTH_SAYING:
            way = "ahead of" if c.offset > 0 else "behind"
            lines.append(
                f"{c.of} is {abs(c.offset):.1f} s {way} this machine (±{c.uncertainty:.2f} s): "
                "its events are placed on this machine's clock"
            )
    return lines
