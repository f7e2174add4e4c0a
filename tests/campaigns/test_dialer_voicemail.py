"""An answering machine on a dialed call: the running session stops at once, no interview.

The real :class:`CallSession` fed by the fake carrier of ``tests/call/test_session.py`` (real
store, fake VAD/ASR/prompts); the dialer gets the carrier's AMD verdict while the greeting plays.
"""

from __future__ import annotations

from tests.call.test_session import SCRIPT, Harness, ScriptedASR, _services
from voicebot.campaigns import attempts
from voicebot.campaigns.dialer import Dialer

from .dialer_fakes import FakeCarrier, FakeClock, FakeSchedule


async def _attempt_up(services, now: float, call_sid: str) -> tuple[str, dict]:
    """An interview of a campaign whose attempt was answered (``up``) as ``call_sid``."""
    await services.store.db.execute(
        "INSERT INTO campaigns (id, job_id, policy, created_at, updated_at)"
        " VALUES ('cmp_1', ?, '{\"max_attempts\": 3}', 0, 0)",
        (SCRIPT.id,),
    )
    interview, _ = await services.store.create_interview(
        job_id=SCRIPT.id, candidate_id="c1", candidate_phone="+15551230000"
    )
    await services.store.db.execute(
        "UPDATE interviews SET campaign_id = 'cmp_1', next_attempt_at = ? WHERE id = ?",
        (now - 1, interview["id"]),
    )
    await services.store.db.commit()
    attempt = await attempts.claim_attempt(
        services.store, interview["id"], owner="proc_a", lease_until=now + 30, now=now
    )
    await attempts.advance_attempt(services.store, attempt["id"], "up", call_sid=call_sid)
    return interview["id"], attempt


async def test_a_machine_verdict_stops_the_session_without_an_interview(tmp_path):
    async with _services(tmp_path) as services:
        clock = FakeClock()
        carrier = FakeCarrier()
        dialer = Dialer(services, carrier, schedule=FakeSchedule(), clock=clock)
        now = clock()
        await services.store.db.execute(
            "INSERT INTO campaigns (id, job_id, policy, created_at, updated_at)"
            " VALUES ('cmp_1', ?, '{\"max_attempts\": 3}', 0, 0)",
            (SCRIPT.id,),
        )
        interview, _ = await services.store.create_interview(
            job_id=SCRIPT.id, candidate_id="c1", candidate_phone="+15551230000"
        )
        await services.store.db.execute(
            "UPDATE interviews SET campaign_id = 'cmp_1', next_attempt_at = ? WHERE id = ?",
            (now - 1, interview["id"]),
        )
        await services.store.db.commit()
        attempt = await attempts.claim_attempt(
            services.store, interview["id"], owner="proc_a", lease_until=now + 30, now=now
        )
        await attempts.advance_attempt(services.store, attempt["id"], "up", call_sid="CA1")

        services.asr = ScriptedASR([])
        call = Harness(services, interview["id"], services.asr)
        await call.start()  # the greeting starts at once: a person would hear it
        await call.media(b"\xff" * 160)
        assert services.sessions.get("CA1") is call.session

        verdict = {"CallSid": "CA1", "AnsweredBy": "machine_end_beep"}
        assert await dialer.on_amd(attempt["id"], verdict) == "applied"
        await dialer.wait_voicemails()

        assert call.closed.is_set() and "CA1" not in services.sessions
        assert carrier.hung_up == []  # closing the stream ended the call
        stored_call = await services.store.get_call("CA1")
        assert stored_call["end_reason"] == "voicemail"
        await call.reports_stored()
        stored = await services.store.get_interview(interview["id"])
        assert stored["status"] == "pending" and stored["report"] is None  # never interviewed

        await dialer.on_status(
            attempt["id"], {"CallSid": "CA1", "CallStatus": "completed", "CallDuration": "9"}
        )
        ended = await attempts.get_attempt(services.store, attempt["id"])
        assert ended["outcome"] == "voicemail"
        stored = await services.store.get_interview(interview["id"])
        assert stored["status"] == "pending" and stored["next_attempt_at"] == clock() + 3600


async def test_a_script_with_a_voicemail_text_leaves_that_message_then_hangs_up(tmp_path):
    async with _services(tmp_path) as services:
        message = "Hello, this is the AI interviewer of Acme. We will call you again tomorrow."
        services.scripts = {SCRIPT.id: SCRIPT.model_copy(update={"voicemail": message})}
        clock = FakeClock()
        dialer = Dialer(services, FakeCarrier(), schedule=FakeSchedule(), clock=clock)
        interview, attempt = await _attempt_up(services, clock(), "CA1")
        services.asr = ScriptedASR(["yes, go ahead"])  # what a machine's greeting might sound like
        call = Harness(services, interview, services.asr)
        await call.start()
        await call.media(b"\xff" * 160)

        verdict = {"CallSid": "CA1", "AnsweredBy": "machine_end_beep"}
        assert await dialer.on_amd(attempt["id"], verdict) == "applied"  # answered at once
        assert not call.closed.is_set()  # the message plays on
        mark = await call.wait_for_mark(":voicemail")  # the carrier played it to the end
        await dialer.wait_voicemails()

        assert services.prompts.said[-1] == message
        assert call.closed.is_set()
        stored_call = await services.store.get_call("CA1")
        assert stored_call["end_reason"] == "voicemail"
        said = [t["text"] for t in stored_call["turns"] if t["speaker"] == "bot"]
        assert said[-1] == message and mark.endswith(":voicemail")
        assert not [t for t in stored_call["turns"] if t["speaker"] == "candidate"]
        stored = await services.store.get_interview(interview)
        assert stored["status"] == "pending" and stored["report"] is None
