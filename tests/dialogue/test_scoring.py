"""Tests for interview scoring: rubric levels, evidence, structure, recommendation, feedback."""

import json
import re
import time
from pathlib import Path

import pytest
import yaml

from voicebot.dialogue.scoring import (
    AnswerText,
    KnockoutResult,
    candidate_feedback,
    needs_follow_up,
    score_interview,
)
from voicebot.dialogue.script import JobScript, Thresholds, load_script
from voicebot.dialogue.text import prewarm, split_sentences

DIALOGUES = Path(__file__).resolve().parents[2] / "dialogues"
SAMPLE_ANSWERS = Path(__file__).resolve().parent / "sample_answers"

EN_SCRIPT = """\
id: support-en
title: Support Agent
language: en
greeting: Hi, I am an AI assistant and this call is recorded.
consent_question: Do you agree to continue? Say yes or press 1.
consent_declined: Okay, goodbye.
consent_unclear: Sorry, please say yes or no.
competencies:
  - id: service
    name: Customer service
    weight: 2
    keywords: [customer, listen, apologise, solution, refund, follow up]
    synonyms:
      apologise: [apologize, say sorry]
      listen: [hear them out]
    rubric:
      - score: 10
        description: No concrete service behaviour.
      - score: 50
        description: Listens and apologises.
        evidence: [listen, apologise]
      - score: 80
        description: Solves the problem and follows up.
        evidence: [solution, refund, follow up]
        min_matches: 2
    improvement_tip: Describe how you listened to the customer and how you solved the problem.
  - id: reliability
    name: Reliability
    weight: 1
    keywords: [on time, early, shift, schedule]
    synonyms:
      on time: [punctual, never late]
    rubric:
      - score: 20
        description: Says nothing concrete.
      - score: 60
        description: Arrives on time.
        evidence: [on time, early]
      - score: 90
        description: Plans ahead and covers shifts.
        evidence: [schedule, cover, shift]
        min_matches: 2
    improvement_tip: Say how you make sure you arrive on time.
questions:
  - id: weekends
    prompt: Can you work weekends? Press 1 for yes, 2 for no.
    knockout:
      expected: "yes"
    dtmf:
      "1": "yes"
      "2": "no"
  - id: difficult-customer
    prompt: Tell me about a time you helped an upset customer.
    competency: service
    follow_up:
      prompt: Could you give me a concrete example?
      min_words: 8
  - id: attendance
    prompt: How do you make sure you are on time?
    competency: reliability
  - id: why
    prompt: Why this job?
closing: Thanks, goodbye.
reprompt: Are you still there?
no_response_goodbye: I can't hear you, goodbye.
"""

ZH_SCRIPT = """\
id: support-zh
title: 客服专员
language: zh
greeting: 您好，我是AI招聘助理，本次通话会录音。
consent_question: 您同意继续吗？同意请按1。
consent_declined: 好的，再见。
consent_unclear: 抱歉，请说可以或不可以。
competencies:
  - id: service
    name: 服务意识
    weight: 1
    keywords: [顾客, 耐心, 道歉, 解决, 退款]
    synonyms:
      道歉: [说对不起, 赔不是]
    rubric:
      - score: 10
        description: 没有讲出具体做法。
      - score: 50
        description: 会耐心倾听并道歉。
        evidence: [耐心, 道歉]
      - score: 80
        description: 能解决问题并回访。
        evidence: [解决, 退款, 回访]
        min_matches: 2
    improvement_tip: 可以讲讲您是怎么安抚顾客、最后怎么解决问题的。
  - id: reliability
    name: 守时
    weight: 1
    keywords: [准时, 提前, 两班倒, 交接班]
    synonyms:
      准时: [按时, 没迟到过]
      两班倒: [倒班]
    rubric:
      - score: 10
        description: 没说清怎么保证守时。
      - score: 50
        description: 能准时到岗。
        evidence: [准时, 提前]
      - score: 80
        description: 认真交接班，能倒班。
        evidence: [交接班, 两班倒]
        min_matches: 2
questions:
  - id: difficult-customer
    prompt: 请讲一次您帮助一位不满意的顾客的经历。
    competency: service
    follow_up:
      prompt: 能举一个具体的例子吗？
      min_words: 8
  - id: attendance
    prompt: 您怎么保证每天准时上班？
    competency: reliability
    follow_up:
      prompt: 能具体说说吗？
      min_words: 6
      when_missing_evidence: false
closing: 谢谢，再见。
reprompt: 您还在吗？
no_response_goodbye: 我没有听到您的回答，再见。
"""

