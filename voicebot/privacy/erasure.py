"""Erasing a candidate (PIPL art. 19/47, GDPR art. 17): ``DELETE /api/candidates/{id}``.

Everything the voice bot holds about the candidate goes: their interviews (name, phone, time
zone, consent, status history, report), the interviews' calls and turns (transcripts, answers,
prosody, evidence quotes), the recordings directory of each call (``call.wav``,
``timeline.jsonl``), every event about those interviews or calls in the event log, the outbox,
the Redis stream and the HR bridge's store, and the monitor's lists of recent calls. Deleted
database rows are overwritten and the write-ahead logs truncated (no copy left in free pages).

What stays is an anonymous tombstone per API client (the candidate's reference, a SHA-256 of
client and candidate id; when; by whom; which data classes; the erased interview ids and call
sids), an audit entry, and the ``candidate.erased`` event that tells the HR system (a bridge in
another process deletes what its own store holds when it takes that event). A number the
candidate had on the do-not-call list stays listed by its keyed hash; the number itself goes
(:meth:`voicebot.campaigns.optouts.DoNotCallList.forget_numbers`). Their dial attempts go with
their interviews.

Rules: a client erases only its own candidates (the admin token: the candidate id in every
client); a candidate on a live call, or whose report is being built, is refused (409: try again
when the call ended) rather than cut off; erasing again answers with the tombstones
(``already_erased``) after removing again any copy a failed first attempt left (the first answered
503 then), an id never seen answers 404.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voicebot.crypto import Keyring, unseal
from voicebot.events.outbox import EVENTS
from voicebot.events.types import format_timestamp
from voicebot.privacy.audit import candidate_ref
from voicebot.privacy.event_stores import erase_events
from voicebot.privacy.retention import remove_recording

log = logging.getLogger(__name__)

ERASED_CLASSES = ["personal_fields", "recordings", "transcripts", "reports", "events"]
"""What an erasure removes (the tombstone and the event list them)."""
BUSY_STATUSES = frozenset({"in_progress", "scoring"})
"""Interview statuses during which an erasure is refused: a call is on, a report is being built."""
REDIS_SCAN_BATCH = 500
ERASED_EVENT = "candidate.erased"
"""Kept when the copies are erased again: it is the notice, holding ids only."""


class CandidateBusy(Exception):
    """The candidate is on a call now, or their report is being built: try again after."""


class ErasureIncomplete(Exception):
    """The store is erased but a copy elsewhere (files, event stores) is not yet: DELETE again."""


@dataclass
class Erasure:
    """What :func:`erase_candidate` did."""

    candidate_id: str
    tombstones: list[dict[str, Any]]
    already_erased: bool

    def body(self) -> dict[str, Any]:
        """The API's answer."""
        return {
            "candidate_id": self.candidate_id,
            "status": "already_erased" if self.already_erased else "erased",
            "erasures": self.tombstones,
        }


def _known_clients(services: Any) -> list[str]:
    from voicebot.config import ADMIN_CLIENT

    return [ADMIN_CLIENT, *services.settings.api_client_tokens()]


async def erase_candidate(
    services: Any, candidate_id: str, client: str, actor: str
) -> Erasure | None:
    """Erase a candidate's data (see the module docstring); None if the id was never seen.

    ``client`` is the requesting API client (``admin``: every client's candidate of that id).
    Raises :class:`CandidateBusy` while the candidate is on a call or being scored.
    """
    lock = vars(services).setdefault("_erasure_lock", asyncio.Lock())
    async with lock:  # two requests for one candidate: the second finds the tombstone
        return await _erase(services, candidate_id, client, actor)


