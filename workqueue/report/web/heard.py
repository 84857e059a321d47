"""Everything the web view has heard, kept so that the report's own code can tell it.

The listener thread adds to it; the page's frames read it as a ``Gathered``: the
same record ``playbooks/report.yml`` brings back from the hosts (each worker's
events, the producer's, the queue's counts), so that ``report.fates`` says what
became of each task live exactly as the report says it afterwards.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from workqueue.events import EventReader
from workqueue.queues import Mode
from workqueue.report.gathered import Container, Event, Gathered, QueueState
from workqueue.report.live import SILENT_SECONDS

EVENTS_PER_WORKER = 50_000  # the oldest go first: a view left open for days stays small
# A worker publishes what it did at least every 0.2 s (worker_image/feed.py) while it works, and says it
# is alive every 5 s when idle: a word it wrote this long after a count tells every task it had by then.
CATCH_UP_SECONDS = 1.0
# A worker's clock against this view's: the least (arrival - newest event time) of its last messages.
OFFSET_MESSAGES = 20


@dataclass
class _Worker:
    host: str
    name: str
    events: list[Event] = field(default_factory=list)
    stopped: bool = False  # it said worker_stopped, and has not started again
    heard_at: float = 0.0  # when its last word arrived here, by this view's clock (monotonic)
    # Its last messages: each one's newest event time (its clock) and when it arrived here (ours). A
    # message arrives after it was written: arrival less time stamp is never below the two clocks'
    # difference, and close to it for a message sent at once. A forged stamp leaves with its message.
    told: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=OFFSET_MESSAGES))

    def told_until(self) -> float:
        """Until when, by this view's wall clock, the worker has told what it did (its clock read through ours)."""
        if not self.told:
            return 0.0
        return max(stamp for stamp, _ in self.told) + min(arrived - stamp for stamp, arrived in self.told)


@dataclass(frozen=True)
class FeedState:
    live: bool
    note: str  # why not, and since when


