"""Campaigns in the store: a job and a calling policy, the interviews it dials, their counts.

Over the interview store's connection (tables of migration 7), so ``database.py`` does not grow.

The contract with the dialer: **an interview is due for a call when its ``campaign_id`` is set,
``next_attempt_at <= now``, its status is callable (``CALLABLE_STATUSES``) and its campaign is not
paused.** This module sets ``next_attempt_at`` (moved into the candidate's next calling window,
:mod:`voicebot.campaigns.hours`) when an interview joins a campaign and when a campaign resumes;
it clears it when the candidate calls back and is interviewed (:meth:`CampaignStore.
cancel_scheduled_attempts`). The dialer sets it after each failed attempt with
:func:`voicebot.campaigns.hours.next_attempt_at`, and asks :meth:`DoNotCallList.is_opted_out`
(``campaign_store(services).do_not_call``) before it places a call.
"""

from __future__ import annotations

import asyncio
import json
import time
import weakref
from dataclasses import dataclass
from typing import Any

from voicebot.campaigns.hours import CallingPolicy, NoCallingWindow, next_window_start
from voicebot.campaigns.optouts import DoNotCallList, phone_keys
from voicebot.crypto import seal
from voicebot.store.database import CALLABLE_STATUSES, PHONE_INDEX, Store, new_id

SCHEDULED_STATUSES = ("pending", "no_response", "incomplete", "failed")
"""Statuses of an interview a campaign will still call (callable, no call on now)."""


@dataclass
class CandidateRow:
    """One candidate joining a campaign (validated: E.164 phone, IANA zone or empty)."""

    id: str
    name: str = ""
    phone: str = ""
    timezone: str = ""
    external_key: str | None = None


