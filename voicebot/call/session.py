"""One phone call: carrier audio in, VAD and end of turn, ASR, the interview engine, playout out.

``CallSession`` is the asyncio glue around pure parts: the carrier protocol (Sans-I/O), the
``TurnDetector`` and the ``InterviewEngine`` are state machines; the session moves audio, time and
worker-thread results between them. Nothing CPU-heavy runs on the event loop: Silero VAD scores the
carrier's 8 kHz audio as it comes, batched with every other call's in the process's VAD thread
(``VadBatcher``); smart-turn runs in its own executor and Whisper in the shared ASR pool, both on
16 kHz audio cut out of the call's rolling buffer and resampled only when a model needs it.

Call clock: ``t = 0`` when the carrier's ``start`` arrives. Candidate audio is placed by the
carrier's media timestamps, bot audio by the time each frame was sent.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from voicebot.audio.buffer import RollingAudio
from voicebot.audio.codec import ulaw_comfort_noise, ulaw_decode
from voicebot.audio.frames import MODEL_RATE, TELEPHONY_RATE
from voicebot.audio.resample import resample
from voicebot.call.hearing import HearingGuard
from voicebot.call.listen import ListenMixer, audio_channel, chunk_event
from voicebot.call.live_partials import LivePartials
from voicebot.call.playout import Playout, Segment
from voicebot.call.recorder import CallRecorder
from voicebot.call.turn_words import PRE_ROLL_SECS, SPECULATIVE_PAD_SECS, Speculation, TurnWords
from voicebot.dialogue.engine import (
    AnswerRecorded,
    CallerHungUp,
    CandidateSaid,
    ConsentRecorded,
    DtmfPressed,
    EndCall,
    InterviewEngine,
    KnockoutRecorded,
    Listen,
    OptOutRecorded,
    QuestionSkipped,
    RepeatRequested,
    Say,
    SilenceTimeout,
)
from voicebot.dialogue.recognition_prompt import recognition_prompt
from voicebot.dialogue.script import VOICEMAIL_PROMPT, JobScript
from voicebot.events.emitter import interview_refs
from voicebot.services import Services
from voicebot.speech.asr import ASRDropped, ASRResult, Priority
from voicebot.speech.coverage import UnheardSpeech
from voicebot.speech.turn import (
    SMART_TURN_SECS,
    SpeechPaused,
    SpeechPausing,
    SpeechResumed,
    SpeechStarted,
    TurnDetector,
    TurnEnded,
)
from voicebot.speech.turn_policy import (
    POLICIES,
    Decision,
    PauseFeatures,
    QuestionContext,
    read_words,
)
from voicebot.speech.vad_batch import VadStream
from voicebot.store.database import CALLABLE_STATUSES
from voicebot.telephony.stream_token import InvalidStreamToken
from voicebot.telephony.twilio import Dtmf, Mark, Media, Start, Stop, TwilioMediaStream

log = logging.getLogger(__name__)

PREFIX_MIN_SPEECH_SECS = 4.0
"""An answer to a question with a follow-up is transcribed at a pause once it is this long (and
again after as much more speech) until its beginning rules the follow-up out."""
INAUDIBLE = "[inaudible]"
TRANSCRIPT_PENDING = "[transcript pending]"
"""What the script engine is told an answer said when it moves on before the words are known."""
KEPT_AT_FINISH = frozenset({"store_bot_turn", "store_bot_turn_end"})
"""Tasks a call's end waits for instead of cancelling: what they store would be lost."""
ANSWERS_OUTLIVE_CALL = frozenset({"turn_end"})
"""Tasks that go on after the call ended (an answer waiting for Whisper): the call's end is
stored at once and the words join it when they come; the server drains them at shutdown."""
RESUME_WATCH_SECS = 1.5
"""After a prompt stopped on a first breath of voice, how long to wait for the answer to go on
before saying the prompt again."""
CONTINUATION_WINDOW_SECS = 2.0
"""A prompt started at the end of a turn and talked over within this long was a false end of
turn: the candidate had not finished."""
RESUME_LEVEL_SECS = 0.1
"""Voice on the line (the hearing check's level witness) that stops such a prompt when the VAD
scores the candidate's soft start below its threshold..."""
RESUME_LEVEL_MIN_PROBABILITY = 0.25
"""...but not nothing: a door or a breath the VAD scores near 0 does not stop the bot."""
QUICK_START_SECS = 0.064
"""While an answer is awaited and the bot is silent, two VAD windows of speech start a turn
(else ``min_speech_secs``, 0.15 s) once the line's level has carried voice for
``QUICK_START_LEVEL_SECS``: a quiet one-word "Hello?" Silero scores as speech for under 0.15 s
is heard as a turn at once, not taken in by the hearing check 1.5 s after it ends. A single
noisy window still starts nothing, and over the bot's voice barge-in keeps its own rules."""
QUICK_START_LEVEL_SECS = 0.06
SAFE_SID = re.compile(r"[A-Za-z0-9_-]{1,64}")
HANGUP_ECHO_WAIT_SECS = 2.0
"""Longest wait for the carrier to confirm the last prompt played before hanging up."""
PROSODY_SAMPLE_SECS = 0.5
"""Live prosody sample period of a watched call."""
LIVE_EVENTS = {
    "call_started": "call.started",
    "position": "script.position",
    "consent": "consent.recorded",
    "prompt_started": "bot.speaking",
    "speech_started": "speech.started",
    "speech_ended": "speech.ended",
    "answer": "question.answered",
    "prosody": "prosody.answer",
    "knockout": "knockout.recorded",
    "opt_out": "opt_out.recorded",
    "question_skipped": "question.skipped",
    "repeat_requested": "repeat.requested",
    "barge_in": "barge_in",
    "call_ended": "call.ended",
}
"""Timeline events that are also live events (the live name). None carries candidate words;
``transcript.final`` (with the words) is published where the transcript comes."""
UNINTERRUPTIBLE_PROMPTS = frozenset({"greeting"})
"""Prompts that play to the end even if the candidate talks: the AI and recording disclosure."""
VOICE_HOLDS_TIMEOUT_SECS = 10.0
"""Longest a silence timeout waits for voice-like audio (that no turn took) to stop."""
OVERTIME_HARD_SECS = 20.0
MAX_ONSET_MOVE_SECS = 3.0
"""How far back a late VAD's turn start may move to where the voice began (see _voice_onset)."""
IDLE_AUDIO_SECS = 5.0
"""Candidate audio kept between turns, so that voice no turn took in can be taken in late."""
"""An answer past its time limit ends at its next pause, or this much later at the latest."""


