"""Process-wide batched Silero VAD: every call's windows scored together, off the event loop.

Scoring each call's 20 ms media message on its own costs one executor dispatch per message and
one ``Session.run`` per 32 ms window per call. A :class:`VadBatcher` (one per process, sharing the
one :class:`~voicebot.speech.vad.SileroModel` and the single VAD worker thread) instead runs one
scheduler task: it waits until any call's stream holds a complete 32 ms window, then takes
*all* complete windows of *all* streams and scores them in one executor call, as rounds
(round ``r`` scores the ``r``-th pending window of every stream that has one, with one
:meth:`~voicebot.speech.vad.SileroModel.infer_batch` run per ``max_batch`` streams), carrying each
stream's recurrent state from round to round. While a batch runs, new audio keeps accumulating,
so batches grow with load instead of the queue of dispatches.

Results go back on the event loop: each :class:`VadStream`'s ``on_result`` callback gets that
stream's probabilities (float32, in order). Audio fed to an open stream is never dropped and each
stream's order is kept; a stream's state only changes from a batch's result. If the model raises,
the batch's windows are reported to nobody (counted in :attr:`VadBatcher.errors` and
:attr:`VadStream.windows_failed`), the streams keep their previous state and the next batch runs
as usual.

Threading: :meth:`VadStream.feed`, :meth:`VadStream.close` and the callbacks all run on the event
loop thread; only the model runs in the executor.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

import numpy as np

from voicebot.speech.vad import SileroModel, SileroState

log = logging.getLogger(__name__)

ResultCallback = Callable[[np.ndarray], Any]
"""Receives one stream's new speech probabilities (float32, one per window, in order)."""


class VadStream:
    """One call's stream through a :class:`VadBatcher`; create it with :meth:`VadBatcher.open`.

    :meth:`feed` buffers audio at the model's rate; the batcher scores complete windows and calls
    ``on_result`` (on the event loop) with their probabilities. Keeps its own recurrent state.
    """

    def __init__(self, batcher: VadBatcher, on_result: ResultCallback):
        self._batcher = batcher
        self._on_result = on_result
        self._state = batcher.model.initial_state()
        self._reset_requested = False
        self.resets = 0
        self._chunks: list[np.ndarray] = []
        self._buffered = 0
        self._windows = 0
        self._failed = 0
        self._closed = False

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (or the batcher closed)."""
        return self._closed

    @property
    def windows_processed(self) -> int:
        """Windows scored and delivered to ``on_result`` so far."""
        return self._windows

    @property
    def seconds_processed(self) -> float:
        """Audio delivered so far, in seconds: the end time of the last window delivered."""
        return self._windows * self._batcher.model.window_secs

    @property
    def windows_failed(self) -> int:
        """Windows taken into a batch whose model run raised: consumed, never delivered."""
        return self._failed

    @property
    def windows_done(self) -> int:
        """Windows taken and finished, delivered or failed: where the stream's clock stands."""
        return self._windows + self._failed

    @property
    def window_secs(self) -> float:
        """Duration of one window at the model's rate (32 ms)."""
        return self._batcher.model.window_secs

    @property
    def samples_buffered(self) -> int:
        """Samples fed but not yet taken into a batch (complete windows and the remainder)."""
        return self._buffered

    def reset_state(self) -> None:
        """Clear the model's recurrent state before the next window scored (not the audio).

        Silero's state drifts during long non-speech at 8 kHz (silence, line noise, music) so
        that it under-reports the speech that follows (pipecat resets it every 2 s of quiet for
        that reason). Safe while a batch of this stream is in flight: the reset wins over the
        state that batch brings back.
        """
        self._reset_requested = True
        if not self._batcher.busy:
            self._apply_reset()

    def _apply_reset(self) -> None:
        self._reset_requested = False
        self._state = self._batcher.model.initial_state()
        self.resets += 1

    def feed(self, pcm: np.ndarray) -> None:
        """Queue mono audio at the model's rate (int16, or float in [-1, 1]); never blocks.

        Call on the event loop thread. Samples that do not fill a window wait for the next
        feed. Starts the batcher's scheduler if it is not running yet.
        """
        if self._closed:
            raise RuntimeError("VadStream.feed: the stream is closed")
        samples = np.asarray(pcm)
        if samples.ndim != 1:
            raise ValueError(f"VadStream.feed: expected mono 1-D audio, got {samples.shape}")
        if samples.dtype == np.int16:
            audio = np.multiply(samples, np.float32(1 / 32768), dtype=np.float32)  # exact
        elif np.issubdtype(samples.dtype, np.floating):
            audio = samples.astype(np.float32)  # always a copy: the caller may reuse its buffer
        else:
            raise ValueError(f"VadStream.feed: expected int16 or float audio, got {samples.dtype}")
        if not len(audio):
            return
        self._chunks.append(audio)
        self._buffered += len(audio)
        if self._buffered >= self._batcher.model.window_samples:
            self._batcher._mark_ready(self)

    def close(self) -> None:
        """Stop the stream: buffered audio is discarded and no more results are delivered.

        Safe to call more than once, and while the stream's windows are in a running batch
        (their results are dropped).
        """
        if self._closed:
            return
        self._closed = True
        self._chunks.clear()
        self._buffered = 0
        self._batcher._forget(self)

    def _take_windows(self) -> np.ndarray:
        """Remove and return all complete windows, shape ``(n, window)``; keep the remainder."""
        buffered = self._chunks[0] if len(self._chunks) == 1 else np.concatenate(self._chunks)
        window = self._batcher.model.window_samples
        complete = len(buffered) - len(buffered) % window
        rest = buffered[complete:]
        self._chunks = [rest.copy()] if len(rest) else []
        self._buffered = len(rest)
        return buffered[:complete].reshape(-1, window)


