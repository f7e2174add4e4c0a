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


async def test_with_a_data_key_erasure_finds_the_encrypted_events_and_leaves_the_others(
    keyed_world,
):
    world = keyed_world
    dana = await add_candidate(world, Candidate(*DANA), calls=2)
    omar = await add_candidate(world, Candidate(*OMAR))
    for secret in [*dana.secrets(), *omar.secrets()]:
        assert world.files_containing(secret) == [], secret  # encrypted at rest, before too

    def events_about(candidate: Candidate) -> dict[str, int]:
        """Stored events (decrypted) that name the candidate, per file."""
        from voicebot.events.outbox import event_of

        counts = {}
        for name, sql in (
            ("events.sqlite3", "SELECT event, event_id FROM events"),
            ("hris_bridge.db", "SELECT json, id FROM events"),
        ):
            db = sqlite3.connect(world.settings.data_dir / name)
            rows = db.execute(sql).fetchall()
            db.close()
            assert rows and all(stored.startswith("vbenc1.") for stored, _ in rows)
            events = [event_of(stored, event_id, world.keyring) for stored, event_id in rows]
            counts[name] = sum(
                e.type != "candidate.erased"
                and e.data.get("interview_id") == candidate.interview_id
                for e in events
            )
        return counts

    assert events_about(dana) == {"events.sqlite3": 5, "hris_bridge.db": 5}
    erasure = await erase_candidate(world.services, dana.candidate_id, "admin", "api:admin")
    await world.services.events.flush()
    assert erasure is not None and not erasure.already_erased
    assert events_about(dana) == {"events.sqlite3": 0, "hris_bridge.db": 0}
    assert events_about(omar) == {"events.sqlite3": 3, "hris_bridge.db": 3}
    for call_sid in dana.call_sids:
        assert not (world.settings.recordings_dir / call_sid).exists()
    assert await world.store.get_interview(dana.interview_id) is None
    assert (await world.store.get_interview(omar.interview_id))["candidate_name"] == OMAR[1]
    db = sqlite3.connect(world.store.path)  # the blind index went with the row
    assert (
        db.execute("SELECT COUNT(*) FROM interviews WHERE phone_index IS NOT NULL").fetchone()[0]
        == 1
    )
    db.close()


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


@pytest.fixture
def redis_server(tmp_path):
    from tests.redis_helper import RedisServer

    (tmp_path / "redis").mkdir()
    server = RedisServer(appendonly=True, workdir=tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop()


async def test_with_redis_the_stream_outbox_and_shared_monitor_list_forget_the_candidate(
    world, redis_server
):
    import asyncio
    import collections
    import json
    from types import SimpleNamespace

    import redis.asyncio as redis

    from voicebot.events.bus import RedisBus

    bus = RedisBus(redis_server.url, outbox_path=world.settings.data_dir / "outbox.sqlite3")
    await bus.start()
    client = redis.from_url(redis_server.url, decode_responses=True)
    embedded = world.bus
    try:
        world.bus = world.services.bus = bus
        world.services.events.bus = bus
        dana = await add_candidate(world, Candidate(*DANA))
        omar = await add_candidate(world, Candidate(*OMAR))
        for _ in range(100):
            if bus.outbox_pending() == 0 and await client.xlen(bus.stream) == 6:
                break
            await asyncio.sleep(0.05)
        assert await client.xlen(bus.stream) == 6
        recent_key = "voicebot:monitor:recent"
        for who in (dana, omar):
            entry = {"call_sid": who.call_sids[0], "interview_id": who.interview_id}
            await client.lpush(recent_key, json.dumps({**entry, "candidate_name": who.name}))
        world.services.registry = SimpleNamespace(
            _recent=collections.deque(),
            _redis=client,
            recent_key=recent_key,
            status_prefix="voicebot:monitor:status:",
            lines_prefix="voicebot:monitor:lines:",
        )
        await erase_candidate(world.services, dana.candidate_id, "admin", "api:admin")
        await world.services.events.flush()
        for _ in range(100):  # candidate.erased reaches the stream from the outbox
            if bus.outbox_pending() == 0 and await client.xlen(bus.stream) == 4:
                break
            await asyncio.sleep(0.05)
        stream = await client.xrange(bus.stream)
        texts = [fields["event"] for _, fields in stream]
        assert not any(dana.name in t or dana.answer in t for t in texts)
        about_dana = [json.loads(t)["type"] for t in texts if dana.interview_id in t]
        assert about_dana == ["candidate.erased"]
        assert sum(omar.answer in t for t in texts) == 2  # the other candidate's events stay
        assert any('"candidate.erased"' in t for t in texts)
        shared = await client.lrange(recent_key, 0, -1)
        assert len(shared) == 1 and omar.name in shared[0]
        assert world.files_containing(dana.name) == []
        assert world.files_containing(dana.answer) == []
    finally:
        world.services.events.bus = world.bus = world.services.bus = embedded
        await client.aclose()
        await bus.close()


async def test_concurrent_erasures_of_one_candidate_erase_once(world):
    import asyncio

    dana = await add_candidate(world, Candidate(*DANA))
    results = await asyncio.gather(
        *(
            erase_candidate(world.services, dana.candidate_id, "admin", "api:admin")
            for _ in range(5)
        )
    )
    assert sorted(r.already_erased for r in results) == [False, True, True, True, True]
    await world.services.events.flush()
    db = sqlite3.connect(world.settings.data_dir / "events.sqlite3")
    (told,) = db.execute("SELECT COUNT(*) FROM events WHERE type = 'candidate.erased'").fetchone()
    assert told == 1
    entries = await world.audit.entries()
    assert [e["action"] for e in entries] == ["candidate.erase"]


async def test_a_copy_out_of_reach_makes_the_erasure_503_and_a_repeat_finishes_it(
    world, redis_server
):
    import asyncio

    import redis.asyncio as redis

    from voicebot.events.bus import RedisBus
    from voicebot.privacy.erasure import ErasureIncomplete

    bus = RedisBus(redis_server.url, outbox_path=world.settings.data_dir / "outbox.sqlite3")
    await bus.start()
    client = redis.from_url(redis_server.url, decode_responses=True)
    embedded = world.bus
    try:
        world.bus = world.services.bus = world.services.events.bus = bus
        dana = await add_candidate(world, Candidate(*DANA))
        for _ in range(100):
            if bus.outbox_pending() == 0 and await client.xlen(bus.stream) == 3:
                break
            await asyncio.sleep(0.05)
        redis_server.stop()  # Redis is away when the DELETE comes
        with pytest.raises(ErasureIncomplete, match="repeat the DELETE"):
            await erase_candidate(world.services, dana.candidate_id, "admin", "api:admin")
        assert await world.store.get_interview(dana.interview_id) is None  # the store is done
        assert world.services.metrics.internal_errors.labels("erasure")._value.get() == 1
        redis_server.start(port=redis_server.port)
        texts = [f["event"] for _, f in await client.xrange(bus.stream)]
        assert any(dana.answer in t for t in texts)  # still there: the first attempt missed it
        again = await erase_candidate(world.services, dana.candidate_id, "admin", "api:admin")
        assert again.already_erased
        texts = [f["event"] for _, f in await client.xrange(bus.stream)]
        assert not any(dana.answer in t or dana.name in t for t in texts)
        assert world.files_containing(dana.name) == []
    finally:
        world.bus = world.services.bus = world.services.events.bus = embedded
        await client.aclose()
        await bus.close(flush_secs=0.5)
