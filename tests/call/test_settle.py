"""Settling the calls of dead server processes: outcome, report, events once, recording.

A real store, a real embedded bus and the real job scripts; the "dead process" is a row in the
store that no running process matches. The crash itself, with a real server process killed by
SIGKILL, is in ``tests/e2e/test_crash_recovery.py``.
"""

from __future__ import annotations

import os
import wave

import numpy as np
import pytest

from voicebot.audio.codec import ulaw_encode
from voicebot.call.recorder import CallRecorder
from voicebot.call.settle import CallSettler, ProcessIdentity
from voicebot.config import Settings
from voicebot.dialogue.report import interview_status
from voicebot.dialogue.script import load_scripts
from voicebot.events.bus import EmbeddedBus
from voicebot.events.emitter import EventEmitter, interview_refs
from voicebot.events.types import derived_event_id
from voicebot.monitor.registry import CallRegistry
from voicebot.services import Services
from voicebot.store.database import Store

JOB = "customer_service_en"


@pytest.fixture
async def services(tmp_path):
    settings = Settings(
        data_dir=tmp_path / "data", recordings_dir=tmp_path / "rec", stream_token_secret="s"
    )
    services = Services(settings)
    services.store = Store(tmp_path / "data" / "voicebot.sqlite3")
    await services.store.open()
    services.scripts = {JOB: load_scripts(settings.dialogues_dir)[JOB]}
    services.bus = EmbeddedBus(tmp_path / "data" / "events.sqlite3")
    await services.bus.start()
    services.events = EventEmitter(services.bus)
    services.events.start()
    services.registry = CallRegistry(services.live, services.store)
    yield services
    await services.events.close()
    await services.bus.close()
    await services.store.close()


async def _events(services) -> list:
    deliveries = await services.bus.read("test", "t", count=1000, block_ms=0)
    for delivery in deliveries:
        await services.bus.ack("test", delivery.message_id)
    return [delivery.event for delivery in deliveries]


async def _dead_process_call(
    services, tmp_path, owner: str = "proc_dead", sid: str = "CA1", files=None
):
    """An interview in progress with one answer stored and 2 s of candidate audio on disk."""
    store = services.store
    await store.register_process(owner, host="elsewhere", pid=1)
    await store.process_heartbeat(owner)
    interview, _ = await store.create_interview(
        job_id=JOB, candidate_id="c1", candidate_name="Ann Lee"
    )
    recorder = CallRecorder(tmp_path / "rec" / sid, files=files)
    await store.create_call(
        call_sid=sid,
        interview_id=interview["id"],
        owner=owner,
        recording_dir=str(recorder.directory),
    )
    await store.start_interview_attempt(interview["id"])
    await store.update_interview(interview["id"], consent=1, consent_via="dtmf")
    await store.add_turn(call_sid=sid, seq=1, speaker="bot", text="Tell me...", start=0.0)
    await store.add_turn(
        call_sid=sid,
        seq=2,
        speaker="candidate",
        question_id="experience",
        text="I worked three years at a call centre helping customers with billing.",
        start=3.0,
        end=8.0,
    )
    recorder.candidate_audio(0.0, ulaw_encode(np.full(16000, 8000, dtype=np.int16)))
    recorder.flush()
    recorder._last_write.result(timeout=5)  # on disk; the process "dies" without close()
    return interview


async def test_a_dead_process_call_is_settled_fully_and_only_once(services, tmp_path):
    interview = await _dead_process_call(services, tmp_path)
    await services.store.db.execute("UPDATE processes SET heartbeat_at = 0")  # long silent

    settler = CallSettler(services, ProcessIdentity.current())
    assert await settler.start() == 1
    await settler.close()

    call = await services.store.get_call("CA1")
    assert (call["status"], call["end_reason"]) == ("failed", "server_restart")
    stored = await services.store.get_interview(interview["id"])
    assert stored["status"] == "incomplete"
    assert stored["report"]["questions"][0]["answer"].startswith("I worked three years")
    with wave.open(str(tmp_path / "rec" / "CA1" / "call.wav")) as wav:
        assert wav.getnchannels() == 2 and wav.getnframes() == 16000
    assert call["duration_secs"] == 2.0  # as long as the recording, at least
    events = await _events(services)
    assert [(e.type, e.data.get("reason") or e.data.get("status")) for e in events] == [
        ("call.ended", "server_restart"),
        ("interview.completed", "incomplete"),
    ]
    assert events[0].data["interview_id"] == interview["id"]
    live = await services.registry.live_calls()
    recent = await services.registry.recent_calls()
    assert live == [] and [c["call_sid"] for c in recent] == ["CA1"]

    # The next process start settles nothing again and emits nothing again.
    again = CallSettler(services, ProcessIdentity.current())
    assert await again.start() == 0
    await again.close()
    assert await _events(services) == []  # nothing new after what the group already read


