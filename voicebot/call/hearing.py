"""The call's hearing check: every voiced second reaches a turn, or is counted as lost.

:class:`HearingGuard` watches one call's candidate audio beside the VAD. It keeps the VAD able
to hear (Silero's recurrent state drifts during long non-speech at 8 kHz and then under-reports
speech; pipecat resets it every 2 s of clear non-speech for that reason, and so does this), and
it checks the VAD against an independent witness, the audio's level over the line's noise floor
(:class:`~voicebot.speech.coverage.SpeechCoverage`):

- voice on the line that the VAD scores as non-speech for ``DEAF_AFTER_SECS`` while no turn is
  going on: the VAD's state is reset at once (``vad_reset`` on the timeline), so the candidate
  is heard from then on and the silence timer is not fooled;
- voice that no turn took in: while the call waits for an answer it becomes a turn of its own,
  late (``speech_recovered``; a quiet one-word "Hello?" the VAD scored as speech for less than a
  turn's minimum, or speech a deaf VAD missed); otherwise (``speech_unheard`` on the timeline,
  with what the VAD made of it) it is counted in ``voicebot_unheard_speech_total`` and
  ``..._seconds_total`` and in the call's stats, so a test or an operator sees every word the
  interview did not hear.

It runs on the event loop; per 20 ms frame it costs a level (a cast, a square, a sum).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from voicebot.audio.frames import TELEPHONY_RATE
from voicebot.speech.coverage import SpeechCoverage, UnheardSpeech, frame_level_dbfs
from voicebot.speech.turn import TurnDetector
from voicebot.speech.vad_batch import VadStream

log = logging.getLogger(__name__)

FRAME_SAMPLES = 160
"""8 kHz samples in one 20 ms carrier frame."""
VAD_RESET_EVERY_WINDOWS = 62
"""Reset the VAD's recurrent state about every 2 s of audio (as pipecat does at 8 kHz)..."""
VAD_RESET_QUIET_WINDOWS = 5
"""...once this many windows in a row scored below ``VAD_RESET_MAX_PROBABILITY``."""
VAD_RESET_MAX_PROBABILITY = 0.1
SILENT_UNHEARD_SECS = 1.0
"""Uncovered voice the VAD scored as non-speech throughout is reported from this long (shorter:
a reverberant hall or a crowd between words, which the level alone takes for voice); uncovered
voice with VAD speech in it is reported from ``MIN_UNHEARD_SECS`` (0.3 s)."""
DEAF_AFTER_SECS = 0.6
"""Voice the VAD scored as non-speech for this long resets the VAD's state at once."""
HISTORY_SECS = 10.0
"""How far back the VAD's scores are kept, to say what it made of a stretch of voice."""

EventSink = Callable[..., None]
"""``event(kind, t=..., **data)``: puts an event on the call's timeline."""


