"""Barge-in and consent by voice, end to end with the real models.

The candidate says "yes" to the consent question, then starts answering the first question while
the bot is still asking it: the bot must stop talking (``clear``), know how much of the question
the candidate heard, and still transcribe the whole answer.
"""

from __future__ import annotations

import asyncio
import json
import re
import wave
from pathlib import Path

import jiwer
import numpy as np
import pytest

from loadtest.caller import CandidateAnswer, run_call
from tests.conftest import TWILIO_AUTH_TOKEN
from tests.e2e.test_interview_call import ANSWERS, answers_by_question, normalise, voiced_seconds
from voicebot.speech.tts import PiperEngine

pytestmark = pytest.mark.e2e
BARGE_IN_AFTER_SECS = 1.0


@pytest.fixture(scope="module")
def spoken_yes() -> CandidateAnswer:
    """A synthetic "yes" (there is no yes among the human clips), through the phone path."""

    async def synthesize():
        engine = PiperEngine()
        audio = await engine.synthesize("Yes, I agree.", language="en")
        await engine.close()
        return audio

    audio = asyncio.run(synthesize())
    silence = np.zeros(audio.sample_rate // 2, dtype=np.int16)
    return CandidateAnswer.from_pcm(
        "yes.wav", np.concatenate([audio.pcm, silence]), audio.sample_rate
    )


@pytest.fixture(scope="module")
def barged_call(server, audio_dir, spoken_yes):
    interview_id = server.create_interview()
    short = audio_dir / "en_speaker_b.wav"
    result = asyncio.run(
        run_call(
            server.url,
            interview_id=interview_id,
            answers=[spoken_yes, audio_dir / "en_jfk.wav", short, short, short],
            barge_in={1: BARGE_IN_AFTER_SECS},
            twilio_auth_token=TWILIO_AUTH_TOKEN,
            max_call_secs=180,
        )
    )
    call = server.wait_for_call(result.call_sid)
    interview = server.wait_for_report(interview_id)
    return result, call, interview


def test_consent_by_voice_is_recorded(barged_call):
    result, call, interview = barged_call
    assert result.error is None, result.problems
    assert interview["consent"] is True and interview["consent_via"] == "voice"
    assert call["end_reason"] == "completed"


def test_talking_over_a_question_stops_the_bot_and_records_what_was_heard(barged_call):
    result, call, _ = barged_call
    cut = [t for t in call["turns"] if t["speaker"] == "bot" and t["interrupted"]]
    assert cut, call["turns"]
    question = cut[0]  # the first question, talked over 1 s in
    assert question["prompt_id"].startswith("q:")
    assert not question["mark_echoed"]  # its mark was never sent, so never echoed
    # The candidate started 1 s in; the bot stopped soon after, not at the end of the question.
    assert BARGE_IN_AFTER_SECS <= question["heard_secs"] < BARGE_IN_AFTER_SECS + 1.2
    assert question["end"] == pytest.approx(question["start"] + question["heard_secs"], abs=0.05)
    # The caller saw a clear for that prompt.
    assert any(t.speaker == "bot" and t.interrupted for t in result.turns)

    directory = Path(call["recording_dir"])
    with wave.open(str(directory / "call.wav")) as wav:
        audio = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16).reshape(-1, 2)
    # The bot channel goes quiet where the candidate stopped hearing the question.
    after_cut = question["end"] + 0.1
    next_bot = min(
        t["start"]
        for t in call["turns"]
        if t["speaker"] == "bot" and t["start"] > question["start"]
    )
    assert voiced_seconds(audio[:, 1], after_cut, next_bot) < 0.1
    events = [json.loads(line) for line in (directory / "timeline.jsonl").read_text().splitlines()]
    barge = [e for e in events if e["event"] == "barge_in"]
    assert barge and barge[0]["cut"][0]["prompt_id"] == question["prompt_id"]


def test_the_answer_that_interrupted_is_transcribed_whole(barged_call):
    _, call, _ = barged_call
    candidate = [t for t in call["turns"] if t["speaker"] == "candidate"]
    assert re.search(r"\byes\b", candidate[0]["text"].lower())
    jfk = list(answers_by_question(call["turns"]).values())[0]
    truth = ANSWERS["en_jfk.wav"]
    assert jiwer.wer(normalise(truth), normalise(jfk)) <= 0.15, jfk
