"""Engine paths of a real screening: follow-ups, knock-outs, repeats, opt-outs, keypad answers.

Events in (as a fake ASR would deliver the candidate's words), actions out; the scripts used are
the shipped ones where they have the feature, so a change to a shipped script that breaks a path
shows here.
"""

from pathlib import Path

import pytest

from voicebot.dialogue.engine import (
    AnswerRecorded,
    CandidateSaid,
    ConsentRecorded,
    DtmfPressed,
    EndCall,
    InterviewEngine,
    KnockoutRecorded,
    Listen,
    OptOutRecorded,
    RepeatRequested,
    Say,
    SilenceTimeout,
)
from voicebot.dialogue.intents import classify_yes_no, is_opt_out, is_repeat_request
from voicebot.dialogue.script import JobScript, load_script

DIALOGUES = Path(__file__).resolve().parents[2] / "dialogues"

STRONG_EXPERIENCE = (
    "First I listened to the customer and apologised, then I checked the order history, "
    "found the refund had failed and fixed it, and finally I called her back the next day. "
    "As a result she stayed a customer."
)


def make_script(**overrides: object) -> JobScript:
    data: dict[str, object] = {
        "id": "paths",
        "title": "Paths",
        "language": "en",
        "greeting": "Hi, I'm an AI assistant. This call is recorded.",
        "consent_question": "Do you agree? Say yes or press 1; no or press 2.",
        "consent_declined": "Understood, goodbye.",
        "consent_unclear": "Sorry, yes or no?",
        "competencies": [
            {
                "id": "service",
                "name": "Customer service",
                "weight": 1,
                "keywords": ["customer", "refund", "apologise"],
                "rubric": [
                    {"score": 20, "description": "No example"},
                    {"score": 80, "description": "A real example", "evidence": ["customer"]},
                ],
            }
        ],
        "questions": [
            {
                "id": "story",
                "prompt": "Tell me about a difficult customer.",
                "competency": "service",
                "follow_up": {"prompt": "Could you give me a concrete example?", "min_words": 8},
            },
            {
                "id": "nights",
                "prompt": "Can you work night shifts? Press 1 for yes, 2 for no.",
                "knockout": {"expected": "yes"},
                "dtmf": {"1": "yes", "2": "no"},
            },
            {
                "id": "slot",
                "prompt": "Can you come on Monday at ten? Press 1 to confirm, 2 for another time.",
                "dtmf": {"1": "confirmed Monday 10:00", "2": "needs another time"},
            },
        ],
        "closing": "Thanks, a recruiter will call. Goodbye.",
        "reprompt": "Are you still there?",
        "no_response_goodbye": "I can't hear you. Goodbye.",
    }
    data.update(overrides)
    return JobScript.model_validate(data)


def say_ids(actions: list) -> list[str]:
    return [action.prompt_id for action in actions if isinstance(action, Say)]


def of_type(actions: list, kind: type) -> list:
    return [action for action in actions if isinstance(action, kind)]


@pytest.fixture
def engine() -> InterviewEngine:
    engine = InterviewEngine(make_script())
    engine.start()
    engine.handle(CandidateSaid("yes"))
    return engine


# --- follow-ups ----------------------------------------------------------------------------


def test_short_answer_gets_the_follow_up_once(engine: InterviewEngine) -> None:
    actions = engine.handle(CandidateSaid("It was fine."))
    assert of_type(actions, AnswerRecorded) == [AnswerRecorded("story", "It was fine.")]
    assert say_ids(actions) == ["f:story"]
    assert actions[-1] == Listen(6.0, "story", 90.0, follow_up=True)
    assert engine.in_follow_up
    # The follow-up's answer is recorded as such, and the interview moves on (no second one).
    actions = engine.handle(CandidateSaid("Not much to say."))
    assert of_type(actions, AnswerRecorded) == [
        AnswerRecorded("story", "Not much to say.", follow_up=True)
    ]
    assert say_ids(actions) == ["q:nights"]


