"""The dial attempts in the store: claiming due interviews under a lease, and an attempt's life.

Functions over a :class:`voicebot.store.database.Store` (its connection), kept beside the dialer
so the store's module stays the interviews' and calls' own.

An interview is **due** when it belongs to a campaign, its ``next_attempt_at`` has come, its
status is callable (:data:`~voicebot.store.database.CALLABLE_STATUSES`), its campaign is not
paused, no attempt of it is open (``state != 'ended'``) and no call of it is up (the candidate
called back). Claiming inserts the ``claimed`` attempt row in one statement of one ``BEGIN
IMMEDIATE`` transaction (:data:`CLAIM_SQL`): SQLite lets one writer in at a time, and the
statement re-checks every condition (the campaign's ``max_concurrent`` and ``max_attempts``
too), so of two processes on one store exactly one claims an attempt; ``UNIQUE (interview_id,
number)`` is the second lock on the door. :data:`CLAIM_SQL_POSTGRES` is the same claim as a
shared PostgreSQL database runs it (``FOR UPDATE SKIP LOCKED``).

A released attempt (the carrier did not take the request: 401, 429, 5xx, a timeout) is deleted:
it never happened for the candidate, and its number is used again. An ended attempt keeps its
row (``outcome``, times, ``call_sid``).
"""

from __future__ import annotations

import json
import time
from typing import Any

from voicebot.store.database import CALLABLE_STATUSES, Store, new_id

DEFAULT_MAX_ATTEMPTS = 3
"""Attempts per interview when a campaign's policy does not say (issue 20's default)."""
DEFAULT_MAX_CONCURRENT = 10
"""A campaign's calls up at once when its policy does not say."""

STATE_ORDER = {"claimed": 0, "placing": 1, "dialing": 2, "up": 3, "ended": 4}
"""An attempt only ever moves forward in this order (a late callback never moves it back)."""

_CALLABLE = ", ".join(f"'{status}'" for status in sorted(CALLABLE_STATUSES))
_OPEN = "'claimed', 'placing', 'dialing', 'up'"
"""Attempts not ended, as an ``IN`` list: an index lookup per state, however many ended."""

CLAIM_SQL = f"""
INSERT INTO dial_attempts
    (id, interview_id, campaign_id, number, state, lease_owner, lease_until, created_at)
SELECT :attempt_id, i.id, i.campaign_id,
       (SELECT COUNT(*) FROM dial_attempts d WHERE d.interview_id = i.id) + 1,
       'claimed', :owner, :lease_until, :now
FROM interviews i JOIN campaigns c ON c.id = i.campaign_id
WHERE i.id = :interview_id
  AND i.next_attempt_at IS NOT NULL AND i.next_attempt_at <= :now
  AND i.status IN ({_CALLABLE})
  AND c.paused = 0
  AND NOT EXISTS (SELECT 1 FROM dial_attempts d
                  WHERE d.interview_id = i.id AND d.state != 'ended')
  AND NOT EXISTS (SELECT 1 FROM calls k
                  WHERE k.interview_id = i.id AND k.status = 'in_progress')
  AND (SELECT COUNT(*) FROM dial_attempts d WHERE d.interview_id = i.id)
      < COALESCE(json_extract(c.policy, '$.max_attempts'), {DEFAULT_MAX_ATTEMPTS})
  AND (SELECT COUNT(*) FROM dial_attempts d
       WHERE d.campaign_id = c.id AND d.state IN ({_OPEN}))
      < COALESCE(json_extract(c.policy, '$.max_concurrent'), {DEFAULT_MAX_CONCURRENT})
RETURNING id, interview_id, campaign_id, number, state, lease_owner, lease_until, created_at
"""
"""Claim one due interview as a new ``claimed`` attempt (SQLite; run under ``BEGIN IMMEDIATE``).

No row returned: it was not due any more (claimed by another process, paused, its campaign at
``max_concurrent``, out of attempts, on a call)."""

