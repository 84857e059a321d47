"""site.yml on Debian 12 hosts and on Debian 13 hosts, side by side: fresh and re-run times, image sizes.

    python bench/releases.py [--hosts N]      (make bench-releases)

For each release, a virtual lab of its own (benchlab, 10.210.5.0/24: a broker,
workers, a producer) is made fresh, site.yml runs on it twice (the first on
hosts that have never seen the project, the second with nothing to change),
and the lab is removed. The lab-host image of each release is measured as Docker
reports it. Traffic stays on the lab's own network and this machine's mirror.
"""

from __future__ import annotations

import argparse
import time

from workqueue.machine import engine, images
from workqueue.virtual_lab import hosts, lab_runs

BENCH_LAB = hosts.Lab(name="benchlab", subnet_prefix="10.210.5")
SETTINGS = ("-e", "seconds_per_dot=0.2")


def timed_site(run: int) -> float:
    started = time.monotonic()
    done = lab_runs.playbook(BENCH_LAB, "site.yml", *SETTINGS)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"site.yml (run {run}) failed:\n{done.stdout[-2000:]}")
    changed = sum(counts["changed"] for counts in lab_runs.recap(done.stdout).values())
    if run == 2 and changed:
        raise SystemExit(f"the re-run changed {changed} things: not idempotent")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(prog="python bench/releases.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=4, help="hosts per lab (default 4: broker, 2 workers, producer)")
    args = parser.parse_args()
    client = engine.ensure_engine()
    images.program_images(client)
    rows = []
    for release in hosts.RELEASES:
        image = client.images.get(hosts.lab_host_image(client, release))
        hosts.down(client, BENCH_LAB)
        try:
            hosts.up(client, args.hosts, BENCH_LAB, release=release)
            fresh, rerun = timed_site(1), timed_site(2)
        finally:
            hosts.down(client, BENCH_LAB)
        rows.append((release, fresh, rerun, image.attrs["Size"] / 1e6))
        print(f"{release}: fresh {fresh:.0f} s, re-run {rerun:.0f} s", flush=True)
    print(f"\n| hosts ({args.hosts}) | site.yml fresh | re-run (changed=0) | lab-host image |")
    print("|---|---|---|---|")
    for release, fresh, rerun, size in rows:
        debian = 12 if release == "bookworm" else 13
        print(f"| Debian {debian} ({release}) | {fresh:.0f} s | {rerun:.0f} s | {size:.0f} MB |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
