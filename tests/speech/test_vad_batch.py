"""The process-wide VAD batcher: real Silero on phone-path speech, many streams, one executor."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from tests.conftest import phone_speech
from voicebot.speech.vad import WINDOW_SAMPLES, SileroModel, SileroState, SileroVAD
from voicebot.speech.vad_batch import VadBatcher, VadStream

CHUNK = 320  # one 20 ms media message at 16 kHz


@pytest.fixture(scope="module")
def model() -> SileroModel:
    return SileroModel.shared()


@pytest.fixture(scope="module")
def clips() -> list[np.ndarray]:
    """Five 3 s phone-path speech clips (three speakers, two offsets) and their lengths differ."""
    jfk, a, b = (phone_speech(n) for n in ("en_jfk.wav", "en_speaker_a.wav", "en_speaker_b.wav"))
    return [jfk[:48000], a[:48000], b[:48000], jfk[8000:40000], a[4000:30017]]


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vad-test")
    yield pool
    pool.shutdown(wait=True)


class Collector:
    """An ``on_result`` callback that keeps every delivery."""

    def __init__(self) -> None:
        self.deliveries: list[np.ndarray] = []

    def __call__(self, probabilities: np.ndarray) -> None:
        assert probabilities.dtype == np.float32
        self.deliveries.append(probabilities.copy())

    @property
    def all(self) -> np.ndarray:
        return np.concatenate(self.deliveries) if self.deliveries else np.zeros(0, np.float32)


class FakeModel:
    """What the batcher needs of a model besides ``infer_batch``: 16 kHz windows."""

    sample_rate = 16000
    window_samples = WINDOW_SAMPLES
    window_secs = WINDOW_SAMPLES / 16000

    def initial_state(self) -> SileroState:
        return SileroState()


class FlakyModel(FakeModel):
    """Delegates to the real model, but the first ``fail`` ``infer_batch`` calls raise."""

    def __init__(self, model: SileroModel, fail: int = 1) -> None:
        self.model, self.fail, self.calls = model, fail, 0

    def infer_batch(self, windows, states):
        self.calls += 1
        if self.calls <= self.fail:
            raise RuntimeError("simulated onnxruntime failure")
        return self.model.infer_batch(windows, states)


class RecordingModel(FakeModel):
    """A fake model recording each run's size; the probability is the window's first sample."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def infer_batch(self, windows, states):
        self.sizes.append(len(windows))
        return windows[:, 0].copy(), [SileroState() for _ in states]


class GatedModel(FakeModel):
    """The real model, but each run waits until the test opens the gate."""

    def __init__(self, model: SileroModel) -> None:
        self.model, self.gate, self.entered = model, threading.Event(), threading.Event()

    def infer_batch(self, windows, states):
        self.entered.set()
        assert self.gate.wait(10)
        return self.model.infer_batch(windows, states)


async def test_interleaved_streams_equal_one_stream_at_a_time(
    model: SileroModel, clips: list[np.ndarray], executor: ThreadPoolExecutor
) -> None:
    expected = [SileroVAD(model).process(clip) for clip in clips]
    batcher = VadBatcher(model, executor)
    collectors = [Collector() for _ in clips]
    streams = [batcher.open(c) for c in collectors]
    try:
        longest = max(len(clip) for clip in clips)
        for tick, start in enumerate(range(0, longest, CHUNK)):
            for index, (stream, clip) in enumerate(zip(streams, clips, strict=True)):
                chunk = clip[start : start + CHUNK]
                # Stream 1 is fed float audio, the rest int16, as the session might.
                stream.feed(chunk.astype(np.float32) / 32768 if index == 1 else chunk)
            if tick % 7 == 0:
                await asyncio.sleep(0)  # let the scheduler take partial sets of windows
        await batcher.flush()
    finally:
        await batcher.close()

    for stream, collector, want in zip(streams, collectors, expected, strict=True):
        got = collector.all
        assert len(got) == len(want) == stream.windows_processed
        assert np.allclose(got, want, atol=1e-5)
        assert stream.windows_failed == 0
    assert batcher.windows == sum(len(w) for w in expected)
    assert batcher.errors == 0 and batcher.callback_errors == 0
    # Some batches carried several windows of a stream (state carried round to round).
    assert batcher.runs > batcher.batches > 1
    # The speech is really detected through the batcher (not just equal zeros).
    assert collectors[0].all.max() > 0.9