def test_an_answer_with_the_evidence_gets_no_follow_up(engine: InterviewEngine) -> None:
    actions = engine.handle(CandidateSaid(STRONG_EXPERIENCE))
    assert say_ids(actions) == ["q:nights"]


def test_a_long_answer_missing_the_evidence_gets_the_follow_up(engine: InterviewEngine) -> None:
    text = "I worked in a warehouse for three years and I was always on time for every shift."
    assert say_ids(engine.handle(CandidateSaid(text))) == ["f:story"]


def test_follow_up_questions_wait_for_the_words(engine: InterviewEngine) -> None:
    # Whether the follow-up comes depends on the answer: the next prompt cannot be pre-started.
    assert engine.next_prompts_if_independent() is None
    engine.handle(CandidateSaid("Fine."))
    # The follow-up's answer does not decide anything, but the knock-out after it does not
    # depend on it either: the next question can start at once.
    assert [s.prompt_id for s in engine.next_prompts_if_independent() or []] == ["q:nights"]


# --- knock-outs ----------------------------------------------------------------------------


def at_knockout(engine: InterviewEngine) -> InterviewEngine:
    engine.handle(CandidateSaid(STRONG_EXPERIENCE))
    assert engine.current_question is not None and engine.current_question.id == "nights"
    assert engine.next_prompts_if_independent() is None  # the answer decides the next step
    return engine


def test_failed_knockout_ends_the_call_politely_and_is_recorded(engine: InterviewEngine) -> None:
    actions = at_knockout(engine).handle(CandidateSaid("No, I can't work nights."))
    assert of_type(actions, KnockoutRecorded) == [
        KnockoutRecorded("nights", "yes", "no", False, "voice", "No, I can't work nights.")
    ]
    assert say_ids(actions) == ["knockout_goodbye"]
    assert actions[-1] == EndCall("knocked_out")
    assert engine.end_reason == "knocked_out"


def test_passed_knockout_goes_on(engine: InterviewEngine) -> None:
    actions = at_knockout(engine).handle(CandidateSaid("Yes, nights are no problem for me."))
    assert of_type(actions, KnockoutRecorded)[0].passed is True
    assert say_ids(actions) == ["q:slot"]


def test_knockout_by_keypad(engine: InterviewEngine) -> None:
    actions = at_knockout(engine).handle(DtmfPressed("2"))
    knockout = of_type(actions, KnockoutRecorded)[0]
    assert (knockout.answer, knockout.passed, knockout.via) == ("no", False, "dtmf")
    assert of_type(actions, AnswerRecorded)[0].key == "2"
    assert engine.end_reason == "knocked_out"


def test_unclear_knockout_is_asked_once_more_then_recorded_unclear(
    engine: InterviewEngine,
) -> None:
    actions = at_knockout(engine).handle(CandidateSaid("Well, it depends on the week."))
    assert say_ids(actions) == ["knockout_unclear"]
    assert not of_type(actions, KnockoutRecorded)
    actions = engine.handle(CandidateSaid("Hmm, maybe sometimes."))
    assert of_type(actions, KnockoutRecorded)[0].passed is None
    assert say_ids(actions) == ["q:slot"]  # a human decides; the interview goes on


def test_knockout_with_its_own_goodbye() -> None:
    script = make_script()
    data = script.model_dump()
    data["questions"][1]["knockout"]["goodbye"] = "Nights are a must here. Goodbye."
    engine = InterviewEngine(JobScript.model_validate(data))
    engine.start()
    engine.handle(CandidateSaid("yes"))
    at_knockout(engine)
    actions = engine.handle(CandidateSaid("no"))
    assert actions[-2] == Say("knockout_goodbye:nights", "Nights are a must here. Goodbye.")


