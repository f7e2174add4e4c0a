"""Erasure: a candidate's data leaves every file (store, recordings, event log, bridge store)."""

from __future__ import annotations

import sqlite3

import pytest

from tests.privacy.conftest import Candidate, add_candidate
from voicebot.privacy.audit import candidate_ref, verify_file
from voicebot.privacy.erasure import CandidateBusy, erase_candidate

DANA = ("cand-7", "Dana Whitfield", "+14155550123", "during peak season our picker was out")
OMAR = ("cand-8", "Omar Castellanos", "+14155550188", "I fixed the conveyor belt at night")


async def test_erasure_leaves_no_trace_of_the_candidate_in_any_file(world):
    dana = await add_candidate(world, Candidate(*DANA), calls=2)
    omar = await add_candidate(world, Candidate(*OMAR))
    for secret in dana.secrets():
        assert world.files_containing(secret), secret  # there before
    erasure = await erase_candidate(world.services, dana.candidate_id, "admin", "api:admin")
    await world.services.events.flush()
    assert erasure is not None and not erasure.already_erased
    for secret in dana.secrets():
        assert world.files_containing(secret) == [], secret
    for call_sid in dana.call_sids:
        assert not (world.settings.recordings_dir / call_sid).exists()
    assert await world.store.get_interview(dana.interview_id) is None
    # the other candidate is untouched
    for secret in omar.secrets():
        assert world.files_containing(secret), secret
    assert (await world.store.get_interview(omar.interview_id))["report"] is not None
    # the tombstone: anonymous, enough for the audit
    (stone,) = erasure.tombstones
    assert stone["candidate"] == candidate_ref("admin", "cand-7")
    assert stone["interview_ids"] == [dana.interview_id] and stone["calls"] == 2
    assert stone["erased_by"] == "api:admin" and "recordings" in stone["classes"]
    assert (await world.store.tombstone_of_interview(dana.interview_id))["calls"] == 2
    # the HR system is told; the audit log says who did it
    db = sqlite3.connect(world.settings.data_dir / "events.sqlite3")
    (erased,) = db.execute("SELECT event FROM events WHERE type = 'candidate.erased'").fetchone()
    assert '"candidate_id":"cand-7"' in erased and dana.interview_id in erased
    entries = await world.audit.entries()
    assert [(e["actor"], e["action"]) for e in entries] == [("api:admin", "candidate.erase")]
    assert verify_file(world.store.path).ok
    assert world.services.metrics.erasures._value.get() == 1


async def test_a_second_erasure_answers_with_the_tombstone(world):
    dana = await add_candidate(world, Candidate(*DANA))
    first = await erase_candidate(world.services, dana.candidate_id, "admin", "api:admin")
    again = await erase_candidate(world.services, dana.candidate_id, "admin", "api:admin")
    assert again is not None and again.already_erased
    assert again.tombstones == first.tombstones
    assert again.body()["status"] == "already_erased"
    assert await erase_candidate(world.services, "never-seen", "admin", "api:admin") is None


async def test_a_client_erases_only_its_own_candidates(world):
    acme = await add_candidate(world, Candidate(*DANA, client="acme_ats"))
    beta = await add_candidate(
        world,
        Candidate("cand-7", "Dana Other", "+14155550999", "beta's answer", client="beta_hris"),
    )
    assert await erase_candidate(world.services, "cand-7", "admin-less", "api:x") is None
    erased = await erase_candidate(world.services, "cand-7", "beta_hris", "api:beta_hris")
    assert [s["client"] for s in erased.tombstones] == ["beta_hris"]
    assert await world.store.get_interview(beta.interview_id) is None
    assert await world.store.get_interview(acme.interview_id) is not None
    # acme's candidate of the same id was not erased: beta's tombstone is not acme's
    assert await erase_candidate(world.services, "cand-7", "acme_ats", "api:acme_ats")
    assert await world.store.get_interview(acme.interview_id) is None


@pytest.mark.parametrize("status", ["in_progress", "scoring"])
async def test_a_candidate_on_a_call_or_being_scored_is_refused_and_nothing_erased(world, status):
    dana = await add_candidate(world, Candidate(*DANA))
    await world.store.update_interview(dana.interview_id, status=status)
    with pytest.raises(CandidateBusy, match="try again"):
        await erase_candidate(world.services, dana.candidate_id, "admin", "api:admin")
    assert world.files_containing(dana.name)
    assert await world.store.get_interview(dana.interview_id) is not None


async def test_a_live_session_of_the_candidate_refuses_the_erasure(world):
    dana = await add_candidate(world, Candidate(*DANA))

    class LiveSession:
        interview = {"id": dana.interview_id}

    world.services.sessions["CAlive"] = LiveSession()
    with pytest.raises(CandidateBusy):
        await erase_candidate(world.services, dana.candidate_id, "admin", "api:admin")
