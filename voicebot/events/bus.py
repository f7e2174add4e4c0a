"""The event bus: durable events for consumers (the HR bridge), live events for watchers.

Two backends with one interface (:class:`EventBus`):

* :class:`EmbeddedBus`: no Redis. Durable events are an append-only log in SQLite with consumer
  groups modelled on Redis streams (each group's last delivered entry, a pending entry per message
  handed out and not yet acknowledged), so nothing is lost across restarts. Live events stay in
  the process.
* :class:`RedisBus`: durable events go to a Redis stream (``XADD``, bounded by ``MAXLEN ~``) read
  by consumer groups (``XREADGROUP`` / ``XACK`` / ``XAUTOCLAIM``); every durable event is first
  written to a local SQLite outbox (:mod:`voicebot.events.outbox`) and a flusher task moves it to
  the stream in order, so a Redis outage delays events and loses none. Live events go over
  Pub/Sub, so a watcher connected to any process sees every process's calls.

Delivery is at least once: a consumer acknowledges what it has handled; what it took and never
acknowledged comes back to it on its next :meth:`~EventBus.read` (also after a restart) or can be
claimed by another consumer (:meth:`~EventBus.claim_stale`: a dead bridge's messages). Consumers
deduplicate on the event id.

With a data key (``VOICEBOT_DATA_KEY``) each durable event's JSON is encrypted wherever it is
stored: the SQLite log, the outbox and the Redis stream (so Redis's AOF/RDB files hold no
plaintext); every process that reads the bus needs the key. Live events are never stored.

``publish`` never raises because a backend is down and never waits on Redis: durable events wait
in the outbox (Redis) or in memory (the SQLite file failing) until they can be stored.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import contextlib
import json
import logging
import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voicebot.crypto import Keyring
from voicebot.events.live import LiveFeed
from voicebot.events.outbox import Outbox, SqliteThread, event_of, stored_event, transaction
from voicebot.events.types import EVENT_TYPES, Event

log = logging.getLogger(__name__)

RETRY_MIN_SECS = 0.05
RETRY_MAX_SECS = 1.0
"""Backoff between attempts while a backend is down: doubling from the first, capped (so recovery
is noticed within about a second)."""


@dataclass
class Delivery:
    """A durable event handed to a consumer of a group."""

    message_id: str
    """The bus's id of the message: what :meth:`EventBus.ack` takes."""
    event: Event
    deliveries: int
    """How many times this message was handed to a consumer (1 the first time)."""


class BusUnavailable(ConnectionError):
    """The bus's backend cannot be reached now (consumer side; retry later)."""


def _backoff(delay: float) -> float:
    return min(RETRY_MAX_SECS, max(RETRY_MIN_SECS, delay * 2))


async def _wait(event: asyncio.Event, secs: float) -> bool:
    """Wait for an event at most ``secs``; whether it was set.

    ``asyncio.timeout`` rather than ``asyncio.wait_for``: on Python 3.11 the latter can swallow a
    cancellation that arrives as the event is set, and a task being stopped would run on.
    """
    try:
        async with asyncio.timeout(secs):
            await event.wait()
    except TimeoutError:
        return False
    return True


