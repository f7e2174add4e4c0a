"""The bridge's own delivery state in SQLite (aiosqlite): survives restarts, drives retries.

Three tables:

* ``events``: every event the bridge took from the bus (id, type, timestamp, the event as JSON,
  when it was received). Replays are sent from here, so the bus may forget an event once acked.
* ``deliveries``: one row per (event, endpoint), **unique**, so a bus message delivered twice
  (a crash before the ack, a stale claim) never makes a second delivery. Status is ``pending``
  (no attempt yet), ``failed`` (an attempt failed, the next one is scheduled at
  ``next_attempt_at``), ``delivered``, ``aborted`` (the receiver said stop: ``410 Gone`` or
  ``webhook-delivery: abort-message``) or ``dead`` (the retry schedule ran out).
* ``attempts``: every HTTP attempt: when, status code, duration, error (no payload, no headers).

The store holds candidate data (the events' payloads): the file is 0600 in a 0700 folder, and with
a data key (``VOICEBOT_DATA_KEY``) each event's JSON is encrypted, bound to its id. Write-ahead
logging lets the CLI (``replay``, ``dead``, ``status``) use the file while the bridge runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite

from voicebot.crypto import Keyring, create_private_file, make_private_dir
from voicebot.events.outbox import (
    EVENT_JSON_SQL,
    event_json_function,
    event_of,
    stored_event,
)
from voicebot.events.types import Event

PENDING = "pending"
FAILED = "failed"
DELIVERED = "delivered"
ABORTED = "aborted"
DEAD = "dead"
LOCKED_RETRIES = 6
"""Retries of a batch of attempts that met "database is locked" (0.02 s, doubling: ~1.3 s)."""
STATUSES = (PENDING, FAILED, DELIVERED, ABORTED, DEAD)
OPEN_STATUSES = (PENDING, FAILED)
"""Statuses the scheduler still sends."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    ts REAL NOT NULL,
    json TEXT NOT NULL,
    received_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_ts ON events (ts);
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL REFERENCES events (id),
    endpoint_id TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'failed', 'delivered', 'aborted', 'dead')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL,
    last_status_code INTEGER,
    last_error TEXT,
    delivered_at REAL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    UNIQUE (event_id, endpoint_id)
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (endpoint_id, status, next_attempt_at);
CREATE INDEX IF NOT EXISTS deliveries_status ON deliveries (status);
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id INTEGER NOT NULL REFERENCES deliveries (id),
    event_id TEXT NOT NULL,
    endpoint_id TEXT NOT NULL,
    attempted_at REAL NOT NULL,
    status_code INTEGER,
    duration_ms REAL NOT NULL,
    error TEXT,
    outcome TEXT NOT NULL,
    replay INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS attempts_delivery ON attempts (delivery_id);
"""


def iso_to_epoch(value: str | None) -> float | None:
    """Unix seconds of an ISO 8601 time (``Z`` or an offset; naive times are UTC)."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _event_ts(event: Event, default: float) -> float:
    ts = iso_to_epoch(event.timestamp)
    return default if ts is None else ts


@dataclass(frozen=True)
class DeliveryRow:
    """One (event, endpoint) delivery as stored."""

    id: int
    event_id: str
    endpoint_id: str
    status: str
    attempts: int
    next_attempt_at: float | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: float | None
    created_at: float
    updated_at: float
    event_type: str = ""
    event_received_at: float | None = None


@dataclass(frozen=True)
class DueDelivery:
    """A delivery the scheduler should attempt now, with the event it carries."""

    row: DeliveryRow
    event: Event


@dataclass(frozen=True)
class AttemptRow:
    """One logged HTTP attempt."""

    id: int
    delivery_id: int
    event_id: str
    endpoint_id: str
    attempted_at: float
    status_code: int | None
    duration_ms: float
    error: str | None
    outcome: str
    replay: bool


_DELIVERY_COLUMNS = (
    "d.id, d.event_id, d.endpoint_id, d.status, d.attempts, d.next_attempt_at, "
    "d.last_status_code, d.last_error, d.delivered_at, d.created_at, d.updated_at, "
    "e.type, e.received_at"
)


def _delivery(row: Sequence[Any]) -> DeliveryRow:
    return DeliveryRow(*row[:13])


