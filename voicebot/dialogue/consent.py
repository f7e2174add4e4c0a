"""Consent answers: whether a transcript (or a key press) is a yes, a no, or unclear.

The candidate answers the consent question by voice ("yes", "sure, go ahead", "不同意") or with
the keypad (1 = yes, 2 = no). Matching is by keyword on the final transcript, tuned for what speech
recognition returns on a phone line. A refusal wins over an agreement in the same answer ("no, I
don't agree"; "okay, no"), idioms that only look negative count as what they mean ("no problem",
"I don't mind", "不错", "不介意"), and hesitations ("I'm not sure", "不知道") are unclear, so the
bot asks again rather than guess. Compliance first: anything short of a clear yes is not a yes.
"""

from __future__ import annotations

import re
from typing import Literal

ConsentAnswer = Literal["yes", "no", "unclear"]

# --- English -----------------------------------------------------------------------------------

# Phrases whose words look negative (or uncertain) but mean something else; rewritten before the
# keyword search. Order matters: longer phrases first.
_EN_REWRITES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), replacement)
    for pattern, replacement in (
        (r"\b(?:i )?(?:don't|dont|do not) mind\b", " yes "),
        (r"\bnot a problem\b", " yes "),
        (r"\bno (?:problem|problems|worries|doubt)\b", " yes "),
        (r"\bwhy not\b", " yes "),
        (r"\b(?:i'm |i am )?not (?:sure|certain)\b", " hesitation "),
        (r"\b(?:i )?(?:don't|dont|do not) know\b", " hesitation "),
        (r"\b(?:i )?(?:don't|dont|do not) understand\b", " hesitation "),
    )
)

_EN_NO = re.compile(
    r"\b(?:no|nope|nah|don't|dont|do not|not now|not really|not today|never|refuse|i refuse"
    r"|stop|decline|disagree|won't|will not|rather not|not ok|not okay|not fine"
    r"|not comfortable|not interested|no thanks|no thank you)\b"
)
_EN_YES = re.compile(
    r"\b(?:yes|yeah|yea|yep|yup|sure|ok|okay|alright|all right|of course|agree|i agree"
    r"|consent|i consent|go ahead|go on|that's fine|that is fine|fine|absolutely|certainly"
    r"|definitely|sounds good|let's go|let's do it|please do|proceed|continue)\b"
)


def _normalise_english(text: str) -> str:
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    text = re.sub(r"\bo\.k\b\.?", "ok", text)
    text = re.sub(r"[^a-z0-9'\s]+", " ", text)
    return f" {' '.join(text.split())} "


def _classify_english(text: str) -> ConsentAnswer:
    normalised = _normalise_english(text)
    for pattern, replacement in _EN_REWRITES:
        normalised = pattern.sub(replacement, normalised)
    if _EN_NO.search(normalised):
        return "no"
    if _EN_YES.search(normalised):
        return "yes"
    return "unclear"


# --- Chinese -----------------------------------------------------------------------------------

# Words with 不/没 that are not a refusal: rewritten to a marker before the keyword search.
_ZH_AGREEING_IDIOMS = ("不介意", "不成问题", "没问题", "沒問題", "没关系", "沒關係", "当然", "當然")
_ZH_NEUTRAL_WORDS = (
    "不错",
    "不錯",
    "不客气",
    "不客氣",
    "不用谢",
    "不用謝",
    "不好意思",
    "对不起",
    "對不起",
    "不过",
    "不過",
    "你好",
    "您好",
)
_ZH_HESITATIONS = (
    "不知道",
    "不清楚",
    "不确定",
    "不確定",
    "不太确定",
    "不明白",
    "不懂",
    "没听清",
    "沒聽清",
    "没听懂",
    "沒聽懂",
)
_ZH_NO = re.compile(
    r"不要|不同意|不可以|不行|不愿意|不願意|不方便|不想|不用了|不需要|拒绝|拒絕|算了|没兴趣"
    r"|沒興趣|不是|不好|不"
)
_ZH_YES = re.compile(
    r"可以|好的|好啊|好|行|同意|是的|是啊|对的|對的|对|對|愿意|願意|继续|繼續|开始吧|開始吧|AGREE"
)


def _classify_chinese(text: str) -> ConsentAnswer:
    normalised = re.sub(r"[\s\W_]+", "", text).upper()
    for idiom in _ZH_AGREEING_IDIOMS:
        normalised = normalised.replace(idiom, "AGREE")
    for word in (*_ZH_NEUTRAL_WORDS, *_ZH_HESITATIONS):
        normalised = normalised.replace(word, "|")
    if _ZH_NO.search(normalised):
        return "no"
    if _ZH_YES.search(normalised):
        return "yes"
    # Speech recognition often writes short English answers ("OK", "yes") in Latin letters.
    return _classify_english(text)


def classify_consent(text: str, language: str) -> ConsentAnswer:
    """Classify a transcript of the answer to the consent question.

    ``language`` is the script's language (``"en"`` or ``"zh"``; a region suffix such as
    ``"zh-CN"`` is accepted). A refusal anywhere in the answer beats an agreement; an answer that is
    neither (including an empty one) is ``"unclear"``.
    """
    base = language.split("-")[0].split("_")[0].lower()
    if base == "en":
        return _classify_english(text)
    if base == "zh":
        return _classify_chinese(text)
    raise ValueError(f"no consent keywords for language {language!r}; use 'en' or 'zh'")


def classify_dtmf_consent(digit: str) -> ConsentAnswer:
    """Classify a key press during the consent question: ``"1"`` is yes, ``"2"`` is no."""
    digit = digit.strip()
    if digit == "1":
        return "yes"
    if digit == "2":
        return "no"
    return "unclear"
