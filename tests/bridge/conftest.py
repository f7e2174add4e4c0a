"""Fixtures for the HR-system bridge tests: an in-memory bus, real loopback webhook receivers.

Receivers are aiohttp apps on real loopback sockets (no HTTP mocks). Each verifies every request
with the official ``standardwebhooks`` library and records what it got; its behaviour (status,
response headers, delay) is a function the test sets.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from standardwebhooks import Webhook

from hris_bridge.bridge import Bridge
from hris_bridge.endpoints import Endpoint
from hris_bridge.schedule import RetrySchedule
from hris_bridge.signing import new_secret
from hris_bridge.store import DeliveryStore
from voicebot.events.types import Event, make_event

FAST = RetrySchedule(scale=1e-4)
"""Retries after ~0.5 ms, 30 ms, 180 ms, 0.7 s, ...: a receiver recovering is seen at once."""
INSTANT = RetrySchedule(scale=1e-5)
"""The whole schedule (8 attempts) in about a second."""


# --- an in-memory bus with the consumer-group semantics of voicebot.events.bus --------------------


@dataclass
class FakeDelivery:
    message_id: str
    event: Event
    deliveries: int


@dataclass
class _Group:
    next: int = 0
    pending: dict[str, list[Any]] = field(default_factory=dict)
    """message id -> [consumer, last delivered (monotonic), deliveries]."""


class FakeBus:
    """Durable-consumer side of the event bus, in memory (Redis-streams-like groups)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, Event]] = []
        self.groups: dict[str, _Group] = {}
        self._new = asyncio.Condition()
        self.acks = 0

    async def publish(self, event: Event) -> str:
        message_id = f"{len(self.messages) + 1}-0"
        self.messages.append((message_id, event))
        async with self._new:
            self._new.notify_all()
        return message_id

    def _group(self, group: str) -> _Group:
        return self.groups.setdefault(group, _Group())

    async def read(self, group, consumer, count=100, block_ms=1000):
        g = self._group(group)
        events = dict(self.messages)
        own = [mid for mid, (c, _, _) in g.pending.items() if c == consumer][:count]
        if own:
            out = []
            for mid in own:
                g.pending[mid][1] = time.monotonic()
                g.pending[mid][2] += 1
                out.append(FakeDelivery(mid, events[mid], g.pending[mid][2]))
            return out
        if g.next >= len(self.messages):
            async with self._new:
                try:
                    await asyncio.wait_for(
                        self._new.wait_for(lambda: g.next < len(self.messages)), block_ms / 1000
                    )
                except TimeoutError:
                    return []
        out = []
        for mid, event in self.messages[g.next : g.next + count]:
            g.pending[mid] = [consumer, time.monotonic(), 1]
            out.append(FakeDelivery(mid, event, 1))
        g.next += len(out)
        return out

    async def ack(self, group, message_id):
        if self._group(group).pending.pop(message_id, None) is not None:
            self.acks += 1

    async def claim_stale(self, group, consumer, min_idle_ms, count=100):
        g = self._group(group)
        events = dict(self.messages)
        now = time.monotonic()
        out = []
        for mid, entry in g.pending.items():
            if entry[0] != consumer and (now - entry[1]) * 1000 >= min_idle_ms:
                entry[0], entry[1] = consumer, now
                entry[2] += 1
                out.append(FakeDelivery(mid, events[mid], entry[2]))
                if len(out) >= count:
                    break
        return out

    def unacked(self, group: str = "hris_bridge") -> int:
        return len(self._group(group).pending)


# --- receivers ----------------------------------------------------------------------------------


@dataclass
class Received:
    webhook_id: str
    timestamp: str
    signature: str
    body: bytes
    headers: dict[str, str]
    verified: bool
    at: float

    @property
    def payload(self) -> dict[str, Any]:
        return json.loads(self.body)


Behaviour = Callable[["Receiver", web.Request], Awaitable[web.StreamResponse]]


