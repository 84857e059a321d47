"""Running the playbooks against a virtual lab, and reading what its workers did.

Used by ``make demo`` and by the end-to-end tests: both drive the lab only
through ``ansible-playbook``, and read the workers' events with ``docker logs``
on the lab hosts, as a person would.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import docker

from workqueue.events import read_events
from workqueue.virtual_lab.hosts import ROOT, Lab

PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
FAULTS_RECORD = "/var/lib/workqueue-lab/runs/faults.jsonl"  # lab_runs_dir's, in playbooks/group_vars/all/lab.yml
RUN_ID = re.compile(r"Run (\d{8}-\d{6}-[0-9a-f]{4}): \d+ sent")
# The worker containers on a host, by number (worker_container_prefix, in playbooks/group_vars/all/lab.yml).
WORKER_CONTAINER = "workqueue-worker-{}"
STRIKE_TASK = "TASK [drill : Wait until the worker holds a task"  # roles/drill/tasks/in_hand.yml: waits, then strikes
T = TypeVar("T")


def playbook_command(lab: Lab, name: str, *args: str, inventory: Path | None = None) -> list[str]:
    return [str(PLAYBOOK), "-i", str(inventory or lab.inventory), str(ROOT / "playbooks" / name), *args]


def log_header(name: str, args: tuple[str, ...]) -> str:
    """The line a playbook's output starts with in a log of several."""
    return f"\n$ ansible-playbook playbooks/{name} {' '.join(args)}\n"


