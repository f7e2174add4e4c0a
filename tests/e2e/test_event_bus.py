"""Two server processes on one real Redis, the HR bridge as its own process, a real receiver.

What an HR team relies on: every durable event of every server process reaches its webhook
endpoint, signed (verified with the official ``standardwebhooks`` library), and a Redis outage
during a call neither disturbs the call nor loses an event.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import pytest

from loadtest.caller import run_call
from tests.conftest import TWILIO_AUTH_TOKEN

pytestmark = pytest.mark.e2e

ANSWERS = ["en_jfk.wav", "en_speaker_a.wav", "en_speaker_b.wav", "en_speaker_a.wav"]


def call(server, audio_dir: Path, *, dtmf, answers=(), on_event=None):
    interview_id = server.create_interview()
    result = asyncio.run(
        run_call(
            server.url,
            interview_id=interview_id,
            answers=[audio_dir / name for name in answers],
            dtmf=dtmf,
            twilio_auth_token=TWILIO_AUTH_TOKEN,
            max_call_secs=180,
            on_event=on_event,
        )
    )
    assert result.error is None, result.problems
    return interview_id, result


def test_a_bridge_sees_the_events_of_both_server_processes(cluster, audio_dir):
    receiver = cluster["receiver"]
    calls = [call(server, audio_dir, dtmf={0: "2"}) for server in cluster["servers"]]
    for interview_id, result in calls:
        receiver.wait_for(
            lambda r, i=interview_id: any(
                p["type"] == "interview.completed" for p in r.of(interview_id=i)
            )
        )
        kinds = [p["type"] for p in receiver.of(interview_id=interview_id)]
        assert kinds[0] == "candidate.status_changed"  # invited, when the HR system created it
        assert {"call.started", "call.answered", "consent.recorded", "call.ended"} <= set(kinds)
        ended = receiver.of(interview_id=interview_id, call_sid=result.call_sid)
        assert any(p["data"].get("reason") == "consent_declined" for p in ended)
        for payload in receiver.of(interview_id=interview_id):
            assert set(payload) == {"type", "timestamp", "data"}
    assert receiver.rejected == 0


def test_redis_stopped_and_started_during_a_call_loses_no_event(cluster, audio_dir):
    receiver, redis = cluster["receiver"], cluster["redis"]
    server = cluster["servers"][0]
    outage: dict[str, float] = {}
    interview_id = server.create_interview()

    async def scenario():
        stopped = asyncio.Event()

        def on_event(kind, data):
            # Redis goes away early in the call (after its first turn), back 8 s later.
            if kind == "turn" and not stopped.is_set():
                outage["stopped"] = time.monotonic()
                redis.stop()
                stopped.set()

        async def restart_later():
            await stopped.wait()
            await asyncio.sleep(8)
            redis.start(port=redis.port)
            outage["started"] = time.monotonic()

        restarter = asyncio.create_task(restart_later())
        result = await run_call(
            server.url,
            interview_id=interview_id,
            answers=[audio_dir / name for name in ANSWERS],
            dtmf={0: "1"},
            twilio_auth_token=TWILIO_AUTH_TOKEN,
            max_call_secs=180,
            on_event=on_event,
        )
        await restarter
        return result

    result = asyncio.run(scenario())
    assert result.error is None, result.problems
    assert result.closed_by == "server"
    assert "started" in outage
    stored = server.wait_for_call(result.call_sid)
    assert stored["end_reason"] == "completed"
    receiver.wait_for(
        lambda r: any(p["type"] == "interview.completed" for p in r.of(interview_id=interview_id))
    )
    kinds = Counter(p["type"] for p in receiver.of(interview_id=interview_id))
    assert kinds["question.answered"] == 4
    assert kinds["call.started"] == kinds["call.answered"] == kinds["call.ended"] == 1
    assert kinds["consent.recorded"] == 1 and kinds["interview.completed"] == 1
    answered = [
        p["data"]["question_id"]
        for p in receiver.of(interview_id=interview_id)
        if p["type"] == "question.answered"
    ]
    assert answered == ["experience", "difficult-customer", "availability", "why-this-role"]
    # Exactly once after dedupe, and nothing forged.
    assert receiver.rejected == 0
    report = receiver.of(interview_id=interview_id)[-1]
    assert report["type"] in ("interview.completed", "candidate.status_changed")


def test_the_bridge_killed_mid_delivery_and_restarted_loses_nothing(cluster, audio_dir):
    receiver = cluster["receiver"]
    server = cluster["servers"][1]
    receiver.delay_secs = 0.5  # a slow HR system: the kill lands while a delivery is in flight
    try:
        interview_id, result = call(server, audio_dir, dtmf={0: "2"})
        receiver.wait_for(lambda r: len(r.of(interview_id=interview_id)) >= 2)
        cluster["bridge"].kill()  # SIGKILL: no clean shutdown, messages left unacked
        cluster["bridge"].wait(10)
        cluster["bridge"] = cluster["start_bridge"]()
        # Redelivered after the restart, the last events may come in either order: wait for both.
        receiver.wait_for(
            lambda r: (
                {"interview.completed", "call.ended"}
                <= {p["type"] for p in r.of(interview_id=interview_id)}
            ),
            timeout=90,
        )
    finally:
        receiver.delay_secs = 0.0
    kinds = Counter(p["type"] for p in receiver.of(interview_id=interview_id))
    assert kinds == {
        "candidate.status_changed": 1,  # invited (declining consent changes nothing else)
        "call.started": 1,
        "call.answered": 1,
        "consent.recorded": 1,
        "call.ended": 1,
        "interview.completed": 1,
    }, kinds
    assert receiver.rejected == 0
