"""G.711 mu-law codec for telephone audio (8 kHz, one byte a sample).

Table driven and vectorised with numpy: decoding is one 256-entry table look-up, encoding one
look-up in a 65,536-entry table indexed by the sample's bits. Bit-exact with the ITU-T G.711
reference (and Python's old ``audioop``).

Both look-ups index with ``intp`` positions. numpy handles any other index type through its
buffered iterator, which releases the GIL for every call however small the array; on the event
loop, with model threads waiting for the GIL, each 20 ms frame's decode then handed the GIL away
and waited to get it back (measured: 45 µs a frame on average and stalls of up to 36 ms at 40
calls; docs/PERFORMANCE.md). With ``intp`` positions numpy takes its direct path, which keeps
the GIL for arrays this small.
"""

from __future__ import annotations

import numpy as np

ULAW_SILENCE_BYTE = 0xFF
"""The mu-law byte for digital silence (0 in linear PCM)."""

_COMFORT_BYTES = bytes(
    np.random.default_rng(20261206).choice(
        np.array([0xFC, 0xFB, 0xFA, 0xF9, 0xF8, 0x7C, 0x7B, 0x7A, 0x79, 0x78], np.uint8), 8000
    )
)
"""One second of mu-law comfort noise: +-24..56 in linear PCM (about -58 dBFS), fixed."""


def ulaw_comfort_noise(samples: int) -> bytes:
    """``samples`` bytes of faint mu-law noise to stand in for audio the carrier skipped.

    Not digital silence: Silero scored the speech after 160 ms of exact zeros inserted
    mid-answer as non-speech for about 3 s (a "pause" that ended the turn), and after noise this
    faint as it did with nothing inserted (fainter noise, -66 dBFS, still halved it; issue 17 in
    docs/PERFORMANCE.md). It stays well under the level the server counts as voice (-45 dBFS).
    """
    whole, rest = divmod(samples, len(_COMFORT_BYTES))
    return _COMFORT_BYTES * whole + _COMFORT_BYTES[:rest]


_BIAS = 0x84
_CLIP = 32635


def _build_decode_table() -> np.ndarray:
    codes = np.arange(256, dtype=np.int32)
    inverted = ~codes & 0xFF
    sign = inverted & 0x80
    exponent = (inverted >> 4) & 0x07
    mantissa = inverted & 0x0F
    magnitude = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
    return np.where(sign != 0, -magnitude, magnitude).astype(np.int16)


def _encode_scalar(sample: int) -> int:
    sign = 0x80 if sample < 0 else 0
    magnitude = min(abs(sample), _CLIP) + _BIAS
    exponent = 7
    mask = 0x4000
    while exponent > 0 and not magnitude & mask:
        exponent -= 1
        mask >>= 1
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def _build_encode_table() -> np.ndarray:
    samples = np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.int32)
    sign = np.where(samples < 0, 0x80, 0)
    magnitude = np.minimum(np.abs(samples), _CLIP) + _BIAS
    exponent = np.clip(np.floor(np.log2(magnitude)).astype(np.int32) - 7, 0, 7)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8)


DECODE_TABLE = _build_decode_table()
_ENCODE_TABLE = _build_encode_table()


def ulaw_decode(data: bytes | bytearray | memoryview) -> np.ndarray:
    """Decode mu-law bytes to int16 linear PCM (same rate, one sample a byte)."""
    return DECODE_TABLE[np.frombuffer(data, dtype=np.uint8).astype(np.intp)]


def ulaw_encode(pcm: np.ndarray) -> bytes:
    """Encode int16 linear PCM to mu-law bytes."""
    samples = np.ascontiguousarray(pcm, dtype=np.int16)
    return _ENCODE_TABLE[samples.view(np.uint16).astype(np.intp)].tobytes()
