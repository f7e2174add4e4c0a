"""The Twilio REST client places and ends calls against the carrier simulator, over real sockets.

Every failure Twilio can answer (401, 403, 429, 5xx, a hung request, a refused connection, a
refused number) must come out as the ``CarrierError`` kind the dialer acts on, counted on
``/metrics``, with the auth token and the candidate's number nowhere in the logs.
"""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest

from loadtest.carrier_sim import CarrierSimulator, Scenario
from voicebot.config import ConfigError, Settings
from voicebot.metrics import Metrics
from voicebot.telephony.outbound import CarrierError, OutboundCall
from voicebot.telephony.twilio_rest import (
    TwilioCarrier,
    carrier_from_settings,
    create_call_form,
    error_from_response,
    mask_number,
    outbound_not_configured,
    parse_retry_after,
    redact_numbers,
)

CALLER_ID = "+14155550100"
CANDIDATE = "+15557654321"
APP = "http://127.0.0.1:9"  # callbacks are not followed here: busy calls, never answered


def outbound(to: str = CANDIDATE, *, amd: bool = True) -> OutboundCall:
    return OutboundCall(
        to=to,
        from_=CALLER_ID,
        url=f"{APP}/twilio/voice?interview_id=iv_42",
        status_callback=f"{APP}/twilio/status?attempt=7",
        amd_callback=f"{APP}/twilio/amd?attempt=7" if amd else None,
        ring_timeout_secs=25,
        tags={"interview": "iv_42", "attempt": "7"},
    )


@pytest.fixture
async def sim():
    simulator = CarrierSimulator(default=Scenario("busy", ring_secs=0.05))
    await simulator.start()
    yield simulator
    await simulator.stop()


@pytest.fixture
async def carrier(sim):
    client = TwilioCarrier(
        sim.account_sid,
        sim.auth_token,
        api_url=sim.api_url,
        request_timeout_secs=2.0,
        metrics=Metrics(),
    )
    yield client
    await client.close()


def counted(carrier: TwilioCarrier, request: str, outcome: str) -> float:
    value = carrier._metrics.registry.get_sample_value(  # type: ignore[union-attr]
        "voicebot_carrier_requests_total",
        {"carrier": "twilio", "request": request, "outcome": outcome},
    )
    return value or 0.0


async def test_place_call_sends_twilios_parameters_and_returns_the_call_sid(sim, carrier):
    placed = await carrier.place_call(outbound())

    assert placed.call_sid.startswith("CA") and len(placed.call_sid) == 34
    assert placed.status == "queued"
    [request] = sim.requests
    assert request.path == f"/2010-04-01/Accounts/{sim.account_sid}/Calls.json"
    assert request.status == 201
    form = request.form
    values = dict(form)
    assert values["To"] == CANDIDATE and values["From"] == CALLER_ID
    assert values["Url"] == f"{APP}/twilio/voice?interview_id=iv_42"
    assert values["Method"] == "POST"
    assert values["StatusCallback"] == f"{APP}/twilio/status?attempt=7"
    assert values["StatusCallbackMethod"] == "POST"
    assert [v for k, v in form if k == "StatusCallbackEvent"] == [
        "initiated",
        "ringing",
        "answered",
        "completed",
    ]
    assert values["Timeout"] == "25"
    assert values["MachineDetection"] == "DetectMessageEnd"
    assert values["AsyncAmd"] == "true"
    assert values["AsyncAmdStatusCallback"] == f"{APP}/twilio/amd?attempt=7"
    assert "interview" not in values and "attempt" not in values  # tags stay local
    assert placed.call_sid in sim.calls
    assert counted(carrier, "place_call", "ok") == 1


async def test_a_call_without_an_amd_callback_asks_for_no_machine_detection(sim, carrier):
    await carrier.place_call(outbound(amd=False))

    names = {k for k, _ in sim.requests[0].form}
    assert not names & {"MachineDetection", "AsyncAmd", "AsyncAmdStatusCallback"}


