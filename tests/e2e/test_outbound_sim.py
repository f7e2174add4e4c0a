"""End to end: the voicebot REST client places a call at the carrier simulator, whose person
answers and holds the whole interview with the real server, as a Twilio outbound call would.

The simulator fetches the server's voice webhook (signed with the server's Twilio auth token),
follows its ``<Connect><Stream>``, consents by keypad and answers with human speech. The status
callbacks go to a small receiver (the server's ``/twilio/status`` is built by the dialer's part).
"""

from __future__ import annotations

import asyncio

import pytest

from loadtest.carrier_sim import CarrierSimulator, Scenario
from tests.conftest import TWILIO_AUTH_TOKEN
from tests.twilio_receiver import TwilioReceiver
from voicebot.telephony.outbound import OutboundCall
from voicebot.telephony.twilio_rest import TwilioCarrier

pytestmark = pytest.mark.e2e

ANSWERS = (
    "en_jfk.wav",
    "en_librispeech_1995-1837-0001.wav",
    "en_speaker_a.wav",
    "en_speaker_b.wav",
)
CANDIDATE = "+15550107788"


async def test_a_simulated_outbound_call_holds_a_real_interview(server, audio_dir):
    interview_id = server.create_interview(phone=CANDIDATE)
    receiver = TwilioReceiver(TWILIO_AUTH_TOKEN)
    await receiver.start()
    sim = CarrierSimulator(auth_token=TWILIO_AUTH_TOKEN)
    sim.scenarios[CANDIDATE] = Scenario(
        "answer", answers=[audio_dir / name for name in ANSWERS], dtmf={0: "1"}, max_call_secs=180
    )
    await sim.start()
    carrier = TwilioCarrier(sim.account_sid, TWILIO_AUTH_TOKEN, api_url=sim.api_url)
    try:
        placed = await carrier.place_call(
            OutboundCall(
                to=CANDIDATE,
                from_="+14155550100",
                url=f"{server.url}/twilio/voice?interview_id={interview_id}",
                status_callback=f"{receiver.base_url}/twilio/status",
                amd_callback=f"{receiver.base_url}/twilio/amd",
            )
        )
        async with asyncio.timeout(240):
            call = await sim.wait_done(placed.call_sid)
    finally:
        await carrier.close()
        await sim.stop()
        await receiver.stop()

    assert call.error is None, call.error
    assert call.result is not None and call.result.closed_by == "server"  # the bot said goodbye
    assert len(call.result.voice_to_voice) >= 3  # the bot answered the spoken answers
    [voice] = sim.deliveries_for(placed.call_sid, "voice")
    assert voice.status == 200  # the server accepted the simulator's signature
    statuses = [a.params["CallStatus"] for a in receiver.received("/twilio/status")]
    assert statuses == ["initiated", "ringing", "in-progress", "completed"]
    stored = await asyncio.to_thread(server.wait_for_call, placed.call_sid)
    assert stored["interview_id"] == interview_id
    interview = await asyncio.to_thread(server.wait_for_report, interview_id, 120)
    assert interview["status"] == "completed", interview["status"]
