"""Who may open a media stream or ask for TwiML: signed webhooks, short-lived stream tokens."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from loadtest.caller import run_call
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
    claims = {"interview_id": "iv_x", "call_sid": "CA_x"}
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
    forged = StreamTokenSigner(b"some other secret").issue(
        {"interview_id": "iv_x", "call_sid": "CA_x"}
    )
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


# -- tokens have a purpose and a binding (issue 18, finding 1) ----------------------------------


def new_call_sid(prefix: str = "CAsec") -> str:
    return prefix + secrets.token_hex(14)


async def open_stream(server_url_or_stream_url: str, call_sid: str, parameters: dict) -> tuple:
    """Open a stream, send ``start`` and read until closed; returns (close code, reason, media?)."""
    media = False
    async with connect(server_url_or_stream_url) as ws:
        await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        await ws.send(start_message("MZ" + call_sid[2:], call_sid, parameters))
        try:
            while True:
                message = json.loads(await asyncio.wait_for(ws.recv(), 10))
                media = media or message["event"] == "media"
                if media:
                    break
        except ConnectionClosed:
            pass
    return ws.close_code, ws.close_reason, media


def stream_url(server) -> str:
    return server.url.replace("http", "ws", 1) + "/twilio/stream"


def declined_interview(server) -> tuple[str, str, dict]:
    """An interview held to its end (the candidate declined, pressing 2): id, call, report."""
    interview_id = server.create_interview()
    call_sid = new_call_sid("CAdone")
    result = asyncio.run(
        run_call(
            server.url,
            interview_id=interview_id,
            call_sid=call_sid,
            twilio_auth_token=TWILIO_AUTH_TOKEN,
            dtmf={0: "2"},
            max_call_secs=60,
        )
    )
    assert result.error is None, result.error
    interview = server.wait_for_report(interview_id)
    assert interview["status"] == "declined" and interview["report"] is not None
    return interview_id, call_sid, interview


def token_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["token"][0]


def assert_untouched(server, interview_id: str, before: dict) -> None:
    status, after = server.request("GET", f"/api/interviews/{interview_id}")
    assert status == 200
    assert after["status"] == before["status"]
    assert after["attempts"] == before["attempts"]
    assert after["report"] == before["report"]
    assert [c["call_sid"] for c in after["calls"]] == [c["call_sid"] for c in before["calls"]]


def test_report_and_recording_links_cannot_open_a_stream(server):
    interview_id, call_sid, before = declined_interview(server)
    links = before["links"]
    tokens = {
        "report": token_of(links["report_html"]),
        "recording": token_of(links["recordings"][call_sid]),
    }
    for kind, token in tokens.items():
        fake_call = new_call_sid("CAfake")
        parameters = {"interview_id": interview_id, "job_id": "customer_service_en"}
        code, reason, media = asyncio.run(
            open_stream(stream_url(server), fake_call, {**parameters, "token": token})
        )
        assert (code, media) == (1008, False), (kind, code, reason)
        assert reason.startswith("token_"), (kind, reason)
        assert server.request("GET", f"/api/calls/{fake_call}")[0] == 404
        # Nor in the URL, where carriers that can put it are checked before the upgrade.
        with pytest.raises(InvalidStatus) as refused:
            asyncio.run(open_stream(stream_url(server) + "?token=" + token, fake_call, parameters))
        assert refused.value.response.status_code == 403
    assert_untouched(server, interview_id, before)
    # The links still open what they were issued for.
    assert (
        server.request(
            "GET", urlsplit(links["report_html"]).path + "?token=" + tokens["report"], token=None
        )[0]
        == 200
    )


def test_a_stream_token_opens_only_its_own_call(server):
    interview_id = server.create_interview()
    call_a, call_b = new_call_sid("CAaaa"), new_call_sid("CAbbb")
    stream = asyncio.run(post_voice_webhook(server.url, interview_id, call_a))
    url = stream.pop("url")
    code, reason, media = asyncio.run(open_stream(url, call_b, stream))
    assert (code, reason, media) == (1008, "token_call_mismatch", False)
    assert server.request("GET", f"/api/calls/{call_b}")[0] == 404
    status, interview = server.request("GET", f"/api/interviews/{interview_id}")
    assert interview["status"] == "pending" and interview["attempts"] == 0


def test_a_stream_for_an_interview_that_is_over_is_refused(server):
    interview_id = server.create_interview()
    call_a, call_b = new_call_sid("CAfirst"), new_call_sid("CAlater")
    # Two calls were put through while the interview was still to be held ...
    stream_b = asyncio.run(post_voice_webhook(server.url, interview_id, call_b))
    result = asyncio.run(
        run_call(
            server.url,
            interview_id=interview_id,
            call_sid=call_a,
            twilio_auth_token=TWILIO_AUTH_TOKEN,
            dtmf={0: "2"},
            max_call_secs=60,
        )
    )
    assert result.error is None, result.error
    before = server.wait_for_report(interview_id)
    # ... the first one held it to its end: the second is refused, the outcome stands.
    url = stream_b.pop("url")
    code, reason, media = asyncio.run(open_stream(url, call_b, stream_b))
    assert (code, reason, media) == (1008, "interview_declined", False)
    assert_untouched(server, interview_id, before)
    _, metrics = server.request("GET", "/metrics", token=None)
    assert 'voicebot_calls_refused_total{reason="interview_declined"}' in metrics


# -- one stream per call, decided atomically (issue 18, finding 2) ------------------------------


def metric_value(metrics: str, name: str) -> float:
    """A sample's value in Prometheus text (``name`` with its labels as printed); 0 if absent."""
    for line in metrics.splitlines():
        if line.rsplit(" ", 1)[0] == name:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def race_streams(url: str, call_sid: str, parameters: dict, server, copies: int = 10):
    """Open ``copies`` streams at once with one token and CallSid; hold the winner's call.

    Returns (the losers' close reasons, what the API showed while the winner's call was on,
    whether the winner was hung up by the server after declining).
    """
    sockets = [await connect(url) for _ in range(copies)]
    start = start_message("MZrace", call_sid, parameters)
    connected = json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})
    await asyncio.gather(*(ws.send(connected) for ws in sockets))
    await asyncio.gather(*(ws.send(start) for ws in sockets))

    async def first_message(ws):
        try:
            return json.loads(await asyncio.wait_for(ws.recv(), 15))
        except ConnectionClosed:
            return None

    firsts = await asyncio.gather(*(first_message(ws) for ws in sockets))
    winners = [ws for ws, first in zip(sockets, firsts, strict=True) if first is not None]
    losers = [ws for ws, first in zip(sockets, firsts, strict=True) if first is None]
    reasons = [(ws.close_code, ws.close_reason) for ws in losers]
    assert len(winners) == 1, f"{len(winners)} streams got the call; refused: {reasons}"
    winner = winners[0]
    during = {
        "call": server.request("GET", f"/api/calls/{call_sid}")[1],
        "interview": server.request("GET", f"/api/interviews/{parameters['interview_id']}")[1],
        "metrics": server.request("GET", "/metrics", token=None)[1],
    }
    # The winner's call goes on: decline at the consent question, echo marks, until hung up.
    declined = False
    try:
        while True:
            message = json.loads(await asyncio.wait_for(winner.recv(), 30))
            if message["event"] == "mark":
                name = message["mark"]["name"]
                await winner.send(
                    json.dumps({"event": "mark", "streamSid": "MZrace", "mark": {"name": name}})
                )
                if name.endswith(":await") and not declined:
                    declined = True
                    await winner.send(
                        json.dumps({"event": "dtmf", "streamSid": "MZrace", "dtmf": {"digit": "2"}})
                    )
    except ConnectionClosed:
        pass
    for ws in losers:
        await ws.close()
    return reasons, during, declined