class CampaignStore:
    """Campaigns, their interviews and the do-not-call list, over one :class:`Store`."""

    def __init__(self, store: Store, do_not_call: DoNotCallList):
        self.store = store
        self.do_not_call = do_not_call

    @property
    def db(self):
        """The store's connection."""
        return self.store.db

    # -- campaigns -----------------------------------------------------------------------

    async def create_campaign(
        self, *, client: str, job_id: str, name: str, policy: CallingPolicy, paused: bool = False
    ) -> dict[str, Any]:
        """Store a new campaign; returns its row (``policy`` decoded)."""
        now = time.time()
        campaign_id = new_id("cmp")
        await self.db.execute(
            "INSERT INTO campaigns (id, client, job_id, name, policy, paused, created_at,"
            " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (campaign_id, client, job_id, name, policy.model_dump_json(), int(paused), now, now),
        )
        await self.db.commit()
        campaign = await self.get_campaign(campaign_id)
        assert campaign is not None
        return campaign

    async def get_campaign(self, campaign_id: str) -> dict[str, Any] | None:
        """One campaign row (``policy`` as a :class:`CallingPolicy`), or None."""
        row = await self.store._one("SELECT * FROM campaigns WHERE id = ?", (campaign_id,))
        return None if row is None else _campaign(row)

    async def list_campaigns(self, client: str | None = None) -> list[dict[str, Any]]:
        """Campaigns, newest first: of one client, or all (``None``)."""
        if client is None:
            rows = await self.store._all("SELECT * FROM campaigns ORDER BY created_at DESC")
        else:
            rows = await self.store._all(
                "SELECT * FROM campaigns WHERE client = ? ORDER BY created_at DESC", (client,)
            )
        return [_campaign(row) for row in rows]

    async def set_paused(self, campaign_id: str, paused: bool, now: float | None = None) -> int:
        """Pause or resume a campaign; on resume, overdue attempts move into the next window.

        An interview whose next attempt fell due while the campaign was paused gets the start
        of its candidate's next calling window from ``now`` (not a burst of stale calls).
        Returns how many interviews were rescheduled.
        """
        now = time.time() if now is None else now
        campaign = await self.get_campaign(campaign_id)
        if campaign is None:
            raise KeyError(campaign_id)
        moved: list[tuple[float, float, str]] = []
        if not paused:
            policy: CallingPolicy = campaign["policy"]
            rows = await self.store._all(
                "SELECT id, candidate_timezone FROM interviews WHERE campaign_id = ?"
                " AND next_attempt_at IS NOT NULL AND next_attempt_at < ?",
                (campaign_id, now),
            )
            moved = await asyncio.to_thread(_rescheduled, policy, rows, now)  # many rows: a thread
        try:
            await self.db.execute(
                "UPDATE campaigns SET paused = ?, updated_at = ? WHERE id = ?",
                (int(paused), now, campaign_id),
            )
            await self.db.executemany(
                "UPDATE interviews SET next_attempt_at = ?, updated_at = ? WHERE id = ?", moved
            )
            await self.db.commit()
        except BaseException:
            await self.db.rollback()
            raise
        return len(moved)

    # -- interviews of a campaign --------------------------------------------------------

    async def add_interviews(
        self,
        campaign: dict[str, Any],
        rows: list[tuple[int, CandidateRow]],
        now: float | None = None,
    ) -> list[dict[str, Any]]:
        """Queue candidates (``(row number, candidate)``) in a campaign, in one transaction.

        Per row: ``queued`` (a new interview, ``id`` and ``next_attempt_at``), ``exists`` (the
        client's ``external_key`` names an interview already: it is left as it is),
        or ``refused`` with ``code`` ``do_not_call`` (the number is on the do-not-call list) or
        ``no_window`` (the calling hours never open). Rows are validated by the caller.
        """
        now = time.time() if now is None else now
        client = campaign["client"]
        listed = await self.do_not_call.listed([c.phone for _, c in rows])
        keys = [c.external_key for _, c in rows if c.external_key]
        existing: dict[str, str] = {}
        if keys:
            for row in await self.store._all(
                "SELECT external_key, id FROM interviews WHERE client = ? AND external_key IN"
                " (SELECT value FROM json_each(?))",
                (client, json.dumps(keys)),
            ):
                existing[row["external_key"]] = row["id"]
        # Sealing, hashing and zone arithmetic for thousands of rows: a thread, not the loop.
        results, inserts = await asyncio.to_thread(
            _plan_rows, campaign, rows, listed, existing, self.store.keyring, now
        )
        try:
            await self.db.executemany(
                "INSERT INTO interviews (id, job_id, candidate_id, candidate_name,"
                " candidate_phone, candidate_timezone, external_key, created_at, updated_at,"
                " status_history, client, phone_index, campaign_id, next_attempt_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (client, external_key) DO NOTHING",
                inserts,
            )
            await self.db.commit()
        except BaseException:
            await self.db.rollback()
            raise
        keyed = {r["key"]: r for r in results if r.get("key") and r["status"] == "queued"}
        if keyed:  # a key another request used meanwhile: that interview stands, not ours
            for row in await self.store._all(  # only the keys whose interview is not ours
                "SELECT external_key, id FROM interviews WHERE client = ?"
                " AND external_key IN (SELECT value FROM json_each(?))"
                " AND id NOT IN (SELECT value FROM json_each(?))",
                (client, json.dumps(list(keyed)), json.dumps([r["id"] for r in keyed.values()])),
            ):
                keyed[row["external_key"]].update(status="exists", id=row["id"])
                keyed[row["external_key"]].pop("due", None)
        for result in results:
            result.pop("key", None)
            if "due" in result:
                result["next_attempt_at"] = result.pop("due")
        return results

    async def join_campaign(
        self, interview_id: str, campaign: dict[str, Any], timezone: str, now: float | None = None
    ) -> float:
        """An interview created alone joins ``campaign``; returns its first attempt's time."""
        now = time.time() if now is None else now
        due = next_window_start(campaign["policy"], timezone, now)
        await self.db.execute(
            "UPDATE interviews SET campaign_id = ?, next_attempt_at = ?, updated_at = ?"
            " WHERE id = ?",
            (campaign["id"], due, now, interview_id),
        )
        await self.db.commit()
        return due

    async def cancel_scheduled_attempts(self, interview_id: str) -> bool:
        """The candidate is being interviewed another way (they called back): no more dialing."""
        cursor = await self.db.execute(
            "UPDATE interviews SET next_attempt_at = NULL, updated_at = ?"
            " WHERE id = ? AND next_attempt_at IS NOT NULL",
            (time.time(), interview_id),
        )
        await self.db.commit()
        return cursor.rowcount == 1

    async def campaign_of_interview(self, interview_id: str) -> dict[str, Any]:
        """An interview's ``campaign_id``, ``next_attempt_at`` and ``dial_attempts``."""
        row = await self.store._one(
            "SELECT campaign_id, next_attempt_at FROM interviews WHERE id = ?", (interview_id,)
        )
        attempts = await self.store._all(
            "SELECT number, call_sid, placed_at, outcome, ended_at FROM dial_attempts"
            " WHERE interview_id = ? ORDER BY number",
            (interview_id,),
        )
        return {
            "campaign_id": None if row is None else row["campaign_id"],
            "next_attempt_at": None if row is None else row["next_attempt_at"],
            "dial_attempts": attempts,
        }

    async def progress(self, campaign_id: str, now: float | None = None) -> dict[str, Any]:
        """Counts of a campaign: interviews by status, attempts by outcome, calls up, next due."""
        now = time.time() if now is None else now
        by_status = {
            row["status"]: row["n"]
            for row in await self.store._all(
                "SELECT status, COUNT(*) AS n FROM interviews WHERE campaign_id = ?"
                " GROUP BY status",
                (campaign_id,),
            )
        }
        by_outcome = {
            row["outcome"]: row["n"]
            for row in await self.store._all(
                "SELECT outcome, COUNT(*) AS n FROM dial_attempts WHERE campaign_id = ?"
                " AND state = 'ended' AND outcome IS NOT NULL GROUP BY outcome",
                (campaign_id,),
            )
        }
        open_attempts = await self.store._one(
            "SELECT COUNT(*) AS n FROM dial_attempts WHERE campaign_id = ? AND state != 'ended'",
            (campaign_id,),
        )
        marks = ", ".join("?" * len(SCHEDULED_STATUSES))
        scheduled = await self.store._one(
            "SELECT COUNT(*) AS n, MIN(next_attempt_at) AS next FROM interviews"
            f" WHERE campaign_id = ? AND next_attempt_at IS NOT NULL AND status IN ({marks})",
            (campaign_id, *SCHEDULED_STATUSES),
        )
        assert open_attempts is not None and scheduled is not None
        return {
            "interviews": sum(by_status.values()),
            "by_status": by_status,
            "attempts_by_outcome": by_outcome,
            "attempts": sum(by_outcome.values()),
            "calls_up": open_attempts["n"],
            "scheduled": scheduled["n"],
            "next_attempt_at": scheduled["next"],
        }

    async def dialing(self, campaign_id: str) -> int:
        """Attempts of a campaign being placed or ringing (not yet answered, not ended)."""
        row = await self.store._one(
            "SELECT COUNT(*) AS n FROM dial_attempts WHERE campaign_id = ?"
            " AND state IN ('claimed', 'placing', 'dialing')",
            (campaign_id,),
        )
        return 0 if row is None else row["n"]

    async def next_attempts(self, campaign_id: str, limit: int = 3) -> list[dict[str, Any]]:
        """The next ``limit`` times attempts are due, each with how many interviews are due then.

        Interviews being dialed now are not among them.
        """
        marks = ", ".join("?" * len(SCHEDULED_STATUSES))
        return await self.store._all(
            "SELECT next_attempt_at AS at, COUNT(*) AS interviews FROM interviews"
            f" WHERE campaign_id = ? AND next_attempt_at IS NOT NULL AND status IN ({marks})"
            " AND NOT EXISTS (SELECT 1 FROM dial_attempts d WHERE d.interview_id = interviews.id"
            " AND d.state != 'ended')"
            " GROUP BY next_attempt_at ORDER BY next_attempt_at LIMIT ?",
            (campaign_id, *SCHEDULED_STATUSES, limit),
        )


