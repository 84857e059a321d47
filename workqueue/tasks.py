"""A task: its text, the AMQP properties that identify it, and the work it asks for.

As in the tutorial, every dot in a task's text is a second of work. The
producer stamps each task with its run, its sequence number and a message id
so that a report can follow each one from producer to worker.
"""

from __future__ import annotations

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


def new_run_id() -> str:
    """Sortable by time, unique enough for a lab: ``20261126-230501-3fa2``."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


def message_id(run_id: str, seq: int) -> str:
    return f"{run_id}.{seq}"


def task_properties(run_id: str, seq: int, count: int, persistent: bool) -> pika.BasicProperties:
    return pika.BasicProperties(
        content_type="text/plain",
        content_encoding="utf-8",
        delivery_mode=PERSISTENT if persistent else TRANSIENT,
        message_id=message_id(run_id, seq),
        timestamp=int(time.time()),
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


def task_origin(properties: pika.BasicProperties, text: str) -> str:
    """Where a task that did not come from the lab's producer came from, as far as it says."""
    shown = text if len(text) <= ORIGIN_TEXT_LIMIT else text[: ORIGIN_TEXT_LIMIT - 3] + "..."
    sender = properties.app_id or properties.user_id or "another producer"
    return f"{sender}: {shown!r}"


def task_label(properties: pika.BasicProperties) -> TaskLabel:
    """Read a task's label; tolerant of messages sent by other tools. (Read for every task: lean.)"""
    headers = properties.headers
    if type(headers) is not dict:
        return TaskLabel(None, None, properties.message_id)
    run_id, seq = headers.get("run_id"), headers.get("seq")
    if type(run_id) is not str:
        run_id = run_id.decode("utf-8", "replace") if type(run_id) is bytes else None
    return TaskLabel(run_id, seq if type(seq) is int else None, properties.message_id)  # an int, not a bool
