"""The retry schedule: Svix-like waits, +-20% jitter, a scale for tests, then dead-letter."""

from __future__ import annotations

import random

import pytest

from hris_bridge.schedule import DEFAULT_DELAYS_SECS, RetrySchedule


def test_default_schedule_is_svix_like():
    schedule = RetrySchedule()
    assert DEFAULT_DELAYS_SECS == (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
    assert schedule.max_attempts == 8
    assert [schedule.nominal_delay(n) for n in range(8)] == list(DEFAULT_DELAYS_SECS)
    assert schedule.nominal_delay(8) is None  # after the 8th failure: dead-letter
    assert schedule.next_delay(8) is None
    assert schedule.total_span() == sum(DEFAULT_DELAYS_SECS)


def test_jitter_stays_within_20_percent():
    schedule = RetrySchedule()
    rng = random.Random(7)
    samples = [schedule.next_delay(2, rng) for _ in range(2000)]
    assert min(samples) >= 300 * 0.8 and max(samples) <= 300 * 1.2
    assert max(samples) - min(samples) > 100  # it does spread
    assert schedule.next_delay(0, rng) == 0  # the first attempt is immediate


def test_scale_runs_the_schedule_in_milliseconds():
    schedule = RetrySchedule(scale=1e-6)
    assert schedule.nominal_delay(1) == pytest.approx(5e-6)
    assert schedule.total_span() == pytest.approx(sum(DEFAULT_DELAYS_SECS) * 1e-6)
    assert schedule.total_span() < 0.2


def test_invalid_schedules_are_refused():
    with pytest.raises(ValueError):
        RetrySchedule(delays=())
    with pytest.raises(ValueError):
        RetrySchedule(delays=(0, -1))
    with pytest.raises(ValueError):
        RetrySchedule(jitter=1.5)
    with pytest.raises(ValueError):
        RetrySchedule(scale=-1)