class EventBus(abc.ABC):
    """Durable and live events. Use as ``async with`` or call :meth:`start` / :meth:`close`."""

    def __init__(self) -> None:
        self.live = LiveFeed()
        """Live events (best effort): ``live.subscribe(call_sid)``, ``live.publish(...)``."""
        self.published = 0
        """Durable events accepted (stored locally: the SQLite log, or the outbox)."""
        self.live_published = 0
        """Live events published through :meth:`publish`."""
        self.store_errors = 0
        """Failed attempts to store a durable event locally (it waited in memory meanwhile)."""
        self._backlog: collections.deque[Event] = collections.deque()
        self._backlog_task: asyncio.Task | None = None

    @abc.abstractmethod
    async def start(self) -> None:
        """Open the backend (never fails because Redis is down)."""

    async def close(self) -> None:
        """Store what waits in memory (briefly), stop the tasks, close the backend."""
        if self._backlog_task is not None:
            self._backlog_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._backlog_task
            self._backlog_task = None
        await self._drain_backlog(attempts=3)
        if self._backlog:
            log.error("%d durable events could not be stored and are lost", len(self._backlog))

    async def __aenter__(self) -> EventBus:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def publish(self, event: Event) -> None:
        """Publish an event: durable types to the durable log, live ones to watchers.

        Never raises because a backend is down (durable events wait, in order, until they can be
        stored); raises ``ValueError`` for a type not in the catalogue. Durable events are not
        echoed to the live feed: a session publishes what watchers see itself.
        """
        event_type = EVENT_TYPES.get(event.type)
        if event_type is None:
            raise ValueError(f"unknown event type {event.type!r}")
        if not event_type.durable:
            self.live.publish_event(event)
            self.live_published += 1
            return
        if self._backlog:  # earlier events wait to be stored: keep the order
            self._backlog.append(event)
            return
        try:
            await self._store(event)
        except Exception:
            self.store_errors += 1
            log.exception("could not store event %s: kept in memory, retrying", event.id)
            self._backlog.append(event)
            if self._backlog_task is None or self._backlog_task.done():
                self._backlog_task = asyncio.create_task(self._retry_backlog(), name="bus-backlog")
            return
        self.published += 1

    async def _drain_backlog(self, attempts: int = 1) -> None:
        delay = 0.0
        for _ in range(attempts):
            while self._backlog:
                try:
                    await self._store(self._backlog[0])
                except Exception:
                    self.store_errors += 1
                    break
                self._backlog.popleft()
                self.published += 1
            if not self._backlog:
                return
            delay = _backoff(delay)
            await asyncio.sleep(delay)

    async def _retry_backlog(self) -> None:
        delay = 0.0
        while self._backlog:
            delay = _backoff(delay)
            await asyncio.sleep(delay)
            await self._drain_backlog()
        log.info("durable events stored again")

    @abc.abstractmethod
    async def _store(self, event: Event) -> None:
        """Store one durable event locally (raises if it could not)."""

    @abc.abstractmethod
    async def read(
        self, group: str, consumer: str, count: int = 100, block_ms: int = 1000
    ) -> list[Delivery]:
        """Durable messages for a consumer of a group, oldest first.

        First the consumer's own unacknowledged messages (handed to it before and never acked:
        they come back on every read until acked), then new ones. Waits up to ``block_ms`` for
        new ones when there is nothing (``0``: no wait). Creates the group, at the start of the
        log, if it does not exist. Raises :class:`BusUnavailable` if the backend is down.
        """

    @abc.abstractmethod
    async def ack(self, group: str, message_id: str) -> bool:
        """Acknowledge a message (handled: never handed out again); whether it was pending."""

    @abc.abstractmethod
    async def claim_stale(
        self, group: str, consumer: str, min_idle_ms: int, count: int = 100
    ) -> list[Delivery]:
        """Take over messages handed out at least ``min_idle_ms`` ago and never acked.

        A consumer that died (a bridge process killed mid-batch) leaves its messages pending;
        another consumer claims them here. Any consumer's idle messages are claimed (the
        caller's own included, as ``XAUTOCLAIM`` does).
        """

    @abc.abstractmethod
    async def pending(self, group: str) -> int:
        """Messages handed out to the group's consumers and not acked (0 for no such group)."""

    def outbox_pending(self) -> int:
        """Durable events not yet in the shared log (waiting in the outbox or in memory)."""
        return len(self._backlog)


# --- embedded: SQLite -----------------------------------------------------------------------------

