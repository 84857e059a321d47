"""A cluster of three brokers on a lab of its own, through ansible-playbook only.

The lab grows from one broker to three with tasks waiting, a re-run changes
nothing, workers on two hosts consume from two nodes, the node that leads the
queue is killed mid-run and nothing is lost, and teardown undoes the cluster
so that site.yml forms it again. One deployment serves the module; each test
says which it needs (``cluster``), so that any one runs alone.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import docker
import pika
import pytest
import yaml

from tests.conftest import succeeded
from tests.host_firewall import install_drop_by_default
from tests.secret_places import CommandLines, where_secrets_show
from workqueue.connection import broker_from_url, connect
from workqueue.machine import engine, images
from workqueue.virtual_lab import hosts, lab_runs
from workqueue.virtual_lab.hosts import CLUSTER_LAB
from workqueue.virtual_lab.lab_runs import (
    done_by,
    on,
    queue_row,
    read_on,
    read_result,
    run_id_of,
    unfinished,
    wait_until,
)

pytestmark = [pytest.mark.docker, pytest.mark.lab, pytest.mark.xdist_group(CLUSTER_LAB.name)]

BROKERS = [f"{CLUSTER_LAB.name}{i}" for i in (1, 2, 3)]
WORKERS = [f"{CLUSTER_LAB.name}{i}" for i in (4, 5)]
NODES = {f"rabbit@{host}" for host in BROKERS}
ALL_HOSTS = [f"{CLUSTER_LAB.name}{i}" for i in range(1, 7)]
PRODUCER = ALL_HOSTS[-1]
FIREWALLED = BROKERS[1]  # a lab PC whose firewall drops what no rule accepts
FAST = ("-e", "seconds_per_dot=0.2", "-e", "heartbeat_seconds=3")
TLS = ("-e", "rabbitmq_tls=true")


def playbook(name: str, *args: str, inventory: Path | None = None) -> subprocess.CompletedProcess[str]:
    return lab_runs.playbook(CLUSTER_LAB, name, *FAST, *args, inventory=inventory)


@pytest.fixture(scope="module")
def lab() -> Iterator[docker.DockerClient]:
    client = engine.ensure_engine()
    images.program_images(client)
    hosts.down(client, CLUSTER_LAB)
    hosts.up(client, 6, CLUSTER_LAB, brokers=3)
    install_drop_by_default(client, FIREWALLED)
    _state["formed"] = False
    yield client
    hosts.down(client, CLUSTER_LAB)


_state = {"formed": False}


@pytest.fixture
def cluster(lab: docker.DockerClient) -> docker.DockerClient:
    """The lab deployed with its three brokers (site.yml, unless it already is)."""
    if not _state["formed"]:
        succeeded(playbook("site.yml"))
        _state["formed"] = True
    wait_until(lambda: consumers(lab) == 2, 60, "two consumers")
    return lab


def one_broker_inventory(folder: Path) -> Path:
    """The lab's inventory with testlab1 alone in group broker: a lab before it grows."""
    document = yaml.safe_load(CLUSTER_LAB.inventory.read_text())
    document["all"]["children"]["broker"]["hosts"] = {BROKERS[0]: {"ansible_host": f"{CLUSTER_LAB.subnet_prefix}.11"}}
    path = folder / "hosts.yml"
    path.write_text(yaml.safe_dump(document))
    (folder / "group_vars").symlink_to(CLUSTER_LAB.inventory.parent / "group_vars")
    return path


def rabbitmqctl(client: docker.DockerClient, host: str, *args: str) -> object:
    return json.loads(read_on(client, host, "rabbitmqctl", *args, "--quiet", "--formatter", "json") or "null")


def members(client: docker.DockerClient, host: str) -> set[str]:
    """The nodes a node says are running in its cluster."""
    status = rabbitmqctl(client, host, "cluster_status")
    assert isinstance(status, dict)
    return set(status["running_nodes"])


def task_queue(client: docker.DockerClient, host: str = BROKERS[0]) -> dict[str, Any]:
    """task_queue as a node lists it; {} when it cannot say now (while another node starts again,
    rabbitmqctl can wait 60 s for it and give up, exit 70)."""
    columns = ("name", "messages_ready", "messages_unacknowledged", "consumers", "leader", "members")
    try:
        return queue_row(client, host, "task_queue", *columns)
    except RuntimeError:
        return {}


def consumers(client: docker.DockerClient) -> int:
    return int(task_queue(client).get("consumers", 0))


