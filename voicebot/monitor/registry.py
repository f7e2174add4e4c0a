"""Which calls are on now, in every server process, and which ended lately: the monitor's lists.

Sessions tell the registry when a call starts, moves on in its script, says a line and ends
(all synchronous, O(1): the call path never waits). Each change goes to the live feed under
:data:`CALLS_CHANNEL`, so every monitor page updates without reloading, in any process (the Redis
bus forwards it to the processes where someone watches the list, like any live event).

A page that (re)connects needs the current state too. Without Redis there is one process and the
registry keeps it in memory; finished calls come from the store. With Redis each process writes
its live calls to one hash (re-written every :data:`HEARTBEAT_SECS`; an entry not renewed for
:data:`STALE_SECS` belonged to a dead process and is ignored), each call's transcript lines to a
list (so a recruiter opening a call held by another process sees what was said so far), and
finished calls to a capped list. Redis writes are queued and pipelined by one task; when Redis is
down they are dropped (counted) and the heartbeat restores the live hash once it is back.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import secrets
import socket
import time
from typing import Any

log = logging.getLogger(__name__)

CALLS_CHANNEL = "@calls"
"""Live-feed key of the call-list updates (``call.updated``, ``call.ended``)."""
HEARTBEAT_SECS = 5.0
STALE_SECS = 15.0
RECENT_KEEP = 200
"""Finished calls kept in the shared recent list."""
LINES_TTL_SECS = 6 * 3600
"""A live call's transcript lines in Redis expire this long after the last one."""
STATUS_TTL_SECS = 7 * 86400
"""How long the outcome of a call in the shared recent list is kept."""
QUEUE_LIMIT = 10_000
CAMPAIGNS_CHANNEL = "@campaigns"
"""Live-feed key of ``campaign.changed`` (a campaign's counts changed: the campaigns view)."""


def campaign_changed(live: Any, campaign_id: str) -> None:
    """Tell the campaigns views (of every process) that a campaign's counts changed (O(1))."""
    if live is not None and live.watched(CAMPAIGNS_CHANNEL):
        live.deliver(
            {
                "type": "campaign.changed",
                "call_sid": CAMPAIGNS_CHANNEL,
                "t": None,
                "timestamp": time.time(),
                "campaign_id": campaign_id,
            }
        )


