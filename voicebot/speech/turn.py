"""End-of-turn detection: a pure state machine over VAD probabilities, plus the smart-turn model.

:class:`TurnDetector` is Sans-I/O: it is fed one Silero probability per 32 ms window with the
call-clock time of the window's end, and returns events. It never reads a clock, runs a model or
does I/O, so it is tested on synthetic probability sequences. The call layer wires it up:

1. ``SpeechStarted``: the candidate has spoken for ``min_speech_secs`` (barge-in point).
1a. ``SpeechPausing``: ``early_secs`` before a pause would be reached. The caller may start
   smart-turn on the audio so far padded with silence to the pause (offline, such a verdict is
   within 0.03 of the one on the real silence), so that the verdict is ready at the pause.
2. ``SpeechPaused``: ``pause_secs`` of silence after speech. The caller runs :class:`SmartTurnModel`
   on the turn's audio (and, if it wants, a speculative transcription) and reports the verdict
   with :meth:`TurnDetector.smart_turn_result`, possibly vetoing it (e.g. an answer too short
   for an open question).
3. ``SpeechResumed``: speech again after a pause; the pause's verdict no longer counts.
4. ``TurnEnded``: ``end_secs`` of silence when the current pause was judged complete
   (reason ``"smart_turn"``); ``hesitant_end_secs`` when smart-turn was unsure, neither
   complete nor clearly incomplete (reason ``"hesitant"``); else ``max_silence_secs`` of
   silence (reason ``"silence"``).

:class:`SmartTurnModel` wraps pipecat's bundled smart-turn v3.2 ONNX model, loaded once per
process, with the same feature pipeline as ``pipecat``'s ``LocalSmartTurnAnalyzerV3``.
"""

from __future__ import annotations

import importlib.util
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
from pydantic import BaseModel, Field, model_validator

from voicebot.audio.frames import MODEL_RATE
from voicebot.speech.onnx import cpu_session

HYSTERESIS = 0.15
"""Once speech is detected it lasts while the probability stays above threshold minus this."""

_EPSILON = 1e-9


class TurnConfig(BaseModel):
    """Timing and thresholds of end-of-turn detection (seconds and probabilities)."""

    speech_threshold: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="VAD probability at or above which a window is speech. Speech then lasts "
        "while the probability stays at or above threshold - 0.15 (hysteresis, as in Silero).",
    )
    min_speech_secs: float = Field(
        0.15,
        ge=0.0,
        description="Speech shorter than this is a noise blip: no turn starts, and after a gap "
        "in a turn (a pause or a shorter one) the silence goes on: the blip does not move the "
        "end of speech.",
    )
    pause_secs: float = Field(
        0.2,
        gt=0.0,
        description="Silence after speech that emits SpeechPaused (run smart-turn and a "
        "speculative transcription).",
    )
    end_secs: float = Field(
        0.2,
        gt=0.0,
        description="Silence after which the turn ends when smart-turn judged the pause complete.",
    )
    max_silence_secs: float = Field(
        1.2, gt=0.0, description="Silence after which the turn ends whatever smart-turn said."
    )
    smart_turn_threshold: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="Smart-turn probability at or above which the turn counts as complete.",
    )
    hesitant_threshold: float = Field(
        0.2,
        ge=0.0,
        le=1.0,
        description="Smart-turn probability from which (up to smart_turn_threshold) the model "
        "is unsure rather than sure the candidate goes on: such a pause ends the turn after "
        "hesitant_end_secs. Set it to smart_turn_threshold to wait max_silence_secs instead.",
    )
    hesitant_end_secs: float = Field(
        0.5,
        gt=0.0,
        description="Silence after which the turn ends when smart-turn was unsure.",
    )
    early_secs: float = Field(
        0.1,
        ge=0.0,
        description="Emit SpeechPausing this long before a pause would be reached, so that "
        "smart-turn can judge the audio so far, padded with silence to the pause, while the "
        "silence runs on: its verdict is then ready when the pause is. 0: off.",
    )
    window_secs: float = Field(
        0.032,
        gt=0.0,
        description="Duration of one VAD window (Silero at 16 kHz: 512 samples); used to date "
        "the start of the first voiced window.",
    )

    @model_validator(mode="after")
    def _check_order(self) -> TurnConfig:
        if not (
            self.pause_secs <= self.end_secs <= self.hesitant_end_secs <= self.max_silence_secs
        ):
            raise ValueError(
                "TurnConfig: need pause_secs <= end_secs <= hesitant_end_secs <= "
                f"max_silence_secs, got {self.pause_secs} / {self.end_secs} / "
                f"{self.hesitant_end_secs} / {self.max_silence_secs}"
            )
        if self.hesitant_threshold > self.smart_turn_threshold:
            raise ValueError(
                "TurnConfig: need hesitant_threshold <= smart_turn_threshold, got "
                f"{self.hesitant_threshold} / {self.smart_turn_threshold}"
            )
        if self.early_secs >= self.pause_secs:
            raise ValueError(
                "TurnConfig: need early_secs < pause_secs, got "
                f"{self.early_secs} / {self.pause_secs}"
            )
        return self

    def pause_after(self, speech_end: float) -> float:
        """When a silence from ``speech_end`` reaches ``pause_secs``, in whole windows."""
        windows = math.ceil((self.pause_secs - _EPSILON) / self.window_secs)
        return speech_end + windows * self.window_secs

    def is_complete(self, probability: float) -> bool:
        """Whether a smart-turn probability counts as a complete turn."""
        return probability >= self.smart_turn_threshold

    def is_hesitant(self, probability: float) -> bool:
        """Whether smart-turn was unsure: not complete, but not clearly going on either."""
        return self.hesitant_threshold <= probability < self.smart_turn_threshold


