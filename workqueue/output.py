"""What the programs print: the tutorial's lines for people, JSON events for reports.

People read standard output (` [x] Received ...`, ` [x] Done #3`). Reports read
standard error, where every event is one JSON object on one line with an
``event`` key; other lines there are plain messages and warnings. Both streams
end up in ``docker logs``, which keeps them after ``docker stop``.

Writes are buffered and flushed at the end of each burst of work (``flush``)
and at least every ``FLUSH_INTERVAL`` seconds while a burst lasts, so that
output stays live for a person without costing a system call per line when
thousands of tasks a second go by.
"""

from __future__ import annotations

import io
import json
import math
import sys
import threading
import time
from collections import deque
from typing import Any, TextIO

FLUSH_INTERVAL = 0.2
# Writes of event lines kept for the feed while nobody takes them (a worker between connections).
FEED_LIMIT = 10_000


# A str as JSON (C-accelerated), in ASCII: a task's text or id may hold characters that some
# readers take for line ends (U+0085, U+2028), which would cut an event line in two.
json_string = json.encoder.encode_basestring_ascii


def json_value(value: Any) -> str:
    """A value as JSON: the common types by hand (json.dumps costs more than the rest of an event)."""
    if isinstance(value, str):
        return json_string(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float) and math.isfinite(value):
        return repr(value)
    return json.dumps(value, separators=(",", ":"))


def _buffered(stream: TextIO) -> TextIO:
    """A buffered text stream over the same file descriptor, whatever PYTHONUNBUFFERED says."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        return stream  # a test's StringIO: already in memory
    raw = open(fd, "wb", buffering=1 << 16, closefd=False)  # noqa: SIM115 - lives as long as the process
    return io.TextIOWrapper(raw, encoding="utf-8", errors="backslashreplace", write_through=False)


class Output:
    """Thread-safe writer of people's lines and report events."""

    def __init__(
        self, source: dict[str, Any], people: TextIO | None = None, events: TextIO | None = None, feed: bool = False
    ) -> None:
        # ``source`` names who speaks (program, host, worker); it goes into every event.
        self._source_json = "".join(f',"{key}":{json_value(value)}' for key, value in source.items())
        # The given streams are kept: their file descriptors must stay open under the buffers.
        self._streams = (people or sys.stdout, events or sys.stderr)
        self._people = _buffered(self._streams[0])
        self._events = _buffered(self._streams[1])
        self._lock = threading.Lock()
        self._stamp = (-1, "")  # see _head
        self._last_flush = time.monotonic()
        # With ``feed``, event lines are also kept until ``take_feed`` (the worker publishes them).
        # A deque: while nobody takes them, the oldest fall off at no cost per write.
        self._feed: deque[str] | None = deque(maxlen=FEED_LIMIT) if feed else None

    def say(self, line: str) -> None:
        with self._lock:
            self._people.write(line + "\n")
            self._maybe_flush()

    def warn(self, line: str) -> None:
        """A plain message for people, on the error stream, flushed at once."""
        with self._lock:
            self._events.write(line + "\n")
            self._flush()

    def event(self, kind: str, encoded: str = "", **fields: Any) -> None:
        """One event line; ``encoded``: fields already encoded by ``encode`` (a task's, said twice)."""
        self.write("", self.event_line(kind, encoded, self.encode(**fields) if fields else ""))

    def write(self, people: str, events: str) -> None:
        """Whole lines at once: for people (may be ''), and event lines made by ``event_line`` (may be '')."""
        with self._lock:
            if people:
                self._people.write(people)
            if events:
                self._events.write(events)
                if self._feed is not None:
                    self._feed.append(events)
            self._maybe_flush()

    def feed_only(self, kind: str, encoded: str) -> None:
        """An event for the feed alone, not the logs (a worker saying it is still there)."""
        if self._feed is not None:
            line = self.event_line(kind, encoded)
            with self._lock:
                self._feed.append(line)

    @staticmethod
    def encode(**fields: Any) -> str:
        """Fields as the inside of an event's JSON object, for ``event(kind, encoded)``."""
        return "".join([f',"{key}":{json_value(value)}' for key, value in fields.items()])

    def event_line(self, kind: str, *encoded: str) -> str:
        """An event's line, its fields encoded by ``encode``. JSON by hand, the time and source made once a
        millisecond: a fast path of the worker's (worker_image/fast_paths.py says what it buys)."""
        return f'{{"event":"{kind}",{self._head()}{"".join(encoded)}}}\n'

    def event_pair(self, first: str, first_fields: str, second: str, second_fields: str) -> str:
        """The lines of two events of one moment (a task received and done at once), fields as for ``event_line``."""
        head = self._head()
        return f'{{"event":"{first}",{head}{first_fields}}}\n{{"event":"{second}",{head}{second_fields}}}\n'

    def _head(self) -> str:
        """The time (to the millisecond) and the source: what every event starts with, made once a millisecond."""
        ms = int(time.time() * 1000)
        stamp = self._stamp  # a tuple: read and replaced whole by either thread
        if stamp[0] != ms:
            stamp = self._stamp = (ms, f'"ts":{ms // 1000}.{ms % 1000:03d}{self._source_json}')
        return stamp[1]

    def take_feed(self) -> str:
        """The event lines written since the last call, one per line; '' when none."""
        with self._lock:
            if not self._feed:
                return ""
            lines = "".join(self._feed)
            self._feed.clear()
        return lines

    def flush(self) -> None:
        """Hand what was written to the kernel now: it outlives the process, even killed. A worker calls it
        before each acknowledgement, so that a task the broker counts done is one its log says done."""
        with self._lock:
            self._flush()

    def flush_when_due(self) -> None:
        """Flush if FLUSH_INTERVAL has passed since the last flush (a loop's idle moments)."""
        with self._lock:
            self._maybe_flush()

    def _maybe_flush(self) -> None:
        if time.monotonic() - self._last_flush >= FLUSH_INTERVAL:
            self._flush()

    def _flush(self) -> None:
        self._people.flush()
        self._events.flush()
        self._last_flush = time.monotonic()
