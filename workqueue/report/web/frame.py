"""One frame of the web page: what was heard so far, told by the report's own code.

The verdict is ``report.fates``' verdict and the picture is ``report.timeline``'s
SVG: what the class saw live is what ``report.yml`` prints afterwards, in the
same colours and words. A frame holds no secret: the broker is named by
``Broker.where`` (never a password), and nothing else comes from the settings.
"""

from __future__ import annotations

import time
from typing import Any

from workqueue import cli
from workqueue.queues import Mode
from workqueue.report import fates, feed, timeline
from workqueue.report.fates import IN_PROGRESS
from workqueue.report.gathered import QueueState
from workqueue.report.leader import led_by
from workqueue.report.web.heard import Heard


def frame(heard: Heard, options: cli.BrokerOptions, run_filter: str | None, now: float) -> dict[str, Any]:
    gathered, feed_state = heard.read()
    mode, spec = feed.mode_queue(options, heard.mode)
    run = run_filter or fates.last_run(gathered)
    report = fates.build(gathered, run or "")
    queue = next((q for q in gathered.queues or [] if q.name == spec.name), None)
    in_hand = sum(a.outcome == IN_PROGRESS for w in report.workers for a in w.attempts)
    return {
        "clock": time.strftime("%H:%M:%S", time.localtime(now)),
        "broker": f"{options.broker.where}, {mode.value} mode",
        "feed": {"live": feed_state.live, "note": feed_state.note, "dropped": heard.reader.dropped},
        "alarm": heard.alarm_line,
        "queue": _queue(spec.name, queue, mode, in_hand),
        "run": run,
        "verdict": report.verdict if run else "no run yet: start the producer (each worker appears once it consumes)",
        "settled": bool(run) and report.settled,
        "svg": timeline.render(report, now, title=False),
    }


def _queue(name: str, queue: QueueState | None, mode: Mode, in_hand: int) -> dict[str, Any]:
    """The broker's count of ready tasks; the unacknowledged ones are those the workers say they hold."""
    if queue is None:
        line = f"queue '{name}': not declared yet (no worker or producer has started in this mode)"
        return {"name": name, "ready": None, "unacknowledged": None, "consumers": 0, "line": line}
    unacked = in_hand if mode is Mode.ACK else 0
    held = "held by workers" if mode is Mode.ACK else "noack: acknowledged on delivery"
    consumers = f"{queue.consumers} consumers{led_by(queue.leader)}"
    line = f"queue '{name}': {queue.ready} ready, {unacked} unacknowledged ({held}), {consumers}"
    return {
        "name": name,
        "ready": queue.ready,
        "unacknowledged": unacked,
        "consumers": queue.consumers,
        "leader": queue.leader,
        "line": line,
    }
