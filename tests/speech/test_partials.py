"""The partial-transcript stabiliser: stable words only grow, agreement of two hypotheses."""

from __future__ import annotations

from voicebot.speech.partials import LocalAgreement, join, tokens


def test_tokens_split_words_and_chinese_characters():
    assert tokens("Hello, my name is Ann.") == ["Hello,", "my", "name", "is", "Ann."]
    assert tokens("我在仓库工作，三年。") == ["我", "在", "仓", "库", "工", "作，", "三", "年。"]
    assert join(tokens("我在仓库工作，三年。")) == "我在仓库工作，三年。"
    assert join(tokens("I used Python 3 at 阿里巴巴")) == "I used Python 3 at阿里巴巴"


def test_first_hypothesis_is_all_unstable():
    agreement = LocalAgreement()
    partial = agreement.update("During peak season")
    assert partial.stable == ""
    assert partial.unstable == "During peak season"
    assert partial.text == "During peak season"


def test_words_two_hypotheses_agree_on_become_stable():
    agreement = LocalAgreement()
    agreement.update("During peak season our pick")
    partial = agreement.update("During peak season our picker was")
    assert partial.stable == "During peak season our"
    assert partial.unstable == "picker was"
    assert partial.new_stable_words == 4


def test_agreement_ignores_case_and_punctuation():
    agreement = LocalAgreement()
    agreement.update("so first, I split")
    partial = agreement.update("So first I split his aisles.")
    assert partial.stable == "So first I split"


def test_stable_words_are_never_taken_back():
    agreement = LocalAgreement()
    agreement.update("their team was short")
    agreement.update("their team was short of")
    # Whisper revises an early word: the stable text stays, the tail is lined up after it.
    partial = agreement.update("there team was short of staff")
    assert partial.stable == "their team was short of"
    assert partial.unstable == "staff"


def test_revised_word_does_not_repeat_or_shift_the_tail():
    agreement = LocalAgreement()
    agreement.update("I worked in a warehouse")
    agreement.update("I worked in a warehouse for")
    partial = agreement.update("I worked at a warehouse for three years")
    assert partial.stable == "I worked in a warehouse for"
    assert partial.unstable == "three years"


def test_disagreeing_tails_stay_unstable():
    agreement = LocalAgreement()
    agreement.update("I managed a")
    partial = agreement.update("I manage the")
    assert partial.stable == "I"
    assert partial.unstable == "manage the"
    partial = agreement.update("I managed the team")
    assert partial.stable == "I"
    partial = agreement.update("I managed the team daily")
    assert partial.stable == "I managed the team"


def test_shorter_hypothesis_keeps_stable_text():
    agreement = LocalAgreement()
    agreement.update("we shipped two hundred orders")
    agreement.update("we shipped two hundred orders a")
    partial = agreement.update("we shipped")
    assert partial.stable == "we shipped two hundred orders"
    assert partial.unstable == ""


def test_close_window_freezes_and_starts_fresh():
    agreement = LocalAgreement()
    agreement.update("first I checked the list")
    agreement.update("first I checked the list then")
    closed = agreement.close_window("first I checked the list then called")
    assert closed.stable == "first I checked the list then called"
    assert closed.unstable == ""
    partial = agreement.update("the customer")
    assert partial.stable == "first I checked the list then called"
    assert partial.unstable == "the customer"
    partial = agreement.update("the customer back")
    assert partial.stable == "first I checked the list then called the customer"


def test_chinese_characters_agree_one_by_one():
    agreement = LocalAgreement()
    agreement.update("我在仓库")
    partial = agreement.update("我在仓库工作了")
    assert partial.stable == "我在仓库"
    assert partial.unstable == "工作了"


def test_n3_needs_three_hypotheses():
    agreement = LocalAgreement(n=3)
    agreement.update("one two")
    assert agreement.update("one two three").stable == ""
    assert agreement.update("one two three four").stable == "one two"
