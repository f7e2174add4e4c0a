"""How much pinyin matching of Chinese keywords helps on recognised speech, and what it costs.

Scoring looks for a job script's keywords in the transcript; speech recognition on phone audio
often writes a homophone instead ("两班到" for 两班倒, "肯德及" for 肯德基). This measures, on real
Mandarin speech run through the real phone path (16 kHz -> 8 kHz mu-law -> 16 kHz) and the bundled
multilingual Whisper ``base`` model:

* **recall**: of the phrase hits found in a clip's true transcript, how many the recognised text
  still gets by characters only (jieba words, as before) and by characters + pinyin;
* **false matches pinyin adds**: pinyin-only hits in recognised text whose true transcript has no
  such phrase, and pinyin-only hits in correctly written Chinese (every such hit is false by
  construction: the job scripts' own prompts and the scorer's sample answers);
* **synthetic homophone errors** (supplement, not speech): each keyword in the sample answers with
  one character swapped for a different character of the same toneless reading, the error the
  rule is meant for.

Two phrase sets: the keywords, rubric evidence and synonyms of every Chinese job script
(``dialogues/*.yaml`` with ``language: zh``), and each clip's own true words (jieba words of two or
more characters of its transcript). Rules compared: the shipped one (:mod:`voicebot.dialogue.text`:
2+ characters, one run of Chinese characters, at least half the characters the phrase's own, what
was heard not a dictionary word) and looser ones, to show what each condition buys.

Run from the repository root::

    python -m loadtest.pinyin_match                    # the shared clips + turn_eval's zh clips
    python -m loadtest.pinyin_match --manifest M.json  # any [{id, file, transcript}] manifest
    python -m loadtest.pinyin_match --hypotheses H.json  # reuse recognised text {id: text}
    python -m loadtest.pinyin_match --manifest loadtest/zh_asr_eval/manifest.json \
        --hypotheses loadtest/results/zh_asr_bench/hyp-<setting>.json   # the Chinese ASR set

It prints a Markdown table (and ``--json`` writes the numbers and the recognised texts).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from voicebot.audio.frames import phone_roundtrip_16k, read_wav
from voicebot.dialogue import text as zh_text
from voicebot.dialogue.script import load_script
from voicebot.dialogue.text import PhraseMatcher, normalise, segment, split_sentences

ROOT = Path(__file__).resolve().parent.parent
AUDIO = Path(os.environ.get("VOICEBOT_TEST_AUDIO_DIR", ROOT.parent / "shared" / "audio"))
TURN_EVAL = ROOT / "loadtest" / "turn_eval"

# The shared clips' transcripts (zh_news_*: as loadtest/turn_eval/build.py writes them).
SHARED = {
    "zh_aishell_BAC009S0724W0121.wav": "广州市房地产中介协会分析",
    "zh_news_mid.wav": "大学生利用漏洞免费吃肯德基获刑",
    "zh_news_long.wav": "富士康在印度工厂出现大规模感染，目前工厂产量已下降超50%",
}


@dataclass(frozen=True, slots=True)
class Clip:
    """One recording and its true transcript."""

    id: str
    path: Path
    transcript: str


def default_clips() -> list[Clip]:
    """The shared Mandarin clips, and turn_eval's Mandarin clips with a corpus transcript."""
    clips = [Clip(name.removesuffix(".wav"), AUDIO / name, text) for name, text in SHARED.items()]
    manifest = TURN_EVAL / "manifest.json"
    if manifest.is_file():
        for entry in json.loads(manifest.read_text(encoding="utf-8")):
            path = TURN_EVAL / entry["file"]
            if (
                entry.get("language") == "zh"
                and entry.get("transcript_source") == "corpus"
                and path.is_file()
            ):
                clips.append(Clip(entry["id"], path, entry["transcript"]))
    return [clip for clip in clips if clip.path.is_file()]


def manifest_clips(path: Path) -> list[Clip]:
    """Clips of a ``[{id, file, transcript}]`` manifest (files relative to it).

    ``text`` stands for ``transcript`` (``loadtest/zh_asr_eval/manifest.json``).
    """
    entries = json.loads(path.read_text(encoding="utf-8"))
    return [
        Clip(e["id"], path.parent / e["file"], e.get("transcript", e.get("text", "")))
        for e in entries
    ]


