"""Live call traffic in one process: transcripts, prosody samples, script position, as they happen.

Sessions publish small JSON-able events per call; subscribers (the live WebSocket
``GET /api/calls/{call_sid}/live``, later the monitor) each get a bounded queue. Live traffic is
best effort by design: a slow subscriber loses its oldest events (counted) and never slows a call.
Durable events (results for the HR system) do not go through here.

:class:`LiveFeed` (the event bus's ``live``) adds a transport: with Redis, each process's live
events of a call go over Pub/Sub to the processes where someone watches that call, so a watcher
connected to any process sees every process's calls.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from voicebot.events.types import Event

QUEUE_SIZE = 256
"""Events a subscriber may fall behind by before it loses the oldest."""


def is_channel(key: str | None) -> bool:
    """Whether a subscription key is a channel (``@calls``, ``<sid>@audio``), not a call sid.

    Call sids never contain ``@``. A watcher of every call gets every call's events, but not the
    channels': those are for their own subscribers (the call lists, listen-in audio).
    """
    return key is not None and "@" in key


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
        """Whether anyone is subscribed to this call (or to every call) or channel."""
        if self._subscribers.get(call_sid):
            return True
        return not is_channel(call_sid) and bool(self._subscribers.get(None))

    def publish(self, call_sid: str, kind: str, t: float | None = None, **data: Any) -> None:
        """Send one event of a call to its subscribers (never blocks)."""
        if not self.watched(call_sid):
            return
        event = {"type": kind, "call_sid": call_sid, "t": t, "timestamp": time.time(), "data": data}
        self.deliver(event)

    def deliver(self, event: dict[str, Any]) -> bool:
        """Hand a ready event (``type``, ``call_sid``, ...) to this process's subscribers."""
        call_sid = event.get("call_sid")
        targets = [*self._subscribers.get(call_sid, ())]
        if not is_channel(call_sid):
            targets.extend(self._subscribers.get(None, ()))
        if not targets:
            return False
        self.published += 1
        for subscription in targets:
            subscription.offer(event)
        return True


WATCH_ALL = "*"
"""What :attr:`LiveFeed.remote_watching` holds for a watcher of every call."""


class LiveFeed(LiveHub):
    """A :class:`LiveHub` that can also reach watchers in other processes.

    ``forward`` (set by the Redis bus) takes an event for the other processes; it is called only
    for calls watched elsewhere (``remote_watching``, kept up to date by the bus), so an unwatched
    call costs no traffic. ``on_watch_change`` is called when this process's set of watched calls
    changes (the bus then tells the other processes). Without a transport it is a plain hub.
    """

    def __init__(self, queue_size: int = QUEUE_SIZE) -> None:
        super().__init__(queue_size)
        self.forward: Callable[[dict[str, Any]], None] | None = None
        self.on_watch_change: Callable[[], None] | None = None
        self.remote_watching: frozenset[str] = frozenset()
        """Call sids watched in other processes (:data:`WATCH_ALL`: every call is)."""
        self.forwarded = 0

    def watched_here(self) -> set[str]:
        """Call sids watched in this process (:data:`WATCH_ALL` for a watcher of every call)."""
        return {WATCH_ALL if sid is None else sid for sid in self._subscribers}

    def watched_elsewhere(self, call_sid: str | None) -> bool:
        """Whether another process watches this call (or every call)."""
        remote = self.remote_watching
        if not remote:
            return False
        return call_sid in remote or (WATCH_ALL in remote and not is_channel(call_sid))

    def watched(self, call_sid: str) -> bool:
        """Whether anyone, in this process or another, watches this call."""
        return super().watched(call_sid) or self.watched_elsewhere(call_sid)

    def subscribe(self, call_sid: str | None = None) -> LiveSubscription:
        """Receive one call's events (``None``: every call's), from every process."""
        new = call_sid not in self._subscribers
        subscription = super().subscribe(call_sid)
        if new and self.on_watch_change is not None:
            self.on_watch_change()
        return subscription

    def _unsubscribe(self, subscription: LiveSubscription) -> None:
        super()._unsubscribe(subscription)
        if subscription.call_sid not in self._subscribers and self.on_watch_change is not None:
            self.on_watch_change()

    def deliver(self, event: dict[str, Any]) -> bool:
        """Hand an event to this process's subscribers, and to other processes' if watched."""
        delivered = super().deliver(event)
        if self.forward is not None and self.watched_elsewhere(event.get("call_sid")):
            self.forward(event)
            self.forwarded += 1
        return delivered

    def receive(self, event: dict[str, Any]) -> bool:
        """An event from another process: to this process's subscribers only."""
        return LiveHub.deliver(self, event)

    def publish_event(self, event: Event) -> None:
        """Send a live :class:`~voicebot.events.types.Event` (its data names the ``call_sid``)."""
        call_sid = event.data.get("call_sid")
        if not self.watched(call_sid):
            return
        self.deliver(
            {
                "type": event.type,
                "call_sid": call_sid,
                "t": event.data.get("t"),
                "timestamp": time.time(),
                "data": event.data,
                "id": event.id,
            }
        )
