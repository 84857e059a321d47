"""What the live view knows: each worker's tasks in hand and counts, from the events it hears."""

from __future__ import annotations

from dataclasses import dataclass, field

from workqueue.queues import Mode
from workqueue.report.foreign import from_a_run
from workqueue.report.gathered import Event

SILENT_SECONDS = 15.0  # a worker says it is alive every 5 s; three times that and it is gone


@dataclass
class LiveWorker:
    name: str  # host/worker-N
    connection: str = "consuming"  # or "reconnecting", or "stopped"
    last_heard: float = 0.0
    # (run, seq), oldest first; (None, None) for a task from another producer.
    held: list[tuple[str | None, int | None]] = field(default_factory=list)
    received: int = 0
    done: int = 0
    redelivered: int = 0
    abandoned: int = 0
    # Tasks from other producers (a student's), counted apart from any run.
    foreign_received: int = 0
    foreign_done: int = 0
    node: str = ""  # the broker node it consumes from (host:port), when it said

    @property
    def state(self) -> str:
        """Working while it holds a task and is connected; else what its connection is."""
        return "working" if self.held and self.connection == "consuming" else self.connection

    def in_hand(self) -> str:
        if not self.held:
            return "-"
        waiting = f" (+{len(self.held) - 1} waiting)" if len(self.held) > 1 else ""
        seq = self.held[0][1]
        return f"{'#' + str(seq) if seq is not None else 'other'}{waiting}"


@dataclass
class LiveState:
    run_filter: str | None = None  # follow this run; None: the newest one heard of
    run_id: str | None = None
    mode: Mode | None = None
    workers: dict[str, LiveWorker] = field(default_factory=dict)

    def apply_all(self, events: list[Event], heard_at: float | None = None) -> None:
        """One feed message's events. ``heard_at``: when it arrived, by this view's clock; a worker's own
        stamps are by its host's clock, which may be apart from it (default: the stamps, for a recording)."""
        for event in events:
            self.apply(event, heard_at)

    def apply(self, event: Event, heard_at: float | None = None) -> None:
        name = f"{event.get('host', '?')}/{event.get('worker', '?')}"
        worker = self.workers.setdefault(name, LiveWorker(name))
        worker.last_heard = heard_at if heard_at is not None else float(event.get("ts", 0.0))
        kind = event.get("event")
        if kind in ("alive", "worker_started", "consuming"):
            self.mode = Mode.named(event.get("mode")) or self.mode
            worker.connection = "consuming"
            worker.node = str(event.get("node") or worker.node)
            return
        if kind == "worker_stopped":
            worker.connection, worker.held = "stopped", []
            return
        if kind == "connection_lost":
            worker.connection = "reconnecting"
            return
        run, seq = event.get("run_id"), event.get("seq")
        if not from_a_run(event):
            self._apply_foreign(worker, kind)
            return
        if run != self.run_id and kind == "received" and self.run_filter in (None, run):
            self._new_run(run)
        counted = run == self.run_id
        if kind == "received":
            worker.held.append((run, seq))
            worker.connection = "consuming"  # a delivery comes only on a live connection
            if counted:
                worker.received += 1
                worker.redelivered += bool(event.get("redelivered"))
        elif kind in ("done", "abandoned", "rejected"):
            if (run, seq) in worker.held:
                worker.held.remove((run, seq))
            if counted:
                worker.done += kind == "done" and not event.get("refused")  # a late one: its ack refused
                worker.abandoned += kind == "abandoned"

    def _apply_foreign(self, worker: LiveWorker, kind: object) -> None:
        """A task from another producer: held and counted apart, never in a run's counts."""
        if kind == "received":
            worker.held.append((None, None))
            worker.connection = "consuming"
            worker.foreign_received += 1
        elif kind in ("done", "abandoned", "rejected"):
            if (None, None) in worker.held:
                worker.held.remove((None, None))
            worker.foreign_done += kind == "done"

    def foreign_line(self) -> str:
        """``other producers: 3 tasks received, done by lab2/worker-1 (2), ...``; '' when none."""
        received = sum(w.foreign_received for w in self.workers.values())
        if not received:
            return ""
        done = [
            f"{w.name} ({w.foreign_done})"
            for w in sorted(self.workers.values(), key=lambda w: w.name)
            if w.foreign_done
        ]
        return f"other producers: {received} tasks received" + (f", done by {', '.join(done)}" if done else "")

    def _new_run(self, run: str | None) -> None:
        self.run_id = run
        for worker in self.workers.values():
            worker.received = worker.done = worker.redelivered = worker.abandoned = 0

    def unacknowledged(self) -> int:
        """Tasks the live workers hold: what the broker counts as unacknowledged in ack mode."""
        return sum(len(w.held) for w in self.workers.values() if w.connection != "stopped")

    @property
    def nodes_column(self) -> bool:
        """With a cluster of brokers, the rows say which node each worker consumes from."""
        return len({w.node for w in self.workers.values() if w.node}) > 1

    def rows(self, now: float) -> list[list[str]]:
        rows = []
        for worker in sorted(self.workers.values(), key=lambda w: w.name):
            state = worker.state
            if worker.connection != "stopped" and now - worker.last_heard > SILENT_SECONDS:
                state = f"silent for {now - worker.last_heard:.0f} s"
            rows.append(
                [
                    worker.name,
                    state,
                    worker.in_hand(),
                    str(worker.received),
                    str(worker.done),
                    str(worker.redelivered),
                    str(worker.abandoned),
                    *([worker.node or "?"] if self.nodes_column else []),
                ]
            )
        return rows
