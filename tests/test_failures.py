"""A worker stopped or killed mid-run, a long task, a broker restart: what is lost, what is kept."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pika
import pytest

from tests.conftest import NODE, URL, VHOST, assert_counts, consumer_count, declared, queue_counts
from workqueue.machine import local_broker
from workqueue.report import fates, json_data, terminal, timeline
from workqueue.report.gathered import Container, Gathered
from workqueue.tasks import seq_list
from workqueue.virtual_lab.processes import PRODUCER, ROOT, Program, done_seqs, received_seqs
from workqueue.virtual_lab.processes import LocalLab as Lab

pytestmark = pytest.mark.broker

HEALTHCHECK = ROOT / "worker_image" / "healthcheck.py"


def test_noack_stopped_worker_loses_only_tasks_dispatched_to_it(lab: Lab) -> None:
    workers = lab.workers(3, "--mode", "noack", "--seconds-per-dot", "0.1")
    producer = lab.produce("9", "--mode", "noack", "--url", URL)
    assert producer.process.returncode == 0, producer.errors()

    stopped, others = workers[1], [workers[0], workers[2]]
    stopped.wait_for_event("done")  # mid-run: it finished one task and holds others
    started = time.monotonic()
    stopped.signal(signal.SIGTERM)
    assert stopped.wait(timeout=10) == 0
    assert time.monotonic() - started < 2, "SIGTERM must stop the worker well inside docker stop's 10 s"

    for worker in others:
        worker.wait_for(lambda w=worker: len(w.events("done")) == len(w.events("received")), 30, "own tasks done")  # type: ignore[misc]  # a bound default: mypy infers no lambda's
    done = done_seqs(workers)
    lost = set(range(1, 10)) - set(done)
    dispatched_to_stopped = set(received_seqs(stopped))
    assert lost, "the stopped worker held unfinished tasks: some must be lost in noack mode"
    assert lost <= dispatched_to_stopped, (lost, dispatched_to_stopped)
    assert {e["seq"] for e in stopped.events("abandoned")} == lost
    assert all(e["fate"] == "lost" for e in stopped.events("abandoned"))
    assert not any(e["redelivered"] for w in others for e in w.events("received"))
    assert_counts("hello", (0, 0))
    assert " [*] Stopped (SIGTERM)" in stopped.lines()


def test_ack_killed_worker_task_is_redelivered_and_done_elsewhere(lab: Lab) -> None:
    workers = lab.workers(3, "--mode", "ack", "--seconds-per-dot", "0.2")
    # Ten dots a task: 2 s in a worker's hands, a wide window for the SIGKILL to land in.
    producer = lab.produce("6", "task ..........", "--url", URL)
    assert producer.process.returncode == 0, producer.errors()
    assert "Run " in producer.lines()[-1] and "6 sent, 6 confirmed" in producer.lines()[-1]

    killed, others = workers[0], workers[1:]
    in_flight = killed.wait_for_event("received")["seq"]
    killed.signal(signal.SIGKILL)
    killed.wait(timeout=10)
    assert in_flight not in {e["seq"] for e in killed.events("done")}
    assert killed.events("worker_stopped") == [], "SIGKILL: no clean-up, not even a word"

    for worker in others:
        worker.wait_for(
            lambda: set(done_seqs(others)) >= set(range(1, 7)) - set(done_seqs([killed])), 30, "every task done"
        )
    redelivered = [(w.name, e["seq"]) for w in others for e in w.events("received") if e["redelivered"]]
    assert [seq for _, seq in redelivered] == [in_flight]
    assert in_flight in done_seqs(others)
    assert set(done_seqs(workers)) == set(range(1, 7)), "nothing lost in ack mode"
    assert_counts("task_queue", (0, 0))


def heartbeats(node: local_broker.Node) -> list[int]:
    """The heartbeat timeout each client connection of the node negotiated, as the broker says."""
    listed = local_broker.ctl(node, "list_connections", "--formatter", "json", "timeout", "vhost").stdout
    return [c["timeout"] for c in json.loads(listed) if c["vhost"] == VHOST]


def test_long_task_does_not_starve_heartbeats(lab: Lab) -> None:
    # A 1 s heartbeat: the broker drops a connection silent for about 2 s. The
    # task below takes 4 s: it only succeeds if I/O goes on during the work.
    worker = lab.worker("--mode", "ack", "--seconds-per-dot", "1", "--url", URL + "?heartbeat=1")
    worker.wait_for_event("consuming")
    producer = lab.produce("1", "long....", "--url", URL)
    assert producer.process.returncode == 0, producer.errors()
    worker.wait_for_event("received")
    # Its two connections, the tasks' and the live views' words' (worker_image/feed.py), each on a 1 s heartbeat.
    assert heartbeats(NODE) == [1, 1], "the worker's connections really run on a 1 s heartbeat"
    worker.wait_for_event("done", timeout=20)
    assert heartbeats(NODE) == [1, 1], "neither connection was dropped for silence during the work"
    # The acknowledgement travels on the same connection: the broker holds nothing back.
    assert_counts("task_queue", (0, 0))
    assert worker.events("connection_lost") == []
    assert [e["redelivered"] for e in worker.events("received")] == [False]


def test_noack_killed_worker_loses_what_it_held(lab: Lab) -> None:
    workers = lab.workers(3, "--mode", "noack", "--seconds-per-dot", "0.1")
    producer = lab.produce("9", "--mode", "noack")
    assert producer.process.returncode == 0, producer.errors()
    killed, others = workers[1], [workers[0], workers[2]]
    killed.wait_for_event("done")
    killed.signal(signal.SIGKILL)
    killed.wait(timeout=10)
    # Each other worker has received its share and done it: not merely "done as many as received", which
    # also holds before a busy worker has said it received anything (CI saw 0 == 0 once).
    for worker in others:
        worker.wait_for(
            lambda w=worker: 0 < len(w.events("done")) == len(w.events("received")),  # type: ignore[misc]
            30,
            "own tasks received and done",
        )
    lost = set(range(1, 10)) - set(done_seqs(workers))
    assert lost and lost <= set(received_seqs(killed)), "only what the killed worker held is lost"
    assert_counts("hello", (0, 0))


def test_noack_broker_restart_loses_the_queue_and_its_tasks(lab: Lab) -> None:
    producer = lab.produce("4", "task", "--mode", "noack")
    assert producer.process.returncode == 0, producer.errors()
    assert_counts("hello", (4, 0))
    local_broker.restart_broker(NODE)
    assert not declared("hello"), "a transient queue does not survive the broker"


def test_sigint_stops_the_worker_like_sigterm(lab: Lab) -> None:
    worker = lab.worker("--mode", "ack", "--seconds-per-dot", "0.2")
    worker.wait_for_event("consuming")
    assert lab.produce("1", "long..........").process.returncode == 0
    worker.wait_for_event("received")
    worker.signal(signal.SIGINT)
    assert worker.wait(timeout=10) == 0
    assert " [*] Stopped (SIGINT)" in worker.lines()
    assert [e["fate"] for e in worker.events("abandoned")] == ["requeued"]
    assert_counts("task_queue", (1, 0))


def test_start_up_retries_with_backoff_then_gives_up_in_one_line(lab: Lab) -> None:
    worker = lab.worker("--url", "amqp://guest:guest@127.0.0.1:1/%2F", "--connect-timeout", "4")
    assert worker.wait(timeout=30) == 1
    delays = [line.rsplit("retrying in ", 1)[1] for line in worker.errors().splitlines() if "retrying in" in line]
    assert delays == ["0.5 s", "1 s", "2 s"], worker.errors()
    assert "broker not reachable for user 'guest' at 127.0.0.1:1, vhost '/' within 4 s" in worker.errors()


def test_a_broker_that_never_completes_the_handshake_is_retried_then_named_in_one_line(lab: Lab) -> None:
    """A lossy link (or a broker too busy) lets the TCP connection open and the AMQP handshake time out:
    pika's connector raises an error outside its connection errors, which once ended the worker in a
    traceback. A listener on loopback that accepts and never says a word stands for it."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        url = f"amqp://guest:guest@127.0.0.1:{port}/%2F?stack_timeout=1"
        worker = lab.worker("--url", url, "--connect-timeout", "3")
        assert worker.wait(timeout=30) == 1
    said = worker.errors()
    assert "Traceback" not in said, said
    assert said.count("no AMQP handshake in time") >= 2, said
    assert f"broker not reachable for user 'guest' at 127.0.0.1:{port}, vhost '/' within 3 s: no AMQP handshake" in said


