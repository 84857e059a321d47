"""A worker image whose clock is off by a given number of seconds, for the report's clock tests.

The lab's hosts share this machine's kernel and so its clock: their clocks cannot be set apart.
libfaketime (Debian's package, installed here if missing) moves the time a container's programs
read instead: the worker stamps its events with it, and report.yml's measurement reads it too.
Monotonic time is left alone, so heartbeats and time-outs are unchanged.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import docker

from workqueue.machine.packages import ensure_commands

WORKER_IMAGE = "workqueue-lab/worker:latest"


def _libfaketime() -> Path:
    ensure_commands({"faketime": "faketime"})  # its package depends on libfaketime
    listed = subprocess.run(["dpkg", "-L", "libfaketime"], check=True, capture_output=True, text=True).stdout
    return next(Path(line) for line in listed.splitlines() if line.endswith("/libfaketime.so.1"))


def skewed_worker_image(client: docker.DockerClient, seconds: int) -> str:
    """The worker's image with its programs' clock ``seconds`` off (behind if negative); built once."""
    tag = f"workqueue-lab/worker:clock{seconds:+d}s"
    with tempfile.TemporaryDirectory() as context:
        shutil.copy(_libfaketime(), Path(context) / "libfaketime.so.1")
        (Path(context) / "Dockerfile").write_text(
            f"FROM {WORKER_IMAGE}\n"
            "COPY libfaketime.so.1 /usr/local/lib/libfaketime.so.1\n"
            "ENV LD_PRELOAD=/usr/local/lib/libfaketime.so.1 FAKETIME_DONT_FAKE_MONOTONIC=1 "
            f"FAKETIME={seconds:+d}\n"
        )
        client.images.build(path=context, tag=tag, rm=True)
    return tag
