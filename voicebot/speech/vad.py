"""Voice activity detection with Silero VAD on onnxruntime (no torch), shared by every call.

The model is pipecat's bundled ``silero_vad.onnx``, called the way ``pipecat.audio.vad.silero``
calls it: 32 ms windows (512 samples at 16 kHz, 256 at 8 kHz), each prefixed with the last 64
(16 kHz) or 32 (8 kHz) samples of the previous window, and a recurrent ``(2, batch, 128)`` state
carried from window to window. The server scores phone audio at its own 8 kHz: no resampler on
the live path (a streaming resampler holds audio back: soxr released 16 kHz output in 100 ms
lumps, which delayed every end-of-turn decision by that much) and half the model input.

One :class:`SileroModel` (one ``onnxruntime.InferenceSession``) is loaded per process and shared
by all calls; it holds no per-call state, so calls run it concurrently from worker threads
(onnxruntime sessions are thread-safe). Each call owns a :class:`SileroVAD`, which keeps that
call's recurrent state and the samples left over between chunks. :meth:`SileroModel.infer_batch`
scores one window of many calls in a single run, which costs about half as much per window as
scoring them one by one.

Resetting the recurrent state periodically (as pipecat does) was measured on the phone-path
speech clips at 16 kHz, with and without 10 s of line noise before the speech: it made no
difference worth having, so :class:`SileroVAD` only resets on request.
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from voicebot.audio.frames import MODEL_RATE
from voicebot.speech.onnx import cpu_session

WINDOW_SAMPLES = 512
"""Samples in one VAD window at 16 kHz (256 at 8 kHz)."""

WINDOW_SECS = WINDOW_SAMPLES / MODEL_RATE
"""Duration of one VAD window at either rate: 0.032 s."""

CONTEXT_SAMPLES = 64
"""Samples of the previous window prefixed to each window, as Silero expects at 16 kHz."""

SAMPLE_RATES = (8000, 16000)
"""The rates Silero VAD takes."""

_STATE_SHAPE = (2, 1, 128)


def bundled_silero_path() -> Path:
    """Path of the Silero VAD model shipped inside the pinned pipecat-ai package."""
    spec = importlib.util.find_spec("pipecat")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "Silero VAD model: the pipecat-ai package is not installed; install the project's "
            "dependencies (pipecat-ai is pinned in pyproject.toml)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "audio/vad/data/silero_vad.onnx"
    if not path.is_file():
        raise FileNotFoundError(f"Silero VAD model not found at {path}; reinstall pipecat-ai")
    return path


@dataclass
class SileroState:
    """One stream's recurrent state: the model state and the last samples it saw (the context).

    The default context fits 16 kHz; use :meth:`SileroModel.initial_state` for the model's rate.
    """

    state: np.ndarray = field(default_factory=lambda: np.zeros(_STATE_SHAPE, dtype=np.float32))
    context: np.ndarray = field(default_factory=lambda: np.zeros(CONTEXT_SAMPLES, dtype=np.float32))


class SileroModel:
    """The Silero VAD network, loaded once per process; stateless, so calls share it.

    Per-stream state goes in and out of :meth:`infer` and :meth:`infer_batch`, so any number
    of calls (and threads) share the one onnxruntime session.
    """

    _shared: ClassVar[dict[int, SileroModel]] = {}
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, path: str | None = None, sample_rate: int = MODEL_RATE):
        if sample_rate not in SAMPLE_RATES:
            raise ValueError(
                f"SileroModel: sample_rate must be 8000 or 16000 Hz, got {sample_rate}"
            )
        self.path = str(path) if path else str(bundled_silero_path())
        self.sample_rate = sample_rate
        self.window_samples = WINDOW_SAMPLES * sample_rate // MODEL_RATE
        self.context_samples = CONTEXT_SAMPLES * sample_rate // MODEL_RATE
        self.window_secs = self.window_samples / sample_rate
        self._rate_input = np.array(sample_rate, dtype=np.int64)
        self._session = cpu_session(self.path)

    @classmethod
    def shared(cls, sample_rate: int = MODEL_RATE) -> SileroModel:
        """Return the process-wide model (the bundled one) for ``sample_rate``, loading it once."""
        with cls._shared_lock:
            if sample_rate not in cls._shared:
                cls._shared[sample_rate] = cls(sample_rate=sample_rate)
            return cls._shared[sample_rate]

    def initial_state(self) -> SileroState:
        """A new stream's state (silence so far) at this model's rate."""
        return SileroState(context=np.zeros(self.context_samples, dtype=np.float32))

    def infer(self, windows: np.ndarray, state: SileroState) -> tuple[np.ndarray, SileroState]:
        """Score consecutive windows of one stream.

        ``windows`` is float32 in [-1, 1], shape ``(n, window_samples)``. Returns ``n`` speech
        probabilities and the stream's new state; ``state`` itself is not modified.
        """
        windows = np.asarray(windows, dtype=np.float32).reshape(-1, self.window_samples)
        context_samples = self.context_samples
        probabilities = np.empty(len(windows), dtype=np.float32)
        recurrent, context = state.state, state.context
        for index, window in enumerate(windows):
            model_input = np.concatenate((context, window))[np.newaxis, :]
            output, recurrent = self._session.run(
                None, {"input": model_input, "state": recurrent, "sr": self._rate_input}
            )
            probabilities[index] = output[0, 0]
            context = window[-context_samples:]
        return probabilities, SileroState(state=recurrent, context=context.copy())

    def infer_batch(
        self, windows: np.ndarray, states: list[SileroState]
    ) -> tuple[np.ndarray, list[SileroState]]:
        """Score one window of each of many streams in a single run.

        ``windows`` is float32, shape ``(batch, window_samples)``, row ``i`` belonging to the
        stream whose state is ``states[i]``. Returns one probability per row and the streams' new
        states (the inputs are not modified). Results equal those of :meth:`infer` window by
        window.
        """
        windows = np.asarray(windows, dtype=np.float32).reshape(-1, self.window_samples)
        if len(windows) != len(states):
            raise ValueError(
                f"infer_batch: {len(windows)} windows but {len(states)} states; "
                "pass one state per window"
            )
        if not states:
            return np.zeros(0, dtype=np.float32), []
        contexts = np.stack([s.context for s in states])
        recurrent = np.concatenate([s.state for s in states], axis=1)
        model_input = np.concatenate((contexts, windows), axis=1)
        output, recurrent = self._session.run(
            None, {"input": model_input, "state": recurrent, "sr": self._rate_input}
        )
        context_samples = self.context_samples
        new_states = [
            SileroState(
                state=np.ascontiguousarray(recurrent[:, i : i + 1, :]),
                context=windows[i, -context_samples:].copy(),
            )
            for i in range(len(states))
        ]
        return output[:, 0].astype(np.float32), new_states


class SileroVAD:
    """One stream: feed audio at the model's rate in any chunk size, get a probability per window.

    Blocking (runs the model); the call layer runs it in a worker thread. Not thread-safe on its
    own: one stream is fed by one task at a time.
    """

    def __init__(self, model: SileroModel | None = None):
        self.model = model if model is not None else SileroModel.shared()
        self._state = self.model.initial_state()
        self._pending = np.zeros(0, dtype=np.float32)
        self._windows = 0

    @property
    def windows_processed(self) -> int:
        """Windows scored since the stream started or was last reset."""
        return self._windows

    @property
    def seconds_processed(self) -> float:
        """Audio scored so far, in seconds: the end time of the last window returned."""
        return self._windows * self.model.window_secs

    def process(self, pcm: np.ndarray) -> np.ndarray:
        """Score int16 samples at the model's rate (float input is taken as [-1, 1]).

        Returns one speech probability (float32) per complete 512-sample window; samples that
        do not fill a window wait for the next call.
        """
        samples = np.asarray(pcm)
        if samples.ndim != 1:
            raise ValueError(f"SileroVAD.process: expected mono 1-D audio, got {samples.shape}")
        if samples.dtype == np.int16:
            audio = samples.astype(np.float32) / 32768.0
        elif np.issubdtype(samples.dtype, np.floating):
            audio = samples.astype(np.float32)
        else:
            raise ValueError(
                f"SileroVAD.process: expected int16 or float audio, got {samples.dtype}"
            )
        buffered = np.concatenate((self._pending, audio)) if len(self._pending) else audio
        complete = len(buffered) - len(buffered) % self.model.window_samples
        self._pending = buffered[complete:].copy()
        if not complete:
            return np.zeros(0, dtype=np.float32)
        probabilities, self._state = self.model.infer(buffered[:complete], self._state)
        self._windows += len(probabilities)
        return probabilities

    def reset(self) -> None:
        """Forget the recurrent state, buffered samples and window count (a new stream)."""
        self._state = self.model.initial_state()
        self._pending = np.zeros(0, dtype=np.float32)
        self._windows = 0
