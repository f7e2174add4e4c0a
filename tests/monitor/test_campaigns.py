"""The monitor's campaigns view: its route, role filtering, pause/resume and its live socket.

A real store, the real monitor routes on a loopback port, real sign-ins (aiohttp client).
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.monitor.test_web import PASSWORD, SCRIPTS
from voicebot.api.carrier import SERVICES_KEY
from voicebot.campaigns import attempts
from voicebot.campaigns.hours import CallingPolicy
from voicebot.campaigns.store import CandidateRow, campaign_store
from voicebot.config import Settings
from voicebot.events.live import LiveFeed
from voicebot.monitor import web as monitor_web
from voicebot.monitor.accounts import LoginThrottle, SqliteAccounts
from voicebot.monitor.campaigns import CampaignCounts
from voicebot.monitor.registry import CallRegistry, campaign_changed
from voicebot.privacy.audit import AuditLog
from voicebot.services import Services
from voicebot.store.database import Store

SERVICE_JOB = "customer_service_en"
SALES_JOB = "sales_representative_en"
ALWAYS = {"calling_hours": {"start": "00:00", "end": "23:59"}}


async def campaign_monitor(tmp_path, accounts) -> tuple[TestServer, Services]:
    """The monitor over a real store with campaigns; an admin and two department managers."""
    services = Services(Settings.from_env({}, data_dir=tmp_path))
    services.scripts = SCRIPTS
    services.live = LiveFeed()
    services.store = Store(tmp_path / "voicebot.sqlite3")
    await services.store.open()
    services.audit = AuditLog(services.store.path, services.metrics)
    await services.audit.open()
    services.registry = CallRegistry(services.live, services.store)
    services.accounts = accounts
    services.login_throttle = LoginThrottle()
    await accounts.open()
    await accounts.add_user("admin1", "admin", None, PASSWORD)
    await accounts.add_user("service-lead", "manager", "customer_service", PASSWORD)
    await accounts.add_user("sales-lead", "manager", "sales", PASSWORD)
    app = web.Application()
    app[SERVICES_KEY] = services
    monitor_web.add_routes(app)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server, services


async def add_campaign(services, job_id: str, name: str, candidates: int) -> dict:
    campaigns = await campaign_store(services)
    campaign = await campaigns.create_campaign(
        client="ats", job_id=job_id, name=name, policy=CallingPolicy.model_validate(ALWAYS)
    )
    rows = [
        (n + 1, CandidateRow(id=f"c{n}", name=f"Cand {n}", phone=f"+1415555{n:04d}"))
        for n in range(candidates)
    ]
    results = await campaigns.add_interviews(campaign, rows)
    campaign["interview_ids"] = [r["id"] for r in results]
    return campaign


async def finish(services, interview_id: str, status: str) -> None:
    """An interview ends with ``status``; no more attempts (as the dialer and sessions leave it)."""
    await attempts.set_next_attempt(services.store, interview_id, None)
    await services.store.update_interview(interview_id, status=status)


@pytest.fixture
async def monitor(tmp_path):
    accounts = SqliteAccounts(tmp_path / "accounts.sqlite3", 3600)
    server, services = await campaign_monitor(tmp_path, accounts)
    yield server, services
    await server.close()
    await accounts.close()
    await services.audit.close()
    await services.store.close()


async def sign_in(http, server, username: str) -> tuple[dict[str, str], str]:
    """The session cookie header and the page's CSRF token."""
    async with http.post(
        server.make_url("/monitor/login"),
        data={"username": username, "password": PASSWORD},
        allow_redirects=False,
    ) as response:
        assert response.status == 303
        cookie = {"Cookie": f"voicebot_monitor={response.cookies['voicebot_monitor'].value}"}
    async with http.get(server.make_url("/monitor"), headers=cookie) as response:
        page = await response.text()
    csrf = page.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
    return cookie, csrf


async def listed(http, server, cookie) -> dict[str, dict]:
    async with http.get(server.make_url("/monitor/api/campaigns"), headers=cookie) as response:
        assert response.status == 200
        return {c["name"]: c for c in (await response.json())["campaigns"]}


