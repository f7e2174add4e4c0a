"""The Chinese prompts that ship already rendered: the bundled Chinese scripts, said by Kokoro.

Kokoro renders Mandarin at roughly real time on a busy two-core machine, so the bundled Chinese
scripts' distinct prompts (about five minutes of speech) would hold a first start-up for minutes.
Their renderings ship in ``data/kokoro_zh_prompts.zip`` (a prompt pack, see
:mod:`voicebot.speech.prompt_pack`) and seed the prompt cache at start-up. Each is filed under the
key Kokoro's own rendering would have (engine + voice + language + text as spoken), so it is
played only when Kokoro with that voice would say that very text: an edited prompt, another
voice or another engine is rendered as before, and nothing already in the cache is replaced.

Regenerate the pack after changing a bundled Chinese prompt, the Kokoro engine or
``RENDER_VERSION`` (``tests/speech/test_bundled_prompts.py`` fails until then)::

    python -m voicebot.speech.bundled_prompts
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from voicebot.speech.prompt_pack import PackSummary, export_pack, import_pack

BUNDLED_PACK = Path(__file__).parent / "data" / "kokoro_zh_prompts.zip"
"""Kokoro's renderings of every prompt of the bundled Chinese job scripts."""

BUNDLED_LANGUAGE = "zh"


def seed_prompt_cache(cache_dir: str | Path, pack: str | Path = BUNDLED_PACK) -> int:
    """Add the shipped renderings missing from ``cache_dir``; return how many (blocking).

    A missing pack seeds nothing (those prompts are rendered at start-up instead); a damaged one
    raises :class:`voicebot.speech.prompt_pack.PromptPackError`.
    """
    if not Path(pack).is_file():
        return 0
    return import_pack(pack, cache_dir, imported=False).prompts


async def build_pack(dialogues_dir: str | Path, target: str | Path = BUNDLED_PACK) -> PackSummary:
    """Render the Chinese scripts of ``dialogues_dir`` with Kokoro into the pack ``target``."""
    from voicebot.dialogue.script import fixed_prompts, load_scripts
    from voicebot.speech.prompt_cache import PromptCache
    from voicebot.speech.tts import KokoroEngine

    engine = KokoroEngine()
    scripts = [s for s in load_scripts(dialogues_dir).values() if s.language == BUNDLED_LANGUAGE]
    with tempfile.TemporaryDirectory(prefix="bundled-prompts-") as folder:
        cache = PromptCache(Path(folder), engine)
        items = [(text, s.language, s.voice) for s in scripts for text in fixed_prompts(s)]
        await cache.prerender(items)
        if cache.failures:
            raise RuntimeError(f"{cache.failures} prompts could not be rendered")
        return await asyncio.to_thread(export_pack, folder, target, {engine.name})


def main() -> int:
    """Rebuild the shipped pack from the repository's ``dialogues/``."""
    root = Path(__file__).resolve().parents[2]
    summary = asyncio.run(build_pack(root / "dialogues"))
    print(f"{BUNDLED_PACK}: {summary.prompts} prompts", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
