"""The real producer and workers run as local processes (tests, demo), and what they report."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from workqueue.events import read_events

ROOT = Path(__file__).resolve().parents[2]
# As the README runs them from a checkout (the installed commands are workqueue-worker and workqueue-new-task).
WORKER = [sys.executable, "-m", "workqueue.worker_image.worker"]
PRODUCER = [sys.executable, "-m", "workqueue.producer.new_task"]


class Program:
    """One process whose standard output and error go to files that tests read."""

    def __init__(
        self, command: list[str], args: list[str], workdir: Path, name: str, env: dict[str, str] | None = None
    ) -> None:
        self.name = name
        self.stdout_path = workdir / f"{name}.out"
        self.stderr_path = workdir / f"{name}.err"
        environment = {k: v for k, v in os.environ.items() if k not in ENV_OPTIONS}
        environment.update(env or {})
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.process = subprocess.Popen([*command, *args], stdout=out, stderr=err, env=environment, cwd=workdir)

    def lines(self) -> list[str]:
        return self.stdout_path.read_text(errors="replace").splitlines()

    def errors(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        found = list(read_events(self.errors().splitlines()))
        return [e for e in found if kind is None or e["event"] == kind]

    def wait_for(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            if self.process.poll() is not None and not condition():
                raise AssertionError(f"{self.name} exited ({self.process.returncode}) before {what}:\n{self.errors()}")
            time.sleep(0.05)
        raise AssertionError(f"{self.name}: no {what} within {timeout} s:\n{self.errors()[-2000:]}")

    def wait_for_event(self, kind: str, timeout: float = 30, **match: Any) -> dict[str, Any]:
        def found() -> list[dict[str, Any]]:
            return [e for e in self.events(kind) if all(e.get(k) == v for k, v in match.items())]

        self.wait_for(lambda: bool(found()), timeout, f"'{kind}' event {match or ''}")
        return found()[0]

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = 30) -> int:
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class LocalLab:
    """Workers and producers run as processes on this machine; ``stop_all`` ends them."""

    def __init__(self, workdir: Path, url: str) -> None:
        self.workdir = workdir
        self.url = url  # the broker every program uses unless its --url says otherwise
        self.programs: list[Program] = []
        self._count = 0

    def worker(self, *args: str, name: str | None = None, env: dict[str, str] | None = None) -> Program:
        self._count += 1
        name = name or f"worker-{self._count}"
        program = Program(WORKER, [*args, "--name", name], self.workdir, name, {"AMQP_URL": self.url, **(env or {})})
        self.programs.append(program)
        return program

    def workers(self, count: int, *args: str) -> list[Program]:
        started = [self.worker(*args) for _ in range(count)]
        for worker in started:
            worker.wait_for_event("consuming", timeout=30)
        return started

    def produce(self, *args: str, timeout: float = 60) -> Program:
        self._count += 1
        program = Program(PRODUCER, list(args), self.workdir, f"producer-{self._count}", {"AMQP_URL": self.url})
        program.wait(timeout)
        return program

    def stop_all(self) -> None:
        for program in self.programs:
            program.stop()


# Options a developer's shell may have set; tests say every option they rely on.
ENV_OPTIONS = {
    "AMQP_URL",
    "AMQP_PASSWORD_FILE",
    "AMQP_CA_FILE",
    "TASK_MODE",
    "QUEUE_TYPE",
    "PREFETCH",
    "SECONDS_PER_DOT",
    "WORKER_NAME",
    "WORKER_HOST",
    "CONNECT_TIMEOUT",
    "HEALTH_FILE",
    "PUBLISH_RATE",
}


def done_seqs(workers: list[Program]) -> dict[int, list[str]]:
    """Task number -> the workers that finished it."""
    done: dict[int, list[str]] = {}
    for worker in workers:
        for event in worker.events("done"):
            done.setdefault(event["seq"], []).append(worker.name)
    return done


def received_seqs(worker: Program) -> list[int]:
    return [e["seq"] for e in worker.events("received")]
