"""Speech coverage: voice the carrier delivered that reached no turn ("unheard speech").

A witness independent of the VAD: the level of each 20 ms frame of the candidate's audio against
the line's own noise floor. A stretch of frames well above that floor (a voice, not a click) that
no turn's audio covers was heard by nobody: the candidate said something the interview did not
take in. :class:`SpeechCoverage` is pure (frame levels and turn spans in, unheard stretches out,
times on the call clock); the call layer counts the stretches
(``voicebot_unheard_speech_seconds_total``), puts them on the call's timeline (``speech_unheard``)
and, when the VAD scored such a stretch as non-speech, resets the VAD's recurrent state (its
state, not the audio, is what goes deaf: see ``VadStream.reset_state``).

A turn covers its audio from ``speech_start - pre_roll`` to ``speech_end + pad``: what the
transcription of the turn takes in.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

FRAME_SECS = 0.02
FLOOR_WINDOW_FRAMES = 250
"""The line's noise floor is a low percentile of the last 5 s of frame levels..."""
FLOOR_PERCENTILE = 10
"""...(speech has gaps between words; a hiss has none, so the floor rises to it)."""
FLOOR_EVERY_FRAMES = 10
VOICE_ABOVE_FLOOR_DB = 18.0
"""A frame this far above the floor is voice-like (speech peaks 25-40 dB above a phone line)."""
VOICE_MIN_DBFS = -45.0
"""...and at least this loud (digital silence has no floor to stand above)."""
MIN_UNHEARD_SECS = 0.3
"""Shorter uncovered voice (a click, a breath, the tail of a word) is not reported."""
MAX_GAP_SECS = 0.3
"""Voice-like frames this close together are one stretch (the gaps between words)."""
ONSET_GAP_SECS = 1.5
"""Voice this close before a turn's start (a filler, then a thinking pause) belongs to the turn."""
SETTLE_SECS = 1.5
"""A stretch is judged this long after it ends: by then any turn that takes it in has begun
(a turn starts within about 0.2 s of the voice, plus the VAD's lag behind the audio)."""


@dataclass(frozen=True)
class UnheardSpeech:
    """A stretch of voice no turn took in: ``start``..``end`` (call clock), ``secs`` uncovered.

    ``gaps`` are the uncovered parts (the stretch may be partly inside turns).
    """

    start: float
    end: float
    secs: float
    gaps: tuple[tuple[float, float], ...] = ()


def frame_level_dbfs(samples: np.ndarray) -> float:
    """Level of int16 samples in dBFS (-120 for digital silence)."""
    if not len(samples):
        return -120.0
    x = samples.astype(np.float32)  # a plain cast and a square: numpy keeps the GIL here
    energy = float(np.square(x).sum()) / len(samples)
    if energy <= 0:
        return -120.0
    return 10 * math.log10(energy / (32768.0 * 32768.0))