EN_STRONG = {
    "difficult-customer": (
        "Last year a customer was upset because her order was late. First I listened to her "
        "and apologised. Then I found a solution: I offered a refund on the delivery. "
        "As a result she stayed with us, and I did a follow up call the next week."
    ),
    "attendance": (
        "I plan my schedule the night before and I always arrive early. "
        "When a colleague was ill I covered his shift, and I am never late."
    ),
}
EN_WEAK = {
    "difficult-customer": "I just try to be nice to people, I guess it goes okay usually.",
    "attendance": "I try my best to get there, it is usually fine for me.",
}
ZH_STRONG = {
    "difficult-customer": (
        "有一次一位顾客因为快递晚到很生气。首先我耐心听他说完，然后向他道歉。"
        "接着我帮他申请了退款，问题很快解决了。最后我还做了回访，他很满意。"
    ),
    "attendance": (
        "我每天都会提前二十分钟到岗，上一份工作从来没迟到过。"
        "我们那边是两班倒，交接班的时候我会把设备情况写清楚再走。"
    ),
}
ZH_WEAK = {
    "difficult-customer": "就是尽量对他好一点，一般都还可以吧。",
    "attendance": "还行吧，一般没什么问题，差不多都能到。",
}


@pytest.fixture(scope="module", autouse=True)
def _prewarmed() -> None:
    prewarm()


@pytest.fixture(scope="module")
def en_script() -> JobScript:
    return JobScript.model_validate(yaml.safe_load(EN_SCRIPT))


@pytest.fixture(scope="module")
def zh_script() -> JobScript:
    return JobScript.model_validate(yaml.safe_load(ZH_SCRIPT))


def answers(texts: dict[str, str]) -> list[AnswerText]:
    return [AnswerText(question_id, text) for question_id, text in texts.items()]


def with_thresholds(script: JobScript, advance: int, hold: int) -> JobScript:
    return script.model_copy(update={"thresholds": Thresholds(advance=advance, hold=hold)})


# --- competency scores, evidence and keywords ----------------------------------------------------


@pytest.mark.parametrize("competency", ["service", "reliability"])
def test_english_strong_answer_outscores_weak_one_with_evidence(
    en_script: JobScript, competency: str
) -> None:
    strong = score_interview(en_script, answers(EN_STRONG)).competency(competency)
    weak = score_interview(en_script, answers(EN_WEAK)).competency(competency)
    assert strong.score > weak.score
    assert strong.level_score is not None and weak.level_score is not None
    assert strong.level_score > weak.level_score
    assert strong.evidence and strong.keywords_hit
    assert not weak.evidence and not weak.keywords_hit


@pytest.mark.parametrize("competency", ["service", "reliability"])
def test_chinese_strong_answer_outscores_weak_one_with_evidence(
    zh_script: JobScript, competency: str
) -> None:
    strong = score_interview(zh_script, answers(ZH_STRONG)).competency(competency)
    weak = score_interview(zh_script, answers(ZH_WEAK)).competency(competency)
    assert strong.score > weak.score
    assert strong.evidence and strong.keywords_hit
    assert weak.score <= 15


def test_english_levels_keywords_and_quotes(en_script: JobScript) -> None:
    score = score_interview(en_script, answers(EN_STRONG))
    service = score.competency("service")
    assert service.level_score == 80
    assert service.level_description == "Solves the problem and follows up."
    # Stemming and synonyms: "listened" -> listen, "apologised" -> apologise.
    assert {"customer", "listen", "apologise", "solution", "refund", "follow up"} <= set(
        service.keywords_hit
    )
    sentences = split_sentences(EN_STRONG["difficult-customer"], "en")
    for quote in service.evidence:
        assert quote.question_id == "difficult-customer"
        assert quote.quote in sentences
        assert quote.matched
    quoted = {phrase for quote in service.evidence for phrase in quote.matched}
    assert {"solution", "refund"} <= quoted
    reliability = score.competency("reliability")
    assert reliability.level_score == 90  # schedule + cover ("covered") + shift
    assert "on time" in reliability.keywords_hit  # synonym "never late"


