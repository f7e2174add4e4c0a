"""A voice bot's data at rest for the privacy tests: the store, recordings, event log, bridge store.

:func:`add_candidate` writes what one interview call leaves behind, through the same code the
server uses (the store, the embedded bus, the bridge's delivery store), with the candidate's
name, phone number and words in it, so a test can search the files for them afterwards.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest

from hris_bridge.store import DeliveryStore
from voicebot.config import Settings
from voicebot.crypto import Keyring, generate_key_entry, write_stored_file
from voicebot.events.bus import EmbeddedBus
from voicebot.events.emitter import EventEmitter, interview_refs
from voicebot.events.types import make_event
from voicebot.metrics import Metrics
from voicebot.privacy.audit import AuditLog
from voicebot.store.database import Store


@dataclass
class Candidate:
    """What identifies a candidate's data in the files."""

    candidate_id: str
    name: str
    phone: str
    answer: str
    client: str = "admin"
    interview_id: str = ""
    call_sids: list[str] = field(default_factory=list)

    def secrets(self) -> list[str]:
        """The strings that must not be found after the candidate is erased."""
        return [self.name, self.phone, self.answer]


@dataclass
class World:
    """One server's data directories and stores, open."""

    root: Path
    settings: Settings
    store: Store
    audit: AuditLog
    bus: EmbeddedBus
    bridge: DeliveryStore
    services: SimpleNamespace
    keyring: Keyring | None = None

    def files(self) -> list[Path]:
        """Every file under the data and recordings directories."""
        return [
            p
            for d in (self.settings.data_dir, self.settings.recordings_dir)
            for p in d.rglob("*")
            if p.is_file()
        ]

    def files_containing(self, text: str) -> list[Path]:
        """Files holding ``text`` (UTF-8 bytes) anywhere."""
        needle = text.encode()
        return [p for p in self.files() if needle in p.read_bytes()]


async def add_candidate(
    world: World, candidate: Candidate, *, ended_at: float | None = None, calls: int = 1
) -> Candidate:
    """An interview of the candidate with finished calls, recordings, a report and events."""
    store = world.store
    row, _ = await store.create_interview(
        job_id="customer_service_en",
        candidate_id=candidate.candidate_id,
        candidate_name=candidate.name,
        candidate_phone=candidate.phone,
        client=candidate.client,
    )
    candidate.interview_id = row["id"]
    events = []
    for number in range(calls):
        call_sid = f"CA{row['id'][3:]}{number:02d}"
        candidate.call_sids.append(call_sid)
        recording = world.settings.recordings_dir / call_sid
        recording.mkdir(parents=True)
        write_stored_file(
            recording / "call.wav", b"RIFF" + candidate.answer.encode() * 20, world.keyring
        )
        write_stored_file(
            recording / "timeline.jsonl",
            (json.dumps({"t": 1.0, "type": "final", "text": candidate.answer}) + "\n").encode(),
            world.keyring,
        )
        await store.start_interview_attempt(row["id"])
        await store.create_call(
            call_sid=call_sid,
            interview_id=row["id"],
            from_number=candidate.phone,
            recording_dir=str(recording),
        )
        await store.add_turn(call_sid=call_sid, seq=0, speaker="bot", text="Hello", start=0.0)
        await store.add_turn(
            call_sid=call_sid,
            seq=1,
            speaker="candidate",
            text=candidate.answer,
            start=2.0,
            end=6.0,
            question_id="teamwork",
        )
        await store.record_outcome(call_sid, "answers", "teamwork", candidate.answer)
        await store.finish_call(
            call_sid, status="completed", end_reason="completed", duration_secs=9
        )
        refs = {**interview_refs(row), "call_sid": call_sid}
        events.append(make_event("transcript.final", {**refs, "text": candidate.answer}))
        events.append(make_event("call.ended", {**refs, "reason": "completed"}))
    report = {
        "interview_id": row["id"],
        "candidate": {"id": candidate.candidate_id, "name": candidate.name},
        "questions": [{"id": "teamwork", "answer": candidate.answer}],
        "scores": {"evidence": [candidate.answer]},
    }
    await store.save_report(row["id"], report, "completed")
    events.append(
        make_event(
            "interview.completed", {**interview_refs(row), "status": "completed", "report": report}
        )
    )
    for event in events:
        await world.bus.publish(event)
    await world.bridge.record_events([(event, ["hr"]) for event in events])
    if ended_at is not None:
        await store.db.execute(
            "UPDATE calls SET started_at = ?, ended_at = ? WHERE interview_id = ?",
            (ended_at - 10, ended_at, row["id"]),
        )
        await store.db.execute(
            "UPDATE interviews SET report_at = ? WHERE id = ?", (ended_at, row["id"])
        )
        await store.db.commit()
    return candidate


@pytest.fixture
async def world(tmp_path):
    async with open_world(tmp_path) as opened:
        yield opened


@pytest.fixture
async def keyed_world(tmp_path):
    """The same with ``VOICEBOT_DATA_KEY`` set: every store, event file and recording encrypted."""
    async with open_world(tmp_path, Keyring.parse(generate_key_entry("k1"))) as opened:
        yield opened


@contextlib.asynccontextmanager
async def open_world(tmp_path: Path, keyring: Keyring | None = None) -> AsyncIterator[World]:
    """A world's stores opened (encrypted with ``keyring``), closed after."""
    settings = Settings(
        data_dir=tmp_path / "data",
        recordings_dir=tmp_path / "recordings",
        api_token="admin-token-0123456789",
        api_clients="acme_ats=acme-token-0123456789,beta_hris=beta-token-0123456789",
    )
    settings.data_dir.mkdir()
    settings.recordings_dir.mkdir()
    store = Store(settings.data_dir / "voicebot.sqlite3", keyring=keyring)
    await store.open()
    metrics = Metrics()
    audit = AuditLog(store.path, metrics)
    await audit.open()
    bus = EmbeddedBus(settings.data_dir / "events.sqlite3", keyring=keyring)
    await bus.start()
    bridge = await DeliveryStore.open(settings.data_dir / "hris_bridge.db", keyring=keyring)
    emitter = EventEmitter(bus)
    emitter.start()
    services = SimpleNamespace(
        settings=settings,
        store=store,
        audit=audit,
        bus=bus,
        events=emitter,
        metrics=metrics,
        sessions={},
        registry=None,
        keyring=keyring,
    )
    try:
        yield World(tmp_path, settings, store, audit, bus, bridge, services, keyring)
    finally:
        await emitter.close()
        await bridge.close()
        await bus.close()
        await audit.close()
        await store.close()
