"""The rolling audio buffer keeps absolute positions through appends, drops and compaction."""

from __future__ import annotations

import numpy as np

from voicebot.audio.buffer import RollingAudio


def test_slices_by_absolute_position_survive_growth_and_compaction():
    buffer = RollingAudio(initial_capacity=100)
    signal = np.arange(5000, dtype=np.int16)
    for start in range(0, 5000, 37):
        buffer.append(signal[start : start + 37])
        buffer.discard_before(buffer.end - 300)
    assert buffer.end == 5000 and buffer.start == 4700
    assert np.array_equal(buffer.slice(4800, 4900), signal[4800:4900])
    assert np.array_equal(buffer.slice(0, 4750), signal[4700:4750])  # clipped to what is kept
    assert len(buffer.slice(4990, 6000)) == 10


def test_slices_are_copies_a_worker_thread_can_keep():
    buffer = RollingAudio(initial_capacity=64)
    buffer.append(np.ones(40, dtype=np.int16))
    piece = buffer.slice(0, 40)
    buffer.discard_before(40)
    buffer.append(np.full(60, 7, dtype=np.int16))  # compacts over the old samples
    assert (piece == 1).all()
