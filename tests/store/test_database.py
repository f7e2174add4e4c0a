"""The SQLite store: interviews (idempotent by external key), calls, turns, restart safety."""

from __future__ import annotations

import pytest

from voicebot.crypto import DecryptionError, Keyring, generate_key_entry
from voicebot.store.database import Store

KEY1 = generate_key_entry("k1")
KEY2 = generate_key_entry("k2")


@pytest.fixture(params=["plain", "encrypted"])
async def store(tmp_path, request):
    """The store without a data key and with one: it behaves the same either way."""
    keyring = Keyring.parse(KEY1) if request.param == "encrypted" else None
    store = Store(tmp_path / "db.sqlite3", keyring=keyring)
    await store.open()
    yield store
    await store.close()


async def test_interview_is_idempotent_by_external_key(store):
    first, created = await store.create_interview(
        job_id="job", candidate_id="c1", candidate_phone="+15550100", external_key="ats-1"
    )
    again, created_again = await store.create_interview(
        job_id="job", candidate_id="c1", candidate_phone="+15550100", external_key="ats-1"
    )
    other, _ = await store.create_interview(job_id="job", candidate_id="c2")
    assert created and not created_again
    assert again["id"] == first["id"]
    assert other["id"] != first["id"]


async def test_pending_interview_found_by_phone_until_completed(store):
    interview, _ = await store.create_interview(
        job_id="job", candidate_id="c1", candidate_phone="+15550100"
    )
    found = await store.find_pending_interview_by_phone("+15550100")
    assert found["id"] == interview["id"]
    await store.update_interview(interview["id"], status="completed")
    assert await store.find_pending_interview_by_phone("+15550100") is None
    with pytest.raises(ValueError):
        await store.update_interview(interview["id"], status="bogus")


async def test_call_with_turns_round_trip(store):
    interview, _ = await store.create_interview(job_id="job", candidate_id="c1")
    await store.create_call(call_sid="CA1", interview_id=interview["id"], stream_sid="MZ1")
    await store.add_turn(
        call_sid="CA1", seq=1, speaker="bot", text="Hello", start=0.1, prompt_id="greeting"
    )
    await store.add_turn(
        call_sid="CA1",
        seq=2,
        speaker="candidate",
        text="Hi",
        start=3.0,
        end=3.8,
        asr_latency=0.3,
        end_of_speech_to_final=0.5,
    )
    await store.update_bot_turn(
        "CA1", 1, end=2.5, interrupted=True, heard_secs=2.4, response_latency=None
    )
    await store.finish_call(
        "CA1", status="completed", end_reason="completed", duration_secs=9.0, stats={"turns": 1}
    )
    call = await store.get_call("CA1")
    assert call["end_reason"] == "completed" and call["stats"] == {"turns": 1}
    assert [t["speaker"] for t in call["turns"]] == ["bot", "candidate"]
    bot, candidate = call["turns"]
    assert bot["interrupted"] is True and bot["heard_secs"] == 2.4 and bot["end"] == 2.5
    assert candidate["text"] == "Hi" and candidate["asr_latency"] == 0.3
    assert await store.get_call("nope") is None


async def test_data_survives_reopen_and_a_dead_owners_call_is_claimed_once(tmp_path):
    path = tmp_path / "db.sqlite3"
    store = Store(path)
    await store.open()
    interview, _ = await store.create_interview(job_id="job", candidate_id="c1")
    await store.register_process("proc_a", host="h", pid=1)
    await store.create_call(
        call_sid="CA9", interview_id=interview["id"], owner="proc_a", started_at=100.0
    )
    await store.close()

    reopened = Store(path)
    await reopened.open()
    assert (await reopened.get_interview(interview["id"]))["candidate_id"] == "c1"
    unsettled = await reopened.unsettled_calls(exclude_owner="proc_b")
    assert [(c["call_sid"], c["owner"], c["job_id"]) for c in unsettled] == [
        ("CA9", "proc_a", "job")
    ]
    assert await reopened.unsettled_calls(exclude_owner="proc_a") == []  # its own calls
    claim = {"dead_owner": "proc_a", "new_owner": "proc_b", "ended_at": 130.0}
    assert await reopened.claim_unsettled_call("CA9", **claim)
    assert not await reopened.claim_unsettled_call("CA9", **claim)  # one process gets it
    call = await reopened.get_call("CA9")
    assert call["status"] == "failed" and call["end_reason"] == "server_restart"
    assert call["owner"] == "proc_b" and call["duration_secs"] == 30.0
    # Claimed, not yet settled: a process that outlives proc_b's death takes it over.
    assert [c["call_sid"] for c in await reopened.unsettled_calls(exclude_owner="proc_c")] == [
        "CA9"
    ]
    await reopened.mark_call_settled("CA9")
    assert await reopened.unsettled_calls(exclude_owner="proc_c") == []
    await reopened.close()


