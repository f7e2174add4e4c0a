"""End-of-turn detection: pure TurnDetector on synthetic VAD scores, smart-turn on real speech."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from tests.conftest import phone_speech
from voicebot.speech.turn import (
    SmartTurnModel,
    SpeechPaused,
    SpeechPausing,
    SpeechResumed,
    SpeechStarted,
    TurnConfig,
    TurnDetector,
    TurnEnded,
    TurnEvent,
)
from voicebot.speech.vad import WINDOW_SECS, SileroVAD

SPEECH, SILENCE = 0.95, 0.02


class Caller:
    """Feeds a TurnDetector one 32 ms window at a time and keeps the call clock.

    ``events`` leaves out the early hints (``SpeechPausing``), kept apart in ``pausing``.
    """

    def __init__(self, detector: TurnDetector | None = None):
        self.detector = detector or TurnDetector()
        self.t = 0.0
        self.events: list[TurnEvent] = []
        self.pausing: list[SpeechPausing] = []

    def windows(self, probability: float, seconds: float) -> list[TurnEvent]:
        """Feed ``probability`` for ``seconds`` worth of windows; return the new events."""
        new: list[TurnEvent] = []
        for _ in range(round(seconds / WINDOW_SECS)):
            self.t += WINDOW_SECS
            for event in self.detector.feed(probability, self.t):
                if isinstance(event, SpeechPausing):
                    self.pausing.append(event)
                else:
                    new.append(event)
        self.events += new
        return new

    def until(self, kind: type, probability: float = SILENCE, limit: float = 5.0) -> TurnEvent:
        """Feed windows until an event of ``kind`` comes out."""
        stop = self.t + limit
        while self.t < stop:
            for event in self.windows(probability, WINDOW_SECS):
                if isinstance(event, kind):
                    return event
        raise AssertionError(f"no {kind.__name__} within {limit} s; got {self.events}")

    def kinds(self) -> list[str]:
        """Names of the event types seen so far, in order."""
        return [type(event).__name__ for event in self.events]


# --- TurnDetector: pure state machine --------------------------------------------------------


def test_speech_starts_after_min_speech_secs_and_dates_its_start() -> None:
    caller = Caller()
    caller.windows(SILENCE, 0.64)
    started = caller.until(SpeechStarted, SPEECH)
    assert isinstance(started, SpeechStarted)
    assert started.speech_start == pytest.approx(0.64)
    assert started.t - started.speech_start >= 0.15
    assert started.t - started.speech_start < 0.15 + WINDOW_SECS
    assert caller.detector.speaking


def test_short_noise_blip_starts_no_turn() -> None:
    caller = Caller()
    for _ in range(5):
        caller.windows(SPEECH, 0.096)  # three windows: under min_speech_secs
        caller.windows(SILENCE, 0.5)
    assert caller.events == []
    assert not caller.detector.speaking


def test_a_quick_start_lets_a_brief_run_start_a_turn_but_not_a_single_window() -> None:
    """While the caller vouches for a voice (``quick_start_secs``), two windows start a turn;
    one does not, and inside a turn a blip still needs ``min_speech_secs`` to resume it."""
    caller = Caller()
    caller.detector.quick_start_secs = 0.064
    caller.windows(SPEECH, WINDOW_SECS)  # one window: a click
    caller.windows(SILENCE, 0.5)
    assert caller.events == []
    caller.windows(SPEECH, 0.064)
    assert caller.kinds() == ["SpeechStarted"]
    caller.windows(SILENCE, 0.3)
    assert caller.kinds() == ["SpeechStarted", "SpeechPaused"]
    caller.windows(SPEECH, 0.096)  # under min_speech_secs: the pause goes on
    caller.windows(SILENCE, 0.2)
    assert caller.kinds() == ["SpeechStarted", "SpeechPaused"]
    caller.detector.reset()
    caller.detector.quick_start_secs = None
    caller.windows(SPEECH, 0.096)  # without it, three windows are a blip
    assert caller.kinds() == ["SpeechStarted", "SpeechPaused"]


def test_hysteresis_keeps_speech_going_but_does_not_start_it() -> None:
    caller = Caller()
    caller.windows(0.45, 1.0)  # below the threshold: nothing starts
    assert caller.events == []
    caller.windows(SPEECH, 0.3)
    caller.windows(0.4, 1.0)  # above threshold - 0.15: still speech, no pause
    assert caller.kinds() == ["SpeechStarted"]
    caller.windows(0.3, 0.3)  # below threshold - 0.15: silence
    assert caller.kinds() == ["SpeechStarted", "SpeechPaused"]


def test_pause_then_resume_keeps_one_turn() -> None:
    caller = Caller()
    caller.windows(SPEECH, 0.64)
    first_end = caller.t
    caller.windows(SILENCE, 0.48)
    caller.windows(SPEECH, 0.64)
    last_end = caller.t
    ended = caller.until(TurnEnded)
    assert caller.kinds() == [
        "SpeechStarted",
        "SpeechPaused",
        "SpeechResumed",
        "SpeechPaused",
        "TurnEnded",
    ]
    paused = caller.events[1]
    assert isinstance(paused, SpeechPaused)
    assert paused.speech_end == pytest.approx(first_end)
    assert paused.t - paused.speech_end == pytest.approx(0.224)  # first window past pause_secs
    assert isinstance(ended, TurnEnded)
    assert ended.speech_start == pytest.approx(0.0)
    assert ended.speech_end == pytest.approx(last_end)


def test_short_gap_between_words_is_not_a_pause() -> None:
    caller = Caller()
    for _ in range(4):
        caller.windows(SPEECH, 0.32)
        caller.windows(SILENCE, 0.128)
    assert caller.kinds() == ["SpeechStarted"]


def test_a_pause_is_announced_early_once_with_the_time_it_will_come() -> None:
    caller = Caller()  # pause_secs 0.2, early_secs 0.1: the hint at 4 windows, the pause at 7
    caller.windows(SPEECH, 0.64)
    speech_end = caller.t
    caller.windows(SILENCE, 0.096)
    assert caller.pausing == []
    caller.windows(SILENCE, 0.032)
    [pausing] = caller.pausing
    assert pausing.t - speech_end == pytest.approx(0.128)
    assert pausing.speech_end == pytest.approx(speech_end) and pausing.speech_start == 0.0
    paused = caller.until(SpeechPaused)
    assert isinstance(paused, SpeechPaused)
    assert pausing.pause_t == pytest.approx(paused.t)  # what the early verdict is padded to
    assert len(caller.pausing) == 1  # once per silence
    assert caller.detector.is_current_silence(pausing.speech_start, pausing.speech_end)


def test_the_early_hint_comes_again_after_speech_and_not_after_a_blip() -> None:
    caller = Caller()
    caller.windows(SPEECH, 0.64)
    caller.windows(SILENCE, 0.128)  # a gap between words: hinted, no pause
    assert len(caller.pausing) == 1 and caller.kinds() == ["SpeechStarted"]
    caller.windows(SPEECH, 0.32)  # the word after it: the hint is stale, the silence new
    assert not caller.detector.is_current_silence(0.0, caller.pausing[0].speech_end)
    caller.windows(SILENCE, 0.128)
    assert len(caller.pausing) == 2
    caller.windows(0.7, 0.064)  # a blip: not speech, the silence goes on
    caller.until(SpeechPaused)
    assert len(caller.pausing) == 2
    assert caller.pausing[1].pause_t == pytest.approx(caller.events[-1].t)


def test_no_early_hint_when_early_secs_is_zero() -> None:
    caller = Caller(TurnDetector(TurnConfig(early_secs=0.0)))
    caller.windows(SPEECH, 0.64)
    caller.until(SpeechPaused)
    assert caller.pausing == []
    with pytest.raises(ValueError, match="early_secs < pause_secs"):
        TurnConfig(early_secs=0.2, pause_secs=0.2)


def test_without_verdict_turn_ends_after_max_silence() -> None:
    caller = Caller()
    caller.windows(SPEECH, 1.0)
    speech_end = caller.t
    ended = caller.until(TurnEnded)
    assert isinstance(ended, TurnEnded)
    assert ended.reason == "silence"
    assert ended.smart_turn_probability is None
    assert 1.2 <= ended.t - speech_end < 1.2 + WINDOW_SECS
    assert not caller.detector.speaking


def test_complete_smart_turn_ends_turn_at_end_secs() -> None:
    caller = Caller(TurnDetector(TurnConfig(end_secs=0.3)))
    caller.windows(SPEECH, 1.0)
    speech_end = caller.t
    paused = caller.until(SpeechPaused)
    assert caller.detector.paused
    assert caller.detector.smart_turn_result(True, 0.93, paused) == []  # silence < end_secs yet
    ended = caller.until(TurnEnded)
    assert isinstance(ended, TurnEnded)
    assert ended.reason == "smart_turn"
    assert ended.smart_turn_probability == pytest.approx(0.93)
    assert 0.3 <= ended.t - speech_end < 0.3 + WINDOW_SECS
    assert ended.speech_end == pytest.approx(speech_end)


def test_by_default_a_complete_verdict_ends_the_turn_as_soon_as_it_is_in() -> None:
    caller = Caller()
    caller.windows(SPEECH, 1.0)
    paused = caller.until(SpeechPaused)
    events = caller.detector.smart_turn_result(True, 0.93, paused)
    assert [type(e).__name__ for e in events] == ["TurnEnded"]
    assert events[0].reason == "smart_turn" and events[0].t == pytest.approx(paused.t)


def test_incomplete_smart_turn_waits_for_max_silence() -> None:
    caller = Caller()
    caller.windows(SPEECH, 1.0)
    speech_end = caller.t
    caller.until(SpeechPaused)
    assert caller.detector.smart_turn_result(False, 0.12) == []
    ended = caller.until(TurnEnded)
    assert isinstance(ended, TurnEnded)
    assert ended.reason == "silence"
    assert ended.smart_turn_probability == pytest.approx(0.12)
    assert ended.t - speech_end >= 1.2


@pytest.mark.parametrize(("complete", "probability"), [(False, 0.97), (True, 0.15)])
def test_veto_or_low_probability_is_not_complete(complete: bool, probability: float) -> None:
    caller = Caller()
    caller.windows(SPEECH, 1.0)
    speech_end = caller.t
    caller.until(SpeechPaused)
    caller.detector.smart_turn_result(complete, probability)
    ended = caller.until(TurnEnded)
    assert isinstance(ended, TurnEnded)
    assert ended.reason == "silence"
    assert ended.t - speech_end >= 1.2


def test_unsure_verdict_ends_turn_after_the_hesitant_wait() -> None:
    # Smart-turn between 0.2 and 0.5: neither "complete" nor "goes on": 0.5 s of silence,
    # not the 1.2 s kept for a verdict that the candidate is mid-sentence.
    caller = Caller()
    caller.windows(SPEECH, 3.5)
    speech_end = caller.t
    paused = caller.until(SpeechPaused)
    assert caller.detector.smart_turn_result(False, 0.44, paused) == []
    ended = caller.until(TurnEnded)
    assert isinstance(ended, TurnEnded)
    assert ended.reason == "hesitant"
    assert ended.smart_turn_probability == pytest.approx(0.44)
    assert 0.5 <= ended.t - speech_end < 0.5 + WINDOW_SECS


def test_unsure_verdict_the_caller_does_not_allow_waits_for_max_silence() -> None:
    # A short answer: the session does not let an unsure verdict end it early.
    caller = Caller()
    caller.windows(SPEECH, 1.0)
    speech_end = caller.t
    paused = caller.until(SpeechPaused)
    caller.detector.smart_turn_result(False, 0.44, paused, may_hesitate=False)
    ended = caller.until(TurnEnded)
    assert isinstance(ended, TurnEnded)
    assert ended.reason == "silence"
    assert ended.t - speech_end >= 1.2


def test_unsure_verdict_is_void_once_speech_resumes() -> None:
    caller = Caller()
    caller.windows(SPEECH, 3.5)
    paused = caller.until(SpeechPaused)
    caller.detector.smart_turn_result(False, 0.4, paused)
    caller.windows(SILENCE, 0.1)  # 0.3 s of silence in all: under the hesitant wait
    assert isinstance(caller.until(SpeechResumed, SPEECH), SpeechResumed)
    caller.windows(SPEECH, 1.0)
    speech_end = caller.t
    caller.until(SpeechPaused)  # a new pause, with no verdict yet
    ended = caller.until(TurnEnded)
    assert isinstance(ended, TurnEnded)
    assert ended.reason == "silence"
    assert ended.t - speech_end >= 1.2


def test_late_unsure_verdict_past_the_hesitant_wait_ends_turn_at_once() -> None:
    caller = Caller()
    caller.windows(SPEECH, 3.5)
    paused = caller.until(SpeechPaused)
    caller.windows(SILENCE, 0.35)  # 0.55 s of silence when the verdict comes
    events = caller.detector.smart_turn_result(False, 0.3, paused)
    assert [type(e).__name__ for e in events] == ["TurnEnded"]
    assert events[0].reason == "hesitant"
    assert events[0].t == pytest.approx(caller.t)


def test_noise_blips_after_the_last_word_do_not_move_the_end_of_speech() -> None:
    # JFK's crowd noise after "...for your country": single windows scored 0.5-0.8 within the
    # first 0.2 s of silence moved the end of speech 0.4 s past his last word.
    caller = Caller()
    caller.windows(SPEECH, 1.0)
    speech_end = caller.t
    caller.windows(SILENCE, 0.096)
    caller.windows(0.7, 0.032)  # a blip of one window, then another of two
    caller.windows(SILENCE, 0.064)
    caller.windows(0.6, 0.064)
    paused = caller.until(SpeechPaused)
    assert isinstance(paused, SpeechPaused)
    assert paused.speech_end == pytest.approx(speech_end)
    assert caller.kinds() == ["SpeechStarted", "SpeechPaused"]


def test_a_word_after_a_short_gap_moves_the_end_of_speech() -> None:
    caller = Caller()
    caller.windows(SPEECH, 1.0)
    caller.windows(SILENCE, 0.096)  # a gap between words, shorter than a pause
    caller.windows(SPEECH, 0.16)  # a word: as long as min_speech_secs
    speech_end = caller.t
    paused = caller.until(SpeechPaused)
    assert isinstance(paused, SpeechPaused)
    assert paused.speech_end == pytest.approx(speech_end)


def test_late_complete_verdict_ends_turn_at_once() -> None:
    caller = Caller()
    caller.windows(SPEECH, 1.0)
    paused = caller.until(SpeechPaused)
    caller.windows(SILENCE, 0.32)  # smart-turn was slow: silence is past end_secs already
    events = caller.detector.smart_turn_result(True, 0.8, paused)
    assert len(events) == 1
    ended = events[0]
    assert isinstance(ended, TurnEnded)
    assert ended.reason == "smart_turn"
    assert ended.t == pytest.approx(caller.t)
    assert not caller.detector.speaking


def test_a_pause_is_current_until_speech_resumes_or_the_turn_ends() -> None:
    # The smart-turn thread skips a queued request whose pause is already over.
    caller = Caller()
    caller.windows(SPEECH, 1.0)
    first_pause = caller.until(SpeechPaused)
    assert caller.detector.is_current_pause(first_pause)
    caller.until(SpeechResumed, SPEECH)
    assert not caller.detector.is_current_pause(first_pause)
    second_pause = caller.until(SpeechPaused)
    assert caller.detector.is_current_pause(second_pause)
    assert not caller.detector.is_current_pause(first_pause)
    caller.until(TurnEnded)
    assert not caller.detector.is_current_pause(second_pause)


def test_stale_verdict_after_resume_is_ignored() -> None:
    caller = Caller()
    caller.windows(SPEECH, 1.0)
    first_pause = caller.until(SpeechPaused)
    caller.until(SpeechResumed, SPEECH)
    # The verdict for the first pause arrives while the candidate speaks again.
    assert caller.detector.smart_turn_result(True, 0.99, first_pause) == []
    assert caller.detector.smart_turn_result(True, 0.99) == []
    caller.windows(SPEECH, 0.5)
    speech_end = caller.t
    second_pause = caller.until(SpeechPaused)
    # ...or arrives late, during the next pause: still ignored.
    assert caller.detector.smart_turn_result(True, 0.99, first_pause) == []
    assert second_pause.speech_end != first_pause.speech_end
    ended = caller.until(TurnEnded)
    assert isinstance(ended, TurnEnded)
    assert ended.reason == "silence"
    assert ended.t - speech_end >= 1.2


def test_blip_during_pause_neither_resumes_nor_voids_the_verdict() -> None:
    caller = Caller(TurnDetector(TurnConfig(end_secs=0.3)))
    caller.windows(SPEECH, 1.0)
    speech_end = caller.t
    paused = caller.until(SpeechPaused)
    caller.detector.smart_turn_result(True, 0.9, paused)
    blip = caller.windows(SPEECH, 0.096)  # a click or a breath: three windows
    assert blip == []
    assert caller.detector.speaking  # held open while the blip might be speech
    ended = caller.until(TurnEnded)
    assert caller.kinds() == ["SpeechStarted", "SpeechPaused", "TurnEnded"]
    assert isinstance(ended, TurnEnded)
    assert ended.reason == "smart_turn"
    assert ended.speech_end == pytest.approx(speech_end)


def test_new_turn_after_turn_ended_and_reset() -> None:
    caller = Caller()
    caller.windows(SPEECH, 0.5)
    caller.until(TurnEnded)
    caller.windows(SILENCE, 1.0)
    second = caller.until(SpeechStarted, SPEECH)
    assert isinstance(second, SpeechStarted)
    assert second.speech_start > 1.5
    assert caller.kinds() == ["SpeechStarted", "SpeechPaused", "TurnEnded", "SpeechStarted"]

    caller.detector.reset()
    assert not caller.detector.speaking
    assert caller.windows(SILENCE, 3.0) == []


def test_config_defaults_and_validation() -> None:
    config = TurnConfig()
    assert (
        config.speech_threshold,
        config.min_speech_secs,
        config.pause_secs,
        config.end_secs,
        config.max_silence_secs,
        config.smart_turn_threshold,
    ) == (0.5, 0.15, 0.2, 0.2, 1.2, 0.5)
    assert (config.hesitant_threshold, config.hesitant_end_secs) == (0.2, 0.5)
    assert [config.is_hesitant(p) for p in (0.19, 0.2, 0.49, 0.5)] == [False, True, True, False]
    with pytest.raises(ValidationError, match="pause_secs <= end_secs"):
        TurnConfig(pause_secs=0.5, end_secs=0.3)
    with pytest.raises(ValidationError, match="hesitant_end_secs <= max_silence_secs"):
        TurnConfig(hesitant_end_secs=1.5)
    with pytest.raises(ValidationError, match="end_secs <= hesitant_end_secs"):
        TurnConfig(end_secs=0.4, hesitant_end_secs=0.35)
    with pytest.raises(ValidationError, match="pause_secs <= end_secs"):
        TurnConfig(end_secs=0.15)
    with pytest.raises(ValidationError, match="hesitant_threshold <= smart_turn_threshold"):
        TurnConfig(hesitant_threshold=0.6)
    with pytest.raises(ValidationError):
        TurnConfig(speech_threshold=1.5)


def test_custom_config_changes_timings() -> None:
    caller = Caller(TurnDetector(TurnConfig(max_silence_secs=0.64, end_secs=0.32)))
    caller.windows(SPEECH, 0.5)
    speech_end = caller.t
    ended = caller.until(TurnEnded)
    assert 0.64 <= ended.t - speech_end < 0.64 + WINDOW_SECS


# --- SmartTurnModel and the whole chain on real speech ---------------------------------------


@pytest.fixture(scope="module")
def smart_turn() -> SmartTurnModel:
    return SmartTurnModel.shared()


def test_smart_turn_is_shared(smart_turn: SmartTurnModel) -> None:
    assert SmartTurnModel.shared() is smart_turn


@pytest.mark.parametrize(
    ("name", "mid_word_cuts"),
    [
        # "The horizon seems extremely dis|tant." and the middle of "extremely".
        ("en_speaker_b.wav", [2.13, 2.2, 2.26]),
        # "He began a confused complaint against the wiz|ard, who had..."
        ("en_speaker_a.wav", [2.9, 3.0, 3.1]),
    ],
)
def test_complete_sentence_scores_higher_than_cut_mid_word(
    smart_turn: SmartTurnModel, name: str, mid_word_cuts: list[float]
) -> None:
    audio = phone_speech(name)
    complete = smart_turn.predict(audio)
    assert complete > 0.7
    for cut in mid_word_cuts:
        cut_short = smart_turn.predict(audio[: int(cut * 16000)])
        assert cut_short < 0.3
        assert cut_short < complete


def test_smart_turn_split_over_two_threads_gives_the_same_verdicts(
    smart_turn: SmartTurnModel,
) -> None:
    """VOICEBOT_SMART_TURN_CPU_THREADS only changes how fast a verdict comes, never the verdict."""
    split = SmartTurnModel.shared(threads=2)
    assert split is not smart_turn and split.threads == 2
    for name in ("en_speaker_a.wav", "en_speaker_b.wav", "en_jfk.wav"):
        audio = phone_speech(name)
        for end in (0.5, 0.8, 1.0):
            cut = audio[: int(len(audio) * end)]
            assert split.predict(cut) == pytest.approx(smart_turn.predict(cut), abs=1e-3)


def test_smart_turn_takes_int16_or_float_and_only_the_last_8_seconds(
    smart_turn: SmartTurnModel,
) -> None:
    audio = phone_speech("en_jfk.wav")  # 11 s
    assert len(audio) > 8 * 16000
    as_int16 = smart_turn.predict(audio)
    assert smart_turn.predict(audio.astype(np.float32) / 32768) == pytest.approx(as_int16, abs=1e-4)
    assert smart_turn.predict(audio[-8 * 16000 :]) == pytest.approx(as_int16, abs=1e-6)
    assert 0.0 <= as_int16 <= 1.0


def test_vad_and_turn_detector_find_one_turn_in_real_speech(smart_turn: SmartTurnModel) -> None:
    """The whole chain as the call layer runs it, on a sentence followed by silence."""
    speech = phone_speech("en_speaker_b.wav")  # speech from about 0.4 s to 2.6 s, then quiet
    audio = np.concatenate([speech, np.zeros(16000, dtype=np.int16)])
    probabilities = SileroVAD().process(audio)
    detector = TurnDetector()
    events: list[TurnEvent] = []
    for index, probability in enumerate(probabilities):
        t = (index + 1) * WINDOW_SECS
        for event in detector.feed(float(probability), t):
            if isinstance(event, SpeechPausing):
                continue  # the session may start smart-turn early; this test does not
            events.append(event)
            if isinstance(event, SpeechPaused):
                verdict = smart_turn.predict(audio[: int(t * 16000)])
                events += detector.smart_turn_result(verdict >= 0.5, verdict, event)
    kinds = [type(event).__name__ for event in events]
    assert kinds == ["SpeechStarted", "SpeechPaused", "TurnEnded"]
    ended = events[-1]
    assert isinstance(ended, TurnEnded)
    assert ended.reason == "smart_turn"
    assert 0.2 < ended.speech_start < 0.6
    assert 2.3 < ended.speech_end < 2.8
    assert ended.t - ended.speech_end < 0.4


def _feed(detector, probabilities, start=0.0, window=0.032):
    events, t = [], start
    for probability in probabilities:
        t += window
        events += detector.feed(probability, round(t, 3))
    return events, t


def test_a_policy_s_wait_decides_a_pause_and_replaces_the_verdict_before():
    detector = TurnDetector(TurnConfig())
    detector.set_max_silence(1.2)
    events, t = _feed(detector, [0.9] * 20 + [0.0] * 7)
    pause = next(e for e in events if isinstance(e, SpeechPaused))
    assert detector.set_pause_wait(0.2, "smart_turn_words", pause=pause, probability=0.9)
    ended = detector.set_pause_wait(0.2, "smart_turn_words", pause=pause)
    assert ended == [] or isinstance(ended[0], TurnEnded)


def test_a_policy_wait_longer_than_the_ceiling_holds_the_turn_open():
    # "and..." then 3 s of thinking: the words asked for 4 s, the question's ceiling is 2.6 s.
    detector = TurnDetector(TurnConfig())
    detector.set_max_silence(2.6)
    events, t = _feed(detector, [0.9] * 20 + [0.0] * 7)
    pause = next(e for e in events if isinstance(e, SpeechPaused))
    assert detector.set_pause_wait(4.0, "words_unfinished", pause=pause) == []
    events, t = _feed(detector, [0.0] * 90, start=t)  # 2.9 s more silence
    assert not any(isinstance(e, TurnEnded) for e in events)
    events, t = _feed(detector, [0.0] * 40, start=t)
    ended = [e for e in events if isinstance(e, TurnEnded)]
    assert ended and ended[0].reason == "words_unfinished"


def test_resumed_pauses_are_recorded_and_a_stale_wait_is_ignored():
    detector = TurnDetector(TurnConfig())
    detector.set_max_silence(2.0)
    events, t = _feed(detector, [0.9] * 20 + [0.0] * 25 + [0.9] * 10)
    pause = next(e for e in events if isinstance(e, SpeechPaused))
    assert detector.resumed_pauses == (pytest.approx(0.8, abs=0.04),)
    # The verdict for the pause that is over comes late: it must not end the going-on turn.
    assert detector.set_pause_wait(0.2, "smart_turn_words", pause=pause) == []
    assert detector.speaking and not detector.paused


def test_a_turn_can_be_started_earlier_and_its_events_carry_that_start():
    caller = Caller()
    caller.windows(SILENCE, 1.0)
    started = caller.until(SpeechStarted, SPEECH)
    caller.detector.start_earlier(started.speech_start - 0.5)
    caller.detector.start_earlier(started.speech_start + 0.2)  # only ever earlier
    assert caller.detector.speech_start == pytest.approx(started.speech_start - 0.5)
    caller.windows(SPEECH, 0.5)
    ended = caller.until(TurnEnded)
    assert ended.speech_start == pytest.approx(started.speech_start - 0.5)