CLAIM_SQL_POSTGRES = f"""
WITH due AS (
    SELECT i.id, i.campaign_id
    FROM interviews i JOIN campaigns c ON c.id = i.campaign_id
    WHERE i.next_attempt_at <= %(now)s
      AND i.status IN ({_CALLABLE})
      AND NOT c.paused
      AND NOT EXISTS (SELECT 1 FROM dial_attempts d
                      WHERE d.interview_id = i.id AND d.state != 'ended')
      AND NOT EXISTS (SELECT 1 FROM calls k
                      WHERE k.interview_id = i.id AND k.status = 'in_progress')
      AND (SELECT COUNT(*) FROM dial_attempts d WHERE d.interview_id = i.id)
          < COALESCE((c.policy::jsonb ->> 'max_attempts')::int, {DEFAULT_MAX_ATTEMPTS})
    ORDER BY i.next_attempt_at
    LIMIT %(batch)s
    FOR UPDATE OF i SKIP LOCKED
)
INSERT INTO dial_attempts
    (id, interview_id, campaign_id, number, state, lease_owner, lease_until, created_at)
SELECT 'da_' || encode(gen_random_bytes(8), 'hex'), due.id, due.campaign_id,
       (SELECT COUNT(*) FROM dial_attempts d WHERE d.interview_id = due.id) + 1,
       'claimed', %(owner)s, %(lease_until)s, %(now)s
FROM due
ON CONFLICT (interview_id, number) DO NOTHING
RETURNING id, interview_id, campaign_id, number, state, lease_owner, lease_until, created_at
"""
"""The same claim on a shared PostgreSQL database, a batch at once: ``FOR UPDATE OF i SKIP
LOCKED`` lets each process take interviews no other transaction holds, without waiting; a
campaign's ``max_concurrent`` is then checked per campaign with ``SELECT ... FROM campaigns
WHERE id = ... FOR UPDATE`` before the batch (not shown: one row lock per campaign)."""


def decode_policy(raw: Any) -> dict[str, Any]:
    """A campaign's ``policy`` column as a dict (``{}`` when empty or unreadable)."""
    if isinstance(raw, dict):
        return raw
    try:
        policy = json.loads(raw or "{}")
    except ValueError:
        return {}
    return policy if isinstance(policy, dict) else {}


DUE_SQL = (
    "SELECT i.id, i.job_id, i.candidate_id, i.external_key, i.client, i.status,"
    " i.candidate_phone, i.candidate_timezone, i.campaign_id, i.next_attempt_at,"
    " c.policy AS campaign_policy,"
    " (SELECT COUNT(*) FROM dial_attempts d WHERE d.interview_id = i.id) AS attempts_made"
    " FROM interviews i JOIN campaigns c ON c.id = i.campaign_id"
    " WHERE i.next_attempt_at IS NOT NULL AND i.next_attempt_at <= ?"
    f" AND i.status IN ({_CALLABLE}) AND c.paused = 0"
    " AND NOT EXISTS (SELECT 1 FROM dial_attempts d"
    " WHERE d.interview_id = i.id AND d.state != 'ended')"
    " AND NOT EXISTS (SELECT 1 FROM calls k"
    " WHERE k.interview_id = i.id AND k.status = 'in_progress')"
    " AND (SELECT COUNT(*) FROM dial_attempts d"
    f" WHERE d.campaign_id = c.id AND d.state IN ({_OPEN}))"
    f" < COALESCE(json_extract(c.policy, '$.max_concurrent'), {DEFAULT_MAX_CONCURRENT})"
    " ORDER BY i.next_attempt_at LIMIT ?"
)
"""Due interviews, oldest due first (the ``interviews_due`` index), campaigns at their
``max_concurrent`` left out; parameters ``(now, limit)``."""


