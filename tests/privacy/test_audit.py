"""The audit log: entries chain by hash, the table is insert-only, tampering is found and named."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.privacy.conftest import Candidate, add_candidate
from voicebot.privacy.audit import candidate_ref, verify_file


def audit_verify(world) -> subprocess.CompletedProcess:
    """``voicebot audit verify`` as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "voicebot.cli", "audit", "verify"],
        cwd=ROOT,
        env={**os.environ, "VOICEBOT_DATA_DIR": str(world.settings.data_dir)},
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_concurrent_entries_form_one_intact_chain(world):
    candidate = await add_candidate(world, Candidate("c-1", "Dana Whitfield", "+14155550123", "x"))
    row = await world.store.get_interview(candidate.interview_id)
    await asyncio.gather(
        *(
            world.audit.record(f"api:client{i % 3}", "interview.read", interview=row)
            for i in range(30)
        )
    )
    entries = await world.audit.entries(limit=100)
    assert [e["seq"] for e in entries] == list(range(1, 31))
    assert all(e["interview_id"] == candidate.interview_id for e in entries)
    assert all(e["candidate"] == candidate_ref("admin", "c-1") for e in entries)
    check = verify_file(world.store.path)
    assert check.ok and check.entries == 30
    done = audit_verify(world)
    assert done.returncode == 0, done.stderr
    assert "30 entries" in done.stdout


async def test_entries_hold_ids_and_no_personal_data(world):
    candidate = await add_candidate(
        world, Candidate("c-2", "Dana Whitfield", "+14155550123", "I split his aisles")
    )
    row = await world.store.get_interview(candidate.interview_id)
    await world.audit.record("monitor:alice", "monitor.call.view", interview=row, call_sid="CA1")
    raw = sqlite3.connect(world.store.path).execute("SELECT * FROM audit_log").fetchall()
    text = repr(raw)
    for secret in candidate.secrets():
        assert secret not in text
    assert candidate.interview_id in text and "monitor:alice" in text


async def test_the_table_refuses_updates_and_deletes(world):
    await world.audit.record("api:admin", "interview.read", interview_id="iv_1")
    db = sqlite3.connect(world.store.path)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("UPDATE audit_log SET actor = 'someone else'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("DELETE FROM audit_log")


@pytest.mark.parametrize("tamper", ["edit", "delete"])
async def test_verify_names_the_first_entry_tampered_with(world, tamper):
    for number in range(6):
        await world.audit.record("api:acme_ats", "interview.read", interview_id=f"iv_{number}")
    assert audit_verify(world).returncode == 0
    db = sqlite3.connect(world.store.path, isolation_level=None)
    # Whoever tampers with the file directly can drop the triggers first: the chain still shows it.
    db.execute("DROP TRIGGER audit_log_no_update")
    db.execute("DROP TRIGGER audit_log_no_delete")
    if tamper == "edit":
        db.execute("UPDATE audit_log SET actor = 'api:beta_hris' WHERE seq = 4")
    else:
        db.execute("DELETE FROM audit_log WHERE seq = 4")
    db.close()
    check = verify_file(world.store.path)
    assert not check.ok
    done = audit_verify(world)
    assert done.returncode == 1
    if tamper == "edit":
        assert check.broken_seq == 4
        assert "entry 4" in done.stdout and "content" in done.stdout
    else:
        assert check.broken_seq == 5  # the entry after the gap: entry 4 is missing
        assert "entry 4 is missing" in done.stdout
