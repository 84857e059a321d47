"""How the lab grows with its worker hosts: lab-up, site.yml fresh and re-run, report.yml, memory.

    python bench/scale.py [--workers 5,10,20] [--plot docs/images/scale.svg] [--apt-cache]   (make bench-scale)

For each count, a virtual lab of its own (scalelab, 10.210.6.0/24: a broker, that
many worker hosts, a producer) is made fresh and timed: ``make lab-up``'s work,
``site.yml`` on hosts that have never seen the project, ``site.yml`` again with
nothing to change, a run of 2 tasks per worker host, then ``report.yml`` on it;
the idle lab's resident memory per host (processes of the host and its nested
containers); and the lab's removal. Traffic stays on the lab's network and this
machine's mirror. The plot is an SVG written by this script (time against hosts).
With ``--apt-cache`` the lab's package cache is on (apt_cache=true), and the script
also says how many MB of packages the cache fetched from upstream against how many it
served to the hosts (without it, the hosts would have fetched those themselves).
The re-run's CPU time is split in two: the control node's (ansible-playbook, its forks
and their SSH clients: this process's children) and the rest of the machine's (in the
virtual lab, the hosts' module runs and daemons, which share the same cores).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import docker

from workqueue.machine import engine, images
from workqueue.virtual_lab import hosts, lab_runs

ROOT = Path(__file__).resolve().parents[1]
SCALE_LAB = hosts.Lab(name="scalelab", subnet_prefix="10.210.6")
SETTINGS = ("-e", "seconds_per_dot=0.05")


@dataclass
class Row:
    workers: int
    up: float
    fresh: float
    rerun: float
    report: float
    down: float
    memory_mb: float  # median per host, idle, after site.yml
    rerun_cpu: tuple[float, float]  # CPU seconds of the re-run: the control node's, the rest of the machine's
    cache: tuple[float, float] | None = None  # with --apt-cache: MB fetched from upstream, MB served to the hosts


def machine_cpu_seconds() -> float:
    """CPU seconds this machine has spent busy since boot, all cores (/proc/stat: all but idle and iowait)."""
    fields = [int(each) for each in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    busy = sum(fields) - fields[3] - fields[4]
    return busy / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def timed(what: str, name: str, *args: str, rerun: bool = False) -> float:
    started = time.monotonic()
    done = lab_runs.playbook(SCALE_LAB, name, *args)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"{what} failed:\n{done.stdout[-3000:]}")
    if rerun:  # nothing may change
        changed = sum(counts["changed"] for counts in lab_runs.recap(done.stdout).values())
        if changed:
            raise SystemExit(f"the re-run changed {changed} things: not idempotent")
    print(f"  {what}: {seconds:.0f} s", flush=True)
    return seconds


def cache_traffic(client: docker.DockerClient) -> tuple[float, float]:
    """From apt-cacher-ng's transfer log on the broker host: MB fetched from upstream (I) and served (O)."""
    log = lab_runs.on(client, f"{SCALE_LAB.name}1", "cat", "/var/log/apt-cacher-ng/apt-cacher.log")
    rows = [line.split("|") for line in log.splitlines() if line.count("|") >= 4]
    fetched = sum(int(row[2]) for row in rows if row[1] == "I")
    served = sum(int(row[2]) for row in rows if row[1] == "O")
    return fetched / 1e6, served / 1e6


def measure(client: docker.DockerClient, workers: int, apt_cache: bool) -> Row:
    settings = (*SETTINGS, "-e", f"apt_cache={str(apt_cache).lower()}")
    hosts.down(client, SCALE_LAB)
    started = time.monotonic()
    hosts.up(client, workers + 2, SCALE_LAB)
    up = time.monotonic() - started
    print(f"{workers} worker hosts: lab-up {up:.0f} s", flush=True)
    try:
        fresh = timed("site.yml fresh", "site.yml", *settings)
        cache = cache_traffic(client) if apt_cache else None
        if cache:
            print(f"  packages: {cache[0]:.1f} MB from upstream, {cache[1]:.1f} MB served to the hosts", flush=True)
        machine, control = machine_cpu_seconds(), children_cpu_seconds()
        rerun = timed("site.yml re-run", "site.yml", *settings, rerun=True)
        control = children_cpu_seconds() - control
        rerun_cpu = (control, machine_cpu_seconds() - machine - control)
        print(f"  re-run CPU: control node {rerun_cpu[0]:.0f} s, the rest {rerun_cpu[1]:.0f} s", flush=True)
        memory = [each.memory_mb for each in hosts.status(client, SCALE_LAB) if each.memory_mb is not None]
        timed("produce.yml", "produce.yml", *settings, "-e", f"task_count={2 * workers}")
        time.sleep(3)  # the last tasks take 0.05 s a dot
        report = timed("report.yml", "report.yml", *settings)
    finally:
        started = time.monotonic()
        hosts.down(client, SCALE_LAB)
        down = time.monotonic() - started
    print(f"  lab-down {down:.0f} s; memory per host {statistics.median(memory):.0f} MB", flush=True)
    return Row(workers, up, fresh, rerun, report, down, statistics.median(memory), rerun_cpu, cache)


