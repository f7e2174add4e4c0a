"""Bot audio playout: paced 20 ms mu-law frames, marks after prompts, clear on barge-in.

``Playout`` owns one call's outbound audio. Prompts are queued as whole segments; a task sends one
160-byte frame every 20 ms on an absolute schedule (frame n at ``t0 + n * 20 ms``), so a busy event
loop can make a frame late but never makes the stream run ahead of real time. After each segment it
sends a Twilio ``mark``; the carrier echoes the mark when the audio before it has been played, which
is how the call knows what the candidate actually heard. ``clear()`` drops everything queued and
tells the carrier to drop its buffer too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from voicebot.audio.codec import ULAW_SILENCE_BYTE
from voicebot.audio.frames import FRAME_MS, ULAW_FRAME_BYTES

log = logging.getLogger(__name__)

FRAME_SECS = FRAME_MS / 1000
MAX_CATCH_UP_FRAMES = 2
"""After a stall, at most this many overdue frames go out back to back; the rest of the delay is
absorbed by shifting the schedule, never by bursting."""


@dataclass
class Segment:
    """One prompt queued for playout."""

    mark: str
    audio: bytes
    prompt_id: str
    frames_total: int = 0
    frames_sent: int = 0
    first_frame_at: float | None = None
    marked_at: float | None = None
    cleared: bool = False
    echo: asyncio.Event = field(default_factory=asyncio.Event)
    extra: dict = field(default_factory=dict)

    @property
    def echoed(self) -> bool:
        """Whether the carrier reported playing this prompt to its end."""
        return self.echo.is_set()

    @property
    def sent_secs(self) -> float:
        """Seconds of this prompt sent to the carrier so far."""
        return self.frames_sent * FRAME_SECS


SendText = Callable[[str], Awaitable[None]]
FrameSink = Callable[[bytes, float], None]


class Playout:
    """Paced outbound audio for one call.

    ``send_media(frame)`` / ``send_mark(name)`` / ``send_clear()`` are async callables that put the
    carrier's messages on the socket; ``on_frame(frame, t)`` sees each frame as sent (recorder);
    ``on_segment_start(segment)`` fires when a prompt's first frame goes out.
    """

    def __init__(
        self,
        *,
        send_media: Callable[[bytes], Awaitable[None]],
        send_mark: Callable[[str], Awaitable[None]],
        send_clear: Callable[[], Awaitable[None]],
        clock: Callable[[], float] = time.monotonic,
        on_frame: FrameSink | None = None,
        on_segment_start: Callable[[Segment], None] | None = None,
        on_segment_end: Callable[[Segment], None] | None = None,
    ):
        self._send_media = send_media
        self._send_mark = send_mark
        self._send_clear = send_clear
        self._clock = clock
        self._on_frame = on_frame
        self._on_segment_start = on_segment_start
        self._on_segment_end = on_segment_end
        self._queue: deque[Segment] = deque()
        self._current: Segment | None = None
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task | None = None
        self._closed = False
        self.segments: dict[str, Segment] = {}
        self.frames_sent = 0
        self.late_frames = 0
        self.max_lateness = 0.0

    # -- control ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the pacing task."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="playout")

    def enqueue(self, mark: str, audio: bytes, prompt_id: str) -> Segment:
        """Queue a prompt (8 kHz mu-law) to play after what is already queued."""
        frames = -(-len(audio) // ULAW_FRAME_BYTES)
        segment = Segment(mark=mark, audio=audio, prompt_id=prompt_id, frames_total=frames)
        self.segments[mark] = segment
        self._queue.append(segment)
        self._idle.clear()
        self._wake.set()
        return segment

    @property
    def playing(self) -> bool:
        """Whether bot audio is being sent or queued."""
        return self._current is not None or bool(self._queue)

    @property
    def current(self) -> Segment | None:
        """The segment being sent now."""
        return self._current

    async def wait_idle(self) -> None:
        """Wait until everything queued has been sent."""
        await self._idle.wait()

    async def clear(self) -> list[Segment]:
        """Stop playout now (barge-in): drop the queue, tell the carrier to drop its buffer.

        Returns the segments that were cut or dropped, each with ``frames_sent`` telling how
        much of it went out.
        """
        cut: list[Segment] = []
        if self._current is not None:
            cut.append(self._current)
        cut.extend(self._queue)
        self._queue.clear()
        for segment in cut:
            segment.cleared = True
        self._current = None
        if cut:
            await self._send_clear()
            for segment in cut:
                if self._on_segment_end is not None:
                    self._on_segment_end(segment)
        self._idle.set()
        return cut

    def drop_queued(self) -> list[Segment]:
        """Drop prompts not yet started (the current one plays on); no carrier message needed."""
        dropped = list(self._queue)
        self._queue.clear()
        for segment in dropped:
            segment.cleared = True
            if self._on_segment_end is not None:
                self._on_segment_end(segment)
        if self._current is None:
            self._idle.set()
        return dropped

    def rename_mark(self, segment: Segment, name: str) -> bool:
        """Change the mark a queued or playing prompt will send; False if it was already sent."""
        if segment.marked_at is not None or segment.cleared:
            return False
        self.segments.pop(segment.mark, None)
        segment.mark = name
        self.segments[name] = segment
        return True

    def mark_echoed(self, name: str) -> Segment | None:
        """The carrier reports that playback reached mark ``name``."""
        segment = self.segments.get(name)
        if segment is not None:
            segment.echo.set()
        return segment

    @property
    def last_segment(self) -> Segment | None:
        """The most recently queued prompt."""
        return next(reversed(self.segments.values()), None)

    async def close(self) -> None:
        """Stop the pacing task."""
        self._closed = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        self._idle.set()

    # -- pacing ----------------------------------------------------------------------------

    async def _run(self) -> None:
        schedule_start: float | None = None
        frame_index = 0
        while not self._closed:
            if not self._queue and self._current is None:
                self._idle.set()
                schedule_start = None
                self._wake.clear()
                await self._wake.wait()
                continue
            if self._current is None:
                self._current = self._queue.popleft()
            segment = self._current
            if schedule_start is None:
                schedule_start = self._clock()
                frame_index = 0
            due = schedule_start + frame_index * FRAME_SECS
            now = self._clock()
            if due > now:
                await asyncio.sleep(due - now)
                if self._current is not segment:  # cleared while sleeping
                    continue
                now = self._clock()
            lateness = now - due
            if lateness > FRAME_SECS:
                self.late_frames += 1
                self.max_lateness = max(self.max_lateness, lateness)
                if lateness > MAX_CATCH_UP_FRAMES * FRAME_SECS:
                    # Re-anchor the schedule: the carrier already played silence for the stall.
                    schedule_start = now - frame_index * FRAME_SECS
            offset = segment.frames_sent * ULAW_FRAME_BYTES
            frame = segment.audio[offset : offset + ULAW_FRAME_BYTES]
            if len(frame) < ULAW_FRAME_BYTES:
                frame = frame + bytes([ULAW_SILENCE_BYTE]) * (ULAW_FRAME_BYTES - len(frame))
            if segment.frames_sent == 0:
                segment.first_frame_at = now
                if self._on_segment_start is not None:
                    self._on_segment_start(segment)
            await self._send_media(frame)
            if self._current is not segment:  # cleared while the frame was being sent
                continue
            segment.frames_sent += 1
            self.frames_sent += 1
            frame_index += 1
            if self._on_frame is not None:
                self._on_frame(frame, now)
            if segment.frames_sent >= segment.frames_total:
                await self._send_mark(segment.mark)
                segment.marked_at = self._clock()
                self._current = None
                if self._on_segment_end is not None:
                    self._on_segment_end(segment)
