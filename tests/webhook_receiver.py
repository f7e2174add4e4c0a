"""An HR system's webhook endpoint for tests: real HTTP on a loopback port, in its own thread.

Verifies every request with the official ``standardwebhooks`` library (a request that does not
verify is answered 401 and counted), dedupes by ``webhook-id`` as the spec asks receivers to,
and keeps what arrived for the test to read. ``fail_first`` answers 500 to the first N requests.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections import Counter
from typing import Any

from aiohttp import web
from standardwebhooks import Webhook


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class WebhookReceiver:
    """A Standard Webhooks receiver running in a background thread."""

    def __init__(self, secret: str, *, fail_first: int = 0) -> None:
        self.secret = secret
        self.fail_first = fail_first
        self.delay_secs = 0.0  # a slow HR system: each request takes this long
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/hooks"
        self.events: dict[str, dict[str, Any]] = {}  # webhook-id -> payload (deduped)
        self.arrivals: Counter[str] = Counter()  # webhook-id -> deliveries
        self.rejected = 0
        self.requests = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.text()
        if self.delay_secs:
            await asyncio.sleep(self.delay_secs)
        with self._lock:
            self.requests += 1
            if self.requests <= self.fail_first:
                return web.Response(status=500, text="not yet")
        try:
            Webhook(self.secret).verify(body, dict(request.headers))
        except Exception:
            with self._lock:
                self.rejected += 1
            return web.Response(status=401, text="bad signature")
        webhook_id = request.headers["webhook-id"]
        with self._lock:
            self.arrivals[webhook_id] += 1
            self.events.setdefault(webhook_id, json.loads(body))
        return web.Response(status=204)

    def _serve(self) -> None:
        self._loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_post("/hooks", self._handle)
        self._runner = web.AppRunner(app)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        self._loop.run_until_complete(site.start())
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    def start(self) -> WebhookReceiver:
        """Start serving; returns self."""
        self._thread = threading.Thread(target=self._serve, name="webhook-receiver", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def of(self, **match: Any) -> list[dict[str, Any]]:
        """Payloads (deduped) whose ``data`` has these values, in event-id (time) order."""
        with self._lock:
            items = sorted(self.events.items())
        return [
            payload
            for _, payload in items
            if all(payload["data"].get(key) == value for key, value in match.items())
        ]

    def wait_for(self, predicate, timeout: float = 60.0) -> None:
        """Wait until ``predicate(self)`` is true."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() > deadline:
                kinds = Counter(p["type"] for p in self.events.values())
                raise AssertionError(f"webhooks not there after {timeout} s; got {dict(kinds)}")
            time.sleep(0.2)
