"""Listen-in: one call's two sides mixed into 100 ms mu-law chunks for a recruiter's browser.

The candidate's audio arrives from the carrier at its own pace (20 ms media messages) and the
bot's is sent by the playout, paced by the clock. The mixer is driven by the candidate side:
each 100 ms of candidate audio takes as much bot audio as is waiting (silence when the bot is
quiet), so the mix follows the call in real time and never waits. Bot audio that piles up beyond
``MAX_BOT_BACKLOG`` (the carrier's audio stalled) is dropped from its oldest end to keep the delay
bounded. Only built while someone listens; a chunk costs one mu-law decode and encode.
"""

from __future__ import annotations

import base64
from collections.abc import Callable

import numpy as np

from voicebot.audio.codec import ulaw_decode, ulaw_encode
from voicebot.audio.frames import TELEPHONY_RATE

CHUNK_SECS = 0.1
CHUNK_SAMPLES = int(CHUNK_SECS * TELEPHONY_RATE)
MAX_BOT_BACKLOG = 3 * CHUNK_SAMPLES
"""Bot samples kept waiting for candidate audio to mix with (300 ms)."""

ChunkSink = Callable[[int, int, bytes], None]
"""Receives ``(sequence number, call-clock milliseconds of the chunk's start, mu-law bytes)``."""


class ListenMixer:
    """Mixes a call's candidate and bot audio into fixed chunks, in order, as they come."""

    def __init__(self, sink: ChunkSink, start_samples: int = 0) -> None:
        self.sink = sink
        self.seq = 0
        self.position = start_samples
        """Candidate samples (8 kHz) before the next chunk: its time on the call clock."""
        self._candidate: list[np.ndarray] = []
        self._candidate_samples = 0
        self._bot = np.zeros(0, dtype=np.int16)
        self.bot_dropped = 0

    def candidate(self, pcm: np.ndarray) -> None:
        """The candidate's next 8 kHz int16 samples; emits every complete chunk."""
        self._candidate.append(pcm)
        self._candidate_samples += len(pcm)
        while self._candidate_samples >= CHUNK_SAMPLES:
            joined = np.concatenate(self._candidate)
            chunk, rest = joined[:CHUNK_SAMPLES], joined[CHUNK_SAMPLES:]
            self._candidate = [rest] if len(rest) else []
            self._candidate_samples = len(rest)
            self._emit(chunk)

    def bot(self, ulaw: bytes) -> None:
        """A mu-law frame the bot sent."""
        self._bot = np.concatenate([self._bot, ulaw_decode(ulaw)])
        excess = len(self._bot) - MAX_BOT_BACKLOG
        if excess > 0:
            self._bot = self._bot[excess:]
            self.bot_dropped += excess

    def _emit(self, candidate: np.ndarray) -> None:
        bot, self._bot = self._bot[:CHUNK_SAMPLES], self._bot[CHUNK_SAMPLES:]
        mixed = candidate.astype(np.int32)
        mixed[: len(bot)] += bot
        np.clip(mixed, -32768, 32767, out=mixed)
        start_ms = self.position * 1000 // TELEPHONY_RATE
        self.position += len(candidate)
        self.seq += 1
        self.sink(self.seq, start_ms, ulaw_encode(mixed.astype(np.int16)))


def audio_channel(call_sid: str) -> str:
    """The live-feed key a call's listen-in chunks go to (subscribed only by listeners)."""
    return f"{call_sid}@audio"


def chunk_event(call_sid: str, seq: int, start_ms: int, ulaw: bytes) -> dict:
    """A listen-in chunk as a live event (JSON-able, so it crosses processes over Pub/Sub)."""
    return {
        "type": "audio.chunk",
        "call_sid": audio_channel(call_sid),
        "t": start_ms / 1000,
        "data": {"seq": seq, "start_ms": start_ms, "ulaw": base64.b64encode(ulaw).decode()},
    }


def chunk_frame(event: dict) -> bytes:
    """The browser's binary frame of a chunk event.

    Sequence and call-clock ms (uint32 big endian each), then the mu-law bytes.
    """
    data = event["data"]
    header = (data["seq"] & 0xFFFFFFFF).to_bytes(4, "big") + (
        data["start_ms"] & 0xFFFFFFFF
    ).to_bytes(4, "big")
    return header + base64.b64decode(data["ulaw"])
