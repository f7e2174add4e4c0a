"""A candidate who says "stop calling me" on a call: their number joins the do-not-call list."""

from __future__ import annotations

from tests.call.test_session import Harness, ScriptedASR, _services
from tests.call.test_session_outcomes import SCRIPT
from voicebot.campaigns.store import campaign_store


async def test_a_voice_opt_out_lists_the_candidates_number(tmp_path):
    async with _services(tmp_path) as services:
        services.scripts = {SCRIPT.id: SCRIPT}
        interview, _ = await services.store.create_interview(
            job_id=SCRIPT.id, candidate_id="c1", candidate_phone="+8613800000009"
        )
        services.asr = ScriptedASR(["yes", "Please don't call me again."])
        call = Harness(services, interview["id"], services.asr)
        await call.start()
        await call.wait_for_mark("consent:await")
        await call.speak(0.4)
        await call.wait_for_mark("q:story:await")
        await call.speak(0.8)
        await call.wait_for_mark("opt_out_goodbye")
        await call.run_out()
        do_not_call = (await campaign_store(services)).do_not_call
        assert await do_not_call.is_opted_out("+8613800000009")
        (entry,) = await do_not_call.entries()
        assert entry["source"] == "voice" and entry["added_by"] == "call:CA1"
