"""An idle worker's memory, in this machine's image and in a Raspberry Pi's (arm64) run under emulation.

    python bench/architectures.py [--seconds S] [--arch ARCH]      (make bench-arch)

Each worker container (the images `make images ARCH=arm64` builds, built here if missing) connects to
the machine's RabbitMQ node on loopback (a vhost of the benchmark's own, set up as the lab's broker is)
and waits for tasks; once it consumes, its processes' resident memory (VmRSS, as the virtual lab's
status reads a host's: Docker's own accounting sees nothing on this machine) is read every second
for S seconds, and the median kept. Under qemu-user the figure
is an upper bound for a Pi: it holds the emulator and its translated code beside the worker's own.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import docker
from docker.models.containers import Container

from workqueue.events import read_events
from workqueue.machine import emulation, engine, images, local_broker
from workqueue.virtual_lab import hosts

VHOST = "workqueue-bench-arch"


def consuming(container: Container) -> bool:
    lines = container.logs(stdout=False, stderr=True).decode(errors="replace").splitlines()
    return any(event["event"] == "consuming" for event in read_events(lines))


def idle_memory(client: docker.DockerClient, image: str, url: str, seconds: int) -> tuple[float, float]:
    """Seconds until the worker consumes, and the median of its resident memory (MB) over ``seconds`` after."""
    started = time.monotonic()
    container = client.containers.run(image, detach=True, network_mode="host", environment={"AMQP_URL": url})
    try:
        deadline = started + 120
        while not consuming(container):
            if time.monotonic() > deadline:
                raise SystemExit(f"{image} did not consume within 120 s: {container.logs()[-500:]!r}")
            time.sleep(0.2)
        ready = time.monotonic() - started
        samples = []
        for _ in range(seconds):
            samples.append(hosts.resident_mb(container))
            time.sleep(1)
        return ready, statistics.median(samples)
    finally:
        container.remove(force=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--arch", default="arm64" if emulation.native() != "arm64" else "amd64")
    args = parser.parse_args(argv)
    client = engine.ensure_engine()
    local_broker.ensure_broker()
    url = local_broker.prepare_vhost(local_broker.MACHINE, VHOST)
    rows = []
    for arch in (emulation.native(), args.arch):
        image = images.program_images(client, arch=arch)["workqueue-lab/worker"]
        ready, memory = idle_memory(client, image, url, args.seconds)
        how = "native" if arch == emulation.native() else "emulated (qemu-user)"
        size = client.images.get(image).attrs["Size"] / 1e6
        rows.append(f"| {arch}, {how} | {size:.0f} MB | {ready:.1f} s | {memory:.1f} MB |")
    local_broker.ctl(local_broker.MACHINE, "delete_vhost", VHOST, check=False)
    print("| worker image | size | until it consumes | idle memory (median) |\n|---|---:|---:|---:|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
