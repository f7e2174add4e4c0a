"""End-of-turn policy: how long the silence at a pause must last before the bot takes its turn.

Pure: features in, a decision out; no clock, model or I/O, so it is table-tested on recorded
feature sequences and replayed by the turn-taking benchmark (``loadtest/turn_bench.py``) faster
than real time. The :class:`~voicebot.speech.turn.TurnDetector` finds the pauses; the call layer
gathers what is known at each one (:class:`PauseFeatures`: smart-turn's probability, the words so
far when a transcription of them is in, the question, the candidate's own pauses) and asks
:func:`decide` how long to wait; it asks again when more is known (the words come in after the
acoustic verdict), and the later answer replaces the earlier.

What the words say (:func:`read_words`) weighs most, because smart-turn judges intonation, and a
candidate who says a complete sentence and then thinks sounds finished to it:

- a trailing filler ("uh", "嗯"), conjunction ("and", "so", "然后"), an opened list ("first, ...")
  with no later item, a trailing comma or ellipsis: not done, wait the question's ceiling;
- "let me think" / "让我想想": thinking, say "take your time" and wait ``think_secs``;
- a short complete answer to a closed question ("yes", "two years", "三年"): done at once;
- an explicit closer after the answer ("that's it", "that's all", "all right, thanks", "就这些",
  "没了", "就这样"): the candidate says they are done, at once whatever smart-turn says (it
  often scores these low on phone audio). A closer alone ("Thank you.") is not one: it is
  Whisper's usual guess on a breath or a filler.

The ceiling (the silence that ends a turn whatever was said) depends on the question: an open
question allows longer thinking pauses than a closed one, a script may set it per question, and a
candidate who already paused longer than that and went on gets more (their pace). Smart-turn's
verdict, with the words when they are in, decides the faster ends below it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field

QuestionKind = Literal["open", "closed", "consent"]
WordsVerdict = Literal[
    "unknown", "empty", "thinking", "unfinished", "finished", "short_complete", "closer"
]


class TurnPolicyConfig(BaseModel):
    """Waits (seconds of silence) and thresholds of :func:`decide`; defaults from the benchmark."""

    end_secs: float = Field(
        0.2,
        gt=0,
        description="Wait after a short complete answer to a closed question, or a clearly done "
        "one (words and smart-turn agree) to a closed question or the consent.",
    )
    open_end_secs: float = Field(
        2.6,
        gt=0,
        description="Wait when an answer to an open question is clearly done (words and "
        "smart-turn agree): a candidate may still go on after a finished sentence.",
    )
    unconfirmed_end_secs: float = Field(
        1.0,
        gt=0,
        description="Wait when smart-turn says complete but the words are not in (yet).",
    )
    closed_finished_end_secs: float = Field(
        0.4,
        gt=0,
        description="Wait when the words of an answer to a closed question (or the consent) "
        "read finished and smart-turn does not say complete.",
    )
    hesitant_end_secs: float = Field(
        2.6, gt=0, description="Wait when smart-turn is unsure and the words read finished."
    )
    unfinished_max_silence_secs: float = Field(
        4.0,
        gt=0,
        description="Wait when the words end on a filler or conjunction ('uh', 'and', '然后'): "
        "the candidate is thinking mid-sentence (at least the question's ceiling).",
    )
    finished_end_secs: float = Field(
        2.6,
        gt=0,
        description="Wait when the words read finished but smart-turn says the candidate goes "
        "on (on phone audio it often does at real ends).",
    )
    pace_fast_margin_secs: float = Field(
        0.6,
        ge=0,
        description="A candidate who went on after a pause this call: no end sooner than that "
        "pause plus this much (0: the pace raises only the ceiling).",
    )
    complete_threshold: float = Field(0.8, ge=0, le=1, description="Smart-turn: complete.")
    hesitant_threshold: float = Field(0.2, ge=0, le=1, description="Smart-turn: unsure from.")
    open_max_silence_secs: float = Field(
        2.6, gt=0, description="Ceiling for an answer to an open question."
    )
    closed_max_silence_secs: float = Field(
        1.2, gt=0, description="Ceiling for an answer to a closed (yes/no, keypad) question."
    )
    min_open_answer_secs: float = Field(
        3.0,
        ge=0,
        description="An answer to an open question shorter than this ends before the ceiling "
        "only when its words read finished.",
    )
    short_open_end_secs: float = Field(
        2.6,
        gt=0,
        description="Wait when an answer to an open question shorter than min_open_answer_secs "
        "reads and sounds finished ('And so my fellow Americans.' is often a preamble).",
    )
    pace_margin_secs: float = Field(
        0.6, ge=0, description="A candidate who went on after a pause gets this much more."
    )
    pace_cap_secs: float = Field(4.0, gt=0, description="Most the candidate's pace raises it to.")
    think_secs: float = Field(
        8.0, gt=0, description="Wait after 'let me think' (with a short 'take your time')."
    )
    short_answer_threshold: float = Field(
        0.98,
        ge=0,
        le=1,
        description="Acoustic policy only: smart-turn probability that ends an answer shorter "
        "than min_open_answer_secs.",
    )
    acoustic_hesitant_end_secs: float = Field(
        0.5, gt=0, description="Acoustic policy only: wait when smart-turn is unsure."
    )


@dataclass(frozen=True)
class QuestionContext:
    """What the candidate is answering: its kind and the script's pause setting, if any."""

    kind: QuestionKind = "open"
    max_pause_secs: float | None = None


