"""RabbitMQ on this machine's loopback, for the tests, the benchmark and the process demo.

Debian's rabbitmq-server package, started with ``rabbitmq-server -detached``
(no service manager is assumed) and waited for with ``rabbitmqctl await_startup``.

Two nodes, so that the tests never touch a broker a developer may be using:
``MACHINE``, the machine's usual node on port 5672 (``make broker``, the demo,
the benchmark), and ``TESTS``, a node of the tests' own on port 5673, which a
test may stop and start. Each user of a node works in a vhost of its own,
prepared as the lab's ``rabbitmq`` role prepares the lab's: the same default
queue type and the same policies, read from the role's defaults.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

import yaml

from workqueue.machine.images import ROOT
from workqueue.machine.packages import SetupError, ensure_commands

START_TIMEOUT = 120.0
ROLE_DEFAULTS = ROOT / "roles" / "rabbitmq" / "defaults" / "main.yml"


@dataclass(frozen=True)
class Node:
    name: str  # the Erlang node name rabbitmqctl -n takes
    port: int

    @property
    def environment(self) -> dict[str, str]:
        """What makes ``rabbitmq-server`` start this node, beside any other on the machine."""
        return {
            **os.environ,
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_DIST_PORT": str(self.port + 20000),
        }

    def url(self, vhost: str) -> str:
        return f"amqp://guest:guest@localhost:{self.port}/{urllib.parse.quote(vhost, safe='')}"


MACHINE = Node(f"rabbit@{socket.gethostname().split('.')[0]}", 5672)
TESTS = Node("workqueue-tests@localhost", 5673)
# The URL `make broker` prints: the machine's node, default vhost.
LOCAL_URL = MACHINE.url("/")


def answering(node: Node) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", node.port), timeout=1):
            return True
    except OSError:
        return False


def ctl(node: Node, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["rabbitmqctl", "-n", node.name, *args], capture_output=True, text=True, check=check)


def ensure_broker(node: Node = MACHINE) -> None:
    """Start the node unless it already answers; install RabbitMQ first if needed."""
    if answering(node):
        return
    ensure_commands({"rabbitmq-server": "rabbitmq-server", "rabbitmqctl": "rabbitmq-server"})
    print(f"starting RabbitMQ node {node.name} on port {node.port} (rabbitmq-server -detached)...", flush=True)
    _start(node)


def _start(node: Node) -> None:
    subprocess.run(["rabbitmq-server", "-detached"], check=False, capture_output=True, env=node.environment)
    _await_startup(node)


def _await_startup(node: Node) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if ctl(node, "await_startup", "--timeout", "30", check=False).returncode == 0 and answering(node):
            return
        time.sleep(1)
    raise SetupError(f"RabbitMQ node {node.name} did not start within {START_TIMEOUT:g} s: see /var/log/rabbitmq/")


def restart_broker(node: Node = TESTS) -> None:
    """Stop the whole node and start it again, as a machine's restart would."""
    ctl(node, "stop")
    deadline = time.monotonic() + 30
    while answering(node) and time.monotonic() < deadline:
        time.sleep(0.2)
    _start(node)


def role_defaults() -> dict[str, Any]:
    loaded = yaml.safe_load(ROLE_DEFAULTS.read_text())
    return loaded if isinstance(loaded, dict) else {}


def prepare_vhost(node: Node, vhost: str) -> str:
    """A vhost with none of the lab's queues, set up as the lab's broker is; its URL for guest."""
    defaults = role_defaults()
    ctl(node, "delete_vhost", vhost, check=False)
    ctl(node, "add_vhost", vhost, "--default-queue-type", defaults["rabbitmq_default_queue_type"])
    ctl(node, "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    for policy in defaults["rabbitmq_policies"]:
        ctl(
            node,
            "set_policy",
            "-p",
            vhost,
            "--apply-to",
            policy.get("apply_to", "queues"),
            policy["name"],
            policy["pattern"],
            json.dumps(policy["tags"]),
        )
    return node.url(vhost)


def queue_counts(node: Node, vhost: str) -> dict[str, tuple[int, int]]:
    """The broker's own view: queue name -> (messages ready, messages unacknowledged)."""
    listed = ctl(
        node, "list_queues", "-p", vhost, "name", "messages_ready", "messages_unacknowledged", "--formatter", "json"
    ).stdout
    return {q["name"]: (q["messages_ready"], q["messages_unacknowledged"]) for q in json.loads(listed)}