class Receiver:
    """A webhook receiver on a loopback port that records every request."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.webhook = Webhook(secret)
        self.requests: list[Received] = []
        self.behaviour: Behaviour | None = None
        self.fail_first = 0
        """Answer 500 to the first N requests."""
        self.status = 200
        self.headers: dict[str, str] = {}
        self.delay = 0.0
        self.server: TestServer | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        try:
            self.webhook.verify(body, dict(request.headers))
            verified = True
        except Exception:
            verified = False
        self.requests.append(
            Received(
                request.headers.get("webhook-id", ""),
                request.headers.get("webhook-timestamp", ""),
                request.headers.get("webhook-signature", ""),
                body,
                dict(request.headers),
                verified,
                time.time(),
            )
        )
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.behaviour is not None:
            return await self.behaviour(self, request)
        if len(self.requests) <= self.fail_first:
            return web.Response(status=500, text="not yet")
        return web.Response(status=self.status, headers=self.headers)

    def ids(self) -> list[str]:
        """webhook-ids of the requests, in arrival order."""
        return [r.webhook_id for r in self.requests]

    def unique_ids(self) -> set[str]:
        """webhook-ids after dedupe."""
        return set(self.ids())

    def accepted_ids(self) -> list[str]:
        """webhook-ids answered 2xx (first time each), as a receiver that dedupes would store."""
        return list(dict.fromkeys(self.ids()))

    def endpoint(self, endpoint_id: str = "default", **kwargs: Any) -> Endpoint:
        return Endpoint(id=endpoint_id, url=self.url, secret=self.secret, **kwargs)


@pytest.fixture
async def receivers():
    """Factory: ``await receivers()`` starts one more receiver (stopped after the test)."""
    started: list[TestServer] = []

    async def start(secret: str | None = None) -> Receiver:
        receiver = Receiver(secret or new_secret())
        app = web.Application(client_max_size=32 * 1024 * 1024)
        app.router.add_post("/hooks", receiver.handle)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        started.append(server)
        receiver.server = server
        receiver.url = str(server.make_url("/hooks"))
        return receiver

    yield start
    for server in started:
        await server.close()


@pytest.fixture
async def receiver(receivers) -> Receiver:
    return await receivers()


@pytest.fixture
def bus() -> FakeBus:
    return FakeBus()


@pytest.fixture
async def store(tmp_path):
    s = await DeliveryStore.open(tmp_path / "bridge.db")
    yield s
    await s.close()


def bridge_for(bus, store, endpoints, **kwargs: Any) -> Bridge:
    """A bridge with test-friendly timings (fast schedule, short blocking reads)."""
    kwargs.setdefault("schedule", FAST)
    kwargs.setdefault("block_ms", 50)
    kwargs.setdefault("poll_secs", 0.2)
    kwargs.setdefault("consumer", "test-bridge")
    return Bridge(bus, store, endpoints, **kwargs)


async def eventually(
    check: Callable[[], Any],
    timeout: float = 10.0,  # noqa: ASYNC109 - a polling helper's limit, not an I/O timeout
    interval: float = 0.01,
):
    """Wait until ``check()`` (sync or async) is truthy; fail with its last value otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s (last: {value!r})")
        await asyncio.sleep(interval)


def completed_event(n: int = 0, **overrides: Any) -> Event:
    """An ``interview.completed`` event (the report example of the event catalogue)."""
    from voicebot.events.types import EVENT_TYPES

    data = json.loads(json.dumps(EVENT_TYPES["interview.completed"].example))
    data["interview_id"] = f"iv_test{n:05d}"
    data.update(overrides)
    return make_event("interview.completed", data)


def call_event(type_: str = "call.started", n: int = 0, **kw: Any) -> Event:
    from voicebot.events.types import EVENT_TYPES

    data = json.loads(json.dumps(EVENT_TYPES[type_].example))
    data["call_sid"] = f"CA{n:032d}"
    return make_event(type_, data, **kw)
