"""The example receiver over a real socket: verifies, rejects forgeries and stale messages,
dedupes by webhook-id, stores, and takes the official library's signatures."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import aiohttp
import aiosqlite
import pytest
from aiohttp.test_utils import TestServer
from standardwebhooks import Webhook

from hris_bridge.example_receiver import make_app
from hris_bridge.signing import WebhookSecretError, new_secret, webhook_headers
from tests.bridge.conftest import bridge_for, completed_event, eventually
from tests.bridge.test_bridge import running

SECRET = new_secret()


@pytest.fixture
async def example(tmp_path):
    db = tmp_path / "received.db"
    server = TestServer(make_app(SECRET, db), host="127.0.0.1")
    await server.start_server()
    async with aiohttp.ClientSession() as session:
        yield server, session, db
    await server.close()


async def _post(session, server, body: bytes, headers: dict[str, str]):
    url = server.make_url("/webhooks")
    async with session.post(url, data=body, headers=headers) as response:
        return response.status, await response.json()


async def _rows(db):
    async with aiosqlite.connect(db) as conn:
        cursor = await conn.execute("SELECT webhook_id, type, deliveries, body FROM received")
        return await cursor.fetchall()


async def test_valid_webhooks_are_stored_once(example):
    server, session, db = example
    event = completed_event(1)
    body = json.dumps(event.payload()).encode()
    headers = webhook_headers(SECRET, event.id, body)
    assert await _post(session, server, body, headers) == (200, {"ok": True, "duplicate": False})
    retry = webhook_headers(SECRET, event.id, body)  # a retry: same id, new timestamp
    assert await _post(session, server, body, retry) == (200, {"ok": True, "duplicate": True})
    [(webhook_id, type_, deliveries, stored)] = await _rows(db)
    assert (webhook_id, type_, deliveries) == (event.id, "interview.completed", 2)
    assert json.loads(stored) == event.payload()


async def test_forged_and_stale_signatures_get_401(example):
    server, session, db = example
    body = b'{"type":"interview.completed","timestamp":"t","data":{}}'
    forged = webhook_headers(new_secret(), "evt_1", body)
    status, answer = await _post(session, server, body, forged)
    assert status == 401 and answer["error"] == "invalid signature"
    tampered = webhook_headers(SECRET, "evt_1", body)
    status, _ = await _post(session, server, body.replace(b"{}", b'{"x":1}'), tampered)
    assert status == 401
    stale = webhook_headers(SECRET, "evt_1", body, timestamp=int(time.time()) - 600)
    status, answer = await _post(session, server, body, stale)
    assert status == 401 and "too old" in answer["detail"]
    status, _ = await _post(session, server, body, {"content-type": "application/json"})
    assert status == 401
    assert await _rows(db) == []


async def test_official_library_signatures_are_accepted(example):
    server, session, db = example
    body = '{"type":"call.ended","timestamp":"t","data":{"reason":"completed"}}'
    now = datetime.now(tz=UTC)
    headers = {
        "webhook-id": "evt_lib",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(SECRET).sign("evt_lib", now, body),
    }
    assert (await _post(session, server, body.encode(), headers))[0] == 200
    assert [r[0] for r in await _rows(db)] == ["evt_lib"]


async def test_bridge_to_example_receiver(example, bus, store):
    from hris_bridge.endpoints import Endpoint

    server, session, db = example
    endpoint = Endpoint(id="hr", url=str(server.make_url("/webhooks")), secret=SECRET)
    bridge = bridge_for(bus, store, [endpoint])
    events = [completed_event(n) for n in range(5)]
    async with running(bridge):
        for event in events:
            await bus.publish(event)
        await eventually(lambda: bridge.stats.delivered == 5)
    async with session.get(server.make_url("/received")) as response:
        listing = await response.json()
    assert [r["webhook_id"] for r in listing["received"]] == [e.id for e in events]
    assert listing["stats"]["accepted"] == 5


def test_a_bad_secret_fails_at_start():
    with pytest.raises(WebhookSecretError):
        make_app("not-a-secret")
