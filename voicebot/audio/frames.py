"""Telephone audio framing, WAV files and the phone path (16 kHz <-> 8 kHz mu-law).

The carrier speaks 8 kHz mu-law in 20 ms frames (160 bytes); the speech models want 16 kHz int16.
This module holds the constants for both sides, cuts mu-law into carrier frames, reads and writes
16-bit WAV files, and reproduces the real phone path for tests and prompt rendering.
"""

from __future__ import annotations

import wave
from pathlib import Path
from typing import BinaryIO

import numpy as np

from voicebot.audio.codec import ULAW_SILENCE_BYTE, ulaw_decode, ulaw_encode
from voicebot.audio.resample import resample

TELEPHONY_RATE = 8000
"""Sample rate of carrier audio (G.711 mu-law), in Hz."""

MODEL_RATE = 16000
"""Sample rate the speech models (VAD, smart-turn, Whisper) expect, in Hz."""

FRAME_MS = 20
"""Duration of one carrier media frame, in milliseconds."""

ULAW_FRAME_BYTES = TELEPHONY_RATE * FRAME_MS // 1000
"""Bytes in one 20 ms mu-law frame at 8 kHz (one byte a sample): 160."""

SILENCE_DBFS = -120.0
"""What :func:`rms_dbfs` returns for digital silence or empty input (a finite floor, JSON-safe)."""


def split_frames(ulaw: bytes, frame_bytes: int = ULAW_FRAME_BYTES) -> list[bytes]:
    """Cut mu-law audio into carrier frames; the last one is padded with mu-law silence."""
    if frame_bytes <= 0:
        raise ValueError(f"split_frames: frame_bytes must be positive, got {frame_bytes}")
    data = bytes(ulaw)
    remainder = len(data) % frame_bytes
    if remainder:
        data += bytes([ULAW_SILENCE_BYTE]) * (frame_bytes - remainder)
    return [data[i : i + frame_bytes] for i in range(0, len(data), frame_bytes)]


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a 16-bit PCM WAV file as int16 mono samples and its sample rate.

    Stereo (or more channels) is downmixed to mono by averaging the channels.
    Raises ``ValueError`` for a file that is not a WAV or not 16-bit PCM.
    """
    try:
        with wave.open(str(path), "rb") as wav:
            channels = wav.getnchannels()
            width = wav.getsampwidth()
            rate = wav.getframerate()
            raw = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        raise ValueError(
            f"{path}: not a readable PCM WAV file ({exc}); convert it to 16-bit PCM WAV, "
            "e.g. `ffmpeg -i in -acodec pcm_s16le out.wav`"
        ) from exc
    if width != 2:
        raise ValueError(
            f"{path}: {8 * width}-bit samples, only 16-bit PCM WAV is supported; convert it, "
            "e.g. `ffmpeg -i in -acodec pcm_s16le out.wav`"
        )
    samples = np.frombuffer(raw, dtype="<i2").astype(np.int16)
    if channels > 1:
        frames = samples[: len(samples) - len(samples) % channels].reshape(-1, channels)
        samples = np.round(frames.astype(np.float32).mean(axis=1)).astype(np.int16)
    return samples, rate


def write_wav(path: str | Path | BinaryIO, pcm: np.ndarray, rate: int) -> None:
    """Write int16 PCM as a 16-bit WAV: a 1-D array is mono, an ``(n, 2)`` array is stereo.

    ``path`` may also be a binary file object (a buffer to be encrypted, say).
    """
    samples = np.asarray(pcm)
    if samples.dtype != np.int16:
        raise ValueError(f"write_wav {path}: expected int16 samples, got {samples.dtype}")
    if samples.ndim == 1:
        channels = 1
    elif samples.ndim == 2 and samples.shape[1] in (1, 2):
        channels = samples.shape[1]
    else:
        raise ValueError(f"write_wav {path}: expected shape (n,) or (n, 2), got {samples.shape}")
    with wave.open(path if hasattr(path, "write") else str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(np.ascontiguousarray(samples, dtype="<i2").tobytes())


def _as_int16(pcm: np.ndarray) -> np.ndarray:
    samples = np.asarray(pcm)
    if samples.dtype == np.int16:
        return samples
    if np.issubdtype(samples.dtype, np.floating):
        return np.clip(np.round(samples * 32768.0), -32768, 32767).astype(np.int16)
    raise ValueError(f"expected int16 or float PCM samples, got {samples.dtype}")


def as_float32(audio: np.ndarray, what: str) -> np.ndarray:
    """Mono float32 samples in [-1, 1] from int16 or float input (``what`` names the caller)."""
    samples = np.asarray(audio)
    if samples.ndim != 1:
        raise ValueError(f"{what}: expected mono audio (1-D), got shape {samples.shape}")
    if samples.dtype == np.int16:
        return samples.astype(np.float32) / 32768.0
    if np.issubdtype(samples.dtype, np.floating):
        return samples.astype(np.float32, copy=False)
    raise ValueError(f"{what}: expected int16 or float samples, got {samples.dtype}")


def to_phone_ulaw(pcm: np.ndarray, rate: int) -> bytes:
    """Resample mono PCM (int16, or float in [-1, 1]) to 8 kHz and encode it as mu-law."""
    samples = _as_int16(pcm)
    return ulaw_encode(resample(samples, rate, TELEPHONY_RATE))


def phone_roundtrip_16k(pcm16k: np.ndarray) -> np.ndarray:
    """Send 16 kHz audio through the real phone path: 8 kHz mu-law and back to 16 kHz int16.

    This is what the server hears from a caller; tests use it so models are exercised on
    telephone-band audio, not on studio audio.
    """
    narrowband = ulaw_decode(to_phone_ulaw(pcm16k, MODEL_RATE))
    return resample(narrowband, TELEPHONY_RATE, MODEL_RATE)


def rms_dbfs(pcm: np.ndarray) -> float:
    """Loudness as RMS in dBFS (0 dBFS = full-scale int16, or 1.0 for float input).

    Digital silence and empty input give :data:`SILENCE_DBFS`.
    """
    samples = np.asarray(pcm)
    if samples.size == 0:
        return SILENCE_DBFS
    full_scale = 32768.0 if samples.dtype == np.int16 else 1.0
    values = samples.astype(np.float64) / full_scale
    rms = float(np.sqrt(np.mean(values * values)))
    if rms <= 0.0:
        return SILENCE_DBFS
    return max(SILENCE_DBFS, 20.0 * float(np.log10(rms)))
