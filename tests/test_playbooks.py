"""The playbooks end to end, on the tests' own virtual lab, through ansible-playbook only.

One lab for the module: testlab1 the broker, testlab2 and testlab3 workers, testlab4 the
producer. The tests run in order, each leaving the lab deployed for the next.
"""

from __future__ import annotations

import json
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
import yaml

from virtual_lab import engine, hosts, images, lab_runs
from virtual_lab.hosts import TEST_LAB
from virtual_lab.lab_runs import done_by, on, recap, run_id_of, unfinished, wait_until

ROOT = Path(__file__).resolve().parents[1]
BROKER, WORKER_A, WORKER_B, PRODUCER = (f"{TEST_LAB.name}{i}" for i in range(1, 5))
FAST = ["-e", "seconds_per_dot=0.2"]  # every run passes it: the workers' settings stay the same
CREDENTIALS = ROOT / ".credentials" / "rabbitmq-workqueue-password"
OUTPUTS: list[str] = []


def playbook(name: str, *args: str, inventory: Path | None = None) -> subprocess.CompletedProcess[str]:
    done = lab_runs.playbook(TEST_LAB, name, *args, inventory=inventory)
    OUTPUTS.append(done.stdout + done.stderr)
    return done


def deployed(done: subprocess.CompletedProcess[str]) -> dict[str, dict[str, int]]:
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    return recap(done.stdout)


@pytest.fixture(scope="module")
def client() -> docker.DockerClient:
    client = engine.ensure_engine()
    images.program_images(client)
    return client


@pytest.fixture(scope="module")
def lab(client: docker.DockerClient) -> Iterator[docker.DockerClient]:
    hosts.down(client, TEST_LAB)
    hosts.up(client, 4, TEST_LAB)
    yield client
    hosts.down(client, TEST_LAB)


def consumers(client: docker.DockerClient, queue: str) -> int:
    listed = on(client, BROKER, "rabbitmqctl", "list_queues", "-p", "workqueue", "name", "consumers", "-q")
    counts = dict(line.split("\t") for line in listed.strip().splitlines()[1:] if "\t" in line)
    return int(counts.get(queue, 0))


def queue_counts(client: docker.DockerClient, queue: str) -> tuple[int, int]:
    listed = on(client, BROKER, "rabbitmqctl", "list_queues", "-p", "workqueue", "--formatter", "json",
                "name", "messages_ready", "messages_unacknowledged")  # fmt: skip
    rows = {q["name"]: (q["messages_ready"], q["messages_unacknowledged"]) for q in json.loads(listed or "[]")}
    return rows.get(queue, (0, 0))


def worker_events(client: docker.DockerClient, host: str, run_id: str) -> list[dict]:
    return lab_runs.worker_events(client, host, run_id)


def produce(*args: str) -> str:
    done = playbook("produce.yml", *FAST, *args)
    assert done.returncode == 0, done.stdout[-3000:]
    return run_id_of(done.stdout)


def done_seqs(client: docker.DockerClient, run_id: str) -> dict[int, list[str]]:
    return done_by(client, [WORKER_A, WORKER_B], run_id)


def report(folder: Path, *args: str, inventory: Path | None = None) -> tuple[subprocess.CompletedProcess[str], dict]:
    """Run playbooks/report.yml into a folder of the test's; its JSON report, when it wrote one."""
    done = playbook("report.yml", "-e", f"report_dir={folder}", *args, inventory=inventory)
    written = sorted(folder.glob("*/report.json"))
    return done, json.loads(written[-1].read_text()) if written else {}


def test_site_on_fresh_hosts_deploys_broker_and_connected_workers(lab: docker.DockerClient) -> None:
    result = deployed(playbook("site.yml", *FAST))
    assert all(counts["failed"] == 0 for counts in result.values())
    assert on(lab, BROKER, "systemctl", "is-active", "rabbitmq-server").strip() == "active"
    for host in (WORKER_A, WORKER_B):
        assert "workqueue-worker-1" in on(lab, host, "docker", "ps", "--format", "{{.Names}}")
    wait_until(lambda: consumers(lab, "task_queue") == 2, 60, "two consumers on task_queue")