async def due_interviews(store: Store, now: float, limit: int) -> list[dict[str, Any]]:
    """Interviews due for a call (see the module), oldest due first, with their campaign.

    Each row: the interview's ids and refs, its phone (decrypted) and time zone, its campaign's
    ``policy`` (decoded), and ``attempts_made``. Campaigns at their ``max_concurrent`` are left
    out. A read only: :func:`claim_attempt` decides.
    """
    rows = await store._all(DUE_SQL, (now, limit))
    for row in rows:
        row["candidate_phone"] = store._unseal(
            row["candidate_phone"], "interviews/candidate_phone", row["id"]
        )
        row["policy"] = decode_policy(row.pop("campaign_policy"))
    return rows


async def claim_attempt(
    store: Store, interview_id: str, *, owner: str, lease_until: float, now: float
) -> dict[str, Any] | None:
    """Claim one due interview as a new ``claimed`` attempt held by ``owner``; None: not due."""
    try:
        async with store.db.execute(
            CLAIM_SQL,
            {
                "attempt_id": new_id("da"),
                "interview_id": interview_id,
                "owner": owner,
                "lease_until": lease_until,
                "now": now,
            },
        ) as cursor:
            row = await cursor.fetchone()
        await store.db.commit()
    except BaseException:
        await store.db.rollback()
        raise
    return None if row is None else dict(row)


async def set_next_attempt(store: Store, interview_id: str, at: float | None) -> None:
    """When the interview is dialed next (None: not any more)."""
    await store.db.execute(
        "UPDATE interviews SET next_attempt_at = ?, updated_at = ? WHERE id = ?",
        (at, time.time(), interview_id),
    )
    await store.db.commit()


async def advance_attempt(
    store: Store,
    attempt_id: str,
    state: str,
    *,
    owner: str | None = None,
    **fields: Any,
) -> bool:
    """Move an attempt forward to ``state`` (and set ``fields``); whether it moved.

    Never backwards, never out of ``ended``; with ``owner``, only while that process holds the
    attempt's lease.
    """
    allowed = {"lease_until", "call_sid", "placed_at", "answered_at", "answered_by", "lease_owner"}
    unknown = set(fields) - allowed
    if unknown:
        raise ValueError(f"cannot set dial attempt fields {sorted(unknown)}")
    earlier = [name for name, order in STATE_ORDER.items() if order < STATE_ORDER[state]]
    assignments = "".join(f", {name} = ?" for name in fields)
    where = f"id = ? AND state IN ({', '.join('?' * len(earlier))})"
    params: list[Any] = [state, *fields.values(), attempt_id, *earlier]
    if owner is not None:
        where += " AND lease_owner = ?"
        params.append(owner)
    cursor = await store.db.execute(
        f"UPDATE dial_attempts SET state = ?{assignments} WHERE {where}", params
    )
    await store.db.commit()
    return cursor.rowcount == 1


async def set_answered_by(store: Store, attempt_id: str, answered_by: str) -> None:
    """Record the answering-machine verdict (the attempt's state does not change)."""
    await store.db.execute(
        "UPDATE dial_attempts SET answered_by = ? WHERE id = ?", (answered_by, attempt_id)
    )
    await store.db.commit()


