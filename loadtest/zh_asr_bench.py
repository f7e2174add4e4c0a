"""Tune Chinese speech recognition on phone audio: character error rate per decoding setting.

Each utterance of ``loadtest/zh_asr_eval`` goes the way a caller's answer does: 16 kHz -> 8 kHz
mu-law (the carrier) -> decoded -> the server's Silero VAD at 8 kHz finds the speech -> the
server's cut around it (``PRE_ROLL_SECS`` before the start, ``SPECULATIVE_PAD_SECS`` after the
end, unless the setting changes them) -> the server's resampler to 16 kHz -> the server's own
:class:`voicebot.speech.asr.WhisperTranscriber` (the bundled multilingual ``base``, int8, one
CTranslate2 thread, as the server runs it) with the setting's options and the decoder prompt
:func:`voicebot.dialogue.recognition_prompt.recognition_prompt` builds. The VAD boundaries are
the first window at the server's speech threshold and the last at its hysteresis threshold (the
turn detector's, without its timers).

Reported per setting, the tune split and the holdout apart: CER (both sides in Simplified
characters, digits read out as Chinese, punctuation and spaces removed; corpus-level: all edits
over all reference characters) and CPU seconds per utterance (process CPU time of the decode). The
utterances are not interview answers; each is given, round-robin, one scored question of the
bundled Chinese scripts and that question's keywords, so the prompt settings measure what an
unrelated prompt costs as much as what a related one buys (see docs/PERFORMANCE.md).

    python -m loadtest.zh_asr_bench [--settings "a|b"] [--json OUT] [--no-cache]

Results are cached per utterance and setting in ``loadtest/results/zh_asr_bench/`` (git-ignored),
and each setting's recognised texts are written there as ``hyp-<setting>.json`` ({id: text}) for
``python -m loadtest.pinyin_match --manifest loadtest/zh_asr_eval/manifest.json --hypotheses ...``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from voicebot.audio.codec import ulaw_decode
from voicebot.audio.frames import MODEL_RATE, TELEPHONY_RATE, read_wav, to_phone_ulaw
from voicebot.audio.resample import resample
from voicebot.call.session import PRE_ROLL_SECS, SPECULATIVE_PAD_SECS
from voicebot.dialogue.recognition_prompt import question_keywords, recognition_prompt
from voicebot.dialogue.script import JobScript, Question, load_script
from voicebot.dialogue.text import to_simplified
from voicebot.speech import asr
from voicebot.speech.zh_text import speech_text

ROOT = Path(__file__).resolve().parent.parent
EVAL = ROOT / "loadtest" / "zh_asr_eval"
RESULTS = ROOT / "loadtest" / "results" / "zh_asr_bench"
SPEECH_THRESHOLD = 0.5  # the turn detector's default speech threshold
HYSTERESIS = 0.15  # speech lasts while the probability stays above threshold minus this


@dataclass(frozen=True)
class Setting:
    """One way of decoding; ``name`` is the row in the table."""

    name: str
    beam: int = 1
    fallback: bool = False
    pre: float = PRE_ROLL_SECS
    post: float = SPECULATIVE_PAD_SECS
    whole: bool = False
    """Transcribe the whole recording (no VAD cut)."""
    min_window: float = asr.WHISPER_WINDOW_SECS
    """Encoder window floor for Chinese (30: Whisper's full window, today's default)."""
    prompt: tuple[str, ...] = ()
    hotwords: bool = False
    """Give the question's keywords as faster-whisper ``hotwords``."""
    plain: bool = False
    """Strip the prompt's punctuation (keywords separated by spaces): Whisper copies the
    prompt's style, and a punctuated prompt made it end some answers after their first "。"."""

    def key(self) -> str:
        """What the cached result depends on."""
        fields = asdict(self)
        del fields["name"]
        return json.dumps(fields, sort_keys=True)


