"""The web view's verdict in the worst orders of events: never "unaccounted" while a task may be on its way.

The page hears two things that race: the broker's counts (how many tasks wait) and
the workers' feed (what each one received and did). A task the broker has handed to
a worker is in no count the moment it leaves the queue, and in no event until the
worker's next feed message. These tests feed ``Heard`` by hand, in the orders a busy
machine makes, and read the verdict as the page does (``report.fates``, the report's
own rule for "settled").
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.test_report import ACK_RUN
from workqueue.report import fates
from workqueue.report.gathered import QueueState
from workqueue.report.web.heard import CATCH_UP_SECONDS, OFFSET_MESSAGES, Heard

START = 1764402000.0
QUEUE = "task_queue"
ON_ITS_WAY = "2 sent, 1 done, 0 lost; still running: 1 queued (report again when it settles)"
MISSING = "2 sent, 1 done, 0 lost; 1 unaccounted (#2)"


class Feed:
    """A view's ``Heard`` fed by hand. ``skew``: how far each worker's clock is ahead of the view's."""

    def __init__(self, skew: dict[str, float] | None = None) -> None:
        self.now = START
        self.skew = skew or {}
        self.heard = Heard(clock=lambda: self.now, wall=lambda: self.now)

    def later(self, seconds: float) -> None:
        self.now += seconds

    def worker(
        self, kind: str, worker: str, seq: int | None = None, written: float | None = None, **fields: Any
    ) -> None:
        """One feed message of one event, arriving now; ``written``: when, by the view's clock (default now)."""
        stamp = (self.now if written is None else written) + self.skew.get(worker, 0.0)
        task = {"run_id": ACK_RUN, "seq": seq, "message_id": None} if seq is not None else {}
        event = {"event": kind, "ts": stamp, "program": "worker", "host": "pc", "worker": worker, **task, **fields}
        self.heard.add([event])

    def producer(self, kind: str, **fields: Any) -> None:
        self.heard.add(
            [{"event": kind, "ts": self.now, "program": "producer", "run_id": ACK_RUN, "mode": "ack", **fields}]
        )

    def count(self, ready: int, consumers: int = 2) -> None:
        self.heard.counted([QueueState(QUEUE, ready, 0, consumers)], QUEUE)

    def report(self) -> fates.RunReport:
        gathered, _ = self.heard.read()
        return fates.build(gathered, ACK_RUN)


def two_workers_one_run(skew: dict[str, float] | None = None) -> Feed:
    """Two workers, a run of two tasks published, #1 in worker-1's hands."""
    feed = Feed(skew)
    for name in ("worker-1", "worker-2"):
        feed.worker("worker_started", name, mode="ack")
    feed.producer("run_started", count=2, queue=QUEUE)
    feed.worker("received", "worker-1", 1, redelivered=False)
    feed.producer("run_finished", sent=2, confirmed=2, unconfirmed=[], resent=[])
    return feed


def assert_verdict(feed: Feed, verdict: str, settled: bool) -> None:
    report = feed.report()
    assert (report.verdict, report.settled) == (verdict, settled)


@pytest.mark.parametrize("truly_missing", [False, True])
def test_a_task_on_its_way_to_a_worker_is_never_unaccounted_until_the_feed_catches_up(truly_missing: bool) -> None:
    """The broker's count (0 ready) comes before the word of the worker that got #2."""
    feed = two_workers_one_run()
    feed.later(0.1)
    feed.count(0)  # #2 handed to worker-2, which has not said so yet
    feed.later(0.1)
    feed.worker("done", "worker-1", 1, work_seconds=0.0)
    assert_verdict(feed, ON_ITS_WAY, settled=False)

    feed.later(CATCH_UP_SECONDS)
    feed.worker("alive", "worker-1", mode="ack")
    if not truly_missing:
        feed.worker("received", "worker-2", 2, redelivered=False)
        assert feed.report().verdict.endswith("still running: 1 in progress (report again when it settles)")
        feed.worker("done", "worker-2", 2, work_seconds=0.0)
        assert_verdict(feed, "2 sent, 2 done, 0 lost", settled=True)
    else:
        feed.worker("alive", "worker-2", mode="ack")
        # Both workers told of what they did a second after the count: #2 is in no hands and no queue.
        assert_verdict(feed, MISSING, settled=True)


