"""The lab against its students, on a real broker with real workers: what a class's programs will send and do.

Poison messages into a run, the task queue deleted under the workers, the live views' feed
exchange deleted, forged events on the feed while the terminal view runs: every worker keeps
running, the run's tasks are all done, and what a worker refused it says, in one line each.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pika
import pika.exceptions
import pytest
import yaml

from tests.conftest import NODE, URL, VHOST, account, assert_counts, consumer_count, ctrl_c, declared
from tests.test_watch import Watch
from workqueue.producer.students import poison
from workqueue.queues import EVENTS_EXCHANGE, Mode, declare, declare_events, queue_spec
from workqueue.report import fates
from workqueue.report.gathered import Container, Gathered
from workqueue.virtual_lab.processes import ROOT, Program
from workqueue.virtual_lab.processes import LocalLab as Lab

pytestmark = pytest.mark.broker

SPEC = queue_spec(Mode.ACK)


def publish(messages: list[tuple[pika.BasicProperties, bytes]]) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(URL))
    channel = connection.channel()
    declare(channel, SPEC)
    for properties, body in messages:
        properties.delivery_mode = 2
        channel.basic_publish("", SPEC.name, body, properties)
    connection.close()


def assert_running(workers: list[Program]) -> None:
    for worker in workers:
        assert worker.process.poll() is None, f"{worker.name} exited:\n{worker.errors()[-3000:]}"
        assert "Traceback" not in worker.errors(), worker.errors()[-3000:]


def test_poison_messages_are_refused_one_line_each_and_the_run_is_done(lab: Lab) -> None:
    workers = lab.workers(2, "--mode", "ack", "--seconds-per-dot", "0.05", "--max-task-seconds", "10")
    messages = poison()
    publish(messages)
    producer = lab.produce("6", "--mode", "ack")
    assert producer.process.returncode == 0, producer.errors()
    run_id = producer.events("run_started")[0]["run_id"]

    def all_settled() -> bool:
        done = [e for w in workers for e in w.events("done")] + [e for w in workers for e in w.events("rejected")]
        return len(done) >= len(messages) + 6

    workers[0].wait_for(all_settled, 60, "every task done or rejected")
    assert_running(workers)
    ours = {seq for w in workers for e in w.events("done") if e["run_id"] == run_id for seq in [e["seq"]]}
    assert ours == set(range(1, 7)), "the run's six tasks are done"
    rejected = sorted(e["reason"] for w in workers for e in w.events("rejected"))
    assert rejected == ["empty", "not UTF-8", "too long"], rejected
    # Nothing a student sent is counted as a task of a run: the forged label is a foreign task.
    foreign = [e for w in workers for e in w.events("received") if e["run_id"] is None]
    assert len(foreign) == len(messages) - 3
    assert all(e.get("run_id") in (None, run_id) for w in workers for e in w.events())
    said = "\n".join(line for w in workers for line in w.lines())
    assert "5000 s of work, past this worker's limit of 10 s (--max-task-seconds); dead-lettered" in said
    assert "\x1b" not in said


def test_a_deleted_task_queue_is_declared_again_consumed_within_30_s_and_named_by_the_report(lab: Lab) -> None:
    workers = lab.workers(2, "--mode", "ack", "--seconds-per-dot", "1")
    # Each worker holds a task (#1: 1 s, #2: 2 s) while #3 and #4 wait in the queue; then a student deletes it.
    first = lab.produce("4", "--mode", "ack")

    def in_hand() -> set[int]:
        return {e["seq"] for w in workers for e in w.events("received")}

    workers[0].wait_for(lambda: in_hand() == {1, 2}, 10, "#1 and #2 in the workers' hands")
    connection = pika.BlockingConnection(pika.URLParameters(URL))
    connection.channel().queue_delete(SPEC.name)
    deleted = time.monotonic()
    connection.close()
    for worker in workers:
        worker.wait_for_event("consumer_cancelled", timeout=30)
    (run_id,) = {e["run_id"] for e in first.events("run_started")}
    containers = [Container("here", w.name, True, "", w.events()) for w in workers]
    report = fates.build(Gathered(containers=containers, producer_events=first.events()), run_id)
    cancelled = report.went.queue_deleted
    assert cancelled is not None and report.seqs(fates.LOST) == [3, 4], report.verdict
    assert f"2 lost (#3-#4: lost with task_queue, deleted at {fates.clock(cancelled)})" in report.verdict
    deadline = deleted + 30
    while consumer_count(SPEC.name) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert consumer_count(SPEC.name) == 2, "both workers consume the queue again"
    producer = lab.produce("4", "--mode", "ack")
    assert producer.process.returncode == 0, producer.errors()
    (next_run,) = {e["run_id"] for e in producer.events("run_started")}

    def done_of_next_run() -> set[int]:
        return {e["seq"] for w in workers for e in w.events("done") if e["run_id"] == next_run}

    workers[0].wait_for(lambda: done_of_next_run() == {1, 2, 3, 4}, 30, "the next run's tasks done")
    assert_running(workers)


# The tutorial's worker.py as a student types it (step 3 of the class exercise, docs/teaching.md), on the lab's queue:
# durable, prefetch 1, the acknowledgement after the work, a second of work per dot.
TUTORIAL_WORKER = """
import sys, time
import pika