def test_the_live_views_feed_gives_up_on_a_handshake_that_times_out_and_tries_again_later() -> None:
    """The feed's connection is given up on after 2 s (its own stack_timeout): on a lossy link that is
    where the handshake's timeout came first, and ended a running worker."""
    from workqueue.connection import broker_from_url
    from workqueue.output import Output
    from workqueue.worker_image import feed

    with socket.create_server(("127.0.0.1", 0)) as silent:
        out = Output({"program": "worker"}, io.StringIO(), io.StringIO(), feed=True)
        events = feed.Feed(broker_from_url(f"amqp://guest:guest@127.0.0.1:{silent.getsockname()[1]}/%2F"), out, "w")
        started = time.monotonic()
        events.renew()  # connects now: no handshake comes
        events.publish(final=True)  # within RETRY_SECONDS: not tried again
        assert time.monotonic() - started < feed.CONNECT_SECONDS + 2


def test_health_check_follows_the_consuming_loop(lab: Lab, tmp_path: Path) -> None:
    health = tmp_path / "consuming"
    worker = lab.worker("--mode", "ack", env={"HEALTH_FILE": str(health)})
    worker.wait_for_event("consuming")
    worker.wait_for(health.exists, 10, "the health file")

    def check() -> subprocess.CompletedProcess[str]:
        command = [sys.executable, str(HEALTHCHECK)]
        env = {**os.environ, "HEALTH_FILE": str(health)}
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=10, check=False)

    assert check().returncode == 0
    worker.signal(signal.SIGSTOP)  # a hung worker: its loop stops touching the file
    try:
        old = time.time() - 60
        os.utime(health, (old, old))  # as if a minute had passed
        assert check().returncode == 1 and check().stdout.startswith("not consuming for ")
    finally:
        worker.signal(signal.SIGCONT)
    worker.wait_for(lambda: check().returncode == 0, 15, "healthy again once it consumes")


