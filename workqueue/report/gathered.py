"""What playbooks/report.yml brought back from the lab: kept in a folder (``keep``), read from it.

The playbook passes what it read of each host, as Ansible saw it, and ``keep`` writes one JSON file
per host and role:

    workers/HOST.json    the worker containers (running or stopped) and their ``docker logs``
    producer/HOST.json   the producer's record of the run (or of the newest run)
    broker/HOST.json     ``rabbitmqctl list_queues`` of the lab's vhost

with the clocks of the worker and producer hosts, and of each running worker, measured against
this machine's (playbooks/action_plugins/clock_offset.py). Each program stamps its events with its
own clock; a clock measurably apart has its events moved onto this machine's, so that a lab without
NTP still reads in order (a task received before it was sent, or done before received, otherwise).

A host that could not be read leaves a file that says why. Everything missing
becomes a sentence in ``Gathered.missing``: the report states it, never guesses.
"""

from __future__ import annotations

import base64
import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workqueue.events import read_events
from workqueue.report.partition import Partition, read_partition

Event = dict[str, Any]


@dataclass(frozen=True)
class Container:
    """One worker container and its events, from its host's Docker."""

    host: str
    name: str
    running: bool | None  # None: its host did not say
    status: str  # Docker's words: "Up 3 minutes", "Exited (0) 2 minutes ago"
    events: list[Event]
    created: float | None = None  # its logs begin then: events of earlier runs went with an older container

    @property
    def worker(self) -> str:
        """``host/worker-N``: what the worker calls itself in reports and the live view."""
        return f"{self.host}/{self.name.removeprefix('workqueue-')}"


@dataclass(frozen=True)
class Clock:
    """A clock some events were stamped with, against this machine's, as report.yml measured it."""

    of: str  # a host, or host/worker-N
    offset: float  # seconds ahead of this machine's (behind if negative)
    uncertainty: float  # half the round trip of the reading: the same clock reads within it

    @property
    def apart(self) -> bool:
        """Measurably another time than this machine's: the events are moved by the offset."""
        return abs(self.offset) > self.uncertainty

    def ours(self, ts: float) -> float:
        """A time stamped by this clock, on this machine's clock."""
        return ts - self.offset if self.apart else ts


@dataclass(frozen=True)
class QueueState:
    name: str
    ready: int
    unacknowledged: int
    consumers: int
    leader: str = ""  # a quorum queue's leading node (rabbit@HOST); "" for a classic queue
    # Whether every task the broker had handed out when it counted is in the events read: the report's
    # count comes after the logs it reads; a live view's may come before a worker's feed says what it got.
    complete: bool = True


@dataclass(frozen=True)
class Fault:
    """A fault playbooks/drill.yml caused: on which host (and worker), from when until it healed."""

    fault: str
    host: str
    worker: str | None  # None: the broker
    start: float
    end: float
    # The task the worker held when the fault struck (the drill waits for one): its run and number.
    caught_run: str | None = None
    caught_seq: int | None = None
    loss: int | None = None  # a lossy link's: the packets dropped, in a hundred
    partition: Partition | None = None  # a partition's: what each node cut off did, the leader before and after

    @property
    def kind(self) -> str:
        """``freeze``, or ``lossy 20%``: the fault as the report names it."""
        return f"{self.fault} {self.loss}%" if self.loss is not None else self.fault


@dataclass
class Gathered:
    containers: list[Container] = field(default_factory=list)
    producer_events: list[Event] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    queues: list[QueueState] | None = None  # None: the broker was not read
    unread_hosts: list[str] = field(default_factory=list)  # worker hosts whose events are missing
    missing: list[str] = field(default_factory=list)
    clocks: list[Clock] = field(default_factory=list)  # every clock measured, hosts' and running workers'


class GatheredError(Exception):
    """The folder holds nothing the report can use; the message says what to fix."""


# The kinds of host report.yml reads, each a folder of the gathered folder.
KINDS = ("workers", "producer", "broker")


