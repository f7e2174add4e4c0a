"""Silero VAD on real telephone-band speech: one shared model, per-call streams."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from tests.conftest import ROOT, phone_speech
from voicebot.audio.frames import phone_roundtrip_16k, rms_dbfs
from voicebot.audio.resample import resample
from voicebot.speech.vad import (
    WINDOW_SAMPLES,
    WINDOW_SECS,
    SileroModel,
    SileroState,
    SileroVAD,
)


@pytest.fixture(scope="module")
def model() -> SileroModel:
    return SileroModel.shared()


@pytest.fixture(scope="module")
def jfk_with_silence() -> tuple[np.ndarray, int]:
    """JFK's sentence followed by 2 s of silence, and the sample where the silence starts."""
    speech = phone_speech("en_jfk.wav")
    return np.concatenate([speech, np.zeros(32000, dtype=np.int16)]), len(speech)


def test_shared_model_is_one_instance_per_process(model: SileroModel) -> None:
    assert SileroModel.shared() is model
    assert SileroVAD().model is model


def test_speech_scores_high_and_silence_low(
    model: SileroModel, jfk_with_silence: tuple[np.ndarray, int]
) -> None:
    audio, speech_samples = jfk_with_silence
    probabilities = SileroVAD(model).process(audio)
    assert len(probabilities) == len(audio) // WINDOW_SAMPLES
    assert probabilities.dtype == np.float32

    speech_windows = speech_samples // WINDOW_SAMPLES
    windows = audio[: speech_windows * WINDOW_SAMPLES].reshape(speech_windows, WINDOW_SAMPLES)
    loudness = np.array([rms_dbfs(window) for window in windows])
    loud = loudness > -30  # windows with clear voice energy
    assert loud.mean() > 0.4
    assert (probabilities[:speech_windows][loud] > 0.5).mean() > 0.9

    # Silence after the speech: low once the model has heard a couple of windows of it.
    assert probabilities[speech_windows + 2 :].max() < 0.1


def test_digital_silence_and_line_noise_score_low(model: SileroModel) -> None:
    assert SileroVAD(model).process(np.zeros(16000, dtype=np.int16)).max() < 0.1
    noise = np.random.default_rng(7).normal(0, 330, 48000).astype(np.int16)  # about -40 dBFS
    assert SileroVAD(model).process(phone_roundtrip_16k(noise)).max() < 0.1


def test_chunk_size_does_not_change_the_result(
    model: SileroModel, jfk_with_silence: tuple[np.ndarray, int]
) -> None:
    audio = jfk_with_silence[0][: 16000 * 3]
    whole = SileroVAD(model).process(audio)

    stream = SileroVAD(model)
    sizes = np.random.default_rng(3).integers(1, 1500, size=200)
    pieces, start = [], 0
    for size in sizes:
        pieces.append(stream.process(audio[start : start + size]))
        start += size
    pieces.append(stream.process(audio[start:]))
    assert np.array_equal(np.concatenate(pieces), whole)
    assert stream.windows_processed == len(whole)
    assert stream.seconds_processed == pytest.approx(len(whole) * WINDOW_SECS)


def test_partial_window_waits_for_more_audio(model: SileroModel) -> None:
    stream = SileroVAD(model)
    assert len(stream.process(np.zeros(511, dtype=np.int16))) == 0
    assert len(stream.process(np.zeros(1, dtype=np.int16))) == 1
    assert len(stream.process(np.zeros(1024 + 100, dtype=np.int16))) == 2


def test_float_input_equals_int16_input(
    model: SileroModel, jfk_with_silence: tuple[np.ndarray, int]
) -> None:
    audio = jfk_with_silence[0][:16000]
    as_float = audio.astype(np.float32) / 32768
    assert np.allclose(SileroVAD(model).process(audio), SileroVAD(model).process(as_float))


def test_reset_starts_a_fresh_stream(
    model: SileroModel, jfk_with_silence: tuple[np.ndarray, int]
) -> None:
    audio = jfk_with_silence[0][: 16000 * 2]
    stream = SileroVAD(model)
    first = stream.process(audio)
    stream.process(audio[:700])  # leaves state and a partial window behind
    stream.reset()
    assert stream.windows_processed == 0
    assert np.array_equal(stream.process(audio), first)


def test_calls_sharing_the_model_from_threads_do_not_interfere(model: SileroModel) -> None:
    clips = [
        phone_speech(name)[: 16000 * 3]
        for name in ("en_jfk.wav", "en_speaker_a.wav", "en_speaker_b.wav", "en_speaker_a.wav")
    ]
    expected = [SileroVAD(model).process(clip) for clip in clips]

    def run_call(clip: np.ndarray) -> np.ndarray:
        stream = SileroVAD(model)
        return np.concatenate([stream.process(clip[i : i + 320]) for i in range(0, len(clip), 320)])

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(run_call, clips))
    for got, want in zip(results, expected, strict=True):
        assert np.array_equal(got, want)