@pytest.mark.parametrize("skew", [0.0, 120.0, -120.0], ids=["same clock", "2 min ahead", "2 min behind"])
def test_a_word_written_before_the_count_that_arrives_late_is_no_catching_up(skew: float) -> None:
    """Issue 31's order: worker-2 wrote a word, got #2, the broker counted 0 ready; the word came 1.2 s later.

    By arrival, worker-2 had spoken long enough after the count to have told of #2, and
    the page called #2 unaccounted while it was in worker-2's hands. By the word's own time
    stamp (worker-2's clock, read through this view's from its earlier messages, however far
    apart the two are), it was written before the count: #2 may still be on its way.
    """
    feed = two_workers_one_run({"worker-2": skew})
    feed.later(0.5)
    written = feed.now
    feed.later(0.05)
    feed.count(0)  # #2 left the queue for worker-2
    feed.later(0.1)
    feed.worker("done", "worker-1", 1, work_seconds=0.0)
    feed.later(CATCH_UP_SECONDS + 0.1)
    feed.worker("alive", "worker-1", mode="ack")
    feed.worker("alive", "worker-2", written=written, mode="ack")  # a busy view: it arrives now
    assert_verdict(feed, ON_ITS_WAY, settled=False)

    feed.worker("received", "worker-2", 2, written=written + 0.1, redelivered=False)
    assert feed.report().verdict.endswith("still running: 1 in progress (report again when it settles)")
    feed.later(0.2)
    feed.worker("done", "worker-2", 2, work_seconds=0.0)
    assert_verdict(feed, "2 sent, 2 done, 0 lost", settled=True)


def test_a_stamp_from_the_future_neither_settles_the_page_early_nor_holds_it_for_long() -> None:
    """A student's program may publish to the feed as any worker, with any time stamp."""
    feed = two_workers_one_run()
    feed.worker("alive", "worker-2", written=feed.now + 3600, mode="ack")  # forged: an hour ahead
    feed.later(0.1)
    feed.count(0)
    feed.later(0.1)
    feed.worker("done", "worker-1", 1, work_seconds=0.0)
    feed.later(CATCH_UP_SECONDS + 0.1)
    feed.worker("alive", "worker-1", mode="ack")
    feed.worker("alive", "worker-2", written=feed.now - CATCH_UP_SECONDS - 0.2, mode="ack")  # before the count
    assert_verdict(feed, ON_ITS_WAY, settled=False)
    # The forged stamp counts for the last OFFSET_MESSAGES messages only: worker-2's own words then tell.
    for _ in range(OFFSET_MESSAGES):
        feed.later(0.2)
        feed.worker("alive", "worker-2", mode="ack")
    feed.worker("alive", "worker-1", mode="ack")
    assert_verdict(feed, MISSING, settled=True)


def test_a_count_saying_nobody_consumes_while_workers_speak_is_never_believed() -> None:
    """A quorum queue's stat gives up after 250 ms and answers "0 ready, 0 consumers".

    The worst order on a busy broker: #2 waits in the queue (counted, 1 ready) while both
    workers are busy; the next count is that no-answer; then both workers speak. Believed,
    the no-answer made #2 gone: "1 unaccounted (#2)" while the broker held it.
    """
    feed = two_workers_one_run()
    feed.later(0.1)
    feed.count(1)  # #2 waits
    feed.later(0.3)
    feed.count(0, consumers=0)  # the stat's no-answer
    feed.later(CATCH_UP_SECONDS)
    feed.worker("done", "worker-1", 1, work_seconds=0.0)
    feed.worker("alive", "worker-2", mode="ack")
    assert_verdict(feed, ON_ITS_WAY, settled=False)
    # Once every worker has stopped, nobody consumes: the broker's word is believed again.
    for name in ("worker-1", "worker-2"):
        feed.worker("worker_stopped", name, signal="SIGTERM")
    feed.later(0.1)
    feed.count(0, consumers=0)
    feed.later(CATCH_UP_SECONDS)
    assert_verdict(feed, MISSING, settled=True)
