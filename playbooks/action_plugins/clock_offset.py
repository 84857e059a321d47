"""clock_offset: how far a lab host's clock is from this machine's (the control node's), or a container's on it.

    - name: Measure the host's clock
      clock_offset:              # or  clock_offset: {container: workqueue-worker-1}
      register: found            # found.offset: seconds ahead (behind if negative); found.uncertainty

Reads the clock there a few times between two readings of this machine's and keeps the reading with the
shortest round trip: its offset is measured from the round trip's middle, within half the round trip
(the uncertainty). It reads where the events are stamped: a container's clock is its host's, unless
something in it shifts time for its programs. Changes nothing.
"""

from __future__ import annotations

import shlex
import time
from typing import Any

from ansible.plugins.action import ActionBase

SAMPLES = 5
READ_CLOCK = "python3 -c 'import time; print(repr(time.time()))'"


class ActionModule(ActionBase):  # type: ignore[misc]  # Ansible's base class is untyped
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("container",))

    def run(self, tmp: str | None = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result: dict[str, Any] = super().run(tmp, task_vars)
        result["changed"] = False
        container = self._task.args.get("container")
        command = f"docker exec {shlex.quote(str(container))} {READ_CLOCK}" if container else READ_CLOCK
        best: tuple[float, float] | None = None  # (round trip, offset)
        for _ in range(SAMPLES):
            before = time.time()
            answer = self._low_level_execute_command(command, sudoable=True)
            after = time.time()
            theirs = _number(answer.get("stdout", ""))
            if answer.get("rc") != 0 or theirs is None:
                said = (answer.get("stderr") or answer.get("stdout") or "no answer").strip().splitlines()
                result.update(failed=True, msg=f"the clock could not be read: {said[-1][:200] if said else ''}")
                return result
            sample = (after - before, theirs - (before + after) / 2)
            best = sample if best is None or sample < best else best
        assert best is not None
        result.update(offset=round(best[1], 3), uncertainty=round(best[0] / 2, 3))
        return result


def _number(text: str) -> float | None:
    lines = text.strip().splitlines()
    try:
        return float(lines[-1]) if lines else None
    except ValueError:
        return None