BEFORE = Setting("before: the old defaults (beam 1, no fallback, pad 0.3/0.2 s, 30 s window)")
SETTINGS = [
    BEFORE,
    replace(BEFORE, name="beam 2", beam=2),
    replace(
        BEFORE, name="after: beam 5 (the chosen default, VOICEBOT_ASR_BEAM_SIZES=zh=5)", beam=5
    ),
    replace(BEFORE, name="temperature fallback", fallback=True),
    replace(BEFORE, name="beam 5 + fallback", beam=5, fallback=True),
    replace(BEFORE, name="pad 0.1/0.1 s", pre=0.1, post=0.1),
    replace(BEFORE, name="pad 0.5/0.5 s", pre=0.5, post=0.5),
    replace(BEFORE, name="pad 1.0/1.0 s", pre=1.0, post=1.0),
    replace(BEFORE, name="whole recording (no cut)", whole=True),
    replace(BEFORE, name="fitted window (min 10 s)", min_window=10.0),
    replace(BEFORE, name="prompt: question", prompt=("question",)),
    replace(BEFORE, name="prompt: keywords", prompt=("keywords",)),
    replace(BEFORE, name="prompt: question + keywords", prompt=("question", "keywords")),
    replace(BEFORE, name="hotwords: keywords", hotwords=True),
    replace(BEFORE, name="beam 5 + prompt: question", beam=5, prompt=("question",)),
    replace(BEFORE, name="prompt: keywords, unpunctuated", prompt=("keywords",), plain=True),
    replace(
        BEFORE,
        name="prompt: question + keywords, unpunctuated",
        prompt=("question", "keywords"),
        plain=True,
    ),
    replace(BEFORE, name="prompt: lead", prompt=("lead",)),
    replace(BEFORE, name="prompt: lead + keywords", prompt=("lead", "keywords")),
    replace(
        BEFORE, name="prompt: lead + question + keywords", prompt=("lead", "question", "keywords")
    ),
    replace(BEFORE, name="beam 5 + prompt: lead", beam=5, prompt=("lead",)),
    replace(
        BEFORE,
        name="beam 5 + prompt: question + keywords",
        beam=5,
        prompt=("question", "keywords"),
    ),
]


@dataclass
class Utterance:
    """An evaluation clip on the phone path, with the question it is given."""

    id: str
    text: str
    split: str
    kind: str
    phone: np.ndarray
    """8 kHz int16, as the server decodes it from the carrier's mu-law."""
    speech: tuple[float, float]
    """Start and end of speech (s) by the server's VAD."""
    script: JobScript
    question: Question


def normalise(text: str) -> str:
    """What CER is counted on: Simplified characters and digits read out as Chinese.

    The project's own reader makes "7点半" and "七点半" the same words; punctuation and spaces go,
    letters are lower-cased.
    """
    return re.sub(r"[^\w]|_", "", speech_text(to_simplified(text), "zh")).lower()


def edits(ref: str, hyp: str) -> int:
    """Character edit distance (Levenshtein)."""
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i]
        for j, h in enumerate(hyp, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h)))
        previous = current
    return previous[-1]


def scored_questions() -> list[tuple[JobScript, Question]]:
    """Every scored question of the bundled Chinese scripts, in file order."""
    pairs = []
    for path in sorted((ROOT / "dialogues").glob("*.yaml")):
        script = load_script(path)
        if script.language != "zh":
            continue
        pairs += [(script, q) for q in script.questions if question_keywords(script, q)]
    return pairs


def speech_span(phone: np.ndarray) -> tuple[float, float]:
    """Start and end of speech the way the server's VAD sees the 8 kHz audio."""
    from voicebot.speech.vad import SileroModel, SileroVAD

    vad = SileroVAD(SileroModel.shared(TELEPHONY_RATE))
    probs = vad.process(phone)
    window = vad.model.window_secs
    above = np.flatnonzero(probs >= SPEECH_THRESHOLD)
    if above.size == 0:
        return 0.0, len(phone) / TELEPHONY_RATE
    start = int(above[0])
    last = int(above[-1])
    while last + 1 < len(probs) and probs[last + 1] >= SPEECH_THRESHOLD - HYSTERESIS:
        last += 1
    return start * window, (last + 1) * window