async def end_attempt(
    store: Store,
    attempt: dict[str, Any],
    outcome: str,
    *,
    ended_at: float,
    next_attempt_at: float | None,
    unreachable: bool = False,
    detail: dict[str, Any] | None = None,
    call_sid: str | None = None,
    only_state: str | None = None,
    expired_before: float | None = None,
    report_by: float,
) -> bool:
    """End an attempt with its ``outcome`` and schedule its interview, in one transaction.

    Whether this call ended it (it was not ended yet). The interview is due again at
    ``next_attempt_at``; for ``answered`` no attempt is due any more, unless one was scheduled
    after this attempt was claimed (the call's report came first and asked for a call back);
    ``unreachable`` ends the interview so. ``only_state`` / ``expired_before``: only from that
    state / only when its lease ran out before then (taking over an attempt whose process died
    or whose outcome never came). The ended attempt's ``lease_until`` is ``report_by`` until its
    events are on the bus (:func:`mark_reported`): a process that dies in between leaves it for
    :func:`unreported_attempts`.
    """
    where = "id = ? AND state != 'ended'"
    params: list[Any] = [outcome, ended_at, json.dumps(detail or {}), report_by, call_sid]
    params.append(attempt["id"])
    if only_state is not None:
        where += " AND state = ?"
        params.append(only_state)
    if expired_before is not None:
        where += " AND lease_until < ?"
        params.append(expired_before)
    try:
        cursor = await store.db.execute(
            "UPDATE dial_attempts SET state = 'ended', outcome = ?, ended_at = ?, detail = ?,"
            " lease_owner = NULL, lease_until = ?, call_sid = COALESCE(call_sid, ?)"
            f" WHERE {where}",
            params,
        )
        if cursor.rowcount != 1:
            await store.db.commit()
            return False
        now = time.time()
        if outcome == "answered":
            await store.db.execute(
                "UPDATE interviews SET next_attempt_at = NULL, updated_at = ?"
                " WHERE id = ? AND next_attempt_at <= ?",
                (now, attempt["interview_id"], attempt["created_at"]),
            )
        else:
            await store.db.execute(
                "UPDATE interviews SET next_attempt_at = ?, updated_at = ? WHERE id = ?",
                (next_attempt_at, now, attempt["interview_id"]),
            )
        if unreachable:
            await store.db.execute(
                "UPDATE interviews SET status = 'unreachable', status_history = CASE WHEN"
                " status = 'unreachable' THEN status_history ELSE json_insert(status_history,"
                " '$[#]', json_object('status', 'unreachable', 'at', ?)) END WHERE id = ?",
                (now, attempt["interview_id"]),
            )
        await store.db.commit()
    except BaseException:
        await store.db.rollback()
        raise
    return True


async def mark_reported(store: Store, attempt_id: str) -> None:
    """The ended attempt's events are on the bus."""
    await store.db.execute(
        "UPDATE dial_attempts SET lease_until = NULL WHERE id = ? AND state = 'ended'",
        (attempt_id,),
    )
    await store.db.commit()


async def unreported_attempts(store: Store, now: float, limit: int = 100) -> list[dict[str, Any]]:
    """Ended attempts whose events a process that died may not have sent (a full scan: rare)."""
    rows = await store._all(
        "SELECT * FROM dial_attempts WHERE state = 'ended' AND lease_until IS NOT NULL"
        " AND lease_until < ? ORDER BY ended_at LIMIT ?",
        (now, limit),
    )
    return [_attempt(row) for row in rows]


async def release_attempt(
    store: Store,
    attempt_id: str,
    *,
    retry_at: float | None,
    owner: str | None = None,
    expired_before: float | None = None,
) -> bool:
    """Forget an attempt that never reached the carrier (not the candidate's); whether it was.

    The interview is due again at ``retry_at`` (None: unchanged). With ``owner`` only while that
    process holds it; with ``expired_before`` only a ``claimed`` one whose lease ran out.
    """
    where = "id = ? AND state IN ('claimed', 'placing')"
    params: list[Any] = [attempt_id]
    if owner is not None:
        where += " AND lease_owner = ?"
        params.append(owner)
    if expired_before is not None:
        where += " AND state = 'claimed' AND lease_until < ?"
        params.append(expired_before)
    try:
        row = await store._one(
            f"DELETE FROM dial_attempts WHERE {where} RETURNING interview_id", params
        )
        if row is not None and retry_at is not None:
            await store.db.execute(
                "UPDATE interviews SET next_attempt_at = ?, updated_at = ? WHERE id = ?",
                (retry_at, time.time(), row["interview_id"]),
            )
        await store.db.commit()
    except BaseException:
        await store.db.rollback()
        raise
    return row is not None


async def get_attempt(store: Store, attempt_id: str) -> dict[str, Any] | None:
    """One attempt row (``detail`` decoded), or None."""
    row = await store._one("SELECT * FROM dial_attempts WHERE id = ?", (attempt_id,))
    return None if row is None else _attempt(row)


