"""Where a secret could show on a lab's hosts: command lines (sampled), journals, /var/log, and outputs."""

from __future__ import annotations

from collections.abc import Sequence

import docker

from workqueue.virtual_lab.lab_runs import on, read_result, wait_until

# Each process's command line, read from /proc every 50 ms by one Python process on the host (python3 is
# there for Ansible), each line written once, the first time it is seen. A shell loop of awk and sleep did
# the same with two programs started each time: seven times the CPU (2 ms a sample, 4% of a core on each host
# through a whole playbook), on a machine the whole suite shares.
SAMPLER = """
import os, time
seen, count = set(), 0
with open("/tmp/ps-samples", "wb") as out:
    while os.path.exists("/tmp/sampling") and count < 4000:
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    line = f.read().rstrip(b"\\0").replace(b"\\0", b" ")
            except OSError:
                continue
            if line and line not in seen:
                seen.add(line)
                out.write(line + b"\\n")
        out.flush()
        count += 1
        time.sleep(0.05)
with open("/tmp/ps-count.new", "w") as f:
    f.write(str(count))
os.rename("/tmp/ps-count.new", "/tmp/ps-count")
"""


class CommandLines:
    """Every process's command line on the hosts, every 50 ms, while the block runs (at most 4000 times)."""

    def __init__(self, client: docker.DockerClient, hosts: Sequence[str]) -> None:
        self.client = client
        self.hosts = hosts
        self.seen: dict[str, str] = {}

    def __enter__(self) -> CommandLines:
        for host in self.hosts:  # the flag set before the sampler starts: an early __exit__ stops it all the same
            on(self.client, host, "sh", "-c", "rm -f /tmp/ps-samples /tmp/ps-count && touch /tmp/sampling")
            self.client.containers.get(host).exec_run(["python3", "-c", SAMPLER], detach=True)
        return self

    def __exit__(self, *_: object) -> None:
        for host in self.hosts:
            on(self.client, host, "rm", "-f", "/tmp/sampling")
        for host in self.hosts:
            # Its count is written whole (a rename), last: a number there means the sampler is done.
            wait_until(lambda h=host: self._count(h).isdigit(), 10, f"sampler's count on {host}")  # type: ignore[misc]  # a bound default: mypy infers no lambda's
            self.seen[host] = on(self.client, host, "cat", "/tmp/ps-samples")
            assert int(self._count(host)) >= 20, f"the sampler ran on {host}"

    def _count(self, host: str) -> str:
        return read_result(self.client, host, "cat", "/tmp/ps-count")[1].strip()


def where_secrets_show(
    client: docker.DockerClient, hosts: Sequence[str], secrets: list[str], *outputs: str
) -> list[str]:
    """Where any of the secrets shows: every host's journal (every field) and /var/log, and the outputs."""
    found = []
    for host in hosts:
        journal = on(client, host, "journalctl", "-o", "verbose", "--no-pager")
        found += [f"{host} journal" for secret in secrets if secret in journal]
        patterns = [arg for secret in secrets for arg in ("-e", secret)]
        logs = read_result(client, host, "grep", "-rlF", *patterns, "/var/log")[1]
        found += [f"{host} {path}" for path in logs.split()]
    found += [f"output {i}" for i, output in enumerate(outputs) for secret in secrets if secret in output]
    return found
