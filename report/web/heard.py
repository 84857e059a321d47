"""Everything the web view has heard, kept so that the report's own code can tell it.

The listener thread adds to it; the page's frames read it as a ``Gathered``: the
same record ``playbooks/report.yml`` brings back from the hosts (each worker's
events, the producer's, the queue's counts), so that ``report.fates`` says what
became of each task live exactly as the report says it afterwards.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from report.gathered import Container, Event, Gathered, QueueState
from report.live import SILENT_SECONDS
from workqueue.queues import Mode

EVENTS_PER_WORKER = 50_000  # the oldest go first: a view left open for days stays small


@dataclass
class _Worker:
    host: str
    name: str
    events: list[Event] = field(default_factory=list)
    stopped: bool = False  # it said worker_stopped, and has not started again
    last_heard: float = 0.0


@dataclass(frozen=True)
class FeedState:
    live: bool
    note: str  # why not, and since when


class Heard:
    """Thread-safe: the listener writes, the page reads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._workers: dict[tuple[str, str], _Worker] = {}
        self._producer: list[Event] = []
        self._queues: list[QueueState] | None = None
        self._mode: Mode | None = None
        self._feed = FeedState(False, "connecting to the broker")

    def add(self, events: list[Event]) -> None:
        with self._lock:
            for event in events:
                if event.get("program") == "producer":
                    self._producer.append(event)
                    self._mode = Mode.named(event.get("mode")) or self._mode
                    continue
                key = (str(event.get("host", "?")), str(event.get("worker", "?")))
                worker = self._workers.setdefault(key, _Worker(*key))
                worker.last_heard = float(event.get("ts", time.time()))
                kind = event.get("event")
                if kind in ("worker_started", "alive"):
                    self._mode = Mode.named(event.get("mode")) or self._mode
                if kind == "alive":
                    continue  # says only that it is there: the report never sees it
                worker.stopped = kind == "worker_stopped" or (worker.stopped and kind != "worker_started")
                worker.events.append(event)
                del worker.events[:-EVENTS_PER_WORKER]

    def counted(self, queues: list[QueueState]) -> None:
        """The broker's counts of the queues that exist now."""
        with self._lock:
            self._queues = queues

    def feed(self, state: FeedState) -> None:
        with self._lock:
            self._feed = state

    @property
    def mode(self) -> Mode | None:
        """The mode the programs say they run in; None until one speaks."""
        with self._lock:
            return self._mode

    def read(self, now: float) -> tuple[Gathered, FeedState]:
        """What was heard, as the report reads a lab; and the feed's state."""
        with self._lock:
            containers = [_container(w, now) for w in sorted(self._workers.values(), key=lambda w: (w.host, w.name))]
            gathered = Gathered(containers=containers, producer_events=list(self._producer), queues=self._queues)
            return gathered, self._feed


def _container(worker: _Worker, now: float) -> Container:
    """A worker as the report reads its container: running, stopped, or (silent) not known.

    A worker that went silent (killed, frozen, or cut off from the broker) cannot say
    which: its tasks stay in its hands until it speaks again or another worker
    gets them; the report, which asks Docker, knows more afterwards.
    """
    silent = now - worker.last_heard
    running: bool | None = not worker.stopped
    status = ""
    if running and silent > SILENT_SECONDS:
        running, status = None, f"silent for {silent:.0f} s"
    return Container(host=worker.host, name=worker.name, running=running, status=status, events=list(worker.events))
