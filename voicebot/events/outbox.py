"""The local outbox of the Redis event bus, and the SQLite worker thread both file-backed parts use.

Every durable event the Redis bus publishes is first written here (one SQLite row: the event JSON,
when it was written, whether it was sent); a flusher task sends the unsent rows to Redis in order
and marks them sent once Redis confirmed them. Redis being down only makes the outbox grow: the
rows wait, in order, until it is back. Sent rows are pruned, keeping the latest few for
inspection.

Each outbox has a random id of its own (kept in the file): with its row numbers it lets Redis
refuse a row it already has (see :class:`voicebot.events.bus.RedisBus`), so a row sent twice (the
connection broke after Redis stored it, before the reply came) is stored once.

With a data key (``VOICEBOT_DATA_KEY``) each event's JSON is stored encrypted, bound to its event
id (:func:`stored_event`, :func:`event_of`), and goes to the Redis stream as it is (every reader
holds the key; Redis's own files hold no plaintext). The files are 0600 in a 0700 folder whatever
the umask.

SQLite runs in one worker thread per file (:class:`SqliteThread`): the event loop never waits on
the disk, and one thread means one connection, so no locking between our own writers.
"""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from voicebot.crypto import Keyring, create_private_file, make_private_dir, seal, unseal
from voicebot.events.types import Event

T = TypeVar("T")

KEEP_SENT = 1000
"""Sent rows kept (the latest) for inspection; older ones are pruned."""


class SqliteThread:
    """One SQLite connection used from one worker thread; ``await run(fn, ...)`` calls ``fn(db)``.

    The file uses write-ahead logging with ``synchronous=NORMAL``: a commit survives the process
    crashing (not necessarily the machine losing power), and readers in other processes (the
    bridge's CLI) do not block the writer.
    """

    def __init__(self, path: Path | str, name: str) -> None:
        self.path = Path(path)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._db: sqlite3.Connection | None = None

    def _open(self, schema: str) -> None:
        make_private_dir(self.path.parent)
        create_private_file(self.path)  # -wal and -shm take its mode
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=5000")
        db.executescript(schema)
        self._db = db

    async def open(self, schema: str) -> None:
        """Open (creating) the file and its tables."""
        await asyncio.get_running_loop().run_in_executor(self._executor, self._open, schema)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(connection, *args)`` in the worker thread."""
        if self._db is None:
            raise RuntimeError(f"{self.path} is not open")
        db = self._db
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, db, *args)

    async def close(self) -> None:
        """Close the connection and stop the thread."""
        db, self._db = self._db, None
        if db is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, db.close)
        self._executor.shutdown(wait=False)


EVENTS = "events/"
"""What an event's stored JSON is bound to: ``events/<event id>``."""


def stored_event(event: Event, keyring: Keyring | None) -> str:
    """An event's JSON as stored: encrypted and bound to its id when a key is set."""
    return seal(keyring, event.to_json(), EVENTS + event.id)  # type: ignore[return-value]


def event_of(stored: str, event_id: str, keyring: Keyring | None) -> Event:
    """The event a stored row holds (decrypted when it was stored encrypted)."""
    return Event.from_json(unseal(keyring, stored, EVENTS + event_id))


EVENT_JSON_SQL = "voicebot_event_json"
"""Name of the SQL function :func:`add_event_json_function` adds: ``(stored, event id) -> JSON``."""


def event_json_function(keyring: Keyring | None) -> Callable[[Any, Any], Any]:
    """The SQL function ``voicebot_event_json(stored column, id column)``: an event's JSON.

    With a data key the stored column is an envelope ``json_extract`` cannot read; this
    decrypts it (a row it cannot decrypt fails the statement: nothing is skipped silently).
    Plaintext rows pass through.
    """

    def plain(stored: Any, event_id: Any) -> Any:
        if stored is None:
            return None
        return unseal(keyring, stored, EVENTS + (event_id or ""))

    return plain


def add_event_json_function(db: sqlite3.Connection, keyring: Keyring | None) -> None:
    """Add ``voicebot_event_json`` (:func:`event_json_function`) to a connection."""
    db.create_function(EVENT_JSON_SQL, 2, event_json_function(keyring), deterministic=True)


