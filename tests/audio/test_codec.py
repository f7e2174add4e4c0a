"""G.711 mu-law codec and resampling: bit-exactness, known values, real speech on the phone path."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import speech_clip as speech
from voicebot.audio.codec import (
    DECODE_TABLE,
    ULAW_SILENCE_BYTE,
    _encode_scalar,
    ulaw_decode,
    ulaw_encode,
)
from voicebot.audio.frames import phone_roundtrip_16k
from voicebot.audio.resample import StreamResampler, resample

ALL_INT16 = np.arange(-32768, 32768, dtype=np.int32).astype(np.int16)


def test_encode_is_bit_exact_with_scalar_reference_for_every_sample() -> None:
    expected = bytes(_encode_scalar(int(sample)) for sample in ALL_INT16)
    assert ulaw_encode(ALL_INT16) == expected


@pytest.mark.parametrize(
    ("sample", "code"),
    [(0, 0xFF), (-1, 0x7F), (32767, 0x80), (-32768, 0x00), (1000, 0xCE), (-1000, 0x4E)],
)
def test_encode_known_g711_values(sample: int, code: int) -> None:
    assert ulaw_encode(np.array([sample], dtype=np.int16)) == bytes([code])


@pytest.mark.parametrize(
    ("code", "sample"), [(0xFF, 0), (0x7F, 0), (0x80, 32124), (0x00, -32124), (0xCE, 988)]
)
def test_decode_known_g711_values(code: int, sample: int) -> None:
    assert ulaw_decode(bytes([code])).tolist() == [sample]


def test_silence_byte_decodes_to_zero() -> None:
    assert ulaw_decode(bytes([ULAW_SILENCE_BYTE]) * 4).tolist() == [0, 0, 0, 0]
    assert ulaw_encode(np.zeros(4, dtype=np.int16)) == bytes([ULAW_SILENCE_BYTE]) * 4


def test_decode_returns_int16_and_reencodes_to_same_code() -> None:
    codes = bytes(range(256))
    decoded = ulaw_decode(codes)
    assert decoded.dtype == np.int16
    assert np.array_equal(decoded, DECODE_TABLE)
    reencoded = ulaw_encode(decoded)
    # Only "negative zero" (0x7F) maps onto the canonical zero code.
    differing = [code for code in range(256) if reencoded[code] != code]
    assert differing == [0x7F]
    assert reencoded[0x7F] == 0xFF


def test_roundtrip_error_is_within_quantisation_step() -> None:
    decoded = ulaw_decode(ulaw_encode(ALL_INT16)).astype(np.int32)
    original = ALL_INT16.astype(np.int32)
    error = np.abs(decoded - original)
    in_range = np.abs(original) <= 32124
    # Logarithmic quantisation: the error grows with the magnitude, about 3 % of it at most.
    assert np.all(error[in_range] <= (np.abs(original[in_range]) + 132) / 32)
    assert error[np.abs(original) <= 30].max() <= 4  # the finest step is 8 (16-bit scale)
    # Beyond the largest code the signal is clipped to +-32124.
    assert error.max() <= 32768 - 32124


def test_encode_accepts_non_contiguous_and_other_dtypes() -> None:
    samples = np.array([0, 1000, -1000, 32767], dtype=np.int16)
    assert ulaw_encode(samples[::2]) == ulaw_encode(np.array([0, -1000], dtype=np.int16))
    assert ulaw_encode(samples.astype(np.int32)) == ulaw_encode(samples)


@pytest.mark.parametrize(
    "name", ["en_jfk.wav", "en_speaker_b.wav", "zh_aishell_BAC009S0724W0121.wav"]
)
def test_speech_survives_phone_roundtrip(name: str) -> None:
    original = speech(name)
    phone = phone_roundtrip_16k(original)
    assert phone.dtype == np.int16
    assert len(phone) == len(original)
    correlation = np.corrcoef(original.astype(np.float64), phone.astype(np.float64))[0, 1]
    assert correlation > 0.97


@pytest.mark.parametrize(("in_rate", "out_rate"), [(8000, 16000), (16000, 8000)])
def test_stream_resampler_matches_one_shot(in_rate: int, out_rate: int) -> None:
    clip = speech("en_speaker_b.wav")
    source = clip if in_rate == 16000 else resample(clip, 16000, 8000)
    stream = StreamResampler(in_rate, out_rate)
    chunk = in_rate // 50  # 20 ms, as the carrier sends it
    pieces = [stream.process(source[i : i + chunk]) for i in range(0, len(source), chunk)]
    streamed = np.concatenate([*pieces, stream.flush()])
    one_shot = resample(source, in_rate, out_rate)

    assert streamed.dtype == np.int16
    assert abs(len(streamed) - len(one_shot)) <= 4
    assert abs(len(one_shot) - len(source) * out_rate / in_rate) <= 1
    n = min(len(streamed), len(one_shot))
    correlation = np.corrcoef(streamed[:n].astype(np.float64), one_shot[:n].astype(np.float64))
    assert correlation[0, 1] > 0.999


def test_resample_same_rate_is_passthrough() -> None:
    pcm = np.arange(100, dtype=np.int16)
    assert resample(pcm, 8000, 8000) is pcm
    stream = StreamResampler(8000, 8000)
    assert np.array_equal(stream.process(pcm), pcm)
    assert len(stream.flush()) == 0


def test_resample_keeps_a_tone_at_its_frequency() -> None:
    t = np.arange(8000) / 8000
    tone = (10000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    up = resample(tone, 8000, 16000)
    spectrum = np.abs(np.fft.rfft(up.astype(np.float64)))
    peak_hz = np.argmax(spectrum) * 16000 / len(up)
    assert abs(peak_hz - 440) < 2
