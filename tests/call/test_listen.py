"""Listen-in mixing: both sides in 100 ms chunks, in order, on the candidate's clock."""

from __future__ import annotations

import numpy as np

from voicebot.audio.codec import ulaw_decode, ulaw_encode
from voicebot.call.listen import (
    CHUNK_SAMPLES,
    MAX_BOT_BACKLOG,
    ListenMixer,
    chunk_event,
    chunk_frame,
)


def tone(samples: int, amplitude: int, freq: float = 440.0) -> np.ndarray:
    t = np.arange(samples) / 8000
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def collect():
    chunks = []
    return chunks, lambda seq, ms, ulaw: chunks.append((seq, ms, ulaw))


def test_chunks_follow_the_candidate_clock_in_order():
    chunks, sink = collect()
    mixer = ListenMixer(sink)
    for _ in range(12):  # 12 carrier frames of 20 ms = 240 ms
        mixer.candidate(np.zeros(160, dtype=np.int16))
    assert [(seq, ms, len(ulaw)) for seq, ms, ulaw in chunks] == [(1, 0, 800), (2, 100, 800)]


def test_bot_audio_is_mixed_in_and_silence_when_the_bot_is_quiet():
    chunks, sink = collect()
    mixer = ListenMixer(sink)
    bot = tone(CHUNK_SAMPLES, 8000)
    mixer.bot(ulaw_encode(bot))
    mixer.candidate(np.zeros(CHUNK_SAMPLES, dtype=np.int16))
    mixer.candidate(tone(CHUNK_SAMPLES, 4000, 300.0))
    first, second = (ulaw_decode(ulaw) for _, _, ulaw in chunks)
    assert np.corrcoef(first.astype(float), bot.astype(float))[0, 1] > 0.99
    candidate_only = tone(CHUNK_SAMPLES, 4000, 300.0)
    assert np.corrcoef(second.astype(float), candidate_only.astype(float))[0, 1] > 0.99


def test_loud_sides_clip_instead_of_wrapping():
    chunks, sink = collect()
    mixer = ListenMixer(sink)
    loud = np.full(CHUNK_SAMPLES, 30000, dtype=np.int16)
    mixer.bot(ulaw_encode(loud))
    mixer.candidate(loud)
    mixed = ulaw_decode(chunks[0][2])
    assert mixed.min() > 0  # int16 wrap-around would turn it negative


def test_bot_backlog_is_bounded_when_the_candidate_side_stalls():
    chunks, sink = collect()
    mixer = ListenMixer(sink)
    for _ in range(50):  # 1 s of bot frames, no candidate audio
        mixer.bot(bytes([0x00]) * 160)
    assert mixer.bot_dropped == 50 * 160 - MAX_BOT_BACKLOG
    assert chunks == []


def test_mixer_started_mid_call_dates_chunks_on_the_call_clock():
    chunks, sink = collect()
    mixer = ListenMixer(sink, start_samples=8000 * 61)
    mixer.candidate(np.zeros(CHUNK_SAMPLES, dtype=np.int16))
    assert chunks[0][1] == 61_000


def test_browser_frame_carries_sequence_time_and_audio():
    ulaw = bytes(range(200)) * 4
    frame = chunk_frame(chunk_event("CA1", 7, 123_400, ulaw))
    assert int.from_bytes(frame[:4], "big") == 7
    assert int.from_bytes(frame[4:8], "big") == 123_400
    assert frame[8:] == ulaw