def load(manifest: Path) -> list[Utterance]:
    """The manifest's clips through the carrier's codec, with their speech found."""
    questions = scored_questions()
    utterances = []
    for index, entry in enumerate(json.loads(manifest.read_text(encoding="utf-8"))):
        path = manifest.parent / entry["file"]
        if not path.is_file():
            raise SystemExit(f"{path} is missing: run python -m loadtest.zh_asr_eval.build first")
        pcm, rate = read_wav(path)
        phone = ulaw_decode(to_phone_ulaw(pcm, rate))
        script, question = questions[index % len(questions)]
        utterances.append(
            Utterance(
                entry["id"],
                entry["text"],
                entry["split"],
                entry["kind"],
                phone,
                speech_span(phone),
                script,
                question,
            )
        )
    return utterances


def server_cut(utt: Utterance, setting: Setting) -> np.ndarray:
    """The 16 kHz audio the server would hand to the ASR pool for this answer."""
    if setting.whole:
        phone = utt.phone
    else:
        start, end = utt.speech
        a = max(0, int((start - setting.pre) * TELEPHONY_RATE))
        b = min(len(utt.phone), int((end + setting.post) * TELEPHONY_RATE))
        phone = utt.phone[a:b]
    return asr.as_float32(resample(phone, TELEPHONY_RATE, MODEL_RATE), "bench audio")


@dataclass
class Row:
    """One setting's result on one split."""

    setting: str
    split: str
    utterances: int = 0
    ref_chars: int = 0
    edits: int = 0
    cpu_secs: float = 0.0
    per_kind: dict[str, list[int]] = field(default_factory=dict)

    @property
    def cer(self) -> float:
        """Character error rate, all edits over all reference characters."""
        return self.edits / self.ref_chars if self.ref_chars else 0.0


class Transcriber:
    """The server's transcriber of the bundled ``base`` model, options set per setting."""

    def __init__(self) -> None:
        self._impl: asr.WhisperTranscriber | None = None

    def run(self, utt: Utterance, setting: Setting) -> tuple[str, float]:
        """(recognised text, CPU seconds) of one utterance under one setting."""
        if self._impl is None:
            self._impl = asr.WhisperTranscriber(
                asr.resolve_model("base"),
                compute_type="int8",
                cpu_threads=1,
                num_workers=1,
                beam_size=1,
                min_window_secs=asr.DEFAULT_MIN_WINDOW_SECS,
            )
        impl = self._impl
        impl.beam_size = setting.beam
        impl.temperature_fallback = setting.fallback
        impl.min_window_secs = setting.min_window
        floors = asr.LANGUAGE_MIN_WINDOW_SECS
        saved = dict(floors)
        if setting.min_window < asr.WHISPER_WINDOW_SECS:
            floors.pop("zh", None)  # the setting under test replaces the Chinese floor
        prompt = recognition_prompt(utt.script, utt.question, setting.prompt)
        if prompt and setting.plain:
            prompt = re.sub(r"[、，。？！,.?!]+", " ", prompt).strip()
        hotwords = (
            recognition_prompt(utt.script, utt.question, ("keywords",))
            if setting.hotwords
            else None
        )
        audio = server_cut(utt, setting)
        try:
            cpu = time.process_time()
            text, _fitted = impl.transcribe(audio, "zh", prompt, hotwords)
            cpu = time.process_time() - cpu
        finally:
            floors.clear()
            floors.update(saved)
        return text, cpu


