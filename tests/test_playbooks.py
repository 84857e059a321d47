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
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import docker
import pika
import pika.exceptions
import pytest
import yaml

from tests.conftest import changed_nothing
from tests.host_firewall import GUARD_TABLE, outsider_reaches
from tests.playbook_lab import (
    FAST,
    GUEST,
    HEARTBEAT,
    LONG,
    NOACK,
    ROOT,
    TORN_DOWN,
    PlaybookLab,
    changed,
    succeeded,
    worker_events,
)
from tests.secret_places import CommandLines, where_secrets_show
from workqueue.connection import BrokerError, broker_from_url, connect
from workqueue.report import lab_settings
from workqueue.virtual_lab import hosts, lab_runs
from workqueue.virtual_lab.hosts import TEST_LAB
from workqueue.virtual_lab.lab_runs import done_by, installed, on, on_result, read_on, recap, wait_until

pytestmark = [pytest.mark.docker, pytest.mark.lab, pytest.mark.xdist_group(TEST_LAB.name)]

LAB = PlaybookLab(TEST_LAB)
BROKER, WORKER_A, WORKER_B, PRODUCER = LAB.all_hosts
WORKERS, ALL_HOSTS, BROKER_ADDRESS = LAB.workers, LAB.all_hosts, LAB.broker_address
CREDENTIALS, CLASS_CREDENTIALS = LAB.credentials, LAB.class_credentials
playbook, deploy, disturbed, drill = LAB.playbook, LAB.deploy, LAB.disturbed, LAB.drill
produce, report = LAB.produce, LAB.report
consumers, queue_counts, settled_counts, done_seqs = LAB.consumers, LAB.queue_counts, LAB.settled_counts, LAB.done_seqs
workers_on, lab_state, drill_mid_run = LAB.workers_on, LAB.lab_state, LAB.drill_mid_run