def test_chinese_levels_keywords_and_quotes(zh_script: JobScript) -> None:
    score = score_interview(zh_script, answers(ZH_STRONG))
    service = score.competency("service")
    assert service.level_score == 80
    assert {"耐心", "道歉", "退款", "解决"} <= set(service.keywords_hit)
    reliability = score.competency("reliability")
    assert reliability.level_score == 80
    assert {"准时", "提前", "两班倒", "交接班"} <= set(reliability.keywords_hit)
    quote = next(q for q in reliability.evidence if "两班倒" in q.matched)
    assert quote.quote == "我们那边是两班倒，交接班的时候我会把设备情况写清楚再走。"


def test_chinese_keyword_heard_as_a_homophone_still_counts_and_is_marked(
    zh_script: JobScript,
) -> None:
    # Speech recognition wrote 两班到 for 两班倒 (the example).
    heard = ZH_STRONG["attendance"].replace("两班倒", "两班到")
    exact = score_interview(zh_script, [AnswerText("attendance", ZH_STRONG["attendance"])])
    misheard = score_interview(zh_script, [AnswerText("attendance", heard)])
    reliability = misheard.competency("reliability")
    assert reliability.level_score == 80  # 交接班 and 两班倒: the top level, as spelled right
    assert reliability.score == exact.competency("reliability").score
    assert "两班倒" in reliability.keywords_hit
    assert reliability.keywords_pinyin == ("两班倒",)
    assert "“两班倒” 仅按读音（拼音）匹配" in reliability.reason
    data = misheard.to_dict()["competencies"][1]
    assert data["keywords_pinyin"] == ["两班倒"]
    quote = next(q for q in data["evidence"] if "两班倒" in q["matched"])
    assert quote["quote"] == "我们那边是两班到，交接班的时候我会把设备情况写清楚再走。"
    assert quote["matches"] == [
        {"phrase": "两班倒", "match": "pinyin", "heard": "两班到"},
        {"phrase": "交接班", "match": "exact"},
    ]
    # Spelled right, nothing is marked.
    right = exact.to_dict()["competencies"][1]
    assert right["keywords_pinyin"] == []
    assert all(m["match"] == "exact" for q in right["evidence"] for m in q["matches"])


def test_keyword_also_spelled_right_elsewhere_is_not_marked_as_pinyin(
    zh_script: JobScript,
) -> None:
    answer = "我们那边是两班倒。夜班也能上，两班到我都习惯了，交接班的时候写清楚。"
    reliability = score_interview(zh_script, [AnswerText("attendance", answer)]).competency(
        "reliability"
    )
    assert "两班倒" in reliability.keywords_hit
    assert reliability.keywords_pinyin == ()
    assert "pinyin" not in reliability.reason
    marks = {
        (quote.quote, phrase): heard
        for quote in reliability.evidence
        for phrase, heard in quote.pinyin
    }
    assert marks == {("夜班也能上，两班到我都习惯了，交接班的时候写清楚。", "两班倒"): "两班到"}


def test_traditional_chinese_answer_scores_like_simplified(zh_script: JobScript) -> None:
    simplified = score_interview(zh_script, [AnswerText("attendance", ZH_STRONG["attendance"])])
    traditional = score_interview(
        zh_script,
        [
            AnswerText(
                "attendance",
                "我每天都會提前二十分鐘到崗，上一份工作從來沒遲到過。"
                "我們那邊是兩班倒，交接班的時候我會把設備情況寫清楚再走。",
            )
        ],
    )
    assert traditional.competency("reliability").score == simplified.competency("reliability").score


def test_follow_up_answer_counts_as_evidence(en_script: JobScript) -> None:
    short = score_interview(en_script, [AnswerText("attendance", "I am usually fine.")])
    followed = score_interview(
        en_script,
        [
            AnswerText(
                "attendance",
                "I am usually fine.",
                follow_up_text="I always arrive early and I am never late for my shift.",
            )
        ],
    )
    reliability = followed.competency("reliability")
    assert reliability.score > short.competency("reliability").score
    assert any("early" in quote.matched for quote in reliability.evidence)


