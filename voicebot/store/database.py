"""The interview store: interviews, calls and their turns in SQLite via aiosqlite.

One connection per process (aiosqlite runs it in its own thread, so queries never block the event
loop), write-ahead logging, schema migrations keyed by ``PRAGMA user_version``.

With a data key (``VOICEBOT_DATA_KEY``, :class:`voicebot.crypto.Keyring`) the candidate's data is
stored encrypted, each value bound to its ``table/column/row``: interviews' ``candidate_name``,
``candidate_phone`` and ``report``, calls' ``from_number`` and ``outcome`` values (knock-out
answers), turns' ``text`` and ``prosody`` (voice measurements). A phone number is then found
through ``phone_index``, a keyed hash (blind index), never through the plaintext. Values stored
before the key was set stay readable (``voicebot data-key rotate`` encrypts them). The database
file (and so its ``-wal`` and ``-shm``, which SQLite creates with the database's mode) is 0600,
its folder 0700.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import aiosqlite

from voicebot.crypto import Keyring, create_private_file, make_private_dir, seal, unseal

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
    # 4: which server process holds a call (so a dead process's calls are settled by another)
    """
    CREATE TABLE processes (
        id TEXT PRIMARY KEY,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        pid_started TEXT NOT NULL DEFAULT '',
        started_at REAL NOT NULL,
        heartbeat_at REAL NOT NULL,
        stopped_at REAL
    );
    ALTER TABLE calls ADD COLUMN owner TEXT;
    ALTER TABLE calls ADD COLUMN settled_at REAL;
    UPDATE calls SET settled_at = COALESCE(ended_at, started_at) WHERE status != 'in_progress'
        AND NOT (end_reason = 'server_restart' AND interview_id IN
            (SELECT id FROM interviews WHERE status = 'in_progress'));
    CREATE INDEX calls_unsettled ON calls (started_at) WHERE status = 'in_progress'
        OR (end_reason = 'server_restart' AND settled_at IS NULL);
    """,
    # 5: data protection: the audit log (insert-only, hash-chained; voicebot.privacy.audit),
    # erasure tombstones, and which data classes the retention purge removed
    """
    CREATE TABLE audit_log (
        seq INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        interview_id TEXT,
        call_sid TEXT,
        candidate TEXT,
        detail TEXT NOT NULL DEFAULT '{}',
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    );
    CREATE INDEX audit_log_interview ON audit_log (interview_id);
    CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    CREATE TABLE erasures (
        candidate TEXT NOT NULL,
        client TEXT NOT NULL,
        erased_at REAL NOT NULL,
        erased_by TEXT NOT NULL,
        classes TEXT NOT NULL,
        interview_ids TEXT NOT NULL,
        calls INTEGER NOT NULL,
        call_sids TEXT NOT NULL DEFAULT '[]',
        PRIMARY KEY (candidate, client)
    );
    ALTER TABLE calls ADD COLUMN purged TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE interviews ADD COLUMN purged TEXT NOT NULL DEFAULT '[]';
    """,
    # 6: data at rest: encrypted phone numbers are looked up by a keyed hash (blind index)
    """
    ALTER TABLE interviews ADD COLUMN phone_index TEXT;
    CREATE INDEX interviews_phone_index ON interviews (phone_index, status);
    """,
    # 7: outbound campaigns (issue 20): a campaign dials its interviews; each attempt is a row the
    # dialer claims under a lease (two processes never place one attempt); the do-not-call list
    """
    CREATE TABLE campaigns (
        id TEXT PRIMARY KEY,
        client TEXT NOT NULL DEFAULT 'admin',
        job_id TEXT NOT NULL,
        name TEXT NOT NULL DEFAULT '',
        policy TEXT NOT NULL DEFAULT '{}',
        paused INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX campaigns_client ON campaigns (client, created_at);
    ALTER TABLE interviews ADD COLUMN campaign_id TEXT REFERENCES campaigns (id);
    ALTER TABLE interviews ADD COLUMN next_attempt_at REAL;
    CREATE INDEX interviews_campaign ON interviews (campaign_id, status);
    CREATE INDEX interviews_due ON interviews (next_attempt_at) WHERE next_attempt_at IS NOT NULL;
    CREATE TABLE dial_attempts (
        id TEXT PRIMARY KEY,
        interview_id TEXT NOT NULL REFERENCES interviews (id),
        campaign_id TEXT NOT NULL REFERENCES campaigns (id),
        number INTEGER NOT NULL,
        state TEXT NOT NULL DEFAULT 'claimed',
        lease_owner TEXT,
        lease_until REAL,
        call_sid TEXT UNIQUE,
        created_at REAL NOT NULL,
        placed_at REAL,
        answered_at REAL,
        ended_at REAL,
        outcome TEXT,
        answered_by TEXT,
        detail TEXT NOT NULL DEFAULT '{}',
        UNIQUE (interview_id, number)
    );
    CREATE INDEX dial_attempts_campaign ON dial_attempts (campaign_id, state);
    CREATE INDEX dial_attempts_open ON dial_attempts (lease_until) WHERE state != 'ended';
    CREATE TABLE opt_outs (
        phone_key TEXT PRIMARY KEY,
        phone TEXT,
        reason TEXT NOT NULL DEFAULT '',
        source TEXT NOT NULL,
        added_by TEXT NOT NULL,
        added_at REAL NOT NULL
    );
    """,
]

DIAL_ATTEMPT_STATES = ("claimed", "placing", "dialing", "up", "ended")
"""A dial attempt (migration 7): ``claimed`` (a dialer holds its lease: ``lease_owner`` until
``lease_until``) -> ``placing`` (the carrier's REST call is in flight) -> ``dialing`` (the carrier
took it: ``call_sid``; ringing) -> ``up`` (answered) -> ``ended`` with an ``outcome``."""

DIAL_OUTCOMES = ("answered", "no_answer", "busy", "failed", "voicemail", "canceled")
"""How an attempt ended. A carrier error (401/429/5xx/timeout) is not an outcome: the attempt is
released and placed again later, and never counted as the candidate's."""

OPT_OUT_SOURCES = ("api", "voice", "import")
"""How a number reached the do-not-call list (``opt_outs``). ``phone_key`` is a keyed hash of
the E.164 number, so an erased candidate's number stays listed without the number itself;
``phone`` (sealed with the data key when one is set) is kept for listing until erasure."""

PHONE_INDEX = "phone"
"""The blind index's purpose label for candidates' phone numbers."""

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
    "unreachable",
)
"""An interview's life: ``pending`` (created, no call yet) -> ``in_progress`` (a call is on) ->
``scoring`` (the call ended, the report is being built) -> an outcome: ``completed`` (all
questions asked), ``declined`` (no consent), ``no_response`` (silent), ``incomplete`` (hung up
early; may be called again), ``knocked_out`` (failed a knock-out question), ``opted_out`` (asked
not to be called again), ``failed`` (server error), ``unreachable`` (a campaign's last dial
attempt did not reach the candidate; HR term 未联系上)."""

