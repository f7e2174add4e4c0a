"""The words of a turn in progress: what the end-of-turn policy reads at a pause.

The policy (:mod:`voicebot.speech.turn_policy`) weighs most what the candidate said last (a
closer, a trailing "and" or "um", a finished sentence), so at each pause of an answer one call's
:class:`TurnWords` asks the shared ASR pool for two things:

- **the words at the pause**: the turn's last ``PAUSE_WORDS_SECS``, at
  :attr:`~voicebot.speech.asr.Priority.PAUSE`, ahead of every other call's work (a newer pause of
  the call replaces a queued one); skipped only while final transcriptions have waited
  ``PAUSE_WORDS_BACKLOG_SECS`` (the pool is behind on answers, which come first), unless they
  are a short answer's whole words, which queue as the final transcription they are;
- **the speculation**: the whole turn's final transcription, started before the turn is known
  to have ended and kept if the candidate stays silent. For a question's answer it starts once
  the pause has lasted ``SPECULATE_AFTER_SECS``, and only on a free worker: most thinking pauses
  are over by then, and a running decode cannot be stopped.

Each, when it comes in during the pause, makes the session decide the pause again with it. A
short turn's words at the pause were its whole audio: its final transcription is answered with
them by the ASR pool (same call, same audio), not decoded again, also when they are still being
decoded at the turn's end (the pool finishes a decode whose waiter was cancelled, and keeps it).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from voicebot.speech.asr import ASRDropped, ASRResult, Priority

if TYPE_CHECKING:
    from voicebot.call.session import CallSession
    from voicebot.speech.turn import SpeechPaused

PRE_ROLL_SECS = 0.3
"""Audio kept before the detected start of speech (VAD needs a few windows to fire)."""
SPECULATIVE_PAD_SECS = 0.2
"""Audio after the end of speech that a turn's transcription takes in."""
PAUSE_WORDS_SECS = 8.0
"""At a pause the end-of-turn policy gets the words of the turn's last this many seconds (how
the turn ends: a closer, a trailing "and" or "um", a finished sentence), transcribed ahead of all
other ASR work; the whole turn is the final transcription's job. 8 s fits Whisper's fitted
10 s window, so a long answer's pause costs what a short answer's does."""
PAUSE_WORDS_BACKLOG_SECS = 0.5
"""The words at a pause are not asked for while a final transcription has waited this long (the
pool is behind on answers). Skipping them whenever any final was queued (a moment after another
call's turn ended, at 20 calls most pauses) left a closer to the whole-turn transcription, 1 s
later; the pool also takes a final ahead of them once it has waited ``FINAL_AGING_SECS``."""
SPECULATE_AFTER_SECS = 1.0
"""A question's whole-turn transcription starts once a pause has lasted this long: started at
once, it was cancelled by most thinking pauses and held the ASR worker from the next pause's
words (a running decode cannot be stopped)."""


@dataclass
class Speculation:
    """A final transcription started at a short pause, kept if the candidate stays silent."""

    speech_end: float
    task: asyncio.Task


@dataclass
class _PauseWords:
    """The words of a turn's last seconds, transcribed at a pause for the end-of-turn policy."""

    speech_end: float
    task: asyncio.Task
    tail: bool
    """Only the turn's last ``PAUSE_WORDS_SECS`` (its start not transcribed)."""


def words_of(task: asyncio.Task) -> str | None:
    """The text a finished transcription task gave, or ``None`` (not done, failed, dropped)."""
    if not task.done() or task.cancelled() or task.exception() is not None:
        return None
    result = task.result()
    return None if result is None else result.text