async def test_recent_calls_are_finished_ones_newest_first_with_their_candidate(store):
    interview, _ = await store.create_interview(
        job_id="job", candidate_id="c1", candidate_name="Ann Lee"
    )
    for sid, started in (("CA_old", 100.0), ("CA_new", 200.0), ("CA_live", 300.0)):
        await store.create_call(call_sid=sid, interview_id=interview["id"], started_at=started)
    for sid in ("CA_old", "CA_new"):
        await store.finish_call(sid, status="completed", end_reason="completed", duration_secs=9)
    recent = await store.recent_calls()
    assert [call["call_sid"] for call in recent] == ["CA_new", "CA_old"]
    assert recent[0]["candidate_name"] == "Ann Lee" and recent[0]["job_id"] == "job"
    assert recent[0]["end_reason"] == "completed" and recent[0]["status"] == "pending"
    assert [call["call_sid"] for call in await store.recent_calls(limit=1)] == ["CA_new"]


async def test_upgrading_settles_old_ended_calls_and_leaves_stuck_interviews_to_settle(tmp_path):
    import sqlite3

    from voicebot.store.database import MIGRATIONS

    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)  # a database as the previous version left it
    for number, script in enumerate(MIGRATIONS[:3], start=1):
        old.executescript(script)
        old.execute(f"PRAGMA user_version = {number}")
    old.executescript(
        """
        INSERT INTO interviews (id, job_id, candidate_id, status, created_at, updated_at)
        VALUES ('iv_done', 'job', 'c1', 'completed', 1, 1), ('iv_stuck', 'job', 'c2',
        'in_progress', 1, 1);
        INSERT INTO calls (call_sid, interview_id, status, end_reason, started_at, ended_at)
        VALUES ('CA_done', 'iv_done', 'completed', 'completed', 1, 2),
        ('CA_old_crash', 'iv_done', 'failed', 'server_restart', 0, 1),
        ('CA_stuck', 'iv_stuck', 'failed', 'server_restart', 1, 2);
        """
    )
    old.commit()
    old.close()
    store = Store(path)
    await store.open()
    unsettled = await store.unsettled_calls(exclude_owner="proc_new")
    assert [call["call_sid"] for call in unsettled] == ["CA_stuck"]
    async with store.db.execute(
        "EXPLAIN QUERY PLAN SELECT call_sid FROM calls c WHERE (c.status = 'in_progress' OR"
        " (c.end_reason = 'server_restart' AND c.settled_at IS NULL))"
    ) as cursor:
        plan = " ".join(str(row[-1]) for row in await cursor.fetchall())
    assert "calls_unsettled" in plan  # the start-up and sweep query reads no settled call
    await store.close()


async def _stored_call(store: Store) -> str:
    interview, _ = await store.create_interview(
        job_id="job",
        candidate_id="c1",
        candidate_name="Ada Lovelace",
        candidate_phone="+14155550123",
    )
    await store.create_call(
        call_sid="CA1", interview_id=interview["id"], from_number="+14155550123"
    )
    await store.add_turn(
        call_sid="CA1",
        seq=1,
        speaker="candidate",
        text="I repaired analytical engines",
        start=1,
        prosody={"pitch_median_hz": 187.5},
    )
    await store.record_outcome(
        "CA1", "knockouts", "q1", {"answer": "yes I hold a forklift licence", "passed": True}
    )
    await store.save_report(
        interview["id"], {"summary": "Ada repaired analytical engines"}, "completed"
    )
    return interview["id"]


def _all_bytes(directory) -> bytes:
    return b"".join(path.read_bytes() for path in directory.iterdir() if path.is_file())


SECRETS = [b"Ada", b"4155550123", b"analytical engines", b"forklift", b"pitch_median_hz"]


