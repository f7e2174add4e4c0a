"""Retention: the purge removes each data class past its age, keeps ids, statuses and dates."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import time

from tests.conftest import ROOT
from tests.privacy.conftest import Candidate, add_candidate
from voicebot.privacy.retention import purge

DAY = 86_400.0


def with_retention(world, **days: float) -> None:
    for name, value in days.items():
        setattr(world.settings, f"retention_{name}_days", value)


async def two_candidates(world):
    old = await add_candidate(
        world,
        Candidate("old-1", "Olga Oldfield", "+14155550111", "forty days ago I drove a forklift"),
        ended_at=time.time() - 40 * DAY,
    )
    new = await add_candidate(
        world,
        Candidate("new-1", "Nina Newman", "+14155550122", "yesterday I packed the orders"),
        ended_at=time.time() - 1 * DAY,
    )
    return old, new


def event_rows(world, name: str, table: str) -> int:
    db = sqlite3.connect(world.settings.data_dir / name)
    try:
        return db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    finally:
        db.close()


async def backdate_events(world, days: float) -> None:
    """Every stored event so far was stored ``days`` ago (bus log and bridge store)."""
    when = time.time() - days * DAY
    for name, sql in (
        ("events.sqlite3", "UPDATE events SET created = ?"),
        ("hris_bridge.db", "UPDATE events SET received_at = ?"),
    ):
        db = sqlite3.connect(world.settings.data_dir / name, isolation_level=None)
        db.execute("PRAGMA busy_timeout=5000")
        db.execute(sql, (when,))
        db.close()


async def test_nothing_is_purged_by_default(world):
    old, new = await two_candidates(world)
    result = await purge(world.store, world.settings, audit=world.audit)
    assert sum(result.counts.values()) == 0
    assert set(result.kept_forever) == {"recordings", "transcripts", "reports", "events"}
    assert world.files_containing(old.answer)
    assert await world.audit.entries() == []


async def test_each_class_goes_after_its_age_and_ids_statuses_dates_stay(world):
    old, new = await two_candidates(world)
    with_retention(world, recordings=30, transcripts=30, reports=30)
    before = await world.store.get_call(old.call_sids[0])
    result = await purge(
        world.store, world.settings, audit=world.audit, metrics=world.services.metrics
    )
    assert result.counts == {"recordings": 1, "transcripts": 1, "reports": 1, "events": 0}
    # the old call: no recording, no words, no report
    assert not (world.settings.recordings_dir / old.call_sids[0]).exists()
    call = await world.store.get_call(old.call_sids[0])
    assert [t["text"] for t in call["turns"]] == ["", ""]
    assert call["outcome"] == {} and call["recording_dir"] == ""
    assert set(call["purged"]) == {"recordings", "transcripts"}
    # what the audit and the HR contract need stays
    assert call["status"] == "completed" and call["ended_at"] == before["ended_at"]
    assert [t["speaker"] for t in call["turns"]] == ["bot", "candidate"]
    interview = await world.store.get_interview(old.interview_id)
    assert interview["report"] is None and interview["purged"] == ["reports"]
    assert interview["status"] == "completed" and interview["status_history"]
    # the recent candidate is untouched
    assert (world.settings.recordings_dir / new.call_sids[0] / "call.wav").is_file()
    recent = await world.store.get_call(new.call_sids[0])
    assert recent["turns"][1]["text"] == new.answer
    assert (await world.store.get_interview(new.interview_id))["report"] is not None
    # the store file holds no copy of the purged words (secure delete, checkpointed)
    store_files = [p for p in world.files_containing(old.answer) if "voicebot.sqlite3" in p.name]
    assert store_files == []
    # counted and audited; a second run has nothing left to do
    assert world.services.metrics.purged.labels("recordings")._value.get() == 1
    (entry,) = await world.audit.entries()
    assert entry["action"] == "retention.purge" and entry["detail"]["removed"]["reports"] == 1
    again = await purge(world.store, world.settings, audit=world.audit)
    assert sum(again.counts.values()) == 0


async def test_events_past_their_age_leave_the_log_and_the_bridge_store(world):
    await two_candidates(world)
    await backdate_events(world, 40)
    with_retention(world, events=30)
    assert event_rows(world, "events.sqlite3", "events") == 6
    # the HR system has every event (the bridge purges only settled deliveries)
    db = sqlite3.connect(world.settings.data_dir / "hris_bridge.db", isolation_level=None)
    db.execute("UPDATE deliveries SET status = 'delivered'")
    db.close()
    dry = await purge(world.store, world.settings, dry_run=True)
    assert dry.counts["events"] == 6 + 6  # the bus log's and the bridge store's copies
    assert event_rows(world, "events.sqlite3", "events") == 6
    result = await purge(world.store, world.settings)
    assert result.counts["events"] == 12
    assert event_rows(world, "events.sqlite3", "events") == 0
    assert event_rows(world, "hris_bridge.db", "events") == 0
    assert event_rows(world, "hris_bridge.db", "deliveries") == 0


async def test_the_bridge_keeps_events_not_yet_delivered(world):
    await two_candidates(world)
    await backdate_events(world, 40)
    with_retention(world, events=30)
    await purge(world.store, world.settings)
    assert event_rows(world, "events.sqlite3", "events") == 0
    assert event_rows(world, "hris_bridge.db", "events") == 6  # pending: the HR system waits


async def test_purge_command_dry_run_then_for_real(world):
    old, _ = await two_candidates(world)
    env = {
        **os.environ,
        "VOICEBOT_DATA_DIR": str(world.settings.data_dir),
        "VOICEBOT_RECORDINGS_DIR": str(world.settings.recordings_dir),
        "VOICEBOT_RETENTION_RECORDINGS_DAYS": "30",
    }

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "voicebot.cli", "purge", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    dry = run("--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would remove: 1 recordings" in dry.stdout
    assert (world.settings.recordings_dir / old.call_sids[0]).is_dir()
    done = run()
    assert done.returncode == 0, done.stderr
    assert "removed: 1 recordings" in done.stdout
    assert not (world.settings.recordings_dir / old.call_sids[0]).exists()
    (entry,) = await world.audit.entries()
    assert entry["actor"] == "cli:purge"


async def test_a_transcript_purge_takes_the_words_from_the_timeline_and_keeps_the_audio(world):
    old, _ = await two_candidates(world)
    with_retention(world, transcripts=30)
    await purge(world.store, world.settings)
    folder = world.settings.recordings_dir / old.call_sids[0]
    assert (folder / "call.wav").is_file() and not (folder / "timeline.jsonl").exists()
    in_files = {p.name for p in world.files_containing(old.answer)}
    # the words stay only where other classes keep them: the report and the events
    assert "timeline.jsonl" not in in_files
    assert "voicebot.sqlite3" in in_files  # the report (its own retention) quotes the answer


async def test_the_server_purges_at_start_up_then_daily(world):
    import asyncio

    from voicebot.privacy.retention import run_daily

    old, _ = await two_candidates(world)
    with_retention(world, recordings=30)
    task = asyncio.create_task(run_daily(world.services))
    try:
        for _ in range(100):
            if await world.audit.entries():
                break
            await asyncio.sleep(0.05)
        (entry,) = await world.audit.entries()
        assert entry["actor"] == "system:retention"
        assert not (world.settings.recordings_dir / old.call_sids[0]).exists()
        assert not task.done()  # asleep until tomorrow's run
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_failing_purge_is_logged_and_counted_and_the_task_lives_on(world, caplog):
    import asyncio

    from voicebot.privacy.retention import run_daily

    with_retention(world, recordings=30)
    await world.store.close()  # the store is gone: the purge fails
    task = asyncio.create_task(run_daily(world.services))
    try:
        for _ in range(100):
            if "retention purge failed" in caplog.text:
                break
            await asyncio.sleep(0.05)
        assert "retention purge failed" in caplog.text
        metric = world.services.metrics.internal_errors.labels("retention_purge")
        assert metric._value.get() == 1
        assert not task.done()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await world.store.open()


async def test_with_redis_old_stream_entries_are_purged_too(world, tmp_path):
    import redis.asyncio as redis

    from tests.redis_helper import RedisServer
    from voicebot.events.types import make_event
    from voicebot.privacy.retention import REDIS_STREAM

    (tmp_path / "redis").mkdir()
    server = RedisServer(workdir=tmp_path / "redis").start()
    client = redis.from_url(server.url, decode_responses=True)
    try:
        old_ms = int((time.time() - 40 * DAY) * 1000)
        event = make_event("call.ended", {"call_sid": "CA1", "reason": "completed"})
        await client.xadd(
            REDIS_STREAM, {"id": event.id, "event": event.to_json()}, id=f"{old_ms}-0"
        )
        await client.xadd(REDIS_STREAM, {"id": "evt_new", "event": event.to_json()})
        world.settings.redis_url = server.url
        with_retention(world, events=30)
        dry = await purge(world.store, world.settings, dry_run=True)
        assert dry.counts["events"] == 1 and await client.xlen(REDIS_STREAM) == 2
        done = await purge(world.store, world.settings)
        assert done.counts["events"] == 1
        assert [fields["id"] for _, fields in await client.xrange(REDIS_STREAM)] == ["evt_new"]
    finally:
        await client.aclose()
        server.stop()
