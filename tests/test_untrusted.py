"""Everything a client sends is input: the worker, the report and the live views against what a student can send.

Pure logic, the project's own code: the worker's handling of a delivery with a fake channel
(Hypothesis generates the deliveries), the event reader, the report built from logs with forged
events, and the web view's verdict while the feed lags behind the broker's counts. The same
against a real broker and real workers is in tests/test_students.py.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import math
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pika
import pika.spec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.test_report import ACK_RUN, copy_of, report_of, started_of
from workqueue.events import EventReader, checked, read_events
from workqueue.output import Output
from workqueue.report import fates, markdown, tables, terminal
from workqueue.report.gathered import read_folder
from workqueue.report.live import LiveState
from workqueue.tasks import MAX_TASKS, new_run_id
from workqueue.worker_image import worker as worker_module

LAB_USER = "workqueue"
WORKER = {"program": "worker", "host": "pc1", "worker": "worker-1"}
NOW = 1764402000.0
ROOT = Path(__file__).resolve().parents[1]


# --- the event reader: what it keeps, what it drops


@pytest.mark.parametrize(
    "event",
    [
        {"event": "alive", "host": "x", "worker": "y", "ts": "a"},  # ended make watch (ValueError)
        {"event": "alive", "host": "x", "worker": "y"},  # no time (KeyError)
        {"event": "alive", "host": "x", "worker": "y", "ts": 1e300},  # ZeroDivisionError in the picture
        {"event": "received", "ts": NOW, "run_id": ACK_RUN, "seq": 10**9},  # the report counted to a billion
        {"event": "received", "ts": NOW, "run_id": "../../etc", "seq": 1},  # a report folder outside reports/
        {"event": "received", "ts": NOW, "run_id": ACK_RUN, "seq": True},
        {"event": "alive", "ts": NOW, "host": "\x1b[2J\x1b[31mowned", "worker": "w"},  # a terminal's escapes
        {"event": "done", "ts": NOW, "work_seconds": -5},
        {"event": "run_finished", "ts": NOW, "unconfirmed": [*range(5), "x"]},
        {"event": ["not", "a", "name"], "ts": NOW},
        {"event": "done", "ts": NOW, "redelivered": "yes"},
    ],
)
def test_a_malformed_event_is_dropped_and_counted(event: dict[str, Any]) -> None:
    reader = EventReader()
    lines = [json.dumps(event), json.dumps({"event": "alive", "ts": NOW, **WORKER})]
    assert [e["event"] for e in reader.read(lines)] == ["alive"]
    assert reader.dropped == 1


def test_nan_infinity_and_deep_nesting_are_not_events() -> None:
    reader = EventReader()
    lines = ['{"event":"alive","ts":NaN}', '{"event":"alive","ts":Infinity}', '{"a":' * 100_000 + "1" + "}" * 100_000]
    assert list(reader.read(lines)) == []
    assert reader.dropped == 3


def test_free_text_keeps_no_control_character() -> None:
    event = checked({"event": "received", "ts": NOW, "origin": "pc7: 'a\nb\x1b[31m'", "reason": "x\r\ny"})
    assert event is not None
    assert (event["origin"], event["reason"]) == ("pc7: 'a?b?[31m'", "x??y")


def test_the_programs_own_events_are_all_kept() -> None:
    out = io.StringIO()
    output = Output(WORKER, io.StringIO(), out)
    output.event("worker_started", mode="ack", queue="task_queue", prefetch=1)
    output.event("consuming", queue="task_queue", node="localhost:5672")
    output.event("done", f',"run_id":"{ACK_RUN}","seq":3,"message_id":"{ACK_RUN}.3"', work_seconds=0.0, late=1.5)
    output.event("rejected", ',"run_id":null,"seq":null,"message_id":null', reason="not UTF-8")
    output.flush()
    reader = EventReader()
    assert len(list(reader.read(out.getvalue().splitlines()))) == 4 and reader.dropped == 0


# --- the worker, whatever the delivery: done, or rejected with a reason; never an exception

_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True)
    | st.text(max_size=20)
    | st.binary(max_size=20)
    | st.decimals(allow_nan=False, allow_infinity=False)
    | st.datetimes(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
_SHORT = st.none() | st.text(max_size=40) | st.binary(max_size=40) | _VALUES
_RUN_IDS = st.sampled_from([ACK_RUN, "../../x", "", "20261127-015930-1e6"]) | st.text(max_size=20) | _VALUES
_HEADERS = (
    st.none()
    | _VALUES
    | st.fixed_dictionaries({"run_id": _RUN_IDS, "seq": st.integers() | _VALUES}, optional={"count": _VALUES})
)
_PROPERTIES = st.builds(
    pika.BasicProperties,
    content_type=_SHORT,
    content_encoding=_SHORT,
    headers=_HEADERS,
    delivery_mode=st.none() | st.integers(min_value=0, max_value=255),
    message_id=_SHORT,
    app_id=_SHORT,
    user_id=st.sampled_from([LAB_USER, "student", None]) | st.binary(max_size=10),
    timestamp=st.none() | st.integers(),
)
_BODIES = st.binary(max_size=200) | st.text(alphabet=st.sampled_from(".x é\n\x00"), max_size=200).map(str.encode)


class _FakeChannel:
    """Records what the worker settles: acknowledgements and rejections, by delivery tag."""

    is_open = True

    def __init__(self) -> None:
        self.settled: list[tuple[str, int]] = []
        self.connection = SimpleNamespace(add_callback_threadsafe=lambda callback: None)

    def basic_ack(self, delivery_tag: int, multiple: bool = False) -> None:
        self.settled.append(("ack", delivery_tag))

    def basic_reject(self, delivery_tag: int, requeue: bool = True) -> None:
        assert requeue is False, "a task a worker refuses goes to the dead-letter queue, not back to the queue"
        self.settled.append(("reject", delivery_tag))


HANDLED = 0  # deliveries the generated test handed to the worker, for the note


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(deliveries=st.lists(st.tuples(_PROPERTIES, _BODIES, st.booleans()), min_size=1, max_size=6), ack=st.booleans())
def test_any_delivery_is_done_or_rejected_with_a_reason_and_its_events_are_well_formed(
    deliveries: list[tuple[pika.BasicProperties, bytes, bool]], ack: bool
) -> None:
    global HANDLED
    args = ["--url", f"amqp://{LAB_USER}:p@localhost/", "--mode", "ack" if ack else "noack"]
    config = worker_module.parse_args([*args, "--seconds-per-dot", "0.01", "--max-task-seconds", "0.5"])
    events = io.StringIO()
    worker = worker_module.Worker(config, Output(WORKER, io.StringIO(), events))
    channel = _FakeChannel()
    handed: list[int] = []
    for tag, (properties, body, redelivered) in enumerate(deliveries, start=1):
        method = pika.spec.Basic.Deliver(delivery_tag=tag, redelivered=redelivered, routing_key="task_queue")
        before = worker._inbox.qsize()
        worker._on_message(channel, method, properties, body)
        if worker._inbox.qsize() > before:
            handed.append(tag)
            worker._pending = 0  # as if the work thread had done it: the next one may be done inline
        HANDLED += 1
    worker._acks.end_of_burst()
    worker.out.flush()
    reader = EventReader()
    written = list(reader.read(events.getvalue().splitlines()))
    assert reader.dropped == 0, events.getvalue()
    rejected = [e for e in written if e["event"] == "rejected"]
    done = [e for e in written if e["event"] == "done"]
    # Every delivery: rejected with a reason, done at once (no work), or handed to the work thread.
    assert len(rejected) + len(done) + len(handed) == len(deliveries), written
    assert all(e["reason"] in ("empty", "not UTF-8", "too long", "unreadable") for e in rejected)
    for event in written:
        if event.get("run_id") is not None:
            assert (event["run_id"], type(event["seq"])) == (ACK_RUN, int) and 1 <= event["seq"] <= MAX_TASKS
    if ack:
        assert sum(1 for kind, _ in channel.settled if kind == "reject") == len(rejected)


def test_a_task_is_a_runs_only_when_the_broker_vouches_for_its_sender() -> None:
    config = worker_module.parse_args(["--url", f"amqp://{LAB_USER}:p@localhost/", "--seconds-per-dot", "0"])
    events = io.StringIO()
    worker = worker_module.Worker(config, Output(WORKER, io.StringIO(), events))
    run = new_run_id()
    for tag, user in ((1, LAB_USER), (2, "student")):
        properties = pika.BasicProperties(user_id=user, headers={"run_id": run, "seq": 6}, message_id=f"{run}.6")
        method = pika.spec.Basic.Deliver(delivery_tag=tag, redelivered=False, routing_key="task_queue")
        worker._on_message(_FakeChannel(), method, properties, b"forged")
    worker.out.flush()
    received = [e for e in read_events(events.getvalue().splitlines()) if e["event"] == "received"]
    assert [(e["run_id"], e["seq"]) for e in received] == [(run, 6), (None, None)]
    assert received[1]["origin"] == "student: 'forged'"


def test_a_task_longer_than_the_ceiling_is_rejected_with_its_reason() -> None:
    config = worker_module.parse_args(["--mode", "ack", "--seconds-per-dot", "1", "--max-task-seconds", "30"])
    people, events = io.StringIO(), io.StringIO()
    worker = worker_module.Worker(config, Output(WORKER, people, events))
    channel = _FakeChannel()
    method = pika.spec.Basic.Deliver(delivery_tag=1, redelivered=False, routing_key="task_queue")
    worker._on_message(channel, method, pika.BasicProperties(), b"Hello World! #40 " + b"." * 40)
    worker.out.flush()
    assert channel.settled == [("reject", 1)] and worker._inbox.qsize() == 0
    assert [e["reason"] for e in read_events(events.getvalue().splitlines())] == ["too long"]
    assert "40 s of work, past this worker's limit of 30 s (--max-task-seconds)" in people.getvalue()


# --- the report: time and memory grow with the run, not with what a message claims


def _add_events(folder: Path, host: str, *events: dict[str, Any]) -> None:
    path = folder / "workers" / f"{host}.json"
    document = json.loads(path.read_text())
    log = document["logs"][0]
    log["stderr"] += "\n" + "\n".join(json.dumps(e) for e in events)
    path.write_text(json.dumps(document))


def _forged(seq: object, start: float, **fields: Any) -> list[dict[str, Any]]:
    base = {"program": "worker", "host": "lab2", "worker": "worker-1", "run_id": ACK_RUN, "seq": seq, **fields}
    return [{"event": "received", "ts": start + 0.1, **base}, {"event": "done", "ts": start + 0.2, **base}]


def test_a_forged_task_number_is_no_task_of_the_run_and_costs_nothing(tmp_path: Path) -> None:
    folder = copy_of("ack_worker_stopped", tmp_path)
    start = report_of(folder).started
    assert start is not None
    clean = time.perf_counter()
    report_of(folder)
    clean = time.perf_counter() - clean
    _add_events(folder, "lab2", *_forged(10**9, start), *_forged(MAX_TASKS, start), *_forged(11, start))
    forged = time.perf_counter()
    report = report_of(folder)
    forged = time.perf_counter() - forged
    assert len(report.tasks) == 10, "the run is the ten tasks its producer sent"
    assert sorted(a.seq for a in report.strays) == [11, MAX_TASKS]
    assert "10 sent, 10 done, 0 lost" in report.verdict
    assert f"2 not of the run (#11, #{MAX_TASKS}, past the tasks it sent; received by lab2/worker-1)" in report.verdict
    assert forged < clean * 20 + 0.5, f"{forged:.3f} s against {clean:.3f} s for the clean run"


def test_a_run_id_from_a_header_never_names_a_folder(tmp_path: Path) -> None:
    folder = copy_of("ack_worker_stopped", tmp_path)
    start = report_of(folder).started
    assert start is not None
    _add_events(folder, "lab2", *_forged(1, start + 100, run_id="../../../tmp/escaped"))
    gathered = read_folder(folder)
    assert fates.runs_seen(gathered) == [ACK_RUN]


def test_report_md_escapes_a_foreign_tasks_text(tmp_path: Path) -> None:
    folder = copy_of("ack_worker_stopped", tmp_path)
    start = report_of(folder).started
    assert start is not None
    origin = "<script>alert(1)</script> | x\n# heading: 'y'"
    events = _forged(None, start, run_id=None, origin=origin)
    _add_events(folder, "lab2", *events)
    report = report_of(folder)
    assert len(report.foreign) == 1
    text = markdown.render(report, "timeline.svg")
    row = next(line for line in text.splitlines() if "alert(1)" in line)
    assert "&lt;script&gt;alert(1)&lt;/script&gt; \\| x?# heading" in row
    assert "<script>" not in text and "\x1b" not in terminal.render(report)


# --- the live views carry on whatever the feed brings


def test_the_terminal_views_state_takes_forged_events_and_carries_on() -> None:
    from workqueue.report import feed

    consumers: list[Any] = []
    channel = SimpleNamespace(
        exchange_declare=lambda *a, **k: None,
        queue_declare=lambda *a, **k: SimpleNamespace(method=SimpleNamespace(queue="ours")),
        queue_bind=lambda *a, **k: None,
        basic_consume=lambda queue, callback, auto_ack: consumers.append(callback),
    )
    state = LiveState()
    reader = EventReader()
    feed.listen(channel, state.apply_all, reader)
    [on_message] = consumers
    forged = [
        b'{"event":"alive","host":"x","worker":"y","ts":"a"}',
        b'{"event":"alive","host":"x","worker":"y"}',
        b'{"event":"alive","host":"x","worker":"y","ts":1e300}',
        b"\xff\xfe not even text",
        json.dumps({"event": "received", "ts": NOW, "host": "\x1b[2J", "worker": "w", "run_id": ACK_RUN}).encode(),
    ]
    for body in forged:
        on_message(None, None, None, body)
    real = {"event": "received", "ts": NOW, **WORKER, "run_id": ACK_RUN, "seq": 1, "message_id": None}
    on_message(None, None, None, json.dumps(real).encode())
    assert reader.dropped == 4
    assert list(state.workers) == ["pc1/worker-1"] and state.workers["pc1/worker-1"].in_hand() == "#1"


def test_seconds_of_a_forged_time_cannot_stretch_the_picture() -> None:
    assert checked({"event": "alive", "ts": math.pi}) is None  # 1970: no clock of a lab's


# --- the drill's wait for a task in hand, and its record, read as any worker's output


def _in_hand_module() -> Any:
    spec = importlib.util.spec_from_file_location("task_in_hand", ROOT / "roles/drill/files/task_in_hand.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_task_is_in_hand_from_received_until_done_or_abandoned_whatever_else_the_worker_prints() -> None:
    hand = _in_hand_module().InHand()

    def event(kind: str, seq: Any, **more: Any) -> str:
        return json.dumps(
            {
                "event": kind,
                "ts": NOW + seq if isinstance(seq, int) else NOW,
                "run_id": "r",
                "seq": seq,
                "message_id": f"r.{seq}",
                **more,
            }
        )

    for line in ["", "not json", "[1, 2]", '{"event": 5}', " [x] Received 'Hello World! #1.'", event("done", 9)]:
        hand.read(line)
    assert hand.first() is None, "nothing received: nothing in hand"
    hand.read(event("received", 1))
    assert hand.first() == {"run_id": "r", "seq": 1, "message_id": "r.1", "ts": NOW + 1}
    hand.read(event("received", 2))  # prefetch 2: the first is the one being worked on
    hand.read(event("done", 1))
    assert hand.first()["seq"] == 2
    hand.read(event("received", 1))  # the same line read again (the two reads of the logs overlap): no effect
    assert hand.first()["seq"] == 2
    hand.read(event("abandoned", 2, fate="requeued"))
    assert hand.first() is None
    hand.read(event("received", 3))
    hand.read(json.dumps({"event": "worker_started", "ts": NOW + 9}))  # the container restarted: holds nothing
    assert hand.first() is None
    # A forged or odd task: its fields are kept only when they have the right type.
    hand.read(json.dumps({"event": "received", "ts": "soon", "seq": True, "run_id": ["r"], "message_id": None}))
    assert hand.first() == {"run_id": None, "seq": None, "message_id": None, "ts": None}


@pytest.mark.parametrize(
    ("record", "line"),
    [
        ({"caught": {"run_id": ACK_RUN, "seq": 4, "message_id": "x"}}, ", caught #4"),
        ({"caught": {"run_id": "20260101-000000-0000", "seq": 4}}, ", caught a task of another run"),
        ({"caught": None}, ""),
        ({"caught": "#4", "start": "soon", "end": [1]}, ""),
        ({"caught": {"run_id": ACK_RUN, "seq": "4"}, "start": "nan"}, ", caught a task of another run"),
    ],
)
def test_the_report_names_the_task_a_drill_caught_and_takes_any_record(
    tmp_path: Path, record: dict[str, Any], line: str
) -> None:
    folder = copy_of("ack_worker_stopped", tmp_path)
    start = started_of(folder) + 2
    fault = {"event": "fault", "fault": "freeze", "host": "lab3", "worker": "worker-1", "start": start, "end": start}
    producer = folder / "producer" / "lab5.json"
    document = json.loads(producer.read_text())
    document["faults"] = base64.b64encode(json.dumps({**fault, **record}).encode()).decode()
    producer.write_text(json.dumps(document))
    lines = tables.fault_lines(report_of(folder))
    if isinstance(record.get("start"), str):  # no time of its own: from the epoch, long before the run
        assert lines == []
    else:
        assert lines == [f"freeze on lab3/worker-1, {fates.clock(start)}{line}"]