def test_batch_inference_equals_per_call_inference(model: SileroModel) -> None:
    clips = [phone_speech(name)[: 16000 * 2] for name in ("en_jfk.wav", "en_speaker_b.wav")]
    clips.append(np.zeros(16000 * 2, dtype=np.int16))
    expected = [SileroVAD(model).process(clip) for clip in clips]

    states = [SileroState() for _ in clips]
    batched = []
    for index in range(len(expected[0])):
        windows = (
            np.stack(
                [c[index * WINDOW_SAMPLES : (index + 1) * WINDOW_SAMPLES] for c in clips]
            ).astype(np.float32)
            / 32768
        )
        probabilities, states = model.infer_batch(windows, states)
        batched.append(probabilities)
    batched_by_call = np.stack(batched, axis=1)
    for got, want in zip(batched_by_call, expected, strict=True):
        assert np.allclose(got, want, atol=1e-5)


def test_batch_inference_checks_its_arguments(model: SileroModel) -> None:
    with pytest.raises(ValueError, match="one state per window"):
        model.infer_batch(np.zeros((2, WINDOW_SAMPLES), dtype=np.float32), [SileroState()])
    probabilities, states = model.infer_batch(np.zeros((0, WINDOW_SAMPLES), np.float32), [])
    assert len(probabilities) == 0 and states == []


def test_rejects_stereo_and_integer_types_other_than_int16(model: SileroModel) -> None:
    with pytest.raises(ValueError, match="mono"):
        SileroVAD(model).process(np.zeros((512, 2), dtype=np.int16))
    with pytest.raises(ValueError, match="int16"):
        SileroVAD(model).process(np.zeros(512, dtype=np.int32))


def test_phone_rate_model_hears_the_same_speech_as_the_16k_model(
    model: SileroModel, jfk_with_silence: tuple[np.ndarray, int]
) -> None:
    # The server scores the carrier's 8 kHz audio directly (256-sample windows, 32 ms).
    audio16k, speech_samples = jfk_with_silence
    audio8k = resample(audio16k, 16000, 8000)
    phone = SileroModel.shared(8000)
    assert phone is SileroModel.shared(8000) and phone is not model
    assert (phone.window_samples, phone.window_secs) == (256, WINDOW_SECS)
    narrow = SileroVAD(phone).process(audio8k)
    wide = SileroVAD(model).process(audio16k)
    assert len(narrow) == len(audio8k) // 256
    n = min(len(narrow), len(wide))
    # Windows are the same 32 ms; the two rates agree on speech vs not for almost all of them.
    assert ((narrow[:n] >= 0.5) == (wide[:n] >= 0.5)).mean() > 0.9
    speech_windows = speech_samples // WINDOW_SAMPLES
    assert narrow[speech_windows + 2 :].max() < 0.1

    # Batched scoring at 8 kHz equals stream scoring.
    windows = audio8k[: 4 * 256].astype(np.float32).reshape(4, 256) / 32768
    state = phone.initial_state()
    for window, expected in zip(windows, SileroVAD(phone).process(audio8k[: 4 * 256]), strict=True):
        (probability,), (state,) = phone.infer_batch(window[np.newaxis], [state])
        assert probability == pytest.approx(expected, abs=1e-5)


def test_rejects_sample_rates_silero_does_not_take() -> None:
    with pytest.raises(ValueError, match="8000 or 16000"):
        SileroModel(sample_rate=44100)


def test_audio_the_carrier_skipped_mid_answer_does_not_deafen_silero() -> None:
    # Issue 17: a carrier (or a caller starved of CPU) skipped 160 ms mid-answer; the server
    # filled it with digital silence and Silero scored the next ~3 s of speech as silence: a
    # 2.6 s "pause" that ended the turn while the candidate spoke. The fill is faint noise now.
    from voicebot.audio.codec import ulaw_comfort_noise, ulaw_decode, ulaw_encode
    from voicebot.audio.frames import read_wav

    model = SileroModel(sample_rate=8000)
    clip = ROOT / "loadtest" / "turn_eval" / "clips" / "en_mfa_acoustic_corpus.wav"
    pcm, rate = read_wav(clip)
    phone = ulaw_decode(ulaw_encode(resample(pcm, rate, 8000)))
    skipped_at, after = int(15.46 * 8000), slice(int(15.7 / 0.032), int(18.5 / 0.032))

    def voiced_after(fill: bytes) -> float:
        audio = np.concatenate([phone[:skipped_at], ulaw_decode(fill), phone[skipped_at:]])
        usable = len(audio) - len(audio) % model.window_samples
        windows = (audio[:usable].astype(np.float32) / 32768.0).reshape(-1, model.window_samples)
        probabilities, _ = model.infer(windows, model.initial_state())
        return float(np.mean(probabilities[after] >= 0.5))

    fill = ulaw_comfort_noise(1280)
    assert len(fill) == 1280 and rms_dbfs(ulaw_decode(fill)) < -50  # no voice, no words
    assert voiced_after(b"") > 0.3  # the candidate talks on through here
    assert voiced_after(fill) >= 0.75 * voiced_after(b"")
