"""What the programs' fast paths must not change (issue 12): every task confirmed or named,
every task acknowledged once, every event still heard by a live view that comes late."""

from __future__ import annotations

import io
import time
from types import SimpleNamespace
from typing import Any

import pika
import pika.spec
import pytest

from tests.conftest import URL, assert_counts, queue_counts
from tests.test_dispatch import publish
from workqueue.events import read_events
from workqueue.output import Output
from workqueue.producer.confirms import ConfirmWindow
from workqueue.queues import EVENTS_EXCHANGE, Mode, declare, queue_spec
from workqueue.tasks import new_run_id, task_properties
from workqueue.virtual_lab.processes import LocalLab as Lab
from workqueue.virtual_lab.processes import done_seqs
from workqueue.worker_image import worker as worker_module

pytestmark = pytest.mark.broker


def test_the_confirm_window_books_every_task_confirmed_or_refused_by_name(clean_broker: str) -> None:
    spec = queue_spec(Mode.ACK)
    connection = pika.BlockingConnection(pika.URLParameters(URL))
    try:
        channel = connection.channel()
        declare(channel, spec)
        window = ConfirmWindow(connection, channel, size=16)  # small: the window fills and drains many times
        for seq in range(1, 301):
            # Every tenth task to a queue that does not exist: the broker hands it back, then confirms it.
            queue = "no-such-queue" if seq % 10 == 0 else spec.name
            window.publish(seq, queue, b"t", task_properties(new_run_id(), seq, 300, persistent=True, user="guest"))
        window.drain()
        assert window.unconfirmed() == []
        refused = [seq for seq in range(1, 301) if seq % 10 == 0]
        assert sorted(window.refused) == refused
        assert sorted(window.confirmed) == sorted(set(range(1, 301)) - set(refused))
    finally:
        connection.close()
    assert_counts(spec.name, (270, 0))  # the broker holds exactly the confirmed ones


def test_zero_dot_tasks_among_long_ones_are_each_acknowledged_once(lab: Lab) -> None:
    """Zero-dot tasks are acknowledged a burst at a time (``multiple``), among tasks the work thread
    acknowledges one by one: each is done once and the broker is left holding none. (The race where
    a burst's acknowledgement would cover a task whose own is still to go is rare with real threads:
    the next test forces it.)"""
    worker = lab.worker("--mode", "ack", "--prefetch", "50", "--seconds-per-dot", "0.01")
    worker.wait_for_event("consuming")
    bodies = ["long.." if seq % 7 == 0 else "zero" for seq in range(1, 301)]
    publish(bodies)
    try:
        worker.wait_for(lambda: len(worker.events("done")) == 300, 60, "all 300 tasks done")
    except AssertionError:
        # Seen once in CI under load (2026-12-04): the worker stood still after 64 tasks for 60 s. Say all
        # that can tell why: what else the worker said, how many it got and did, what the broker holds.
        said = [line for line in worker.errors().splitlines() if '"event":"done"' not in line]
        counts = (len(worker.events("received")), len(worker.events("done")), queue_counts().get("task_queue"))
        raise AssertionError(f"received, done, (ready, unacked): {counts}; the rest it said: {said[-40:]}") from None
    assert sorted(done_seqs([worker])) == list(range(1, 301))
    assert all(len(by) == 1 for by in done_seqs([worker]).values())
    assert worker.events("connection_lost") == [], worker.errors()
    assert worker.process.poll() is None, worker.errors()
    assert_counts("task_queue", (0, 0))  # nothing left unacknowledged


def test_a_burst_acknowledgement_never_covers_a_task_whose_own_is_still_to_go() -> None:
    """Pure logic, the worker's own code with a fake channel: the work thread has finished #1 and
    queued its acknowledgement (not yet sent) when the zero-dot #2 arrives."""
    acks: list[tuple[int, bool]] = []
    queued: list[object] = []

    class FakeChannel:
        is_open = True
        connection = SimpleNamespace(add_callback_threadsafe=queued.append)

        def basic_ack(self, delivery_tag: int, multiple: bool = False) -> None:
            acks.append((delivery_tag, multiple))

    config = worker_module.parse_args(["--mode", "ack", "--prefetch", "50", "--seconds-per-dot", "1"])
    worker = worker_module.Worker(config, Output({"program": "worker"}, io.StringIO(), io.StringIO()))
    channel = FakeChannel()
    for tag, body in ((1, "long."), (2, "zero")):
        method = pika.spec.Basic.Deliver(delivery_tag=tag, redelivered=False, routing_key="task_queue")
        properties = task_properties(new_run_id(), tag, 2, persistent=True, user="guest")
        if tag == 2:  # the work thread did #1: its acknowledgement is queued for the I/O thread
            worker._task_done(worker._inbox.get())
            worker._pending = 0
        worker._on_message(channel, method, properties, body.encode())
    worker._acks.end_of_burst()  # the end of the burst
    assert acks == [(2, False)], "#2 acknowledged with multiple, over #1 whose own acknowledgement is queued"
    (ack_1,) = queued
    ack_1()  # type: ignore[operator]
    assert acks == [(2, False), (1, False)]


