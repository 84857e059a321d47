"""The playbooks end to end, on the tests' own virtual lab, through ansible-playbook only.

One lab for the module: testlab1 the broker, testlab2 and testlab3 workers, testlab4 the
producer. Each test asks for the deployment it needs with ``deploy(...)``, which runs
site.yml only when the lab is not already deployed that way (a test that disturbs the lab,
a drill say, says so with ``disturbed()``). So the tests share one deployed lab when run in
order, and any one of them runs on its own with ``pytest -k``.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker
import pika
import pika.exceptions
import pytest
import yaml

from machine import engine, images
from report import lab_settings
from tests.secret_places import CommandLines, where_secrets_show
from virtual_lab import hosts, lab_runs
from virtual_lab.hosts import TEST_LAB
from virtual_lab.lab_runs import done_by, on, on_result, queue_row, recap, run_id_of, unfinished, wait_until
from workqueue.connection import BrokerError, broker_from_url, connect
from workqueue.tasks import seq_list

pytestmark = [pytest.mark.docker, pytest.mark.lab]

ROOT = Path(__file__).resolve().parents[1]
BROKER, WORKER_A, WORKER_B, PRODUCER = (f"{TEST_LAB.name}{i}" for i in range(1, 5))
WORKERS = (WORKER_A, WORKER_B)
BROKER_ADDRESS = f"{TEST_LAB.subnet_prefix}.{hosts.FIRST_ADDRESS}"
# Every run passes these, so the workers' settings stay the same: short tasks, and a 3 s heartbeat,
# so that the broker gives up on a frozen worker within about 9 s.
HEARTBEAT = 3
FAST = ("-e", "seconds_per_dot=0.2", "-e", f"heartbeat_seconds={HEARTBEAT}")
NOACK = ("-e", "task_mode=noack")
GUEST = ("-e", "rabbitmq_guest_remote_access=true")
assert TEST_LAB.credentials is not None
CREDENTIALS = TEST_LAB.credentials / "rabbitmq-workqueue-password"
# The class account's (rabbitmq_class_user): what students' own programs log in with.
CLASS_CREDENTIALS = TEST_LAB.credentials / "rabbitmq-student-password"
# Drill tasks last 6 s (30 dots at 0.2 s): a stop through ansible-playbook takes a few seconds.
LONG = ("-e", "task_message=long..............................")
# The freeze in ack mode must land while a task is in hand, not at its end (between its done and
# its ack: done twice, but not late), and outlast its remaining work by two heartbeats: 12 s tasks,
# 20 s frozen. Which task it catches depends on how long the drill takes to strike (6 to 12 s and
# more under load): the tests read it from the workers' events, not from the task in hand before.
LONGER = ("-e", "task_message=longer" + "." * 60)


def playbook(name: str, *args: str, inventory: Path | None = None) -> subprocess.CompletedProcess[str]:
    return lab_runs.playbook(TEST_LAB, name, *args, inventory=inventory)


def succeeded(done: subprocess.CompletedProcess[str]) -> dict[str, dict[str, int]]:
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    return recap(done.stdout)


def changed(done: subprocess.CompletedProcess[str]) -> dict[str, int]:
    return {host: counts["changed"] for host, counts in recap(done.stdout).items()}


@pytest.fixture(scope="module")
def client() -> docker.DockerClient:
    client = engine.ensure_engine()
    images.program_images(client)
    return client


@pytest.fixture(scope="module")
def lab(client: docker.DockerClient) -> Iterator[docker.DockerClient]:
    hosts.down(client, TEST_LAB)
    hosts.up(client, 4, TEST_LAB)
    disturbed()
    yield client
    hosts.down(client, TEST_LAB)


# --- the deployment each test needs

_deployed: dict[str, tuple[str, ...] | None] = {"settings": None}


def deploy(client: docker.DockerClient, *settings: str) -> subprocess.CompletedProcess[str] | None:
    """The lab deployed with these settings (on top of FAST): site.yml, unless it already is."""
    if _deployed["settings"] == settings:
        return None
    disturbed()
    done = playbook("site.yml", *FAST, *settings)
    succeeded(done)
    queue = "hello" if "task_mode=noack" in settings else "task_queue"
    vhost = "/" if "rabbitmq_guest_remote_access=true" in settings else "workqueue"
    wait_until(lambda: consumers(client, queue, vhost) == 2, 60, f"two consumers on {queue}")
    _deployed["settings"] = settings
    return done


def disturbed() -> None:
    """The lab is no longer as the last deploy left it: the next deploy runs site.yml."""
    _deployed["settings"] = None


# --- what the broker and the workers say


def consumers(client: docker.DockerClient, queue: str, vhost: str = "workqueue") -> int:
    return int(queue_row(client, BROKER, queue, "consumers", vhost=vhost).get("consumers", 0))


def queue_counts(client: docker.DockerClient, queue: str, vhost: str = "workqueue") -> tuple[int, int]:
    row = queue_row(client, BROKER, queue, "messages_ready", "messages_unacknowledged", vhost=vhost)
    return row.get("messages_ready", 0), row.get("messages_unacknowledged", 0)


def settled_counts(client: docker.DockerClient, queue: str, expected: tuple[int, int]) -> None:
    """The broker comes to count (ready, unacknowledged): a quorum queue's figures lag by seconds."""
    try:
        wait_until(lambda: queue_counts(client, queue) == expected, 30, f"{expected} on {queue}")
    except TimeoutError:
        assert queue_counts(client, queue) == expected


def worker_events(client: docker.DockerClient, host: str, run_id: str) -> list[dict]:
    return lab_runs.worker_events(client, host, run_id)


def done_seqs(client: docker.DockerClient, run_id: str) -> dict[int, list[str]]:
    return done_by(client, list(WORKERS), run_id)


def workers_on(client: docker.DockerClient, host: str) -> dict[str, tuple[str, str]]:
    """Each worker container on a host, running or not: name -> (container id, when it started)."""
    listed = on(client, host, "docker", "ps", "-aq", "--filter", "label=workqueue-lab=worker").split()
    if not listed:
        return {}
    found = json.loads(on(client, host, "docker", "inspect", *listed))
    return {c["Name"].lstrip("/"): (c["Id"], c["State"]["StartedAt"]) for c in found}


def lab_state(client: docker.DockerClient) -> dict[str, object]:
    """What a playbook could change: the containers on the hosts, the broker's vhosts, users and configuration."""
    state: dict[str, object] = {host: workers_on(client, host) for host in WORKERS}
    state["vhosts"] = on(client, BROKER, "rabbitmqctl", "list_vhosts", "-q")
    state["users"] = on(client, BROKER, "rabbitmqctl", "list_users", "-q")
    state["config"] = on_result(client, BROKER, "cat", "/etc/rabbitmq/rabbitmq.conf")
    return state


def produce(*args: str) -> str:
    done = playbook("produce.yml", *FAST, *args)
    assert done.returncode == 0, done.stdout[-3000:]
    return run_id_of(done.stdout)