def test_broker_restart_keeps_persistent_tasks_and_worker_reconnects(lab: Lab) -> None:
    producer = lab.produce("5", "task", "--url", URL)
    assert producer.process.returncode == 0, producer.errors()
    local_broker.restart_broker(NODE)
    assert_counts("task_queue", (5, 0))

    worker = lab.worker("--mode", "ack", "--seconds-per-dot", "0")
    worker.wait_for(lambda: len(worker.events("done")) == 5, 30, "the five kept tasks done")
    local_broker.restart_broker(NODE)
    worker.wait_for_event("connection_lost", timeout=30)
    worker.wait_for(lambda: len(worker.events("consuming")) == 2, 60, "consuming again after the restart")
    assert consumer_count("task_queue") == 1

    producer = lab.produce("3", "more", "--url", URL)
    assert producer.process.returncode == 0, producer.errors()
    worker.wait_for(lambda: len(worker.events("done")) == 8, 30, "the new tasks done")
    assert worker.process.poll() is None


def test_producer_exits_1_naming_the_tasks_the_broker_did_not_confirm(lab: Lab) -> None:
    # A full queue that refuses more (a policy of the test's own, above the lab's): the broker nacks.
    full = json.dumps({"max-length": 2, "overflow": "reject-publish"})
    local_broker.ctl(
        NODE, "set_policy", "-p", VHOST, "--apply-to", "queues", "--priority", "9", "full", "^task_queue$", full
    )
    try:
        # Spread out: a quorum queue applies its limit after each enqueue, so six tasks sent in one
        # burst (up to 256 are in flight) could all be in before it refuses any.
        producer = lab.produce("6", "task", "--rate", "20")
    finally:
        local_broker.ctl(NODE, "clear_policy", "-p", VHOST, "full")
    assert producer.process.returncode == 1
    (finished,) = producer.events("run_finished")
    unconfirmed = finished["unconfirmed"]
    assert unconfirmed and unconfirmed == list(range(7 - len(unconfirmed), 7)), unconfirmed
    line = producer.errors().strip().splitlines()[-1]
    assert (
        line
        == f"new_task.py: error: {len(unconfirmed)} of 6 tasks not confirmed by the broker: {seq_list(unconfirmed)}"
    )
    assert_counts("task_queue", (6 - len(unconfirmed), 0))  # every confirmed task is kept


