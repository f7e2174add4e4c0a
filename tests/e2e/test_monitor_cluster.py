"""The monitor across two server processes on one Redis: a recruiter on one sees the other's call.

Sign-ins are shared (an account added with ``voicebot users add`` while VOICEBOT_REDIS_URL is set
lives in Redis; a session cookie from process A works on B and signing out on A ends it on B).
The call runs on process B; the recruiter's sockets are on process A: the call list, the live
transcript with interim words, and listen-in audio all cross processes through Redis.
"""

from __future__ import annotations

import asyncio
import json
import os

import aiohttp
import pytest

from tests.e2e.monitor_helpers import PASSWORD, add_user, interview_call

pytestmark = pytest.mark.e2e


async def sign_in(http: aiohttp.ClientSession, url: str, username: str) -> dict[str, str]:
    """Sign in with the form; returns the Cookie header to send (the cookie is Secure, and
    aiohttp keeps Secure cookies from plain-http loopback URLs to itself)."""
    async with http.post(
        url + "/monitor/login",
        data={"username": username, "password": PASSWORD},
        allow_redirects=False,
    ) as response:
        assert response.status == 303, await response.text()
        morsel = response.cookies["voicebot_monitor"]
        assert morsel["httponly"] and morsel["secure"] and morsel["samesite"] == "Strict"
        return {"Cookie": f"voicebot_monitor={morsel.value}"}


def test_a_recruiter_on_one_process_follows_a_call_on_another(cluster, audio_dir, tmp_path):
    server_a, server_b = cluster["servers"]
    add_user(
        "cluster-admin",
        "admin",
        VOICEBOT_REDIS_URL=cluster["redis"].url,
        VOICEBOT_DATA_DIR=str(tmp_path),
    )
    interview_id = server_b.create_interview("customer_service_en", name="Lee Okafor")
    call_sid = "CAcluster" + os.urandom(8).hex()

    async def scenario():
        async with aiohttp.ClientSession() as http:
            cookie = await sign_in(http, server_a.url, "cluster-admin")
            async with http.get(server_b.url + "/monitor/api/me", headers=cookie) as response:
                assert response.status == 200  # the session is shared through Redis
            lists = await http.ws_connect(server_a.url + "/monitor/ws", headers=cookie)
            first = await lists.receive_json(timeout=10)
            assert first["type"] == "calls"
            call = asyncio.create_task(
                interview_call(server_b.url, interview_id, call_sid, audio_dir)
            )
            updates: list[dict] = []
            arrived = asyncio.Event()

            async def read_lists() -> None:  # keeps reading (and answering pings) all along
                async for message in lists:
                    updates.append(json.loads(message.data))
                    arrived.set()

            reader = asyncio.create_task(read_lists())

            async def update_of(kind: str) -> dict:
                while True:
                    for update in updates:
                        if update["type"] == kind and update["call"]["call_sid"] == call_sid:
                            return update
                    arrived.clear()
                    await asyncio.wait_for(arrived.wait(), 30)

            update = await update_of("call.updated")  # the call on B shows up in A's list
            assert update["call"]["candidate_name"] == "Lee Okafor"
            assert update["call"]["department"] == "customer_service"

            watch = await http.ws_connect(
                f"{server_a.url}/monitor/ws/calls/{call_sid}", headers=cookie
            )
            snapshot = await watch.receive_json(timeout=10)
            assert snapshot["type"] == "snapshot"
            assert [q["id"] for q in snapshot["data"]["questions"]]
            listen = await http.ws_connect(
                f"{server_a.url}/monitor/ws/calls/{call_sid}/audio", headers=cookie
            )
            assert (await listen.receive_json(timeout=10))["encoding"] == "mulaw"
            frames = []
            while len(frames) < 20:  # two seconds of the call's audio, mixed on B
                message = await listen.receive(timeout=10)
                assert message.type == aiohttp.WSMsgType.BINARY
                frames.append(message.data)
            sequence = [int.from_bytes(frame[:4], "big") for frame in frames]
            assert sequence == sorted(sequence) and all(len(f) == 808 for f in frames)
            await listen.close()

            kinds = []
            partial_texts = []
            while True:
                event = await watch.receive_json(timeout=120)
                kinds.append(event["type"])
                if event["type"] == "transcript.partial":
                    partial_texts.append(event["data"]["text"])
                if event["type"] == "call.ended":
                    break
            result = await call
            assert result.error is None, result.problems

            await update_of("call.ended")  # and leaves A's live list when it ends on B
            async with http.get(server_a.url + "/monitor/api/calls", headers=cookie) as response:
                calls = await response.json()
            await lists.close()
            await reader
            await watch.close()

            # Sign out on A: the session is gone on B too.
            page = await (await http.get(server_a.url + "/monitor", headers=cookie)).text()
            csrf = page.split('name="csrf" value="')[1].split('"')[0]
            async with http.post(
                server_a.url + "/monitor/logout",
                data={"csrf": csrf},
                headers=cookie,
                allow_redirects=False,
            ) as response:
                assert response.status == 303
            async with http.get(server_b.url + "/monitor/api/me", headers=cookie) as response:
                signed_out = response.status
            return kinds, partial_texts, calls, signed_out

    kinds, partial_texts, calls, signed_out = asyncio.run(scenario())
    assert "transcript.final" in kinds and "script.position" in kinds
    assert "prosody.sample" in kinds and "bot.speaking" in kinds
    assert partial_texts and any(text.strip() for text in partial_texts)
    assert "scores.updated" in kinds
    assert call_sid not in json.dumps(calls["live"])
    assert call_sid in json.dumps(calls["recent"])
    assert signed_out == 401
