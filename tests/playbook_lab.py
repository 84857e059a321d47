"""A lab of the tests' own, driven through ansible-playbook only: what test_playbooks and test_drills share.

Four hosts: NAME1 the broker, NAME2 and NAME3 workers, NAME4 the producer. Each test asks for the
deployment it needs with ``deploy(...)``, which runs site.yml only when the lab is not already
deployed that way (a test that leaves the lab otherwise, a worker killed say, says so with
``disturbed()``). So the tests of a module share one deployed lab when run in order, and any one
of them runs on its own with ``pytest -k``. Each module has a lab of its own, so that the two run
in lanes side by side.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker

from workqueue.machine import engine, images
from workqueue.virtual_lab import hosts, lab_runs
from workqueue.virtual_lab.hosts import Lab
from workqueue.virtual_lab.lab_runs import (
    done_by,
    queue_row,
    read_on,
    read_result,
    recap,
    run_id_of,
    unfinished,
    wait_until,
)

ROOT = Path(__file__).resolve().parents[1]
# Every run passes these, so the workers' settings stay the same: short tasks, and a 3 s heartbeat,
# so that the broker gives up on a frozen worker within about 9 s.
HEARTBEAT = 3
FAST = ("-e", "seconds_per_dot=0.2", "-e", f"heartbeat_seconds={HEARTBEAT}")
NOACK = ("-e", "task_mode=noack")
GUEST = ("-e", "rabbitmq_guest_remote_access=true")
# Drill tasks last 6 s (30 dots at 0.2 s): a stop through ansible-playbook takes a few seconds.
LONG = ("-e", "task_message=long..............................")
# The freeze in ack mode must land while a task is in hand, not at its end (between its done and
# its ack: done twice, but not late), and outlast its remaining work by two heartbeats: 12 s tasks,
# 20 s frozen (the drill strikes once the worker holds a task).
LONGER = ("-e", "task_message=longer" + "." * 60)
# Faults that heal by themselves, or that leave every worker as site.yml left it.
SELF_HEALING = ("freeze", "cut", "lossy", "broker-restart", "broker-down", "broker-disk", "students")
# What PlaybookLab.deployed says after teardown.yml: the next deploy runs site.yml on hosts it left bare.
TORN_DOWN = ("teardown.yml",)


def worker_events(client: docker.DockerClient, host: str, run_id: str) -> list[dict[str, Any]]:
    return lab_runs.worker_events(client, host, run_id)


def succeeded(done: subprocess.CompletedProcess[str]) -> dict[str, dict[str, int]]:
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    return recap(done.stdout)


def changed(done: subprocess.CompletedProcess[str]) -> dict[str, int]:
    return {host: counts["changed"] for host, counts in recap(done.stdout).items()}


class PlaybookLab:
    """One lab's hosts, its deployment, and what its broker and workers say."""

    def __init__(self, lab: Lab) -> None:
        assert lab.credentials is not None
        self.lab = lab
        self.broker, self.worker_a, self.worker_b, self.producer = (f"{lab.name}{i}" for i in range(1, 5))
        self.workers = (self.worker_a, self.worker_b)
        self.all_hosts = (self.broker, *self.workers, self.producer)
        self.broker_address = f"{lab.subnet_prefix}.{hosts.FIRST_ADDRESS}"
        self.credentials = lab.credentials / "rabbitmq-workqueue-password"
        # The class account's (rabbitmq_class_user): what students' own programs log in with.
        self.class_credentials = lab.credentials / "rabbitmq-student-password"
        self.deployed: tuple[str, ...] | None = None  # the settings site.yml last ran with, None: unknown
        # Set by one_worker_stopped: the settings the lab is deployed with, save the one host's worker stopped.
        self.stopped: tuple[tuple[str, ...], str] | None = None

    # --- the lab and its deployment

    def hosts_up(self) -> Iterator[docker.DockerClient]:
        """For a module's fixture: the images, the lab made anew, and removed after."""
        client = engine.ensure_engine()
        images.program_images(client)
        hosts.down(client, self.lab)
        hosts.up(client, 4, self.lab)
        self.disturbed()
        yield client
        hosts.down(client, self.lab)

    def playbook(self, name: str, *args: str, inventory: Path | None = None) -> subprocess.CompletedProcess[str]:
        return lab_runs.playbook(self.lab, name, *args, inventory=inventory)

    def deploy(self, client: docker.DockerClient, *settings: str) -> subprocess.CompletedProcess[str] | None:
        """The lab deployed with these settings (on top of FAST): site.yml, unless it already is."""
        queue = "hello" if "task_mode=noack" in settings else "task_queue"
        vhost = "/" if "rabbitmq_guest_remote_access=true" in settings else "workqueue"
        done = None
        if self.deployed != settings:
            self.disturbed()
            done = self.playbook("site.yml", *FAST, *settings)
            succeeded(done)
        # Deployed, or healed after a fault that heals by itself: both workers consuming.
        wait_until(lambda: self.consumers(client, queue, vhost) == 2, 60, f"two consumers on {queue}")
        self.deployed = settings
        return done

    def teardown(self, *args: str) -> subprocess.CompletedProcess[str]:
        """teardown.yml, which must succeed: the lab is then torn down (tests that need it so share it)."""
        self.disturbed()
        done = self.playbook("teardown.yml", *args)
        succeeded(done)
        self.deployed = TORN_DOWN
        return done

    def disturbed(self) -> None:
        """The lab is no longer as the last deploy left it: the next deploy runs site.yml."""
        self.deployed = None
        self.stopped = None

    def one_worker_stopped(self, settings: tuple[str, ...] | None, host: str) -> None:
        """The lab as a deploy with these settings left it, but for the worker on this host: stopped
        (docker stop, by stop_worker.yml). A test that needs the lab so takes it instead of deploying."""
        self.disturbed()
        self.stopped = None if settings is None else (settings, host)

    # --- what the broker and the workers say

    def consumers(self, client: docker.DockerClient, queue: str, vhost: str = "workqueue") -> int:
        return int(queue_row(client, self.broker, queue, "consumers", vhost=vhost).get("consumers", 0))

    def queue_counts(self, client: docker.DockerClient, queue: str, vhost: str = "workqueue") -> tuple[int, int]:
        row = queue_row(client, self.broker, queue, "messages_ready", "messages_unacknowledged", vhost=vhost)
        return row.get("messages_ready", 0), row.get("messages_unacknowledged", 0)

    def settled_counts(self, client: docker.DockerClient, queue: str, expected: tuple[int, int]) -> None:
        """The broker comes to count (ready, unacknowledged): a quorum queue's figures lag by seconds."""
        try:
            wait_until(lambda: self.queue_counts(client, queue) == expected, 30, f"{expected} on {queue}")
        except TimeoutError:
            assert self.queue_counts(client, queue) == expected

    def done_seqs(self, client: docker.DockerClient, run_id: str) -> dict[int, list[str]]:
        return done_by(client, list(self.workers), run_id)

    def workers_on(self, client: docker.DockerClient, host: str) -> dict[str, tuple[str, str]]:
        """Each worker container on a host, running or not: name -> (container id, when it started)."""
        listed = read_on(client, host, "docker", "ps", "-aq", "--filter", "label=workqueue-lab=worker").split()
        if not listed:
            return {}
        found = json.loads(read_on(client, host, "docker", "inspect", *listed))
        return {c["Name"].lstrip("/"): (c["Id"], c["State"]["StartedAt"]) for c in found}

    def lab_state(self, client: docker.DockerClient) -> dict[str, object]:
        """What a playbook could change: the containers on the hosts, the broker's vhosts, users and configuration."""
        state: dict[str, object] = {host: self.workers_on(client, host) for host in self.workers}
        state["vhosts"] = read_on(client, self.broker, "rabbitmqctl", "list_vhosts", "-q")
        state["users"] = read_on(client, self.broker, "rabbitmqctl", "list_users", "-q")
        state["config"] = read_result(client, self.broker, "cat", "/etc/rabbitmq/rabbitmq.conf")
        return state

    def produce(self, *args: str) -> str:
        done = self.playbook("produce.yml", *FAST, *args)
        assert done.returncode == 0, done.stdout[-3000:]
        return run_id_of(done.stdout)

    def report(
        self, folder: Path, *args: str, inventory: Path | None = None
    ) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
        """Run playbooks/report.yml into a folder of the test's; its JSON report, when it wrote one."""
        done = self.playbook("report.yml", "-e", f"report_dir={folder}", *args, inventory=inventory)
        written = sorted(folder.glob("*/report.json"))
        return done, json.loads(written[-1].read_text()) if written else {}

    # --- drills

    def drill(self, *args: str) -> subprocess.CompletedProcess[str]:
        """playbooks/drill.yml, which must succeed; a fault that does not heal by itself disturbs the lab."""
        self._disturbed_by(args)
        done = self.playbook("drill.yml", *FAST, *args)
        succeeded(done)
        return done

    def _disturbed_by(self, args: tuple[str, ...]) -> None:
        """A drill's fault that does not heal by itself leaves the lab otherwise than site.yml did."""
        fault = next((a.partition("=")[2] for a in args if a.startswith("fault=")), "")
        if fault not in SELF_HEALING:
            self.disturbed()

    def in_hand(self, client: docker.DockerClient, run_id: str) -> int:
        """Wait until the second worker host has a task of the run in hand; its number."""
        wait_until(lambda: bool(unfinished(client, self.worker_b, run_id)), 30, f"a task in hand on {self.worker_b}")
        return min(unfinished(client, self.worker_b, run_id))

    def drill_mid_run(
        self,
        client: docker.DockerClient,
        fault: str,
        *settings: str,
        tasks: int,
        duration: int | None = None,
        message: tuple[str, str] = LONG,
    ) -> tuple[str, int]:
        """A run of long tasks, and the fault once the second worker host holds one: the run id, and that task.

        A worker's fault waits for the task by itself (drill.yml), started before the run is produced so that
        its first tasks cannot outlast the run, and its record names the task it caught; the broker's faults
        wait for none, so the test waits for the task in hand before it starts one of those.
        """
        self.deploy(client, *settings)
        on_broker = fault.startswith("broker")
        args = (*settings, "-e", f"fault={fault}")
        args += () if on_broker else ("-e", f"target={self.worker_b}")
        args += ("-e", f"duration={duration}") if duration else ()
        produce = ("-e", f"task_count={tasks}", *message)
        started = time.monotonic()
        if on_broker:
            run_id = self.produce(*settings, *produce)
            held = self.in_hand(client, run_id)
            started = time.monotonic()
            self.drill(*args)
        else:
            self._disturbed_by(args)
            done, produced = lab_runs.drill_on_cue(self.lab, lambda: self.produce(*settings, *produce), *FAST, *args)
            succeeded(done)
            assert produced is not None, done.stdout[-3000:]
            run_id = produced
        assert duration is None or time.monotonic() - started >= duration, "a lasting fault lasts its duration"
        record = lab_runs.last_fault(client, self.producer)
        if not on_broker:
            caught = record["caught"]
            assert caught["run_id"] == run_id and 1 <= caught["seq"] <= tasks, record
            held = caught["seq"]
        # Mid-run: the run was not over when the fault struck, and a worker's fault caught its task unfinished
        # (the broker's faults wait for no task: the one held before may be done by the time one strikes).
        start = float(record["start"])
        finished = [e for host in self.workers for e in worker_events(client, host, run_id) if e["event"] == "done"]
        assert len({e["seq"] for e in finished if e["ts"] < start}) < tasks, ("the run was over", record)
        assert on_broker or all(e["ts"] > start for e in finished if e["seq"] == held), (held, record)
        return run_id, held

    def connection_lost_since(self, client: docker.DockerClient, host: str) -> bool:
        """Whether the host's worker lost its connection after the last drill's fault began."""
        start = float(lab_runs.last_fault(client, self.producer)["start"])
        events = lab_runs.container_events(client, host)
        return any(e["event"] == "connection_lost" and e["ts"] >= start for e in events)