def test_second_site_changes_nothing_and_check_mode_is_clean(lab: docker.DockerClient) -> None:
    again = deployed(playbook("site.yml", *FAST, "-v"))
    assert {host: counts["changed"] for host, counts in again.items()} == dict.fromkeys(again, 0)
    checked = deployed(playbook("site.yml", *FAST, "--check", "--diff"))
    assert {host: counts["changed"] for host, counts in checked.items()} == dict.fromkeys(checked, 0)


# Drill tasks last 6 s (30 dots at 0.2 s): a stop through ansible-playbook takes a few seconds.
LONG = "-e", "task_message=long.............................."


def test_ack_stopped_worker_mid_run_loses_nothing(lab: docker.DockerClient, tmp_path: Path) -> None:
    run_id = produce("-e", "task_count=6", *LONG)

    wait_until(lambda: bool(unfinished(lab, WORKER_B, run_id)), 30, f"a task in hand on {WORKER_B}")
    deployed(playbook("stop_worker.yml", "-e", f"target={WORKER_B}"))
    events_b = worker_events(lab, WORKER_B, run_id)
    in_flight = {e["seq"] for e in events_b if e["event"] == "abandoned"}
    assert len(in_flight) == 1 and all(e["fate"] == "requeued" for e in events_b if e["event"] == "abandoned")

    wait_until(lambda: set(done_seqs(lab, run_id)) == set(range(1, 7)), 90, "every task done")
    events_a = worker_events(lab, WORKER_A, run_id)
    redelivered = [e["seq"] for e in events_a if e["event"] == "received" and e["redelivered"]]
    assert redelivered == sorted(in_flight)
    assert queue_counts(lab, "task_queue") == (0, 0)

    # The report of the run says the same: nothing lost, the task in hand redelivered and named.
    done, data = report(tmp_path, "-e", f"run_id={run_id}")
    assert done.returncode == 0, done.stdout[-3000:]
    assert data["run_id"] == run_id and data["counts"] == {"done": 6}
    (again,) = [t for t in data["tasks"] if t["deliveries"] > 1]
    assert [again["seq"]] == sorted(in_flight)
    assert [a["worker"] for a in again["attempts"]] == [f"{WORKER_B}/worker-1", f"{WORKER_A}/worker-1"]
    assert f"6 sent, 6 done, 0 lost; 1 redelivered (#{again['seq']} {WORKER_B}/worker-1 -> " in done.stdout
    picture = ET.parse(tmp_path / run_id / "timeline.svg").getroot()
    assert picture.tag == "{http://www.w3.org/2000/svg}svg"
    assert any((t.text or "").startswith("docker stop ") for t in picture.iter("{http://www.w3.org/2000/svg}text"))


def test_site_restarts_a_stopped_worker(lab: docker.DockerClient) -> None:
    assert "workqueue-worker-1" not in on(lab, WORKER_B, "docker", "ps", "--format", "{{.Names}}")
    deployed(playbook("site.yml", *FAST))
    assert "workqueue-worker-1" in on(lab, WORKER_B, "docker", "ps", "--format", "{{.Names}}")


def test_noack_round_robin_gives_each_worker_three(lab: docker.DockerClient) -> None:
    deployed(playbook("site.yml", *FAST, "-e", "task_mode=noack"))
    wait_until(lambda: consumers(lab, "hello") == 2, 60, "two consumers on hello")
    run_id = produce("-e", "task_mode=noack", "-e", "task_count=6", "-e", "task_message=task")
    wait_until(lambda: len(done_seqs(lab, run_id)) == 6, 30, "six tasks done")
    by_host = [h for by in done_seqs(lab, run_id).values() for h in by]
    assert sorted(by_host) == sorted([WORKER_A] * 3 + [WORKER_B] * 3)


