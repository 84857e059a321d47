"""The virtual lab: hosts like fresh lab machines, reached over real SSH, made and removed cleanly.

These tests use a lab of their own (hostlab1.., 10.210.5.0/24), never the one `make lab-up` made.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from workqueue.machine import engine
from workqueue.virtual_lab import hosts
from workqueue.virtual_lab.hosts import HOST_LAB, LAB_LABEL, Host

pytestmark = [pytest.mark.docker, pytest.mark.lab, pytest.mark.xdist_group(HOST_LAB.name)]

ANSIBLE = Path(sys.executable).parent / "ansible"


@pytest.fixture(scope="module")
def client() -> docker.DockerClient:
    return engine.ensure_engine()


@pytest.fixture(scope="module")
def lab(client: docker.DockerClient) -> Iterator[list[Host]]:
    hosts.down(client, HOST_LAB)
    yield hosts.up(client, 3, HOST_LAB)
    hosts.down(client, HOST_LAB)


def ansible(module: str, args: str = "", become: bool = False) -> dict[str, dict[str, Any]]:
    """Run an ad-hoc module on every host over SSH; host -> its result."""
    command = [str(ANSIBLE), "all", "-i", str(HOST_LAB.inventory), "-m", module]
    command += ["-a", args] if args else []
    command += ["--become"] if become else []
    env = {**os.environ, "ANSIBLE_LOAD_CALLBACK_PLUGINS": "true", "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False, env=env)
    results: dict[str, dict[str, Any]] = json.loads(done.stdout)["plays"][0]["tasks"][0]["hosts"]
    return results


def ssh(host: Host, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        hosts.ssh_command(HOST_LAB, host.address, command), capture_output=True, text=True, timeout=30, check=False
    )


def test_every_host_answers_ansible_over_ssh_with_become(lab: list[Host]) -> None:
    results = ansible("ansible.builtin.command", "id -un", become=True)
    assert sorted(results) == [h.name for h in lab]
    assert all(r.get("rc") == 0 and r["stdout"] == "root" for r in results.values()), results


def test_hostnames_addresses_and_groups_are_as_the_inventory_says(lab: list[Host]) -> None:
    results = ansible("ansible.builtin.setup", "filter=ansible_hostname,ansible_default_ipv4")
    for host in lab:
        facts = results[host.name]["ansible_facts"]
        assert facts["ansible_hostname"] == host.name
        assert facts["ansible_default_ipv4"]["address"] == host.address
    assert [h.groups for h in lab] == [("broker",), ("workers",), ("producer",)]


def test_hosts_reach_each_other_by_address_and_name(lab: list[Host]) -> None:
    broker, worker, producer = lab
    for source, target in [(worker, broker), (producer, broker), (broker, worker)]:
        assert ssh(source, f"ping -c 1 -W 2 {target.address}").returncode == 0
        resolved = ssh(source, f"getent hosts {target.name}").stdout.split()
        assert resolved[:1] == [target.address]


def test_hosts_are_fresh_machines_with_only_systemd_and_ssh(lab: list[Host]) -> None:
    for host in lab:
        assert ssh(host, "systemctl is-system-running").stdout.strip() == "running"
        services = ssh(host, "systemctl list-units --type=service --state=running --no-legend --plain").stdout
        running = {line.split()[0] for line in services.splitlines() if line.strip()}
        assert running <= {"dbus.service", "ssh.service", "systemd-journald.service", "systemd-logind.service"}
        assert "ssh.service" in running
        assert ssh(host, "command -v docker || command -v rabbitmq-server").returncode == 1
        settings = ssh(host, "sudo sshd -T").stdout
        assert "passwordauthentication no" in settings and "permitrootlogin no" in settings


def test_each_host_has_its_own_ssh_host_key(lab: list[Host]) -> None:
    keys = {ssh(h, "cat /etc/ssh/ssh_host_ed25519_key.pub").stdout.split()[1] for h in lab}
    assert len(keys) == len(lab)


def test_up_again_gives_the_same_lab(client: docker.DockerClient, lab: list[Host]) -> None:
    before = {c.name: c.id for c in client.containers.list(filters={"label": f"{LAB_LABEL}={HOST_LAB.name}"})}
    assert hosts.up(client, 3, HOST_LAB) == lab
    after = {c.name: c.id for c in client.containers.list(filters={"label": f"{LAB_LABEL}={HOST_LAB.name}"})}
    assert after == before


def test_up_repairs_a_host_removed_by_hand(client: docker.DockerClient, lab: list[Host]) -> None:
    client.containers.get(lab[1].name).remove(force=True)
    hosts.up(client, 3, HOST_LAB)
    assert ssh(lab[1], "hostname").stdout.strip() == lab[1].name


def test_a_stopped_host_is_down_until_started_and_comes_back_as_it_was(
    client: docker.DockerClient, lab: list[Host]
) -> None:
    container = client.containers.get(lab[1].name)
    ssh(lab[1], "echo kept > /home/lab/before-the-stop")
    host_key = ssh(lab[1], "cat /etc/ssh/ssh_host_ed25519_key.pub").stdout
    container.stop(timeout=10)
    assert not hosts.ssh_answers(HOST_LAB, lab[1].address)
    states = {s.name: (s.state, s.ssh) for s in hosts.status(client, HOST_LAB)}
    assert states[lab[1].name] == ("exited", False)
    container.start()
    hosts.up(client, 3, HOST_LAB)  # waits for SSH
    assert hosts.ssh_answers(HOST_LAB, lab[1].address)
    # As it was: the same machine (container, address, name, host key) with what was written on it.
    assert client.containers.get(lab[1].name).id == container.id
    assert ssh(lab[1], "hostname").stdout.strip() == lab[1].name
    assert ssh(lab[1], "cat /etc/ssh/ssh_host_ed25519_key.pub").stdout == host_key
    assert ssh(lab[1], "cat /home/lab/before-the-stop").stdout.strip() == "kept"


@pytest.mark.parametrize(
    ("count", "brokers", "message"),
    [
        ("abc", "1", "HOSTS must be a whole number"),
        ("1", "1", "a lab of 1 broker host needs 2 to 24 hosts"),
        ("5", "2", "BROKERS must be 1 or an odd number from 3 up"),
        ("5", "4", "BROKERS must be 1 or an odd number from 3 up"),
        ("3", "3", "a lab of 3 broker hosts needs 4 to 24 hosts"),
    ],
)
def test_bad_host_counts_fail_before_anything_is_made(
    client: docker.DockerClient, count: str, brokers: str, message: str
) -> None:
    before = len(client.containers.list(all=True))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "workqueue.virtual_lab",
            "--lab",
            HOST_LAB.name,
            "up",
            "--hosts",
            count,
            "--brokers",
            brokers,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert message in done.stderr and "Traceback" not in done.stderr
    assert len(client.containers.list(all=True)) == before


def test_a_host_that_changes_role_is_a_fresh_machine_and_the_others_are_kept(
    client: docker.DockerClient, lab: list[Host]
) -> None:
    """Reshaped to three brokers (five hosts), the worker host becomes a broker host: made anew, without the Docker
    data it had (its workers kept consuming the run's tasks, unseen, in a soak); the broker host stays."""
    ids = {c.name: c.id for c in client.containers.list(filters={"label": f"{LAB_LABEL}={HOST_LAB.name}"})}
    worker_host = next(h for h in lab if "workers" in h.groups)
    ssh(worker_host, "sudo touch /var/lib/docker/left-by-the-workers")
    try:
        reshaped = {h.name: h for h in hosts.up(client, 5, HOST_LAB, brokers=3)}
        assert "broker" in reshaped[worker_host.name].groups
        assert client.containers.get(worker_host.name).id != ids[worker_host.name]
        assert ssh(worker_host, "ls /var/lib/docker/left-by-the-workers").returncode != 0
        assert client.containers.get(lab[0].name).id == ids[lab[0].name], "the broker host kept"
    finally:
        hosts.up(client, 3, HOST_LAB)


def test_down_leaves_nothing_of_the_lab(client: docker.DockerClient, lab: list[Host]) -> None:
    hosts.down(client, HOST_LAB)
    selector = {"label": f"{LAB_LABEL}={HOST_LAB.name}"}
    assert client.containers.list(all=True, filters=selector) == []
    assert client.networks.list(filters=selector) == []
    assert client.volumes.list(filters=selector) == []
    assert not HOST_LAB.key.exists() and not HOST_LAB.inventory.exists()
    assert hosts.down(client, HOST_LAB) == [], "down on no lab does nothing"


def test_a_lab_of_three_brokers_puts_them_first_and_keeps_a_producer_host() -> None:
    planned = {h.name: h.groups for h in hosts.plan(7, HOST_LAB, brokers=3)}
    assert [name for name, groups in planned.items() if "broker" in groups] == ["hostlab1", "hostlab2", "hostlab3"]
    assert [name for name, groups in planned.items() if "workers" in groups] == ["hostlab4", "hostlab5", "hostlab6"]
    assert planned["hostlab7"] == ("producer",)
    # With one host past the brokers, it is the workers' and the first broker host also produces.
    tight = {h.name: h.groups for h in hosts.plan(4, HOST_LAB, brokers=3)}
    assert tight["hostlab1"] == ("broker", "producer") and tight["hostlab4"] == ("workers",)
