"""The live view in a browser: the run's timeline drawing itself, for a projector.

    python -m workqueue.report.web [--url URL] [--password-file FILE] [--listen HOST:PORT] [--run RUN_ID]
    make watch-web   (finds the broker and its password from the inventory, as the playbooks do)

It hears what ``make watch`` hears (the workers' and the producer's events on
``workqueue.events``, the broker's counts) and serves one page at
http://127.0.0.1:8765/ that updates itself. It listens on loopback unless
--listen names another address; the page only reads and shows no secret.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import ipaddress
import sys
import threading
import time
from dataclasses import dataclass

from aiohttp import web

from workqueue import cli
from workqueue.report import feed
from workqueue.report.web import server
from workqueue.report.web.frame import frame
from workqueue.report.web.heard import Heard
from workqueue.report.web.listener import Listener

PROG = "python -m workqueue.report.web"
DEFAULT_LISTEN = "127.0.0.1:8765"


class ViewError(Exception):
    """The view cannot serve; the message says what to change."""


@dataclass(frozen=True)
class WebConfig:
    view: feed.ViewOptions
    host: str
    port: int


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8765`` for IPv6) to its parts; ValueError saying what is wrong."""
    host, sep, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not HOST:PORT (for example {DEFAULT_LISTEN}, or 0.0.0.0:8765 for the lab)")
    return host, int(port)


def parse_args(argv: list[str] | None) -> WebConfig:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--listen",
        help=f"address and port of the page (default {DEFAULT_LISTEN}: this machine only; "
        "0.0.0.0:8765 shows it to the lab's network)",
    )
    view, args = feed.parse_view_args(PROG, parser, argv, interval=0.5, duration=14400.0)
    host, port = cli.option(parser, args.listen, "--listen", "WATCH_LISTEN", parse_listen, parse_listen(DEFAULT_LISTEN))
    return WebConfig(view=view, host=host, port=port)


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    heard = Heard()
    stop = threading.Event()
    listener = Listener(config.view.broker, heard, max(config.view.interval, 0.1), stop)
    listener.connect_first()  # a wrong password or no broker: one line, before anything listens
    listener.start()
    try:
        asyncio.run(serve(config, heard))
    except ViewError as exc:
        cli.fail(PROG, str(exc))
    finally:
        stop.set()
        listener.join(timeout=5)
    return 0


async def serve(config: WebConfig, heard: Heard) -> None:
    board = server.Board()
    runner = web.AppRunner(server.make_app(board), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        await _start(runner, config.host, config.port)
        where = f"[{config.host}]" if ":" in config.host else config.host
        print(f"{PROG}: open http://{where}:{config.port}/ (Ctrl+C to stop)", flush=True)
        if not _loopback(config.host):
            print(f"{PROG}: listening beyond this machine: the page only reads and shows no password", flush=True)
        deadline = time.monotonic() + config.view.duration
        while time.monotonic() < deadline:
            await board.show(frame(heard, config.view.broker, config.view.run, time.time()))
            await asyncio.sleep(max(config.view.interval, 0.1))
    finally:
        await runner.cleanup()


async def _start(runner: web.AppRunner, host: str, port: int) -> None:
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ViewError(
                f"port {port} on {host} is in use: stop what uses it, or choose another --listen HOST:PORT"
            ) from None
        raise ViewError(f"cannot listen on {host}:{port} ({exc.strerror or exc}): choose --listen HOST:PORT") from None


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


if __name__ == "__main__":
    cli.run(PROG, lambda: main(sys.argv[1:]))
