"""Tests for the interview engine: every path of a call, as events in and actions out."""

from pathlib import Path

import pytest

from voicebot.dialogue.engine import (
    AnswerRecorded,
    CallerHungUp,
    CandidateSaid,
    ConsentRecorded,
    DtmfPressed,
    EndCall,
    InterviewEngine,
    Listen,
    QuestionSkipped,
    Say,
    SilenceTimeout,
)
from voicebot.dialogue.script import JobScript, load_script

DIALOGUES = Path(__file__).resolve().parents[2] / "dialogues"


def make_script(**overrides: object) -> JobScript:
    data: dict[str, object] = {
        "id": "test-job",
        "title": "Test Job",
        "language": "en",
        "greeting": "Hi, I'm an AI assistant. This call is recorded.",
        "consent_question": "Do you agree? Say yes or press 1; no or press 2.",
        "consent_declined": "Understood, goodbye.",
        "consent_unclear": "Sorry, yes or no?",
        "questions": [
            {"id": "experience", "prompt": "Your experience?"},
            {"id": "availability", "prompt": "When can you work?", "max_answer_secs": 30},
        ],
        "closing": "Thanks, a recruiter will call. Goodbye.",
        "reprompt": "Are you still there?",
        "no_response_goodbye": "I can't hear you. Goodbye.",
        "silence_timeout_secs": 5.0,
    }
    data.update(overrides)
    return JobScript.model_validate(data)


@pytest.fixture
def script() -> JobScript:
    return make_script()


@pytest.fixture
def engine(script: JobScript) -> InterviewEngine:
    return InterviewEngine(script)


def say_ids(actions: list) -> list[str]:
    return [action.prompt_id for action in actions if isinstance(action, Say)]


def consented(engine: InterviewEngine) -> InterviewEngine:
    engine.start()
    engine.handle(CandidateSaid("Yes, sure."))
    return engine


def test_start_discloses_then_asks_consent_then_listens(engine: InterviewEngine) -> None:
    assert engine.state == "not_started"
    actions = engine.start()
    assert actions == [
        Say("greeting", "Hi, I'm an AI assistant. This call is recorded."),
        Say("consent", "Do you agree? Say yes or press 1; no or press 2."),
        Listen(timeout_secs=5.0, question_id=None, max_answer_secs=90.0),
    ]
    assert engine.state == "consent"
    assert engine.current_question is None


def test_happy_path_by_voice(engine: InterviewEngine) -> None:
    engine.start()
    actions = engine.handle(CandidateSaid("Yeah, go ahead."))
    assert actions == [
        ConsentRecorded(granted=True, via="voice", text="Yeah, go ahead."),
        Say("q:experience", "Your experience?"),
        Listen(timeout_secs=5.0, question_id="experience", max_answer_secs=90.0),
    ]
    assert engine.state == "question"
    assert engine.current_question is not None and engine.current_question.id == "experience"
    assert (engine.question_index, engine.question_count) == (0, 2)

    actions = engine.handle(CandidateSaid("Three years in a call centre."))
    assert actions == [
        AnswerRecorded("experience", "Three years in a call centre."),
        Say("q:availability", "When can you work?"),
        Listen(timeout_secs=5.0, question_id="availability", max_answer_secs=30.0),
    ]
    assert engine.question_index == 1
    assert engine.answers_recorded == 1

    actions = engine.handle(CandidateSaid("Weekdays, nine to five."))
    assert actions == [
        AnswerRecorded("availability", "Weekdays, nine to five."),
        Say("closing", "Thanks, a recruiter will call. Goodbye."),
        EndCall("completed"),
    ]
    assert engine.ended and engine.state == "ended" and engine.end_reason == "completed"
    assert engine.current_question is None and engine.question_index is None
    assert engine.answers_recorded == 2


def test_dtmf_1_gives_consent(engine: InterviewEngine) -> None:
    engine.start()
    actions = engine.handle(DtmfPressed("1"))
    assert actions[0] == ConsentRecorded(granted=True, via="dtmf", text="1")
    assert say_ids(actions) == ["q:experience"]
    assert isinstance(actions[-1], Listen)


def test_dtmf_2_declines_politely(engine: InterviewEngine) -> None:
    engine.start()
    actions = engine.handle(DtmfPressed("2"))
    assert actions == [
        ConsentRecorded(granted=False, via="dtmf", text="2"),
        Say("consent_declined", "Understood, goodbye."),
        EndCall("consent_declined"),
    ]
    assert engine.ended


def test_voice_refusal_asks_no_question(engine: InterviewEngine) -> None:
    engine.start()
    actions = engine.handle(CandidateSaid("No, I don't agree."))
    assert actions == [
        ConsentRecorded(granted=False, via="voice", text="No, I don't agree."),
        Say("consent_declined", "Understood, goodbye."),
        EndCall("consent_declined"),
    ]
    assert not any(prompt.startswith("q:") for prompt in say_ids(actions))


