"""The end-of-turn policy as a pure function: features in, the wait out."""

from __future__ import annotations

import pytest

from voicebot.speech.turn_policy import (
    PauseFeatures,
    QuestionContext,
    TurnPolicyConfig,
    ceiling,
    decide,
    decide_acoustic,
    read_words,
)

CONFIG = TurnPolicyConfig()
OPEN = QuestionContext("open")
CLOSED = QuestionContext("closed")


@pytest.mark.parametrize(
    ("words", "language", "verdict"),
    [
        ("Uh,", "en", "unfinished"),
        ("um", "en", "unfinished"),
        ("I worked at a bank for three years and", "en", "unfinished"),
        ("I worked at a bank for three years, so...", "en", "unfinished"),
        ("I think so.", "en", "finished"),
        ("Neither did I.", "en", "finished"),
        ("I stayed calm, you know", "en", "unfinished"),
        ("First, I listen to the customer.", "en", "unfinished"),
        ("First, I listen. Second, I fix the problem.", "en", "finished"),
        ("It was the first great sorrow of his life.", "en", "finished"),
        ("Let me think.", "en", "thinking"),
        ("Hmm, good question, let me see.", "en", "thinking"),
        ("Yes.", "en", "short_complete"),
        ("Two years.", "en", "short_complete"),
        ("About three years", "en", "short_complete"),
        ("I helped an angry customer get a refund.", "en", "finished"),
        ("", "en", "empty"),
        ("嗯", "zh", "unfinished"),
        ("那个，就是", "zh", "unfinished"),
        ("我在银行工作了三年，然后", "zh", "unfinished"),
        ("首先，要耐心倾听。", "zh", "unfinished"),
        ("首先要倾听，其次要解决问题。", "zh", "finished"),
        ("让我想想", "zh", "thinking"),
        ("三年", "zh", "short_complete"),
        ("是的", "zh", "short_complete"),
        ("我觉得沟通最重要。", "zh", "finished"),
        (None, "en", "unknown"),
        # An explicit closer after the answer: done (the candidate says so).
        ("I ran the support desk for two years. That's it.", "en", "closer"),
        ("I calmed him down and refunded him, that's about it", "en", "closer"),
        ("So we shipped it on time. All right, thanks.", "en", "closer"),
        ("We fixed it together. Yeah, that's all.", "en", "closer"),
        ("我在银行做了三年客服。就这些。", "zh", "closer"),
        ("我觉得沟通最重要，没了", "zh", "closer"),
        # A closer alone is Whisper's usual guess on a breath or a filler, not an answer.
        ("Thank you.", "en", "finished"),
        ("At the end the customer said thank you.", "en", "finished"),
        ("谢谢", "zh", "unknown"),
        # Not at the end: the answer goes on.
        ("That's it, the hardest part was the", "en", "unfinished"),
        ("That's all I remember about the first job.", "en", "finished"),
    ],
)
def test_reading_the_words_so_far(words, language, verdict):
    assert read_words(words, language) == verdict


def features(**kwargs) -> PauseFeatures:
    values = {"speech_secs": 8.0, "question": OPEN}
    values.update(kwargs)
    return PauseFeatures(**values)


