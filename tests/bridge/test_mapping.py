"""The interview report mapped to an ATS application result (Merge-style scorecard)."""

from __future__ import annotations

import copy
import json

import pytest

from hris_bridge.mapping import overall_recommendation, to_ats_application_result
from voicebot.events.types import EVENT_TYPES

EXAMPLE = EVENT_TYPES["interview.completed"].example


def full_data() -> dict:
    """interview.completed data with a report as build_report makes it (evidence, transcript)."""
    data = copy.deepcopy(EXAMPLE)
    report = data["report"]
    report["scores"] = {
        "scoring_version": 1,
        "competencies": [
            {
                "id": "teamwork",
                "name": "Teamwork",
                "weight": 1.0,
                "score": 88,
                "level": {"score": 85, "description": "Concrete example with own actions"},
                "base": 85,
                "bonus": 3.0,
                "keywords_hit": ["split", "team"],
                "evidence": [
                    {
                        "question_id": "teamwork",
                        "quote": "first I split his aisles",
                        "matched": ["split"],
                    }
                ],
                "structure": {"markers": ["first"], "star": {}, "score": 60},
                "completeness": 1.0,
                "questions": ["teamwork"],
                "answered": 1,
            }
        ],
        "structure_score": 60,
        "completeness": 1.0,
        "overall": 88.0,
        "recommendation": "advance",
        "reasons": ["Teamwork: a complete STAR answer."],
        "knockouts": [
            {"question_id": "forklift", "expected": "yes", "answer": "yes", "passed": True}
        ],
        "human_review_required": True,
    }
    report["recommendation"] = "advance"
    report["transcript"] = [
        {
            "call_sid": "CA1",
            "speaker": "bot",
            "text": "Tell me about a time...",
            "start": 1.0,
            "end": 4.0,
            "question_id": "teamwork",
            "prompt_id": "q:teamwork",
            "via": "voice",
        },
        {
            "call_sid": "CA1",
            "speaker": "candidate",
            "text": "During peak season...",
            "start": 4.5,
            "end": 9.0,
            "question_id": "teamwork",
            "prompt_id": None,
            "via": "voice",
        },
    ]
    data["links"] = {
        "report_html": "https://bot.example.com/interviews/iv_1/report?token=abc",
        "recordings": {report["calls"][0]["call_sid"]: "https://bot.example.com/rec.wav?token=x"},
        "expires_at": 1795349823,
    }
    return data


def test_full_mapping():
    data = full_data()
    result = to_ats_application_result(data)
    json.dumps(result)  # JSON-able
    assert result["candidate"]["remote_id"] == "cand_20418"
    assert result["candidate"]["name"] == "Dana Whitfield"
    assert result["application"]["remote_id"] == "ats-req-7731/app-5520"
    assert result["job"] == {"remote_id": "warehouse-associate", "title": "Warehouse Associate"}
    assert result["interview_id"] == "iv_3f9c2a71b04e8d15"
    assert result["stage"] == "ai_screen_completed"
    card = result["scorecard"]
    assert card["overall_recommendation"] == "STRONG_YES"
    assert card["ai_recommendation"] == "advance" and card["overall_score"] == 88.0
    assert card["human_review_required"] is True
    [competency] = card["competencies"]
    assert competency["score"] == 88 and competency["name"] == "Teamwork"
    assert competency["evidence"] == [
        {"question_id": "teamwork", "quote": "first I split his aisles"}
    ]
    assert card["knockouts"] == [{"question_id": "forklift", "answer": "yes", "passed": True}]
    assert result["answers"][1]["answer"].startswith("During peak season")
    assert [t["speaker"] for t in result["transcript"]] == ["bot", "candidate"]
    assert result["transcript_text"].splitlines()[1] == "Candidate: During peak season..."
    assert result["transcript_url"].endswith("token=abc")
    [recording] = result["recordings"]
    assert recording["url"].endswith("token=x") and recording["duration_secs"] == 221.4
    assert result["links_expire_at"].startswith("2026-")
    assert result["completed_at"].endswith("Z")


@pytest.mark.parametrize(
    ("recommendation", "overall", "status", "expected"),
    [
        ("advance", 84.9, "completed", "YES"),
        ("advance", 85.0, "completed", "STRONG_YES"),
        ("advance", None, "completed", "YES"),
        ("hold", 70.0, "completed", "NO_DECISION"),
        ("reject", 30.0, "completed", "NO"),
        ("reject", 30.0, "knocked_out", "NO"),
        (None, None, "completed", "NO_DECISION"),
        ("reject", 10.0, "no_response", "NO_DECISION"),
        ("reject", 10.0, "opted_out", "NO_DECISION"),
        ("advance", 90.0, "incomplete", "NO_DECISION"),
    ],
)
def test_recommendation_mapping(recommendation, overall, status, expected):
    assert overall_recommendation(recommendation, overall, status) == expected


def test_example_event_and_bare_report_and_missing_parts():
    result = to_ats_application_result(copy.deepcopy(EXAMPLE))
    assert result["scorecard"]["overall_recommendation"] == "YES"  # advance at 78.5
    assert result["recordings"][0]["url"] is None  # no links in the event: none invented
    assert result["transcript_url"] is None and result["transcript"] == []
    bare = to_ats_application_result(copy.deepcopy(EXAMPLE["report"]))
    assert bare["candidate"]["remote_id"] == "cand_20418"
    assert bare["application"]["remote_id"] is None
    assert bare["stage"] == "ai_screen_completed"
    empty = to_ats_application_result({})
    assert empty["scorecard"]["overall_recommendation"] == "NO_DECISION"
    assert empty["scorecard"]["human_review_required"] is True
    not_screened = to_ats_application_result({**copy.deepcopy(EXAMPLE), "status": "no_response"})
    assert not_screened["stage"] == "ai_screen_not_completed"
    assert not_screened["scorecard"]["overall_recommendation"] == "NO_DECISION"


def test_a_chinese_interviews_transcript_text_names_the_speakers_in_chinese() -> None:
    data = full_data()
    report = data["report"]
    report["job"] = {"id": "customer_service_zh", "title": "客服代表", "language": "zh"}
    report["transcript"][0]["text"] = "请讲一次您帮助顾客的经历。"
    report["transcript"][1]["text"] = "有一次顾客很生气。"
    result = to_ats_application_result(data)
    assert result["transcript_text"].splitlines() == [
        "面试官（AI）：请讲一次您帮助顾客的经历。",
        "候选人：有一次顾客很生气。",
    ]