@dataclass(frozen=True)
class SpeechStarted:
    """A turn started: speech lasted ``min_speech_secs``; ``speech_start`` is when it began."""

    t: float
    speech_start: float


@dataclass(frozen=True)
class SpeechPaused:
    """Silence reached ``pause_secs`` after ``speech_end``: time to run smart-turn."""

    t: float
    speech_start: float
    speech_end: float


@dataclass(frozen=True)
class SpeechPausing:
    """Silence reached ``pause_secs - early_secs``: a pause at ``pause_t`` if it goes on.

    Smart-turn may start now on the audio so far, padded with silence up to ``pause_t``, so
    that its verdict is ready when (and if) :class:`SpeechPaused` comes.
    """

    t: float
    speech_start: float
    speech_end: float
    pause_t: float


@dataclass(frozen=True)
class SpeechResumed:
    """Speech again after a pause: the turn goes on and the pause's verdict is void."""

    t: float


@dataclass(frozen=True)
class TurnEnded:
    """The turn is over: ``reason`` is ``"smart_turn"``, ``"hesitant"`` or ``"silence"``."""

    t: float
    speech_start: float
    speech_end: float
    reason: str
    """``"smart_turn"``, ``"hesitant"``, ``"silence"``, ``"max_answer"``, or the reason an
    end-of-turn policy gave with :meth:`TurnDetector.set_pause_wait`."""
    smart_turn_probability: float | None = None


TurnEvent = SpeechStarted | SpeechPausing | SpeechPaused | SpeechResumed | TurnEnded


