"""The bank worker's local kiosk feed: a WebSocket on 127.0.0.1 that tells the kiosk page
beside the bank what happens there, so the page keeps working while the server is away.

It sends the same messages as the server's kiosk feed (``devices.consumers.KioskConsumer``):
``hello`` on connect (with ``"local": true``), ``tap``, ``take_completed``/``take_cancelled``/
``return_completed``/``return_cancelled`` and ``bank.status``. It only sends; whatever a page
sends is ignored. It binds to loopback only: it is for the screen on this machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

log = logging.getLogger("devices.worker.kiosk")

LOOPBACK = "127.0.0.1"


class KioskFeed:
    """One bank's local feed. :meth:`start` and :meth:`close` run on the worker's event loop;
    :meth:`publish` and :meth:`set_online` may be called from any thread."""

    def __init__(self, bank: str, port: int) -> None:
        self.bank = bank
        self.port = port
        self.online = False
        self._server: Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pages: set[ServerConnection] = set()

    @property
    def address(self) -> tuple[str, int] | None:
        """(host, port) it listens on, or None when it is not running."""
        if self._server is None or not self._server.sockets:
            return None
        host, port = self._server.sockets[0].getsockname()[:2]
        return host, port

    async def start(self) -> bool:
        """Listen on 127.0.0.1; False (logged) when the port cannot be had."""
        self._loop = asyncio.get_running_loop()
        try:
            self._server = await serve(
                self._page, LOOPBACK, self.port, logger=log, ping_interval=20, ping_timeout=20
            )
        except OSError as exc:
            # The bank works without it; only the screen loses its offline fallback.
            log.error("local kiosk feed cannot listen on %s:%d: %s", LOOPBACK, self.port, exc)
            return False
        log.info("local kiosk feed on ws://%s:%d/", *self.address or (LOOPBACK, self.port))
        return True

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await self._server.wait_closed()
            self._server = None

    async def _page(self, ws: ServerConnection) -> None:
        self._pages.add(ws)
        try:
            await ws.send(self._text({"type": "hello", "bank": self.bank, "online": self.online}))
            async for _ in ws:  # a page may talk; the feed does not listen
                pass
        except ConnectionClosed:
            pass
        finally:
            self._pages.discard(ws)

    @staticmethod
    def _text(message: Mapping[str, Any]) -> str:
        body = dict(message)
        if body.get("type") == "hello":
            body["local"] = True
        return json.dumps(body, separators=(",", ":"))

    def publish(self, message: Mapping[str, Any]) -> None:
        """Send ``message`` to every connected page (from any thread; never blocks)."""
        loop = self._loop
        if loop is None or self._server is None:
            return
        text = self._text(message)
        if _running_loop() is loop:
            broadcast(self._pages, text)
            return
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is listening
            loop.call_soon_threadsafe(lambda: broadcast(self._pages, text))

    def set_online(self, online: bool) -> None:
        """Note the server link going up or down; pages hear of a change."""
        if online == self.online:
            return
        self.online = online
        self.publish({"type": "bank.status", "online": online})


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