def report(folder: Path, *args: str, inventory: Path | None = None) -> tuple[subprocess.CompletedProcess[str], dict]:
    """Run playbooks/report.yml into a folder of the test's; its JSON report, when it wrote one."""
    done = playbook("report.yml", "-e", f"report_dir={folder}", *args, inventory=inventory)
    written = sorted(folder.glob("*/report.json"))
    return done, json.loads(written[-1].read_text()) if written else {}


# --- the tutorial's own programs, as a student writes them (from the tutorial's documented behaviour)


class TutorialWorker:
    """A student's worker.py as the tutorial writes it: durable task_queue, prefetch 1, ack after the work."""

    def __init__(self, url: str, arguments: dict[str, str] | None = None) -> None:
        self.received: list[str] = []
        self._stop = threading.Event()
        self._connection = pika.BlockingConnection(pika.URLParameters(url))
        channel = self._connection.channel()
        channel.queue_declare(queue="task_queue", durable=True, arguments=arguments)
        channel.basic_qos(prefetch_count=1)
        channel.basic_consume(queue="task_queue", on_message_callback=self._callback)
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _callback(self, channel, method, properties, body: bytes) -> None:
        self.received.append(body.decode())
        channel.basic_ack(delivery_tag=method.delivery_tag)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._connection.process_data_events(time_limit=0.2)
        self._connection.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def tutorial_new_task(url: str, bodies: list[str], arguments: dict[str, str] | None = None) -> None:
    """A student's new_task.py as the tutorial writes it: declare task_queue durable, publish persistent."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.queue_declare(queue="task_queue", durable=True, arguments=arguments)
    for body in bodies:
        properties = pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent)
        channel.basic_publish(exchange="", routing_key="task_queue", body=body.encode(), properties=properties)
    connection.close()


def foreign_done(client: docker.DockerClient) -> list[tuple[str, str]]:
    """(worker host, origin) of every task from another producer that the lab's workers finished."""
    found = []
    for host in WORKERS:
        received: list[str] = []
        for event in lab_runs.container_events(client, host):
            if event.get("run_id") is None and event["event"] == "received":
                received.append(event["origin"])
            elif event.get("run_id") is None and event["event"] == "done" and received:
                found.append((host, received.pop(0)))
    return found


def student_url(guest: bool = False) -> str:
    """What a student writes: the broker's address, and in the dedicated mode the class account and the vhost."""
    if guest:
        return f"amqp://guest:guest@{BROKER_ADDRESS}:5672/%2F"
    return f"amqp://student:{CLASS_CREDENTIALS.read_text().strip()}@{BROKER_ADDRESS}:5672/workqueue"


def broker_users(client: docker.DockerClient) -> dict[str, list[str]]:
    """The broker's users and their tags."""
    users = json.loads(on(client, BROKER, "rabbitmqctl", "list_users", "-q", "--formatter", "json"))
    return {user["user"]: user["tags"] for user in users}


# --- deploying


def test_site_on_fresh_hosts_deploys_broker_and_connected_workers(lab: docker.DockerClient) -> None:
    if _deployed["settings"] is not None or on_result(lab, WORKER_A, "test", "-e", "/usr/bin/docker")[0] == 0:
        pytest.skip("the lab was deployed by an earlier test: this one needs fresh hosts")  # only out of order
    done = deploy(lab)
    assert done is not None
    assert all(counts["failed"] == 0 for counts in recap(done.stdout).values())
    assert on(lab, BROKER, "systemctl", "is-active", "rabbitmq-server").strip() == "active"
    for host in WORKERS:
        assert list(workers_on(lab, host)) == ["workqueue-worker-1"]
    # The one change a student makes to the tutorial's programs, printed for this lab (never the password).
    assert f'host="{BROKER_ADDRESS}", virtual_host="workqueue",' in done.stdout
    assert 'credentials=pika.PlainCredentials("student", PASSWORD)))' in done.stdout
    said = " ".join(done.stdout.split())  # the output's YAML folds long lines
    assert f"(PASSWORD: in {CLASS_CREDENTIALS.resolve()}, for the class, out of band;" in said
    # The class account has no tag; guest, an administrator on loopback, is gone (RabbitMQ's checklist).
    assert broker_users(lab) == {"workqueue": [], "student": []}
    # The workers run hardened: no capability, no new privilege, a read-only root, bounded memory,
    # processes and logs; and healthy so (the health file is on the /tmp tmpfs).
    [inspected] = json.loads(on(lab, WORKER_A, "docker", "inspect", "workqueue-worker-1"))
    config = inspected["HostConfig"]
    assert (config["CapDrop"], config["SecurityOpt"], config["ReadonlyRootfs"]) == (
        ["ALL"],
        ["no-new-privileges"],
        True,
    )
    assert (config["Memory"], config["PidsLimit"]) == (256 * 2**20, 64)
    assert config["LogConfig"] == {"Type": "json-file", "Config": {"max-file": "5", "max-size": "50m"}}
    wait_until(
        lambda: (
            on(lab, WORKER_A, "docker", "inspect", "-f", "{{.State.Health.Status}}", "workqueue-worker-1").strip()
            == "healthy"
        ),
        90,
        "a healthy worker",
    )
    # The lab's queue is a quorum queue, declared with no argument: the vhost's default type.
    listed = on(
        lab,
        BROKER,
        "rabbitmqctl",
        "list_queues",
        "-q",
        "-p",
        "workqueue",
        "--formatter",
        "json",
        "name",
        "type",
        "arguments",
        "policy",
    )
    task_queue = next(q for q in json.loads(listed) if q["name"] == "task_queue")
    assert (task_queue["type"], task_queue["policy"]) == ("quorum", "workqueue-task-queue")
    assert task_queue["arguments"] == [["x-queue-type", "longstr", "quorum"]], "the vhost's type, no other argument"


# Deprecations from inside the collections, not from this project's playbooks and roles.
OUTSIDE_DEPRECATIONS = {
    # community.rabbitmq.rabbitmq_user (the user's permissions) imports it.
    "The `ansible.module_utils.common.collections.count` function is deprecated.",
}


def test_second_site_changes_nothing_and_check_mode_is_clean(lab: docker.DockerClient) -> None:
    deploy(lab)
    again = playbook("site.yml", *FAST, "-v")
    succeeded(again)
    assert changed(again) == dict.fromkeys(changed(again), 0)
    checked = playbook("site.yml", *FAST, "--check", "--diff")
    succeeded(checked)
    assert changed(checked) == dict.fromkeys(changed(checked), 0)
    # Deprecation warnings are on (ansible.cfg): none of ours, only those from inside a collection.
    warned = " ".join((again.stdout + again.stderr).split())
    assert set(re.findall(r"\[DEPRECATION WARNING\]: (.+?\.) ", warned)) <= OUTSIDE_DEPRECATIONS, warned[-3000:]


