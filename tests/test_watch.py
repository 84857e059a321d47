"""The live view, on a real broker with real workers: what it shows while a run goes on."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.conftest import URL
from virtual_lab.processes import LocalLab as Lab
from virtual_lab.processes import done_seqs

HOST = socket.gethostname()


def test_watch_shows_the_queue_each_workers_task_and_a_stopped_worker(lab: Lab) -> None:
    workers = lab.workers(3, "--mode", "ack", "--seconds-per-dot", "0.3")
    command = [sys.executable, "-m", "report.watch", "--url", URL, "--mode", "ack", "--interval", "0.5",
               "--duration", "9"]  # fmt: skip
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as watch:
        time.sleep(1.5)  # it listens before the run starts
        producer = lab.produce("6", "--mode", "ack", "--url", URL)
        run_id = producer.events("run_started")[0]["run_id"]
        stopped = workers[1]
        stopped.wait_for_event("done")
        stopped.signal(signal.SIGTERM)
        stopped.wait(timeout=10)
        workers[0].wait_for(lambda: set(done_seqs(workers)) == set(range(1, 7)), 30, "every task done")
        out, err = watch.communicate(timeout=30)
    assert watch.returncode == 0, err
    frames = out.split("workqueue live view, ")[1:]  # each frame begins so
    assert len(frames) >= 10
    assert any(f"{HOST}/worker-1  working" in frame for frame in frames), "a frame shows a task in hand"
    in_hand = [line.split()[2] for frame in frames for line in frame.splitlines() if "  working  " in line]
    assert in_hand and all(cell.startswith("#") for cell in in_hand)

    last = frames[-1]
    assert f"run: {run_id}" in last
    assert "queue 'task_queue': 0 ready (broker), 0 unacknowledged (held by workers), 2 consumers" in last
    rows = {line.split()[0]: line.split() for line in last.splitlines() if line.startswith(f"{HOST}/")}
    assert rows[f"{HOST}/worker-2"][1] == "stopped"
    assert sum(int(row[-3]) for row in rows.values()) == 6, "done, all workers together"
    assert sum(int(row[-2]) for row in rows.values()) == 1, "the stopped worker's task, redelivered once"


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
    done = subprocess.run([sys.executable, "-m", "report.watch", *args],
                          capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    assert done.returncode == code
    assert "Traceback" not in done.stderr
    assert message in done.stderr.strip().splitlines()[-1]  # one line says it, after argparse's usage
