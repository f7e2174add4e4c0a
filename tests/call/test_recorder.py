"""The call recorder: stereo WAV aligned on the call clock, and the timeline."""

from __future__ import annotations

import io
import json
import wave

import numpy as np

from voicebot.audio.codec import ulaw_encode
from voicebot.call.recorder import CallRecorder


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


async def test_with_a_data_key_the_recording_and_timeline_are_encrypted_and_private(tmp_path):
    import os
    import stat

    from voicebot.crypto import Keyring, generate_key_entry, read_stored_file

    keyring = Keyring.parse(generate_key_entry("k1"))
    previous = os.umask(0o022)
    try:
        recorder = CallRecorder(tmp_path / "CA1", keyring=keyring)
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
