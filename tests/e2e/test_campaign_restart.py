"""End to end: a server SIGKILLed mid-campaign and restarted on the same store.

A real server dials a campaign at the carrier simulator: three candidates' phones ring (long ring
time), one candidate is in the interview, two wait for the campaign's ``max_concurrent``. The
server is SIGKILLed and a new process starts on the same data directory (on another port, so the
callbacks of the calls the dead process placed are lost, as if the carrier gave up on them). The
carrier's record shows nobody dialed twice for one attempt; the waiting candidates are dialed by
the new process; the attempts that were ringing or up are settled, none left "dialing".
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

import pytest

from loadtest.carrier_sim import Scenario
from tests.conftest import start_server, stop_server
from tests.e2e.test_campaign_calls import (
    ANSWERS,
    CALLER_ID,
    SECRET,
    Outbound,
    SimulatorThread,
    candidate,
)
from tests.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.e2e

RINGING = ("+15550202001", "+15550202002", "+15550202003")
UP = "+15550202004"
WAITING = ("+15550202005", "+15550202006")


def test_a_server_killed_mid_campaign_places_no_attempt_twice_and_forgets_none(tmp_path, audio_dir):
    hooks = WebhookReceiver(SECRET).start()
    carrier = SimulatorThread()
    sim = carrier.start()
    sim.scenarios.update({number: Scenario("no_answer") for number in RINGING})
    sim.scenarios[UP] = Scenario(
        "answer", answers=[audio_dir / n for n in ANSWERS], dtmf={0: "1"}, max_call_secs=180
    )
    sim.scenarios.update({number: Scenario("busy") for number in WAITING})
    env = {
        "VOICEBOT_WEBHOOK_URL": hooks.url,
        "VOICEBOT_WEBHOOK_SECRET": SECRET,
        "VOICEBOT_PUBLIC_URL": "",
        "VOICEBOT_TWILIO_ACCOUNT_SID": sim.account_sid,
        "VOICEBOT_TWILIO_CALLER_ID": CALLER_ID,
        "VOICEBOT_TWILIO_API_URL": sim.api_url,
        "VOICEBOT_DIALER_CALLS_PER_SEC": "5",
        "VOICEBOT_DIALER_RING_TIMEOUT_SECS": "20",  # still ringing when the server dies
        "VOICEBOT_DIALER_STATUS_TIMEOUT_SECS": "5",
    }
    (tmp_path / "first").mkdir()
    server = start_server(tmp_path / "first", **env)
    restarted = None
    try:
        outbound = Outbound(server, carrier, hooks)
        phones = (*RINGING, UP, *WAITING)
        # The waiting ones are queued last: due later, dialed once a line is free.
        campaign_id = outbound.campaign(
            [candidate(p, n) for n, p in enumerate(phones[:4])], max_attempts=1, max_concurrent=4
        )
        status, added = server.request(
            "POST",
            f"/api/campaigns/{campaign_id}/interviews",
            [candidate(p, n + 4) for n, p in enumerate(WAITING)],
        )
        assert status == 200 and added["queued"] == 2, added
        for row, result in zip(WAITING, added["results"], strict=True):
            outbound.ids[row] = result["id"]

        # Kill once the candidate is in the interview and the others' phones ring.
        deadline = time.monotonic() + 120
        while not (
            any(c.stream_opened.is_set() for c in carrier.calls_to(UP))
            and all(carrier.calls_to(n) for n in RINGING)
        ):
            assert time.monotonic() < deadline, "the campaign's calls did not come up"
            time.sleep(0.2)
        time.sleep(3)  # a turn or two into the interview
        assert not any(carrier.calls_to(n) for n in WAITING)  # max_concurrent holds them
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait(10)
        before = Counter(c.to for c in sim.calls.values())

        (tmp_path / "second").mkdir()
        restarted = start_server(tmp_path / "second", VOICEBOT_DATA_DIR=str(server.data_dir), **env)
        outbound.server = restarted

        # Every candidate ends: the ringing and the waiting ones unreachable, the one who was
        # up with an answered attempt; none is left dialing.
        for phone in phones:
            interview = outbound.wait(
                phone,
                lambda iv: iv["dial_attempts"] and all(a["ended_at"] for a in iv["dial_attempts"]),
                timeout=150,
            )
            assert len(interview["dial_attempts"]) == 1, (phone, interview["dial_attempts"])
        up = outbound.interview(UP)
        assert up["dial_attempts"][0]["outcome"] == "answered"
        assert up["status"] not in ("pending", "in_progress"), up["status"]
        for phone in RINGING:
            interview = outbound.interview(phone)
            assert interview["dial_attempts"][0]["outcome"] == "no_answer"
            assert interview["status"] == "unreachable"
        for phone in WAITING:  # queued at the kill: dialed by the new process, not forgotten
            interview = outbound.wait(phone, lambda iv: iv["status"] == "unreachable", 60)
            assert interview["dial_attempts"][0]["outcome"] == "busy"

        # Nobody dialed twice for one attempt: the dead process's calls were not placed again.
        after = Counter(c.to for c in sim.calls.values())
        assert after == Counter(phones), after
        assert {n: before[n] for n in (*RINGING, UP)} == {n: 1 for n in (*RINGING, UP)}
        for phone in phones:
            [attempt] = outbound.interview(phone)["dial_attempts"]
            [call] = carrier.calls_to(phone)
            assert attempt["call_sid"] == call.sid
    finally:
        try:
            if restarted is not None:
                stop_server(restarted)
            elif server.process.poll() is None:
                server.process.kill()
        finally:
            carrier.stop()
            hooks.stop()


def test_two_servers_on_one_store_never_place_the_same_attempt(tmp_path):
    """Both processes' dialers look at one campaign; each candidate is dialed exactly once."""
    hooks = WebhookReceiver(SECRET).start()
    carrier = SimulatorThread()
    sim = carrier.start()
    numbers = [f"+155502031{n:02d}" for n in range(12)]
    sim.scenarios.update(
        {number: Scenario("busy" if n % 2 else "failed") for n, number in enumerate(numbers)}
    )
    env = {
        "VOICEBOT_WEBHOOK_URL": hooks.url,
        "VOICEBOT_WEBHOOK_SECRET": SECRET,
        "VOICEBOT_PUBLIC_URL": "",
        "VOICEBOT_TWILIO_ACCOUNT_SID": sim.account_sid,
        "VOICEBOT_TWILIO_CALLER_ID": CALLER_ID,
        "VOICEBOT_TWILIO_API_URL": sim.api_url,
        "VOICEBOT_DIALER_CALLS_PER_SEC": "1",  # one process alone would take 12 s: both dial
    }
    servers = []
    try:
        (tmp_path / "a").mkdir()
        servers.append(start_server(tmp_path / "a", **env))
        (tmp_path / "b").mkdir()
        data_dir = str(servers[0].data_dir)
        # One HR bridge per store (the first server's); the second only dials and serves.
        servers.append(
            start_server(tmp_path / "b", VOICEBOT_DATA_DIR=data_dir, VOICEBOT_BRIDGE="off", **env)
        )
        outbound = Outbound(servers[0], carrier, hooks)
        outbound.campaign(
            [candidate(p, n) for n, p in enumerate(numbers)], max_attempts=1, max_concurrent=12
        )
        for phone in numbers:
            interview = outbound.wait(phone, lambda iv: iv["status"] == "unreachable", 120)
            [attempt] = interview["dial_attempts"]
            [call] = carrier.calls_to(phone)  # dialed once, by one of the two
            assert attempt["call_sid"] == call.sid
        assert Counter(c.to for c in sim.calls.values()) == Counter(numbers)
        # Each process gives the carrier its own voice webhook (its port): who placed which.
        owners = Counter(c.param("Url").split("/twilio/")[0] for c in sim.calls.values())
        assert len(owners) == 2, owners  # both processes dialed some of them
    finally:
        try:
            for server in servers:
                stop_server(server)
        finally:
            carrier.stop()
            hooks.stop()
