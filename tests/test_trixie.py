"""Debian 13 hosts (RabbitMQ 4.0, Docker 26, Python 3.13), end to end, on a lab of their own.

trixielab1 is the broker, behind an nftables ruleset that drops by default (installed
before site.yml, as a lab PC's firewall would be); trixielab2 and 3 run workers,
trixielab4 the producer. The lab's package cache is on (apt_cache): apt-cacher-ng on the
broker, behind its firewall, serves Docker's packages to the other three. One deployment
serves the module: each test says which it needs (``deploy``), so that any one runs alone;
a worker host that cannot reach the broker, one ack drill and one noack drill, the report,
and teardown with and without purge.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pika
import pytest
import yaml

from tests.conftest import changed_nothing, succeeded
from tests.host_firewall import connects, install_drop_by_default, lab_rules, outsider_reaches
from tests.playbook_lab import changed
from workqueue.machine import engine, images
from workqueue.virtual_lab import hosts, lab_runs
from workqueue.virtual_lab.hosts import TRIXIE_LAB
from workqueue.virtual_lab.lab_runs import (
    done_by,
    installed,
    on,
    on_result,
    queue_row,
    read_on,
    read_result,
    run_id_of,
    unfinished,
    wait_until,
)

pytestmark = [pytest.mark.docker, pytest.mark.lab, pytest.mark.xdist_group(TRIXIE_LAB.name)]

BROKER, WORKER_A, WORKER_B, PRODUCER = (f"{TRIXIE_LAB.name}{i}" for i in range(1, 5))
WORKERS = [WORKER_A, WORKER_B]
BROKER_ADDRESS = f"{TRIXIE_LAB.subnet_prefix}.{hosts.FIRST_ADDRESS}"
FAST = ("-e", "seconds_per_dot=0.2", "-e", "heartbeat_seconds=3", "-e", "apt_cache=true")
CACHED = [WORKER_A, WORKER_B, PRODUCER]  # the hosts whose apt goes through the cache
PROXY_CONF = "/etc/apt/apt.conf.d/00workqueue-lab-proxy"
LONG = ("-e", "task_message=long..............................")  # 6 s of work each
assert TRIXIE_LAB.credentials is not None
PASSWORD_FILE = TRIXIE_LAB.credentials / "rabbitmq-workqueue-password"


def playbook(name: str, *args: str, inventory: Path | None = None) -> subprocess.CompletedProcess[str]:
    return lab_runs.playbook(TRIXIE_LAB, name, *FAST, *args, inventory=inventory)


@pytest.fixture(scope="module")
def lab() -> Iterator[docker.DockerClient]:
    client = engine.ensure_engine()
    images.program_images(client)
    hosts.down(client, TRIXIE_LAB)
    hosts.up(client, 4, TRIXIE_LAB, release="trixie")
    install_drop_by_default(client, BROKER)
    _deployed.update(mode=None, site=None)
    yield client
    hosts.down(client, TRIXIE_LAB)


# The mode site.yml last deployed (None: unknown, or disturbed since); "site": whether it ever did (a disturbed
# lab, a worker stopped by a drill say, is still one for teardown.yml to remove).
_deployed: dict[str, str | None] = {"mode": None, "site": None}


def deploy(client: docker.DockerClient, mode: str = "ack") -> None:
    """The lab deployed in this mode (site.yml, unless it already is)."""
    if _deployed["mode"] == mode:
        return
    _deployed["mode"] = None
    succeeded(playbook("site.yml", "-e", f"task_mode={mode}"))
    _deployed["site"] = "yes"
    queue = "task_queue" if mode == "ack" else "hello"
    wait_until(lambda: consumers(client, queue) == 2, 60, f"two consumers on {queue}")
    _deployed["mode"] = mode


def consumers(client: docker.DockerClient, queue: str) -> int:
    return int(queue_row(client, BROKER, queue, "consumers").get("consumers", 0))


def worker_containers(client: docker.DockerClient) -> dict[str, str]:
    """Every worker container on the worker hosts: name -> when it started ('' when Docker is not there yet)."""
    found = {}
    for host in WORKERS:
        code, listed = read_result(client, host, "sh", "-c", "docker ps -aq --filter label=workqueue-lab=worker")
        for container in listed.split() if code == 0 else []:
            state = json.loads(read_on(client, host, "docker", "inspect", container))[0]
            found[f"{host}/{state['Name'].lstrip('/')}"] = state["State"]["StartedAt"]
    return found


def mid_run(client: docker.DockerClient, fault: str, mode: str) -> tuple[str, set[int]]:
    """Six long tasks, and the fault on the second worker host the moment it holds one: the run, what it held then.

    drill.yml watches the worker before the run is produced and strikes on cue; what the worker held is read
    after it (a killed or stopped worker finishes nothing more).
    """
    deploy(client, mode)
    _deployed["mode"] = None  # the drill stops a worker; the next deploy starts it again
    fault_args = [*FAST, "-e", f"task_mode={mode}", "-e", f"fault={fault}", "-e", f"target={WORKER_B}"]
    done, run_id = lab_runs.drill_on_cue(
        TRIXIE_LAB,
        lambda: run_id_of(
            succeeded_output(playbook("produce.yml", "-e", f"task_mode={mode}", "-e", "task_count=6", *LONG))
        ),
        *fault_args,
    )
    succeeded(done)
    assert run_id is not None, done.stdout[-3000:]
    assert lab_runs.last_fault(client, PRODUCER)["caught"]["run_id"] == run_id
    return run_id, unfinished(client, WORKER_B, run_id)


def succeeded_output(done: subprocess.CompletedProcess[str]) -> str:
    succeeded(done)
    return done.stdout


def report(folder: Path, run_id: str) -> tuple[str, dict[str, Any]]:
    done = playbook("report.yml", "-e", f"report_dir={folder}", "-e", f"run_id={run_id}")
    succeeded(done)
    return " ".join(done.stdout.split()), json.loads(next(folder.glob("*/report.json")).read_text())


# --- reaching the broker


def test_a_worker_host_that_resolves_the_broker_elsewhere_stops_site_before_any_worker_starts(
    lab: docker.DockerClient, tmp_path: Path
) -> None:
    document = yaml.safe_load(TRIXIE_LAB.inventory.read_text())
    document["all"]["children"]["broker"]["hosts"][BROKER]["lab_address"] = BROKER  # the programs use its name
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump(document))
    (tmp_path / "group_vars").symlink_to(TRIXIE_LAB.inventory.parent / "group_vars")
    before = worker_containers(lab)
    stale = f"{TRIXIE_LAB.subnet_prefix}.99"
    on(lab, WORKER_A, "sh", "-c", f"cp /etc/hosts /etc/hosts.test && echo '{stale} {BROKER}' >> /etc/hosts")
    try:
        done = playbook("site.yml", inventory=inventory)
    finally:
        on(lab, WORKER_A, "sh", "-c", "cat /etc/hosts.test > /etc/hosts && rm /etc/hosts.test")
        _deployed["mode"] = None
    assert done.returncode != 0
    said = " ".join(done.stdout.split())
    expected = (
        f"{WORKER_A} cannot reach the broker at {BROKER}:5672: {BROKER} resolves to {stale} on {WORKER_A}, "
        f"but the broker host is at {BROKER_ADDRESS} (a stale line in {WORKER_A}'s /etc/hosts, or in DNS?)"
    )
    assert expected in said, done.stdout[-4000:]
    assert worker_containers(lab) == before, "no worker was started (or restarted) anywhere"
    # First in the module, on fresh hosts: Docker was not even installed (the preflight comes before it).
    for host in (*WORKERS, PRODUCER):
        assert on_result(lab, host, "sh", "-c", "command -v docker")[0] != 0, f"Docker installed on {host}"


def test_a_cluster_of_brokers_on_two_releases_fails_before_any_change(lab: docker.DockerClient, tmp_path: Path) -> None:
    """Debian 12 (RabbitMQ 3.10) and Debian 13 (4.0) nodes cannot form one cluster: the preflight says so."""
    bookworm = hosts.Lab(name="mixlab", subnet_prefix="10.210.4")
    try:
        (other, _) = hosts.up(lab, 2, bookworm)  # a Debian 12 host beside the Debian 13 ones
        document = yaml.safe_load(TRIXIE_LAB.inventory.read_text())
        document["all"]["children"]["broker"]["hosts"] |= {
            PRODUCER: {"ansible_host": f"{TRIXIE_LAB.subnet_prefix}.14"},
            other.name: {"ansible_host": other.address, "ansible_ssh_private_key_file": str(bookworm.key)},
        }
        inventory = tmp_path / "hosts.yml"
        inventory.write_text(yaml.safe_dump(document))
        (tmp_path / "group_vars").symlink_to(TRIXIE_LAB.inventory.parent / "group_vars")
        before = read_result(lab, BROKER, "cat", "/etc/rabbitmq/rabbitmq.conf")
        done = playbook("site.yml", inventory=inventory)
        assert done.returncode != 0
        said = " ".join(done.stdout.split())
        assert "so that each installs the same RabbitMQ (Debian 12 ships 3.10 and Debian 13 4.0" in said, said[-3000:]
        assert "got trixie and bookworm" in said or "got bookworm and trixie" in said
        for host in (PRODUCER, other.name):
            assert not installed(lab, host, "rabbitmq-server"), f"{host}: nothing installed"
        assert read_result(lab, BROKER, "cat", "/etc/rabbitmq/rabbitmq.conf") == before, "the broker as it was"
    finally:
        hosts.down(lab, bookworm)


# --- deploying on Debian 13, behind the broker host's firewall


def test_site_on_debian_13_opens_the_firewall_to_the_lab_only_and_a_rerun_changes_nothing(
    lab: docker.DockerClient,
) -> None:
    deploy(lab)
    assert on(lab, BROKER, "sh", "-c", ". /etc/os-release; echo $VERSION_CODENAME").strip() == "trixie"
    assert on(lab, BROKER, "rabbitmqctl", "version").startswith("4.0")
    rule, cache_rule = sorted(lab_rules(lab, BROKER), key=lambda rule: "apt-cache" in rule)
    assert "tcp dport 5672 accept" in rule and f"{TRIXIE_LAB.subnet_prefix}.12" in rule
    assert "tcp dport 3142 accept" in cache_rule and f"{TRIXIE_LAB.subnet_prefix}.12" in cache_rule
    # This machine (the gateway, which make watch runs on) gets in; a host the inventory does not name does not.
    password = PASSWORD_FILE.read_text().strip()
    parameters = pika.URLParameters(f"amqp://workqueue:{password}@{BROKER_ADDRESS}:5672/workqueue")
    pika.BlockingConnection(parameters).close()
    assert outsider_reaches(lab, TRIXIE_LAB.network, BROKER_ADDRESS, [5672]) == {5672: False}
    assert connects(lab, WORKER_A, BROKER_ADDRESS, 5672)

    # Docker came to the three other hosts through the cache: its package crossed the uplink once.
    for host in CACHED:
        assert f'Proxy "http://{BROKER_ADDRESS}:3142"' in on(lab, host, "cat", PROXY_CONF), host
    docker_io = cache_log(lab, "/docker.io_")
    addresses = sorted(f"{TRIXIE_LAB.subnet_prefix}.{hosts.FIRST_ADDRESS + i}" for i in range(1, 4))
    assert len(docker_io["fetched"]) == 1 and sorted(docker_io["served"]) == addresses, docker_io

    changed_nothing(playbook("site.yml", "-e", "task_mode=ack"), [BROKER, *CACHED])


def cache_log(client: docker.DockerClient, package: str) -> dict[str, list[str]]:
    """apt-cacher-ng's transfer log (time|I or O|bytes|client|file) for one package's file: who made it
    fetch the file from upstream (I), and to whom it served it (O)."""
    code, log = read_result(client, BROKER, "cat", "/var/log/apt-cacher-ng/apt-cacher.log")
    rows = [line.split("|") for line in log.splitlines() if package in line] if code == 0 else []
    return {
        "fetched": [row[3] for row in rows if row[1] == "I"],
        "served": [row[3] for row in rows if row[1] == "O"],
    }


# --- the drills and the report


def test_ack_drill_on_debian_13_a_killed_workers_task_is_done_elsewhere(
    lab: docker.DockerClient, tmp_path: Path
) -> None:
    run_id, (held,) = mid_run(lab, "kill", "ack")
    wait_until(lambda: set(done_by(lab, WORKERS, run_id)) == set(range(1, 7)), 90, "every task done")
    said, data = report(tmp_path, run_id)
    assert data["counts"] == {"done": 6}
    assert f"6 sent, 6 done, 0 lost; 1 redelivered (#{held} {WORKER_B}/worker-1 -> {WORKER_A}/worker-1)" in said


def test_noack_drill_on_debian_13_a_stopped_worker_loses_what_it_held(lab: docker.DockerClient, tmp_path: Path) -> None:
    run_id, _ = mid_run(lab, "stop", "noack")
    received_a = {e["seq"] for e in lab_runs.worker_events(lab, WORKER_A, run_id) if e["event"] == "received"}
    wait_until(lambda: received_a <= set(done_by(lab, WORKERS, run_id)), 90, f"{WORKER_A} done with its tasks")
    lost = set(range(1, 7)) - set(done_by(lab, WORKERS, run_id))
    said, data = report(tmp_path, run_id)
    assert lost and {t["seq"] for t in data["tasks"] if t["fate"] == "lost"} == lost
    assert f"6 sent, {6 - len(lost)} done, {len(lost)} lost" in said


# --- a worker host of another architecture: a Raspberry Pi (arm64), emulated

# The second worker host taken for a Pi: the images of its architecture, run under qemu (binfmt_misc is the
# kernel's, shared by the lab's hosts). Extra vars are templated per host: only WORKER_B says arm64.
AS_A_PI = ("-e", f"image_architecture={{{{ 'arm64' if inventory_hostname == '{WORKER_B}' else '' }}}}")


def image_here(client: docker.DockerClient, host: str, what: str) -> str:
    return on(client, host, "docker", "image", "inspect", "-f", what, "workqueue-lab/worker:latest").strip()


def test_a_pi_among_the_workers_stops_site_until_its_image_is_built_then_runs_it(lab: docker.DockerClient) -> None:
    if not _deployed["site"]:  # in order, the drill before left it deployed: the Pi's site.yml below mends the rest
        deploy(lab)
    before = worker_containers(lab)
    # A build with no arm64 twin (its recipe's own tag): the preflight names the host, its architecture, the fix.
    native_only = images.program_images(lab)["workqueue-lab/worker"]
    refused = playbook("site.yml", "-e", "task_mode=ack", "-e", f"worker_image={native_only}", *AS_A_PI)
    said = " ".join(refused.stdout.split())
    assert refused.returncode != 0
    assert (
        f"{WORKER_B} is arm64: this machine has no {native_only} of that architecture (only amd64): build it with"
        " `make images ARCH=arm64`" in said
    ), said[-2000:]
    counts = changed(refused)
    assert WORKER_B in counts and sum(counts.values()) == 0 and worker_containers(lab) == before, counts

    images.program_images(lab, arch="arm64")  # make images ARCH=arm64 (cached by its recipe)
    _deployed["mode"] = None  # the Pi's worker is recreated on its own image; the next deploy puts it back
    succeeded(playbook("site.yml", "-e", "task_mode=ack", *AS_A_PI))
    assert image_here(lab, WORKER_B, "{{.Architecture}}") == "arm64"
    assert image_here(lab, WORKER_A, "{{.Architecture}}") == "amd64"
    assert on(lab, WORKER_B, "docker", "exec", "workqueue-worker-1", "uname", "-m").strip() == "aarch64"
    # Under the image's own name only: the name it came by (latest-arm64) is not left on the host.
    assert "latest-arm64" not in on(lab, WORKER_B, "docker", "image", "ls", "--format", "{{.Tag}}")
    wait_until(lambda: consumers(lab, "task_queue") == 2, 90, "the emulated worker consuming")

    run_id = run_id_of(succeeded_output(playbook("produce.yml", "-e", "task_mode=ack", "-e", "task_count=6")))
    wait_until(lambda: set(done_by(lab, WORKERS, run_id)) == set(range(1, 7)), 90, "every task done")
    assert done_by(lab, [WORKER_B], run_id), "the emulated worker did its share"
    changed_nothing(playbook("site.yml", "-e", "task_mode=ack", *AS_A_PI), [BROKER, *CACHED])


# --- teardown


def test_teardown_on_debian_13_removes_it_all_with_the_firewall_rule_then_purge_the_packages(
    lab: docker.DockerClient,
) -> None:
    if not _deployed["site"]:  # in order, the drills before left it deployed (a worker stopped: no matter)
        deploy(lab)
    _deployed.update(mode=None, site=None)
    succeeded(playbook("teardown.yml"))
    for host in WORKERS:
        assert on(lab, host, "docker", "ps", "-aq", "--filter", "label=workqueue-lab").strip() == ""
    assert "workqueue" not in on(lab, BROKER, "rabbitmqctl", "list_vhosts", "-q").split()
    assert lab_rules(lab, BROKER) == [], "the role's rules go"
    assert "policy drop" in on(lab, BROKER, "nft", "list", "ruleset"), "the host's own firewall stays"
    # apt back to its own sources everywhere, and the cache gone with what it held.
    for host in CACHED:
        assert on_result(lab, host, "test", "-e", PROXY_CONF)[0] == 1, host
    assert not installed(lab, BROKER, "apt-cacher-ng")
    assert on_result(lab, BROKER, "test", "-e", "/var/cache/apt-cacher-ng")[0] == 1
    changed_nothing(playbook("teardown.yml"), [BROKER, *CACHED])

    succeeded(playbook("teardown.yml", "-e", "purge=true"))
    for host in WORKERS:
        assert not installed(lab, host, "docker.io")
    assert not installed(lab, BROKER, "rabbitmq-server")