def settled(client: docker.DockerClient, host: str = BROKERS[0]) -> None:
    """The queue ends with nothing ready and nothing unacknowledged (a quorum queue's counts lag by seconds)."""

    def empty() -> bool:
        row = task_queue(client, host)
        return (row.get("messages_ready"), row.get("messages_unacknowledged")) == (0, 0)

    wait_until(empty, 90, "an empty task_queue")


def consuming_node(client: docker.DockerClient, host: str) -> str:
    """The broker node a worker host's worker consumes from now."""
    events = lab_runs.container_events(client, host)
    node: str = [e["node"] for e in events if e["event"] == "consuming"][-1]
    return node


def watched_leader(*broker: str) -> str:
    """The node ``make watch`` says leads the queue (it asks the management API with the lab's own user)."""
    where = broker or ("--inventory", str(CLUSTER_LAB.inventory))
    command = [sys.executable, "-m", "workqueue.report.watch", *where, "--duration", "2"]
    watched = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert watched.returncode == 0, watched.stdout[-1000:] + watched.stderr
    said = re.findall(r"consumers, led by (rabbit@\S+)", watched.stdout)
    return said[-1] if said else ""


def all_done(client: docker.DockerClient, run_id: str, count: int, timeout: float = 90) -> dict[int, list[str]]:
    wait_until(lambda: len(done_by(client, WORKERS, run_id)) == count, timeout, f"{count} tasks done")
    return done_by(client, WORKERS, run_id)


def test_a_lab_grows_from_one_broker_to_three_and_no_waiting_task_is_lost(
    lab: docker.DockerClient, tmp_path: Path
) -> None:
    one = one_broker_inventory(tmp_path)
    succeeded(playbook("site.yml", inventory=one))
    _state["formed"] = False
    assert members(lab, BROKERS[0]) == {"rabbit@clusterlab1"}
    for host in WORKERS:  # tasks wait in the one broker's queue while no worker consumes
        on(lab, host, "docker", "stop", "workqueue-worker-1")
    run_id = run_id_of(playbook("produce.yml", "-e", "task_count=6", inventory=one).stdout)
    wait_until(lambda: task_queue(lab).get("messages_ready") == 6, 30, "six tasks waiting")

    started = time.monotonic()
    succeeded(playbook("site.yml"))  # the inventory's three brokers
    grew = time.monotonic() - started
    _state["formed"] = True
    for host in BROKERS:
        assert members(lab, host) == NODES, host
    assert set(task_queue(lab)["members"]) == NODES  # the queue gained a replica on each new node
    done = all_done(lab, run_id, 6)
    assert sorted(done) == [1, 2, 3, 4, 5, 6]
    settled(lab)
    print(f"site.yml grew the cluster from one broker to three in {grew:.0f} s")


def test_a_rerun_and_a_check_change_nothing(cluster: docker.DockerClient) -> None:
    assert set(succeeded(playbook("site.yml")).values()) == {0}
    assert set(succeeded(playbook("site.yml", "--check")).values()) == {0}
    for host in BROKERS:
        assert members(cluster, host) == NODES


def test_workers_on_two_hosts_use_two_nodes_and_share_the_tasks(cluster: docker.DockerClient) -> None:
    nodes = {host: consuming_node(cluster, host) for host in WORKERS}
    assert len(set(nodes.values())) == 2, nodes  # spread over the cluster, not all on its first node
    run_id = run_id_of(playbook("produce.yml", "-e", "task_count=6").stdout)
    done = all_done(cluster, run_id, 6)
    by_host = {host: sorted(seq for seq, by in done.items() if host in by) for host in WORKERS}
    assert sorted(len(seqs) for seqs in by_host.values()) == [3, 3], by_host  # round-robin

    # A poison task (empty), sent through the second node: a worker rejects it, the cluster keeps it.
    assert CLUSTER_LAB.credentials is not None
    password = (CLUSTER_LAB.credentials / "rabbitmq-workqueue-password").read_text().strip()
    credentials = pika.PlainCredentials("workqueue", password)
    address = f"{CLUSTER_LAB.subnet_prefix}.12"
    connection = pika.BlockingConnection(pika.ConnectionParameters(address, 5672, "workqueue", credentials))
    connection.channel().basic_publish("", "task_queue", b"", pika.BasicProperties(delivery_mode=2))
    connection.close()

    def rejected() -> int:
        rows = rabbitmqctl(cluster, BROKERS[2], "list_queues", "-p", "workqueue", "name", "messages_ready")
        assert isinstance(rows, list)
        return next((row["messages_ready"] for row in rows if row["name"] == "task_queue.rejected"), 0)

    wait_until(lambda: rejected() == 1, 30, "the empty task in task_queue.rejected")
    on(cluster, BROKERS[0], "rabbitmqctl", "purge_queue", "-p", "workqueue", "task_queue.rejected")


