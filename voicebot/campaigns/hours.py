"""Calling hours: when a campaign may call a candidate, in the candidate's own time zone.

Pure functions over a :class:`CallingPolicy` and Unix times; no clock, no store. The dialer asks
:func:`in_window` before it places a call and :func:`next_attempt_at` after an attempt failed; the
campaign store asks :func:`next_window_start` when an interview joins a campaign or a campaign
resumes.

Rules (what a candidate would expect):

- A window is ``start`` to ``end`` (``HH:MM``, end excluded) of the candidate's *wall clock*, on
  the listed ``days`` and not on ``holidays`` (dates in the candidate's zone). A window crossing
  midnight (end before or at start) is **rejected** with a message: split it over two campaigns.
- Daylight saving: a wall time that does not exist (02:30 on a spring-forward day) starts the
  window at the first moment that exists after it (03:00); a wall time that happens twice (01:30
  on a fall-back day) starts the window at its first occurrence. Whether a moment is inside is
  always judged on the wall clock the candidate sees.
- A candidate without a time zone is called in the policy's ``timezone`` (default UTC; the
  REST API does not guess one from the job).
- ``next_attempt_at``: ``retry_after_secs`` after the failed attempt, moved into the next window.
  With ``spread_retries`` and a delay of at least :data:`SPREAD_MIN_DELAY_SECS`, each attempt is
  moved a further share of the window along (attempt 1 in the morning, 2 at midday, 3 in the
  afternoon, ...), never earlier than ``retry_after_secs`` after the failure: a second try at
  the same hour tends to fail the same way.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, field_validator, model_validator

Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
"""Day names in ``datetime.weekday()`` order."""

E164 = re.compile(r"\+[1-9][0-9]{6,14}")
"""A phone number in E.164 form: ``+``, then 7-15 ASCII digits (fullmatch)."""
CLOCK = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")
"""A wall-clock time ``HH:MM`` (24 h)."""

SPREAD_MIN_DELAY_SECS = 3 * 3600.0
"""Retry delays from which ``spread_retries`` moves attempts to other times of day."""
SEARCH_DAYS = 800
"""How far ahead a window is looked for (holidays and days can leave few open dates)."""


class NoCallingWindow(ValueError):
    """The policy leaves no window in the next :data:`SEARCH_DAYS` days."""


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``; ``ValueError`` with what to send for an unknown one."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: "America" is a folder
        raise ValueError(
            f"unknown time zone {name!r}: use an IANA name, e.g. Asia/Shanghai or America/New_York"
        ) from None


def valid_zone(name: str) -> bool:
    """Whether ``name`` is a known IANA zone."""
    try:
        zone(name)
    except ValueError:
        return False
    return True


class CallingHours(BaseModel):
    """When a candidate may be called, on their own wall clock."""

    model_config = {"extra": "forbid"}

    start: str = Field("09:00", description="First minute of the window, HH:MM (24 h).")
    end: str = Field("20:00", description="End of the window (excluded), HH:MM, after start.")
    days: list[Day] = Field(default_factory=lambda: list(DAYS), min_length=1)
    holidays: list[date] = Field(default_factory=list, max_length=1000)

    @field_validator("start", "end")
    @classmethod
    def _clock(cls, value: str) -> str:
        if not CLOCK.fullmatch(value):
            raise ValueError("must be a 24 h time HH:MM, e.g. 09:00 or 20:30")
        return value

    @field_validator("holidays", mode="before")
    @classmethod
    def _holiday_dates(cls, value: object) -> object:
        if isinstance(value, list) and not all(isinstance(v, str | date) for v in value):
            raise ValueError("holidays must be dates written YYYY-MM-DD, e.g. 2026-10-01")
        return value

    @field_validator("days")
    @classmethod
    def _days(cls, value: list[Day]) -> list[Day]:
        return [day for day in DAYS if day in value]  # week order, no repeats

    @model_validator(mode="after")
    def _order(self) -> CallingHours:
        if self.end <= self.start:
            raise ValueError(
                f"calling_hours: end {self.end} is not after start {self.start}; a window"
                " crossing midnight is not supported: use e.g. start 09:00, end 20:00"
            )
        return self

    @property
    def start_time(self) -> time:
        """``start`` as a time."""
        return time.fromisoformat(self.start)

    @property
    def end_time(self) -> time:
        """``end`` as a time."""
        return time.fromisoformat(self.end)


class CallingPolicy(BaseModel):
    """How a campaign calls: its window, attempts, pace and caller ID."""

    model_config = {"extra": "forbid"}

    calling_hours: CallingHours = Field(default_factory=CallingHours)
    timezone: str = Field("UTC", description="Zone of candidates who gave none (IANA name).")
    max_attempts: int = Field(3, ge=1, le=20)
    retry_after_secs: float = Field(86400.0, ge=60, le=30 * 86400)
    spread_retries: bool = False
    max_concurrent: int = Field(5, ge=1, le=1000)
    caller_id: str | None = Field(None, max_length=20)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        zone(value)
        return value

    @field_validator("caller_id")
    @classmethod
    def _caller_id(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        value = value.replace(" ", "").replace("-", "")
        if not E164.fullmatch(value):
            raise ValueError("caller_id must be in E.164 form, e.g. +14155550100")
        return value


# -- wall clock <-> instants ---------------------------------------------------------------


def _wall(at: float, tz: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(at, tz)


def _open_day(hours: CallingHours, day: date) -> bool:
    return DAYS[day.weekday()] in hours.days and day not in hours.holidays


def local_instant(day: date, clock: time, tz: ZoneInfo) -> float:
    """The first instant the wall clock of ``tz`` reads ``clock`` (or later) on ``day``.

    A time in a spring-forward gap gives the moment the gap ends; a time that happens twice
    gives its first occurrence.
    """
    naive = datetime.combine(day, clock)
    first = naive.replace(tzinfo=tz, fold=0)
    if first.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == naive:
        return first.timestamp()  # exists (fold=0: the first of two occurrences)
    # In a gap: fold=0 reads it with the offset before the change (an instant after the gap),
    # fold=1 with the one after (an instant before it). The change lies between; find it.
    low, high = naive.replace(tzinfo=tz, fold=1).timestamp(), first.timestamp()
    if low > high:
        low, high = high, low
    before = _wall(low, tz).utcoffset()
    while high - low > 1:
        middle = (low + high) // 2
        if _wall(middle, tz).utcoffset() == before:
            low = middle
        else:
            high = middle
    return high


def in_window(policy: CallingPolicy, tz_name: str, at: float) -> bool:
    """Whether the candidate's wall clock at ``at`` is inside the calling hours."""
    hours = policy.calling_hours
    wall = _wall(at, zone(tz_name or policy.timezone))
    clock = wall.time().replace(tzinfo=None)
    return _open_day(hours, wall.date()) and hours.start_time <= clock < hours.end_time


