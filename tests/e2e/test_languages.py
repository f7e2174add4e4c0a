"""An English and a Chinese interview at once on one server started with the defaults.

Real sockets, a real server process, and real speech through the 8 kHz mu-law phone path: each
call's answers must be transcribed by its own job's language model (tiny.en for English, the
bundled multilingual base for Chinese, in Simplified characters), with nothing configured.
The old single setting (``VOICEBOT_ASR_MODEL=tiny.en``) still works for English and says how to
serve the Chinese jobs it cannot.
"""

from __future__ import annotations

import asyncio
import re
import secrets

import jiwer
import pytest
from opencc import OpenCC

from loadtest.caller import run_call
from tests.conftest import TWILIO_AUTH_TOKEN, start_server, stop_server
from tests.e2e.test_interview_call import answers_by_question, normalise

pytestmark = pytest.mark.e2e

ENGLISH = {
    "en_speaker_b.wav": "The horizon seems extremely distant.",
    "en_speaker_a.wav": "He began a confused complaint against the wizard, who had vanished "
    "behind the curtain on the left.",
}
CHINESE = ["zh_aishell_BAC009S0724W0121.wav", "zh_news_mid.wav"]  # 广州市房地产中介协会分析, ...
HAN = re.compile(r"[\u4e00-\u9fff]")
LATIN = re.compile(r"[A-Za-z]")


async def call(url: str, interview_id: str, answers: list, audio_dir) -> object:
    """A whole interview: consent by pressing 1, then the answers in turn (repeated)."""
    return await run_call(
        url,
        interview_id=interview_id,
        call_sid="CA" + secrets.token_hex(16),
        answers=[audio_dir / name for name in answers],
        dtmf={0: "1"},
        twilio_auth_token=TWILIO_AUTH_TOKEN,
        max_call_secs=240,
    )


@pytest.fixture(scope="module")
def two_calls(tmp_path_factory, audio_dir):
    server = start_server(tmp_path_factory.mktemp("languages"))  # no VOICEBOT_ASR_* at all
    try:
        english_id = server.create_interview("customer_service_en")
        chinese_id = server.create_interview("customer_service_zh", phone="+15550101")

        async def both():
            return await asyncio.gather(
                call(server.url, english_id, [*ENGLISH] * 2, audio_dir),
                call(server.url, chinese_id, CHINESE * 2, audio_dir),
            )

        english, chinese = asyncio.run(both())
        result = {}
        for name, run, interview_id in (
            ("en", english, english_id),
            ("zh", chinese, chinese_id),
        ):
            assert run.error is None, (name, run.error, run.problems)
            result[name] = {
                "call": server.wait_for_call(run.call_sid),
                "interview": server.wait_for_report(interview_id, timeout=120),
            }
        _, health = server.request("GET", "/healthz", token=None)
        result["health"] = health
        result["log"] = server.log_text()
        yield result
    finally:
        stop_server(server)


def test_both_calls_run_to_the_end_on_the_default_server(two_calls):
    assert two_calls["health"]["asr_models"] == {"en": "tiny.en", "zh": "base"}
    assert "cannot be interviewed" not in two_calls["log"]
    for language in ("en", "zh"):
        call = two_calls[language]["call"]
        assert call["status"] == "completed" and call["end_reason"] == "completed", language
        assert two_calls[language]["interview"]["consent"] is True


def test_the_english_call_is_transcribed_in_english(two_calls):
    answers = list(answers_by_question(two_calls["en"]["call"]["turns"]).values())
    assert len(answers) == 4
    for text, truth in zip(answers, [*ENGLISH.values()] * 2, strict=True):
        assert not HAN.search(text), text
        assert jiwer.wer(normalise(truth), normalise(text)) <= 0.2, (truth, text)


def test_the_chinese_call_is_transcribed_in_simplified_chinese(two_calls):
    answers = list(answers_by_question(two_calls["zh"]["call"]["turns"]).values())
    assert len(answers) == 4
    simplified = OpenCC("t2s")
    for text in answers:
        assert len(HAN.findall(text)) >= 6, text  # Chinese characters, ...
        assert not LATIN.search(text), text  # not tiny.en's English guesses, ...
        assert simplified.convert(text) == text, text  # ... and none of them Traditional
    # The AISHELL clip (广州市房地产中介协会分析): its Simplified words come through the phone.
    assert "协会" in answers[0] and "地产" in answers[0], answers[0]
    # The report was scored on these words (the stored answer, not a placeholder).
    transcript = two_calls["zh"]["interview"]["transcript"]
    assert [t["text"] for t in transcript if t["speaker"] == "candidate" and t["text"]]


def test_the_old_single_setting_still_serves_english_and_names_the_fix(tmp_path, audio_dir):
    server = start_server(tmp_path, VOICEBOT_ASR_MODEL="tiny.en")
    try:
        _, health = server.request("GET", "/healthz", token=None)
        assert health["asr_models"]["en"] == "tiny.en"
        log = server.log_text()
        assert "job customer_service_zh cannot be interviewed" in log
        assert "VOICEBOT_ASR_MODELS=zh=base" in log
        chinese_id = server.create_interview("customer_service_zh", phone="+15550102")
        refused = asyncio.run(call(server.url, chinese_id, CHINESE, audio_dir))
        assert "did not connect the call to a stream" in (refused.error or "")
        english_id = server.create_interview("customer_service_en")
        english = asyncio.run(call(server.url, english_id, [*ENGLISH] * 2, audio_dir))
        assert english.error is None, english.problems
        turns = server.wait_for_call(english.call_sid)["turns"]
        first = next(iter(answers_by_question(turns).values()))
        truth = next(iter(ENGLISH.values()))
        assert jiwer.wer(normalise(truth), normalise(first)) <= 0.2, first
    finally:
        stop_server(server)
