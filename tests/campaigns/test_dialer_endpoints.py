"""``POST /twilio/status`` and ``POST /twilio/amd`` on the running app, over real sockets.

The real aiohttp app (``tests/api/app_server.py``) with the dialer and a fake carrier: the
callbacks are signed as Twilio signs them, repeated as carriers repeat them, and forged or aimed
at calls the server never placed.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.api.app_server import API_TOKEN, TWILIO_AUTH_TOKEN, start_app_server
from tests.api.test_open_routes_fuzz import FORM, FUZZ, AppOnLoop, any_text
from voicebot.campaigns import attempts
from voicebot.campaigns.dialer import Dialer
from voicebot.telephony.signature import compute_twilio_signature

from .dialer_fakes import FakeCarrier, FakeClock, FakeSchedule, add_campaign, add_candidate

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


@pytest.fixture
async def app(tmp_path):
    server, services = await start_app_server(tmp_path)
    clock = FakeClock()
    carrier = FakeCarrier()
    services.dialer = Dialer(services, carrier, schedule=FakeSchedule(), clock=clock)
    async with aiohttp.ClientSession() as http:
        yield server, services, http, clock
    await server.close()


async def _post(server, http, path: str, params: dict, *, sign: bool = True, token: str = ""):
    url = str(server.make_url(path))
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if sign:
        headers["X-Twilio-Signature"] = compute_twilio_signature(
            token or TWILIO_AUTH_TOKEN, url, params
        )
    async with http.post(url, data=urlencode(params), headers=headers) as response:
        return response.status, await response.text()


async def _dialed(services, clock) -> tuple[str, dict]:
    campaign = await add_campaign(services.store, max_attempts=3)
    interview = await add_candidate(services.store, campaign, due_at=clock() - 1)
    await services.dialer.tick()
    await services.dialer.wait_placed()
    attempt = await services.store._one(
        "SELECT * FROM dial_attempts WHERE interview_id = ?", (interview,)
    )
    return interview, attempt


async def test_a_signed_status_callback_settles_the_attempt_once(app):
    server, services, http, clock = app
    interview, attempt = await _dialed(services, clock)
    path = f"/twilio/status?attempt_id={attempt['id']}"
    busy = {"CallSid": attempt["call_sid"], "CallStatus": "busy", "AccountSid": "AC1"}

    assert (await _post(server, http, path, busy))[0] == 204
    assert (await _post(server, http, path, busy))[0] == 204  # Twilio retried: no change
    ringing = {"CallSid": attempt["call_sid"], "CallStatus": "ringing"}
    assert (await _post(server, http, path, ringing))[0] == 204  # late: nothing moves back

    async with http.get(server.make_url(f"/api/interviews/{interview}"), headers=AUTH) as r:
        assert r.status == 200
        body = await r.json()
    assert body["status"] == "pending" and body["campaign_id"] is not None
    assert body["next_attempt_at"] == clock() + 3600
    [dialed] = body["dial_attempts"]
    assert (dialed["number"], dialed["call_sid"], dialed["outcome"]) == (1, "CA0001", "busy")
    assert dialed["placed_at"] == clock() and dialed["ended_at"] == clock()
    metrics = await (await http.get(server.make_url("/metrics"))).text()
    assert 'voicebot_dialer_callbacks_total{kind="status",result="applied"} 1.0' in metrics
    assert 'voicebot_dialer_callbacks_total{kind="status",result="repeat"} 2.0' in metrics
    assert 'voicebot_dialer_attempts_total{outcome="busy"} 1.0' in metrics


async def test_callbacks_must_be_signed(app):
    server, services, http, clock = app
    _, attempt = await _dialed(services, clock)
    path = f"/twilio/status?attempt_id={attempt['id']}"
    busy = {"CallSid": attempt["call_sid"], "CallStatus": "busy"}

    status, text = await _post(server, http, path, busy, sign=False)
    assert status == 403 and "X-Twilio-Signature" in text
    assert (await _post(server, http, path, busy, token="someone-else"))[0] == 403
    amd = {"CallSid": attempt["call_sid"], "AnsweredBy": "machine_start"}
    amd_path = f"/twilio/amd?attempt_id={attempt['id']}"
    assert (await _post(server, http, amd_path, amd, sign=False))[0] == 403
    stored = await services.store._one(
        "SELECT state, answered_by FROM dial_attempts WHERE id = ?", (attempt["id"],)
    )
    assert (stored["state"], stored["answered_by"]) == ("dialing", None)  # untouched


async def test_a_call_the_server_did_not_place_is_404(app):
    server, services, http, clock = app
    _, attempt = await _dialed(services, clock)
    status, text = await _post(
        server, http, "/twilio/status", {"CallSid": "CAsomeone_else", "CallStatus": "busy"}
    )
    assert status == 404 and "CAsomeone_else" in text
    forged = {"CallSid": "CAsomeone_else", "CallStatus": "completed"}
    status, _ = await _post(server, http, f"/twilio/status?attempt_id={attempt['id']}", forged)
    assert status == 404  # another call's sid cannot settle this attempt
    status, _ = await _post(
        server, http, "/twilio/amd", {"CallSid": "CAnope", "AnsweredBy": "machine_start"}
    )
    assert status == 404
    status, text = await _post(server, http, "/twilio/status", {"CallStatus": "busy"})
    assert status == 400 and "CallSid" in text


async def test_an_answering_machine_verdict_over_http_hangs_up_and_ends_voicemail(app):
    server, services, http, clock = app
    interview, attempt = await _dialed(services, clock)
    sid = attempt["call_sid"]
    query = f"?attempt_id={attempt['id']}"
    answered = {"CallSid": sid, "CallStatus": "in-progress"}
    assert (await _post(server, http, "/twilio/status" + query, answered))[0] == 204
    machine = {"CallSid": sid, "AnsweredBy": "machine_end_beep"}
    assert (await _post(server, http, "/twilio/amd" + query, machine))[0] == 204
    assert services.dialer.carrier.hung_up == [sid]  # no session here: the carrier hangs up
    completed = {"CallSid": sid, "CallStatus": "completed", "CallDuration": "12"}
    assert (await _post(server, http, "/twilio/status" + query, completed))[0] == 204
    async with http.get(server.make_url(f"/api/interviews/{interview}"), headers=AUTH) as r:
        body = await r.json()
    assert body["dial_attempts"][0]["outcome"] == "voicemail"
    assert body["next_attempt_at"] == clock() + 3600


# -- fuzzing: any signed form, any attempt id -------------------------------------------------

STATUS_NAMES = st.sampled_from(
    ["CallSid", "CallStatus", "CallDuration", "AnsweredBy", "AccountSid", "To", "From"]
)
CALL_STATUSES = st.sampled_from(
    ["queued", "initiated", "ringing", "in-progress", "completed", "busy", "no-answer",
     "failed", "canceled", "", "weird"]
)  # fmt: skip
callback_forms = st.builds(
    lambda sid, status, fields: [("CallSid", sid), ("CallStatus", status), *fields],
    st.one_of(st.just("CAfuzz0001"), any_text),
    st.one_of(CALL_STATUSES, any_text),
    st.lists(st.tuples(st.one_of(STATUS_NAMES, any_text), any_text), max_size=4),
)


@pytest.fixture(scope="module")
def callbacks(tmp_path_factory):
    running = AppOnLoop(tmp_path_factory.mktemp("callbacks"))
    store = running.services.store

    async def dialed() -> str:
        campaign = await add_campaign(store)
        interview = await add_candidate(store, campaign, due_at=0)
        attempt = await attempts.claim_attempt(
            store, interview, owner="proc_x", lease_until=10**10, now=1
        )
        await attempts.advance_attempt(store, attempt["id"], "dialing", call_sid="CAfuzz0001")
        return attempt["id"]

    running.attempt_id = running.loop.run_until_complete(dialed())
    yield running
    assert running.internal_errors() == [], running.internal_errors()
    running.close()


@FUZZ
@given(
    form=callback_forms,
    path=st.sampled_from(["/twilio/status", "/twilio/amd"]),
    attempt_id=st.one_of(st.none(), st.just("REAL"), any_text),
)
def test_any_signed_callback_is_answered_cleanly_and_never_moves_an_attempt_back(
    callbacks, form, path, attempt_id
):
    url = str(callbacks.server.make_url(path))
    if attempt_id is not None:
        real = callbacks.attempt_id if attempt_id == "REAL" else attempt_id
        url += "?attempt_id=" + quote(real, safe="")
    params: dict[str, list[str]] = {}
    for name, value in form:
        params.setdefault(name, []).append(value)
    before = callbacks.loop.run_until_complete(
        attempts.get_attempt(callbacks.services.store, callbacks.attempt_id)
    )
    signature = compute_twilio_signature(TWILIO_AUTH_TOKEN, url, params)
    status, _, text = callbacks.post(
        url, urlencode(form).encode(), {**FORM, "X-Twilio-Signature": signature}
    )
    assert status in (204, 400, 404), (status, text)
    after = callbacks.loop.run_until_complete(
        attempts.get_attempt(callbacks.services.store, callbacks.attempt_id)
    )
    assert attempts.STATE_ORDER[after["state"]] >= attempts.STATE_ORDER[before["state"]]
    if before["state"] == "ended":
        assert (after["outcome"], after["ended_at"]) == (before["outcome"], before["ended_at"])
