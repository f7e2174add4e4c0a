"""The turn-taking benchmark's real-time mode: two answers of the set in one live interview."""

from __future__ import annotations

import time

import pytest

from loadtest.caller import TurnRecord
from loadtest.turn_bench import load_set
from loadtest.turn_live import (
    Endpoint,
    build_report,
    edit_distance,
    error_counts,
    markdown,
    plan_calls,
    run_language,
    score_answer,
    write_jobs,
)
from tests.conftest import API_TOKEN, TWILIO_AUTH_TOKEN, start_server, stop_server

ANSWERS = ("en_mfa_thoughts", "en_call_sheila_1444")
"""Two short English answers (2.1 s and 3.6 s): the call takes about 45 s."""


def test_error_rate_by_words_and_by_characters():
    assert edit_distance("a b c".split(), "a x c d".split()) == 2
    assert error_counts("Well, [laughter] I'm here.", "well im here", "en") == (0, 3)
    assert error_counts("你好世界。", "你好，世界", "zh") == (0, 4)
    assert error_counts("你好世界。", "", "zh") == (4, 4)
    assert error_counts("six", "6.", "en") == (0, 1)  # digits are spelled, as they are said
    assert error_counts("一二三四五六七八九十。", "1234567890", "zh") == (1, 10)


def test_an_answer_cut_by_the_bot_is_scored_as_interrupted():
    answer = next(a for a in load_set() if a.id == "en_mfa_um")  # true end 5.805 s
    turn = TurnRecord(speaker="candidate", start=10.0, end=16.3, answer=answer.id)

    def prompt(t: float, seq: int, prompt_id: str) -> dict:
        return {
            "t": t,
            "event": "prompt_started",
            "mark": f"{seq}:{prompt_id}",
            "prompt_id": prompt_id,
        }

    def said(question_id: str, text: str, start: float, end: float) -> dict:
        return {
            "speaker": "candidate",
            "question_id": question_id,
            "text": text,
            "start": start,
            "end": end,
        }

    events = [
        prompt(6.0, 3, "q:experience"),
        prompt(12.0, 4, "take_your_time"),
        prompt(13.0, 5, "q:availability"),
        {"t": 13.5, "event": "speech_started"},
        {"t": 13.9, "event": "prompt_ended", "mark": "5:q:availability", "interrupted": True},
        {"t": 13.9, "event": "barge_in"},
        {"t": 14.0, "event": "speech_unheard", "secs": 0.25},
        prompt(16.5, 6, "q:availability"),
    ]
    stored = [
        said("experience", "montreal forced", 10.2, 12.5),
        said("availability", "aligner", 13.5, 15.7),
    ]
    outcome = score_answer(answer, turn, 6.3, events, stored)
    assert outcome.interrupted and outcome.latency is None
    assert outcome.interrupting_prompts == ["q:availability@3.00"]
    assert outcome.take_your_time == 1 and outcome.barge_ins == 1
    assert outcome.resume_hear_secs == [0.4] and outcome.overlap_secs == [0.9]
    assert outcome.question_id == "experience" and outcome.heard == "montreal forced"
    assert outcome.wer == 0.5 and outcome.wer_by_time == 0.25  # "um" is not heard either way
    assert outcome.unheard_secs == 0.25


def test_closed_answers_are_played_to_the_closed_question_last():
    answers = load_set()
    english = [a for a in answers if a.language == "en"]
    closed = [a for a in english if a.question == "closed"]
    assert closed, "the set has short answers to closed questions"
    plans = plan_calls(english, {"en": 5}, closed_last=True)
    scored = [a.id for plan in plans for a in plan.scored]
    assert sorted(scored) == sorted(a.id for a in english)  # each answer once
    for plan in plans:
        played = plan.played()
        assert len(played) == 5 + 2  # a clip a question, then the re-ask padding
        last, _ = played[4]
        assert last.question == "closed"  # the closed question gets a closed answer
        assert all(a.question != "closed" for a, scored in played[:4] if scored)
    # Without the harness's jobs every answer goes to the next question, as before.
    plain = plan_calls(english, {"en": 4})
    assert [a.id for plan in plain for a in plan.scored] == [a.id for a in english]


def test_the_harness_jobs_are_the_bundled_ones_with_a_closed_question_last(tmp_path):
    from voicebot.dialogue.script import load_script

    folder = write_jobs(tmp_path / "dialogues")
    for language, job_id in (("en", "turn_eval_en"), ("zh", "turn_eval_zh")):
        script = load_script(folder / f"{job_id}.yaml")
        assert script.id == job_id and script.language == language
        kinds = [q.answer_kind for q in script.questions]
        assert kinds[-1] == "closed" and set(kinds[:-1]) == {"open"}


@pytest.mark.e2e
def test_two_answers_in_one_live_call(tmp_path):
    started = time.monotonic()
    chosen = [a for a in load_set() if a.id in ANSWERS]
    assert len(chosen) == 2
    plans = plan_calls(chosen, {"en": 5}, closed_last=True)
    assert len(plans) == 1 and len(plans[0].scored) == 2 and len(plans[0].padding) == 5
    server = start_server(
        tmp_path,
        VOICEBOT_TURN_POLICY="words",
        VOICEBOT_DIALOGUES_DIR=str(write_jobs(tmp_path / "dialogues", ["en"])),
    )
    try:
        endpoint = Endpoint(server.url, API_TOKEN, TWILIO_AUTH_TOKEN, server.recordings_dir)
        calls = run_language(endpoint, chosen, "en", 1, progress=False)
    finally:
        stop_server(server)
    report = build_report(
        calls, settings={"policy": "words", "concurrency": 1}, wall_secs=time.monotonic() - started
    )
    assert report["calls_placed"] == 1 and report["failed_calls"] == []
    summary = report["summary"]
    splits = {a.split for a in chosen}  # the set is still being built: splits may move
    assert set(summary) == {"en", "all"} | splits | {f"en/{split}" for split in splits}
    for field in (
        "answers",
        "interruptions_per_100",
        "latency_p50",
        "latency_p95",
        "resume_hear_p95",
        "error_rate",
        "unheard_secs",
        "skipped_or_reprompted",
        "voice_to_voice_p50",
    ):
        assert field in summary["all"], field
    assert summary["all"]["answers"] == 2 and summary["all"]["error_unit"] == "WER"
    outcomes = report["outcomes"]
    assert sorted(o["id"] for o in outcomes) == sorted(ANSWERS)  # padding is not scored
    for o in outcomes:
        assert o["played"] and o["stored_turns"] >= 1 and o["heard"], o
        assert o["wer"] is not None and o["wer"] < 1.0, o
        assert o["unheard_secs"] == 0, o
        assert o["interrupted"] or o["latency"] is not None, o
    assert "| en | 2 |" in markdown(report)
