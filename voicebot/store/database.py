"""The interview store: interviews, calls and their turns in SQLite via aiosqlite.

One connection per process (aiosqlite runs it in its own thread, so queries never block the event
loop), write-ahead logging, schema migrations keyed by ``PRAGMA user_version``.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import aiosqlite

MIGRATIONS: list[str] = [
    """
    CREATE TABLE interviews (
        id TEXT PRIMARY KEY,
        job_id TEXT NOT NULL,
        candidate_id TEXT NOT NULL,
        candidate_name TEXT NOT NULL DEFAULT '',
        candidate_phone TEXT NOT NULL DEFAULT '',
        candidate_timezone TEXT NOT NULL DEFAULT '',
        external_key TEXT UNIQUE,
        status TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        consent INTEGER,
        consent_via TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX interviews_phone ON interviews (candidate_phone, status);
    CREATE TABLE calls (
        call_sid TEXT PRIMARY KEY,
        interview_id TEXT REFERENCES interviews (id),
        stream_sid TEXT,
        from_number TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL DEFAULT 'in_progress',
        end_reason TEXT,
        started_at REAL NOT NULL,
        ended_at REAL,
        duration_secs REAL,
        recording_dir TEXT,
        stats TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX calls_interview ON calls (interview_id);
    CREATE TABLE turns (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        call_sid TEXT NOT NULL REFERENCES calls (call_sid),
        seq INTEGER NOT NULL,
        speaker TEXT NOT NULL CHECK (speaker IN ('bot', 'candidate')),
        prompt_id TEXT,
        question_id TEXT,
        text TEXT NOT NULL,
        start REAL NOT NULL,
        "end" REAL,
        interrupted INTEGER NOT NULL DEFAULT 0,
        heard_secs REAL,
        mark_echoed INTEGER NOT NULL DEFAULT 0,
        asr_latency REAL,
        response_latency REAL,
        end_of_speech_to_final REAL,
        UNIQUE (call_sid, seq)
    );
    """,
    # 2: interview outcomes (knock-outs, opt-outs, keypad answers, follow-ups), prosody, the report
    """
    ALTER TABLE turns ADD COLUMN via TEXT NOT NULL DEFAULT 'voice';
    ALTER TABLE turns ADD COLUMN follow_up INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE turns ADD COLUMN prosody TEXT;
    ALTER TABLE calls ADD COLUMN outcome TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE interviews ADD COLUMN opted_out INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE interviews ADD COLUMN status_history TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE interviews ADD COLUMN report TEXT;
    ALTER TABLE interviews ADD COLUMN report_at REAL;
    """,
    # 3: API clients: each HR system's interviews are its own, and so are its external keys
    """
    CREATE TABLE interviews_v3 (
        id TEXT PRIMARY KEY,
        client TEXT NOT NULL DEFAULT 'admin',
        job_id TEXT NOT NULL,
        candidate_id TEXT NOT NULL,
        candidate_name TEXT NOT NULL DEFAULT '',
        candidate_phone TEXT NOT NULL DEFAULT '',
        candidate_timezone TEXT NOT NULL DEFAULT '',
        external_key TEXT,
        status TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        consent INTEGER,
        consent_via TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        opted_out INTEGER NOT NULL DEFAULT 0,
        status_history TEXT NOT NULL DEFAULT '[]',
        report TEXT,
        report_at REAL,
        UNIQUE (client, external_key)
    );
    INSERT INTO interviews_v3 (id, job_id, candidate_id, candidate_name, candidate_phone,
        candidate_timezone, external_key, status, attempts, consent, consent_via, created_at,
        updated_at, opted_out, status_history, report, report_at)
    SELECT id, job_id, candidate_id, candidate_name, candidate_phone, candidate_timezone,
        external_key, status, attempts, consent, consent_via, created_at, updated_at, opted_out,
        status_history, report, report_at FROM interviews;
    DROP TABLE interviews;
    ALTER TABLE interviews_v3 RENAME TO interviews;
    CREATE INDEX interviews_phone ON interviews (candidate_phone, status);
    """,
]

INTERVIEW_STATUSES = (
    "pending",
    "in_progress",
    "scoring",
    "completed",
    "declined",
    "no_response",
    "incomplete",
    "knocked_out",
    "opted_out",
    "failed",
)
"""An interview's life: ``pending`` (created, no call yet) -> ``in_progress`` (a call is on) ->
``scoring`` (the call ended, the report is being built) -> an outcome: ``completed`` (all
questions asked), ``declined`` (no consent), ``no_response`` (silent), ``incomplete`` (hung up
early; may be called again), ``knocked_out`` (failed a knock-out question), ``opted_out`` (asked
not to be called again), ``failed`` (server error)."""


def new_id(prefix: str) -> str:
    """Return a random, URL-safe identifier with a readable prefix."""
    return f"{prefix}_{secrets.token_hex(8)}"


class Store:
    """Async repository over one SQLite database file."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._db: aiosqlite.Connection | None = None

    async def open(self) -> None:
        """Open the database, creating it and applying migrations as needed."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = await aiosqlite.connect(self.path)
        self._db.row_factory = aiosqlite.Row
        await self._db.execute("PRAGMA journal_mode=WAL")
        await self._db.execute("PRAGMA synchronous=NORMAL")
        await self._db.execute("PRAGMA foreign_keys=ON")
        async with self._db.execute("PRAGMA user_version") as cursor:
            (version,) = await cursor.fetchone()
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            await self._db.executescript(script)
            await self._db.execute(f"PRAGMA user_version = {number}")
        await self._db.commit()

    async def close(self) -> None:
        """Close the connection."""
        if self._db is not None:
            await self._db.close()
            self._db = None

    @property
    def db(self) -> aiosqlite.Connection:
        """The open connection (``open()`` first)."""
        if self._db is None:
            raise RuntimeError("Store.open() was not called")
        return self._db

    async def _one(self, sql: str, params: Iterable[Any] = ()) -> dict[str, Any] | None:
        async with self.db.execute(sql, tuple(params)) as cursor:
            row = await cursor.fetchone()
        return dict(row) if row is not None else None

    async def _all(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        async with self.db.execute(sql, tuple(params)) as cursor:
            rows = await cursor.fetchall()
        return [dict(row) for row in rows]

    # -- interviews -------------------------------------------------------------------------

    async def create_interview(
        self,
        *,
        job_id: str,
        candidate_id: str,
        candidate_name: str = "",
        candidate_phone: str = "",
        candidate_timezone: str = "",
        external_key: str | None = None,
        client: str = "admin",
    ) -> tuple[dict[str, Any], bool]:
        """Create an interview; idempotent by the client's ``external_key``.

        Returns (interview, created).
        """
        if external_key:
            existing = await self._one(
                "SELECT id FROM interviews WHERE client = ? AND external_key = ?",
                (client, external_key),
            )
            if existing is not None:
                interview = await self.get_interview(existing["id"])
                assert interview is not None
                return interview, False
        now = time.time()
        interview_id = new_id("iv")
        # ON CONFLICT DO NOTHING: of concurrent creations with one key, one inserts and the
        # others find its row below (the SELECT above and this INSERT are not one step).
        cursor = await self.db.execute(
            "INSERT INTO interviews (id, job_id, candidate_id, candidate_name, candidate_phone,"
            " candidate_timezone, external_key, created_at, updated_at, status_history, client)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?,"
            " json_array(json_object('status', 'pending', 'at', ?8)), ?10)"
            " ON CONFLICT (client, external_key) DO NOTHING",
            (
                interview_id,
                job_id,
                candidate_id,
                candidate_name,
                candidate_phone,
                candidate_timezone,
                external_key,
                now,
                now,
                client,
            ),
        )
        inserted = cursor.rowcount == 1
        await self.db.commit()
        if not inserted:
            existing = await self._one(
                "SELECT id FROM interviews WHERE client = ? AND external_key = ?",
                (client, external_key),
            )
            assert existing is not None
            interview = await self.get_interview(existing["id"])
            assert interview is not None
            return interview, False
        interview = await self.get_interview(interview_id)
        assert interview is not None
        return interview, True

    async def get_interview(self, interview_id: str) -> dict[str, Any] | None:
        """Return one interview row (``status_history`` and ``report`` decoded), or None."""
        row = await self._one("SELECT * FROM interviews WHERE id = ?", (interview_id,))
        if row is not None:
            row["status_history"] = json.loads(row.get("status_history") or "[]")
            row["report"] = None if row.get("report") is None else json.loads(row["report"])
            row["opted_out"] = bool(row.get("opted_out"))
        return row

    async def opt_out_candidate(self, interview_id: str) -> list[str]:
        """The candidate asked not to be called again: no interview of theirs is held any more.

        Marks this interview opted out, and every other interview of the same candidate (same
        candidate id, or same phone number) that is still to be held (``pending``,
        ``no_response``, ``incomplete``) becomes ``opted_out``. Returns those other ids.
        """
        row = await self._one(
            "SELECT candidate_id, candidate_phone FROM interviews WHERE id = ?", (interview_id,)
        )
        if row is None:
            return []
        await self.update_interview(interview_id, opted_out=1)
        others = await self._all(
            "SELECT id FROM interviews WHERE id != ? AND status IN"
            " ('pending', 'no_response', 'incomplete')"
            " AND (candidate_id = ? OR (candidate_phone != '' AND candidate_phone = ?))",
            (interview_id, row["candidate_id"], row["candidate_phone"]),
        )
        for other in others:
            await self.update_interview(other["id"], status="opted_out", opted_out=1)
        return [other["id"] for other in others]

    async def interviews_with_status(self, status: str) -> list[dict[str, Any]]:
        """Interviews (id, job_id) in one status, oldest first."""
        return await self._all(
            "SELECT id, job_id FROM interviews WHERE status = ? ORDER BY updated_at", (status,)
        )

    async def find_pending_interview_by_phone(self, phone: str) -> dict[str, Any] | None:
        """The newest interview still to be held for this phone number (inbound calls)."""
        return await self._one(
            "SELECT * FROM interviews WHERE candidate_phone = ? AND status IN"
            " ('pending', 'no_response', 'incomplete') ORDER BY created_at DESC LIMIT 1",
            (phone,),
        )

    async def update_interview(self, interview_id: str, **fields: Any) -> None:
        """Set columns of an interview (status, consent, consent_via, attempts, opted_out).

        A status change is appended to the interview's ``status_history`` with its time.
        """
        allowed = {"status", "consent", "consent_via", "attempts", "opted_out"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"cannot update interview fields {sorted(unknown)}")
        if "status" in fields and fields["status"] not in INTERVIEW_STATUSES:
            raise ValueError(f"unknown interview status {fields['status']!r}")
        now = time.time()
        assignments = ", ".join(f"{name} = ?" for name in fields)
        history = ""
        values: list[Any] = list(fields.values())
        if "status" in fields:
            history = (
                ", status_history = CASE WHEN status = ? THEN status_history ELSE"
                " json_insert(status_history, '$[#]', json_object('status', ?, 'at', ?)) END"
            )
            values += [fields["status"], fields["status"], now]
        # SQLite evaluates every SET expression against the row before the update, so the
        # history sees the old status.
        await self.db.execute(
            f"UPDATE interviews SET {assignments}{history}, updated_at = ? WHERE id = ?",
            (*values, now, interview_id),
        )
        await self.db.commit()

    async def save_report(self, interview_id: str, report: dict[str, Any], status: str) -> None:
        """Store an interview's report (JSON) and its outcome status."""
        await self.db.execute(
            "UPDATE interviews SET report = ?, report_at = ? WHERE id = ?",
            (json.dumps(report, ensure_ascii=False), time.time(), interview_id),
        )
        await self.update_interview(interview_id, status=status)

    async def start_interview_attempt(self, interview_id: str) -> None:
        """Count a call attempt and mark the interview in progress."""
        await self.db.execute(
            "UPDATE interviews SET attempts = attempts + 1, updated_at = ? WHERE id = ?",
            (time.time(), interview_id),
        )
        await self.update_interview(interview_id, status="in_progress")

    # -- calls and turns --------------------------------------------------------------------

    async def create_call(
        self,
        *,
        call_sid: str,
        interview_id: str | None,
        stream_sid: str = "",
        from_number: str = "",
        recording_dir: str = "",
        started_at: float | None = None,
    ) -> None:
        """Record that a call's media stream started."""
        await self.db.execute(
            "INSERT INTO calls (call_sid, interview_id, stream_sid, from_number, started_at,"
            " recording_dir) VALUES (?, ?, ?, ?, ?, ?)",
            (
                call_sid,
                interview_id,
                stream_sid,
                from_number,
                started_at or time.time(),
                recording_dir,
            ),
        )
        await self.db.commit()

    async def call_exists(self, call_sid: str) -> bool:
        """Whether a call with this sid was stored before."""
        return await self._one("SELECT 1 FROM calls WHERE call_sid = ?", (call_sid,)) is not None

    async def finish_call(
        self,
        call_sid: str,
        *,
        status: str,
        end_reason: str,
        duration_secs: float,
        stats: dict[str, Any] | None = None,
    ) -> None:
        """Record how and when a call ended."""
        await self.db.execute(
            "UPDATE calls SET status = ?, end_reason = ?, ended_at = ?, duration_secs = ?,"
            " stats = ? WHERE call_sid = ?",
            (status, end_reason, time.time(), duration_secs, json.dumps(stats or {}), call_sid),
        )
        await self.db.commit()

    async def add_turn(
        self,
        *,
        call_sid: str,
        seq: int,
        speaker: str,
        text: str,
        start: float,
        end: float | None = None,
        prompt_id: str | None = None,
        question_id: str | None = None,
        asr_latency: float | None = None,
        response_latency: float | None = None,
        end_of_speech_to_final: float | None = None,
        via: str = "voice",
        follow_up: bool = False,
        prosody: dict[str, Any] | None = None,
    ) -> None:
        """Store one turn (offsets in seconds from the start of the call)."""
        await self.db.execute(
            'INSERT INTO turns (call_sid, seq, speaker, prompt_id, question_id, text, start, "end",'
            " asr_latency, response_latency, end_of_speech_to_final, via, follow_up, prosody)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                call_sid,
                seq,
                speaker,
                prompt_id,
                question_id,
                text,
                start,
                end,
                asr_latency,
                response_latency,
                end_of_speech_to_final,
                via,
                int(follow_up),
                None if prosody is None else json.dumps(prosody),
            ),
        )
        await self.db.commit()

    async def record_outcome(self, call_sid: str, section: str, key: str, value: Any) -> None:
        """Set ``outcome[section][key] = value`` on a call (JSON; ``knockouts``, ``opt_out``...)."""
        await self.db.execute(
            "UPDATE calls SET outcome = json_set(outcome, '$.' || ?,"
            " json_set(COALESCE(json_extract(outcome, '$.' || ?), '{}'), '$.' || ?, json(?)))"
            " WHERE call_sid = ?",
            (
                json.dumps(section),
                json.dumps(section),
                json.dumps(key),
                json.dumps(value, ensure_ascii=False),
                call_sid,
            ),
        )
        await self.db.commit()

    async def update_bot_turn(
        self,
        call_sid: str,
        seq: int,
        *,
        end: float,
        interrupted: bool,
        heard_secs: float,
        response_latency: float | None = None,
    ) -> None:
        """Record when a bot turn stopped playing and how much of it the candidate heard."""
        await self.db.execute(
            'UPDATE turns SET "end" = ?, interrupted = ?, heard_secs = ?,'
            " response_latency = COALESCE(?, response_latency) WHERE call_sid = ? AND seq = ?",
            (end, int(interrupted), heard_secs, response_latency, call_sid, seq),
        )
        await self.db.commit()

    async def confirm_bot_turn_played(self, call_sid: str, seq: int) -> None:
        """The carrier echoed the prompt's mark: the candidate heard it to the end."""
        await self.db.execute(
            "UPDATE turns SET mark_echoed = 1 WHERE call_sid = ? AND seq = ?", (call_sid, seq)
        )
        await self.db.commit()

    async def get_call(self, call_sid: str) -> dict[str, Any] | None:
        """One call with its turns in order, or None."""
        call = await self._one("SELECT * FROM calls WHERE call_sid = ?", (call_sid,))
        if call is None:
            return None
        call["stats"] = json.loads(call.get("stats") or "{}")
        call["outcome"] = json.loads(call.get("outcome") or "{}")
        turns = await self._all(
            "SELECT * FROM turns WHERE call_sid = ? ORDER BY start, seq", (call_sid,)
        )
        for turn in turns:
            turn["interrupted"] = bool(turn["interrupted"])
            turn["mark_echoed"] = bool(turn["mark_echoed"])
            turn["follow_up"] = bool(turn["follow_up"])
            turn["prosody"] = None if turn["prosody"] is None else json.loads(turn["prosody"])
            turn.pop("call_sid", None)
            turn.pop("id", None)
        call["turns"] = turns
        return call

    async def calls_for_interview(self, interview_id: str) -> list[dict[str, Any]]:
        """Calls of one interview, oldest first (without turns)."""
        return await self._all(
            "SELECT call_sid, status, end_reason, started_at, ended_at, duration_secs"
            " FROM calls WHERE interview_id = ? ORDER BY started_at",
            (interview_id,),
        )

    async def recent_calls(self, limit: int = 50) -> list[dict[str, Any]]:
        """Finished calls, newest first, with their interview's job, candidate and status."""
        return await self._all(
            "SELECT c.call_sid, c.interview_id, c.started_at, c.ended_at, c.duration_secs,"
            " c.end_reason, i.job_id, i.candidate_name, i.status FROM calls c"
            " JOIN interviews i ON i.id = c.interview_id"
            " WHERE c.ended_at IS NOT NULL ORDER BY c.started_at DESC LIMIT ?",
            (limit,),
        )

    async def mark_unfinished_calls(self) -> int:
        """At start-up: calls left in progress by a crashed process are marked as failed."""
        cursor = await self.db.execute(
            "UPDATE calls SET status = 'failed', end_reason = 'server_restart', ended_at = ?"
            " WHERE status = 'in_progress'",
            (time.time(),),
        )
        await self.db.commit()
        return cursor.rowcount
