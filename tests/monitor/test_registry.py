"""The monitor's call registry: live calls and recent ones, in one process and across processes."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from voicebot.events.live import LiveFeed
from voicebot.monitor.registry import CALLS_CHANNEL, CallRegistry, RedisRegistry
from voicebot.store.database import Store


def summary(call_sid: str, **fields) -> dict:
    return {
        "call_sid": call_sid,
        "job_id": "customer_service_en",
        "candidate_name": "Ann Lee",
        "started_at": time.time(),
        "state": "question",
        "question_index": 0,
        "question_count": 5,
        **fields,
    }


@pytest.fixture
async def store(tmp_path):
    store = Store(tmp_path / "db.sqlite3")
    await store.open()
    yield store
    await store.close()


async def test_list_watchers_get_updates_and_call_watchers_do_not(store):
    live = LiveFeed()
    registry = CallRegistry(live, store)
    with live.subscribe(CALLS_CHANNEL) as lists, live.subscribe() as every_call:
        registry.upsert(summary("CA1"))
        registry.upsert(summary("CA1", question_index=1))
        registry.ended({**summary("CA1", interview_id="iv1"), "status": "scoring"})
        registry.outcome("iv1", "completed")  # the report is stored: the outcome follows
        events = [lists.queue.get_nowait() for _ in range(lists.queue.qsize())]
        kinds = [event["type"] for event in events]
        assert kinds == ["call.updated", "call.updated", "call.ended", "call.ended"]
        assert events[-1]["call"]["status"] == "completed"
        assert every_call.queue.empty()  # a call-event watcher is not a list watcher
    assert not live.watched(CALLS_CHANNEL)


async def test_lines_are_kept_while_live_and_the_call_moves_to_recent(store):
    registry = CallRegistry(LiveFeed(), store)
    registry.upsert(summary("CA1"))
    registry.line("CA1", {"speaker": "bot", "text": "Hello"})
    registry.line("CA_unknown", {"speaker": "bot", "text": "ignored"})
    assert [c["call_sid"] for c in await registry.live_calls()] == ["CA1"]
    assert (await registry.get("CA1"))["live"] is True
    assert await registry.transcript("CA1") == [{"speaker": "bot", "text": "Hello"}]
    assert await registry.transcript("CA_unknown") == []
    registry.ended({**summary("CA1"), "end_reason": "completed"})
    assert await registry.live_calls() == []
    assert await registry.transcript("CA1") == []
    recent = await registry.recent_calls()
    assert recent[0]["call_sid"] == "CA1" and recent[0]["live"] is False


async def test_recent_calls_survive_a_restart_through_the_store(store):
    interview, _ = await store.create_interview(
        job_id="customer_service_en", candidate_id="c1", candidate_name="Bo Chen"
    )
    await store.create_call(call_sid="CA_before", interview_id=interview["id"], started_at=1.0)
    await store.finish_call(
        "CA_before", status="completed", end_reason="completed", duration_secs=5
    )
    registry = CallRegistry(LiveFeed(), store)  # a new process: nothing in memory
    recent = await registry.recent_calls()
    assert [c["call_sid"] for c in recent] == ["CA_before"]
    assert recent[0]["candidate_name"] == "Bo Chen" and recent[0]["live"] is False


async def eventually(check, limit_secs: float = 5.0):
    deadline = time.monotonic() + limit_secs
    while True:
        value = await check()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.02)


async def test_two_processes_share_live_calls_lines_and_recent(redis_server, store):
    prefix = f"test:{time.monotonic_ns()}"
    a = RedisRegistry(LiveFeed(), store, redis_server.url, prefix=prefix)
    b = RedisRegistry(LiveFeed(), None, redis_server.url, prefix=prefix)
    await a.start()
    await b.start()
    try:
        a.upsert(summary("CA1"))
        a.line("CA1", {"speaker": "candidate", "text": "I led the night shift"})
        listed = await eventually(b.live_calls)
        assert [c["call_sid"] for c in listed] == ["CA1"]
        assert (await b.get("CA1"))["candidate_name"] == "Ann Lee"
        assert await b.transcript("CA1") == [
            {"speaker": "candidate", "text": "I led the night shift"}
        ]
        a.ended({**summary("CA1", interview_id="iv1"), "status": "scoring"})
        a.outcome("iv1", "knocked_out")

        async def gone():
            return not await b.live_calls()

        assert await eventually(gone)
        assert await b.get("CA1") is None
        recent = await b.recent_calls()
        assert [c["call_sid"] for c in recent] == ["CA1"]
        assert recent[0]["status"] == "knocked_out"
    finally:
        await a.close()
        await b.close()


async def test_calls_of_a_dead_process_are_not_listed(redis_server):
    prefix = f"test:{time.monotonic_ns()}"
    registry = RedisRegistry(LiveFeed(), None, redis_server.url, prefix=prefix)
    await registry.start()
    try:
        dead = {**summary("CA_dead"), "process": "gone:1", "seen": time.time() - 60}
        await registry._redis.hset(f"{prefix}:calls", "CA_dead", json.dumps(dead))
        assert await registry.live_calls() == []
        assert await registry.get("CA_dead") is None
    finally:
        await registry.close()


async def test_a_closing_process_takes_its_calls_off_the_shared_list(redis_server):
    prefix = f"test:{time.monotonic_ns()}"
    a = RedisRegistry(LiveFeed(), None, redis_server.url, prefix=prefix)
    b = RedisRegistry(LiveFeed(), None, redis_server.url, prefix=prefix)
    await a.start()
    await b.start()
    try:
        a.upsert(summary("CA1"))
        assert await eventually(b.live_calls)
        await a.close()
        assert await b.live_calls() == []
    finally:
        await b.close()


async def test_without_redis_a_process_still_lists_its_own_calls(store):
    registry = RedisRegistry(LiveFeed(), store, "redis://127.0.0.1:1/0")
    await registry.start()
    try:
        registry.upsert(summary("CA1"))
        assert [c["call_sid"] for c in await registry.live_calls()] == ["CA1"]
        assert registry.errors >= 1
    finally:
        await registry.close()