async def test_one_session_serves_many_calls(sim, carrier):
    for _ in range(3):
        await carrier.place_call(outbound())

    assert len(sim.calls) == 3
    assert carrier._session is not None and not carrier._session.closed


async def test_wrong_credentials_are_an_auth_error(sim):
    client = TwilioCarrier(sim.account_sid, "not-the-token", api_url=sim.api_url, metrics=Metrics())
    try:
        with pytest.raises(CarrierError) as caught:
            await client.place_call(outbound())
    finally:
        await client.close()

    error = caught.value
    assert error.kind == "auth" and error.status == 401 and error.code == 20003
    assert "VOICEBOT_TWILIO_AUTH_TOKEN" in str(error)
    assert not sim.calls
    assert counted(client, "place_call", "auth") == 1


async def test_403_is_an_auth_error_too(sim, carrier):
    sim.fail_next(403)

    with pytest.raises(CarrierError) as caught:
        await carrier.place_call(outbound())

    assert caught.value.kind == "auth" and caught.value.status == 403


async def test_429_is_rate_limited_with_retry_after(sim, carrier):
    sim.fail_next(429, retry_after=7)

    with pytest.raises(CarrierError) as caught:
        await carrier.place_call(outbound())

    error = caught.value
    assert error.kind == "rate_limited" and error.status == 429 and error.code == 20429
    assert error.retry_after_secs == 7
    assert not sim.calls
    assert counted(carrier, "place_call", "rate_limited") == 1
    placed = await carrier.place_call(outbound())  # the next one goes through
    assert placed.call_sid in sim.calls


async def test_429_without_retry_after_leaves_the_wait_to_the_dialer(sim, carrier):
    sim.fail_next(429)

    with pytest.raises(CarrierError) as caught:
        await carrier.place_call(outbound())

    assert caught.value.kind == "rate_limited" and caught.value.retry_after_secs is None


@pytest.mark.parametrize("status", [500, 503])
async def test_server_errors_are_unavailable(sim, carrier, status):
    sim.fail_next(status)

    with pytest.raises(CarrierError) as caught:
        await carrier.place_call(outbound())

    assert caught.value.kind == "unavailable" and caught.value.status == status
    assert counted(carrier, "place_call", "unavailable") == 1


async def test_a_request_twilio_never_answers_times_out_as_unavailable(sim):
    client = TwilioCarrier(
        sim.account_sid, sim.auth_token, api_url=sim.api_url, request_timeout_secs=0.5
    )
    sim.hang_next()
    try:
        with pytest.raises(CarrierError) as caught:
            await client.place_call(outbound())
    finally:
        await client.close()

    assert caught.value.kind == "unavailable" and caught.value.status is None
    assert "did not answer within 0.5 s" in str(caught.value)


async def test_an_unreachable_api_is_unavailable():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    client = TwilioCarrier("AC" + "1" * 32, "token", api_url=f"http://127.0.0.1:{port}")
    try:
        with pytest.raises(CarrierError) as caught:
            await client.place_call(outbound())
    finally:
        await client.close()

    assert caught.value.kind == "unavailable"
    assert "cannot reach Twilio's API" in str(caught.value)


async def test_an_invalid_number_is_rejected_with_twilios_code_and_the_number_masked(
    sim, carrier, caplog
):
    caplog.set_level(logging.DEBUG)

    with pytest.raises(CarrierError) as caught:
        await carrier.place_call(outbound(to="+0123456789"))

    error = caught.value
    assert error.kind == "rejected" and error.status == 400 and error.code == 21211
    assert "is not a valid phone number" in str(error)
    assert "https://www.twilio.com/docs/errors/21211" in str(error)
    assert "0123456789" not in str(error)  # Twilio's message quoted the number: masked
    assert "0123456789" not in caplog.text
    assert counted(carrier, "place_call", "rejected") == 1


