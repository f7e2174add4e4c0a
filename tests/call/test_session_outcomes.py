"""A call's outcomes reach the store and the report: follow-ups, knock-outs, keypad answers,
repeats, opt-outs (also late, inside a pre-started answer), and the report with scores.

Same fakes as tests/call/test_session.py (energy VAD, scripted ASR, tone prompts); the store,
engine, scoring and report are the real ones.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.call.test_session import (
    SILENCE,
    Harness,
    ScriptedASR,
    _services,
    candidate_answers,
)
from tests.call.test_session import make_call as make_session_call
from voicebot.dialogue.script import JobScript

SCRIPT = JobScript.model_validate(
    {
        "id": "outcomes_job",
        "title": "Outcomes job",
        "language": "en",
        "greeting": "Hi, I am an AI assistant and this call is recorded.",
        "consent_question": "Do you agree?",
        "consent_declined": "Understood, goodbye.",
        "consent_unclear": "Please say yes or no.",
        "competencies": [
            {
                "id": "service",
                "name": "Customer service",
                "weight": 1,
                "keywords": ["customer", "refund"],
                "rubric": [
                    {"score": 20, "description": "No example"},
                    {"score": 60, "description": "Mentions customers", "evidence": ["customer"]},
                    {
                        "score": 90,
                        "description": "Resolved a problem",
                        "evidence": ["refund", "resolved"],
                        "min_matches": 2,
                    },
                ],
                "improvement_tip": "Prepare an example of a customer problem you solved.",
            }
        ],
        "questions": [
            {
                "id": "story",
                "prompt": "Tell me about a customer you helped.",
                "competency": "service",
                "follow_up": {"prompt": "Could you give an example?", "min_words": 6},
            },
            {
                "id": "nights",
                "prompt": "Can you work nights? Press 1 for yes, 2 for no.",
                "knockout": {"expected": "yes"},
                "dtmf": {"1": "yes", "2": "no"},
            },
            {
                "id": "slot",
                "prompt": "Monday at ten? Press 1 to confirm.",
                "dtmf": {"1": "confirmed Monday 10:00", "2": "another time"},
            },
        ],
        "closing": "Thank you, goodbye.",
        "reprompt": "Are you still there?",
        "no_response_goodbye": "We will try again later. Goodbye.",
        "silence_timeout_secs": 0.6,
    }
)

STRONG = "A customer was angry about a refund, I resolved it the same day and she thanked me."


@pytest.fixture
async def services(tmp_path):
    async with _services(tmp_path) as built:
        built.scripts = {SCRIPT.id: SCRIPT}
        yield built


async def make_call(services, texts, asr=None) -> Harness:
    return await make_session_call(services, texts, job_id=SCRIPT.id, asr=asr)


async def test_follow_up_knockout_and_keypad_answers_end_in_a_report(services):
    call = await make_call(services, ["yes", "It went fine.", STRONG])
    await call.wait_for_mark("consent:await")
    await call.speak(0.4)
    await call.wait_for_mark("q:story:await")
    await call.speak(0.8)  # too short: the follow-up comes
    await call.wait_for_mark("f:story:await")
    await call.speak(0.8)
    await call.wait_for_mark("q:nights:await")
    await call.dtmf("1")  # passes the knock-out by keypad
    await call.wait_for_mark("q:slot:await")
    await call.dtmf("1")
    await call.run_out()
    stored = await services.store.get_call("CA1")
    assert stored["end_reason"] == "completed"
    assert candidate_answers(stored) == [
        (None, "yes"),
        ("story", "It went fine."),
        ("story", STRONG),
        ("nights", "yes"),
        ("slot", "confirmed Monday 10:00"),
    ]
    turns = [t for t in stored["turns"] if t["speaker"] == "candidate"]
    assert [t["follow_up"] for t in turns] == [False, False, True, False, False]
    assert [t["via"] for t in turns] == ["voice", "voice", "voice", "dtmf", "dtmf"]
    assert stored["outcome"]["knockouts"]["nights"]["passed"] is True

    interview = await services.store.get_interview(call.interview_id)
    assert interview["status"] == "completed"
    assert [h["status"] for h in interview["status_history"]] == [
        "pending",
        "in_progress",
        "scoring",
        "completed",
    ]
    report = interview["report"]
    assert report["human_review_required"] is True
    story = next(q for q in report["questions"] if q["id"] == "story")
    assert story["answer"] == "It went fine." and story["follow_up_answer"] == STRONG
    service = report["scores"]["competencies"][0]
    assert service["score"] >= 90  # the follow-up's answer earned the top level
    assert any("refund" in e["quote"] for e in service["evidence"])
    assert report["questions"][1]["knockout"]["passed"] is True
    assert report["questions"][2]["via"] == "dtmf"


async def test_failed_knockout_by_voice_ends_the_call_and_the_report_says_reject(services):
    call = await make_call(services, ["yes", STRONG, "No, I can't work nights."])
    await call.wait_for_mark("consent:await")
    await call.speak(0.4)
    await call.wait_for_mark("q:story:await")
    await call.speak(0.8)
    await call.wait_for_mark("q:nights:await")
    await call.speak(0.8)
    await call.wait_for_mark("knockout_goodbye")
    await call.run_out()
    stored = await services.store.get_call("CA1")
    assert stored["end_reason"] == "knocked_out"
    assert stored["outcome"]["knockouts"]["nights"] == {
        "question_id": "nights",
        "expected": "yes",
        "answer": "no",
        "passed": False,
        "via": "voice",
    }
    interview = await services.store.get_interview(call.interview_id)
    assert interview["status"] == "knocked_out"
    assert interview["report"]["recommendation"] == "reject"
    assert interview["report"]["questions"][1]["knockout"]["passed"] is False


async def test_repeat_request_replays_the_question_and_is_not_an_answer(services):
    call = await make_call(services, ["yes", "Sorry, can you repeat that?", STRONG])
    await call.wait_for_mark("consent:await")
    await call.speak(0.4)
    await call.wait_for_mark("q:story:await")
    await call.speak(0.6)
    await call.wait_for_mark("q:story:await")  # asked again, after "Sure, here it is again."
    assert SCRIPT.repeat_intro in services.prompts.said
    await call.speak(0.8)
    await call.wait_for_mark("q:nights:await")
    await call.hang_up()
    await call.reports_stored()
    interview = await services.store.get_interview(call.interview_id)
    story = next(q for q in interview["report"]["questions"] if q["id"] == "story")
    assert story["answer"].endswith(STRONG)


async def test_opt_out_is_honoured_and_recorded(services):
    store = services.store
    other_job, _ = await store.create_interview(job_id="other", candidate_id="c1")
    held, _ = await store.create_interview(job_id="held", candidate_id="c1")
    await store.update_interview(held["id"], status="completed")
    someone_else, _ = await store.create_interview(job_id="other", candidate_id="c2")
    call = await make_call(services, ["yes", "Please don't call me again."])
    await call.wait_for_mark("consent:await")
    await call.speak(0.4)
    await call.wait_for_mark("q:story:await")
    await call.speak(0.8)
    await call.wait_for_mark("opt_out_goodbye")
    await call.run_out()
    stored = await services.store.get_call("CA1")
    assert stored["end_reason"] == "opted_out"
    assert stored["outcome"]["opt_out"]["request"]["question_id"] == "story"
    interview = await services.store.get_interview(call.interview_id)
    assert interview["status"] == "opted_out" and interview["opted_out"] is True
    assert interview["report"]["opted_out"] is True
    # Not to be called again: the candidate's other interviews still to be held are closed too.
    assert (await store.get_interview(other_job["id"]))["status"] == "opted_out"
    assert (await store.get_interview(held["id"]))["status"] == "completed"
    assert (await store.get_interview(someone_else["id"]))["status"] == "pending"


async def test_opt_out_inside_a_prestarted_answer_still_ends_the_call(tmp_path):
    """The last question has no follow-up, so a long answer starts the closing at once; when its
    words turn out to be an opt-out, the call ends with the opt-out goodbye instead."""
    script = JobScript.model_validate(
        {
            **SCRIPT.model_dump(),
            "questions": [{"id": "open", "prompt": "Anything else?"}],
            "competencies": [],
        }
    )
    async with _services(tmp_path, prestart_min_speech_secs=0.5) as services:
        services.scripts = {script.id: script}
        interview, _ = await services.store.create_interview(job_id=script.id, candidate_id="c")
        services.asr = ScriptedASR(["yes", "I don't want to continue, stop calling me please."])
        call = Harness(services, interview["id"], services.asr)
        await call.start()
        await call.wait_for_mark("consent:await")
        await call.speak(0.4)
        await call.wait_for_mark("q:open:await")
        services.asr.delay_secs = 0.5  # the closing starts before the words are known
        await call.speak(0.8)
        await call.wait_for_mark("opt_out_goodbye", limit_secs=3)
        await call.run_out()
        stored = await services.store.get_call("CA1")
        assert stored["end_reason"] == "opted_out"
        assert (await services.store.get_interview(interview["id"]))["opted_out"] is True


async def test_a_watched_call_streams_position_transcripts_and_prosody_live(services):
    with services.live.subscribe() as watcher:  # every call, as the monitor would
        call = await make_call(services, ["yes", STRONG])
        await call.wait_for_mark("consent:await")
        await call.speak(0.4)
        await call.wait_for_mark("q:story:await")
        await call.speak(1.6)
        await call.wait_for_mark("q:nights:await")
        for _ in range(100):  # two seconds of thinking in silence
            await call.media(SILENCE)
            await asyncio.sleep(0.02)
        await call.hang_up()
        await call.reports_stored()
        events = []
        while not watcher.queue.empty():
            events.append(watcher.queue.get_nowait())
    kinds = [e["type"] for e in events]
    assert kinds[0] == "call.started" and kinds[-1] == "call.ended"
    positions = [e["data"] for e in events if e["type"] == "script.position"]
    assert [p["question_id"] for p in positions][:3] == [None, "story", "nights"]
    assert positions[1]["question_index"] == 0 and positions[1]["question_count"] == 3
    finals = [e["data"] for e in events if e["type"] == "transcript.final"]
    assert finals[-1] == {
        "text": STRONG,
        "question_id": "story",
        "start": finals[-1]["start"],
        "end": finals[-1]["end"],
    }
    partials = [e["data"] for e in events if e["type"] == "transcript.partial"]
    assert partials, "a watched answer streams interim words"
    assert all(STRONG.startswith(p["text"]) for p in partials)
    assert partials[-1]["question_id"] == "story"
    scores = [e["data"] for e in events if e["type"] == "scores.updated"]
    assert scores and scores[-1]["questions_answered"] == 1
    assert scores[-1]["recommendation"] is None  # no suggestion before the last answer
    answered = [c for c in scores[-1]["competencies"] if c["answered"]]
    # the running overall is a mean of the answered competencies only, not dragged to 0
    assert min(c["score"] for c in answered) <= scores[-1]["overall"]
    assert scores[-1]["overall"] <= max(c["score"] for c in answered)
    assert any(c["score"] is not None for c in scores[-1]["competencies"])
    assert all(c["score"] is None for c in scores[-1]["competencies"] if not c["answered"])
    speaking = [e["data"] for e in events if e["type"] == "bot.speaking"]
    assert speaking[0]["text"] and speaking[0]["response_latency"] is None
    assert any(s["response_latency"] is not None for s in speaking[1:])
    samples = [e["data"] for e in events if e["type"] == "prosody.sample"]
    assert len(samples) >= 4  # every half second of the call
    assert any(s["speaking"] for s in samples) and any(not s["speaking"] for s in samples)
    loud = max(s["loudness_dbfs"] for s in samples)
    quiet = min(s["loudness_dbfs"] for s in samples)
    assert loud > quiet + 20  # the meter follows the candidate's voice
    assert all(e["call_sid"] == "CA1" for e in events)


async def test_a_watched_chinese_call_meters_characters_a_minute_from_its_first_sample(services):
    """The monitor shows a Chinese call's rate in 字/分钟 before any words came, not wpm."""
    chinese = JobScript.model_validate(
        {
            **SCRIPT.model_dump(),
            "id": "zh_job",
            "language": "zh",
            "greeting": "您好，我是AI智能助理，本次通话会录音。",
        }
    )
    services.scripts[chinese.id] = chinese
    with services.live.subscribe() as watcher:
        call = await make_session_call(services, ["可以"], job_id=chinese.id)
        await call.wait_for_mark("consent:await")
        for _ in range(40):  # the candidate listens: no words, no rate yet
            await call.media(SILENCE)
            await asyncio.sleep(0.02)
        await call.hang_up()
        events = []
        while not watcher.queue.empty():
            events.append(watcher.queue.get_nowait())
    samples = [e["data"] for e in events if e["type"] == "prosody.sample"]
    assert samples, "a watched call is metered"
    assert {s["rate_unit"] for s in samples} == {"cpm"}
    assert all(s["speech_rate_wpm"] is None for s in samples)


