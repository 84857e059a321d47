"""Fixtures: a real RabbitMQ node of the tests' own on loopback, clean queues, and programs run as processes."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pika
import pika.exceptions
import pytest

from workqueue.machine import local_broker
from workqueue.virtual_lab import lab_runs
from workqueue.virtual_lab.hosts import Lab
from workqueue.virtual_lab.lab_runs import recap
from workqueue.virtual_lab.processes import LocalLab

# A node and a vhost of the tests' own, set up as the lab's broker is (default
# queue type and policies): the tests never touch a broker a developer uses.
NODE = local_broker.TESTS
VHOST = "workqueue-tests"
URL = NODE.url(VHOST)
QUEUES = ("hello", "task_queue", "task_queue.rejected")
# A dedicated user of the tests' node, with a password that is nothing else (see broker_user).
USER = "wq-test-user"
PASSWORD = "test-user-Secret-9f2"
# The node is the machine's, whichever checkout the tests run from: so is its lock.
BROKER_LOCK = Path(tempfile.gettempdir()) / f"{NODE.name}.lock"


# The lanes, longest first (seconds on 2 cores, CI of 2026-12-06): testlab 2442, clusterlab 1641, drilllab 1425,
# trixielab 769, demolab 574, broker 400, hostlab 36. pytest-xdist hands a worker its next lane when two of its
# tests are left; longest first, the short lanes fill the gaps at the end instead of queueing behind a long one
# (simulated on that run's times: 2446 s, against 2651 s in xdist's own order, by count of tests).
LANES_LONGEST_FIRST = ("testlab", "clusterlab", "drilllab", "trixielab", "demolab", "broker", "hostlab")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests' broker node is one: the tests that use it run in one lane (pytest-xdist's --dist loadgroup),
    beside the lanes of the labs (each lab's module names its own group). The lanes go longest first
    (with --no-loadscope-reorder, xdist keeps this order); the tests of no lane after them."""
    for item in items:
        if item.get_closest_marker("broker") and not item.get_closest_marker("xdist_group"):
            item.add_marker(pytest.mark.xdist_group("broker"))

    def lane(item: pytest.Item) -> int:
        marker = item.get_closest_marker("xdist_group")
        name = (marker.args[0] if marker.args else marker.kwargs.get("name")) if marker else None
        return LANES_LONGEST_FIRST.index(name) if name in LANES_LONGEST_FIRST else len(LANES_LONGEST_FIRST)

    items.sort(key=lane)  # stable: each lane's tests keep their order


# Each playbook a test runs on a virtual lab, and how long it took: where the suite's time goes
# (bench/suite_times.py counts them per module). The name, the lab and the seconds: never the arguments,
# which can hold a password.
PLAYBOOK_TIMES = Path(__file__).resolve().parents[1] / "build" / "tests" / "playbooks.jsonl"


@pytest.fixture(scope="session", autouse=True)
def playbook_times() -> Iterator[None]:
    run = lab_runs.playbook

    def timed(lab: Lab, name: str, *args: str, **options: Any) -> subprocess.CompletedProcess[str]:
        started = time.monotonic()
        try:
            return run(lab, name, *args, **options)
        finally:
            test = os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0]
            record = {"test": test, "lab": lab.name, "playbook": name, "seconds": round(time.monotonic() - started, 1)}
            with PLAYBOOK_TIMES.open("a") as log:
                log.write(json.dumps(record) + "\n")

    PLAYBOOK_TIMES.parent.mkdir(parents=True, exist_ok=True)
    lab_runs.playbook = timed
    yield
    lab_runs.playbook = run


# How long a program may take to end after Ctrl+C before a test kills it (it ends within a second or two).
CTRL_C_SECONDS = 15