def playbook(
    lab: Lab, name: str, *args: str, inventory: Path | None = None, log: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run playbooks/NAME against the lab; with ``log``, append its output there and print a dot per task."""
    command = playbook_command(lab, name, *args, inventory=inventory)
    if log is None:
        return subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=ROOT, check=False)
    lines = []
    log.parent.mkdir(parents=True, exist_ok=True)
    with (
        log.open("a") as kept,
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT) as run,
    ):
        assert run.stdout is not None
        kept.write(log_header(name, args))
        for line in run.stdout:
            lines.append(line)
            kept.write(line)
            if line.startswith("TASK ["):
                print(".", end="", flush=True)
    return subprocess.CompletedProcess(command, run.returncode, "".join(lines), "")


def drill_on_cue(
    lab: Lab, produce: Callable[[], T], *args: str, log: Path | None = None, name: str = "drill.yml"
) -> tuple[subprocess.CompletedProcess[str], T | None]:
    """drill.yml (or ``name``, which imports it) on a worker, started before the run it strikes: once it
    watches the worker, ``produce`` runs.

    Started after the run was produced, the drill's first tasks (seconds of SSH on a busy machine) can
    outlast a run of short tasks, and find nothing left in hand to strike. ``produce`` does not run when
    the drill ends before it watches (it failed: its output says why). With ``log``, the drill's output
    is appended there once it is over.
    """
    command = playbook_command(lab, name, *args)
    lines: list[str] = []
    watching, over = threading.Event(), threading.Event()
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT) as run:
        assert run.stdout is not None
        stdout = run.stdout

        def read() -> None:
            for line in stdout:
                lines.append(line)
                if line.startswith(STRIKE_TASK):
                    watching.set()
            over.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        deadline = time.monotonic() + 300
        while not watching.is_set() and not over.is_set() and time.monotonic() < deadline:
            watching.wait(timeout=0.2)
        produced = produce() if watching.is_set() else None
        try:
            run.wait(timeout=900)
        finally:
            run.kill()
        reader.join(timeout=10)
    if log is not None:
        with log.open("a") as kept:
            kept.write(log_header(name, args) + "".join(lines))
    return subprocess.CompletedProcess(command, run.returncode, "".join(lines), ""), produced


def recap(output: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP: host -> {ok, changed, unreachable, failed, ...}."""
    found = {}
    for host, counts in re.findall(r"^(\S+)\s+:\s+(ok=.*)$", output, re.MULTILINE):
        found[host] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", counts)}
    return found


def report_text(output: str) -> list[str]:
    """The report that report.yml shows (its last task's message), as lines."""
    block = output.rsplit("msg: |-\n", 1)[-1].split("\nPLAY RECAP", 1)[0]
    return [line.removeprefix("        ") for line in block.rstrip().splitlines()]


def run_id_of(output: str) -> str:
    match = RUN_ID.search(output)
    if match is None:
        raise ValueError("the producer's output names no run")
    return match.group(1)


def on(client: docker.DockerClient, host: str, *command: str) -> str:
    """A command's output on a lab host (as root, the way `docker exec` runs it); it must succeed."""
    code, output = on_result(client, host, *command)
    if code != 0:
        raise RuntimeError(f"{' '.join(command)} on {host} exited {code}: {output[-2000:]}")
    return output


def read_on(client: docker.DockerClient, host: str, *command: str, tries: int = 4) -> str:
    """What a command that reads (a file, `docker inspect`, a JSON listing) prints on a lab host; it must succeed."""
    code, output = read_result(client, host, *command, tries=tries)
    if code != 0:
        raise RuntimeError(f"{' '.join(command)} on {host} exited {code}: {output[-2000:]}")
    return output


def read_result(client: docker.DockerClient, host: str, *command: str, tries: int = 4) -> tuple[int, str]:
    """A reading command's exit code and its whole output on a lab host, whatever the code.

    The engine can hand back an exec's output empty or cut though the command printed it all (docker-py#2042,
    moby#27289: seen here in CI runs under load, a record's `tail`, a host's `docker ps` read as no container,
    a broker's configuration read as an empty file). The command's shell says its exit code after its
    output: when that is missing, the output was lost on its way and the command is asked again, up to
    ``tries`` times; a reading command changes nothing. (The exit code comes from the exec's inspect, not
    its output, and was never seen lost: ``on_result`` is enough for a test of it.)
    """
    for attempt in range(tries):
        code, output, whole = _exec(client, host, command)
        if whole:
            return code, output
        time.sleep(0.5 * (attempt + 1))
    raise RuntimeError(f"{' '.join(command)} on {host}: its output was lost {tries} times on its way from the host")


def installed(client: docker.DockerClient, host: str, package: str) -> bool:
    """Whether a Debian package is installed on a lab host (dpkg's status, not a file left behind)."""
    return read_result(client, host, "dpkg-query", "-W", "-f", "${Status}", package)[1] == "install ok installed"


def on_result(client: docker.DockerClient, host: str, *command: str) -> tuple[int, str]:
    """A command's exit code and output on a lab host, run once whatever the code (``read_result`` reads)."""
    code, output, _ = _exec(client, host, command)
    return code, output


# What the shell a command runs under prints after the command's output: the mark, then its exit code. The
# command's standard error goes into its standard output there: the engine's two streams keep no order
# between them, and the mark must come after both. The shell exits with the command's code.
END_MARK = "\n@@workqueue-lab-exit "
_MARKED = f'code=0; "$@" 2>&1 || code=$?; printf "\\n{END_MARK.strip()} %s" "$code"; exit "$code"'


def _exec(client: docker.DockerClient, host: str, command: tuple[str, ...]) -> tuple[int, str, bool]:
    """The command's exit code and output, and whether the output came whole (its shell's mark at its end)."""
    result = client.containers.get(host).exec_run(["sh", "-c", _MARKED, "sh", *command])
    output = result.output.decode()
    head, mark, code = output.rpartition(END_MARK)
    if not mark or not code.isdigit():
        return result.exit_code, output, False
    return int(code), head, True


def last_fault(client: docker.DockerClient, producer: str) -> dict[str, Any]:
    """The record drill.yml kept of its last fault, on the producer host (what report.yml reads)."""
    return dict(json.loads(read_on(client, producer, "tail", "-n", "1", FAULTS_RECORD)))


def queue_row(
    client: docker.DockerClient, host: str, queue: str, *columns: str, vhost: str = "workqueue"
) -> dict[str, Any]:
    """A queue as ``rabbitmqctl list_queues`` on a broker host shows it (these columns); {} when there is none."""
    listed = read_on(
        client, host, "rabbitmqctl", "list_queues", "-q", "-p", vhost, "--formatter", "json", "name", *columns
    )
    return next((row for row in json.loads(listed or "[]") if row["name"] == queue), {})


def container_events(client: docker.DockerClient, host: str, worker: int = 1) -> list[dict[str, Any]]:
    """A worker container's events, from `docker logs` on its host (kept after docker stop).

    The events are the container's standard error; they are read whole (``read_result``). A `docker logs`
    that fails (a busy engine, a container being removed) is asked again, then raises: read as no events
    at all, it would pass for a worker that never received a task.
    """
    name = WORKER_CONTAINER.format(worker)
    for attempt in range(4):
        code, logs = read_result(client, host, "sh", "-c", 'docker logs "$1" 2>&1 >/dev/null', "sh", name)
        if code == 0:
            return list(read_events(logs.splitlines()))
        time.sleep(0.5 * (attempt + 1))
    raise RuntimeError(f"docker logs {name} on {host} exited {code}: {logs.strip()[-300:]}")


def worker_events(client: docker.DockerClient, host: str, run_id: str, worker: int = 1) -> list[dict[str, Any]]:
    """A worker container's events of one run."""
    return [e for e in container_events(client, host, worker) if e.get("run_id") == run_id]


def seqs(events: list[dict[str, Any]], kind: str) -> set[int]:
    return {e["seq"] for e in events if e["event"] == kind}


def unfinished(client: docker.DockerClient, host: str, run_id: str) -> set[int]:
    """Tasks of the run that a host's worker received and has not finished (one read of its logs)."""
    events = worker_events(client, host, run_id)
    return seqs(events, "received") - seqs(events, "done")


def done_by(client: docker.DockerClient, hosts: list[str], run_id: str) -> dict[int, list[str]]:
    """Task number -> the worker hosts that finished it."""
    done: dict[int, list[str]] = {}
    for host in hosts:
        for seq in sorted(seqs(worker_events(client, host, run_id), "done")):
            done.setdefault(seq, []).append(host)
    return done


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Ask until the condition holds, or raise after ``timeout`` seconds.

    Between two asks it sleeps 0.3 s, or twice as long as the last ask took: a condition that runs
    `rabbitmqctl` (an Erlang VM started, 0.4 s of CPU a call) then keeps a core a third busy at most,
    not two-thirds, while the labs' other lanes share the machine's cores.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        asked = time.monotonic()
        if condition():
            return
        time.sleep(max(0.3, 2 * (time.monotonic() - asked)))
    raise TimeoutError(f"no {what} within {timeout:g} s")
