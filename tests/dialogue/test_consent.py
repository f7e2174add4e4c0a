"""Tests for the consent classifier: voice transcripts (English, Chinese) and key presses."""

import pytest

from voicebot.dialogue.consent import classify_consent, classify_dtmf_consent

ENGLISH = [
    ("Yes.", "yes"),
    ("Yeah, sure.", "yes"),
    ("yep", "yes"),
    ("Okay.", "yes"),
    ("OK", "yes"),
    ("O.K.", "yes"),
    ("Of course.", "yes"),
    ("I agree.", "yes"),
    ("I consent.", "yes"),
    ("Go ahead.", "yes"),
    ("That\u2019s fine.", "yes"),
    ("Sure, why not.", "yes"),
    ("No problem, go ahead.", "yes"),
    ("I don't mind.", "yes"),
    ("No.", "no"),
    ("Nope.", "no"),
    ("No, I don't agree.", "no"),
    ("Okay, no.", "no"),
    ("Yes... actually no.", "no"),
    ("I do not consent.", "no"),
    ("Not now.", "no"),
    ("I refuse.", "no"),
    ("Stop.", "no"),
    ("I'd rather not.", "no"),
    ("I'm not sure.", "unclear"),
    ("I don't know.", "unclear"),
    ("What did you say?", "unclear"),
    ("Thank you.", "unclear"),
    ("I know.", "unclear"),
    ("", "unclear"),
]

CHINESE = [
    ("可以", "yes"),
    ("好的。", "yes"),
    ("好", "yes"),
    ("行", "yes"),
    ("同意", "yes"),
    ("没问题", "yes"),
    ("是的，可以。", "yes"),
    ("不错，可以开始", "yes"),
    ("不好意思，可以的", "yes"),
    ("不介意", "yes"),
    ("沒問題", "yes"),
    ("OK", "yes"),
    ("不", "no"),
    ("不要", "no"),
    ("不同意", "no"),
    ("不可以", "no"),
    ("不行", "no"),
    ("拒绝", "no"),
    ("好的，不对，我不同意", "no"),
    ("不好意思，我现在不方便", "no"),
    ("不错", "unclear"),
    ("不知道", "unclear"),
    ("你好", "unclear"),
    ("什么？", "unclear"),
    ("", "unclear"),
]


@pytest.mark.parametrize(("text", "expected"), ENGLISH)
def test_english_consent(text: str, expected: str) -> None:
    assert classify_consent(text, "en") == expected


@pytest.mark.parametrize(("text", "expected"), CHINESE)
def test_chinese_consent(text: str, expected: str) -> None:
    assert classify_consent(text, "zh") == expected


def test_language_with_region_is_accepted() -> None:
    assert classify_consent("好的", "zh-CN") == "yes"
    assert classify_consent("yes", "en-US") == "yes"


def test_unknown_language_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="'fr'"):
        classify_consent("oui", "fr")


@pytest.mark.parametrize(
    ("digit", "expected"),
    [
        ("1", "yes"),
        ("2", "no"),
        (" 1 ", "yes"),
        ("3", "unclear"),
        ("*", "unclear"),
        ("#", "unclear"),
    ],
)
def test_dtmf_consent(digit: str, expected: str) -> None:
    assert classify_dtmf_consent(digit) == expected
