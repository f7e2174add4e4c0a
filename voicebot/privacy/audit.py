"""The audit log: who read or changed which candidate's data, and when; tamper-evident.

Every entry names an actor (``api:<client>`` for an API client, ``monitor:<user>`` for a
recruiter, ``link:report`` / ``link:recording`` for a signed link opened, ``system:retention``,
``cli:<command>``), an action (``interview.read``, ``recording.open``, ``candidate.erase``, ...)
and what it touched: the interview id, the call sid and the candidate's reference (a SHA-256 of
the API client and the candidate id: :func:`candidate_ref`). No name, phone number or word the
candidate said is ever written here.

Entries live in the store's ``audit_log`` table, which SQLite triggers make insert-only. Each
entry's ``hash`` is ``sha256(previous hash + canonical JSON of the entry)`` (the first entry
follows :data:`GENESIS`), so changing, removing or reordering an entry breaks the chain from
there on: :func:`verify_chain` (``voicebot audit verify``) names the first entry that does not
match.

The log has its own connection to the database: appending is one ``BEGIN IMMEDIATE``
transaction (read the last entry, insert the next), so entries from the server and from a
``voicebot purge`` run beside it chain in one line.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voicebot.events.outbox import SqliteThread

log = logging.getLogger(__name__)

GENESIS = "0" * 64
"""The "previous hash" of the first entry."""


def candidate_ref(client: str, candidate_id: str) -> str:
    """The anonymous reference of a candidate: SHA-256 of the API client and its candidate id."""
    return hashlib.sha256(f"{client}\x00{candidate_id}".encode()).hexdigest()


def canonical(entry: dict[str, Any]) -> str:
    """The entry's fields (not its hashes) as canonical JSON: sorted keys, no spaces."""
    fields = {
        "seq": entry["seq"],
        "at": entry["at"],
        "actor": entry["actor"],
        "action": entry["action"],
        "interview_id": entry.get("interview_id"),
        "call_sid": entry.get("call_sid"),
        "candidate": entry.get("candidate"),
        "detail": entry.get("detail") or {},
    }
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def entry_hash(prev_hash: str, entry: dict[str, Any]) -> str:
    """``sha256(prev_hash + canonical(entry))`` as hex."""
    return hashlib.sha256((prev_hash + canonical(entry)).encode()).hexdigest()


@dataclass(frozen=True)
class ChainCheck:
    """What :func:`verify_chain` found."""

    entries: int
    """Entries checked (up to and including the first broken one)."""
    broken_seq: int | None = None
    """The first entry that does not match, or None: the chain is intact."""
    reason: str = ""

    @property
    def ok(self) -> bool:
        """Whether every entry matched."""
        return self.broken_seq is None


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    entry = dict(row)
    try:
        entry["detail"] = json.loads(entry.get("detail") or "{}")
    except ValueError:
        entry["detail"] = {"undecodable": entry.get("detail")}
    return entry


def verify_chain(rows: Iterable[dict[str, Any]]) -> ChainCheck:
    """Check entries in ``seq`` order: numbering, links and hashes; the first mismatch wins."""
    prev_hash = GENESIS
    expected_seq = 1
    checked = 0
    for row in rows:
        entry = _decode(row)
        checked += 1
        seq = entry["seq"]
        if seq != expected_seq:
            return ChainCheck(
                checked, seq, f"entry {expected_seq} is missing (found {seq} after it)"
            )
        if entry["prev_hash"] != prev_hash:
            return ChainCheck(checked, seq, "its link to the entry before it does not match")
        if entry["hash"] != entry_hash(prev_hash, entry):
            return ChainCheck(checked, seq, "its content does not match its hash")
        prev_hash = entry["hash"]
        expected_seq += 1
    return ChainCheck(checked)


