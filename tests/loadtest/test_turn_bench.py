"""The turn-taking benchmark's offline mode: replaying policies over an answer's features."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadtest import turn_bench
from loadtest.turn_bench import (
    LEAD_SECS,
    Answer,
    AnswerFeatures,
    PauseRecord,
    baseline_policy,
    config_policy,
    replay,
)
from voicebot.speech.turn_policy import TurnPolicyConfig

WINDOW = 0.032


def answer(end: float) -> Answer:
    return Answer("a", Path("a.wav"), "en", "words", end, ["thinking_pause"], "tune")


def features(speech: list[tuple[float, float]], total: float, pauses: list[dict]) -> AnswerFeatures:
    """VAD probabilities (1 in the speech spans, 0 elsewhere, answer clock + lead) and pauses."""
    probabilities = []
    for index in range(round(total / WINDOW)):
        t = (index + 1) * WINDOW - LEAD_SECS
        probabilities.append(1.0 if any(lo <= t < hi for lo, hi in speech) else 0.0)
    records = [PauseRecord(**p) for p in pauses]
    return AnswerFeatures(probabilities, records, WINDOW)


def run(feats: AnswerFeatures, end: float, policy, ceiling: float):
    return replay(
        answer(end), feats, policy, ceiling, smart_turn_delay=0.06, asr_delay=0.15, reply_delay=0.03
    )


def extracted(speech: list[tuple[float, float]], total: float, verdicts: list[tuple[float, str]]):
    """Features whose pause records are keyed exactly as the replay's detector finds them."""
    feats = features(speech, total, [])
    from voicebot.speech.turn import SpeechPaused, TurnConfig, TurnDetector

    detector = TurnDetector(TurnConfig(pause_secs=0.2, end_secs=0.2, early_secs=0.0))
    detector.set_max_silence(1e9)
    pauses = []
    for index, probability in enumerate(feats.probabilities):
        for event in detector.feed(probability, (index + 1) * WINDOW):
            if isinstance(event, SpeechPaused):
                smart_turn, words = verdicts[len(pauses)]
                pauses.append(
                    PauseRecord(
                        round(event.speech_start, 3),
                        round(event.speech_end, 3),
                        round(event.t, 3),
                        smart_turn,
                        words,
                    )
                )
    feats.pauses = pauses
    return feats


def test_a_finished_sentence_then_a_thinking_pause_is_an_interruption_for_the_old_policy():
    # "I handled it." (smart-turn sure), 1.5 s of thinking, "and then I followed up."
    feats = extracted(
        [(0.0, 3.0), (4.5, 7.0)], 12.0, [(0.95, "I handled it."), (0.9, "and then I followed up.")]
    )
    old = run(feats, 7.0, baseline_policy, 1.2)
    assert old.interrupted and old.latency is None
    assert old.resume_hear_secs  # the candidate went on over the bot, who then stopped


def test_a_trailing_conjunction_holds_the_turn_and_the_latency_is_measured_at_the_end():
    feats = extracted(
        [(0.0, 3.0), (4.8, 7.0)], 14.0, [(0.95, "I handled it and"), (0.95, "followed up.")]
    )
    config = TurnPolicyConfig()
    new = run(feats, 7.0, config_policy(config), config.open_max_silence_secs)
    assert not new.interrupted
    # A finished sentence of an open answer, no closer: the open wait after the speech end.
    assert new.latency == pytest.approx(config.open_end_secs + 0.03, abs=0.1)
    assert new.unheard_secs == 0


def test_a_closer_ends_the_answer_at_once_when_its_words_are_in():
    feats = extracted(
        [(0.0, 3.0), (4.8, 7.0)],
        14.0,
        [(0.95, "I handled it and"), (0.3, "I handled it and followed up. That's it.")],
    )
    new = run(feats, 7.0, config_policy(TurnPolicyConfig()), 2.6)
    assert not new.interrupted and new.ends[0][1] == "closer"
    # The pause (0.2 s), the words 0.15 s after it, the reply 0.03 s after the end.
    assert new.latency == pytest.approx(0.2 + 0.15 + 0.03, abs=0.07)


@pytest.mark.parametrize(
    ("transcript", "kinds", "question", "clearly_finished"),
    [
        ("no", ["short_complete"], "closed", True),
        ("i think it's probably good alright thanks", ["long"], "open", True),
        ("我负责客服三年就这些", [], "open", True),
        ("i have a thousand thoughts about that thing", [], "open", False),
        ("thank you", [], "open", False),
    ],
)
def test_which_answers_are_clearly_finished_is_read_from_the_transcript(
    transcript, kinds, question, clearly_finished
):
    language = "zh" if transcript.startswith("我") else "en"
    one = Answer("a", Path("a.wav"), language, transcript, 1.0, kinds, "tune", question)
    assert one.clearly_finished is clearly_finished


def test_the_benchmark_runs_on_real_answers_with_the_real_models(tmp_path, monkeypatch):
    # Two answers of the set through the phone path, Silero, smart-turn and Whisper, once.
    manifest = json.loads((turn_bench.EVAL_DIR / "manifest.json").read_text())
    chosen = [e for e in manifest if e["id"] in ("en_mfa_um", "en_call_sheila_1444")]
    for entry in chosen:
        entry["file"] = str(turn_bench.EVAL_DIR / entry["file"])
    small = tmp_path / "manifest.json"
    small.write_text(json.dumps(chosen))
    monkeypatch.setattr(turn_bench, "CACHE_DIR", tmp_path / "cache")
    assert (
        turn_bench.main(
            ["--manifest", str(small), "--out", str(tmp_path), "--policies", "baseline,default"]
        )
        == 0
    )
    report = json.loads(next(tmp_path.glob("turn-bench-*.json")).read_text())
    assert report["answers"] == 2
    for policy in ("baseline", "default"):
        outcomes = report["policies"][policy]["outcomes"]
        assert len(outcomes) == 2 and all(o["ends"] for o in outcomes)
    pauses = [json.loads(p.read_text())["pauses"] for p in (tmp_path / "cache").glob("*.json")]
    assert any(p["words"] for answer in pauses for p in answer)  # Whisper heard words
    assert next(tmp_path.glob("turn-bench-*.png")).stat().st_size > 10_000
