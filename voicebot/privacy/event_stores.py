"""The copies of durable events kept outside the store, for erasure and the retention purge.

Three SQLite files in the data directory may hold events (and so candidates' words and names):
the embedded bus's log (``events.sqlite3``), the Redis bus's outbox (``outbox.sqlite3``) and the
HR bridge's delivery store (``hris_bridge.db``). Each is opened here with a connection of its
own (the owners keep theirs: write-ahead logging and a busy timeout let both write), rows are
deleted with ``secure_delete`` on, and the write-ahead log is truncated after, so no copy of a
deleted event stays in the files. Blocking: call these in a thread.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from voicebot.events.outbox import EVENT_JSON_SQL, add_event_json_function

if TYPE_CHECKING:
    from voicebot.crypto import Keyring

BUS_LOG = "events.sqlite3"
OUTBOX = "outbox.sqlite3"
BRIDGE_STORE = "hris_bridge.db"
BUSY_TIMEOUT_MS = 10_000

_MATCH = (
    "(json_extract({col}, '$.type') != 'candidate.erased' AND"
    " (json_extract({col}, '$.data.interview_id') IN (SELECT value FROM json_each(?1))"
    " OR json_extract({col}, '$.data.call_sid') IN (SELECT value FROM json_each(?2))))"
)
"""Events about the interviews or calls; never the ``candidate.erased`` notice itself.

``{col}`` is the event's JSON: ``voicebot_event_json(<stored column>, <id column>)``, which
decrypts events stored encrypted (``VOICEBOT_DATA_KEY``) and passes plaintext ones through.
"""


def _event_json(column: str, id_column: str) -> str:
    return f"{EVENT_JSON_SQL}({column}, {id_column})"


@contextlib.contextmanager
def _open(path: Path) -> Iterator[sqlite3.Connection]:
    """A write connection to an existing event file; checkpointed and closed after."""
    db = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        db.execute("PRAGMA secure_delete=ON")
        yield db
        with contextlib.suppress(sqlite3.Error):  # a reader of the owner's may hold it: later
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()


def _tables(db: sqlite3.Connection) -> set[str]:
    return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _in_transaction(db: sqlite3.Connection, statements: list[tuple[str, tuple]]) -> list[int]:
    db.execute("BEGIN IMMEDIATE")
    try:
        counts = [db.execute(sql, params).rowcount for sql, params in statements]
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return counts


def erase_events(
    data_dir: Path,
    interview_ids: list[str],
    call_sids: list[str],
    keyring: Keyring | None = None,
) -> int:
    """Delete every stored event about these interviews or calls; how many events went.

    ``keyring`` reads the events stored encrypted (the server's ``VOICEBOT_DATA_KEY``).
    """
    import json

    ids, sids = json.dumps(interview_ids), json.dumps(call_sids)
    removed = 0
    for name in (BUS_LOG, OUTBOX, BRIDGE_STORE):
        path = data_dir / name
        if not path.is_file():
            continue
        with _open(path) as db:
            add_event_json_function(db, keyring)
            tables = _tables(db)
            if name == BUS_LOG and "events" in tables:
                match = _MATCH.format(col=_event_json("event", "event_id"))
                counts = _in_transaction(
                    db,
                    [
                        (
                            f"DELETE FROM pending WHERE seq IN (SELECT seq FROM events WHERE"
                            f" {match})",
                            (ids, sids),
                        ),
                        (f"DELETE FROM events WHERE {match}", (ids, sids)),
                    ],
                )
                removed += counts[1]
            elif name == OUTBOX and "outbox" in tables:
                match = _MATCH.format(col=_event_json("event", "event_id"))
                removed += _in_transaction(
                    db, [(f"DELETE FROM outbox WHERE {match}", (ids, sids))]
                )[0]
            elif name == BRIDGE_STORE and "events" in tables:
                match = _MATCH.format(col=_event_json("json", "id"))
                chosen = f"SELECT id FROM events WHERE {match}"
                counts = _in_transaction(
                    db,
                    [
                        (f"DELETE FROM attempts WHERE event_id IN ({chosen})", (ids, sids)),
                        (f"DELETE FROM deliveries WHERE event_id IN ({chosen})", (ids, sids)),
                        (f"DELETE FROM events WHERE {match}", (ids, sids)),
                    ],
                )
                removed += counts[2]
    return removed


def purge_events(data_dir: Path, before: float, dry_run: bool = False) -> int:
    """Delete events stored before ``before`` (bridge: only fully delivered ones); how many."""
    queries = {
        BUS_LOG: (
            "events",
            "FROM events WHERE created < ?",
            ["DELETE FROM pending WHERE seq IN (SELECT seq FROM events WHERE created < ?)"],
        ),
        OUTBOX: ("outbox", "FROM outbox WHERE sent = 1 AND created < ?", []),
        BRIDGE_STORE: (
            "events",
            "FROM events WHERE received_at < ? AND NOT EXISTS (SELECT 1 FROM deliveries d"
            " WHERE d.event_id = events.id AND d.status NOT IN ('delivered', 'aborted'))",
            [],  # chosen first, then removed with their rows: see below
        ),
    }
    removed = 0
    for name, (table, where, before_statements) in queries.items():
        path = data_dir / name
        if not path.is_file():
            continue
        with _open(path) as db:
            if table not in _tables(db):
                continue
            if dry_run:
                (count,) = db.execute(f"SELECT COUNT(*) {where}", (before,)).fetchone()
                removed += count
                continue
            (count,) = db.execute(f"SELECT COUNT(*) {where}", (before,)).fetchone()
            statements = [(sql, (before,)) for sql in before_statements]
            if name == BRIDGE_STORE:
                # the events chosen first, then their rows: the condition reads the deliveries
                db.execute("BEGIN IMMEDIATE")
                try:
                    db.execute("CREATE TEMP TABLE IF NOT EXISTS purge_ids (id TEXT PRIMARY KEY)")
                    db.execute("DELETE FROM purge_ids")
                    db.execute(f"INSERT INTO purge_ids SELECT id {where}", (before,))
                    db.execute("DELETE FROM attempts WHERE event_id IN (SELECT id FROM purge_ids)")
                    db.execute(
                        "DELETE FROM deliveries WHERE event_id IN (SELECT id FROM purge_ids)"
                    )
                    count = db.execute(
                        "DELETE FROM events WHERE id IN (SELECT id FROM purge_ids)"
                    ).rowcount
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
            else:
                _in_transaction(db, [*statements, (f"DELETE {where}", (before,))])
            removed += count
    return removed