def test_unclear_consent_is_asked_again_once_then_yes(engine: InterviewEngine) -> None:
    engine.start()
    actions = engine.handle(CandidateSaid("Hmm, what?"))
    assert actions == [
        Say("consent_unclear", "Sorry, yes or no?"),
        Listen(timeout_secs=5.0, question_id=None, max_answer_secs=90.0),
    ]
    assert engine.state == "consent"
    actions = engine.handle(CandidateSaid("Okay, yes."))
    assert actions[0] == ConsentRecorded(granted=True, via="voice", text="Okay, yes.")
    assert engine.state == "question"


def test_unclear_twice_counts_as_declined(engine: InterviewEngine) -> None:
    engine.start()
    engine.handle(CandidateSaid("What is this about?"))
    actions = engine.handle(CandidateSaid("I'm not sure."))
    assert actions == [
        ConsentRecorded(granted=False, via="voice", text="I'm not sure."),
        Say("consent_declined", "Understood, goodbye."),
        EndCall("consent_declined"),
    ]
    assert engine.end_reason == "consent_declined"


def test_other_key_during_consent_is_unclear(engine: InterviewEngine) -> None:
    engine.start()
    assert say_ids(engine.handle(DtmfPressed("5"))) == ["consent_unclear"]
    actions = engine.handle(DtmfPressed("#"))
    assert actions[0] == ConsentRecorded(granted=False, via="dtmf", text="#")
    assert actions[-1] == EndCall("consent_declined")


def test_chinese_script_classifies_chinese_consent() -> None:
    engine = InterviewEngine(load_script(DIALOGUES / "customer_service_zh.yaml"))
    engine.start()
    actions = engine.handle(CandidateSaid("好的，可以。"))
    assert actions[0] == ConsentRecorded(granted=True, via="voice", text="好的，可以。")


def test_silence_during_consent_reprompts_then_gives_up(engine: InterviewEngine) -> None:
    engine.start()
    actions = engine.handle(SilenceTimeout())
    assert actions == [
        Say("reprompt", "Are you still there?"),
        Say("consent", "Do you agree? Say yes or press 1; no or press 2."),
        Listen(timeout_secs=5.0, question_id=None, max_answer_secs=90.0),
    ]
    actions = engine.handle(SilenceTimeout())
    assert actions == [
        Say("no_response_goodbye", "I can't hear you. Goodbye."),
        EndCall("no_response"),
    ]
    assert not any(isinstance(action, ConsentRecorded) for action in actions)
    assert engine.end_reason == "no_response"


def test_silence_during_a_question_repeats_that_question(engine: InterviewEngine) -> None:
    consented(engine)
    engine.handle(CandidateSaid("Three years."))
    actions = engine.handle(SilenceTimeout())
    assert say_ids(actions) == ["reprompt", "q:availability"]
    assert actions[-1] == Listen(timeout_secs=5.0, question_id="availability", max_answer_secs=30.0)
    # The last question stays unanswered: the bot moves on to the closing.
    actions = engine.handle(SilenceTimeout())
    assert QuestionSkipped("availability") in actions
    assert say_ids(actions) == ["closing"]
    assert engine.end_reason == "completed"


def test_silence_moves_on_then_gives_up_after_skipped_questions(engine: InterviewEngine) -> None:
    consented(engine)
    assert say_ids(engine.handle(SilenceTimeout())) == ["reprompt", "q:experience"]
    actions = engine.handle(SilenceTimeout())
    assert actions[0] == QuestionSkipped("experience")
    assert say_ids(actions) == ["move_on", "q:availability"]
    assert engine.current_question is not None and engine.current_question.id == "availability"
    assert say_ids(engine.handle(SilenceTimeout())) == ["reprompt", "q:availability"]
    # A second question in a row without an answer: the candidate is gone.
    assert say_ids(engine.handle(SilenceTimeout())) == ["no_response_goodbye"]
    assert engine.end_reason == "no_response"


def test_an_answer_resets_the_skipped_questions() -> None:
    script = make_script(
        questions=[{"id": f"q{n}", "prompt": f"Question {n}?"} for n in range(4)],
    )
    engine = consented(InterviewEngine(script))
    engine.handle(SilenceTimeout())
    assert QuestionSkipped("q0") in engine.handle(SilenceTimeout())
    engine.handle(CandidateSaid("An answer to the second question."))
    engine.handle(SilenceTimeout())
    assert QuestionSkipped("q2") in engine.handle(SilenceTimeout())
    assert not engine.ended


def test_zero_skipped_questions_ends_at_the_first_unanswered_question() -> None:
    engine = consented(InterviewEngine(make_script(max_skipped_questions=0)))
    engine.handle(SilenceTimeout())
    assert say_ids(engine.handle(SilenceTimeout())) == ["no_response_goodbye"]