async def test_an_unwatched_call_computes_no_live_prosody(services):
    call = await make_call(services, ["yes"])
    await call.wait_for_mark("consent:await")
    await call.speak(0.4)
    await call.wait_for_mark("q:story:await")
    session = services.sessions["CA1"]
    assert session._meter is None
    await call.hang_up()


class LengthASR(ScriptedASR):
    """Transcribes by length: the answer's beginning, or all of it (Whisper delayed)."""

    def __init__(self, beginning: str, whole: str, whole_after_secs: float):
        super().__init__([])
        self.beginning, self.whole, self.whole_after_secs = beginning, whole, whole_after_secs
        self.calls: list[float] = []

    async def transcribe(self, audio, language, priority=None, **_):
        from voicebot.speech.asr import ASRResult, Priority

        secs = len(audio) / 16000
        self.calls.append(round(secs, 2))
        if secs < 1.0:
            text, delay = "yes", 0.05
        elif secs < self.whole_after_secs:
            text, delay = self.beginning, 0.05
        else:
            text, delay = self.whole, 1.0  # the final is slow: Whisper is behind
        await asyncio.sleep(delay)
        return ASRResult(text, language, secs, delay, 0.0, priority or Priority.FINAL)


async def speak_with_a_pause(call, first_secs, then_secs):
    await call.speak(first_secs)
    for _ in range(8):  # 160 ms: a pause, not the end of the turn
        await call.media(SILENCE)
        await asyncio.sleep(0.02)
    await call.speak(then_secs)


