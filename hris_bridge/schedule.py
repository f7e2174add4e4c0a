"""When a failed webhook is tried again: a Svix-like schedule with jitter, then the dead letter.

Attempt 1 goes out immediately; after each failure the next attempt waits 5 s, 5 min, 30 min, 2 h,
5 h, 10 h, 10 h (8 attempts over about 27.6 hours). Each wait is jittered by +-20% so that an
endpoint coming back after an outage is not hit by every retry in the same second. When the last
attempt fails the delivery is dead-lettered (``python -m hris_bridge dead`` lists them, ``replay``
sends them again).

``scale`` multiplies every wait: ``RetrySchedule(scale=0.001)`` runs the whole schedule in about
100 seconds, ``scale=1e-6`` in 0.1 s, for tests.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

DEFAULT_DELAYS_SECS: tuple[float, ...] = (
    0,
    5,
    5 * 60,
    30 * 60,
    2 * 3600,
    5 * 3600,
    10 * 3600,
    10 * 3600,
)
"""Wait before each attempt, in seconds (the first is immediate)."""
DEFAULT_JITTER = 0.2


@dataclass(frozen=True)
class RetrySchedule:
    """How many attempts a delivery gets and how long to wait before each."""

    delays: tuple[float, ...] = DEFAULT_DELAYS_SECS
    """Wait before attempt n+1 (``delays[0]`` before the first attempt, normally 0)."""
    jitter: float = DEFAULT_JITTER
    """Each wait is multiplied by a uniform factor in ``[1 - jitter, 1 + jitter]``."""
    scale: float = 1.0
    """Multiplies every wait (tests run the schedule in milliseconds)."""

    def __post_init__(self) -> None:
        if not self.delays:
            raise ValueError("a retry schedule needs at least one attempt")
        if any(d < 0 for d in self.delays):
            raise ValueError("retry delays must not be negative")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be in [0, 1)")
        if self.scale < 0:
            raise ValueError("scale must not be negative")

    @property
    def max_attempts(self) -> int:
        """Attempts before a delivery is dead-lettered."""
        return len(self.delays)

    def nominal_delay(self, attempts_made: int) -> float | None:
        """Un-jittered wait (scaled) before the next attempt; ``None``: dead-letter instead."""
        if attempts_made >= len(self.delays):
            return None
        return self.delays[max(0, attempts_made)] * self.scale

    def next_delay(self, attempts_made: int, rng: random.Random | None = None) -> float | None:
        """Seconds to wait after ``attempts_made`` failed attempts; ``None`` when none is left."""
        nominal = self.nominal_delay(attempts_made)
        if nominal is None:
            return None
        factor = 1.0 + (rng or random).uniform(-self.jitter, self.jitter)
        return nominal * factor

    def total_span(self) -> float:
        """Nominal seconds from the first to the last attempt (scaled)."""
        return sum(self.delays[1:]) * self.scale