def test_make_watch_finds_the_broker_and_the_tests_own_password_from_the_inventory(lab: docker.DockerClient) -> None:
    deploy(lab)
    found = lab_settings.from_inventory(TEST_LAB.inventory)
    assert found.url == f"amqp://workqueue@{BROKER_ADDRESS}:5672/workqueue?heartbeat=8"  # the inventory's
    # The tests' lab keeps its own password, never the one of a lab a developer made with make lab-up.
    assert found.password_file == str(CREDENTIALS.resolve()) and CREDENTIALS.is_relative_to(ROOT / "build")


def test_the_tutorials_own_programs_work_beside_the_lab(lab: docker.DockerClient, tmp_path: Path) -> None:
    deploy(lab)
    url = student_url()
    before = len(foreign_done(lab))
    # The seed's declaration (durable=True alone) and today's tutorial's (x-queue-type quorum) both work.
    tutorial_new_task(url, ["seed style #1", "seed style #2"])
    tutorial_new_task(url, ["quorum style #1"], arguments={"x-queue-type": "quorum"})
    wait_until(lambda: len(foreign_done(lab)) == before + 3, 30, "the three students' tasks done by the lab")
    assert {origin for _, origin in foreign_done(lab)[before:]} == {
        "another producer: 'seed style #1'",
        "another producer: 'seed style #2'",
        "another producer: 'quorum style #1'",
    }

    # A student's worker takes a round-robin share of the lab producer's run, beside the containers.
    student = TutorialWorker(url)
    try:
        wait_until(lambda: consumers(lab, "task_queue") == 3, 30, "the student's worker among the consumers")
        run_id = produce("-e", "task_count=9", "-e", "task_message=t")
        wait_until(lambda: len(done_seqs(lab, run_id)) + len(student.received) == 9, 30, "the nine tasks done")
    finally:
        student.stop()
    by_student = sorted(int(body.split("#")[1]) for body in student.received)
    assert 2 <= len(by_student) <= 4, by_student  # its share of three consumers, not all and not none
    assert set(by_student).isdisjoint(done_seqs(lab, run_id)) and len(done_seqs(lab, run_id)) == 9 - len(by_student)

    # A poison task from a student's program is dead-lettered by the broker's policy, not dropped.
    tutorial_new_task(url, ["", "after the poison"])
    wait_until(lambda: queue_counts(lab, "task_queue.rejected")[0] == 1, 30, "the empty task in task_queue.rejected")

    # The report counts the students' tasks apart: the run's own tasks are all accounted for.
    done, data = report(tmp_path, "-e", f"run_id={run_id}")
    assert done.returncode == 0, done.stdout[-3000:]
    assert data["counts"] == {"done": 9 - len(by_student), "unaccounted": len(by_student)}
    assert sorted(f["outcome"] for f in data["foreign"]) == ["done", "rejected"]
    assert "; 2 tasks from other producers, done by " in data["verdict"] and data["verdict"].endswith("1 rejected")


# --- the drills


def test_ack_stopped_worker_mid_run_loses_nothing(lab: docker.DockerClient, tmp_path: Path) -> None:
    deploy(lab)
    run_id = produce("-e", "task_count=6", *LONG)

    wait_until(lambda: bool(unfinished(lab, WORKER_B, run_id)), 30, f"a task in hand on {WORKER_B}")
    disturbed()
    succeeded(playbook("stop_worker.yml", "-e", f"target={WORKER_B}"))
    events_b = worker_events(lab, WORKER_B, run_id)
    in_flight = {e["seq"] for e in events_b if e["event"] == "abandoned"}
    assert len(in_flight) == 1 and all(e["fate"] == "requeued" for e in events_b if e["event"] == "abandoned")

    wait_until(lambda: set(done_seqs(lab, run_id)) == set(range(1, 7)), 90, "every task done")
    events_a = worker_events(lab, WORKER_A, run_id)
    redelivered = [e["seq"] for e in events_a if e["event"] == "received" and e["redelivered"]]
    assert redelivered == sorted(in_flight)
    settled_counts(lab, "task_queue", (0, 0))

    # The report of the run says the same: nothing lost, the task in hand redelivered and named.
    done, data = report(tmp_path, "-e", f"run_id={run_id}")
    assert done.returncode == 0, done.stdout[-3000:]
    assert changed(done) == dict.fromkeys(changed(done), 0), "report.yml changes nothing on the hosts"
    assert data["run_id"] == run_id and data["counts"] == {"done": 6}
    (again,) = [t for t in data["tasks"] if t["deliveries"] > 1]
    assert [again["seq"]] == sorted(in_flight)
    assert [a["worker"] for a in again["attempts"]] == [f"{WORKER_B}/worker-1", f"{WORKER_A}/worker-1"]
    assert f"6 sent, 6 done, 0 lost; 1 redelivered (#{again['seq']} {WORKER_B}/worker-1 -> " in done.stdout
    picture = ET.parse(tmp_path / run_id / "timeline.svg").getroot()
    assert picture.tag == "{http://www.w3.org/2000/svg}svg"
    assert any((t.text or "").startswith("docker stop ") for t in picture.iter("{http://www.w3.org/2000/svg}text"))


def drill(*args: str) -> subprocess.CompletedProcess[str]:
    disturbed()
    done = playbook("drill.yml", *FAST, *args)
    succeeded(done)
    return done


def in_hand(client: docker.DockerClient, run_id: str) -> int:
    """Wait until the second worker host has a task of the run in hand; its number."""
    wait_until(lambda: bool(unfinished(client, WORKER_B, run_id)), 30, f"a task in hand on {WORKER_B}")
    return min(unfinished(client, WORKER_B, run_id))


def drill_mid_run(
    client: docker.DockerClient,
    fault: str,
    *settings: str,
    tasks: int,
    duration: int | None = None,
    message: tuple[str, str] = LONG,
) -> tuple[str, int]:
    """A run of long tasks, and the fault (on the second worker host) once it holds one: the run id, that task."""
    deploy(client, *settings)
    run_id = produce(*settings, "-e", f"task_count={tasks}", *message)
    held = in_hand(client, run_id)
    args = ["-e", f"fault={fault}"]
    args += [] if fault.startswith("broker") else ["-e", f"target={WORKER_B}"]
    args += ["-e", f"duration={duration}"] if duration else []
    started = time.monotonic()
    drill(*settings, *args)
    assert duration is None or time.monotonic() - started >= duration, "a lasting fault lasts its duration"
    return run_id, held


def test_drill_kill_in_ack_mode_redelivers_the_task_in_hand(lab: docker.DockerClient, tmp_path: Path) -> None:
    run_id, _ = drill_mid_run(lab, "kill", tasks=6)
    assert lab_runs.container_events(lab, WORKER_B)[-1]["event"] != "worker_stopped", "SIGKILL: not a word"
    (held,) = unfinished(lab, WORKER_B, run_id)  # in hand when the kill came (the drill takes seconds to strike)
    wait_until(lambda: set(done_seqs(lab, run_id)) == set(range(1, 7)), 90, "every task done")
    redelivered = [
        e["seq"] for e in worker_events(lab, WORKER_A, run_id) if e["event"] == "received" and e["redelivered"]
    ]
    assert redelivered == [held]
    settled_counts(lab, "task_queue", (0, 0))
    done, data = report(tmp_path, "-e", f"run_id={run_id}")
    assert data["counts"] == {"done": 6} and f"6 sent, 6 done, 0 lost; 1 redelivered (#{held} " in done.stdout