class TurnWords:
    """One call's transcriptions of the turn in progress (created by its session)."""

    def __init__(self, session: CallSession) -> None:
        self.session = session
        self.speculation: Speculation | None = None
        self._pause_words: _PauseWords | None = None

    def at(self, event: SpeechPaused) -> tuple[str | None, bool]:
        """The words known at this pause, and whether they are only the turn's tail."""
        speculation = self.speculation
        if speculation is not None and speculation.speech_end == event.speech_end:
            words = words_of(speculation.task)
            if words is not None:
                return words, False
        pause_words = self._pause_words
        if pause_words is not None and pause_words.speech_end == event.speech_end:
            return words_of(pause_words.task), pause_words.tail
        return None, False

    # -- the words at the pause ------------------------------------------------------------

    def transcribe_pause(self, event: SpeechPaused) -> None:
        """Transcribe the turn's last ``PAUSE_WORDS_SECS`` for the end-of-turn policy, now.

        At :attr:`Priority.PAUSE`, ahead of every other ASR request and not skipped for a busy
        pool (a newer pause of the call replaces a queued one), but skipped while final
        transcriptions have waited long (load: answers come first); the policy decides again
        when the words come, if the pause is still going on.
        """
        session = self.session
        asr = session.services.asr
        if asr is None or session._listening is None or session.script is None:
            return
        self.discard_pause_words()
        answer = self._words_are_the_answer(event)
        if asr.stats().oldest_final_wait_secs >= PAUSE_WORDS_BACKLOG_SECS and not answer:
            # Behind on answers' final transcriptions (many calls at once, Chinese answers on
            # the 30 s window): those come first, or every call's transcripts fall behind. A
            # final that has only just been queued is no backlog: these words go first. A
            # short answer's words are asked for all the same: they are its final
            # transcription (the final joins their decode), which the call is silent until.
            session.metrics.pause_words_skipped.inc()
            session._event("pause_words_skipped", speech_end=round(event.speech_end, 3))
            return
        turn_start = event.speech_start - PRE_ROLL_SECS
        start = max(turn_start, event.speech_end - PAUSE_WORDS_SECS)
        tail = start > turn_start
        audio = session._audio_between(start, event.speech_end + SPECULATIVE_PAD_SECS)
        language, key = session.script.language, session.call_sid
        asked = time.monotonic()

        async def transcribe() -> ASRResult | None:
            try:
                return await asr.transcribe(audio, language, Priority.PAUSE, key=key, answer=answer)
            except ASRDropped:
                return None

        task = session._spawn(transcribe(), "pause_words_asr")
        self._pause_words = _PauseWords(event.speech_end, task, tail=tail)

        def words_in(done: asyncio.Task) -> None:
            words = words_of(done)
            if words is None or session.finished:
                return
            secs = time.monotonic() - asked
            session.metrics.pause_words_secs.observe(secs)
            result = done.result()
            session._event(
                "pause_words",
                speech_end=round(event.speech_end, 3),
                secs=round(secs, 3),
                queued=round(result.queued_secs, 3),
                audio_secs=round(result.audio_secs, 2),
            )
            if not session._turns.is_current_pause(event):
                return
            speculation = self.speculation
            if speculation is not None and words_of(speculation.task) is not None:
                return  # the whole turn's words are in already
            session._decide_pause(event, session._turns.smart_turn_probability, words, tail=tail)

        task.add_done_callback(words_in)

    def _words_are_the_answer(self, event: SpeechPaused) -> bool:
        """Whether this pause's words are the whole of a short answer the call waits on.

        A turn shorter than ``prestart_min_speech_secs`` (its final transcription is waited
        for) to a closed question or the consent (its words decide the next step): its final is
        this same audio. Skipped under load, such a turn waited for the closed question's
        ceiling and then for its final (20 Chinese calls: 2.9 s).
        """
        session = self.session
        short = event.speech_end - event.speech_start < session.settings.prestart_min_speech_secs
        return short and session._question_context().kind != "open"

    def discard_pause_words(self) -> None:
        """Drop the pause's words request (a queued one leaves the ASR queue)."""
        pause_words, self._pause_words = self._pause_words, None
        if pause_words is not None and not pause_words.task.done():
            pause_words.task.cancel()

    # -- the speculation -------------------------------------------------------------------

    def speculate(self, event: SpeechPaused) -> None:
        """Start the turn's final transcription before the turn is known to have ended.

        Kept if the candidate stays silent. When the next step does not wait for the words
        (the questions), it only shortens the wait for the transcript: it starts once the
        pause has lasted ``SPECULATE_AFTER_SECS`` (most thinking pauses are over by then; a
        running decode cannot be stopped and would hold the worker from the next pause's
        words), and is skipped while the ASR pool is busy.
        """
        listen = self.session._listening
        if listen is None:
            return
        if listen.question_id is not None:
            delay = SPECULATE_AFTER_SECS - (event.t - event.speech_end)
            if delay > 0:
                asyncio.get_running_loop().call_later(delay, self._speculate_later, event)
                return
        self._speculate_now(event)

    def _speculate_later(self, event: SpeechPaused) -> None:
        if not self.session.finished and self.session._turns.is_current_pause(event):
            self._speculate_now(event)

    def _speculate_now(self, event: SpeechPaused) -> None:
        session = self.session
        listen = session._listening
        if listen is None:
            return
        asr = session.services.asr
        if listen.question_id is not None and asr is not None and not asr.has_free_worker:
            return
        if (
            self.speculation is not None
            and self.speculation.speech_end == event.speech_end
            and not self.speculation.task.cancelled()
        ):
            return  # already transcribing this pause
        self.discard_speculation()
        audio = session._audio_between(
            event.speech_start - PRE_ROLL_SECS, event.speech_end + SPECULATIVE_PAD_SECS
        )
        # The consent's words decide the next step: the call waits on them.
        final = session._transcribe(audio, listen, waited=listen.question_id is None)
        task = session._spawn(final, "speculative_asr")
        self.speculation = Speculation(speech_end=event.speech_end, task=task)

        def words_in(done: asyncio.Task) -> None:
            # The words of the turn so far: the policy decides again, knowing them.
            if done.cancelled() or done.exception() is not None or session.finished:
                return
            result = done.result()
            if result is None or not session._turns.is_current_pause(event):
                return
            session._decide_pause(event, session._turns.smart_turn_probability, result.text)

        task.add_done_callback(words_in)

    def discard_speculation(self) -> None:
        """Cancel the speculative transcription (a running one still costs its Whisper time)."""
        if self.speculation is not None:
            self.speculation.task.cancel()
            self.speculation = None
            self.session.metrics.speculations.labels("discarded").inc()

    def take_speculation(self, speech_end: float) -> Speculation | None:
        """The speculation of the turn that ended at ``speech_end``, handed over (else None)."""
        if self.speculation is not None and self.speculation.speech_end != speech_end:
            self.discard_speculation()
        speculation, self.speculation = self.speculation, None
        return speculation

    def discard(self) -> None:
        """The candidate went on (or the turn is over): both requests are stale."""
        self.discard_speculation()
        self.discard_pause_words()