async def answer_the_story_at_length(services, asr) -> Harness:
    """Consent, then a 5.3 s answer to the question with a follow-up, pausing after 4.3 s."""
    call = await make_call(services, [], asr=asr)
    await call.wait_for_mark("consent:await")
    await call.speak(0.4)
    await call.wait_for_mark("q:story:await")
    await speak_with_a_pause(call, 4.3, 1.0)
    return call


async def test_a_beginning_that_rules_out_the_follow_up_lets_the_next_question_start_at_once(
    services,
):
    asr = LengthASR(STRONG, STRONG + " And I would do it again.", whole_after_secs=5.2)
    call = await answer_the_story_at_length(services, asr)
    # The next question starts with the end of the turn, before the (slow) final transcript.
    await call.wait_for_mark("q:nights:await", limit_secs=0.8)
    stored = await services.store.get_call("CA1")
    assert [t["question_id"] for t in stored["turns"] if t["speaker"] == "candidate"] == [None]
    await call.dtmf("2")
    await call.run_out()
    stored = await services.store.get_call("CA1")
    assert ("story", STRONG + " And I would do it again.") in candidate_answers(stored)
    assert not any(t["prompt_id"] == "f:story" for t in stored["turns"])
    assert services.metrics.prefixes.labels("settled")._value.get() == 1