def test_noack_stopped_worker_loses_its_unfinished_share(lab: docker.DockerClient, tmp_path: Path) -> None:
    run_id = produce("-e", "task_mode=noack", "-e", "task_count=6", *LONG)
    wait_until(lambda: any(e["event"] == "received" for e in worker_events(lab, WORKER_B, run_id)), 30, "tasks")
    deployed(playbook("stop_worker.yml", "-e", f"target={WORKER_B}"))
    received_a = {e["seq"] for e in worker_events(lab, WORKER_A, run_id) if e["event"] == "received"}
    wait_until(lambda: received_a <= set(done_seqs(lab, run_id)), 90, f"{WORKER_A} done with its own tasks")
    received_b = {e["seq"] for e in worker_events(lab, WORKER_B, run_id) if e["event"] == "received"}
    lost = set(range(1, 7)) - set(done_seqs(lab, run_id))
    assert lost and lost <= received_b
    assert {e["seq"] for e in worker_events(lab, WORKER_B, run_id) if e["event"] == "abandoned"} == lost
    assert queue_counts(lab, "hello") == (0, 0)

    # The report of the newest run (this one, not the round-robin run before it): the lost set
    # is the tasks that never reached " [x] Done", all dispatched to the stopped worker.
    done, data = report(tmp_path)
    assert done.returncode == 0, done.stdout[-3000:]
    assert data["run_id"] == run_id and data["settled"]
    assert {t["seq"] for t in data["tasks"] if t["fate"] == "lost"} == lost
    assert {t["dispatched_to"] for t in data["tasks"] if t["fate"] == "lost"} == {f"{WORKER_B}/worker-1"}
    stopped = {w["worker"]: w["running"] for w in data["workers"]}
    assert stopped == {f"{WORKER_A}/worker-1": True, f"{WORKER_B}/worker-1": False}
    assert f"6 sent, {6 - len(lost)} done, {len(lost)} lost (" in done.stdout
    assert f": dispatched to {WORKER_B}/worker-1, stopped at " in done.stdout


def test_scaling_adds_and_removes_workers_and_nothing_else(lab: docker.DockerClient) -> None:
    more = deployed(playbook("site.yml", *FAST, "-e", "workers_per_host=2"))
    assert more[BROKER]["changed"] == 0 and more[PRODUCER]["changed"] == 0
    wait_until(lambda: consumers(lab, "task_queue") == 4, 60, "four consumers")
    fewer = deployed(playbook("site.yml", *FAST))
    assert fewer[BROKER]["changed"] == 0
    names = on(lab, WORKER_A, "docker", "ps", "-a", "--format", "{{.Names}}").split()
    assert names == ["workqueue-worker-1"]


def test_guest_remote_access_mode(lab: docker.DockerClient) -> None:
    done = playbook("site.yml", *FAST, "-e", "rabbitmq_guest_remote_access=true")
    deployed(done)
    assert "WARNING: rabbitmq_guest_remote_access is true" in done.stdout
    assert "loopback_users = none" in on(lab, BROKER, "cat", "/etc/rabbitmq/rabbitmq.conf")
    wait_until(lambda: consumers(lab, "task_queue") == 2, 60, "two guest consumers")
    assert "amqp://guest@" in on(lab, WORKER_A, "docker", "inspect", "workqueue-worker-1")
    run_id = produce("-e", "rabbitmq_guest_remote_access=true", "-e", "task_count=2", "-e", "task_message=t")
    wait_until(lambda: len(done_seqs(lab, run_id)) == 2, 30, "two tasks done as guest")
    deployed(playbook("site.yml", *FAST))
    assert "loopback_users" not in on(lab, BROKER, "cat", "/etc/rabbitmq/rabbitmq.conf")


def test_password_appears_in_no_output_and_no_docker_inspect(lab: docker.DockerClient) -> None:
    password = CREDENTIALS.read_text().strip()
    assert CREDENTIALS.stat().st_mode & 0o077 == 0, "the credentials file is readable by its owner only"
    assert len(password) >= 20
    for output in OUTPUTS:
        assert password not in output
    assert password not in on(lab, WORKER_A, "docker", "inspect", "workqueue-worker-1")


