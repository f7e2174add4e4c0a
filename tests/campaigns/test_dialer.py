"""The dialer: claiming due interviews, the limits it keeps, carrier errors, outcomes, events.

A real SQLite store and embedded bus, a fake carrier (``dialer_fakes.FakeCarrier``), a fake
clock and calling hours the test sets. What is asserted is what a candidate or the HR system
would notice: who is called (once), when the next call is due, how the interview ends, which
events are sent.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from voicebot.campaigns import attempts
from voicebot.campaigns import dialer as dialer_module
from voicebot.campaigns.dialer import Dialer
from voicebot.telephony.outbound import CarrierError

from .dialer_fakes import (
    FakeCarrier,
    FakeClock,
    FakeSchedule,
    add_campaign,
    add_candidate,
    attempt_rows,
    close_services,
    events_of,
    make_services,
)

# The fixtures (services, dialer, carrier, clock, schedule) live beside the fakes, not in a
# conftest.py the campaigns part's tests may bring too.
pytest_plugins = ["tests.campaigns.dialer_fixtures"]
ROOT = Path(__file__).resolve().parents[2]


def _metric(services, name: str, **labels: str) -> float:
    return services.metrics.registry.get_sample_value(name, labels or None) or 0.0


async def _place(dialer: Dialer) -> int:
    started = await dialer.tick()
    await dialer.wait_placed()
    return started


# -- placing ----------------------------------------------------------------------------------


async def test_a_due_interview_is_called_once_with_the_callbacks_the_carrier_needs(
    services, dialer, carrier, clock
):
    campaign = await add_campaign(services.store, max_attempts=3, caller_id="+15559990000")
    interview = await add_candidate(services.store, campaign, due_at=clock() - 1)
    later = await add_candidate(services.store, campaign, due_at=clock() + 600)

    assert await _place(dialer) == 1
    assert await _place(dialer) == 0  # its attempt is open: not called again

    [call] = carrier.placed
    assert call.to == "+15551230000"
    assert call.from_ == "+15559990000"  # the campaign's caller id over the server's
    url = urlsplit(call.url)
    assert url.path == "/twilio/voice" and parse_qs(url.query) == {"interview_id": [interview]}
    assert call.status_callback.startswith("https://bot.example.com/twilio/status?attempt_id=da_")
    assert call.amd_callback.startswith("https://bot.example.com/twilio/amd?attempt_id=da_")
    assert call.ring_timeout_secs == 30
    [attempt] = await attempt_rows(services.store)
    assert attempt["interview_id"] == interview and attempt["number"] == 1
    assert (attempt["state"], attempt["call_sid"]) == ("dialing", "CA0001")
    assert attempt["placed_at"] == clock() and attempt["lease_owner"] == "proc_a"
    assert await attempt_rows(services.store, later) == []
    assert _metric(services, "voicebot_dialer_calls_placed_total") == 1


async def test_a_paused_campaign_and_an_interview_without_a_campaign_are_not_called(
    services, dialer, carrier, clock
):
    paused = await add_campaign(services.store, paused=True)
    await add_candidate(services.store, paused, due_at=clock() - 1)
    await services.store.create_interview(
        job_id="customer_service_en", candidate_id="c", candidate_phone="+15550001111"
    )
    assert await _place(dialer) == 0
    assert carrier.placed == []


async def test_two_processes_on_one_store_never_call_one_candidate_twice(tmp_path, clock):
    """Two dialers, each with its own store connection to one SQLite file, race for 40 due
    interviews: every candidate is called exactly once."""
    one = await make_services(tmp_path / "data")
    two = await make_services(tmp_path / "data")
    try:
        campaign = await add_campaign(one.store, max_concurrent=1000)
        interviews = {
            await add_candidate(one.store, campaign, due_at=clock() - 1, phone=f"+1555100{n:04d}")
            for n in range(40)
        }
        carriers = [FakeCarrier(sid_prefix="CAa"), FakeCarrier(sid_prefix="CAb")]
        dialers = [
            Dialer(s, c, schedule=FakeSchedule(), clock=clock, owner=owner)
            for s, c, owner in ((one, carriers[0], "proc_a"), (two, carriers[1], "proc_b"))
        ]
        for _ in range(10):
            await asyncio.gather(*(d.tick() for d in dialers))
            clock.advance(1)
        await asyncio.gather(*(d.wait_placed() for d in dialers))

        called = [call.url.rsplit("=", 1)[1] for c in carriers for call in c.placed]
        assert sorted(called) == sorted(interviews)  # each once, none missed
        assert all(c.placed for c in carriers)  # both took part
        rows = await attempt_rows(one.store)
        assert len(rows) == 40 and {row["number"] for row in rows} == {1}
    finally:
        await close_services(two)
        await close_services(one)


async def test_outside_calling_hours_the_call_waits_for_the_window(
    services, dialer, carrier, clock, schedule
):
    campaign = await add_campaign(services.store)
    interview = await add_candidate(services.store, campaign, due_at=clock() - 1)
    schedule.open = False

    assert await _place(dialer) == 0
    stored = await services.store._one(
        "SELECT next_attempt_at FROM interviews WHERE id = ?", (interview,)
    )
    assert stored["next_attempt_at"] == clock() + schedule.window_opens_in
    assert carrier.placed == []

    schedule.open = True
    clock.advance(schedule.window_opens_in)
    assert await _place(dialer) == 1


async def test_a_campaign_never_has_more_calls_up_than_its_max_concurrent(
    services, dialer, carrier, clock
):
    campaign = await add_campaign(services.store, max_concurrent=2)
    for n in range(5):
        await add_candidate(services.store, campaign, due_at=clock() - 1, phone=f"+155520000{n}")

    assert await _place(dialer) == 2
    clock.advance(10)
    assert await _place(dialer) == 0

    first = (await attempt_rows(services.store))[0]
    await dialer.on_status(first["id"], {"CallSid": first["call_sid"], "CallStatus": "busy"})
    clock.advance(10)
    assert await _place(dialer) == 1
    assert len(carrier.placed) == 3


async def test_the_server_wide_cap_counts_live_calls_too(tmp_path, clock):
    services = await make_services(tmp_path / "data", dialer_max_calls=3)
    try:
        carrier = FakeCarrier()
        dialer = Dialer(services, carrier, schedule=FakeSchedule(), clock=clock, owner="proc_a")
        campaign = await add_campaign(services.store, max_concurrent=100)
        for n in range(6):
            await add_candidate(services.store, campaign, due_at=clock() - 1, phone=f"+15553{n}")
        services.call_claims.claim("CAlive1", "iv_inbound1")
        services.call_claims.claim("CAlive2", "iv_inbound2")

        assert await _place(dialer) == 1  # 3 - 2 live calls
        clock.advance(10)
        assert await _place(dialer) == 0
        assert _metric(services, "voicebot_dialer_held_back_total", reason="at_capacity") >= 1
    finally:
        await close_services(services)


async def test_the_rate_limit_places_no_more_calls_per_second_than_allowed(tmp_path):
    clock = FakeClock()
    services = await make_services(tmp_path / "data", dialer_calls_per_sec=1.0)
    try:
        dialer = Dialer(services, FakeCarrier(), schedule=FakeSchedule(), clock=clock)
        campaign = await add_campaign(services.store, max_concurrent=100)
        for n in range(5):
            await add_candidate(services.store, campaign, due_at=clock() - 1, phone=f"+15554{n}")
        assert await _place(dialer) == 1
        assert await _place(dialer) == 0  # same second
        clock.advance(0.5)
        assert await _place(dialer) == 0
        clock.advance(0.5)
        assert await _place(dialer) == 1
        clock.advance(10)  # a quiet spell saves no more than one second's calls
        assert await _place(dialer) == 1
    finally:
        await close_services(services)


async def test_the_dialer_holds_back_while_the_server_is_loaded(services, carrier, clock):
    backlog = {"finals": 5}
    dialer = Dialer(
        services,
        carrier,
        schedule=FakeSchedule(),
        clock=clock,
        asr_backlog=lambda: backlog["finals"],
    )
    campaign = await add_campaign(services.store)
    await add_candidate(services.store, campaign, due_at=clock() - 1)

    assert await _place(dialer) == 0
    assert _metric(services, "voicebot_dialer_held_back_total", reason="asr_backlog") == 1
    backlog["finals"] = 0
    dialer.loop_lag = 0.2  # the loop woke 200 ms late
    assert await _place(dialer) == 0
    assert _metric(services, "voicebot_dialer_held_back_total", reason="loop_lag") == 1
    dialer.loop_lag = 0.0
    assert await _place(dialer) == 1


async def test_a_number_on_the_do_not_call_list_is_never_dialed_in_any_campaign(
    services, dialer, carrier, clock
):
    first = await add_campaign(services.store)
    second = await add_campaign(services.store)
    listed = "+15557770000"
    a = await add_candidate(services.store, first, due_at=clock() - 1, phone=listed)
    b = await add_candidate(services.store, second, due_at=clock() - 1, phone=listed)
    other = await add_candidate(services.store, second, due_at=clock() - 1)
    # Listed after the import: the check is at claim time.
    from voicebot.campaigns.store import campaign_store

    await (await campaign_store(services)).do_not_call.add(
        listed, reason="asked", source="api", added_by="admin"
    )

    assert await _place(dialer) == 1
    assert [call.to for call in carrier.placed] == ["+15551230000"]
    for interview in (a, b):
        stored = await services.store.get_interview(interview)
        assert stored["status"] == "opted_out" and stored["next_attempt_at"] is None
    assert await attempt_rows(services.store, other) != []
    assert _metric(services, "voicebot_dialer_skipped_total", reason="do_not_call") == 2


# -- carrier errors ---------------------------------------------------------------------------


async def test_a_refused_credential_releases_the_attempt_and_pauses_dialing(
    services, dialer, carrier, clock, caplog
):
    campaign = await add_campaign(services.store, max_concurrent=10)
    interview = await add_candidate(services.store, campaign, due_at=clock() - 1)
    carrier.errors.append(CarrierError("auth", "401 Unauthorized", status=401))

    await _place(dialer)
    assert carrier.placed == []
    assert "DIALER PAUSED" in caplog.text
    assert await attempt_rows(services.store, interview) == []  # released, not counted
    assert _metric(services, "voicebot_dialer_carrier_errors_total", kind="auth") == 1
    clock.advance(60)
    assert await _place(dialer) == 0  # still paused
    assert _metric(services, "voicebot_dialer_held_back_total", reason="carrier_auth") >= 1
    clock.advance(dialer_module.AUTH_PAUSE_SECS)
    assert await _place(dialer) == 1
    [attempt] = await attempt_rows(services.store, interview)
    assert attempt["number"] == 1  # the refused request was not the candidate's attempt


async def test_a_429_slows_the_dialer_and_honours_retry_after(services, carrier, clock):
    dialer = Dialer(services, carrier, schedule=FakeSchedule(), clock=clock)
    campaign = await add_campaign(services.store, max_concurrent=10)
    interview = await add_candidate(services.store, campaign, due_at=clock() - 1)
    carrier.errors.append(CarrierError("rate_limited", "429", status=429, retry_after_secs=20))
    rate = dialer.bucket.rate

    await _place(dialer)
    assert await attempt_rows(services.store) == []
    assert dialer.bucket.rate == rate / 2
    clock.advance(19)
    assert await _place(dialer) == 0
    clock.advance(2)
    assert await _place(dialer) == 1
    [attempt] = await attempt_rows(services.store, interview)
    assert attempt["number"] == 1 and attempt["state"] == "dialing"
    assert _metric(services, "voicebot_dialer_carrier_errors_total", kind="rate_limited") == 1


async def test_a_failing_or_silent_carrier_loses_no_attempt(
    services, dialer, carrier, clock, monkeypatch
):
    monkeypatch.setattr(dialer_module, "PLACE_TIMEOUT_SECS", 0.05)
    campaign = await add_campaign(services.store)
    interview = await add_candidate(services.store, campaign, due_at=clock() - 1)
    carrier.errors.append(CarrierError("unavailable", "500 Internal Server Error", status=500))
    carrier.errors.append(asyncio.Event().wait())  # then the carrier does not answer at all

    await _place(dialer)
    assert await attempt_rows(services.store) == []
    clock.advance(dialer_module.BACKOFF_SECS[0] + 1)
    await _place(dialer)
    assert await attempt_rows(services.store) == []
    clock.advance(dialer_module.BACKOFF_SECS[1] + 1)
    await _place(dialer)
    [attempt] = await attempt_rows(services.store, interview)
    assert (attempt["number"], attempt["state"]) == (1, "dialing")
    assert _metric(services, "voicebot_dialer_carrier_errors_total", kind="unavailable") == 2


async def test_429s_with_retry_after_do_not_lengthen_the_back_off_of_a_following_500(
    services, dialer, carrier, clock
):
    # Found end to end: two honoured 429s made the first 500 wait 60 s, the second 300 s.
    campaign = await add_campaign(services.store)
    interview = await add_candidate(services.store, campaign, due_at=clock() - 1)
    for _ in range(2):
        carrier.errors.append(CarrierError("rate_limited", "429", status=429, retry_after_secs=1))
    carrier.errors.append(CarrierError("unavailable", "500 Internal Server Error", status=500))

    for _ in range(2):
        await _place(dialer)
        clock.advance(1.5)
    await _place(dialer)  # the 500
    assert await attempt_rows(services.store) == []
    clock.advance(dialer_module.BACKOFF_SECS[0] + 1)
    assert await _place(dialer) == 1
    [attempt] = await attempt_rows(services.store, interview)
    assert attempt["number"] == 1


async def test_a_number_the_carrier_refuses_is_a_failed_attempt(
    services, dialer, carrier, clock, caplog
):
    campaign = await add_campaign(services.store, max_attempts=3)
    interview = await add_candidate(services.store, campaign, due_at=clock() - 1)
    refusal = "21211: The 'To' number +1 555-123-0000 is not a valid phone number."
    carrier.errors.append(CarrierError("rejected", refusal, status=400))

    await _place(dialer)
    assert "21211" in caplog.text and "<number>" in caplog.text
    assert "555" not in caplog.text  # the candidate's number stays out of the log
    [attempt] = await attempt_rows(services.store, interview)
    assert (attempt["state"], attempt["outcome"]) == ("ended", "failed")
    stored = await services.store.get_interview(interview)
    assert stored["next_attempt_at"] == clock() + 3600  # the schedule's next attempt


# -- outcomes and events -----------------------------------------------------------------------


async def _dialed(services, dialer, clock, **policy) -> tuple[str, dict]:
    campaign = await add_campaign(services.store, **policy)
    interview = await add_candidate(services.store, campaign, due_at=clock() - 1)
    await _place(dialer)
    [attempt] = await attempt_rows(services.store, interview)
    return interview, attempt


async def test_no_answer_schedules_the_next_attempt_and_tells_the_hr_system(
    services, dialer, clock, schedule
):
    interview, attempt = await _dialed(services, dialer, clock, max_attempts=3)
    sid = attempt["call_sid"]
    for status in ("initiated", "ringing"):
        assert await dialer.on_status(attempt["id"], {"CallSid": sid, "CallStatus": status})
    clock.advance(30)
    callback = {"CallSid": sid, "CallStatus": "no-answer", "CallDuration": "0"}
    assert await dialer.on_status(attempt["id"], callback) == "applied"
    assert await dialer.on_status(attempt["id"], callback) == "repeat"  # carriers retry
    assert await dialer.on_status(attempt["id"], {"CallSid": sid, "CallStatus": "ringing"}) == (
        "repeat"  # late and out of order: nothing moves back
    )

    [ended] = await attempt_rows(services.store, interview)
    assert (ended["state"], ended["outcome"], ended["ended_at"]) == ("ended", "no_answer", clock())
    stored = await services.store.get_interview(interview)
    assert stored["status"] == "pending"
    assert stored["next_attempt_at"] == clock() + 3600
    assert schedule.asked == [("America/Chicago", 1)]  # the candidate's own time zone

    assert await dialer.send_progress() == 1  # the campaign's counts, in the next batch
    events = await events_of(services)
    types = [e.type for e in events]
    assert types == ["dial.attempted", "candidate.status_changed", "campaign.progress"]
    dialed = events[0].data
    assert (dialed["interview_id"], dialed["outcome"], dialed["attempt"]) == (
        interview,
        "no_answer",
        1,
    )
    assert dialed["max_attempts"] == 3 and dialed["call_sid"] == sid
    assert dialed["next_attempt_at"] == events[1].data["next_attempt_at"] is not None
    assert events[1].data["status"] == "no_answer"
    assert events[2].data["attempts"] == {"no_answer": 1}

    # The next attempt, when due, is number 2.
    clock.advance(3600)
    await _place(dialer)
    numbers = [row["number"] for row in await attempt_rows(services.store, interview)]
    assert numbers == [1, 2]


async def test_after_the_last_attempt_the_interview_is_unreachable(services, dialer, clock):
    interview, attempt = await _dialed(services, dialer, clock, max_attempts=2)
    await dialer.on_status(attempt["id"], {"CallSid": attempt["call_sid"], "CallStatus": "busy"})
    clock.advance(3600)
    await _place(dialer)
    second = (await attempt_rows(services.store, interview))[1]
    await dialer.on_status(second["id"], {"CallSid": second["call_sid"], "CallStatus": "failed"})

    stored = await services.store.get_interview(interview)
    assert stored["status"] == "unreachable" and stored["next_attempt_at"] is None
    clock.advance(10 * 86400)
    assert await _place(dialer) == 0
    events = [e for e in await events_of(services) if e.type != "campaign.progress"]
    assert [(e.type, e.data.get("outcome") or e.data.get("status")) for e in events] == [
        ("dial.attempted", "busy"),
        ("candidate.status_changed", "no_answer"),
        ("dial.attempted", "failed"),
        ("candidate.status_changed", "no_answer"),
        ("interview.unreachable", None),
    ]
    assert events[4].data["attempts"] == 2 and events[4].data["last_outcome"] == "failed"
    assert events[3].data["next_attempt_at"] is None


async def test_an_answered_call_ends_answered_even_when_callbacks_come_out_of_order(
    services, dialer, clock
):
    interview, attempt = await _dialed(services, dialer, clock)
    sid = attempt["call_sid"]
    completed = {"CallSid": sid, "CallStatus": "completed", "CallDuration": "184"}
    assert await dialer.on_status(attempt["id"], completed) == "applied"
    assert await dialer.on_status(attempt["id"], {"CallSid": sid, "CallStatus": "in-progress"}) == (
        "repeat"
    )
    [ended] = await attempt_rows(services.store, interview)
    assert (ended["state"], ended["outcome"]) == ("ended", "answered")
    stored = await services.store.get_interview(interview)
    assert stored["next_attempt_at"] is None  # the interview ran: no more calls
    await dialer.send_progress()
    types = [e.type for e in await events_of(services)]
    assert types == ["dial.attempted", "campaign.progress"]  # no "no_answer" status


async def test_a_status_callback_before_the_carriers_rest_answer_is_not_lost(
    services, dialer, carrier, clock
):
    """The carrier calls back (``ringing``, even ``busy``) before the dialer stored the sid."""
    campaign = await add_campaign(services.store)
    interview = await add_candidate(services.store, campaign, due_at=clock() - 1)
    original = carrier.place_call

    async def place_and_call_back_first(call):
        placed = await original(call)
        attempt_id = call.status_callback.rsplit("=", 1)[1]
        callback = {"CallSid": placed.call_sid, "CallStatus": "busy"}
        assert await dialer.on_status(attempt_id, callback) == "applied"
        return placed

    carrier.place_call = place_and_call_back_first
    await _place(dialer)
    [attempt] = await attempt_rows(services.store, interview)
    assert (attempt["state"], attempt["outcome"], attempt["call_sid"]) == (
        "ended",
        "busy",
        "CA0001",
    )
    assert carrier.hung_up == []


async def test_a_callback_for_a_call_we_did_not_place_is_unknown(services, dialer, clock):
    interview, attempt = await _dialed(services, dialer, clock)
    assert await dialer.on_status(None, {"CallSid": "CAnot_ours", "CallStatus": "busy"}) is None
    assert await dialer.on_status("da_nope", {"CallSid": "CA0001", "CallStatus": "busy"}) is None
    # The right attempt, another call's sid.
    assert (
        await dialer.on_status(attempt["id"], {"CallSid": "CA9999", "CallStatus": "busy"}) is None
    )
    assert await dialer.on_amd(None, {"CallSid": "CAnot_ours", "AnsweredBy": "human"}) is None
    # By CallSid alone (no attempt id in the URL) it is found.
    assert await dialer.on_status(None, {"CallSid": "CA0001", "CallStatus": "busy"}) == "applied"


async def test_an_outcome_that_never_arrives_is_settled_after_the_timeout(services, dialer, clock):
    interview, attempt = await _dialed(services, dialer, clock, max_attempts=3)
    s = services.settings
    clock.advance(s.dialer_ring_timeout_secs + s.dialer_status_timeout_secs - 1)
    assert await dialer.settle_expired() == 0
    clock.advance(2)
    assert await dialer.settle_expired() == 1
    [ended] = await attempt_rows(services.store, interview)
    assert (ended["outcome"], ended["detail"]) == (
        "no_answer",
        '{"timeout": "no status callback came"}',
    )
    stored = await services.store.get_interview(interview)
    assert stored["next_attempt_at"] == clock() + 3600
    # The callback comes after all: it changes nothing.
    late = {"CallSid": attempt["call_sid"], "CallStatus": "completed", "CallDuration": "60"}
    assert await dialer.on_status(attempt["id"], late) == "repeat"


async def test_an_answered_machine_stops_the_interview_and_counts_as_voicemail(
    services, dialer, carrier, clock
):
    interview, attempt = await _dialed(services, dialer, clock, max_attempts=3)
    sid = attempt["call_sid"]
    await dialer.on_status(attempt["id"], {"CallSid": sid, "CallStatus": "in-progress"})

    class Session:
        stopped = 0

        async def stop_for_voicemail(self):
            Session.stopped += 1

    services.sessions[sid] = Session()
    amd = {"CallSid": sid, "AnsweredBy": "machine_end_beep"}
    assert await dialer.on_amd(attempt["id"], amd) == "applied"
    assert await dialer.on_amd(attempt["id"], amd) == "repeat"
    await dialer.wait_voicemails()
    assert Session.stopped == 1
    del services.sessions[sid]
    completed = {"CallSid": sid, "CallStatus": "completed", "CallDuration": "21"}
    await dialer.on_status(attempt["id"], completed)
    [ended] = await attempt_rows(services.store, interview)
    assert (ended["outcome"], ended["answered_by"]) == ("voicemail", "machine_end_beep")
    stored = await services.store.get_interview(interview)
    assert stored["next_attempt_at"] == clock() + 3600


async def test_a_machine_on_a_call_held_by_another_process_is_hung_up(
    services, dialer, carrier, clock
):
    interview, attempt = await _dialed(services, dialer, clock)
    sid = attempt["call_sid"]
    await dialer.on_amd(attempt["id"], {"CallSid": sid, "AnsweredBy": "fax"})
    assert carrier.hung_up == [sid]
    human = await _dialed(services, dialer, clock)
    await dialer.on_amd(human[1]["id"], {"CallSid": human[1]["call_sid"], "AnsweredBy": "human"})
    assert carrier.hung_up == [sid]  # a person: the interview goes on


# -- leases of processes that died ------------------------------------------------------------


async def test_a_dead_process_attempts_are_taken_over_and_never_placed_twice(
    services, dialer, carrier, clock
):
    campaign = await add_campaign(services.store, max_attempts=3, max_concurrent=10)
    claimed_only = await add_candidate(services.store, campaign, due_at=clock() - 1)
    mid_place = await add_candidate(
        services.store, campaign, due_at=clock() - 1, phone="+15556660000"
    )
    now = clock()
    # The dead process claimed both, and was inside the carrier's REST call for the second.
    first = await attempts.claim_attempt(
        services.store, claimed_only, owner="proc_dead", lease_until=now + 30, now=now
    )
    second = await attempts.claim_attempt(
        services.store, mid_place, owner="proc_dead", lease_until=now + 30, now=now
    )
    await attempts.advance_attempt(services.store, second["id"], "placing", lease_until=now + 60)
    assert await _place(dialer) == 0  # both are held

    clock.advance(61)
    assert await dialer.settle_expired() == 2
    assert await attempts.get_attempt(services.store, first["id"]) is None  # never dialed
    placing = await attempts.get_attempt(services.store, second["id"])
    assert (placing["state"], placing["outcome"]) == ("ended", "failed")
    assert placing["detail"] == {"unknown": "process died while placing"}
    stored = await services.store.get_interview(mid_place)
    assert stored["next_attempt_at"] == clock() + 3600

    await _place(dialer)
    assert [call.to for call in carrier.placed] == ["+15551230000"]  # the claimed one, once
    [again] = await attempt_rows(services.store, claimed_only)
    assert again["number"] == 1


async def test_while_nothing_is_due_the_store_is_asked_less_often_but_nobody_waits_long(
    services, dialer, carrier, clock
):
    campaign = await add_campaign(services.store)
    for _ in range(5):  # nothing due: the reads space out, up to IDLE_POLL_SECS
        assert await _place(dialer) == 0
        clock.advance(dialer_module.TICK_SECS)
    await add_candidate(services.store, campaign, due_at=clock() - 1)
    clock.advance(dialer_module.IDLE_POLL_SECS)
    assert await _place(dialer) == 1  # at most IDLE_POLL_SECS late
    later = await add_candidate(services.store, campaign, due_at=clock() + 5, phone="+15550009")
    clock.advance(dialer_module.TICK_SECS)
    assert await _place(dialer) == 0
    clock.advance(5)
    dialer.wake()  # e.g. a campaign resumed: the next tick looks at once
    assert await _place(dialer) == 1
    assert carrier.placed[-1].url.endswith(later)


async def _answered(services, dialer, clock, attempt) -> None:
    sid = attempt["call_sid"]
    await dialer.on_status(attempt["id"], {"CallSid": sid, "CallStatus": "in-progress"})
    completed = {"CallSid": sid, "CallStatus": "completed", "CallDuration": "40"}
    await dialer.on_status(attempt["id"], completed)


async def test_a_candidate_who_hung_up_early_is_called_again_while_attempts_are_left(
    services, dialer, carrier, clock
):
    services.dialer = dialer
    interview, attempt = await _dialed(services, dialer, clock, max_attempts=2)
    await _answered(services, dialer, clock, attempt)
    await services.build_report(interview, "customer_service_en", "caller_hangup")

    stored = await services.store.get_interview(interview)
    assert stored["status"] == "incomplete" and stored["next_attempt_at"] == clock() + 3600
    clock.advance(3600)
    await _place(dialer)
    second = (await attempt_rows(services.store, interview))[1]
    assert second["number"] == 2

    # The report may come before the call's last callback: the call back stays scheduled.
    await dialer.on_status(
        second["id"], {"CallSid": second["call_sid"], "CallStatus": "in-progress"}
    )
    await services.build_report(interview, "customer_service_en", "caller_hangup")
    stored = await services.store.get_interview(interview)
    assert stored["next_attempt_at"] is None  # that was the last attempt
    await dialer.on_status(second["id"], {"CallSid": second["call_sid"], "CallStatus": "completed"})
    stored = await services.store.get_interview(interview)
    assert stored["status"] == "incomplete"  # reached: not unreachable


async def test_a_report_before_the_last_callback_keeps_the_call_back(
    services, dialer, carrier, clock
):
    services.dialer = dialer
    interview, attempt = await _dialed(services, dialer, clock, max_attempts=3)
    sid = attempt["call_sid"]
    await dialer.on_status(attempt["id"], {"CallSid": sid, "CallStatus": "in-progress"})
    clock.advance(60)
    await services.build_report(interview, "customer_service_en", "no_response")
    await dialer.on_status(attempt["id"], {"CallSid": sid, "CallStatus": "completed"})
    stored = await services.store.get_interview(interview)
    assert stored["status"] == "no_response" and stored["next_attempt_at"] == clock() + 3600


async def test_a_held_interview_that_ended_for_good_is_not_called_again(
    services, dialer, carrier, clock
):
    services.dialer = dialer
    interview, attempt = await _dialed(services, dialer, clock, max_attempts=3)
    await _answered(services, dialer, clock, attempt)
    await services.build_report(interview, "customer_service_en", "consent_declined")
    stored = await services.store.get_interview(interview)
    assert stored["status"] == "declined" and stored["next_attempt_at"] is None
    clock.advance(10 * 86400)
    assert await _place(dialer) == 0


async def test_the_dialer_task_places_due_calls_on_its_own_and_stops_cleanly(services, carrier):
    dialer = Dialer(services, carrier, schedule=FakeSchedule())  # the real clock
    campaign = await add_campaign(services.store)
    interview = await add_candidate(services.store, campaign, due_at=time.time() - 1)
    dialer.start()
    for _ in range(400):
        if carrier.placed:
            break
        await asyncio.sleep(0.05)
    await dialer.close()
    assert [call.url.rsplit("=", 1)[1] for call in carrier.placed] == [interview]
    assert _metric(services, "voicebot_internal_errors_total", where="dialer") == 0


async def test_a_candidate_on_the_line_is_not_dialed(services, dialer, carrier, clock):
    """They called the caller id back and are being interviewed: no second call rings."""
    campaign = await add_campaign(services.store)
    interview = await add_candidate(services.store, campaign, due_at=clock() - 1)
    await services.store.create_call(call_sid="CAinbound", interview_id=interview)
    await services.store.start_interview_attempt(interview)
    assert await _place(dialer) == 0
    await services.store.finish_call(
        "CAinbound", status="completed", end_reason="caller_hangup", duration_secs=30
    )
    await services.store.update_interview(interview, status="incomplete")
    clock.advance(dialer_module.IDLE_POLL_SECS)
    assert await _place(dialer) == 1


async def test_the_events_of_an_attempt_a_dead_process_ended_are_sent_once(services, dialer, clock):
    """The process ended the attempt (stored) and died before its events reached the bus."""
    interview, attempt = await _dialed(services, dialer, clock, max_attempts=3)
    assert await attempts.end_attempt(
        services.store,
        attempt,
        "busy",
        ended_at=clock(),
        next_attempt_at=clock() + 3600,
        report_by=clock() + dialer_module.REPORT_GRACE_SECS,
    )
    assert await dialer.report_left() == 0  # within the grace: its process may be at it
    clock.advance(dialer_module.REPORT_GRACE_SECS + 1)
    assert await dialer.report_left() == 1
    assert await dialer.report_left() == 0
    await dialer.report(attempt["id"])  # sent again by a slow process: the same ids
    assert await dialer.send_progress() == 1
    events = await events_of(services)
    assert [e.type for e in events] == [
        "dial.attempted",
        "candidate.status_changed",
        "campaign.progress",
    ]
    assert events[0].data["outcome"] == "busy" and events[0].data["interview_id"] == interview
    assert events[1].data["next_attempt_at"] is not None


async def test_a_dialer_killed_mid_campaign_places_nothing_twice_and_forgets_nothing(tmp_path):
    """A real process dials and is killed (SIGKILL) with one call ringing and two REST requests
    in flight; the next dialer on the store settles all three and places none of them again."""
    data = tmp_path / "data"
    services = await make_services(data)
    try:
        campaign = await add_campaign(services.store, max_attempts=3, max_concurrent=10)
        ringing = await add_candidate(services.store, campaign, due_at=1, phone="+15550000001")
        in_flight = {
            await add_candidate(services.store, campaign, due_at=1, phone=f"+1555000000{n}")
            for n in (2, 3)
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.campaigns.dialer_process",
            str(data),
            cwd=str(ROOT),
            stdout=asyncio.subprocess.PIPE,
        )
        lines = []
        try:
            async with asyncio.timeout(60):
                while len(lines) < 3:
                    lines.append((await process.stdout.readline()).decode().split())
        finally:
            process.kill()  # SIGKILL
            await process.wait()
        placed = [line for line in lines if line[0] == "placed"]
        assert len(placed) == 1 and sorted(line[0] for line in lines) == [
            "placed",
            "placing",
            "placing",
        ]

        clock = FakeClock(time.time() + 3)  # the dead process's 2 s leases have run out
        carrier = FakeCarrier()
        dialer = Dialer(services, carrier, schedule=FakeSchedule(), clock=clock, owner="proc_b")
        # The call that was ringing reports to the new process.
        _, attempt_id, sid = placed[0]
        busy = {"CallSid": sid, "CallStatus": "busy"}
        assert await dialer.on_status(attempt_id, busy) == "applied"
        assert await dialer.settle_expired() == 2
        await _place(dialer)
        assert carrier.placed == []  # nothing placed twice; each next attempt waits its delay

        for interview in (ringing, *in_flight):
            [attempt] = await attempt_rows(services.store, interview)
            stored = await services.store.get_interview(interview)
            assert stored["next_attempt_at"] == clock() + 3600  # not forgotten
            if interview == ringing:
                assert attempt["outcome"] == "busy"
            else:
                assert attempt["outcome"] == "failed"
                assert attempt["detail"] == '{"unknown": "process died while placing"}'
        clock.advance(3600)
        await _place(dialer)
        assert len(carrier.placed) == 3
        numbers = {row["number"] for row in await attempt_rows(services.store)}
        assert numbers == {1, 2}
    finally:
        await close_services(services)


async def test_a_dialed_candidate_can_be_erased(services, dialer, clock):
    """Their dial attempts (call sids, times) go with their interviews (PIPL/GDPR erasure)."""
    interview, attempt = await _dialed(services, dialer, clock)
    await dialer.on_status(attempt["id"], {"CallSid": attempt["call_sid"], "CallStatus": "busy"})
    stone = {
        "candidate": "c",
        "client": "admin",
        "erased_at": clock(),
        "erased_by": "api:admin",
        "classes": ["personal_fields"],
        "interview_ids": [interview],
        "calls": 0,
    }
    await services.store.erase_interviews([interview], [stone])
    assert await services.store.get_interview(interview) is None
    assert await attempt_rows(services.store) == []


async def test_a_dead_process_leases_are_not_waited_for_a_live_one_s_are_respected(
    services, dialer, carrier, clock
):
    campaign = await add_campaign(services.store, max_concurrent=10)
    store = services.store
    now = clock()
    await store.register_process("proc_gone", host="elsewhere", pid=1)
    await store.process_heartbeat("proc_gone", stopped=True)  # it stopped (or was restarted)
    await store.register_process("proc_alive", host="elsewhere", pid=2)  # heartbeat fresh
    held = {}
    for owner, phone in (("proc_gone", "+15550000010"), ("proc_alive", "+15550000020")):
        interview = await add_candidate(store, campaign, due_at=now - 1, phone=phone)
        attempt = await attempts.claim_attempt(
            store, interview, owner=owner, lease_until=now + 30, now=now
        )
        await attempts.advance_attempt(store, attempt["id"], "placing", lease_until=now + 60)
        held[owner] = attempt["id"]

    assert await dialer.settle_expired() == 1  # at once, not 60 s later
    gone = await attempts.get_attempt(store, held["proc_gone"])
    assert (gone["state"], gone["outcome"]) == ("ended", "failed")
    alive = await attempts.get_attempt(store, held["proc_alive"])
    assert alive["state"] == "placing"  # its process may still be talking to the carrier


async def test_a_call_a_dead_process_had_up_is_settled_at_once_not_after_its_lease(
    services, dialer, clock
):
    # Found end to end: after a SIGKILL mid-interview the restarted server settled the call
    # (server_restart) but left its attempt "up", counted as a call up, for 5 minutes.
    campaign = await add_campaign(services.store, max_attempts=1, max_concurrent=10)
    store = services.store
    now = clock()
    await store.register_process("proc_gone", host="elsewhere", pid=1)
    await store.process_heartbeat("proc_gone", stopped=True)
    interview = await add_candidate(store, campaign, due_at=now - 1)
    attempt = await attempts.claim_attempt(
        store, interview, owner="proc_gone", lease_until=now + 30, now=now
    )
    await attempts.advance_attempt(
        store, attempt["id"], "up", call_sid="CAdead", lease_until=now + dialer_module.UP_LEASE_SECS
    )

    assert await dialer.settle_expired() == 1  # at once: its call is not up any more
    ended = await attempts.get_attempt(store, attempt["id"])
    assert (ended["state"], ended["outcome"]) == ("ended", "answered")


def test_the_dialer_reads_the_stored_policy_through_the_calling_hours_module():
    """The stored JSON policy is judged by ``voicebot.campaigns.hours`` in the candidate's zone."""
    hours = dialer_module.CallingHours()
    policy = {"calling_hours": {"start": "09:00", "end": "20:00"}, "retry_after_secs": 600}
    # 2027-01-15 03:00 UTC is 11:00 in Shanghai and 22:00 the day before in New York.
    at = 1_800_000_000.0 - (1_800_000_000 % 86400) + 3 * 3600.0
    assert hours.in_window(policy, "Asia/Shanghai", at)
    assert not hours.in_window(policy, "America/New_York", at)
    assert hours.window_start(policy, "Asia/Shanghai", at) == at
    assert hours.window_start(policy, "America/New_York", at) > at
    assert hours.next_attempt_at(policy, "Asia/Shanghai", at, 1) == at + 600
    assert hours.next_attempt_at({}, "UTC", at, 1) >= at + 86400  # the default: 24 h