def keep(folder: Path, found: object) -> None:
    """Keep what report.yml read, ``{kind: [document, ...]}`` (each document names its host), in the
    folder: one file per host and kind, replacing what an earlier report kept there. Checked whole
    before anything is written."""
    if not isinstance(found, dict) or not all(isinstance(found.get(kind, []), list) for kind in KINDS):
        raise GatheredError("what report.yml passed is not its lists of workers, producer and broker: run it again")
    files: dict[str, dict[str, Any]] = {}
    for kind in KINDS:
        for document in found.get(kind, []):
            host = str(document.get("host", "")) if isinstance(document, dict) else ""
            if not host or host.startswith(".") or Path(host).name != host:
                raise GatheredError(f"a {kind} host named {host[:60]!r} cannot name a file: check the inventory")
            files[f"{kind}/{host}.json"] = document
    for kind in KINDS:
        (folder / kind).mkdir(mode=0o700, parents=True, exist_ok=True)
        for earlier in (folder / kind).glob("*.json"):
            earlier.unlink()
    for name, document in files.items():
        descriptor = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as written:
            json.dump(document, written)


def read_folder(folder: Path) -> Gathered:
    if not folder.is_dir():
        raise GatheredError(f"{folder} is not a folder that playbooks/report.yml wrote")
    gathered = Gathered()
    worker_files = sorted((folder / "workers").glob("*.json"))
    for path in worker_files:
        _read_worker_host(_load(path), gathered)
    if not worker_files:
        gathered.missing.append("no worker host was read: the inventory has no hosts in group workers")
    producer_files = sorted((folder / "producer").glob("*.json"))
    for path in producer_files:
        _read_producer_host(_load(path), gathered)
    broker_files = sorted((folder / "broker").glob("*.json"))
    # Every node of a cluster answers for all of it: the first that answered is enough.
    silent: list[str] = []
    for path in broker_files:
        if gathered.queues is None:
            _read_broker(_load(path), gathered, silent)
    if gathered.queues is None:
        gathered.missing.extend(silent)
    if not broker_files:
        gathered.missing.append("the broker was not read: the inventory has no host in group broker")
    return gathered