def ctrl_c(process: subprocess.Popen[str]) -> tuple[int, str]:
    """Stop a program as a person does (Ctrl+C); its exit code and what it said on standard error."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        code = process.wait(timeout=CTRL_C_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        code = process.wait(timeout=15)
    return code, process.stderr.read() if process.stderr else ""


def succeeded(done: subprocess.CompletedProcess[str]) -> dict[str, int]:
    """A playbook that succeeded: how many things it changed on each host (its PLAY RECAP)."""
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    return {host: counts["changed"] for host, counts in recap(done.stdout).items()}


def changed_nothing(done: subprocess.CompletedProcess[str], hosts: Iterable[str]) -> None:
    """A playbook that succeeded and changed nothing on these hosts, each of them in its PLAY RECAP
    (a recap that did not parse, or left a host out, would otherwise pass for "nothing changed")."""
    counts = succeeded(done)
    missing = sorted(set(hosts) - set(counts))
    assert not missing, f"not in the PLAY RECAP: {missing}\n{done.stdout[-2000:]}"
    assert {host: n for host, n in counts.items() if n} == {}, f"a re-run changed something: {counts}"


@pytest.fixture(scope="session")
def broker() -> Iterator[str]:
    """The tests' node, to this test process alone: a second process (a lane given broker tests by
    mistake, a developer's second run) waits for the first one's end instead of emptying its queues."""
    with BROKER_LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        local_broker.ensure_broker(NODE)
        yield local_broker.prepare_vhost(NODE, VHOST)


def queue_counts() -> dict[str, tuple[int, int]]:
    return local_broker.queue_counts(NODE, VHOST)


def assert_counts(queue: str, expected: tuple[int, int], timeout: float = 20) -> None:
    """The broker comes to count (ready, unacknowledged) for the queue: a quorum queue's figures lag by seconds."""
    deadline = time.monotonic() + timeout
    while (counts := queue_counts().get(queue, (0, 0))) != expected and time.monotonic() < deadline:
        time.sleep(0.5)
    assert counts == expected, f"queue {queue!r}: {counts} (ready, unacknowledged), expected {expected}"


def delete_queues() -> None:
    connection = pika.BlockingConnection(pika.URLParameters(URL))
    channel = connection.channel()
    for name in QUEUES:
        channel.queue_delete(name)
    connection.close()


@pytest.fixture
def clean_broker(broker: str) -> Iterator[str]:
    """The broker with none of the project's queues, before and after the test."""
    delete_queues()
    yield broker
    delete_queues()


@contextlib.contextmanager
def account(user: str, password: str, rights: tuple[str, str, str]) -> Iterator[None]:
    """A broker user of the tests' vhost with (configure, write, read) rights, made as the role makes one
    (the password never on a command line), and removed after."""
    ctl = ["rabbitmqctl", "-n", NODE.name]
    subprocess.run([*ctl, "delete_user", user], check=False, capture_output=True)  # a crashed run's
    subprocess.run([*ctl, "add_user", user], input=password + "\n", text=True, check=True, capture_output=True)
    subprocess.run([*ctl, "set_permissions", "-p", VHOST, user, *rights], check=True, capture_output=True)
    try:
        yield
    finally:
        subprocess.run([*ctl, "delete_user", user], check=False, capture_output=True)


@pytest.fixture
def broker_user(clean_broker: str) -> Iterator[str]:
    """A dedicated broker user, with every right on the tests' vhost."""
    with account(USER, PASSWORD, (".*", ".*", ".*")):
        yield USER


@pytest.fixture
def lab(clean_broker: str, tmp_path: Path) -> Iterator[LocalLab]:
    lab = LocalLab(tmp_path, clean_broker)
    yield lab
    lab.stop_all()


def consumer_count(queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(URL))
    try:
        count: int = connection.channel().queue_declare(queue, passive=True).method.consumer_count
        return count
    except pika.exceptions.ChannelClosedByBroker:
        return 0
    finally:
        if connection.is_open:
            connection.close()


def declared(queue: str, kind: str = "queue") -> bool:
    """Whether the queue (or the exchange) exists in the tests' vhost (a passive declare, which makes nothing)."""
    connection = pika.BlockingConnection(pika.URLParameters(URL))
    try:
        channel = connection.channel()
        if kind == "exchange":
            channel.exchange_declare(queue, passive=True)
        else:
            channel.queue_declare(queue, passive=True)
        return True
    except pika.exceptions.ChannelClosedByBroker:
        return False
    finally:
        if connection.is_open:
            connection.close()
