"""End to end: outbound campaigns dialed by a real server through the carrier simulator.

A real ``voicebot serve`` process (real models) places its campaigns' calls at
:class:`loadtest.carrier_sim.CarrierSimulator` (``VOICEBOT_TWILIO_API_URL`` points at it, on
loopback); the simulator rings, answers with recorded human speech, is busy, fails, is a voicemail,
and sends signed status and AMD callbacks to the server, as Twilio does. The HR system's webhooks
go to a real receiver.

Retries: the API refuses a ``retry_after_secs`` under 60 s (a real campaign never wants less), so
the test does not wait for it: once an attempt has ended, it moves the interview's
``next_attempt_at`` to now in the server's SQLite store (:func:`due_now`), as the passing of the
retry delay would.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from loadtest.caller import run_call
from loadtest.carrier_sim import CarrierSimulator, Scenario, SimulatedCall
from tests.conftest import ROOT, TWILIO_AUTH_TOKEN, RunningServer, start_server, stop_server
from tests.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.e2e

SECRET = "whsec_Zm9yLW91dGJvdW5kLWNhbXBhaWducy10ZXN0cw=="
CALLER_ID = "+14155550100"
ANSWERS = (
    "en_jfk.wav",
    "en_librispeech_1995-1837-0001.wav",
    "en_speaker_a.wav",
    "en_speaker_b.wav",
)
VOICEMAIL_TEXT = "Hello, this is Northwind Retail's AI assistant. We will call again tomorrow."
ANSWER = "+15550201001"
RETRY = "+15550201002"
BUSY = "+15550201003"
VOICEMAIL = "+15550201004"
FAILED = "+15550201005"
LISTED = "+15550201006"
CALLS_BACK = "+15550201007"
FLAKY = "+15550201008"


class SimulatorThread:
    """The carrier simulator on its own event loop in a thread, for a module of sync fixtures."""

    def __init__(self) -> None:
        self.sim = CarrierSimulator(auth_token=TWILIO_AUTH_TOKEN)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="carrier-sim", daemon=True
        )

    def start(self) -> CarrierSimulator:
        self.thread.start()
        self.run(self.sim.start())
        return self.sim

    def run(self, coro: Any, timeout: float = 60.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.run(self.sim.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def calls_to(self, number: str) -> list[SimulatedCall]:
        return [c for c in list(self.sim.calls.values()) if c.to == number]


class Outbound:
    """The server, its simulated carrier and its HR webhook receiver."""

    def __init__(self, server: RunningServer, carrier: SimulatorThread, hooks: WebhookReceiver):
        self.server = server
        self.carrier = carrier
        self.hooks = hooks

    def campaign(self, candidates: list[dict[str, Any]], *, refused: int = 0, **policy: Any) -> str:
        body = {"job_id": "customer_service_en", "max_attempts": 2, "retry_after_secs": 60}
        status, campaign = self.server.request("POST", "/api/campaigns", {**body, **policy})
        assert status == 201, campaign
        if candidates:
            status, added = self.server.request(
                "POST", f"/api/campaigns/{campaign['id']}/interviews", candidates
            )
            assert status == 200, added
            assert (added["queued"], added["refused"]) == (len(candidates) - refused, refused)
            self.ids = getattr(self, "ids", {})
            for row, result in zip(candidates, added["results"], strict=True):
                if result["status"] == "queued":
                    self.ids[row["phone"]] = result["id"]
        return campaign["id"]

    def interview(self, phone: str) -> dict[str, Any]:
        status, interview = self.server.request("GET", f"/api/interviews/{self.ids[phone]}")
        assert status == 200, interview
        return interview

    def wait(self, phone: str, predicate, timeout: float = 120.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            interview = self.interview(phone)
            if predicate(interview):
                return interview
            if time.monotonic() > deadline:
                raise AssertionError(f"{phone}: not there after {timeout} s: {interview}")
            time.sleep(0.3)

    def due_now(self, phone: str) -> None:
        """The retry delay has passed: the interview's next attempt is due now."""
        with sqlite3.connect(self.server.data_dir / "voicebot.sqlite3", timeout=30) as db:
            changed = db.execute(
                "UPDATE interviews SET next_attempt_at = ? WHERE id = ? AND next_attempt_at > ?",
                (time.time(), self.ids[phone], time.time()),
            ).rowcount
        assert changed == 1, f"{phone}: no later attempt scheduled"


def ended(n: int):
    """An interview with ``n`` ended dial attempts."""
    return lambda iv: len([a for a in iv["dial_attempts"] if a["ended_at"]]) >= n


def daytime_zone() -> str:
    """A fixed-offset IANA zone where it is about 14:00 now, inside the default calling hours.

    The candidates live there: the test does not depend on when it runs (and the dialer is seen
    to read the candidate's zone, not the server's).
    """
    offset = (14 - time.gmtime().tm_hour + 10) % 24 - 10  # UTC-10 .. UTC+13
    return "Etc/GMT" + (f"{-offset:+d}" if offset else "")  # Etc/GMT-8 is UTC+8