def test_an_answer_resets_the_silence_count(engine: InterviewEngine) -> None:
    consented(engine)
    assert say_ids(engine.handle(SilenceTimeout())) == ["reprompt", "q:experience"]
    engine.handle(CandidateSaid("Two years in retail."))
    assert say_ids(engine.handle(SilenceTimeout())) == ["reprompt", "q:availability"]
    assert not engine.ended


def test_max_reprompts_is_honoured() -> None:
    engine = InterviewEngine(make_script(max_reprompts=2))
    engine.start()
    assert say_ids(engine.handle(SilenceTimeout()))[0] == "reprompt"
    assert say_ids(engine.handle(SilenceTimeout()))[0] == "reprompt"
    assert engine.handle(SilenceTimeout())[-1] == EndCall("no_response")  # consent: no moving on


def test_zero_reprompts_ends_at_the_first_silence() -> None:
    engine = InterviewEngine(make_script(max_reprompts=0))
    engine.start()
    assert say_ids(engine.handle(SilenceTimeout())) == ["no_response_goodbye"]
    assert engine.ended


def test_blank_transcript_counts_as_silence(engine: InterviewEngine) -> None:
    consented(engine)
    actions = engine.handle(CandidateSaid("   "))
    assert say_ids(actions) == ["reprompt", "q:experience"]
    assert not any(isinstance(action, AnswerRecorded) for action in actions)


def test_dtmf_during_questions_is_ignored(engine: InterviewEngine) -> None:
    consented(engine)
    assert engine.handle(DtmfPressed("2")) == []
    assert engine.handle(DtmfPressed("1")) == []
    assert engine.current_question is not None and engine.current_question.id == "experience"


@pytest.mark.parametrize("state", ["consent", "question"])
def test_hang_up_ends_the_call_without_a_goodbye(engine: InterviewEngine, state: str) -> None:
    engine.start()
    if state == "question":
        engine.handle(DtmfPressed("1"))
    assert engine.handle(CallerHungUp()) == [EndCall("caller_hangup")]
    assert engine.end_reason == "caller_hangup"


def test_hang_up_before_start(engine: InterviewEngine) -> None:
    assert engine.handle(CallerHungUp()) == [EndCall("caller_hangup")]
    assert engine.ended


@pytest.mark.parametrize(
    "event", [CandidateSaid("yes"), DtmfPressed("1"), SilenceTimeout(), CallerHungUp()]
)
def test_events_after_the_end_are_ignored(engine: InterviewEngine, event: object) -> None:
    engine.start()
    engine.handle(DtmfPressed("2"))
    assert engine.handle(event) == []
    assert engine.end_reason == "consent_declined"


def test_misuse_is_a_clear_error(engine: InterviewEngine) -> None:
    with pytest.raises(RuntimeError, match="start"):
        engine.handle(CandidateSaid("hello"))
    engine.start()
    with pytest.raises(RuntimeError, match="twice"):
        engine.start()


def test_next_prompts_if_independent(engine: InterviewEngine) -> None:
    assert engine.next_prompts_if_independent() is None
    engine.start()
    assert engine.next_prompts_if_independent() is None  # depends on the consent answer
    engine.handle(DtmfPressed("1"))
    assert engine.next_prompts_if_independent() == [Say("q:availability", "When can you work?")]
    actions = engine.handle(CandidateSaid("Five years."))
    # What was predicted is what the engine then says.
    said = [action for action in actions if isinstance(action, Say)]
    assert said == [Say("q:availability", "When can you work?")]
    engine.handle(SilenceTimeout())  # a reprompt does not change what follows the answer
    closing = [Say("closing", "Thanks, a recruiter will call. Goodbye.")]
    assert engine.next_prompts_if_independent() == closing
    actions = engine.handle(CandidateSaid("Weekends."))
    assert [a for a in actions if isinstance(a, Say)] == closing
    assert engine.next_prompts_if_independent() is None


def test_a_whole_shipped_interview_follows_the_script() -> None:
    script = load_script(DIALOGUES / "customer_service_en.yaml")
    engine = InterviewEngine(script)
    said = say_ids(engine.start())
    said += say_ids(engine.handle(CandidateSaid("Yes, I agree.")))
    for question in script.questions:
        said += say_ids(engine.handle(CandidateSaid(f"My answer about {question.id}.")))
    assert said == [
        "greeting",
        "consent",
        *[f"q:{question.id}" for question in script.questions],
        "closing",
    ]
    assert engine.end_reason == "completed"


def test_every_turn_that_awaits_an_answer_ends_with_listen(engine: InterviewEngine) -> None:
    turns = [
        engine.start(),
        engine.handle(SilenceTimeout()),
        engine.handle(CandidateSaid("pardon?")),
        engine.handle(CandidateSaid("yes")),
        engine.handle(CandidateSaid("answer one")),
    ]
    for actions in turns:
        assert isinstance(actions[-1], Listen)
        assert sum(isinstance(action, Listen) for action in actions) == 1
