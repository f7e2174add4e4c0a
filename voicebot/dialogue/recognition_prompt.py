"""What the speech recogniser is told about an answer before it hears it.

Whisper decodes after a "previous text" prompt (faster-whisper's ``initial_prompt``): text written
the way the answer will be, and words it will likely contain, make those words likelier. For a
screening answer that context is the question the bot just asked and the keywords of the
competency the answer is scored on, which are exactly the words homophone errors hit
("两班到" for 两班倒). :func:`recognition_prompt` builds it from the script, so the live session and
the tuning benchmark (``loadtest/zh_asr_bench.py``) build the same text.

What goes in is a setting per language (``VOICEBOT_ASR_PROMPT``), chosen from the benchmark's
table in ``docs/PERFORMANCE.md``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from voicebot.dialogue.script import JobScript, Question

PromptPart = Literal["lead", "question", "keywords"]
PROMPT_PARTS: tuple[PromptPart, ...] = ("lead", "question", "keywords")

LEAD = {"zh": "以下是普通话的句子。"}
"""A fixed sentence in the language's written form ("what follows are Mandarin sentences."):
punctuated Simplified Chinese before the answer, whatever the question."""

MAX_KEYWORDS = 24
"""Most keywords put in a prompt (Whisper keeps at most 223 prompt tokens, the last ones)."""

_LIST_SEPARATOR = {"zh": "、", "en": ", "}
_END = {"zh": "。", "en": "."}


def parse_prompt_parts(text: str, *, setting: str = "VOICEBOT_ASR_PROMPT") -> dict[str, set[str]]:
    """Parse ``"zh=question+keywords,en=none"`` into language -> parts (``none``: empty).

    Raises ``ValueError`` saying which entry is wrong and what is expected.
    """
    parts: dict[str, set[str]] = {}
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        language, sep, value = entry.partition("=")
        language, value = language.strip().lower(), value.strip().lower()
        if not sep or not language.isalpha() or not value:
            raise ValueError(
                f"{setting}: entry {entry!r} is not LANGUAGE=PARTS; write e.g. "
                "'zh=question+keywords' (parts: lead, question, keywords, joined by '+'; or none)"
            )
        chosen = set() if value == "none" else {p.strip() for p in value.split("+")}
        unknown = chosen - set(PROMPT_PARTS)
        if unknown:
            raise ValueError(
                f"{setting}: {', '.join(sorted(unknown))!r} in entry {entry!r} is not a prompt "
                "part; use lead, question, keywords (joined by '+') or none"
            )
        parts[language] = chosen
    return parts


def question_keywords(script: JobScript, question: Question) -> list[str]:
    """The keywords and rubric evidence of the question's competency, each once, in order."""
    competency = next((c for c in script.competencies if c.id == question.competency), None)
    if competency is None:
        return []
    words: list[str] = []
    evidence: Iterable[str] = (e for level in competency.rubric for e in level.evidence)
    for word in (*competency.keywords, *evidence):
        word = word.strip()
        if word and word not in words:
            words.append(word)
    return words[:MAX_KEYWORDS]


def recognition_prompt(
    script: JobScript, question: Question | None, parts: Iterable[str]
) -> str | None:
    """The decoder prompt for an answer to ``question`` (None: no prompt).

    ``parts`` chooses what goes in, in this order: a fixed lead sentence (:data:`LEAD`), the
    question's text, the competency's keywords; or nothing. Outside a question (consent)
    nothing is known about the answer, so there is no prompt.
    """
    chosen = set(parts)
    if question is None or not chosen:
        return None
    language = script.language
    pieces: list[str] = []
    if "lead" in chosen and language in LEAD:
        pieces.append(LEAD[language])
    if "question" in chosen:
        pieces.append(question.prompt.strip())
    if "keywords" in chosen:
        keywords = question_keywords(script, question)
        if keywords:
            separator = _LIST_SEPARATOR.get(language, ", ")
            pieces.append(separator.join(keywords) + _END.get(language, "."))
    text = ("" if language == "zh" else " ").join(pieces).strip()
    return text or None