def test_structure_markers_raise_the_score(en_script: JobScript) -> None:
    plain = (
        "A customer was upset about a late order. I listened to her and I apologised. "
        "I offered a refund and a solution for the delivery."
    )
    structured = (
        "A customer was upset about a late order. First I listened to her and I apologised. "
        "Then I offered a refund and a solution for the delivery, because she needed it fast. "
        "As a result she stayed with us."
    )
    low = score_interview(en_script, [AnswerText("difficult-customer", plain)])
    high = score_interview(en_script, [AnswerText("difficult-customer", structured)])
    low_service, high_service = low.competency("service"), high.competency("service")
    assert low_service.level_score == high_service.level_score == 80
    assert high_service.score > low_service.score
    assert {"first", "then", "because", "as a result"} <= set(high_service.structure.markers)
    assert high_service.structure.result and not low_service.structure.markers
    assert high.structure_score > low.structure_score


def test_chinese_structure_markers_raise_the_score(zh_script: JobScript) -> None:
    plain = "顾客很生气，我耐心听他说完，向他道歉，帮他申请了退款，问题解决了。"
    structured = (
        "有一次顾客很生气，首先我耐心听他说完，然后向他道歉，帮他申请了退款，结果问题解决了。"
    )
    low = score_interview(zh_script, [AnswerText("difficult-customer", plain)])
    high = score_interview(zh_script, [AnswerText("difficult-customer", structured)])
    assert high.competency("service").score > low.competency("service").score
    structure = high.competency("service").structure
    assert {"首先", "然后", "结果"} <= set(structure.markers)
    assert structure.situation and structure.result


def test_bonus_stays_below_the_next_level(en_script: JobScript) -> None:
    # Level 50 evidence only, but every marker and STAR part: the bonus may not reach 80.
    text = (
        "Last year a customer was angry. First I listened to the customer and I apologised, "
        "because she had waited. Then I stayed calm. As a result she thanked me in the end."
    )
    service = score_interview(en_script, [AnswerText("difficult-customer", text)]).competency(
        "service"
    )
    assert service.level_score == 50
    assert 50 < service.score < 80


def test_unanswered_competency_scores_zero_with_a_reason(en_script: JobScript) -> None:
    score = score_interview(en_script, [AnswerText("attendance", EN_STRONG["attendance"])])
    service = score.competency("service")
    assert service.score == 0 and service.answered == 0
    assert service.level_score is None and service.completeness == 0
    assert service.to_dict()["level"] is None
    assert any("Customer service" in r and "no answer" in r for r in score.reasons)
    empty = score_interview(en_script, [AnswerText("difficult-customer", "   ")])
    assert empty.competency("service").score == 0


def test_short_answers_lower_completeness_and_score(en_script: JobScript) -> None:
    full = "I always arrive early, I am never late, and I plan my week ahead of time."
    short = "Always early."
    full_score = score_interview(en_script, [AnswerText("attendance", full)])
    short_score = score_interview(en_script, [AnswerText("attendance", short)])
    assert full_score.competency("reliability").completeness == 1
    assert short_score.competency("reliability").completeness < 0.5
    assert short_score.competency("reliability").score < full_score.competency("reliability").score


def test_overall_is_the_weight_normalised_mean(en_script: JobScript) -> None:
    score = score_interview(en_script, answers({**EN_STRONG, "attendance": EN_WEAK["attendance"]}))
    service, reliability = score.competency("service"), score.competency("reliability")
    assert service.weight == 2 and reliability.weight == 1
    expected = round((2 * service.score + 1 * reliability.score) / 3, 1)
    assert score.overall == expected
    assert service.score != reliability.score  # the weights matter here


def test_competency_without_question_is_left_out(en_script: JobScript) -> None:
    extra = en_script.competencies[1].model_copy(update={"id": "unused", "name": "Unused"})
    script = en_script.model_copy(update={"competencies": [*en_script.competencies, extra]})
    score = score_interview(script, answers(EN_STRONG))
    assert [c.id for c in score.competencies] == ["service", "reliability"]
    assert any("Unused" in reason for reason in score.reasons)


# --- recommendation and knock-outs ---------------------------------------------------------------


def test_thresholds_decide_advance_hold_reject(en_script: JobScript) -> None:
    overall = score_interview(en_script, answers(EN_STRONG)).overall
    assert overall is not None and 60 < overall < 100
    cases = [
        ((int(overall), int(overall) - 10), "advance"),
        ((int(overall) + 1, int(overall)), "hold"),
        ((100, int(overall) + 1), "reject"),
    ]
    for (advance, hold), expected in cases:
        script = with_thresholds(en_script, advance, hold)
        score = score_interview(script, answers(EN_STRONG))
        assert score.recommendation == expected, (advance, hold, score.overall)
        assert score.human_review_required