async def test_with_a_data_key_no_candidate_data_is_in_the_files(tmp_path):
    store = Store(tmp_path / "db.sqlite3", keyring=Keyring.parse(KEY1))
    await store.open()
    interview_id = await _stored_call(store)
    interview = await store.get_interview(interview_id)
    call = await store.get_call("CA1")
    found = await store.find_pending_interview_by_phone("+14155550123")
    await store.close()
    assert interview["candidate_name"] == "Ada Lovelace"
    assert interview["candidate_phone"] == "+14155550123"
    assert interview["report"] == {"summary": "Ada repaired analytical engines"}
    assert call["from_number"] == "+14155550123"
    assert call["turns"][0]["text"] == "I repaired analytical engines"
    assert call["outcome"]["knockouts"]["q1"]["answer"] == "yes I hold a forklift licence"
    assert call["turns"][0]["prosody"] == {"pitch_median_hz": 187.5}
    assert found is None  # completed; the look-up by phone itself is tested below
    raw = _all_bytes(tmp_path)
    for secret in SECRETS:
        assert secret not in raw, secret


async def test_phone_lookups_and_opt_outs_work_through_the_blind_index(tmp_path):
    store = Store(tmp_path / "db.sqlite3", keyring=Keyring.parse(KEY1))
    await store.open()
    first, _ = await store.create_interview(
        job_id="job", candidate_id="c1", candidate_phone="+14155550123"
    )
    second, _ = await store.create_interview(
        job_id="other", candidate_id="c9", candidate_phone="+14155550123"
    )
    found = await store.find_pending_interview_by_phone("+14155550123")
    assert found["id"] == second["id"] and found["candidate_phone"] == "+14155550123"
    assert await store.find_pending_interview_by_phone("+14155550124") is None
    assert await store.opt_out_candidate(second["id"]) == [first["id"]]
    await store.close()


async def test_rotation_reencrypts_under_the_new_key_and_the_old_key_can_go(tmp_path):
    path = tmp_path / "db.sqlite3"
    plain = Store(path)  # data stored before any key was set is encrypted by the rotation too
    await plain.open()
    early, _ = await plain.create_interview(
        job_id="job", candidate_id="c0", candidate_name="Grace Hopper", candidate_phone="+1415"
    )
    await plain.close()
    store = Store(path, keyring=Keyring.parse(KEY1))
    await store.open()
    interview_id = await _stored_call(store)
    await store.close()
    both = Store(path, keyring=Keyring.parse(f"{KEY2},{KEY1}"))
    await both.open()
    assert (await both.get_interview(interview_id))["candidate_name"] == "Ada Lovelace"
    assert await both.reencrypt() >= 4
    await both.close()
    new_only = Store(path, keyring=Keyring.parse(KEY2))
    await new_only.open()
    interview = await new_only.get_interview(interview_id)
    assert interview["candidate_name"] == "Ada Lovelace"
    assert interview["report"] == {"summary": "Ada repaired analytical engines"}
    call = await new_only.get_call("CA1")
    assert call["turns"][0]["text"] == "I repaired analytical engines"
    assert call["outcome"]["knockouts"]["q1"]["passed"] is True
    assert (await new_only.get_interview(early["id"]))["candidate_name"] == "Grace Hopper"
    assert (await new_only.find_pending_interview_by_phone("+1415"))["id"] == early["id"]
    await new_only.close()
    raw = _all_bytes(tmp_path)
    for secret in [*SECRETS, b"Grace"]:
        assert secret not in raw, secret
    old_only = Store(path, keyring=Keyring.parse(KEY1))
    await old_only.open()
    with pytest.raises(DecryptionError, match="key id 'k2'"):
        await old_only.get_interview(interview_id)
    await old_only.close()


async def test_a_value_moved_to_another_row_is_refused(tmp_path):
    store = Store(tmp_path / "db.sqlite3", keyring=Keyring.parse(KEY1))
    await store.open()
    ada, _ = await store.create_interview(job_id="j", candidate_id="a", candidate_name="Ada")
    bob, _ = await store.create_interview(job_id="j", candidate_id="b", candidate_name="Bob")
    await store.db.execute(
        "UPDATE interviews SET candidate_name = (SELECT candidate_name FROM interviews"
        " WHERE id = ?) WHERE id = ?",
        (ada["id"], bob["id"]),
    )
    await store.db.commit()
    with pytest.raises(DecryptionError, match=f"interviews/candidate_name/{bob['id']}"):
        await store.get_interview(bob["id"])
    await store.close()


async def test_the_key_ids_in_use_are_known(tmp_path):
    store = Store(tmp_path / "db.sqlite3", keyring=Keyring.parse(KEY1))
    await store.open()
    assert await store.key_ids_in_use() == set()
    await _stored_call(store)
    assert await store.key_ids_in_use() == {"k1"}
    await store.close()
