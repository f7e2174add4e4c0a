"""Live call traffic in one process: transcripts, prosody samples, script position, as they happen.

Sessions publish small JSON-able events per call; subscribers (the live WebSocket
``GET /api/calls/{call_sid}/live``, later the monitor) each get a bounded queue. Live traffic is
best effort by design: a slow subscriber loses its oldest events (counted) and never slows a call.
Durable events (results for the HR system) do not go through here.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

QUEUE_SIZE = 256
"""Events a subscriber may fall behind by before it loses the oldest."""


class LiveSubscription:
    """One subscriber's view of one call (or of every call, ``call_sid=None``)."""

    def __init__(self, hub: LiveHub, call_sid: str | None, size: int) -> None:
        self.hub = hub
        self.call_sid = call_sid
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(size)
        self.dropped = 0

    def offer(self, event: dict[str, Any]) -> None:
        """Queue an event; when full, the oldest goes (counted)."""
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
            self.hub.dropped += 1
        self.queue.put_nowait(event)

    async def get(self) -> dict[str, Any]:
        """The next event."""
        return await self.queue.get()

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[dict[str, Any]]:
        while True:
            yield await self.queue.get()

    def close(self) -> None:
        """Stop receiving events."""
        self.hub._unsubscribe(self)

    def __enter__(self) -> LiveSubscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LiveHub:
    """Fan-out of live events to subscribers, per call."""

    def __init__(self, queue_size: int = QUEUE_SIZE) -> None:
        self.queue_size = queue_size
        self._subscribers: dict[str | None, set[LiveSubscription]] = defaultdict(set)
        self.published = 0
        self.dropped = 0

    def subscribe(self, call_sid: str | None = None) -> LiveSubscription:
        """Receive one call's events (``None``: every call's)."""
        subscription = LiveSubscription(self, call_sid, self.queue_size)
        self._subscribers[call_sid].add(subscription)
        return subscription

    def _unsubscribe(self, subscription: LiveSubscription) -> None:
        subscribers = self._subscribers.get(subscription.call_sid)
        if subscribers is not None:
            subscribers.discard(subscription)
            if not subscribers:
                del self._subscribers[subscription.call_sid]

    def watched(self, call_sid: str) -> bool:
        """Whether anyone is subscribed to this call (or to every call)."""
        return bool(self._subscribers.get(call_sid) or self._subscribers.get(None))

    def publish(self, call_sid: str, kind: str, t: float | None = None, **data: Any) -> None:
        """Send one event of a call to its subscribers (never blocks)."""
        targets = [*self._subscribers.get(call_sid, ()), *self._subscribers.get(None, ())]
        if not targets:
            return
        event = {"type": kind, "call_sid": call_sid, "t": t, "timestamp": time.time(), "data": data}
        self.published += 1
        for subscription in targets:
            subscription.offer(event)