def test_default_thresholds_strong_advances_weak_rejected(en_script: JobScript) -> None:
    assert score_interview(en_script, answers(EN_STRONG)).recommendation == "advance"
    assert score_interview(en_script, answers(EN_WEAK)).recommendation == "reject"


def test_failed_knockout_rejects_a_strong_candidate(en_script: JobScript) -> None:
    knockout = KnockoutResult("weekends", expected="yes", answer="no", passed=False)
    score = score_interview(en_script, answers(EN_STRONG), [knockout])
    assert score.recommendation == "reject"
    assert any("weekends" in reason and "failed" in reason for reason in score.reasons)
    assert score.to_dict()["knockouts"] == [
        {"question_id": "weekends", "expected": "yes", "answer": "no", "passed": False}
    ]


def test_unclear_knockout_caps_at_hold(en_script: JobScript) -> None:
    unclear = KnockoutResult("weekends", expected="yes", answer="unclear", passed=None)
    strong = score_interview(en_script, answers(EN_STRONG), [unclear])
    assert strong.recommendation == "hold"
    assert any("unclear" in reason for reason in strong.reasons)
    weak = score_interview(en_script, answers(EN_WEAK), [unclear])
    assert weak.recommendation == "reject"
    passed = KnockoutResult("weekends", expected="yes", answer="yes", passed=True)
    assert score_interview(en_script, answers(EN_STRONG), [passed]).recommendation == "advance"


def test_human_review_is_always_required(en_script: JobScript, zh_script: JobScript) -> None:
    for script, texts in ((en_script, EN_STRONG), (en_script, EN_WEAK), (zh_script, ZH_STRONG)):
        score = score_interview(script, answers(texts))
        assert score.human_review_required is True
        assert score.to_dict()["human_review_required"] is True
    assert score_interview(en_script, []).to_dict()["human_review_required"] is True


def test_to_dict_is_json_with_the_documented_fields(en_script: JobScript) -> None:
    data = score_interview(en_script, answers(EN_STRONG)).to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["scoring_version"] == 1
    assert {
        "competencies",
        "structure_score",
        "completeness",
        "overall",
        "recommendation",
        "reasons",
        "knockouts",
        "human_review_required",
        "prosody_used",
    } <= set(data)
    competency = data["competencies"][0]
    assert {
        "id",
        "name",
        "weight",
        "score",
        "level",
        "keywords_hit",
        "evidence",
        "structure",
        "completeness",
        "questions",
        "answered",
    } <= set(competency)
    assert set(competency["level"]) == {"score", "description"}
    assert set(competency["evidence"][0]) == {"question_id", "quote", "matched", "matches"}
    assert set(competency["structure"]["star"]) == {"situation", "action", "result"}
    assert isinstance(competency["score"], int) and 0 <= competency["score"] <= 100
    assert 0 <= data["completeness"] <= 1
    assert data["overall"] == round(data["overall"], 1)
    assert all(isinstance(reason, str) and reason for reason in data["reasons"])


def test_scoring_is_deterministic(zh_script: JobScript) -> None:
    first = score_interview(zh_script, answers(ZH_STRONG)).to_dict()
    second = score_interview(zh_script, answers(ZH_STRONG)).to_dict()
    assert first == second


def test_script_without_competencies_holds_for_a_recruiter() -> None:
    data = yaml.safe_load(EN_SCRIPT)
    del data["competencies"]
    for question in data["questions"]:
        question.pop("competency", None)
    script = JobScript.model_validate(data)
    score = score_interview(script, [AnswerText("why", "I like helping people.")])
    assert score.overall is None and score.recommendation == "hold"
    assert score.competencies == ()


# --- prosody -------------------------------------------------------------------------------------

GOOD_PROSODY = {"speech_rate": 150.0, "rate_unit": "wpm", "pause_ratio": 0.15}
POOR_PROSODY = {"speech_rate": 40.0, "rate_unit": "wpm", "pause_ratio": 0.8}


def test_prosody_is_ignored_unless_the_script_opts_in(en_script: JobScript) -> None:
    assert en_script.prosody_in_recommendation is False
    without = score_interview(en_script, answers(EN_STRONG))
    for prosody in (GOOD_PROSODY, POOR_PROSODY):
        score = score_interview(en_script, answers(EN_STRONG), prosody=prosody)
        assert score.overall == without.overall
        assert score.prosody_used is False and score.to_dict()["prosody_used"] is False
        assert score.reasons == without.reasons
        assert not any("prosody" in reason.lower() for reason in score.reasons)