def test_shipped_workshop_script_knocks_out_on_shifts() -> None:
    script = load_script(DIALOGUES / "workshop_operator_zh.yaml")
    knockouts = [q for q in script.questions if q.knockout is not None]
    assert knockouts, "the workshop operator script has a knock-out on rotating shifts"
    engine = InterviewEngine(script)
    engine.start()
    engine.handle(DtmfPressed("1"))
    for _ in range(len(script.questions)):
        question = engine.current_question
        assert question is not None
        if question.knockout is not None:
            actions = engine.handle(CandidateSaid("不行，我上不了夜班"))
            assert of_type(actions, KnockoutRecorded)[0].passed is False
            assert engine.end_reason == "knocked_out"
            return
        engine.handle(
            CandidateSaid("首先我会认真学习操作规程，然后按照标准作业，最后做好质检和5S。")
        )
        if engine.in_follow_up:
            engine.handle(CandidateSaid("我在电子厂做过两年普工，良品率一直很高。"))
    pytest.fail("never reached the knock-out question")


# --- repeat, opt-out ------------------------------------------------------------------------


def test_repeat_request_replays_the_current_question(engine: InterviewEngine) -> None:
    actions = engine.handle(CandidateSaid("Sorry, can you repeat the question?"))
    assert of_type(actions, RepeatRequested) == [RepeatRequested("story")]
    assert say_ids(actions) == ["repeat", "q:story"]
    assert not of_type(actions, AnswerRecorded)
    assert engine.answers_recorded == 0


def test_repeat_during_consent_and_follow_up(engine: InterviewEngine) -> None:
    fresh = InterviewEngine(make_script())
    fresh.start()
    assert say_ids(fresh.handle(CandidateSaid("Pardon?"))) == ["repeat", "consent"]
    engine.handle(CandidateSaid("Fine."))
    assert say_ids(engine.handle(CandidateSaid("What was the question?"))) == [
        "repeat",
        "f:story",
    ]


def test_opt_out_ends_the_call_and_is_recorded(engine: InterviewEngine) -> None:
    actions = engine.handle(CandidateSaid("Please stop calling me."))
    assert of_type(actions, OptOutRecorded) == [
        OptOutRecorded("voice", "Please stop calling me.", "story")
    ]
    assert say_ids(actions) == ["opt_out_goodbye"]
    assert actions[-1] == EndCall("opted_out")


def test_opt_out_during_consent_is_an_opt_out_not_just_a_no() -> None:
    engine = InterviewEngine(make_script())
    engine.start()
    actions = engine.handle(CandidateSaid("No. Don't call me again."))
    assert of_type(actions, OptOutRecorded)
    assert not of_type(actions, ConsentRecorded)
    assert engine.end_reason == "opted_out"


def test_chinese_opt_out_and_repeat() -> None:
    script = load_script(DIALOGUES / "customer_service_zh.yaml")
    engine = InterviewEngine(script)
    engine.start()
    assert say_ids(engine.handle(CandidateSaid("不好意思，没听清，能再说一遍吗？"))) == [
        "repeat",
        "consent",
    ]
    engine.handle(CandidateSaid("可以"))
    actions = engine.handle(CandidateSaid("我不想面试了，以后不要再打电话给我了。"))
    assert engine.end_reason == "opted_out" and of_type(actions, OptOutRecorded)


def test_late_words_of_a_prestarted_answer_can_still_opt_out(engine: InterviewEngine) -> None:
    engine.handle(CandidateSaid(STRONG_EXPERIENCE))
    assert engine.late_words("story", "I have nothing to add, thanks.") == []
    actions = engine.late_words("story", "Actually I don't want to continue, please stop.")
    assert actions[-1] == EndCall("opted_out")
    assert engine.late_words("story", "stop calling me") == []  # ended: nothing more


# --- keypad answers -------------------------------------------------------------------------


