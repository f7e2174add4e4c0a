"""Sample-rate conversion with soxr: one-shot for whole clips, streaming for live call audio."""

from __future__ import annotations

import numpy as np
import soxr


def resample(pcm: np.ndarray, in_rate: int, out_rate: int, quality: str = "HQ") -> np.ndarray:
    """Resample a whole int16 (or float32) mono clip; returns the same dtype."""
    if in_rate == out_rate:
        return pcm
    return soxr.resample(pcm, in_rate, out_rate, quality=quality)


class StreamResampler:
    """Resample a live stream chunk by chunk without clicks at chunk edges.

    soxr keeps a short filter history between chunks, so output lags input by a few
    milliseconds; ``flush()`` returns the tail at the end of the stream.
    """

    def __init__(self, in_rate: int, out_rate: int, dtype: str = "int16", quality: str = "HQ"):
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._passthrough = in_rate == out_rate
        self._stream = (
            None
            if self._passthrough
            else soxr.ResampleStream(in_rate, out_rate, 1, dtype=dtype, quality=quality)
        )

    def process(self, pcm: np.ndarray) -> np.ndarray:
        """Resample one chunk of the stream."""
        if self._stream is None:
            return pcm
        return self._stream.resample_chunk(pcm)

    def flush(self) -> np.ndarray:
        """Return what soxr still holds at the end of the stream."""
        if self._stream is None:
            return np.zeros(0, dtype=np.int16)
        return self._stream.resample_chunk(np.zeros(0, dtype=np.int16), last=True)