def test_producer_waits_for_a_restarted_broker_and_sends_again_what_was_not_confirmed(lab: Lab, tmp_path: Path) -> None:
    producer = Program(PRODUCER, ["10", "task", "--rate", "4"], tmp_path, "producer-slow", {"AMQP_URL": URL})
    producer.wait_for(lambda: " [x] Sent 'task #2'" in producer.lines(), 30, "the run under way")
    local_broker.restart_broker(NODE)
    assert producer.wait(timeout=120) == 0, producer.errors()
    (finished,) = producer.events("run_finished")
    assert finished["sent"] == 10 and finished["unconfirmed"] == []
    (lost,) = producer.events("connection_lost")
    # Sent again: exactly the tasks the broker had not confirmed when the connection went
    # (none, when the loss came between two tasks), each once, from the first unconfirmed on.
    resent = finished["resent"]
    assert [e["seq"] for e in producer.events("resent")] == resent
    assert resent == list(range(lost["seq"], lost["seq"] + len(resent))), (lost, resent)
    # Every confirmed task is kept; those sent again may be there twice (a quorum queue's figures lag).
    deadline = time.monotonic() + 20
    while not 10 <= queue_counts().get("task_queue", (0, 0))[0] <= 10 + len(resent) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert 10 <= queue_counts()["task_queue"][0] <= 10 + len(resent)


def test_under_the_brokers_disk_alarm_the_producer_waits_saying_since_when_and_the_worker_goes_on(
    lab: Lab, tmp_path: Path
) -> None:
    first = lab.produce("6", "--url", URL)  # waiting in the queue when the alarm comes
    status = json.loads(local_broker.ctl(NODE, "status", "--formatter", "json").stdout)
    # A free-disk limit past any disk's free space: the node raises its disk alarm at once, and blocks publishers.
    local_broker.ctl(NODE, "set_disk_free_limit", str(10**18))
    try:
        (worker,) = lab.workers(1, "--mode", "ack", "--seconds-per-dot", "0.05")
        producer = Program(PRODUCER, ["6", "task"], tmp_path, "producer-blocked", {"AMQP_URL": URL})
        blocked = producer.wait_for_event("blocked", timeout=30)
        # The worker publishes its words to the live views, and only they wait: its tasks and acks go on.
        run = first.events("run_started")[0]["run_id"]
        worker.wait_for(
            lambda: {e["seq"] for e in worker.events("done") if e["run_id"] == run} == set(range(1, 7)),
            30,
            "the queue drained",
        )
        assert_counts("task_queue", (0, 0))
        time.sleep(1)
        assert producer.process.poll() is None, "blocked, the producer waits: it neither fails nor finishes"
        assert not producer.events("run_finished")
    finally:
        local_broker.ctl(NODE, "set_disk_free_limit", str(status["disk_free_limit"]))
    assert producer.wait(timeout=60) == 0, producer.errors()
    assert blocked["reason"] == "low on disk"
    (unblocked,) = producer.events("unblocked")
    assert unblocked["seconds"] >= 1 and unblocked["ts"] > blocked["ts"]
    said = "\n".join(producer.lines() + producer.errors().splitlines())
    assert re.search(r"blocked by the broker since \d\d:\d\d:\d\d: low on disk \(a resource alarm", said), said
    assert "the broker takes tasks again, after" in said
    assert re.search(r"6 sent, 6 confirmed by the broker \(blocked \d+\.\d s by the broker's resource alarm\)", said)
    (finished,) = producer.events("run_finished")
    assert finished["sent"] == 6 and finished["unconfirmed"] == []
    second = finished["run_id"]
    worker.wait_for(lambda: len([e for e in worker.events("done") if e["run_id"] == second]) == 6, 30, "the new run")


