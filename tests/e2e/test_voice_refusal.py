"""A real server started without a Chinese voice serves its English jobs and refuses the Chinese
ones, saying how to give them a voice (the opt-in: tests/speech/test_voices.py and every other
server the tests start, see tests/conftest.py)."""

from __future__ import annotations

import pytest

from tests.conftest import start_server, stop_server


@pytest.fixture(scope="module")
def voiceless(tmp_path_factory):
    server = start_server(
        tmp_path_factory.mktemp("voiceless"),
        VOICEBOT_ALLOW_ESPEAK_VOICE="",
        VOICEBOT_TTS_ENGINE="espeak",  # the defaults give Chinese a voice (Kokoro)
    )
    try:
        yield server
    finally:
        stop_server(server)


def interview(server, job_id: str):
    body = {"job_id": job_id, "candidate": {"id": "c1", "name": "Test", "phone": "+15550100"}}
    return server.request("POST", "/api/interviews", body)


def test_chinese_job_refused_at_start_up_english_served(voiceless):
    log = voiceless.log_path.read_text()
    assert "job customer_service_zh is NOT served" in log
    assert "VOICEBOT_ALLOW_ESPEAK_VOICE=zh" in log and "voicebot prompts import FILE" in log
    status, data = interview(voiceless, "customer_service_zh")
    assert status == 422, data
    assert data["error"]["code"] == "unknown_job"
    assert "is NOT served" in data["error"]["message"]
    assert "record the prompts" in data["error"]["message"]
    status, data = interview(voiceless, "customer_service_en")
    assert status == 201, data
