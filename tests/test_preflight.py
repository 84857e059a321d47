"""site.yml's preflight (lab_client's broker_reach module) says why a host cannot reach the broker.

The four failures a real lab meets first, each made for real on loopback and met by the module as
Ansible runs it: a name that does not resolve, a name that resolves elsewhere, a port where nothing
listens (refused), and a port that never answers (a listener whose queue is full drops the
connection, as a firewall that drops the port does). No broker, no Docker: a test of make test-quick.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ANSIBLE = Path(sys.executable).parent / "ansible"


def reach(address: str, port: int, expected: str = "", timeout: float = 1.0) -> tuple[bool, str]:
    """Run the module on this machine, as site.yml runs it on a worker host: (failed, its message)."""
    args = f"address={address} port={port} expected={expected} host=pc7 timeout={timeout}"
    command = [str(ANSIBLE), "localhost", "-c", "local", "-M", str(ROOT / "roles" / "lab_client" / "library")]
    command += ["-m", "broker_reach", "-a", args]
    env = {**os.environ, "ANSIBLE_LOAD_CALLBACK_PLUGINS": "true", "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False, env=env, cwd=ROOT)
    result = json.loads(done.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
    return bool(result.get("failed")), str(result.get("msg", ""))


@pytest.fixture
def full_listener() -> Iterator[int]:
    """A port that takes no more connections: its accept queue full, new ones get no answer."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port = int(server.getsockname()[1])
        waiting = []
        for _ in range(3):  # fill the queue (the kernel takes backlog + 1) without accepting
            client = socket.socket()
            client.setblocking(False)
            client.connect_ex(("127.0.0.1", port))
            waiting.append(client)
        try:
            yield port
        finally:
            for client in waiting:
                client.close()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # free once closed: nothing listens there


def test_a_port_that_answers_passes() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(5)
        assert reach("127.0.0.1", server.getsockname()[1]) == (False, "")


def test_a_name_that_does_not_resolve_is_named() -> None:
    # A typo the resolver rejects by itself (an empty label): no question goes to a DNS server.
    failed, message = reach("broker..lab", 5672)
    assert failed and message == (
        "pc7 cannot reach the broker at broker..lab:5672: the name broker..lab does not resolve on pc7; "
        "add it to DNS or to /etc/hosts there, or give the broker's address in the inventory"
    )


def test_a_name_that_resolves_elsewhere_is_named_with_both_addresses() -> None:
    failed, message = reach("localhost", closed_port(), expected="10.210.1.11")
    assert failed and "localhost resolves to 127.0.0.1" in message and "the broker host is at 10.210.1.11" in message


def test_a_port_where_nothing_listens_is_refused() -> None:
    port = closed_port()
    failed, message = reach("127.0.0.1", port)
    assert failed and message == (
        f"pc7 cannot reach the broker at 127.0.0.1:{port}: 127.0.0.1 refused the connection: nothing listens on "
        f"port {port} there (RabbitMQ not running, or not listening on that interface)"
    )


def test_a_port_that_never_answers_is_a_firewall_that_drops_it(full_listener: int) -> None:
    failed, message = reach("127.0.0.1", full_listener, timeout=1.0)
    assert failed and message == (
        f"pc7 cannot reach the broker at 127.0.0.1:{full_listener}: no answer from 127.0.0.1 within 1 s: a firewall "
        f"on the broker host or on the way drops port {full_listener} (open it to pc7)"
    )
