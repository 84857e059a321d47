"""The lab against its students, on a real broker with real workers: what a class's programs will send and do.

Poison messages into a run, the task queue deleted under the workers, the live views' feed
exchange deleted, forged events on the feed while the terminal view runs: every worker keeps
running, the run's tasks are all done, and what a worker refused it says, in one line each.
"""

from __future__ import annotations

import datetime
import decimal
import json
import time

import pika
import pika.exceptions
import pytest

from tests.conftest import URL, consumer_count
from tests.test_watch import Watch
from virtual_lab.processes import LocalLab as Lab
from virtual_lab.processes import Program, done_seqs
from workqueue.queues import EVENTS_EXCHANGE, Mode, declare, queue_spec
from workqueue.tasks import new_run_id

pytestmark = pytest.mark.broker

SPEC = queue_spec(Mode.ACK)


def poison() -> list[tuple[pika.BasicProperties, bytes]]:
    """What a class of students' programs send, by mistake or to see what happens."""
    forged_run = {"run_id": new_run_id(), "seq": 3}
    return [
        (pika.BasicProperties(message_id=b"\xff\xfe not UTF-8"), b"id of bytes ."),  # killed every worker once
        (pika.BasicProperties(headers={"run_id": b"\xff", "seq": "3"}), b"headers of the wrong types"),
        (pika.BasicProperties(headers={"seq": 10**15, "run_id": "../../x"}), b"a task number from nowhere"),
        (pika.BasicProperties(headers=forged_run), b"a run's label, sent by another user"),
        (
            pika.BasicProperties(
                headers={"d": decimal.Decimal("1.5"), "t": datetime.datetime(2026, 1, 1), "n": {"l": [1, None, b"x"]}}
            ),
            b"every table type",
        ),
        (pika.BasicProperties(app_id="pc7\n\x1b[2J", content_type="\x00"), b"escapes in the properties"),
        (pika.BasicProperties(), b"a" * 1_000_000),  # a megabyte, no work
        (pika.BasicProperties(), b"Hello World! " + b"." * 2000),  # half an hour of work
        (pika.BasicProperties(), b""),
        (pika.BasicProperties(), b"\xc3\x28 not UTF-8"),
        (pika.BasicProperties(message_id="\u2028\x85 line ends"), b"line ends in the id"),
    ]


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
    assert "100 s of work, past this worker's limit of 10 s (--max-task-seconds); dead-lettered" in said
    assert "\x1b" not in said


def test_a_deleted_task_queue_is_declared_again_and_consumed_within_30_s(lab: Lab) -> None:
    workers = lab.workers(2, "--mode", "ack", "--seconds-per-dot", "0")
    connection = pika.BlockingConnection(pika.URLParameters(URL))
    connection.channel().queue_delete(SPEC.name)
    deleted = time.monotonic()
    connection.close()
    for worker in workers:
        worker.wait_for_event("consumer_cancelled", timeout=30)
    deadline = deleted + 30
    while consumer_count(SPEC.name) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert consumer_count(SPEC.name) == 2, "both workers consume the queue again"
    producer = lab.produce("4", "--mode", "ack")
    assert producer.process.returncode == 0, producer.errors()
    workers[0].wait_for(lambda: len(done_seqs(workers)) == 4, 30, "the next run's tasks done")
    assert_running(workers)


def exchange_exists(name: str) -> bool:
    connection = pika.BlockingConnection(pika.URLParameters(URL))
    try:
        connection.channel().exchange_declare(name, passive=True)
        return True
    except pika.exceptions.ChannelClosedByBroker:
        return False
    finally:
        if connection.is_open:
            connection.close()


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
        assert not exchange_exists(EVENTS_EXCHANGE)
        producer = lab.produce("4", "--mode", "ack")
        assert producer.process.returncode == 0, producer.errors()
        workers[0].wait_for(lambda: len(done_seqs(workers)) == 4 and exchange_exists(EVENTS_EXCHANGE), 30, "redeclared")
    finally:
        code, err = watch.stop()
    assert code == 130 and "Traceback" not in err, err
    assert_running(workers)
