"""The load harness at small scale: two concurrent interviews against the real server."""

from __future__ import annotations

import asyncio
import json

import pytest

from loadtest.harness import (
    DEFAULT_CLIPS,
    Target,
    cpu_times,
    markdown,
    parse_counters,
    run_level,
    server_work,
    steal_percent,
    write_report,
)
from tests.conftest import API_TOKEN, AUDIO_DIR, TWILIO_AUTH_TOKEN

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def level(server):
    target = Target(
        "voicebot",
        server.url,
        pid=server.process.pid,
        api_token=API_TOKEN,
        twilio_auth_token=TWILIO_AUTH_TOKEN,
    )
    return asyncio.run(
        run_level(
            target, 2, answers=[AUDIO_DIR / c for c in DEFAULT_CLIPS], ramp_secs=1.0, progress=False
        )
    )


def test_two_calls_complete_and_are_measured(level):
    assert level["calls"] == 2 and level["interviews"] == 2
    assert level["failed_calls"] == 0, level["failures"]
    assert level["voice_to_voice"]["n"] == 8  # four answers a call
    for pct in ("p50", "p95", "p99"):
        assert level["voice_to_voice"][pct] > 0
    assert level["end_of_speech_to_final"]["n"] == 8
    assert sum(level["frame_gaps"].values()) > 1000  # every bot frame's gap was binned
    assert level["cpu_cores"]["mean"] > 0 and level["rss_mb"]["max"] > 100
    assert level["cpu_probe_ms"] > 0  # how fast the machine was, to compare levels by
    assert level["caller_cpu_cores"] > 0  # the simulated carriers' share of the same cores
    assert 0 <= level["cpu_steal_percent"] < 100  # what the hypervisor took meanwhile
    assert len(level["timeseries"]) >= 10
    assert {c["call_sid"] for c in level["per_call"]} and all(
        len(c["voice_to_voice"]) == 4 for c in level["per_call"]
    )
    # Each clip's own latencies, so a slow answer can be told from a slow server.
    assert list(level["voice_to_voice_by_answer"]) == list(DEFAULT_CLIPS)
    assert all(stats["n"] == 2 for stats in level["voice_to_voice_by_answer"].values())
    # What the server spent on them, from its /metrics: at least one Whisper run per answer
    # (a kept speculation is the final) and a smart-turn verdict at the pauses.
    work = level["server_work"]
    assert work["asr_runs"] >= 8 and work["asr_busy_secs"] > 0
    assert work["asr_runs_per_answer"] >= 1.0
    assert work["smart_turn_runs_per_answer"] > 0
    assert 1.0 <= work["asr_batch_mean"] <= 4  # transcriptions per Whisper decode
    assert work["smart_turn_runs"] + work["smart_turn_early"] >= 8
    assert work["loop_stalls"] >= 0  # the server's event-loop lag, read from its histogram
    assert work["speculations_kept"] + work["speculations_discarded"] >= 1


def test_steal_is_the_share_of_cpu_time_the_hypervisor_took():
    assert steal_percent((100, 10_000), (150, 11_000)) == 5.0
    assert steal_percent(None, (150, 11_000)) is None
    assert steal_percent((100, 10_000), (100, 10_000)) is None  # no time passed
    steal, total = cpu_times()  # this machine's /proc/stat
    assert 0 <= steal <= total


def test_server_counters_are_read_from_the_prometheus_text():
    text = """# HELP voicebot_asr_transcriptions Transcriptions completed.
voicebot_asr_transcriptions 12.0
voicebot_asr_busy_seconds 3.5
voicebot_asr_decodes 8.0
voicebot_asr_speculations_total{outcome="kept"} 4.0
voicebot_asr_speculations_total{outcome="discarded"} 2.0
voicebot_smart_turn_total{outcome="run"} 9.0
voicebot_smart_turn_total{outcome="early"} 5.0
voicebot_smart_turn_total{outcome="early_unused"} 2.0
voicebot_playout_late_frames_total 1.0
voicebot_inbound_gaps_total 3.0
voicebot_asr_seconds_count 12.0
"""
    counters = parse_counters(text)
    assert counters["asr_runs"] == 12 and counters["asr_busy_secs"] == 3.5
    assert counters["asr_decodes"] == 8
    assert counters["speculations_kept"] == 4 and counters["speculations_discarded"] == 2
    assert counters["smart_turn_runs"] == 9 and counters["smart_turn_skipped"] == 0
    assert counters["smart_turn_early"] == 5 and counters["smart_turn_early_unused"] == 2
    assert counters["late_frames"] == 1 and counters["inbound_gaps"] == 3
    before = dict.fromkeys(counters, 0.0)
    work = server_work(before, counters, answers=6)
    assert work["asr_batch_mean"] == 1.5 and work["asr_runs_per_answer"] == 2.0
    assert work["smart_turn_runs_per_answer"] == 2.67
    assert "asr_batch_mean" not in server_work(before, before, answers=0)  # nothing decoded


def test_report_files_hold_the_fields(level, tmp_path):
    report = {
        "started": "2026-01-01 00:00:00",
        "machine": {"cores": 2},
        "answers": list(DEFAULT_CLIPS),
        "duration_secs": 0,
        "levels": [level],
        "capacity": {"voicebot": 2 if level["meets_budget"] else 0},
        "ratios": {},
    }
    paths = write_report(report, tmp_path)
    saved = json.loads(paths["json"].read_text())
    assert saved["levels"][0]["voice_to_voice"]["p95"] == level["voice_to_voice"]["p95"]
    assert "meets_budget" in saved["levels"][0]
    assert "| voicebot | 2 | 2 |" in paths["markdown"].read_text()
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "capacity of voicebot" in markdown(report)
    assert "Voice-to-voice by answer clip" in markdown(report)
    assert "Server work per answer" in markdown(report)
    assert (
        f"| {level['cpu_probe_ms']} | {level['cpu_steal_percent']} | {level['caller_cpu_cores']} |"
        in markdown(report)
    )
