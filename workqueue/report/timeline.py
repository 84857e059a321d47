"""The run as a picture (SVG): one lane per worker, a bar per task from received to done.

A task waits in its worker (grey) until its work starts, then the bar takes the
colour of its end: done, lost, requeued, or still in progress. The moment a
worker was stopped is a red line across its lane; lost tasks end there, in the
lane of the worker they had been dispatched to. Tasks no worker received are
listed under the lanes.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from html import escape

from workqueue.report.fates import DONE, IN_PROGRESS, LOST, REFUSED, REQUEUED, Attempt, RunReport, WorkerSummary, clock
from workqueue.tasks import seq_list

WIDTH = 1000
LABEL = 190  # the lane names' column
RIGHT = 30
ROW = 18
BAR = 12
LANE_GAP = 14
MAX_ROWS_PER_LANE = 60
GAP = 1.5
CHAR = 6.5  # width of a character of a bar's label, about

COLOURS = {DONE: "#2e7d32", LOST: "#c62828", REQUEUED: "#ef6c00", IN_PROGRESS: "#1565c0", REFUSED: "#6a1b9a"}
WAITING = "#cfd8dc"
STOP = "#c62828"
FAULT = "#6a1b9a"  # a drill's fault (playbooks/drill.yml), as a band
Scale = Callable[[float], float]  # a moment to its x in the picture
WORDS = {
    DONE: "done",
    LOST: "lost",
    REQUEUED: "requeued",
    IN_PROGRESS: "in progress",
    REFUSED: "done late, ack refused",
}


def render(report: RunReport, now: float, title: bool = True) -> str:
    """The SVG; without ``title`` (the live web page says the run and the verdict itself), the lanes only."""
    attempts = [a for t in report.tasks for a in t.attempts]
    start = min([a.received for a in attempts] + ([report.started] if report.started is not None else []), default=now)
    end = max(
        [a.ended or now for a in attempts]
        + [w.stopped_at or start for w in report.workers]
        + [start + 1]
        + [f.end for f in report.faults]
    )
    scale = (WIDTH - LABEL - RIGHT) / (end - start)

    def x(ts: float) -> float:
        return LABEL + (ts - start) * scale

    body: list[str] = []
    drawn: dict[int, tuple[float, float, float]] = {}  # id(attempt) -> its bar's start, end and middle height
    y = 84.0 if title else 40.0
    body += _axis(start, end, x, y - 12)
    lanes: list[tuple[WorkerSummary, float, float]] = []
    for worker in report.workers:
        top = y
        y = _lane(worker, _pack(worker.attempts, now), x, y, now, body, drawn)
        lanes.append((worker, top, y))
        y += LANE_GAP
    body += _faults(report, lanes, x)
    body += _moves(report, drawn)
    y = _undelivered(report, body, y)
    y = _legend(body, y + 6)
    heading = [
        _text(8, 22, f"Run {report.run_id} ({report.mode.value if report.mode else '?'} mode)", size=16, weight="bold"),
        _text(8, 44, report.verdict, size=12),
    ]
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{y + 10:.0f}" '
        f'viewBox="0 0 {WIDTH} {y + 10:.0f}" font-family="DejaVu Sans, Verdana, sans-serif">\n'
        f'<rect class="bg" width="100%" height="100%" fill="white"/>\n'
        + "\n".join((heading if title else []) + body)
        + "\n</svg>\n"
    )


def _lane(
    worker: WorkerSummary,
    rows: list[list[Attempt]],
    x: Scale,
    y: float,
    now: float,
    body: list[str],
    drawn: dict[int, tuple[float, float, float]],
) -> float:
    """One worker's lane: its name and state, a row of bars per overlap, the stop line. Returns its bottom."""
    height = max(2, min(len(rows), MAX_ROWS_PER_LANE)) * ROW + 8
    body.append(
        f'<rect class="lane" x="0" y="{y - 4}" width="{WIDTH}" height="{height}" fill="#f5f7f8" '
        f'data-worker="{escape(worker.worker)}" data-state="{escape(worker.state)}"/>'
    )
    body.append(_text(8, y + 10, worker.worker, weight="bold"))
    body.append(_text(8, y + 24, worker.state, size=11, fill="#555"))
    for index, row in enumerate(rows[:MAX_ROWS_PER_LANE]):
        for attempt in row:
            body += _bar(attempt, x, y + index * ROW, now, drawn)
    if len(rows) > MAX_ROWS_PER_LANE:
        hidden = sum(len(r) for r in rows[MAX_ROWS_PER_LANE:])
        body.append(_text(LABEL, y + height + 2, f"({hidden} more tasks not drawn)", size=11, fill="#555"))
    if worker.stopped_at is not None:
        sx = x(worker.stopped_at)
        body.append(
            f'<line x1="{sx:.1f}" y1="{y - 6}" x2="{sx:.1f}" y2="{y + height - 2}" '
            f'stroke="{STOP}" stroke-width="2" stroke-dasharray="5,3"/>'
        )
        words = f"docker stop {clock(worker.stopped_at)}"
        near_the_edge = sx + 4 + CHAR * len(words) > WIDTH  # then its words go to the left of the line
        where = (sx - 4, "end") if near_the_edge else (sx + 4, "start")
        body.append(_text(where[0], y + height - 6, words, size=11, fill=STOP, anchor=where[1]))
    return y + height


