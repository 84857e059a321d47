"""A worker stopped or killed mid-run, a long task, a broker restart: what is lost, what is kept."""

from __future__ import annotations

import signal
import time

from tests.conftest import URL, consumer_count
from virtual_lab import local_broker
from virtual_lab.processes import LocalLab as Lab
from virtual_lab.processes import done_seqs, received_seqs


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
        worker.wait_for(lambda w=worker: len(w.events("done")) == len(w.events("received")), 30, "own tasks done")
    done = done_seqs(workers)
    lost = set(range(1, 10)) - set(done)
    dispatched_to_stopped = set(received_seqs(stopped))
    assert lost, "the stopped worker held unfinished tasks: some must be lost in noack mode"
    assert lost <= dispatched_to_stopped, (lost, dispatched_to_stopped)
    assert {e["seq"] for e in stopped.events("abandoned")} == lost
    assert all(e["fate"] == "lost" for e in stopped.events("abandoned"))
    assert not any(e["redelivered"] for w in others for e in w.events("received"))
    assert local_broker.queue_counts()["hello"] == (0, 0), "noack: nothing left to redeliver"
    assert " [*] Stopped (SIGTERM)" in stopped.lines()


def test_ack_killed_worker_task_is_redelivered_and_done_elsewhere(lab: Lab) -> None:
    workers = lab.workers(3, "--mode", "ack", "--seconds-per-dot", "0.2")
    producer = lab.produce("6", "--url", URL)
    assert producer.process.returncode == 0, producer.errors()
    assert "Run " in producer.lines()[-1] and "6 sent, 6 confirmed" in producer.lines()[-1]

    killed, others = workers[0], workers[1:]
    in_flight = killed.wait_for_event("received")["seq"]
    killed.signal(signal.SIGKILL)
    killed.wait(timeout=10)
    assert in_flight not in {e["seq"] for e in killed.events("done")}

    for worker in others:
        worker.wait_for(
            lambda: set(done_seqs(others)) >= set(range(1, 7)) - set(done_seqs([killed])), 30, "every task done"
        )
    redelivered = [(w.name, e["seq"]) for w in others for e in w.events("received") if e["redelivered"]]
    assert [seq for _, seq in redelivered] == [in_flight]
    assert in_flight in done_seqs(others)
    assert set(done_seqs(workers)) == set(range(1, 7)), "nothing lost in ack mode"
    assert local_broker.queue_counts()["task_queue"] == (0, 0)


def test_long_task_does_not_starve_heartbeats(lab: Lab) -> None:
    # A 1 s heartbeat: the broker drops a connection silent for about 2 s. The
    # task below takes 4 s: it only succeeds if I/O goes on during the work.
    worker = lab.worker("--mode", "ack", "--seconds-per-dot", "1", "--url", URL + "?heartbeat=1")
    worker.wait_for_event("consuming")
    producer = lab.produce("1", "long....", "--url", URL)
    assert producer.process.returncode == 0, producer.errors()
    worker.wait_for_event("done", timeout=20)
    time.sleep(1.5)  # the acknowledgement travels on the same connection
    assert worker.events("connection_lost") == []
    assert [e["redelivered"] for e in worker.events("received")] == [False]
    assert local_broker.queue_counts()["task_queue"] == (0, 0)


def test_broker_restart_keeps_persistent_tasks_and_worker_reconnects(lab: Lab) -> None:
    producer = lab.produce("5", "task", "--url", URL)
    assert producer.process.returncode == 0, producer.errors()
    local_broker.restart_broker()
    assert local_broker.queue_counts()["task_queue"] == (5, 0), "durable queue, persistent tasks: all kept"

    worker = lab.worker("--mode", "ack", "--seconds-per-dot", "0")
    worker.wait_for(lambda: len(worker.events("done")) == 5, 30, "the five kept tasks done")
    local_broker.restart_broker()
    worker.wait_for_event("connection_lost", timeout=30)
    worker.wait_for(lambda: len(worker.events("consuming")) == 2, 60, "consuming again after the restart")
    assert consumer_count("task_queue") == 1

    producer = lab.produce("3", "more", "--url", URL)
    assert producer.process.returncode == 0, producer.errors()
    worker.wait_for(lambda: len(worker.events("done")) == 8, 30, "the new tasks done")
    assert worker.process.poll() is None
