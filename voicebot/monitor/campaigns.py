"""The monitor's campaigns view: outbound campaigns' progress, live, with pause and resume.

Who sees what: admins every campaign; a department manager the campaigns of jobs whose script
names their department (the rule of the call lists); anything else is answered as not found.

Counts come from the store (:meth:`voicebot.campaigns.store.CampaignStore.progress`); pause and
resume go through :meth:`~voicebot.campaigns.store.CampaignStore.set_paused` and the audit log as
the REST routes do. Live: the dialer tells :data:`~voicebot.monitor.registry.CAMPAIGNS_CHANNEL`
when a campaign's counts change (a call placed, an attempt settled), and every call that starts
starts or ends goes to the call lists' channel; a watching page gets the visible campaigns again,
at most every :data:`REFRESH_SECS`. Counting a big campaign costs a few queries (about 0.2 s for
100,000 interviews), so counts are shared by every watcher of the process
(:class:`CampaignCounts`): a campaign is counted again only after a change, however many pages
watch it.

Routes:

- ``GET /monitor/api/campaigns``: ``{"campaigns": [...]}``, each with its job, policy summary and
  ``counts`` (scheduled, dialing, in_interview, completed, unreachable, opted_out, other_ended).
- ``POST /monitor/api/campaigns/{id}/pause`` and ``/resume``: need the page's CSRF token
  (``X-CSRF-Token`` header) and this origin; answer the campaign as listed.
- ``GET /monitor/ws/campaigns``: the list, then the list again whenever it changed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
import weakref
from typing import Any

from aiohttp import web

from voicebot.api.carrier import SERVICES_KEY
from voicebot.campaigns.store import CampaignStore, campaign_store
from voicebot.monitor.accounts import MonitorSession
from voicebot.monitor.registry import CALLS_CHANNEL, CAMPAIGNS_CHANNEL, campaign_changed
from voicebot.monitor.web import (
    SESSION_KEY,
    _json_error,
    _open_socket,
    _pump,
    _same_origin,
    can_view,
    require_login,
)
from voicebot.privacy.audit import record_access

REFRESH_SECS = 1.0
"""A campaigns socket sends the list again at most this often."""
HEARD_KEPT = 1024
"""Recent live events remembered, so that each is one change however many sockets hear it."""
LIVE_CALLS_KEPT = 10_000
COUNT_SPACING = 9.0
"""A campaign is counted again at the earliest this many times its last counting time after it
(0.2 s for 100,000 interviews: every 2 s at most while it changes)."""
IN_INTERVIEW = ("in_progress", "scoring")
OTHER_ENDED = ("declined", "knocked_out", "no_response", "incomplete", "failed")
"""Statuses counted as ``other_ended`` unless the campaign will call again (then scheduled)."""


def _buckets(progress: dict[str, Any]) -> dict[str, int]:
    """The view's buckets from a campaign's progress: each interview in one of them.

    ``dialing``: interviews whose attempt is being placed or ringing (an answered one is
    ``in_interview``); ``scheduled``: interviews with a next attempt due, not being dialed;
    ``other_ended``: ended otherwise and not to be called again (declined, knocked out, ...).
    """
    by_status = progress["by_status"]
    in_interview = sum(by_status.get(s, 0) for s in IN_INTERVIEW)
    due = progress["scheduled"]  # an interview being dialed keeps its due time until it ends
    dialing = min(progress["dialing"], due)
    counts = {
        "total": progress["interviews"],
        "scheduled": due - dialing,
        "dialing": dialing,
        "in_interview": in_interview,
        "completed": by_status.get("completed", 0),
        "unreachable": by_status.get("unreachable", 0),
        "opted_out": by_status.get("opted_out", 0),
    }
    accounted = sum(counts[k] for k in ("scheduled", "dialing", "in_interview", "completed"))
    accounted += counts["unreachable"] + counts["opted_out"]
    others = sum(by_status.get(s, 0) for s in OTHER_ENDED)
    counts["other_ended"] = max(0, min(others, counts["total"] - accounted))
    return counts


class CampaignCounts:
    """Campaigns' progress, counted once per change for every watcher of this process.

    The campaigns sockets call :meth:`changed` for each change they hear of; :meth:`progress`
    counts a campaign again only when it changed after its last count began (concurrent askers
    wait for that one count). Changes are heard only while a page watches, so a page that
    (re)connects and ``GET /monitor/api/campaigns`` count afresh.
    """

    def __init__(self, campaigns: CampaignStore) -> None:
        self.campaigns = campaigns
        self._counted: dict[str, tuple[int, dict[str, Any]]] = {}  # id: (generation, progress)
        self._generation: dict[str, int] = {}
        self._every = 0
        self._locks: dict[str, asyncio.Lock] = {}
        self._next_count: dict[str, float] = {}
        self._live_calls: set[str | None] = set()
        self._heard: collections.deque[tuple[Any, ...]] = collections.deque(maxlen=HEARD_KEPT)
        self._heard_keys: set[tuple[Any, ...]] = set()

    def heard(self, event: dict[str, Any]) -> bool:
        """A live event a campaigns socket got; whether it may change campaigns' counts.

        ``campaign.changed`` changes its campaign; a call starting (its first ``call.updated``)
        or ending (``call.ended``, again when its outcome is stored) may change any campaign.
        Every socket of the process hears the same event: it is counted as one change.
        """
        kind, call = event.get("type"), event.get("call") or {}
        if kind == "campaign.changed":
            key: tuple[Any, ...] = (kind, event.get("campaign_id"), event.get("timestamp"))
        elif kind == "call.ended":
            self._live_calls.discard(call.get("call_sid"))
            key = (kind, call.get("call_sid"), call.get("status"), event.get("timestamp"))
        elif kind == "call.updated" and call.get("call_sid") not in self._live_calls:
            if len(self._live_calls) < LIVE_CALLS_KEPT:
                self._live_calls.add(call.get("call_sid"))
            key = (kind, call.get("call_sid"))
        else:
            return False
        if key not in self._heard_keys:
            if len(self._heard) == self._heard.maxlen:
                self._heard_keys.discard(self._heard[0])
            self._heard.append(key)
            self._heard_keys.add(key)
            self.changed(event.get("campaign_id") if kind == "campaign.changed" else None)
        return True

    def changed(self, campaign_id: str | None = None) -> None:
        """A campaign's counts (``None``: any campaign's) may have changed."""
        if campaign_id is None:
            self._every += 1
        else:
            self._generation[campaign_id] = self._generation.get(campaign_id, 0) + 1

    def _current(self, campaign_id: str) -> int:
        return self._generation.get(campaign_id, 0) + self._every

    async def progress(self, campaign_id: str, fresh: bool = False) -> dict[str, Any]:
        """The campaign's :meth:`CampaignStore.progress` as of its last change (or now).

        A campaign counted less than :data:`COUNT_SPACING` times its counting time ago is not
        counted again (its previous counts are returned; :meth:`wait_secs` says how long to wait
        for new ones): the store's connection, which calls share, spends at most about a tenth
        of its time on this view.
        ``fresh``: count now (a page opening, a ``GET``).
        """
        if fresh:
            self.changed(campaign_id)
        counted = self._counted.get(campaign_id)
        if counted is not None and counted[0] == self._current(campaign_id):
            return counted[1]
        async with self._locks.setdefault(campaign_id, asyncio.Lock()):
            counted = self._counted.get(campaign_id)
            generation = self._current(campaign_id)
            spaced = time.monotonic() >= self._next_count.get(campaign_id, 0.0)
            if counted is None or (counted[0] != generation and (fresh or spaced)):
                started = time.monotonic()
                progress = await self.campaigns.progress(campaign_id)
                progress["next_attempts"] = await self.campaigns.next_attempts(campaign_id)
                progress["dialing"] = await self.campaigns.dialing(campaign_id)
                ended = time.monotonic()
                self._next_count[campaign_id] = ended + COUNT_SPACING * (ended - started)
                counted = (generation, progress)
                self._counted[campaign_id] = counted
        return counted[1]

    def wait_secs(self) -> float:
        """How long until every campaign whose counts are behind its changes may be counted."""
        now = time.monotonic()
        waits = [
            at - now
            for campaign_id, at in self._next_count.items()
            if self._counted[campaign_id][0] != self._current(campaign_id)
        ]
        return max([0.0, *waits])


_shared: weakref.WeakKeyDictionary[CampaignStore, CampaignCounts] = weakref.WeakKeyDictionary()


async def campaign_counts(services: Any) -> CampaignCounts:
    """The :class:`CampaignCounts` of this process over ``services.store``."""
    campaigns = await campaign_store(services)
    counts = _shared.get(campaigns)
    if counts is None:
        counts = _shared[campaigns] = CampaignCounts(campaigns)
    return counts


def _department(request: web.Request, job_id: str) -> tuple[str | None, str | None]:
    script = request.app[SERVICES_KEY].scripts.get(job_id)
    return (None, None) if script is None else (script.department, script.title)


async def _listed(
    request: web.Request, campaign: dict[str, Any], fresh: bool = True
) -> dict[str, Any]:
    counts = await campaign_counts(request.app[SERVICES_KEY])
    progress = await counts.progress(campaign["id"], fresh=fresh)
    department, title = _department(request, campaign["job_id"])
    policy = campaign["policy"]
    return {
        "id": campaign["id"],
        "name": campaign["name"],
        "job_id": campaign["job_id"],
        "job_title": title,
        "department": department,
        "paused": campaign["paused"],
        "max_attempts": policy.max_attempts,
        "counts": _buckets(progress),
        "calls_up": progress["calls_up"],
        "attempts": progress["attempts"],
        "next_attempt_at": progress["next_attempt_at"],
        "next_attempts": progress["next_attempts"],
    }


async def visible_campaigns(
    request: web.Request, session: MonitorSession, fresh: bool = True
) -> list[dict[str, Any]]:
    """The campaigns this recruiter may see, newest first, with their counts.

    ``fresh=False``: counts as of the last change the campaigns sockets heard of.
    """
    services = request.app[SERVICES_KEY]
    if services.store is None:
        return []
    campaigns = await campaign_store(services)
    out = []
    for campaign in await campaigns.list_campaigns():
        if can_view(session, _department(request, campaign["job_id"])[0]):
            out.append(await _listed(request, campaign, fresh))
    return out


@require_login
async def campaigns_list(request: web.Request) -> web.Response:
    """Campaigns the recruiter may see, with their progress."""
    return web.json_response({"campaigns": await visible_campaigns(request, request[SESSION_KEY])})


async def _set_paused(request: web.Request, paused: bool) -> web.Response:
    session: MonitorSession = request[SESSION_KEY]
    services = request.app[SERVICES_KEY]
    if request.headers.get("X-CSRF-Token") != session.csrf or not _same_origin(request):
        services.metrics.http_errors.labels("monitor_campaigns", "csrf").inc()
        return _json_error(403, "csrf", "pause and resume from the monitor page (reload it)")
    campaigns = None if services.store is None else await campaign_store(services)
    campaign = None
    if campaigns is not None:
        campaign = await campaigns.get_campaign(request.match_info["campaign_id"])
    if campaign is None or not can_view(session, _department(request, campaign["job_id"])[0]):
        services.metrics.http_errors.labels("monitor_campaigns", "not_found").inc()
        return _json_error(404, "not_found", "no such campaign")
    moved = await campaigns.set_paused(campaign["id"], paused)
    if not paused and services.dialer is not None:
        services.dialer.wake()
    await record_access(
        services,
        f"monitor:{session.username}",
        "campaign.pause" if paused else "campaign.resume",
        detail={"campaign_id": campaign["id"], "rescheduled": moved},
    )
    campaign_changed(services.live, campaign["id"])
    campaign = await campaigns.get_campaign(campaign["id"])
    return web.json_response(await _listed(request, campaign))


@require_login
async def pause(request: web.Request) -> web.Response:
    """Stop dialing a campaign (calls up now go on)."""
    return await _set_paused(request, True)


@require_login
async def resume(request: web.Request) -> web.Response:
    """Dial a paused campaign again."""
    return await _set_paused(request, False)


async def campaigns_socket(request: web.Request) -> web.WebSocketResponse:
    """The visible campaigns, then again whenever a campaign's counts or a call changed."""
    ws, session = await _open_socket(request)
    if session is None:
        return ws
    services = request.app[SERVICES_KEY]
    subscriptions = [
        services.live.subscribe(CAMPAIGNS_CHANNEL),
        services.live.subscribe(CALLS_CHANNEL),
    ]
    counts = await campaign_counts(services)
    changed = asyncio.Event()

    async def refresher() -> None:
        while not ws.closed:
            await changed.wait()
            changed.clear()
            await asyncio.sleep(counts.wait_secs())  # a big campaign counted just now
            listed = await visible_campaigns(request, session, fresh=False)
            await ws.send_json({"type": "campaigns", "campaigns": listed})
            await asyncio.sleep(REFRESH_SECS)  # events meanwhile: one more list after this

    await ws.send_json(
        {"type": "campaigns", "campaigns": await visible_campaigns(request, session)}
    )
    task = asyncio.create_task(refresher())

    async def send(event: dict[str, Any]) -> bool:
        if task.done():  # the socket failed under the refresher
            return False
        if counts.heard(event):
            changed.set()
        return True

    try:
        await _pump(request, ws, subscriptions, send)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await task
    return ws


def add_routes(app: web.Application) -> None:
    """Mount the campaigns view's routes."""
    app.router.add_get("/monitor/api/campaigns", campaigns_list)
    app.router.add_post("/monitor/api/campaigns/{campaign_id}/pause", pause)
    app.router.add_post("/monitor/api/campaigns/{campaign_id}/resume", resume)
    app.router.add_get("/monitor/ws/campaigns", campaigns_socket)