def verify_file(db_path: Path | str) -> ChainCheck:
    """Verify the audit log of a store file (read-only; for ``voicebot audit verify``)."""
    uri = f"file:{Path(db_path).resolve()}?mode=ro"
    db = sqlite3.connect(uri, uri=True)
    db.row_factory = sqlite3.Row
    try:
        rows = (dict(row) for row in db.execute("SELECT * FROM audit_log ORDER BY seq"))
        return verify_chain(rows)
    finally:
        db.close()


def _append(
    db: sqlite3.Connection, entries: list[dict[str, Any]], now: float
) -> list[dict[str, Any]]:
    """Chain and insert entries in one write transaction (runs in the log's thread)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        last = db.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev_hash = (0, GENESIS) if last is None else (last[0], last[1])
        stored = []
        for fields in entries:
            seq += 1
            entry = {**fields, "seq": seq, "at": now}
            entry["prev_hash"] = prev_hash
            entry["hash"] = prev_hash = entry_hash(prev_hash, entry)
            db.execute(
                "INSERT INTO audit_log (seq, at, actor, action, interview_id, call_sid,"
                " candidate, detail, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    seq,
                    now,
                    entry["actor"],
                    entry["action"],
                    entry.get("interview_id"),
                    entry.get("call_sid"),
                    entry.get("candidate"),
                    json.dumps(entry.get("detail") or {}, sort_keys=True, ensure_ascii=False),
                    entry["prev_hash"],
                    entry["hash"],
                ),
            )
            stored.append(entry)
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return stored


class AuditLog:
    """Appends to and reads the store's ``audit_log`` (open the Store first: it migrates)."""

    def __init__(self, path: Path | str, metrics: Any = None) -> None:
        self.path = Path(path)
        self.metrics = metrics
        self._db = SqliteThread(self.path, "audit")
        self._open = False

    async def open(self) -> None:
        """Open a connection of its own (in its own thread; each append is one transaction)."""
        await self._db.open("")
        self._open = True

    async def close(self) -> None:
        """Close the connection."""
        if self._open:
            self._open = False
            await self._db.close()

    async def record(
        self,
        actor: str,
        action: str,
        *,
        interview: dict[str, Any] | None = None,
        interview_id: str | None = None,
        call_sid: str | None = None,
        candidate: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Append one entry; ``interview`` (a store row) fills in its id and candidate reference.

        ``detail`` must hold no personal data: counts, statuses, data classes, ids.
        """
        if interview is not None:
            interview_id = interview_id or interview.get("id")
            if candidate is None and interview.get("candidate_id") is not None:
                candidate = candidate_ref(
                    interview.get("client", "admin"), interview["candidate_id"]
                )
        fields = {
            "actor": actor,
            "action": action,
            "interview_id": interview_id,
            "call_sid": call_sid,
            "candidate": candidate,
            "detail": detail or {},
        }
        (entry,) = await self._db.run(_append, [fields], time.time())
        if self.metrics is not None:
            self.metrics.audit_entries.labels(action).inc()
        return entry

    async def entries(
        self, *, after: int = 0, limit: int = 100, interview_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Entries with ``seq > after``, oldest first (optionally of one interview)."""
        sql = "SELECT * FROM audit_log WHERE seq > ?"
        params: list[Any] = [after]
        if interview_id:
            sql += " AND interview_id = ?"
            params.append(interview_id)
        sql += " ORDER BY seq LIMIT ?"
        params.append(limit)
        return await self._db.run(_select, sql, params)


def _select(db: sqlite3.Connection, sql: str, params: list[Any]) -> list[dict[str, Any]]:
    cursor = db.execute(sql, params)
    names = [column[0] for column in cursor.description]
    return [_decode(dict(zip(names, row, strict=True))) for row in cursor.fetchall()]


async def record_access(services: Any, actor: str, action: str, **what: Any) -> None:
    """Append an entry for a request; a failing log is logged and counted, never a 500."""
    audit = getattr(services, "audit", None)
    if audit is None:
        return
    try:
        await audit.record(actor, action, **what)
    except Exception:
        services.metrics.internal_errors.labels("audit").inc()
        log.exception("the audit log could not record %s by %s", action, actor)