def run(
    utterances: Sequence[Utterance], settings: Sequence[Setting], use_cache: bool = True
) -> tuple[list[Row], dict[str, dict[str, str]]]:
    """Rows per setting and split, and each setting's recognised texts."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    cache_path = RESULTS / "cache.json"
    cache: dict[str, dict[str, object]] = {}
    if use_cache and cache_path.is_file():
        cache = json.loads(cache_path.read_text(encoding="utf-8"))
    transcriber = Transcriber()
    rows: list[Row] = []
    texts: dict[str, dict[str, str]] = {}
    for setting in settings:
        by_split = {s: Row(setting.name, s) for s in ("tune", "holdout")}
        texts[setting.name] = {}
        for utt in utterances:
            key = f"{utt.id}|{utt.speech}|{setting.key()}"
            if setting.prompt or setting.hotwords:
                key += f"|{utt.script.id}:{utt.question.id}"  # the prompt's question
            if key not in cache:
                text, cpu = transcriber.run(utt, setting)
                cache[key] = {"text": text, "cpu": cpu}
                cache_path.write_text(json.dumps(cache, ensure_ascii=False), encoding="utf-8")
            hyp = str(cache[key]["text"])
            texts[setting.name][utt.id] = hyp
            ref, got = normalise(utt.text), normalise(hyp)
            n = edits(ref, got)
            row = by_split[utt.split]
            row.utterances += 1
            row.ref_chars += len(ref)
            row.edits += n
            row.cpu_secs += float(cache[key]["cpu"])  # type: ignore[arg-type]
            kind = row.per_kind.setdefault(utt.kind, [0, 0])
            kind[0] += n
            kind[1] += len(ref)
        rows += by_split.values()
        tune, hold = by_split["tune"], by_split["holdout"]
        print(
            f"  {setting.name}: tune CER {tune.cer:.1%}, holdout CER {hold.cer:.1%}",
            file=sys.stderr,
        )
    return rows, texts


def table(rows: Sequence[Row]) -> str:
    """The rows as a Markdown table, one line per setting."""
    lines = [
        "| setting | tune CER | tune CER read / conv. / acted | holdout CER"
        " | CPU s per utterance (tune, holdout) |",
        "| --- | --- | --- | --- | --- |",
    ]
    by_setting: dict[str, dict[str, Row]] = {}
    for row in rows:
        by_setting.setdefault(row.setting, {})[row.split] = row
    for name, split in by_setting.items():
        tune, hold = split["tune"], split["holdout"]
        kinds = " / ".join(
            f"{tune.per_kind[k][0] / tune.per_kind[k][1]:.0%}" if k in tune.per_kind else "-"
            for k in ("read", "conversational", "acted")
        )
        lines.append(
            f"| {name} | {tune.cer:.1%} ({tune.edits}/{tune.ref_chars}) | {kinds}"
            f" | {hold.cer:.1%} ({hold.edits}/{hold.ref_chars})"
            f" | {tune.cpu_secs / max(tune.utterances, 1):.2f}, "
            f"{hold.cpu_secs / max(hold.utterances, 1):.2f} |"
        )
    return "\n".join(lines)


def slug(name: str) -> str:
    """A file-name form of a setting's name."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:60]


def main(argv: Sequence[str] | None = None) -> None:
    """Run the settings and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", type=Path, default=EVAL / "manifest.json")
    parser.add_argument("--settings", help="setting names separated by | (default: all)")
    parser.add_argument("--json", type=Path, help="write the rows and recognised texts here")
    parser.add_argument("--no-cache", action="store_true", help="decode everything again")
    args = parser.parse_args(argv)
    settings = SETTINGS
    if args.settings:
        wanted = {s.strip() for s in args.settings.split("|")}
        settings = [s for s in SETTINGS if s.name in wanted or s.name.split(":")[0] in wanted]
    utterances = load(args.manifest)
    tune = sum(u.split == "tune" for u in utterances)
    print(
        f"{len(utterances)} utterances ({tune} tune, {len(utterances) - tune} holdout), "
        f"{len(settings)} settings",
        file=sys.stderr,
    )
    rows, texts = run(utterances, settings, use_cache=not args.no_cache)
    for name, hyps in texts.items():
        (RESULTS / f"hyp-{slug(name)}.json").write_text(
            json.dumps(hyps, ensure_ascii=False, indent=1), encoding="utf-8"
        )
    print(table(rows))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "rows": [{**asdict(r), "cer": r.cer} for r in rows],
                    "utterances": [
                        {"id": u.id, "text": u.text, "split": u.split, "speech": u.speech}
                        for u in utterances
                    ],
                    "texts": texts,
                },
                ensure_ascii=False,
                indent=1,
            ),
            encoding="utf-8",
        )


if __name__ == "__main__":
    main()
