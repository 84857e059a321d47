"""A RabbitMQ broker on this machine's loopback, for the tests, the benchmark and the process demo.

Debian's rabbitmq-server package, started with ``rabbitmq-server -detached``
(no service manager is assumed) and waited for with ``rabbitmqctl await_startup``.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time

from virtual_lab.packages import SetupError, ensure_commands

AMQP_PORT = 5672
START_TIMEOUT = 120.0
LOCAL_URL = "amqp://guest:guest@localhost:5672/%2F"


def answering() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", AMQP_PORT), timeout=1):
            return True
    except OSError:
        return False


def ensure_broker() -> None:
    """Start the local broker unless it already answers; install it first if needed."""
    if answering():
        return
    ensure_commands({"rabbitmq-server": "rabbitmq-server", "rabbitmqctl": "rabbitmq-server"})
    print("starting RabbitMQ (rabbitmq-server -detached)...", flush=True)
    subprocess.run(["rabbitmq-server", "-detached"], check=False, capture_output=True)
    _await_startup()


def _await_startup() -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        done = subprocess.run(
            ["rabbitmqctl", "await_startup", "--timeout", "30"], capture_output=True, text=True, check=False
        )
        if done.returncode == 0 and answering():
            return
        time.sleep(1)
    raise SetupError(f"RabbitMQ did not start within {START_TIMEOUT:g} s: see /var/log/rabbitmq/")


def restart_broker() -> None:
    """Stop the whole broker node and start it again, as a machine's restart would."""
    subprocess.run(["rabbitmqctl", "stop"], capture_output=True, check=True)
    deadline = time.monotonic() + 30
    while answering() and time.monotonic() < deadline:
        time.sleep(0.2)
    subprocess.run(["rabbitmq-server", "-detached"], check=False, capture_output=True)
    _await_startup()


def queue_counts() -> dict[str, tuple[int, int]]:
    """The broker's own view: queue name -> (messages ready, messages unacknowledged)."""
    done = subprocess.run(
        ["rabbitmqctl", "list_queues", "name", "messages_ready", "messages_unacknowledged", "--formatter", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    return {q["name"]: (q["messages_ready"], q["messages_unacknowledged"]) for q in json.loads(done.stdout)}
