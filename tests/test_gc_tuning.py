"""Garbage-collection tuning: start-up objects frozen, every pause observed."""

from __future__ import annotations

import asyncio
import gc
import time

from prometheus_client import CollectorRegistry, Histogram

from voicebot.gc_tuning import freeze_startup_objects, observe_pauses, watch_loop_lag


def test_frozen_start_up_objects_are_left_out_of_later_collections():
    registry = CollectorRegistry()
    pauses = Histogram("pauses", "gc", ["generation"], registry=registry)
    observe_pauses(pauses)
    observe_pauses(pauses)  # idempotent per histogram: one callback
    try:
        startup = [[index] for index in range(50_000)]  # stands in for the models' objects
        frozen = freeze_startup_objects()
        assert frozen >= 50_000
        assert not any(obj is startup for obj in gc.get_objects(generation=2))
        before = registry.get_sample_value("pauses_count", {"generation": "2"}) or 0
        gc.collect()
        assert registry.get_sample_value("pauses_count", {"generation": "2"}) == before + 1
    finally:
        gc.unfreeze()
        gc.callbacks[:] = [c for c in gc.callbacks if "observe_pauses" not in repr(c)]


async def test_a_blocked_event_loop_shows_as_lag():
    registry = CollectorRegistry()
    lag = Histogram("lag", "loop lag", buckets=(0.02, 0.1, 1.0), registry=registry)
    watcher = asyncio.create_task(watch_loop_lag(lag, interval=0.01))
    try:
        await asyncio.sleep(0.1)  # a quiet loop: wake-ups on time
        assert registry.get_sample_value("lag_count") >= 3
        quiet_late = registry.get_sample_value("lag_count") - registry.get_sample_value(
            "lag_bucket", {"le": "0.1"}
        )
        time.sleep(0.25)  # noqa: ASYNC251 (blocking work on the loop: the stall to see)
        await asyncio.sleep(0.05)
        late = registry.get_sample_value("lag_count") - registry.get_sample_value(
            "lag_bucket", {"le": "0.1"}
        )
        assert late == quiet_late + 1
        assert registry.get_sample_value("lag_sum") >= 0.2
    finally:
        watcher.cancel()
