"""The live web view, in a real browser (headless Chromium) against a real broker and real workers.

The tests read the page's DOM as the class would read the projector: each task's
bar (``data-seq``, ``data-fate``, ``data-worker``, drawn by workqueue/report/timeline.py),
the verdict line, the queue line and the feed's badge. Every screenshot a test
takes is saved under build/test-output/watch_web/, to look at when one fails.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import NODE, PASSWORD, URL, VHOST, ctrl_c, queue_counts
from workqueue.machine import local_broker, packages
from workqueue.report import fates
from workqueue.report.gathered import Container, Gathered, QueueState
from workqueue.virtual_lab.processes import ROOT, LocalLab, Program

pytestmark = pytest.mark.broker

SHOTS = ROOT / "build" / "test-output" / "watch_web"
HOST = socket.gethostname()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class WebView:
    """``python -m workqueue.report.web`` as a process; the address it prints."""

    def __init__(self, *args: str, listen: str | None = None) -> None:
        self.port = free_port()
        self.listen = listen or f"127.0.0.1:{self.port}"
        command = [
            sys.executable,
            "-m",
            "workqueue.report.web",
            "--interval",
            "0.3",
            "--duration",
            "300",
            "--listen",
            self.listen,
        ]
        self.process = subprocess.Popen([*command, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # the first line says where to open it, once it listens
        assert "open http://" in line, f"{line!r} {self.stop()}"
        self.url = f"http://127.0.0.1:{self.listen.rpartition(':')[2]}/"

    def stop(self) -> tuple[int, str]:
        return ctrl_c(self.process)


class Page:
    """The page in headless Chromium, read through its DOM."""

    def __init__(self, driver: Any, url: str, name: str) -> None:
        self.driver = driver
        self.name = name
        self.shots = 0
        driver.get(url)

    def text(self, element_id: str) -> str:
        return str(self.driver.find_element("id", element_id).text)

    def settled(self) -> bool:
        """The frame's own word that the run has settled (the report's rule: nothing queued, requeued or in hand)."""
        return "settled" in str(self.driver.find_element("id", "verdict").get_attribute("class")).split()

    def bars(self) -> list[dict[str, str]]:
        """Every task's bar on the timeline: its task, its fate and its worker's lane."""
        found = self.driver.execute_script(
            "return Array.from(document.querySelectorAll('#timeline rect[data-seq]')).map("
            "r => ({seq: r.dataset.seq, fate: r.dataset.fate, worker: r.dataset.worker}))"
        )
        return list(found)

    def wait_for(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):  # the frame may be replaced under our feet
                if condition():
                    return
            time.sleep(0.2)
        shot = self.shot(f"timeout-{re.sub(r'[^a-z0-9]+', '-', what.lower())}")
        raise AssertionError(
            f"the page shows no {what} within {timeout:g} s; verdict {self.text('verdict')!r}, "
            f"queue {self.text('queue')!r}, feed {self.text('feed')!r}, bars {self.bars()}; screenshot {shot}"
        )

    def switch_theme(self) -> str:
        """Press the theme button; the theme it shows now, checked on the timeline's own background."""
        before = self.driver.execute_script("return document.documentElement.dataset.theme")
        self.driver.find_element("id", "theme").click()
        theme = str(self.driver.execute_script("return document.documentElement.dataset.theme"))
        background = self.driver.execute_script("return getComputedStyle(document.querySelector('#timeline .bg')).fill")
        assert theme != before and background == ("rgb(17, 20, 23)" if theme == "dark" else "rgb(255, 255, 255)")
        return theme

    def shot(self, label: str) -> Path:
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.shots += 1
        path = SHOTS / f"{self.name}-{self.shots:02d}-{label}.png"
        self.driver.save_screenshot(str(path))
        return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium and its driver from the distribution's packages: the library downloads no browser."""
    packages.ensure_commands({"chromium": "chromium", "chromedriver": "chromium-driver"})
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1600,1000")  # a projector's proportions
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def in_hand(worker: Program) -> set[int]:
    """The tasks a worker received and has not finished, from its own events."""
    ended = [e["seq"] for e in worker.events() if e["event"] in ("done", "abandoned")]
    held = [e["seq"] for e in worker.events("received")]
    for seq in ended:
        held.remove(seq)
    return set(held)


