"""End to end: a candidate who goes on just as the bot starts its reply is not talked over.

Real speech from the turn-taking evaluation set through the real phone path and models, over
real sockets, driven by the resume benchmark's own probes (:mod:`loadtest.resume_live`): an
answer, then, as the next question starts playing, more of the answer over it. The first probe
goes on with a quiet one-word "Hello?" that the VAD scores too short for a turn (the hearing
check takes it in); the second with a sentence. How fast the bot goes quiet is a benchmark
figure (docs/PERFORMANCE.md), not asserted here; what a person would notice is: the bot stops,
what they said stays with the answer they were giving, the question is asked again only once
they are done, and nothing they said is lost or taken for the next question's answer.
"""

from __future__ import annotations

import asyncio

import pytest

from loadtest.resume_live import Probe, ResumePlan, place_resume_call
from loadtest.turn_bench import load_set
from loadtest.turn_live import Endpoint
from tests.conftest import API_TOKEN, TWILIO_AUTH_TOKEN

pytestmark = pytest.mark.e2e

JOB = "customer_service_en"  # four open questions


@pytest.fixture(scope="module")
def resumed(server):
    clips = {a.id: a for a in load_set()}
    plan = ResumePlan(
        "en",
        JOB,
        probes=[
            # "Oh, hello, I didn't know you were there." then a quiet "Hello?" 0.1 s into the reply
            Probe(clips["en_call_diane_0843"], clips["en_call_diane_0668"], 0.1),
            # "I heard of the, this is Diane in New Jersey." then a sentence 0.3 s into the reply
            Probe(clips["en_call_diane_1078"], clips["en_call_diane_1778"], 0.3),
        ],
        closing=clips["en_mfa_erpause"],
        padding=[clips["en_mfa_whatscalled"], clips["en_mfa_youknow"]],
    )
    endpoint = Endpoint(server.url, API_TOKEN, TWILIO_AUTH_TOKEN, server.recordings_dir)
    result, outcomes = asyncio.run(place_resume_call(endpoint, plan, 0))
    assert result.error is None, result.problems
    return {"result": result, "outcomes": outcomes, "call": server.wait_for_call(result.call_sid)}


def test_the_bot_stops_when_the_candidate_goes_on_over_its_reply(resumed):
    for probe in resumed["outcomes"]:
        assert probe.played, probe.problem
        assert probe.stopped, f"{probe.then}: the bot's reply was not stopped ({probe})"
        assert probe.cut_prompt is not None and probe.cut_prompt.startswith("q:")


def test_what_they_said_over_it_stays_with_the_answer_they_were_giving(resumed):
    for probe in resumed["outcomes"]:
        # Every candidate turn from the answer's start to the end of what they added is stored
        # under the answer's question (not the next one), and the added words are there.
        assert probe.same_question, (probe.then, probe.stored_questions, probe.heard)
        assert probe.recall_then is not None and probe.recall_then >= 0.5, (probe.then, probe.heard)
        assert probe.unheard_secs == 0.0


def test_the_cut_question_is_asked_again_only_once_they_are_done(resumed):
    for probe in resumed["outcomes"]:
        assert probe.asked_again_after is not None, f"{probe.cut_prompt} never asked again"
        assert probe.asked_again_after > -0.05, (probe.then, probe.asked_again_after)
        assert probe.talked_over == [] and probe.skipped_or_reprompted == [], probe


def test_every_question_is_answered_in_turn_and_the_call_completes(resumed):
    call = resumed["call"]
    questions = [
        t["question_id"] for t in call["turns"] if t["speaker"] == "candidate" and t["question_id"]
    ]
    # Each question's answers are stored together, in the script's order: nothing said over a
    # reply was taken as the next question's answer (which would skip it).
    order = list(dict.fromkeys(questions))
    assert order == ["experience", "difficult-customer", "availability", "why-this-role"]
    assert questions == sorted(questions, key=order.index)
    assert call["status"] == "completed" and call["end_reason"] == "completed"
    prompts = [t["prompt_id"] for t in call["turns"] if t["speaker"] == "bot"]
    assert "reprompt" not in prompts and "move_on" not in prompts, prompts
