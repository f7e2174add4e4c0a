"""The monitor's routes over real sockets: sign-in, cookies, CSRF, who sees which call, outages.

The app is the real aiohttp app's monitor routes with real accounts (SQLite, or a real Redis),
the real call registry and live feed; calls are put in the registry as a session would. The
whole page in a browser against real calls is tests/e2e/test_monitor_browser.py.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from voicebot.api.carrier import SERVICES_KEY
from voicebot.config import PROJECT_ROOT, Settings
from voicebot.dialogue.script import load_scripts
from voicebot.events.live import LiveFeed
from voicebot.monitor import web as monitor_web
from voicebot.monitor.accounts import LoginThrottle, RedisAccounts, SqliteAccounts
from voicebot.monitor.registry import CallRegistry
from voicebot.services import Services

PASSWORD = "correct horse battery staple"
SCRIPTS = load_scripts(PROJECT_ROOT / "dialogues")


def live_call(call_sid: str, job_id: str) -> dict:
    return {
        "call_sid": call_sid,
        "job_id": job_id,
        "candidate_name": "Ann Lee",
        "started_at": time.time(),
        "state": "question",
        "question_index": 0,
        "question_count": 5,
    }


async def monitor_server(tmp_path, accounts) -> tuple[TestServer, Services]:
    settings = Settings.from_env({}, data_dir=tmp_path)
    services = Services(settings)
    services.scripts = SCRIPTS
    services.live = LiveFeed()
    services.registry = CallRegistry(services.live)
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


@pytest.fixture
async def monitor(tmp_path):
    accounts = SqliteAccounts(tmp_path / "accounts.sqlite3", 3600)
    server, services = await monitor_server(tmp_path, accounts)
    yield server, services
    await server.close()
    await accounts.close()


async def sign_in(http, server, username: str) -> dict[str, str]:
    async with http.post(
        server.make_url("/monitor/login"),
        data={"username": username, "password": PASSWORD},
        allow_redirects=False,
    ) as response:
        assert response.status == 303
        cookie = response.cookies["voicebot_monitor"]
        assert cookie["httponly"] and cookie["secure"] and cookie["samesite"] == "Strict"
        assert cookie["path"] == "/"
        return {"Cookie": f"voicebot_monitor={cookie.value}"}


async def test_page_without_sign_in_is_the_form_and_apis_refuse(monitor):
    server, _ = monitor
    async with aiohttp.ClientSession() as http:
        async with http.get(server.make_url("/monitor")) as response:
            page = await response.text()
            assert response.status == 200 and 'id="login-form"' in page
            assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
        async with http.get(server.make_url("/monitor/api/calls")) as response:
            assert response.status == 401
        ws = await http.ws_connect(server.make_url("/monitor/ws"))
        await ws.receive()
        assert ws.close_code == 4401


async def test_sign_in_sign_out_with_csrf(monitor):
    server, _ = monitor
    async with aiohttp.ClientSession() as http:
        cookie = await sign_in(http, server, "Admin1")  # usernames are not case sensitive
        async with http.get(server.make_url("/monitor"), headers=cookie) as response:
            page = await response.text()
        assert 'id="whoami"' in page
        csrf = page.split('name="csrf" value="')[1].split('"')[0]
        async with http.post(
            server.make_url("/monitor/logout"), data={"csrf": "forged"}, headers=cookie
        ) as response:
            assert response.status == 403  # a forged sign-out does nothing
        async with http.get(server.make_url("/monitor/api/me"), headers=cookie) as response:
            assert (await response.json())["role"] == "admin"
        async with http.post(
            server.make_url("/monitor/logout"),
            data={"csrf": csrf},
            headers=cookie,
            allow_redirects=False,
        ) as response:
            assert response.status == 303
        async with http.get(server.make_url("/monitor/api/me"), headers=cookie) as response:
            assert response.status == 401


async def test_socket_from_another_origin_is_refused(monitor):
    server, _ = monitor
    async with aiohttp.ClientSession() as http:
        cookie = await sign_in(http, server, "admin1")
        ws = await http.ws_connect(
            server.make_url("/monitor/ws"), headers={**cookie, "Origin": "https://evil.example"}
        )
        await ws.receive()
        assert ws.close_code == 4401


async def test_a_manager_sees_only_their_departments_calls_live(monitor):
    server, services = monitor
    async with aiohttp.ClientSession() as http:
        lead = await sign_in(http, server, "service-lead")
        sales = await sign_in(http, server, "sales-lead")
        lead_list = await http.ws_connect(server.make_url("/monitor/ws"), headers=lead)
        sales_list = await http.ws_connect(server.make_url("/monitor/ws"), headers=sales)
        assert (await lead_list.receive_json())["live"] == []
        assert (await sales_list.receive_json())["live"] == []
        services.registry.upsert(live_call("CA_service", "customer_service_en"))
        services.registry.upsert(live_call("CA_sales", "sales_representative_en"))
        seen_by_lead = await lead_list.receive_json(timeout=5)
        seen_by_sales = await sales_list.receive_json(timeout=5)
        assert seen_by_lead["call"]["call_sid"] == "CA_service"
        assert seen_by_lead["call"]["job_title"] == "Customer Service Representative"
        assert seen_by_sales["call"]["call_sid"] == "CA_sales"
        with pytest.raises(asyncio.TimeoutError):  # nothing else reaches either of them
            await lead_list.receive_json(timeout=0.3)
        with pytest.raises(asyncio.TimeoutError):
            await sales_list.receive_json(timeout=0.3)
        async with http.get(server.make_url("/monitor/api/calls"), headers=lead) as response:
            listed = await response.json()
        assert [c["call_sid"] for c in listed["live"]] == ["CA_service"]
        watch = await http.ws_connect(server.make_url("/monitor/ws/calls/CA_sales"), headers=lead)
        await watch.receive()
        assert watch.close_code == 4404
        listen = await http.ws_connect(
            server.make_url("/monitor/ws/calls/CA_sales/audio"), headers=lead
        )
        await listen.receive()
        assert listen.close_code == 4404
        watch = await http.ws_connect(server.make_url("/monitor/ws/calls/CA_service"), headers=lead)
        snapshot = await watch.receive_json(timeout=5)
        assert snapshot["type"] == "snapshot" and snapshot["data"]["questions"]
        services.live.publish("CA_service", "transcript.final", 3.0, text="I answered")
        assert (await watch.receive_json(timeout=5))["data"]["text"] == "I answered"
        for ws in (lead_list, sales_list, watch):
            await ws.close()


async def test_listen_in_sends_binary_chunks_until_the_call_ends(monitor):
    from voicebot.call.listen import audio_channel, chunk_event

    server, services = monitor
    services.registry.upsert(live_call("CA1", "customer_service_en"))
    async with aiohttp.ClientSession() as http:
        cookie = await sign_in(http, server, "admin1")
        listen = await http.ws_connect(
            server.make_url("/monitor/ws/calls/CA1/audio"), headers=cookie
        )
        assert (await listen.receive_json(timeout=5))["type"] == "audio.format"
        assert services.live.watched(audio_channel("CA1"))
        services.live.deliver(chunk_event("CA1", 1, 0, b"\xff" * 800))
        frame = await listen.receive_bytes(timeout=5)
        assert len(frame) == 808 and int.from_bytes(frame[:4], "big") == 1
        services.live.publish("CA1", "call.ended", 9.0, reason="completed")
        assert (await listen.receive_json(timeout=5))["type"] == "call.ended"
        await listen.receive()
        assert listen.closed
    await asyncio.sleep(0.1)
    assert not services.live.watched(audio_channel("CA1"))  # the mixer stops with it


async def test_redis_outage_is_a_clear_503_and_sign_in_recovers(tmp_path, redis_server):
    accounts = RedisAccounts(redis_server.url, 3600, prefix=f"test:{time.monotonic_ns()}")
    server, _ = await monitor_server(tmp_path, accounts)
    try:
        async with aiohttp.ClientSession() as http:
            await sign_in(http, server, "admin1")
            redis_server.restart()  # empty again (no persistence here); the pool's links are dead
            await accounts.add_user("admin1", "admin", None, PASSWORD)
            cookie = await sign_in(http, server, "admin1")  # not failed by a dead pooled link
            redis_server.stop()
            async with http.get(server.make_url("/monitor/api/calls"), headers=cookie) as r:
                assert r.status == 503
                assert (await r.json())["error"]["code"] == "accounts_unavailable"
            async with http.get(server.make_url("/monitor")) as response:
                assert response.status == 200  # no cookie: the form, nothing to look up
            async with http.get(server.make_url("/monitor"), headers=cookie) as response:
                assert response.status == 503 and "unavailable" in await response.text()
            redis_server.start(port=redis_server.port)
            await accounts.add_user("admin2", "admin", None, PASSWORD)
            await sign_in(http, server, "admin2")
    finally:
        await server.close()
        await accounts.close()


async def test_what_a_recruiter_views_and_listens_to_is_in_the_audit_log(monitor, tmp_path):
    from voicebot.privacy.audit import AuditLog, candidate_ref, verify_file
    from voicebot.store.database import Store

    server, services = monitor
    services.store = Store(tmp_path / "voicebot.sqlite3")
    await services.store.open()
    services.audit = AuditLog(services.store.path)
    await services.audit.open()
    try:
        row, _ = await services.store.create_interview(
            job_id="customer_service_en", candidate_id="c-42", candidate_name="Ann Lee"
        )
        await services.store.create_call(call_sid="CAdone", interview_id=row["id"])
        await services.store.finish_call(
            "CAdone", status="completed", end_reason="completed", duration_secs=5
        )
        services.registry.upsert(live_call("CAlive", "customer_service_en"))
        async with aiohttp.ClientSession() as http:
            cookie = await sign_in(http, server, "admin1")
            url = server.make_url("/monitor/api/calls/CAdone")
            async with http.get(url, headers=cookie) as response:
                assert response.status == 200
            watch = await http.ws_connect(
                server.make_url("/monitor/ws/calls/CAlive"), headers=cookie
            )
            assert (await watch.receive_json(timeout=5))["type"] == "snapshot"
            listen = await http.ws_connect(
                server.make_url("/monitor/ws/calls/CAlive/audio"), headers=cookie
            )
            assert (await listen.receive_json(timeout=5))["type"] == "audio.format"
            await watch.close()
            await listen.close()
        entries = await services.audit.entries()
        assert [(e["actor"], e["action"], e["call_sid"]) for e in entries] == [
            ("monitor:admin1", "monitor.call.view", "CAdone"),
            ("monitor:admin1", "monitor.call.watch", "CAlive"),
            ("monitor:admin1", "monitor.call.listen", "CAlive"),
        ]
        assert entries[0]["interview_id"] == row["id"]
        assert entries[0]["candidate"] == candidate_ref("admin", "c-42")
        assert "Ann Lee" not in str(entries)
        assert verify_file(services.store.path).ok
    finally:
        await services.audit.close()
        await services.store.close()


async def test_replay_of_an_encrypted_call_is_decrypted_for_the_recruiter(tmp_path):
    """With VOICEBOT_DATA_KEY the monitor's call page, timeline and recording read as plaintext."""
    import io
    import wave

    import numpy as np

    from voicebot.audio.codec import ulaw_encode
    from voicebot.call.recorder import CallRecorder, EncryptedFiles
    from voicebot.crypto import Keyring, generate_key_entry
    from voicebot.store.database import Store

    keyring = Keyring.parse(generate_key_entry("k1"))
    accounts = SqliteAccounts(tmp_path / "accounts.sqlite3", 3600)
    server, services = await monitor_server(tmp_path, accounts)
    services.keyring = keyring
    services.store = Store(tmp_path / "voicebot.sqlite3", keyring=keyring)
    await services.store.open()
    try:
        interview, _ = await services.store.create_interview(
            job_id="customer_service_en", candidate_id="c1", candidate_name="Ann Lee"
        )
        recorder = CallRecorder(tmp_path / "recordings" / "CA9", files=EncryptedFiles(keyring))
        recorder.candidate_audio(0.0, ulaw_encode(np.full(16000, 8000, dtype=np.int16)))
        recorder.event(0.5, "consent", given=True, via="dtmf")
        await recorder.close()
        await services.store.create_call(
            call_sid="CA9", interview_id=interview["id"], recording_dir=str(recorder.directory)
        )
        await services.store.add_turn(
            call_sid="CA9", seq=1, speaker="candidate", text="I fixed engines", start=1.0
        )
        await services.store.finish_call(
            "CA9", status="completed", end_reason="completed", duration_secs=2.0
        )
        async with aiohttp.ClientSession() as http:
            cookie = await sign_in(http, server, "admin1")
            async with http.get(
                server.make_url("/monitor/api/calls/CA9"), headers=cookie
            ) as response:
                detail = await response.json()
            assert detail["candidate_name"] == "Ann Lee"
            assert detail["turns"][0]["text"] == "I fixed engines"
            assert [e["type"] for e in detail["events"]] == ["consent.recorded"]
            url = server.make_url(detail["recording_url"])
            async with http.get(url, headers=cookie) as response:
                assert response.status == 200
                whole = await response.read()
            with wave.open(io.BytesIO(whole)) as wav:
                assert wav.getnchannels() == 2 and wav.getnframes() == 16000
            async with http.get(url, headers={**cookie, "Range": "bytes=44-"}) as response:
                assert response.status == 206
                assert await response.read() == whole[44:]
            async with http.get(url, headers={**cookie, "Range": "bytes=99999999-"}) as response:
                assert response.status == 416
    finally:
        await services.store.close()
        await server.close()
        await accounts.close()