def test_drill_kill_in_noack_mode_loses_what_the_worker_held(lab: docker.DockerClient, tmp_path: Path) -> None:
    run_id, _ = drill_mid_run(lab, "kill", *NOACK, tasks=6)
    received_a = {e["seq"] for e in worker_events(lab, WORKER_A, run_id) if e["event"] == "received"}
    wait_until(lambda: received_a <= set(done_seqs(lab, run_id)), 90, f"{WORKER_A} done with its own tasks")
    held_b = unfinished(lab, WORKER_B, run_id)  # received and never done: SIGKILL leaves no word
    assert held_b and set(range(1, 7)) - set(done_seqs(lab, run_id)) == held_b
    _, data = report(tmp_path, "-e", f"run_id={run_id}")
    assert {t["seq"] for t in data["tasks"] if t["fate"] == "lost"} == held_b


def test_drill_freeze_in_ack_mode_redelivers_and_counts_the_task_done_twice(
    lab: docker.DockerClient, tmp_path: Path
) -> None:
    # Six tasks: the worker holds one for about 36 s, whenever the drill's pause lands (it took
    # more than 12 s under load: the task in hand when the drill began was done by then).
    run_id, _ = drill_mid_run(lab, "freeze", tasks=6, duration=20, message=LONGER)
    # The broker gave the frozen worker's task to the other worker; thawed, the frozen one finished it too.
    wait_until(lambda: set(done_seqs(lab, run_id)) == set(range(1, 7)), 120, "every task done")
    redelivered = [
        e["seq"] for e in worker_events(lab, WORKER_A, run_id) if e["event"] == "received" and e["redelivered"]
    ]
    assert len(redelivered) == 1, f"one task taken from the frozen worker: {worker_events(lab, WORKER_B, run_id)}"
    (frozen,) = redelivered
    wait_until(lambda: done_seqs(lab, run_id).get(frozen) == list(WORKERS), 30, f"#{frozen} done by both")
    late = [e for e in worker_events(lab, WORKER_B, run_id) if e["event"] == "done" and e.get("refused")]
    assert [e["seq"] for e in late] == [frozen] and late[0]["late"] > 2 * HEARTBEAT
    settled_counts(lab, "task_queue", (0, 0))
    done, data = report(tmp_path, "-e", f"run_id={run_id}")
    assert data["counts"] == {"done": 6}
    assert data["verdict"].endswith(f"1 done twice (#{frozen})") and ", 0 lost; " in data["verdict"]
    # The drill left its record: the report names the fault, and the timeline draws it on the frozen lane.
    (fault,) = data["faults"]
    assert (fault["fault"], fault["host"], fault["worker"]) == ("freeze", WORKER_B, "worker-1")
    assert 20 <= fault["end"] - fault["start"] <= 35
    assert "fault: freeze on " in done.stdout
    wait_until(lambda: consumers(lab, "task_queue") == 2, 60, "the thawed worker consuming again")


def test_drill_freeze_in_noack_mode_makes_its_tasks_late_not_lost(lab: docker.DockerClient, tmp_path: Path) -> None:
    run_id, _ = drill_mid_run(lab, "freeze", *NOACK, tasks=4, duration=15)
    wait_until(lambda: set(done_seqs(lab, run_id)) == set(range(1, 5)), 90, "every task done, late or not")
    assert any(e.get("late") for e in worker_events(lab, WORKER_B, run_id) if e["event"] == "done")
    _, data = report(tmp_path, "-e", f"run_id={run_id}")
    assert data["counts"] == {"done": 4} and data["verdict"].startswith("4 sent, 4 done, 0 lost")


def test_drill_cut_in_ack_mode_loses_nothing_and_the_worker_comes_back(
    lab: docker.DockerClient, tmp_path: Path
) -> None:
    run_id, held = drill_mid_run(lab, "cut", tasks=4, duration=15)
    assert on_result(lab, WORKER_B, "nft", "list", "table", "inet", "workqueue_drill")[0] != 0, "the cut is healed"
    wait_until(lambda: set(done_seqs(lab, run_id)) == set(range(1, 5)), 90, "every task done")
    assert any(e["event"] == "connection_lost" for e in lab_runs.container_events(lab, WORKER_B))
    redelivered = [
        e["seq"] for e in worker_events(lab, WORKER_A, run_id) if e["event"] == "received" and e["redelivered"]
    ]
    # What it held when the cut came: #held, or the task after it if it finished #held before the drill struck.
    received_b = {e["seq"] for e in worker_events(lab, WORKER_B, run_id) if e["event"] == "received"}
    assert redelivered and set(redelivered) <= received_b and min(redelivered) >= held, (
        "the broker gave the cut-off worker's task to the other"
    )
    settled_counts(lab, "task_queue", (0, 0))
    wait_until(lambda: consumers(lab, "task_queue") == 2, 90, "the cut-off worker consuming again")
    _, data = report(tmp_path, "-e", f"run_id={run_id}")
    assert data["counts"] == {"done": 4} and ", 0 lost" in data["verdict"]


def test_drill_cut_in_noack_mode_loses_only_what_no_worker_finished(lab: docker.DockerClient, tmp_path: Path) -> None:
    run_id, _ = drill_mid_run(lab, "cut", *NOACK, tasks=4, duration=15)
    for host in WORKERS:
        received = {e["seq"] for e in worker_events(lab, host, run_id) if e["event"] == "received"}
        wait_until(lambda r=received: r <= set(done_seqs(lab, run_id)), 90, f"{host} done with what it received")
    never_finished = set(range(1, 5)) - set(done_seqs(lab, run_id))
    _, data = report(tmp_path, "-e", f"run_id={run_id}")
    assert {t["seq"] for t in data["tasks"] if t["fate"] == "lost"} == never_finished


def test_drill_broker_restart_in_ack_mode_keeps_every_task(lab: docker.DockerClient, tmp_path: Path) -> None:
    run_id, _ = drill_mid_run(lab, "broker-restart", tasks=6)
    wait_until(lambda: set(done_seqs(lab, run_id)) == set(range(1, 7)), 120, "every task done after the restart")
    assert all(any(e["event"] == "connection_lost" for e in lab_runs.container_events(lab, h)) for h in WORKERS)
    settled_counts(lab, "task_queue", (0, 0))
    _, data = report(tmp_path, "-e", f"run_id={run_id}")
    assert data["counts"] == {"done": 6} and ", 0 lost" in data["verdict"]


