"""Prompt packs: rendered prompts exported on one machine serve another whose engine cannot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.speech.test_prompt_cache import CountingEngine
from voicebot.speech.prompt_cache import PromptCache
from voicebot.speech.prompt_pack import PromptPackError, export_pack, import_pack

TEXTS = ["您好，我是智能招聘助手，本次通话会录音。", "请问您做过客服吗？"]


class NamedVoiceEngine(CountingEngine):
    """A fake engine with a voice of its own (as edge-tts has)."""

    def voice_id(self, language, voice=None):
        return voice or "zh-CN-XiaoxiaoNeural"


async def rendered_cache(directory: Path, engine_name: str = "edge") -> dict[str, bytes]:
    cache = PromptCache(directory, NamedVoiceEngine(engine_name))
    return {text: await cache.get(text, language="zh") for text in TEXTS}


def rewrite(pack: Path, target: Path, change) -> Path:
    """Copy a pack, passing each member's (name, bytes) through ``change``."""
    with zipfile.ZipFile(pack) as source, zipfile.ZipFile(target, "w") as out:
        for name in source.namelist():
            out.writestr(name, change(name, source.read(name)))
    return target


async def test_imported_prompts_play_where_their_engine_is_unreachable(tmp_path):
    online, offline = tmp_path / "online", tmp_path / "offline"
    rendered = await rendered_cache(online)
    summary = export_pack(online, tmp_path / "pack.zip")
    assert summary.prompts == 2 and summary.engines == {"edge": 2}
    assert import_pack(tmp_path / "pack.zip", offline).prompts == 2

    # The same engine, unreachable: the cache key is engine + voice + language + text.
    down = NamedVoiceEngine("edge", fail=True)
    cache = PromptCache(offline, down)
    for text in TEXTS:
        assert await cache.get(text, language="zh") == rendered[text]
    # Another engine (espeak-ng here), which would fail too: the imported rendering is played.
    espeak = CountingEngine("espeak", fail=True)
    cache = PromptCache(offline, espeak)
    for text in TEXTS:
        assert await cache.get(text, language="zh") == rendered[text]
    assert down.calls == 0 and espeak.calls == 0 and cache.imported_hits == 2
    # Not in the pack: synthesised as before.
    working = CountingEngine("espeak")
    await PromptCache(offline, working).get("别的话。", language="zh")
    assert working.calls == 1


async def test_imported_prompt_beats_an_older_local_rendering(tmp_path):
    online, offline = tmp_path / "online", tmp_path / "offline"
    rendered = await rendered_cache(online)
    await PromptCache(offline, CountingEngine("espeak")).get(TEXTS[0], language="zh")
    export_pack(online, tmp_path / "pack.zip")
    import_pack(tmp_path / "pack.zip", offline)
    cache = PromptCache(offline, CountingEngine("espeak"))
    assert await cache.get(TEXTS[0], language="zh") == rendered[TEXTS[0]]


async def test_a_script_voice_only_takes_an_imported_prompt_of_that_voice(tmp_path):
    online, offline = tmp_path / "online", tmp_path / "offline"
    await rendered_cache(online)
    export_pack(online, tmp_path / "pack.zip")
    import_pack(tmp_path / "pack.zip", offline)
    espeak = CountingEngine("espeak")
    cache = PromptCache(offline, espeak)
    await cache.get(TEXTS[0], language="zh", voice="zh-CN-YunxiNeural")
    assert espeak.calls == 1 and cache.imported_hits == 0
    await cache.get(TEXTS[1], language="zh", voice="zh-CN-XiaoxiaoNeural")
    assert espeak.calls == 1 and cache.imported_hits == 1


async def test_export_filters_by_engine(tmp_path):
    online = tmp_path / "online"
    await rendered_cache(online)
    await PromptCache(online, CountingEngine("espeak")).get("另一句。", language="zh")
    assert export_pack(online, tmp_path / "all.zip").engines == {"edge": 2, "espeak": 1}
    assert export_pack(online, tmp_path / "edge.zip", {"edge"}).engines == {"edge": 2}
    with pytest.raises(PromptPackError, match="no rendered prompts to export by piper"):
        export_pack(online, tmp_path / "none.zip", {"piper"})