def next_window_start(policy: CallingPolicy, tz_name: str, at: float) -> float:
    """``at`` when inside the calling hours, else the start of the next window after it.

    Raises :class:`NoCallingWindow` if none opens within :data:`SEARCH_DAYS` days.
    """
    if in_window(policy, tz_name, at):
        return at
    tz = zone(tz_name or policy.timezone)
    hours = policy.calling_hours
    day = _wall(at, tz).date()
    for _ in range(SEARCH_DAYS):
        if _open_day(hours, day):
            start = local_instant(day, hours.start_time, tz)
            if start >= at and in_window(policy, tz_name, start):
                return start
        day += timedelta(days=1)
    raise NoCallingWindow(f"the calling hours leave no window in the next {SEARCH_DAYS} days")


def _window_secs(hours: CallingHours) -> float:
    start, end = hours.start_time, hours.end_time
    return (end.hour - start.hour) * 3600.0 + (end.minute - start.minute) * 60.0


def next_attempt_at(
    policy: CallingPolicy, tz_name: str, failed_at: float, attempt_number: int
) -> float:
    """When to call again after attempt ``attempt_number`` (1 = the first) failed at ``failed_at``.

    Never earlier than ``retry_after_secs`` after the failure, always inside the calling hours.
    With ``spread_retries`` (and a delay of at least :data:`SPREAD_MIN_DELAY_SECS`), each
    retry is moved 1/``max_attempts`` of the window further along the day than the attempt that
    failed, wrapping round: the attempts fall at different times of day. ``attempt_number`` is
    accepted for the dialer's records and future policies; the rotation needs only the time of
    the failed attempt.
    """
    due = failed_at + policy.retry_after_secs
    if not policy.spread_retries or policy.retry_after_secs < SPREAD_MIN_DELAY_SECS:
        return next_window_start(policy, tz_name, due)
    tz = zone(tz_name or policy.timezone)
    hours = policy.calling_hours
    length = _window_secs(hours)
    wall = _wall(failed_at, tz)
    clock = wall.time().replace(tzinfo=None)
    since_start = (
        (clock.hour - hours.start_time.hour) * 3600.0
        + (clock.minute - hours.start_time.minute) * 60.0
        + clock.second
    )
    step = length / max(2, policy.max_attempts)
    offset = (min(max(since_start, 0.0), length - 1) + step) % length
    day = _wall(due, tz).date() - timedelta(days=1)
    for _ in range(SEARCH_DAYS):
        if _open_day(hours, day):
            start_of_window = local_instant(day, hours.start_time, tz)
            candidate = start_of_window + offset
            if candidate >= due and in_window(policy, tz_name, candidate):
                return candidate
        day += timedelta(days=1)
    return next_window_start(policy, tz_name, due)
