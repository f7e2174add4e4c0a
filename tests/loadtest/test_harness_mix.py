"""The load harness's language mix (``--mix en=10,zh=10``): parsing and the per-language report.

Fast: no server. The mix's calls themselves are the harness's ordinary calls (tested at small
scale in ``test_harness.py``); here the option an operator types and the figures they read.
"""

from __future__ import annotations

import pytest

from loadtest.caller import percentile
from loadtest.harness import (
    DEFAULT_AUDIO,
    DEFAULT_CLIPS,
    DEFAULT_ZH_CLIPS,
    _by_answer_of_groups,
    by_language,
    interleave,
    main,
    markdown,
    parse_mix,
)


def test_a_mix_names_each_languages_callers_job_and_clips():
    english, chinese = parse_mix("en=10, zh=3")
    assert (english.language, english.calls, english.job_id) == ("en", 10, "customer_service_en")
    assert (chinese.language, chinese.calls, chinese.job_id) == ("zh", 3, "customer_service_zh")
    assert [a.name for a in english.answers] == list(DEFAULT_CLIPS)
    assert [a.name for a in chinese.answers] == list(DEFAULT_ZH_CLIPS)
    # The Chinese callers answer with real Mandarin speech from the shared clips.
    assert all(a.name.startswith("zh_") and a.is_file() for a in chinese.answers)
    assert all(a.parent == DEFAULT_AUDIO for a in english.answers + chinese.answers)
    assert [g.language for g in parse_mix("ZH=1")] == ["zh"]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("en", "is not LANGUAGE=CALLS"),
        ("=3", "is not LANGUAGE=CALLS"),
        ("fr=2", "'fr' is not one of en, zh"),
        ("en=0", "at least 1"),
        ("en=-1", "at least 1"),
        ("en=ten", "whole number"),
        ("en=1,en=2", "names 'en' twice"),
        ("en=1,", "is not LANGUAGE=CALLS"),
    ],
)
def test_a_wrong_mix_says_what_is_wrong(text, says):
    with pytest.raises(ValueError, match=says):
        parse_mix(text)


def test_callers_of_each_language_take_turns_so_the_ramp_mixes_them():
    english, chinese = parse_mix("en=3,zh=1")
    assert [g.language for g in interleave([english, chinese])] == ["en", "zh", "en", "en"]
    assert len(interleave(parse_mix("en=10,zh=10"))) == 20


@pytest.mark.parametrize(
    "argv",
    [
        ["--mix", "en=1,zh=x"],
        ["--mix", "en=1,zh=1", "--levels", "5"],
        ["--mix", "en=1,zh=1", "--search"],
        ["--mix", "en=1,zh=1", "--answer", "a.wav"],
        ["--mix", "en=1,zh=1", "--target", "both"],
    ],
)
def test_the_command_refuses_a_mix_it_cannot_run_before_starting_anything(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert "--mix" in capsys.readouterr().err


def _call(caller, language, v2v, eos=(), failure=None, talked_over=0):
    return {
        "caller": caller,
        "language": language,
        "job_id": f"customer_service_{language}",
        "call_sid": f"CA{caller}",
        "voice_to_voice": list(v2v),
        "end_of_speech_to_final": list(eos),
        "late_frame_gaps": 0,
        "frame_gaps": {},
        "talked_over": talked_over,
        "failure": failure,
    }


def test_the_report_gives_each_languages_latency_beside_the_total():
    groups = parse_mix("en=2,zh=1")
    english = [0.41, 0.52, 0.47, 0.39, 0.61, 0.44, 0.5, 0.48]
    chinese = [0.72, 0.95, 0.81, 0.77]
    per_call = [
        _call(0, "en", english[:4], eos=[0.2, 0.3]),
        _call(1, "zh", chinese, eos=[0.5], failure="ended knocked_out", talked_over=1),
        _call(2, "en", english[4:]),
    ]
    parts = by_language(per_call, groups)
    assert list(parts) == ["en", "zh"]
    assert parts["en"]["interviews"] == 2 and parts["zh"]["interviews"] == 1
    assert parts["en"]["voice_to_voice"]["n"] == 8 and parts["zh"]["voice_to_voice"]["n"] == 4
    assert parts["en"]["voice_to_voice"]["p50"] == percentile(english, 50)
    assert parts["zh"]["voice_to_voice"]["p95"] == percentile(chinese, 95)
    assert parts["zh"]["end_of_speech_to_final"]["n"] == 1
    assert (parts["en"]["failed_calls"], parts["zh"]["failed_calls"]) == (0, 1)
    assert parts["zh"]["talked_over"] == 1 and parts["zh"]["job_id"] == "customer_service_zh"

    # Each clip's own latencies, the English and the Mandarin ones.
    by_clip = _by_answer_of_groups(per_call, groups)
    assert by_clip["en_jfk.wav"]["n"] == 2 and by_clip["zh_news_mid.wav"]["n"] == 1
    # zh_aishell is the first and the fourth Chinese answer.
    assert by_clip["zh_aishell_BAC009S0724W0121.wav"]["n"] == 2

    level = {
        "target": "voicebot",
        "calls": 3,
        "interviews": 3,
        "voice_to_voice": {"p50": 0.5, "p95": 0.9, "p99": 0.95},
        "end_of_speech_to_final": {"p50": 0.3, "p95": 0.5},
        "late_frame_gaps": 0,
        "failed_calls": 1,
        "talked_over": 1,
        "cpu_cores": {"mean": 1.0, "max": 1.5},
        "rss_mb": {"max": 900},
        "meets_budget": False,
        "voice_to_voice_by_answer": by_clip,
        "by_language": parts,
    }
    report = {
        "started": "2026-12-06 22:00:00",
        "machine": {"cores": 2},
        "answers": list(by_clip),
        "levels": [level],
    }
    text = markdown(report)
    assert "Voice-to-voice by language" in text
    en_row = next(line for line in text.splitlines() if "| en | customer_service_en |" in line)
    zh_row = next(line for line in text.splitlines() if "| zh | customer_service_zh |" in line)
    assert f"| {percentile(english, 50) * 1000:.0f} | {percentile(english, 95) * 1000:.0f} |" in (
        en_row
    )
    assert f"| {percentile(chinese, 50) * 1000:.0f} | {percentile(chinese, 95) * 1000:.0f} |" in (
        zh_row
    )
    assert zh_row.endswith("| 1 | 1 |")  # one failed, one talked over


def test_a_level_without_a_mix_has_no_language_table():
    level = {
        "target": "voicebot",
        "calls": 1,
        "interviews": 1,
        "voice_to_voice": {"p50": 0.5, "p95": 0.9, "p99": 0.95},
        "end_of_speech_to_final": {"p50": 0.3, "p95": 0.5},
        "late_frame_gaps": 0,
        "failed_calls": 0,
        "talked_over": 0,
        "cpu_cores": {"mean": 1.0, "max": 1.5},
        "rss_mb": {"max": 900},
        "meets_budget": True,
    }
    report = {"started": "x", "machine": {"cores": 2}, "answers": [], "levels": [level]}
    assert "by language" not in markdown(report)
