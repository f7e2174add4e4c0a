"""The interview report and its page in the job's language: Simplified Chinese for a Chinese job."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from voicebot.dialogue.report import build_report
from voicebot.dialogue.report_html import render_report
from voicebot.dialogue.script import JobScript, load_script
from voicebot.store.database import Store

DIALOGUES = Path(__file__).resolve().parents[2] / "dialogues"

ZH_ANSWERS = {
    # Traditional characters, as a script, an HR system or a recogniser might give them.
    "experience": "我在門店做過兩年收銀，後來在線上做售後客服，處理投訴和退換貨，用工單系統。",
    "difficult-customer": "有一次顧客很生氣，我先耐心聽他說完，向他道歉，然後幫他辦了退款。",
    "availability": "週一到週五都可以，週末也行。",
}
EN_ANSWERS = {
    "difficult-customer": (
        "A customer was upset about a late refund. First I listened and apologised, then I "
        "found a solution and followed up the next day."
    ),
}
TRADITIONAL = "門顧處運貨單後說幫辦週"
"""Traditional characters in the answers above (none of them is also a Simplified one)."""
ENGLISH_WORD = re.compile(r"[A-Za-z]{3,}")


@pytest.fixture
async def store(tmp_path):
    store = Store(tmp_path / "db.sqlite3")
    await store.open()
    yield store
    await store.close()


async def stored_interview(
    store: Store,
    script: JobScript,
    answers: dict[str, str],
    *,
    candidate_name: str,
    knockout: dict | None = None,
) -> str:
    """An ended call of one interview in the store, with the bot's prompts and the answers."""
    interview, _ = await store.create_interview(
        job_id=script.id, candidate_id="c-1", candidate_name=candidate_name
    )
    call_sid = "CA" + "1" * 32
    await store.create_call(call_sid=call_sid, interview_id=interview["id"])
    seq = 0
    clock = 0.0
    for question in script.questions:
        if question.id not in answers:
            continue
        seq += 1
        await store.add_turn(
            call_sid=call_sid,
            seq=seq,
            speaker="bot",
            text=question.prompt,
            start=clock,
            end=clock + 3,
            prompt_id=question.id,
        )
        seq += 1
        await store.add_turn(
            call_sid=call_sid,
            seq=seq,
            speaker="candidate",
            text=answers[question.id],
            start=clock + 3.5,
            end=clock + 12,
            question_id=question.id,
        )
        clock += 15
    if knockout is not None:
        await store.record_outcome(call_sid, "knockouts", knockout["question_id"], knockout)
    await store.finish_call(
        call_sid, status="completed", end_reason="completed", duration_secs=clock
    )
    return interview["id"]


def _without(text: str, codes: list[str]) -> str:
    """``text`` without the ids in ``codes`` (longest first)."""
    for code in codes:
        text = text.replace(code, " ")
    return text


def person_readable(report: dict) -> list[str]:
    """The report's sentences for people: reasons, the prosody note, the candidate's message."""
    scores = report["scores"]
    texts = [*scores["reasons"], report["prosody"]["note"], report["candidate_feedback"]]
    for competency in scores["competencies"]:
        texts.append((competency["level"] or {}).get("description") or "")
        texts.extend(evidence["quote"] for evidence in competency["evidence"])
    return texts


