"""Tests for the decoder prompt built from the question being answered and its keywords."""

from pathlib import Path

import pytest

from voicebot.dialogue.recognition_prompt import (
    LEAD,
    MAX_KEYWORDS,
    parse_prompt_parts,
    question_keywords,
    recognition_prompt,
)
from voicebot.dialogue.script import load_script

DIALOGUES = Path(__file__).resolve().parents[2] / "dialogues"


@pytest.fixture(scope="module")
def workshop_zh():
    return load_script(DIALOGUES / "workshop_operator_zh.yaml")


@pytest.fixture(scope="module")
def customer_service_en():
    return load_script(DIALOGUES / "customer_service_en.yaml")


def test_the_prompt_is_the_question_then_its_keywords_in_chinese(workshop_zh) -> None:
    question = workshop_zh.question("attendance")
    prompt = recognition_prompt(workshop_zh, question, ["question", "keywords"])
    assert prompt is not None
    assert prompt.startswith(question.prompt)
    # the keywords the scoring looks for, as a Chinese list, ending the sentence
    assert "准时、提前、全勤、交接班" in prompt
    assert "两班倒" in prompt
    assert prompt.endswith("。")


def test_each_part_alone(workshop_zh) -> None:
    question = workshop_zh.question("safety")
    assert recognition_prompt(workshop_zh, question, ["question"]) == question.prompt
    keywords = recognition_prompt(workshop_zh, question, ["keywords"])
    assert keywords is not None
    assert question.prompt not in keywords
    assert keywords.startswith("安全帽、劳保鞋")


def test_no_prompt_outside_a_scored_answer(workshop_zh) -> None:
    # consent and the calls' other answers: nothing is known about what will be said
    assert recognition_prompt(workshop_zh, None, ["question", "keywords"]) is None
    # nothing chosen
    assert recognition_prompt(workshop_zh, workshop_zh.question("safety"), []) is None
    # a yes/no question has no competency: its keywords part is empty, the question still helps
    shifts = workshop_zh.question("shifts")
    assert question_keywords(workshop_zh, shifts) == []
    assert recognition_prompt(workshop_zh, shifts, ["keywords"]) is None
    assert recognition_prompt(workshop_zh, shifts, ["question", "keywords"]) == shifts.prompt


def test_keywords_include_rubric_evidence_once_and_are_bounded(workshop_zh) -> None:
    question = workshop_zh.question("quality")
    words = question_keywords(workshop_zh, question)
    competency = next(c for c in workshop_zh.competencies if c.id == question.competency)
    evidence = [e for level in competency.rubric for e in level.evidence]
    assert words[: len(competency.keywords)] == list(competency.keywords)
    assert all(e in words for e in evidence if len(words) < MAX_KEYWORDS)
    assert len(words) == len(set(words)) <= MAX_KEYWORDS


def test_english_prompt_uses_english_punctuation(customer_service_en) -> None:
    question = next(q for q in customer_service_en.questions if q.competency)
    prompt = recognition_prompt(customer_service_en, question, ["question", "keywords"])
    assert prompt is not None
    assert prompt.startswith(question.prompt + " ")
    assert "、" not in prompt and prompt.endswith(".")


def test_parse_prompt_parts() -> None:
    assert parse_prompt_parts("zh=question+keywords, en=none") == {
        "zh": {"question", "keywords"},
        "en": set(),
    }
    assert parse_prompt_parts("") == {}
    assert parse_prompt_parts("ZH=Keywords") == {"zh": {"keywords"}}


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("zh", "is not LANGUAGE=PARTS"),
        ("zh=", "is not LANGUAGE=PARTS"),
        ("zh=question+answers", "'answers'"),
        ("z1=question", "is not LANGUAGE=PARTS"),
    ],
)
def test_parse_prompt_parts_says_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(ValueError, match="VOICEBOT_ASR_PROMPT") as error:
        parse_prompt_parts(text)
    assert says in str(error.value)


def test_the_lead_sentence_comes_first_and_only_in_chinese(workshop_zh, customer_service_en):
    question = workshop_zh.question("safety")
    prompt = recognition_prompt(workshop_zh, question, ["keywords", "lead"])
    assert prompt is not None and prompt.startswith(LEAD["zh"] + "安全帽、")
    assert recognition_prompt(workshop_zh, question, ["lead"]) == LEAD["zh"]
    english = next(q for q in customer_service_en.questions if q.competency)
    assert recognition_prompt(customer_service_en, english, ["lead"]) is None