@dataclass(frozen=True)
class PauseFeatures:
    """What is known at a pause in the candidate's turn."""

    speech_secs: float
    """From the turn's first voiced window to the pause."""
    smart_turn: float | None = None
    """Smart-turn's probability that the turn is complete; ``None`` before its verdict."""
    words: str | None = None
    """The turn's words up to the pause; ``None`` while not transcribed."""
    words_are_tail: bool = False
    """``words`` are only the turn's last seconds (its start was not transcribed): they tell how
    the turn ends, not that it is a short answer or a request for time."""
    language: str = "en"
    question: QuestionContext = QuestionContext()
    resumed_pauses: tuple[float, ...] = ()
    """Silences (seconds) the candidate went on after, in this call so far."""


@dataclass(frozen=True)
class Decision:
    """End the turn once the pause's silence reaches ``wait_secs``; ``reason`` says why."""

    wait_secs: float
    reason: str
    take_your_time: bool = False
    """Say a short "take your time" now (the candidate asked for time to think)."""
    words: WordsVerdict = "unknown"


# -- the words -------------------------------------------------------------------------------

_EN_FILLERS = {"uh", "um", "er", "erm", "ah", "eh", "hmm", "mm", "uhm", "like", "well"}
_EN_TRAILING = {
    "and", "but", "or", "because", "cause", "the", "a", "an", "of", "with", "to", "for", "my",
    "our", "their", "which", "if", "whether", "than", "plus", "your",
}  # fmt: skip
"""Words an utterance does not end on, whatever punctuation Whisper put after them."""
_EN_WEAK_TRAILING = {
    "so", "then", "also", "when", "where", "while", "as", "from", "by", "into", "since", "until",
    "although", "in", "on", "at", "about", "that", "like",
}  # fmt: skip
"""Words that end an unfinished utterance unless Whisper heard a sentence end after them
("I think so." is done, "so..." and "so" are not)."""
_EN_TRAILING_PHRASES = ("you know", "i mean", "kind of", "sort of", "such as", "and then")
_EN_THINK = re.compile(
    r"\b(let me (think|see)|give me a (second|moment|minute|sec)|good question|"
    r"i need to think|hold on|one (second|moment))\b"
)
_EN_LIST_OPEN = re.compile(
    r"(^|[.,;:!?]\s*|\b(and|well|so|okay)\s+)(first(ly)?|first of all|number one|to start with)\b"
)
_EN_LIST_NEXT = re.compile(
    r"\b(second(ly)?|then|next|also|finally|lastly|third(ly)?|another|number two|after that)\b"
)
_EN_SHORT = re.compile(
    r"^(yes|yeah|yep|yup|no|nope|nah|sure|of course|correct|right|absolutely|definitely|"
    r"i do|i don't|i have|i haven't|i can|i can't|i am|i'm not|not really|okay|ok|"
    r"(about |around |over |almost |nearly )?(\d+|one|two|three|four|five|six|seven|eight|nine|"
    r"ten|eleven|twelve|fifteen|twenty|a few|several|half a)( and a half)?"
    r"( (years?|months?|weeks?|days?|hours?))?( (ago|now|a week|per week))?)"
    r"( (sir|ma'am|thanks|thank you))?$"
)
_EN_CLOSER = re.compile(
    r"(^| )((that'?s|that is) (about |pretty much |basically )?(it|all|everything)"
    r"( i (have|had|can think of|'ve got))?( really| for now| from me)?|"
    r"(i'?m|i am) done|that'?s my answer|nothing (else|more)|"
    r"(thanks|thank you)( (so|very) much| a lot)?)$"
)
"""Closers an answer ends on ('that's about it', 'all right, thanks'), matched on its last words
with punctuation dropped."""
_EN_THANKS_APART = re.compile(
    r"[.,!?;:]\s*((all right|alright|okay|ok|so|yeah|well)[,\s]*)*"
    r"(thanks|thank you)( (so|very) much| a lot)?[.!\s]*$"
)
"""'Thanks' closes an answer as a sentence of its own ('... on time. All right, thanks.'), not
as its last words ('the customer said thank you')."""
_EN_ACKNOWLEDGEMENTS = {"all", "right", "alright", "okay", "ok", "so", "yeah", "yes", "well"}
"""Words before a closer that are part of it ('all right, thanks', 'so yeah, that's it')."""
_ZH_CLOSER = (
    "就这些", "就这些吧", "就这些了", "就这样", "就这样吧", "就这样了", "就是这样", "没了",
    "没有了", "没别的了", "我说完了", "说完了", "就这么多", "差不多就这些", "差不多就这样", "谢谢",
    "谢谢你", "谢谢您",
)  # fmt: skip
_ZH_CLOSERS_LONGEST_FIRST = sorted(_ZH_CLOSER, key=len, reverse=True)
_ZH_FILLERS = ("嗯", "呃", "啊", "额", "唔", "那个", "这个", "就是", "就是说", "然后呢", "那么")
_ZH_TRAILING = (
    "然后", "而且", "所以", "但是", "可是", "因为", "还有", "和", "跟", "或者", "如果", "并且",
    "以及", "比如", "比如说", "另外", "包括", "的话", "之后", "接着", "再", "也",
)  # fmt: skip
_ZH_THINK = (
    "让我想想",
    "让我想一想",
    "我想想",
    "我想一下",
    "想一想",
    "我考虑一下",
    "稍等",
    "等一下",
)
_ZH_LIST_OPEN = ("第一", "首先")
_ZH_LIST_NEXT = ("第二", "其次", "然后", "最后", "另外", "还有", "再者")
_ZH_SHORT = re.compile(
    r"^(是的?|对的?|没错|可以|好的?|行|有的?|没有|不是|不行|不可以|不会|会的?|能的?|不能|当然|"
    r"[一二两三四五六七八九十半几\d]+(个)?(多|半)?(年|个月|月|周|星期|天|小时)(左右|多)?(了)?)"
    r"(吧|啊|呀|的|了)?$"
)
_PUNCT_END = re.compile(r"[.!?。！？]+[\"'”’)]*$")
_PUNCT_OPEN = re.compile(r"(,|，|、|;|；|:|：|-|—|…|\.\.\.)\s*$")
_EN_WORD = re.compile(r"[a-z0-9']+")
_ZH_STRIP = re.compile(r"[\s,，。.!！?？、;；:：…\-—\"'“”‘’]+")