@pytest.fixture(scope="module")
def lab() -> Iterator[docker.DockerClient]:
    yield from LAB.hosts_up()


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

    def _callback(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
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
    users = json.loads(read_on(client, BROKER, "rabbitmqctl", "list_users", "-q", "--formatter", "json"))
    return {user["user"]: user["tags"] for user in users}


# --- deploying


def test_site_on_fresh_hosts_deploys_broker_and_connected_workers(lab: docker.DockerClient) -> None:
    if LAB.deployed is not None or on_result(lab, WORKER_A, "test", "-e", "/usr/bin/docker")[0] == 0:
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
    # The broker's host has no firewall of its own: the lab's guard lets its hosts (and this machine) reach the
    # AMQP port, and nothing else reach any of the broker's ports; a single node's cluster ports are closed to all.
    broker_ports = [5672, 4369, 25672]
    assert outsider_reaches(lab, TEST_LAB.network, BROKER_ADDRESS, broker_ports) == dict.fromkeys(broker_ports, False)
    assert [reaches(lab, WORKER_A, port) for port in broker_ports] == [True, False, False]
    # The class account has no tag; guest, an administrator on loopback, is gone (RabbitMQ's checklist).
    assert broker_users(lab) == {"workqueue": [], "student": []}
    # The workers run hardened: no capability, no new privilege, a read-only root, bounded memory,
    # processes and logs; and healthy so (the health file is on the /tmp tmpfs).
    [inspected] = json.loads(read_on(lab, WORKER_A, "docker", "inspect", "workqueue-worker-1"))
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
            read_on(lab, WORKER_A, "docker", "inspect", "-f", "{{.State.Health.Status}}", "workqueue-worker-1").strip()
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


def test_second_site_changes_nothing_shows_no_secret_and_check_mode_is_clean(
    lab: docker.DockerClient, tmp_path: Path
) -> None:
    deploy(lab)
    password, class_password = CREDENTIALS.read_text().strip(), CLASS_CREDENTIALS.read_text().strip()
    # The re-run at -vvvv, with produce.yml and report.yml, while every host's command lines are sampled.
    with CommandLines(lab, ALL_HOSTS) as command_lines:
        outputs = [playbook("site.yml", *FAST, "-vvvv"), playbook("produce.yml", *FAST, "-vvvv", "-e", "task_count=2")]
        outputs.append(report(tmp_path, "-vvvv")[0])
    again, produced, reported = outputs
    changed_nothing(again, ALL_HOSTS)  # -vvvv changes nothing either: no password made anew
    changed_nothing(reported, ALL_HOSTS)
    assert produced.returncode == 0, produced.stdout[-2000:]
    checked = playbook("site.yml", *FAST, "--check", "--diff")
    changed_nothing(checked, ALL_HOSTS)
    # Deprecation warnings are on (ansible.cfg): none of ours, only those from inside a collection.
    warned = " ".join((again.stdout + again.stderr).split())
    assert set(re.findall(r"\[DEPRECATION WARNING\]: (.+?\.) ", warned)) <= OUTSIDE_DEPRECATIONS, warned[-3000:]

    # No secret on a command line, in a journal, a log or the output.
    for credentials in (CREDENTIALS, CLASS_CREDENTIALS):
        assert credentials.stat().st_mode & 0o077 == 0, f"{credentials.name} is readable by its owner only"
    assert len(password) >= 20 and len(class_password) >= 20 and class_password != password
    for host, seen in command_lines.seen.items():
        assert password not in seen and class_password not in seen, f"a password is on a command line on {host}"
    # The sampler saw the role's rabbitmqctl read go by (a re-run checks the passwords against their hashes;
    # the test of a new password below sees the command that sets one).
    checks = [line for line in command_lines.seen[BROKER].splitlines() if "rabbitmqctl" in line]
    assert any("export_definitions" in line for line in checks)
    assert "_CMDLINE=su rabbitmq" in on(lab, BROKER, "journalctl", "-o", "verbose", "--no-pager")
    secrets = [password, class_password]
    assert where_secrets_show(lab, ALL_HOSTS, secrets, *(done.stdout + done.stderr for done in outputs)) == []
    inspected = {host: json.loads(read_on(lab, host, "docker", "inspect", *workers_on(lab, host))) for host in WORKERS}
    assert all(len(found) == 1 for found in inspected.values()), inspected.keys()
    assert password not in json.dumps(inspected)


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
    # Its share of three consumers: not all, not none (how many depends on who is quicker: prefetch 1 is fair).
    assert 1 <= len(by_student) <= 8, by_student
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
    # Left as site.yml leaves it: the next test sees no task of this one's.
    on(lab, BROKER, "rabbitmqctl", "purge_queue", "-p", "workqueue", "task_queue.rejected")
    settled_counts(lab, "task_queue.rejected", (0, 0))


# --- docker stop, the lesson's own fault (the rougher ones: tests/test_drills.py)


def stop_worker_mid_run(lab: docker.DockerClient, *settings: str) -> tuple[str, int]:
    """The README's stop_worker.yml on the second worker host, started before the run it strikes: the run's id,
    and the task the worker held when it was stopped (the drill's record)."""
    deployed_with = LAB.deployed
    disturbed()
    done, run_id = lab_runs.drill_on_cue(
        LAB.lab,
        lambda: produce(*settings, "-e", "task_count=6", *LONG),
        *FAST,
        *settings,
        "-e",
        f"target={WORKER_B}",
        name="stop_worker.yml",
    )
    succeeded(done)
    caught = lab_runs.last_fault(lab, PRODUCER)["caught"]
    assert run_id is not None and caught["run_id"] == run_id, (caught, done.stdout[-2000:])
    LAB.one_worker_stopped(deployed_with, WORKER_B)
    return run_id, caught["seq"]


def test_ack_stopped_worker_mid_run_loses_nothing(lab: docker.DockerClient, tmp_path: Path) -> None:
    deploy(lab)
    run_id, caught = stop_worker_mid_run(lab)
    events_b = worker_events(lab, WORKER_B, run_id)
    in_flight = {e["seq"] for e in events_b if e["event"] == "abandoned"}
    assert in_flight == {caught} and all(e["fate"] == "requeued" for e in events_b if e["event"] == "abandoned")

    wait_until(lambda: set(done_seqs(lab, run_id)) == set(range(1, 7)), 90, "every task done")
    events_a = worker_events(lab, WORKER_A, run_id)
    redelivered = [e["seq"] for e in events_a if e["event"] == "received" and e["redelivered"]]
    assert redelivered == sorted(in_flight)
    settled_counts(lab, "task_queue", (0, 0))

    # The report of the run says the same: nothing lost, the task in hand redelivered and named.
    done, data = report(tmp_path, "-e", f"run_id={run_id}")
    assert done.returncode == 0, done.stdout[-3000:]
    changed_nothing(done, ALL_HOSTS)
    assert data["run_id"] == run_id and data["counts"] == {"done": 6}
    (again,) = [t for t in data["tasks"] if t["deliveries"] > 1]
    assert [again["seq"]] == sorted(in_flight)
    assert [a["worker"] for a in again["attempts"]] == [f"{WORKER_B}/worker-1", f"{WORKER_A}/worker-1"]
    assert f"6 sent, 6 done, 0 lost; 1 redelivered (#{again['seq']} {WORKER_B}/worker-1 -> " in done.stdout
    picture = ET.parse(tmp_path / run_id / "timeline.svg").getroot()
    assert picture.tag == "{http://www.w3.org/2000/svg}svg"
    assert any((t.text or "").startswith("docker stop ") for t in picture.iter("{http://www.w3.org/2000/svg}text"))


def test_a_worker_comes_back_with_its_host_and_site_starts_a_stopped_one(lab: docker.DockerClient) -> None:
    if LAB.stopped == ((), WORKER_B):  # in order, the test before stopped it: started again, as deployed
        on(lab, WORKER_B, "docker", "start", "workqueue-worker-1")
    else:
        deploy(lab)
    disturbed()
    # Stopped on purpose with the README's playbook, at once (wait=0: no run goes on).
    succeeded(playbook("stop_worker.yml", "-e", f"target={WORKER_B}", "-e", "wait=0"))
    assert "workqueue-worker-1" not in on(lab, WORKER_B, "docker", "ps", "--format", "{{.Names}}")
    before_a = workers_on(lab, WORKER_A)
    for host in WORKERS:  # the machines reboot (systemd inside shuts down and boots again)
        lab.containers.get(host).restart(timeout=30)
    wait_until(lambda: all(hosts.ssh_answers(TEST_LAB, h.address) for h in hosts.plan(4, TEST_LAB)), 90, "SSH")

    def running(host: str) -> list[str]:
        return on(lab, host, "docker", "ps", "--format", "{{.Names}}").split()

    wait_until(lambda: running(WORKER_A) == ["workqueue-worker-1"], 90, f"the worker back on {WORKER_A}")
    assert workers_on(lab, WORKER_A)["workqueue-worker-1"][0] == before_a["workqueue-worker-1"][0], "the same one"
    assert running(WORKER_B) == [], "unless-stopped: a worker stopped on purpose stays stopped across a reboot"
    # After a drill, site.yml starts the stopped worker again, and the lab is as it deploys it.
    succeeded(playbook("site.yml", *FAST))
    assert running(WORKER_B) == ["workqueue-worker-1"]
    LAB.deployed = ()


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
    LAB.deployed = ()


# --- bad input and unreachable hosts: nothing changes


def _lab_inventory(folder: Path, change: Mapping[str, object] | None = None) -> Path:
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
BAD_INPUTS: dict[str, tuple[dict[str, object] | None, list[str], str]] = {
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


# --- a new password reaches the broker and every worker (no secret shown anywhere: the second site.yml's test)


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
    # ...though the sampler saw the command that set it go by (the password on its standard input).
    assert any("change_password" in line for line in command_lines.seen[BROKER].splitlines())
    assert where_secrets_show(lab, ALL_HOSTS, [old, new], done.stdout) == []
    again = playbook("site.yml", *FAST, "-e", f"lab_password={new}")
    changed_nothing(again, ALL_HOSTS)


# --- noack mode, after the settings above: one site.yml switches to it, the guest test's switches away


def test_noack_round_robin_gives_each_worker_three(lab: docker.DockerClient) -> None:
    deploy(lab, *NOACK)
    run_id = produce(*NOACK, "-e", "task_count=6", "-e", "task_message=task")
    wait_until(lambda: len(done_seqs(lab, run_id)) == 6, 30, "six tasks done")
    by_host = [h for by in done_seqs(lab, run_id).values() for h in by]
    assert sorted(by_host) == sorted([WORKER_A] * 3 + [WORKER_B] * 3)


def test_noack_stopped_worker_loses_its_unfinished_share(lab: docker.DockerClient, tmp_path: Path) -> None:
    deploy(lab, *NOACK)
    run_id, caught = stop_worker_mid_run(lab, *NOACK)
    received_a = {e["seq"] for e in worker_events(lab, WORKER_A, run_id) if e["event"] == "received"}
    wait_until(lambda: received_a <= set(done_seqs(lab, run_id)), 90, f"{WORKER_A} done with its own tasks")
    received_b = {e["seq"] for e in worker_events(lab, WORKER_B, run_id) if e["event"] == "received"}
    lost = set(range(1, 7)) - set(done_seqs(lab, run_id))
    assert caught in lost and lost <= received_b
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


# --- the guest account from the network; then TLS (rabbitmq_tls): AMQPS on 5671, verified against the lab's
# CA, plain AMQP on the broker's loopback only

TLS = ("-e", "rabbitmq_tls=true")
TLS_DIR = CREDENTIALS.parent / "tls"


def reaches(client: docker.DockerClient, host: str, port: int) -> bool:
    """Whether a TCP connection from a lab host to the broker's port is accepted."""
    probe = f"import socket; socket.create_connection(('{BROKER_ADDRESS}', {port}), timeout=3).close()"
    return on_result(client, host, "python3", "-c", probe)[0] == 0


def test_guest_remote_access_mode(lab: docker.DockerClient) -> None:
    done = deploy(lab, *GUEST)
    assert done is not None
    assert "WARNING: rabbitmq_guest_remote_access is true" in done.stdout
    assert f'host="{BROKER_ADDRESS}"))' in done.stdout
    assert "loopback_users = none" in read_on(lab, BROKER, "cat", "/etc/rabbitmq/rabbitmq.conf")
    users = {
        u["user"]: u["tags"]
        for u in json.loads(read_on(lab, BROKER, "rabbitmqctl", "list_users", "-q", "--formatter", "json"))
    }
    assert users["guest"] == [], "guest has its vhost's rights, and no administrator tag for the network"
    inspected = read_on(lab, WORKER_A, "docker", "inspect", "workqueue-worker-1")
    assert f"amqp://guest@{BROKER_ADDRESS}:5672/%2F" in inspected
    run_id = produce(*GUEST, "-e", "task_count=2", "-e", "task_message=t")
    wait_until(lambda: len(done_seqs(lab, run_id)) == 2, 30, "two tasks done as guest")
    # The tutorial's own setting: guest/guest on the default vhost, only the broker's address changed;
    # both of the tutorial's declarations meet the lab's queue.
    before = len(foreign_done(lab))
    tutorial_new_task(student_url(guest=True), ["guest seed style"])
    tutorial_new_task(student_url(guest=True), ["guest quorum style"], arguments={"x-queue-type": "quorum"})
    wait_until(lambda: len(foreign_done(lab)) == before + 2, 30, "the student's two tasks done by the lab")
    # Turned off again: on the way to the TLS test's deployment (the next test's, one site.yml for both).
    deploy(lab, *TLS)
    assert "loopback_users" not in read_on(lab, BROKER, "cat", "/etc/rabbitmq/rabbitmq.conf")
    assert "guest" not in on(lab, BROKER, "rabbitmqctl", "list_users", "-q"), (
        "guest removed again with a dedicated user"
    )


def test_tls_workers_verify_the_broker_and_plain_amqp_is_closed_to_the_network(
    lab: docker.DockerClient, tmp_path: Path
) -> None:
    deploy(lab, *TLS)
    url = f"amqps://workqueue@{BROKER_ADDRESS}:5671/workqueue"
    for host in WORKERS:
        worker = json.loads(read_on(lab, host, "docker", "inspect", "workqueue-worker-1"))[0]
        assert f"AMQP_URL={url}?heartbeat={HEARTBEAT}" in worker["Config"]["Env"]
        assert {(m["Destination"], m["RW"]) for m in worker["Mounts"]} == {
            ("/run/secrets/amqp_password", False),
            ("/run/secrets/ca.crt", False),
        }
    assert reaches(lab, WORKER_A, 5671) and not reaches(lab, WORKER_A, 5672)
    # A client with the lab's CA is let in; one that trusts only the system's CAs refuses the broker.
    with_ca = broker_from_url(url, str(CREDENTIALS), str(TLS_DIR / "ca.crt"))
    connection = connect(with_ca, timeout=10)
    assert connection is not None
    connection.close()
    with pytest.raises(BrokerError, match="certificate is not trusted"):
        connect(broker_from_url(url, str(CREDENTIALS)), timeout=10)
    # Private keys are their owner's only, here and on the broker host.
    keys = sorted(TLS_DIR.glob("*.key"))
    assert [key.name for key in keys] == ["ca.key", f"{BROKER}.key"]
    assert all(key.stat().st_mode & 0o077 == 0 for key in keys)
    assert on(lab, BROKER, "stat", "-c", "%U %a", "/etc/rabbitmq/tls/broker.key").strip() == "rabbitmq 400"
    again = playbook("site.yml", *FAST, *TLS)
    changed_nothing(again, ALL_HOSTS)
    # make watch finds the CA from an inventory whose settings turn TLS on, and sees both workers.
    inventory = _lab_inventory(tmp_path)
    settings = yaml.safe_load((ROOT / "inventory" / "group_vars" / "all.yml").read_text())
    (tmp_path / "group_vars").unlink()
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "all.yml").write_text(yaml.safe_dump({**settings, "rabbitmq_tls": True}))
    found = lab_settings.from_inventory(inventory)
    assert found.url.startswith(url) and found.ca_file == str((TLS_DIR / "ca.crt").resolve())
    watch = [
        str(Path(sys.executable)),
        "-m",
        "workqueue.report.watch",
        "--inventory",
        str(inventory),
        "--duration",
        "2",
    ]
    watched = subprocess.run(watch, capture_output=True, text=True, cwd=ROOT, timeout=60, check=False)
    assert watched.returncode == 0 and "2 consumers" in watched.stdout, watched.stdout[-1000:] + watched.stderr

    # A drill and the report work the same over TLS.
    run_id, held = drill_mid_run(lab, "kill", *TLS, tasks=6)
    wait_until(lambda: set(done_seqs(lab, run_id)) == set(range(1, 7)), 90, "every task done")
    done, data = report(tmp_path, *TLS, "-e", f"run_id={run_id}")
    assert data["counts"] == {"done": 6} and f"6 sent, 6 done, 0 lost; 1 redelivered (#{held} " in done.stdout
    key_lines = [key.read_text().splitlines()[1] for key in keys]
    assert where_secrets_show(lab, ALL_HOSTS, key_lines, again.stdout, done.stdout) == []

    # TLS turned off on the deployed lab (site.yml with rabbitmq_tls false): plain AMQP open to the lab again,
    # 5671 closed, the workers back on amqp:// with no CA; then teardown leaves no key, on the hosts or here.
    deploy(lab)
    assert reaches(lab, WORKER_A, 5672) and not reaches(lab, WORKER_A, 5671)
    plain = f"AMQP_URL=amqp://workqueue@{BROKER_ADDRESS}:5672/workqueue?heartbeat={HEARTBEAT}"
    for host in WORKERS:
        worker = json.loads(read_on(lab, host, "docker", "inspect", "workqueue-worker-1"))[0]
        assert plain in worker["Config"]["Env"], worker["Config"]["Env"]
        assert [m["Destination"] for m in worker["Mounts"]] == ["/run/secrets/amqp_password"]
    assert on_result(lab, WORKER_A, "test", "-e", "/etc/workqueue-lab/ca.crt")[0] == 1
    LAB.teardown()  # the teardown test below checks the rest of what it removes, on this lab
    assert on_result(lab, BROKER, "test", "-e", "/etc/rabbitmq/tls")[0] == 1
    assert not TLS_DIR.exists()


# --- teardown

NO_GUARD = ("-e", "host_firewall_guard=false")


def test_teardown_removes_it_all_and_site_works_again(lab: docker.DockerClient) -> None:
    if LAB.deployed != TORN_DOWN:  # in order, the TLS test before has just torn the lab down
        deploy(lab)
        LAB.teardown()
    for host in (*WORKERS, PRODUCER):
        assert on(lab, host, "docker", "ps", "-aq", "--filter", "label=workqueue-lab").strip() == ""
        assert "workqueue-lab/" not in on(lab, host, "docker", "images", "--format", "{{.Repository}}")
        for path in ("/etc/workqueue-lab", "/var/lib/workqueue-lab"):
            assert on_result(lab, host, "test", "-e", path)[0] == 1, f"{path} is still on {host}"
    assert "workqueue" not in on(lab, BROKER, "rabbitmqctl", "list_vhosts", "-q").split()
    assert not {"workqueue", "student"} & set(on(lab, BROKER, "rabbitmqctl", "list_users", "-q").split())
    assert "workqueue-task-queue" not in on(lab, BROKER, "rabbitmqctl", "list_policies", "-q", "-p", "/")
    assert on_result(lab, BROKER, "test", "-e", "/etc/rabbitmq/rabbitmq.conf")[0] == 1
    # The guard went with its unit: the broker (still installed) answers an outsider again.
    assert GUARD_TABLE not in on(lab, BROKER, "nft", "list", "tables")
    assert outsider_reaches(lab, TEST_LAB.network, BROKER_ADDRESS, [4369]) == {4369: True}
    again = playbook("teardown.yml")
    succeeded(again)
    changed_nothing(again, ALL_HOSTS)

    # site works again; with the guard turned off, the broker's host is left as its own firewall has it.
    deploy(lab, *NO_GUARD)
    assert GUARD_TABLE not in on(lab, BROKER, "nft", "list", "tables")
    assert outsider_reaches(lab, TEST_LAB.network, BROKER_ADDRESS, [5672]) == {5672: True}


def test_teardown_with_purge_removes_the_packages_too(lab: docker.DockerClient) -> None:
    deploy(lab, *NO_GUARD)  # in order, the lab as the test before left it: no site.yml (the guard is not purge's)
    LAB.teardown("-e", "purge=true")
    for host in (*WORKERS, PRODUCER):
        assert not installed(lab, host, "docker.io")
    assert not installed(lab, BROKER, "rabbitmq-server")
