"""A Chinese interview on a server started as a new user starts it: no voice or ASR setting.

No ``VOICEBOT_ALLOW_ESPEAK_VOICE``, no TTS engine or ASR model set, no prompt pack imported: the
bundled Chinese job must be served, spoken by the offline Kokoro voice (not espeak-ng), and a real
Mandarin caller on the phone path must get through it, with each answer stored against its
question and the report in Simplified Chinese. (The prompt cache folder is the one the test
servers share, as everywhere in the tests: Kokoro's shipped renderings seed it like any other.)
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets

import pytest
from opencc import OpenCC

from loadtest.caller import run_call
from tests.conftest import ROOT, TWILIO_AUTH_TOKEN, start_server, stop_server
from tests.e2e.test_interview_call import answers_by_question
from voicebot.dialogue.script import load_script, prompt_texts
from voicebot.speech.prompt_cache import PromptCache
from voicebot.speech.tts import build_tts

pytestmark = pytest.mark.e2e

JOB = "customer_service_zh"
SCRIPT = load_script(ROOT / "dialogues" / f"{JOB}.yaml")
ANSWERS = ["zh_aishell_BAC009S0724W0121.wav", "zh_news_mid.wav"]  # 广州市房地产中介协会分析, ...
HAN = re.compile(r"[\u4e00-\u9fff]")
ENGLISH_WORD = re.compile(r"\b[A-Za-z]{3,}\b")


@pytest.fixture(scope="module")
def chinese_call(tmp_path_factory, audio_dir):
    server = start_server(
        tmp_path_factory.mktemp("zh-defaults"),
        VOICEBOT_ALLOW_ESPEAK_VOICE=None,  # as a new user starts it
        VOICEBOT_TTS_ENGINE=None,
        VOICEBOT_ASR_MODELS=None,
        VOICEBOT_ASR_MODEL=None,
    )
    try:
        interview_id = server.create_interview(JOB, phone="+15550103")
        run = asyncio.run(
            run_call(
                server.url,
                interview_id=interview_id,
                call_sid="CA" + secrets.token_hex(16),
                answers=[audio_dir / name for name in ANSWERS * 3],
                dtmf={0: "1"},  # consent by key press
                twilio_auth_token=TWILIO_AUTH_TOKEN,
                max_call_secs=240,
            )
        )
        assert run.error is None, (run.error, run.problems)
        yield {
            "run": run,
            "call": server.wait_for_call(run.call_sid),
            "interview": server.wait_for_report(interview_id, timeout=120),
            "log": server.log_text(),
        }
    finally:
        stop_server(server)


def test_the_chinese_job_is_served_by_default_and_the_call_completes(chinese_call):
    log = chinese_call["log"]
    assert "is NOT served" not in log and "spoken by espeak-ng" not in log
    call = chinese_call["call"]
    assert call["status"] == "completed" and call["end_reason"] == "completed"
    assert chinese_call["interview"]["consent"] is True


def test_the_prompts_the_caller_heard_are_kokoros(chinese_call):
    """The greeting and each question arrived as Kokoro's renderings, byte for byte."""
    cache = PromptCache(ROOT / ".cache" / "test-prompts", build_tts("piper"))
    heard = chinese_call["run"].bot_audio
    spoken = [prompt_texts(SCRIPT)["greeting"], *(q.prompt for q in SCRIPT.questions)]
    for text in spoken:
        key = cache.key(text, language="zh", voice=SCRIPT.voice)
        described = json.loads(cache.metadata_path(key).read_text(encoding="utf-8"))
        assert (described["engine"], described["voice"]) == ("kokoro", "jf_nezumi")
        rendering = cache.path(key).read_bytes()
        middle = rendering[len(rendering) // 4 : len(rendering) // 4 + 4000]  # 0.5 s of speech
        assert middle in heard, text


def test_each_answer_is_stored_against_its_question(chinese_call):
    answers = answers_by_question(chinese_call["call"]["turns"])
    questions = [q.id for q in SCRIPT.questions]
    assert list(answers) == questions  # every question answered, in order, under its own id
    first = answers[questions[0]]
    assert "协会" in first and "地产" in first, first  # the AISHELL clip, through the phone


def test_the_report_is_in_simplified_chinese(chinese_call):
    report = chinese_call["interview"]["report"]
    simplified = OpenCC("t2s")
    sentences = [*report["scores"]["reasons"], report["candidate_feedback"]]
    for text in sentences:  # what the report says to people: Chinese sentences, ...
        assert HAN.search(text) and not ENGLISH_WORD.findall(text.replace(JOB, "")), text
    said = [turn["text"] for turn in report["transcript"] if turn["text"]]
    for text in sentences + said:  # ... and everything in Simplified characters
        assert simplified.convert(text) == text, text
    assert report["candidate_feedback"].startswith("感谢您")
