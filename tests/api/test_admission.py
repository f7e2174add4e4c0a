"""Pending carrier streams are capped per address and in all, and forgotten when they go."""

from __future__ import annotations

from voicebot.api.admission import BURST, PendingStreams


def test_caps_per_address_then_in_all():
    pending = PendingStreams()
    assert [pending.admit("a", 4, 2) for _ in range(3)] == [
        None,
        None,
        "too_many_pending_from_address",
    ]
    assert [pending.admit("b", 4, 2) for _ in range(2)] == [None, None]
    assert pending.admit("c", 4, 2) == "too_many_pending"
    assert len(pending) == 4 and pending.addresses() == 2


def test_released_streams_free_their_slot_and_leave_nothing_behind():
    pending = PendingStreams()
    for address in ("a", "a", "b"):
        assert pending.admit(address, 10, 5) is None
    for address in ("a", "b", "a"):
        pending.release(address)
    assert len(pending) == 0 and pending.addresses() == 0
    pending.release("a")  # a release too many is harmless
    assert len(pending) == 0 and pending.admit("a", 1, 1) is None


def test_the_end_of_a_burst_is_told_once():
    pending = PendingStreams()
    for _ in range(3):
        pending.admit("a", 1000, 1000)
    for _ in range(3):
        pending.release("a")
    assert not pending.burst_over()  # three is no burst
    for _ in range(BURST):
        assert pending.admit("a", 1000, 1000) is None
    pending.release("a")
    assert not pending.burst_over()  # not over while some are pending
    for _ in range(BURST - 1):
        pending.release("a")
    assert pending.burst_over() and not pending.burst_over()
