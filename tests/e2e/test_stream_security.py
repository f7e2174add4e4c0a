"""Who may open a media stream or ask for TwiML: signed webhooks, short-lived stream tokens."""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import urlencode

import aiohttp
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.conftest import STREAM_SECRET, TWILIO_AUTH_TOKEN
from tests.e2e.test_interview_call import post_voice_webhook, start_message
from voicebot.telephony.signature import compute_twilio_signature
from voicebot.telephony.stream_token import StreamTokenSigner

pytestmark = pytest.mark.e2e

FORM = {
    "CallSid": "CAsec" + "1" * 29,
    "AccountSid": "AC" + "0" * 32,
    "From": "+15550100",
    "To": "+15550199",
    "CallStatus": "in-progress",
    "Direction": "inbound",
}


async def post_voice(url: str, signature: str | None) -> tuple[int, str]:
    headers = {"X-Twilio-Signature": signature} if signature is not None else {}
    async with aiohttp.ClientSession() as session:
        async with session.post(url, data=FORM, headers=headers) as response:
            return response.status, await response.text()


def test_voice_webhook_requires_a_valid_twilio_signature(server):
    interview_id = server.create_interview()
    url = f"{server.url}/twilio/voice?{urlencode({'interview_id': interview_id})}"
    good = compute_twilio_signature(TWILIO_AUTH_TOKEN, url, FORM)
    forged = compute_twilio_signature("not-the-auth-token", url, FORM)
    assert asyncio.run(post_voice(url, None))[0] == 403
    assert asyncio.run(post_voice(url, forged))[0] == 403
    status, twiml = asyncio.run(post_voice(url, good))
    assert status == 200
    assert "<Connect><Stream" in twiml and "/twilio/stream" in twiml
    assert 'name="token"' in twiml and f'value="{interview_id}"' in twiml


def test_voice_webhook_without_an_interview_says_so_and_hangs_up(server):
    url = f"{server.url}/twilio/voice?interview_id=iv_nobody"
    status, twiml = asyncio.run(
        post_voice(url, compute_twilio_signature(TWILIO_AUTH_TOKEN, url, FORM))
    )
    assert status == 200 and "<Hangup" in twiml and "<Stream" not in twiml


async def stream_with_token(server, token: str | None) -> tuple[int | None, str]:
    """Open a stream and send ``start`` with this token; returns the close code and reason."""
    interview_id = server.create_interview()
    call_sid = "CAtok" + str(time.monotonic_ns())[-29:]
    stream = await post_voice_webhook(server.url, interview_id, call_sid)
    url = stream.pop("url")
    if token is None:
        stream.pop("token")
    else:
        stream["token"] = token
    async with connect(url) as ws:
        await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        await ws.send(start_message("MZtok", call_sid, stream))
        try:
            while True:
                message = json.loads(await asyncio.wait_for(ws.recv(), 10))
                assert message["event"] != "media", "bot audio reached an unauthorised stream"
        except ConnectionClosed:
            pass
        return ws.close_code, ws.close_reason


@pytest.mark.parametrize("kind", ["missing", "forged", "expired", "malformed"])
def test_stream_without_a_valid_token_is_refused(server, kind):
    claims = {"interview_id": "iv_x", "call_sid": ""}
    token = {
        "missing": None,
        "forged": StreamTokenSigner(b"some other secret").issue(claims),
        "expired": StreamTokenSigner(STREAM_SECRET.encode(), ttl_secs=60).issue(
            claims, now=time.time() - 3600
        ),
        "malformed": "not-a-token",
    }[kind]
    code, reason = asyncio.run(stream_with_token(server, token))
    assert code == 1008
    assert reason.startswith("token_")
    _, metrics = server.request("GET", "/metrics", token=None)
    assert 'voicebot_calls_refused_total{reason="token_' in metrics


def test_stream_token_in_the_url_is_checked_before_the_upgrade(server):
    forged = StreamTokenSigner(b"some other secret").issue({"interview_id": "iv_x"})
    ws_url = server.url.replace("http", "ws") + "/twilio/stream?token=" + forged

    async def attempt():
        async with connect(ws_url):
            pass

    with pytest.raises(InvalidStatus) as refused:
        asyncio.run(attempt())
    assert refused.value.response.status_code == 403


def test_a_call_sid_that_is_not_a_plain_id_is_refused(server):
    interview_id = server.create_interview()
    url = f"{server.url}/twilio/voice?{urlencode({'interview_id': interview_id})}"
    form = {**FORM, "CallSid": "../../escape"}

    async def post() -> int:
        signature = compute_twilio_signature(TWILIO_AUTH_TOKEN, url, form)
        async with aiohttp.ClientSession() as session:
            async with session.post(
                url, data=form, headers={"X-Twilio-Signature": signature}
            ) as response:
                return response.status

    assert asyncio.run(post()) == 400