async def test_signed_out_gets_401_and_the_socket_closes(monitor):
    server, _ = monitor
    async with aiohttp.ClientSession() as http:
        async with http.get(server.make_url("/monitor/api/campaigns")) as response:
            assert response.status == 401
        async with http.post(server.make_url("/monitor/api/campaigns/x/pause")) as response:
            assert response.status == 401
        ws = await http.ws_connect(server.make_url("/monitor/ws/campaigns"))
        await ws.receive()
        assert ws.close_code == 4401


async def test_admin_sees_all_a_manager_only_their_departments(monitor):
    server, services = monitor
    await add_campaign(services, SERVICE_JOB, "Service spring", 3)
    await add_campaign(services, SALES_JOB, "Sales spring", 2)
    async with aiohttp.ClientSession() as http:
        admin, _ = await sign_in(http, server, "admin1")
        service, _ = await sign_in(http, server, "service-lead")
        sales, _ = await sign_in(http, server, "sales-lead")
        assert set(await listed(http, server, admin)) == {"Service spring", "Sales spring"}
        assert set(await listed(http, server, service)) == {"Service spring"}
        only = await listed(http, server, sales)
    assert set(only) == {"Sales spring"}
    sales_campaign = only["Sales spring"]
    assert sales_campaign["department"] == "sales"
    assert sales_campaign["job_title"] == "Field Sales Representative"
    assert sales_campaign["counts"]["total"] == 2 and sales_campaign["counts"]["scheduled"] == 2
    assert sales_campaign["paused"] is False
    assert [n["interviews"] for n in sales_campaign["next_attempts"]] == [2]  # both due at once
    assert sales_campaign["next_attempts"][0]["at"] == sales_campaign["next_attempt_at"]


async def test_counts_follow_interview_statuses(monitor):
    server, services = monitor
    campaign = await add_campaign(services, SERVICE_JOB, "Service spring", 7)
    ids = campaign["interview_ids"]
    now = time.time() + 1
    assert await attempts.claim_attempt(
        services.store, ids[6], owner="test", lease_until=now + 60, now=now
    )  # the dialer is placing a call to the seventh
    await services.store.update_interview(ids[0], status="in_progress")
    await finish(services, ids[1], "completed")
    await finish(services, ids[2], "unreachable")
    await finish(services, ids[3], "opted_out")
    await finish(services, ids[4], "declined")
    async with aiohttp.ClientSession() as http:
        admin, _ = await sign_in(http, server, "admin1")
        shown = (await listed(http, server, admin))["Service spring"]
    counts = shown["counts"]
    assert counts["total"] == 7
    assert counts["dialing"] == 1
    assert counts["in_interview"] == 1
    assert counts["completed"] == 1
    assert counts["unreachable"] == 1
    assert counts["opted_out"] == 1
    assert counts["other_ended"] == 1
    assert counts["scheduled"] == 1  # the one still pending
    assert [n["interviews"] for n in shown["next_attempts"]] == [1]


async def test_pause_and_resume_need_csrf_are_audited_and_hidden_from_other_departments(monitor):
    server, services = monitor
    campaign = await add_campaign(services, SERVICE_JOB, "Service spring", 1)
    pause = server.make_url(f"/monitor/api/campaigns/{campaign['id']}/pause")
    resume = server.make_url(f"/monitor/api/campaigns/{campaign['id']}/resume")
    async with aiohttp.ClientSession() as http:
        sales, sales_csrf = await sign_in(http, server, "sales-lead")
        async with http.post(pause, headers={**sales, "X-CSRF-Token": sales_csrf}) as response:
            assert response.status == 404  # another department's: as if it did not exist
        service, csrf = await sign_in(http, server, "service-lead")
        async with http.post(pause, headers=service) as response:
            assert response.status == 403 and (await response.json())["error"]["code"] == "csrf"
        cross_site = {**service, "X-CSRF-Token": csrf, "Origin": "https://evil.example"}
        async with http.post(pause, headers=cross_site) as response:
            assert response.status == 403
        assert (await listed(http, server, service))["Service spring"]["paused"] is False
        async with http.post(pause, headers={**service, "X-CSRF-Token": csrf}) as response:
            assert response.status == 200
            assert (await response.json())["paused"] is True
        assert (await listed(http, server, service))["Service spring"]["paused"] is True
        async with http.post(resume, headers={**service, "X-CSRF-Token": csrf}) as response:
            assert response.status == 200 and (await response.json())["paused"] is False
    entries = await services.audit.entries(after=0, limit=100)
    actions = [(e["actor"], e["action"]) for e in entries]
    assert ("monitor:service-lead", "campaign.pause") in actions
    assert ("monitor:service-lead", "campaign.resume") in actions
    assert not any(actor == "monitor:sales-lead" for actor, _ in actions)


