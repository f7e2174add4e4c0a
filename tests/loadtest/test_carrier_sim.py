"""The carrier simulator plays Twilio's outbound calls faithfully, over real sockets.

Calls are placed with plain HTTP requests shaped as Twilio's documentation shows them (not through
the voicebot client, which has its own tests), and the callbacks go to a small receiver that checks
every ``X-Twilio-Signature`` with the server's own validator.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from loadtest.caller import CandidateAnswer
from loadtest.carrier_sim import (
    DEFAULT_GREETING,
    CallbackFaults,
    CarrierSimulator,
    Scenario,
    mixed_scenarios,
)
from tests.twilio_receiver import TwilioReceiver, has_tone, is_voiced
from voicebot.audio.frames import read_wav, to_phone_ulaw

CALLER_ID = "+14155550100"
EVENTS = ("initiated", "ringing", "answered", "completed")
SPEECH = Path(DEFAULT_GREETING).parent / "en_speaker_a.wav"

pytestmark = pytest.mark.skipif(
    not SPEECH.exists(), reason="../shared/audio is not beside the checkout"
)


def spoken_answer() -> CandidateAnswer:
    pcm, rate = read_wav(SPEECH)
    ulaw = to_phone_ulaw(pcm, rate)
    return CandidateAnswer(name=SPEECH.name, ulaw=ulaw, voice_end_secs=len(ulaw) / 8000)


@pytest.fixture
async def receiver():
    rx = TwilioReceiver(CarrierSimulator().auth_token)
    await rx.start()
    yield rx
    await rx.stop()


@pytest.fixture
async def sim(receiver):  # stops before the receiver: the calls' last callbacks still land
    simulator = CarrierSimulator()
    await simulator.start()
    yield simulator
    await simulator.stop()


async def place(
    sim: CarrierSimulator,
    receiver: TwilioReceiver,
    to: str,
    *,
    auth: tuple[str, str] | None = None,
    amd: bool = True,
    events: tuple[str, ...] = EVENTS,
    ring_secs: int = 30,
) -> tuple[int, dict[str, Any]]:
    """POST Calls.json as Twilio's docs show it; the HTTP status and the JSON answered."""
    form: list[tuple[str, str]] = [
        ("To", to),
        ("From", CALLER_ID),
        ("Url", f"{receiver.base_url}/twilio/voice?interview_id=iv_1"),
        ("StatusCallback", f"{receiver.base_url}/twilio/status?interview_id=iv_1"),
        ("StatusCallbackMethod", "POST"),
        *(("StatusCallbackEvent", e) for e in events),
        ("Timeout", str(ring_secs)),
    ]
    if amd:
        form += [
            ("MachineDetection", "DetectMessageEnd"),
            ("AsyncAmd", "true"),
            ("AsyncAmdStatusCallback", f"{receiver.base_url}/twilio/amd?interview_id=iv_1"),
        ]
    user, password = auth or (sim.account_sid, sim.auth_token)
    url = f"{sim.api_url}/2010-04-01/Accounts/{sim.account_sid}/Calls.json"
    async with aiohttp.ClientSession() as http:
        async with http.post(url, data=form, auth=aiohttp.BasicAuth(user, password)) as response:
            return response.status, await response.json()


async def hang_up(sim: CarrierSimulator, sid: str, status: str = "completed") -> tuple[int, dict]:
    url = f"{sim.api_url}/2010-04-01/Accounts/{sim.account_sid}/Calls/{sid}.json"
    async with aiohttp.ClientSession() as http:
        async with http.post(
            url,
            data={"Status": status},
            auth=aiohttp.BasicAuth(sim.account_sid, sim.auth_token),
        ) as response:
            return response.status, await response.json()


def statuses(receiver: TwilioReceiver, sid: str) -> list[tuple[str, str]]:
    """(SequenceNumber, CallStatus) of the status callbacks that arrived, in arrival order."""
    return [
        (a.params["SequenceNumber"], a.params["CallStatus"])
        for a in receiver.received("/twilio/status", sid)
    ]


async def placed_and_done(sim, receiver, to, **kwargs) -> str:
    status, body = await place(sim, receiver, to, **kwargs)
    assert status == 201, body
    async with asyncio.timeout(60):
        await sim.wait_done(body["sid"])
    return body["sid"]