def test_opted_in_prosody_adjusts_by_at_most_five_points(en_script: JobScript) -> None:
    script = en_script.model_copy(update={"prosody_in_recommendation": True})
    base = score_interview(en_script, answers(EN_WEAK)).overall
    assert base is not None
    good = score_interview(script, answers(EN_WEAK), prosody=GOOD_PROSODY)
    poor = score_interview(script, answers(EN_WEAK), prosody=POOR_PROSODY)
    assert good.prosody_used and poor.prosody_used
    assert good.overall == pytest.approx(base + 5, abs=0.11)
    assert poor.overall == pytest.approx(base - 5, abs=0.11)
    assert good.prosody_adjustment == 5.0 and poor.prosody_adjustment == -5.0
    assert any("Fluency adjustment +5.0" in reason for reason in good.reasons)
    middling = score_interview(
        script, answers(EN_WEAK), prosody={"speech_rate": 220.0, "pause_ratio": 0.4}
    )
    assert -5 < middling.prosody_adjustment < 5
    missing = score_interview(script, answers(EN_WEAK), prosody=None)
    assert missing.prosody_used is False and missing.overall == base
    assert any("no fluency adjustment" in reason for reason in missing.reasons)


# --- follow-ups ----------------------------------------------------------------------------------


def test_needs_follow_up_english(en_script: JobScript) -> None:
    question = en_script.question("difficult-customer")
    assert needs_follow_up(en_script, question, "I was nice.")  # short
    assert needs_follow_up(  # long enough, but none of the competency's words
        en_script, question, "Well it was a long time ago and I do not remember it very well."
    )
    assert not needs_follow_up(
        en_script, question, "I listened to her and apologised, then I offered a refund."
    )
    # Synonyms count as evidence.
    assert not needs_follow_up(
        en_script, question, "I let them talk, I say sorry and then I fix it for them quickly."
    )
    # No follow-up on the question: never.
    assert not needs_follow_up(en_script, en_script.question("attendance"), "Fine.")
    assert not needs_follow_up(en_script, en_script.question("why"), "")


def test_needs_follow_up_chinese(zh_script: JobScript) -> None:
    service = zh_script.question("difficult-customer")
    assert needs_follow_up(zh_script, service, "还可以吧。")
    assert needs_follow_up(zh_script, service, "那次的事情我记得不太清楚了，反正最后大家都挺好的。")
    assert not needs_follow_up(zh_script, service, "我先耐心听他说完，然后向他道歉，最后帮他退款。")
    attendance = zh_script.question("attendance")  # when_missing_evidence: false
    assert needs_follow_up(zh_script, attendance, "还行。")
    assert not needs_follow_up(zh_script, attendance, "我一般都是坐公交车过去，路上不怎么堵。")


def test_needs_follow_up_is_fast(en_script: JobScript, zh_script: JobScript) -> None:
    needs_follow_up(zh_script, zh_script.question("difficult-customer"), "热身")
    started = time.perf_counter()
    for _ in range(50):
        needs_follow_up(
            en_script, en_script.question("difficult-customer"), EN_STRONG["difficult-customer"]
        )
        needs_follow_up(
            zh_script, zh_script.question("difficult-customer"), ZH_STRONG["difficult-customer"]
        )
    assert (time.perf_counter() - started) / 100 < 0.005


def test_scoring_a_six_answer_interview_is_fast(en_script: JobScript) -> None:
    texts = [
        AnswerText("difficult-customer", EN_STRONG["difficult-customer"]),
        AnswerText("attendance", EN_STRONG["attendance"], follow_up_text=EN_WEAK["attendance"]),
        AnswerText("why", "I enjoy helping people and I like solving problems for customers."),
        AnswerText("weekends", "yes", via="dtmf"),
        AnswerText("difficult-customer", EN_WEAK["difficult-customer"]),
        AnswerText("attendance", EN_WEAK["attendance"]),
    ]
    score_interview(en_script, texts)
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        score_interview(en_script, texts)
        timings.append(time.perf_counter() - started)
    assert sorted(timings)[2] < 0.05


# --- candidate feedback ------------------------------------------------------------------------