async def recognise(clips: Sequence[Clip], model: str, beam: int = 5) -> dict[str, str]:
    """Each clip through the phone codec and the ASR pool the server uses (int8)."""
    from voicebot.speech.asr import ASRPool

    pool = ASRPool(model, beam_size=beam)
    texts = {}
    try:
        for clip in clips:
            pcm, rate = read_wav(clip.path)
            if rate != 16000:
                raise SystemExit(f"{clip.path}: {rate} Hz, expected 16 kHz")
            result = await pool.transcribe(phone_roundtrip_16k(pcm), "zh")
            texts[clip.id] = result.text
            print(f"  {clip.id}: {clip.transcript} -> {result.text}", file=sys.stderr)
    finally:
        await pool.close()
    return texts


# --- matching rules -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rule:
    """One pinyin matching rule, to compare with the shipped one."""

    name: str
    min_chars: int = 2
    half_same: bool = True
    """At least half the characters (rounded up) must be the phrase's own."""
    not_a_word: bool = True
    """What was heard must not be a dictionary word of its own."""
    edges: str = "start"
    """``"start"``: the stretch starts where a word of the answer starts; ``"both"``: and ends
    where one ends; ``"none"``: anywhere."""
    in_context: bool = True
    """The phrase's characters read as in the phrase (else: any of their readings)."""


RULES = (
    Rule("shipped: 2+ chars, half same, not a word, starts a word"),
    Rule("shipped, and ends a word", edges="both"),
    Rule("shipped, 3+ chars only", min_chars=3),
    Rule("2+ chars, half same, not a word", edges="none"),
    Rule("2+ chars, half same", not_a_word=False, edges="none", in_context=False),
    Rule(
        "2+ chars, any homophone", half_same=False, not_a_word=False, edges="none", in_context=False
    ),
)


def pinyin_hits(rule: Rule, phrases: Mapping[str, Iterable[str]], sentence: str) -> set[str]:
    """Canonical phrases that hit ``sentence`` by pinyin alone under ``rule``."""
    runs = zh_text._HAN_RUN.findall(normalise(sentence, "zh"))
    edges = [zh_text._word_edges(run) for run in runs]
    words = zh_text._jieba().FREQ
    found = set()
    for canonical, variants in phrases.items():
        for variant in (canonical, *variants):
            chars = normalise(variant, "zh")
            if len(chars) < rule.min_chars or not zh_text._HAN_RUN.fullmatch(chars):
                continue
            if _hit(rule, chars, runs, edges, words):
                found.add(canonical)
                break
    return found


def _hit(
    rule: Rule,
    phrase: str,
    runs: Sequence[str],
    edges: Sequence[frozenset[int]],
    words: Mapping[str, int],
) -> bool:
    size = len(phrase)
    need = (size + 1) // 2 if rule.half_same else 0
    if rule.in_context:
        wanted = [frozenset({r}) for r in zh_text._phrase_readings(phrase)]
    else:
        wanted = [zh_text._readings(char) for char in phrase]
    for run, run_edges in zip(runs, edges, strict=True):
        for start in range(len(run) - size + 1):
            heard = run[start : start + size]
            same = sum(a == b for a, b in zip(heard, phrase, strict=True))
            if not need <= same < size:
                continue
            if rule.not_a_word and words.get(heard):
                continue
            if rule.edges != "none" and start not in run_edges:
                continue
            if rule.edges == "both" and start + size not in run_edges:
                continue
            if all(
                a == b or wanted[i] & zh_text._readings(a)
                for i, (a, b) in enumerate(zip(heard, phrase, strict=True))
            ):
                return True
    return False


def hits(
    matcher: PhraseMatcher, phrases: Mapping[str, Iterable[str]], text: str, rule: Rule | None
) -> tuple[set[str], set[str]]:
    """(exact hits, pinyin-only hits) of ``text``; ``rule`` None: the shipped matcher itself."""
    exact: set[str] = set()
    pinyin: set[str] = set()
    for sentence in split_sentences(text, "zh"):
        found = set(matcher.find_words(segment(sentence, "zh")))
        exact |= found
        if rule is None:
            pinyin |= set(matcher.find_pinyin(sentence, skip=found))
        else:
            pinyin |= pinyin_hits(rule, phrases, sentence) - found
    return exact, pinyin - exact


