"""Streams that have not sent a valid ``start`` (no token checked yet) are bounded: closed after a
short deadline, capped in all and per remote address, and nothing of them is kept once gone."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.conftest import start_server, stop_server
from tests.e2e.test_interview_call import post_voice_webhook, start_message
from tests.e2e.test_stream_security import metric_value, new_call_sid

pytestmark = pytest.mark.e2e

START_TIMEOUT_SECS = 3
MAX_PENDING = 6
MAX_PENDING_PER_ADDRESS = 3


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    """A server with a short start deadline and small caps on pending streams."""
    running = start_server(
        tmp_path_factory.mktemp("limits"),
        VOICEBOT_PUBLIC_URL="",
        VOICEBOT_STREAM_START_TIMEOUT_SECS=str(START_TIMEOUT_SECS),
        VOICEBOT_STREAM_MAX_PENDING=str(MAX_PENDING),
        VOICEBOT_STREAM_MAX_PENDING_PER_ADDRESS=str(MAX_PENDING_PER_ADDRESS),
    )
    yield running
    stop_server(running)


def stream_url(server) -> str:
    return server.url.replace("http", "ws", 1) + "/twilio/stream"


def metrics(server) -> str:
    return server.request("GET", "/metrics", token=None)[1]


def pending_now(server) -> float:
    return metric_value(metrics(server), "voicebot_streams_pending")


async def wait_until_no_pending(server) -> None:
    for _ in range(300):
        if pending_now(server) == 0:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{pending_now(server)} streams still pending")


def test_a_stream_that_never_starts_is_closed_after_the_deadline(limited):
    before = metric_value(metrics(limited), 'voicebot_calls_refused_total{reason="no_start"}')

    async def idle() -> tuple[int | None, bool]:
        async with connect(stream_url(limited)) as ws:
            await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1"}))
            assert pending_now(limited) == 1
            try:
                await asyncio.wait_for(ws.recv(), START_TIMEOUT_SECS * 10)
            except ConnectionClosed:
                return ws.close_code, True
            return ws.close_code, False

    code, closed = asyncio.run(idle())
    assert closed, "the server kept a stream that never sent start"
    after = metrics(limited)
    assert metric_value(after, 'voicebot_calls_refused_total{reason="no_start"}') == before + 1
    assert metric_value(after, "voicebot_streams_pending") == 0


def test_pending_streams_are_capped_per_address_and_in_all_and_forgotten_when_gone(limited):
    async def scenario() -> dict:
        url = stream_url(limited)
        held = []
        refusals = {}
        for address in ("127.0.0.1", "127.0.0.2"):
            for _ in range(MAX_PENDING_PER_ADDRESS):
                held.append(await connect(url, local_addr=(address, 0)))
            with pytest.raises(InvalidStatus) as refused:
                await connect(url, local_addr=(address, 0))
            refusals[address] = refused.value.response
        with pytest.raises(InvalidStatus) as refused:  # a third address: the server is full
            await connect(url, local_addr=("127.0.0.3", 0))
        refusals["all"] = refused.value.response
        pending_full = pending_now(limited)
        for ws in held:
            await ws.close()
        await wait_until_no_pending(limited)
        # Gone means forgotten: the same addresses may open as many again.
        again = [await connect(url, local_addr=("127.0.0.1", 0)) for _ in range(3)]
        for ws in again:
            await ws.close()
        await wait_until_no_pending(limited)
        return {"refusals": refusals, "pending_full": pending_full}

    result = asyncio.run(scenario())
    assert result["pending_full"] == MAX_PENDING
    for key, response in result["refusals"].items():
        assert response.status_code == 503, key
    body = {key: response.body.decode() for key, response in result["refusals"].items()}
    assert body["127.0.0.1"].startswith("too_many_pending_from_address")
    assert body["all"].startswith("too_many_pending:")
    text = metrics(limited)
    assert metric_value(text, 'voicebot_calls_refused_total{reason="too_many_pending"}') == 1
    name = 'voicebot_calls_refused_total{reason="too_many_pending_from_address"}'
    assert metric_value(text, name) == 2


def test_a_real_call_starts_while_idle_streams_wait_and_is_not_pending(limited):
    interview_id = limited.create_interview()
    call_sid = new_call_sid("CAreal")

    async def scenario():
        stream = await post_voice_webhook(limited.url, interview_id, call_sid)
        url = stream.pop("url")
        idle = [await connect(url, local_addr=("127.0.0.4", 0)) for _ in range(2)]
        async with connect(url) as ws:
            await ws.send(start_message("MZreal", call_sid, stream))
            first = json.loads(await asyncio.wait_for(ws.recv(), 15))
            pending = pending_now(limited)
            status, call = limited.request("GET", f"/api/calls/{call_sid}")
        for other in idle:
            await other.close()
        return first, pending, call

    first, pending, call = asyncio.run(scenario())
    assert first["event"] in ("media", "mark")
    assert pending == 2  # the idle ones; the started call is no longer pending
    assert call["status"] == "in_progress"


def test_a_plain_request_to_the_stream_route_is_a_400_and_leaves_nothing_pending(limited):
    status, body = limited.request("GET", "/twilio/stream", token=None)
    assert status == 400
    assert pending_now(limited) == 0
    text = metrics(limited)
    assert 'voicebot_internal_errors_total{where="media_stream"}' not in text
