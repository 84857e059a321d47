#!/usr/bin/env python3
"""Wait until a worker container holds a task in hand, strike at once; print that task (one JSON line).

The drill role (roles/drill) runs it on the worker's host, so that a fault always catches a task:
    task_in_hand.py CONTAINER SECONDS [COMMANDS]
COMMANDS, a JSON list of commands (each a list of arguments), run one after the other as soon as the
task is seen (the fault's heal timer, then the fault: docker pause, say), within milliseconds: Ansible's
next task would come seconds later, and the task could be over by then.
A task is in hand from the worker's ``received`` event until its ``done`` or ``abandoned``; the
worker's events are on its standard error, read through ``docker logs`` (what is there already,
then what comes). Any line that is not such an event is passed over: whatever the worker printed,
this never fails on it. Exit 1 with one line saying why when no task is in hand within SECONDS.
Standard library only: it runs on the lab's hosts (Debian 12 and 13).
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time

HISTORY_LINES = 5000  # a worker holds at most its prefetch: its last few thousand lines tell what it holds
FINISHED = ("done", "abandoned")


class InHand:
    """The tasks a worker holds, from its events in order."""

    def __init__(self) -> None:
        self.tasks: dict[str, dict[str, object]] = {}
        self.seen: set[str] = set()  # the lines read already, so that a line read twice counts once

    def read(self, line: str) -> None:
        if line in self.seen:
            return
        self.seen.add(line)
        try:
            event = json.loads(line)
        except ValueError:
            return
        if not isinstance(event, dict):
            return
        kind = event.get("event")
        if kind == "worker_started":  # a new life of the container: it holds nothing of the last one
            self.tasks.clear()
            return
        key = event.get("message_id")
        key = key if isinstance(key, str) else f"{event.get('run_id')!r}.{event.get('seq')!r}"
        if kind == "received":
            self.tasks[key] = event
        elif kind in FINISHED:
            self.tasks.pop(key, None)

    def first(self) -> dict[str, object] | None:
        """The task held longest: the one the worker is on (with prefetch above 1, others wait behind it)."""
        for event in self.tasks.values():
            caught: dict[str, object] = {}
            for name, kind in (("run_id", str), ("seq", int), ("message_id", str), ("ts", float)):
                value = event.get(name)
                caught[name] = value if isinstance(value, kind) and not isinstance(value, bool) else None
            return caught
        return None


def wait(container: str, seconds: float) -> dict[str, object] | str:
    """The task in hand, or why there is none."""
    started = time.time()
    deadline = time.monotonic() + seconds
    hand = InHand()
    since = f"{started - 1:.3f}"  # a second of overlap: a line read twice counts once
    past = subprocess.run(
        ["docker", "logs", "--tail", str(HISTORY_LINES), container],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=False,
    )
    if past.returncode != 0:
        return f"cannot read the logs of {container}: {past.stderr.decode(errors='replace').strip()[:200]}"
    for line in past.stderr.decode(errors="replace").splitlines():
        hand.read(line)
    if (caught := hand.first()) is not None:
        return caught
    follow = subprocess.Popen(
        ["docker", "logs", "--follow", "--since", since, container],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert follow.stderr is not None
    selector = selectors.DefaultSelector()
    selector.register(follow.stderr, selectors.EVENT_READ)
    pending = b""
    try:
        while (left := deadline - time.monotonic()) > 0:
            if not selector.select(timeout=left):
                continue
            chunk = os.read(follow.stderr.fileno(), 65536)
            if not chunk:
                return f"{container} stopped while the drill waited for it to take a task"
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                hand.read(line.decode(errors="replace"))
            if (caught := hand.first()) is not None:
                return caught
        return f"{container} took no task within {seconds:g} s"
    finally:
        follow.kill()
        follow.wait()


def strike(commands: list[list[str]]) -> str | None:
    """Run the commands in turn; why one failed, or None."""
    for command in commands:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            return f"{' '.join(command)} failed: {(done.stderr or done.stdout).strip()[:200]}"
    return None


def main(argv: list[str]) -> int:
    if len(argv) not in (3, 4):
        print("usage: task_in_hand.py CONTAINER SECONDS [COMMANDS]", file=sys.stderr)
        return 2
    commands = json.loads(argv[3]) if len(argv) == 4 else []
    started = time.monotonic()
    found = wait(argv[1], float(argv[2]))
    if isinstance(found, str):
        print(found)
        return 1
    found["waited"] = round(time.monotonic() - started, 2)
    found["struck"] = time.time()
    failed = strike(commands)
    if failed:
        print(failed)
        return 1
    print(json.dumps(found))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