async def _erase(services: Any, candidate_id: str, client: str, actor: str) -> Erasure | None:
    from voicebot.config import ADMIN_CLIENT

    store = services.store
    scope = None if client == ADMIN_CLIENT else client
    interviews = await store.candidate_interviews(candidate_id, scope)
    if not interviews:
        clients = _known_clients(services) if scope is None else [scope]
        stones = await store.tombstones([candidate_ref(c, candidate_id) for c in clients])
        if not stones:
            return None
        # Again: finish what a failed first attempt may have left (idempotent).
        await _erase_copies(
            services,
            [i for stone in stones for i in stone["interview_ids"]],
            [sid for stone in stones for sid in stone["call_sids"]],
        )
        return Erasure(candidate_id, stones, already_erased=True)
    interview_ids = [row["id"] for row in interviews]
    busy = [row["id"] for row in interviews if row["status"] in BUSY_STATUSES]
    live = await store.calls_in_progress(interview_ids)
    on_call_here = [
        sid
        for sid, session in services.sessions.items()
        if (getattr(session, "interview", None) or {}).get("id") in interview_ids
    ]
    if busy or live or on_call_here:
        raise CandidateBusy(
            "the candidate is on a call now or their report is being built: nothing was erased;"
            " try again when the call has ended (a minute after it)"
        )
    full = {row["id"]: await store.get_interview(row["id"]) for row in interviews}
    erased_at = time.time()
    by_client: dict[str, list[str]] = {}
    for row in interviews:
        by_client.setdefault(row["client"], []).append(row["id"])
    sids_of = {
        interview_id: [c["call_sid"] for c in await store.calls_for_interview(interview_id)]
        for interview_id in interview_ids
    }
    tombstones = [
        {
            "candidate": candidate_ref(owner, candidate_id),
            "client": owner,
            "erased_at": erased_at,
            "erased_by": actor,
            "classes": ERASED_CLASSES,
            "interview_ids": ids,
            "calls": sum(len(sids_of[i]) for i in ids),
            "call_sids": [sid for i in ids for sid in sids_of[i]],
        }
        for owner, ids in by_client.items()
    ]
    phones = [row["candidate_phone"] for row in full.values() if row and row["candidate_phone"]]
    calls = await store.erase_interviews(interview_ids, tombstones)
    if phones:  # a listed number stays on the do-not-call list, by its hash only
        from voicebot.campaigns.store import campaign_store

        await (await campaign_store(services)).do_not_call.forget_numbers(phones)
    for stone in tombstones:
        if services.events is not None:
            services.events.emit(
                "candidate.erased",
                candidate_id=candidate_id,
                client=stone["client"],
                interviews=[
                    {
                        "interview_id": i,
                        "job_id": full[i]["job_id"],
                        "external_key": full[i]["external_key"],
                    }
                    for i in stone["interview_ids"]
                    if full.get(i) is not None
                ],
                classes=ERASED_CLASSES,
                erased_at=format_timestamp(int(erased_at * 1000)),
                erased_by=actor,
            )
        if services.audit is not None:
            await services.audit.record(
                actor,
                "candidate.erase",
                candidate=stone["candidate"],
                detail={
                    "client": stone["client"],
                    "interview_ids": stone["interview_ids"],
                    "call_sids": stone["call_sids"],
                    "classes": ERASED_CLASSES,
                },
            )
    services.metrics.erasures.inc()
    removed = await _erase_copies(
        services, interview_ids, [call["call_sid"] for call in calls], calls
    )
    log.info(
        "erased a candidate: %d interviews, %d calls, %d events (by %s)",
        len(interview_ids),
        len(calls),
        removed,
        actor,
    )
    return Erasure(candidate_id, tombstones, already_erased=False)