async def attempt_of_call(store: Store, call_sid: str) -> dict[str, Any] | None:
    """The attempt that placed this call, or None (a call this server did not place)."""
    row = await store._one("SELECT * FROM dial_attempts WHERE call_sid = ?", (call_sid,))
    return None if row is None else _attempt(row)


def _attempt(row: dict[str, Any]) -> dict[str, Any]:
    try:
        row["detail"] = json.loads(row.get("detail") or "{}")
    except ValueError:
        row["detail"] = {}
    return row


async def open_attempts_of(store: Store, owner: str) -> int:
    """How many attempts this process holds and has not ended (before a call is up)."""
    row = await store._one(
        # state != 'ended' AND lease_until >= 0: the dial_attempts_open index, not a scan
        "SELECT COUNT(*) AS n FROM dial_attempts WHERE state != 'ended' AND lease_until >= 0"
        " AND lease_owner = ? AND state IN ('claimed', 'placing', 'dialing')",
        (owner,),
    )
    return row["n"] if row else 0


async def held_by_others(store: Store, owner: str) -> list[dict[str, Any]]:
    """``claimed``, ``placing`` and ``up`` attempts other processes hold (did they die?).

    ``up``: a dead process's call is settled by the call settler at once; its attempt must not
    stay up (a call up, in the campaign's counts and its ``max_concurrent``) until its lease ends.
    """
    rows = await store._all(
        "SELECT * FROM dial_attempts WHERE state != 'ended' AND lease_until >= 0"
        " AND state IN ('claimed', 'placing', 'up') AND lease_owner IS NOT NULL"
        " AND lease_owner != ?",
        (owner,),
    )
    return [_attempt(row) for row in rows]


async def expired_attempts(store: Store, now: float, limit: int = 100) -> list[dict[str, Any]]:
    """Open attempts whose lease ran out (their process died, or their outcome never came)."""
    rows = await store._all(
        "SELECT * FROM dial_attempts WHERE state != 'ended' AND lease_until < ?"
        " ORDER BY lease_until LIMIT ?",
        (now, limit),
    )
    return [_attempt(row) for row in rows]


async def call_status(store: Store, call_sid: str) -> str | None:
    """The stored status of the call with this sid (its stream started), or None."""
    row = await store._one("SELECT status FROM calls WHERE call_sid = ?", (call_sid,))
    return None if row is None else row["status"]


async def dial_attempts_of(store: Store, interview_id: str) -> list[dict[str, Any]]:
    """An interview's attempts as ``GET /api/interviews/{id}`` shows them, first first."""
    return await store._all(
        "SELECT number, call_sid, placed_at, outcome, ended_at, state, answered_by"
        " FROM dial_attempts WHERE interview_id = ? ORDER BY number",
        (interview_id,),
    )


async def campaign_of(store: Store, campaign_id: str) -> dict[str, Any] | None:
    """A campaign row with its ``policy`` decoded, or None."""
    row = await store._one("SELECT * FROM campaigns WHERE id = ?", (campaign_id,))
    if row is not None:
        row["policy"] = decode_policy(row["policy"])
    return row


async def campaign_counts(store: Store, campaign_id: str) -> dict[str, Any]:
    """A campaign's progress: interviews by status, attempts by outcome, calls being dialed."""
    statuses = await store._all(
        "SELECT status, COUNT(*) AS n FROM interviews WHERE campaign_id = ? GROUP BY status",
        (campaign_id,),
    )
    outcomes = await store._all(
        "SELECT COALESCE(outcome, state) AS outcome, COUNT(*) AS n FROM dial_attempts"
        " WHERE campaign_id = ? GROUP BY COALESCE(outcome, state)",
        (campaign_id,),
    )
    return {
        "interviews": {row["status"]: row["n"] for row in statuses},
        "attempts": {row["outcome"]: row["n"] for row in outcomes},
    }