def test_a_frozen_worker_finishes_late_its_ack_refused_and_the_task_is_done_again_elsewhere(lab: Lab) -> None:
    url = URL + "?heartbeat=2"  # the broker gives up on a silent connection after 4 to 6 s
    workers = lab.workers(2, "--mode", "ack", "--seconds-per-dot", "0.5", "--url", url)
    assert lab.produce("1", "long......", "--url", URL).process.returncode == 0  # 3 s of work
    deadline = time.monotonic() + 30
    while not any(w.events("received") for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    frozen, other = sorted(workers, key=lambda w: not w.events("received"))
    frozen.signal(signal.SIGSTOP)  # a hung machine: no heartbeats, no work
    try:
        other.wait_for_event("done", timeout=30)  # the broker gave the task to the other worker
    finally:
        frozen.signal(signal.SIGCONT)
    late = frozen.wait_for_event("done", timeout=30)
    assert late["refused"] is True and late["late"] > 4
    assert [e["redelivered"] for e in other.events("received")] == [True]
    frozen.wait_for(lambda: len(frozen.events("consuming")) == 2, 30, "consuming again after the stall")
    assert_counts("task_queue", (0, 0))


def test_quotes_backslashes_and_non_ascii_pass_through_the_events_and_the_report(lab: Lab) -> None:
    """The events are JSON written by hand: any text a user gives (names, a task) must come out as it went in."""
    name, host, text = 'wörker "1" \\ ü', 'hôst\\"a', 'Grüße, "quoted" \\back'
    worker = lab.worker("--seconds-per-dot", "0", name=name, env={"WORKER_HOST": host})
    worker.wait_for_event("consuming", timeout=30)
    producer = lab.produce("2")
    connection = pika.BlockingConnection(pika.URLParameters(URL))  # a student's task, its text in the events
    connection.channel().basic_publish("", "task_queue", text.encode(), pika.BasicProperties(delivery_mode=2))
    connection.close()
    deadline = time.monotonic() + 30
    while len(worker.events("done")) < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    events = worker.events()  # each line parsed as JSON: a bad escape fails here
    assert {(e["worker"], e["host"]) for e in events} == {(name, host)}
    assert [e["origin"] for e in events if "origin" in e] == [f"another producer: {text!r}"]
    (run_id,) = {e["run_id"] for e in producer.events("run_started")}
    gathered = Gathered(containers=[Container(host, name, True, "", events)], producer_events=producer.events())
    report = fates.build(gathered, run_id)
    assert report.verdict.startswith("2 sent, 2 done, 0 lost")
    assert [w.worker for w in report.workers] == [f"{host}/{name}"]
    assert json.loads(json.dumps(json_data.as_dict(report)))["workers"][0]["worker"] == f"{host}/{name}"
    assert f"{host}/{name}" in terminal.render(report)
    svg = ET.fromstring(timeline.render(report, now=time.time()))  # valid XML, the names escaped in it
    assert f"{host}/{name}" in "".join(svg.itertext())
