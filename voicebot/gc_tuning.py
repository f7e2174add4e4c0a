"""Keep Python's garbage collector from stalling the calls' audio.

A full (generation 2) collection walks every tracked object in the process, and the models'
libraries leave tens of thousands behind at start-up: measured 20-60 ms with the event loop
stopped, long enough to make every call's next 20 ms frame late (the load test saw 45-62 ms
playout stalls at 20 and 40 calls). Once start-up is done, :func:`freeze_startup_objects` moves
everything alive into the permanent generation, so later collections only walk what calls create.
:func:`observe_pauses` times every collection into a histogram, so a regression shows on
``/metrics``. :func:`watch_loop_lag` measures what any stall (a collection, CPU starvation, a
blocking call) does to the event loop: how late it wakes a short timer.
"""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

from prometheus_client import Histogram


def freeze_startup_objects() -> int:
    """Collect once, then exempt everything still alive from future collections.

    Returns how many objects were frozen.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


_observed: set[int] = set()


def observe_pauses(histogram: Histogram) -> None:
    """Record the duration of every garbage collection in ``histogram`` (label ``generation``).

    Calling it again with the same histogram changes nothing.
    """
    if id(histogram) in _observed:
        return
    _observed.add(id(histogram))
    started: dict[str, float] = {}

    def callback(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started["t"] = time.perf_counter()
        elif "t" in started:
            histogram.labels(str(info.get("generation", "?"))).observe(
                time.perf_counter() - started.pop("t")
            )

    gc.callbacks.append(callback)


LOOP_LAG_INTERVAL_SECS = 0.05
"""How often :func:`watch_loop_lag` asks the event loop to wake it."""


async def watch_loop_lag(
    histogram: Histogram, interval: float = LOOP_LAG_INTERVAL_SECS, clock=time.perf_counter
) -> None:
    """Observe, until cancelled, how late the event loop wakes a timer of ``interval``.

    Every call's outgoing 20 ms frames wait as long as the loop does, so a lag over 20-40 ms is
    heard as a gap on the phone. Costs one wake-up per ``interval``.
    """
    while True:
        started = clock()
        await asyncio.sleep(interval)
        histogram.observe(max(0.0, clock() - started - interval))