BAD_INPUTS = {
    "no broker group": ({"workers": ["w"], "producer": ["w"]}, {}, [], "exactly one host in group broker (it has 0"),
    "two brokers": ({"broker": ["b", "b2"], "workers": ["w"], "producer": ["w"]}, {}, [], "(it has 2: b, b2)"),
    "workers_per_host 0": ({"broker": ["b"], "workers": ["w"], "producer": ["w"]}, {"workers_per_host": 0}, [],
                           "workers_per_host on w must be a whole number, 1 or more (got 0)"),
    "unknown mode": ({"broker": ["b"], "workers": ["w"], "producer": ["w"]}, {}, ["-e", "task_mode=sometimes"],
                     "task_mode must be ack or noack (got sometimes)"),
}  # fmt: skip


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_fails_before_any_change(lab: docker.DockerClient, tmp_path: Path, case: str) -> None:
    groups, host_vars, args, message = BAD_INPUTS[case]
    done = playbook("site.yml", *args, inventory=_inventory(tmp_path, groups, host_vars))
    assert done.returncode != 0
    assert message in done.stdout
    assert all(counts["changed"] == 0 for counts in recap(done.stdout).values())


def test_unreachable_host_fails_before_changes_on_healthy_hosts(lab: docker.DockerClient, tmp_path: Path) -> None:
    lab_inventory = yaml.safe_load(TEST_LAB.inventory.read_text())
    workers = lab_inventory["all"]["children"]["workers"]["hosts"]
    workers["ghost"] = {"ansible_host": f"{TEST_LAB.subnet_prefix}.99"}  # on the lab's network, no host there
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump(lab_inventory))
    (tmp_path / "group_vars").symlink_to(ROOT / "inventory" / "group_vars")
    done = playbook("site.yml", *FAST, inventory=inventory)
    assert done.returncode != 0
    assert "ghost" in done.stdout and "UNREACHABLE" in done.stdout
    assert all(counts["changed"] == 0 for counts in recap(done.stdout).values())

    # The report still reports, and says which host it could not read.
    reported, data = report(tmp_path / "reports", inventory=inventory)
    assert data, reported.stdout[-3000:]
    assert any(s.startswith("ghost: unreachable (") for s in data["missing"])
    assert "! ghost: unreachable (" in reported.stdout


def test_report_with_no_worker_says_so_in_one_line(lab: docker.DockerClient, tmp_path: Path) -> None:
    inventory = _inventory(tmp_path, {"broker": [], "workers": [], "producer": []}, {})
    done, data = report(tmp_path / "reports", inventory=inventory)
    assert done.returncode != 0 and not data
    assert "no run is in the events of the lab's workers and producer (no worker host was read" in done.stdout
    assert "Traceback" not in done.stdout


def test_teardown_removes_it_all_and_site_works_again(lab: docker.DockerClient) -> None:
    deployed(playbook("teardown.yml"))
    for host in (WORKER_A, WORKER_B, PRODUCER):
        assert on(lab, host, "docker", "ps", "-aq", "--filter", "label=workqueue-lab").strip() == ""
        assert "workqueue-lab/" not in on(lab, host, "docker", "images", "--format", "{{.Repository}}")
        assert on(lab, host, "test", "-e", "/etc/workqueue-lab") == ""
        assert "No such file" in on(lab, host, "ls", "/var/lib/workqueue-lab")
    assert "workqueue" not in on(lab, BROKER, "rabbitmqctl", "list_vhosts", "-q").split()
    assert "workqueue" not in on(lab, BROKER, "rabbitmqctl", "list_users", "-q")
    again = deployed(playbook("teardown.yml"))
    assert {host: counts["changed"] for host, counts in again.items()} == dict.fromkeys(again, 0)

    deployed(playbook("site.yml", *FAST))
    wait_until(lambda: consumers(lab, "task_queue") == 2, 60, "two consumers after a new site.yml")


def _inventory(folder: Path, groups: dict[str, list[str]], host_vars: dict[str, object]) -> Path:
    """An inventory of hosts that need not exist: these runs must stop before reaching any."""
    children = {group: {"hosts": {name: dict(host_vars) for name in names}} for group, names in groups.items()}
    document = {"all": {"children": children}}
    path = folder / "hosts.yml"
    path.write_text(yaml.safe_dump(document))
    (folder / "group_vars").symlink_to(ROOT / "inventory" / "group_vars")
    return path