def read_words(words: str | None, language: str = "en") -> WordsVerdict:
    """What the words so far say about the turn: see the module docstring."""
    if words is None:
        return "unknown"
    text = words.strip()
    if language.startswith("zh"):
        return _read_zh(text)
    return _read_en(text)


def ends_on_closer(words: str, language: str = "en", *, punctuated: bool = True) -> bool:
    """Whether the words end on a closer after some answer ("... That's it.", "……就这些").

    ``punctuated``: the words are Whisper's, with its punctuation ("thanks" closes only as a
    sentence of its own); False for a corpus transcript without any.
    """
    if language.startswith("zh"):
        core = _ZH_STRIP.sub("", words)
        closer = next((c for c in _ZH_CLOSERS_LONGEST_FIRST if core.endswith(c)), "")
        return bool(closer) and len(core) > len(closer)
    return _en_closer(words.strip().lower(), punctuated=punctuated)


def _en_core(lower: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^a-z0-9' ]+", " ", lower)).strip()


def _en_closer(lower: str, *, punctuated: bool) -> bool:
    core = _en_core(lower)
    closer = _EN_CLOSER.search(core)
    if closer is None or not (
        set(core[: closer.start()].split()) - _EN_FILLERS - _EN_ACKNOWLEDGEMENTS
    ):
        return False  # "Thank you." alone is no answer
    return not (punctuated and closer.group(2).startswith("thank")) or bool(
        _EN_THANKS_APART.search(lower)
    )


def _read_en(text: str) -> WordsVerdict:
    lower = text.lower()
    tokens = _EN_WORD.findall(lower)
    if not tokens:
        return "empty"
    if all(token in _EN_FILLERS for token in tokens):
        return "unfinished"  # only "uh", "um": the answer has not started
    if _EN_THINK.search(lower) and len(tokens) <= 12:
        return "thinking"
    if tokens[-1] in _EN_FILLERS or tokens[-1] in _EN_TRAILING:
        return "unfinished"
    if tokens[-1] in _EN_WEAK_TRAILING and not _PUNCT_END.search(text):
        return "unfinished"
    tail = " ".join(tokens[-3:])
    if any(tail.endswith(phrase) for phrase in _EN_TRAILING_PHRASES):
        return "unfinished"
    if _PUNCT_OPEN.search(text):
        return "unfinished"
    if _en_closer(lower, punctuated=True):
        return "closer"
    core = _en_core(lower)
    opened = list(_EN_LIST_OPEN.finditer(lower))
    if opened and not _EN_LIST_NEXT.search(lower, opened[0].end()):
        return "unfinished"
    if _EN_SHORT.match(core):
        return "short_complete"
    return "finished"


def _read_zh(text: str) -> WordsVerdict:
    core = _ZH_STRIP.sub("", text)
    if not core:
        return "empty"
    stripped = core
    for filler in sorted(_ZH_FILLERS, key=len, reverse=True):
        stripped = stripped.replace(filler, "")
    if not stripped:
        return "unfinished"
    if any(phrase in core for phrase in _ZH_THINK) and len(core) <= 16:
        return "thinking"
    if core.endswith(_ZH_FILLERS) or core.endswith(_ZH_TRAILING):
        return "unfinished"
    if _PUNCT_OPEN.search(text):
        return "unfinished"
    if ends_on_closer(core, "zh"):
        return "closer"
    first = min((core.find(m) for m in _ZH_LIST_OPEN if m in core), default=-1)
    if first >= 0 and not any(m in core[first + 2 :] for m in _ZH_LIST_NEXT):
        return "unfinished"
    if _ZH_SHORT.match(core):
        return "short_complete"
    if not _PUNCT_END.search(text):
        # Whisper writes Chinese sentence ends as 。！？ when it hears them; without one the
        # words tell nothing about the end: the acoustic verdict decides, with the longer wait.
        return "unknown"
    return "finished"


# -- the decision ----------------------------------------------------------------------------


def question_ceiling(question: QuestionContext, config: TurnPolicyConfig) -> float:
    """The question's own ceiling: the script's ``max_pause_secs``, else its kind's."""
    if question.max_pause_secs is not None:
        return question.max_pause_secs
    if question.kind == "open":
        return config.open_max_silence_secs
    return config.closed_max_silence_secs


def ceiling(features: PauseFeatures, config: TurnPolicyConfig) -> float:
    """Silence that ends the turn whatever else is known: the question's, raised by pace."""
    base = question_ceiling(features.question, config)
    longest = max(features.resumed_pauses, default=0.0)
    if longest + config.pace_margin_secs > base:
        base = max(base, min(longest + config.pace_margin_secs, config.pace_cap_secs))
    return base


def decide(features: PauseFeatures, config: TurnPolicyConfig | None = None) -> Decision:
    """How long the silence at this pause must last before the turn ends, and why."""
    config = config or TurnPolicyConfig()
    top = ceiling(features, config)
    words = read_words(features.words, features.language)
    if features.words_are_tail and words in ("short_complete", "thinking"):
        words = "finished"  # "... two years." ends a longer answer, it is not the answer
    probability = features.smart_turn
    question = features.question

    def wait(secs: float, reason: str, **extra: bool) -> Decision:
        return Decision(min(secs, top), reason, words=words, **extra)

    def paced(secs: float) -> float:
        # An open answer: no end after a finished sentence before the pause the script allows
        # this question, nor before the candidate's longest pause they went on after.
        if question.kind != "open":
            return secs
        if question.max_pause_secs is not None:
            secs = max(secs, question.max_pause_secs)
        longest = max(features.resumed_pauses, default=0.0)
        if config.pace_fast_margin_secs > 0 and longest:
            secs = max(secs, longest + config.pace_fast_margin_secs)
        return secs

    if words == "thinking":
        return Decision(max(config.think_secs, top), "thinking", take_your_time=True, words=words)
    if words == "unfinished" and question.kind != "open" and _short_but_for_punctuation(features):
        # "No..." / "Yes,": Whisper's trailing ellipsis or comma on a lone word over the phone,
        # no word that goes on. A short answer to a closed question that may have more to it:
        # the question's own ceiling (not raised by pauses the candidate made in long answers),
        # not the long wait for a candidate mid-sentence.
        return wait(question_ceiling(question, config), "short_answer_trailing")
    if words == "unfinished":
        # Mid-sentence ("and", "uh"): a thinking pause that may run past the question's ceiling.
        return Decision(
            max(top, config.unfinished_max_silence_secs), "words_unfinished", words=words
        )
    if words == "empty":
        # Voice Whisper heard no words in (a breath, "mm"): not an answer yet.
        return wait(top, "no_words")
    if words == "closer":
        # "That's it", "就这些": the candidate says they are done.
        return wait(config.end_secs, "closer")
    if words == "short_complete" and question.kind != "open":
        return wait(config.end_secs, "short_answer")
    if probability is None:
        return wait(top, "silence")
    complete = probability >= config.complete_threshold
    hesitant = not complete and probability >= config.hesitant_threshold
    if words == "unknown" and features.words and question.kind != "open" and (complete or hesitant):
        # Chinese words with no sentence end (Whisper writes none on phone audio) to a closed
        # question that smart-turn does not say goes on: a short answer, done.
        return wait(config.closed_finished_end_secs, "closed_finished")
    short_open = question.kind == "open" and features.speech_secs < config.min_open_answer_secs
    done = config.open_end_secs if question.kind == "open" else config.end_secs
    if words in ("finished", "short_complete"):
        if question.kind != "open" and not complete:
            # A finished sentence to a closed question ("Neither did I."), whatever smart-turn
            # makes of it on phone audio: done, with a moment for a second sentence.
            return wait(config.closed_finished_end_secs, "closed_finished")
        if complete and short_open:
            # "And so my fellow Americans." sounds and reads finished: a short start of an
            # answer to an open question gets the unconfirmed wait, not the fast one.
            return wait(paced(config.short_open_end_secs), "short_open_answer")
        if complete:
            return wait(paced(done), "smart_turn_words")
        if hesitant and not short_open:
            return wait(paced(config.hesitant_end_secs), "hesitant_words")
        return wait(paced(config.finished_end_secs), "finished_words")
    # The words are not in yet (or tell nothing: Chinese with no sentence end): the acoustic
    # verdict alone, with more room for a correction, and never sooner than with the words.
    unconfirmed = max(config.unconfirmed_end_secs, done)
    if complete and not short_open:
        return wait(paced(unconfirmed), "smart_turn")
    if complete:
        return wait(paced(max(config.short_open_end_secs, unconfirmed)), "short_open")
    return wait(top, "silence")


def _short_but_for_punctuation(features: PauseFeatures) -> bool:
    """The words read as a short complete answer once a trailing comma or ellipsis is dropped."""
    if features.words is None or features.words_are_tail:
        return False
    bare = _PUNCT_OPEN.sub("", features.words.strip()).strip()
    return bool(bare) and read_words(bare, features.language) == "short_complete"


def decide_acoustic(features: PauseFeatures, config: TurnPolicyConfig | None = None) -> Decision:
    """The policy before the words were read (``VOICEBOT_TURN_POLICY=acoustic``), for comparison.

    Smart-turn alone: complete ends after ``end_secs`` (an answer shorter than
    ``min_open_answer_secs`` only at ``short_answer_threshold``), unsure after
    ``acoustic_hesitant_end_secs``, otherwise ``closed_max_silence_secs`` for every question.
    """
    config = config or TurnPolicyConfig()
    top = config.closed_max_silence_secs
    probability = features.smart_turn
    if probability is None:
        return Decision(top, "silence")
    short = (
        features.question.kind != "consent" and features.speech_secs < config.min_open_answer_secs
    )
    if probability >= config.complete_threshold and (
        not short or probability >= config.short_answer_threshold
    ):
        return Decision(min(config.end_secs, top), "smart_turn")
    if (
        config.hesitant_threshold <= probability < config.complete_threshold
        and not short
        and features.question.kind != "consent"
    ):
        return Decision(min(config.acoustic_hesitant_end_secs, top), "hesitant")
    return Decision(top, "silence")


POLICIES = {"words": decide, "acoustic": decide_acoustic}
"""The end-of-turn policies by their ``VOICEBOT_TURN_POLICY`` name."""