def report_verdict(workers: list[Program], stopped: Program, producer: Program) -> str:
    """What report.yml says of the run: the same record, read from the programs' logs afterwards."""
    queues = [QueueState(name, ready, unacked, 0) for name, (ready, unacked) in queue_counts().items()]
    gathered = Gathered(
        containers=[Container(HOST, w.name, w is not stopped, "", w.events()) for w in workers],
        producer_events=producer.events(),
        queues=queues,
    )
    run_id = fates.last_run(gathered)
    assert run_id is not None
    return fates.build(gathered, run_id).verdict


@pytest.mark.parametrize("mode", ["noack", "ack"])
def test_the_page_shows_a_stopped_workers_task_change_fate_as_it_happens(
    mode: str, lab: LocalLab, browser: Any
) -> None:
    workers = lab.workers(3, "--mode", mode, "--seconds-per-dot", "0.6")
    view = WebView("--url", URL, "--mode", mode)
    try:
        page = Page(browser, view.url, f"stop-{mode}")
        page.wait_for(lambda: "3 consumers" in page.text("queue"), 30, "three consumers")
        producer = lab.produce("6", "--mode", mode, "--url", URL)
        run_id = producer.events("run_started")[0]["run_id"]
        stopped = workers[1]
        stopped_lane = f"{HOST}/{stopped.name}"
        # Stop it while it works on a long task (#4 or later: 2.4 s or more), once the page shows it so.
        stopped.wait_for(lambda: max(in_hand(stopped), default=0) >= 4, 30, "a long task in hand")
        long_task = str(max(in_hand(stopped)))

        def in_its_hands() -> bool:
            return {"seq": long_task, "fate": "in progress", "worker": stopped_lane} in page.bars()

        page.wait_for(in_its_hands, 10, f"task #{long_task} in progress in the stopped worker's lane")
        page.shot("before-the-stop")
        stopped.signal(signal.SIGTERM)
        stopped.wait(timeout=15)
        abandoned = {str(e["seq"]) for e in stopped.events("abandoned")}
        assert long_task in abandoned, abandoned

        expected = "lost" if mode == "noack" else "requeued"

        def changed_fate() -> bool:
            fates_now = {(b["seq"], b["worker"]): b["fate"] for b in page.bars()}
            return all(fates_now.get((seq, stopped_lane)) == expected for seq in abandoned)

        page.wait_for(changed_fate, 15, f"stopped worker's tasks {expected}")
        page.wait_for(page.settled, 60, "settled verdict")
        page.shot("settled")
        verdict = page.text("verdict")
        bars = page.bars()
        theme = page.switch_theme()
        page.shot(f"theme-{theme}")
    finally:
        code, err = view.stop()
    assert code == 130, err  # Ctrl+C
    assert run_id in page.text("run")
    assert verdict == report_verdict(workers, stopped, producer)
    others = {b["seq"] for b in bars if b["worker"] != stopped_lane and b["fate"] == "done"}
    if mode == "noack":
        assert f"{len(abandoned)} lost" in verdict and f"dispatched to {stopped_lane}" in verdict
        assert not abandoned & others, "a lost task is done by nobody"
    else:
        assert "0 lost" in verdict and abandoned <= others, "each requeued task done by another worker"
        assert f"{len(abandoned)} redelivered" in verdict


def test_the_page_says_when_the_broker_goes_and_recovers_when_it_returns(lab: LocalLab, browser: Any) -> None:
    workers = lab.workers(1, "--mode", "ack", "--seconds-per-dot", "0.1", "--connect-timeout", "120")
    view = WebView("--url", URL)
    try:
        page = Page(browser, view.url, "broker-restart")
        page.wait_for(lambda: page.text("feed") == "live" and "1 consumers" in page.text("queue"), 30, "live feed")
        local_broker.ctl(NODE, "stop_app")
        try:
            page.wait_for(lambda: "lost the broker" in page.text("feed"), 30, "lost feed")
            page.shot("broker-gone")
        finally:
            local_broker.ctl(NODE, "start_app")
            local_broker.ctl(NODE, "await_startup")
        page.wait_for(lambda: page.text("feed") == "live", 60, "live feed again")
        workers[0].wait_for(lambda: len(workers[0].events("consuming")) >= 2, 60, "the worker back")
        producer = lab.produce("3", "--mode", "ack", "--url", URL)
        run_id = producer.events("run_started")[0]["run_id"]
        page.wait_for(lambda: page.text("verdict") == "3 sent, 3 done, 0 lost", 30, "the new run done")
        page.shot("after-the-restart")
        assert run_id in page.text("run")
    finally:
        code, err = view.stop()
    assert code == 130, err