class SpeechCoverage:
    """Finds voice that no turn covered; see the module docstring."""

    def __init__(self, pre_roll: float = 0.3, pad: float = 0.2):
        self.pre_roll = pre_roll
        self.pad = pad
        self._floor = -70.0
        self._levels: deque[float] = deque(maxlen=FLOOR_WINDOW_FRAMES)
        self._frames = 0
        self._run_start: float | None = None
        self._run_end = 0.0
        self._runs: list[tuple[float, float]] = []  # closed stretches waiting to be judged
        self._turns: list[tuple[float, float]] = []  # covered spans (with pre-roll and pad)
        self._open_turn: float | None = None  # speech_start of the turn in progress
        self.voiced_secs = 0.0
        self.unheard_secs = 0.0

    def frame(self, t: float, level_dbfs: float) -> list[UnheardSpeech]:
        """Take the level of the 20 ms frame ending at ``t``; returns stretches judged now."""
        self._levels.append(level_dbfs)
        self._frames += 1
        if level_dbfs < self._floor:
            self._floor = level_dbfs
        elif self._frames % FLOOR_EVERY_FRAMES == 0:
            self._floor = float(np.percentile(self._levels, FLOOR_PERCENTILE))
        voiced = level_dbfs >= max(self._floor + VOICE_ABOVE_FLOOR_DB, VOICE_MIN_DBFS)
        if voiced:
            self.voiced_secs += FRAME_SECS
            if self._run_start is not None and t - FRAME_SECS - self._run_end <= MAX_GAP_SECS:
                self._run_end = t
            else:
                self._close_run()
                self._run_start, self._run_end = t - FRAME_SECS, t
        elif self._run_start is not None and t - self._run_end > MAX_GAP_SECS:
            self._close_run()
        return self._judge(t, final=False)

    def voice_since(self, now: float) -> float | None:
        """Start of the voice going on at ``now`` (gaps between words included), or None."""
        if self._run_start is None or now - self._run_end > MAX_GAP_SECS:
            return None
        return self._run_start

    def onset(self, now: float, limit: float) -> float | None:
        """Where uncovered voice leading up to ``now`` began, at most ``limit`` s back, or None.

        A turn the VAD started late (a quiet "alright so", or a filler and a pause before the
        answer) is moved back to here, so its first words are heard: the voice going on now and
        any stretch not yet judged (``SETTLE_SECS``) that ended less than ``ONSET_GAP_SECS``
        before it, never reaching into a turn already taken.
        """
        runs = list(self._runs)
        if self._run_start is not None and now - self._run_end <= MAX_GAP_SECS:
            runs.append((self._run_start, self._run_end))
        if not runs or now - runs[-1][1] > MAX_GAP_SECS:
            return None
        covered = max((hi for _, hi in self._turns), default=-math.inf)
        earliest = max(now - limit, covered)
        onset = None
        for start, end in reversed(runs):
            if end <= earliest or (onset is not None and onset - end > ONSET_GAP_SECS):
                break
            onset = max(start, earliest)
        return onset

    @property
    def judging(self) -> bool:
        """Whether voice is waiting to be judged (it may yet turn out unheard)."""
        return bool(self._runs) or self._run_start is not None

    @property
    def in_turn(self) -> bool:
        """Whether a turn is open (started, not ended)."""
        return self._open_turn is not None

    def turn_started(self, speech_start: float) -> None:
        """A turn began at ``speech_start``: it covers from there (less pre-roll) on."""
        self._open_turn = speech_start

    def turn_ended(self, speech_start: float, speech_end: float) -> None:
        """A turn's audio was taken from ``speech_start`` to ``speech_end`` (plus margins)."""
        self._open_turn = None
        self._turns.append((speech_start - self.pre_roll, speech_end + self.pad))

    def finish(self, t: float) -> list[UnheardSpeech]:
        """The call ended at ``t``: judge everything still open."""
        self._close_run()
        if self._open_turn is not None:
            self._turns.append((self._open_turn - self.pre_roll, t))
            self._open_turn = None
        return self._judge(t, final=True)

    def _close_run(self) -> None:
        if self._run_start is not None:
            self._runs.append((self._run_start, self._run_end))
            self._run_start = None

    def _judge(self, now: float, final: bool) -> list[UnheardSpeech]:
        if not final and (not self._runs or now - self._runs[0][1] < SETTLE_SECS):
            return []  # nothing settled yet (the per-frame case): no work
        found: list[UnheardSpeech] = []
        keep: list[tuple[float, float]] = []
        for start, end in self._runs:
            if not final and now - end < SETTLE_SECS:
                keep.append((start, end))
                continue
            gaps = self._gaps(start, end, now)
            uncovered = sum(hi - lo for lo, hi in gaps)
            if uncovered >= MIN_UNHEARD_SECS - 1e-9:
                self.unheard_secs += uncovered
                found.append(
                    UnheardSpeech(
                        round(start, 3),
                        round(end, 3),
                        round(uncovered, 3),
                        tuple((round(lo, 3), round(hi, 3)) for lo, hi in gaps),
                    )
                )
        self._runs = keep
        horizon = min((start for start, _ in keep), default=now) - 60.0
        self._turns = [span for span in self._turns if span[1] >= horizon]
        return found

    def _gaps(self, start: float, end: float, now: float) -> list[tuple[float, float]]:
        """The parts of ``start``..``end`` that no turn covers."""
        spans = list(self._turns)
        if self._open_turn is not None:
            spans.append((self._open_turn - self.pre_roll, now))
        spans.sort()
        gaps: list[tuple[float, float]] = []
        cursor = start
        for lo, hi in spans:
            if hi <= cursor or lo >= end:
                continue
            if lo > cursor:
                gaps.append((cursor, min(lo, end)))
            cursor = max(cursor, hi)
            if cursor >= end:
                break
        if cursor < end:
            gaps.append((cursor, end))
        return gaps
