"""Where a playbook's CPU goes: in the lab's hosts, or on the control node.

    python bench/playbook_cpu.py [--playbook site.yml] [--runs 3]   (make bench-cpu)

On the virtual lab `make lab-up` made (deploy it first: `ansible-playbook playbooks/site.yml`
against inventory/virtual/hosts.yml), runs the playbook ``runs`` times and reads, around each
run, the machine's CPU time (/proc/stat) and each lab host container's (its control group's CPU
account, cgroup v1 or v2). What the hosts did not spend, the control node did: Ansible, its
forked task runs and their ssh (the Docker engine's share is negligible here; so is the workers'
own, whose containers the hosts' nested engines put in control groups beside the hosts', not
inside them: about 0.1 s a worker in a 30 s re-run, counted on the control node's side). One row a
run: the wall time, the CPU time, the hosts' share and the control node's. Run it on an idle
machine: anything else running counts on the control node's side.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import docker

from workqueue.virtual_lab import hosts, lab_runs

CGROUP = Path("/sys/fs/cgroup")


def machine_cpu() -> float:
    """Seconds of CPU the whole machine has spent since boot running something."""
    # user nice system idle iowait irq softirq steal guest guest_nice: what ran here is user to softirq
    # but idle and iowait (steal is the hypervisor's, guest time is counted in user already).
    user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in Path("/proc/stat").read_text().split()[1:8])
    busy = user + nice + system + irq + softirq
    return busy / os.sysconf("SC_CLK_TCK")


def container_cpu(container_id: str) -> float | None:
    """Seconds of CPU a container has spent, from its control group; None where none is found."""
    v1 = CGROUP / "cpuacct" / "docker" / container_id / "cpuacct.usage"
    if v1.exists():
        return int(v1.read_text()) / 1e9
    for v2 in (CGROUP / "system.slice" / f"docker-{container_id}.scope", CGROUP / "docker" / container_id):
        stat = v2 / "cpu.stat"
        if stat.exists():
            usage = dict(line.split() for line in stat.read_text().splitlines())
            return int(usage["usage_usec"]) / 1e6
    return None


def hosts_cpu(client: docker.DockerClient) -> dict[str, float]:
    found = {}
    for container in client.containers.list(filters={"label": f"{hosts.LAB_LABEL}={hosts.DEFAULT_LAB.name}"}):
        seconds = container_cpu(container.id)
        if seconds is None:
            raise SystemExit(f"playbook_cpu: no CPU account for {container.name} under {CGROUP} (cgroup v1 or v2)")
        found[container.name] = seconds
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--playbook", default="site.yml", help="a playbook of playbooks/ (default site.yml)")
    parser.add_argument("--runs", type=int, default=3, help="how many runs, 1 to 10 (default 3)")
    args = parser.parse_args()
    if not 1 <= args.runs <= 10:
        parser.error(f"--runs: 1 to 10, not {args.runs}")
    if not (hosts.ROOT / "playbooks" / args.playbook).is_file():
        parser.error(f"--playbook: no playbooks/{args.playbook}")
    client = docker.from_env()
    if not hosts_cpu(client):
        print("playbook_cpu: no virtual lab is up: make lab-up, then site.yml on it", file=sys.stderr)
        return 1
    print(f"{args.playbook} on the virtual lab, {args.runs} run(s)")
    print("| run | wall (s) | CPU (s) | in the lab's hosts (s) | on the control node (s) | busiest host (s) |")
    print("|---:|---:|---:|---:|---:|---|")
    for run in range(1, args.runs + 1):
        before_hosts, before = hosts_cpu(client), machine_cpu()
        started = time.monotonic()
        done = lab_runs.playbook(hosts.DEFAULT_LAB, args.playbook)
        wall = time.monotonic() - started
        total, after_hosts = machine_cpu() - before, hosts_cpu(client)
        if done.returncode != 0:
            failed = f"playbook_cpu: {args.playbook} failed (exit {done.returncode}):\n{done.stdout[-2000:]}"
            print(failed, file=sys.stderr)
            return 1
        spent = {name: after_hosts[name] - before_hosts.get(name, 0.0) for name in after_hosts}
        in_hosts = sum(spent.values())
        busiest = max(spent, key=lambda name: spent[name])
        print(
            f"| {run} | {wall:.1f} | {total:.1f} | {in_hosts:.1f} | {total - in_hosts:.1f} "
            f"| {busiest} {spent[busiest]:.1f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
