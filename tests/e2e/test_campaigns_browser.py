"""End to end: a whole campaign dialed by a real server through the carrier simulator, watched on
the monitor's campaigns view in real headless Chromium.

A real ``voicebot serve`` process places its calls at the simulator (Twilio's REST side: basic
auth, signed status callbacks, AMD). The campaign starts paused; the department's manager
resumes it from the page, the dialer calls every candidate once (a person who is interviewed
with real speech, busy, failed, rings out, a voicemail), and the page's bar moves to the end
without a reload: one interview completed, four candidates unreachable. A manager of another
department never sees it; pausing from the page reaches the REST API.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from loadtest.carrier_sim import CarrierSimulator, Scenario
from tests.browser import chrome, console_errors, wait_until
from tests.campaign_page import bar, card, count, sign_in
from tests.conftest import AUDIO_DIR, TWILIO_AUTH_TOKEN, start_server, stop_server
from tests.e2e.monitor_helpers import PASSWORD, add_user

pytestmark = pytest.mark.e2e

CALLER_ID = "+14155550100"
ANSWERS = (
    "en_jfk.wav",
    "en_librispeech_1995-1837-0001.wav",
    "en_speaker_a.wav",
    "en_speaker_b.wav",
)
PERSON = "+15550201000"
"""The candidate who answers and is interviewed (real speech, consent by keypad)."""
CANDIDATES = {
    PERSON: Scenario(
        "answer",
        answers=[AUDIO_DIR / name for name in ANSWERS],
        dtmf={0: "1"},
        max_call_secs=180,
    ),
    "+15550201001": Scenario("busy"),
    "+15550201002": Scenario("failed"),
    "+15550201003": Scenario("no_answer"),
    "+15550201004": Scenario("voicemail", amd_secs=0.2),
}


class SimulatorInThread:
    """The carrier simulator on its own event loop in a thread (Selenium blocks this one)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

        async def make() -> CarrierSimulator:
            sim = CarrierSimulator(auth_token=TWILIO_AUTH_TOKEN, scenarios=CANDIDATES)
            await sim.start()
            return sim

        self.sim = self.run(make())

    def run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(60)

    def close(self) -> None:
        self.run(self.sim.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def dialing_server(tmp_path):
    simulator = SimulatorInThread()
    server = start_server(
        tmp_path,
        VOICEBOT_PUBLIC_URL="",
        VOICEBOT_TWILIO_ACCOUNT_SID=simulator.sim.account_sid,
        VOICEBOT_TWILIO_CALLER_ID=CALLER_ID,
        VOICEBOT_TWILIO_API_URL=simulator.sim.api_url,
        VOICEBOT_DIALER_RING_TIMEOUT_SECS="3",
        VOICEBOT_DIALER_CALLS_PER_SEC="5",
    )
    env = {"VOICEBOT_DATA_DIR": str(server.data_dir)}
    add_user("service-lead", "manager", "customer_service", **env)
    add_user("sales-lead", "manager", "sales", **env)
    try:
        yield server, simulator
    finally:
        try:
            stop_server(server)
        finally:
            simulator.close()


def test_a_campaign_dialed_through_the_simulator_moves_on_the_page(dialing_server):
    server, simulator = dialing_server
    status, campaign = server.request(
        "POST",
        "/api/campaigns",
        {
            "job_id": "customer_service_en",
            "name": "Service outbound",
            "calling_hours": {"start": "00:00", "end": "23:59"},
            "max_attempts": 1,
            "paused": True,
        },
    )
    assert status == 201, campaign
    rows = [{"id": f"cand-{n}", "phone": phone} for n, phone in enumerate(CANDIDATES)]
    status, added = server.request("POST", f"/api/campaigns/{campaign['id']}/interviews", rows)
    assert status in (200, 201), added
    assert [r["status"] for r in added["results"]] == ["queued"] * 5

    lead, other = chrome(), chrome()
    try:
        sign_in(lead, server.url, "service-lead", PASSWORD)
        sign_in(other, server.url, "sales-lead", PASSWORD)
        wait_until(lambda: bar(lead, campaign["id"]) == (0, 5), what="the bar at 0 of 5")
        assert card(lead, campaign["id"]).get_attribute("data-paused") == "true"
        assert simulator.sim.calls == {}  # paused: nobody called
        toggle = card(lead, campaign["id"]).find_element("css selector", "button.campaign-toggle")
        assert toggle.text == "Resume"
        toggle.click()

        wait_until(
            lambda: count(lead, campaign["id"], "in_interview") == "1",
            timeout=60,
            what="the person who answered in interview",
        )
        wait_until(
            lambda: bar(lead, campaign["id"]) == (4, 5),
            timeout=90,
            what="the four not reached settled",
        )
        wait_until(
            lambda: bar(lead, campaign["id"]) == (5, 5),
            timeout=240,
            what="the interview finished",
        )
        assert count(lead, campaign["id"], "completed") == "1"
        assert count(lead, campaign["id"], "in_interview") == "0"
        assert count(lead, campaign["id"], "unreachable") == "4"
        assert count(lead, campaign["id"], "scheduled") == "0"
        assert count(lead, campaign["id"], "dialing") == "0"
        next_text = card(lead, campaign["id"]).find_element("css selector", ".campaign-next").text
        assert next_text == "next attempts: none"
        assert card(lead, campaign["id"]).get_attribute("data-paused") == "false"
        called = sorted(call.to for call in simulator.sim.calls.values())
        assert called == sorted(CANDIDATES)  # each exactly once
        assert card(other, campaign["id"]) is None
        assert other.find_element("id", "campaigns-count").text == "0"

        status, shown = server.request("GET", f"/api/campaigns/{campaign['id']}")
        assert status == 200 and shown["by_status"]["unreachable"] == 4
        assert shown["by_status"]["completed"] == 1
        outcomes = shown["attempts_by_outcome"]
        assert outcomes == {"answered": 1, "busy": 1, "failed": 1, "no_answer": 1, "voicemail": 1}

        card(lead, campaign["id"]).find_element("css selector", "button.campaign-toggle").click()
        wait_until(
            lambda: server.request("GET", f"/api/campaigns/{campaign['id']}")[1]["paused"],
            what="the campaign paused through the page",
        )
        assert console_errors(lead) == [] and console_errors(other) == []
    finally:
        lead.quit()
        other.quit()