async def test_a_beginning_without_the_evidence_waits_for_the_words(services):
    vague = "Well I have worked in many places over the years and I always try hard every day."
    call = await answer_the_story_at_length(
        services, LengthASR(vague, vague + " That is all.", whole_after_secs=5.2)
    )
    # No evidence so far: the follow-up may be needed, so the bot waits for all the words.
    await call.wait_for_mark("f:story:await", limit_secs=3)
    assert services.metrics.prefixes.labels("unsettled")._value.get() == 1
    await call.hang_up()


class SlowPrompts:
    """Prompts of one second, so the candidate can talk over one."""

    def __init__(self):
        from tests.call.test_session import TONE

        self.said = []
        self.audio = TONE * 50

    async def get(self, text, *, language, voice=None):
        self.said.append(text)
        return self.audio


async def test_talking_on_over_the_next_question_continues_the_answer(services):
    """The end of a turn was false (a pause mid-answer) and the next question came after the
    words: the candidate talking on over it at once is still answering, not answering it."""
    services.prompts = SlowPrompts()
    call = await make_call(services, ["yes", STRONG, "and I would do it again", "yes"])
    await call.wait_for_mark("consent:await")
    await call.speak(0.4)
    await call.wait_for_mark("q:story:await")
    await call.speak(0.8)
    await call.silence(0.45)  # the turn ends, the words come, the next question starts...
    await call.speak(0.8)  # ...and the candidate goes on talking over it
    await call.wait_for_mark("q:nights:await", limit_secs=4)  # said again, whole
    await call.speak(0.4)
    await call.wait_for_mark("q:slot:await", limit_secs=4)
    await call.hang_up()
    await call.reports_stored()
    stored = await services.store.get_call("CA1")
    assert candidate_answers(stored)[1:] == [
        ("story", STRONG),
        ("story", "and I would do it again"),
        ("nights", "yes"),
    ]
    cut = [t for t in stored["turns"] if t["speaker"] == "bot" and t["interrupted"]]
    assert [t["prompt_id"] for t in cut] == ["q:nights"]


async def test_reports_a_previous_process_left_unbuilt_are_built_at_start(services):
    """The server stopped between a call's end and its report: nothing is lost."""
    store = services.store
    interview, _ = await store.create_interview(job_id=SCRIPT.id, candidate_id="c9")
    await store.create_call(call_sid="CA9", interview_id=interview["id"])
    await store.add_turn(
        call_sid="CA9",
        seq=1,
        speaker="candidate",
        text=STRONG,
        start=1.0,
        end=4.0,
        question_id="story",
    )
    await store.finish_call(
        "CA9", status="completed", end_reason="caller_hangup", duration_secs=5.0
    )
    await store.update_interview(interview["id"], status="scoring")
    assert await services.resume_reports() == 1
    while services.reports:
        await asyncio.wait(set(services.reports))
    stored = await store.get_interview(interview["id"])
    assert stored["status"] == "incomplete"  # hung up early: may be called again
    assert stored["report"]["questions"][0]["answer"] == STRONG
    assert await services.resume_reports() == 0
