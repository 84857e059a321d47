"""`make demo-processes`: the tutorial as processes on the tests' own RabbitMQ node, and its two verdicts."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from workqueue.virtual_lab.processes import ROOT

pytestmark = pytest.mark.broker


def test_the_demo_as_processes_loses_the_stopped_workers_share_in_noack_mode_and_nothing_in_ack_mode(
    broker: str,
) -> None:
    command = [sys.executable, "-m", "workqueue.demo.local", "--node", "tests", "--seconds-per-dot", "0.05"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT, check=False)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stdout[-3000:] + done.stderr[-2000:]
    assert ">>> stopping worker-2 (SIGTERM, what docker stop sends) while it holds tasks" in done.stdout
    # Each round's verdict, as the demo prints it: "=> 10 sent, ...".
    noack, ack = [line.split("=> ", 1)[1] for line in done.stdout.splitlines() if "=> 10 sent, " in line]
    lost = re.fullmatch(r"10 sent, (\d+) done, (\d+) lost \(.*: dispatched to local/worker-2, stopped at .*\)", noack)
    assert lost and int(lost[1]) + int(lost[2]) == 10 and int(lost[2]) >= 1, noack
    # ack: nothing lost (what worker-2 held, if it held a task when stopped, was redelivered).
    assert re.fullmatch(
        r"10 sent, 10 done, 0 lost(; 1 redelivered \(#\d+ local/worker-2 -> local/worker-\d\))?", ack
    ), ack