def _load(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise GatheredError(f"{path} cannot be read as JSON ({exc}): run playbooks/report.yml again") from None
    if not isinstance(document, dict):
        raise GatheredError(f"{path} is not what playbooks/report.yml writes: run it again")
    return document


def _flag(value: object) -> bool:
    """A yes or no from Ansible: a boolean, or its text when a template made it one."""
    return value is True or str(value).strip().lower() in ("true", "yes", "1")


def _rc(value: object) -> int | None:
    try:
        return int(str(value))
    except ValueError:
        return None


def _unreadable(document: dict[str, Any]) -> str:
    """Why a host could not be read, or '' when it was."""
    if _flag(document.get("unreachable")):
        return f"unreachable ({_first_line(document.get('error'))})"
    if _flag(document.get("failed")):
        return f"could not be read ({_first_line(document.get('error'))})"
    return ""


def _first_line(text: object) -> str:
    lines = str(text or "no reason given").strip().splitlines()
    return lines[0][:200] if lines else "no reason given"


def _read_worker_host(document: dict[str, Any], gathered: Gathered) -> None:
    host = str(document.get("host", "?"))
    why = _unreadable(document)
    if why:
        gathered.unread_hosts.append(host)
        gathered.missing.append(f"{host}: {why}; the events of its workers are missing")
        return
    logs = {_name(result.get("item", {})): result for result in document.get("logs") or []}
    host_clock = _clock(host, document.get("clock"), gathered)
    measured = [m for m in document.get("clocks") or [] if isinstance(m, dict)]
    clocks = {str(m.get("container")): m for m in measured}
    containers = document.get("containers") or []
    if not containers:
        gathered.missing.append(f"{host}: no worker container (nothing deployed there, or torn down)")
    for listed in containers:
        name = _name(listed)
        status = str(listed.get("Status", ""))
        log = logs.get(name)
        if log is None or _rc(log.get("rc")) != 0:
            gathered.unread_hosts.append(host)
            gathered.missing.append(f"{host}/{name}: its logs could not be read; its events are missing")
            continue
        # The worker writes its events on standard error; standard output has the tutorial's lines.
        events = list(read_events(str(log.get("stderr", "")).splitlines()))
        worker = f"{host}/{name.removeprefix('workqueue-')}"
        clock = _clock(worker, clocks.get(name), gathered, quiet=True) or host_clock
        running = status.startswith("Up") if status else None
        created = listed.get("Created")  # by its host's Docker, on its host's clock
        created = float(created) if isinstance(created, int | float) else None
        if created is not None and host_clock is not None:
            created = host_clock.ours(created)
        gathered.containers.append(Container(host, name, running, status, _on_our_clock(events, clock), created))


def _name(container: dict[str, Any]) -> str:
    names = container.get("Names") or ["?"]
    return str(names[0]).lstrip("/")


def _read_producer_host(document: dict[str, Any], gathered: Gathered) -> None:
    host = str(document.get("host", "?"))
    why = _unreadable(document)
    if why:
        gathered.missing.append(f"producer host {host}: {why}; the producer's record is missing")
        return
    faults = base64.b64decode(document.get("faults") or "").decode("utf-8", "replace")
    gathered.faults.extend(_fault(e) for e in read_events(faults.splitlines()) if e.get("event") == "fault")
    content = document.get("record")
    if not content:
        return  # no record on this host: the report says so if no host had one
    text = base64.b64decode(content).decode("utf-8", "replace")
    clock = _clock(host, document.get("clock"), gathered)
    gathered.producer_events.extend(_on_our_clock(read_events(text.splitlines()), clock))


def _clock(of: str, measured: object, gathered: Gathered, quiet: bool = False) -> Clock | None:
    """The clock report.yml measured (clock_offset's result), kept in ``gathered.clocks``; None if unread."""
    found = measured if isinstance(measured, dict) else {}
    offset, uncertainty = _number(found.get("offset")), _number(found.get("uncertainty"))
    if offset is None or uncertainty is None or uncertainty < 0:
        if found and not quiet:  # nothing at all: gathered by a report.yml that measured no clock
            why = _first_line(found.get("msg") or "not measured")
            gathered.missing.append(f"{of}: its clock could not be read ({why}); its events keep their own times")
        return None
    clock = Clock(of, offset, uncertainty)
    gathered.clocks.append(clock)
    return clock


def _on_our_clock(events: Iterable[Event], clock: Clock | None) -> list[Event]:
    """The events with their times moved onto this machine's clock (as they are if it was not measured)."""
    if clock is None or not clock.apart:
        return list(events)
    return [{**event, "ts": clock.ours(float(event["ts"]))} for event in events]


def _fault(event: Event) -> Fault:
    start = _number(event.get("start")) or 0.0
    worker = event.get("worker")
    caught = event.get("caught")
    caught = caught if isinstance(caught, dict) else {}
    run, seq = caught.get("run_id"), caught.get("seq")
    loss = _number(event.get("loss"))
    return Fault(
        str(event.get("fault")),
        str(event.get("host")),
        worker if isinstance(worker, str) else None,
        start,
        max(start, _number(event.get("end")) or start),
        run if isinstance(run, str) else None,
        seq if isinstance(seq, int) and not isinstance(seq, bool) else None,
        int(loss) if loss is not None and 0 < loss <= 100 else None,
        read_partition(event.get("partition")),
    )


def _number(value: object) -> float | None:
    """A time of the drill's record: a number, or a number as text (Ansible's JSON writes either)."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _read_broker(document: dict[str, Any], gathered: Gathered, silent: list[str]) -> None:
    """The queues as one broker node saw them; why it could not say, in ``silent``."""
    host = str(document.get("host", "?"))
    why = _unreadable(document)
    if why or _rc(document.get("rc")) != 0:
        reason = why or f"rabbitmqctl failed: {_first_line(document.get('stderr'))}"
        silent.append(f"broker {host}: {reason}; the queues' state is unknown")
        return
    try:
        rows = json.loads(document.get("stdout") or "[]")
    except ValueError:
        silent.append(f"broker {host}: rabbitmqctl's answer is not JSON; the queues' state is unknown")
        return
    gathered.queues = [_queue_state(row) for row in rows if isinstance(row, dict) and "name" in row]


def _queue_state(row: dict[str, Any]) -> QueueState:
    """A row of ``rabbitmqctl list_queues name messages_ready messages_unacknowledged consumers leader``."""
    ready, unacknowledged = int(row["messages_ready"]), int(row["messages_unacknowledged"])
    return QueueState(
        str(row["name"]), ready, unacknowledged, int(row.get("consumers", 0)), str(row.get("leader") or "")
    )
