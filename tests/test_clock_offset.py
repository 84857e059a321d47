"""report.yml's container clocks: the script clock_offset runs on a worker host, here with a `docker` of the
test's own on PATH (the containers' clocks are the test's processes': one shifted by a preloaded offset is
out of reach without libfaketime, so the shift is made in the answering program). The end-to-end reading
of a real container 40 s behind is tests/test_drills.py's clock test."""

from __future__ import annotations

import importlib.util
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

PLUGIN = Path(__file__).resolve().parents[1] / "playbooks" / "action_plugins" / "clock_offset.py"


def _plugin() -> ModuleType:
    spec = importlib.util.spec_from_file_location("clock_offset", PLUGIN)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _on_the_host(tmp_path: Path, docker: str, *containers: str) -> dict[str, object]:
    """The host script's answer, with this `docker` (a shell script) first on PATH."""
    fake = tmp_path / "docker"
    fake.write_text("#!/bin/sh\n" + docker)
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    command = [sys.executable, "-c", _plugin().ON_THE_HOST, *containers]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env, check=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


# `docker exec -i NAME python3 -c ANSWER`: the answer's program run here, its clock 40 s behind when NAME says so.
ANSWERING = """
name="$3"; shift 5
if [ "$name" = behind ]; then
  exec python3 -c "import sys, time
time.time = (lambda real: lambda: real() - 40)(time.time)
exec(sys.argv[1])" "$1"
fi
exec python3 -c "$1"
"""


def test_each_containers_clock_is_read_against_the_hosts_within_its_round_trip(tmp_path: Path) -> None:
    found = _on_the_host(tmp_path, ANSWERING, "level", "behind")
    level, behind = found["level"], found["behind"]
    assert isinstance(level, list) and isinstance(behind, list), found
    assert abs(level[0]) <= level[1] + 0.001 and level[1] < 0.05, level
    assert abs(behind[0] + 40) <= behind[1] + 0.001 and behind[1] < 0.05, behind


@pytest.mark.parametrize(
    ("docker", "said"),
    [
        ("echo 'Error response from daemon: container x is paused' >&2; exit 1", "container x is paused"),
        ("exec python3 -c 'print(\"not a clock\", flush=True); import time; time.sleep(30)'", "could not convert"),
        ("exec sleep 30", "no answer within 10 s"),
    ],
)
def test_a_container_that_cannot_answer_is_named_with_why_and_the_others_still_read(
    tmp_path: Path, docker: str, said: str
) -> None:
    script = f'if [ "$3" = good ]; then shift 5; exec python3 -c "$1"; fi\n{docker}\n'
    found = _on_the_host(tmp_path, script, "bad", "good")
    assert isinstance(found["bad"], str) and said in found["bad"], found
    assert isinstance(found["good"], list), found


def test_a_containers_offset_adds_its_hosts_and_an_answer_that_is_not_two_numbers_is_said() -> None:
    answered = json.dumps({"a": [-40.0, 0.001], "b": "Error: container b is paused", "d": ["x", 1], "e": [1, -1]})
    read = _plugin().on_this_machines_clock((2.5, 0.02), ["a", "b", "c", "d", "e"], "noise\n" + answered, "sudo: no")
    assert read[0] == {"container": "a", "offset": -37.5, "uncertainty": 0.021}
    assert read[1] == {"container": "b", "failed": True, "msg": "Error: container b is paused"}
    assert read[2] == {"container": "c", "failed": True, "msg": "not measured: sudo: no"}
    assert [r.get("failed") for r in read[3:]] == [True, True]
