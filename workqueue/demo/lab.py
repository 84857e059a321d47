"""`make demo`: the whole project on the virtual lab, through the same playbooks as a real lab.

    python -m workqueue.demo.lab [--seconds-per-dot S]   (the tests add --lab demolab --listen HOST:PORT)

Makes the lab (five hosts), runs site.yml, then two drills of ten tasks each:
in noack mode, then in ack mode, the worker on lab3 is stopped mid-run (what
`docker stop` does) and the demo shows, from the workers' own logs, which
worker did which task and what was lost or redelivered. It tells the story one
line per step, with its time (a dot per Ansible task while a playbook runs),
and the two reports in full; Ansible's whole log is kept in build/demo/ansible.log
(its end is shown when a step fails). The lab stays up for you to explore;
`make lab-down` removes it. While the demo runs, the live web view
(python -m workqueue.report.web) is up at http://127.0.0.1:8765/: open it to see the
timeline draw itself.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time

import docker

from workqueue.machine import engine, images
from workqueue.machine.packages import SetupError
from workqueue.queues import Mode
from workqueue.virtual_lab import hosts, lab_runs
from workqueue.virtual_lab.hosts import DEFAULT_LAB, DEMO_TEST_LAB, Host, Lab
from workqueue.virtual_lab.lab_runs import container_events, done_by, unfinished, wait_until

TASKS = 10
# How long the live web view may take to end after Ctrl+C before it is killed. It takes a second or two,
# unless it was started with SIGINT ignored (a background job of a shell without job control): then never.
VIEW_STOP_SECONDS = 15
LABS = {lab.name: lab for lab in (DEFAULT_LAB, DEMO_TEST_LAB)}  # the user's, and the tests' own


class Demo:
    """The demo on one lab: where its log goes, which host's worker is stopped."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.stopped = f"{lab.name}3"
        self.log = hosts.ROOT / "build" / ("demo" if lab == DEFAULT_LAB else f"{lab.name}-demo") / "ansible.log"
        self.web_log = self.log.with_name("watch-web.log")


def step(title: str) -> None:
    print(f"\n=== {title}", flush=True)


def run_playbook(demo: Demo, name: str, *args: str) -> subprocess.CompletedProcess[str]:
    """One line: the playbook, a dot per task, its time; the output goes to the log, its end shown if it fails."""
    print(f"    {name} ", end="", flush=True)
    started = time.monotonic()
    done = lab_runs.playbook(demo.lab, name, *args, log=demo.log)
    print(f" {time.monotonic() - started:.0f} s", flush=True)
    if done.returncode != 0:
        tail = "".join(f"      {line}\n" for line in done.stdout.splitlines()[-25:])
        raise SetupError(f"{name} failed (exit {done.returncode}); its end, of {demo.log}:\n{tail}")
    return done