class TurnDetector:
    """Pure end-of-turn state machine fed VAD probabilities; see the module docstring.

    Times are call-clock seconds. ``speech_start`` is the start of the turn's first voiced
    window and ``speech_end`` the end of its last voiced window (the last voiced sample).
    Speech after a pause must last ``min_speech_secs`` to resume the turn; a shorter blip is
    ignored (its windows neither extend ``speech_end`` nor void the pause's verdict), but the
    turn does not end while such a candidate blip is still going on.
    """

    def __init__(self, config: TurnConfig | None = None):
        self.config = config or TurnConfig()
        self._max_silence = self.config.max_silence_secs
        self.quick_start_secs: float | None = None
        """While set, a voiced run this long starts a turn (shorter than ``min_speech_secs``):
        the caller sets it when another witness (the line's level) already says a voice is
        there, so a quiet one-word answer Silero scores as speech for under
        ``min_speech_secs`` still starts a turn. Only the start: a blip inside a turn still
        has to last ``min_speech_secs`` to resume it or move its end."""
        self.reset()

    def reset(self) -> None:
        """Forget any turn in progress (e.g. at the start of a new question)."""
        self._voiced = False  # last window was speech (with hysteresis)
        self._run_start: float | None = None  # start of the current voiced run
        self._in_turn = False
        self._speech_start = 0.0
        self._speech_end = 0.0
        self._paused = False  # SpeechPaused emitted for the current silence
        self._pausing_end: float | None = None  # speech_end SpeechPausing was sent for
        self._probability: float | None = None
        self._wait: float | None = None  # silence the policy asked for this pause
        self._wait_reason = ""
        self._last_t = 0.0
        self._resumed_pauses: list[float] = []  # pauses in this turn the candidate went on after

    @property
    def max_silence_secs(self) -> float:
        """Silence that ends the turn whatever else was said (see :meth:`set_max_silence`)."""
        return self._max_silence

    def set_max_silence(self, secs: float) -> None:
        """Set the ceiling on silence for turns from now on (e.g. per question); >= pause."""
        self._max_silence = max(float(secs), self.config.pause_secs)

    @property
    def resumed_pauses(self) -> tuple[float, ...]:
        """Silences of at least ``pause_secs`` in the current turn that speech resumed after."""
        return tuple(self._resumed_pauses)

    @property
    def smart_turn_probability(self) -> float | None:
        """Smart-turn's probability for the current pause, once reported."""
        return self._probability if self.paused else None

    @property
    def voiced_since(self) -> float | None:
        """Start of the voiced run going on now (before it counts as speech too), or None."""
        return self._run_start

    @property
    def speech_start(self) -> float:
        """Start of the current (or last) turn's speech."""
        return self._speech_start

    def start_earlier(self, speech_start: float) -> None:
        """Move the turn in progress's start back to ``speech_start`` (voice the VAD came late to).

        Events from now on carry the earlier start, so the turn's audio and words include it.
        """
        if self._in_turn and speech_start < self._speech_start:
            self._speech_start = max(0.0, speech_start)

    @property
    def speech_end(self) -> float:
        """End of the current (or last) turn's last voiced window."""
        return self._speech_end

    @property
    def speaking(self) -> bool:
        """True while a turn is in progress (from SpeechStarted to TurnEnded, pauses included)."""
        return self._in_turn

    @property
    def paused(self) -> bool:
        """True while the turn is in a pause that emitted SpeechPaused."""
        return self._in_turn and self._paused

    def feed(self, probability: float, t: float) -> list[TurnEvent]:
        """Take the VAD probability of the window that ends at call-clock time ``t``."""
        config = self.config
        self._last_t = t
        threshold = config.speech_threshold - (HYSTERESIS if self._voiced else 0.0)
        voiced = probability >= threshold
        self._voiced = voiced
        if voiced:
            if self._run_start is None:
                self._run_start = max(0.0, t - config.window_secs)
            return self._on_voiced(t)
        self._run_start = None
        return self._on_silence(t)

    def _on_voiced(self, t: float) -> list[TurnEvent]:
        assert self._run_start is not None
        long_enough = t - self._run_start + _EPSILON >= self.config.min_speech_secs
        if not self._in_turn:
            quick = self.quick_start_secs
            if not long_enough and (quick is None or t - self._run_start + _EPSILON < quick):
                return []
            self._in_turn = True
            self._paused = False
            self._probability = None
            self._wait = None
            self._resumed_pauses = []
            self._speech_start = self._run_start
            self._speech_end = t
            return [SpeechStarted(t=t, speech_start=self._speech_start)]
        if self._paused:
            if not long_enough:
                return []  # maybe a blip: hold the turn open until we know
            self._paused = False
            self._probability = None
            self._wait = None
            assert self._run_start is not None
            self._resumed_pauses.append(round(self._run_start - self._speech_end, 3))
            self._speech_end = t
            return [SpeechResumed(t=t)]
        if not long_enough and self._run_start > self._speech_end + _EPSILON:
            # Voice again after a gap shorter than a pause: speech only once it lasts. A blip
            # of noise (a crowd, a line click) after the last word must not move the end of
            # speech, from which the pause and the end of the turn are timed.
            return []
        self._speech_end = t
        return []

    def _on_silence(self, t: float) -> list[TurnEvent]:
        if not self._in_turn:
            return []
        silence = t - self._speech_end + _EPSILON
        events: list[TurnEvent] = []
        config = self.config
        if (
            config.early_secs > 0
            and not self._paused
            and self._pausing_end != self._speech_end
            and config.pause_secs - config.early_secs <= silence < config.pause_secs
        ):
            self._pausing_end = self._speech_end
            events.append(
                SpeechPausing(
                    t=t,
                    speech_start=self._speech_start,
                    speech_end=self._speech_end,
                    pause_t=config.pause_after(self._speech_end),
                )
            )
        if not self._paused and silence >= self.config.pause_secs:
            self._paused = True
            self._probability = None
            self._wait = None
            events.append(
                SpeechPaused(t=t, speech_start=self._speech_start, speech_end=self._speech_end)
            )
        events.extend(self._maybe_end(t))
        return events

    def _maybe_end(self, t: float) -> list[TurnEvent]:
        silence = t - self._speech_end + _EPSILON
        if self._paused and self._wait is not None:
            if silence < self._wait:
                return []  # the policy's wait for this pause, not the ceiling, decides
            reason = self._wait_reason
        elif silence >= self._max_silence:
            reason = "silence"
        else:
            return []
        ended = TurnEnded(
            t=t,
            speech_start=self._speech_start,
            speech_end=self._speech_end,
            reason=reason,
            smart_turn_probability=self._probability,
        )
        self._in_turn = False
        self._paused = False
        self._probability = None
        self._wait = None
        return [ended]

    def is_current_silence(self, speech_start: float, speech_end: float) -> bool:
        """Whether the turn is still the one from ``speech_start``, silent since ``speech_end``."""
        return (
            self._in_turn and speech_end == self._speech_end and speech_start == self._speech_start
        )

    def is_current_pause(self, pause: SpeechPaused) -> bool:
        """Whether ``pause`` is still going on (no speech since, no end of turn)."""
        return self.paused and self.is_current_silence(pause.speech_start, pause.speech_end)

    def smart_turn_result(
        self,
        complete: bool,
        probability: float,
        pause: SpeechPaused | None = None,
        *,
        may_hesitate: bool = True,
    ) -> list[TurnEvent]:
        """Report smart-turn's verdict on the current pause.

        The pause counts as complete when ``complete`` is true (the caller may veto, e.g. for an
        answer too short for an open question) and ``probability`` reaches
        ``smart_turn_threshold``. Otherwise, when ``probability`` is at least
        ``hesitant_threshold`` and the caller allows it (``may_hesitate``; a short answer does
        not), the model was unsure and the turn ends after ``hesitant_end_secs`` of silence.
        A verdict arriving after speech resumed is ignored; pass the ``SpeechPaused`` it
        answers as ``pause`` so a verdict for an earlier pause is ignored too. Returns
        ``[TurnEnded]`` at once (dated at the last window fed) when the silence already
        reached the wait the verdict calls for; otherwise an empty list.
        """
        config = self.config
        if bool(complete) and config.is_complete(probability):
            return self.set_pause_wait(config.end_secs, "smart_turn", pause, probability)
        if may_hesitate and config.is_hesitant(probability):
            return self.set_pause_wait(config.hesitant_end_secs, "hesitant", pause, probability)
        if self.paused and (pause is None or self.is_current_pause(pause)):
            self._probability = probability
            self._wait = None  # sure the candidate goes on: the ceiling decides
        return []

    def set_pause_wait(
        self,
        secs: float,
        reason: str,
        pause: SpeechPaused | None = None,
        probability: float | None = None,
    ) -> list[TurnEvent]:
        """Let the current pause end the turn once its silence reaches ``secs`` (a policy's call).

        Replaces any earlier verdict on the pause (a later one knows more: the words), and
        decides the pause alone: a wait beyond the ceiling (:attr:`max_silence_secs`) holds the
        turn open that long. Ignored when ``pause`` is no longer the current pause. Returns
        ``[TurnEnded]`` at once when the silence already reached ``secs`` (dated at the last
        window fed; none while speech that may resume the turn is under way).
        """
        if not self.paused:
            return []
        if pause is not None and not self.is_current_silence(pause.speech_start, pause.speech_end):
            return []
        self._wait = max(float(secs), self.config.pause_secs)
        self._wait_reason = reason
        if probability is not None:
            self._probability = probability
        if self._voiced:
            return []
        return self._maybe_end(self._last_t)