@dataclass(slots=True)
class Tally:
    """Counts for one kind of text under one rule."""

    true_hits: int = 0
    exact_recall: int = 0
    pinyin_recall: int = 0
    false_pinyin: int = 0
    false_examples: list[str] = field(default_factory=list)

    true_examples: list[str] = field(default_factory=list)

    def add(self, truth: set[str], exact: set[str], pinyin: set[str], heard: str) -> None:
        """Count one text: its true hits and what the recognised text got."""
        self.true_hits += len(truth)
        self.true_examples += [f"{w} in “{heard}”" for w in sorted(truth & pinyin)]
        self.exact_recall += len(truth & exact)
        self.pinyin_recall += len(truth & (exact | pinyin))
        wrong = pinyin - truth
        self.false_pinyin += len(wrong)
        self.false_examples += [f"{w} in “{heard}”" for w in sorted(wrong)]


def script_phrases() -> dict[str, list[str]]:
    """Keywords and rubric evidence of every Chinese job script, with their synonyms."""
    phrases: dict[str, list[str]] = {}
    for path in sorted((ROOT / "dialogues").glob("*.yaml")):
        script = load_script(path)
        if script.language != "zh":
            continue
        for competency in script.competencies:
            synonyms = {k.strip().lower(): v for k, v in competency.synonyms.items()}
            for phrase in (
                *competency.keywords,
                *(item for level in competency.rubric for item in level.evidence),
            ):
                phrases.setdefault(phrase, [])
                for synonym in synonyms.get(phrase.lower(), ()):
                    if synonym not in phrases[phrase]:
                        phrases[phrase].append(synonym)
    return phrases