class _FlushedOutput(Output):
    """An Output that keeps what it has handed to the kernel (``flush``) apart from what it holds."""

    def __init__(self) -> None:
        self.events = io.StringIO()
        super().__init__({"program": "worker"}, io.StringIO(), self.events)
        self.flushed = ""

    def flush(self) -> None:
        super().flush()
        self.flushed = self.events.getvalue()


@pytest.mark.parametrize(("prefetch", "body"), [("50", "zero"), ("1", "zero"), ("50", "long.")])
def test_a_task_is_said_done_in_the_log_before_its_acknowledgement_leaves(prefetch: str, body: str) -> None:
    """Killed between the two, a worker would leave a task the broker counts done and no log says
    was (make soak's ledger found two so): its done event is flushed first, on each path
    (a burst's, one at a time, the work thread's). Pure logic, a fake channel."""
    said_done_at_ack: list[bool] = []
    queued: list[object] = []
    out = _FlushedOutput()

    class FakeChannel:
        is_open = True
        connection = SimpleNamespace(add_callback_threadsafe=queued.append)

        def basic_ack(self, delivery_tag: int, multiple: bool = False) -> None:
            done = [e["seq"] for e in read_events(out.flushed.splitlines()) if e["event"] == "done"]
            said_done_at_ack.append(delivery_tag in done)

    config = worker_module.parse_args(["--mode", "ack", "--prefetch", prefetch, "--seconds-per-dot", "1"])
    worker = worker_module.Worker(config, out)
    channel = FakeChannel()
    for tag in (1, 2, 3):
        method = pika.spec.Basic.Deliver(delivery_tag=tag, redelivered=False, routing_key="task_queue")
        properties = task_properties(new_run_id(), tag, 3, persistent=True, user="guest")
        worker._on_message(channel, method, properties, body.encode())
        if body != "zero":  # the work thread's part, here: the task done, its acknowledgement queued
            worker._task_done(worker._inbox.get())
            worker._pending = 0
    worker._acks.end_of_burst()
    for ack in queued:
        ack()  # type: ignore[operator]
    assert said_done_at_ack and all(said_done_at_ack), said_done_at_ack


def test_a_live_view_that_comes_late_hears_what_the_workers_did_before(lab: Lab) -> None:
    """With no live view listening, a worker keeps its events instead of sending them to nobody;
    the first view to listen gets them."""
    worker = lab.worker("--mode", "ack", "--seconds-per-dot", "0")
    worker.wait_for_event("consuming")
    producer = lab.produce("20", "task", "--mode", "ack", "--url", URL)
    assert producer.process.returncode == 0, producer.errors()
    worker.wait_for(lambda: len(worker.events("done")) == 20, 30, "all tasks done")
    time.sleep(1)  # the worker's feed went to the exchange and came back: nobody listens

    connection = pika.BlockingConnection(pika.URLParameters(URL))
    try:
        channel = connection.channel()
        heard = channel.queue_declare("", exclusive=True).method.queue
        channel.queue_bind(heard, EVENTS_EXCHANGE)
        events: list[dict[str, Any]] = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and len([e for e in events if e["event"] == "done"]) < 20:
            method, _, body = channel.basic_get(heard, auto_ack=True)
            if method is None:
                time.sleep(0.2)
                continue
            events += [e for e in read_events(body.decode().splitlines()) if e.get("worker") == worker.name]
    finally:
        connection.close()
    assert sorted(e["seq"] for e in events if e["event"] == "done") == list(range(1, 21))
    assert sorted(e["seq"] for e in events if e["event"] == "received") == list(range(1, 21))