def test_drill_broker_restart_in_noack_mode_loses_what_no_worker_finished(
    lab: docker.DockerClient, tmp_path: Path
) -> None:
    run_id, _ = drill_mid_run(lab, "broker-restart", *NOACK, tasks=6)
    for host in WORKERS:  # a noack worker keeps what it was pushed and finishes it, connection or not
        received = {e["seq"] for e in worker_events(lab, host, run_id) if e["event"] == "received"}
        wait_until(lambda r=received: r <= set(done_seqs(lab, run_id)), 90, f"{host} done with what it received")
    assert all(any(e["event"] == "connection_lost" for e in lab_runs.container_events(lab, h)) for h in WORKERS)
    never_finished = set(range(1, 7)) - set(done_seqs(lab, run_id))
    _, data = report(tmp_path, "-e", f"run_id={run_id}")
    assert {t["seq"] for t in data["tasks"] if t["fate"] == "lost"} == never_finished
    wait_until(lambda: consumers(lab, "hello") == 2, 60, "the workers consuming again from a new 'hello'")


def produce_during_broker_down(client: docker.DockerClient, *settings: str) -> subprocess.CompletedProcess[str]:
    """produce.yml spread over about 10 s, and the broker down for 8 s while it publishes; its result."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        spread = ("-e", "task_count=20", "-e", "publish_rate=2", "-e", "task_message=t")
        producing = pool.submit(playbook, "produce.yml", *FAST, *settings, *spread)

        def publishing() -> bool:
            return "workqueue-producer" in on(client, PRODUCER, "docker", "ps", "--format", "{{.Names}}")

        wait_until(publishing, 60, "the producer publishing")
        drill(*settings, "-e", "fault=broker-down", "-e", "duration=8")
        return producing.result(timeout=300)


def test_drill_broker_down_in_ack_mode_the_producer_resends_and_nothing_is_lost(
    lab: docker.DockerClient, tmp_path: Path
) -> None:
    deploy(lab)
    produced = produce_during_broker_down(lab)
    assert produced.returncode == 0, produced.stdout[-3000:]
    said = " ".join(produced.stdout.split())
    # It lost the broker, came back, and sent again what was unconfirmed then (often nothing, at 2 tasks/s).
    assert "connection lost while sending #" in said and " [*] Reconnected: " in said, said[-3000:]
    run_id = run_id_of(produced.stdout)
    wait_until(lambda: set(done_seqs(lab, run_id)) == set(range(1, 21)), 120, "every task done")
    settled_counts(lab, "task_queue", (0, 0))
    _, data = report(tmp_path, "-e", f"run_id={run_id}")
    assert data["counts"] == {"done": 20} and data["verdict"].startswith("20 sent, 20 done, 0 lost")


def test_drill_broker_down_in_noack_mode_names_what_was_not_sent(lab: docker.DockerClient, tmp_path: Path) -> None:
    deploy(lab, *NOACK)
    produced = produce_during_broker_down(lab, *NOACK)
    assert produced.returncode != 0
    line = next(line for line in produced.stdout.splitlines() if "tasks not sent: #" in line)
    run_id = run_id_of(produced.stdout)
    _, data = report(tmp_path, "-e", f"run_id={run_id}")
    not_sent = {t["seq"] for t in data["tasks"] if t["fate"] == "not sent"}
    assert not_sent and f"{len(not_sent)} of 20 tasks not sent: {seq_list(sorted(not_sent))}" in line
    assert not (not_sent & set(done_seqs(lab, run_id))), "a task named as not sent was never worked"


def test_a_freeze_interrupted_with_ctrl_c_heals_anyway(lab: docker.DockerClient) -> None:
    deploy(lab)
    disturbed()
    command = [
        str(lab_runs.PLAYBOOK),
        "-i",
        str(TEST_LAB.inventory),
        str(ROOT / "playbooks" / "drill.yml"),
        *FAST,
        "-e",
        "fault=freeze",
        "-e",
        f"target={WORKER_B}",
        "-e",
        "duration=12",
    ]
    paused = ["docker", "inspect", "-f", "{{.State.Paused}}", "workqueue-worker-1"]
    with subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT) as drilling:
        try:
            wait_until(lambda: on(lab, WORKER_B, *paused).strip() == "true", 60, "the worker frozen")
            drilling.send_signal(signal.SIGINT)  # Ctrl+C, while the freeze lasts
            assert drilling.wait(timeout=30) != 0
        finally:
            if drilling.poll() is None:
                drilling.kill()
    assert on(lab, WORKER_B, *paused).strip() == "true", "interrupted mid-freeze"
    wait_until(lambda: on(lab, WORKER_B, *paused).strip() == "false", 30, "the timer on the host resuming the worker")


DRILL_BAD_INPUTS = {
    "unknown fault": (["-e", "fault=flood"], "say which fault: -e fault=KIND with KIND one of stop, kill, freeze"),
    "unknown target": (["-e", "fault=stop", "-e", "target=nowhere"], "(got nowhere)"),
    "duration out of bounds": (["-e", "fault=freeze", "-e", "duration=3"], "from 5 to 600 (got 3)"),
    "no such worker": (["-e", "fault=freeze", "-e", "worker=7"], f"{WORKER_A} runs no workqueue-worker-7"),
}


@pytest.mark.parametrize("case", DRILL_BAD_INPUTS)
def test_drill_bad_input_changes_nothing(lab: docker.DockerClient, case: str) -> None:
    args, message = DRILL_BAD_INPUTS[case]
    deploy(lab)
    before = lab_state(lab)
    done = playbook("drill.yml", *FAST, *args)
    assert done.returncode != 0 and message in " ".join(done.stdout.split())
    assert all(count == 0 for count in changed(done).values())
    assert lab_state(lab) == before


def test_site_restarts_a_stopped_worker(lab: docker.DockerClient) -> None:
    deploy(lab)
    disturbed()
    succeeded(playbook("stop_worker.yml", "-e", f"target={WORKER_B}"))
    assert "workqueue-worker-1" not in on(lab, WORKER_B, "docker", "ps", "--format", "{{.Names}}")
    succeeded(playbook("site.yml", *FAST))
    assert "workqueue-worker-1" in on(lab, WORKER_B, "docker", "ps", "--format", "{{.Names}}")


def test_noack_round_robin_gives_each_worker_three(lab: docker.DockerClient) -> None:
    deploy(lab, *NOACK)
    run_id = produce(*NOACK, "-e", "task_count=6", "-e", "task_message=task")
    wait_until(lambda: len(done_seqs(lab, run_id)) == 6, 30, "six tasks done")
    by_host = [h for by in done_seqs(lab, run_id).values() for h in by]
    assert sorted(by_host) == sorted([WORKER_A] * 3 + [WORKER_B] * 3)


def test_noack_stopped_worker_loses_its_unfinished_share(lab: docker.DockerClient, tmp_path: Path) -> None:
    deploy(lab, *NOACK)
    run_id = produce(*NOACK, "-e", "task_count=6", *LONG)
    wait_until(lambda: any(e["event"] == "received" for e in worker_events(lab, WORKER_B, run_id)), 30, "tasks")
    disturbed()
    succeeded(playbook("stop_worker.yml", "-e", f"target={WORKER_B}"))
    received_a = {e["seq"] for e in worker_events(lab, WORKER_A, run_id) if e["event"] == "received"}
    wait_until(lambda: received_a <= set(done_seqs(lab, run_id)), 90, f"{WORKER_A} done with its own tasks")
    received_b = {e["seq"] for e in worker_events(lab, WORKER_B, run_id) if e["event"] == "received"}
    lost = set(range(1, 7)) - set(done_seqs(lab, run_id))
    assert lost and lost <= received_b
    assert {e["seq"] for e in worker_events(lab, WORKER_B, run_id) if e["event"] == "abandoned"} == lost
    assert queue_counts(lab, "hello") == (0, 0)

    # The report of the newest run: the lost set is the tasks that never reached " [x] Done",
    # all dispatched to the stopped worker.
    done, data = report(tmp_path)
    assert done.returncode == 0, done.stdout[-3000:]
    assert data["run_id"] == run_id and data["settled"]
    assert {t["seq"] for t in data["tasks"] if t["fate"] == "lost"} == lost
    assert {t["dispatched_to"] for t in data["tasks"] if t["fate"] == "lost"} == {f"{WORKER_B}/worker-1"}
    stopped = {w["worker"]: w["running"] for w in data["workers"]}
    assert stopped == {f"{WORKER_A}/worker-1": True, f"{WORKER_B}/worker-1": False}
    assert f"6 sent, {6 - len(lost)} done, {len(lost)} lost (" in done.stdout
    assert f": dispatched to {WORKER_B}/worker-1, stopped at " in done.stdout


def test_a_worker_comes_back_with_its_host_and_a_stopped_one_stays_stopped(lab: docker.DockerClient) -> None:
    deploy(lab)
    disturbed()
    on(lab, WORKER_B, "docker", "stop", "workqueue-worker-1")  # stopped on purpose, as a drill does
    before_a = workers_on(lab, WORKER_A)
    for host in WORKERS:  # the machines reboot (systemd inside shuts down and boots again)
        lab.containers.get(host).restart(timeout=30)
    wait_until(lambda: all(hosts.ssh_answers(TEST_LAB, h.address) for h in hosts.plan(4, TEST_LAB)), 90, "SSH")

    def running(host: str) -> list[str]:
        return on(lab, host, "docker", "ps", "--format", "{{.Names}}").split()

    wait_until(lambda: running(WORKER_A) == ["workqueue-worker-1"], 90, f"the worker back on {WORKER_A}")
    assert workers_on(lab, WORKER_A)["workqueue-worker-1"][0] == before_a["workqueue-worker-1"][0], "the same one"
    assert running(WORKER_B) == [], "unless-stopped: a worker stopped on purpose stays stopped across a reboot"


# --- changing the deployment


def test_scaling_adds_and_removes_workers_and_nothing_else(lab: docker.DockerClient) -> None:
    deploy(lab)
    first = workers_on(lab, WORKER_A)["workqueue-worker-1"]
    disturbed()
    more = playbook("site.yml", *FAST, "-e", "workers_per_host=2")
    succeeded(more)
    assert changed(more)[BROKER] == 0 and changed(more)[PRODUCER] == 0
    wait_until(lambda: consumers(lab, "task_queue") == 4, 60, "four consumers")
    assert workers_on(lab, WORKER_A)["workqueue-worker-1"] == first, "the existing worker is left running as it was"
    fewer = playbook("site.yml", *FAST)
    succeeded(fewer)
    assert changed(fewer)[BROKER] == 0
    assert workers_on(lab, WORKER_A) == {"workqueue-worker-1": first}
    _deployed["settings"] = ()


def test_guest_remote_access_mode(lab: docker.DockerClient) -> None:
    done = deploy(lab, *GUEST)
    assert done is not None
    assert "WARNING: rabbitmq_guest_remote_access is true" in done.stdout
    assert f'host="{BROKER_ADDRESS}"))' in done.stdout
    assert "loopback_users = none" in on(lab, BROKER, "cat", "/etc/rabbitmq/rabbitmq.conf")
    users = {
        u["user"]: u["tags"]
        for u in json.loads(on(lab, BROKER, "rabbitmqctl", "list_users", "-q", "--formatter", "json"))
    }
    assert users["guest"] == [], "guest has its vhost's rights, and no administrator tag for the network"
    assert f"amqp://guest@{BROKER_ADDRESS}:5672/%2F" in on(lab, WORKER_A, "docker", "inspect", "workqueue-worker-1")
    run_id = produce(*GUEST, "-e", "task_count=2", "-e", "task_message=t")
    wait_until(lambda: len(done_seqs(lab, run_id)) == 2, 30, "two tasks done as guest")
    # The tutorial's own setting: guest/guest on the default vhost, only the broker's address changed;
    # both of the tutorial's declarations meet the lab's queue.
    before = len(foreign_done(lab))
    tutorial_new_task(student_url(guest=True), ["guest seed style"])
    tutorial_new_task(student_url(guest=True), ["guest quorum style"], arguments={"x-queue-type": "quorum"})
    wait_until(lambda: len(foreign_done(lab)) == before + 2, 30, "the student's two tasks done by the lab")
    deploy(lab)
    assert "loopback_users" not in on(lab, BROKER, "cat", "/etc/rabbitmq/rabbitmq.conf")
    assert "guest" not in on(lab, BROKER, "rabbitmqctl", "list_users", "-q"), (
        "guest removed again with a dedicated user"
    )


# --- secrets: the password on no command line, journal, log or output; a new one reaches every worker; TLS

ALL_HOSTS = (BROKER, *WORKERS, PRODUCER)


def test_no_secret_on_a_command_line_in_a_journal_a_log_or_the_output(lab: docker.DockerClient, tmp_path: Path) -> None:
    deploy(lab)
    password, class_password = CREDENTIALS.read_text().strip(), CLASS_CREDENTIALS.read_text().strip()
    with CommandLines(lab, ALL_HOSTS) as command_lines:
        outputs = [playbook("site.yml", *FAST, "-vvvv"), playbook("produce.yml", *FAST, "-vvvv", "-e", "task_count=2")]
        outputs.append(report(tmp_path, "-vvvv")[0])
    for credentials in (CREDENTIALS, CLASS_CREDENTIALS):
        assert credentials.stat().st_mode & 0o077 == 0, f"{credentials.name} is readable by its owner only"
    assert len(password) >= 20 and len(class_password) >= 20 and class_password != password
    for done in outputs:
        assert done.returncode == 0, done.stdout[-2000:]
        assert changed(done).get(BROKER, 0) == 0
    for host, seen in command_lines.seen.items():
        assert password not in seen and class_password not in seen, f"a password is on a command line on {host}"
    # The sampler saw the role's rabbitmqctl commands go by: it would have seen a password on them.
    checks = [line for line in command_lines.seen[BROKER].splitlines() if "rabbitmqctl" in line]
    assert any("authenticate_user" in line for line in checks)
    assert "_CMDLINE=su rabbitmq" in on(lab, BROKER, "journalctl", "-o", "verbose", "--no-pager")
    secrets = [password, class_password]
    assert where_secrets_show(lab, ALL_HOSTS, secrets, *(done.stdout + done.stderr for done in outputs)) == []
    inspected = {host: json.loads(on(lab, host, "docker", "inspect", *workers_on(lab, host))) for host in WORKERS}
    assert all(len(found) == 1 for found in inspected.values()), inspected.keys()
    assert password not in json.dumps(inspected)


def can_log_in(password: str, user: str = "workqueue") -> bool:
    parameters = pika.ConnectionParameters(
        BROKER_ADDRESS, 5672, "workqueue", pika.PlainCredentials(user, password), connection_attempts=1
    )
    try:
        pika.BlockingConnection(parameters).close()
    except pika.exceptions.ProbableAuthenticationError:
        return False
    return True


def test_a_new_password_reaches_the_broker_and_every_worker_and_no_command_line(lab: docker.DockerClient) -> None:
    deploy(lab)
    old = CREDENTIALS.read_text().strip()
    new = f"New-{time.time_ns()}-pw"
    started = {host: workers_on(lab, host) for host in WORKERS}
    # --check says what would change, and changes nothing.
    checked = playbook("site.yml", *FAST, "-e", f"lab_password={new}", "--check")
    assert changed(checked)[BROKER] == 1 and can_log_in(old) and not can_log_in(new)
    with CommandLines(lab, ALL_HOSTS) as command_lines:
        done = deploy(lab, "-e", f"lab_password={new}")
    assert done is not None
    # The broker's password, each worker host's file and its restarted worker, the producer's file: nothing else.
    assert changed(done) == {"localhost": 0, BROKER: 1, WORKER_A: 2, WORKER_B: 2, PRODUCER: 1}
    assert not can_log_in(old) and can_log_in(new)
    for host in WORKERS:
        assert workers_on(lab, host)["workqueue-worker-1"][1] != started[host]["workqueue-worker-1"][1]
    run_id = produce("-e", f"lab_password={new}", "-e", "task_count=4", "-e", "task_message=t")
    wait_until(lambda: len(done_seqs(lab, run_id)) == 4, 30, "four tasks done with the new password")
    assert {host for hosts_ in done_seqs(lab, run_id).values() for host in hosts_} == set(WORKERS)
    assert all(new not in seen and old not in seen for seen in command_lines.seen.values())
    assert where_secrets_show(lab, ALL_HOSTS, [old, new], done.stdout) == []
    again = playbook("site.yml", *FAST, "-e", f"lab_password={new}")
    assert changed(again) == dict.fromkeys(changed(again), 0)


# --- TLS (rabbitmq_tls): AMQPS on 5671, verified against the lab's CA; plain AMQP on the broker's loopback only

TLS = ("-e", "rabbitmq_tls=true")
TLS_DIR = CREDENTIALS.parent / "tls"


def reaches(client: docker.DockerClient, host: str, port: int) -> bool:
    """Whether a TCP connection from a lab host to the broker's port is accepted."""
    probe = f"import socket; socket.create_connection(('{BROKER_ADDRESS}', {port}), timeout=3).close()"
    return on_result(client, host, "python3", "-c", probe)[0] == 0


