"""What became of a run's tasks, told from the workers' events: the demos' closing lines."""

from __future__ import annotations

from typing import Any


def fate_lines(events_by_worker: dict[str, list[dict[str, Any]]], stopped: str, count: int) -> list[str]:
    """Per worker: what it received, did and got again; then the verdict, lost tasks named."""
    lines = []
    done: set[int] = set()
    for worker, events in events_by_worker.items():
        received = [e["seq"] for e in events if e["event"] == "received"]
        finished = sorted({e["seq"] for e in events if e["event"] == "done"})
        redelivered = [e["seq"] for e in events if e["event"] == "received" and e["redelivered"]]
        done.update(finished)
        note = " (stopped)" if worker == stopped else ""
        again = f", redelivered to it: {redelivered}" if redelivered else ""
        lines.append(f"{worker}{note}: received {received}, done {finished}{again}")
    lost = sorted(set(range(1, count + 1)) - done)
    verdict = f"{count} sent, {len(done)} done, {len(lost)} lost"
    if lost:
        verdict += f" ({', '.join(f'#{s}' for s in lost)}: dispatched to {stopped}, which was stopped)"
    return [*lines, f"=> {verdict}"]
