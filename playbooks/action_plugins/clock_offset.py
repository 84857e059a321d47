"""clock_offset: how far a lab host's clock is from this machine's (the control node's), and its containers'.

    - name: Measure the host's clock, and its running workers'
      clock_offset:
        containers: [workqueue-worker-1]   # optional
      register: found   # found.offset: seconds ahead (behind if negative); found.uncertainty;
                        # found.containers: [{container, offset, uncertainty} or {container, failed, msg}]

The host's clock: read there a few times between two readings of this machine's, keeping the reading
with the shortest round trip; its offset is measured from the round trip's middle, within half the round
trip (the uncertainty). A container's: one `docker exec` per container on the host answers a few prompts
with its clock, timed the same way on the host's clock, and added to the host's offset (so are the two
uncertainties). It reads where the events are stamped: a container's clock is its host's, unless
something in it shifts time for its programs. Changes nothing.
"""

from __future__ import annotations

import json
import math
import shlex
import time
from typing import Any

from ansible.plugins.action import ActionBase

SAMPLES = 5
READ_CLOCK = "python3 -c 'import time; print(repr(time.time()))'"
# Run on the host (its argv: the containers): for each, one process in the container answers each
# newline with its clock; the host times each answer on its own clock. One JSON line: name -> [offset,
# half the round trip] or the reason it could not be read. Every wait is bounded (a paused container).
ON_THE_HOST = f"""
import json, select, subprocess, sys, time
ANSWER = "import sys, time\\nfor _ in sys.stdin: print(repr(time.time()), flush=True)"
def read(name):
    # Unbuffered: a prompt written to a docker exec that has ended fails here, not again at the close.
    with subprocess.Popen(["docker", "exec", "-i", name, "python3", "-c", ANSWER], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0) as answering:
        try:
            best = None
            for _ in range({SAMPLES}):
                before = time.time()
                try:
                    answering.stdin.write(b"\\n")
                except OSError:  # docker exec has already ended: its reason is on its standard error
                    line = ""
                else:
                    line = answering.stdout.readline() if select.select([answering.stdout], [], [], 10)[0] else ""
                after = time.time()
                if not line.strip():
                    answering.kill()
                    said = answering.stderr.read().decode(errors="replace").strip()
                    raise ValueError(said or "no answer within 10 s")
                sample = (after - before, float(line) - (before + after) / 2)
                best = sample if best is None or sample < best else best
            answering.stdin.close()
            answering.wait(timeout=10)
            return [best[1], best[0] / 2]
        finally:
            if answering.poll() is None:
                answering.kill()
found = {{}}
for name in sys.argv[1:]:
    try:
        found[name] = read(name)
    except Exception as error:
        found[name] = str(error) or type(error).__name__
print(json.dumps(found))
"""


class ActionModule(ActionBase):  # type: ignore[misc]  # Ansible's base class is untyped
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("containers",))

    def run(self, tmp: str | None = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result: dict[str, Any] = super().run(tmp, task_vars)
        result["changed"] = False
        containers = [str(name) for name in self._task.args.get("containers") or []]
        best: tuple[float, float] | None = None  # (round trip, offset)
        for _ in range(SAMPLES):
            before = time.time()
            answer = self._low_level_execute_command(READ_CLOCK, sudoable=True)
            after = time.time()
            theirs = _number(answer.get("stdout", ""))
            if answer.get("rc") != 0 or theirs is None:
                result.update(failed=True, msg=f"the clock could not be read: {_last_line(answer)}")
                return result
            sample = (after - before, theirs - (before + after) / 2)
            best = sample if best is None or sample < best else best
        assert best is not None
        offset, uncertainty = best[1], best[0] / 2
        result.update(offset=round(offset, 3), uncertainty=round(uncertainty, 3), containers=[])
        if containers:
            command = shlex.join(["python3", "-c", ON_THE_HOST, *containers])
            answer = self._low_level_execute_command(command, sudoable=True)
            result["containers"] = on_this_machines_clock(
                (offset, uncertainty), containers, answer.get("stdout", ""), _last_line(answer)
            )
        return result


def on_this_machines_clock(
    host: tuple[float, float], containers: list[str], answered: str, why: str
) -> list[dict[str, Any]]:
    """Each container's clock against this machine's: its offset from its host's clock (the host script's
    answer, ``answered``) plus the host's own, ``host`` (offset, uncertainty), the uncertainties added; or
    why it was not read (``why``: what the host said, when the script's answer names no such container)."""
    found = _answers(answered)
    read: list[dict[str, Any]] = []
    for name in containers:
        measured = found.get(name, f"not measured: {why}")
        numbers = [_number(str(x)) for x in measured] if isinstance(measured, list) and len(measured) == 2 else []
        apart, within = numbers if len(numbers) == 2 else (None, None)
        if apart is not None and within is not None and math.isfinite(apart) and math.isfinite(within) and within >= 0:
            offset, uncertainty = host[0] + apart, host[1] + within
            read.append({"container": name, "offset": round(offset, 3), "uncertainty": round(uncertainty, 3)})
        else:
            said = str(measured).strip().splitlines()
            read.append({"container": name, "failed": True, "msg": said[-1][:200] if said else "no reason given"})
    return read


def _number(text: str) -> float | None:
    lines = text.strip().splitlines()
    try:
        return float(lines[-1]) if lines else None
    except ValueError:
        return None


def _answers(text: str) -> dict[str, Any]:
    """The host script's JSON line (the last line of its output), or nothing."""
    lines = text.strip().splitlines()
    try:
        found = json.loads(lines[-1]) if lines else {}
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def _last_line(answer: dict[str, Any]) -> str:
    said = (answer.get("stderr") or answer.get("stdout") or "no answer").strip().splitlines()
    return said[-1][:200] if said else "no answer"
