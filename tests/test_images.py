"""The worker and producer images: built with no registry, run as PID 1, secrets kept out of sight."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import docker
import pytest
from docker.models.containers import Container

from tests.conftest import NODE, PASSWORD, VHOST
from workqueue.events import read_events
from workqueue.machine import emulation, engine, images

pytestmark = [pytest.mark.broker, pytest.mark.docker]


@pytest.fixture(scope="session")
def client() -> docker.DockerClient:
    return engine.ensure_engine()


@pytest.fixture(scope="session")
def built(client: docker.DockerClient) -> dict[str, str]:
    return images.program_images(client)


# A Raspberry Pi's (arm64), built and run here under emulation (qemu-user-static): cached by recipe like the others.
FOREIGN = "arm64" if emulation.native() != "arm64" else "amd64"


@pytest.fixture(scope="session")
def built_foreign(client: docker.DockerClient) -> dict[str, str]:
    return images.program_images(client, arch=FOREIGN)


@pytest.mark.parametrize(
    ("name", "usage"), [("workqueue-lab/worker", "usage: worker.py"), ("workqueue-lab/producer", "usage: new_task.py")]
)
def test_image_built_from_local_base_runs_help_as_non_root(
    client: docker.DockerClient, built: dict[str, str], name: str, usage: str
) -> None:
    image = client.images.get(built[name])
    # Built here, on the Debian base made from Debian's packages: its layers are the image's first.
    base = client.images.get(images.debian_image()).attrs["RootFS"]["Layers"]
    assert image.attrs["RootFS"]["Layers"][: len(base)] == base, "not built on the local Debian base"
    assert image.attrs["Config"]["User"] not in ("", "root", "0")
    labels = image.attrs["Config"]["Labels"]
    assert labels["org.opencontainers.image.title"].startswith("workqueue-lab")
    output = client.containers.run(built[name], ["--help"], remove=True).decode()
    assert usage in output


def logs(container: Container) -> tuple[str, list[dict[str, Any]]]:
    out = container.logs(stdout=True, stderr=False).decode()
    events = list(read_events(container.logs(stdout=False, stderr=True).decode().splitlines()))
    return out, events


@pytest.mark.parametrize("arch", [None, FOREIGN], ids=["native", "emulated"])
def test_containers_do_the_tutorial_and_docker_stop_is_clean(
    client: docker.DockerClient, broker_user: str, tmp_path: Path, request: pytest.FixtureRequest, arch: str | None
) -> None:
    """On this machine's architecture, and on a Raspberry Pi's under emulation: the same tasks, the same events."""
    built = request.getfixturevalue("built_foreign" if arch else "built")
    for tag in built.values():
        assert client.images.get(tag).attrs["Architecture"] == (arch or emulation.native())
    secret = tmp_path / "amqp_password"
    secret.write_text(PASSWORD + "\n")
    secret.chmod(0o644)
    common = {
        "network_mode": "host",
        "environment": {
            "AMQP_URL": f"amqp://{broker_user}@localhost:{NODE.port}/{VHOST}",
            "AMQP_PASSWORD_FILE": "/run/secrets/amqp_password",
            "SECONDS_PER_DOT": "0.1",
        },
        "volumes": {str(secret): {"bind": "/run/secrets/amqp_password", "mode": "ro"}},
        "labels": {"workqueue-lab": "test"},
    }
    name = f"wq-test-worker-{tmp_path.name}"  # per run: a crashed run's leftover cannot collide
    worker = client.containers.run(built["workqueue-lab/worker"], detach=True, name=name, **common)
    try:
        machine = emulation.KERNEL_NAMES[arch or emulation.native()]
        assert worker.exec_run(["uname", "-m"]).output.decode().strip() == machine  # its own binaries, emulated
        deadline = time.monotonic() + (90 if arch else 30)  # emulated, Python starts in seconds, not a tenth
        while not any(e["event"] == "consuming" for e in logs(worker)[1]) and time.monotonic() < deadline:
            time.sleep(0.2)
        producer = client.containers.run(built["workqueue-lab/producer"], ["3"], detach=True, **common)
        assert producer.wait(timeout=60)["StatusCode"] == 0, producer.logs().decode()
        producer.remove()

        while len([e for e in logs(worker)[1] if e["event"] == "done"]) < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        out, _ = logs(worker)
        assert " [x] Received 'Hello World! #3 ...'" in out
        assert " [x] Done #3" in out
        assert worker.exec_run(["python", "-m", "workqueue.worker_image.healthcheck"]).exit_code == 0

        started = time.monotonic()
        worker.stop(timeout=10)
        assert time.monotonic() - started < 5, "the worker must handle SIGTERM as PID 1"
        worker.reload()
        assert worker.attrs["State"]["ExitCode"] == 0
        out, events = logs(worker)  # still readable after docker stop
        assert [e["seq"] for e in events if e["event"] == "done"] == [1, 2, 3]
        assert events[-1]["event"] == "worker_stopped"
        assert PASSWORD not in json.dumps(worker.attrs)
        assert PASSWORD not in out + json.dumps(events)
    finally:
        worker.remove(force=True)


def test_latest_tags_follow_the_built_images(client: docker.DockerClient, built: dict[str, str]) -> None:
    for name, tag in built.items():
        assert client.images.get(f"{name}:latest").id == client.images.get(tag).id
