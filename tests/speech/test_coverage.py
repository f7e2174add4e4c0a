"""Unheard speech: voice well above the line's floor that no turn took in."""

from __future__ import annotations

import numpy as np
import pytest

from voicebot.speech.coverage import FRAME_SECS, SpeechCoverage, frame_level_dbfs

QUIET = -62.0  # a phone line's noise
VOICE = -22.0  # speech


def play(coverage: SpeechCoverage, levels: list[tuple[float, float]], start: float = 0.0):
    """Feed (seconds, level) stretches as 20 ms frames; returns every stretch reported."""
    found, t = [], start
    for secs, level in levels:
        for _ in range(round(secs / FRAME_SECS)):
            t += FRAME_SECS
            found += coverage.frame(round(t, 3), level)
    return found, t


def test_voice_that_no_turn_took_in_is_reported_once_it_settles():
    coverage = SpeechCoverage()
    found, t = play(coverage, [(2.0, QUIET), (1.0, VOICE), (1.0, QUIET)])
    assert found == []  # not yet: a turn may still start for it
    found, _ = play(coverage, [(3.0, QUIET)], start=t)
    assert len(found) == 1
    assert found[0].secs == pytest.approx(1.0, abs=0.03)
    assert found[0].start == pytest.approx(2.0, abs=0.03)
    assert coverage.unheard_secs == pytest.approx(1.0, abs=0.03)


def test_voice_inside_a_turn_with_its_margins_is_heard():
    coverage = SpeechCoverage(pre_roll=0.3, pad=0.2)
    found, t = play(coverage, [(2.0, QUIET), (1.0, VOICE)])
    coverage.turn_started(2.1)  # the VAD's start is a little late: the pre-roll covers it
    found2, t = play(coverage, [(0.5, QUIET)], start=t)
    coverage.turn_ended(2.1, 2.9)  # ... and its end a little early: the pad covers it
    found3, _ = play(coverage, [(4.0, QUIET)], start=t)
    assert found + found2 + found3 == []


def test_only_the_part_outside_turns_counts():
    # The turn ended mid-answer (a false end) and the next one started 1.5 s later: the
    # voice in between reached no turn.
    coverage = SpeechCoverage(pre_roll=0.3, pad=0.2)
    coverage.turn_started(1.0)
    found, t = play(coverage, [(1.0, QUIET), (4.0, VOICE)])
    coverage.turn_ended(1.0, 2.0)
    coverage.turn_started(3.8)
    found2, t = play(coverage, [(1.0, QUIET)], start=t)
    coverage.turn_ended(3.8, 5.0)
    found3 = coverage.finish(t + 3)
    reported = found + found2 + found3
    assert len(reported) == 1
    assert reported[0].secs == pytest.approx(3.5 - 2.2, abs=0.05)


def test_onset_is_where_the_voice_a_late_turn_missed_began():
    coverage = SpeechCoverage(pre_roll=0.3, pad=0.2)
    # "um", a pause of 0.6 s, then the answer; the VAD starts the turn 0.5 s into it.
    _, t = play(coverage, [(2.0, QUIET), (0.4, VOICE), (0.6, QUIET), (0.5, VOICE)])
    assert coverage.onset(t, limit=3.0) == pytest.approx(2.0, abs=0.03)
    # Not further back than asked, and not into a turn already taken.
    assert coverage.onset(t, limit=0.3) == pytest.approx(t - 0.3, abs=0.03)
    coverage.turn_started(1.9)
    coverage.turn_ended(1.9, 2.3)
    assert coverage.onset(t, limit=3.0) == pytest.approx(3.0, abs=0.03)


def test_no_onset_without_voice_now_or_across_a_long_gap():
    coverage = SpeechCoverage()
    _, t = play(coverage, [(2.0, QUIET), (0.5, VOICE), (1.0, QUIET)])
    assert coverage.onset(t, limit=3.0) is None  # the voice is over
    _, t = play(coverage, [(1.0, QUIET), (0.5, VOICE)], start=t)
    # 2 s of quiet since the earlier voice: only the voice going on now belongs to this turn.
    assert coverage.onset(t, limit=5.0) == pytest.approx(t - 0.5, abs=0.03)


def test_clicks_and_breaths_are_not_speech():
    coverage = SpeechCoverage()
    found, t = play(coverage, [(1.0, QUIET), (0.1, VOICE), (2.0, QUIET), (0.2, VOICE)])
    found += coverage.finish(t + 5)
    assert found == []


def test_the_floor_follows_a_noisy_line_so_its_hiss_is_not_voice():
    coverage = SpeechCoverage()
    found, t = play(coverage, [(30.0, -40.0)])  # loud hiss all along
    found += coverage.finish(t)
    assert found == []


def test_digital_silence_and_levels():
    assert frame_level_dbfs(np.zeros(160, np.int16)) == -120.0
    full = np.full(160, 32767, np.int16)
    assert frame_level_dbfs(full) == pytest.approx(0.0, abs=0.01)
