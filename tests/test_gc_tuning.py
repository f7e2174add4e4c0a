"""Garbage-collection tuning: start-up objects frozen, every pause observed."""

from __future__ import annotations

import gc

from prometheus_client import CollectorRegistry, Histogram

from voicebot.gc_tuning import freeze_startup_objects, observe_pauses


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
