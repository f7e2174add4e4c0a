"""The shipped Kokoro renderings of the bundled Chinese prompts, and how they seed the cache."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from voicebot.config import Settings
from voicebot.dialogue.script import fixed_prompts, load_scripts, prompt_texts
from voicebot.services import Services
from voicebot.speech.bundled_prompts import BUNDLED_PACK, seed_prompt_cache
from voicebot.speech.prompt_cache import PromptCache
from voicebot.speech.prompt_pack import PromptPackError
from voicebot.speech.tts import build_tts, kokoro_installed
from voicebot.speech.voices import espeak_only_prompts

DIALOGUES = Path(__file__).resolve().parents[2] / "dialogues"
CHINESE = [s for s in load_scripts(DIALOGUES).values() if s.language == "zh"]
ZH = next(s for s in CHINESE if s.id == "customer_service_zh")

pytestmark = pytest.mark.skipif(not kokoro_installed(), reason="Kokoro is not installed")


def manifest() -> list[dict]:
    with zipfile.ZipFile(BUNDLED_PACK) as pack:
        return json.loads(pack.read("manifest.json"))["prompts"]


def test_the_shipped_pack_holds_every_bundled_chinese_prompt_as_kokoro_says_it(tmp_path):
    """Fails once a bundled Chinese prompt changes: python -m voicebot.speech.bundled_prompts."""
    keys = {entry["key"] for entry in manifest()}
    assert {entry["engine"] for entry in manifest()} == {"kokoro"}
    cache = PromptCache(tmp_path, build_tts("piper"))  # the default engines
    missing = [
        (script.id, text)
        for script in CHINESE
        for text in fixed_prompts(script)
        if cache.key(text, language="zh", voice=script.voice) not in keys
    ]
    assert not missing, "regenerate: python -m voicebot.speech.bundled_prompts"


async def test_a_seeded_cache_plays_the_prompts_without_rendering(tmp_path):
    seeded = seed_prompt_cache(tmp_path)
    assert seeded == len(manifest()) > 0
    cache = PromptCache(tmp_path, build_tts("piper"))
    audio = await cache.get(ZH.greeting, language="zh", voice=ZH.voice)
    assert len(audio) > 8000 and cache.renders == 0 and cache.disk_hits == 1
    key = cache.key(ZH.greeting, language="zh", voice=ZH.voice)
    described = json.loads(cache.metadata_path(key).read_text(encoding="utf-8"))
    assert described["engine"] == "kokoro" and "imported" not in described


def test_seeding_keeps_what_the_cache_holds(tmp_path):
    first = manifest()[0]
    (tmp_path / f"{first['key']}.ulaw").write_bytes(b"\xff" * 800)  # rendered here already
    assert seed_prompt_cache(tmp_path) == len(manifest()) - 1
    assert (tmp_path / f"{first['key']}.ulaw").read_bytes() == b"\xff" * 800
    assert seed_prompt_cache(tmp_path) == 0


async def test_seeded_prompts_are_no_voice_for_a_server_without_kokoro(tmp_path):
    """Seeds are Kokoro's cache entries, not an imported pack: espeak-only still refuses."""
    seed_prompt_cache(tmp_path)
    espeak = build_tts("espeak")
    missing = await espeak_only_prompts(ZH, espeak, PromptCache(tmp_path, espeak))
    assert missing == list(prompt_texts(ZH))


def test_a_damaged_pack_is_refused_and_a_missing_one_seeds_nothing(tmp_path):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip")
    with pytest.raises(PromptPackError, match="not a zip"):
        seed_prompt_cache(tmp_path / "cache", bad)
    assert seed_prompt_cache(tmp_path / "cache", tmp_path / "absent.zip") == 0


@pytest.mark.parametrize(("engine", "seeded"), [("piper", True), ("espeak", False)])
async def test_the_server_seeds_only_when_kokoro_speaks(tmp_path, engine, seeded):
    server = Services(Settings(data_dir=tmp_path / "data", tts_engine=engine))
    server.tts = build_tts(engine)
    server.prompts = PromptCache(tmp_path / "cache", server.tts)
    assert (await server.seed_bundled_prompts() > 0) is seeded