async def test_hang_up_ends_the_call_and_hanging_up_twice_is_fine(sim, carrier, caplog):
    sim.scenarios[CANDIDATE] = Scenario("no_answer")
    placed = await carrier.place_call(outbound())

    await carrier.hang_up(placed.call_sid)
    call = await sim.wait_done(placed.call_sid)
    await carrier.hang_up(placed.call_sid)  # already ended: Twilio's 21220, not an error

    assert call.status == "canceled"  # it was still ringing
    hang_ups = [r for r in sim.requests if r.path.endswith(f"/Calls/{placed.call_sid}.json")]
    assert [dict(r.form) for r in hang_ups] == [{"Status": "completed"}] * 2
    assert [r.status for r in hang_ups] == [200, 400]
    assert counted(carrier, "hang_up", "ok") == 2  # the second found it ended: fine
    assert counted(carrier, "hang_up", "rejected") == 0
    assert "WARNING" not in caplog.text and "ERROR" not in caplog.text


async def test_hanging_up_a_call_twilio_does_not_know_is_rejected(sim, carrier):
    with pytest.raises(CarrierError) as caught:
        await carrier.hang_up("CA" + "0" * 32)

    assert caught.value.kind == "rejected" and caught.value.status == 404
    assert caught.value.code == 20404


async def test_hang_up_errors_map_like_place_call(sim, carrier):
    sim.fail_next(429, retry_after=2)

    with pytest.raises(CarrierError) as caught:
        await carrier.hang_up("CA" + "0" * 32)

    assert caught.value.kind == "rate_limited" and caught.value.retry_after_secs == 2
    assert counted(carrier, "hang_up", "rate_limited") == 1


async def test_neither_the_auth_token_nor_the_number_is_ever_logged(sim, caplog):
    caplog.set_level(logging.DEBUG)
    token = sim.auth_token
    client = TwilioCarrier(sim.account_sid, token, api_url=sim.api_url, request_timeout_secs=0.5)
    try:
        await client.place_call(outbound())
        for status in (401, 429, 500):
            sim.fail_next(status)
            with pytest.raises(CarrierError) as caught:
                await client.place_call(outbound())
            assert token not in str(caught.value) and CANDIDATE not in str(caught.value)
        sim.hang_next()
        with pytest.raises(CarrierError):
            await client.place_call(outbound())
    finally:
        await client.close()

    assert caplog.records  # it did log the failures
    assert token not in caplog.text
    assert CANDIDATE not in caplog.text and CANDIDATE[1:] not in caplog.text
    assert "iv_42" in caplog.text  # the tags say which interview
    assert token not in repr(client)


async def test_metrics_are_served_in_prometheus_text(sim, carrier):
    sim.fail_next(500)
    with pytest.raises(CarrierError):
        await carrier.place_call(outbound())
    await carrier.place_call(outbound())

    text = carrier._metrics.render().decode()  # type: ignore[union-attr]

    assert (
        'voicebot_carrier_requests_total{carrier="twilio",outcome="unavailable",'
        'request="place_call"} 1.0' in text
    )
    assert (
        'voicebot_carrier_requests_total{carrier="twilio",outcome="ok",request="place_call"} 1.0'
        in text
    )


# ------------------------------------------------------------------ settings and factory


def test_carrier_from_settings_needs_sid_token_and_caller_id(caplog):
    caplog.set_level(logging.INFO)
    assert carrier_from_settings(Settings()) is None
    assert "outbound calls are off" in caplog.text

    partial = Settings(twilio_account_sid="AC" + "2" * 32, twilio_auth_token="secret-token-123")
    assert outbound_not_configured(partial) == (
        "outbound calls are off: set VOICEBOT_TWILIO_CALLER_ID"
    )
    caplog.clear()
    assert carrier_from_settings(partial) is None
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "secret-token-123" not in caplog.text