class StreamRefused(Exception):
    """The stream cannot be served (bad token, unknown interview); ``reason`` is for metrics."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass
class _Continuation:
    """The candidate went on talking over the prompt started at what looked like their end.

    The words belong to the answer before, and the cut prompt is said again afterwards.
    """

    question_id: str | None
    says: list[Say]
    resumed: asyncio.Event
    since: float = 0.0
    """Call-clock time of the barge-in that stopped the prompt."""
    heard: bool = False
    """A turn ended into it (a turn of the VAD's, or voice the hearing check took in)."""


@dataclass
class _Prefix:
    """A transcript of the beginning of an answer to a question with a follow-up.

    Once the words so far are long enough and hold the competency's evidence the follow-up is
    ruled out, the next question no longer depends on the rest, and it can start the instant
    the turn ends (as for questions without a follow-up).
    """

    turn_start: float
    speech_end: float
    task: asyncio.Task | None = None
    text: str | None = None
    settled: bool = False

    @property
    def running(self) -> bool:
        """Whether its transcription is still under way."""
        return self.task is not None and not self.task.done()


@dataclass
class _EarlyVerdict:
    """Smart-turn started ahead of a pause (``SpeechPausing``), for that pause's verdict."""

    speech_start: float
    speech_end: float
    future: asyncio.Future
    asked: float


class CallSession:
    """Holds one interview call on one carrier stream."""

    def __init__(
        self,
        services: Services,
        protocol: TwilioMediaStream,
        send_text: Callable[[str], Awaitable[None]],
        close_stream: Callable[[], Awaitable[None]],
    ):
        self.services = services
        self.settings = services.settings
        self.metrics = services.metrics
        self.protocol = protocol
        self._send_text = send_text
        self._close_stream = close_stream
        self.call_sid: str | None = None
        self.interview: dict[str, Any] | None = None
        self.script: JobScript | None = None
        self.engine: InterviewEngine | None = None
        self.recorder: CallRecorder | None = None
        self.playout: Playout | None = None
        self.t0 = 0.0
        self.end_reason: str | None = None
        self.finished = False
        self._seq = 0
        self._tasks: set[asyncio.Task] = set()
        # inbound audio
        self._vad: VadStream | None = None
        self._turns = TurnDetector(services.turn_config)
        self._inbound_samples = 0  # 8 kHz samples received (the candidate's clock)
        self._inbound_lag = 0.0  # wall clock minus candidate clock, seconds
        self._audio = RollingAudio()  # recent 8 kHz candidate audio, cut out for the models
        self._words = TurnWords(self)  # the words at pauses, and the speculation
        self._early: _EarlyVerdict | None = None
        self._prefix: _Prefix | None = None
        self._meter: Any = None  # ProsodyMeter while the call is watched
        self._meter_samples = 0
        self._continuation: _Continuation | None = None
        self._partials = LivePartials(self)
        self._mixer: ListenMixer | None = None  # while someone listens in
        self._listen_key = ""  # the live-feed key of this call's listen-in audio
        self._answers: list[Any] = []  # AnswerText so far, for the running scores
        self._scores: dict[str, Any] | None = None
        self._scoring: asyncio.Task | None = None
        self.started_at = 0.0  # wall clock at the stream's start
        self._listening: Listen | None = None
        self._silence_task: asyncio.Task | None = None
        self._leaving_voicemail = False
        """An answering machine took the call: only the voicemail message plays, then hang-up."""
        self._engine_lock = asyncio.Lock()
        self._awaiting_response_since: float | None = None  # wall time of last speech end
        self._barged = False
        self._turn_start: float | None = None  # speech_start of the turn in progress
        self._policy = POLICIES[self.settings.turn_policy]
        self._resumed_pauses: list[float] = []  # pauses the candidate went on after, this call
        self._took_time = False  # "take your time" said during the current answer
        self._over_time = False  # the answer in progress ran past its time limit
        self._wrap_up_pending = False  # say the wrap-up before the next prompt
        self.stats: dict[str, Any] = {"turns": 0, "barge_ins": 0, "empty_transcripts": 0}
        self._hearing = HearingGuard(
            self._turns,
            self.metrics,
            self._event,
            self.stats,
            pre_roll=PRE_ROLL_SECS,
            pad=SPECULATIVE_PAD_SECS,
            call_sid=lambda: self.call_sid,
            recover=self._recover_missed,
        )

    # -- helpers ---------------------------------------------------------------------------

    def now(self) -> float:
        """Seconds on the call clock."""
        return time.monotonic() - self.t0

    def _spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task:
        task = asyncio.create_task(self._guard(coro, name), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if inspect.iscoroutine(coro):
            # A task cancelled before it ran never awaited ``coro``: close it (no warning).
            task.add_done_callback(lambda _: coro.close())
        return task

    async def _guard(self, coro: Awaitable[Any], name: str) -> Any:
        try:
            return await coro
        except asyncio.CancelledError:
            raise
        except Exception:
            self.metrics.internal_errors.labels(where=name).inc()
            log.exception("call %s: %s failed", self.call_sid, name)
            return None

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _event(self, kind: str, t: float | None = None, **data: Any) -> None:
        at = self.now() if t is None else t
        if self.recorder is not None:
            self.recorder.event(at, kind, **data)
        live = LIVE_EVENTS.get(kind)
        if live is not None and self.call_sid is not None:
            self.services.live.publish(self.call_sid, live, round(at, 3), **data)

    def _emit(self, kind: str, **data: Any) -> None:
        """Send a durable event about this call to the bus (for the HR system)."""
        if self.services.events is None or self.interview is None:
            return
        self.services.events.emit(
            kind,
            **interview_refs(self.interview),
            call_sid=self.call_sid,
            **data,
        )

    def snapshot(self) -> dict[str, Any]:
        """Where the call is now, for a watcher joining mid-call (no candidate words)."""
        engine = self.engine
        question = engine.current_question if engine is not None else None
        return {
            "interview_id": None if self.interview is None else self.interview["id"],
            "job_id": None if self.script is None else self.script.id,
            "state": "connecting" if engine is None else engine.state,
            "question_id": None if question is None else question.id,
            "question_index": None if engine is None else engine.question_index,
            "question_count": None if engine is None else engine.question_count,
            "in_follow_up": engine is not None and engine.in_follow_up,
            "call_secs": round(self.now(), 3) if self.t0 else 0.0,
        }

    def summary(self) -> dict[str, Any]:
        """The call as the monitor lists it: who, which job, where in the script."""
        script, interview = self.script, self.interview or {}
        return {
            **self.snapshot(),
            "call_sid": self.call_sid,
            "job_title": None if script is None else script.title,
            "department": None if script is None else script.department,
            "candidate_name": interview.get("candidate_name") or "",
            "started_at": self.started_at,
            "scores": self._scores,
        }

    def _registry_update(self) -> None:
        registry = self.services.registry
        if registry is not None and self.call_sid is not None:
            registry.upsert(self.summary())

    def _transcript_line(self, line: dict[str, Any]) -> None:
        registry = self.services.registry
        if registry is not None and self.call_sid is not None:
            registry.line(self.call_sid, line)

    def _listen_in(self, chunk: np.ndarray) -> None:
        """Mix both sides for listeners, only while someone listens in."""
        if not self.services.live.watched(self._listen_key):
            self._mixer = None
            return
        if self._mixer is None:
            live, call_sid = self.services.live, self.call_sid
            self._mixer = ListenMixer(
                lambda seq, ms, ulaw: live.deliver(chunk_event(call_sid, seq, ms, ulaw)),
                start_samples=self._inbound_samples - len(chunk),
            )
        self._mixer.candidate(chunk)

    def _on_bot_frame(self, frame: bytes, t: float) -> None:
        if self.recorder is not None:
            self.recorder.bot_audio(t - self.t0, frame)
        if self._mixer is not None:
            self._mixer.bot(frame)

    def _update_scores(self, answer: Any) -> None:
        """Score the answers so far (a worker thread), for watchers' running scores."""
        if self.finished:
            return  # words that come after the call's end: the report scores them
        self._answers.append(answer)
        previous = self._scoring

        async def score() -> None:
            if previous is not None:
                await asyncio.gather(previous, return_exceptions=True)
            from voicebot.dialogue.scoring import score_interview

            assert self.script is not None
            result = await asyncio.to_thread(score_interview, self.script, list(self._answers))
            answered = {a.question_id for a in self._answers}
            scored = [c for c in result.competencies if c.answered]
            weight = sum(c.weight for c in scored)
            complete = len(answered) >= len(self.script.questions)
            # Mid-call, the competencies not asked about yet would pull the overall down: the
            # running overall is over those answered so far, with no suggestion until the end.
            self._scores = {
                "overall": round(sum(c.score * c.weight for c in scored) / weight, 1)
                if weight
                else None,
                "recommendation": str(result.recommendation) if complete else None,
                "competencies": [
                    {
                        "id": c.id,
                        "name": c.name,
                        "score": c.score if c.answered else None,
                        "answered": c.answered,
                    }
                    for c in result.competencies
                ],
                "questions_answered": len(answered),
            }
            if self.call_sid is not None and not self.finished:
                self.services.live.publish(self.call_sid, "scores.updated", None, **self._scores)
                self._registry_update()

        self._scoring = self._spawn(score(), "running_scores")

    def _meter_prosody(self, chunk: np.ndarray) -> None:
        """Live prosody samples, only while someone watches the call (CPU budget per call)."""
        if not self.services.live.watched(self.call_sid):
            self._meter = None
            return
        if self._meter is None:
            from voicebot.audio.prosody import ProsodyMeter

            self._meter = ProsodyMeter(sample_rate=TELEPHONY_RATE)
            self._meter_samples = 0
        self._meter.push(chunk, self._turn_start is not None)
        self._meter_samples += len(chunk)
        if self._meter_samples >= PROSODY_SAMPLE_SECS * TELEPHONY_RATE:
            self._meter_samples = 0
            sample = self._meter.sample()
            if sample is not None:
                from voicebot.audio.prosody import RATE_UNITS

                rate = self._partials.speech_rate if self._turn_start is not None else None
                # The job's unit from the first sample (a Chinese call's before any partial).
                language = self.script.language if self.script is not None else "en"
                unit = RATE_UNITS.get(language, "wpm")
                self.services.live.publish(
                    self.call_sid,
                    "prosody.sample",
                    round(self._inbound_samples / 8000, 3),
                    **sample,
                    speech_rate=rate,
                    rate_unit=unit,
                    speech_rate_wpm=rate if unit == "wpm" else None,
                )

    # -- carrier events --------------------------------------------------------------------

    async def handle(self, event: object) -> None:
        """Handle one parsed carrier event."""
        if isinstance(event, Media):
            self._ingest(event)
        elif isinstance(event, Start):
            await self._on_start(event)
        elif isinstance(event, Mark):
            if self.playout is not None:
                segment = self.playout.mark_echoed(event.name)
                self._event("mark_echoed", mark=event.name, known=segment is not None)
                if segment is not None and not segment.cleared:
                    self._spawn(
                        self.services.store.confirm_bot_turn_played(
                            self.call_sid, segment.extra["seq"]
                        ),
                        "store_bot_turn_end",
                    )
        elif isinstance(event, Dtmf):
            await self._on_dtmf(event.digit)
        elif isinstance(event, Stop):
            self._event("stop")
            await self.finish("caller_hangup")

    async def _on_start(self, start: Start) -> None:
        """Admit the stream: its token, its call and interview (claimed), the call's rows."""
        services = self.services
        assert services.store is not None and services.token_signer is not None
        params = start.custom_parameters
        call_sid = start.call_sid
        if not SAFE_SID.fullmatch(call_sid or ""):  # it names the recording folder
            raise StreamRefused("bad_call_sid", "callSid must be 1-64 letters, digits, _ or -")
        try:
            claims = services.token_signer.verify(
                params.get("token"), expect={"call_sid": call_sid}
            )
        except InvalidStreamToken as exc:
            if exc.reason == "binding_mismatch":
                raise StreamRefused(
                    "token_call_mismatch", "stream token was issued for another call"
                ) from None
            raise StreamRefused(f"token_{exc.reason}", f"stream token refused: {exc}") from None
        interview_id = claims["interview_id"]
        # Claimed in the same step of the event loop as checked: of several streams for one
        # call (or one interview) exactly one gets past here; the others touch nothing.
        refusal = services.call_claims.claim(call_sid, interview_id)
        if refusal is not None:
            raise StreamRefused(refusal, f"call {call_sid} or its interview already has a stream")
        try:
            interview, script = await self._admit(call_sid, interview_id, start)
        except BaseException:
            services.call_claims.release(call_sid)
            raise
        self.call_sid = call_sid
        self._listen_key = audio_channel(call_sid)
        self.interview = interview
        self.script = script
        services.sessions[call_sid] = self
        self.metrics.calls_active.inc()
        self.recorder = CallRecorder(
            self.settings.recordings_dir / call_sid, files=services.recording_files
        )
        await services.store.start_interview_attempt(interview_id)
        self._event("call_started", t=0.0, job_id=script.id, interview_id=interview_id)
        self._registry_update()
        self._emit("call.answered", stream_sid=start.stream_sid)
        log.info("call %s started: interview %s, job %s", call_sid, interview_id, script.id)
        self.playout = Playout(
            send_media=lambda frame: self._send_text(self.protocol.media(frame)),
            send_mark=lambda name: self._send_text(self.protocol.mark(name)),
            send_clear=lambda: self._send_text(self.protocol.clear()),
            on_frame=self._on_bot_frame,
            on_segment_start=self._on_segment_start,
            on_segment_end=self._on_segment_end,
        )
        self.playout.start()
        self._vad = services.vad_batcher.open(self._on_vad)
        self._hearing.vad = self._vad
        self.engine = InterviewEngine(script)
        async with self._engine_lock:
            await self._run_actions(self.engine.start())

    async def _admit(
        self, call_sid: str, interview_id: str, start: Start
    ) -> tuple[dict[str, Any], JobScript]:
        """Check the claimed call's interview and store the call's row; refuse if it cannot be.

        Nothing of this session is set yet: a refusal here leaves no trace but the metric.
        """
        store = self.services.store
        assert store is not None
        interview = await store.get_interview(interview_id)
        if interview is None:
            raise StreamRefused("unknown_interview", f"no interview {interview_id!r}")
        status = interview["status"]
        if status not in CALLABLE_STATUSES:
            raise StreamRefused(f"interview_{status}", f"the interview is {status}: no more calls")
        if await store.live_call_of_interview(interview_id) is not None:
            raise StreamRefused("interview_busy", "the interview is on another call")
        script = self.services.scripts.get(interview["job_id"])
        if script is None:
            raise StreamRefused("unknown_job", f"no job script {interview['job_id']!r} loaded")
        if await store.call_exists(call_sid):
            raise StreamRefused("duplicate_call", f"call {call_sid} already had a stream")
        self.t0 = time.monotonic()
        self.started_at = time.time()  # the call clock's zero on the wall clock
        try:
            await store.create_call(
                call_sid=call_sid,
                interview_id=interview_id,
                stream_sid=start.stream_sid,
                from_number=start.custom_parameters.get("from", ""),
                recording_dir=str(self.settings.recordings_dir / call_sid),
                started_at=self.started_at,
                owner=self.services.process.id,
            )
        except sqlite3.IntegrityError:  # another process stored it first
            raise StreamRefused("duplicate_call", f"call {call_sid} already has a stream") from None
        return interview, script

    # -- inbound audio ---------------------------------------------------------------------

    def _ingest(self, media: Media) -> None:
        if self.recorder is None or self.finished:
            return
        payload = media.payload
        expected_ms = self._inbound_samples / 8
        gap = media.timestamp_ms - expected_ms if media.timestamp_ms is not None else 0
        if gap >= 40:  # the carrier skipped audio: keep both clocks aligned with silence
            # Faint noise, not digital silence: exact zeros mid-answer deafen Silero for seconds.
            payload = ulaw_comfort_noise(int(gap * 8)) + payload
            self.metrics.inbound_gaps.inc()
            self.metrics.inbound_gap_seconds.inc(gap / 1000)
            self._event("inbound_gap", t=expected_ms / 1000, ms=round(gap))
        self.recorder.candidate_audio(self._inbound_samples / TELEPHONY_RATE, payload)
        self._inbound_samples += len(payload)
        self._inbound_lag = self.now() - self._inbound_samples / TELEPHONY_RATE
        chunk = ulaw_decode(payload)
        self._hearing.audio(chunk, self._inbound_samples / TELEPHONY_RATE)
        self._audio.append(chunk)
        if self._vad is not None:
            self._vad.feed(chunk)
        if self.call_sid is not None:
            self._meter_prosody(chunk)
            self._listen_in(chunk)

    def _on_vad(self, probabilities: np.ndarray) -> None:
        """Take the VAD's verdicts on this call's newest windows (on the event loop).

        Windows are dated by their position in the stream, counting any a model error lost,
        so the turn clock stays on the candidate's audio clock.
        """
        vad = self._vad
        if self.finished or vad is None or self._leaving_voicemail:
            return
        first = vad.windows_done - len(probabilities)
        window_secs = vad.window_secs
        for index, probability in enumerate(probabilities.tolist()):
            t = (first + index + 1) * window_secs
            self._hearing.vad_window(t, probability)
            self._turns.quick_start_secs = self._quick_start(t)
            for event in self._turns.feed(probability, t):
                self._on_turn_event(event)
            self._check_barge_in(t, probability)
            self._check_answer_length(t)
            if self._turn_start is not None:
                self._partials.tick(t)
        self._hearing.vad_scored_until((first + len(probabilities)) * window_secs)
        self._trim_audio()

    def _quick_start(self, t: float) -> float | None:
        """The voiced run that starts a turn at ``t`` if shorter than usual (``QUICK_START_SECS``).

        Only while an answer is awaited, the bot is silent and the line's level says a voice
        has been there ``QUICK_START_LEVEL_SECS``; else None (``min_speech_secs``).
        """
        if self._listening is None or self._turns.speaking:
            return None
        if self.playout is not None and self.playout.playing:
            return None
        since = self._hearing.coverage.voice_since(t)
        if since is None or t - since + 1e-9 < QUICK_START_LEVEL_SECS:
            return None
        return QUICK_START_SECS

    def _trim_audio(self) -> None:
        """Keep only what a turn may still need: from its start, or the last few seconds.

        Between turns ``IDLE_AUDIO_SECS`` are kept: voice no turn took in is taken in from there.
        """
        if self._turn_start is not None:
            self._audio.discard_before(int((self._turn_start - PRE_ROLL_SECS) * TELEPHONY_RATE))
        else:
            self._audio.discard_before(self._audio.end - int(IDLE_AUDIO_SECS * TELEPHONY_RATE))

    def _recover_missed(self, unheard: UnheardSpeech) -> bool:
        """Take in voice that no turn took, as a turn of its own, while an answer is awaited.

        The words decide, not the voice: the turn never moves the script on before its
        transcript (no pre-start), and a transcript with no words changes nothing. Voice over a
        prompt the candidate stopped by going on (a continuation) is that answer's rest.
        """
        continuation = self._continuation
        if (
            self.finished
            or (self._listening is None and continuation is None)
            or self._turn_start is not None
            or self._turns.speaking
            or (continuation is not None and continuation.heard)
        ):
            return False
        gaps = unheard.gaps or ((unheard.start, unheard.end),)
        start, end = gaps[0][0], gaps[-1][1]
        if continuation is not None and end < continuation.since - CONTINUATION_WINDOW_SECS:
            return False  # voice from before the prompt started: not the answer's rest
        if start < self._audio.start / TELEPHONY_RATE:
            return False  # no longer in the buffer
        if self._silence_task is not None:
            self._silence_task.cancel()  # an answer came, late: the timer starts again after it
            self._silence_task = None
        self._on_turn_event(
            TurnEnded(t=self.now(), speech_start=start, speech_end=end, reason="recovered")
        )
        return True

    def _audio_between(self, start: float, end: float) -> np.ndarray:
        """The candidate's audio between two call-clock times, at 16 kHz for the models."""
        return resample(self._phone_between(start, end), TELEPHONY_RATE, MODEL_RATE)

    def _phone_between(self, start: float, end: float) -> np.ndarray:
        """The same at the carrier's 8 kHz (a copy: cheap, resample it off the event loop)."""
        return self._audio.slice(int(start * TELEPHONY_RATE), int(end * TELEPHONY_RATE))

    # -- turn-taking -----------------------------------------------------------------------

    def _on_turn_event(self, event: object) -> None:
        if isinstance(event, SpeechStarted):
            event = self._voice_onset(event)
            self._event("speech_started", t=event.speech_start)
            self._hearing.turn_started(event.speech_start)
            self._turn_start = event.speech_start
            if self._continuation is None:
                self._took_time = False
                self._over_time = False
            self._partials.start(event.speech_start)
            self._barged = False
            self._prefix = None
            if self._silence_task is not None:
                self._silence_task.cancel()
                self._silence_task = None
        elif isinstance(event, SpeechPausing):
            self._early_smart_turn(event)
        elif isinstance(event, SpeechPaused):
            self._on_pause(event)
        elif isinstance(event, SpeechResumed):
            # Stale now: free the ASR worker for other calls if it has not started.
            self._words.discard()
            self._drop_early_verdict()
            if self._turns.resumed_pauses:
                self._resumed_pauses.append(self._turns.resumed_pauses[-1])
                self._apply_ceiling()
        elif isinstance(event, TurnEnded):
            self._turn_start = None
            if self._continuation is not None:
                self._continuation.heard = True
            if event.reason == "max_answer" and self._listening is not None:
                self._wrap_up_pending = True
            self._over_time = False
            self._hearing.turn_ended(event.speech_start, event.speech_end)
            self._partials.stop()
            self._words.discard_pause_words()
            self._event(
                "speech_ended",
                t=event.t,
                speech_start=round(event.speech_start, 3),
                speech_end=round(event.speech_end, 3),
                reason=event.reason,
                wall=round(self.now(), 3),
                inbound_lag=round(self._inbound_lag, 3),
            )
            speculation = self._words.take_speculation(event.speech_end)
            if self._prefix is not None and self._prefix.running:
                assert self._prefix.task is not None
                self._prefix.task.cancel()  # the final transcription supersedes it
                self.metrics.prefixes.labels("cancelled").inc()
            # Cut the turn's audio now: the buffer drops it once no turn is in progress.
            audio = self._audio_between(
                event.speech_start - PRE_ROLL_SECS, event.speech_end + SPECULATIVE_PAD_SECS
            )
            self._spawn(self._on_turn_end(event, audio, speculation), "turn_end")

    def _voice_onset(self, event: SpeechStarted) -> SpeechStarted:
        """Start the turn where the candidate's voice began, if the VAD came to it late.

        Silero can score the first quiet words of an answer ("alright, so ...") or a filler
        before a thinking pause as non-speech; the level witness saw them. The turn takes them
        in (from the audio still buffered), so they are transcribed and never reported unheard.
        """
        onset = self._hearing.coverage.onset(event.t, MAX_ONSET_MOVE_SECS)
        if onset is None:
            return event
        onset = max(onset, self._audio.start / TELEPHONY_RATE + PRE_ROLL_SECS)
        if onset >= event.speech_start - PRE_ROLL_SECS:
            return event  # the pre-roll already takes it in
        self._turns.start_earlier(onset)
        self.metrics.turn_onsets_moved.inc()
        return SpeechStarted(t=event.t, speech_start=self._turns.speech_start)

    def _on_pause(self, event: SpeechPaused) -> None:
        """A short pause: ask the end-of-turn policy how long to wait, with what is known.

        The policy (``voicebot.speech.turn_policy``) is asked when smart-turn's verdict comes
        and again when the words so far do (the speculative transcription started here): the
        words decide whether "I worked at a bank and" or a trailing "um" is an end.
        """
        if not self._over_time:
            self._words.transcribe_pause(event)  # first: a worker takes it before the others
        self._maybe_transcribe_prefix(event)
        self._partials.pause(event)
        if self._over_time:
            # Past the question's time limit: the first pause ends the answer (wrap-up, no cut).
            for ended in self._turns.set_pause_wait(0.0, "max_answer", pause=event):
                self._on_turn_event(ended)
            return
        if self.services.smart_turn is None:
            self._decide_pause(event, None)
            self._words.speculate(event)
            return
        self._ask_smart_turn(event)

    def _question_context(self) -> QuestionContext:
        """What the turn in progress answers: an open or closed question, or the consent.

        While the candidate goes on with the answer the bot started to reply to (a
        continuation), that answer's question: a long open answer continued over a closed
        question's prompt keeps the open question's pauses, not the closed one's short wait.
        """
        continuation = self._continuation
        if continuation is not None and self.script is not None:
            if continuation.question_id is None:
                return QuestionContext("consent")
            answered = self.script.question(continuation.question_id)
            return QuestionContext(answered.answer_kind, answered.max_pause_secs)
        listen, engine = self._listening, self.engine
        if listen is None or listen.question_id is None or engine is None:
            return QuestionContext("consent")
        question = engine.current_question
        if question is None or question.id != listen.question_id:
            return QuestionContext("open")
        return QuestionContext(question.answer_kind, question.max_pause_secs)

    def _pause_features(
        self, event: SpeechPaused, probability: float | None, words: str | None, tail: bool = False
    ) -> PauseFeatures:
        assert self.script is not None
        return PauseFeatures(
            speech_secs=event.speech_end - event.speech_start,
            smart_turn=probability,
            words=words,
            words_are_tail=tail and words is not None,
            language=self.script.language,
            question=self._question_context(),
            resumed_pauses=tuple(self._resumed_pauses),
        )

    def _decide_pause(
        self,
        event: SpeechPaused,
        probability: float | None,
        words: str | None = None,
        *,
        tail: bool = False,
    ) -> Decision:
        """Ask the policy about the pause and let the turn end when its silence is long enough."""
        decision = self._policy(
            self._pause_features(event, probability, words, tail),
            self.services.turn_policy_config,
        )
        self.metrics.turn_decisions.labels(decision.reason).inc()
        self._event(
            "turn_decision",
            speech_end=round(event.speech_end, 3),
            wait=round(decision.wait_secs, 3),
            reason=decision.reason,
            words=decision.words,
        )
        if decision.take_your_time and not self._took_time:
            self._took_time = True
            self._spawn(self._say_aside("take_your_time"), "take_your_time")
        for ended in self._turns.set_pause_wait(
            decision.wait_secs, decision.reason, pause=event, probability=probability
        ):
            self._on_turn_event(ended)
        return decision

    async def _say_aside(self, prompt_id: str) -> None:
        """Say a short scripted aside ("take your time") without moving the script on."""
        assert self.services.prompts is not None and self.script is not None
        text = getattr(self.script, prompt_id, "")
        if not text or self.finished:
            return
        audio = await self._prompt_audio(prompt_id, text)
        if not self.finished:
            self._enqueue_prompt(Say(prompt_id, text), audio, awaits=False)

    def _maybe_transcribe_prefix(self, event: SpeechPaused) -> None:
        """Transcribe the answer so far when that may rule out the question's follow-up.

        Only for a question with a follow-up still to decide, an answer at least
        ``PREFIX_MIN_SPEECH_SECS`` long (and as much longer than the last try), one at a time,
        and only while the ASR pool has a free worker: it is an optimisation, never a backlog.
        """
        listen, engine = self._listening, self.engine
        if listen is None or listen.question_id is None or listen.follow_up or engine is None:
            return
        question = engine.current_question
        if question is None or question.follow_up is None or question.id != listen.question_id:
            return
        if event.speech_end - event.speech_start < PREFIX_MIN_SPEECH_SECS:
            return
        prefix = self._prefix
        if prefix is not None and prefix.turn_start == event.speech_start:
            if prefix.settled or prefix.running:
                return
            if event.speech_end - prefix.speech_end < PREFIX_MIN_SPEECH_SECS:
                return
        asr = self.services.asr
        if asr is None or not asr.has_free_worker:
            return
        from voicebot.dialogue.scoring import needs_follow_up

        audio = self._audio_between(
            event.speech_start - PRE_ROLL_SECS, event.speech_end + SPECULATIVE_PAD_SECS
        )
        script = engine.script
        current = _Prefix(event.speech_start, event.speech_end)

        async def transcribe() -> None:
            result = await self._transcribe(audio, listen)
            if result is None:
                return
            current.text = result.text.strip()
            current.settled = bool(current.text) and not needs_follow_up(
                script, question, current.text
            )
            self.metrics.prefixes.labels("settled" if current.settled else "unsettled").inc()
            self._event(
                "answer_prefix",
                speech_secs=round(current.speech_end - current.turn_start, 3),
                settled=current.settled,
            )

        current.task = self._spawn(transcribe(), "prefix_asr")
        self._prefix = current

    def _words_so_far(self, event: TurnEnded) -> str:
        """The settled beginning of the answer that just ended, or ``""``."""
        prefix = self._prefix
        if prefix is None or prefix.turn_start != event.speech_start or not prefix.settled:
            return ""
        return prefix.text or ""

    def _submit_smart_turn(
        self, speech_start: float, speech_end: float, until: float, pad_to: float
    ) -> asyncio.Future:
        """Run smart-turn on the turn's audio up to ``until``, zero-padded to ``pad_to``.

        The inference runs in the smart-turn thread and is skipped there (the future gives
        ``None``) when the turn has moved on by then: speech resumed, or the turn ended.
        """
        # Only the last 8 s count (plus a margin for the resampler's edge), and resampling
        # runs in the smart-turn thread: a long answer's whole audio, resampled on the event
        # loop at each pause, held every call's audio up for 10 ms a minute of answer.
        start = max(speech_start - PRE_ROLL_SECS, pad_to - SMART_TURN_SECS - 0.1)
        phone = self._phone_between(start, until)
        padding = max(0, round((pad_to - until) * TELEPHONY_RATE))
        model = self.services.smart_turn
        assert model is not None
        turns = self._turns

        def judge() -> float | None:  # in the smart-turn thread
            if self.finished or not turns.is_current_silence(speech_start, speech_end):
                return None
            audio = phone if not padding else np.concatenate([phone, np.zeros(padding, np.int16)])
            return model.predict(resample(audio, TELEPHONY_RATE, MODEL_RATE))

        services = self.services
        services.smart_turn_pending += 1
        future = asyncio.get_running_loop().run_in_executor(services.turn_executor, judge)

        def finished(_: asyncio.Future) -> None:
            services.smart_turn_pending -= 1

        future.add_done_callback(finished)
        return future

    def _early_smart_turn(self, event: SpeechPausing) -> None:
        """Start smart-turn before the pause, on the audio so far padded with silence to it.

        Only while the smart-turn thread is idle: it takes a verdict's inference time off the
        end of the turn when the CPU has room, and adds no queue when it has not. A run whose
        pause never comes (the candidate went on) is counted as ``early_unused``.
        """
        if self.services.smart_turn is None or self.services.smart_turn_pending:
            return
        self._drop_early_verdict()
        self._early = _EarlyVerdict(
            speech_start=event.speech_start,
            speech_end=event.speech_end,
            future=self._submit_smart_turn(
                event.speech_start, event.speech_end, event.t, event.pause_t
            ),
            asked=time.monotonic(),
        )

    def _drop_early_verdict(self) -> None:
        """Forget an early verdict whose pause did not come."""
        early, self._early = self._early, None
        if early is not None:
            self.metrics.smart_turn.labels("early_unused").inc()

    def _ask_smart_turn(self, event: SpeechPaused) -> None:
        """Get smart-turn's verdict on the pause and hand it to the policy.

        The verdict started early for this pause (``SpeechPausing``) is used when there is one;
        otherwise smart-turn runs now on the audio up to the pause. Under load the requests
        queue for the smart-turn thread; one whose pause is over by the time its turn comes
        (the candidate went on talking) is skipped, not run for nothing.
        """
        early = self._early
        if (
            early is not None
            and early.speech_start == event.speech_start
            and early.speech_end == event.speech_end
        ):
            self._early = None
            future, asked = early.future, early.asked
        else:
            self._drop_early_verdict()
            early = None
            asked = time.monotonic()
            future = self._submit_smart_turn(event.speech_start, event.speech_end, event.t, event.t)

        def deliver(done: asyncio.Future) -> None:
            if done.cancelled() or done.exception() is not None or self.finished:
                return
            if done.result() is None:
                self.stats["smart_turn_skipped"] = self.stats.get("smart_turn_skipped", 0) + 1
                self.metrics.smart_turn.labels("skipped").inc()
                return
            self.metrics.smart_turn.labels("run" if early is None else "early").inc()
            probability = float(done.result())
            self._event(
                "smart_turn",
                probability=round(probability, 3),
                early=early is not None,
                secs=round(time.monotonic() - asked, 3),
            )
            if not self._turns.is_current_pause(event):
                return
            words, tail = self._words.at(event)
            decision = self._decide_pause(event, probability, words, tail=tail)
            if decision.wait_secs > self._turns.config.pause_secs:
                self._words.speculate(event)

        if future.done():
            deliver(future)
        else:
            future.add_done_callback(deliver)

    async def _transcribe(
        self, audio: np.ndarray, listen: Listen | None, *, waited: bool = False
    ) -> ASRResult | None:
        """The final transcription of a turn that answers ``listen``.

        ``waited``: the call is silent until these words come (the consent, an answer whose
        next step was not pre-started): :attr:`Priority.WAITED`, ahead of other calls' finals
        that are only stored.
        """
        assert self.services.asr is not None and self.script is not None
        try:
            return await self.services.asr.transcribe(
                audio,
                self.script.language,
                Priority.WAITED if waited else Priority.FINAL,
                prompt=self.recognition_prompt(listen),
                key=self.call_sid,  # a short turn's final may be its pause words (ASRPool)
            )
        except ASRDropped:
            return None

    def recognition_prompt(self, listen: Listen | None) -> str | None:
        """The decoder prompt for an answer to ``listen`` (``VOICEBOT_ASR_PROMPT``).

        The question just asked and its competency's keywords, for an answer to a question (a
        follow-up's answer gets its question's); None for consent and outside an answer.
        """
        script = self.script
        if listen is None or listen.question_id is None or script is None:
            return None
        parts = self.settings.asr_prompt_parts(script.language)
        if not parts:
            return None
        return recognition_prompt(script, script.question(listen.question_id), parts)

    def _check_barge_in(self, t: float, probability: float = 0.0) -> None:
        """Stop the bot when the candidate talks over it.

        Over a prompt that started at the end of their answer less than
        ``CONTINUATION_WINDOW_SECS`` ago, the candidate had not finished: the bot goes quiet on
        ``barge_in_resume_secs`` of voice (before it counts as a turn), or, when the VAD scores
        a soft start below its threshold (a quiet "um", a breathy voice: seen at 0.47 for a whole
        second), on ``RESUME_LEVEL_SECS`` of voice on the line (the hearing check's level) while
        the VAD scores at least ``RESUME_LEVEL_MIN_PROBABILITY``. Over any other prompt it takes
        ``barge_in_min_secs`` of speech.
        """
        playout = self.playout
        if playout is None or not playout.playing or self._barged:
            return
        current = playout.current
        if current is None or current.prompt_id in UNINTERRUPTIBLE_PROMPTS:
            return
        resuming = (
            "answered_question" in current.extra
            and current.first_frame_at is not None
            and time.monotonic() - current.first_frame_at <= CONTINUATION_WINDOW_SECS
        )
        if resuming:
            since = self._turn_start if self._turn_start is not None else self._turns.voiced_since
            need = self.settings.barge_in_resume_secs
            if since is None and probability >= RESUME_LEVEL_MIN_PROBABILITY:
                since, need = self._hearing.coverage.voice_since(t), RESUME_LEVEL_SECS
        else:
            since, need = self._turn_start, self.settings.barge_in_min_secs
        if since is None or self._turns.paused or t - since + 1e-9 < need:
            return
        self._barged = True
        self.stats["barge_ins"] += 1
        self.metrics.barge_ins.inc()
        self._spawn(self._barge_in(), "barge_in")

    async def _barge_in(self) -> None:
        assert self.playout is not None
        cut = await self.playout.clear()
        heard = [
            {"mark": s.mark, "prompt_id": s.prompt_id, "heard_secs": round(s.sent_secs, 2)}
            for s in cut
        ]
        self._event("barge_in", cut=heard)
        self._emit("barge_in", t=round(self.now(), 3), cut=heard)
        log.info("call %s: barge-in, cut %s", self.call_sid, [h["prompt_id"] for h in heard])
        # Prompts that followed an answer (pre-started, or after its words): talked over at
        # once, the answer had not ended.
        following = [s for s in cut if "answered_question" in s.extra]
        if following and following[0].sent_secs <= CONTINUATION_WINDOW_SECS:
            self._continuation = _Continuation(
                question_id=following[0].extra["answered_question"],
                says=[Say(s.prompt_id, s.extra["text"]) for s in following],
                resumed=asyncio.Event(),
                since=self.now(),
            )
            self._event("answer_continued", question_id=self._continuation.question_id)
            self._apply_ceiling()  # the continued answer's question sets the pauses now
            if self._turn_start is None:
                self._spawn(self._resume_watch(self._continuation), "resume_watch")

    async def _resume_watch(self, continuation: _Continuation) -> None:
        """A prompt stopped on a first breath of voice: if no speech follows, say it again.

        Speech may take a while to count as a turn (voice that comes and goes), so this waits
        ``RESUME_WATCH_SECS`` and then for as long as the line carries voice or voice is still
        being judged (at most 5 s more): a quiet "Hello?" the VAD scores too short for a turn is
        taken in by the hearing check once it is over, as this answer's words.
        """

        def resumed() -> bool:
            return (
                self.finished
                or self._continuation is not continuation
                or continuation.heard
                or self._turns.speaking
                or self._turn_start is not None
            )

        for step in range(round((RESUME_WATCH_SECS + 5.0) / 0.1)):
            await asyncio.sleep(0.1)
            if resumed():
                return
            heard_at = self._inbound_samples / TELEPHONY_RATE
            if step * 0.1 >= RESUME_WATCH_SECS and not self._hearing.voice_pending(heard_at):
                break
        assert self.services.prompts is not None and self.script is not None
        async with self._engine_lock:
            if self._continuation is not continuation or resumed():
                return
            self._event("answer_not_continued", question_id=continuation.question_id)
            self._continuation = None
            self._apply_ceiling()
            await self._say_cut_prompts_again(continuation)
            continuation.resumed.set()
        self._barged = False

    async def _say_cut_prompts_again(self, continuation: _Continuation) -> None:
        """Queue the prompts the candidate talked over again (with the engine lock held)."""
        assert self.services.prompts is not None and self.script is not None
        awaits = self.engine is not None and not self.engine.ended
        for index, say in enumerate(continuation.says):
            audio = await self._prompt_audio(say.prompt_id, say.text)
            last = index == len(continuation.says) - 1
            segment = self._enqueue_prompt(say, audio, awaits=awaits and last)
            if continuation.question_id is not None:
                # Talked over at once again: the answer still had not ended.
                segment.extra["answered_question"] = continuation.question_id

    def _check_answer_length(self, t: float) -> None:
        listen = self._listening
        if listen is None or self._turn_start is None:
            return
        over = t - self._turn_start - listen.max_answer_secs
        if over > 0 and not self._over_time:
            # Past the limit: the answer ends at its next pause, with a polite wrap-up.
            self._over_time = True
            self._event("answer_time_limit", secs=listen.max_answer_secs)
            if self._turns.paused:
                pause = SpeechPaused(t, self._turns.speech_start, self._turns.speech_end)
                for ended in self._turns.set_pause_wait(0.0, "max_answer", pause=pause):
                    self._on_turn_event(ended)
        elif over > OVERTIME_HARD_SECS:
            ended = TurnEnded(t=t, speech_start=self._turn_start, speech_end=t, reason="max_answer")
            self._turns.reset()
            self._on_turn_event(ended)

    async def _prestart_next_prompts(self, event: TurnEnded) -> list[Segment]:
        """Move the script on the instant the turn ends when the next step cannot depend on it.

        During the questions the next question (or the closing) follows whatever was said, so
        the candidate hears it without waiting for the transcript, and the script advances now:
        the call listens for the next answer at once, its silence timer runs from the end of
        the question, and an answer given while Whisper is still behind on this one is taken
        for the next question (its words are stored when they come, against the question they
        answer). Consent answers, which decide the next step, always wait for the transcript.
        """
        listen = self._listening
        if listen is None or listen.question_id is None or self.engine is None or self.finished:
            return []
        if (
            event.reason == "recovered"
            or event.speech_end - event.speech_start < self.settings.prestart_min_speech_secs
        ):
            # Maybe a cough, or a request ("can you repeat that?", "stop calling me") rather
            # than an answer: requests are short, so wait for the words. An opt-out inside a
            # longer, pre-started answer is still honoured when its words come (_late_words).
            return []
        words_so_far = self._words_so_far(event)
        says = self.engine.next_prompts_if_independent(words_so_far)
        if not says:
            return []
        assert self.services.prompts is not None and self.playout is not None
        async with self._engine_lock:
            if self._listening is not listen or self.finished:
                return []
            self._listening = None
            self._awaiting_response_since = event.speech_end + self._inbound_lag
            await self._say_wrap_up()
            segments = []
            for say in says:
                audio = await self._prompt_audio(say.prompt_id, say.text)
                segment = self._enqueue_prompt(say, audio, awaits=False)
                segment.extra["answered_question"] = listen.question_id
                segments.append(segment)
            actions = self.engine.handle(CandidateSaid(TRANSCRIPT_PENDING, words_so_far))
            await self._run_actions(actions, replace_queued=True, prestarted=segments)
            return segments

    async def _on_turn_end(
        self, event: TurnEnded, audio: np.ndarray, speculation: Speculation | None
    ) -> None:
        """Transcribe a finished turn, store its words and, unless done already, act on them.

        The words are stored even when the call ended meanwhile (the candidate hung up after
        answering): :meth:`finish` leaves these tasks running (``Services.pending_answers``).
        """
        assert self.services.store is not None
        continuation = self._continuation  # cleared once the cut prompt is queued again
        listened = self._listening  # what the turn answers
        answered = listened.question_id if listened is not None else None
        prestarted = [] if continuation else await self._prestart_next_prompts(event)
        result: ASRResult | None = None
        reused = False
        if speculation is not None:
            try:
                result = await speculation.task
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise
                result = None  # the call ended and took the speculation with it: transcribe
            reused = result is not None
            self.metrics.speculations.labels("kept" if reused else "discarded").inc()
        if result is None:
            result = await self._transcribe(audio, listened, waited=not prestarted)
        if result is None:
            if continuation is not None:
                self._continuation = None
                self._apply_ceiling()
                continuation.resumed.set()
            return
        eos_to_final = max(self.now() - (event.speech_end + self._inbound_lag), 0.0)
        self.metrics.asr_latency.observe(result.latency_secs)
        self.metrics.end_of_speech_to_final.observe(eos_to_final)
        text = result.text.strip()
        self._event(
            "transcript_final",
            text_chars=len(text),
            asr_latency=round(result.latency_secs, 3),
            end_of_speech_to_final=round(eos_to_final, 3),
            speculative=reused,
        )
        if not text:
            self.stats["empty_transcripts"] += 1
        elif self.call_sid is not None:
            words = {
                "text": text,
                "question_id": answered,
                "start": round(event.speech_start, 3),
                "end": round(event.speech_end, 3),
            }
            self.services.live.publish(
                self.call_sid, "transcript.final", round(event.speech_end, 3), **words
            )
            self._transcript_line({"speaker": "candidate", **words})
            self._emit("transcript.final", **words)
        if continuation is not None:
            await self._continue_answer(event, continuation, text, result, eos_to_final)
            return
        follow_up = listened is not None and listened.follow_up
        if prestarted:
            # The script moved on at the end of the turn; the words join the question they
            # answer (an inaudible answer is stored as such). Only an opt-out in them still
            # changes the call.
            await self._store_answer(
                event, text or INAUDIBLE, result, eos_to_final, answered, audio, follow_up
            )
            if text and answered is not None:
                await self._late_words(answered, text)
            return
        thinking = bool(text) and read_words(text, self.script.language) == "thinking"
        if not text or thinking:
            # Nothing, or only "let me think": not an answer yet, keep listening.
            if thinking:
                self._event("answer_deferred", reason="thinking")
            if not self.finished:
                self._restart_silence_timer()
            return
        async with self._engine_lock:
            if self.engine is None:
                return
            if self.finished or self.engine.ended:
                await self._store_answer(
                    event, text, result, eos_to_final, answered, audio, follow_up
                )
                return  # the call is over: stored only
            question = self.engine.current_question
            await self._store_answer(
                event,
                text,
                result,
                eos_to_final,
                question.id if question is not None else None,
                audio,
                follow_up and question is not None and question.id == answered,
            )
            if self._listening is None:
                return  # not expecting an answer now (e.g. mid-greeting): stored, not acted on
            self._awaiting_response_since = event.speech_end + self._inbound_lag
            self._listening = None
            actions = self.engine.handle(CandidateSaid(text))
            await self._run_actions(actions, replace_queued=True)

    async def _store_answer(
        self,
        event: TurnEnded,
        text: str,
        result: ASRResult,
        eos_to_final: float,
        question_id: str | None,
        audio: np.ndarray | None = None,
        follow_up: bool = False,
    ) -> None:
        assert self.services.store is not None and self.script is not None
        prosody = None
        if audio is not None and question_id is not None and text != INAUDIBLE:
            prosody = await self._prosody(audio, text)
        await self.services.store.add_turn(
            call_sid=self.call_sid,
            seq=self._next_seq(),
            speaker="candidate",
            text=text,
            start=round(event.speech_start, 3),
            end=round(event.speech_end, 3),
            question_id=question_id,
            asr_latency=round(result.latency_secs, 3),
            end_of_speech_to_final=round(eos_to_final, 3),
            follow_up=follow_up,
            prosody=prosody,
        )
        self.stats["turns"] += 1
        if question_id is not None:
            from voicebot.dialogue.scoring import AnswerText

            if text != INAUDIBLE:
                self._update_scores(
                    AnswerText(question_id, "" if follow_up else text, text if follow_up else "")
                )
            self._emit(
                "question.answered",
                question_id=question_id,
                text=text,
                via="voice",
                follow_up=follow_up,
                start=round(event.speech_start, 3),
                end=round(event.speech_end, 3),
                prosody=prosody,
            )

    async def _prosody(self, audio: np.ndarray, text: str) -> dict[str, Any] | None:
        """Descriptive prosody of one answer (speech rate, pauses, pitch, loudness, fillers)."""
        assert self.script is not None
        from voicebot.audio.prosody import analyse

        try:
            features = await asyncio.to_thread(
                analyse, audio, MODEL_RATE, text, self.script.language
            )
        except Exception:  # descriptive only: never lose an answer over it
            log.exception("call %s: prosody analysis failed", self.call_sid)
            return None
        sample = features.to_dict()
        self._event("prosody", **{k: v for k, v in sample.items() if isinstance(v, (int, float))})
        return sample

    async def _late_words(self, question_id: str, text: str) -> None:
        """The words of a pre-started answer came: an opt-out in them ends the call now."""
        if self.engine is None or self.finished:
            return
        async with self._engine_lock:
            actions = self.engine.late_words(question_id, text)
            if not actions:
                return
            self._listening = None
            for task in list(self._tasks):
                if task.get_name() == "hangup":  # after the pre-started closing: not yet
                    task.cancel()
            if self.playout is not None and self.playout.playing:
                await self.playout.clear()
            await self._run_actions(actions, replace_queued=True)

    async def _continue_answer(
        self,
        event: TurnEnded,
        continuation: _Continuation,
        text: str,
        result: ASRResult,
        eos_to_final: float,
    ) -> None:
        """Store the rest of an answer the bot cut into, then say the cut prompt again."""
        assert self.services.store is not None and self.services.prompts is not None
        if self.finished:
            if text:
                await self._store_answer(
                    event, text, result, eos_to_final, continuation.question_id
                )
            continuation.resumed.set()
            return
        async with self._engine_lock:
            if text:
                await self._store_answer(
                    event, text, result, eos_to_final, continuation.question_id
                )
            self.stats["continued_answers"] = self.stats.get("continued_answers", 0) + 1
            self._awaiting_response_since = event.speech_end + self._inbound_lag
            await self._say_cut_prompts_again(continuation)
            if self._continuation is continuation:
                self._continuation = None
                self._apply_ceiling()
            continuation.resumed.set()
            self._restart_silence_timer()

    async def _on_dtmf(self, digit: str) -> None:
        self._event("dtmf", digit=digit)
        if self.engine is None or self.engine.ended:
            return
        async with self._engine_lock:
            actions = self.engine.handle(DtmfPressed(digit))
            if actions:
                self._awaiting_response_since = self.now()
                self._listening = None
                if self.playout is not None and self.playout.playing:
                    current = self.playout.current
                    if current is None or current.prompt_id not in UNINTERRUPTIBLE_PROMPTS:
                        await self.playout.clear()
                await self._run_actions(actions, replace_queued=True)

    # -- silence ---------------------------------------------------------------------------

    def _restart_silence_timer(self) -> None:
        if self._listening is not None and not self.finished:
            if self._silence_task is not None:
                self._silence_task.cancel()
            self._silence_task = self._spawn(self._silence_watch(self._listening), "silence")

    async def _silence_watch(self, listen: Listen) -> None:
        assert self.playout is not None
        await self.playout.wait_idle()
        await asyncio.sleep(listen.timeout_secs)
        await self._vad_caught_up()
        for _ in range(round(VOICE_HOLDS_TIMEOUT_SECS / 0.1)):
            # Audible voice on the line: never "are you still there?" over a talking candidate.
            heard_at = self._inbound_samples / TELEPHONY_RATE
            if self.finished or not self._hearing.voice_pending(heard_at):
                break
            await asyncio.sleep(0.1)
        if self._listening is not listen or self._turn_start is not None or self.finished:
            return
        async with self._engine_lock:
            if self._listening is not listen or self.engine is None:
                return
            self._event("silence_timeout", secs=listen.timeout_secs)
            self._listening = None
            await self._run_actions(self.engine.handle(SilenceTimeout()))

    async def _vad_caught_up(self, limit_secs: float = 5.0) -> None:
        """Wait until the VAD has scored the audio received so far (at most ``limit_secs``).

        A silence timeout is decided on the wall clock; on an overloaded machine the VAD can be
        behind the audio, and the candidate's answer may sit unscored in its backlog. Checking
        only once the VAD has caught up keeps an overload from being taken for silence.
        """
        vad = self._vad
        if vad is None:
            return
        window = vad.window_secs
        deadline = time.monotonic() + limit_secs
        received = self._inbound_samples / TELEPHONY_RATE
        while not self.finished and time.monotonic() < deadline:
            scored = vad.windows_done * window
            if scored >= received - 2 * window:
                return
            await asyncio.sleep(0.02)

    # -- actions ---------------------------------------------------------------------------

    async def _run_actions(
        self,
        actions: list[object],
        *,
        replace_queued: bool = False,
        prestarted: list[Segment] | None = None,
    ) -> None:
        """Carry out the engine's actions (called with the engine lock held).

        ``prestarted`` are prompts already queued at the end of the turn; the engine's matching
        ``Say`` actions are not queued again. If the engine says something else, they are cut.
        """
        assert self.services.prompts is not None and self.script is not None
        assert self.playout is not None and self.services.store is not None
        says: list[Say] = [action for action in actions if isinstance(action, Say)]
        already: list[Segment] = []
        if prestarted:
            if [say.prompt_id for say in says[: len(prestarted)]] == [
                segment.prompt_id for segment in prestarted
            ]:
                says = says[len(prestarted) :]
                already = prestarted
            else:
                log.warning("call %s: pre-started prompt was wrong; cutting it", self.call_sid)
                await self.playout.clear()
        listen: Listen | None = None
        end: EndCall | None = None
        for action in actions:
            if isinstance(action, Say):
                continue
            elif isinstance(action, Listen):
                listen = action
            elif isinstance(action, ConsentRecorded):
                await self.services.store.update_interview(
                    self.interview["id"], consent=int(action.granted), consent_via=action.via
                )
                self._event("consent", granted=action.granted, via=action.via)
                self._emit("consent.recorded", granted=action.granted, via=action.via)
                if action.granted:
                    self._emit("candidate.status_changed", status="agreed")
            elif isinstance(action, AnswerRecorded):
                self._event(
                    "answer",
                    question_id=action.question_id,
                    via=action.via,
                    follow_up=action.follow_up,
                )
                if action.via == "dtmf":
                    await self._store_key_answer(action)
            elif isinstance(action, KnockoutRecorded):
                result = {
                    "question_id": action.question_id,
                    "expected": action.expected,
                    "answer": action.answer,
                    "passed": action.passed,
                    "via": action.via,
                }
                await self.services.store.record_outcome(
                    self.call_sid, "knockouts", action.question_id, result
                )
                self._event("knockout", **result)
            elif isinstance(action, OptOutRecorded):
                others = await self.services.store.opt_out_candidate(self.interview["id"])
                if others:
                    log.info(
                        "call %s: opt-out also closes %d other interviews of the candidate",
                        self.call_sid,
                        len(others),
                    )
                await self._list_number_as_do_not_call()
                await self.services.store.record_outcome(
                    self.call_sid,
                    "opt_out",
                    "request",
                    {"via": action.via, "question_id": action.question_id, "t": self.now()},
                )
                self._event("opt_out", via=action.via, question_id=action.question_id)
            elif isinstance(action, QuestionSkipped):
                await self.services.store.record_outcome(
                    self.call_sid, "skipped", action.question_id, {"t": self.now()}
                )
                self._event("question_skipped", question_id=action.question_id)
            elif isinstance(action, RepeatRequested):
                self.stats["repeats"] = self.stats.get("repeats", 0) + 1
                self._event("repeat_requested", question_id=action.question_id)
            elif isinstance(action, EndCall):
                end = action
        if replace_queued and not already:
            self.playout.drop_queued()
        if says:
            await self._say_wrap_up()
        answered = next(
            (a.question_id for a in actions if isinstance(a, AnswerRecorded) and a.via == "voice"),
            None,
        )
        for index, say in enumerate(says):
            audio = await self._prompt_audio(say.prompt_id, say.text)
            segment = self._enqueue_prompt(
                say, audio, awaits=listen is not None and index == len(says) - 1
            )
            if answered is not None:
                # Talked over at once, this prompt came at a false end of the answer: the words
                # join that answer and the prompt is said again (see _barge_in).
                segment.extra["answered_question"] = answered
        if listen is not None and already and not says and not already[-1].mark.endswith(":await"):
            self.playout.rename_mark(already[-1], already[-1].mark + ":await")
        if listen is not None:
            self._listening = listen
            self._apply_ceiling()
            self._restart_silence_timer()
            self._event("position", **self.snapshot())
            self._registry_update()
        if end is not None:
            self.end_reason = end.reason
            self._spawn(self._hang_up_after_playout(end.reason), "hangup")

    async def _say_wrap_up(self) -> None:
        """Thank a candidate whose answer ran past its time limit before the next prompt."""
        if not self._wrap_up_pending:
            return
        self._wrap_up_pending = False
        assert self.services.prompts is not None and self.script is not None
        if self.script.wrap_up:
            audio = await self._prompt_audio("wrap_up", self.script.wrap_up)
            self._enqueue_prompt(Say("wrap_up", self.script.wrap_up), audio, awaits=False)

    def _apply_ceiling(self) -> None:
        """Set the silence that ends the next turns whatever is said: question and pace."""
        if self.script is None:
            return
        nothing_known = PauseFeatures(
            speech_secs=0.0,
            language=self.script.language,
            question=self._question_context(),
            resumed_pauses=tuple(self._resumed_pauses),
        )
        decision = self._policy(nothing_known, self.services.turn_policy_config)
        self._turns.set_max_silence(decision.wait_secs)

    async def _list_number_as_do_not_call(self) -> None:
        """The candidate asked not to be called again: no campaign dials their number any more.

        Their interview's number (E.164, checked when it was created) goes on the do-not-call
        list with source ``voice``. A failure is logged and counted; the call goes on.
        """
        phone = (self.interview or {}).get("candidate_phone") or ""
        if not phone:
            return
        try:
            from voicebot.campaigns.store import campaign_store

            campaigns = await campaign_store(self.services)
            await campaigns.do_not_call.add(
                phone,
                reason="the candidate asked on a call not to be called again",
                source="voice",
                added_by=f"call:{self.call_sid}",
            )
            from voicebot.privacy.audit import record_access

            await record_access(
                self.services,
                f"call:{self.call_sid}",
                "opt_out.add",
                interview=self.interview,
                call_sid=self.call_sid,
                detail={"source": "voice"},
            )
        except Exception:
            self.services.metrics.internal_errors.labels("do_not_call").inc()
            log.exception(
                "call %s: the number could not be put on the do-not-call list", self.call_sid
            )

    async def _store_key_answer(self, action: AnswerRecorded) -> None:
        """A keypad answer is stored as the candidate's turn: the key and what it means."""
        assert self.services.store is not None
        t = round(self.now(), 3)
        await self.services.store.add_turn(
            call_sid=self.call_sid,
            seq=self._next_seq(),
            speaker="candidate",
            text=action.text,
            start=t,
            end=t,
            question_id=action.question_id,
            via="dtmf",
            follow_up=action.follow_up,
        )
        self.stats["turns"] += 1
        from voicebot.dialogue.scoring import AnswerText

        self._update_scores(AnswerText(action.question_id, action.text, via="dtmf"))
        self._emit(
            "question.answered",
            question_id=action.question_id,
            text=action.text,
            via="dtmf",
            key=action.key,
            follow_up=action.follow_up,
            start=t,
            end=t,
        )

    async def _prompt_audio(self, prompt_id: str, text: str) -> bytes:
        """Return a prompt's audio: the script's recording of it if any, else the TTS rendering."""
        assert self.services.prompts is not None and self.script is not None
        recorded = self.services.recordings.get(self.script.id, {}).get(prompt_id)
        if recorded is not None:
            return recorded
        return await self.services.prompts.get(
            text, language=self.script.language, voice=self.script.voice
        )

    def _enqueue_prompt(self, say: Say, audio: bytes, *, awaits: bool) -> Segment:
        assert self.playout is not None
        seq = self._next_seq()
        mark = f"{seq}:{say.prompt_id}" + (":await" if awaits else "")
        segment = self.playout.enqueue(mark, audio, say.prompt_id)
        segment.extra.update(seq=seq, text=say.text)
        self._event("prompt_queued", mark=mark, prompt_id=say.prompt_id)
        return segment

    def _on_segment_start(self, segment: Segment) -> None:
        t = segment.first_frame_at - self.t0
        response_latency = None
        if self._awaiting_response_since is not None:
            response_latency = max(t - self._awaiting_response_since, 0.0)
            self._awaiting_response_since = None
            self.metrics.response_latency.observe(response_latency)
        latency = None if response_latency is None else round(response_latency, 3)
        self._event(
            "prompt_started",
            t=t,
            mark=segment.mark,
            prompt_id=segment.prompt_id,
            text=segment.extra["text"],
            response_latency=latency,
        )
        self._transcript_line(
            {
                "speaker": "bot",
                "text": segment.extra["text"],
                "start": round(t, 3),
                "prompt_id": segment.prompt_id,
                "response_latency": latency,
            }
        )
        self._spawn(
            self.services.store.add_turn(
                call_sid=self.call_sid,
                seq=segment.extra["seq"],
                speaker="bot",
                text=segment.extra["text"],
                start=round(t, 3),
                prompt_id=segment.prompt_id,
                response_latency=round(response_latency, 3)
                if response_latency is not None
                else None,
            ),
            "store_bot_turn",
        )

    def _on_segment_end(self, segment: Segment) -> None:
        if segment.first_frame_at is None:
            self._event("prompt_dropped", mark=segment.mark, prompt_id=segment.prompt_id)
            return
        end = segment.first_frame_at - self.t0 + segment.sent_secs
        self._event(
            "prompt_ended",
            t=end,
            mark=segment.mark,
            interrupted=segment.cleared,
            heard_secs=round(segment.sent_secs, 3),
        )
        self._spawn(
            self.services.store.update_bot_turn(
                self.call_sid,
                segment.extra["seq"],
                end=round(end, 3),
                interrupted=segment.cleared,
                heard_secs=round(segment.sent_secs, 3),
            ),
            "store_bot_turn_end",
        )

    async def _hang_up_after_playout(self, reason: str) -> None:
        assert self.playout is not None
        await self.playout.wait_idle()
        while self._continuation is not None or self._turn_start is not None:
            # The candidate is still finishing the last answer over the goodbye: it is said again.
            if self._continuation is not None:
                await self._continuation.resumed.wait()
            else:
                await asyncio.sleep(0.1)
            await self.playout.wait_idle()
        last = self.playout.last_segment
        if last is not None and not last.cleared:
            # Hang up once the carrier has played the goodbye (its mark comes back).
            try:
                await asyncio.wait_for(last.echo.wait(), HANGUP_ECHO_WAIT_SECS)
            except TimeoutError:
                self._event("hangup_without_echo", mark=last.mark)
        self._event("hangup", reason=reason)
        await self.finish(reason)
        await self._close_stream()

    # -- end -------------------------------------------------------------------------------

    async def stop_for_voicemail(self) -> None:
        """An answering machine took this outbound call (AMD): no interview; leave at once.

        What is playing stops. With the script's ``voicemail`` text, that message is played
        (the machine is recording: the verdict comes after its beep) and the bot hangs up once
        the carrier has played it; the machine's sounds meanwhile neither cut it nor reach the
        interview. The call ends ``voicemail``; the interview is not held (no report) and stays
        to be called again (the dialer decides when, or that it is ``unreachable``).
        """
        if self.finished or self._leaving_voicemail:
            return
        self._leaving_voicemail = True
        self.end_reason = "voicemail"
        self._event("voicemail", message=bool(self.script is not None and self.script.voicemail))
        async with self._engine_lock:  # the interview takes no further step
            self._listening = None
            if self._silence_task is not None:
                self._silence_task.cancel()
                self._silence_task = None
            if self.playout is not None:
                if self.playout.playing:
                    await self.playout.clear()
                if self.script is not None and self.script.voicemail:
                    say = Say(VOICEMAIL_PROMPT, self.script.voicemail)
                    audio = await self._prompt_audio(say.prompt_id, say.text)
                    segment = self._enqueue_prompt(say, audio, awaits=False)
                    await self.playout.wait_idle()
                    try:
                        await asyncio.wait_for(segment.echo.wait(), HANGUP_ECHO_WAIT_SECS)
                    except TimeoutError:
                        self._event("hangup_without_echo", mark=segment.mark)
        self._event("hangup", reason="voicemail")
        await self.finish("voicemail")
        await self._close_stream()

    async def finish(self, reason: str) -> None:
        """End the call: stop audio, store the outcome, write the recording. Idempotent."""
        if self.finished:
            return
        self.finished = True
        self._partials.stop()
        self._mixer = None
        if self.call_sid is not None:
            self._hearing.finish(self._inbound_samples / TELEPHONY_RATE)
        if self._vad is not None:
            self._vad.close()
        if self.call_sid is None:
            return
        services = self.services
        assert services.store is not None
        if self.engine is not None and not self.engine.ended:
            async with self._engine_lock:
                for action in self.engine.handle(CallerHungUp()):
                    if isinstance(action, EndCall):
                        self.end_reason = self.end_reason or action.reason
        reason = self.end_reason or reason
        if self.playout is not None:
            if self.playout.playing:
                await self.playout.clear()
            await self.playout.close()
            self.stats["late_frames"] = self.playout.late_frames
            self.stats["max_frame_lateness_secs"] = round(self.playout.max_lateness, 3)
            self.metrics.late_frames.inc(self.playout.late_frames)
        current = asyncio.current_task()
        pending = []
        answers = []
        for task in list(self._tasks):
            if task is current:
                continue
            if task.get_name() in ANSWERS_OUTLIVE_CALL:
                services.keep_until_stored(task)  # the call's end is not held up for Whisper
                answers.append(task)
                continue
            if task.get_name() not in KEPT_AT_FINISH:
                task.cancel()
            pending.append(task)
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        duration = self.now()
        self._event("call_ended", reason=reason)
        if services.registry is not None:
            services.registry.ended(
                {
                    **self.summary(),
                    "ended_at": time.time(),
                    "duration_secs": round(duration, 3),
                    "end_reason": reason,
                    "status": "scoring",
                }
            )
        self._emit("call.ended", reason=reason, duration_secs=round(duration, 3))
        try:
            await services.store.finish_call(
                self.call_sid,
                status="completed",
                end_reason=reason,
                duration_secs=round(duration, 3),
                stats=self.stats,
            )
            if reason == "voicemail":
                # Nobody was interviewed: the interview waits for the dialer's next attempt.
                await services.store.update_interview(self.interview["id"], status="pending")
            else:
                # The outcome status comes with the report, built once the last answers are
                # stored.
                await services.store.update_interview(self.interview["id"], status="scoring")
                services.schedule_report(
                    self.interview["id"], self.interview["job_id"], reason, after=answers
                )
        finally:
            if self.recorder is not None:
                await self.recorder.close()
            services.sessions.pop(self.call_sid, None)
            services.call_claims.release(self.call_sid)
            self.metrics.calls_active.dec()
            self.metrics.calls_total.labels(reason=reason).inc()
            log.info("call %s ended (%s) after %.1f s", self.call_sid, reason, duration)