def test_tls_workers_verify_the_broker_and_plain_amqp_is_closed_to_the_network(
    lab: docker.DockerClient, tmp_path: Path
) -> None:
    deploy(lab, *TLS)
    url = f"amqps://workqueue@{BROKER_ADDRESS}:5671/workqueue"
    for host in WORKERS:
        worker = json.loads(on(lab, host, "docker", "inspect", "workqueue-worker-1"))[0]
        assert f"AMQP_URL={url}?heartbeat={HEARTBEAT}" in worker["Config"]["Env"]
        assert {(m["Destination"], m["RW"]) for m in worker["Mounts"]} == {
            ("/run/secrets/amqp_password", False),
            ("/run/secrets/ca.crt", False),
        }
    assert reaches(lab, WORKER_A, 5671) and not reaches(lab, WORKER_A, 5672)
    # A client with the lab's CA is let in; one that trusts only the system's CAs refuses the broker.
    with_ca = broker_from_url(url, str(CREDENTIALS), str(TLS_DIR / "ca.crt"))
    connect(with_ca, timeout=10).close()
    with pytest.raises(BrokerError, match="certificate is not trusted"):
        connect(broker_from_url(url, str(CREDENTIALS)), timeout=10)
    # Private keys are their owner's only, here and on the broker host.
    keys = sorted(TLS_DIR.glob("*.key"))
    assert [key.name for key in keys] == ["ca.key", f"{BROKER}.key"]
    assert all(key.stat().st_mode & 0o077 == 0 for key in keys)
    assert on(lab, BROKER, "stat", "-c", "%U %a", "/etc/rabbitmq/tls/broker.key").strip() == "rabbitmq 400"
    again = playbook("site.yml", *FAST, *TLS)
    assert changed(again) == dict.fromkeys(changed(again), 0)
    # make watch finds the CA from an inventory whose settings turn TLS on, and sees both workers.
    inventory = _lab_inventory(tmp_path)
    settings = yaml.safe_load((ROOT / "inventory" / "group_vars" / "all.yml").read_text())
    (tmp_path / "group_vars").unlink()
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "all.yml").write_text(yaml.safe_dump({**settings, "rabbitmq_tls": True}))
    found = lab_settings.from_inventory(inventory)
    assert found.url.startswith(url) and found.ca_file == str((TLS_DIR / "ca.crt").resolve())
    watch = [str(Path(sys.executable)), "-m", "report.watch", "--inventory", str(inventory), "--duration", "2"]
    watched = subprocess.run(watch, capture_output=True, text=True, cwd=ROOT, timeout=60, check=False)
    assert watched.returncode == 0 and "2 consumers" in watched.stdout, watched.stdout[-1000:] + watched.stderr

    # A drill and the report work the same over TLS.
    run_id, _ = drill_mid_run(lab, "kill", *TLS, tasks=6)
    (held,) = unfinished(lab, WORKER_B, run_id)
    wait_until(lambda: set(done_seqs(lab, run_id)) == set(range(1, 7)), 90, "every task done")
    done, data = report(tmp_path, *TLS, "-e", f"run_id={run_id}")
    assert data["counts"] == {"done": 6} and f"6 sent, 6 done, 0 lost; 1 redelivered (#{held} " in done.stdout
    key_lines = [key.read_text().splitlines()[1] for key in keys]
    assert where_secrets_show(lab, ALL_HOSTS, key_lines, again.stdout, done.stdout) == []

    # Teardown leaves no key behind, on the hosts or here; and with TLS off the lab is as before.
    disturbed()
    succeeded(playbook("teardown.yml"))
    assert on_result(lab, BROKER, "test", "-e", "/etc/rabbitmq/tls")[0] == 1
    assert not TLS_DIR.exists()
    deploy(lab)
    assert reaches(lab, WORKER_A, 5672) and not reaches(lab, WORKER_A, 5671)
    assert on_result(lab, WORKER_A, "test", "-e", "/etc/workqueue-lab/ca.crt")[0] == 1


