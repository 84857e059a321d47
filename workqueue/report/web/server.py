"""The HTTP side (aiohttp): the page, its script and style, and the frames pushed as server-sent events.

The page only reads: no route changes anything, whoever opens it. Every file it
needs is served from ``static/`` (no CDN: a classroom may have no internet).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from aiohttp import web

STATIC = Path(__file__).with_name("static")
KEEPALIVE_SECONDS = 15.0  # a comment line, so that proxies and browsers keep an idle stream
HEADERS = {
    # Everything from here and nothing else; the frames' SVG is inserted as markup, never as script.
    "Content-Security-Policy": "default-src 'self'; style-src 'self'; img-src 'self' data:",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


class Board:
    """The newest frame, as text, and a way to wait for the next one."""

    def __init__(self) -> None:
        self.version = 0
        self.text = ""
        self._changed = asyncio.Condition()

    async def show(self, frame: dict[str, Any]) -> None:
        text = json.dumps(frame, separators=(",", ":"))
        if text == self.text:
            return
        async with self._changed:
            self.version, self.text = self.version + 1, text
            self._changed.notify_all()

    async def after(self, version: int, timeout: float) -> tuple[int, str] | None:
        """The frame newer than ``version``, or None when none came within ``timeout``."""
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: self.version > version), timeout)
            except TimeoutError:
                return None
            return self.version, self.text


def make_app(board: Board) -> web.Application:
    app = web.Application()
    app.on_response_prepare.append(_headers)
    app.router.add_get("/", _page)
    app.router.add_get("/events", lambda request: _events(request, board))
    app.router.add_static("/static/", STATIC)
    return app


async def _headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)


async def _page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")


async def _events(request: web.Request, board: Board) -> web.StreamResponse:
    """Server-sent events: the newest frame at once, then each new one; the browser reconnects by itself."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    version = 0
    while True:
        newer = await board.after(version, KEEPALIVE_SECONDS)
        if newer is None:
            await response.write(b": still here\n\n")
            continue
        version, text = newer
        await response.write(f"data: {text}\n\n".encode())