class CallRegistry:
    """Live and recently finished calls for the monitor (in memory; see :class:`RedisRegistry`)."""

    def __init__(self, live: Any, store: Any = None) -> None:
        self.live = live
        self.store = store
        self._calls: dict[str, dict[str, Any]] = {}
        self._lines: dict[str, list[dict[str, Any]]] = {}
        self._recent: collections.deque[dict[str, Any]] = collections.deque(maxlen=RECENT_KEEP)

    async def start(self) -> None:
        """Start background work (none in memory)."""

    async def close(self) -> None:
        """Stop background work."""

    # -- from the call sessions (synchronous, never blocks) --------------------------------

    def upsert(self, summary: dict[str, Any]) -> None:
        """A call started or changed (state, question); tells every list watcher."""
        summary = {**summary, "live": True}
        self._calls[summary["call_sid"]] = summary
        self._publish("call.updated", summary)

    def line(self, call_sid: str, line: dict[str, Any]) -> None:
        """A line of a live call's transcript (bot prompt or candidate's final words)."""
        if call_sid in self._calls:
            self._lines.setdefault(call_sid, []).append(line)

    def ended(self, finished: dict[str, Any]) -> None:
        """A call ended: off the live list, onto the recent one."""
        finished = {**finished, "live": False}
        self._calls.pop(finished["call_sid"], None)
        self._lines.pop(finished["call_sid"], None)
        self._recent.appendleft(finished)
        self._publish("call.ended", finished)

    def outcome(self, interview_id: str, status: str) -> None:
        """An ended call's interview has its outcome (the report is stored): tell the lists."""
        for call in self._recent:
            if call.get("interview_id") == interview_id and call.get("status") != status:
                call["status"] = status
                self._publish("call.ended", call)

    def _publish(self, kind: str, call: dict[str, Any]) -> None:
        if self.live.watched(CALLS_CHANNEL):
            self.live.deliver(
                {
                    "type": kind,
                    "call_sid": CALLS_CHANNEL,
                    "t": None,
                    "timestamp": time.time(),
                    "call": call,
                }
            )

    # -- for the monitor -------------------------------------------------------------------

    async def live_calls(self) -> list[dict[str, Any]]:
        """Calls in progress (every process's), oldest first."""
        return sorted(self._calls.values(), key=lambda call: call.get("started_at") or 0)

    async def get(self, call_sid: str) -> dict[str, Any] | None:
        """One live call's summary, or None."""
        return self._calls.get(call_sid)

    async def transcript(self, call_sid: str) -> list[dict[str, Any]]:
        """What was said so far in a live call."""
        return list(self._lines.get(call_sid, ()))

    async def recent_calls(self, limit: int = 50) -> list[dict[str, Any]]:
        """Finished calls, newest first: this process's store, and the shared list if any."""
        calls: dict[str, dict[str, Any]] = {}
        for call in [*self._recent, *await self._shared_recent(limit)]:
            calls.setdefault(call["call_sid"], call)
        if self.store is not None:
            for row in await self.store.recent_calls(limit):
                stored = {**row, "live": False}
                calls[row["call_sid"]] = {**calls.get(row["call_sid"], {}), **stored}
        ordered = sorted(calls.values(), key=lambda call: call.get("started_at") or 0)
        return ordered[::-1][:limit]

    async def _shared_recent(self, limit: int) -> list[dict[str, Any]]:
        """Finished calls of the other processes (none without Redis)."""
        return []