async def test_a_person_answers_hears_the_prompt_and_answers_with_speech(sim, receiver):
    sim.scenarios["+15550001001"] = Scenario("answer", answers=[spoken_answer()])
    receiver.hang_up_after_secs = 1.0  # the bot ends the call once it heard a second of answer

    status, body = await place(sim, receiver, "+15550001001")

    assert status == 201
    assert body["sid"].startswith("CA") and len(body["sid"]) == 34
    assert body["status"] == "queued" and body["direction"] == "outbound-api"
    assert body["to"] == "+15550001001" and body["from"] == CALLER_ID
    async with asyncio.timeout(60):
        call = await sim.wait_done(body["sid"])
    sid = body["sid"]
    assert statuses(receiver, sid) == [
        ("0", "initiated"),
        ("1", "ringing"),
        ("2", "in-progress"),
        ("3", "completed"),
    ]
    arrivals = receiver.arrivals
    assert arrivals and all(a.signature_valid for a in arrivals)
    completed = receiver.received("/twilio/status", sid)[-1].params
    assert completed["CallbackSource"] == "call-progress-events"
    assert completed["Direction"] == "outbound-api"
    assert completed["To"] == "+15550001001" and completed["From"] == CALLER_ID
    assert int(completed["CallDuration"]) >= 1
    assert completed["Timestamp"].endswith("+0000")
    [voice] = receiver.received("/twilio/voice", sid)
    assert voice.params["CallStatus"] == "in-progress"
    [amd] = receiver.received("/twilio/amd", sid)
    assert amd.params["AnsweredBy"] == "human"
    assert int(amd.params["MachineDetectionDuration"]) >= 0
    # the stream: the caller heard the prompt through (echoed its mark), then spoke
    log = receiver.streams[sid]
    assert log.parameters == {"call": sid}
    [(echoed_at, name)] = log.marks_echoed
    assert name == "q1:await"
    assert is_voiced(log.audio_after(echoed_at))
    assert call.status == "completed" and call.result is not None
    assert call.result.closed_by == "server"


async def test_no_answer_rings_out_after_the_requested_timeout(sim, receiver):
    sim.scenarios["+15550001002"] = Scenario("no_answer")

    sid = await placed_and_done(sim, receiver, "+15550001002", ring_secs=1)

    assert statuses(receiver, sid) == [("0", "initiated"), ("1", "ringing"), ("2", "no-answer")]
    completed = receiver.received("/twilio/status", sid)[-1].params
    assert completed["CallDuration"] == "0"
    assert not receiver.received("/twilio/voice", sid)
    assert not receiver.received("/twilio/amd", sid)


@pytest.mark.parametrize("kind,final", [("busy", "busy"), ("failed", "failed")])
async def test_busy_and_failed_calls_end_without_being_answered(sim, receiver, kind, final):
    sim.scenarios["+15550001003"] = Scenario(kind)

    sid = await placed_and_done(sim, receiver, "+15550001003")

    assert statuses(receiver, sid) == [("0", "initiated"), ("1", final)]
    assert all(a.signature_valid for a in receiver.arrivals)
    assert not receiver.received("/twilio/voice", sid)


async def test_the_person_hangs_up_mid_interview(sim, receiver):
    sim.scenarios["+15550001004"] = Scenario(
        "hangup_after", answers=[spoken_answer()], hangup_after_secs=2.0
    )

    sid = await placed_and_done(sim, receiver, "+15550001004")

    log = receiver.streams[sid]
    async with asyncio.timeout(10):
        await log.closed.wait()
    assert log.stopped  # the carrier sent ``stop``: the callee hung up, not the bot
    assert statuses(receiver, sid)[-1] == ("3", "completed")
    assert sim.calls[sid].result.closed_by == "timeout"


async def test_voicemail_plays_greeting_and_beep_then_amd_says_machine_after_the_beep(
    sim, receiver
):
    sim.scenarios["+15550001005"] = Scenario("voicemail", amd_secs=0.2)

    status, body = await place(sim, receiver, "+15550001005")
    assert status == 201
    sid = body["sid"]
    async with asyncio.timeout(30):
        amd = await receiver.wait_for("/twilio/amd", sid)
    assert len(receiver.received("/twilio/amd", sid)) == 1
    assert amd.params["AnsweredBy"] == "machine_end_beep"
    assert amd.signature_valid
    log = receiver.streams[sid]
    heard = log.audio_after(0)
    assert is_voiced(heard)  # the spoken greeting
    assert has_tone(heard, 1000)  # and the beep, before the verdict arrived
    beep_heard_at = max(at for at, payload in log.inbound if has_tone_frame(payload))
    assert amd.at > beep_heard_at

    code, updated = await hang_up(sim, sid)  # the bot hangs up on the machine

    assert code == 200 and updated["sid"] == sid and updated["status"] == "completed"
    async with asyncio.timeout(30):
        await sim.wait_done(sid)
        await log.closed.wait()
    assert log.stopped  # the stream stopped
    assert statuses(receiver, sid)[-1] == ("3", "completed")
    assert receiver.received("/twilio/status", sid)[-1].params["AnsweredBy"] == "machine_end_beep"


