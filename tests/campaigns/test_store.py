"""Campaigns in the store: queueing candidates, the do-not-call list, pause/resume, progress."""

from __future__ import annotations

import time
from datetime import datetime
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from voicebot.campaigns.hours import CallingPolicy, in_window
from voicebot.campaigns.store import CandidateRow, campaign_store
from voicebot.config import Settings
from voicebot.crypto import Keyring, generate_key_entry
from voicebot.store.database import INTERVIEW_STATUSES, Store

KEY = generate_key_entry("k1")


@pytest.fixture(params=["plain", "encrypted"])
async def world(tmp_path, request):
    """A store (without and with a data key) and its campaign store."""
    keyring = Keyring.parse(KEY) if request.param == "encrypted" else None
    store = Store(tmp_path / "data" / "db.sqlite3", keyring=keyring)
    await store.open()
    services = SimpleNamespace(store=store, settings=Settings.from_env({}, data_dir=tmp_path))
    campaigns = await campaign_store(services)
    yield SimpleNamespace(store=store, campaigns=campaigns, services=services)
    await store.close()


def shanghai(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()


async def new_campaign(campaigns, **policy):
    return await campaigns.create_campaign(
        client="ats", job_id="job", name="Spring", policy=CallingPolicy.model_validate(policy)
    )


async def test_unreachable_is_an_interview_status():
    assert "unreachable" in INTERVIEW_STATUSES


async def test_candidates_join_with_their_first_attempt_in_their_own_window(world):
    campaign = await new_campaign(world.campaigns, timezone="Asia/Shanghai")
    now = shanghai("2026-03-02 07:00")  # 07:00 in Shanghai, 18:00 the day before in New York
    results = await world.campaigns.add_interviews(
        campaign,
        [
            (1, CandidateRow(id="c1", name="Li Lei", phone="+8613800000001")),
            (2, CandidateRow(id="c2", phone="+12125550100", timezone="America/New_York")),
        ],
        now=now,
    )
    assert [r["status"] for r in results] == ["queued", "queued"]
    first, second = results
    assert first["next_attempt_at"] == shanghai("2026-03-02 09:00")  # campaign's zone
    assert second["next_attempt_at"] == now  # 18:00 in New York: inside
    row = await world.store.get_interview(first["id"])
    assert row["candidate_name"] == "Li Lei" and row["candidate_phone"] == "+8613800000001"
    assert row["status"] == "pending" and row["client"] == "ats"
    found = await world.store.find_pending_interview_by_phone("+8613800000001")
    assert found["id"] == first["id"]  # the blind index is written too (encrypted store)
    dial = await world.campaigns.campaign_of_interview(first["id"])
    assert dial == {
        "campaign_id": campaign["id"],
        "next_attempt_at": shanghai("2026-03-02 09:00"),
        "dial_attempts": [],
    }


async def test_an_external_key_already_used_is_not_queued_twice(world):
    campaign = await new_campaign(world.campaigns)
    rows = [(1, CandidateRow(id="c1", phone="+8613800000001", external_key="app-1"))]
    (first,) = await world.campaigns.add_interviews(campaign, rows)
    again = await world.campaigns.add_interviews(
        campaign, rows + [(2, CandidateRow(id="c1", external_key="app-1"))]
    )
    assert [r["status"] for r in again] == ["exists", "exists"]
    assert {r["id"] for r in again} == {first["id"]}
    assert (await world.campaigns.progress(campaign["id"]))["interviews"] == 1


async def test_a_listed_number_is_refused_in_every_campaign(world):
    dnc = world.campaigns.do_not_call
    entry, created = await dnc.add("+8613800000009", reason="asked", source="api", added_by="t")
    assert created and entry["phone"] == "+8613800000009" and entry["source"] == "api"
    assert (await dnc.add("+8613800000009", reason="x", source="api", added_by="t"))[1] is False
    assert await dnc.is_opted_out("+8613800000009")
    assert not await dnc.is_opted_out("+8613800000008")
    for name in ("a", "b"):
        campaign = await new_campaign(world.campaigns)
        results = await world.campaigns.add_interviews(
            campaign,
            [
                (1, CandidateRow(id="c1", phone="+8613800000009")),
                (2, CandidateRow(id="c2", phone="+8613800000008")),
            ],
        )
        assert [r["status"] for r in results] == ["refused", "queued"], name
        assert results[0]["code"] == "do_not_call"
    assert await dnc.remove("+8613800000009") is not None
    assert not await dnc.is_opted_out("+8613800000009")
    assert await dnc.remove("+8613800000009") is None


async def test_the_list_survives_a_restart_and_erasure_keeps_the_number_listed(world, tmp_path):
    dnc = world.campaigns.do_not_call
    await dnc.add("+8613800000009", reason="asked", source="voice", added_by="call:CA1")
    assert await dnc.forget_numbers(["+8613800000009"]) == 1
    (entry,) = await dnc.entries()
    assert entry["phone"] is None and entry["erased"] and entry["source"] == "voice"
    assert await dnc.is_opted_out("+8613800000009")
    # another process on the same store (a fresh campaign store, same key file)
    other = Store(world.store.path, keyring=world.store.keyring)
    await other.open()
    try:
        services = SimpleNamespace(store=other, settings=world.services.settings)
        assert await (await campaign_store(services)).do_not_call.is_opted_out("+8613800000009")
    finally:
        await other.close()
    raw = (world.store.path).read_bytes() + world.store.path.with_suffix(
        ".sqlite3-wal"
    ).read_bytes()
    assert b"+8613800000009" not in raw and b"8613800000009" not in raw


async def test_resume_moves_overdue_attempts_into_the_next_window(world):
    campaign = await new_campaign(world.campaigns, timezone="Asia/Shanghai")
    joined = shanghai("2026-03-02 10:00")
    (queued,) = await world.campaigns.add_interviews(
        campaign, [(1, CandidateRow(id="c1", phone="+8613800000001"))], now=joined
    )
    await world.campaigns.set_paused(campaign["id"], True, now=joined)
    assert (await world.campaigns.get_campaign(campaign["id"]))["paused"] is True
    later = shanghai("2026-03-04 21:30")  # resumed at night, two days later
    assert await world.campaigns.set_paused(campaign["id"], False, now=later) == 1
    dial = await world.campaigns.campaign_of_interview(queued["id"])
    assert dial["next_attempt_at"] == shanghai("2026-03-05 09:00")
    assert in_window(campaign["policy"], "", dial["next_attempt_at"])
    assert (await world.campaigns.get_campaign(campaign["id"]))["paused"] is False


async def test_progress_counts_statuses_attempts_and_calls_up(world):
    campaign = await new_campaign(world.campaigns)
    results = await world.campaigns.add_interviews(
        campaign, [(n, CandidateRow(id=f"c{n}", phone=f"+861380000000{n}")) for n in range(1, 5)]
    )
    ids = [r["id"] for r in results]
    await world.store.update_interview(ids[0], status="completed")
    await world.store.update_interview(ids[1], status="unreachable")
    now = time.time()
    attempts = [
        (ids[0], 1, "ended", "CA1", "answered"),
        (ids[1], 1, "ended", "CA2", "no_answer"),
        (ids[1], 2, "ended", "CA3", "busy"),
        (ids[2], 1, "dialing", "CA4", None),
    ]
    for interview_id, number, state, sid, outcome in attempts:
        await world.store.db.execute(
            "INSERT INTO dial_attempts (id, interview_id, campaign_id, number, state, call_sid,"
            " created_at, placed_at, outcome) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (sid, interview_id, campaign["id"], number, state, sid, now, now, outcome),
        )
    await world.store.db.commit()
    progress = await world.campaigns.progress(campaign["id"])
    assert progress["by_status"] == {"completed": 1, "unreachable": 1, "pending": 2}
    assert progress["attempts_by_outcome"] == {"answered": 1, "no_answer": 1, "busy": 1}
    assert progress["calls_up"] == 1
    assert progress["scheduled"] == 2  # the two pending ones
    dial = await world.campaigns.campaign_of_interview(ids[1])
    assert [(a["number"], a["outcome"], a["call_sid"]) for a in dial["dial_attempts"]] == [
        (1, "no_answer", "CA2"),
        (2, "busy", "CA3"),
    ]
    assert await world.campaigns.cancel_scheduled_attempts(ids[3])
    assert (await world.campaigns.campaign_of_interview(ids[3]))["next_attempt_at"] is None
    assert (await world.campaigns.progress(campaign["id"]))["scheduled"] == 1


async def test_ten_thousand_rows_in_one_transaction(world):
    campaign = await new_campaign(world.campaigns)
    rows = [
        (n, CandidateRow(id=f"c{n}", phone=f"+86138{n:08d}", external_key=f"k{n}"))
        for n in range(1, 10001)
    ]
    await world.campaigns.do_not_call.add("+8613800000777", reason="r", source="api", added_by="t")
    started = time.perf_counter()
    results = await world.campaigns.add_interviews(campaign, rows)
    elapsed = time.perf_counter() - started
    print(f"10,000-row import into the store: {elapsed:.2f} s")
    assert sum(r["status"] == "queued" for r in results) == 9999
    assert [r["row"] for r in results if r["status"] == "refused"] == [777]
    assert (await world.campaigns.progress(campaign["id"]))["interviews"] == 9999


async def test_erasing_a_dialed_candidate_removes_their_dial_attempts(world):
    """dial_attempts reference interviews: erasure must not fail on them (foreign keys on)."""
    campaign = await new_campaign(world.campaigns)
    (queued,) = await world.campaigns.add_interviews(
        campaign, [(1, CandidateRow(id="c1", phone="+8613800000001"))]
    )
    await world.store.db.execute(
        "INSERT INTO dial_attempts (id, interview_id, campaign_id, number, state, call_sid,"
        " created_at, outcome) VALUES ('da1', ?, ?, 1, 'ended', 'CA1', 0, 'no_answer')",
        (queued["id"], campaign["id"]),
    )
    await world.store.db.commit()
    await world.store.erase_interviews([queued["id"]], [])
    assert await world.store.get_interview(queued["id"]) is None
    assert (await world.campaigns.campaign_of_interview(queued["id"]))["dial_attempts"] == []


def test_the_api_document_lists_every_interview_status():
    from voicebot.api.openapi import openapi_document

    enum = openapi_document()["components"]["schemas"]["InterviewStatus"]["enum"]
    assert enum == list(INTERVIEW_STATUSES)


async def test_two_imports_of_the_same_keys_at_once_queue_each_candidate_once(world):
    import asyncio

    campaign = await new_campaign(world.campaigns)
    rows = [
        (n, CandidateRow(id=f"c{n}", phone=f"+86138{n:08d}", external_key=f"k{n}"))
        for n in range(1, 301)
    ]
    first, second = await asyncio.gather(
        world.campaigns.add_interviews(campaign, rows),
        world.campaigns.add_interviews(campaign, rows),
    )
    assert (await world.campaigns.progress(campaign["id"]))["interviews"] == 300
    assert [r["id"] for r in first] == [r["id"] for r in second]  # both name the one interview
    statuses = [r["status"] for r in first + second]
    assert statuses.count("queued") == 300 and statuses.count("exists") == 300
    for result in first:
        assert await world.store.get_interview(result["id"]) is not None


async def test_the_list_survives_a_data_key_rotation_erased_numbers_too(tmp_path):
    """After `voicebot data-key rotate` and dropping the old key, every number is still listed."""
    from voicebot.campaigns.optouts import DoNotCallList, phone_keys

    new_key = generate_key_entry("k2")
    path = tmp_path / "data" / "voicebot.sqlite3"

    async def open_list(keys: str):
        keyring = Keyring.parse(keys)
        store = Store(path, keyring=keyring)
        await store.open()
        return store, DoNotCallList(store, phone_keys("", keyring, path.parent))

    store, dnc = await open_list(KEY)
    await dnc.add("+8613800000001", reason="asked", source="api", added_by="t")
    await dnc.add("+8613800000002", reason="asked", source="voice", added_by="t")
    await dnc.forget_numbers(["+8613800000002"])  # that candidate was erased
    await store.close()
    store, dnc = await open_list(f"{new_key},{KEY}")  # the new key first, the old one kept
    try:
        assert await dnc.rekey() == 1  # the one whose number is kept moves to the new key
    finally:
        await store.close()
    store, dnc = await open_list(new_key)  # the old key removed
    try:
        assert await dnc.is_opted_out("+8613800000001")
        assert await dnc.is_opted_out("+8613800000002")
        phones = sorted(str(e["phone"]) for e in await dnc.entries())
        assert phones == ["+8613800000001", "None"]
    finally:
        await store.close()