def correct_texts() -> list[str]:
    """Correctly written Chinese: the zh scripts' prompts and the scorer's sample answers."""
    texts: list[str] = []
    for path in sorted((ROOT / "dialogues").glob("*.yaml")):
        script = load_script(path)
        if script.language == "zh":
            texts += [question.prompt for question in script.questions]
    for path in sorted((ROOT / "tests" / "dialogue" / "sample_answers").glob("*_zh.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        for answers in data["competencies"].values():
            texts += [answers["strong"], answers["weak"]]
    return texts


def with_homophones(text: str, phrases: Iterable[str], rng: random.Random) -> str:
    """``text`` with one character of each phrase it contains swapped for a homophone."""
    by_reading = homophone_table()
    for phrase in sorted(phrases, key=lambda p: (-len(p), p)):
        if len(phrase) < 2 or phrase not in text:
            continue
        readings = zh_text._phrase_readings(phrase)
        options = [
            (i, other)
            for i, char in enumerate(phrase)
            for other in by_reading.get(readings[i], ())
            if other != char
        ]
        if options:
            i, other = rng.choice(options)
            text = text.replace(phrase, phrase[:i] + other + phrase[i + 1 :])
    return text


_TABLE: dict[str, list[str]] = {}


def homophone_table() -> dict[str, list[str]]:
    """Common characters (single-character words of jieba's dictionary) by toneless reading."""
    if not _TABLE:
        freq = zh_text._jieba().FREQ
        chars = sorted(
            (w for w, n in freq.items() if len(w) == 1 and n >= 1000 and zh_text._HAN.match(w)),
        )
        for char in chars:
            for reading in zh_text._readings(char):
                _TABLE.setdefault(reading, []).append(char)
    return _TABLE


def measure(
    clips: Sequence[Clip], recognised: Mapping[str, str]
) -> tuple[list[tuple[str, str, Tally]], dict[str, list[str]]]:
    """(text kind, rule, tally) rows, and example pinyin-only hits per rule."""
    zh_text.prewarm()
    scripts = script_phrases()
    script_matcher = PhraseMatcher("zh", scripts)
    rows: list[tuple[str, str, Tally]] = []
    examples: dict[str, list[str]] = {}
    rules: list[Rule | None] = [None, *RULES[1:]]
    for rule in rules:
        name = RULES[0].name if rule is None else rule.name  # None: the shipped matcher itself
        # 1. script keywords, recognised speech
        tally = Tally()
        for clip in clips:
            truth, _ = hits(script_matcher, scripts, clip.transcript, None)
            exact, pinyin = hits(script_matcher, scripts, recognised[clip.id], rule)
            tally.add(truth, exact, pinyin, recognised[clip.id])
        rows.append(("script keywords, recognised speech", name, tally))
        # 2. each clip's own words, recognised speech
        tally = Tally()
        for clip in clips:
            own = {
                w: []
                for w in segment(clip.transcript, "zh")
                if len(w) >= 2 and zh_text._HAN_RUN.fullmatch(w)
            }
            matcher = PhraseMatcher("zh", own)
            truth, _ = hits(matcher, own, clip.transcript, None)
            exact, pinyin = hits(matcher, own, recognised[clip.id], rule)
            tally.add(truth, exact, pinyin, recognised[clip.id])
        rows.append(("clip's own words, recognised speech", name, tally))
        # 3. script keywords, correctly written text (every pinyin-only hit is false)
        tally = Tally()
        for text in correct_texts():
            truth, _ = hits(script_matcher, scripts, text, None)
            exact, pinyin = hits(script_matcher, scripts, text, rule)
            tally.add(truth, exact, pinyin, text[:30])
        rows.append(("script keywords, correct text (prompts + sample answers)", name, tally))
        # 4. synthetic: keywords with one homophone character
        tally = Tally()
        rng = random.Random(19)
        for text in correct_texts():
            truth, _ = hits(script_matcher, scripts, text, None)
            changed = with_homophones(text, truth, rng)
            exact, pinyin = hits(script_matcher, scripts, changed, rule)
            tally.add(truth, exact, pinyin, changed[:30])
        rows.append(("synthetic: one homophone per keyword (sample answers)", name, tally))
        examples[name] = [
            *(
                f"wrong: {e}"
                for t in rows[-4:]
                if "synthetic" not in t[0]
                for e in t[2].false_examples
            ),
            *(f"right: {e}" for t in rows[-4:-2] for e in t[2].true_examples),
        ]
    return rows, examples


def table(rows: Sequence[tuple[str, str, Tally]]) -> str:
    """The rows as a Markdown table."""
    lines = [
        "| text | rule | true hits | found, characters only | found, + pinyin"
        " | false pinyin hits |",
        "| --- | --- | --- | --- | --- | --- |",
    ]

    def pct(n: int, d: int) -> str:
        return f"{n} ({100 * n / d:.0f}%)" if d else str(n)

    for text, rule, t in sorted(rows, key=lambda row: row[0]):
        lines.append(
            f"| {text} | {rule} | {t.true_hits} | {pct(t.exact_recall, t.true_hits)}"
            f" | {pct(t.pinyin_recall, t.true_hits)} | {t.false_pinyin} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None, run: Callable[..., object] = asyncio.run) -> None:
    """Recognise (or read) the texts, measure, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", type=Path, help="[{id, file, transcript}] JSON")
    parser.add_argument("--hypotheses", type=Path, help="reuse recognised texts {id: text}")
    parser.add_argument("--model", default="base", help="ASR model (default: bundled base)")
    parser.add_argument(
        "--beam", type=int, default=5, help="beam size (the server's for Chinese: 5)"
    )
    parser.add_argument("--json", type=Path, help="write numbers and recognised texts here")
    args = parser.parse_args(argv)
    clips = manifest_clips(args.manifest) if args.manifest else default_clips()
    if args.hypotheses:
        recognised = json.loads(args.hypotheses.read_text(encoding="utf-8"))
        clips = [clip for clip in clips if clip.id in recognised]
    else:
        print(
            f"recognising {len(clips)} clips (phone path, {args.model}, beam {args.beam})",
            file=sys.stderr,
        )
        recognised = run(recognise(clips, args.model, args.beam))
    rows, examples = measure(clips, recognised)
    print(f"{len(clips)} clips\n")
    print(table(rows))
    for rule, found in examples.items():
        if found:
            print(f"\npinyin-only hits, {rule}: " + "; ".join(found[:16]))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "clips": [
                        {"id": c.id, "transcript": c.transcript, "recognised": recognised[c.id]}
                        for c in clips
                    ],
                    "rows": [
                        {"text": text, "rule": rule, **{k: getattr(t, k) for k in t.__slots__}}
                        for text, rule, t in rows
                    ],
                },
                ensure_ascii=False,
                indent=1,
            ),
            encoding="utf-8",
        )


if __name__ == "__main__":
    main()