def reencrypt_event_rows(
    path: Path | str, table: str, id_column: str, json_column: str, keyring: Keyring
) -> int:
    """Re-encrypt every stored event of a file under the current key (key rotation).

    For the event log (``events``), the outbox and the bridge's store; plaintext rows (stored
    before the key was set) get encrypted too. Returns how many rows were rewritten.
    """
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA busy_timeout=5000")
        db.execute("PRAGMA secure_delete=ON")
        db.execute("BEGIN IMMEDIATE")
        rows = db.execute(f"SELECT {id_column}, {json_column} FROM {table}").fetchall()
        for event_id, stored in rows:
            plain = unseal(keyring, stored, EVENTS + event_id)
            db.execute(
                f"UPDATE {table} SET {json_column} = ? WHERE {id_column} = ?",
                (seal(keyring, plain, EVENTS + event_id), event_id),
            )
        db.execute("COMMIT")
        db.execute("VACUUM")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return len(rows)
    finally:
        db.close()


def transaction(db: sqlite3.Connection, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(db, *args)`` in one write transaction (rolled back if it raises)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        result = fn(db, *args)
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return result


OUTBOX_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    event TEXT NOT NULL,
    created REAL NOT NULL,
    sent INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS outbox_unsent ON outbox (sent, seq);
CREATE TABLE IF NOT EXISTS outbox_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One unsent event."""

    seq: int
    event_id: str
    event: str
    """The event's JSON (:meth:`Event.to_json`), encrypted when a data key is set."""


class Outbox:
    """Durable events waiting for Redis, in order."""

    def __init__(self, path: Path | str, keyring: Keyring | None = None) -> None:
        self.path = Path(path)
        self.keyring = keyring
        self._db = SqliteThread(path, "outbox")
        self.outbox_id = ""
        """This file's random id (stable across restarts)."""
        self._unsent = 0

    async def open(self) -> None:
        """Open the file; count what a previous process left unsent."""
        await self._db.open(OUTBOX_SCHEMA)
        self.outbox_id, self._unsent = await self._db.run(transaction, _load_meta)

    async def close(self) -> None:
        """Close the file (unsent rows stay for the next process)."""
        await self._db.close()

    def unsent(self) -> int:
        """Rows not yet sent (kept in memory: cheap to read, e.g. by a metrics scrape)."""
        return self._unsent

    async def add(self, event: Event) -> int:
        """Append an event; its row number once it is on disk."""
        seq = await self._db.run(_add, event.id, stored_event(event, self.keyring), time.time())
        self._unsent += 1
        return seq

    async def unsent_rows(self, limit: int = 100, max_bytes: int = 1 << 20) -> list[OutboxRow]:
        """The oldest unsent rows, at most ``limit`` and about ``max_bytes`` of JSON."""
        return await self._db.run(_unsent_rows, limit, max_bytes)

    async def mark_sent(self, last_seq: int) -> int:
        """Mark every row up to ``last_seq`` sent, prune old sent rows; how many were marked."""
        marked, self._unsent = await self._db.run(transaction, _mark_sent, last_seq)
        return marked


def _load_meta(db: sqlite3.Connection) -> tuple[str, int]:
    row = db.execute("SELECT value FROM outbox_meta WHERE key = 'outbox_id'").fetchone()
    if row is None:
        outbox_id = secrets.token_hex(8)
        db.execute("INSERT INTO outbox_meta (key, value) VALUES ('outbox_id', ?)", (outbox_id,))
    else:
        outbox_id = row[0]
    (unsent,) = db.execute("SELECT COUNT(*) FROM outbox WHERE sent = 0").fetchone()
    return outbox_id, unsent


def _add(db: sqlite3.Connection, event_id: str, event: str, created: float) -> int:
    cursor = db.execute(
        "INSERT INTO outbox (event_id, event, created) VALUES (?, ?, ?)", (event_id, event, created)
    )
    return cursor.lastrowid or 0


def _unsent_rows(db: sqlite3.Connection, limit: int, max_bytes: int) -> list[OutboxRow]:
    rows = []
    size = 0
    for seq, event_id, event in db.execute(
        "SELECT seq, event_id, event FROM outbox WHERE sent = 0 ORDER BY seq LIMIT ?", (limit,)
    ):
        if rows and size + len(event) > max_bytes:
            break
        rows.append(OutboxRow(seq, event_id, event))
        size += len(event)
    return rows


def _mark_sent(db: sqlite3.Connection, last_seq: int) -> tuple[int, int]:
    marked = db.execute(
        "UPDATE outbox SET sent = 1 WHERE sent = 0 AND seq <= ?", (last_seq,)
    ).rowcount
    db.execute("DELETE FROM outbox WHERE sent = 1 AND seq <= ?", (last_seq - KEEP_SENT,))
    (unsent,) = db.execute("SELECT COUNT(*) FROM outbox WHERE sent = 0").fetchone()
    return marked, unsent
