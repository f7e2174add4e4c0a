"""End to end: a candidate who answers the way people talk is heard whole and never cut off.

Real speech from the turn-taking evaluation set (``loadtest/turn_eval``) through the real phone
path (8 kHz mu-law) and the real models, over real sockets: answers that open with "um" and a
pause of more than a second, that pause for two seconds after "so", and that run 16-24 s with
thinking pauses and restarts. The benchmark (``loadtest/turn_bench.py``, docs/PERFORMANCE.md)
reports how often the policy still talks over a candidate on the whole set (none of its answers
since an open answer ends early only on a closer); this test pins the behaviour the issue asked
for on these kinds of answers: no prompt before an answer's end, a filler or "so" and a long
pause never end an answer, an answer the bot talks over anyway is recovered whole, no reprompt
or skip while the candidate speaks, every answer stored under its own question with its words,
and no voice that reached no turn.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import jiwer
import pytest

from loadtest.caller import CandidateAnswer, run_call
from tests.conftest import TWILIO_AUTH_TOKEN
from voicebot.audio.frames import read_wav

pytestmark = pytest.mark.e2e

EVAL = Path(__file__).resolve().parents[2] / "loadtest" / "turn_eval"
ANSWERS = [
    "sp_en_acoustic_um_pause_start",  # "um" + 1.3 s, then an 18 s answer with fillers
    "sp_en_cold3_so_pause",  # "... so" + 1.9 s of thinking, 24 s in all
    "sp_en_cold_um_pause_start",  # "um" + 1.0 s, then 15 s with pauses up to a second
    "en_call_sheila_2193",  # a real phone call: "Well..." + a pause, then the answer
]
QUESTIONS = ["experience", "difficult-customer", "availability", "why-this-role"]
FILLERS = {"uh", "um", "hm", "er", "ah", "mm", "<vocnoise>", "[adif]"}


def words(text: str) -> str:
    tokens = re.sub(r"[^a-z' ]+", " ", text.lower()).split()
    return " ".join(t for t in tokens if t not in FILLERS)


@pytest.fixture(scope="module")
def conversation(server):
    manifest = {e["id"]: e for e in json.loads((EVAL / "manifest.json").read_text())}
    entries = [manifest[answer] for answer in ANSWERS]
    answers = []
    for entry in entries:
        pcm, rate = read_wav(EVAL / entry["file"])
        answers.append(CandidateAnswer.from_pcm(entry["id"], pcm, rate))
    interview_id = server.create_interview()
    result = asyncio.run(
        run_call(
            server.url,
            interview_id=interview_id,
            answers=answers,
            dtmf={0: "1"},
            twilio_auth_token=TWILIO_AUTH_TOKEN,
            max_call_secs=240,
        )
    )
    assert result.error is None, result.problems
    call = server.wait_for_call(result.call_sid)
    timeline = [
        json.loads(line)
        for line in (server.recordings_dir / result.call_sid / "timeline.jsonl")
        .read_text()
        .splitlines()
    ]
    return {"result": result, "call": call, "entries": entries, "timeline": timeline}


def test_no_prompt_starts_before_an_answer_s_end(conversation):
    # Each answer goes on after finished sentences and thinking pauses of up to 1.9 s; the bot
    # waits for the end (the caller marks an answer the bot's audio arrived during).
    answers = [t for t in conversation["result"].turns if t.speaker == "candidate" and t.answer]
    assert [t.answer for t in answers] == ANSWERS
    talked_over = [t.answer for t in answers if t.talked_over]
    assert talked_over == [], f"the bot spoke during {talked_over}"
    assert not [e for e in conversation["timeline"] if e["event"] == "barge_in"]


def test_a_filler_or_so_then_a_long_pause_does_not_end_the_answer(conversation):
    answers = [t for t in conversation["result"].turns if t.speaker == "candidate" and t.answer]
    assert [t.answer for t in answers] == ANSWERS
    ended = [e["t"] for e in conversation["timeline"] if e["event"] == "speech_ended"]
    for turn, entry in zip(answers, conversation["entries"], strict=True):
        for _, pause_end in entry.get("inserted_pauses", []):
            # "um" + 1.0-1.3 s, "... so" + 1.9 s: the words say "not done", so the turn goes on
            # through the pause (the caller's clock and the call's agree within a frame or two).
            cut = [t for t in ended if turn.start < t < turn.start + pause_end + 0.1]
            assert cut == [], (entry["id"], pause_end, cut)


def test_an_answer_the_bot_talked_over_is_recovered_whole(conversation):
    # Should the bot start over a candidate who goes on (none of these answers since open
    # answers wait 2.6 s after a finished sentence; a loaded server, a longer pause), the
    # prompt stops on their voice at once, the answer goes on in the same turn, and the cut
    # prompt is said again after it.
    timeline = conversation["timeline"]
    for index, event in enumerate(timeline):
        if event["event"] != "barge_in":
            continue
        cut = event["cut"][0]
        assert cut["heard_secs"] <= 0.5, event
        after = [
            e for e in timeline[index:] if e["event"] in ("answer_continued", "prompt_started")
        ]
        assert after[0]["event"] == "answer_continued", after[:3]
        again = [e for e in after if e["event"] == "prompt_started"]
        assert again and again[0]["prompt_id"] == cut["prompt_id"], again[:2]


def test_no_reprompt_or_skip_while_the_candidate_speaks(conversation):
    call = conversation["call"]
    prompts = [t["prompt_id"] for t in call["turns"] if t["speaker"] == "bot"]
    assert "reprompt" not in prompts and "move_on" not in prompts, prompts
    assert not call["outcome"].get("skipped")
    assert call["status"] == "completed" and call["end_reason"] == "completed"


def test_every_answer_is_stored_under_its_own_question_with_its_words(conversation):
    stored: dict[str, list[str]] = {}
    for turn in conversation["call"]["turns"]:
        if turn["speaker"] == "candidate" and turn["question_id"]:
            stored.setdefault(turn["question_id"], []).append(turn["text"])
    assert list(stored) == QUESTIONS
    for question, entry in zip(QUESTIONS, conversation["entries"], strict=True):
        text = " ".join(stored[question])
        truth = words(entry["transcript"])
        # The words are this answer's (Whisper tiny.en on the phone band, disfluent speech) and
        # no other's: nearer its own transcript than any other answer's.
        own = jiwer.wer(truth, words(text))
        others = [
            jiwer.wer(words(other["transcript"]), words(text))
            for other in conversation["entries"]
            if other is not entry
        ]
        assert own <= 0.6, (question, text, own)
        assert own < min(others), (question, text, own, others)


def test_no_voice_reached_no_turn(conversation):
    timeline = conversation["timeline"]
    unheard = [e for e in timeline if e["event"] == "speech_unheard"]
    around = [
        e
        for e in timeline
        if any(u["t"] - 3 <= e["t"] <= u["end"] + 3 for u in unheard)
        and e["event"] not in ("transcript_partial", "prosody")
    ]
    assert unheard == [], around  # what the call was doing then, to say why
    assert conversation["call"]["stats"].get("unheard_speech_secs", 0) == 0
