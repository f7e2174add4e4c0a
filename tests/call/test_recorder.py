"""The call recorder: stereo WAV aligned on the call clock, and the timeline."""

from __future__ import annotations

import io
import json
import struct
import wave

import numpy as np

from voicebot.audio.codec import ulaw_encode
from voicebot.call.recorder import (
    FLUSH_SECS,
    CallRecorder,
    EncryptedFiles,
    PlainFiles,
    assemble_recording,
)


async def test_stereo_channels_are_placed_on_the_call_clock(tmp_path):
    recorder = CallRecorder(tmp_path / "CA1")
    tone = ulaw_encode(np.full(800, 8000, dtype=np.int16))  # 100 ms
    recorder.candidate_audio(0.5, tone)
    recorder.bot_audio(1.0, tone)
    recorder.event(0.5, "speech_started")
    recorder.event(1.0, "prompt_started", mark="1:q")
    await recorder.close()

    with wave.open(str(tmp_path / "CA1" / "call.wav")) as wav:
        assert wav.getnchannels() == 2 and wav.getframerate() == 8000
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16).reshape(-1, 2)
    left_voiced = np.flatnonzero(np.abs(pcm[:, 0]) > 1000)
    right_voiced = np.flatnonzero(np.abs(pcm[:, 1]) > 1000)
    assert left_voiced[0] == 4000 and left_voiced[-1] == 4799
    assert right_voiced[0] == 8000 and right_voiced[-1] == 8799
    lines = (tmp_path / "CA1" / "timeline.jsonl").read_text().splitlines()
    assert [json.loads(line)["event"] for line in lines] == ["speech_started", "prompt_started"]
    assert json.loads(lines[1])["t"] == 1.0


def _stereo(path):
    with wave.open(str(path)) as wav:
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16).reshape(-1, 2)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_audio_reaches_the_disk_as_the_call_goes_and_survives_a_crash(tmp_path):
    clock = FakeClock()
    recorder = CallRecorder(tmp_path / "CA2", clock=clock)
    frame = ulaw_encode(np.full(160, 8000, dtype=np.int16))  # 20 ms
    for index in range(150):  # 3 s of candidate audio, bot audio from 1 s, 20 ms apart
        clock.now = index * 0.02
        recorder.candidate_audio(index * 0.02, frame)
        if index >= 50:
            recorder.bot_audio(index * 0.02, frame)
        if index == 60:
            recorder.event(clock.now, "speech_started")
    recorder._last_write.result(timeout=5)  # the writer thread has what was flushed
    # The process dies here (no close): what is on disk is assembled as the next process does.
    assert not (tmp_path / "CA2" / "call.wav").exists()
    recorded_secs = assemble_recording(tmp_path / "CA2")
    assert 3.0 - FLUSH_SECS <= recorded_secs < 3.0  # all but the last flush interval
    pcm = _stereo(tmp_path / "CA2" / "call.wav")
    voiced = np.abs(pcm) > 1000
    assert voiced[:, 0].sum() >= (3.0 - FLUSH_SECS - 0.02) * 8000  # at most FLUSH_SECS lost
    assert voiced[:, 0][: len(pcm)].all()
    assert np.flatnonzero(voiced[:, 1])[0] == 8000  # the bot from 1 s on, on the same clock
    assert [json.loads(line)["event"] for line in (tmp_path / "CA2" / "timeline.jsonl").open()] == [
        "speech_started"
    ]
    assert not list((tmp_path / "CA2").glob("*.part"))
    assert assemble_recording(tmp_path / "CA2") is None  # again: nothing to do, the WAV stays
    assert (tmp_path / "CA2" / "call.wav").exists()


def test_a_record_cut_short_by_the_crash_is_left_out(tmp_path):
    recorder = CallRecorder(tmp_path / "CA3", clock=FakeClock())
    recorder.candidate_audio(0.0, ulaw_encode(np.full(800, 8000, dtype=np.int16)))
    recorder.flush()
    recorder._last_write.result(timeout=5)
    part = tmp_path / "CA3" / "candidate.ulaw.part"
    with part.open("ab") as file:  # the next record's header and half its audio
        file.write(struct.pack("<QI", 800, 800) + b"\x10" * 400)
    assert assemble_recording(tmp_path / "CA3")
    assert len(_stereo(tmp_path / "CA3" / "call.wav")) == 800