def _cancelling() -> bool:
    """Whether the current task has been asked to cancel (vs. an inner future cancelled)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _score_rounds(
    model: SileroModel,
    windows: np.ndarray,
    counts: np.ndarray,
    states: list[SileroState],
    max_batch: int,
) -> tuple[np.ndarray, list[SileroState], list[int]]:
    """Score the windows of many streams in rounds (runs in the executor thread).

    ``windows`` holds each stream's windows back to back, streams ordered by ``counts``
    descending, so the streams still in round ``r`` are a prefix of the order. Returns the
    probabilities aligned with ``windows``, the streams' final states and each run's size.
    """
    offsets = np.zeros(len(counts), dtype=np.int64)
    np.cumsum(counts[:-1], out=offsets[1:])
    probabilities = np.empty(len(windows), dtype=np.float32)
    states = list(states)
    run_sizes: list[int] = []
    for r in range(int(counts[0])):
        active = int(np.count_nonzero(counts > r))
        rows = offsets[:active] + r
        round_windows = windows[rows]
        for start in range(0, active, max_batch):
            stop = min(start + max_batch, active)
            scores, new_states = model.infer_batch(round_windows[start:stop], states[start:stop])
            scores = np.asarray(scores, dtype=np.float32).reshape(-1)
            if len(scores) != stop - start or len(new_states) != stop - start:
                raise ValueError(
                    f"infer_batch returned {len(scores)} scores and {len(new_states)} states "
                    f"for {stop - start} windows"
                )
            probabilities[rows[start:stop]] = scores
            states[start:stop] = new_states
            run_sizes.append(stop - start)
    return probabilities, states, run_sizes


class VadBatcher:
    """Scores the VAD windows of all calls in a process together; one per process.

    ``model`` is the shared :class:`SileroModel`; ``executor`` should be a single-thread
    executor (the service's VAD executor), so batches run one at a time. ``max_batch`` caps the
    streams scored in one ``infer_batch`` run. ``gather_secs``: once a window is ready, wait this
    long for other calls' windows before scoring, so batches stay large when calls are many and
    their 20 ms frames arrive at scattered moments (each window then waits at most that long).

    The scheduler task starts lazily on the first :meth:`VadStream.feed` (on the running loop)
    or explicitly with :meth:`start`; :meth:`close` cancels it. Counters (plain attributes,
    updated on the event loop): ``batches`` (executor calls that succeeded), ``runs``
    (``infer_batch`` calls), ``windows`` (windows scored), ``max_batch_seen`` (largest run),
    ``errors`` (batches whose model run raised), ``windows_failed`` (windows in those batches),
    ``callback_errors`` (``on_result`` callbacks that raised); see also :meth:`stats`.
    """

    def __init__(
        self,
        model: SileroModel,
        executor: Executor,
        max_batch: int = 64,
        gather_secs: float = 0.0,
    ):
        if max_batch < 1:
            raise ValueError(f"VadBatcher: max_batch must be at least 1, got {max_batch}")
        if gather_secs < 0:
            raise ValueError(f"VadBatcher: gather_secs must be >= 0, got {gather_secs}")
        self.model = model
        self.gather_secs = gather_secs
        self.executor = executor
        self.max_batch = max_batch
        self.batches = 0
        self.runs = 0
        self.windows = 0
        self.max_batch_seen = 0
        self.errors = 0
        self.windows_failed = 0
        self.callback_errors = 0
        self._streams: set[VadStream] = set()
        self._ready: dict[VadStream, None] = {}  # insertion-ordered set
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._busy = False
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    # -- public API ----------------------------------------------------------------------

    def open(self, on_result: ResultCallback) -> VadStream:
        """Open a call's stream; ``on_result(probabilities)`` is called on the event loop."""
        if self._closed:
            raise RuntimeError("VadBatcher.open: the batcher is closed")
        stream = VadStream(self, on_result)
        self._streams.add(stream)
        return stream

    @property
    def streams(self) -> int:
        """Open streams."""
        return len(self._streams)

    @property
    def busy(self) -> bool:
        """Whether a batch is being scored in the executor right now."""
        return self._busy

    @property
    def mean_batch(self) -> float:
        """Mean windows per ``infer_batch`` run (0 before the first)."""
        return self.windows / self.runs if self.runs else 0.0

    def stats(self) -> dict[str, float]:
        """A snapshot of the counters, for logs and metrics."""
        return {
            "streams": len(self._streams),
            "batches": self.batches,
            "runs": self.runs,
            "windows": self.windows,
            "max_batch_seen": self.max_batch_seen,
            "mean_batch": round(self.mean_batch, 2),
            "errors": self.errors,
            "windows_failed": self.windows_failed,
            "callback_errors": self.callback_errors,
        }

    async def start(self) -> None:
        """Start the scheduler task on the running loop (feeding also starts it)."""
        self._ensure_started()

    async def flush(self) -> None:
        """Wait until every complete window fed so far has been scored and delivered."""
        if self._ready:
            self._ensure_started()
        await self._idle.wait()

    async def close(self) -> None:
        """Cancel the scheduler and close every stream; pending windows are not scored.

        Close it before shutting down the executor.
        """
        self._closed = True
        for stream in list(self._streams):
            stream.close()
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            # Wait without taking the scheduler's CancelledError for ours: shutdown runs in a
            # task already being cancelled (aiohttp cancels its main task on SIGTERM, then
            # cleans up inside it), and re-raising there stopped the server's close half-way,
            # leaving the store's thread alive and the process hanging.
            await asyncio.wait({task})
        self._busy = False
        self._idle.set()

    # -- streams -------------------------------------------------------------------------

    def _mark_ready(self, stream: VadStream) -> None:
        if self._closed:
            raise RuntimeError("VadStream.feed: the batcher is closed")
        self._ready[stream] = None
        self._idle.clear()
        self._wakeup.set()
        self._ensure_started()

    def _forget(self, stream: VadStream) -> None:
        self._streams.discard(stream)
        self._ready.pop(stream, None)
        if not self._ready and not self._busy:
            self._idle.set()

    def _ensure_started(self) -> None:
        if self._closed:
            raise RuntimeError("VadBatcher: the batcher is closed")
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._schedule(), name="vad-batcher"
            )

    # -- the scheduler -------------------------------------------------------------------

    async def _schedule(self) -> None:
        """Score batches for as long as the batcher is open; survives any error but cancel."""
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            if self.gather_secs:
                await asyncio.sleep(self.gather_secs)
            self._wakeup.clear()
            try:
                await self._run_batch(loop)
            except Exception:
                self.errors += 1
                log.exception("VAD batch scheduler failed; continuing")
            finally:
                self._busy = False
                if not self._ready:
                    self._idle.set()
                else:
                    self._wakeup.set()

    async def _run_batch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Take all complete windows of all streams, score them in one executor call, deliver."""
        streams = [stream for stream in self._ready if not stream._closed]
        self._ready.clear()
        if not streams:
            return
        taken = [(stream, stream._take_windows()) for stream in streams]
        taken.sort(key=lambda item: len(item[1]), reverse=True)
        counts = np.fromiter((len(w) for _, w in taken), dtype=np.int64, count=len(taken))
        windows = np.concatenate([w for _, w in taken])
        for stream, _ in taken:
            if stream._reset_requested:
                stream._apply_reset()
        states = [stream._state for stream, _ in taken]
        self._busy = True
        try:
            probabilities, new_states, run_sizes = await loop.run_in_executor(
                self.executor,
                _score_rounds,
                self.model,
                windows,
                counts,
                states,
                self.max_batch,
            )
        except (Exception, asyncio.CancelledError) as exc:
            if isinstance(exc, asyncio.CancelledError) and _cancelling():
                raise  # the scheduler is being cancelled (close)
            # Otherwise the model raised, or the executor cancelled the job (shut down).
            self.errors += 1
            self.windows_failed += len(windows)
            for stream, stream_windows in taken:
                stream._failed += len(stream_windows)
            log.exception(
                "VAD batch of %d windows from %d streams failed; their results are lost",
                len(windows),
                len(taken),
            )
            return
        self.batches += 1
        self.runs += len(run_sizes)
        self.windows += len(windows)
        self.max_batch_seen = max(self.max_batch_seen, max(run_sizes))
        start = 0
        for (stream, _), state, count in zip(taken, new_states, counts.tolist(), strict=True):
            stop = start + count
            if not stream._closed:
                stream._state = state
                if stream._reset_requested:
                    stream._apply_reset()
                stream._windows += count
                try:
                    stream._on_result(probabilities[start:stop])
                except Exception:
                    self.callback_errors += 1
                    log.exception("VAD result callback failed")
            start = stop
