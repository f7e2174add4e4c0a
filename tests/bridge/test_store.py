"""The bridge's SQLite delivery state: idempotent intake, due order, attempt log, restarts."""

from __future__ import annotations

import time

import pytest

from hris_bridge.store import DEAD, DELIVERED, FAILED, PENDING, DeliveryStore, iso_to_epoch
from tests.bridge.conftest import call_event, completed_event


async def test_intake_is_idempotent_per_event_and_endpoint(store):
    event = completed_event(1)
    assert await store.record_event(event, ["a", "b"]) == 2
    assert await store.record_event(event, ["a", "b"]) == 0  # the bus delivered it again
    assert await store.record_event(event, ["a", "b", "c"]) == 1  # an endpoint was added
    rows = await store.deliveries_for_event(event.id)
    assert [(r.endpoint_id, r.status) for r in rows] == [
        ("a", PENDING),
        ("b", PENDING),
        ("c", PENDING),
    ]
    assert (await store.get_event(event.id)) == event


async def test_due_in_event_order_and_attempts_logged(store):
    events = [call_event("call.started", n) for n in range(5)]
    for event in events:
        await store.record_event(event, ["a"])
    due = await store.due("a", limit=10)
    assert [d.event.id for d in due] == [e.id for e in events]
    assert [d.event.id for d in await store.due("a", exclude={due[0].row.id})] == [
        e.id for e in events[1:]
    ]
    assert await store.due("b") == []
    now = time.time()
    await store.record_attempt(
        due[0].row.id,
        status=FAILED,
        attempted_at=now,
        duration_ms=12.5,
        status_code=503,
        error="HTTP 503",
        next_attempt_at=now + 60,
    )
    await store.record_attempt(
        due[1].row.id,
        status=DELIVERED,
        attempted_at=now,
        duration_ms=3,
        status_code=200,
        error=None,
    )
    assert [d.event.id for d in await store.due("a")] == [e.id for e in events[2:]]
    assert await store.next_due_at("a", after=now) == now + 60
    failed = await store.get_delivery(events[0].id, "a")
    assert (failed.status, failed.attempts, failed.last_status_code) == (FAILED, 1, 503)
    delivered = await store.get_delivery(events[1].id, "a")
    assert delivered.status == DELIVERED and delivered.delivered_at >= now
    [attempt] = await store.attempts(failed.id)
    assert (attempt.status_code, attempt.duration_ms, attempt.error) == (503, 12.5, "HTTP 503")
    counts = await store.counts()
    assert counts["deliveries"]["pending"] == 3 and counts["by_endpoint"]["a"]["failed"] == 1
    assert counts["events"] == 5 and counts["attempts"] == 2


async def test_state_survives_reopening(tmp_path):
    path = tmp_path / "s.db"
    event = completed_event(2)
    async with DeliveryStore(path) as store:
        await store.record_event(event, ["a"])
        row = await store.get_delivery(event.id, "a")
        await store.record_attempt(
            row.id, status=DEAD, attempted_at=time.time(), duration_ms=1, status_code=500, error="x"
        )
    async with DeliveryStore(path) as store:
        [dead] = await store.deliveries(status=DEAD)
        assert dead.event_id == event.id and dead.event_type == "interview.completed"
        assert await store.record_event(event, ["a"]) == 0
        assert (await store.get_delivery(event.id, "a")).status == DEAD


async def test_time_range_queries_use_the_event_timestamp(store):
    early = call_event("call.started", 1, timestamp="2026-11-22T09:00:00.000Z")
    late = call_event("call.ended", 2, timestamp="2026-11-22T10:00:00.000Z")
    await store.record_event(early, ["a"])
    await store.record_event(late, ["a"])
    t9 = iso_to_epoch("2026-11-22T09:00:00Z")
    t10 = iso_to_epoch("2026-11-22T10:00:00+00:00")
    assert [e.id for e in await store.events(since=t9, until=t10)] == [early.id]
    assert [e.id for e in await store.events(since=t9)] == [early.id, late.id]
    assert [e.id for e in await store.events(since=t9, event_type="call.ended")] == [late.id]
    assert iso_to_epoch("not a time") is None


async def test_prune_forgets_settled_events_only(store):
    settled, dead, open_, young = (completed_event(n) for n in range(4))
    await store.record_events([(e, ["a"]) for e in (settled, dead, open_)], now=1000.0)
    await store.record_event(young, ["a"], now=time.time())
    for event, status in ((settled, DELIVERED), (dead, DEAD), (young, DELIVERED)):
        row = await store.get_delivery(event.id, "a")
        await store.record_attempt(
            row.id, status=status, attempted_at=1001.0, duration_ms=1, status_code=200, error=None
        )
    assert await store.prune(time.time() - 60) == 1
    assert await store.get_event(settled.id) is None
    assert await store.get_delivery(settled.id, "a") is None
    for kept in (dead, open_, young):
        assert await store.get_event(kept.id) is not None
    assert (await store.counts())["attempts"] == 2


async def test_with_a_data_key_stored_payloads_are_encrypted(tmp_path):
    from voicebot.crypto import DecryptionError, Keyring, generate_key_entry

    keyring = Keyring.parse(generate_key_entry("k1"))
    event = completed_event(7)
    path = tmp_path / "hris_bridge.db"
    async with DeliveryStore(path, keyring) as store:
        await store.record_event(event, ["a"])
        assert (await store.get_event(event.id)) == event
        assert [d.event for d in await store.due("a")] == [event]
        assert await store.events(event_ids=[event.id]) == [event]
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert event.id.encode() in raw  # ids and types stay searchable
    assert event.to_json()[-40:].encode() not in raw
    async with DeliveryStore(path) as store:
        with pytest.raises(DecryptionError):
            await store.get_event(event.id)


async def test_with_a_data_key_an_erased_candidates_encrypted_events_are_forgotten(tmp_path):
    from voicebot.crypto import Keyring, generate_key_entry

    keyring = Keyring.parse(generate_key_entry("k1"))
    erased, kept = completed_event(1), completed_event(2)
    async with DeliveryStore(tmp_path / "hris_bridge.db", keyring) as store:
        await store.record_events([(erased, ["a"]), (kept, ["a"])])
        assert await store.erase_interviews([erased.data["interview_id"]]) == 1
        assert await store.get_event(erased.id) is None
        assert await store.get_event(kept.id) == kept
        assert [d.event.id for d in await store.due("a")] == [kept.id]


async def test_an_attempt_that_meets_a_locked_database_is_stored_on_a_retry(store, monkeypatch):
    # Another connection (the server erasing a candidate, a checkpoint) can make SQLite answer
    # "database is locked" at once; the attempt is written a moment later, not lost.
    import sqlite3

    event = call_event("call.started", 1)
    await store.record_event(event, ["a"])
    [due] = await store.due("a")
    real = store.db.executemany
    locked = {"left": 2}

    async def executemany(sql, params):
        if locked["left"] and sql.startswith("INSERT INTO attempts"):
            locked["left"] -= 1
            raise sqlite3.OperationalError("database is locked")
        return await real(sql, params)

    monkeypatch.setattr(store.db, "executemany", executemany)
    now = time.time()
    await store.record_attempt(
        due.row.id, status=DELIVERED, attempted_at=now, duration_ms=3, status_code=200, error=None
    )
    delivered = await store.get_delivery(event.id, "a")
    assert delivered.status == DELIVERED and locked["left"] == 0
    assert len(await store.attempts(delivered.id)) == 1