def has_tone_frame(payload: bytes) -> bool:
    from voicebot.audio.codec import ulaw_decode

    pcm = ulaw_decode(payload * 5).astype("float32")  # 100 ms of the same frame
    return has_tone(pcm, 1000)


async def test_hanging_up_a_ringing_call_cancels_it_and_a_second_hang_up_is_21220(sim, receiver):
    sim.scenarios["+15550001006"] = Scenario("no_answer")
    status, body = await place(sim, receiver, "+15550001006", ring_secs=60)
    assert status == 201
    sid = body["sid"]
    async with asyncio.timeout(10):
        await receiver.wait_for("/twilio/status", sid, "ringing")

    code, updated = await hang_up(sim, sid, "canceled")
    async with asyncio.timeout(10):
        await sim.wait_done(sid)
    again, error = await hang_up(sim, sid)

    assert code == 200 and updated["status"] == "canceled"
    assert statuses(receiver, sid) == [("0", "initiated"), ("1", "ringing"), ("2", "canceled")]
    assert again == 400 and error["code"] == 21220 and error["status"] == 400
    unknown, error = await hang_up(sim, "CA" + "9" * 32)
    assert unknown == 404 and error["code"] == 20404


async def test_only_the_completed_callback_when_no_events_are_asked(sim, receiver):
    sim.scenarios["+15550001007"] = Scenario("busy")

    sid = await placed_and_done(sim, receiver, "+15550001007", events=())

    assert statuses(receiver, sid) == [("0", "busy")]


async def test_callbacks_duplicated_late_out_of_order_or_missing_as_configured(sim, receiver):
    sim.scenarios["+15550001008"] = Scenario(
        "no_answer",
        faults=CallbackFaults(
            drop=frozenset({"initiated"}),
            duplicate=frozenset({"completed"}),
            delay_secs={"ringing": 1.5},
        ),
    )

    sid = await placed_and_done(sim, receiver, "+15550001008", ring_secs=1)

    # ringing (sequence 1) was sent late: it arrives after the two copies of the end (sequence 2)
    assert statuses(receiver, sid) == [("2", "no-answer"), ("2", "no-answer"), ("1", "ringing")]
    dropped = [d for d in sim.deliveries_for(sid) if d.dropped]
    assert [d.event for d in dropped] == ["initiated"]
    assert all(d.status == 200 for d in sim.deliveries_for(sid) if not d.dropped)


async def test_the_api_demands_basic_auth_with_the_account_token(sim, receiver):
    status, body = await place(sim, receiver, "+15550001009", auth=(sim.account_sid, "wrong"))

    assert status == 401
    assert body == {
        "code": 20003,
        "message": "Authenticate",
        "more_info": "https://www.twilio.com/docs/errors/20003",
        "status": 401,
    }
    assert not sim.calls


async def test_injected_api_faults_answer_the_next_requests_then_stop(sim, receiver):
    sim.scenarios["+15550001010"] = Scenario("busy")
    sim.fail_next(429, retry_after=3)
    sim.fail_next(500)

    first = await place(sim, receiver, "+15550001010")
    second = await place(sim, receiver, "+15550001010")
    third = await place(sim, receiver, "+15550001010")

    assert first[0] == 429 and first[1]["code"] == 20429
    assert second[0] == 500 and second[1]["code"] == 20500
    assert third[0] == 201
    assert [r.status for r in sim.requests] == [429, 500, 201]
    assert len(sim.calls) == 1  # the refused requests placed nothing


async def test_a_hung_request_is_never_answered(sim, receiver):
    sim.hang_next()

    with pytest.raises(TimeoutError):
        async with asyncio.timeout(1.0):
            await place(sim, receiver, "+15550001011")

    assert len(sim.requests) == 1 and not sim.calls


