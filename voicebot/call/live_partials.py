"""Interim transcripts of a watched call's current turn, from the shared ASR pool.

Only while a recruiter watches the call (``VOICEBOT_LIVE_PARTIALS``): every
``VOICEBOT_LIVE_PARTIAL_INTERVAL_SECS`` of new speech the turn's audio so far is transcribed at
``Priority.PARTIAL``, one request per call at a time, and only when the pool has a free worker:
finals of every call go first, and a partial is skipped rather than queued under load (a newer
partial of the same call also replaces a queued one). :class:`~voicebot.speech.partials.
LocalAgreement` turns the hypotheses into stable and unstable words; the final transcript at the
end of the turn replaces them. A window longer than :data:`CLOSE_WINDOW_SECS` is closed at the
next pause (Whisper sees 30 s at most).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from voicebot.call.turn_words import PRE_ROLL_SECS
from voicebot.speech.asr import ASRDropped, Priority
from voicebot.speech.partials import LocalAgreement, tokens

if TYPE_CHECKING:
    from voicebot.call.session import CallSession
    from voicebot.speech.turn import SpeechPaused

log = logging.getLogger(__name__)

CLOSE_WINDOW_SECS = 20.0
"""A partial window this long is closed at the next pause."""


class LivePartials:
    """Drives the partial transcripts of one call (created by its session)."""

    def __init__(self, session: CallSession) -> None:
        self.session = session
        self.turn_start: float | None = None
        self.window_start = 0.0
        self.asked_until = 0.0
        self.agreement = LocalAgreement()
        self.task: asyncio.Task | None = None
        self.speech_rate: float | None = None
        """Words (Chinese: characters) per minute of the turn so far, from its partials."""
        self.rate_unit = "wpm"

    def _enabled(self) -> bool:
        session = self.session
        return (
            session.settings.live_partials
            and session.services.asr is not None
            and session.call_sid is not None
            and session.services.live.watched(session.call_sid)
        )

    def start(self, turn_start: float) -> None:
        """A turn began."""
        self.stop()
        self.turn_start = turn_start
        self.window_start = turn_start
        self.asked_until = turn_start
        self.agreement = LocalAgreement()
        self.speech_rate = None

    def stop(self) -> None:
        """The turn ended (its final transcript takes over) or the call did."""
        if self.task is not None and not self.task.done():
            self.task.cancel()
        self.task = None
        self.turn_start = None

    def tick(self, t: float) -> None:
        """The VAD scored audio up to ``t`` (call clock) during the turn."""
        if self.turn_start is None or (self.task is not None and not self.task.done()):
            return
        if t - self.asked_until < self.session.settings.live_partial_interval_secs:
            return
        if not self._enabled():
            return
        metrics = self.session.metrics
        if not self.session.services.asr.has_free_worker:
            self.asked_until = t  # try again after another interval, not every window
            metrics.partials.labels("skipped").inc()
            return
        self._request(t, close_at=None)

    def pause(self, event: SpeechPaused) -> None:
        """A short pause: close a long window there."""
        if self.turn_start is None or (self.task is not None and not self.task.done()):
            return
        if event.speech_end - self.window_start < CLOSE_WINDOW_SECS or not self._enabled():
            return
        self._request(event.speech_end, close_at=event.speech_end)

    def _request(self, end: float, close_at: float | None) -> None:
        session = self.session
        self.asked_until = end
        audio = session._audio_between(self.window_start - PRE_ROLL_SECS, end)
        self.task = session._spawn(
            self._transcribe(audio, self.turn_start, end, close_at), "partial_asr"
        )

    async def _transcribe(
        self, audio: Any, turn_start: float | None, end: float, close_at: float | None
    ) -> None:
        session = self.session
        assert session.script is not None and session.services.asr is not None
        try:
            result = await session.services.asr.transcribe(
                audio,
                session.script.language,
                Priority.PARTIAL,
                prompt=session.recognition_prompt(session._listening),
                key=session.call_sid,
            )
        except ASRDropped:
            session.metrics.partials.labels("dropped").inc()
            return
        if self.turn_start != turn_start or session.finished:
            return  # the turn ended meanwhile: its final transcript says it all
        text = result.text.strip()
        if close_at is not None:
            partial = self.agreement.close_window(text)
            self.window_start = close_at
        else:
            partial = self.agreement.update(text)
        if not partial.text:
            return
        chinese = session.script.language == "zh"
        spoken = max(end - turn_start, 0.5)
        units = len("".join(tokens(partial.text))) if chinese else len(tokens(partial.text))
        self.speech_rate = round(units * 60.0 / spoken, 1)
        self.rate_unit = "cpm" if chinese else "wpm"
        listening = session._listening
        session.metrics.partials.labels("published").inc()
        session.services.live.publish(
            session.call_sid,
            "transcript.partial",
            round(end, 3),
            question_id=None if listening is None else listening.question_id,
            stable=partial.stable,
            unstable=partial.unstable,
            text=partial.text,
            speech_rate=self.speech_rate,
            rate_unit=self.rate_unit,
            speech_rate_wpm=None if chinese else self.speech_rate,
        )
