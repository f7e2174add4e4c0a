"""Carrier framing, WAV files, the phone path and loudness."""

from __future__ import annotations

import math
import wave
from pathlib import Path

import numpy as np
import pytest

from voicebot.audio.codec import ULAW_SILENCE_BYTE, ulaw_decode
from voicebot.audio.frames import (
    FRAME_MS,
    MODEL_RATE,
    SILENCE_DBFS,
    TELEPHONY_RATE,
    ULAW_FRAME_BYTES,
    phone_roundtrip_16k,
    read_wav,
    rms_dbfs,
    split_frames,
    to_phone_ulaw,
    write_wav,
)


def test_constants_describe_twilio_media() -> None:
    assert (TELEPHONY_RATE, MODEL_RATE, FRAME_MS, ULAW_FRAME_BYTES) == (8000, 16000, 20, 160)


def test_split_frames_pads_last_frame_with_silence() -> None:
    frames = split_frames(bytes(range(200)) + bytes(200))
    assert [len(frame) for frame in frames] == [160, 160, 160]
    assert b"".join(frames)[:400] == bytes(range(200)) + bytes(200)
    assert frames[-1][80:] == bytes([ULAW_SILENCE_BYTE]) * 80


def test_split_frames_exact_multiple_and_empty() -> None:
    assert split_frames(b"\x01" * 320) == [b"\x01" * 160, b"\x01" * 160]
    assert split_frames(b"") == []
    assert split_frames(b"\x02" * 5, frame_bytes=2) == [b"\x02\x02", b"\x02\x02", b"\x02\xff"]
    with pytest.raises(ValueError):
        split_frames(b"abc", frame_bytes=0)


def test_wav_mono_roundtrip(tmp_path: Path) -> None:
    pcm = (np.arange(1000) * 37 % 65536 - 32768).astype(np.int16)
    path = tmp_path / "mono.wav"
    write_wav(path, pcm, 8000)
    read, rate = read_wav(path)
    assert rate == 8000
    assert read.dtype == np.int16
    assert np.array_equal(read, pcm)


def test_wav_stereo_written_as_two_channels_and_read_downmixed(tmp_path: Path) -> None:
    left = np.full(100, 1000, dtype=np.int16)
    right = np.full(100, -3000, dtype=np.int16)
    path = tmp_path / "stereo.wav"
    write_wav(path, np.stack([left, right], axis=1), 16000)
    with wave.open(str(path)) as wav:
        assert wav.getnchannels() == 2
        assert wav.getnframes() == 100
    mono, rate = read_wav(path)
    assert rate == 16000
    assert mono.tolist() == [-1000] * 100


def test_read_wav_rejects_other_formats_clearly(tmp_path: Path) -> None:
    not_wav = tmp_path / "notes.txt"
    not_wav.write_text("not audio at all")
    with pytest.raises(ValueError, match="notes.txt.*WAV"):
        read_wav(not_wav)

    eight_bit = tmp_path / "8bit.wav"
    with wave.open(str(eight_bit), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(1)
        wav.setframerate(8000)
        wav.writeframes(bytes(100))
    with pytest.raises(ValueError, match="8-bit.*16-bit"):
        read_wav(eight_bit)


def test_write_wav_rejects_wrong_dtype_and_shape(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="int16"):
        write_wav(tmp_path / "a.wav", np.zeros(10, dtype=np.float32), 8000)
    with pytest.raises(ValueError, match="shape"):
        write_wav(tmp_path / "b.wav", np.zeros((10, 3), dtype=np.int16), 8000)


def tone(rate: int, seconds: float, hz: float = 440.0, amplitude: float = 8000.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.int16)


def test_to_phone_ulaw_is_one_byte_per_8khz_sample() -> None:
    assert len(to_phone_ulaw(tone(16000, 1.0), 16000)) == 8000
    assert len(to_phone_ulaw(tone(24000, 0.5), 24000)) == 4000
    assert len(to_phone_ulaw(tone(8000, 0.02), 8000)) == ULAW_FRAME_BYTES


def test_to_phone_ulaw_keeps_the_tone() -> None:
    decoded = ulaw_decode(to_phone_ulaw(tone(22050, 1.0), 22050)).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(decoded))
    assert abs(np.argmax(spectrum) * 8000 / len(decoded) - 440) < 2


def test_to_phone_ulaw_accepts_float_audio() -> None:
    as_float = tone(16000, 0.5).astype(np.float32) / 32768
    assert to_phone_ulaw(as_float, 16000) == to_phone_ulaw(tone(16000, 0.5), 16000)


def test_phone_roundtrip_drops_what_a_phone_cannot_carry() -> None:
    low = tone(16000, 1.0, hz=1000)
    high = tone(16000, 1.0, hz=6000)
    assert abs(rms_dbfs(phone_roundtrip_16k(low)) - rms_dbfs(low)) < 0.5
    assert rms_dbfs(phone_roundtrip_16k(high)) < rms_dbfs(high) - 30


def test_rms_dbfs() -> None:
    full_scale_square = np.array([32767, -32768] * 100, dtype=np.int16)
    assert rms_dbfs(full_scale_square) == pytest.approx(0.0, abs=0.01)
    sine = tone(16000, 1.0, amplitude=32767)
    assert rms_dbfs(sine) == pytest.approx(-3.01, abs=0.05)
    assert rms_dbfs(np.full(100, 0.1, dtype=np.float32)) == pytest.approx(-20.0, abs=0.01)
    assert rms_dbfs(np.zeros(100, dtype=np.int16)) == SILENCE_DBFS
    assert rms_dbfs(np.zeros(0, dtype=np.int16)) == SILENCE_DBFS
    assert math.isfinite(rms_dbfs(np.array([1], dtype=np.int16)))
