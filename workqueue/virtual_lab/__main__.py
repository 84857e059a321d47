"""python -m workqueue.virtual_lab COMMAND: make, remove or look at the virtual lab."""

from __future__ import annotations

import argparse
import sys
import time

from workqueue.machine import engine, images
from workqueue.machine.packages import SetupError
from workqueue.virtual_lab import hosts


def print_status(found: list[hosts.HostStatus]) -> None:
    if not found:
        print("no virtual lab: make lab-up")
        return
    print(f"{'host':6} {'groups':16} {'address':12} {'state':8} {'ssh':4} {'memory':>8}  project containers")
    for h in found:
        memory = f"{h.memory_mb:6.0f} MB" if h.memory_mb is not None else "       -"
        containers = ", ".join(h.project_containers) or "-"
        ssh = "yes" if h.ssh else "no"
        print(f"{h.name:6} {h.groups:16} {h.address:12} {h.state:8} {ssh:4} {memory}  {containers}")
    total = sum(h.memory_mb or 0 for h in found)
    print(f"memory of the lab: {total:.0f} MB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workqueue.virtual_lab", description=__doc__)
    parser.add_argument("--lab", choices=sorted(hosts.LABS), default=hosts.DEFAULT_LAB.name, help=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", required=True)
    lab_up = commands.add_parser("up", help="make the virtual lab (or repair it): Debian hosts reached over SSH")
    lab_up.add_argument("--hosts", default=str(hosts.DEFAULT_HOSTS), help="how many hosts (default 5)")
    lab_up.add_argument("--brokers", default="1", help="how many of them run RabbitMQ: 1 or an odd number from 3")
    lab_up.add_argument(
        "--release",
        default=images.SUITE,
        help=f"Debian release of the hosts: {', '.join(hosts.RELEASES)} (default {images.SUITE}), or {hosts.MIXED} "
        "(brokers and producer on the first, worker hosts alternating)",
    )
    commands.add_parser("down", help="remove every container, network, volume and key of the virtual lab")
    commands.add_parser("status", help="each host: address, SSH, project containers, memory")
    args = parser.parse_args(argv)
    lab = hosts.LABS[args.lab]  # the tests' labs have names of their own: they never touch yours
    try:
        if args.command == "up":
            count, brokers = hosts.parse_count(args.hosts), hosts.parse_count(args.brokers, "BROKERS")
            hosts.plan(count, lab, brokers=brokers, release=args.release)  # bad input fails before anything is made
            started = time.monotonic()
            made = hosts.up(engine.ensure_engine(), count, lab, brokers=brokers, release=args.release)
            for host in made:
                print(f"{host.name:6} {host.address:12} {host.release:9} {', '.join(host.groups)}")
            inventory = lab.inventory.relative_to(hosts.ROOT)
            print(f"lab up in {time.monotonic() - started:.0f} s; inventory: {inventory}")
        elif args.command == "down":
            removed = hosts.down(engine.ensure_engine(), lab)
            print("removed: " + (", ".join(removed) if removed else "nothing (no lab)"))
        elif args.command == "status":
            print_status(hosts.status(engine.ensure_engine(), lab))
    except (SetupError, hosts.LabError) as exc:
        print(f"virtual_lab: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