EMBEDDED_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    event TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS groups (
    name TEXT PRIMARY KEY,
    last_seq INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS pending (
    grp TEXT NOT NULL,
    seq INTEGER NOT NULL,
    consumer TEXT NOT NULL,
    delivered REAL NOT NULL,
    deliveries INTEGER NOT NULL,
    PRIMARY KEY (grp, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS pending_consumer ON pending (grp, consumer, seq);
"""

TRIM_EVERY = 100
"""Appends between two trims of the embedded log to ``maxlen``."""


class EmbeddedBus(EventBus):
    """Durable events in a SQLite file, live events in the process: a bus with no Redis.

    Several processes may read the same file (a bridge in another process polls every
    ``poll_ms`` while blocking); one process should publish to it.
    """

    def __init__(
        self,
        db_path: Path | str,
        *,
        maxlen: int = 100_000,
        poll_ms: int = 500,
        keyring: Keyring | None = None,
    ) -> None:
        super().__init__()
        self.path = Path(db_path)
        self.keyring = keyring
        """Data keys: the events' JSON is stored encrypted (``VOICEBOT_DATA_KEY``)."""
        self.maxlen = maxlen
        self.poll_ms = poll_ms
        self._db = SqliteThread(self.path, "events")
        self._arrived = asyncio.Event()
        self._appends = 0
        self._open = False

    async def start(self) -> None:
        """Open (creating) the file."""
        if not self._open:
            await self._db.open(EMBEDDED_SCHEMA)
            self._open = True

    async def close(self) -> None:
        """Close the file."""
        await super().close()
        if self._open:
            self._open = False
            await self._db.close()

    async def _store(self, event: Event) -> None:
        self._appends += 1
        trim = self.maxlen if self._appends % TRIM_EVERY == 0 else None
        await self._db.run(transaction, _append, event, time.time(), trim, self.keyring)
        arrived, self._arrived = self._arrived, asyncio.Event()
        arrived.set()

    async def read(
        self, group: str, consumer: str, count: int = 100, block_ms: int = 1000
    ) -> list[Delivery]:
        """Own unacked messages, then new ones (see :meth:`EventBus.read`)."""
        deadline = time.monotonic() + max(0, block_ms) / 1000
        while True:
            arrived = self._arrived
            deliveries = await self._db.run(
                transaction, _read, group, consumer, count, time.time(), self.keyring
            )
            remaining = deadline - time.monotonic()
            if deliveries or remaining <= 0:
                return deliveries
            await _wait(arrived, min(remaining, self.poll_ms / 1000))

    async def ack(self, group: str, message_id: str) -> bool:
        """Forget a handled message."""
        return await self._db.run(transaction, _ack, group, int(message_id))

    async def claim_stale(
        self, group: str, consumer: str, min_idle_ms: int, count: int = 100
    ) -> list[Delivery]:
        """Take over idle unacked messages (see :meth:`EventBus.claim_stale`)."""
        return await self._db.run(
            transaction,
            _claim,
            group,
            consumer,
            time.time(),
            min_idle_ms / 1000,
            count,
            self.keyring,
        )

    async def pending(self, group: str) -> int:
        """Unacked messages of the group."""
        return await self._db.run(_pending, group)


def _append(
    db: sqlite3.Connection, event: Event, now: float, trim: int | None, keyring: Keyring | None
) -> None:
    db.execute(
        "INSERT OR IGNORE INTO events (event_id, type, event, created) VALUES (?, ?, ?, ?)",
        (event.id, event.type, stored_event(event, keyring), now),
    )
    if trim is not None:
        (top,) = db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()
        db.execute("DELETE FROM events WHERE seq <= ?", (top - trim,))
        db.execute("DELETE FROM pending WHERE seq <= ?", (top - trim,))


def _read(
    db: sqlite3.Connection,
    group: str,
    consumer: str,
    count: int,
    now: float,
    keyring: Keyring | None,
) -> list[Delivery]:
    db.execute(
        "INSERT OR IGNORE INTO groups (name, last_seq, created) VALUES (?, 0, ?)", (group, now)
    )
    out: list[Delivery] = []
    own = db.execute(
        "SELECT p.seq, p.deliveries, e.event, e.event_id FROM pending p"
        " LEFT JOIN events e ON e.seq = p.seq"
        " WHERE p.grp = ? AND p.consumer = ? ORDER BY p.seq LIMIT ?",
        (group, consumer, count),
    ).fetchall()
    for seq, deliveries, body, event_id in own:
        if body is None:  # trimmed from the log
            db.execute("DELETE FROM pending WHERE grp = ? AND seq = ?", (group, seq))
            continue
        db.execute(
            "UPDATE pending SET deliveries = ?, delivered = ? WHERE grp = ? AND seq = ?",
            (deliveries + 1, now, group, seq),
        )
        out.append(Delivery(str(seq), event_of(body, event_id, keyring), deliveries + 1))
    if len(own) >= count:
        return out
    (last,) = db.execute("SELECT last_seq FROM groups WHERE name = ?", (group,)).fetchone()
    new = db.execute(
        "SELECT seq, event, event_id FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
        (last, count - len(own)),
    ).fetchall()
    for seq, body, event_id in new:
        db.execute(
            "INSERT OR REPLACE INTO pending (grp, seq, consumer, delivered, deliveries)"
            " VALUES (?, ?, ?, ?, 1)",
            (group, seq, consumer, now),
        )
        out.append(Delivery(str(seq), event_of(body, event_id, keyring), 1))
    if new:
        db.execute("UPDATE groups SET last_seq = ? WHERE name = ?", (new[-1][0], group))
    return out


def _ack(db: sqlite3.Connection, group: str, seq: int) -> bool:
    return db.execute("DELETE FROM pending WHERE grp = ? AND seq = ?", (group, seq)).rowcount > 0


def _claim(
    db: sqlite3.Connection,
    group: str,
    consumer: str,
    now: float,
    min_idle: float,
    count: int,
    keyring: Keyring | None,
) -> list[Delivery]:
    rows = db.execute(
        "SELECT p.seq, p.deliveries, e.event, e.event_id FROM pending p"
        " LEFT JOIN events e ON e.seq = p.seq"
        " WHERE p.grp = ? AND p.delivered <= ? ORDER BY p.seq LIMIT ?",
        (group, now - min_idle, count),
    ).fetchall()
    out = []
    for seq, deliveries, body, event_id in rows:
        if body is None:
            db.execute("DELETE FROM pending WHERE grp = ? AND seq = ?", (group, seq))
            continue
        db.execute(
            "UPDATE pending SET consumer = ?, deliveries = ?, delivered = ?"
            " WHERE grp = ? AND seq = ?",
            (consumer, deliveries + 1, now, group, seq),
        )
        out.append(Delivery(str(seq), event_of(body, event_id, keyring), deliveries + 1))
    return out


def _pending(db: sqlite3.Connection, group: str) -> int:
    (count,) = db.execute("SELECT COUNT(*) FROM pending WHERE grp = ?", (group,)).fetchone()
    return count


# --- Redis ----------------------------------------------------------------------------------------

PUBLISH_TIMEOUT_SECS = 1.0
"""Socket timeout of the publishing connections (outbox flusher, live events)."""
CONNECT_TIMEOUT_SECS = 0.5
CONSUMER_TIMEOUT_SECS = 5.0
"""How long a consumer command may take beyond its ``block_ms``."""
FLUSH_BATCH = 100
"""Outbox rows per flush (one script call)."""
FLUSH_CHECK_SECS = 1.0
"""The flusher looks at the outbox at least this often even when nothing was published."""
MARK_TTL_SECS = 7 * 86400
"""How long Redis remembers an outbox's last flushed row (its duplicate guard)."""
LIVE_BACKLOG = 10_000
"""Live events waiting for Pub/Sub before the oldest are dropped."""
WATCH_REFRESH_SECS = 1.0
WATCH_TTL_SECS = 5.0
"""Each process re-announces the calls it watches every second; an entry not renewed for five
seconds (a dead process) is forgotten."""
START_WAIT_SECS = 2.0
"""At start, how long to wait for the live subscription (only while Redis answers)."""

FLUSH_SCRIPT = """
-- KEYS[1]: the stream; KEYS[2]: this outbox's last flushed row.
-- ARGV: maxlen, ttl, then (row, event id, event JSON) per outbox row, oldest first.
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
local top = last
local top_text = nil
local added = 0
for i = 3, #ARGV, 3 do
  local row = tonumber(ARGV[i])
  if row > top then
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*',
               'id', ARGV[i + 1], 'event', ARGV[i + 2])
    top = row
    top_text = ARGV[i]
    added = added + 1
  end
end
if top_text then
  redis.call('SET', KEYS[2], top_text, 'EX', ARGV[2])
end
return added
"""
"""Appends outbox rows to the stream, atomically with the outbox's high-water mark: a row sent
again (the reply to an earlier attempt was lost) is skipped, so each event is in the stream once."""


def _redis_errors() -> tuple[type[BaseException], ...]:
    from redis import exceptions

    return (
        exceptions.ConnectionError,  # BusyLoadingError too
        exceptions.TimeoutError,
        exceptions.ReadOnlyError,
        exceptions.MasterDownError,
        exceptions.TryAgainError,
        exceptions.OutOfMemoryError,
        OSError,
        TimeoutError,
    )


class RedisBus(EventBus):
    """Durable events on a Redis stream via a local outbox; live events over Pub/Sub.

    Counters: :attr:`published` (accepted into the outbox), :attr:`flushed` (confirmed in the
    stream), :meth:`outbox_pending`, :attr:`redis_errors` (failed Redis operations),
    :attr:`live_dropped` (live events lost: Redis down or too many waiting).
    """

    def __init__(
        self,
        url: str,
        *,
        stream: str = "voicebot:events",
        maxlen: int = 100_000,
        channel: str = "voicebot:live",
        outbox_path: Path | str,
        keyring: Keyring | None = None,
    ) -> None:
        super().__init__()
        self.url = url
        self.stream = stream
        self.maxlen = maxlen
        self.channel = channel
        self.watch_key = f"{channel}:watching"
        self.origin = uuid.uuid4().hex[:12]
        """This bus's id among the processes (live events it sent come back to it: skipped)."""
        self.keyring = keyring
        """Data keys: events are encrypted in the outbox and the stream (every reader has them)."""
        self.outbox = Outbox(outbox_path, keyring=keyring)
        self.flushed = 0
        self.duplicates_skipped = 0
        self.redis_errors = 0
        self.live_dropped = 0
        self.live_received = 0
        self._redis: Any = None
        self._consumer: Any = None
        self._script: Any = None
        self._errors = _redis_errors()
        self._wake = asyncio.Event()
        self._live_queue: collections.deque[dict[str, Any]] = collections.deque()
        self._live_wake = asyncio.Event()
        self._watch_wake = asyncio.Event()
        self._subscribed = asyncio.Event()
        self._first_subscribe = asyncio.Event()
        self._announced: set[str] = set()
        self._groups: set[str] = set()
        self._tasks: list[asyncio.Task] = []
        self._down_since: float | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the outbox, connect (lazily), start the flusher and the live tasks."""
        import redis.asyncio as redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        await self.outbox.open()
        self._redis = redis.from_url(
            self.url,
            decode_responses=True,
            socket_timeout=PUBLISH_TIMEOUT_SECS,
            socket_connect_timeout=CONNECT_TIMEOUT_SECS,
            retry=Retry(NoBackoff(), 0),
        )
        self._consumer = redis.from_url(
            self.url,
            decode_responses=True,
            socket_timeout=None,
            socket_connect_timeout=CONNECT_TIMEOUT_SECS,
            retry=Retry(NoBackoff(), 0),
        )
        self._script = self._redis.register_script(FLUSH_SCRIPT)
        self.live.forward = self._forward_live
        self.live.on_watch_change = self._watch_wake.set
        self._wake.set()  # rows a previous process left
        for coro, name in (
            (self._flusher(), "bus-flusher"),
            (self._live_subscriber(), "bus-live-in"),
            (self._live_publisher(), "bus-live-out"),
            (self._watch_announcer(), "bus-live-watch"),
        ):
            self._tasks.append(asyncio.create_task(coro, name=name))
        await _wait(self._first_subscribe, START_WAIT_SECS)

    async def close(self, flush_secs: float = 2.0) -> None:
        """Flush the outbox (at most ``flush_secs``; the rest waits for the next start), stop."""
        await super().close()
        if self._redis is None:
            return
        deadline = time.monotonic() + flush_secs
        while self.outbox.unsent() and self._down_since is None and time.monotonic() < deadline:
            self._wake.set()
            await asyncio.sleep(0.01)
        for task in self._tasks:
            task.cancel()
        _, stuck = await asyncio.wait(self._tasks, timeout=5.0)
        if stuck:
            log.error("bus tasks did not stop: %s", ", ".join(t.get_name() for t in stuck))
        self._tasks.clear()
        if self._announced and self._down_since is None:
            with contextlib.suppress(Exception):
                await self._redis.zrem(self.watch_key, *self._member_names(self._announced))
        self.live.forward = None
        self.live.on_watch_change = None
        await self._redis.aclose()
        await self._consumer.aclose()
        self._redis = self._consumer = None
        await self.outbox.close()
        if self.outbox.unsent():
            log.warning("%d events stay in the outbox %s", self.outbox.unsent(), self.outbox.path)

    def outbox_pending(self) -> int:
        """Durable events not yet confirmed in the Redis stream."""
        return self.outbox.unsent() + len(self._backlog)

    # -- health ----------------------------------------------------------------------------------

    def _failed(self, error: BaseException) -> None:
        self.redis_errors += 1
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning(
                "redis %s unreachable (%s): durable events wait in the outbox, live events "
                "are dropped until it is back",
                self.url,
                str(error) or error.__class__.__name__,
            )

    def _ok(self) -> None:
        if self._down_since is not None:
            log.info(
                "redis %s back after %.1f s; %d events to flush",
                self.url,
                time.monotonic() - self._down_since,
                self.outbox.unsent(),
            )
            self._down_since = None

    @property
    def redis_up(self) -> bool:
        """Whether the last Redis operation succeeded."""
        return self._down_since is None

    # -- durable: producer -----------------------------------------------------------------------

    async def _store(self, event: Event) -> None:
        await self.outbox.add(event)
        self._wake.set()

    async def _flusher(self) -> None:
        delay = 0.0
        while True:
            if delay:
                await asyncio.sleep(delay)
            else:
                await _wait(self._wake, FLUSH_CHECK_SECS)
            self._wake.clear()
            try:
                await self._flush()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                if not isinstance(error, self._errors) and self._down_since is None:
                    log.exception("flushing the outbox failed")
                self._failed(error)
                delay = _backoff(delay)
                continue
            delay = 0.0

    async def _flush(self) -> None:
        while True:
            rows = await self.outbox.unsent_rows(FLUSH_BATCH)
            if not rows:
                return
            args: list[Any] = [self.maxlen, MARK_TTL_SECS]
            for row in rows:
                args += [row.seq, row.event_id, row.event]
            added = await self._script(
                keys=[self.stream, f"{self.stream}:outbox:{self.outbox.outbox_id}"], args=args
            )
            self._ok()
            await self.outbox.mark_sent(rows[-1].seq)
            self.flushed += int(added)
            self.duplicates_skipped += len(rows) - int(added)

    # -- durable: consumers ----------------------------------------------------------------------

    async def _call(self, coro: Any, block_ms: int = 0) -> Any:
        try:
            async with asyncio.timeout(CONSUMER_TIMEOUT_SECS + max(0, block_ms) / 1000):
                result = await coro
        except self._errors as error:
            self._failed(error)
            raise BusUnavailable(f"redis {self.url}: {error}") from error
        self._ok()
        return result

    async def _ensure_group(self, group: str, force: bool = False) -> None:
        if group in self._groups and not force:
            return
        from redis.exceptions import ResponseError

        try:
            await self._call(self._consumer.xgroup_create(self.stream, group, "0", mkstream=True))
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise
        self._groups.add(group)

    async def _with_group(self, group: str, make: Any, block_ms: int = 0) -> Any:
        """Run ``make()`` (a command needing the group), creating the group if Redis lost it."""
        from redis.exceptions import ResponseError

        await self._ensure_group(group)
        try:
            return await self._call(make(), block_ms)
        except ResponseError as error:
            if "NOGROUP" not in str(error):
                raise
        await self._ensure_group(group, force=True)
        return await self._call(make(), block_ms)

    def _entries(self, response: Any) -> list[tuple[str, dict[str, str] | None]]:
        if not response:
            return []
        if isinstance(response, dict):  # RESP3
            entries = next(iter(response.values()))
            return list(entries[0] if entries and isinstance(entries[0], list) else entries)
        return list(response[0][1])

    async def _counts(self, group: str, ids: list[str]) -> dict[str, int]:
        """Delivery counts of pending messages (one ``XPENDING`` each, in one round trip)."""
        if not ids:
            return {}
        pipe = self._consumer.pipeline(transaction=False)
        for message_id in ids:
            pipe.xpending_range(self.stream, group, min=message_id, max=message_id, count=1)
        results = await self._call(pipe.execute())
        return {rows[0]["message_id"]: rows[0]["times_delivered"] for rows in results if rows}

    async def _deliveries(
        self, group: str, entries: list[tuple[str, dict[str, str] | None]]
    ) -> list[Delivery]:
        gone = [message_id for message_id, fields in entries if not fields]
        if gone:  # trimmed from the stream while pending
            await self._call(self._consumer.xack(self.stream, group, *gone))
        kept = [(message_id, fields) for message_id, fields in entries if fields]
        counts = await self._counts(group, [message_id for message_id, _ in kept])
        return [
            Delivery(
                message_id,
                event_of(fields["event"], fields.get("id", ""), self.keyring),
                counts.get(message_id, 1),
            )
            for message_id, fields in kept
        ]

    async def read(
        self, group: str, consumer: str, count: int = 100, block_ms: int = 1000
    ) -> list[Delivery]:
        """Own unacked messages (``XREADGROUP ... 0``), then new ones (``>``)."""
        own = self._entries(
            await self._with_group(
                group,
                lambda: self._consumer.xreadgroup(group, consumer, {self.stream: "0"}, count=count),
            )
        )
        out = await self._deliveries(group, own)
        if len(own) >= count:
            return out
        block = block_ms if block_ms > 0 and not out else None
        new = self._entries(
            await self._with_group(
                group,
                lambda: self._consumer.xreadgroup(
                    group, consumer, {self.stream: ">"}, count=count - len(own), block=block
                ),
                block or 0,
            )
        )
        out += [
            Delivery(message_id, event_of(fields["event"], fields.get("id", ""), self.keyring), 1)
            for message_id, fields in new
            if fields
        ]
        return out

    async def ack(self, group: str, message_id: str) -> bool:
        """``XACK``."""
        return bool(await self._call(self._consumer.xack(self.stream, group, message_id)))

    async def claim_stale(
        self, group: str, consumer: str, min_idle_ms: int, count: int = 100
    ) -> list[Delivery]:
        """``XAUTOCLAIM`` idle pending messages (see :meth:`EventBus.claim_stale`)."""
        from redis.exceptions import ResponseError

        entries: list[tuple[str, dict[str, str] | None]] = []
        start = "0-0"
        while len(entries) < count:
            try:
                response = await self._call(
                    self._consumer.xautoclaim(
                        self.stream, group, consumer, min_idle_ms, start, count=count - len(entries)
                    )
                )
            except ResponseError as error:
                if "NOGROUP" in str(error):
                    return []
                raise
            start = response[0]
            entries += [(message_id, fields) for message_id, fields in response[1] if fields]
            if start in ("0-0", b"0-0"):
                break
        return await self._deliveries(group, entries)

    async def pending(self, group: str) -> int:
        """``XPENDING`` count (0 for no such group or stream)."""
        from redis.exceptions import ResponseError

        try:
            summary = await self._call(self._consumer.xpending(self.stream, group))
        except ResponseError as error:
            if "NOGROUP" in str(error):
                return 0
            raise
        return int(summary["pending"])

    # -- live ------------------------------------------------------------------------------------

    def _forward_live(self, event: dict[str, Any]) -> None:
        if len(self._live_queue) >= LIVE_BACKLOG:
            self._live_queue.popleft()
            self.live_dropped += 1
        self._live_queue.append(event)  # encoded by the publisher task, off the call's path
        self._live_wake.set()

    async def _live_publisher(self) -> None:
        delay = 0.0
        while True:
            if delay:
                await asyncio.sleep(delay)
            if not self._live_queue:
                self._live_wake.clear()
                await self._live_wake.wait()
            batch = list(self._live_queue)
            self._live_queue.clear()
            try:
                pipe = self._redis.pipeline(transaction=False)
                for event in batch:
                    message = {"origin": self.origin, "event": event}
                    pipe.publish(self.channel, json.dumps(message, ensure_ascii=False, default=str))
                await pipe.execute()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # best effort: these are gone
                self.live_dropped += len(batch)
                self._failed(error)
                delay = _backoff(delay)
                continue
            self._ok()
            delay = 0.0

    async def _live_subscriber(self) -> None:
        delay = 0.0
        while True:
            pubsub = self._consumer.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                self._subscribed.set()
                self._first_subscribe.set()
                self._watch_wake.set()  # announce what is watched here (again, after an outage)
                delay = 0.0
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        self._on_live_message(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self._subscribed.clear()
                self._first_subscribe.set()
                if not isinstance(error, self._errors):
                    log.exception("live subscription failed")
                self._failed(error)
                delay = _backoff(delay)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(delay)

    def _on_live_message(self, data: str) -> None:
        try:
            message = json.loads(data)
        except ValueError:
            return
        if not isinstance(message, dict) or message.get("origin") == self.origin:
            return
        if message.get("watch"):  # another process's watched calls changed: look now
            self._watch_wake.set()
            return
        event = message.get("event")
        if isinstance(event, dict):
            self.live_received += 1
            self.live.receive(event)

    def _member_names(self, sids: set[str]) -> list[str]:
        return [f"{self.origin}|{sid}" for sid in sids]

    async def _watch_announcer(self) -> None:
        """Keep ``live.remote_watching`` current: which calls other processes watch."""
        while True:
            await _wait(self._watch_wake, WATCH_REFRESH_SECS)
            self._watch_wake.clear()
            mine = self.live.watched_here()
            changed = mine != self._announced
            now = time.time()
            try:
                pipe = self._redis.pipeline(transaction=False)
                gone = self._announced - mine
                if gone:
                    pipe.zrem(self.watch_key, *self._member_names(gone))
                if mine:
                    expiry = now + WATCH_TTL_SECS
                    pipe.zadd(self.watch_key, dict.fromkeys(self._member_names(mine), expiry))
                pipe.zremrangebyscore(self.watch_key, "-inf", now)
                pipe.zrangebyscore(self.watch_key, now, "+inf")
                if changed:
                    note = json.dumps({"origin": self.origin, "watch": True})
                    pipe.publish(self.channel, note)
                results = await pipe.execute()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self.live.remote_watching = frozenset()
                self._failed(error)
                continue
            self._ok()
            self._announced = mine
            members = results[-2] if changed else results[-1]
            prefix = f"{self.origin}|"
            self.live.remote_watching = frozenset(
                member.split("|", 1)[1]
                for member in members
                if "|" in member and not member.startswith(prefix)
            )


def build_bus(redis_url: str, data_dir: Path, keyring: Keyring | None = None) -> EventBus:
    """The bus for a server: Redis when a URL is given (outbox in ``data_dir``), else embedded.

    With ``keyring`` the events' JSON is encrypted in the files (the embedded log, the outbox).
    """
    data_dir = Path(data_dir)
    if redis_url:
        return RedisBus(redis_url, outbox_path=data_dir / "outbox.sqlite3", keyring=keyring)
    return EmbeddedBus(data_dir / "events.sqlite3", keyring=keyring)
