"""Bad input: a clear one-line error, the right exit code, no traceback, no password, nothing lost."""

from __future__ import annotations

from pathlib import Path

import pika
import pytest

from tests.conftest import NODE, QUEUES, URL, VHOST, assert_counts, declared
from workqueue.queues import Mode, declare, queue_spec
from workqueue.tasks import new_run_id, task_properties
from workqueue.virtual_lab.processes import LocalLab as Lab

pytestmark = pytest.mark.broker

SECRET = "pa55-w0rd-never-shown"
RUN = new_run_id()
PORT = NODE.port


def assert_one_line_error(text: str) -> str:
    lines = [line for line in text.splitlines() if "error:" in line]
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["0"], "COUNT: '0' is not a positive whole number"),
        (["-3"], "COUNT: '-3' is not a positive whole number"),
        (["ten"], "COUNT: 'ten' is not a whole number"),
        (["3", "--mode", "sometimes"], "--mode: unknown mode 'sometimes': use ack or noack"),
        (["3", "--url", "http://localhost"], "must start with amqp://"),
        (["3", "--url", "amqp://guest:guest@:5672/%2F"], "names no host"),
        (["3", "--url", "amqp://localhost:notaport/"], "bad port"),
        (["3", "--mode", "noack", "--queue-type", "quorum"], "drop --queue-type quorum"),
        (["3", "--connect-timeout", "soon"], "--connect-timeout: 'soon' is not a number"),
    ],
)
def test_producer_usage_errors_exit_2(lab: Lab, args: list[str], message: str) -> None:
    producer = lab.produce(*args)
    assert producer.process.returncode == 2
    assert message in assert_one_line_error(producer.errors())
    assert not any(declared(queue) for queue in QUEUES), "a usage error must stop before the broker"


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--mode", "x"], {}, "--mode: unknown mode 'x'"),
        ([], {"TASK_MODE": "fast"}, "TASK_MODE: unknown mode 'fast'"),
        (["--prefetch", "0"], {}, "--prefetch: '0' is not a positive whole number"),
        ([], {"SECONDS_PER_DOT": "-1"}, "SECONDS_PER_DOT: '-1' is not a number of seconds, 0 or more"),
        (["--url", "amqp//nohost"], {}, "must start with amqp://"),
        ([], {"AMQP_PASSWORD_FILE": "/nonexistent/secret"}, "cannot read the password file"),
        (
            ["--url", "amqps://guest:guest@localhost/", "--ca-file", "/nonexistent/ca.crt"],
            {},
            "cannot read the CA file /nonexistent/ca.crt: No such file or directory",
        ),
        (["--url", "amqps://guest:guest@localhost/"], {"AMQP_CA_FILE": "/etc/hostname"}, "not a PEM certificate"),
        (
            [],
            {"AMQP_CA_FILE": "/etc/hostname"},
            "a CA file (/etc/hostname) is for TLS: the broker URL must start with amqps://",
        ),
    ],
)
def test_worker_usage_errors_exit_2(lab: Lab, args: list[str], env: dict[str, str], message: str) -> None:
    worker = lab.worker(*args, env=env)
    assert worker.wait(timeout=20) == 2
    assert message in assert_one_line_error(worker.errors())
    assert not any(declared(queue) for queue in QUEUES), "a usage error must stop before the broker"


@pytest.mark.parametrize("program", ["producer", "worker"])
@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            f"amqp://guest:{SECRET}@localhost:{PORT}/%2F",
            f"access refused for user 'guest' at localhost:{PORT}, vhost '/'",
        ),
        (f"amqp://nobody:{SECRET}@localhost:{PORT}/%2F", "access refused for user 'nobody'"),
        (
            f"amqp://guest:guest@localhost:{PORT}/no-such-vhost",
            f"vhost refused for user 'guest' at localhost:{PORT}, vhost 'no-such-vhost'",
        ),
        (f"amqp://guest:{SECRET}@localhost:1/%2F", "broker not reachable for user 'guest' at localhost:1, vhost '/'"),
    ],
)
def test_broker_errors_name_user_host_vhost_never_the_password(lab: Lab, program: str, url: str, message: str) -> None:
    args = ["--url", url, "--connect-timeout", "1"]
    run = lab.produce("1", *args) if program == "producer" else lab.worker(*args)
    assert run.wait(timeout=30) == 1
    line = assert_one_line_error(run.errors())
    assert message in line
    assert SECRET not in run.errors() + "\n".join(run.lines())


def test_password_file_is_used_and_never_shown(lab: Lab, tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text(SECRET + "\n")
    producer = lab.produce(
        "1", "--url", f"amqp://guest@localhost:{PORT}/{VHOST}", "--password-file", str(secret), "--connect-timeout", "0"
    )
    assert producer.process.returncode == 1
    assert "access refused for user 'guest'" in producer.errors()
    assert SECRET not in producer.errors()

    secret.write_text("guest\n")
    producer = lab.produce("1", "--url", f"amqp://guest@localhost:{PORT}/{VHOST}", "--password-file", str(secret))
    assert producer.process.returncode == 0, producer.errors()


def test_empty_and_non_utf8_tasks_are_rejected_to_the_dead_letter_queue(lab: Lab) -> None:
    worker = lab.worker("--mode", "ack", "--seconds-per-dot", "0")
    worker.wait_for_event("consuming")
    spec = queue_spec(Mode.ACK)
    connection = pika.BlockingConnection(pika.URLParameters(URL))
    channel = connection.channel()
    declare(channel, spec)
    for seq, body in enumerate([b"", b"\xff\xfe not text", b"fine ."], start=1):
        channel.basic_publish("", spec.name, body, task_properties(RUN, seq, 3, persistent=True, user="guest"))
    connection.close()

    worker.wait_for_event("done", seq=3)
    assert [(e["seq"], e["reason"]) for e in worker.events("rejected")] == [(1, "empty"), (2, "not UTF-8")]
    assert worker.process.poll() is None, "a bad task must not crash the worker"
    assert (
        " [!] Rejected task #2: its body is not UTF-8 (11 bytes); "
        "dead-lettered to 'task_queue.rejected' by the broker's policy" in worker.lines()
    )
    assert_counts("task_queue.rejected", (2, 0))
    assert_counts("task_queue", (0, 0))


def test_queue_declared_with_other_settings_is_a_clear_error(lab: Lab) -> None:
    assert lab.produce("1", "task", "--url", URL).process.returncode == 0
    producer = lab.produce("1", "--queue-type", "classic", "--url", URL)
    assert producer.process.returncode == 1
    line = assert_one_line_error(producer.errors())
    assert "queue 'task_queue' already exists with other settings" in line
    assert "rabbitmqctl delete_queue task_queue" in line
    assert_counts("task_queue", (1, 0))