class SealingFiles(PlainFiles):
    """A stand-in for an encrypting store: every byte of the recording passes through it."""

    def __init__(self) -> None:
        self.appended: list[str] = []
        self.written: list[str] = []

    def append(self, path, chunk):
        self.appended.append(path.name)
        super().append(path, bytes(b ^ 0x5A for b in chunk))

    def read(self, path):
        return bytes(b ^ 0x5A for b in super().read(path))

    def write(self, path, data):
        self.written.append(path.name)
        super().write(path, bytes(b ^ 0x5A for b in data))


async def test_every_recording_byte_goes_through_the_files_interface(tmp_path):
    files = SealingFiles()
    recorder = CallRecorder(tmp_path / "CA4", files=files)
    tone = ulaw_encode(np.full(800, 8000, dtype=np.int16))
    recorder.candidate_audio(0.0, tone)
    recorder.bot_audio(0.1, tone)
    recorder.event(0.0, "call_started")
    await recorder.close()
    assert set(files.appended) == {"candidate.ulaw.part", "bot.ulaw.part", "timeline.jsonl"}
    assert files.written == ["call.wav"]
    raw = (tmp_path / "CA4" / "call.wav").read_bytes()
    assert not raw.startswith(b"RIFF")  # on disk only as the files object wrote it
    assert files.read(tmp_path / "CA4" / "call.wav").startswith(b"RIFF")


async def test_with_a_data_key_the_recording_and_timeline_are_encrypted_and_private(tmp_path):
    import os
    import stat

    from voicebot.crypto import Keyring, generate_key_entry, read_stored_file

    keyring = Keyring.parse(generate_key_entry("k1"))
    previous = os.umask(0o022)
    try:
        recorder = CallRecorder(tmp_path / "CA1", files=EncryptedFiles(keyring))
        tone = ulaw_encode(np.full(800, 8000, dtype=np.int16))
        recorder.candidate_audio(0.5, tone)
        recorder.event(0.5, "transcript", text="I repaired analytical engines")
        await recorder.close()
    finally:
        os.umask(previous)
    folder = tmp_path / "CA1"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for name in ("call.wav", "timeline.jsonl"):
        raw = (folder / name).read_bytes()
        assert b"RIFF" not in raw and b"analytical" not in raw, name
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600, name
    wav_bytes = read_stored_file(folder / "call.wav", keyring)
    with wave.open(io.BytesIO(wav_bytes)) as wav:
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16).reshape(-1, 2)
    assert np.flatnonzero(np.abs(pcm[:, 0]) > 1000)[0] == 4000
    timeline = read_stored_file(folder / "timeline.jsonl", keyring).decode().splitlines()
    assert json.loads(timeline[0])["text"] == "I repaired analytical engines"


async def test_rotation_moves_a_crash_s_part_files_to_the_new_key(tmp_path):
    """``voicebot data-key rotate`` re-encrypts leftover part files; the settling reads them."""
    from voicebot.cli import _rotate
    from voicebot.config import Settings
    from voicebot.crypto import FILE_MAGIC, Keyring, generate_key_entry, read_stored_file

    old, new = generate_key_entry("k1"), generate_key_entry("k2")
    tone = ulaw_encode(np.full(8000, 8000, dtype=np.int16))  # 1 s
    crashed = CallRecorder(tmp_path / "rec" / "CA5", files=EncryptedFiles(Keyring.parse(old)))
    crashed.candidate_audio(0.0, tone)
    crashed.event(0.0, "call_started")
    crashed.wait_written()  # on disk; the process dies without close()
    plain = CallRecorder(tmp_path / "rec" / "CA6")  # left before the key was set
    plain.bot_audio(0.0, tone)
    plain.wait_written()
    settings = Settings(
        data_dir=tmp_path / "data", recordings_dir=tmp_path / "rec", data_key=f"{new},{old}"
    )
    counts = await _rotate(settings)
    assert counts["files"] == 3  # a part file and a timeline, and a plain part file
    only_new = Keyring.parse(new)
    for folder, channel in (("CA5", 0), ("CA6", 1)):
        for part in (tmp_path / "rec" / folder).glob("*.part"):
            assert part.read_bytes().startswith(FILE_MAGIC)
        assert assemble_recording(tmp_path / "rec" / folder, EncryptedFiles(only_new)) == 1.0
        wav = read_stored_file(tmp_path / "rec" / folder / "call.wav", only_new)
        with wave.open(io.BytesIO(wav)) as reader:
            pcm = np.frombuffer(reader.readframes(8000), dtype=np.int16).reshape(-1, 2)
        assert (np.abs(pcm[:, channel]) > 1000).all()
    timeline = read_stored_file(tmp_path / "rec" / "CA5" / "timeline.jsonl", only_new)
    assert json.loads(timeline)["event"] == "call_started"
