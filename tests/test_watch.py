"""The live view, on a real broker with real workers: what it shows while a run goes on."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import pytest

from tests.conftest import NODE, URL, ctrl_c
from workqueue.machine import local_broker
from workqueue.virtual_lab.processes import LocalLab as Lab
from workqueue.virtual_lab.processes import done_seqs

pytestmark = pytest.mark.broker

HOST = socket.gethostname()


class Watch:
    """``python -m workqueue.report.watch`` as a process, its frames read as they come."""

    def __init__(self, *args: str) -> None:
        command = [
            sys.executable,
            "-m",
            "workqueue.report.watch",
            "--url",
            URL,
            "--interval",
            "0.5",
            "--duration",
            "120",
            *args,
        ]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    def frames(self) -> list[str]:
        """Every whole frame so far (the last one may still be coming)."""
        return "".join(self.lines).split("workqueue live view, ")[1:-1]

    def wait_for_frame(self, condition: Callable[[str], bool], timeout: float, what: str) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [frame for frame in self.frames() if condition(frame)]
            if found:
                return found[-1]
            assert self.process.poll() is None, self.process.stderr.read() if self.process.stderr else ""
            time.sleep(0.1)
        raise AssertionError(f"no frame with {what} within {timeout:g} s; last: {self.frames()[-1:]}")

    def stop(self) -> tuple[int, str]:
        code, err = ctrl_c(self.process)
        self._reader.join(timeout=5)
        return code, err


def test_watch_shows_the_queue_each_workers_task_and_a_stopped_worker(lab: Lab) -> None:
    workers = lab.workers(3, "--mode", "ack", "--seconds-per-dot", "0.3")
    watch = Watch("--mode", "ack")
    try:
        watch.wait_for_frame(lambda frame: "3 consumers" in frame, 30, "the three workers consuming")
        producer = lab.produce("6", "--mode", "ack", "--url", URL)
        run_id = producer.events("run_started")[0]["run_id"]
        stopped = workers[1]
        stopped.wait_for_event("done")
        stopped.signal(signal.SIGTERM)
        stopped.wait(timeout=10)
        workers[0].wait_for(lambda: set(done_seqs(workers)) == set(range(1, 7)), 30, "every task done")

        def settled(frame: str) -> bool:
            rows = [line.split() for line in frame.splitlines() if line.startswith(f"{HOST}/")]
            return len(rows) == 3 and sum(int(row[-3]) for row in rows) == 6 and "0 ready" in frame

        last = watch.wait_for_frame(settled, 30, "every task done")
    finally:
        code, err = watch.stop()
    assert code == 130, err  # Ctrl+C
    frames = watch.frames()
    assert any(f"{HOST}/worker-1  working" in frame for frame in frames), "a frame shows a task in hand"
    in_hand = [line.split()[2] for frame in frames for line in frame.splitlines() if "  working  " in line]
    assert in_hand and all(cell.startswith("#") for cell in in_hand)

    assert f"run: {run_id}" in last
    assert "queue 'task_queue': 0 ready (broker), 0 unacknowledged (held by workers), 2 consumers" in last
    rows = {line.split()[0]: line.split() for line in last.splitlines() if line.startswith(f"{HOST}/")}
    assert rows[f"{HOST}/worker-2"][1] == "stopped"
    assert sum(int(row[-2]) for row in rows.values()) == 1, "the stopped worker's task, redelivered once"


def test_watch_says_in_one_line_when_the_broker_goes(lab: Lab) -> None:
    watch = Watch("--mode", "ack")
    try:
        watch.wait_for_frame(lambda frame: "queue 'task_queue'" in frame, 30, "a first frame")
        local_broker.ctl(NODE, "stop_app")
        code = watch.process.wait(timeout=30)
    finally:
        local_broker.ctl(NODE, "start_app")
        local_broker.ctl(NODE, "await_startup")
        _, err = watch.stop()
    assert code == 1
    (line,) = err.strip().splitlines()
    assert line.startswith("python -m workqueue.report.watch: error: lost the broker (")
    assert "start the view again when it is back" in err and "Traceback" not in err


def test_watch_says_while_the_broker_blocks_its_publishers_and_since_when(lab: Lab) -> None:
    workers = lab.workers(1, "--mode", "ack")
    watch = Watch("--mode", "ack")
    limit = local_broker.ctl(NODE, "status", "--formatter", "json").stdout
    try:
        watch.wait_for_frame(lambda frame: "1 consumers" in frame, 30, "the worker consuming")
        assert not any("ALARM" in frame for frame in watch.frames())
        local_broker.ctl(NODE, "set_disk_free_limit", str(10**18))  # past any disk's free space
        try:
            alarmed = watch.wait_for_frame(lambda frame: "ALARM" in frame, 15, "the alarm")
        finally:
            local_broker.ctl(NODE, "set_disk_free_limit", str(json.loads(limit)["disk_free_limit"]))
        watch.wait_for_frame(lambda frame: frame == watch.frames()[-1] and "ALARM" not in frame, 15, "it cleared")
    finally:
        code, err = watch.stop()
    assert code == 130, err
    assert re.search(r"ALARM: the broker blocks every publisher since \d\d:\d\d:\d\d: low on disk", alarmed)
    assert workers[0].process.poll() is None


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--url", "http://localhost"], 2, "broker URL must start with amqp://"),
        (["--url", URL, "--run", "latest"], 2, "--run: 'latest' is not a run id like"),
        (["--url", "amqp://guest:guest@127.0.0.1:1/", "--connect-timeout", "0"], 1, "broker not reachable for"),
        (["--inventory", "no/such/inventory.yml"], 1, "no inventory at no/such/inventory.yml"),
    ],
)
def test_watch_bad_input_says_what_to_fix(args: list[str], code: int, message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "workqueue.report.watch", *args], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == code
    assert "Traceback" not in result.stderr
    assert message in result.stderr.strip().splitlines()[-1]  # one line says it, after argparse's usage
