"""Tests for the text helpers: normalising, segmentation (real jieba), sentences, matching."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from voicebot.dialogue.text import (
    PhraseMatcher,
    normalise,
    prewarm,
    segment,
    split_sentences,
    to_simplified,
    word_count,
)


@pytest.fixture(scope="module", autouse=True)
def _prewarmed() -> None:
    prewarm()


# --- normalising -------------------------------------------------------------------------------


def test_to_simplified_converts_traditional_and_leaves_the_rest() -> None:
    assert to_simplified("兩班倒，我會Python") == "两班倒，我会Python"
    assert to_simplified("plain English") == "plain English"
    assert to_simplified("") == ""


def test_normalise_lower_cases_unifies_quotes_and_collapses_spaces() -> None:
    assert normalise("  I \u2018handled\u2019   it\u2026 \u201cWell\u201d ", "en") == (
        "i 'handled' it... \"well\""
    )
    assert normalise("「兩班倒」  ＯＫ", "zh") == '"两班倒" ok'


# --- segmentation --------------------------------------------------------------------------------


def test_english_segmentation_keeps_apostrophes_and_drops_punctuation() -> None:
    assert segment("I don't mind -- I handled 3 customers\u2019 complaints!", "en") == [
        "i",
        "don't",
        "mind",
        "i",
        "handled",
        "3",
        "customers",
        "complaints",
    ]


def test_chinese_segmentation_is_by_words_not_characters() -> None:
    words = segment("我在客户服务部门工作过三年。", "zh")
    assert words == ["我", "在", "客户服务", "部门", "工作", "过", "三年"]


def test_chinese_segmentation_keeps_english_words_and_digits() -> None:
    words = segment("我会Python和SQL，做了3年", "zh")
    assert "python" in words and "sql" in words and "3" in words
    assert "和" in words


def test_chinese_segmentation_converts_traditional() -> None:
    assert segment("我會準時上班", "zh") == segment("我会准时上班", "zh")


def test_word_count() -> None:
    assert word_count("I have three years of experience.", "en") == 6
    assert word_count("", "en") == 0
    # Segmented words, not characters: 我/在/客户服务/部门/工作/过/三年.
    assert word_count("我在客户服务部门工作过三年。", "zh") == 7
    assert word_count("我会Python和SQL", "zh") == len(segment("我会Python和SQL", "zh"))


# --- sentences --------------------------------------------------------------------------------


def test_split_sentences_english() -> None:
    text = "First I listened. Then I apologised!  Was that enough?\nYes"
    assert split_sentences(text, "en") == [
        "First I listened.",
        "Then I apologised!",
        "Was that enough?",
        "Yes",
    ]
    assert split_sentences("   ", "en") == []


def test_split_sentences_chinese_and_folded_spaces() -> None:
    text = "首先我会道歉。 然后帮他处理，\n 最后他很满意！真的吗？好"
    assert split_sentences(text, "zh") == [
        "首先我会道歉。",
        "然后帮他处理，",
        "最后他很满意！",
        "真的吗？",
        "好",
    ]
    assert split_sentences("自检， 发现不良品。", "zh") == ["自检，发现不良品。"]


def test_split_sentences_cuts_a_very_long_unpunctuated_sentence_at_commas() -> None:
    text = ", ".join(["I checked the machine and wrote it in the log"] * 10)
    sentences = split_sentences(text, "en")
    assert len(sentences) > 1
    assert all(len(sentence) <= 200 for sentence in sentences)


# --- phrase matching ---------------------------------------------------------------------------


def test_english_matching_uses_light_stemming_on_word_boundaries() -> None:
    matcher = PhraseMatcher(
        "en", {"customer": [], "handle": ["deal with"], "policy": [], "stop": []}
    )
    assert matcher.find("I handled angry customers.") == {"customer": [0], "handle": [0]}
    assert matcher.find("I was dealing with it. Policies matter. We stopped.") == {
        "handle": [0],
        "policy": [1],
        "stop": [2],
    }
    # Word boundaries: no hit inside another word, and a different word is not a stem match.
    assert matcher.find("My hand; customerservice; a stopwatch.") == {}


def test_english_multi_word_phrases_and_sentence_indexes() -> None:
    matcher = PhraseMatcher("en", {"as a result": ["so in the end"], "follow-up": []})
    found = matcher.find("I called back. As a result, she stayed. I did a follow up call.")
    assert found == {"as a result": [1], "follow-up": [2]}
    assert matcher.find("The result was fine.") == {}


def test_english_phrases_are_canonical_and_keep_their_order() -> None:
    matcher = PhraseMatcher("en", {"punctual": ["on time", "never late"], "early": []})
    assert list(matcher.find("I arrive early and I am never late.")) == ["punctual", "early"]
    assert matcher.phrases == ("punctual", "early")


def test_chinese_multi_character_phrase_segments_as_one_word() -> None:
    matcher = PhraseMatcher("zh", {"两班倒": ["倒班"]})
    assert "两班倒" in segment("我可以接受两班倒。", "zh")
    assert matcher.find("我可以接受两班倒。") == {"两班倒": [0]}
    assert matcher.find("之前一直倒班。") == {"两班倒": [0]}


def test_chinese_single_character_keyword_does_not_hit_inside_a_word() -> None:
    matcher = PhraseMatcher("zh", {"班": []})
    assert matcher.find("我每天按时上班。") == {}
    assert matcher.find("我上夜班。") == {}
    assert matcher.find("这个班我能上。") == {"班": [0]}


def test_chinese_phrase_hits_a_dictionary_word_inside_a_longer_word() -> None:
    matcher = PhraseMatcher("zh", {"服务": [], "客户": []})
    assert matcher.find("我在客户服务部门工作过。") == {"服务": [0], "客户": [0]}


def test_chinese_matching_works_on_traditional_input() -> None:
    matcher = PhraseMatcher("zh", {"两班倒": [], "准时": ["没迟到过"]})
    assert matcher.find("我能接受兩班倒。我從來沒遲到過。") == {"两班倒": [0], "准时": [1]}


def test_chinese_matching_of_english_words_in_chinese_text() -> None:
    matcher = PhraseMatcher("zh", {"操作规程": ["SOP"], "excel": []})
    assert matcher.find("我都按SOP干活，也会用Excel表格。") == {"操作规程": [0], "excel": [0]}


def test_find_words_on_pre_segmented_words() -> None:
    matcher = PhraseMatcher("en", {"customer": [], "listen": []})
    assert matcher.find_words(segment("I listened to the customer", "en")) == [
        "customer",
        "listen",
    ]


def test_matching_is_thread_safe() -> None:
    texts = [f"我第{n}次接受两班倒，也按时上班。" for n in range(50)]

    def work(text: str) -> dict[str, list[int]]:
        matcher = PhraseMatcher("zh", {"两班倒": [], "班": [], "按时": []})
        return matcher.find(text)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(work, texts))
    assert all(result == {"两班倒": [0], "按时": [0]} for result in results)


# --- pinyin matching (speech recognition writes homophones) -------------------------------------

PINYIN_PHRASES = {"两班倒": ["倒班"], "肯德基": [], "客服": [], "门店": [], "前台": [], "班": []}


@pytest.fixture(scope="module")
def pinyin_matcher() -> PhraseMatcher:
    return PhraseMatcher("zh", PINYIN_PHRASES)


@pytest.mark.parametrize(
    ("heard", "phrase", "as_heard"),
    [
        ("我能接受两班到。", "两班倒", "两班到"),  # the example: 到 for 倒
        ("我以前在肯德及做过。", "肯德基", "肯德及"),  # the recognised clip
        ("两班到岗没问题", "两班倒", "两班到"),  # the misheard character joined the next word
        ("我能接受兩班到。", "两班倒", "两班到"),  # Traditional input
        ("I can do 两班到, OK", "两班倒", "两班到"),  # mixed Chinese and English
        ("我们那边是到班的", "两班倒", "到班"),  # a synonym heard as a homophone
    ],
)
def test_chinese_phrase_heard_as_a_homophone_hits_by_pinyin(
    pinyin_matcher: PhraseMatcher, heard: str, phrase: str, as_heard: str
) -> None:
    assert pinyin_matcher.find_pinyin(heard) == {phrase: as_heard}
    assert phrase in pinyin_matcher.find(heard)
    assert phrase not in pinyin_matcher.find_words(segment(heard, "zh"))  # characters miss it


@pytest.mark.parametrize(
    "heard",
    [
        "我会克服困难",  # 克服 reads as 客服 but is a word of its own
        "有一次我们店一款连衣裙卖得很好",  # 们店: would start inside the word 我们
        "平台活动前一般怎么准备",  # 前一: 台 reads yi only in classical texts, not in 前台
        "两班，到了再说",  # never across punctuation
        "两班 OK 到",  # nor across English words
        "上般的时候",  # single-character keywords never match by pinyin
        "刻浮",  # a two-character phrase needs one of its own characters
        "肯得及",  # a three-character phrase needs two of its own characters
    ],
)
def test_pinyin_does_not_hit_other_words(pinyin_matcher: PhraseMatcher, heard: str) -> None:
    assert pinyin_matcher.find_pinyin(heard) == {}
    assert pinyin_matcher.find(heard) == {}


def test_exact_hits_are_not_reported_as_pinyin(pinyin_matcher: PhraseMatcher) -> None:
    sentence = "我们那边是两班倒，我在肯德及做过客服。"
    exact = pinyin_matcher.find_words(segment(sentence, "zh"))
    assert exact == ["两班倒", "客服"]
    assert pinyin_matcher.find_pinyin(sentence, skip=exact) == {"肯德基": "肯德及"}
    assert pinyin_matcher.find_pinyin("我们那边是两班倒") == {}  # spelled right: not by pinyin
    assert pinyin_matcher.find(sentence) == {"两班倒": [0], "肯德基": [0], "客服": [0]}


def test_pinyin_matching_is_off_for_english_and_when_asked() -> None:
    assert PhraseMatcher("en", {"shift": []}).find_pinyin("两班到 shift") == {}
    off = PhraseMatcher("zh", {"两班倒": []}, pinyin=False)
    assert off.find_pinyin("我能接受两班到") == {}
    assert off.find("我能接受两班到") == {}