def _tamper_audio(name, data):
    return data[:-10] + b"\x00" * 10 if name.endswith(".ulaw") else data


def _tamper_text(name, data):
    if name != "manifest.json":
        return data
    manifest = json.loads(data)
    manifest["prompts"][0]["text"] = "别的文字"
    return json.dumps(manifest).encode()


def _drop_audio(name, data):
    return data if name == "manifest.json" else b""


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_tamper_audio, "checksum mismatch"),
        (_tamper_text, "its key does not match its engine, voice, language, text"),
        (_drop_audio, "size does not match the manifest"),
    ],
)
async def test_a_tampered_pack_is_refused_whole(tmp_path, change, message):
    online, offline = tmp_path / "online", tmp_path / "offline"
    await rendered_cache(online)
    export_pack(online, tmp_path / "pack.zip")
    bad = rewrite(tmp_path / "pack.zip", tmp_path / "bad.zip", change)
    with pytest.raises(PromptPackError) as refused:
        import_pack(bad, offline)
    assert message in str(refused.value)
    assert "nothing was changed" in str(refused.value)
    assert not offline.exists() or not list(offline.iterdir())


def test_what_is_not_a_pack_is_refused(tmp_path):
    text = tmp_path / "notes.zip"
    text.write_text("not a zip")
    with pytest.raises(PromptPackError, match="not a zip file"):
        import_pack(text, tmp_path / "cache")
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as pack:
        pack.writestr("readme.txt", "hello")
    with pytest.raises(PromptPackError, match="holds no manifest.json"):
        import_pack(other, tmp_path / "cache")
    with pytest.raises(PromptPackError, match="no such file"):
        import_pack(tmp_path / "missing.zip", tmp_path / "cache")


def cli(*args: str, cache: Path, data: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "VOICEBOT_PROMPT_CACHE_DIR": str(cache),
        "VOICEBOT_DATA_DIR": str(data),
    }
    return subprocess.run(
        [sys.executable, "-m", "voicebot.cli", "prompts", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


async def test_cli_export_and_import(tmp_path):
    online, offline = tmp_path / "online", tmp_path / "offline"
    rendered = await rendered_cache(online)
    pack = tmp_path / "pack.zip"
    result = cli("export", str(pack), cache=online, data=tmp_path / "a")
    assert result.returncode == 0, result.stderr
    assert "exported 2 prompts (2 by edge)" in result.stdout
    result = cli("import", str(pack), cache=offline, data=tmp_path / "b")
    assert result.returncode == 0, result.stderr
    assert "imported 2 prompts (2 by edge)" in result.stdout
    cache = PromptCache(offline, CountingEngine("espeak", fail=True))
    assert await cache.get(TEXTS[1], language="zh") == rendered[TEXTS[1]]

    bad = rewrite(pack, tmp_path / "bad.zip", _tamper_audio)
    result = cli("import", str(bad), cache=tmp_path / "third", data=tmp_path / "c")
    assert result.returncode == 1
    assert "checksum mismatch" in result.stderr and "nothing was changed" in result.stderr
    assert not (tmp_path / "third").exists() or not list((tmp_path / "third").iterdir())


async def test_an_imported_espeak_rendering_does_not_replace_a_better_local_voice(tmp_path):
    online, offline = tmp_path / "online", tmp_path / "offline"
    await PromptCache(online, CountingEngine("espeak")).get("Welcome.", language="en")
    export_pack(online, tmp_path / "pack.zip")
    import_pack(tmp_path / "pack.zip", offline)
    piper = CountingEngine("piper")
    cache = PromptCache(offline, piper)
    await cache.get("Welcome.", language="en")
    assert piper.calls == 1 and cache.imported_hits == 0