async def test_each_call_says_its_language_and_the_page_carries_its_words(monitor):
    """A Chinese job's call is shown in Chinese, an English one beside it in English."""
    import json
    from html import unescape

    server, services = monitor
    services.registry.upsert(live_call("CA_zh", "customer_service_zh"))
    services.registry.upsert(live_call("CA_en", "customer_service_en"))
    async with aiohttp.ClientSession() as http:
        cookie = await sign_in(http, server, "admin1")
        async with http.get(server.make_url("/monitor/api/calls"), headers=cookie) as response:
            listed = {c["call_sid"]: c for c in (await response.json())["live"]}
        assert listed["CA_zh"]["language"] == "zh" and listed["CA_zh"]["job_title"] == "客服代表"
        assert listed["CA_en"]["language"] == "en"
        watch = await http.ws_connect(server.make_url("/monitor/ws/calls/CA_zh"), headers=cookie)
        snapshot = (await watch.receive_json(timeout=5))["data"]
        assert snapshot["language"] == "zh" and snapshot["questions"][0]["prompt"]
        await watch.close()
        async with http.get(server.make_url("/monitor"), headers=cookie) as response:
            page = await response.text()
    # The catalogue travels as a JSON data block (no inline script runs: the CSP holds).
    block = page.split('<script id="monitor-messages" type="application/json">')[1]
    block = block.split("</script>")[0]
    assert "<" not in block and unescape(block) == block
    words = json.loads(block)
    assert words["zh"]["transcript_bot"] == "面试官（AI）"
    assert words["zh"]["transcript_candidate"] == "候选人"
    assert words["zh"]["unit_cpm"] == "字/分钟" and "嗯/那个/就是" in words["zh"]["monitor_fillers"]
    assert words["zh"]["code_scoring"] == "评分中"
    assert words["en"]["transcript_bot"] == "Interviewer (AI)"
    assert set(words["en"]) <= set(words["zh"])  # nothing of a Chinese call falls back to English