async def test_the_socket_sends_the_list_again_when_a_campaign_changes(monitor):
    server, services = monitor
    campaign = await add_campaign(services, SERVICE_JOB, "Service spring", 2)
    await add_campaign(services, SALES_JOB, "Sales spring", 1)
    async with aiohttp.ClientSession() as http:
        service, _ = await sign_in(http, server, "service-lead")
        ws = await http.ws_connect(
            server.make_url("/monitor/ws/campaigns"),
            headers={**service, "Origin": str(server.make_url("")).rstrip("/")},
        )
        first = await ws.receive_json(timeout=10)
        assert first["type"] == "campaigns"
        assert [c["name"] for c in first["campaigns"]] == ["Service spring"]
        assert first["campaigns"][0]["counts"]["completed"] == 0
        await finish(services, campaign["interview_ids"][0], "completed")
        campaign_changed(services.live, campaign["id"])
        again = await ws.receive_json(timeout=10)
        assert [c["name"] for c in again["campaigns"]] == ["Service spring"]
        assert again["campaigns"][0]["counts"]["completed"] == 1
        # A call ending (the call lists' channel) also refreshes the view.
        await finish(services, campaign["interview_ids"][1], "completed")
        services.registry.ended({"call_sid": "CA" + "1" * 32, "interview_id": "x"})
        third = await ws.receive_json(timeout=10)
        assert third["campaigns"][0]["counts"]["completed"] == 2
        await ws.close()
    await asyncio.sleep(0)


async def test_many_watchers_share_one_count_per_change(monitor):
    server, services = monitor
    campaign = await add_campaign(services, SERVICE_JOB, "Service spring", 2)
    campaigns = await campaign_store(services)
    counted: list[str] = []
    real_progress = campaigns.progress

    async def progress(campaign_id, now=None):
        counted.append(campaign_id)
        return await real_progress(campaign_id, now)

    campaigns.progress = progress
    try:
        async with aiohttp.ClientSession() as http:
            admin, _ = await sign_in(http, server, "admin1")
            origin = {**admin, "Origin": str(server.make_url("")).rstrip("/")}
            sockets = [
                await http.ws_connect(server.make_url("/monitor/ws/campaigns"), headers=origin)
                for _ in range(3)
            ]
            for ws in sockets:
                assert (await ws.receive_json(timeout=10))["campaigns"][0]["counts"][
                    "completed"
                ] == 0
            counted.clear()
            await finish(services, campaign["interview_ids"][0], "completed")
            campaign_changed(services.live, campaign["id"])
            for ws in sockets:
                listed = (await ws.receive_json(timeout=10))["campaigns"]
                assert listed[0]["counts"]["completed"] == 1
            assert counted == [campaign["id"]]  # one count for three pages
            for ws in sockets:
                await ws.close()
    finally:
        del campaigns.progress


class SlowCampaigns:
    """A campaign store whose counting takes 50 ms (a big campaign), counting how often."""

    def __init__(self) -> None:
        self.counts = 0

    async def progress(self, campaign_id: str) -> dict:
        self.counts += 1
        await asyncio.sleep(0.05)
        return {"n": self.counts}

    async def next_attempts(self, campaign_id: str) -> list:
        return []

    async def dialing(self, campaign_id: str) -> int:
        return 0


async def test_a_big_campaign_is_not_counted_again_right_after_a_count():
    slow = SlowCampaigns()
    counts = CampaignCounts(slow)
    assert (await counts.progress("cmp", fresh=True))["n"] == 1
    assert counts.wait_secs() == 0  # nothing changed since
    counts.changed("cmp")
    assert (await counts.progress("cmp"))["n"] == 1  # too soon: the last counts
    wait = counts.wait_secs()
    assert wait > 0
    await asyncio.sleep(wait)
    assert (await counts.progress("cmp"))["n"] == 2
    assert (await counts.progress("cmp"))["n"] == 2  # no change since: no count
    counts.changed()  # any campaign may have changed (a call ended)
    assert (await counts.progress("cmp", fresh=True))["n"] == 3  # a page asking now: counted