class Heard:
    """Thread-safe: the listener writes, the page reads."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._wall = wall
        self._workers: dict[tuple[str, str], _Worker] = {}
        self._producer: list[Event] = []
        # The broker's counts, each with when it was taken (wall clock: the workers' stamps are read
        # against it) and whether it can be believed; the oldest is the newest that the events had
        # caught up with when last read (see _count_to_tell).
        self._counts: list[tuple[float, bool, list[QueueState]]] = []
        self._publishing_until = 0.0  # when the producer's last word on a run's end (or start) came (wall clock)
        self._publishing = False  # a run started and its end not heard yet
        self._mode: Mode | None = None
        self._feed = FeedState(False, "connecting to the broker")
        self._alarm = ""  # the broker's resource alarm, while it blocks publishers (report.alarm)
        self.reader = EventReader()  # the feed's messages that are not the programs' events: dropped, counted

    def add(self, events: list[Event]) -> None:
        """One message of the feed: its events, as they came."""
        with self._lock:
            arrived, arrived_wall = self._clock(), self._wall()
            newest: dict[tuple[str, str], float] = {}
            for event in events:
                if event.get("program") == "producer":
                    self._producer.append(event)
                    self._mode = Mode.named(event.get("mode")) or self._mode
                    if event.get("event") in ("run_started", "run_finished"):
                        self._publishing = event.get("event") == "run_started"
                        self._publishing_until = arrived_wall
                    continue
                key = (str(event.get("host", "?")), str(event.get("worker", "?")))
                worker = self._workers.setdefault(key, _Worker(*key))
                worker.heard_at = arrived
                newest[key] = max(newest.get(key, 0.0), float(event.get("ts", 0.0)))
                kind = event.get("event")
                if kind in ("worker_started", "alive"):
                    self._mode = Mode.named(event.get("mode")) or self._mode
                if kind == "alive":
                    continue  # says only that it is there: the report never sees it
                worker.stopped = kind == "worker_stopped" or (worker.stopped and kind != "worker_started")
                worker.events.append(event)
                del worker.events[:-EVENTS_PER_WORKER]
            for key, stamp in newest.items():
                self._workers[key].told.append((stamp, arrived_wall))

    def counted(self, queues: list[QueueState], consumed: str) -> None:
        """The broker's counts of the queues that exist now; ``consumed``: the queue the workers consume from.

        A quorum queue asked for its counts gives up after 250 ms and answers "0 ready, 0
        consumers" (RabbitMQ's ``rabbit_quorum_queue:stat``): on a busy broker, a task still
        waiting would then look gone. A count saying nobody consumes while workers are heard is
        kept for the page's queue line but never believed complete (see _count_to_tell).
        """
        with self._lock:
            clock = self._clock()
            nobody = any(q.name == consumed and q.consumers == 0 for q in queues)
            self._counts.append((self._wall(), not (nobody and self._live(clock)), queues))

    def feed(self, state: FeedState) -> None:
        with self._lock:
            self._feed = state

    def alarm(self, line: str) -> None:
        with self._lock:
            self._alarm = line

    @property
    def alarm_line(self) -> str:
        with self._lock:
            return self._alarm

    @property
    def mode(self) -> Mode | None:
        """The mode the programs say they run in; None until one speaks."""
        with self._lock:
            return self._mode

    def read(self) -> tuple[Gathered, FeedState]:
        """What was heard, as the report reads a lab; and the feed's state."""
        with self._lock:
            clock = self._clock()
            workers = sorted(self._workers.values(), key=lambda w: (w.host, w.name))
            containers = [_container(w, clock - w.heard_at) for w in workers]
            queues = self._count_to_tell()
            gathered = Gathered(containers=containers, producer_events=list(self._producer), queues=queues)
            return gathered, self._feed

    def _count_to_tell(self) -> list[QueueState] | None:
        """The newest count that the events have caught up with; else the newest, marked incomplete.

        The broker counts a task handed to a worker as no longer ready at once; the worker's word
        that it got it comes with its next feed message. A count is complete once the producer had
        finished publishing before it and every worker still speaking has told what it did until
        CATCH_UP_SECONDS after it, by the time stamps of its own events: a message that arrives
        late (a busy broker, a busy view) may have been written before the worker got the task,
        and its arrival says nothing. Until then a task that is in no count and no event may be on
        its way.
        """
        if not self._counts:
            return None
        clock = self._clock()
        caught_up = min((w.told_until() for w in self._live(clock)), default=self._wall()) - CATCH_UP_SECONDS
        # While the producer publishes, no count can be complete: tasks come after it.
        complete = (
            []
            if self._publishing
            else [
                i
                for i, (at, believable, _) in enumerate(self._counts)
                if believable and self._publishing_until <= at <= caught_up
            ]
        )
        if complete:
            del self._counts[: complete[-1]]  # older ones are of no more use
            return self._counts[0][2]
        del self._counts[1:-1]  # the last complete one (if any), and the newest
        return [dataclasses.replace(q, complete=False) for q in self._counts[-1][2]]

    def _live(self, clock: float) -> list[_Worker]:
        """The workers still speaking: not stopped, heard within SILENT_SECONDS."""
        return [w for w in self._workers.values() if not w.stopped and clock - w.heard_at <= SILENT_SECONDS]


def _container(worker: _Worker, silent: float) -> Container:
    """A worker as the report reads its container: running, stopped, or (silent) not known.

    A worker that went silent (killed, frozen, or cut off from the broker) cannot say
    which: its tasks stay in its hands until it speaks again or another worker
    gets them; the report, which asks Docker, knows more afterwards. ``silent``: seconds since its
    last word arrived, by this view's clock (its own stamps are by its host's, which may be apart).
    """
    running: bool | None = not worker.stopped
    status = ""
    if running and silent > SILENT_SECONDS:
        running, status = None, f"silent for {silent:.0f} s"
    return Container(host=worker.host, name=worker.name, running=running, status=status, events=list(worker.events))