class RedisRegistry(CallRegistry):
    """The registry shared by every process through Redis (see the module docstring)."""

    def __init__(self, live: Any, store: Any, url: str, prefix: str = "voicebot:monitor") -> None:
        super().__init__(live, store)
        self.url = url
        self.calls_key = f"{prefix}:calls"
        self.recent_key = f"{prefix}:recent"
        self.lines_prefix = f"{prefix}:lines:"
        self.status_prefix = f"{prefix}:status:"
        self.process = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self._redis: Any = None
        self._queue: collections.deque[tuple] = collections.deque()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self.dropped = 0
        self.errors = 0

    async def start(self) -> None:
        """Connect and start the writer and the heartbeat."""
        from voicebot.redis_client import connect

        self._redis = connect(self.url, socket_timeout=2.0)
        self._tasks = [
            asyncio.create_task(self._writer(), name="monitor-registry-writer"),
            asyncio.create_task(self._heartbeat(), name="monitor-registry-heartbeat"),
        ]

    async def close(self) -> None:
        """Stop; this process's live calls leave the shared list."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._redis is not None:
            if self._calls:  # calls this process held end with it
                with contextlib.suppress(Exception):
                    await self._redis.hdel(self.calls_key, *self._calls)
            await self._redis.aclose()
            self._redis = None

    def _queue_op(self, *op: Any) -> None:
        if len(self._queue) >= QUEUE_LIMIT:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append(op)
        self._wake.set()

    def upsert(self, summary: dict[str, Any]) -> None:
        """As :meth:`CallRegistry.upsert`, and into the shared hash."""
        super().upsert(summary)
        self._queue_op("call", summary["call_sid"])

    def line(self, call_sid: str, line: dict[str, Any]) -> None:
        """As :meth:`CallRegistry.line`, and onto the call's shared list."""
        super().line(call_sid, line)
        self._queue_op("line", call_sid, json.dumps(line, ensure_ascii=False))

    def ended(self, finished: dict[str, Any]) -> None:
        """As :meth:`CallRegistry.ended`, and onto the shared recent list."""
        super().ended(finished)
        self._queue_op("ended", finished["call_sid"], json.dumps({**finished, "live": False}))

    def outcome(self, interview_id: str, status: str) -> None:
        """As :meth:`CallRegistry.outcome`, and for the other processes' recent lists."""
        super().outcome(interview_id, status)
        for call in self._recent:
            if call.get("interview_id") == interview_id:
                self._queue_op("status", call["call_sid"], status)

    def _entry(self, call_sid: str) -> str | None:
        call = self._calls.get(call_sid)
        if call is None:
            return None
        return json.dumps({**call, "process": self.process, "seen": time.time()})

    async def _writer(self) -> None:
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
            batch = list(self._queue)
            self._queue.clear()
            pipe = self._redis.pipeline(transaction=False)
            for op in batch:
                if op[0] == "call":
                    entry = self._entry(op[1])
                    if entry is not None:
                        pipe.hset(self.calls_key, op[1], entry)
                elif op[0] == "line":
                    key = self.lines_prefix + op[1]
                    pipe.rpush(key, op[2])
                    pipe.expire(key, LINES_TTL_SECS)
                elif op[0] == "status":
                    pipe.set(self.status_prefix + op[1], op[2], ex=STATUS_TTL_SECS)
                else:
                    pipe.hdel(self.calls_key, op[1])
                    pipe.delete(self.lines_prefix + op[1])
                    pipe.lpush(self.recent_key, op[2])
                    pipe.ltrim(self.recent_key, 0, RECENT_KEEP - 1)
            try:
                await pipe.execute()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # best effort; the heartbeat re-writes live calls
                self.errors += 1
                self.dropped += len(batch)
                log.warning("monitor registry: redis write failed (%s)", error)
                await asyncio.sleep(1.0)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECS)
            for call_sid in list(self._calls):
                self._queue_op("call", call_sid)

    async def live_calls(self) -> list[dict[str, Any]]:
        """Every live process's calls (this one's only while Redis is unreachable)."""
        try:
            entries = await self._redis.hgetall(self.calls_key)
        except Exception as error:
            self.errors += 1
            log.warning(
                "monitor registry: redis read failed (%s); this process's calls only", error
            )
            return await super().live_calls()
        now = time.time()
        calls = dict(self._calls)
        for call_sid, text in entries.items():
            call = json.loads(text)
            if call.get("process") != self.process and now - call.get("seen", 0) < STALE_SECS:
                calls.setdefault(call_sid, call)
        return sorted(calls.values(), key=lambda call: call.get("started_at") or 0)

    async def get(self, call_sid: str) -> dict[str, Any] | None:
        """A live call of any process."""
        local = self._calls.get(call_sid)
        if local is not None:
            return local
        try:
            text = await self._redis.hget(self.calls_key, call_sid)
        except Exception:
            self.errors += 1
            return None
        if text is None:
            return None
        call = json.loads(text)
        return call if time.time() - call.get("seen", 0) < STALE_SECS else None

    async def transcript(self, call_sid: str) -> list[dict[str, Any]]:
        """What was said so far in a live call of any process."""
        if call_sid in self._calls:
            return await super().transcript(call_sid)
        try:
            lines = await self._redis.lrange(self.lines_prefix + call_sid, 0, -1)
        except Exception:
            self.errors += 1
            return []
        return [json.loads(line) for line in lines]

    async def _shared_recent(self, limit: int) -> list[dict[str, Any]]:
        try:
            shared = [
                json.loads(text) for text in await self._redis.lrange(self.recent_key, 0, limit - 1)
            ]
            keys = [self.status_prefix + call["call_sid"] for call in shared]
            statuses = await self._redis.mget(keys) if keys else []
        except Exception:
            self.errors += 1
            return []
        for call, status in zip(shared, statuses, strict=True):
            if status is not None:
                call["status"] = status
        return shared