def bundled_smart_turn_path() -> Path:
    """Path of the smart-turn v3.2 CPU model shipped inside the pinned pipecat-ai package."""
    spec = importlib.util.find_spec("pipecat")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "smart-turn model: the pipecat-ai package is not installed; install the project's "
            "dependencies (pipecat-ai is pinned in pyproject.toml)"
        )
    path = (
        Path(next(iter(spec.submodule_search_locations)))
        / "audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx"
    )
    if not path.is_file():
        raise FileNotFoundError(f"smart-turn model not found at {path}; reinstall pipecat-ai")
    return path


SMART_TURN_SECS = 8
"""Smart-turn judges the last 8 s of the turn (shorter audio is zero-padded at the front)."""


class SmartTurnModel:
    """Smart-turn v3.2: probability that a turn's audio is a complete utterance.

    Loaded once per process (:meth:`shared`); stateless, so calls share it from worker threads.
    ``threads`` splits one inference over that many threads (the verdict is the same).
    """

    _shared: ClassVar[dict[int, SmartTurnModel]] = {}
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, path: str | None = None, threads: int = 1):
        # Imported here: importing pipecat logs a banner, and only this model needs it.
        from pipecat.audio.turn.smart_turn._whisper_features import (
            compute_whisper_log_mel_features,
        )

        self._features = compute_whisper_log_mel_features
        self.path = str(path) if path else str(bundled_smart_turn_path())
        self.threads = threads
        self._session = cpu_session(self.path, threads)

    @classmethod
    def shared(cls, threads: int = 1) -> SmartTurnModel:
        """Return the process-wide model (the bundled one), loading it on first use."""
        with cls._shared_lock:
            if threads not in cls._shared:
                cls._shared[threads] = cls(threads=threads)
            return cls._shared[threads]

    def predict(self, audio16k: np.ndarray) -> float:
        """Probability (0..1) that the turn in ``audio16k`` is complete. Blocking.

        ``audio16k`` is mono 16 kHz, int16 or float32 in [-1, 1]; only its last 8 s are used.
        """
        samples = np.asarray(audio16k)
        if samples.ndim != 1:
            raise ValueError(
                f"SmartTurnModel.predict: expected mono 1-D audio, got shape {samples.shape}"
            )
        if samples.dtype == np.int16:
            audio = samples.astype(np.float32) / 32768.0
        elif np.issubdtype(samples.dtype, np.floating):
            audio = samples.astype(np.float32)
        else:
            raise ValueError(
                f"SmartTurnModel.predict: expected int16 or float audio, got {samples.dtype}"
            )
        window = SMART_TURN_SECS * MODEL_RATE
        if len(audio) > window:
            audio = audio[-window:]
        elif len(audio) < window:
            audio = np.pad(audio, (window - len(audio), 0))
        features = self._features(audio, do_normalize=True)[np.newaxis, ...]
        (logits,) = self._session.run(None, {"input_features": features})
        return float(np.asarray(logits).reshape(-1)[0])