def test_the_node_leading_the_queue_killed_mid_run_loses_nothing(cluster: docker.DockerClient, tmp_path: Path) -> None:
    leader = task_queue(cluster)["leader"]
    assert watched_leader() == leader  # the live view names it too
    # Eight tasks of 6 s on two workers: about 24 s of run, and the drill takes seconds to find the leader.
    run_id = run_id_of(playbook("produce.yml", "-e", "task_count=8", "-e", "task_message=work" + "." * 30).stdout)
    wait_until(lambda: any(unfinished(cluster, host, run_id) for host in WORKERS), 30, "a task in hand")
    succeeded(playbook("drill.yml", "-e", "fault=broker-node-kill"))  # target: the leader
    killed = float(lab_runs.last_fault(cluster, PRODUCER)["start"])
    done = all_done(cluster, run_id, 8, timeout=120)
    assert sorted(done) == list(range(1, 9))
    finished = [e["ts"] for h in WORKERS for e in lab_runs.worker_events(cluster, h, run_id) if e["event"] == "done"]
    assert sum(ts < killed for ts in finished) < 8, "the kill came while the run went on"
    alive = next(host for host in BROKERS if f"rabbit@{host}" != leader)

    def took_the_lead() -> bool:
        return task_queue(cluster, alive).get("leader") not in (None, leader)

    wait_until(took_the_lead, 150, "another node leading the queue")
    settled(cluster, alive)
    assert watched_leader() == task_queue(cluster, alive)["leader"]  # the live view has seen the change

    done_run = playbook("report.yml", "-e", f"run_id={run_id}", "-e", f"report_dir={tmp_path}")
    assert done_run.returncode == 0, done_run.stdout[-3000:]
    report = json.loads(next(tmp_path.glob("*/report.json")).read_text())
    assert report["counts"].get("lost", 0) == 0 and report["counts"]["done"] == 8
    assert [f["fault"] for f in report["faults"]] == ["broker-node-kill"]
    again = [
        e["ts"]
        for host in WORKERS
        for e in lab_runs.container_events(cluster, host)
        if e["event"] == "consuming" and e["ts"] > killed
    ]
    print(f"leader {leader} killed: a worker consuming again after {min(again) - killed:.1f} s")


