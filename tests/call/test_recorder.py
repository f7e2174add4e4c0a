"""The call recorder: stereo WAV aligned on the call clock, and the timeline."""

from __future__ import annotations

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
