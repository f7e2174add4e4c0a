"""A rolling audio buffer addressed by absolute sample position.

A call keeps the recent candidate audio so a finished turn can be cut out and transcribed.
Appending is amortised O(1) (no copy of the whole buffer per 20 ms frame); old audio is dropped
by moving a start index, and the array is compacted only when it would otherwise grow.
"""

from __future__ import annotations

import numpy as np


class RollingAudio:
    """int16 mono samples from absolute position ``start`` to ``end``."""

    def __init__(self, initial_capacity: int = 16000 * 8):
        self._data = np.zeros(initial_capacity, dtype=np.int16)
        self._head = 0  # index in _data of the first kept sample
        self._tail = 0  # index in _data after the last sample
        self._base = 0  # absolute position of _data[_head]

    @property
    def start(self) -> int:
        """Absolute position of the oldest sample kept."""
        return self._base

    @property
    def end(self) -> int:
        """Absolute position just after the newest sample."""
        return self._base + self._tail - self._head

    def append(self, chunk: np.ndarray) -> None:
        """Add samples at the end."""
        n = len(chunk)
        if self._tail + n > len(self._data):
            kept = self._tail - self._head
            if kept + n > len(self._data) // 2:
                grown = np.zeros(max(2 * len(self._data), 2 * (kept + n)), dtype=np.int16)
                grown[:kept] = self._data[self._head : self._tail]
                self._data = grown
            else:
                self._data[:kept] = self._data[self._head : self._tail]
            self._head, self._tail = 0, kept
        self._data[self._tail : self._tail + n] = chunk
        self._tail += n

    def discard_before(self, position: int) -> None:
        """Forget samples before absolute ``position``."""
        drop = min(max(position - self._base, 0), self._tail - self._head)
        self._head += drop
        self._base += drop

    def slice(self, start: int, end: int) -> np.ndarray:
        """A copy of samples [start, end) in absolute positions, clipped to what is kept."""
        first = min(max(start - self._base, 0), self._tail - self._head)
        last = min(max(end - self._base, first), self._tail - self._head)
        return self._data[self._head + first : self._head + last].copy()