def candidate(phone: str, n: int) -> dict[str, Any]:
    return {"id": f"cand-out-{n}", "name": f"Out {n}", "phone": phone, "timezone": daytime_zone()}


def answering(audio_dir: Path) -> Scenario:
    return Scenario(
        "answer", answers=[audio_dir / n for n in ANSWERS], dtmf={0: "1"}, max_call_secs=180
    )


@pytest.fixture(scope="module")
def outbound(tmp_path_factory, audio_dir):
    tmp = tmp_path_factory.mktemp("outbound")
    # The shipped jobs as they are, and the English one with a voicemail message.
    dialogues = tmp / "dialogues"
    shutil.copytree(ROOT / "dialogues", dialogues)
    script = dialogues / "customer_service_en.yaml"
    script.write_text(script.read_text() + f"\nvoicemail: >-\n  {VOICEMAIL_TEXT}\n")
    hooks = WebhookReceiver(SECRET).start()
    carrier = SimulatorThread()
    sim = carrier.start()
    server = None
    try:
        server = start_server(
            tmp,
            VOICEBOT_WEBHOOK_URL=hooks.url,
            VOICEBOT_WEBHOOK_SECRET=SECRET,
            VOICEBOT_PUBLIC_URL="",
            VOICEBOT_DIALOGUES_DIR=str(dialogues),
            VOICEBOT_TWILIO_ACCOUNT_SID=sim.account_sid,
            VOICEBOT_TWILIO_CALLER_ID=CALLER_ID,
            VOICEBOT_TWILIO_API_URL=sim.api_url,
            VOICEBOT_DIALER_CALLS_PER_SEC="5",
            VOICEBOT_DIALER_RING_TIMEOUT_SECS="3",
        )
        yield Outbound(server, carrier, hooks)
    finally:
        try:
            if server is not None:
                stop_server(server)
        finally:
            carrier.stop()
            hooks.stop()


def test_a_campaign_calls_each_candidate_and_settles_every_outcome(outbound, audio_dir):
    sim, carrier = outbound.carrier.sim, outbound.carrier
    sim.scenarios.update(
        {
            ANSWER: answering(audio_dir),
            RETRY: Scenario("no_answer"),
            BUSY: Scenario("busy"),
            VOICEMAIL: Scenario("voicemail", amd_secs=0.2, max_call_secs=60),
            FAILED: Scenario("failed"),
        }
    )
    phones = (ANSWER, RETRY, BUSY, VOICEMAIL, FAILED)
    outbound.campaign([candidate(p, n) for n, p in enumerate(phones)], max_attempts=2)

    # First attempts: the ones that did not reach a person get a second one, due at once.
    retry = outbound.wait(RETRY, ended(1))
    assert [a["outcome"] for a in retry["dial_attempts"]] == ["no_answer"]
    assert retry["next_attempt_at"] is not None
    sim.scenarios[RETRY] = answering(audio_dir)  # this time they pick up
    outbound.due_now(RETRY)
    busy = outbound.wait(BUSY, ended(1))
    assert [a["outcome"] for a in busy["dial_attempts"]] == ["busy"]
    outbound.due_now(BUSY)

    busy = outbound.wait(BUSY, lambda iv: iv["status"] == "unreachable")
    assert [a["outcome"] for a in busy["dial_attempts"]] == ["busy", "busy"]
    assert [a["number"] for a in busy["dial_attempts"]] == [1, 2]
    assert busy["next_attempt_at"] is None

    failed = outbound.wait(FAILED, ended(1))
    assert failed["dial_attempts"][0]["outcome"] == "failed"
    assert failed["dial_attempts"][0]["call_sid"] in sim.calls

    voicemail = outbound.wait(VOICEMAIL, ended(1))
    attempt = voicemail["dial_attempts"][0]
    assert attempt["outcome"] == "voicemail", voicemail["dial_attempts"]
    assert voicemail["status"] not in ("completed", "in_progress", "scoring"), voicemail
    machine = sim.calls[attempt["call_sid"]]
    assert machine.answered_by == "machine_end_beep"
    assert machine.result is not None and machine.result.closed_by == "server"  # bot hung up
    # After the beep the machine recorded the bot's short message ...
    assert machine.opening_end is not None
    left = [
        t
        for t in machine.result.turns
        if t.speaker == "bot" and t.frames and t.start >= machine.opening_end
    ]
    assert left, [(t.speaker, t.start, t.frames) for t in machine.result.turns]
    # ... and no interview: no question was put to it, nobody's answer was taken.
    assert not [t for t in machine.result.turns if t.speaker == "candidate"]
    assert voicemail["report"] is None

    for phone in (ANSWER, RETRY):
        interview = outbound.wait(phone, lambda iv: iv["status"] == "completed", timeout=240)
        outcomes = [a["outcome"] for a in interview["dial_attempts"]]
        assert outcomes == (["answered"] if phone == ANSWER else ["no_answer", "answered"])
        status, report = outbound.server.request("GET", f"/api/interviews/{interview['id']}/report")
        assert status == 200, report
        answered = sim.calls[interview["dial_attempts"][-1]["call_sid"]]
        assert answered.result is not None and len(answered.result.voice_to_voice) >= 3

    # Nobody was dialed twice for one attempt: one carrier call per stored attempt.
    for phone in phones:
        stored = outbound.interview(phone)["dial_attempts"]
        assert len(carrier.calls_to(phone)) == len(stored), (phone, stored)
        assert sorted(a["call_sid"] for a in stored) == sorted(
            c.sid for c in carrier.calls_to(phone)
        )
    for call in sim.calls.values():
        assert call.param("From") == CALLER_ID
        assert call.param("MachineDetection") == "DetectMessageEnd"

    # The HR system heard of every attempt and of the end.
    busy_id = outbound.ids[BUSY]
    outbound.hooks.wait_for(
        lambda h: (
            h.of(interview_id=busy_id)
            and any(p["type"] == "interview.unreachable" for p in h.of(interview_id=busy_id))
        )
    )
    events = outbound.hooks.of(interview_id=busy_id)
    dialed = [p["data"] for p in events if p["type"] == "dial.attempted"]
    assert [(d["attempt"], d["max_attempts"], d["outcome"]) for d in dialed] == [
        (1, 2, "busy"),
        (2, 2, "busy"),
    ]
    assert dialed[0]["next_attempt_at"] is not None and dialed[1]["next_attempt_at"] is None
    not_reached = [
        p["data"]
        for p in events
        if p["type"] == "candidate.status_changed" and p["data"]["status"] == "no_answer"
    ]
    assert not_reached and not_reached[0]["next_attempt_at"] is not None
    assert Counter(p["type"] for p in events)["interview.unreachable"] == 1