def test_the_page_says_while_the_broker_blocks_its_publishers(lab: LocalLab, browser: Any) -> None:
    lab.workers(1, "--mode", "ack")
    view = WebView("--url", URL)
    status = json.loads(local_broker.ctl(NODE, "status", "--formatter", "json").stdout)
    try:
        page = Page(browser, view.url, "broker-alarm")
        page.wait_for(lambda: page.text("feed") == "live" and "1 consumers" in page.text("queue"), 30, "live feed")
        assert page.text("alarm") == ""  # hidden: no alarm
        local_broker.ctl(NODE, "set_disk_free_limit", str(10**18))  # past any disk's free space
        try:
            page.wait_for(lambda: "low on disk" in page.text("alarm"), 30, "the alarm")
            said = page.text("alarm")
            page.shot("alarm")
        finally:
            local_broker.ctl(NODE, "set_disk_free_limit", str(status["disk_free_limit"]))
        page.wait_for(lambda: page.text("alarm") == "", 30, "the alarm gone")
    finally:
        code, err = view.stop()
    assert code == 130, err
    assert re.fullmatch(r"ALARM: the broker blocks every publisher since \d\d:\d\d:\d\d: low on disk .*", said), said


def test_the_page_beyond_loopback_shows_no_secret(broker_user: str, browser: Any, tmp_path: Path) -> None:
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n")
    url = f"amqp://{broker_user}@localhost:{NODE.port}/{VHOST}"
    view = WebView("--url", url, "--password-file", str(password_file), listen=f"0.0.0.0:{free_port()}")
    try:
        page = Page(browser, view.url, "no-secret")
        page.wait_for(lambda: page.text("feed") == "live", 30, "live feed")
        page.shot("beyond-loopback")
        html = str(browser.page_source)
        with urllib.request.urlopen(f"{view.url}events", timeout=10) as stream:
            first_frame = stream.readline().decode()
        with urllib.request.urlopen(view.url, timeout=10) as response:
            policy = response.headers["Content-Security-Policy"]
    finally:
        code, err = view.stop()
    assert first_frame.startswith("data: {")
    for text in (html, first_frame, err):
        assert PASSWORD not in text and str(password_file) not in text
    assert f"user '{broker_user}' at localhost:{NODE.port}, vhost '{VHOST}'" in html
    assert policy.startswith("default-src 'self'"), "every script and style from the view itself"
    assert code == 130, err


def hold_port() -> tuple[socket.socket, int]:
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen()
    return held, int(held.getsockname()[1])


@pytest.mark.parametrize(
    ("case", "code", "message"),
    [
        ("unreachable", 1, "broker not reachable for"),
        ("wrong password", 1, "access refused for user 'guest'"),
        ("port in use", 1, "is in use: stop what uses it, or choose another --listen HOST:PORT"),
        ("bad listen", 2, "--listen: 'localhost' is not HOST:PORT"),
    ],
)
def test_the_web_view_bad_input_says_what_to_fix(case: str, code: int, message: str, broker: str) -> None:
    held, port = hold_port()
    args = {
        "unreachable": ["--url", "amqp://guest:guest@127.0.0.1:1/", "--connect-timeout", "0"],
        "wrong password": ["--url", URL.replace("guest:guest@", "guest:wrong@"), "--connect-timeout", "0"],
        "port in use": ["--url", URL, "--listen", f"127.0.0.1:{port}"],
        "bad listen": ["--url", URL, "--listen", "localhost"],
    }[case]
    try:
        result = subprocess.run(
            [sys.executable, "-m", "workqueue.report.web", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        held.close()
    assert result.returncode == code
    assert "Traceback" not in result.stderr and "wrong" not in result.stderr
    assert message in result.stderr.strip().splitlines()[-1]


def test_the_feed_thread_and_the_server_stop_with_the_view(clean_broker: str) -> None:
    """--duration ends the view by itself (every loop of the tests is bounded): exit 0, nothing left behind."""
    port = free_port()
    started = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "workqueue.report.web",
            "--url",
            URL,
            "--listen",
            f"127.0.0.1:{port}",
            "--duration",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 20
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))  # the port is free again