def assert_neutral(text: str, score_dict: dict[str, object]) -> None:
    assert not re.search(r"\d", text), text
    for word in ("advance", "reject", "hold", "score", "recommend", "推荐", "分"):
        assert word not in text.lower(), (word, text)


def test_candidate_feedback_english(en_script: JobScript) -> None:
    weak = score_interview(en_script, answers(EN_WEAK))
    text = candidate_feedback(en_script, weak)
    assert text.startswith("Thank you")
    assert "Support Agent" in text
    assert "Describe how you listened to the customer" in text
    assert "Say how you make sure you arrive on time." in text
    assert_neutral(text, weak.to_dict())
    strong = score_interview(en_script, answers(EN_STRONG))
    strong_text = candidate_feedback(en_script, strong)
    assert "suggestion" not in strong_text and "Describe" not in strong_text
    assert_neutral(strong_text, strong.to_dict())


def test_candidate_feedback_chinese_with_generic_tip(zh_script: JobScript) -> None:
    weak = score_interview(zh_script, answers(ZH_WEAK))
    text = candidate_feedback(zh_script, weak)
    assert text.startswith("感谢您")
    assert "客服专员" in text
    assert "可以讲讲您是怎么安抚顾客" in text
    # The reliability competency has no improvement_tip: a general tip instead.
    assert "具体例子" in text
    assert_neutral(text, weak.to_dict())


def test_candidate_feedback_lists_at_most_two_tips(en_script: JobScript) -> None:
    extra = en_script.competencies[1].model_copy(
        update={"id": "extra", "name": "Extra", "improvement_tip": "Extra tip here."}
    )
    questions = [
        *en_script.questions,
        en_script.questions[2].model_copy(update={"id": "extra-q", "competency": "extra"}),
    ]
    script = en_script.model_copy(
        update={"competencies": [*en_script.competencies, extra], "questions": questions}
    )
    score = score_interview(script, [])
    text = candidate_feedback(script, score)
    tips = ["Describe how you listened", "Say how you make sure", "Extra tip here."]
    assert sum(tip in text for tip in tips) == 2


# --- sample answers written for the shipped scripts ----------------------------------------------

SAMPLES = sorted(SAMPLE_ANSWERS.glob("*.yaml")) if SAMPLE_ANSWERS.is_dir() else []


def sample_cases() -> list[object]:
    cases: list[object] = []
    for path in SAMPLES:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        for competency_id in data["competencies"]:
            cases.append(pytest.param(path, competency_id, id=f"{path.stem}:{competency_id}"))
    return cases or [pytest.param(None, None, id="no-sample-answers")]


@pytest.mark.parametrize(("path", "competency_id"), sample_cases())
def test_sample_strong_answer_outscores_weak_one(path: Path | None, competency_id: str) -> None:
    if path is None:
        pytest.skip("no sample answers in tests/dialogue/sample_answers")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    script = load_script(DIALOGUES / f"{data['script']}.yaml")
    sample = data["competencies"][competency_id]
    assert script.question(sample["question"]).competency == competency_id
    strong = score_interview(script, [AnswerText(sample["question"], sample["strong"])])
    weak = score_interview(script, [AnswerText(sample["question"], sample["weak"])])
    strong_score = strong.competency(competency_id)
    weak_score = weak.competency(competency_id)
    assert strong_score.score > weak_score.score, (strong_score.reason, weak_score.reason)
    assert strong_score.evidence, strong_score.reason


def test_report_page_marks_keywords_found_by_sound_only(zh_script: JobScript) -> None:
    from voicebot.dialogue.report_html import render_report

    heard = ZH_STRONG["attendance"].replace("两班倒", "两班到")
    scores = score_interview(zh_script, [AnswerText("attendance", heard)]).to_dict()
    page = render_report({"scores": scores})
    assert ">两班倒 (pinyin)</span>" in page
    assert "<span class=kw>交接班</span>" in page


def test_follow_up_counts_a_keyword_heard_as_a_homophone(zh_script: JobScript) -> None:
    question = zh_script.questions[0]  # asks its follow-up when the answer misses the evidence
    heard = "那次我很耐新地听他把整个经过讲完了，后来也帮他处理好了。"  # 耐新 for 耐心
    assert needs_follow_up(zh_script, question, heard) is False
    missing = heard.replace("耐新", "认真")
    assert needs_follow_up(zh_script, question, missing) is True
