"""A task: its text, the AMQP properties that identify it, and the work it asks for.

As in the tutorial, every dot in a task's text is a second of work. The
producer stamps each task with its run, its sequence number and a message id
so that a report can follow each one from workqueue.producer to worker.
"""

from __future__ import annotations

import functools
import re
import secrets
import time
from collections.abc import Iterable
from typing import NamedTuple

import pika

from workqueue.output import json_string

DEFAULT_MESSAGE = "Hello World!"
PERSISTENT = pika.DeliveryMode.Persistent
TRANSIENT = pika.DeliveryMode.Transient


def task_body(seq: int, message: str | None = None) -> str:
    """Task ``seq``: ``Hello World! #3 ...`` by default, else ``MESSAGE #3``."""
    if message is None:
        return f"{DEFAULT_MESSAGE} #{seq} {'.' * seq}"
    return f"{message} #{seq}"


def work_seconds(body: str, seconds_per_dot: float) -> float:
    return body.count(".") * seconds_per_dot


# A run id, as new_run_id makes it.
RUN_ID = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{4}$")
# The most tasks one run may have (the producer refuses more): a task number above it is no run's.
MAX_TASKS = 100_000


def new_run_id() -> str:
    """Sortable by time, unique enough for a lab: ``20261126-230501-3fa2``."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


def message_id(run_id: str, seq: int) -> str:
    return f"{run_id}.{seq}"


def task_properties(run_id: str, seq: int, count: int, persistent: bool, user: str) -> pika.BasicProperties:
    """A run's task, sent by ``user``: the broker refuses a ``user_id`` that is not the sender's own
    login, so that a worker can tell the lab's producer from a program that copies its headers."""
    return pika.BasicProperties(
        content_type="text/plain",
        content_encoding="utf-8",
        delivery_mode=PERSISTENT if persistent else TRANSIENT,
        message_id=message_id(run_id, seq),
        timestamp=int(time.time()),
        user_id=user,
        headers={"run_id": run_id, "seq": seq, "count": count},
    )


def seq_list(seqs: Iterable[int]) -> str:
    """``#3, #7-#10``: task numbers, runs folded so that a long list stays one line."""
    parts: list[str] = []
    start = prev = None
    for seq in [*seqs, None]:
        if seq is not None and prev is not None and seq == prev + 1:
            prev = seq
            continue
        if start is not None:
            parts.append(f"#{start}" if start == prev else f"#{start}-#{prev}")
        start = prev = seq
    return ", ".join(parts)


class TaskLabel(NamedTuple):
    """What identifies a task; empty for tasks from other producers. (A tuple: made for every task.)"""

    run_id: str | None
    seq: int | None
    message_id: str | None

    def encoded(self) -> str:
        """The label as fields of an event (``Output.event``'s ``encoded``). Made for every task: by hand."""
        run_id, seq, message_id = self
        return (
            f',"run_id":{"null" if run_id is None else json_string(run_id)}'
            f',"seq":{"null" if seq is None else seq}'  # an int, never a bool (task_label)
            f',"message_id":{"null" if message_id is None else json_string(message_id)}'
        )

    @property
    def number(self) -> str:
        return f"#{self.seq}" if self.seq is not None else "(unnumbered)"

    @property
    def from_a_run(self) -> bool:
        """Sent by the lab's producer; a task from any other program (a student's) is not."""
        return self.run_id is not None and self.seq is not None


# How much of a foreign task's text its events keep: enough to recognise it.
ORIGIN_TEXT_LIMIT = 60


def as_text(value: object) -> str | None:
    """A property or header as text, whatever a client sent: bytes decoded (bad bytes replaced), None kept."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return repr(value)


def task_origin(properties: pika.BasicProperties, text: str) -> str:
    """Where a task that did not come from the lab's producer came from, as far as it says."""
    shown = text if len(text) <= ORIGIN_TEXT_LIMIT else text[: ORIGIN_TEXT_LIMIT - 3] + "..."
    sender = as_text(properties.app_id) or as_text(properties.user_id) or "another producer"
    return f"{sender[:ORIGIN_TEXT_LIMIT]}: {shown!r}"


def task_label(properties: pika.BasicProperties, lab_user: str) -> TaskLabel:
    """Read a task's label, whatever a client put in its properties. (Read for every task: lean.)

    A task belongs to a run only when the broker vouches that the lab's own user sent it
    (``user_id``) and its run id and number have the producer's form; any other task is
    a foreign one (a student's), labelled by its message id alone.
    """
    message = properties.message_id
    if type(message) is not str:
        message = as_text(message)
    headers = properties.headers
    if type(headers) is not dict or properties.user_id != lab_user:
        return TaskLabel(None, None, message)
    run_id, seq = headers.get("run_id"), headers.get("seq")
    # An int, never a bool; a run id as the producer makes it, which may name a report's folder.
    if type(seq) is not int or not 1 <= seq <= MAX_TASKS or type(run_id) is not str or not _is_run_id(run_id):
        return TaskLabel(None, None, message)
    return TaskLabel(run_id, seq, message)


@functools.lru_cache(maxsize=64)
def _is_run_id(text: str) -> bool:
    """Whether a text has the producer's form of a run id. Asked for every task of a run: remembered
    (a fast path of the worker's: worker_image/fast_paths.py)."""
    return RUN_ID.match(text) is not None
