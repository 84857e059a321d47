"""The programs' events as a reader takes them: one JSON object a line, each field checked.

The programs write events (``workqueue.output``); the report and the live views
read them back from places a student's program reaches: the live views' feed
exchange, and a worker's log, which repeats what a task's headers said. So a
reader keeps an event only when every field it knows has the type and the range
the programs write, and drops the rest (``EventReader.dropped`` counts them).
Free text keeps no control character, so that no event can move a terminal's
cursor or break a line of a table; each output escapes the rest for its format.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from workqueue.tasks import MAX_TASKS, RUN_ID

Event = dict[str, Any]

# A time an event may carry: from 2000 to 2100. Anything else is no clock's reading.
EARLIEST, LATEST = 946_684_800.0, 4_102_444_800.0
NAME_LIMIT = 200  # a host, a worker, a node, a mode...
TEXT_LIMIT = 1_000  # a reason, a task's origin
SECONDS_LIMIT = 10_000_000.0
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAME = re.compile(r"^[^\x00-\x1f\x7f-\x9f\u2028\u2029]*$")


def without_control(text: str) -> str:
    """Text with each control character (escape sequences, line breaks) made a '?'."""
    return _CONTROL.sub("?", text)


def _name(value: object) -> bool:
    return isinstance(value, str) and len(value) <= NAME_LIMIT and _NAME.match(value) is not None


def _text(value: object) -> bool:
    return isinstance(value, str) and len(value) <= TEXT_LIMIT


def _time(value: object) -> bool:
    return type(value) in (int, float) and EARLIEST <= value <= LATEST  # type: ignore[operator]


def _seconds(value: object) -> bool:
    return type(value) in (int, float) and 0 <= value <= SECONDS_LIMIT  # type: ignore[operator]


def _seq(value: object) -> bool:
    return type(value) is int and 1 <= value <= MAX_TASKS


def _count(value: object) -> bool:
    return type(value) is int and 0 <= value <= MAX_TASKS


def _seqs(value: object) -> bool:
    return type(value) is list and len(value) <= MAX_TASKS and all(_seq(v) for v in value)


def _run_id(value: object) -> bool:
    return isinstance(value, str) and RUN_ID.match(value) is not None


def _flag(value: object) -> bool:
    return type(value) is bool


# Every field the programs write, and what its value must be (None is allowed for each but event and ts).
FIELDS: dict[str, Callable[[object], bool]] = {
    "event": _name,
    "ts": _time,
    "program": _name,
    "host": _name,
    "worker": _name,
    "mode": _name,
    "queue": _name,
    "node": _name,
    "signal": _name,
    "fate": _name,
    "fault": _name,
    "run_id": _run_id,
    "seq": _seq,
    "count": _count,
    "sent": _count,
    "confirmed": _count,
    "prefetch": _count,
    "unconfirmed": _seqs,
    "resent": _seqs,
    "redelivered": _flag,
    "refused": _flag,
    "work_seconds": _seconds,
    "late": _seconds,
    "start": _time,
    "end": _time,
    "message_id": _text,
    "reason": _text,
    "origin": _text,
}
REQUIRED = ("event", "ts")
FREE_TEXT = ("message_id", "reason", "origin")


def checked(record: object) -> Event | None:
    """The event, if it is one the programs could have written; else None.

    Fields this version does not know are kept (a newer program's), as long as the known ones hold.
    """
    if not isinstance(record, dict):
        return None
    required = ("event", "start", "end") if record.get("event") == "fault" else REQUIRED
    if any(record.get(key) is None for key in required):
        return None
    for key, valid in FIELDS.items():
        value = record.get(key)
        if value is not None and not valid(value):
            return None
    for key in FREE_TEXT:
        if isinstance(record.get(key), str):
            record[key] = without_control(record[key])
    return record


class EventReader:
    """Reads events from lines of output, dropping and counting what is not a well-formed event."""

    def __init__(self) -> None:
        self.dropped = 0

    def read(self, lines: Iterable[str]) -> Iterator[Event]:
        """The events among a program's output lines (``docker logs``); other lines are skipped."""
        for line in lines:
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                record = json.loads(line, parse_constant=_no_constant)
            except (ValueError, RecursionError):
                self.dropped += 1
                continue
            event = checked(record)
            if event is None:
                self.dropped += 1
                continue
            yield event


def _no_constant(name: str) -> float:
    """NaN and Infinity are not JSON: an event that has them is not the programs'."""
    raise ValueError(f"{name} is not a number")


def read_events(lines: Iterable[str]) -> Iterator[Event]:
    """The well-formed events among lines of output; the rest are skipped."""
    return EventReader().read(lines)
