"""The hearing check on its own: levels and VAD scores in, resets and reports out."""

from __future__ import annotations

import numpy as np
import pytest

from voicebot.call.hearing import HearingGuard
from voicebot.metrics import Metrics
from voicebot.speech.turn import TurnConfig, TurnDetector

VOICE = (np.sin(np.arange(160) / 3) * 8000).astype(np.int16)
QUIET = (np.sin(np.arange(160) / 2) * 20).astype(np.int16)


class FakeStream:
    window_secs = 0.032

    def __init__(self):
        self.windows_done = 0
        self.resets = 0

    def reset_state(self):
        self.resets += 1


def guard(recover=None):
    events: list[tuple[str, dict]] = []
    stats: dict = {}
    metrics = Metrics()
    hearing = HearingGuard(
        TurnDetector(TurnConfig()),
        metrics,
        lambda kind, t=None, **data: events.append((kind, {"t": t, **data})),
        stats,
        pre_roll=0.3,
        pad=0.2,
        call_sid=lambda: "CA1",
        recover=recover,
    )
    hearing.vad = FakeStream()
    return hearing, events, stats, metrics


def play(hearing, frames, t=0.0, vad_probability=0.0):
    for frame in frames:
        t = round(t + 0.02, 3)
        hearing.vad.windows_done = int(t / 0.032)
        if int(t / 0.032) != int((t - 0.02) / 0.032):
            hearing.vad_window(t, vad_probability)
        hearing.audio(frame, t)
    return t


def test_voice_the_vad_scores_silent_resets_it_at_once():
    hearing, events, _, metrics = guard()
    t = play(hearing, [QUIET] * 50)
    play(hearing, [VOICE] * 40, t)
    assert hearing.vad.resets == 1
    assert [kind for kind, _ in events] == ["vad_reset"]
    assert metrics.vad_resets.labels("unheard")._value.get() == 1


def test_voice_no_turn_took_in_is_counted_when_nothing_recovers_it():
    hearing, events, stats, metrics = guard(recover=lambda unheard: False)
    t = play(hearing, [QUIET] * 50)
    t = play(hearing, [VOICE] * 60, t, vad_probability=0.9)  # VAD speech, yet no turn
    play(hearing, [QUIET] * 100, t)
    unheard = [data for kind, data in events if kind == "speech_unheard"]
    assert len(unheard) == 1 and unheard[0]["vad"] == "short"
    assert unheard[0]["secs"] == pytest.approx(1.2, abs=0.05)
    assert stats["unheard_speech_secs"] == unheard[0]["secs"]
    assert metrics.unheard_speech_seconds.labels("short")._value.get() == unheard[0]["secs"]


def test_voice_a_turn_took_in_late_is_counted_as_recovered():
    taken = []
    hearing, events, stats, metrics = guard(recover=lambda unheard: taken.append(unheard) or True)
    t = play(hearing, [QUIET] * 50)
    t = play(hearing, [VOICE] * 30, t, vad_probability=0.9)
    play(hearing, [QUIET] * 100, t)
    assert len(taken) == 1 and taken[0].gaps
    assert [kind for kind, _ in events] == ["speech_recovered"]
    assert "unheard_speech_secs" not in stats
    assert metrics.speech_recovered.labels("short")._value.get() == 1