def test_keypad_answer_to_a_question_with_dtmf_options(engine: InterviewEngine) -> None:
    at_knockout(engine)
    engine.handle(CandidateSaid("yes"))
    actions = engine.handle(DtmfPressed("1"))
    assert of_type(actions, AnswerRecorded) == [
        AnswerRecorded("slot", "confirmed Monday 10:00", via="dtmf", key="1")
    ]
    assert say_ids(actions) == ["closing"]
    assert engine.end_reason == "completed"


def test_keys_without_a_meaning_are_ignored(engine: InterviewEngine) -> None:
    assert engine.handle(DtmfPressed("1")) == []  # the open question has no keypad answers
    at_knockout(engine)
    assert engine.handle(DtmfPressed("9")) == []


def test_silence_on_a_knockout_moves_on_with_the_knockout_unknown(engine: InterviewEngine) -> None:
    at_knockout(engine)
    engine.handle(SilenceTimeout())
    actions = engine.handle(SilenceTimeout())
    assert not of_type(actions, KnockoutRecorded)
    assert say_ids(actions) == ["move_on", "q:slot"]


# --- the classifiers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "language", "expected"),
    [
        ("Yes, I can.", "en", "yes"),
        ("I can work nights, no problem.", "en", "yes"),
        ("I don't mind rotating shifts.", "en", "yes"),
        ("No, I cannot do nights.", "en", "no"),
        ("I'm not able to work weekends.", "en", "no"),
        ("It depends.", "en", "unclear"),
        ("可以，两班倒没问题。", "zh", "yes"),
        ("我能接受夜班。", "zh", "yes"),
        ("夜班我不怕。", "zh", "yes"),
        ("不行，我接受不了夜班。", "zh", "no"),
        ("我不能上夜班。", "zh", "no"),
        ("看情况吧。", "zh", "unclear"),
        ("可以，兩班倒沒問題。", "zh", "yes"),
    ],
)
def test_classify_yes_no(text: str, language: str, expected: str) -> None:
    assert classify_yes_no(text, language) == expected


@pytest.mark.parametrize(
    ("text", "language", "expected"),
    [
        ("Can you repeat that?", "en", True),
        ("Sorry?", "en", True),
        ("I didn't catch the question.", "en", True),
        (
            "I repeat the safety checks at the start of every shift, then log them in the book.",
            "en",
            False,
        ),
        ("再说一遍好吗", "zh", True),
        ("不好意思没听清", "zh", True),
        ("我每天都会重复检查设备，然后记录在本子上，最后交给班长确认签字。", "zh", False),
    ],
)
def test_is_repeat_request(text: str, language: str, expected: bool) -> None:
    assert is_repeat_request(text, language) is expected


@pytest.mark.parametrize(
    ("text", "language", "expected"),
    [
        ("Please don't call me again.", "en", True),
        ("I'm not interested.", "en", True),
        ("I want to stop the interview.", "en", True),
        (
            "I was not interested in sales at first, but then I loved talking to customers.",
            "en",
            False,
        ),
        ("I make sure the line does not stop.", "en", False),
        ("不要再给我打电话了", "zh", True),
        ("算了吧", "zh", True),
        ("我不想面试了", "zh", True),
        ("刚开始我对直播没兴趣，后来做了半年发现很有意思，粉丝涨了两万多。", "zh", False),
    ],
)
def test_is_opt_out(text: str, language: str, expected: bool) -> None:
    assert is_opt_out(text, language) is expected


def test_a_beginning_with_the_evidence_rules_out_the_follow_up(engine: InterviewEngine) -> None:
    assert engine.next_prompts_if_independent("It was fine.") is None  # not yet settled
    says = engine.next_prompts_if_independent(STRONG_EXPERIENCE)
    assert [say.prompt_id for say in says or []] == ["q:nights"]
    # The call layer moves on before the final words, passing the same beginning along.
    actions = engine.handle(CandidateSaid("[transcript pending]", STRONG_EXPERIENCE))
    assert say_ids(actions) == ["q:nights"]
    assert not engine.in_follow_up