def _rescheduled(
    policy: CallingPolicy, rows: list[dict[str, Any]], now: float
) -> list[tuple[float, float, str]]:
    """``(next attempt, now, id)`` of each overdue interview: its next window from ``now``."""
    moved = []
    for row in rows:
        try:
            due = next_window_start(policy, row["candidate_timezone"], now)
        except NoCallingWindow:
            continue
        moved.append((due, now, row["id"]))
    return moved


def _plan_rows(
    campaign: dict[str, Any],
    rows: list[tuple[int, CandidateRow]],
    listed: set[str],
    existing: dict[str, str],
    keyring: Any,
    now: float,
) -> tuple[list[dict[str, Any]], list[tuple[Any, ...]]]:
    """Each row's result and the interview rows to insert (blocking: run in a thread)."""
    client, policy = campaign["client"], campaign["policy"]
    results: list[dict[str, Any]] = []
    inserts: list[tuple[Any, ...]] = []
    history = json.dumps([{"status": "pending", "at": now}])
    for number, candidate in rows:
        if candidate.external_key and candidate.external_key in existing:
            results.append(
                {"row": number, "status": "exists", "id": existing[candidate.external_key]}
            )
            continue
        if candidate.phone in listed:
            results.append(
                {
                    "row": number,
                    "status": "refused",
                    "code": "do_not_call",
                    "error": "the phone number is on the do-not-call list: not queued",
                }
            )
            continue
        try:
            due = next_window_start(policy, candidate.timezone, now)
        except NoCallingWindow as exc:
            results.append(
                {"row": number, "status": "refused", "code": "no_window", "error": str(exc)}
            )
            continue
        interview_id = new_id("iv")
        if candidate.external_key:
            existing[candidate.external_key] = interview_id  # a repeat later in the batch
        inserts.append(
            (
                interview_id,
                campaign["job_id"],
                candidate.id,
                seal(keyring, candidate.name, f"interviews/candidate_name/{interview_id}"),
                seal(keyring, candidate.phone, f"interviews/candidate_phone/{interview_id}"),
                candidate.timezone,
                candidate.external_key,
                now,
                now,
                history,
                client,
                keyring.blind_index(candidate.phone, PHONE_INDEX)
                if keyring is not None and candidate.phone
                else None,
                campaign["id"],
                due,
            )
        )
        results.append(
            {
                "row": number,
                "status": "queued",
                "id": interview_id,
                "due": due,
                "key": candidate.external_key,
            }
        )
    return results, inserts


def _campaign(row: dict[str, Any]) -> dict[str, Any]:
    row["policy"] = CallingPolicy.model_validate_json(row["policy"] or "{}")
    row["paused"] = bool(row["paused"])
    return row


assert set(SCHEDULED_STATUSES) <= CALLABLE_STATUSES

_stores: weakref.WeakKeyDictionary[Store, CampaignStore] = weakref.WeakKeyDictionary()
_opening: weakref.WeakKeyDictionary[Store, asyncio.Lock] = weakref.WeakKeyDictionary()


async def campaign_store(services: Any) -> CampaignStore:
    """The :class:`CampaignStore` over ``services.store`` (built once per store)."""
    store: Store = services.store
    found = _stores.get(store)
    if found is not None:
        return found
    lock = _opening.setdefault(store, asyncio.Lock())
    async with lock:
        found = _stores.get(store)
        if found is None:
            secret = services.settings.stream_token_secret
            # The key file lives with the database: every process on this store shares it.
            keys = await asyncio.to_thread(phone_keys, secret, store.keyring, store.path.parent)
            found = _stores[store] = CampaignStore(store, DoNotCallList(store, keys))
    return found
