"""The resume benchmark's plan and scoring (the live run is tests/e2e/test_resume_over_reply.py)."""

from __future__ import annotations

import pytest

from loadtest import resume_live
from loadtest.caller import CallResult, TurnRecord
from loadtest.resume_live import Probe, plan_resume_calls, score_probe, word_recall
from loadtest.turn_bench import load_set


def test_every_clip_is_played_once_over_a_reply_in_calls_of_one_probe_a_question_but_the_last():
    answers = [a for a in load_set() if a.language == "en"]
    plans = plan_resume_calls(answers, {"en": 5})
    thens = [p.then.id for plan in plans for p in plan.probes]
    assert sorted(thens) == sorted(a.id for a in answers)
    for plan in plans:
        assert 1 <= len(plan.probes) <= 4 and plan.job_id == "turn_eval_en"
        assert plan.closing.question == "closed"
        for probe in plan.probes:  # A: a short open answer, long enough to be heard
            assert probe.first.question == "open" and 1.5 <= probe.first.answer_end <= 4.0
        # The consent key is answer 0; A of probe q is 2q + 1 and B, over the reply, 2q + 2.
        assert plan.barge_in() == {2 * (q + 1): p.delay for q, p in enumerate(plan.probes)}
        names = [name for _, name in plan.clips()]
        assert names[0].startswith("A0:") and names[1].startswith("B0:")
        assert names[2 * len(plan.probes)].startswith("closing:")


def test_word_recall_counts_what_reached_the_turns_not_the_asr_s_insertions():
    assert word_recall("Neither did I.", "neither did i", "en") == 1.0
    assert word_recall("montreal forced aligner", "aligner montreal 4th aligner", "en") == 0.667
    assert word_recall("Hello?", "Goodbye.", "en") == 0.0
    assert word_recall("三年", "我工作了三年。", "zh") == 1.0


@pytest.fixture
def no_vad(monkeypatch):
    """Clip B's voice starts 0.2 s in (what Silero would say), without running it."""
    monkeypatch.setattr(resume_live, "voice_start", lambda answer: 0.2)


def _prompt(t: float, seq: int, prompt_id: str) -> dict:
    return {"t": t, "event": "prompt_started", "mark": f"{seq}:{prompt_id}", "prompt_id": prompt_id}


def _said(question_id: str, text: str, start: float, end: float) -> dict:
    return {"speaker": "candidate", "question_id": question_id, "text": text, "start": start,
            "end": end}  # fmt: skip


def test_a_probe_the_bot_stopped_for_and_asked_again_after(no_vad):
    clips = {a.id: a for a in load_set()}
    first, then = clips["en_call_diane_1078"], clips["en_call_diane_0843"]  # B ends at 1.6 s
    probe = Probe(first, then, 0.3)
    result = CallResult(
        call_sid="CA1",
        turns=[
            TurnRecord(speaker="bot", start=6.0, end=9.0),
            TurnRecord(speaker="candidate", start=9.3, end=13.0, answer=f"A0:{first.id}"),
            TurnRecord(speaker="bot", start=15.7, end=16.28, interrupted=True),
            TurnRecord(speaker="candidate", start=16.0, end=18.0, answer=f"B0:{then.id}"),
        ],
        clears=[16.28],
    )
    events = [
        _prompt(6.0, 3, "q:experience"),
        _prompt(15.7, 5, "q:availability"),
        {"t": 16.28, "event": "barge_in", "cut": [{"prompt_id": "q:availability"}]},
        _prompt(20.4, 6, "q:availability"),
    ]
    stored = [
        _said("experience", "I heard of the, this is Diane in New Jersey.", 9.3, 12.9),
        _said("experience", "Oh, hello, I didn't know you were there.", 16.1, 17.6),
    ]
    outcome = score_probe(probe, 0, result, events, stored)
    assert outcome.played and outcome.stopped
    assert outcome.heard_over_secs == pytest.approx(0.08)  # clear 16.28 - voice 16.2
    assert outcome.server_reaction_secs == pytest.approx(0.08)
    assert outcome.cut_prompt == "q:availability"
    assert outcome.asked_again_after == pytest.approx(20.4 - (16.0 + then.answer_end), abs=1e-3)
    assert outcome.same_question and outcome.recall_then == 1.0
    assert outcome.talked_over == [] and outcome.skipped_or_reprompted == []


def test_a_probe_talked_over_and_stored_under_the_next_question_is_scored_so(no_vad):
    clips = {a.id: a for a in load_set()}
    first, then = clips["en_call_diane_1078"], clips["en_mfa_internalsil"]  # B ends at 9.5 s
    result = CallResult(
        call_sid="CA1",
        turns=[
            TurnRecord(speaker="candidate", start=9.3, end=13.0, answer=f"A0:{first.id}"),
            TurnRecord(speaker="bot", start=15.7, end=18.0),  # never stopped
            TurnRecord(speaker="candidate", start=16.0, end=26.0, answer=f"B0:{then.id}"),
        ],
    )
    events = [
        _prompt(6.0, 3, "q:experience"),
        _prompt(15.7, 5, "q:call-centre"),
        _prompt(19.0, 6, "q:call-centre"),  # said again while B still speaks
        {"t": 21.0, "event": "speech_unheard", "secs": 0.4},
    ]
    stored = [
        _said("experience", "I heard of the, this is Diane in New Jersey.", 9.3, 12.9),
        _said("call-centre", "Montreal forced aligner.", 16.1, 25.0),
    ]
    outcome = score_probe(Probe(first, then, 1.0), 0, result, events, stored)
    assert not outcome.stopped and outcome.heard_over_secs == pytest.approx(1.8)
    assert not outcome.same_question
    assert outcome.stored_questions == ["experience", "call-centre"]
    assert outcome.recall_then == 0.0  # not under the question it continued
    assert outcome.talked_over == ["q:call-centre@3.00"]
    assert outcome.unheard_secs == 0.4
