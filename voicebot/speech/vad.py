"""Voice activity detection with Silero VAD on onnxruntime (no torch), shared by every call.

The model is pipecat's bundled ``silero_vad.onnx``, called the way ``pipecat.audio.vad.silero``
calls it: 512-sample windows at 16 kHz (32 ms), each prefixed with the last 64 samples of the
previous window, and a recurrent ``(2, batch, 128)`` state carried from window to window.

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
"""Samples in one VAD window at 16 kHz."""

WINDOW_SECS = WINDOW_SAMPLES / MODEL_RATE
"""Duration of one VAD window: 0.032 s."""

CONTEXT_SAMPLES = 64
"""Samples of the previous window prefixed to each window, as Silero expects at 16 kHz."""

_STATE_SHAPE = (2, 1, 128)
_SAMPLE_RATE_INPUT = np.array(MODEL_RATE, dtype=np.int64)


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
    """One stream's recurrent state: the model state and the last 64 samples it saw."""

    state: np.ndarray = field(default_factory=lambda: np.zeros(_STATE_SHAPE, dtype=np.float32))
    context: np.ndarray = field(default_factory=lambda: np.zeros(CONTEXT_SAMPLES, dtype=np.float32))


class SileroModel:
    """The Silero VAD network, loaded once per process; stateless, so calls share it.

    Per-stream state goes in and out of :meth:`infer` and :meth:`infer_batch`, so any number
    of calls (and threads) share the one onnxruntime session.
    """

    _shared: ClassVar[SileroModel | None] = None
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, path: str | None = None):
        self.path = str(path) if path else str(bundled_silero_path())
        self._session = cpu_session(self.path)

    @classmethod
    def shared(cls) -> SileroModel:
        """Return the process-wide model (the bundled one), loading it on first use."""
        with cls._shared_lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    def infer(self, windows: np.ndarray, state: SileroState) -> tuple[np.ndarray, SileroState]:
        """Score consecutive windows of one stream.

        ``windows`` is float32 in [-1, 1], shape ``(n, 512)``. Returns ``n`` speech
        probabilities and the stream's new state; ``state`` itself is not modified.
        """
        windows = np.asarray(windows, dtype=np.float32).reshape(-1, WINDOW_SAMPLES)
        probabilities = np.empty(len(windows), dtype=np.float32)
        recurrent, context = state.state, state.context
        for index, window in enumerate(windows):
            model_input = np.concatenate((context, window))[np.newaxis, :]
            output, recurrent = self._session.run(
                None, {"input": model_input, "state": recurrent, "sr": _SAMPLE_RATE_INPUT}
            )
            probabilities[index] = output[0, 0]
            context = window[-CONTEXT_SAMPLES:]
        return probabilities, SileroState(state=recurrent, context=context.copy())

    def infer_batch(
        self, windows: np.ndarray, states: list[SileroState]
    ) -> tuple[np.ndarray, list[SileroState]]:
        """Score one window of each of many streams in a single run.

        ``windows`` is float32, shape ``(batch, 512)``, row ``i`` belonging to the stream whose
        state is ``states[i]``. Returns one probability per row and the streams' new states
        (the inputs are not modified). Results equal those of :meth:`infer` window by window.
        """
        windows = np.asarray(windows, dtype=np.float32).reshape(-1, WINDOW_SAMPLES)
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
            None, {"input": model_input, "state": recurrent, "sr": _SAMPLE_RATE_INPUT}
        )
        new_states = [
            SileroState(
                state=np.ascontiguousarray(recurrent[:, i : i + 1, :]),
                context=windows[i, -CONTEXT_SAMPLES:].copy(),
            )
            for i in range(len(states))
        ]
        return output[:, 0].astype(np.float32), new_states


class SileroVAD:
    """One call's VAD stream: feed 16 kHz audio in any chunk size, get a probability per window.

    Blocking (runs the model); the call layer runs it in a worker thread. Not thread-safe on its
    own: one stream is fed by one task at a time.
    """

    def __init__(self, model: SileroModel | None = None):
        self.model = model if model is not None else SileroModel.shared()
        self._state = SileroState()
        self._pending = np.zeros(0, dtype=np.float32)
        self._windows = 0

    @property
    def windows_processed(self) -> int:
        """Windows scored since the stream started or was last reset."""
        return self._windows

    @property
    def seconds_processed(self) -> float:
        """Audio scored so far, in seconds: the end time of the last window returned."""
        return self._windows * WINDOW_SECS

    def process(self, pcm16k: np.ndarray) -> np.ndarray:
        """Score int16 16 kHz samples (float input is taken as [-1, 1]).

        Returns one speech probability (float32) per complete 512-sample window; samples that
        do not fill a window wait for the next call.
        """
        samples = np.asarray(pcm16k)
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
        complete = len(buffered) - len(buffered) % WINDOW_SAMPLES
        self._pending = buffered[complete:].copy()
        if not complete:
            return np.zeros(0, dtype=np.float32)
        probabilities, self._state = self.model.infer(buffered[:complete], self._state)
        self._windows += len(probabilities)
        return probabilities

    def reset(self) -> None:
        """Forget the recurrent state, buffered samples and window count (a new stream)."""
        self._state = SileroState()
        self._pending = np.zeros(0, dtype=np.float32)
        self._windows = 0
