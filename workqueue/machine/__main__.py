"""python -m workqueue.machine COMMAND: what the project needs on this machine."""

from __future__ import annotations

import argparse
import sys

from workqueue.machine import emulation, engine, images, local_broker
from workqueue.machine.packages import SetupError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workqueue.machine", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("broker", help="start a RabbitMQ broker on loopback (installs rabbitmq-server if needed)")
    commands.add_parser("engine", help="make sure a Docker engine answers (starts dockerd if needed)")
    commands.add_parser("wheelhouse", help="download the images' pinned Python packages into build/wheelhouse")
    build = commands.add_parser("images", help="build the worker and producer images with no registry")
    build.add_argument("--base-image", help="base image for both (default: a local Debian python3 base)")
    build.add_argument(
        "--arch",
        action="append",
        default=[],
        help="also build them for this architecture (arm64: Raspberry Pis), under emulation; repeatable",
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "broker":
            local_broker.ensure_broker()
            print(f"RabbitMQ answers at {local_broker.LOCAL_URL}")
        elif args.command == "engine":
            engine.ensure_engine()
            print("a Docker engine answers")
        elif args.command == "wheelhouse":
            print(f"the images' packages are in {images.ensure_wheelhouse().relative_to(images.ROOT)}")
        elif args.command == "images":
            client = engine.ensure_engine()
            for arch in [None, *dict.fromkeys(a for a in args.arch if a != emulation.native())]:
                for name, tag in images.program_images(client, args.base_image, arch).items():
                    size = client.images.get(tag).attrs["Size"] / 1e6
                    print(f"{tag} ({name}:latest{images.suffix(arch)}) {size:.0f} MB")
    except SetupError as exc:
        print(f"machine: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
