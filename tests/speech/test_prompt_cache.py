"""Prompt cache: rendering to 8 kHz mu-law, disk and memory hits, keys, and a real round trip."""

from __future__ import annotations

import asyncio
import re

import jiwer
import numpy as np
import pytest

from voicebot.audio.codec import ulaw_decode
from voicebot.audio.resample import resample
from voicebot.speech.asr import ASRPool
from voicebot.speech.prompt_cache import PromptCache, trim_silence
from voicebot.speech.tts import (
    EspeakEngine,
    FailoverTTS,
    PiperEngine,
    SynthesizedAudio,
    TTSEngine,
    TTSUnavailable,
)

RATE = 16000


class CountingEngine(TTSEngine):
    """A fake engine: 0.5 s silence, 1 s tone, 0.5 s silence at 16 kHz; counts its calls."""

    def __init__(self, name: str = "fake", fail: bool = False):
        self.name = name
        self.fail = fail
        self.calls = 0

    def supports(self, language: str) -> bool:
        return True

    async def synthesize(self, text, *, language, voice=None):
        self.calls += 1
        await asyncio.sleep(0.01)  # let concurrent requests pile up
        if self.fail:
            raise TTSUnavailable(f"{self.name} is down")
        silence = np.zeros(RATE // 2, dtype=np.int16)
        tone = (8000 * np.sin(2 * np.pi * 300 * np.arange(RATE) / RATE)).astype(np.int16)
        return SynthesizedAudio(np.concatenate([silence, tone, silence]), RATE, self.name)


async def test_second_get_is_served_from_disk_without_the_engine(tmp_path):
    engine = CountingEngine()
    first = await PromptCache(tmp_path, engine).get("Welcome.", language="en")
    fresh = PromptCache(tmp_path, engine)  # new process: empty memory, same directory
    second = await fresh.get("Welcome.", language="en")
    assert second == first
    assert engine.calls == 1
    assert fresh.disk_hits == 1
    assert fresh.renders == 0
    assert await fresh.get("Welcome.", language="en") == first
    assert fresh.memory_hits == 1
    assert engine.calls == 1


async def test_cached_file_is_trimmed_8khz_mulaw(tmp_path):
    cache = PromptCache(tmp_path, CountingEngine())
    data = await cache.get("Welcome.", language="en")
    path = cache.path(cache.key("Welcome.", language="en"))
    assert path.read_bytes() == data
    # 1 s of tone plus 10 ms of kept silence before and 50 ms after, one byte a sample at 8 kHz
    assert len(data) == pytest.approx(1.06 * 8000, abs=0.02 * 8000)
    pcm = ulaw_decode(data).astype(np.float64)
    assert np.sqrt(np.mean(pcm[:60] ** 2)) < 100  # a little leading silence kept
    assert np.sqrt(np.mean(pcm[-300:] ** 2)) < 100  # the tail's silence kept
    assert np.sqrt(np.mean(pcm[1000:7000] ** 2)) == pytest.approx(8000 / np.sqrt(2), rel=0.1)
    # no temp files left behind: the rendering and what made it
    assert sorted(tmp_path.iterdir()) == sorted([path, path.with_suffix(".json")])


def test_keys_differ_by_text_voice_engine_and_language(tmp_path):
    cache = PromptCache(tmp_path, CountingEngine("fake"))
    other_engine = PromptCache(tmp_path, CountingEngine("other"))
    base = cache.key("Hello.", language="en")
    assert re.fullmatch(r"[0-9a-f]{64}", base)
    assert cache.key("Hello.", language="en") == base
    assert cache.key("Hello!", language="en") != base
    assert cache.key("Hello.", language="en", voice="en-US-GuyNeural") != base
    assert cache.key("Hello.", language="zh") != base
    assert other_engine.key("Hello.", language="en") != base


async def test_concurrent_requests_synthesise_once(tmp_path):
    engine = CountingEngine()
    cache = PromptCache(tmp_path, engine)
    results = await asyncio.gather(*(cache.get("Same.", language="en") for _ in range(5)))
    assert engine.calls == 1
    assert len(set(results)) == 1


async def test_prerender_renders_only_what_is_missing(tmp_path):
    engine = CountingEngine()
    cache = PromptCache(tmp_path, engine)
    items = [("One.", "en", None), ("Two.", "en", None), ("One.", "en", None)]
    assert await cache.prerender(items) == 2
    assert await PromptCache(tmp_path, engine).prerender(items) == 0
    assert engine.calls == 2


async def test_prerender_skips_prompts_no_engine_can_render(tmp_path, caplog):
    cache = PromptCache(tmp_path, CountingEngine(fail=True))
    assert await cache.prerender([("One.", "en", None), ("", "en", None)]) == 0
    assert cache.failures == 2
    assert len([r for r in caplog.records if r.levelname == "WARNING"]) == 2
    with pytest.raises(TTSUnavailable):
        await cache.get("One.", language="en")


async def test_memory_lru_is_bounded(tmp_path):
    engine = CountingEngine()
    cache = PromptCache(tmp_path, engine, memory_items=1)
    await cache.prerender([("One.", "en", None), ("Two.", "en", None)])
    await cache.get("One.", language="en")  # evicted from memory: read from disk
    assert cache.disk_hits == 1
    assert engine.calls == 2


async def test_fallback_rendering_is_filed_under_the_engine_that_spoke(tmp_path):
    down = CountingEngine("edge", fail=True)
    backup = CountingEngine("piper")
    tts = FailoverTTS([down, backup], cooldown_secs=3600)
    cache = PromptCache(tmp_path, tts)
    edge_key = cache.key("Hello.", language="en", engine="edge")
    await cache.get("Hello.", language="en")
    assert not cache.path(edge_key).exists()
    assert cache.path(cache.key("Hello.", language="en", engine="piper")).exists()
    await cache.get("Hello.", language="en")  # edge cools down: piper's rendering is used
    assert backup.calls == 1


async def test_blank_prompt_is_refused(tmp_path):
    with pytest.raises(ValueError, match="blank"):
        await PromptCache(tmp_path, CountingEngine()).get("  ", language="en")


def test_trim_silence_keeps_all_of_a_quiet_clip():
    quiet = np.zeros(4000, dtype=np.int16)
    assert len(trim_silence(quiet, 8000)) == 4000


def test_trim_silence_starts_the_prompt_at_its_first_sound():
    """Leading silence is heard as latency: 10 ms is kept before the voice, 50 ms after it."""
    rate = 8000
    t = np.arange(rate // 2) / rate
    tone = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)
    hiss = (np.random.default_rng(1).standard_normal(rate // 4) * 3).astype(np.int16)  # -80 dBFS
    clip = np.concatenate([hiss, tone, hiss])
    trimmed = trim_silence(clip, rate)
    assert len(trimmed) == int(0.01 * rate) + len(tone) + int(0.05 * rate)
    assert np.array_equal(trimmed[80 : 80 + len(tone)], tone)


@pytest.fixture(scope="module")
def asr():
    """One tiny.en pool for the round-trip tests."""
    pool = ASRPool("tiny.en")
    asyncio.run(pool.start())
    yield pool
    asyncio.run(pool.close())


def words(text: str) -> str:
    """Lower case, no punctuation, single spaces."""
    return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split())


@pytest.mark.parametrize("engine", [PiperEngine, EspeakEngine])
async def test_prompt_survives_the_phone_path_for_asr(tmp_path, asr, engine):
    text = "Thank you for calling. Are you ready to begin the interview?"
    cache = PromptCache(tmp_path, FailoverTTS([engine()]))
    ulaw = await cache.get(text, language="en")
    heard = resample(ulaw_decode(ulaw), 8000, 16000)
    result = await asr.transcribe(heard, "en")
    assert jiwer.wer(words(text), words(result.text)) <= 0.15, result.text
