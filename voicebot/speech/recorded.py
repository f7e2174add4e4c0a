"""Recorded prompts: a person's recording played instead of synthesised speech.

A job script may name an audio file for any of its prompts (``recordings:`` in the YAML, by prompt
id). WAV is read with the standard library (8/16/24/32-bit PCM and 32-bit float, any rate, mono
or stereo); other formats (MP3, FLAC, OGG, M4A...) are decoded with PyAV, which brings its own
codecs, so no ffmpeg program is needed. The audio is resampled to the telephone rate with the
project's resampler and trimmed like a TTS rendering (:func:`render_ulaw`).

:func:`check_recording` is what ``voicebot dialogues check`` runs on each file: it decodes it,
counts voiced frames with Silero VAD and compares its length with what the text would take to say.
"""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voicebot.speech.prompt_cache import PROMPT_RATE, render_ulaw
from voicebot.speech.tts import SynthesizedAudio

MIN_SPEECH_SECS = 0.3
"""Voiced audio (Silero VAD) a recording needs to count as speech."""

SPEECH_PROBABILITY = 0.5
"""Silero probability from which a window counts as voiced."""

CHARS_PER_SEC = {"zh": 4.5, "en": 14.0}
"""Typical speaking pace by language (Chinese characters, English letters and spaces), used to
tell whether a recording's length fits its text."""

LENGTH_TOLERANCE = 3.0
"""A recording shorter than 1/3 or longer than 3 times the expected length is reported."""


class RecordingError(ValueError):
    """A recorded prompt that cannot be used; the message says which file and what to do."""


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as wav:
        channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
        raw = wav.readframes(wav.getnframes())
    if width == 1:
        samples = (np.frombuffer(raw, dtype=np.uint8).astype(np.int32) - 128) * 256
    elif width == 2:
        samples = np.frombuffer(raw, dtype="<i2").astype(np.int32)
    elif width == 3:
        triples = np.frombuffer(raw[: len(raw) - len(raw) % 3], dtype=np.uint8).reshape(-1, 3)
        packed = triples[:, 0].astype(np.int32) | (triples[:, 1].astype(np.int32) << 8)
        packed |= triples[:, 2].astype(np.int32) << 16
        samples = np.where(packed >= 1 << 23, packed - (1 << 24), packed) >> 8
    elif width == 4:
        samples = np.frombuffer(raw, dtype="<i4").astype(np.int64) >> 16
    else:
        raise RecordingError(f"{path}: {8 * width}-bit WAV samples are not supported")
    if channels > 1:
        samples = samples[: len(samples) - len(samples) % channels].reshape(-1, channels)
        samples = samples.mean(axis=1)
    return np.clip(samples, -32768, 32767).astype(np.int16), rate


def _read_with_av(path: Path) -> tuple[np.ndarray, int]:
    import av

    with av.open(str(path)) as container:
        if not container.streams.audio:
            raise RecordingError(f"{path}: the file holds no audio stream")
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate or PROMPT_RATE
        resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
        pieces = []
        for frame in container.decode(stream):
            pieces.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(frame))
        pieces.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(None))
    pcm = np.concatenate(pieces).astype(np.int16) if pieces else np.zeros(0, np.int16)
    return pcm, rate


def read_recording(path: str | Path) -> tuple[np.ndarray, int]:
    """Decode an audio file to int16 mono samples and their rate; :class:`RecordingError` if not.

    WAV needs nothing beyond Python; other formats use PyAV's bundled decoders.
    """
    path = Path(path)
    if not path.is_file():
        raise RecordingError(
            f"{path}: no such file; record it, or fix the path (relative paths start at the "
            "job script's folder)"
        )
    try:
        with path.open("rb") as handle:
            head = handle.read(12)
    except OSError as exc:
        raise RecordingError(f"{path}: cannot read the file ({exc})") from exc
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        try:
            return _read_wav(path)
        except (wave.Error, EOFError) as exc:
            if "unknown format: 3" not in str(exc):  # 32-bit float WAV: PyAV reads it
                raise RecordingError(
                    f"{path}: not a readable WAV file ({exc}); save it as 16-bit PCM WAV"
                ) from exc
    try:
        import av
    except ImportError as exc:  # pragma: no cover - PyAV is a dependency
        raise RecordingError(f"{path}: only WAV can be read here (PyAV missing)") from exc
    try:
        return _read_with_av(path)
    except (av.FFmpegError, OSError, IndexError, ValueError) as exc:
        raise RecordingError(
            f"{path}: cannot decode the audio ({exc}); save it as 16-bit PCM WAV"
        ) from exc


def load_recording(path: str | Path) -> bytes:
    """Return a recording as trimmed 8 kHz mu-law bytes, ready to play like a rendered prompt."""
    pcm, rate = read_recording(path)
    if len(pcm) == 0:
        raise RecordingError(f"{path}: the file holds no audio")
    return render_ulaw(SynthesizedAudio(pcm, rate, "recording", str(path)))


@dataclass(frozen=True, slots=True)
class RecordingCheck:
    """What ``dialogues check`` found about one recorded prompt."""

    path: Path
    duration_secs: float
    speech_secs: float
    expected_secs: float
    errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


def expected_secs(text: str, language: str) -> float:
    """Roughly how long saying ``text`` takes, in seconds."""
    pace = CHARS_PER_SEC.get(language, CHARS_PER_SEC["en"])
    return len("".join(text.split()) if language == "zh" else text) / pace


def check_recording(path: str | Path, text: str, language: str, vad_model=None) -> RecordingCheck:
    """Decode a recording and judge it: speech (Silero VAD) of a length that fits the text.

    Blocking (decodes and runs the VAD model).
    """
    from voicebot.audio.resample import resample
    from voicebot.speech.vad import SileroModel, SileroVAD

    path = Path(path)
    expected = expected_secs(text, language)
    try:
        pcm, rate = read_recording(path)
    except RecordingError as exc:
        return RecordingCheck(path, 0.0, 0.0, expected, errors=(str(exc),))
    duration = len(pcm) / rate if rate else 0.0
    model = vad_model or SileroModel.shared(PROMPT_RATE)
    narrowband = np.asarray(resample(pcm, rate, model.sample_rate), dtype=np.int16)
    probabilities = SileroVAD(model).process(narrowband) if len(narrowband) else np.zeros(0)
    speech = float(np.count_nonzero(probabilities >= SPEECH_PROBABILITY)) * model.window_secs
    errors: list[str] = []
    warnings: list[str] = []
    if speech < MIN_SPEECH_SECS:
        errors.append(
            f"{path}: no speech heard ({speech:.1f} s voiced in {duration:.1f} s); "
            "record the prompt's text, not silence or music"
        )
    elif duration > expected * LENGTH_TOLERANCE:
        warnings.append(
            f"{path}: {duration:.1f} s long where the text takes about {expected:.1f} s; "
            "is it the right recording (or trim the silence)?"
        )
    elif duration < expected / LENGTH_TOLERANCE:
        warnings.append(
            f"{path}: {duration:.1f} s long where the text takes about {expected:.1f} s; "
            "is the whole text recorded?"
        )
    return RecordingCheck(path, duration, speech, expected, tuple(errors), tuple(warnings))