def test_a_number_on_the_do_not_call_list_is_never_dialed_by_any_campaign(outbound):
    # Queued in a paused campaign before the candidate asked not to be called again.
    first = outbound.campaign([candidate(LISTED, 6)], paused=True)
    status, body = outbound.server.request(
        "POST", "/api/opt-outs", {"phone": LISTED, "reason": "asked by email not to be called"}
    )
    assert status in (200, 201), body
    # A second campaign refuses the number at import ...
    outbound.campaign([candidate(LISTED, 6)], refused=1)
    # ... and the first one, resumed, checks the list when it would dial: nobody is called.
    status, _ = outbound.server.request("POST", f"/api/campaigns/{first}/resume")
    assert status == 200
    interview = outbound.wait(LISTED, lambda iv: iv["status"] == "opted_out", timeout=30)
    assert interview["dial_attempts"] == []
    assert outbound.carrier.calls_to(LISTED) == []


async def test_a_candidate_who_calls_back_is_interviewed_and_not_dialed_again(outbound, audio_dir):
    campaign_id = await asyncio.to_thread(
        outbound.campaign, [candidate(CALLS_BACK, 7)], paused=True
    )
    interview = await asyncio.to_thread(outbound.interview, CALLS_BACK)
    assert interview["next_attempt_at"] is not None  # scheduled, held by the pause

    result = await run_call(
        outbound.server.url,
        answers=[audio_dir / n for n in ANSWERS],
        dtmf={0: "1"},
        from_number=CALLS_BACK,
        to_number=CALLER_ID,
        twilio_auth_token=TWILIO_AUTH_TOKEN,
        max_call_secs=180,
    )
    assert result.error is None, result.error
    done = await asyncio.to_thread(
        outbound.wait, CALLS_BACK, lambda iv: iv["status"] == "completed", 120
    )
    assert done["next_attempt_at"] is None  # the scheduled attempt is cancelled
    status, _ = outbound.server.request("POST", f"/api/campaigns/{campaign_id}/resume")
    assert status == 200
    await asyncio.sleep(2)  # the dialer looks every 250 ms: it would have dialed by now
    assert outbound.carrier.calls_to(CALLS_BACK) == []
    assert (await asyncio.to_thread(outbound.interview, CALLS_BACK))["dial_attempts"] == []


def test_the_carrier_answering_429_then_500_loses_no_attempt(outbound):
    sim, carrier = outbound.carrier.sim, outbound.carrier
    sim.scenarios[FLAKY] = Scenario("busy")
    before = len(sim.requests)
    sim.fail_next(429, 2, retry_after=1)
    sim.fail_next(500, 2)
    outbound.campaign([candidate(FLAKY, 8)], max_attempts=1)

    interview = outbound.wait(FLAKY, lambda iv: iv["status"] == "unreachable", timeout=90)
    # The carrier's errors were not the candidate's attempts: one attempt, placed once it recovered.
    assert [a["outcome"] for a in interview["dial_attempts"]] == ["busy"]
    creates = [r for r in sim.requests[before:] if r.path.endswith("/Calls.json")]
    assert [r.status for r in creates] == [429, 429, 500, 500, 201]
    assert len(carrier.calls_to(FLAKY)) == 1
    status, metrics = outbound.server.request("GET", "/metrics")
    assert 'voicebot_dialer_carrier_errors_total{kind="rate_limited"} 2.0' in metrics
    assert 'voicebot_dialer_carrier_errors_total{kind="unavailable"} 2.0' in metrics
