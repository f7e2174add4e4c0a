"""Calling hours in the candidate's zone: windows, holidays, DST gaps and overlaps, retries."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from voicebot.campaigns.hours import (
    CallingPolicy,
    NoCallingWindow,
    in_window,
    local_instant,
    next_attempt_at,
    next_window_start,
)

NY, LON, SYD, SHA = "America/New_York", "Europe/London", "Australia/Sydney", "Asia/Shanghai"


def at(zone: str, text: str, fold: int = 0) -> float:
    """The instant of a wall-clock time ``YYYY-MM-DD HH:MM`` in ``zone``."""
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone), fold=fold).timestamp()


def wall(zone: str, instant: float) -> str:
    """The wall clock of ``instant`` in ``zone`` as ``YYYY-MM-DD HH:MM`` with its UTC offset."""
    return datetime.fromtimestamp(instant, ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M %z")


def policy(**hours: object) -> CallingPolicy:
    return CallingPolicy.model_validate({"calling_hours": hours} if hours else {})


# (zone, wall time, fold, hours, inside?)
IN_WINDOW_CASES = [
    (SHA, "2026-03-02 08:59", 0, {}, False),
    (SHA, "2026-03-02 09:00", 0, {}, True),
    (SHA, "2026-03-02 19:59", 0, {}, True),
    (SHA, "2026-03-02 20:00", 0, {}, False),  # end excluded
    (SHA, "2026-03-02 23:30", 0, {}, False),
    (SHA, "2026-03-07 10:00", 0, {"days": ["mon", "tue", "wed", "thu", "fri"]}, False),  # Sat
    (SHA, "2026-03-09 10:00", 0, {"days": ["mon", "tue", "wed", "thu", "fri"]}, True),  # Mon
    (SHA, "2026-10-01 10:00", 0, {"holidays": ["2026-10-01"]}, False),  # National Day
    (SHA, "2026-10-02 10:00", 0, {"holidays": ["2026-10-01"]}, True),
    # New York spring forward 2026-03-08 02:00 -> 03:00
    (NY, "2026-03-08 09:00", 0, {}, True),
    (NY, "2026-03-08 03:00", 0, {"start": "02:30", "end": "04:00"}, True),
    (NY, "2026-03-08 01:59", 0, {"start": "02:30", "end": "04:00"}, False),
    # New York fall back 2026-11-01 02:00 -> 01:00: 01:30 happens twice, both are inside
    (NY, "2026-11-01 01:30", 0, {"start": "01:00", "end": "02:00"}, True),
    (NY, "2026-11-01 01:30", 1, {"start": "01:00", "end": "02:00"}, True),
    # London: spring forward 2026-03-29 01:00 -> 02:00; fall back 2026-10-25 02:00 -> 01:00
    (LON, "2026-03-29 08:59", 0, {}, False),
    (LON, "2026-03-29 09:00", 0, {}, True),
    (LON, "2026-10-25 19:59", 0, {}, True),
    (LON, "2026-10-25 20:00", 0, {}, False),
    # Sydney (southern hemisphere): DST ends 2026-04-05 03:00 -> 02:00, starts 2026-10-04
    (SYD, "2026-04-05 09:00", 0, {}, True),
    (SYD, "2026-10-04 08:30", 0, {}, False),
    (SYD, "2026-10-04 09:00", 0, {}, True),
    (SYD, "2026-12-25 10:00", 0, {"holidays": ["2026-12-25"]}, False),
]


@pytest.mark.parametrize(("zone", "text", "fold", "hours", "inside"), IN_WINDOW_CASES)
def test_in_window_on_the_candidates_wall_clock(zone, text, fold, hours, inside):
    assert in_window(policy(**hours), zone, at(zone, text, fold)) is inside


def test_the_same_instant_is_inside_for_one_candidate_and_outside_for_another():
    moment = at(SHA, "2026-06-01 10:00")  # 22:00 the evening before in New York
    assert in_window(policy(), SHA, moment)
    assert not in_window(policy(), NY, moment)


# (zone, from wall time, hours, expected wall time of the next window start with offset)
NEXT_WINDOW_CASES = [
    (SHA, "2026-03-02 07:00", {}, "2026-03-02 09:00 +0800"),
    (SHA, "2026-03-02 12:34", {}, "2026-03-02 12:34 +0800"),  # inside: itself
    (SHA, "2026-03-02 20:00", {}, "2026-03-03 09:00 +0800"),
    (
        SHA,
        "2026-03-06 21:00",
        {"days": ["mon", "tue", "wed", "thu", "fri"]},
        "2026-03-09 09:00 +0800",
    ),
    (SHA, "2026-09-30 21:00", {"holidays": ["2026-10-01", "2026-10-02"]}, "2026-10-03 09:00 +0800"),
    # New York: 09:00 on the spring-forward day exists (EDT)
    (NY, "2026-03-07 22:00", {}, "2026-03-08 09:00 -0400"),
    # a 02:30 start on the spring-forward day does not exist: the window opens at 03:00 EDT
    (NY, "2026-03-08 00:00", {"start": "02:30", "end": "05:00"}, "2026-03-08 03:00 -0400"),
    # and the next day it is 02:30 again
    (NY, "2026-03-08 06:00", {"start": "02:30", "end": "05:00"}, "2026-03-09 02:30 -0400"),
    # fall back: a 01:30 start opens at its first occurrence (EDT)
    (NY, "2026-11-01 00:00", {"start": "01:30", "end": "05:00"}, "2026-11-01 01:30 -0400"),
    (NY, "2026-10-31 21:00", {}, "2026-11-01 09:00 -0500"),
    # London
    (LON, "2026-03-28 20:30", {}, "2026-03-29 09:00 +0100"),
    (LON, "2026-03-29 00:30", {"start": "01:30", "end": "03:00"}, "2026-03-29 02:00 +0100"),
    (LON, "2026-10-24 23:00", {}, "2026-10-25 09:00 +0000"),
    # Sydney: DST starts 2026-10-04 02:00 -> 03:00 (southern spring), ends 2026-04-05
    (SYD, "2026-10-03 22:00", {"start": "02:15", "end": "06:00"}, "2026-10-04 03:00 +1100"),
    (SYD, "2026-04-04 21:00", {}, "2026-04-05 09:00 +1000"),
    (SYD, "2026-04-05 00:00", {"start": "02:30", "end": "06:00"}, "2026-04-05 02:30 +1100"),
    # Shanghai has no DST: same offset all year
    (SHA, "2026-07-01 05:00", {}, "2026-07-01 09:00 +0800"),
    (SHA, "2026-12-31 20:30", {}, "2027-01-01 09:00 +0800"),
]


@pytest.mark.parametrize(("zone", "text", "hours", "expected"), NEXT_WINDOW_CASES)
def test_next_window_start(zone, text, hours, expected):
    p = policy(**hours)
    start = next_window_start(p, zone, at(zone, text))
    assert wall(zone, start) == expected
    assert in_window(p, zone, start)


def test_a_candidate_without_a_zone_is_called_in_the_policys_zone():
    p = CallingPolicy.model_validate({"timezone": SHA})
    moment = at(SHA, "2026-03-02 07:00")
    assert wall(SHA, next_window_start(p, "", moment)) == "2026-03-02 09:00 +0800"
    assert wall("UTC", next_window_start(CallingPolicy(), "", moment)) == "2026-03-02 09:00 +0000"


def test_local_instant_in_a_gap_is_the_moment_the_gap_ends():
    from datetime import date, time

    instant = local_instant(date(2026, 3, 8), time(2, 30), ZoneInfo(NY))
    assert wall(NY, instant) == "2026-03-08 03:00 -0400"
    assert wall(NY, instant - 1) == "2026-03-08 01:59 -0500"


NO_SUNDAYS = {"days": ["mon", "tue", "wed", "thu", "fri", "sat"]}


@pytest.mark.parametrize(
    ("zone", "failed", "hours", "expected"),
    [
        (SHA, "2026-03-02 10:00", {}, "2026-03-03 10:00 +0800"),  # 24 h later, inside
        (SHA, "2026-03-02 19:30", {}, "2026-03-03 19:30 +0800"),
        # 24 h after Saturday 10:00 is Sunday, not a calling day: Monday 09:00
        (SHA, "2026-03-07 10:00", NO_SUNDAYS, "2026-03-09 09:00 +0800"),
        # across spring forward: 24 h after Sat 10:00 EST is Sun 11:00 EDT (a 23 h day)
        (NY, "2026-03-07 10:00", {}, "2026-03-08 11:00 -0400"),
        # across fall back: 24 h after Sat 10:00 EDT is Sun 09:00 EST (a 25 h day)
        (NY, "2026-10-31 10:00", {}, "2026-11-01 09:00 -0500"),
        # 24 h after 19:30 BST is 18:30 GMT
        (LON, "2026-10-24 19:30", {}, "2026-10-25 18:30 +0000"),
        # Sydney: 24 h after 19:45 AEST is 20:45 AEDT (outside); the 4th is a holiday: the 5th
        (SYD, "2026-10-03 19:45", {"holidays": ["2026-10-04"]}, "2026-10-05 09:00 +1100"),
    ],
)
def test_next_attempt_is_a_day_later_moved_into_the_window(zone, failed, hours, expected):
    p = policy(**hours)
    failed_at = at(zone, failed)
    due = next_attempt_at(p, zone, failed_at, 1)
    assert wall(zone, due) == expected
    assert due >= failed_at + p.retry_after_secs
    assert in_window(p, zone, due)


def test_a_short_retry_delay_stays_in_the_same_window():
    p = CallingPolicy.model_validate({"retry_after_secs": 1800})
    failed_at = at(SHA, "2026-03-02 10:00")
    assert wall(SHA, next_attempt_at(p, SHA, failed_at, 1)) == "2026-03-02 10:30 +0800"
    late = at(SHA, "2026-03-02 19:45")
    assert wall(SHA, next_attempt_at(p, SHA, late, 1)) == "2026-03-03 09:00 +0800"


@pytest.mark.parametrize("zone", [NY, LON, SYD, SHA])
def test_spread_retries_fall_at_other_times_of_day(zone):
    p = CallingPolicy.model_validate({"spread_retries": True, "max_attempts": 4})
    attempt_at = at(zone, "2026-03-02 09:00")
    hours_of_day = [datetime.fromtimestamp(attempt_at, ZoneInfo(zone)).hour]
    for number in range(1, 4):  # each attempt fails at once
        due = next_attempt_at(p, zone, attempt_at, number)
        assert due >= attempt_at + p.retry_after_secs
        assert in_window(p, zone, due)
        attempt_at = due
        hours_of_day.append(datetime.fromtimestamp(due, ZoneInfo(zone)).hour)
    assert len(set(hours_of_day)) == 4, hours_of_day
    # without the option, every retry is at the same hour as the first try
    plain = CallingPolicy.model_validate({"max_attempts": 4})
    first = at(zone, "2026-03-02 09:00")
    assert datetime.fromtimestamp(next_attempt_at(plain, zone, first, 1), ZoneInfo(zone)).hour == 9


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"calling_hours": {"start": "20:00", "end": "09:00"}}, "crossing midnight"),
        ({"calling_hours": {"start": "09:00", "end": "09:00"}}, "not after start"),
        ({"calling_hours": {"start": "9am"}}, "HH:MM"),
        ({"calling_hours": {"start": "24:00"}}, "HH:MM"),
        ({"calling_hours": {"days": []}}, "at least 1"),
        ({"calling_hours": {"days": ["monday"]}}, "'mon'"),
        ({"calling_hours": {"holidays": ["2026-13-01"]}}, "date"),
        ({"max_attempts": 0}, "greater than or equal to 1"),
        ({"retry_after_secs": 5}, "greater than or equal to 60"),
        ({"max_concurrent": 0}, "greater than or equal to 1"),
        ({"timezone": "Mars/Olympus"}, "IANA"),
        ({"timezone": "America"}, "IANA"),
        ({"caller_id": "4155550100"}, "E.164"),
        ({"surprise": 1}, "Extra inputs"),
    ],
)
def test_a_bad_policy_is_refused_saying_what_to_fix(body, says):
    with pytest.raises(ValidationError) as caught:
        CallingPolicy.model_validate(body)
    assert says in str(caught.value)


def test_defaults_are_the_issues():
    p = CallingPolicy()
    assert (p.calling_hours.start, p.calling_hours.end) == ("09:00", "20:00")
    assert len(p.calling_hours.days) == 7
    assert (p.max_attempts, p.retry_after_secs, p.timezone) == (3, 86400.0, "UTC")


def test_a_policy_with_no_open_day_says_so():
    from datetime import date, timedelta

    mondays = [date(2026, 1, 5) + timedelta(weeks=n) for n in range(130)]
    p = policy(days=["mon"], holidays=[d.isoformat() for d in mondays[1:]])
    start = next_window_start(p, SHA, at(SHA, "2026-01-01 00:00"))
    assert wall(SHA, start) == "2026-01-05 09:00 +0800"  # the one Monday that is no holiday
    with pytest.raises(NoCallingWindow, match="no window"):
        next_window_start(p, SHA, at(SHA, "2026-01-06 00:00"))
