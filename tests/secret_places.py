"""Where a secret could show on a lab's hosts: command lines (sampled), journals, /var/log, and outputs."""

from __future__ import annotations

from collections.abc import Sequence

import docker

from workqueue.virtual_lab.lab_runs import on, on_result, wait_until

# Each process's command line, one a line, read from /proc by one awk (Debian's mawk, always there): half
# the CPU of ps, which reads more of /proc, at 20 samples a second on every host while a playbook runs.
COMMAND_LINES = (
    """awk 'BEGIN { RS = "\\0" } FNR == 1 && NR > 1 { print "" } { printf "%s ", $0 } END { print "" }'"""
    " /proc/[0-9]*/cmdline 2>/dev/null"
)
SAMPLER = (
    "touch /tmp/sampling; rm -f /tmp/ps-samples /tmp/ps-count; i=0;"
    f" while [ -e /tmp/sampling ] && [ $i -lt 4000 ]; do {COMMAND_LINES} >> /tmp/ps-samples; i=$((i+1)); sleep 0.05;"
    " done; echo $i > /tmp/ps-count.new; mv /tmp/ps-count.new /tmp/ps-count"
)


class CommandLines:
    """Every process's command line on the hosts, every 50 ms, while the block runs (at most 4000 times)."""

    def __init__(self, client: docker.DockerClient, hosts: Sequence[str]) -> None:
        self.client = client
        self.hosts = hosts
        self.seen: dict[str, str] = {}

    def __enter__(self) -> CommandLines:
        for host in self.hosts:
            self.client.containers.get(host).exec_run(["sh", "-c", SAMPLER], detach=True)
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
        return on_result(self.client, host, "cat", "/tmp/ps-count")[1].strip()


def where_secrets_show(
    client: docker.DockerClient, hosts: Sequence[str], secrets: list[str], *outputs: str
) -> list[str]:
    """Where any of the secrets shows: every host's journal (every field) and /var/log, and the outputs."""
    found = []
    for host in hosts:
        journal = on(client, host, "journalctl", "-o", "verbose", "--no-pager")
        found += [f"{host} journal" for secret in secrets if secret in journal]
        patterns = [arg for secret in secrets for arg in ("-e", secret)]
        logs = on_result(client, host, "grep", "-rlF", *patterns, "/var/log")[1]
        found += [f"{host} {path}" for path in logs.split()]
    found += [f"output {i}" for i, output in enumerate(outputs) for secret in secrets if secret in output]
    return found
