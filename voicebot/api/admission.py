"""Limits on carrier streams that have not proven who they are yet.

A WebSocket to a carrier stream route needs no credential until its ``start`` message brings
the stream token. Until then it is *pending*: it may exist only for a short while
(``VOICEBOT_STREAM_START_TIMEOUT_SECS``), and only so many may exist at once, server-wide
(``VOICEBOT_STREAM_MAX_PENDING``) and from one remote address
(``VOICEBOT_STREAM_MAX_PENDING_PER_ADDRESS``). Pure bookkeeping, no I/O: an address is forgotten
as soon as its last pending stream goes, so nothing is kept for connections that are gone.
"""

from __future__ import annotations

from typing import Literal

PendingRefusal = Literal["too_many_pending", "too_many_pending_from_address"]

BURST = 100
"""Pending streams at once from which their going is worth giving the memory back to the system."""


class PendingStreams:
    """Counts pending streams, in all and per remote address."""

    def __init__(self) -> None:
        self._by_address: dict[str, int] = {}
        self._total = 0
        self._peak = 0  # most pending at once since the count was last zero after a burst

    def __len__(self) -> int:
        return self._total

    def addresses(self) -> int:
        """How many addresses have a pending stream (nothing is kept for the others)."""
        return len(self._by_address)

    def admit(self, address: str, max_total: int, max_per_address: int) -> PendingRefusal | None:
        """Count a new pending stream from ``address``; the reason it is refused, or None."""
        held = self._by_address.get(address, 0)
        if held >= max_per_address:
            return "too_many_pending_from_address"
        if self._total >= max_total:
            return "too_many_pending"
        self._by_address[address] = held + 1
        self._total += 1
        self._peak = max(self._peak, self._total)
        return None

    def release(self, address: str) -> None:
        """A pending stream from ``address`` started or went away."""
        held = self._by_address.get(address, 0)
        if held <= 0:
            return
        self._total -= 1
        if held == 1:
            del self._by_address[address]
        else:
            self._by_address[address] = held - 1

    def burst_over(self) -> bool:
        """True once when the count falls to zero after at least :data:`BURST` were pending."""
        if self._total == 0 and self._peak >= BURST:
            self._peak = 0
            return True
        if self._total == 0:
            self._peak = 0
        return False