def _faults(report: RunReport, lanes: list[tuple[WorkerSummary, float, float]], x: Scale) -> list[str]:
    """Each drill's fault as a band from its start to its heal, on the lanes it touched (all: the broker)."""
    parts = []
    for fault in report.faults:
        x1 = x(fault.start)
        width = max(x(fault.end) - x1, 3)
        touched = [
            (top, bottom)
            for w, top, bottom in lanes
            if fault.worker is None or (w.host == fault.host and w.worker.endswith(f"/{fault.worker}"))
        ]
        for top, bottom in touched:
            parts.append(
                f'<rect x="{x1:.1f}" y="{top - 4:.1f}" width="{width:.1f}" height="{bottom - top:.1f}" '
                f'fill="{FAULT}" fill-opacity="0.18" stroke="{FAULT}" stroke-dasharray="2,2">'
                f"<title>{escape(fault.kind)} {clock(fault.start)} to {clock(fault.end)}</title></rect>"
            )
        if touched:
            duration = f" {fault.end - fault.start:.0f} s" if fault.end > fault.start else ""
            parts.append(
                _text(x1 + 2, touched[0][0] + 6, f"{fault.kind}{duration}", size=11, fill=FAULT, weight="bold")
            )
    return parts


def _moves(report: RunReport, drawn: dict[int, tuple[float, float, float]]) -> list[str]:
    """A dashed arrow from each delivery of a task that did not finish it to the next delivery."""
    parts = []
    for task in report.redelivered:
        for before, after in itertools.pairwise(task.attempts):
            if id(before) in drawn and id(after) in drawn:
                _, x1, y1 = drawn[id(before)]
                x2, _, y2 = drawn[id(after)]
                parts.append(
                    f'<path d="M{x1:.1f},{y1:.1f} L{x2:.1f},{y2:.1f}" stroke="{COLOURS[REQUEUED]}" '
                    'stroke-width="1.5" stroke-dasharray="4,3" fill="none" marker-end="url(#arrow)"/>'
                )
    if parts:
        parts.insert(
            0,
            f'<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
            f'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="{COLOURS[REQUEUED]}"/>'
            f"</marker></defs>",
        )
    return parts


def _pack(attempts: list[Attempt], now: float) -> list[list[Attempt]]:
    """Rows of attempts that do not overlap in time, first fit."""
    rows: list[list[Attempt]] = []
    for attempt in attempts:
        for row in rows:
            if (row[-1].ended or now) <= attempt.received:
                row.append(attempt)
                break
        else:
            rows.append([attempt])
    return rows


