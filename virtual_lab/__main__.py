"""python -m virtual_lab COMMAND: set up what the project needs on this machine."""

from __future__ import annotations

import argparse
import sys
import time

from virtual_lab import engine, hosts, images, local_broker
from virtual_lab.packages import SetupError


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
    parser = argparse.ArgumentParser(prog="python -m virtual_lab", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("broker", help="start a RabbitMQ broker on loopback (installs rabbitmq-server if needed)")
    commands.add_parser("engine", help="make sure a Docker engine answers (starts dockerd if needed)")
    commands.add_parser("wheelhouse", help="download the images' pinned Python packages into build/wheelhouse")
    build = commands.add_parser("images", help="build the worker and producer images with no registry")
    build.add_argument("--base-image", help="base image for both (default: a local Debian python3 base)")
    lab_up = commands.add_parser("up", help="make the virtual lab (or repair it): Debian hosts reached over SSH")
    lab_up.add_argument("--hosts", default=str(hosts.DEFAULT_HOSTS), help="how many hosts (default 5)")
    commands.add_parser("down", help="remove every container, network, volume and key of the virtual lab")
    commands.add_parser("status", help="each host: address, SSH, project containers, memory")
    args = parser.parse_args(argv)
    try:
        if args.command == "broker":
            local_broker.ensure_broker()
            print(f"RabbitMQ answers at {local_broker.LOCAL_URL}")
        elif args.command == "engine":
            engine.ensure_engine()
            print("a Docker engine answers")
        elif args.command == "wheelhouse":
            print(f"the images' packages are in {images.ensure_wheelhouse().relative_to(hosts.ROOT)}")
        elif args.command == "images":
            client = engine.ensure_engine()
            for name, tag in images.program_images(client, args.base_image).items():
                size = client.images.get(tag).attrs["Size"] / 1e6
                print(f"{tag} ({name}:latest) {size:.0f} MB")
        elif args.command == "up":
            count = hosts.parse_count(args.hosts)
            hosts.plan(count)  # a bad count fails before anything is made
            started = time.monotonic()
            made = hosts.up(engine.ensure_engine(), count)
            for host in made:
                print(f"{host.name:6} {host.address:12} {', '.join(host.groups)}")
            inventory = hosts.DEFAULT_LAB.inventory.relative_to(hosts.ROOT)
            print(f"lab up in {time.monotonic() - started:.0f} s; inventory: {inventory}")
        elif args.command == "down":
            removed = hosts.down(engine.ensure_engine())
            print("removed: " + (", ".join(removed) if removed else "nothing (no lab)"))
        elif args.command == "status":
            print_status(hosts.status(engine.ensure_engine()))
    except (SetupError, hosts.LabError) as exc:
        print(f"virtual_lab: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