def test_ten_streams_for_one_call_at_once_give_exactly_one_call(server):
    interview_id = server.create_interview()
    call_sid = new_call_sid("CArace")
    stream = asyncio.run(post_voice_webhook(server.url, interview_id, call_sid))
    url = stream.pop("url")
    _, metrics_before = server.request("GET", "/metrics", token=None)
    reasons, during, declined = asyncio.run(race_streams(url, call_sid, stream, server))
    assert reasons == [(1008, "duplicate_call")] * 9
    # While the winner's call was on, the losers had left its records alone.
    assert during["call"]["status"] == "in_progress"
    assert during["interview"]["status"] == "in_progress"
    assert during["interview"]["attempts"] == 1
    assert metric_value(during["metrics"], "voicebot_calls_active") == 1
    # And the winner's call ran to its end, its records right.
    assert declined
    call = server.wait_for_call(call_sid)
    assert call["status"] == "completed" and call["end_reason"] == "consent_declined"
    interview = server.wait_for_report(interview_id)
    assert interview["status"] == "declined" and interview["attempts"] == 1
    assert [c["call_sid"] for c in interview["calls"]] == [call_sid]
    _, metrics_after = server.request("GET", "/metrics", token=None)
    assert metric_value(metrics_after, "voicebot_calls_active") == 0
    name = 'voicebot_calls_refused_total{reason="duplicate_call"}'
    assert metric_value(metrics_after, name) - metric_value(metrics_before, name) == 9


def test_a_second_call_for_an_interview_on_a_call_is_refused(server):
    interview_id = server.create_interview()
    first, second = new_call_sid("CAone"), new_call_sid("CAtwo")
    stream_1 = asyncio.run(post_voice_webhook(server.url, interview_id, first))
    stream_2 = asyncio.run(post_voice_webhook(server.url, interview_id, second))

    async def scenario():
        url = stream_1.pop("url")
        async with connect(url) as ws:
            await ws.send(start_message("MZone", first, stream_1))
            assert json.loads(await asyncio.wait_for(ws.recv(), 15))["event"] in ("media", "mark")
            refused = await open_stream(stream_2.pop("url"), second, stream_2)
            third = await post_voice_webhook(server.url, interview_id, new_call_sid("CAthree"))
            status, call = server.request("GET", f"/api/calls/{first}")
            return refused, third, call

    (code, reason, media), third, call = asyncio.run(scenario())
    assert (code, reason, media) == (1008, "interview_busy", False)
    assert third["url"] is None and "token" not in third  # the voice webhook says goodbye
    assert call["status"] == "in_progress" or call["end_reason"] == "caller_hangup"
    assert server.request("GET", f"/api/calls/{second}")[0] == 404