async def test_windows_queued_before_the_scheduler_runs_are_batched(
    model: SileroModel, clips: list[np.ndarray], executor: ThreadPoolExecutor
) -> None:
    batcher = VadBatcher(model, executor)
    collectors = [Collector() for _ in range(12)]
    streams = [batcher.open(c) for c in collectors]
    audio = clips[0][:16000]
    for start in range(0, len(audio), CHUNK):  # 1 s of 20 ms chunks, scheduler not yet run
        for stream in streams:
            stream.feed(audio[start : start + CHUNK])
    await batcher.flush()
    await batcher.close()

    windows = len(audio) // WINDOW_SAMPLES
    assert batcher.windows == 12 * windows
    assert batcher.batches == 1  # one executor call for everything queued
    assert batcher.runs == windows  # one round (one run) per window position
    assert batcher.max_batch_seen == 12
    assert batcher.mean_batch == pytest.approx(12)
    assert batcher.batches < batcher.windows
    expected = SileroVAD(model).process(audio)
    for collector in collectors:
        assert len(collector.deliveries) == 1
        assert np.allclose(collector.all, expected, atol=1e-5)


async def test_closed_stream_gets_nothing_more_and_others_are_unaffected(
    model: SileroModel, clips: list[np.ndarray], executor: ThreadPoolExecutor
) -> None:
    gated = GatedModel(model)
    batcher = VadBatcher(gated, executor)
    kept, dropped = Collector(), Collector()
    kept_stream, dropped_stream = batcher.open(kept), batcher.open(dropped)
    audio = clips[1]
    half = (len(audio) // 2) // CHUNK * CHUNK
    gated.gate.set()
    for start in range(0, half, CHUNK):
        kept_stream.feed(audio[start : start + CHUNK])
        dropped_stream.feed(audio[start : start + CHUNK])
    await batcher.flush()
    delivered_before = len(dropped.all)
    assert delivered_before == half // WINDOW_SAMPLES

    # Close one stream while a batch holding its windows is running in the executor.
    gated.gate.clear()
    gated.entered.clear()
    for start in range(half, half + 10 * CHUNK, CHUNK):
        kept_stream.feed(audio[start : start + CHUNK])
        dropped_stream.feed(audio[start : start + CHUNK])
    assert await asyncio.to_thread(gated.entered.wait, 10)
    assert batcher.busy
    dropped_stream.close()
    dropped_stream.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        dropped_stream.feed(audio[:CHUNK])
    gated.gate.set()
    for start in range(half + 10 * CHUNK, len(audio), CHUNK):
        kept_stream.feed(audio[start : start + CHUNK])
    await batcher.flush()
    await batcher.close()

    assert len(dropped.all) == delivered_before
    assert dropped_stream.windows_processed == delivered_before
    assert batcher.streams == 0
    expected = SileroVAD(model).process(audio)
    assert len(kept.all) == len(expected)
    assert np.allclose(kept.all, expected, atol=1e-5)


async def test_model_error_is_counted_and_later_windows_are_delivered(
    model: SileroModel, clips: list[np.ndarray], executor: ThreadPoolExecutor, caplog
) -> None:
    batcher = VadBatcher(FlakyModel(model, fail=1), executor)
    collector = Collector()
    stream = batcher.open(collector)
    audio = clips[0]
    stream.feed(audio[: 3 * WINDOW_SAMPLES + 100])
    await batcher.flush()
    assert batcher.errors == 1
    assert batcher.windows_failed == stream.windows_failed == 3
    assert collector.deliveries == []
    assert stream.windows_processed == 0
    assert "VAD batch of 3 windows from 1 streams failed" in caplog.text

    # The scheduler is alive: the next windows (including the 100 samples kept) are scored.
    stream.feed(audio[3 * WINDOW_SAMPLES + 100 : 10 * WINDOW_SAMPLES])
    await batcher.flush()
    await batcher.close()
    assert batcher.errors == 1
    assert len(collector.all) == stream.windows_processed == 7
    # The failed batch left the state as it was, so this equals scoring from a fresh stream.
    expected = SileroVAD(model).process(audio[3 * WINDOW_SAMPLES : 10 * WINDOW_SAMPLES])
    assert np.allclose(collector.all, expected, atol=1e-5)


async def test_failing_callback_does_not_stop_the_scheduler(
    model: SileroModel, executor: ThreadPoolExecutor
) -> None:
    batcher = VadBatcher(model, executor)

    def broken(probabilities: np.ndarray) -> None:
        raise ValueError("callback bug")

    good = Collector()
    bad_stream, good_stream = batcher.open(broken), batcher.open(good)
    for _ in range(2):
        bad_stream.feed(np.zeros(WINDOW_SAMPLES, np.int16))
        good_stream.feed(np.zeros(WINDOW_SAMPLES, np.int16))
        await batcher.flush()
    await batcher.close()
    assert batcher.callback_errors == 2
    assert len(good.all) == 2 and batcher.errors == 0


async def test_max_batch_splits_each_round_and_keeps_per_stream_order(
    executor: ThreadPoolExecutor,
) -> None:
    recorder = RecordingModel()
    batcher = VadBatcher(recorder, executor, max_batch=4)
    collectors = [Collector() for _ in range(10)]
    streams = [batcher.open(c) for c in collectors]
    for index, stream in enumerate(streams):
        # Stream i gets i + 1 windows; each window's first sample encodes (stream, window).
        windows = np.zeros((index + 1, WINDOW_SAMPLES), dtype=np.float32)
        windows[:, 0] = index + np.arange(index + 1) / 100
        stream.feed(windows.reshape(-1))
    await batcher.flush()
    await batcher.close()

    assert max(recorder.sizes) <= 4 and batcher.max_batch_seen == 4
    # Round r holds the 10 - r streams with more than r windows, split into runs of 4.
    expected_sizes = []
    for active in range(10, 0, -1):
        expected_sizes += [min(4, active - s) for s in range(0, active, 4)]
    assert recorder.sizes == expected_sizes
    assert batcher.runs == len(expected_sizes) and batcher.batches == 1
    for index, collector in enumerate(collectors):
        assert np.allclose(collector.all, index + np.arange(index + 1) / 100)


async def test_feed_validates_and_keeps_partial_windows(
    model: SileroModel, executor: ThreadPoolExecutor
) -> None:
    batcher = VadBatcher(model, executor)
    collector = Collector()
    stream: VadStream = batcher.open(collector)
    with pytest.raises(ValueError, match="mono"):
        stream.feed(np.zeros((512, 2), dtype=np.int16))
    with pytest.raises(ValueError, match="int16"):
        stream.feed(np.zeros(512, dtype=np.int32))
    stream.feed(np.zeros(511, dtype=np.int16))
    await batcher.flush()
    assert stream.windows_processed == 0 and stream.samples_buffered == 511
    stream.feed(np.zeros(1 + 1024 + 100, dtype=np.int16))
    await batcher.flush()
    assert stream.windows_processed == 3 and stream.samples_buffered == 100
    with pytest.raises(ValueError, match="max_batch"):
        VadBatcher(model, executor, max_batch=0)
    await batcher.close()
    assert stream.closed
    with pytest.raises(RuntimeError, match="closed"):
        batcher.open(collector)


async def test_close_cancels_a_running_batch_cleanly(
    model: SileroModel, executor: ThreadPoolExecutor
) -> None:
    gated = GatedModel(model)
    batcher = VadBatcher(gated, executor)
    collector = Collector()
    stream = batcher.open(collector)
    await batcher.start()
    stream.feed(np.zeros(4 * WINDOW_SAMPLES, dtype=np.int16))
    assert await asyncio.to_thread(gated.entered.wait, 10)
    await batcher.close()  # the scheduler is awaiting the executor: cancelled, no error
    gated.gate.set()
    assert batcher.errors == 0 and collector.deliveries == [] and not batcher.busy


async def test_close_completes_inside_a_task_that_is_being_cancelled(
    model: SileroModel, clips: list[np.ndarray], executor: ThreadPoolExecutor
) -> None:
    # aiohttp stops a server on SIGTERM by cancelling its main task and running the shutdown
    # hooks inside it. close() used to re-raise there, so the server's close stopped half-way
    # and the process never exited.
    batcher = VadBatcher(model, executor)
    stream = batcher.open(Collector())
    stream.feed(clips[0][: CHUNK * 10])
    await batcher.flush()  # the scheduler task is running
    closed = asyncio.Event()

    async def main_task() -> None:
        try:
            await asyncio.sleep(30)
        finally:
            await batcher.close()
            closed.set()

    task = asyncio.create_task(main_task())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert closed.is_set()
    with pytest.raises(RuntimeError, match="closed"):
        stream.feed(clips[0][:CHUNK])