async def test_with_a_data_key_a_crashed_call_settles_into_an_encrypted_recording(tmp_path):
    """Part files encrypted as the call went are assembled into an encrypted ``call.wav``."""
    import io
    import stat

    from voicebot.call.recorder import EncryptedFiles, recording_files
    from voicebot.crypto import FILE_MAGIC, Keyring, generate_key_entry, read_stored_file

    keyring = Keyring.parse(generate_key_entry("k1"))
    settings = Settings(
        data_dir=tmp_path / "data", recordings_dir=tmp_path / "rec", stream_token_secret="s"
    )
    services = Services(settings)
    services.keyring = keyring
    services.recording_files = recording_files(keyring)  # as Services.start chooses
    services.store = Store(tmp_path / "data" / "voicebot.sqlite3", keyring=keyring)
    await services.store.open()
    services.scripts = {JOB: load_scripts(settings.dialogues_dir)[JOB]}
    services.bus = EmbeddedBus(tmp_path / "data" / "events.sqlite3", keyring=keyring)
    await services.bus.start()
    services.events = EventEmitter(services.bus)
    services.events.start()
    services.registry = CallRegistry(services.live, services.store)
    try:
        # the dead process had files objects of its own (its writers die with it)
        interview = await _dead_process_call(services, tmp_path, files=EncryptedFiles(keyring))
        folder = tmp_path / "rec" / "CA1"
        part = folder / "candidate.ulaw.part"
        raw_part = part.read_bytes()
        assert raw_part.startswith(FILE_MAGIC)  # the audio never reached the disk in the clear
        assert bytes(ulaw_encode(np.full(160, 8000, dtype=np.int16))) not in raw_part
        assert stat.S_IMODE(part.stat().st_mode) == 0o600
        with part.open("ab") as file:  # the crash tore the next chunk: its head and a bit
            file.write(b"\x00\x00\x00\x10\x00" + b"\x42" * 100)
        await services.store.db.execute("UPDATE processes SET heartbeat_at = 0")

        settler = CallSettler(services, ProcessIdentity.current())
        assert await settler.start() == 1
        await settler.close()

        wav_path = folder / "call.wav"
        assert not list(folder.glob("*.part"))
        raw = wav_path.read_bytes()
        assert raw.startswith(FILE_MAGIC) and b"RIFF" not in raw
        assert stat.S_IMODE(wav_path.stat().st_mode) == 0o600
        with wave.open(io.BytesIO(read_stored_file(wav_path, keyring))) as wav:
            assert wav.getnchannels() == 2 and wav.getnframes() == 16000
            pcm = np.frombuffer(wav.readframes(16000), dtype=np.int16).reshape(-1, 2)
        assert (np.abs(pcm[:, 0]) > 1000).all()  # every sample the candidate said, decrypted
        stored = await services.store.get_interview(interview["id"])
        assert stored["status"] == "incomplete"
        assert stored["report"]["questions"][0]["answer"].startswith("I worked three years")
        for path in (tmp_path / "data").iterdir():
            assert b"call centre" not in path.read_bytes(), path.name
    finally:
        await services.events.close()
        await services.bus.close()
        await services.store.close()