@pytest.mark.parametrize(
    ("case", "pause", "wait", "reason"),
    [
        # Clearly done: smart-turn and the words agree.
        (
            "finished answer",
            features(smart_turn=0.95, words="I calmed the customer and fixed it."),
            CONFIG.open_end_secs,
            "smart_turn_words",
        ),
        # Smart-turn sure, the words say not done: the open ceiling, or longer mid-sentence.
        (
            "trailing conjunction",
            features(smart_turn=0.95, words="I calmed the customer and"),
            CONFIG.unfinished_max_silence_secs,
            "words_unfinished",
        ),
        (
            "filler then a pause at the start",
            features(speech_secs=0.3, smart_turn=0.99, words="Uh."),
            CONFIG.unfinished_max_silence_secs,
            "words_unfinished",
        ),
        (
            "opened list",
            features(smart_turn=0.9, words="First, I listen to them."),
            CONFIG.unfinished_max_silence_secs,
            "words_unfinished",
        ),
        # The words not in yet: the acoustic verdict, with room for the words to correct it.
        (
            "no words yet",
            features(smart_turn=0.95),
            max(CONFIG.unconfirmed_end_secs, CONFIG.open_end_secs),
            "smart_turn",
        ),
        (
            "no words yet, closed",
            features(smart_turn=0.95, question=CLOSED),
            CONFIG.unconfirmed_end_secs,
            "smart_turn",
        ),
        # "And so my fellow Americans." is finished and sure, but short for an open question.
        (
            "short start of an open answer",
            features(speech_secs=2.0, smart_turn=0.96, words="And so my fellow Americans."),
            CONFIG.short_open_end_secs,
            "short_open_answer",
        ),
        # A short complete answer to a closed question is done at once, whatever smart-turn says.
        (
            "yes to a closed question",
            features(speech_secs=0.4, smart_turn=0.1, words="Yes.", question=CLOSED),
            CONFIG.end_secs,
            "short_answer",
        ),
        (
            "three years to a closed question",
            features(speech_secs=0.6, words="三年", language="zh", question=CLOSED),
            CONFIG.end_secs,
            "short_answer",
        ),
        # "No..." (Whisper's ellipsis on a lone word): the closed ceiling, not the long wait of
        # a candidate mid-sentence; "No, but..." and an open question's "Yes," still wait long.
        (
            "no with an ellipsis to a closed question",
            features(speech_secs=0.4, smart_turn=0.5, words="No...", question=CLOSED),
            CONFIG.closed_max_silence_secs,
            "short_answer_trailing",
        ),
        (
            "two years with a comma to a closed question",
            features(speech_secs=0.8, smart_turn=0.1, words="Two years,", question=CLOSED),
            CONFIG.closed_max_silence_secs,
            "short_answer_trailing",
        ),
        (
            "no with an ellipsis, from a candidate who paused 2 s in an earlier answer",
            features(
                speech_secs=0.4,
                smart_turn=0.5,
                words="No...",
                question=CLOSED,
                resumed_pauses=(2.0,),
            ),
            CONFIG.closed_max_silence_secs,
            "short_answer_trailing",
        ),
        (
            "no but to a closed question",
            features(speech_secs=0.6, smart_turn=0.5, words="No, but...", question=CLOSED),
            CONFIG.unfinished_max_silence_secs,
            "words_unfinished",
        ),
        (
            "yes with a comma to an open question",
            features(speech_secs=0.4, smart_turn=0.5, words="Yes,"),
            CONFIG.unfinished_max_silence_secs,
            "words_unfinished",
        ),
        # Unsure, words finished: the hesitant wait; sure they go on, words finished: longer.
        (
            "unsure and finished",
            features(smart_turn=0.3, words="That is how I handled it."),
            CONFIG.hesitant_end_secs,
            "hesitant_words",
        ),
        (
            "goes on and finished",
            features(smart_turn=0.05, words="That is how I handled it."),
            CONFIG.finished_end_secs,
            "finished_words",
        ),
        # The candidate says they are done: at once, whatever smart-turn makes of phone audio.
        (
            "closer after an open answer",
            features(smart_turn=0.07, words="I fixed the printer myself. All right, thanks."),
            CONFIG.end_secs,
            "closer",
        ),
        (
            "closer in Chinese",
            features(smart_turn=0.3, words="我会先倾听客户。就这样", language="zh"),
            CONFIG.end_secs,
            "closer",
        ),
        # A finished sentence to a closed question is done even when smart-turn doubts it; so
        # are Chinese words (Whisper writes no sentence end on phone audio) smart-turn finds
        # complete or is unsure about.
        (
            "finished answer to a closed question",
            features(speech_secs=1.0, smart_turn=0.2, words="Neither did I.", question=CLOSED),
            CONFIG.closed_finished_end_secs,
            "closed_finished",
        ),
        (
            "unmarked Chinese answer to a closed question",
            features(
                speech_secs=1.0, smart_turn=0.49, words="我有驾照", language="zh", question=CLOSED
            ),
            CONFIG.closed_finished_end_secs,
            "closed_finished",
        ),
        (
            "finished sentence of an open answer, no closer",
            features(smart_turn=0.97, words="I ran the night shift."),
            CONFIG.open_end_secs,
            "smart_turn_words",
        ),
        ("nothing known", features(), CONFIG.open_max_silence_secs, "silence"),
        (
            "nothing known, closed",
            features(question=CLOSED),
            CONFIG.closed_max_silence_secs,
            "silence",
        ),
    ],
)
def test_the_wait_at_a_pause(case, pause, wait, reason):
    decision = decide(pause, CONFIG)
    assert (decision.wait_secs, decision.reason) == (pytest.approx(wait), reason), case


def test_an_open_answer_without_its_words_never_ends_sooner_than_with_them():
    # Smart-turn's "complete" alone (the words not in yet, or Chinese words with no sentence
    # end) is no surer than smart-turn and finished words together.
    config = CONFIG.model_copy(update={"open_end_secs": 1.8, "unconfirmed_end_secs": 1.0})
    acoustic = decide(features(smart_turn=0.97), config)
    unmarked = decide(features(smart_turn=0.97, words="我很荣幸来到这里", language="zh"), config)
    assert acoustic.wait_secs == unmarked.wait_secs == pytest.approx(1.8)
    closed = decide(features(smart_turn=0.97, question=CLOSED), config)
    assert closed.wait_secs == pytest.approx(config.unconfirmed_end_secs)


