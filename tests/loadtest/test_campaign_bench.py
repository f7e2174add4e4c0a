"""The campaign benchmark's report maths (no server: a made-up simulator report)."""

from __future__ import annotations

from loadtest.campaign_bench import dialer_counters, markdown, summarize
from loadtest.carrier_sim import SimulatorReport


def report(**overrides) -> SimulatorReport:
    fields = {
        "calls": 6,
        "outcomes": {"completed": 4, "busy": 1, "no-answer": 1},
        "answered_by": {"human": 3, "machine_end_beep": 1},
        "max_concurrent_calls": 4,
        "max_concurrent_up": 3,
        "dials_per_minute": 12.345,
        "voice_to_voice": [0.5, 0.6, 0.7, 0.8, 1.2],
        "api_errors": {429: 2},
        "callbacks_unanswered": 0,
    }
    return SimulatorReport(**{**fields, **overrides})


def test_summary_gives_the_carriers_figures_and_the_budget_check():
    result = summarize(report(), {"held_asr_backlog": 3.0}, 61.04, candidates=6, settled=6)
    assert result["max_calls_at_once"] == 4 and result["max_up_at_once"] == 3
    assert result["dials_per_minute"] == 12.3
    assert result["voice_to_voice_p50_ms"] == 700
    assert result["voice_to_voice_p95_ms"] > 900  # the slow 1.2 s answer is in the tail
    assert result["within_budget"] is False
    assert result["placed_twice"] == 0
    assert result["api_errors"] == {"429": 2}
    assert result["dialer"] == {
        "held_asr_backlog": 3.0,
        "held_loop_lag": 0.0,
        "carrier_errors": 0.0,
    }
    assert result["wall_secs"] == 61.0


def test_a_fast_run_is_within_budget_and_a_call_placed_twice_is_counted():
    result = summarize(report(calls=7, voice_to_voice=[0.4, 0.5]), {}, 10, candidates=6, settled=6)
    assert result["within_budget"] is True
    assert result["placed_twice"] == 1


def test_no_timed_answer_is_not_within_budget():
    result = summarize(report(voice_to_voice=[], dials_per_minute=None), {}, 1, 6, 6)
    assert result["voice_to_voice_p95_ms"] is None and result["within_budget"] is False
    assert result["dials_per_minute"] is None
    assert "| within the 900 ms p95 budget | no |" in markdown(result)


def test_dialer_counters_are_read_from_metrics_text():
    text = "\n".join(
        [
            "# HELP voicebot_dialer_held_back_total held",
            'voicebot_dialer_held_back_total{reason="asr_backlog"} 5.0',
            'voicebot_dialer_held_back_total{reason="loop_lag"} 2.0',
            'voicebot_dialer_held_back_total{reason="outside_hours"} 9.0',
            'voicebot_dialer_carrier_errors_total{kind="rate_limited"} 1.0',
            'voicebot_dialer_carrier_errors_total{kind="unavailable"} 2.0',
            'voicebot_dialer_carrier_errors_created{kind="unavailable"} 1.7e9',
        ]
    )
    assert dialer_counters(text) == {
        "held_asr_backlog": 5.0,
        "held_loop_lag": 2.0,
        "carrier_errors": 3.0,
    }
