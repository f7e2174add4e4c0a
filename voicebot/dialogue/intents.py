"""What a candidate's turn asks for, beside answering: hear the question again, or stop.

Matched by phrase on the final transcript, in English and Chinese (Traditional input is folded to
Simplified first), tuned for what speech recognition writes on a phone line:

* **repeat** ("can you repeat that?", "pardon?", "再说一遍", "没听清"): only a short turn counts,
  so an answer that happens to contain "repeat" ("I repeat the safety check each shift") stays an
  answer;
* **opt-out** ("stop calling me", "I don't want to continue", "不要再打了", "不想面试了"): the
  candidate wants the interview to end and not to be called again. Honoured at once and recorded,
  whatever the script is doing. Phrases that are ambiguous inside a longer answer ("not
  interested") only count in a short turn.

It also answers yes/no questions (knock-outs), with the consent classifier's rules (a refusal
wins; idioms like "no problem" count as yes) plus the capability words a knock-out answer uses
("I can", "I'm not able to", "能", "不能").
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Literal

from voicebot.dialogue.consent import classify_consent

YesNo = Literal["yes", "no", "unclear"]

SHORT_TURN_WORDS = 10
"""A turn of at most this many words (English) can be a request rather than an answer."""
SHORT_TURN_CHARS = 16
"""The same for Chinese, in characters."""

_EN_REPEAT = re.compile(
    r"\b(?:repeat|say (?:that|it|the question) again|pardon|come again|one more time"
    r"|(?:didn't|did not|couldn't|could not) (?:catch|hear|understand)|what was the question"
    r"|what did you say|what's the question|sorry what|once more)\b"
)
_EN_REPEAT_WHOLE = re.compile(r"^(?:sorry|what|huh|excuse me|eh)$")
_ZH_REPEAT = re.compile(
    r"再说一遍|再说一次|再讲一遍|再讲一次|重复一下|重复一遍|重复一次|没听清|没听懂|没听到|再说一下"
    r"|请再说|能再说|刚才说什么|什么问题|问题是什么|你说什么|您说什么"
)

_EN_OPT_OUT = re.compile(
    r"\b(?:stop calling|(?:don't|do not|never) call me|take me off|remove me|remove my number"
    r"|stop the interview|stop this interview|end the interview|end this call|end the call"
    r"|(?:want|like|wish) to stop|(?:don't|do not) want to (?:continue|go on|do this)"
    r"|no longer interested|not interested (?:anymore|any more|in this job|in the job"
    r"|in this position|in the position|in this role)|withdraw my application|unsubscribe"
    r"|leave me alone|hang up)\b"
)
_EN_OPT_OUT_SHORT = re.compile(
    r"\bnot interested\b|^(?:(?:no|ok|okay|please|just|sorry)\s+)*stop\b"
)
_ZH_OPT_OUT = re.compile(
    r"(?:不要|别|不用)再?(?:给我)?打(?:电话)?了?|不要再联系|别再联系|不想面试|不面试了|不想继续|不继续了"
    r"|结束通话|结束面试|取消面试|退出面试|放弃面试|放弃这个|挂了吧|我要挂了|不想再聊"
)
_ZH_OPT_OUT_SHORT = re.compile(r"不感兴趣|没兴趣|没有兴趣|算了|不用了")

_EN_CAN = re.compile(
    r"\b(?:i can|i could|i will|i'll|i have|i've got|i do|i am able|i'm able|able to|capable)\b"
)
_EN_CANNOT = re.compile(
    r"\b(?:can't|cant|cannot|can not|couldn't|unable|not able|don't have|do not have|haven't"
    r"|have not|not possible|impossible|no way)\b"
)
_ZH_CAN = re.compile(r"能|会|有|接受|没问题|适应")
_ZH_CANNOT = re.compile(r"不能|不会|没有|接受不了|不接受|适应不了|不适应|做不到|没办法|不太行")
_ZH_NOT_A_REFUSAL = ("不怕", "不在乎", "无所谓", "不成问题", "没什么问题", "没啥问题")


@lru_cache(maxsize=1)
def _t2s():  # noqa: ANN202 - opencc has no type hints
    from opencc import OpenCC

    return OpenCC("t2s")


def _base(language: str) -> str:
    return language.split("-")[0].split("_")[0].lower()


def _english(text: str) -> str:
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    text = re.sub(r"[^a-z0-9'\s]+", " ", text)
    return " ".join(text.split())


def _chinese(text: str) -> str:
    return re.sub(r"[\s\W_]+", "", _t2s().convert(text))


def _is_short(text: str, language: str) -> bool:
    if _base(language) == "zh":
        return len(_chinese(text)) <= SHORT_TURN_CHARS
    return len(_english(text).split()) <= SHORT_TURN_WORDS


def is_repeat_request(text: str, language: str) -> bool:
    """Whether a (short) turn asks to hear the question again."""
    if not text.strip() or not _is_short(text, language):
        return False
    if _base(language) == "zh":
        if _ZH_REPEAT.search(_chinese(text)):
            return True
    english = _english(text)
    return bool(_EN_REPEAT.search(english) or _EN_REPEAT_WHOLE.match(english))


def is_opt_out(text: str, language: str) -> bool:
    """Whether the candidate asks to stop the interview or not to be called again."""
    if not text.strip():
        return False
    short = _is_short(text, language)
    if _base(language) == "zh":
        chinese = _chinese(text)
        if _ZH_OPT_OUT.search(chinese) or (short and _ZH_OPT_OUT_SHORT.search(chinese)):
            return True
    english = _english(text)
    return bool(_EN_OPT_OUT.search(english) or (short and _EN_OPT_OUT_SHORT.search(english)))


def classify_yes_no(text: str, language: str) -> YesNo:
    """Classify the answer to a yes/no question (a knock-out): a refusal or inability wins."""
    if not text.strip():
        return "unclear"
    if _base(language) == "zh":
        chinese = _chinese(text)
        for idiom in _ZH_NOT_A_REFUSAL:
            chinese = chinese.replace(idiom, "可以")
        if _ZH_CANNOT.search(chinese):
            return "no"
        answer = classify_consent(chinese, "zh")
        if answer == "unclear" and _ZH_CAN.search(chinese):
            return "yes"
        return answer
    english = _english(text)
    if _EN_CANNOT.search(english):
        return "no"
    answer = classify_consent(text, "en")
    if answer == "unclear" and _EN_CAN.search(english):
        return "yes"
    return answer
