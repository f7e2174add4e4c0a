"""Recorded prompts: decoding WAV (and other formats through PyAV), and the checks on each file."""

from __future__ import annotations

import wave
from pathlib import Path

import av
import numpy as np
import pytest

from tests.conftest import speech_clip
from voicebot.audio.codec import ulaw_decode
from voicebot.speech.recorded import (
    RecordingError,
    check_recording,
    load_recording,
    read_recording,
)

JFK_TEXT = (
    "And so my fellow Americans, ask not what your country can do for you, "
    "ask what you can do for your country."
)
ZH_TEXT = "广州市房地产中介协会分析"


def write_wav(path: Path, pcm: np.ndarray, rate: int, *, width: int = 2, channels: int = 1):
    samples = np.asarray(pcm, dtype=np.int16)
    if channels > 1:
        samples = np.repeat(samples, channels)
    if width == 1:
        raw = ((samples.astype(np.int32) >> 8) + 128).astype(np.uint8).tobytes()
    elif width == 4:
        raw = (samples.astype("<i4") << 16).tobytes()
    else:
        raw = samples.astype("<i2").tobytes()
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(width)
        wav.setframerate(rate)
        wav.writeframes(raw)
    return path


def write_mp3(path: Path, pcm: np.ndarray, rate: int) -> Path:
    with av.open(str(path), "w", format="mp3") as container:
        stream = container.add_stream("mp3", rate=rate)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(
            np.asarray(pcm, dtype=np.int16).reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


@pytest.mark.parametrize(("width", "channels"), [(2, 1), (1, 1), (4, 1), (2, 2)])
def test_wav_of_any_common_layout_is_read_as_mono_int16(tmp_path, width, channels):
    speech = speech_clip("en_jfk.wav")
    path = write_wav(tmp_path / "p.wav", speech, 16000, width=width, channels=channels)
    pcm, rate = read_recording(path)
    assert rate == 16000 and pcm.dtype == np.int16 and len(pcm) == len(speech)
    error = np.abs(pcm.astype(np.int32) - speech.astype(np.int32))
    assert error.max() <= (256 if width == 1 else 1)


def test_recording_becomes_8k_mulaw_of_the_same_length_less_silence(tmp_path):
    speech = speech_clip("en_jfk.wav")
    padded = np.concatenate([np.zeros(16000, np.int16), speech, np.zeros(16000, np.int16)])
    path = write_wav(tmp_path / "p.wav", padded, 16000)
    ulaw = load_recording(path)
    seconds = len(ulaw) / 8000
    assert 10.0 < seconds < 11.2  # the seconds of silence around it are trimmed
    decoded = ulaw_decode(ulaw)
    assert np.sqrt(np.mean(decoded.astype(np.float64) ** 2)) > 500  # speech, not silence


def test_mp3_is_decoded_without_an_ffmpeg_program(tmp_path):
    speech = speech_clip("en_jfk.wav")
    path = write_mp3(tmp_path / "p.mp3", speech, 16000)
    pcm, rate = read_recording(path)
    assert rate == 16000 and abs(len(pcm) / rate - 11.0) < 0.2


def test_missing_and_undecodable_files_say_which_file_and_what_to_do(tmp_path):
    with pytest.raises(RecordingError, match=r"missing\.wav: no such file.*record it"):
        read_recording(tmp_path / "missing.wav")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really")
    with pytest.raises(RecordingError, match=r"junk\.wav: .*16-bit PCM WAV"):
        read_recording(junk)
    text = tmp_path / "notes.mp3"
    text.write_text("this is a text file, not audio")
    with pytest.raises(RecordingError, match=r"notes\.mp3: cannot decode"):
        read_recording(text)


def test_check_accepts_real_speech_of_a_fitting_length(tmp_path):
    english = write_wav(tmp_path / "en.wav", speech_clip("en_jfk.wav"), 16000)
    found = check_recording(english, JFK_TEXT, "en")
    assert found.errors == () and found.warnings == ()
    assert found.speech_secs > 5 and abs(found.duration_secs - 11.0) < 0.1
    chinese = write_wav(tmp_path / "zh.wav", speech_clip("zh_aishell_BAC009S0724W0121.wav"), 16000)
    found = check_recording(chinese, ZH_TEXT, "zh")
    assert found.errors == () and found.warnings == ()


def test_check_refuses_silence_and_noise(tmp_path):
    silent = write_wav(tmp_path / "silent.wav", np.zeros(32000, np.int16), 16000)
    found = check_recording(silent, "Take your time.", "en")
    assert found.errors and "no speech heard" in found.errors[0]
    rng = np.random.default_rng(1)
    hiss = write_wav(
        tmp_path / "hiss.wav", (rng.standard_normal(32000) * 3000).astype(np.int16), 16000
    )
    assert check_recording(hiss, "Take your time.", "en").errors


def test_check_warns_when_the_length_does_not_fit_the_text(tmp_path):
    speech = write_wav(tmp_path / "en.wav", speech_clip("en_jfk.wav"), 16000)
    too_long = check_recording(speech, "Take your time.", "en")
    assert too_long.errors == () and "11.0 s long" in too_long.warnings[0]
    too_short = check_recording(speech, JFK_TEXT * 5, "en")
    assert too_short.errors == () and "whole text" in too_short.warnings[0]


async def test_server_loads_the_recordings_and_synthesises_only_the_rest(tmp_path, caplog):
    from tests.dialogue.test_script import VALID
    from tests.speech.test_prompt_cache import CountingEngine
    from voicebot.config import Settings
    from voicebot.dialogue.script import load_script, prompt_texts
    from voicebot.services import Services
    from voicebot.speech.prompt_cache import PromptCache

    (tmp_path / "audio").mkdir()
    write_wav(tmp_path / "audio" / "hello.wav", speech_clip("en_jfk.wav")[:32000], 16000)
    (tmp_path / "audio" / "broken.wav").write_bytes(b"RIFF\0\0\0\0WAVEjunk")
    job = tmp_path / "job.yaml"
    job.write_text(
        VALID + "recordings:\n  greeting: audio/hello.wav\n  closing: audio/broken.wav\n"
    )
    script = load_script(job)
    engine = CountingEngine()
    server = Services(Settings(data_dir=tmp_path / "data"))
    server.scripts = {script.id: script}
    server.tts = engine
    server.prompts = PromptCache(tmp_path / "cache", engine)
    assert await server.load_recordings() == 1
    assert server.recordings[script.id]["greeting"] == load_recording(tmp_path / "audio/hello.wav")
    assert "closing" not in server.recordings[script.id]
    assert "prompt closing" in caplog.text and "broken.wav" in caplog.text
    await server.prerender()
    texts = set(prompt_texts(script).values()) - {script.greeting}
    assert engine.calls == len(texts)  # the greeting was not synthesised; the closing was