async def test_a_chinese_report_is_in_simplified_chinese_throughout(store: Store) -> None:
    script = load_script(DIALOGUES / "customer_service_zh.yaml").model_copy(
        update={"prosody_in_recommendation": True}
    )
    knockout = {"question_id": "availability", "expected": "yes", "answer": "no", "passed": False}
    interview_id = await stored_interview(
        store, script, ZH_ANSWERS, candidate_name="陳小姐", knockout=knockout
    )
    report = await build_report(store, script, interview_id)

    texts = person_readable(report)
    ids = ["prosody_in_recommendation"]
    ids += sorted((question.id for question in script.questions), key=len, reverse=True)
    for text in texts:
        # No English sentence: question ids (codes) and the script's setting name may appear.
        words = set(ENGLISH_WORD.findall(_without(text, ids)))
        assert not words, text
        assert not set(text) & set(TRADITIONAL), text
    reasons = "\n".join(report["scores"]["reasons"])
    assert "总分" in reasons and "淘汰题“availability”未通过：岗位要求“是”，回答是“否”" in reasons
    assert "招聘专员会复核这次面试" in reasons
    assert "不做流利度调整" in reasons  # opted in, but no speech measured
    assert "除脚本写明的流利度调整外" in report["prosody"]["note"]
    assert report["candidate_feedback"].startswith("感谢您抽出时间参加客服代表岗位")
    # Codes stay machine-readable.
    assert report["recommendation"] == "reject" and report["outcome"] == "completed"
    assert {q["id"] for q in report["questions"]} == {q.id for q in script.questions}
    # What the candidate said, in Simplified characters wherever the report shows it.
    answers = {q["id"]: q["answer"] for q in report["questions"] if q["answered"]}
    assert answers["experience"].startswith("我在门店做过两年收银，后来在线上做售后客服")
    transcript = " ".join(turn["text"] for turn in report["transcript"])
    assert not set(transcript) & set(TRADITIONAL)
    quotes = [e["quote"] for c in report["scores"]["competencies"] for e in c["evidence"]]
    assert any("退款" in quote for quote in quotes)
    # The candidate's name is the HR system's spelling.
    assert report["candidate"]["name"] == "陳小姐"


async def test_a_chinese_report_page_has_chinese_labels(store: Store) -> None:
    script = load_script(DIALOGUES / "customer_service_zh.yaml")
    interview_id = await stored_interview(store, script, ZH_ANSWERS, candidate_name="王芳")
    report = await build_report(store, script, interview_id)
    page = render_report(report, recording_urls={report["calls"][0]["call_sid"]: "/r"})

    assert '<html lang="zh-CN">' in page
    assert "<title>面试报告：王芳</title>" in page
    for label in ("供人工复核的建议", "能力评分", "回答", "通话记录", "录音", "给候选人的话"):
        assert label in page, label
    assert "通话结果：完成" in page
    body = re.sub(r"<style>.*?</style>|<[^>]+>", " ", page, flags=re.S)
    codes = [report["interview_id"], report["calls"][0]["call_sid"]]
    codes += [question.id for question in script.questions]
    body = _without(body, sorted(codes, key=len, reverse=True))
    words = set(ENGLISH_WORD.findall(body)) - {"UTC", "dBFS"}
    assert not words, words
    assert not set(body) & set(TRADITIONAL)


def test_a_stored_report_with_traditional_characters_shows_simplified_ones() -> None:
    report = {
        "job": {"id": "j", "title": "客服代表", "language": "zh"},
        "candidate": {"id": "c-1", "name": "陳小姐"},
        "questions": [{"id": "q", "prompt": "請介紹您的經驗", "answer": "我做過售後"}],
        "scores": {"reasons": ["總分 80"], "competencies": []},
        "transcript": [{"speaker": "candidate", "text": "我做過售後", "start": 1.0}],
        "candidate_feedback": "感謝您",
    }
    page = render_report(report)
    assert "请介绍您的经验" in page and "我做过售后" in page and "总分 80" in page
    assert "感谢您" in page and "陳小姐" in page  # the name as the HR system spells it


async def test_an_english_report_is_in_english(store: Store) -> None:
    script = load_script(DIALOGUES / "customer_service_en.yaml")
    question = next(q for q in script.questions if q.competency)
    interview_id = await stored_interview(
        store,
        script,
        {question.id: EN_ANSWERS["difficult-customer"]},
        candidate_name="Ann Lee",
    )
    report = await build_report(store, script, interview_id)
    reasons = report["scores"]["reasons"]
    assert reasons[-1] == "A recruiter reviews this interview before any decision is made."
    assert any(reason.startswith("Overall ") for reason in reasons)
    assert report["prosody"]["note"] == (
        "Speech rate, pauses, pitch and loudness describe how the answers were spoken. "
        "They are not used in the recommendation and are no measure of emotion or personality."
    )
    page = render_report(report)
    assert '<html lang="en">' in page
    assert "Suggestion for human review" in page and "Outcome of the call: completed." in page
    assert "<h2>Competencies</h2>" in page and "<title>Interview report: Ann Lee</title>" in page
