"""Interview scoring: competency scores with their evidence, and a recommendation for a human.

Pure and deterministic: the same script and answers always give the same report, with no I/O, no
clock and no model. Every number can be traced back to the transcript, so a recruiter or an
auditor can check it. The method, per competency of the job script (``competencies``):

1. **Answers.** All answers (and follow-up answers) to the questions that name the competency.
   If none of them was answered the competency scores 0 and the report says so.
2. **Rubric level (the base score).** The script lists rubric levels from low to high; each level
   above the lowest names ``evidence`` phrases and how many different ones (``min_matches``) an
   answer must contain. The highest level whose evidence is found often enough is reached, and
   its ``score`` is the base. Every answered competency reaches at least the lowest level. A
   phrase counts when its words appear in the answer: whole words, English compared by stem
   ("handled" counts for "handle"), Chinese by jieba word segmentation (班 does not count inside
   上班); the competency's ``synonyms`` count as the phrase they belong to. A Chinese phrase of
   two or more characters also counts when it was heard as a homophone (pinyin, tones relaxed:
   "两班到" counts for 两班倒, see :mod:`voicebot.dialogue.text` for the rules); the report marks
   such matches (``match: "pinyin"`` in the evidence, ``keywords_pinyin``) for the reviewer.
3. **Bonus, inside the gap to the next level.** Up to 60 % of the distance to the next level's
   score (to 100 at the top level), so a bonus never lifts an answer to a level whose evidence it
   lacks:

   * up to 30 % for keyword coverage: the share of the competency's ``keywords`` found, full at
     three different keywords (or all of them, when the script lists fewer; a competency without
     keywords uses its evidence phrases);
   * up to 30 % for structure: half for structure markers (English "first", "then", "finally",
     "because", "as a result", ...; Chinese 首先, 其次, 然后, 最后, 因为, 所以, 结果, ...; full at
     two different markers), half for a situation-action-result account (STAR: "last year ...",
     "I called ...", "in the end ..."; 有一次, 我马上, 结果), a third for each part found.
4. **Completeness.** Each question of the competency counts 1 when answered with at least its
   follow-up's ``min_words`` words (12 without a follow-up; Chinese: segmented words), less in
   proportion for a shorter answer, 0 when unanswered (a keypad answer counts 1). The score is
   ``(base + bonus) x (0.5 + 0.5 x completeness)``, rounded to a whole number.

The evidence in the report quotes the transcript sentences that contain the matched phrases (up
to five per competency, those with the most rubric evidence first), with the phrases matched.

**Overall** is the weighted mean of the competency scores (weights normalised; competencies no
question names are left out), one decimal. **Recommendation**: ``advance`` at or above
``thresholds.advance``, ``hold`` at or above ``thresholds.hold``, else ``reject``. Any failed
knock-out makes it ``reject``; a knock-out answered unclearly caps it at ``hold``. A script without
scored competencies gives no overall and ``hold``. ``human_review_required`` is always true: the
recommendation only helps a recruiter decide, it decides nothing.

**Prosody** (speech rate, pauses) is ignored entirely unless the script sets
``prosody_in_recommendation: true``. Then a small fluency adjustment is added to the overall
score, at most 5 points either way: up to +/-2.5 for the pause ratio (+2.5 at 0.25 or less, -2.5 at
0.55 or more, linear in between) and up to +/-2.5 for the speech rate (+2.5 inside a comfortable
band: 120-200 words a minute in English, 200-340 characters a minute in Chinese; -2.5 at 80 / 260
wpm, 130 / 450 cpm or beyond; linear in between). It measures fluency only, never emotion, and the
``reasons`` say when and by how much it was applied.
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

from voicebot.dialogue.messages import catalogue_language, code_label, message, quoted_list
from voicebot.dialogue.script import Competency, JobScript, Question
from voicebot.dialogue.text import PhraseMatcher, segment, split_sentences, word_count

__all__ = [
    "SCORING_VERSION",
    "AnswerText",
    "CompetencyScore",
    "EvidenceQuote",
    "InterviewScore",
    "KnockoutResult",
    "Structure",
    "candidate_feedback",
    "needs_follow_up",
    "score_interview",
]

SCORING_VERSION = 1
"""Version of the method below; bumped whenever a change can move a score."""

Recommendation = Literal["advance", "hold", "reject"]

BONUS_SHARE_KEYWORDS = 0.3
"""Share of the gap to the next rubric level that full keyword coverage adds."""
BONUS_SHARE_STRUCTURE = 0.3
"""Share of the gap to the next rubric level that a fully structured answer adds."""
KEYWORD_TARGET = 3
"""Different keywords for full keyword coverage (or all of them when the script lists fewer)."""
MARKER_TARGET = 2
"""Different structure markers for the full marker half of the structure bonus."""
DEFAULT_FULL_ANSWER_WORDS = 12
"""Words of a complete answer when the question has no follow-up (which sets ``min_words``)."""
COMPLETENESS_FLOOR = 0.5
"""Share of the score an answered but very incomplete competency keeps."""
MAX_QUOTES = 5
"""Evidence quotes kept per competency (the sentences with the most rubric evidence first)."""
MAX_PROSODY_ADJUSTMENT = 5.0
"""Largest fluency adjustment, in overall points, when a script opts in to prosody."""

# Prosody bands: (comfortable low, comfortable high, far low, far high) per rate unit.
_RATE_BANDS = {"wpm": (120.0, 200.0, 80.0, 260.0), "cpm": (200.0, 340.0, 130.0, 450.0)}
_PAUSE_GOOD, _PAUSE_POOR = 0.25, 0.55


# --- inputs ---------------------------------------------------------------------------------------


@dataclass(slots=True)
class AnswerText:
    """What the candidate said to one question (and to its follow-up), as transcribed."""

    question_id: str
    text: str
    follow_up_text: str = ""
    via: Literal["voice", "dtmf"] = "voice"
    """``"dtmf"``: answered with the keypad (``text`` is the key's meaning)."""


@dataclass(slots=True)
class KnockoutResult:
    """The answer to one knock-out question."""

    question_id: str
    expected: Literal["yes", "no"]
    answer: Literal["yes", "no", "unclear"]
    passed: bool | None
    """``None``: the answer stayed unclear; a recruiter has to check it."""

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON."""
        return {
            "question_id": self.question_id,
            "expected": self.expected,
            "answer": self.answer,
            "passed": self.passed,
        }


# --- results --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EvidenceQuote:
    """A transcript sentence that contains phrases the competency looks for."""

    question_id: str
    quote: str
    matched: tuple[str, ...]
    """The keywords / evidence phrases found in the sentence, as the script spells them."""
    pinyin: tuple[tuple[str, str], ...] = ()
    """(phrase, characters heard) for the matched phrases found only by pinyin (Chinese)."""

    def to_dict(self) -> dict[str, Any]:
        """The quote as JSON; ``matches`` says how each phrase was found.

        ``{"phrase": ..., "match": "exact"}``, or for a Chinese phrase found only by its sound
        (speech recognition wrote a homophone) ``{"phrase": ..., "match": "pinyin", "heard":
        ...}``, so a reviewer can check it.
        """
        heard = dict(self.pinyin)
        return {
            "question_id": self.question_id,
            "quote": self.quote,
            "matched": list(self.matched),
            "matches": [
                {"phrase": phrase, "match": "pinyin", "heard": heard[phrase]}
                if phrase in heard
                else {"phrase": phrase, "match": "exact"}
                for phrase in self.matched
            ],
        }


@dataclass(frozen=True, slots=True)
class Structure:
    """How the answers are built: structure markers and situation-action-result parts."""

    markers: tuple[str, ...] = ()
    situation: bool = False
    action: bool = False
    result: bool = False

    @property
    def quality(self) -> float:
        """0-1: half for markers (full at :data:`MARKER_TARGET`), half for the STAR parts."""
        markers = min(1.0, len(self.markers) / MARKER_TARGET)
        star = (self.situation + self.action + self.result) / 3
        return 0.5 * markers + 0.5 * star

    def to_dict(self) -> dict[str, Any]:
        """The structure as JSON."""
        return {
            "markers": list(self.markers),
            "star": {"situation": self.situation, "action": self.action, "result": self.result},
            "score": round(100 * self.quality),
        }


@dataclass(frozen=True, slots=True)
class CompetencyScore:
    """The score of one competency, with everything it was computed from."""

    id: str
    name: str
    weight: float
    score: int
    """0-100."""
    level_score: int | None
    """Score of the rubric level reached; ``None`` when unanswered."""
    level_description: str | None
    base: int
    """Score of the rubric level reached (0 when unanswered)."""
    bonus: float
    """Keyword and structure bonus added to ``base``, before the completeness factor."""
    keywords_hit: tuple[str, ...]
    """Keywords and evidence phrases found, in script order."""
    evidence: tuple[EvidenceQuote, ...]
    structure: Structure
    completeness: float
    """0-1: how fully the competency's questions were answered."""
    questions: tuple[str, ...]
    """Ids of the questions that name the competency."""
    answered: int
    """How many of them were answered."""
    reason: str
    """One sentence explaining the score, for the report's ``reasons``."""
    keywords_pinyin: tuple[str, ...] = ()
    """Those of ``keywords_hit`` found only by pinyin (Chinese homophones), in script order."""

    def to_dict(self) -> dict[str, Any]:
        """The competency score as JSON."""
        return {
            "id": self.id,
            "name": self.name,
            "weight": self.weight,
            "score": self.score,
            "level": (
                None
                if self.level_score is None
                else {"score": self.level_score, "description": self.level_description}
            ),
            "base": self.base,
            "bonus": round(self.bonus, 1),
            "keywords_hit": list(self.keywords_hit),
            "keywords_pinyin": list(self.keywords_pinyin),
            "evidence": [quote.to_dict() for quote in self.evidence],
            "structure": self.structure.to_dict(),
            "completeness": round(self.completeness, 2),
            "questions": list(self.questions),
            "answered": self.answered,
        }


@dataclass(frozen=True, slots=True)
class InterviewScore:
    """The scored interview: per-competency scores, overall score and recommendation."""

    competencies: tuple[CompetencyScore, ...]
    structure_score: int
    """0-100: structure of all scored answers together (see :class:`Structure`)."""
    completeness: float
    """0-1: mean completeness of the scored questions."""
    overall: float | None
    """0-100, one decimal; ``None`` when the script scores no competency."""
    recommendation: Recommendation
    reasons: tuple[str, ...]
    knockouts: tuple[KnockoutResult, ...] = ()
    prosody_used: bool = False
    prosody_adjustment: float = 0.0
    """Points the fluency adjustment added to (or took from) ``overall``."""
    human_review_required: bool = field(default=True, init=False)
    """Always true: a recruiter reviews every interview before any decision."""

    def competency(self, competency_id: str) -> CompetencyScore:
        """Return the score of one competency (``KeyError`` if it was not scored)."""
        for competency in self.competencies:
            if competency.id == competency_id:
                return competency
        raise KeyError(competency_id)

    def to_dict(self) -> dict[str, Any]:
        """The score as JSON (the report's ``scores``)."""
        return {
            "scoring_version": SCORING_VERSION,
            "competencies": [competency.to_dict() for competency in self.competencies],
            "structure_score": self.structure_score,
            "completeness": round(self.completeness, 2),
            "overall": self.overall,
            "recommendation": self.recommendation,
            "reasons": list(self.reasons),
            "knockouts": [knockout.to_dict() for knockout in self.knockouts],
            "human_review_required": True,
            "prosody_used": self.prosody_used,
            "prosody_adjustment": self.prosody_adjustment,
        }


# --- structure markers ----------------------------------------------------------------------------

_MARKERS = {
    "en": (
        "first",
        "firstly",
        "second",
        "secondly",
        "then",
        "next",
        "after that",
        "finally",
        "because",
        "so that",
        "therefore",
        "as a result",
        "for example",
        "for instance",
        "in the end",
    ),
    "zh": (
        "首先",
        "第一",
        "其次",
        "第二",
        "然后",
        "接着",
        "后来",
        "最后",
        "因为",
        "所以",
        "因此",
        "结果",
        "比如",
        "例如",
    ),
}
_SITUATION = {
    "en": (
        "when",
        "once",
        "one time",
        "one day",
        "there was",
        "last year",
        "last month",
        "last week",
        "ago",
        "at the time",
        "my last job",
        "my previous job",
        "in my previous",
        "situation",
    ),
    "zh": (
        "有一次",
        "有次",
        "那次",
        "上次",
        "有一天",
        "当时",
        "那时",
        "那时候",
        "之前",
        "以前",
        "去年",
        "上个月",
        "曾经",
        "有位",
        "有一位",
        "有个",
    ),
}
_ACTION = {
    "en": (
        "i decided",
        "i made sure",
        "i took",
        "i made",
        "i gave",
        "i went",
        "i spoke",
        "i told",
        "i got",
        "i found",
        "i kept",
        "i brought",
        "i wrote",
        "i ran",
        "i set up",
        "i put",
        "i did",
        "i sent",
        "i led",
        "i met",
        "i came",
        "i taught",
        "we decided",
        "we took",
        "we made",
        "we did",
    ),
    "zh": (
        "我就",
        "我先",
        "我马上",
        "我立刻",
        "我立即",
        "我赶紧",
        "我主动",
        "我决定",
        "我负责",
        "我帮",
        "我把",
        "我去",
        "我给",
        "我跟",
        "我和",
        "我便",
        "我及时",
        "我亲自",
        "我们就",
        "我们先",
        "我们一起",
    ),
}
_RESULT = {
    "en": (
        "as a result",
        "in the end",
        "the result",
        "outcome",
        "finally",
        "eventually",
        "ended up",
        "turned out",
        "which meant",
        "afterwards",
        "thanked",
        "resolved",
        "solved",
        "improved",
        "reduced",
        "increased",
        "saved",
        "percent",
    ),
    "zh": (
        "结果",
        "最后",
        "最终",
        "后来",
        "终于",
        "因此",
        "所以",
        "解决了",
        "满意",
        "表扬",
        "感谢",
        "谢谢",
        "提高",
        "减少",
        "节省",
        "达到",
        "完成",
        "成功",
        "效果",
    ),
}
_FIRST_PERSON = frozenset({"i", "we"})


@dataclass(frozen=True, slots=True)
class _StructureMatchers:
    markers: PhraseMatcher
    situation: PhraseMatcher
    action: PhraseMatcher
    result: PhraseMatcher


@lru_cache(maxsize=4)
def _structure_matchers(language: str) -> _StructureMatchers:
    lang = "zh" if language == "zh" else "en"

    def matcher(phrases: tuple[str, ...]) -> PhraseMatcher:
        # Sequences of ordinary words: not registered as dictionary words (that would change how
        # 我先 or 有个 segment everywhere else).
        return PhraseMatcher(
            language, {phrase: [] for phrase in phrases}, register=False, pinyin=False
        )

    return _StructureMatchers(
        matcher(_MARKERS[lang]),
        matcher(_SITUATION[lang]),
        matcher(_ACTION[lang]),
        matcher(_RESULT[lang]),
    )


def _english_action(words: Sequence[str]) -> bool:
    """'I'/'we' followed (maybe after one adverb) by a past-tense -ed verb: "I quickly called"."""
    for index, word in enumerate(words):
        if word in _FIRST_PERSON:
            for following in words[index + 1 : index + 3]:
                if following.endswith("ed") and len(following) > 4:
                    return True
    return False


def _structure(language: str, sentences_words: Sequence[Sequence[str]]) -> Structure:
    matchers = _structure_matchers(language)
    markers: set[str] = set()
    situation = action = result = False
    for words in sentences_words:
        markers.update(matchers.markers.find_words(words))
        situation = situation or bool(matchers.situation.find_words(words))
        action = (
            action
            or bool(matchers.action.find_words(words))
            or (language != "zh" and _english_action(words))
        )
        result = result or bool(matchers.result.find_words(words))
    ordered = tuple(marker for marker in matchers.markers.phrases if marker in markers)
    return Structure(ordered, situation, action, result)


def _merge_structures(order: Sequence[str], structures: Sequence[Structure]) -> Structure:
    """The structure of all answers together: every marker found, every STAR part found."""
    markers = {marker for structure in structures for marker in structure.markers}
    return Structure(
        tuple(marker for marker in order if marker in markers),
        any(structure.situation for structure in structures),
        any(structure.action for structure in structures),
        any(structure.result for structure in structures),
    )


# --- per-script index (cached) -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _CompetencyIndex:
    competency: Competency
    questions: tuple[Question, ...]
    matcher: PhraseMatcher
    """Keywords and every rubric level's evidence, each with its synonyms."""
    keywords: tuple[str, ...]
    """Phrases keyword coverage is measured on (keywords, or evidence when there are none)."""


@dataclass(frozen=True, slots=True)
class _ScriptIndex:
    competencies: dict[str, _CompetencyIndex]


_index_lock = threading.Lock()
_indexes: dict[int, tuple[weakref.ref[JobScript], _ScriptIndex]] = {}


def _build_index(script: JobScript) -> _ScriptIndex:
    competencies: dict[str, _CompetencyIndex] = {}
    for competency in script.competencies:
        synonyms = {key.strip().lower(): values for key, values in competency.synonyms.items()}
        phrases: dict[str, list[str]] = {}
        for phrase in (
            *competency.keywords,
            *(item for level in competency.rubric for item in level.evidence),
        ):
            phrases.setdefault(phrase, list(synonyms.get(phrase.lower(), ())))
        keywords = tuple(dict.fromkeys(competency.keywords)) or tuple(
            dict.fromkeys(item for level in competency.rubric for item in level.evidence)
        )
        questions = tuple(q for q in script.questions if q.competency == competency.id)
        competencies[competency.id] = _CompetencyIndex(
            competency, questions, PhraseMatcher(script.language, phrases), keywords
        )
    return _ScriptIndex(competencies)


def _index(script: JobScript) -> _ScriptIndex:
    """The script's matchers, built once per script object (scripts are frozen)."""
    key = id(script)
    entry = _indexes.get(key)
    if entry is not None and entry[0]() is script:
        return entry[1]
    index = _build_index(script)
    with _index_lock:

        def forget(_: object, key: int = key) -> None:
            with _index_lock:
                current = _indexes.get(key)
                if current is not None and current[0]() is None:
                    del _indexes[key]

        _indexes[key] = (weakref.ref(script, forget), index)
    return index


# --- follow-ups ----------------------------------------------------------------------------------


def needs_follow_up(script: JobScript, question: Question, text: str) -> bool:
    """Whether the bot should ask the question's follow-up after this answer.

    True when the question has a ``follow_up`` and the answer has fewer than its ``min_words``
    words (Chinese: segmented words), or, with ``when_missing_evidence``, when the question scores
    a competency and the answer contains none of that competency's keywords, evidence phrases or
    their synonyms. Fast enough for the event loop (the matchers are built once per script).
    """
    follow_up = question.follow_up
    if follow_up is None:
        return False
    if word_count(text, script.language) < follow_up.min_words:
        return True
    if follow_up.when_missing_evidence and question.competency is not None:
        competency = _index(script).competencies.get(question.competency)
        if competency is not None and competency.matcher.phrases:
            return not competency.matcher.find(text)
    return False


# --- scoring -------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Sentence:
    question_id: str
    text: str
    words: list[str]
    matched: list[str]
    pinyin: dict[str, str]
    """Matched phrases found only by pinyin, with the characters heard."""


def _question_completeness(question: Question, answer: AnswerText | None, words: int) -> float:
    """0-1 completeness of one question's answer of ``words`` words (answer plus follow-up)."""
    if answer is None or words == 0:
        return 0.0
    if answer.via == "dtmf":
        return 1.0
    full = DEFAULT_FULL_ANSWER_WORDS
    if question.follow_up is not None and question.follow_up.min_words > 0:
        full = question.follow_up.min_words
    return min(1.0, words / full)


def _score_competency(
    index: _CompetencyIndex,
    answers: Mapping[str, AnswerText],
    language: str,
) -> tuple[CompetencyScore, list[float]]:
    """Score one competency; also return the completeness of each of its questions."""
    competency = index.competency
    question_ids = tuple(question.id for question in index.questions)
    completeness_by_question: list[float] = []
    sentences: list[_Sentence] = []
    unanswered: list[str] = []
    for question in index.questions:
        answer = answers.get(question.id)
        own: list[_Sentence] = []
        if answer is not None:
            for text in (answer.text, answer.follow_up_text):
                for sentence in split_sentences(text, language):
                    words_of = segment(sentence, language)
                    if words_of:
                        exact = index.matcher.find_words(words_of)
                        pinyin = index.matcher.find_pinyin(sentence, skip=exact)
                        matched = [p for p in index.matcher.phrases if p in exact or p in pinyin]
                        own.append(_Sentence(question.id, sentence, words_of, matched, pinyin))
        words = sum(len(sentence.words) for sentence in own)
        completeness_by_question.append(_question_completeness(question, answer, words))
        if words:
            sentences.extend(own)
        else:
            unanswered.append(question.id)
    answered = len(question_ids) - len(unanswered)
    completeness = (
        sum(completeness_by_question) / len(completeness_by_question)
        if completeness_by_question
        else 0.0
    )
    if answered == 0:
        score = CompetencyScore(
            id=competency.id,
            name=competency.name,
            weight=competency.weight,
            score=0,
            level_score=None,
            level_description=None,
            base=0,
            bonus=0.0,
            keywords_hit=(),
            evidence=(),
            structure=Structure(),
            completeness=0.0,
            questions=question_ids,
            answered=0,
            reason=message(
                language,
                "competency_unanswered",
                name=competency.name,
                questions=quoted_list(language, question_ids),
            ),
        )
        return score, completeness_by_question

    hit = {phrase for sentence in sentences for phrase in sentence.matched}
    rubric = competency.rubric
    reached = 0
    for level_index in range(len(rubric) - 1, 0, -1):
        level = rubric[level_index]
        found = {item for item in level.evidence if item in hit}
        if len(found) >= level.min_matches:
            reached = level_index
            break
    level = rubric[reached]
    ceiling = rubric[reached + 1].score if reached + 1 < len(rubric) else 100
    gap = max(0, ceiling - level.score)

    keywords_found = [keyword for keyword in index.keywords if keyword in hit]
    target = min(KEYWORD_TARGET, len(index.keywords))
    coverage = min(1.0, len(keywords_found) / target) if target else 0.0
    structure = _structure(language, [sentence.words for sentence in sentences])
    keyword_bonus = gap * BONUS_SHARE_KEYWORDS * coverage
    structure_bonus = gap * BONUS_SHARE_STRUCTURE * structure.quality
    bonus = keyword_bonus + structure_bonus
    factor = COMPLETENESS_FLOOR + (1 - COMPLETENESS_FLOOR) * completeness
    value = int(_round_half_up((level.score + bonus) * factor))
    value = max(0, min(100, value))

    evidence_items = {item for lvl in rubric for item in lvl.evidence}
    quoted = [(position, s) for position, s in enumerate(sentences) if s.matched]
    quoted.sort(
        key=lambda item: (
            -sum(phrase in evidence_items for phrase in item[1].matched),
            -len(item[1].matched),
            item[0],
        )
    )
    kept = sorted(quoted[:MAX_QUOTES], key=lambda item: item[0])
    evidence = tuple(
        EvidenceQuote(s.question_id, s.text, tuple(s.matched), tuple(s.pinyin.items()))
        for _, s in kept
    )
    keywords_hit = tuple(phrase for phrase in index.matcher.phrases if phrase in hit)
    exact_hit = {p for s in sentences for p in s.matched if p not in s.pinyin}
    keywords_pinyin = tuple(phrase for phrase in keywords_hit if phrase not in exact_hit)

    level_evidence = [item for item in level.evidence if item in hit]
    why = message(
        language,
        "competency_score",
        name=competency.name,
        value=value,
        level=level.score,
        description=level.description,
    )
    if level_evidence:
        why += message(language, "competency_evidence", items=quoted_list(language, level_evidence))
    why += message(
        language,
        "competency_bonus",
        bonus=f"{bonus:.1f}",
        found=len(keywords_found),
        structure=round(100 * structure.quality),
    )
    if keywords_pinyin:
        why += message(language, "competency_pinyin", items=quoted_list(language, keywords_pinyin))
    if completeness < 1:
        why += message(language, "competency_incomplete", percent=round(100 * completeness))
        if unanswered:
            why += message(language, "competency_missing", items=quoted_list(language, unanswered))
    why += message(language, "sentence_end")
    score = CompetencyScore(
        id=competency.id,
        name=competency.name,
        weight=competency.weight,
        score=value,
        level_score=level.score,
        level_description=level.description,
        base=level.score,
        bonus=bonus,
        keywords_hit=keywords_hit,
        evidence=evidence,
        structure=structure,
        completeness=completeness,
        questions=question_ids,
        answered=answered,
        reason=why,
        keywords_pinyin=keywords_pinyin,
    )
    return score, completeness_by_question


def _round_half_up(value: float) -> float:
    return math.floor(value + 0.5)


def _fluency_adjustment(language: str, prosody: Mapping[str, Any]) -> tuple[float, str, bool]:
    """The opt-in fluency adjustment: (points, at most +/-5; the reason; whether data was used)."""

    def number(key: str) -> float | None:
        value = prosody.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return float(value) if math.isfinite(value) else None

    parts: list[str] = []
    total = 0.0
    pause_ratio = number("pause_ratio")
    if pause_ratio is not None:
        span = _PAUSE_POOR - _PAUSE_GOOD
        points = 2.5 - 5.0 * min(1.0, max(0.0, (pause_ratio - _PAUSE_GOOD) / span))
        total += points
        parts.append(
            message(language, "fluency_pause", ratio=f"{pause_ratio:.2f}", points=f"{points:+.1f}")
        )
    rate = number("speech_rate")
    if rate is not None:
        unit = prosody.get("rate_unit") or ("cpm" if language == "zh" else "wpm")
        low, high, far_low, far_high = _RATE_BANDS.get(unit, _RATE_BANDS["wpm"])
        if low <= rate <= high:
            points = 2.5
        elif rate < low:
            points = 2.5 - 5.0 * min(1.0, (low - rate) / (low - far_low))
        else:
            points = 2.5 - 5.0 * min(1.0, (rate - high) / (far_high - high))
        total += points
        unit_text = message(language, f"unit_{unit}") if unit in ("wpm", "cpm") else str(unit)
        parts.append(
            message(
                language,
                "fluency_rate",
                rate=f"{rate:.0f}",
                unit=unit_text,
                points=f"{points:+.1f}",
            )
        )
    total = round(max(-MAX_PROSODY_ADJUSTMENT, min(MAX_PROSODY_ADJUSTMENT, total)), 1)
    if not parts:
        return 0.0, message(language, "fluency_no_data"), False
    separator = "\uff1b" if catalogue_language(language) == "zh" else ", "
    why = message(language, "fluency", total=f"{total:+.1f}", parts=separator.join(parts))
    return total, why, True


def score_interview(
    script: JobScript,
    answers: Sequence[AnswerText],
    knockouts: Sequence[KnockoutResult] = (),
    prosody: Mapping[str, Any] | None = None,
) -> InterviewScore:
    """Score an interview's answers against the script's competencies (see the module doc).

    ``answers`` may list a question more than once (the texts are joined in order) and may name
    questions the script lacks (ignored). ``prosody`` is the call's prosody figures
    (``speech_rate``, ``rate_unit``, ``pause_ratio``, as :mod:`voicebot.audio.prosody` gives
    them); it is only read when the script sets ``prosody_in_recommendation``.
    """
    language = script.language
    index = _index(script)
    by_question: dict[str, AnswerText] = {}
    for answer in answers:
        previous = by_question.get(answer.question_id)
        if previous is None:
            by_question[answer.question_id] = answer
        else:
            by_question[answer.question_id] = AnswerText(
                answer.question_id,
                " ".join(t for t in (previous.text, answer.text) if t),
                " ".join(t for t in (previous.follow_up_text, answer.follow_up_text) if t),
                previous.via if answer.via == previous.via else "voice",
            )

    reasons: list[str] = []
    scores: list[CompetencyScore] = []
    all_completeness: list[float] = []
    for competency_index in index.competencies.values():
        if not competency_index.questions:
            reasons.append(
                message(language, "competency_unscored", name=competency_index.competency.name)
            )
            continue
        score, completeness = _score_competency(competency_index, by_question, language)
        scores.append(score)
        all_completeness.extend(completeness)
        reasons.append(score.reason)

    structure = _merge_structures(
        _structure_matchers(language).markers.phrases, [score.structure for score in scores]
    )
    overall: float | None = None
    if scores:
        total_weight = sum(score.weight for score in scores)
        overall = round(sum(score.score * score.weight for score in scores) / total_weight, 1)

    prosody_used = False
    adjustment = 0.0
    if script.prosody_in_recommendation and overall is not None:
        adjustment, why, prosody_used = _fluency_adjustment(language, prosody or {})
        overall = round(max(0.0, min(100.0, overall + adjustment)), 1)
        reasons.append(why)

    thresholds = script.thresholds
    recommendation: Recommendation
    if overall is None:
        recommendation = "hold"
        reasons.append(message(language, "no_competency"))
    elif overall >= thresholds.advance:
        recommendation = "advance"
        reasons.append(
            message(language, "overall_advance", overall=overall, advance=thresholds.advance)
        )
    elif overall >= thresholds.hold:
        recommendation = "hold"
        reasons.append(
            message(
                language,
                "overall_hold",
                overall=overall,
                advance=thresholds.advance,
                hold=thresholds.hold,
            )
        )
    else:
        recommendation = "reject"
        reasons.append(message(language, "overall_reject", overall=overall, hold=thresholds.hold))

    for knockout in knockouts:
        if knockout.passed is False:
            recommendation = "reject"
            reasons.append(
                message(
                    language,
                    "knockout_failed",
                    question=knockout.question_id,
                    expected=code_label(language, knockout.expected),
                    answer=code_label(language, knockout.answer),
                )
            )
    for knockout in knockouts:
        if knockout.passed is None:
            if recommendation == "advance":
                recommendation = "hold"
            reasons.append(message(language, "knockout_unclear", question=knockout.question_id))
    reasons.append(message(language, "human_review"))

    return InterviewScore(
        competencies=tuple(scores),
        structure_score=round(100 * structure.quality),
        completeness=(sum(all_completeness) / len(all_completeness) if all_completeness else 0.0),
        overall=overall,
        recommendation=recommendation,
        reasons=tuple(reasons),
        knockouts=tuple(knockouts),
        prosody_used=prosody_used,
        prosody_adjustment=adjustment,
    )


# --- candidate feedback --------------------------------------------------------------------------

_FEEDBACK = {
    "en": {
        "thanks": (
            "Thank you for taking the time to talk with us about the {title} role. "
            "A recruiter will review your interview and contact you about the next steps."
        ),
        "tips": "A few suggestions that may help in future interviews:",
        "generic_tip": (
            "Try to answer with a concrete example from your own experience: the situation, "
            "what you did, and how it turned out."
        ),
        "closing": "We wish you all the best.",
    },
    "zh": {
        "thanks": (
            "感谢您抽出时间参加{title}岗位的电话面试。招聘专员会查看您的面试，"
            "并与您联系告知下一步安排。"
        ),
        "tips": "给您几点建议，供今后面试参考：",
        "generic_tip": "回答时可以举一个您亲身经历的具体例子：当时的情况、您是怎么做的、结果如何。",
        "closing": "祝您一切顺利！",
    },
}


def candidate_feedback(script: JobScript, score: InterviewScore) -> str:
    """The thank-you text for the candidate, in the script's language.

    Neutral and kind: it never mentions a score or the recommendation. It adds up to two
    suggestions, the ``improvement_tip`` of the lowest-scoring competencies below
    ``thresholds.advance`` (a general tip for a competency without one).
    """
    texts = _FEEDBACK["zh" if script.language == "zh" else "en"]
    parts = [texts["thanks"].format(title=script.title)]
    low = sorted(
        (
            (competency.score, position, competency.id)
            for position, competency in enumerate(score.competencies)
            if competency.score < script.thresholds.advance
        ),
    )[:2]
    tips: list[str] = []
    for _, _, competency_id in low:
        try:
            tip = script.competency(competency_id).improvement_tip.strip()
        except KeyError:
            tip = ""
        tip = _sentence(tip or texts["generic_tip"], script.language)
        if tip not in tips:
            tips.append(tip)
    if tips:
        separator = "" if script.language == "zh" else " "
        parts.append(texts["tips"] + separator + separator.join(tips))
    parts.append(texts["closing"])
    return ("" if script.language == "zh" else " ").join(parts)


def _sentence(text: str, language: str) -> str:
    """``text`` ending with a full stop (。 in Chinese) unless it already ends a sentence."""
    if text.endswith((".", "!", "?", "。", "！", "？")):
        return text
    return text + ("。" if language == "zh" else ".")