def drill(demo: Demo, client: docker.DockerClient, workers: list[str], mode: Mode, settings: list[str]) -> None:
    stopped = demo.stopped
    step(f"{mode} mode: {TASKS} tasks, and the worker on {stopped} stopped mid-run")
    # drill.yml's stop is docker stop, struck the moment the worker holds a task. It is started first,
    # and the run produced once it watches: started after, its own first tasks could outlast a run of
    # short tasks on a busy machine, and find nothing left to strike.
    watched = lab_runs.WORKER_CONTAINER.format(1)
    print(f"    drill.yml watches {watched} on {stopped}: docker stop the moment it holds a task", flush=True)
    started = time.monotonic()

    def produce() -> str:
        print(f"    drill.yml watching: {time.monotonic() - started:.0f} s", flush=True)
        produced = run_playbook(demo, "produce.yml", *settings, "-e", f"task_count={TASKS}")
        run_id = lab_runs.run_id_of(produced.stdout)
        print(f"    produced run {run_id}", flush=True)
        return run_id

    struck, run_id = lab_runs.drill_on_cue(
        demo.lab, produce, *settings, "-e", "fault=stop", "-e", f"target={stopped}", log=demo.log
    )
    if struck.returncode != 0 or run_id is None:
        tail = "".join(f"      {line}\n" for line in struck.stdout.splitlines()[-25:])
        raise SetupError(f"drill.yml failed (exit {struck.returncode}); its end, of {demo.log}:\n{tail}")
    print(f"    drill.yml over (it struck): {time.monotonic() - started:.0f} s", flush=True)
    others = [h for h in workers if h != stopped]

    def settled() -> bool:
        if mode is Mode.ACK:
            return set(done_by(client, workers, run_id)) == set(range(1, TASKS + 1))
        return not any(unfinished(client, h, run_id) for h in others)

    started = time.monotonic()
    wait_until(settled, 300, "the tasks settled")
    print(f"    the other workers finished the run: {time.monotonic() - started:.0f} s", flush=True)
    step(f"{mode} mode: the report (playbooks/report.yml -e run_id={run_id})")
    reported = run_playbook(demo, "report.yml", "-e", f"run_id={run_id}")
    for line in lab_runs.report_text(reported.stdout):
        print(f"    {line}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m workqueue.demo.lab", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds-per-dot", type=float, default=0.5, help="work per dot (default 0.5 s)")
    parser.add_argument("--lab", choices=sorted(LABS), default=DEFAULT_LAB.name, help="which virtual lab (default lab)")
    parser.add_argument("--listen", default="127.0.0.1:8765", help="the live web view's address (HOST:PORT)")
    args = parser.parse_args()
    demo = Demo(LABS[args.lab])
    view: subprocess.Popen[str] | None = None
    try:
        client = engine.ensure_engine()
        step("the images (built here, no registry) and the virtual lab")
        demo.log.parent.mkdir(parents=True, exist_ok=True)
        demo.log.write_text("")
        print(f"    Ansible's whole log: {demo.log.relative_to(hosts.ROOT)}", flush=True)
        started = time.monotonic()
        images.program_images(client)
        print(f"    images ready: {time.monotonic() - started:.0f} s", flush=True)
        started = time.monotonic()
        lab: list[Host] = hosts.up(client, hosts.DEFAULT_HOSTS, demo.lab)
        print(f"    lab up: {time.monotonic() - started:.0f} s", flush=True)
        for host in lab:
            print(f"    {host.name:5} {host.address:12} {', '.join(host.groups)}")
        workers = [h.name for h in lab if "workers" in h.groups]
        dots = ["-e", f"seconds_per_dot={args.seconds_per_dot}"]
        for mode in (Mode.NOACK, Mode.ACK):
            settings = [*dots, "-e", f"task_mode={mode}"]
            step(f"site.yml in {mode} mode (it also starts a worker a drill stopped)")
            run_playbook(demo, "site.yml", *settings)
            wait_until(lambda: all(_consuming(client, h) for h in workers), 60, "every worker consuming")
            view = view or _web_view(demo, args.listen)
            drill(demo, client, workers, mode, settings)
    except (SetupError, hosts.LabError, TimeoutError) as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 1
    finally:
        if view is not None:
            _stop(view)
    step("explore")
    ansible_playbook = f".venv/bin/ansible-playbook -i {demo.lab.inventory.relative_to(hosts.ROOT)}"
    print("    the lab stays up: make lab-status")
    print(f"    more tasks: {ansible_playbook} playbooks/produce.yml -e task_count=10")
    print("    watch them live, in another terminal: make watch, or in a browser: make watch-web")
    print(f"    the report of the newest run: {ansible_playbook} playbooks/report.yml (files in reports/)")
    print(f"    remove the project from the hosts: {ansible_playbook} playbooks/teardown.yml")
    print("    remove the lab: make lab-down")
    return 0


def _stop(view: subprocess.Popen[str]) -> None:
    """Ctrl+C to the web view; a kill, said, when it has not ended in VIEW_STOP_SECONDS."""
    view.send_signal(signal.SIGINT)
    try:
        view.wait(timeout=VIEW_STOP_SECONDS)
    except subprocess.TimeoutExpired:
        view.kill()
        view.wait()
        print(f"    (the live web view did not stop within {VIEW_STOP_SECONDS} s of Ctrl+C: killed)", flush=True)


def _web_view(demo: Demo, listen: str) -> subprocess.Popen[str] | None:
    """The live web view of the demo's lab, for as long as the demo runs; None (said) when it cannot start."""
    inventory = str(demo.lab.inventory)
    command = [
        sys.executable,
        "-m",
        "workqueue.report.web",
        "--inventory",
        inventory,
        "--duration",
        "1800",
        "--listen",
        listen,
    ]
    with demo.web_log.open("w") as log:
        view = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True)
    assert view.stdout is not None
    first = view.stdout.readline().strip()  # where to open it, once it listens; '' when it could not start
    if "open http://" not in first:
        _stop(view)
        print(f"    (the live web view did not start: {demo.web_log.read_text().strip()[-300:]})", flush=True)
        return None
    print(f"    watch the runs live in a browser: {first.partition('open ')[2].split()[0]}", flush=True)
    return view


def _consuming(client: docker.DockerClient, host: str) -> bool:
    return any(e["event"] == "consuming" for e in container_events(client, host))


if __name__ == "__main__":
    sys.exit(main())