class DeliveryStore:
    """Delivery state of one bridge in one SQLite file (``:memory:`` for throwaway use)."""

    def __init__(self, path: str | Path, keyring: Keyring | None = None) -> None:
        self.path = str(path)
        self.keyring = keyring
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        self._attempt_queue: list[tuple[tuple[Any, ...], asyncio.Future[None]]] = []
        self._attempt_writer: asyncio.Task | None = None

    @classmethod
    async def open(cls, path: str | Path, keyring: Keyring | None = None) -> DeliveryStore:
        """Open (creating if needed) the store at ``path``."""
        store = cls(path, keyring)
        await store.connect()
        return store

    async def connect(self) -> None:
        """Open the database and create the schema."""
        if self.path != ":memory:":
            make_private_dir(Path(self.path).parent)
            create_private_file(self.path)  # -wal and -shm take its mode
        # Writes take the write lock when their transaction begins (BEGIN IMMEDIATE), so another
        # connection's commit in between (the server's erasure, a CLI beside it) is waited for
        # (busy_timeout) rather than failing at once with "database is locked" (a deferred
        # transaction cannot upgrade a read snapshot another writer has moved past).
        self._db = await aiosqlite.connect(self.path, isolation_level="IMMEDIATE")
        await self._db.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: a commit survives a process crash; an OS crash may lose the last commits,
        # and the bus re-delivers the messages whose ack had not been sent (acks follow commits).
        await self._db.execute("PRAGMA synchronous=NORMAL")
        await self._db.execute("PRAGMA busy_timeout=5000")
        await self._db.execute("PRAGMA foreign_keys=ON")
        await self._db.executescript(SCHEMA)
        await self._db.commit()
        # events stored encrypted are matched by their JSON too (erase_interviews)
        await self._db.create_function(
            EVENT_JSON_SQL, 2, event_json_function(self.keyring), deterministic=True
        )

    async def close(self) -> None:
        """Write what is queued, then close the database."""
        if self._attempt_writer is not None and not self._attempt_writer.done():
            with contextlib.suppress(Exception):
                await self._attempt_writer
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def __aenter__(self) -> DeliveryStore:
        if self._db is None:
            await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def db(self) -> aiosqlite.Connection:
        """The open connection."""
        if self._db is None:
            raise RuntimeError("DeliveryStore is not open")
        return self._db

    # --- intake -----------------------------------------------------------------------------------

    async def record_events(
        self, items: Iterable[tuple[Event, Sequence[str]]], *, now: float | None = None
    ) -> int:
        """Store events and one pending delivery per (event, endpoint id), in one transaction.

        Idempotent: an event or delivery already stored is left as it is (its state, attempts and
        schedule are kept). Returns how many deliveries were created.
        """
        now = time.time() if now is None else now
        items = list(items)
        async with self._lock:
            try:
                await self.db.executemany(
                    "INSERT OR IGNORE INTO events (id, type, timestamp, ts, json, received_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    [
                        (
                            event.id,
                            event.type,
                            event.timestamp,
                            _event_ts(event, now),
                            stored_event(event, self.keyring),
                            now,
                        )
                        for event, _ in items
                    ],
                )
                cursor = await self.db.executemany(
                    "INSERT OR IGNORE INTO deliveries (event_id, endpoint_id, status,"
                    " attempts, next_attempt_at, created_at, updated_at)"
                    " VALUES (?, ?, 'pending', 0, ?, ?, ?)",
                    [
                        (event.id, endpoint_id, now, now, now)
                        for event, endpoint_ids in items
                        for endpoint_id in endpoint_ids
                    ],
                )
                created = max(0, cursor.rowcount)
                await self.db.commit()
            except BaseException:
                await self.db.rollback()
                raise
        return created

    async def record_event(
        self, event: Event, endpoint_ids: Sequence[str], *, now: float | None = None
    ) -> int:
        """:meth:`record_events` for one event."""
        return await self.record_events([(event, endpoint_ids)], now=now)

    # --- scheduling -------------------------------------------------------------------------------

    async def due(
        self,
        endpoint_id: str,
        *,
        now: float | None = None,
        limit: int = 100,
        exclude: Iterable[int] = (),
    ) -> list[DueDelivery]:
        """Open deliveries of one endpoint due at ``now``, in event order (oldest first)."""
        now = time.time() if now is None else now
        skip = set(exclude)
        cursor = await self.db.execute(
            f"SELECT {_DELIVERY_COLUMNS}, e.json, e.id FROM deliveries d JOIN events e"
            " ON e.id = d.event_id WHERE d.endpoint_id = ? AND d.status IN ('pending', 'failed')"
            " AND d.next_attempt_at <= ? ORDER BY d.id LIMIT ?",
            (endpoint_id, now, limit + len(skip)),
        )
        rows = await cursor.fetchall()
        out = []
        for row in rows:
            if row[0] in skip:
                continue
            out.append(DueDelivery(_delivery(row), event_of(row[13], row[14], self.keyring)))
            if len(out) >= limit:
                break
        return out

    async def next_due_at(self, endpoint_id: str, *, after: float) -> float | None:
        """The earliest attempt of the endpoint's open deliveries scheduled after ``after``."""
        cursor = await self.db.execute(
            "SELECT MIN(next_attempt_at) FROM deliveries WHERE endpoint_id = ?"
            " AND status IN ('pending', 'failed') AND next_attempt_at > ?",
            (endpoint_id, after),
        )
        row = await cursor.fetchone()
        return None if row is None else row[0]

    async def record_attempt(
        self,
        delivery_id: int,
        *,
        status: str,
        attempted_at: float,
        duration_ms: float,
        status_code: int | None,
        error: str | None,
        next_attempt_at: float | None = None,
        replay: bool = False,
        reset_attempts: bool = False,
    ) -> None:
        """Log one HTTP attempt and move the delivery to ``status``; returns once committed.

        ``reset_attempts`` (a replay) counts this attempt as the first of a fresh schedule.
        Attempts finishing together are written in one transaction (group commit): many
        deliveries in flight cost one commit, not one each.
        """
        if status not in STATUSES:
            raise ValueError(f"unknown delivery status {status!r}")
        future = asyncio.get_running_loop().create_future()
        self._attempt_queue.append(
            (
                (
                    delivery_id,
                    status,
                    attempted_at,
                    round(duration_ms, 3),
                    status_code,
                    error,
                    next_attempt_at,
                    int(replay),
                    int(reset_attempts),
                ),
                future,
            )
        )
        if self._attempt_writer is None or self._attempt_writer.done():
            self._attempt_writer = asyncio.create_task(self._write_attempts())
        # Shielded: a cancelled caller does not cancel the write others share.
        await asyncio.shield(future)

    async def _store_attempts(self, rows: list[tuple], now: float) -> BaseException | None:
        """One transaction for a batch of attempts; the failure, if it could not be stored.

        "database is locked" at once (another connection, such as the server's erasure or a
        checkpoint, moved the database on under this one) is retried a few times, briefly.
        """
        for retry in range(LOCKED_RETRIES + 1):
            failure: BaseException | None = None
            async with self._lock:
                try:
                    await self.db.executemany(
                        "INSERT INTO attempts (delivery_id, event_id, endpoint_id, attempted_at,"
                        " status_code, duration_ms, error, outcome, replay)"
                        " SELECT id, event_id, endpoint_id, ?, ?, ?, ?, ?, ? FROM deliveries"
                        " WHERE id = ?",
                        [(r[2], r[4], r[3], r[5], r[1], r[7], r[0]) for r in rows],
                    )
                    await self.db.executemany(
                        "UPDATE deliveries SET status = ?,"
                        " attempts = CASE WHEN ? THEN 1 ELSE attempts + 1 END,"
                        " next_attempt_at = ?, last_status_code = ?, last_error = ?,"
                        " delivered_at = CASE WHEN ? = 'delivered' THEN ? ELSE delivered_at END,"
                        " updated_at = ? WHERE id = ?",
                        [
                            (r[1], r[8], r[6], r[4], r[5], r[1], r[2] + r[3] / 1000, now, r[0])
                            for r in rows
                        ],
                    )
                    await self.db.commit()
                except BaseException as exc:
                    failure = exc
                    with contextlib.suppress(Exception):
                        await self.db.rollback()
            if not (
                isinstance(failure, sqlite3.OperationalError)
                and "locked" in str(failure)
                and retry < LOCKED_RETRIES
            ):
                return failure
            await asyncio.sleep(0.02 * 2**retry)
        return failure

    async def _write_attempts(self) -> None:
        while self._attempt_queue:
            batch, self._attempt_queue = self._attempt_queue, []
            now = time.time()
            rows = [params for params, _ in batch]
            failure = await self._store_attempts(rows, now)
            for _, future in batch:
                if future.done():
                    continue
                if failure is None:
                    future.set_result(None)
                else:
                    future.set_exception(
                        failure if isinstance(failure, Exception) else RuntimeError("cancelled")
                    )
            if failure is not None and not isinstance(failure, Exception):
                raise failure

    async def reschedule(self, delivery_ids: Iterable[int], *, at: float | None = None) -> int:
        """Make deliveries due again at ``at`` with a fresh schedule (attempts back to 0)."""
        at = time.time() if at is None else at
        ids = list(delivery_ids)
        if not ids:
            return 0
        async with self._lock:
            cursor = await self.db.execute(
                f"UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = ?,"
                f" updated_at = ? WHERE id IN ({','.join('?' * len(ids))})",
                (at, time.time(), *ids),
            )
            await self.db.commit()
        return cursor.rowcount

    async def prune(self, before: float) -> int:
        """Forget old events whose deliveries are all settled; how many were removed.

        Events received before ``before`` whose deliveries are all delivered or aborted go, with
        their deliveries and attempt logs. Dead letters and open deliveries are kept.
        """
        async with self._lock:
            try:
                await self.db.execute(
                    "CREATE TEMP TABLE IF NOT EXISTS prune_ids (id TEXT PRIMARY KEY)"
                )
                await self.db.execute("DELETE FROM prune_ids")
                await self.db.execute(
                    "INSERT INTO prune_ids SELECT e.id FROM events e WHERE e.received_at < ?"
                    " AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id"
                    " AND d.status NOT IN ('delivered', 'aborted'))",
                    (before,),
                )
                await self.db.execute(
                    "DELETE FROM attempts WHERE event_id IN (SELECT id FROM prune_ids)"
                )
                await self.db.execute(
                    "DELETE FROM deliveries WHERE event_id IN (SELECT id FROM prune_ids)"
                )
                cursor = await self.db.execute(
                    "DELETE FROM events WHERE id IN (SELECT id FROM prune_ids)"
                )
                removed = cursor.rowcount
                await self.db.commit()
            except BaseException:
                await self.db.rollback()
                raise
        return removed

    async def erase_interviews(self, interview_ids: Sequence[str]) -> int:
        """Forget every event about these interviews (a candidate was erased); how many went.

        Their deliveries and attempt logs go too, whatever their state (an erased candidate's
        data is never sent again); ``candidate.erased`` itself is kept, to be delivered. Deleted
        rows are overwritten and the write-ahead log truncated: no copy stays in the files.
        """
        ids = json.dumps(list(interview_ids))
        chosen = (
            "SELECT id FROM events WHERE type != 'candidate.erased' AND"
            f" json_extract({EVENT_JSON_SQL}(json, id), '$.data.interview_id')"
            " IN (SELECT value FROM json_each(?))"
        )
        async with self._lock:
            try:
                await self.db.execute("PRAGMA secure_delete=ON")
                await self.db.execute(f"DELETE FROM attempts WHERE event_id IN ({chosen})", (ids,))
                await self.db.execute(
                    f"DELETE FROM deliveries WHERE event_id IN ({chosen})", (ids,)
                )
                cursor = await self.db.execute(f"DELETE FROM events WHERE id IN ({chosen})", (ids,))
                removed = cursor.rowcount
                await self.db.commit()
            except BaseException:
                await self.db.rollback()
                raise
            if self.path != ":memory:":
                await self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return removed

    # --- queries ----------------------------------------------------------------------------------

    async def get_event(self, event_id: str) -> Event | None:
        """A stored event."""
        cursor = await self.db.execute("SELECT json, id FROM events WHERE id = ?", (event_id,))
        row = await cursor.fetchone()
        return None if row is None else event_of(row[0], row[1], self.keyring)

    async def get_delivery(self, event_id: str, endpoint_id: str) -> DeliveryRow | None:
        """The delivery of one event to one endpoint."""
        rows = await self._deliveries(
            "d.event_id = ? AND d.endpoint_id = ?", (event_id, endpoint_id)
        )
        return rows[0] if rows else None

    async def deliveries_for_event(self, event_id: str) -> list[DeliveryRow]:
        """Every delivery of one event."""
        return await self._deliveries("d.event_id = ?", (event_id,))

    async def deliveries(
        self,
        *,
        status: str | None = None,
        endpoint_id: str | None = None,
        event_type: str | None = None,
        since: float | None = None,
        until: float | None = None,
        event_ids: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[DeliveryRow]:
        """Deliveries filtered by status, endpoint, event type, event time range or event ids."""
        sql, args = _conditions(
            [
                ("d.status = ?", status),
                ("d.endpoint_id = ?", endpoint_id),
                ("e.type = ?", event_type),
                ("e.ts >= ?", since),
                ("e.ts < ?", until),
            ],
            "d.event_id",
            event_ids,
        )
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return await self._deliveries(sql, args)

    async def events(
        self,
        *,
        event_ids: Sequence[str] | None = None,
        since: float | None = None,
        until: float | None = None,
        event_type: str | None = None,
    ) -> list[Event]:
        """Stored events by id or by event time range (``since`` inclusive, ``until`` exclusive)."""
        where, args = _conditions(
            [("ts >= ?", since), ("ts < ?", until), ("type = ?", event_type)], "id", event_ids
        )
        cursor = await self.db.execute(
            f"SELECT json, id FROM events WHERE {where} ORDER BY ts, rowid", args
        )
        return [event_of(row[0], row[1], self.keyring) for row in await cursor.fetchall()]

    async def _deliveries(self, where: str, args: Sequence[Any]) -> list[DeliveryRow]:
        cursor = await self.db.execute(
            f"SELECT {_DELIVERY_COLUMNS} FROM deliveries d JOIN events e ON e.id = d.event_id"
            f" WHERE {where} ORDER BY d.id",
            tuple(args),
        )
        return [_delivery(row) for row in await cursor.fetchall()]

    async def attempts(self, delivery_id: int) -> list[AttemptRow]:
        """Every logged attempt of one delivery, oldest first."""
        cursor = await self.db.execute(
            "SELECT id, delivery_id, event_id, endpoint_id, attempted_at, status_code,"
            " duration_ms, error, outcome, replay FROM attempts WHERE delivery_id = ? ORDER BY id",
            (delivery_id,),
        )
        return [AttemptRow(*row[:9], replay=bool(row[9])) for row in await cursor.fetchall()]

    async def counts(self) -> dict[str, Any]:
        """Deliveries by status (overall and per endpoint), events and attempts stored."""
        out: dict[str, Any] = {status: 0 for status in STATUSES}
        per_endpoint: dict[str, dict[str, int]] = {}
        cursor = await self.db.execute(
            "SELECT endpoint_id, status, COUNT(*) FROM deliveries GROUP BY endpoint_id, status"
        )
        for endpoint_id, status, count in await cursor.fetchall():
            out[status] += count
            per_endpoint.setdefault(endpoint_id, {s: 0 for s in STATUSES})[status] = count
        cursor = await self.db.execute("SELECT COUNT(*), MIN(received_at) FROM events")
        events, oldest = await cursor.fetchone()
        cursor = await self.db.execute("SELECT COUNT(*) FROM attempts")
        (attempts,) = await cursor.fetchone()
        cursor = await self.db.execute(
            "SELECT MIN(next_attempt_at) FROM deliveries WHERE status IN ('pending', 'failed')"
        )
        (next_due,) = await cursor.fetchone()
        return {
            "deliveries": out,
            "by_endpoint": per_endpoint,
            "events": events,
            "attempts": attempts,
            "oldest_event_received_at": oldest,
            "next_attempt_at": next_due,
        }


def row_to_dict(row: DeliveryRow | AttemptRow) -> dict[str, Any]:
    """A stored row as JSON-able dict (for the CLI)."""
    return dict(row.__dict__)


def dumps(value: Any) -> str:
    """Compact JSON for CLI output."""
    return json.dumps(value, separators=(",", ":"), default=str)


def _conditions(
    clauses: Sequence[tuple[str, Any]], id_column: str, ids: Sequence[str] | None
) -> tuple[str, list[Any]]:
    """A SQL ``WHERE`` body: each clause whose value is given, and ``id_column IN ids``."""
    where, args = ["1 = 1"], []
    for clause, value in clauses:
        if value is not None:
            where.append(clause)
            args.append(value)
    if ids is not None:
        where.append(f"{id_column} IN ({','.join('?' * len(ids))})")
        args.extend(ids)
    return " AND ".join(where), args