# --- bad input and unreachable hosts: nothing changes


def _lab_inventory(folder: Path, change: dict[str, object] | None = None) -> Path:
    """The tests' lab inventory, with a change, in a folder of the test's."""
    document = yaml.safe_load(TEST_LAB.inventory.read_text())
    children = document["all"]["children"]
    for key, value in (change or {}).items():
        group, _, host = key.partition("/")
        if value is None:
            children.pop(group)
        elif host:
            children[group]["hosts"][host] = value
        else:
            children[group] = value
    path = folder / "hosts.yml"
    path.write_text(yaml.safe_dump(document))
    (folder / "group_vars").symlink_to(ROOT / "inventory" / "group_vars")
    return path


SECOND_WORKER = f"{TEST_LAB.subnet_prefix}.12"  # testlab2's address
# Each case asks for a change (a second worker per host, a mode, an image) that the preflight must stop.
BAD_INPUTS = {
    "no broker group": ({"broker": None}, ["-e", "workers_per_host=2"], "needs one host in group broker, or an odd"),
    "two brokers": (
        {"broker/testlab2": {"ansible_host": SECOND_WORKER}},
        ["-e", "workers_per_host=2"],
        "two survive nothing that one does not; it has 2: testlab1, testlab2)",
    ),
    "workers_per_host 0": (
        {"workers/testlab2": {"ansible_host": SECOND_WORKER, "workers_per_host": 0}},
        [],
        "workers_per_host on testlab2 must be a whole number, 1 or more (got 0)",
    ),
    "unknown mode": ({}, ["-e", "task_mode=sometimes"], "task_mode must be ack or noack (got sometimes)"),
    "missing images": (
        {},
        ["-e", "worker_image=workqueue-lab/worker:never-built", "-e", "workers_per_host=2"],
        "the images workqueue-lab/worker:never-built and workqueue-lab/producer:latest are not both",
    ),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_fails_before_any_change(lab: docker.DockerClient, tmp_path: Path, case: str) -> None:
    change, args, message = BAD_INPUTS[case]
    deploy(lab)
    before = lab_state(lab)
    done = playbook("site.yml", *FAST, *args, inventory=_lab_inventory(tmp_path, change))
    assert done.returncode != 0
    assert message in " ".join(done.stdout.split())
    assert all(count == 0 for count in changed(done).values())
    assert lab_state(lab) == before, "a bad input must stop before any host is touched"


def test_unreachable_host_fails_before_changes_on_healthy_hosts(lab: docker.DockerClient, tmp_path: Path) -> None:
    deploy(lab)
    before = lab_state(lab)
    # On the lab's network, no host there; and a change asked for, which the preflight must stop.
    ghost = {"workers/ghost": {"ansible_host": f"{TEST_LAB.subnet_prefix}.99"}}
    inventory = _lab_inventory(tmp_path, ghost)
    done = playbook("site.yml", *FAST, "-e", "workers_per_host=2", inventory=inventory)
    assert done.returncode != 0
    assert "ghost" in done.stdout and "UNREACHABLE" in done.stdout
    assert all(count == 0 for count in changed(done).values())
    assert lab_state(lab) == before, "no worker-2 anywhere: the healthy hosts were not touched"

    # The report still reports, and says which host it could not read.
    produce("-e", "task_count=2", "-e", "task_message=t")
    reported, data = report(tmp_path / "reports", inventory=inventory)
    assert data, reported.stdout[-3000:]
    assert any(s.startswith("ghost: unreachable (") for s in data["missing"])
    assert "! ghost: unreachable (" in reported.stdout


def test_produce_refuses_a_run_a_worker_would_reject_and_sends_any_message_as_text(lab: docker.DockerClient) -> None:
    deploy(lab)
    # 5,000 tasks at 0.2 s a dot: the last is 1,000 s of work, past max_task_seconds (900).
    done = playbook("produce.yml", *FAST, "-e", "task_count=5000")
    assert done.returncode != 0
    said = " ".join(done.stdout.split())
    assert "the run's last task would take 1000.0 s of work, past max_task_seconds (900 s)" in said, said[-2000:]
    assert "produce at most 4500 tasks (task i has i dots), or raise max_task_seconds" in said
    assert "Run the producer" not in done.stdout, "refused before the producer ran"
    # A message that starts like an option is a task's text ('--' ends the producer's options).
    run_id = produce("-e", "task_count=1", "-e", "task_message=--url=amqp://elsewhere")
    wait_until(lambda: list(done_by(lab, list(WORKERS), run_id)) == [1], 30, "the task done")


def test_report_with_no_worker_says_so_in_one_line(lab: docker.DockerClient, tmp_path: Path) -> None:
    inventory = _lab_inventory(tmp_path, {"broker": {"hosts": {}}, "workers": {"hosts": {}}, "producer": {"hosts": {}}})
    done, data = report(tmp_path / "reports", inventory=inventory)
    assert done.returncode != 0 and not data
    assert "no run is in the events of the lab's workers and producer (no worker host was read" in done.stdout
    assert "Traceback" not in done.stdout


# --- teardown


def test_teardown_removes_it_all_and_site_works_again(lab: docker.DockerClient) -> None:
    deploy(lab)
    disturbed()
    succeeded(playbook("teardown.yml"))
    for host in (*WORKERS, PRODUCER):
        assert on(lab, host, "docker", "ps", "-aq", "--filter", "label=workqueue-lab").strip() == ""
        assert "workqueue-lab/" not in on(lab, host, "docker", "images", "--format", "{{.Repository}}")
        for path in ("/etc/workqueue-lab", "/var/lib/workqueue-lab"):
            assert on_result(lab, host, "test", "-e", path)[0] == 1, f"{path} is still on {host}"
    assert "workqueue" not in on(lab, BROKER, "rabbitmqctl", "list_vhosts", "-q").split()
    assert not {"workqueue", "student"} & set(on(lab, BROKER, "rabbitmqctl", "list_users", "-q").split())
    assert "workqueue-task-queue" not in on(lab, BROKER, "rabbitmqctl", "list_policies", "-q", "-p", "/")
    assert on_result(lab, BROKER, "test", "-e", "/etc/rabbitmq/rabbitmq.conf")[0] == 1
    again = playbook("teardown.yml")
    succeeded(again)
    assert changed(again) == dict.fromkeys(changed(again), 0)

    deploy(lab)


def test_teardown_with_purge_removes_the_packages_too(lab: docker.DockerClient) -> None:
    deploy(lab)
    disturbed()
    succeeded(playbook("teardown.yml", "-e", "purge=true"))
    for host in (*WORKERS, PRODUCER):
        assert on_result(lab, host, "dpkg-query", "-W", "-f", "${Status}", "docker.io")[1] != "install ok installed"
    assert on_result(lab, BROKER, "dpkg-query", "-W", "-f", "${Status}", "rabbitmq-server")[1] != "install ok installed"