async def _erase_copies(
    services: Any,
    interview_ids: list[str],
    call_sids: list[str],
    calls: list[dict[str, Any]] | None = None,
) -> int:
    """Remove the copies outside the store: recordings, stored events, the monitor's lists.

    Idempotent; the number of events removed. Raises :class:`ErasureIncomplete` if a copy could
    not be reached (the store's rows are erased already: the next DELETE finishes the job).
    """
    root = Path(services.settings.recordings_dir)
    folders = {sid: "" for sid in call_sids}
    folders.update({c["call_sid"]: c.get("recording_dir") or "" for c in calls or ()})
    try:
        for sid, folder in folders.items():
            await asyncio.to_thread(remove_recording, folder, root, sid)
        if services.events is not None:  # events of these interviews still queued reach the bus
            await services.events.flush()
        keyring = getattr(services, "keyring", None)
        removed = await asyncio.to_thread(
            erase_events, Path(services.settings.data_dir), interview_ids, call_sids, keyring
        )
        removed += await _erase_redis_stream(services.bus, interview_ids, call_sids, keyring)
        await _forget_in_registry(services.registry, interview_ids, call_sids)
    except Exception as exc:
        services.metrics.internal_errors.labels("erasure").inc()
        log.exception("erasure: copies outside the store could not all be removed")
        raise ErasureIncomplete(
            "the candidate's records are erased from the store, but copies (recordings or stored"
            f" events) could not all be removed ({type(exc).__name__}): repeat the DELETE to"
            " finish"
        ) from exc
    return removed


async def _erase_redis_stream(
    bus: Any, interview_ids: list[str], call_sids: list[str], keyring: Keyring | None = None
) -> int:
    """Delete the events about these interviews or calls from the Redis stream (``XDEL``).

    Entries stored encrypted (``VOICEBOT_DATA_KEY``) are decrypted to be matched; one that does
    not decrypt fails the erasure (a repeat, with the key, finishes it).
    """
    redis = getattr(bus, "_redis", None)
    stream = getattr(bus, "stream", None)
    if redis is None or stream is None:
        return 0
    ids, sids = set(interview_ids), set(call_sids)
    doomed: list[str] = []
    start = "-"
    while True:  # a Redis failure raises: the erasure is incomplete, a repeat finishes it
        entries = await redis.xrange(stream, min=start, max="+", count=REDIS_SCAN_BATCH)
        for entry_id, fields in entries:
            stored = unseal(keyring, fields.get("event", "{}"), EVENTS + fields.get("id", ""))
            try:
                event = json.loads(stored)
            except ValueError:
                continue
            data = event.get("data") or {}
            if event.get("type") == ERASED_EVENT or not isinstance(data, dict):
                continue
            if data.get("interview_id") in ids or data.get("call_sid") in sids:
                doomed.append(entry_id)
        if len(entries) < REDIS_SCAN_BATCH:
            break
        start = "(" + entries[-1][0]
    if doomed:
        await redis.xdel(stream, *doomed)
    return len(doomed)


async def _forget_in_registry(
    registry: Any, interview_ids: list[str], call_sids: list[str]
) -> None:
    """Drop the erased calls from the monitor's lists of recent calls (names are shown there).

    The process's in-memory list, and with Redis the shared one (``LREM`` of each entry).
    """
    if registry is None:
        return
    ids, sids = set(interview_ids), set(call_sids)

    def erased(call: dict[str, Any]) -> bool:
        return call.get("interview_id") in ids or call.get("call_sid") in sids

    recent = getattr(registry, "_recent", None)
    if recent is not None:
        kept = [call for call in recent if not erased(call)]
        recent.clear()
        recent.extend(kept)
    redis = getattr(registry, "_redis", None)
    recent_key = getattr(registry, "recent_key", None)
    if redis is None or recent_key is None:
        return
    try:
        for text in await redis.lrange(recent_key, 0, -1):
            try:
                call = json.loads(text)
            except ValueError:
                continue
            if isinstance(call, dict) and erased(call):
                await redis.lrem(recent_key, 0, text)
        for sid in sids:
            await redis.delete(registry.status_prefix + sid, registry.lines_prefix + sid)
    except Exception:  # best effort: entries there also age out (RECENT_KEEP)
        log.exception("erasure: the monitor's shared list in Redis could not be cleaned")