def _bar(attempt: Attempt, x: Scale, y: float, now: float, drawn: dict[int, tuple[float, float, float]]) -> list[str]:
    ended = attempt.ended or now
    work_from = min(attempt.work_started or attempt.received, ended)
    colour = COLOURS.get(attempt.outcome, COLOURS[IN_PROGRESS])
    x0, x1, x2 = x(attempt.received), x(work_from), x(ended)
    width = max(x2 - x1 - GAP, 3)  # a gap shows where one task ends and the next begins
    drawn[id(attempt)] = (x0, x1 + width, y + BAR / 2)
    parts = []
    if x1 - x0 >= 1:
        parts.append(f'<rect x="{x0:.1f}" y="{y:.1f}" width="{x1 - x0:.1f}" height="{BAR}" fill="{WAITING}"/>')
    # A task delivered again wears an outline: the second (or later) delivery of the same task.
    outline = ' class="again" stroke="#111" stroke-width="1.5"' if attempt.redelivered else ""
    tip = f"#{attempt.seq} {WORDS.get(attempt.outcome, attempt.outcome)}"
    parts.append(
        f'<rect x="{x1:.1f}" y="{y:.1f}" width="{width:.1f}" height="{BAR}" fill="{colour}"{outline} '
        f'data-seq="{attempt.seq}" data-fate="{escape(attempt.outcome)}" data-worker="{escape(attempt.worker)}">'
        f"<title>{escape(tip)} ({clock(attempt.received)} to {clock(ended)})</title></rect>"
    )
    label = f"#{attempt.seq}" + (" again" if attempt.redelivered else "")
    if attempt.outcome in (LOST, REQUEUED, REFUSED):
        # What ended at the stop is named beside its bar, where nothing follows it.
        parts.append(
            _text(x1 + width + 4, y + BAR - 2, f"{label} {WORDS[attempt.outcome]}", size=11, fill=colour, weight="bold")
        )
    elif width >= CHAR * len(label) + 4:
        parts.append(_text(x1 + 3, y + BAR - 2, label, size=10, fill="white", weight="bold"))
    return parts


def _axis(start: float, end: float, x: Scale, y: float) -> list[str]:
    span = end - start
    step = next(s for s in (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600, 1e9) if span / s <= 12)
    parts = [_text(LABEL, y - 6, f"seconds after {clock(start)}", size=11, fill="#555")]
    tick = 0.0
    while tick <= span:
        tx = x(start + tick)
        parts.append(f'<line x1="{tx:.1f}" y1="{y}" x2="{tx:.1f}" y2="{y + 5}" stroke="#999"/>')
        parts.append(_text(tx + 2, y + 4, f"{tick:g}", size=10, fill="#777"))
        tick += step
    return parts


def _undelivered(report: RunReport, body: list[str], y: float) -> float:
    waiting = [t for t in report.tasks if not t.attempts]
    if not waiting:
        return y
    by_fate: dict[str, list[int]] = {}
    for task in waiting:
        by_fate.setdefault(task.fate, []).append(task.seq)
    text = "; ".join(f"{fate}: {seq_list(seqs)}" for fate, seqs in by_fate.items())
    body.append(_text(8, y + 12, f"received by no worker: {text}", size=12, weight="bold"))
    return y + 22


def _legend(body: list[str], y: float) -> float:
    items = [
        (WAITING, "waiting in the worker"),
        (COLOURS[DONE], "working, then done"),
        (COLOURS[LOST], "lost (noack: gone with its worker)"),
        (COLOURS[REQUEUED], "requeued (ack: back to the broker)"),
        (COLOURS[IN_PROGRESS], "in progress"),
    ]
    # The outline and the arrow: a task given to another worker after its first one stopped.
    body.append(
        f'<rect class="again" x="8" y="{y + BAR + 8}" width="14" height="{BAR}" fill="{COLOURS[DONE]}" '
        f'stroke="#111" stroke-width="1.5"/>'
    )
    body.append(
        _text(
            26,
            y + 2 * BAR + 6,
            "delivered again (ack: redelivered by the broker; the dashed arrow "
            "comes from the delivery that did not finish it)",
            size=11,
        )
    )
    lx = 8.0
    for colour, words in items:
        body.append(f'<rect x="{lx:.0f}" y="{y}" width="14" height="{BAR}" fill="{colour}"/>')
        body.append(_text(lx + 18, y + BAR - 2, words, size=11))
        lx += 26 + 6.2 * len(words)
    return y + 2 * BAR + 16


# Text in these greys takes the theme's ink on the live web page (its dark theme); colours stay.
INKS = {"#222": "ink", "#555": "muted", "#777": "muted"}


def _text(
    x: float, y: float, words: str, size: int = 12, fill: str = "#222", weight: str = "normal", anchor: str = "start"
) -> str:
    ink = f' class="{INKS[fill]}"' if fill in INKS else ""
    ink += f' text-anchor="{anchor}"' if anchor != "start" else ""
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" fill="{fill}" font-weight="{weight}"{ink}>'
        f"{escape(words)}</text>"
    )