async def test_settling_cut_short_by_another_crash_is_finished_with_the_same_events(
    services, tmp_path
):
    interview = await _dead_process_call(services, tmp_path)
    store = services.store
    # A first settler claimed the call, emitted call.ended, then died itself.
    await store.register_process("proc_settler", host="elsewhere", pid=2)
    assert await store.claim_unsettled_call(
        "CA1", dead_owner="proc_dead", new_owner="proc_settler", ended_at=1.0
    )
    await store.update_interview(interview["id"], status="scoring")
    call = await store.get_call("CA1")
    first_id = derived_event_id(int(call["started_at"] * 1000), "settle:CA1:call.ended")
    services.events.emit_with_id(
        first_id,
        "call.ended",
        **interview_refs(interview),
        call_sid="CA1",
        reason="server_restart",
        duration_secs=0,
    )
    await services.events.flush()
    await store.db.execute("UPDATE processes SET heartbeat_at = 0")

    settler = CallSettler(services, ProcessIdentity.current())
    assert await settler.start() == 1
    await settler.close()
    events = await _events(services)
    assert [e.type for e in events] == ["call.ended", "interview.completed"]
    assert events[0].id == first_id  # the same event, stored once
    assert (await store.get_interview(interview["id"]))["status"] == "incomplete"


async def test_only_calls_of_dead_owners_are_settled(services, tmp_path):
    me = ProcessIdentity.current()
    store = services.store
    alive = await _dead_process_call(services, tmp_path, owner="proc_other_host", sid="CA_a")
    # A live process on this host: the test runner's parent, with its real start time.
    await store.register_process(
        "proc_parent", host=me.host, pid=os.getppid(), pid_started=_pid_started(os.getppid())
    )
    await _dead_process_call(services, tmp_path, owner="proc_gone", sid="CA_b")
    await store.db.execute("UPDATE processes SET pid = 999999999 WHERE id = 'proc_gone'")
    await store.db.execute("UPDATE processes SET host = ? WHERE id = 'proc_gone'", (me.host,))
    interview_c = await _dead_process_call(services, tmp_path, owner="proc_other", sid="CA_c")
    await store.db.execute("UPDATE calls SET owner = 'proc_parent' WHERE call_sid = ?", ("CA_c",))
    await store.db.commit()

    settler = CallSettler(services, me)
    assert await settler.start() == 1  # CA_b: its pid is gone
    await settler.close()
    assert (await store.get_call("CA_a"))["status"] == "in_progress"  # fresh heartbeat
    assert (await store.get_call("CA_b"))["status"] == "failed"
    assert (await store.get_call("CA_c"))["status"] == "in_progress"  # a live pid here
    assert (await store.get_interview(alive["id"]))["status"] == "in_progress"
    assert (await store.get_interview(interview_c["id"]))["status"] == "in_progress"


def _pid_started(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as file:
        stat = file.read()
    return stat[stat.rfind(")") + 2 :].split()[19]


def test_a_call_cut_by_a_crash_keeps_what_was_already_decided():
    def report(**fields):
        return {"opted_out": False, "consent": True, "questions": [], **fields}

    assert interview_status("server_restart", report()) == "incomplete"
    assert interview_status("server_restart", report(consent=False)) == "declined"
    assert interview_status("server_restart", report(opted_out=True)) == "opted_out"
    failed = {"knockout": {"passed": False}}
    assert interview_status("server_restart", report(questions=[failed])) == "knocked_out"
    assert interview_status("caller_hangup", report(consent=False)) == "incomplete"


async def test_a_recording_left_in_parts_by_a_crash_after_the_call_ended_is_assembled(
    services, tmp_path
):
    await _dead_process_call(services, tmp_path, owner="proc_1", sid="CA_ended")
    await _dead_process_call(services, tmp_path, owner="proc_2", sid="CA_live")
    store = services.store
    await store.finish_call("CA_ended", status="completed", end_reason="completed", duration_secs=2)
    me = ProcessIdentity.current()
    await store.db.execute("UPDATE calls SET owner = ? WHERE call_sid = 'CA_live'", (me.id,))
    await store.db.commit()

    settler = CallSettler(services, me)
    await settler.start()
    await settler.close()
    assert (tmp_path / "rec" / "CA_ended" / "call.wav").exists()
    assert not list((tmp_path / "rec" / "CA_ended").glob("*.part"))
    assert not (tmp_path / "rec" / "CA_live" / "call.wav").exists()  # still on: left alone
    assert list((tmp_path / "rec" / "CA_live").glob("*.part"))