connection = pika.BlockingConnection(pika.URLParameters(sys.argv[1]))
channel = connection.channel()
channel.queue_declare(queue="task_queue", durable=True)
print(" [*] Waiting for messages. To exit press CTRL+C", flush=True)


def callback(ch, method, properties, body):
    print(f" [x] Received {body.decode()}", flush=True)
    time.sleep(body.count(b"."))
    print(" [x] Done", flush=True)
    ch.basic_ack(delivery_tag=method.delivery_tag)


channel.basic_qos(prefetch_count=1)
channel.basic_consume(queue="task_queue", on_message_callback=callback)
channel.start_consuming()
"""


def test_a_students_worker_stopped_with_ctrl_c_mid_task_gives_it_back_to_the_lab(lab: Lab, tmp_path: Path) -> None:
    publish([])  # the lab's task_queue, as site.yml declares it
    script = tmp_path / "worker.py"
    script.write_text(TUTORIAL_WORKER)
    student = subprocess.Popen(
        [sys.executable, str(script), URL], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path
    )
    try:
        assert student.stdout is not None
        assert "Waiting for messages" in student.stdout.readline()
        # Eleven dots: eleven seconds of the student's work, time enough to stop it mid-task.
        producer = lab.produce("1", "Hello..........", "--mode", "ack", "--url", URL)
        assert producer.process.returncode == 0, producer.errors()
        assert " [x] Received Hello" in student.stdout.readline(), "the student's worker took the task"
        worker = lab.worker("--mode", "ack", "--seconds-per-dot", "0.1")
        worker.wait_for_event("consuming")
        code, said = ctrl_c(student)  # mid-task: its sleep has not ended, nothing acknowledged
    finally:
        if student.poll() is None:
            student.kill()
    assert code != 0 and "KeyboardInterrupt" in said  # the tutorial's program ends as Python does on Ctrl+C
    worker.wait_for_event("received", 30)
    (received,) = worker.events("received")
    assert received["redelivered"] is True and received["seq"] == 1
    worker.wait_for_event("done", 30, seq=1)
    assert_running([worker])


def test_a_task_a_students_worker_sends_back_forever_goes_to_the_rejected_queue_at_the_delivery_limit(
    clean_broker: str,
) -> None:
    """A student's worker that requeues every task (basic_nack, requeue): the lab's policy gives up on the task
    after its delivery limit and dead-letters it to task_queue.rejected, where the teacher finds it."""
    defaults = yaml.safe_load((ROOT / "roles" / "rabbitmq" / "defaults" / "main.yml").read_text())
    (policy,) = [p for p in defaults["rabbitmq_policies"] if p["pattern"] == "^task_queue$"]
    limit = int(policy["tags"]["delivery-limit"])
    publish([(pika.BasicProperties(), b"Hello World! #1.")])
    connection = pika.BlockingConnection(pika.URLParameters(URL))
    try:
        channel = connection.channel()
        deliveries, deadline = 0, time.monotonic() + 60
        while deliveries <= limit + 5 and time.monotonic() < deadline:
            method, _, _ = channel.basic_get("task_queue")
            if method is None:
                if channel.queue_declare("task_queue.rejected", passive=True).method.message_count:
                    break
                time.sleep(0.05)
                continue
            deliveries += 1
            channel.basic_nack(method.delivery_tag, requeue=True)
        method, properties, body = channel.basic_get("task_queue.rejected", auto_ack=True)
    finally:
        connection.close()
    assert deliveries == limit + 1, f"delivered {deliveries} times: the first, and {limit} more"
    assert body == b"Hello World! #1." and properties.headers["x-death"][0]["reason"] == "delivery_limit"
    assert_counts("task_queue", (0, 0))  # the broker's figures for a quorum queue lag by seconds
    assert_counts("task_queue.rejected", (0, 0))


def test_forged_feed_events_are_counted_by_the_view_and_a_deleted_feed_is_declared_again(lab: Lab) -> None:
    workers = lab.workers(2, "--mode", "ack", "--seconds-per-dot", "0")
    watch = Watch("--mode", "ack")
    try:
        watch.wait_for_frame(lambda frame: "worker-2" in frame, 30, "both workers")
        connection = pika.BlockingConnection(pika.URLParameters(URL))
        channel = connection.channel()
        # Forged events on the feed, as anyone who may publish there can send them.
        for body in (
            {"event": "alive", "host": "x", "worker": "y", "ts": "a"},
            {"event": "alive", "host": "x", "worker": "y"},
            {"event": "alive", "host": "x", "worker": "y", "ts": 1e300},
            {"event": "received", "host": "\x1b[2J", "worker": "w", "ts": time.time(), "seq": 10**9},
        ):
            channel.basic_publish(EVENTS_EXCHANGE, "", json.dumps(body).encode())
        frame = watch.wait_for_frame(
            lambda frame: "4 malformed events dropped" in frame, 30, "the forged events counted"
        )
        assert "\x1b[2J" not in frame
        producer = lab.produce("4", "--mode", "ack")
        assert producer.process.returncode == 0, producer.errors()
        watch.wait_for_frame(lambda frame: frame.count("   4   ") + frame.count(" 4 ") >= 1, 30, "the run in the view")
        # The feed exchange deleted: the workers declare it again (their next word opens a new channel).
        channel.exchange_delete(EVENTS_EXCHANGE)
        connection.close()
        assert not declared(EVENTS_EXCHANGE, "exchange")
        producer = lab.produce("4", "--mode", "ack")
        assert producer.process.returncode == 0, producer.errors()
        run_id = producer.events("run_started")[0]["run_id"]

        def done_and_declared() -> bool:
            done = {e["seq"] for w in workers for e in w.events("done") if e["run_id"] == run_id}
            return done == {1, 2, 3, 4} and declared(EVENTS_EXCHANGE, "exchange")

        workers[0].wait_for(done_and_declared, 30, "the run done and the feed exchange declared again")
    finally:
        code, err = watch.stop()
    assert code == 130 and "Traceback" not in err, err
    assert_running(workers)


# --- the class account: each row of docs/students.md, tried with the role's rights

CLASS_USER, CLASS_PASSWORD = "wq-test-student", "student-Secret-4e1"
CLASS_RIGHTS = yaml.safe_load((ROOT / "roles" / "rabbitmq" / "defaults" / "main.yml").read_text())[
    "rabbitmq_class_permissions"
]


@pytest.fixture
def class_account(clean_broker: str) -> Iterator[str]:
    """The class account as the rabbitmq role makes it (its rights read from the role's defaults)."""
    with account(CLASS_USER, CLASS_PASSWORD, (CLASS_RIGHTS["configure"], CLASS_RIGHTS["write"], CLASS_RIGHTS["read"])):
        yield f"amqp://{CLASS_USER}:{CLASS_PASSWORD}@localhost:{NODE.port}/{VHOST}"


def _consume_one(channel: Any, queue: str) -> None:
    channel.basic_qos(prefetch_count=1)
    channel.basic_consume(queue, lambda ch, method, properties, body: ch.basic_ack(method.delivery_tag))


def _server_named(channel: Any) -> None:
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.basic_consume(queue, lambda *args: None, auto_ack=True)


def _publish(exchange: str, routing_key: str, properties: pika.BasicProperties | None = None) -> Callable[[Any], None]:
    def publish(channel: Any) -> None:
        channel.confirm_delivery()  # a refusal then closes the channel before publish returns
        channel.basic_publish(exchange, routing_key, b"task .", properties or pika.BasicProperties())

    return publish


def _bind_to_feed(channel: Any) -> None:
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(queue, EVENTS_EXCHANGE)


# The operation as docs/students.md names it -> what the class account does.
OPERATIONS: dict[str, Callable[[Any], object]] = {
    "declare `task_queue` as the tutorial does (`durable=True`)": lambda ch: ch.queue_declare(
        "task_queue", durable=True
    ),
    "declare `hello` (tutorial 1)": lambda ch: ch.queue_declare("hello"),
    "publish a task to `task_queue` through the default exchange": _publish("", "task_queue"),
    "consume `task_queue` with acknowledgements, prefetch 1": lambda ch: _consume_one(ch, "task_queue"),
    "declare an exclusive server-named queue and consume it": _server_named,
    "purge `task_queue`": lambda ch: ch.queue_purge("task_queue"),
    "delete `task_queue`": lambda ch: ch.queue_delete("task_queue"),
    "declare a queue of another name": lambda ch: ch.queue_declare("my_queue"),
    "declare an exchange (tutorial 3 onward)": lambda ch: ch.exchange_declare("logs", exchange_type="fanout"),
    "consume `task_queue.rejected` (the lab's dead letters)": lambda ch: _consume_one(ch, "task_queue.rejected"),
    "publish to `workqueue.events` (forge the live views' events)": _publish(EVENTS_EXCHANGE, ""),
    "bind a queue to `workqueue.events` (listen to the lab's events)": _bind_to_feed,
    "delete `workqueue.events`": lambda ch: ch.exchange_delete(EVENTS_EXCHANGE),
    "publish a task with the lab's `user_id` (forge a run's task)": _publish(
        "", "task_queue", pika.BasicProperties(user_id="guest")
    ),
}


def _documented_rows() -> dict[str, tuple[str, str]]:
    """docs/students.md's table of operations: operation -> (verdict, the broker's answer)."""
    rows = {}
    for line in (ROOT / "docs" / "students.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[1] in ("allowed", "refused"):
            rows[cells[0]] = (cells[1], cells[2])
    return rows


def test_the_documented_table_names_exactly_the_operations_tried() -> None:
    assert set(_documented_rows()) == set(OPERATIONS)


@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_the_class_account_may_do_what_the_table_allows_and_nothing_else(operation: str, class_account: str) -> None:
    # The lab's queues and feed exist, as on a deployed lab (made by the lab's own user).
    lab = pika.BlockingConnection(pika.URLParameters(URL))
    lab_channel = lab.channel()
    declare(lab_channel, SPEC)
    declare_events(lab_channel)
    lab.close()
    verdict, answer = _documented_rows()[operation]
    connection = pika.BlockingConnection(pika.URLParameters(class_account))
    try:
        channel = connection.channel()
        if verdict == "allowed":
            OPERATIONS[operation](channel)
            connection.process_data_events(time_limit=0.2)
            assert channel.is_open, f"{operation}: refused, though the table allows it"
        else:
            with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
                OPERATIONS[operation](channel)
                connection.process_data_events(time_limit=0.5)
                channel.basic_qos(prefetch_count=1)  # a call on a closed channel raises why it was closed
            code, text = answer.split()[0], answer.split()[1].rstrip(":")
            assert (str(refused.value.reply_code), refused.value.reply_text.split(" ")[0]) == (code, f"{text}")
    finally:
        if connection.is_open:
            connection.close()


def test_the_students_drill_sends_its_poison_and_each_forgery_is_refused(class_account: str) -> None:
    """producer/students.py, as drill.yml -e fault=students runs it: one line a try, and what the broker said."""
    lab = pika.BlockingConnection(pika.URLParameters(URL))
    declare(lab.channel(), SPEC)
    declare_events(lab.channel())
    lab.close()
    run_id = "20261205-101010-abcd"
    command = [
        sys.executable,
        "-m",
        "workqueue.producer.students",
        "--run",
        run_id,
        "--lab-user",
        "guest",
        "--mode",
        "ack",
    ]
    env = {"PATH": "/usr/bin:/bin", "AMQP_URL": class_account}  # the password in the environment, never on a line
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=60, check=False)
    assert done.returncode == 0 and done.stderr == "", done.stdout + done.stderr
    assert done.stdout.splitlines() == [
        f"students.py: as user {CLASS_USER}, during the run {run_id}",
        "students.py: 11 poison tasks into task_queue: allowed",
        "students.py: 4 forged events on the live-view feed workqueue.events: refused (403 ACCESS_REFUSED)",
        f"students.py: a task of run {run_id} forged with user_id guest: refused (406 PRECONDITION_FAILED)",
        "students.py: a queue of another name declared (my_queue): refused (403 ACCESS_REFUSED)",
    ]
    assert_counts("task_queue", (11, 0))  # the poison only: no forged task got in


def test_the_students_drill_without_a_broker_says_so_in_one_line() -> None:
    url = f"amqp://guest:guest@127.0.0.1:9/{VHOST}"  # nothing listens on the discard port
    command = [sys.executable, "-m", "workqueue.producer.students", "--connect-timeout", "0", "--url", url]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=60, check=False)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and done.stderr.startswith("students.py: error: "), done.stderr
