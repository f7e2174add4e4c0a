"""The Chinese recognition benchmark: what it counts as an error, and how it cuts an answer."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from loadtest import zh_asr_bench
from loadtest.zh_asr_bench import (
    BEFORE,
    Utterance,
    edits,
    normalise,
    run,
    server_cut,
    speech_span,
    table,
)
from tests.conftest import AUDIO_DIR
from voicebot.audio.codec import ulaw_decode
from voicebot.audio.frames import read_wav, to_phone_ulaw
from voicebot.dialogue.recognition_prompt import question_keywords
from voicebot.dialogue.script import load_script

ROOT = zh_asr_bench.ROOT


def test_errors_are_counted_on_words_not_on_writing_conventions() -> None:
    # Traditional characters, punctuation, spaces and digits written as numerals are not errors
    assert normalise("兩班倒，我會 7點半 到！") == normalise("两班倒我会七点半到")
    assert normalise("Python 三年") == "python三年"
    assert edits("两班倒", "两班到") == 1
    assert edits("广州市房地产", "广州市佛地产中") == 2
    assert edits("", "多") == 1 and edits("多", "") == 1


@pytest.fixture(scope="module")
def aishell() -> Utterance:
    script = load_script(ROOT / "dialogues" / "workshop_operator_zh.yaml")
    question = next(q for q in script.questions if question_keywords(script, q))
    pcm, rate = read_wav(AUDIO_DIR / "zh_aishell_BAC009S0724W0121.wav")
    phone = ulaw_decode(to_phone_ulaw(pcm, rate))
    return Utterance(
        "zh_aishell",
        "广州市房地产中介协会分析",
        "tune",
        "read",
        phone,
        speech_span(phone),
        script,
        question,
    )


def test_the_answer_is_cut_around_the_speech_the_server_s_vad_finds(aishell) -> None:
    start, end = aishell.speech
    total = len(aishell.phone) / 8000
    # the clip (4.3 s) has silence around 3.3 s of speech
    assert 0.2 < start < 0.8 and 3.3 < end < total
    cut = server_cut(aishell, BEFORE)
    assert cut.dtype == np.float32
    expected = (min(end + BEFORE.post, total) - (start - BEFORE.pre)) * 16000
    assert abs(len(cut) - expected) <= 2
    whole = server_cut(aishell, replace(BEFORE, whole=True))
    assert len(whole) == len(aishell.phone) * 2


def test_rows_keep_tune_and_holdout_apart_and_results_are_cached(
    aishell, tmp_path, monkeypatch
) -> None:
    monkeypatch.setattr(zh_asr_bench, "RESULTS", tmp_path)
    decoded: list[str] = []

    def fake_run(self, utt, setting):
        decoded.append(utt.id)
        return ("广州市佛地产中间协会分析" if utt.split == "tune" else utt.text), 0.5

    monkeypatch.setattr(zh_asr_bench.Transcriber, "run", fake_run)
    holdout = replace(aishell, id="zh_holdout", split="holdout")
    rows, texts = run([aishell, holdout], [BEFORE])
    tune, hold = rows
    assert (tune.split, tune.edits, tune.ref_chars) == ("tune", 2, 12)
    assert (hold.split, hold.edits) == ("holdout", 0)
    assert texts[BEFORE.name]["zh_holdout"] == holdout.text
    assert "16.7% (2/12)" in table(rows) and "0.0% (0/12)" in table(rows)
    run([aishell, holdout], [BEFORE])  # a rerun reads the cache
    assert decoded == ["zh_aishell", "zh_holdout"]


def test_the_evaluation_set_is_big_enough_and_holds_out_a_third_by_source() -> None:
    manifest = json.loads((ROOT / "loadtest" / "zh_asr_eval" / "manifest.json").read_text("utf-8"))
    assert len(manifest) >= 50
    assert len({e["id"] for e in manifest}) == len(manifest)
    for entry in manifest:
        assert normalise(entry["text"]), entry["id"]  # a transcript with words in it
        assert entry["licence"].strip() and entry["source"].strip(), entry["id"]
        assert entry["split"] in ("tune", "holdout") and entry["seconds"] > 0
    holdout = [e for e in manifest if e["split"] == "holdout"]
    assert 0.3 <= len(holdout) / len(manifest) <= 0.4
    # a source (speaker / recording) is wholly on one side
    sides = {}
    for entry in manifest:
        sides.setdefault(entry["group"], set()).add(entry["split"])
    assert all(len(s) == 1 for s in sides.values())
    assert len({g for g, s in sides.items() if "holdout" in s}) >= 3