def svg(rows: list[Row]) -> str:
    """Seconds against worker hosts, one line per measurement: a small hand-made SVG."""
    series = [("site.yml fresh", "fresh", "#d62728"), ("site.yml re-run", "rerun", "#1f77b4")]
    series += [("report.yml", "report", "#2ca02c"), ("lab-up", "up", "#7f7f7f")]
    width, height, left, bottom, top, right = 640, 360, 60, 40, 20, 150
    x_max = max(row.workers for row in rows)
    y_max = max(float(getattr(row, key)) for row in rows for _, key, _ in series) * 1.1

    def x(value: float) -> float:
        return left + value / x_max * (width - left - right)

    def y(value: float) -> float:
        return height - bottom - value / y_max * (height - top - bottom)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
        'font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<line x1="{left}" y1="{y(0)}" x2="{x(x_max)}" y2="{y(0)}" stroke="black"/>',
        f'<line x1="{left}" y1="{y(0)}" x2="{left}" y2="{top}" stroke="black"/>',
        f'<text x="{(left + x(x_max)) / 2}" y="{height - 8}" text-anchor="middle">worker hosts</text>',
        f'<text x="14" y="{top + 10}" transform="rotate(-90 14 {top + 10})" text-anchor="end">seconds</text>',
    ]
    for row in rows:
        parts.append(f'<text x="{x(row.workers)}" y="{y(0) + 16}" text-anchor="middle">{row.workers}</text>')
    step = 30 if y_max > 120 else 10
    for tick in range(0, int(y_max) + 1, step):
        parts.append(f'<text x="{left - 6}" y="{y(tick) + 4}" text-anchor="end">{tick}</text>')
        parts.append(f'<line x1="{left}" y1="{y(tick)}" x2="{x(x_max)}" y2="{y(tick)}" stroke="#ddd"/>')
    for index, (label, key, colour) in enumerate(series):
        points = " ".join(f"{x(row.workers):.1f},{y(getattr(row, key)):.1f}" for row in rows)
        parts.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for row in rows:
            parts.append(f'<circle cx="{x(row.workers):.1f}" cy="{y(getattr(row, key)):.1f}" r="3" fill="{colour}"/>')
        legend_y = top + 16 * index + 10
        parts.append(
            f'<line x1="{width - right + 16}" y1="{legend_y - 4}" x2="{width - right + 36}" '
            f'y2="{legend_y - 4}" stroke="{colour}" stroke-width="2"/>'
        )
        parts.append(f'<text x="{width - right + 42}" y="{legend_y}">{label}</text>')
    parts.append("</svg>\n")
    return "\n".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python bench/scale.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="5,10,20", help="worker host counts, comma-separated (default 5,10,20)")
    parser.add_argument("--plot", default=str(ROOT / "docs" / "images" / "scale.svg"), help="where to write the SVG")
    parser.add_argument("--apt-cache", action="store_true", help="with the lab's package cache on (apt_cache=true)")
    args = parser.parse_args()
    try:
        counts = [int(each) for each in args.workers.split(",")]
    except ValueError:
        parser.error(f"--workers: whole numbers separated by commas, not {args.workers!r}")
    if any(not 1 <= count <= hosts.MAX_HOSTS - 2 for count in counts):
        most = hosts.MAX_HOSTS - 2
        parser.error(f"--workers: each count from 1 to {most} (a lab has at most {hosts.MAX_HOSTS} hosts)")
    client = engine.ensure_engine()
    images.program_images(client)
    rows = [measure(client, count, args.apt_cache) for count in counts]
    Path(args.plot).write_text(svg(rows))
    first = rows[0]
    print(
        "\n| worker hosts | lab-up | site.yml fresh | re-run (changed=0) | re-run CPU: control node + the rest"
        " | report.yml | lab-down | memory/host |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        ratios = f" ({row.fresh / first.fresh:.2f}x)" if row is not first else ""
        rerun = f" ({row.rerun / first.rerun:.2f}x)" if row is not first else ""
        report = f" ({row.report / first.report:.2f}x)" if row is not first else ""
        print(
            f"| {row.workers} | {row.up:.0f} s | {row.fresh:.0f} s{ratios} | {row.rerun:.0f} s{rerun} | "
            f"{row.rerun_cpu[0]:.0f} s + {row.rerun_cpu[1]:.0f} s | {row.report:.0f} s{report} | "
            f"{row.down:.0f} s | {row.memory_mb:.0f} MB |"
        )
    print(f"\nplot: {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
