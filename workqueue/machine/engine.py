"""A Docker engine that answers: use the running one, else start Debian's dockerd."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import docker
import docker.errors

from workqueue.machine.packages import SetupError, ensure_commands

DOCKERD_LOG = Path("/var/log/workqueue-lab-dockerd.log")
START_TIMEOUT = 60.0


def _answering() -> docker.DockerClient | None:
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except docker.errors.DockerException:
        return None
    return client


def ensure_engine() -> docker.DockerClient:
    """A client of a Docker engine that answers, starting one in the background if needed.

    Machines without systemd (containers, CI sandboxes) have no service manager
    to start docker.service, so dockerd is started directly, detached.
    """
    client = _answering()
    if client is not None:
        return client
    ensure_commands({"dockerd": "docker.io"})
    print(f"no Docker engine answers: starting dockerd (log: {DOCKERD_LOG})", flush=True)
    with DOCKERD_LOG.open("ab") as log:
        subprocess.Popen(["dockerd"], stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        client = _answering()
        if client is not None:
            return client
        time.sleep(0.5)
    raise SetupError(f"dockerd did not answer within {START_TIMEOUT:g} s: see {DOCKERD_LOG}")