CALLABLE_STATUSES = frozenset(
    {"pending", "in_progress", "no_response", "incomplete", "failed", "unreachable"}
)
"""Interview statuses that may take a call (an ``in_progress`` one only if no stream holds it:
a call left open by a process that died; an ``unreachable`` one when the candidate calls back:
the dialer has no attempt scheduled for it, ``next_attempt_at`` is NULL)."""


def new_id(prefix: str) -> str:
    """Return a random, URL-safe identifier with a readable prefix."""
    return f"{prefix}_{secrets.token_hex(8)}"


class Store:
    """Async repository over one SQLite database file."""

    def __init__(self, path: Path | str, keyring: Keyring | None = None):
        self.path = Path(path)
        self.keyring = keyring
        self._db: aiosqlite.Connection | None = None

    async def open(self) -> None:
        """Open the database, creating it (0600, folder 0700) and applying migrations as needed."""
        make_private_dir(self.path.parent)
        create_private_file(self.path)
        # BEGIN IMMEDIATE: a write waits for the audit log's connection (or a CLI's) instead of
        # failing with "database is locked" when its read snapshot is overtaken.
        self._db = await aiosqlite.connect(self.path, isolation_level="IMMEDIATE")
        self._db.row_factory = aiosqlite.Row
        await self._db.execute("PRAGMA journal_mode=WAL")
        await self._db.execute("PRAGMA synchronous=NORMAL")
        await self._db.execute("PRAGMA foreign_keys=ON")
        # Deleted rows are overwritten, not left in free pages (erasure, the retention purge).
        await self._db.execute("PRAGMA secure_delete=ON")
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
        phone_index = (
            self.keyring.blind_index(candidate_phone, PHONE_INDEX)
            if self.keyring is not None and candidate_phone
            else None
        )
        # ON CONFLICT DO NOTHING: of concurrent creations with one key, one inserts and the
        # others find its row below (the SELECT above and this INSERT are not one step).
        cursor = await self.db.execute(
            "INSERT INTO interviews (id, job_id, candidate_id, candidate_name, candidate_phone,"
            " candidate_timezone, external_key, created_at, updated_at, status_history, client,"
            " phone_index)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?,"
            " json_array(json_object('status', 'pending', 'at', ?8)), ?10, ?11)"
            " ON CONFLICT (client, external_key) DO NOTHING",
            (
                interview_id,
                job_id,
                candidate_id,
                self._seal(candidate_name, "interviews/candidate_name", interview_id),
                self._seal(candidate_phone, "interviews/candidate_phone", interview_id),
                candidate_timezone,
                external_key,
                now,
                now,
                client,
                phone_index,
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
        return None if row is None else self._interview(row)

    def _interview(self, row: dict[str, Any]) -> dict[str, Any]:
        """An interview row as callers see it: decrypted, JSON decoded, no blind index."""
        interview_id = row["id"]
        row.pop("phone_index", None)
        for column in ("candidate_name", "candidate_phone"):
            row[column] = self._unseal(row.get(column), f"interviews/{column}", interview_id)
        row["status_history"] = json.loads(row.get("status_history") or "[]")
        report = self._unseal(row.get("report"), "interviews/report", interview_id)
        row["report"] = None if report is None else json.loads(report)
        row["opted_out"] = bool(row.get("opted_out"))
        row["purged"] = json.loads(row.get("purged") or "[]")
        return row

    def _seal(self, value: str | None, column: str, row_id: Any) -> str | None:
        """A value as stored: encrypted and bound to ``column/row`` when a key is set."""
        return seal(self.keyring, value, f"{column}/{row_id}")

    def _unseal(self, value: Any, column: str, row_id: Any) -> Any:
        return unseal(self.keyring, value, f"{column}/{row_id}")

    def _phone_match(self, phone: str) -> tuple[str, list[Any]]:
        """SQL condition (and its parameters) for "this interview's phone number is ``phone``".

        By blind index under every configured key, and by plaintext (rows stored without a key).
        """
        if self.keyring is None:
            return "candidate_phone = ?", [phone]
        indexes = self.keyring.blind_indexes(phone, PHONE_INDEX)
        marks = ", ".join("?" for _ in indexes)
        return f"(phone_index IN ({marks}) OR candidate_phone = ?)", [*indexes, phone]

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
        phone = self._unseal(row["candidate_phone"], "interviews/candidate_phone", interview_id)
        same_phone, phone_params = self._phone_match(phone) if phone else ("0", [])
        others = await self._all(
            "SELECT id FROM interviews WHERE id != ? AND status IN"
            " ('pending', 'no_response', 'incomplete', 'unreachable')"
            f" AND (candidate_id = ? OR {same_phone})",
            (interview_id, row["candidate_id"], *phone_params),
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
        same_phone, params = self._phone_match(phone)
        row = await self._one(
            f"SELECT * FROM interviews WHERE {same_phone} AND status IN"
            " ('pending', 'no_response', 'incomplete', 'unreachable')"
            " ORDER BY created_at DESC LIMIT 1",
            params,
        )
        return None if row is None else self._interview(row)

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
            (
                self._seal(
                    json.dumps(report, ensure_ascii=False), "interviews/report", interview_id
                ),
                time.time(),
                interview_id,
            ),
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
        owner: str | None = None,
    ) -> None:
        """Record that a call's media stream started (held by the process ``owner``)."""
        await self.db.execute(
            "INSERT INTO calls (call_sid, interview_id, stream_sid, from_number, started_at,"
            " recording_dir, owner) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                call_sid,
                interview_id,
                stream_sid,
                self._seal(from_number, "calls/from_number", call_sid),
                started_at or time.time(),
                recording_dir,
                owner,
            ),
        )
        await self.db.commit()

    async def live_call_of_interview(self, interview_id: str) -> str | None:
        """The sid of a call of this interview still in progress in the store, if any."""
        row = await self._one(
            "SELECT call_sid FROM calls WHERE interview_id = ? AND status = 'in_progress'",
            (interview_id,),
        )
        return None if row is None else row["call_sid"]

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
        ended_at: float | None = None,
    ) -> None:
        """Record how and when (default: now) a call ended."""
        await self.db.execute(
            "UPDATE calls SET status = ?, end_reason = ?, ended_at = ?, duration_secs = ?,"
            " stats = ? WHERE call_sid = ?",
            (
                status,
                end_reason,
                ended_at or time.time(),
                duration_secs,
                json.dumps(stats or {}),
                call_sid,
            ),
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
                self._seal(text, "turns/text", f"{call_sid}/{seq}"),
                start,
                end,
                asr_latency,
                response_latency,
                end_of_speech_to_final,
                via,
                int(follow_up),
                self._seal(
                    None if prosody is None else json.dumps(prosody),
                    "turns/prosody",
                    f"{call_sid}/{seq}",
                ),
            ),
        )
        await self.db.commit()

    async def record_outcome(self, call_sid: str, section: str, key: str, value: Any) -> None:
        """Set ``outcome[section][key] = value`` on a call (JSON; ``knockouts``, ``opt_out``...).

        With a data key the value is stored as its encrypted JSON text (a knock-out holds the
        candidate's answer).
        """
        if self.keyring is not None:
            value = self._seal(
                json.dumps(value, ensure_ascii=False),
                "calls/outcome",
                f"{call_sid}/{section}/{key}",
            )
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
        call["outcome"] = self._outcome(call_sid, json.loads(call.get("outcome") or "{}"))
        call["from_number"] = self._unseal(call.get("from_number"), "calls/from_number", call_sid)
        call["purged"] = json.loads(call.get("purged") or "[]")
        turns = await self._all(
            "SELECT * FROM turns WHERE call_sid = ? ORDER BY start, seq", (call_sid,)
        )
        for turn in turns:
            turn["text"] = self._unseal(turn["text"], "turns/text", f"{call_sid}/{turn['seq']}")
            turn["interrupted"] = bool(turn["interrupted"])
            turn["mark_echoed"] = bool(turn["mark_echoed"])
            turn["follow_up"] = bool(turn["follow_up"])
            prosody = self._unseal(turn["prosody"], "turns/prosody", f"{call_sid}/{turn['seq']}")
            turn["prosody"] = None if prosody is None else json.loads(prosody)
            turn.pop("call_sid", None)
            turn.pop("id", None)
        call["turns"] = turns
        return call

    def _outcome(self, call_sid: str, outcome: dict[str, Any]) -> dict[str, Any]:
        """A call's outcome with its encrypted values decrypted."""
        for section, values in outcome.items():
            if not isinstance(values, dict):
                continue
            for key, value in values.items():
                plain = self._unseal(value, "calls/outcome", f"{call_sid}/{section}/{key}")
                if plain is not value:
                    values[key] = json.loads(plain)
        return outcome

    async def calls_for_interview(self, interview_id: str) -> list[dict[str, Any]]:
        """Calls of one interview, oldest first (without turns)."""
        return await self._all(
            "SELECT call_sid, status, end_reason, started_at, ended_at, duration_secs"
            " FROM calls WHERE interview_id = ? ORDER BY started_at",
            (interview_id,),
        )

    async def recent_calls(self, limit: int = 50) -> list[dict[str, Any]]:
        """Finished calls, newest first, with their interview's job, candidate and status."""
        rows = await self._all(
            "SELECT c.call_sid, c.interview_id, c.started_at, c.ended_at, c.duration_secs,"
            " c.end_reason, i.job_id, i.candidate_name, i.status FROM calls c"
            " JOIN interviews i ON i.id = c.interview_id"
            " WHERE c.ended_at IS NOT NULL ORDER BY c.started_at DESC LIMIT ?",
            (limit,),
        )
        for row in rows:
            row["candidate_name"] = self._unseal(
                row["candidate_name"], "interviews/candidate_name", row["interview_id"]
            )
        return rows

    async def key_ids_in_use(self) -> set[str]:
        """Key ids the stored candidate fields were encrypted with (names, phones, reports).

        Checked at start-up: a key still in use must be configured, else its data is unreadable.
        """
        kids: set[str] = set()
        for column in ("candidate_name", "candidate_phone", "report"):
            rows = await self._all(
                f"SELECT DISTINCT substr({column}, 8, instr(substr({column}, 8), '.') - 1) AS kid"
                f" FROM interviews WHERE {column} LIKE 'vbenc1.%'"
            )
            kids.update(row["kid"] for row in rows)
        return kids

    async def reencrypt(self) -> int:
        """Re-encrypt every candidate field under the current key (plaintext ones too).

        Key rotation: with the new key first in ``VOICEBOT_DATA_KEY`` and the old one still
        after it, this moves every value to the new key (and its blind index), after which the
        old key may be dropped. One transaction; returns how many rows were rewritten.
        """
        if self.keyring is None:
            raise RuntimeError("re-encrypting needs VOICEBOT_DATA_KEY")
        rows = 0
        await self.db.execute("BEGIN IMMEDIATE")
        try:
            for row in await self._all(
                "SELECT id, candidate_name, candidate_phone, report FROM interviews"
            ):
                iv = row["id"]
                name = self._unseal(row["candidate_name"], "interviews/candidate_name", iv)
                phone = self._unseal(row["candidate_phone"], "interviews/candidate_phone", iv)
                report = self._unseal(row["report"], "interviews/report", iv)
                await self.db.execute(
                    "UPDATE interviews SET candidate_name = ?, candidate_phone = ?, report = ?,"
                    " phone_index = ? WHERE id = ?",
                    (
                        self._seal(name, "interviews/candidate_name", iv),
                        self._seal(phone, "interviews/candidate_phone", iv),
                        self._seal(report, "interviews/report", iv),
                        self.keyring.blind_index(phone, PHONE_INDEX) if phone else None,
                        iv,
                    ),
                )
                rows += 1
            for row in await self._all("SELECT call_sid, from_number, outcome FROM calls"):
                sid = row["call_sid"]
                outcome = self._outcome(sid, json.loads(row["outcome"] or "{}"))
                sealed = {
                    section: {
                        key: self._seal(
                            json.dumps(value, ensure_ascii=False),
                            "calls/outcome",
                            f"{sid}/{section}/{key}",
                        )
                        for key, value in values.items()
                    }
                    if isinstance(values, dict)
                    else values
                    for section, values in outcome.items()
                }
                number = self._unseal(row["from_number"], "calls/from_number", sid)
                await self.db.execute(
                    "UPDATE calls SET from_number = ?, outcome = ? WHERE call_sid = ?",
                    (self._seal(number, "calls/from_number", sid), json.dumps(sealed), sid),
                )
                rows += 1
            for row in await self._all("SELECT id, call_sid, seq, text, prosody FROM turns"):
                where = f"{row['call_sid']}/{row['seq']}"
                text = self._unseal(row["text"], "turns/text", where)
                prosody = self._unseal(row["prosody"], "turns/prosody", where)
                await self.db.execute(
                    "UPDATE turns SET text = ?, prosody = ? WHERE id = ?",
                    (
                        self._seal(text, "turns/text", where),
                        self._seal(prosody, "turns/prosody", where),
                        row["id"],
                    ),
                )
                rows += 1
            await self.db.commit()
        except BaseException:
            await self.db.rollback()
            raise
        await self.db.execute("VACUUM")  # the old ciphertexts (and any plaintext) leave the file
        await self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return rows

    # -- server processes and the calls they leave ---------------------------------------

    async def register_process(
        self, process_id: str, *, host: str, pid: int, pid_started: str = ""
    ) -> None:
        """A server process started: it holds the calls it creates with ``owner=process_id``."""
        now = time.time()
        await self.db.execute(
            "INSERT INTO processes (id, host, pid, pid_started, started_at, heartbeat_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (process_id, host, pid, pid_started, now, now),
        )
        await self.db.commit()

    async def process_heartbeat(self, process_id: str, *, stopped: bool = False) -> None:
        """The process is alive (or, ``stopped``, ended cleanly: it holds no call any more)."""
        now = time.time()
        await self.db.execute(
            "UPDATE processes SET heartbeat_at = ?, stopped_at = CASE WHEN ? THEN ? END"
            " WHERE id = ?",
            (now, stopped, now, process_id),
        )
        await self.db.commit()

    async def processes(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The process rows of these ids (missing ids are not in the result)."""
        wanted = list(ids)
        if not wanted:
            return {}
        rows = await self._all(
            f"SELECT * FROM processes WHERE id IN ({', '.join('?' * len(wanted))})", wanted
        )
        return {row["id"]: row for row in rows}

    async def unsettled_calls(self, exclude_owner: str) -> list[dict[str, Any]]:
        """Calls not held by ``exclude_owner`` and not settled, oldest first.

        Those still open, and those a process began to settle and did not finish
        (``server_restart`` without ``settled_at``).
        """
        return await self._all(
            "SELECT c.call_sid, c.interview_id, c.owner, c.status, c.started_at, c.ended_at,"
            " c.recording_dir, i.job_id FROM calls c"
            " LEFT JOIN interviews i ON i.id = c.interview_id"
            " WHERE (c.status = 'in_progress' OR (c.end_reason = 'server_restart'"
            " AND c.settled_at IS NULL)) AND c.owner IS NOT ? ORDER BY c.started_at",
            (exclude_owner,),
        )

    async def claim_unsettled_call(
        self, call_sid: str, *, dead_owner: str | None, new_owner: str, ended_at: float
    ) -> bool:
        """Take a dead process's call to settle it; whether this process got it.

        It becomes ``failed``/``server_restart``, held by ``new_owner``. Atomic: of several
        processes trying, one gets ``True``.
        """
        cursor = await self.db.execute(
            "UPDATE calls SET owner = ?, status = 'failed', end_reason = 'server_restart',"
            " ended_at = COALESCE(ended_at, ?),"
            " duration_secs = COALESCE(duration_secs, MAX(0, ROUND(? - started_at, 3)))"
            " WHERE call_sid = ? AND owner IS ? AND settled_at IS NULL"
            " AND (status = 'in_progress' OR end_reason = 'server_restart')",
            (new_owner, ended_at, ended_at, call_sid, dead_owner),
        )
        await self.db.commit()
        return cursor.rowcount == 1

    async def mark_call_settled(self, call_sid: str) -> None:
        """Everything a dead process's call needed is done (report, events, recording)."""
        await self.db.execute(
            "UPDATE calls SET settled_at = ? WHERE call_sid = ?", (time.time(), call_sid)
        )
        await self.db.commit()

    # -- data protection: erasure and retention (voicebot.privacy) ------------------------------

    async def candidate_interviews(
        self, candidate_id: str, client: str | None = None
    ) -> list[dict[str, Any]]:
        """A candidate's interviews (id, client, candidate_id, status): of one client, or all."""
        sql = "SELECT id, client, candidate_id, status FROM interviews WHERE candidate_id = ?"
        params: list[Any] = [candidate_id]
        if client is not None:
            sql += " AND client = ?"
            params.append(client)
        return await self._all(sql + " ORDER BY created_at", params)

    async def calls_in_progress(self, interview_ids: list[str]) -> list[str]:
        """Sids of the calls of these interviews still in progress (in any process)."""
        marks = ",".join("?" * len(interview_ids))
        rows = await self._all(
            "SELECT call_sid FROM calls WHERE status = 'in_progress'"
            f" AND interview_id IN ({marks})",
            interview_ids,
        )
        return [row["call_sid"] for row in rows]

    async def erase_interviews(
        self, interview_ids: list[str], tombstones: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Delete interviews with their calls and turns, store the tombstones; the calls removed.

        Deleted rows are overwritten (``secure_delete``) and the write-ahead log is truncated,
        so no copy of the words stays in the database's files. Returns each removed call's
        ``call_sid`` and ``recording_dir`` (its files are the caller's to delete).
        """
        marks = ",".join("?" * len(interview_ids))
        calls = await self._all(
            f"SELECT call_sid, recording_dir FROM calls WHERE interview_id IN ({marks})",
            interview_ids,
        )
        sids = [call["call_sid"] for call in calls]
        try:
            if sids:
                call_marks = ",".join("?" * len(sids))
                await self.db.execute(f"DELETE FROM turns WHERE call_sid IN ({call_marks})", sids)
                await self.db.execute(f"DELETE FROM calls WHERE call_sid IN ({call_marks})", sids)
            # An outbound campaign's attempts (call sids, times) go with their interview.
            await self.db.execute(
                f"DELETE FROM dial_attempts WHERE interview_id IN ({marks})", interview_ids
            )
            await self.db.execute(f"DELETE FROM interviews WHERE id IN ({marks})", interview_ids)
            for stone in tombstones:
                await self.db.execute(
                    "INSERT OR REPLACE INTO erasures (candidate, client, erased_at, erased_by,"
                    " classes, interview_ids, calls, call_sids) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        stone["candidate"],
                        stone["client"],
                        stone["erased_at"],
                        stone["erased_by"],
                        json.dumps(stone["classes"]),
                        json.dumps(stone["interview_ids"]),
                        stone["calls"],
                        json.dumps(stone.get("call_sids", [])),
                    ),
                )
            await self.db.commit()
        except BaseException:
            await self.db.rollback()
            raise
        await self.checkpoint()
        return calls

    async def checkpoint(self) -> None:
        """Copy the write-ahead log into the database and truncate it (no old pages kept)."""
        await self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    async def tombstones(self, candidate_refs: list[str]) -> list[dict[str, Any]]:
        """Erasure tombstones of these candidate references."""
        if not candidate_refs:
            return []
        marks = ",".join("?" * len(candidate_refs))
        rows = await self._all(
            f"SELECT * FROM erasures WHERE candidate IN ({marks}) ORDER BY erased_at",
            candidate_refs,
        )
        return [_tombstone(row) for row in rows]

    async def tombstone_of_interview(self, interview_id: str) -> dict[str, Any] | None:
        """The tombstone of an erased interview, or None."""
        row = await self._one(
            "SELECT e.* FROM erasures e, json_each(e.interview_ids) j WHERE j.value = ?",
            (interview_id,),
        )
        return None if row is None else _tombstone(row)

    async def calls_to_purge(self, data_class: str, ended_before: float) -> list[dict[str, Any]]:
        """Calls ended before a time whose ``data_class`` (recordings, transcripts) still is."""
        return await self._all(
            "SELECT call_sid, recording_dir FROM calls WHERE ended_at IS NOT NULL"
            " AND ended_at < ? AND NOT EXISTS (SELECT 1 FROM json_each(calls.purged)"
            " WHERE json_each.value = ?) ORDER BY ended_at",
            (ended_before, data_class),
        )

    async def reports_to_purge(self, built_before: float) -> list[str]:
        """Ids of interviews whose report was built before a time and is still stored."""
        rows = await self._all(
            "SELECT id FROM interviews WHERE report IS NOT NULL AND report_at < ?"
            " ORDER BY report_at",
            (built_before,),
        )
        return [row["id"] for row in rows]

    async def purge_calls(self, data_class: str, call_sids: list[str]) -> None:
        """Remove one data class of these calls; ids, times, statuses and speakers stay.

        ``recordings``: the call forgets its recording directory (the files are the caller's to
        delete); ``transcripts``: the turns' words and prosody and the outcome's answers go.
        """
        if not call_sids:
            return
        marks = ",".join("?" * len(call_sids))
        if data_class == "recordings":
            await self.db.execute(
                f"UPDATE calls SET recording_dir = '' WHERE call_sid IN ({marks})", call_sids
            )
        elif data_class == "transcripts":
            await self.db.execute(
                f"UPDATE turns SET text = '', prosody = NULL WHERE call_sid IN ({marks})", call_sids
            )
            await self.db.execute(
                f"UPDATE calls SET outcome = '{{}}' WHERE call_sid IN ({marks})", call_sids
            )
        else:
            raise ValueError(f"unknown call data class {data_class!r}")
        await self.db.execute(
            f"UPDATE calls SET purged = json_insert(purged, '$[#]', ?) WHERE call_sid IN ({marks})",
            (data_class, *call_sids),
        )
        await self.db.commit()
        await self.checkpoint()

    async def purge_reports(self, interview_ids: list[str]) -> None:
        """Remove these interviews' reports (they are not built again: ``purged`` says so)."""
        if not interview_ids:
            return
        marks = ",".join("?" * len(interview_ids))
        await self.db.execute(
            "UPDATE interviews SET report = NULL, purged = CASE WHEN EXISTS (SELECT 1 FROM"
            " json_each(interviews.purged) WHERE json_each.value = 'reports') THEN purged ELSE"
            f" json_insert(purged, '$[#]', 'reports') END WHERE id IN ({marks})",
            interview_ids,
        )
        await self.db.commit()
        await self.checkpoint()


def _tombstone(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "candidate": row["candidate"],
        "client": row["client"],
        "erased_at": row["erased_at"],
        "erased_by": row["erased_by"],
        "classes": json.loads(row["classes"]),
        "interview_ids": json.loads(row["interview_ids"]),
        "calls": row["calls"],
        "call_sids": json.loads(row["call_sids"]),
    }