async def test_carrier_from_settings_points_at_the_configured_api(sim):
    settings = Settings.from_env(
        {
            "VOICEBOT_TWILIO_ACCOUNT_SID": sim.account_sid,
            "VOICEBOT_TWILIO_AUTH_TOKEN": sim.auth_token,
            "VOICEBOT_TWILIO_CALLER_ID": CALLER_ID,
            "VOICEBOT_TWILIO_API_URL": sim.api_url + "/",
        }
    )
    carrier = carrier_from_settings(settings, Metrics())
    assert carrier is not None and carrier.name == "twilio"
    try:
        placed = await carrier.place_call(outbound())
    finally:
        await carrier.close()
    assert placed.call_sid in sim.calls


def test_settings_default_to_twilio_and_validate_the_caller_id():
    assert Settings().twilio_api_url == "https://api.twilio.com"
    with pytest.raises(ConfigError, match="VOICEBOT_TWILIO_CALLER_ID.*E.164"):
        Settings.from_env({"VOICEBOT_TWILIO_CALLER_ID": "4155550100"})
    with pytest.raises(ConfigError, match="VOICEBOT_TWILIO_API_URL"):
        Settings.from_env({"VOICEBOT_TWILIO_API_URL": "api.twilio.com"})
    described = Settings(twilio_auth_token="secret-token-123").describe()
    assert described["VOICEBOT_TWILIO_AUTH_TOKEN"] == "***"
    assert described["VOICEBOT_TWILIO_API_URL"] == "https://api.twilio.com"


# ------------------------------------------------------------------------- pure parts


def test_create_call_form_repeats_status_callback_event_in_order():
    form = create_call_form(outbound())
    assert [v for k, v in form if k == "StatusCallbackEvent"] == [
        "initiated",
        "ringing",
        "answered",
        "completed",
    ]


def test_error_from_a_body_that_is_not_json_still_says_what_happened():
    error = error_from_response(502, "<html>Bad Gateway</html>", {}, what="place a call")
    assert error.kind == "unavailable" and error.code is None
    assert "HTTP 502" in str(error) and "Bad Gateway" in str(error)


def test_retry_after_in_seconds_or_as_a_date():
    assert parse_retry_after("3") == 3
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0  # in the past


def test_numbers_are_masked_for_logs():
    assert mask_number("+15557654321") == "+15***21"
    assert redact_numbers("The 'To' number +15557654321 is not valid") == (
        "The 'To' number +15***21 is not valid"
    )


async def test_hang_up_ends_a_call_that_is_up_and_its_stream_stops(sim, carrier):
    from tests.twilio_receiver import TwilioReceiver

    receiver = TwilioReceiver(sim.auth_token)
    await receiver.start()
    try:
        sim.scenarios[CANDIDATE] = Scenario("voicemail", amd_secs=0.1)
        app = receiver.base_url
        placed = await carrier.place_call(
            OutboundCall(
                to=CANDIDATE,
                from_=CALLER_ID,
                url=f"{app}/twilio/voice?interview_id=iv_42",
                status_callback=f"{app}/twilio/status",
                amd_callback=f"{app}/twilio/amd",
            )
        )
        async with asyncio.timeout(30):
            amd = await receiver.wait_for("/twilio/amd", placed.call_sid)
        assert amd.params["AnsweredBy"] == "machine_end_beep"  # the bot leaves no interview

        await carrier.hang_up(placed.call_sid)

        async with asyncio.timeout(30):
            call = await sim.wait_done(placed.call_sid)
            await receiver.streams[placed.call_sid].closed.wait()
        assert call.status == "completed"
        assert receiver.streams[placed.call_sid].stopped
        final = receiver.received("/twilio/status", placed.call_sid)[-1].params
        assert final["CallStatus"] == "completed" and int(final["CallDuration"]) >= 1
    finally:
        await sim.stop()
        await receiver.stop()
