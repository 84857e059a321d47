"""The worker's fast paths: the few places it departs from the tutorial's plain loop, and what each buys.

The tutorial's worker, for each task: print a line, sleep a second per dot, print another, acknowledge.
Ours does the work on a second thread (a long task must not starve the heartbeats) and writes two
report events per task; done plainly, at thousands of zero-dot tasks a second, that costs half the
tutorial's rate. Each path below stays because `make bench` showed it buys more than a few percent:
taken out alone, medians of five rounds of 100,000 zero-dot tasks against the tutorial's own loop in
the same rounds (2026-12-06; docs/performance.md says how; the rate is worker/tutorial):

- **A task with no work is done at once, on the I/O thread** (``Worker._take``), when nothing is
  ahead of it on the work thread. Without it every task crosses to the work thread and back:
  noack 0.48 of the tutorial's rate instead of 0.94, ack at prefetch 50 0.61 instead of 1.58.
- **One acknowledgement per burst** (``BurstAcks``): the tasks done at once in one burst of
  deliveries are acknowledged by one ``basic_ack(multiple=True)`` at its end, a socket write per
  burst. Acknowledged one by one: prefetch 50 at 0.94 instead of 1.58 (prefetch 1 has no burst).
  The output is handed to the kernel before each acknowledgement, once a burst: 1.54 of the
  tutorial's rate at prefetch 50 instead of 1.73 without it (2026-12-07), the price of a log that
  never says less than the broker knows was done.
- **Events written as JSON by hand** (``Output.event_line``, ``TaskLabel.encoded`` in
  ``workqueue/``): ``json.dumps`` of a dict per event costs 9 µs of the 27 µs a task takes at
  noack: 0.66 instead of 0.94, prefetch 50 1.34 instead of 1.58.
- **What a task's events share, made once**: the fields its two events share (``REDELIVERED``,
  ``NO_WORK``, the label's, kept in ``Delivery.encoded``): 1.4 µs a task, about 5 % at noack; and,
  measured alone in µs per task of the delivery callback, the time and source that head every event,
  made once a millisecond (``Output._head``: 0.4), both events of a task in one call
  (``Output.event_pair``: 0.35), the check of a run id's form remembered (``tasks._is_run_id``:
  0.33). Each alone is under the noise of `make bench`; together, 4 % at noack, where the worker is
  closest to its floor (0.9 of the tutorial's rate).

Taken out because they bought nothing `make bench` could see: a timer that renewed itself to wake
the I/O loop, instead of a time limit on each turn of ``process_data_events`` (noack 36,900 tasks a
second without it, 33,900 with it, in the same rounds), and the mode read as a cached attribute
(0.05 µs a task).
"""

from __future__ import annotations

from collections.abc import Callable

from pika.adapters.blocking_connection import BlockingChannel

from workqueue.output import Output

# Event fields that many tasks share, encoded once.
REDELIVERED = {False: Output.encode(redelivered=False), True: Output.encode(redelivered=True)}
NO_WORK = Output.encode(work_seconds=0.0)


class BurstAcks:
    """Ack mode, on the I/O thread: a channel's acknowledgements, one per burst where that is safe.

    A task done at once waits to be acknowledged until the end of the burst it came in, and one
    ``multiple`` acknowledgement then covers the burst. Never while a task handed to the work
    thread is still to be acknowledged: its own acknowledgement would then name a tag already
    covered, a channel error (``tests/test_fast_paths.py`` mixes both kinds of task). Each
    acknowledgement leaves after ``record`` has handed the output written so far to the kernel: a
    worker killed a moment later has still said it did the tasks the broker counts done.
    """

    def __init__(self, prefetch: int, record: Callable[[], None]) -> None:
        self._one_at_a_time = prefetch == 1  # no burst to wait for
        # Called before each acknowledgement leaves: the log holds what the broker is told is done.
        self._record = record
        self._handed: set[int] = set()
        self._waiting: tuple[BlockingChannel, int] | None = None

    def new_channel(self) -> None:
        """Delivery tags count from 1 again on a new channel: nothing of the old one is owed."""
        self._handed, self._waiting = set(), None

    def handed(self, tag: int) -> None:
        """A task went to the work thread: it acknowledges it itself (``from_work_thread``)."""
        self._handed.add(tag)

    def done_at_once(self, channel: BlockingChannel, tag: int) -> None:
        """A task done here, its events written: acknowledged now, or with its burst."""
        if self._handed or self._one_at_a_time:
            self._record()
            channel.basic_ack(tag)
        else:
            self._waiting = (channel, tag)

    def end_of_burst(self) -> None:
        if self._waiting is not None:
            channel, tag = self._waiting
            self._waiting = None
            self._record()
            channel.basic_ack(tag, multiple=True)

    def from_work_thread(self, channel: BlockingChannel, tag: int) -> Callable[[], None]:
        """The acknowledgement of a task the work thread did, for the I/O thread to run."""
        handed = self._handed  # this channel's: a new channel starts another set

        def ack() -> None:
            handed.discard(tag)
            if channel.is_open:
                channel.basic_ack(tag)

        return ack