async def test_invalid_numbers_are_refused_as_twilio_does(sim, receiver):
    status, body = await place(sim, receiver, "0123")

    assert status == 400 and body["code"] == 21211
    assert not sim.calls


async def test_a_lost_answer_can_hide_a_placed_call(sim, receiver):
    """The fault a retrying client must survive: Twilio placed the call, its answer never came."""
    sim.scenarios["+15550001012"] = Scenario("busy")
    sim.hang_next(placed=True)

    with pytest.raises(TimeoutError):
        async with asyncio.timeout(1.0):
            await place(sim, receiver, "+15550001012")

    [call] = sim.calls.values()
    async with asyncio.timeout(10):
        await sim.wait_done(call.sid)
    assert statuses(receiver, call.sid) == [("0", "initiated"), ("1", "busy")]


async def test_synchronous_amd_tells_the_voice_webhook_who_answered(sim, receiver):
    sim.scenarios["+15550001013"] = Scenario("voicemail", amd_secs=0.1)

    url = f"{sim.api_url}/2010-04-01/Accounts/{sim.account_sid}/Calls.json"
    form = {
        "To": "+15550001013",
        "From": CALLER_ID,
        "Url": f"{receiver.base_url}/twilio/voice",
        "MachineDetection": "DetectMessageEnd",
    }
    async with aiohttp.ClientSession() as http:
        auth = aiohttp.BasicAuth(sim.account_sid, sim.auth_token)
        async with http.post(url, data=form, auth=auth) as response:
            sid = (await response.json())["sid"]
    async with asyncio.timeout(30):
        voice = await receiver.wait_for("/twilio/voice", sid)
    assert voice.params["AnsweredBy"] == "machine_end_beep"
    assert voice.signature_valid
    assert not receiver.received("/twilio/amd", sid)
    async with asyncio.timeout(30):
        log = await receiver.first_second(sid)
    assert not is_voiced(log.audio_after(0))  # the greeting played during detection, not here
    await hang_up(sim, sid)
    async with asyncio.timeout(30):
        await sim.wait_done(sid)


async def test_copies_of_a_callback_carry_one_idempotency_token(sim, receiver):
    sim.scenarios["+15550001014"] = Scenario(
        "busy", faults=CallbackFaults(duplicate=frozenset({"completed"}))
    )

    sid = await placed_and_done(sim, receiver, "+15550001014")

    first, second = [d for d in sim.deliveries_for(sid) if d.event == "completed"]
    assert first.idempotency_token == second.idempotency_token
    initiated = [d for d in sim.deliveries_for(sid) if d.event == "initiated"]
    assert initiated[0].idempotency_token != first.idempotency_token


async def test_the_report_counts_outcomes_concurrency_and_errors(sim, receiver):
    numbers = [f"+1555000200{i}" for i in range(6)]
    sim.scenarios.update(
        mixed_scenarios(
            numbers,
            [(Scenario("busy"), 1), (Scenario("failed"), 1), (Scenario("no_answer"), 1)],
            seed=3,
        )
    )
    sim.fail_next(429)
    assert (await place(sim, receiver, numbers[0]))[0] == 429

    placed = await asyncio.gather(*(place(sim, receiver, n, ring_secs=1) for n in numbers))
    async with asyncio.timeout(30):
        for _, body in placed:
            await sim.wait_done(body["sid"])
    report = sim.report()

    assert report.calls == 6
    assert report.outcomes == {"busy": 2, "failed": 2, "no-answer": 2}
    assert report.max_concurrent_calls == 6  # all were placed before the first ended
    assert report.max_concurrent_up == 0
    assert report.api_errors == {429: 1}
    assert report.callbacks_unanswered == 0
    assert report.to_json_dict()["voice_to_voice_p95"] is None


def test_mixed_scenarios_follow_the_weights_and_the_seed():
    numbers = [f"+1555100{i:04d}" for i in range(60)]
    mix = [(Scenario("answer"), 0.5), (Scenario("no_answer"), 0.3), (Scenario("voicemail"), 0.2)]

    assigned = mixed_scenarios(numbers, mix, seed=1)

    kinds = [s.kind for s in assigned.values()]
    assert (kinds.count("answer"), kinds.count("no_answer"), kinds.count("voicemail")) == (
        30,
        18,
        12,
    )
    assert assigned == mixed_scenarios(numbers, mix, seed=1)
    assert assigned != mixed_scenarios(numbers, mix, seed=2)