def test_two_nodes_of_three_down_the_producer_names_what_was_not_confirmed_and_loses_none_it_was(
    cluster: docker.DockerClient, tmp_path: Path
) -> None:
    """The last node has no majority: it pauses (pause_minority), and no task is confirmed until the others return."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        spread = ("-e", "task_count=30", "-e", "publish_rate=2", "-e", "task_message=t", "-e", "connect_timeout=10")
        producing = pool.submit(playbook, "produce.yml", *spread)

        def publishing() -> bool:
            return "workqueue-producer" in on(cluster, PRODUCER, "docker", "ps", "--format", "{{.Names}}")

        wait_until(publishing, 60, "the producer publishing")
        time.sleep(3)  # a few tasks confirmed first
        for host in BROKERS[1:]:  # both at once: a node of a cluster takes seconds to stop
            on(cluster, host, "systemctl", "stop", "--no-block", "rabbitmq-server")
        try:
            produced = producing.result(timeout=300)
        finally:
            for host in BROKERS[1:]:
                on(cluster, host, "systemctl", "start", "rabbitmq-server")
    assert produced.returncode != 0
    said = " ".join(produced.stdout.split())
    assert "of 30 tasks not confirmed by the broker: #" in said, said[-2000:]
    run_id = run_id_of(produced.stdout)
    wait_until(lambda: consumers(cluster) == 2, 120, "the workers consuming again")
    done_run = playbook("report.yml", "-e", f"run_id={run_id}", "-e", f"report_dir={tmp_path}")
    assert done_run.returncode == 0, done_run.stdout[-3000:]
    report = json.loads(next(tmp_path.glob("*/report.json")).read_text())
    unconfirmed = {t["seq"] for t in report["tasks"] if t["fate"] == "not sent"}
    confirmed = set(range(1, 31)) - unconfirmed
    assert unconfirmed and confirmed, report["verdict"]
    # Every task the broker confirmed is done once the nodes are back: nothing confirmed was lost.
    wait_until(lambda: confirmed <= set(done_by(cluster, WORKERS, run_id)), 120, "every confirmed task done")


def test_a_node_stopped_for_a_while_comes_back_into_the_cluster(cluster: docker.DockerClient) -> None:
    host = BROKERS[2]
    started = time.monotonic()
    succeeded(playbook("drill.yml", "-e", "fault=broker-node-stop", "-e", f"target={host}", "-e", "duration=5"))
    took = time.monotonic() - started
    # It was down: its Erlang VM is younger than the drill, which lasted the duration.
    age = int(on(cluster, host, "ps", "-o", "etimes=", "-C", "beam.smp").split()[0])
    assert took >= 5 and age < took
    for node in BROKERS:
        wait_until(lambda n=node: members(cluster, n) == NODES, 60, f"{node} seeing the three nodes")  # type: ignore[misc]  # a bound default: mypy infers no lambda's


def test_teardown_undoes_the_cluster_and_site_forms_it_again_over_tls_with_no_secret_shown(
    cluster: docker.DockerClient,
) -> None:
    """Last in the module: it leaves the cluster deployed with TLS (the next test to need one deploys it plain)."""
    succeeded(playbook("teardown.yml"))
    _state["formed"] = False
    assert CLUSTER_LAB.credentials is not None
    cookie_file = CLUSTER_LAB.credentials / "erlang-cookie"
    cookie = cookie_file.read_text().split()[0]
    password_file = CLUSTER_LAB.credentials / "rabbitmq-workqueue-password"
    password = password_file.read_text().strip()
    assert cookie_file.stat().st_mode & 0o077 == 0 and len(cookie) >= 20
    for host in BROKERS:
        assert members(cluster, host) == {f"rabbit@{host}"}, host  # alone again
        # Started alone, the node made a cookie of its own: the cluster's is gone.
        code, own = read_result(cluster, host, "cat", "/var/lib/rabbitmq/.erlang.cookie")
        assert code == 0 and len(own.strip()) >= 20 and own.strip() != cookie, (host, code)
        assert "workqueue-lab" not in read_on(cluster, host, "cat", "/etc/hosts")
        code, plugins = read_result(cluster, host, "cat", "/etc/rabbitmq/enabled_plugins")
        assert (code == 0 and "rabbitmq_management" not in plugins) or "No such file" in plugins, (host, plugins)
    assert "workqueue-lab" not in on(cluster, FIREWALLED, "nft", "list", "ruleset")

    with CommandLines(cluster, ALL_HOSTS) as command_lines:
        done = playbook("site.yml", "-vvvv", *TLS)
    succeeded(done)
    for host in BROKERS:
        assert members(cluster, host) == NODES
        assert on(cluster, host, "stat", "-c", "%U %a", "/var/lib/rabbitmq/.erlang.cookie").strip() == "rabbitmq 400"
    # The cookie and the password on no command line (the sampler saw the joins go by), journal, log or output.
    assert any("join_cluster" in line for line in command_lines.seen[BROKERS[1]].splitlines())
    for host, seen in command_lines.seen.items():
        assert cookie not in seen and password not in seen, host
    assert where_secrets_show(cluster, ALL_HOSTS, [cookie, password], done.stdout + done.stderr) == []

    # Over TLS, each node shows a certificate for its own address, signed by the lab's CA; the workers use them all.
    ca_file = str(CLUSTER_LAB.credentials / "tls" / "ca.crt")
    addresses = [f"{CLUSTER_LAB.subnet_prefix}.{11 + i}" for i in range(3)]
    for address in addresses:
        connection = connect(
            broker_from_url(f"amqps://workqueue@{address}:5671/workqueue", str(password_file), ca_file), 10
        )
        assert connection is not None
        connection.close()
    wait_until(lambda: consumers(cluster) == 2, 60, "two consumers over TLS")
    nodes = {host: consuming_node(cluster, host) for host in WORKERS}
    assert len(set(nodes.values())) == 2 and all(node.endswith(":5671") for node in nodes.values()), nodes
    # The live view asks the leader over HTTPS (15671), through the firewalled node's rules too.
    url = "amqps://workqueue@" + ",".join(f"{address}:5671" for address in addresses) + "/workqueue"
    watch = ["--url", url, "--password-file", str(password_file), "--ca-file", ca_file]
    assert watched_leader(*watch) == task_queue(cluster)["leader"]
    assert set(task_queue(cluster)["members"]) == NODES