def test_let_me_think_waits_longer_and_says_take_your_time():
    decision = decide(features(speech_secs=1.0, smart_turn=0.9, words="Let me think."), CONFIG)
    assert decision.take_your_time
    assert decision.wait_secs == CONFIG.think_secs
    zh = decide(features(speech_secs=1.0, words="嗯，让我想想", language="zh"), CONFIG)
    assert zh.take_your_time and zh.wait_secs == CONFIG.think_secs


def test_the_last_seconds_of_a_long_answer_are_read_for_how_it_ends_only():
    # At a pause the session transcribes the turn's last seconds: "Two years." there ends a
    # longer answer (not the short answer to a closed question), "let me think" in it is no
    # request for time; a trailing "and" or a closer still reads the same.
    def tail(words, question=CLOSED):
        return decide(
            features(
                speech_secs=12.0,
                smart_turn=0.9,
                words=words,
                question=question,
                words_are_tail=True,
            ),
            CONFIG,
        )

    short = tail("Two years.")
    assert short.words == "finished" and short.reason != "short_answer"
    assert (
        short.wait_secs
        >= decide(
            features(speech_secs=12.0, smart_turn=0.9, words="Two years.", question=CLOSED), CONFIG
        ).wait_secs
    )
    thinking = tail("so let me think.", question=OPEN)
    assert not thinking.take_your_time and thinking.words == "finished"
    assert tail("at a bank and", question=OPEN).words == "unfinished"
    assert tail("on time. That's it.", question=OPEN).words == "closer"


def test_open_questions_allow_longer_thinking_pauses_than_closed_ones():
    assert ceiling(features(), CONFIG) > ceiling(features(question=CLOSED), CONFIG)


def test_a_script_sets_a_question_s_own_pause():
    own = QuestionContext("open", max_pause_secs=5.0)
    assert decide(features(question=own), CONFIG).wait_secs == 5.0
    # A finished sentence is no end of an open answer before that pause either; a closer is.
    finished = features(question=own, smart_turn=0.97, words="I ran the night shift.")
    assert decide(finished, CONFIG).wait_secs == 5.0
    closer = features(question=own, smart_turn=0.4, words="I ran the night shift. That's it.")
    assert decide(closer, CONFIG).wait_secs == CONFIG.end_secs
    shorter = QuestionContext("open", max_pause_secs=1.5)
    brief = features(question=shorter, smart_turn=0.97, words="I did.")
    assert decide(brief, CONFIG).wait_secs == 1.5


def test_the_candidate_s_own_pace_raises_the_ceiling_up_to_its_cap():
    # They already paused 3 s mid-answer and went on: 3 s of silence is not an end for them.
    paced = features(resumed_pauses=(0.8, 3.0))
    assert ceiling(paced, CONFIG) == pytest.approx(3.0 + CONFIG.pace_margin_secs)
    slow = features(resumed_pauses=(9.0,))
    assert ceiling(slow, CONFIG) == CONFIG.pace_cap_secs
    quick = features(resumed_pauses=(0.4,))
    assert ceiling(quick, CONFIG) == CONFIG.open_max_silence_secs


def test_pace_can_hold_back_the_fast_path_too():
    # They already paused 2.9 s after a finished sentence and went on: not done after 2.6 s.
    pause = features(smart_turn=0.95, words="I fixed it.", resumed_pauses=(2.9,))
    assert decide(pause, CONFIG).wait_secs == pytest.approx(2.9 + CONFIG.pace_fast_margin_secs)
    assert decide(features(smart_turn=0.95, words="I fixed it."), CONFIG).wait_secs == (
        CONFIG.open_end_secs
    )
    off = CONFIG.model_copy(update={"pace_fast_margin_secs": 0.0})
    assert decide(pause, off).wait_secs == CONFIG.open_end_secs
    # A closer is the candidate's word, whatever their pace.
    closer = features(smart_turn=0.3, words="I fixed it. That's it.", resumed_pauses=(2.9,))
    assert decide(closer, CONFIG).wait_secs == CONFIG.end_secs


def test_a_wait_never_passes_the_ceiling_but_mid_sentence_and_thinking_may():
    tight = CONFIG.model_copy(update={"open_max_silence_secs": 1.0})
    assert decide(features(smart_turn=0.05, words="I fixed it."), tight).wait_secs == 1.0
    assert decide(features(words="and"), tight).wait_secs == tight.unfinished_max_silence_secs


@pytest.mark.parametrize(
    ("probability", "speech_secs", "wait"),
    [(0.96, 2.0, 1.2), (0.99, 2.0, 0.2), (0.96, 5.0, 0.2), (0.3, 5.0, 0.5), (0.1, 5.0, 1.2)],
)
def test_the_acoustic_policy_is_the_one_before(probability, speech_secs, wait):
    # VOICEBOT_TURN_POLICY=acoustic: words ignored, the defaults before this policy.
    pause = features(speech_secs=speech_secs, smart_turn=probability, words="and")
    assert decide_acoustic(pause, CONFIG).wait_secs == pytest.approx(wait)