class HearingGuard:
    """One call's hearing check; see the module docstring."""

    def __init__(
        self,
        turns: TurnDetector,
        metrics: Any,
        event: EventSink,
        stats: dict[str, Any],
        *,
        pre_roll: float,
        pad: float,
        call_sid: Callable[[], str | None],
        recover: Callable[[UnheardSpeech], bool] | None = None,
    ):
        self.coverage = SpeechCoverage(pre_roll, pad)
        self.vad: VadStream | None = None
        self._turns = turns
        self._metrics = metrics
        self._event = event
        self._stats = stats
        self._call_sid = call_sid
        self._recover = recover
        self._windows_since_reset = 0
        self._quiet_windows = 0
        self._deaf_reset_for: float | None = None  # voice_since of the last deaf reset
        self._scores: list[tuple[float, float]] = []  # (t, probability) of windows >= 0.1
        self.closed = False

    # -- inputs ------------------------------------------------------------------------------

    def audio(self, chunk: np.ndarray, end: float) -> None:
        """The candidate's 8 kHz audio up to call-clock ``end`` (whole 20 ms frames)."""
        if self.closed:
            return
        frames = len(chunk) // FRAME_SAMPLES
        start = end - len(chunk) / TELEPHONY_RATE
        for index in range(frames):
            frame = chunk[index * FRAME_SAMPLES : (index + 1) * FRAME_SAMPLES]
            t = start + (index + 1) * FRAME_SAMPLES / TELEPHONY_RATE
            for unheard in self.coverage.frame(t, frame_level_dbfs(frame)):
                self._report(unheard)
        self._check_deaf(end)

    def vad_window(self, t: float, probability: float) -> None:
        """The VAD's score of the window ending at ``t`` (before the turn detector takes it)."""
        if probability >= VAD_RESET_MAX_PROBABILITY:
            self._scores.append((t, probability))
        self._windows_since_reset += 1
        self._quiet_windows = self._quiet_windows + 1 if probability < 0.1 else 0
        if (
            self._windows_since_reset >= VAD_RESET_EVERY_WINDOWS
            and self._quiet_windows >= VAD_RESET_QUIET_WINDOWS
            and not self._turns.speaking
            and self.vad is not None
        ):
            self.vad.reset_state()
            self._windows_since_reset = 0
            self._metrics.vad_resets.labels("quiet").inc()

    def vad_scored_until(self, t: float) -> None:
        """The VAD has scored the audio up to ``t``: forget scores no stretch will ask about."""
        horizon = t - HISTORY_SECS
        if self._scores and self._scores[0][0] < horizon:
            self._scores = [item for item in self._scores if item[0] >= horizon]

    def turn_started(self, speech_start: float) -> None:
        """A turn began: its audio (with pre-roll) is heard."""
        self.coverage.turn_started(speech_start)

    def turn_ended(self, speech_start: float, speech_end: float) -> None:
        """A turn's audio was taken in, from ``speech_start`` to ``speech_end`` (with margins)."""
        self.coverage.turn_ended(speech_start, speech_end)

    def voice_on_line(self, now: float) -> bool:
        """Whether the line carries voice at call-clock ``now`` (heard by a turn or not)."""
        return self.coverage.voice_since(now) is not None

    def voice_pending(self, now: float) -> bool:
        """Voice on the line, or voice not yet judged (it may still become a turn)."""
        return not self.closed and (self.voice_on_line(now) or self.coverage.judging)

    def finish(self, now: float) -> None:
        """The call ended at ``now``: judge the voice not judged yet."""
        if self.closed:
            return
        for unheard in self.coverage.finish(now):
            self._report(unheard)
        self.closed = True

    # -- checks ------------------------------------------------------------------------------

    def _peak(self, start: float, end: float) -> float:
        return max((p for t, p in self._scores if start <= t <= end), default=0.0)

    def _check_deaf(self, now: float) -> None:
        """Voice for a while and the VAD hears none of it: reset its state now, not later.

        Waiting for the stretch to settle (to count it) would let the silence timer reprompt a
        candidate who is talking; a reset costs nothing when the VAD was right after all.
        """
        since = self.coverage.voice_since(now)
        vad = self.vad
        if (
            since is None
            or vad is None
            or now - since < DEAF_AFTER_SECS
            or self._turns.speaking
            or self._turns.voiced_since is not None
            or self._deaf_reset_for == since
        ):
            return
        if vad.windows_done * vad.window_secs < now - 0.2:
            return  # the VAD is behind the audio: its verdict on this voice is not in yet
        peak = self._peak(since, now)
        if peak >= self._turns.config.speech_threshold:
            return
        self._deaf_reset_for = since
        vad.reset_state()
        self._metrics.vad_resets.labels("unheard").inc()
        self._event("vad_reset", t=now, voice_since=round(since, 3), vad_peak=round(peak, 3))

    def _report(self, unheard: UnheardSpeech) -> None:
        """Voice no turn took in: count it, put it on the timeline, and un-deafen the VAD."""
        gaps = unheard.gaps or ((unheard.start, unheard.end),)
        peak = max(self._peak(lo, hi + 0.064) for lo, hi in gaps)
        vad = "short" if peak >= self._turns.config.speech_threshold else "silent"
        if vad == "silent" and unheard.secs < SILENT_UNHEARD_SECS:
            return
        if vad == "silent" and self._deaf_reset_for != unheard.start and self.vad is not None:
            self.vad.reset_state()
            self._metrics.vad_resets.labels("unheard").inc()
        recovered = self._recover is not None and self._recover(unheard)
        # Taken in late, as a turn of its own: heard after all, and counted as such.
        kind = "recovered" if recovered else "unheard"
        counter, seconds = (
            (self._metrics.speech_recovered, self._metrics.speech_recovered_seconds)
            if recovered
            else (self._metrics.unheard_speech, self._metrics.unheard_speech_seconds)
        )
        counter.labels(vad).inc()
        seconds.labels(vad).inc(unheard.secs)
        stat = f"{kind}_speech_secs"
        self._stats[stat] = round(self._stats.get(stat, 0.0) + unheard.secs, 3)
        self._event(
            f"speech_{kind}",
            t=unheard.start,
            end=unheard.end,
            secs=unheard.secs,
            vad=vad,
            vad_peak=round(peak, 3),
        )
        if recovered:
            return
        log.warning(
            "call %s: %.2f s of the candidate's voice at %.1f s reached no turn (VAD %s)",
            self._call_sid(),
            unheard.secs,
            unheard.start,
            vad,
        )
