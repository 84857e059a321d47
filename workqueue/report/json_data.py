"""The report as data: what the Markdown file says, for programs."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from workqueue.report.fates import RunReport


def as_dict(report: RunReport) -> dict[str, Any]:
    return {
        "run_id": report.run_id,
        "mode": report.mode.value if report.mode else None,
        "queue": report.queue,
        "verdict": report.verdict,
        "settled": report.settled,
        "sent": report.sent,
        "confirmed": report.confirmed,
        "started": report.started,
        "counts": {fate: report.count(fate) for fate in sorted({t.fate for t in report.tasks})},
        "workers": [
            {
                "worker": w.worker,
                "host": w.host,
                "container": w.container,
                "running": w.running,
                "status": w.status,
                "stopped_at": w.stopped_at,
                "state": w.state,
                "received": w.received,
                "done": w.done,
                "redelivered": w.redelivered,
                "not_finished": w.not_finished,
                "broker_nodes": w.nodes,
            }
            for w in report.workers
        ],
        "tasks": [
            {
                "seq": t.seq,
                "fate": t.fate,
                "done_by": t.done_by,
                "deliveries": len(t.attempts),
                "dispatched_to": t.dispatched_to,
                "note": t.note,
                "attempts": [asdict(a) for a in t.attempts],
            }
            for t in report.tasks
        ],
        "foreign": [asdict(t) for t in report.foreign],
        "faults": [asdict(f) for f in report.faults],
        "clocks": [asdict(c) for c in report.clocks],
        "broker_queue": asdict(report.queue_state) if report.queue_state else None,
        "dead_lettered": report.dead_lettered,
        "missing": report.missing,
    }
