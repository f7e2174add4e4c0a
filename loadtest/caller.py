"""A Twilio-compatible caller: plays the carrier's side of a call against a voicebot server.

It does what Twilio and a person on the phone do together: POST the voice webhook, read the TwiML
``<Connect><Stream>``, open the Media Stream WebSocket, send ``connected`` and ``start``, then one
160-byte mu-law ``media`` frame every 20 ms paced by the clock (silence while the person listens,
their recorded answer when they speak). It plays the bot's audio into a model of Twilio's playout
buffer, echoes each ``mark`` once the audio before it has played (at once after a ``clear``), and
answers a prompt when the server's mark for that prompt ends in ``:await``.

Used by humans (``voicebot call``), by end-to-end tests and by the load test. The protocol
bookkeeping lives in :class:`CallerState`, a pure state machine driven with explicit times, so it
is tested without sockets; :func:`run_call` only moves messages and time.

Voice-to-voice latency of a candidate turn is measured from the end of the candidate's speech in
the answer (the last 20 ms frame above the recording's noise floor, see
:func:`estimate_voice_end`, bounded by where Silero VAD last hears speech, see
:func:`vad_voice_end`; for a trimmed recording that is its last sample) to the first
non-silent bot frame received after it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import json
import os
import secrets
import sys
import xml.etree.ElementTree as ElementTree
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlencode

import numpy as np

from voicebot.audio.codec import ULAW_SILENCE_BYTE, ulaw_decode
from voicebot.audio.frames import read_wav, to_phone_ulaw
from voicebot.telephony.signature import compute_twilio_signature

FRAME_SECS = 0.02
"""Duration of one media frame."""

FRAME_BYTES = 160
"""Bytes of 8 kHz mu-law in one 20 ms frame."""

SAMPLE_RATE = 8000
"""Sample rate of phone audio, in Hz."""

AWAIT_SUFFIX = ":await"
"""A mark whose name ends with this closes a bot turn that waits for the candidate's answer."""

FALLBACK_SILENCE_SECS = 1.5
"""Without ``:await`` marks, answer after this much bot silence following a mark or bot speech."""

LATE_GAP_SECS = 0.06
"""An inter-arrival gap between bot frames above this (within a turn) counts as a late frame."""

MAX_CATCH_UP_FRAMES = 2
"""After a stall the sender sends at most this many overdue frames back to back, never a burst."""

NON_SILENT_RMS_DBFS = -50.0
NON_SILENT_PEAK = 256
NON_SILENT_RMS_AMPLITUDE = 32768.0 * 10 ** (NON_SILENT_RMS_DBFS / 20)
SILENCE_FRAME = bytes([ULAW_SILENCE_BYTE]) * FRAME_BYTES

Speaker = Literal["bot", "candidate"]
ClosedBy = Literal["server", "caller", "timeout"]
EventHook = Callable[[str, dict[str, Any]], None]


# --------------------------------------------------------------------------- audio


GAP_BUCKETS_MS = (10, 30, 50, 60, 80, 100, 200, 500)
"""Upper edges of the inter-frame gap histogram (a well-paced stream lands in 10-30 ms)."""


def gap_bucket(gap_secs: float) -> str:
    """The histogram bucket of one inter-arrival gap between bot frames, e.g. ``"<=30ms"``."""
    gap_ms = gap_secs * 1000
    for edge in GAP_BUCKETS_MS:
        if gap_ms <= edge:
            return f"<={edge}ms"
    return f">{GAP_BUCKETS_MS[-1]}ms"


def _level_classes() -> bytes:
    """A translate table for :func:`is_non_silent`: the level class of each mu-law byte.

    2: its sample is a peak above NON_SILENT_PEAK; 1: above the RMS threshold's amplitude; 0: below.
    """
    samples = np.abs(ulaw_decode(bytes(range(256))).astype(np.int32))
    return bytes(
        2 if v > NON_SILENT_PEAK else 1 if v > NON_SILENT_RMS_AMPLITUDE else 0 for v in samples
    )


_LEVEL_CLASSES = _level_classes()


def is_non_silent(ulaw: bytes) -> bool:
    """Whether a bot frame carries sound: RMS above -50 dBFS or a peak above a small threshold."""
    if not ulaw:
        return False
    # Fast paths (every bot frame comes through here): a loud sample decides it, and a frame
    # with no sample above the RMS threshold's amplitude cannot have an RMS above it.
    classes = ulaw.translate(_LEVEL_CLASSES)
    if b"\x02" in classes:
        return True
    if b"\x01" not in classes:
        return False
    pcm = ulaw_decode(ulaw).astype(np.float32)
    return float(np.sqrt(np.mean(pcm * pcm))) > NON_SILENT_RMS_AMPLITUDE


def estimate_voice_end(ulaw: bytes) -> float:
    """Seconds into a mu-law recording where the speech ends (trailing silence or noise excluded).

    A 20 ms frame counts as speech when its level is above the recording's noise floor (its 10th
    percentile frame level) + 12 dB, above peak - 35 dB and above -50 dBFS (but never needs more
    than peak - 20 dB). Returns the whole duration if no frame qualifies.
    """
    duration = len(ulaw) / SAMPLE_RATE
    whole = len(ulaw) // FRAME_BYTES
    if whole == 0:
        return duration
    pcm = ulaw_decode(ulaw[: whole * FRAME_BYTES]).astype(np.float64).reshape(whole, FRAME_BYTES)
    rms = np.sqrt(np.mean(pcm * pcm, axis=1))
    level = 20 * np.log10(np.maximum(rms, 1e-3) / 32768.0)
    peak = float(level.max())
    threshold = min(max(-50.0, float(np.percentile(level, 10)) + 12.0, peak - 35.0), peak - 20.0)
    voiced = np.nonzero(level > threshold)[0]
    if voiced.size == 0 or peak <= -50.0:
        return duration
    return min(duration, (int(voiced[-1]) + 1) * FRAME_SECS)


def _vad_probabilities(ulaw: bytes) -> np.ndarray:
    """Silero VAD's speech probability per 32 ms window of the 16 kHz phone-path audio."""
    from voicebot.audio.resample import resample
    from voicebot.speech.vad import SileroVAD

    return SileroVAD().process(resample(ulaw_decode(ulaw), SAMPLE_RATE, 16000))


def vad_voice_end(ulaw: bytes) -> float | None:
    """Seconds into a mu-law recording where Silero VAD last hears speech; None if it never does.

    The end of the last run of at least 0.15 s of 32 ms windows scored 0.5 or more on the
    16 kHz phone-path audio (a lone voiced window is a noise blip). This bounds
    :func:`estimate_voice_end` for recordings whose background noise outlasts the voice
    (JFK's speech ends at 10.5 s; the crowd behind him goes on to 11.0 s).
    """
    from voicebot.speech.vad import WINDOW_SECS

    probabilities = _vad_probabilities(ulaw)
    min_run = int(np.ceil(0.15 / WINDOW_SECS))
    end: int | None = None
    run = 0
    for index, voiced in enumerate(probabilities >= 0.5):
        run = run + 1 if voiced else 0
        if run >= min_run:
            end = index + 1
    if end is None:
        return None
    return min(len(ulaw) / SAMPLE_RATE, end * WINDOW_SECS)


def vad_voice_start(ulaw: bytes) -> float | None:
    """Seconds into a mu-law recording where Silero VAD first hears speech; None if it never does.

    The start of the first 32 ms window scored 0.5 or more on the 16 kHz phone-path audio:
    where a listener hears a voice begin (a breath before a word counts).
    """
    from voicebot.speech.vad import WINDOW_SECS

    voiced = np.flatnonzero(_vad_probabilities(ulaw) >= 0.5)
    return float(voiced[0] * WINDOW_SECS) if voiced.size else None


@dataclass(frozen=True)
class CandidateAnswer:
    """One recorded answer, ready to send: 8 kHz mu-law and where its speech ends."""

    name: str
    ulaw: bytes
    voice_end_secs: float

    @property
    def duration_secs(self) -> float:
        """Length of the recording."""
        return len(self.ulaw) / SAMPLE_RATE

    @classmethod
    def from_pcm(cls, name: str, pcm: np.ndarray, rate: int) -> CandidateAnswer:
        """Make an answer from mono PCM (int16, or float in [-1, 1]) at any sample rate."""
        ulaw = to_phone_ulaw(pcm, rate)
        voice_end = estimate_voice_end(ulaw)
        heard_until = vad_voice_end(ulaw)
        if heard_until is not None:  # noise that outlasts the voice is not speech
            voice_end = min(voice_end, heard_until)
        return cls(name=name, ulaw=ulaw, voice_end_secs=voice_end)

    @classmethod
    def from_wav(cls, path: str | Path) -> CandidateAnswer:
        """Load an answer from a 16-bit PCM WAV file at any rate (cached per file version)."""
        resolved = Path(path)
        try:
            stat = resolved.stat()
        except OSError as exc:
            raise ValueError(f"answer file {path}: cannot read it ({exc})") from None
        return _load_wav_answer(str(resolved), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=64)
def _load_wav_answer(path: str, mtime_ns: int, size: int) -> CandidateAnswer:
    pcm, rate = read_wav(path)
    return CandidateAnswer.from_pcm(path, pcm, rate)


def load_answers(answers: Sequence[str | Path | CandidateAnswer]) -> list[CandidateAnswer]:
    """Load answer WAVs (any rate) as phone audio; ready :class:`CandidateAnswer`s pass through."""
    return [a if isinstance(a, CandidateAnswer) else CandidateAnswer.from_wav(a) for a in answers]


# ------------------------------------------------------------------ carrier messages


class CarrierMessages:
    """The JSON text messages Twilio sends to a Media Streams server, for one stream."""

    def __init__(self, stream_sid: str, call_sid: str, account_sid: str):
        self.stream_sid = stream_sid
        self.call_sid = call_sid
        self.account_sid = account_sid
        self._sequence = 0
        self._chunk = 0
        self._stream_sid_json = json.dumps(stream_sid)

    def _next(self) -> str:
        self._sequence += 1
        return str(self._sequence)

    @staticmethod
    def _dumps(message: dict[str, Any]) -> str:
        return json.dumps(message, separators=(",", ":"))

    def connected(self) -> str:
        """Build the first message: protocol and version."""
        return self._dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})

    def start(
        self, custom_parameters: Mapping[str, str], tracks: Sequence[str] = ("inbound",)
    ) -> str:
        """Build the stream metadata with the TwiML parameters; 8 kHz mono mu-law."""
        return self._dumps(
            {
                "event": "start",
                "sequenceNumber": self._next(),
                "start": {
                    "accountSid": self.account_sid,
                    "streamSid": self.stream_sid,
                    "callSid": self.call_sid,
                    "tracks": list(tracks),
                    "customParameters": dict(custom_parameters),
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                },
                "streamSid": self.stream_sid,
            }
        )

    def media(self, payload: bytes, timestamp_ms: int) -> str:
        """Build one chunk of caller audio; chunks count from 1, numbers are strings (as Twilio)."""
        # Formatted rather than json.dumps'd: fifty a second per call, and every field is a
        # number or base64 (the stream SID is JSON-quoted once).
        self._chunk += 1
        return (
            f'{{"event":"media","sequenceNumber":"{self._next()}","media":{{"track":"inbound",'
            f'"chunk":"{self._chunk}","timestamp":"{timestamp_ms}",'
            f'"payload":"{base64.b64encode(payload).decode("ascii")}"}},'
            f'"streamSid":{self._stream_sid_json}}}'
        )

    def dtmf(self, digit: str) -> str:
        """Build a key press on the caller's phone."""
        return self._dumps(
            {
                "event": "dtmf",
                "streamSid": self.stream_sid,
                "sequenceNumber": self._next(),
                "dtmf": {"track": "inbound_track", "digit": digit},
            }
        )

    def mark(self, name: str) -> str:
        """Build the echo of a server mark, once the audio before it has played."""
        return self._dumps(
            {
                "event": "mark",
                "sequenceNumber": self._next(),
                "streamSid": self.stream_sid,
                "mark": {"name": name},
            }
        )

    def stop(self) -> str:
        """Build the end of the stream: the call is over."""
        return self._dumps(
            {
                "event": "stop",
                "sequenceNumber": self._next(),
                "streamSid": self.stream_sid,
                "stop": {"accountSid": self.account_sid, "callSid": self.call_sid},
            }
        )


# --------------------------------------------------------------------------- results


@dataclass
class TurnRecord:
    """One turn of the conversation as the caller experienced it (times from stream start, s).

    Bot turns: ``frames`` received, ``marks`` received, ``interrupted`` when a ``clear`` cut it;
    ``end`` is when its audio finished playing. Candidate turns: the ``answer`` file (or the
    ``dtmf`` digit), ``voice_end`` (end of speech in the answer), ``voice_to_voice_secs`` and
    ``talked_over`` (bot audio arrived while the candidate was still speaking).
    """

    speaker: Speaker
    start: float
    end: float
    frames: int = 0
    marks: list[str] = field(default_factory=list)
    interrupted: bool = False
    prompt: int | None = None
    answer: str | None = None
    dtmf: str | None = None
    voice_end: float | None = None
    voice_to_voice_secs: float | None = None
    talked_over: bool = False


@dataclass
class CallResult:
    """What happened on one call."""

    call_sid: str
    turns: list[TurnRecord] = field(default_factory=list)
    bot_audio: bytes = b""
    late_frame_gaps: int = 0
    frame_gaps: dict[str, int] = field(default_factory=dict)
    closed_by: ClosedBy = "caller"
    error: str | None = None
    stream_sid: str = ""
    duration_secs: float = 0.0
    unanswered_prompts: int = 0
    problems: list[str] = field(default_factory=list)
    clears: list[float] = field(default_factory=list)
    """When each ``clear`` arrived (the bot's buffered audio stopped there)."""

    @property
    def voice_to_voice(self) -> list[float]:
        """Voice-to-voice latency of each spoken answer that got a bot reply, in order."""
        return [
            t.voice_to_voice_secs
            for t in self.turns
            if t.speaker == "candidate" and t.voice_to_voice_secs is not None
        ]

    @property
    def talked_over(self) -> int:
        """Candidate turns during which the bot started talking."""
        return sum(1 for t in self.turns if t.speaker == "candidate" and t.talked_over)

    def to_json_dict(self) -> dict[str, Any]:
        """JSON-ready summary (bot audio as its duration, not its bytes)."""
        data = asdict(self)
        data.pop("bot_audio")
        for turn in data["turns"]:
            for key in ("start", "end", "voice_end", "voice_to_voice_secs"):
                if turn[key] is not None:
                    turn[key] = round(turn[key], 4)
        data["duration_secs"] = round(self.duration_secs, 3)
        data["bot_audio_secs"] = round(len(self.bot_audio) / SAMPLE_RATE, 3)
        data["voice_to_voice"] = [round(v, 4) for v in self.voice_to_voice]
        data["voice_to_voice_p50"] = percentile(self.voice_to_voice, 50)
        data["voice_to_voice_p95"] = percentile(self.voice_to_voice, 95)
        data["talked_over"] = self.talked_over
        return data


def percentile(values: Sequence[float], q: float) -> float | None:
    """Return the q-th percentile (linear interpolation), or None for no values."""
    if not values:
        return None
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


# ---------------------------------------------------------------------- caller state


@dataclass
class _PendingMark:
    name: str
    due: float


class CallerState:
    """The caller's side of one Media Stream, without sockets or clocks.

    Drive it with times in seconds since the stream started: :meth:`on_server_message` for every
    message the server sends (arrival time), :meth:`poll` every tick for the control messages to
    send now (mark echoes, DTMF), and :meth:`next_media` for the 20 ms audio frame to send now.
    :meth:`finish` closes open turns; :meth:`result` reports.
    """

    def __init__(
        self,
        carrier: CarrierMessages,
        answers: Sequence[CandidateAnswer] = (),
        dtmf: Mapping[int, str] | None = None,
        answer_gap_secs: float = 0.3,
        fallback_silence_secs: float = FALLBACK_SILENCE_SECS,
        on_event: EventHook | None = None,
        barge_in: Mapping[int, float] | None = None,
        opening_ulaw: bytes = b"",
    ):
        self.carrier = carrier
        self._answers = deque(answers)
        # Audio played from the moment the stream starts, before and whatever the bot says (an
        # answering machine's greeting and beep); answers wait until it has played.
        self._opening = opening_ulaw
        self._opening_pos = 0
        self.opening_end: float | None = None if opening_ulaw else 0.0
        self._dtmf = dict(dtmf or {})
        self._barge_in = dict(barge_in or {})
        self.answer_gap_secs = answer_gap_secs
        self.fallback_silence_secs = fallback_silence_secs
        self._on_event = on_event
        self.turns: list[TurnRecord] = []
        self.bot_audio = bytearray()
        self.late_frame_gaps = 0
        self.frame_gaps: Counter[str] = Counter()  # inter-arrival gaps within bot turns
        self.problems: list[str] = []
        self.prompts_seen = 0
        self.unanswered_prompts = 0
        self.await_marks_seen = 0
        self.clears: list[float] = []  # when each ``clear`` arrived
        # playout model of the bot's audio, as Twilio buffers and plays it
        self._playout_end = 0.0
        self._last_voiced_playout_end: float | None = None
        self._pending_marks: deque[_PendingMark] = deque()
        # bot turn bookkeeping
        self._bot_turn: TurnRecord | None = None
        self._last_bot_arrival: float | None = None
        self._mark_since_last_frame = False
        # answering
        self._prompt_queue: deque[float] = deque()  # times at which queued prompts may be answered
        self._answer: CandidateAnswer | None = None
        self._answer_pos = 0
        self._answer_turn: TurnRecord | None = None
        self._awaiting_reply: TurnRecord | None = None
        self._reported_candidate: set[int] = set()
        self._fallback_since: float | None = None
        self._frames_sent = 0

    # ------------------------------------------------------------------ inbound

    def _problem(self, text: str) -> None:
        if len(self.problems) < 50:
            self.problems.append(text)

    def _emit(self, kind: str, **data: Any) -> None:
        if self._on_event is not None:
            self._on_event(kind, data)

    def on_server_message(self, message: str | bytes, now: float) -> None:
        """Take one message the server sent (``media``, ``mark`` or ``clear``) at time ``now``."""
        if not isinstance(message, str):
            self._problem(f"{now:.2f}s: binary frame of {len(message)} bytes (Twilio takes text)")
            return
        try:
            data = json.loads(message)
        except ValueError:
            self._problem(f"{now:.2f}s: message is not JSON: {message[:80]!r}")
            return
        if not isinstance(data, dict):
            self._problem(f"{now:.2f}s: message is not a JSON object: {message[:80]!r}")
            return
        event = data.get("event")
        stream_sid = data.get("streamSid")
        if stream_sid != self.carrier.stream_sid:
            self._problem(f"{now:.2f}s: {event!r} for streamSid {stream_sid!r}, not ours")
            return
        if event == "media":
            media = data.get("media")
            encoded = media.get("payload") if isinstance(media, dict) else None
            try:
                payload = base64.b64decode(encoded, validate=True) if encoded else b""
            except (TypeError, ValueError):
                payload = b""
            if not payload:
                self._problem(f"{now:.2f}s: media without a valid base64 payload")
                return
            self._on_bot_media(payload, now)
        elif event == "mark":
            mark = data.get("mark")
            name = mark.get("name") if isinstance(mark, dict) else None
            if not isinstance(name, str) or not name:
                self._problem(f"{now:.2f}s: mark without a name")
                return
            self._on_bot_mark(name, now)
        elif event == "clear":
            self._on_clear(now)
        else:
            self._problem(f"{now:.2f}s: unexpected event {event!r} from the server")

    def _speaking(self, now: float) -> bool:
        """Whether the candidate is still in the voiced part of an answer."""
        turn = self._answer_turn
        return turn is not None and (turn.voice_end is None or now < turn.voice_end)

    def _on_bot_media(self, payload: bytes, now: float) -> None:
        self.bot_audio += payload
        duration = len(payload) / SAMPLE_RATE
        self._playout_end = max(self._playout_end, now) + duration
        turn = self._bot_turn
        # A new prompt's audio: the first frame of a bot turn, or the first after a mark.
        new_segment = turn is None or self._mark_since_last_frame
        if new_segment and self.prompts_seen in self._barge_in and not self._speaking(now):
            # Talk over this prompt instead of waiting for its end (tests barge-in). One said
            # while the candidate still talks (an aside) leaves it for the bot's reply.
            self._prompt_queue.append(now + self._barge_in.pop(self.prompts_seen))
        if turn is None:
            turn = self._open_bot_turn(now)
        elif self._last_bot_arrival is not None and not self._mark_since_last_frame:
            gap = now - self._last_bot_arrival
            self.frame_gaps[gap_bucket(gap)] += 1
            if gap > LATE_GAP_SECS:
                self.late_frame_gaps += 1
        turn.frames += 1
        turn.end = self._playout_end
        self._last_bot_arrival = now
        self._mark_since_last_frame = False
        if not is_non_silent(payload):
            return
        self._last_voiced_playout_end = self._playout_end
        if self._speaking(now):
            assert self._answer_turn is not None
            self._answer_turn.talked_over = True
        else:
            self._fallback_since = self._playout_end
        waiting = self._awaiting_reply
        if waiting is not None and waiting.voice_end is not None and now >= waiting.voice_end:
            waiting.voice_to_voice_secs = now - waiting.voice_end
            self._awaiting_reply = None
            self._report_candidate(waiting)

    def _open_bot_turn(self, now: float) -> TurnRecord:
        turn = TurnRecord(speaker="bot", start=now, end=now)
        self.turns.append(turn)
        self._bot_turn = turn
        self._last_bot_arrival = None
        return turn

    def _close_bot_turn(self) -> None:
        turn = self._bot_turn
        if turn is not None:
            self._bot_turn = None
            self._emit("turn", turn=turn)

    def _on_bot_mark(self, name: str, now: float) -> None:
        self._pending_marks.append(_PendingMark(name, max(self._playout_end, now)))
        self._mark_since_last_frame = True
        turn = self._bot_turn
        if turn is None:
            last = self.turns[-1] if self.turns else None
            if last is not None and last.speaker == "bot" and self._answer_turn is None:
                turn = last  # a mark with no new audio belongs to the bot turn just ended
            else:
                turn = self._open_bot_turn(now)
        turn.marks.append(name)
        if name.endswith(AWAIT_SUFFIX):
            self.await_marks_seen += 1
            self._close_bot_turn()

    def _on_clear(self, now: float) -> None:
        self.clears.append(now)
        self._playout_end = now
        for mark in self._pending_marks:
            mark.due = now
        if self._last_voiced_playout_end is not None:
            self._last_voiced_playout_end = min(self._last_voiced_playout_end, now)
        turn = self._bot_turn
        if turn is not None:
            turn.interrupted = True
            turn.end = min(turn.end, now)
            self._close_bot_turn()
        else:
            # Closed already: the candidate started talking over it (a barge-in).
            last = next((t for t in reversed(self.turns) if t.speaker == "bot"), None)
            if last is not None and last.end > now:
                last.interrupted = True
                last.end = now

    # ----------------------------------------------------------------- outbound

    def poll(self, now: float) -> list[str]:
        """Control messages to send at ``now``: mark echoes whose audio has played, DTMF answers."""
        out: list[str] = []
        while self._pending_marks and self._pending_marks[0].due <= now:
            mark = self._pending_marks.popleft()
            out.append(self.carrier.mark(mark.name))
            self._mark_played(mark.name, mark.due)
        if (
            self._fallback_since is not None
            and self.await_marks_seen == 0
            and self._answer is None
            and not self._prompt_queue
            and not self._pending_marks
            and now - max(self._fallback_since, self._last_voiced_playout_end or 0.0)
            >= self.fallback_silence_secs
        ):
            self._fallback_since = None
            self._prompt_queue.append(now)
        if self._answer is None and self._prompt_queue and self._prompt_queue[0] <= now:
            self._prompt_queue.popleft()
            message = self._start_prompt(now)
            if message is not None:
                out.append(message)
        return out

    def _mark_played(self, name: str, at: float) -> None:
        if name.endswith(AWAIT_SUFFIX):
            self._prompt_queue.append(at + self.answer_gap_secs)
        elif self.await_marks_seen == 0 and not self._speaking(at):
            self._fallback_since = at

    def _start_prompt(self, now: float) -> str | None:
        index = self.prompts_seen
        self.prompts_seen += 1
        self._close_bot_turn()
        if self._awaiting_reply is not None:  # the bot never answered the previous answer
            self._report_candidate(self._awaiting_reply)
            self._awaiting_reply = None
        digit = self._dtmf.get(index)
        if digit is not None:
            turn = TurnRecord(speaker="candidate", start=now, end=now, prompt=index, dtmf=digit)
            self.turns.append(turn)
            self._report_candidate(turn)
            return self.carrier.dtmf(digit)
        if not self._answers:
            self.unanswered_prompts += 1
            self._emit("unanswered", prompt=index, at=now)
            return None
        self._answer = self._answers.popleft()
        self._answer_pos = 0
        self._answer_turn = TurnRecord(
            speaker="candidate", start=now, end=now, prompt=index, answer=self._answer.name
        )
        self.turns.append(self._answer_turn)
        self._fallback_since = None
        return None

    def next_media(self, now: float, timestamp_ms: int) -> str:
        """Build the ``media`` message to send at ``now``: the answer's next 20 ms or silence."""
        answer, turn = self._answer, self._answer_turn
        self._frames_sent += 1
        if self._opening_pos < len(self._opening):
            frame = self._opening[self._opening_pos : self._opening_pos + FRAME_BYTES]
            self._opening_pos += FRAME_BYTES
            if self._opening_pos >= len(self._opening):
                self.opening_end = now + len(frame) / SAMPLE_RATE
            if len(frame) < FRAME_BYTES:
                frame += SILENCE_FRAME[: FRAME_BYTES - len(frame)]
            return self.carrier.media(frame, timestamp_ms)
        if answer is None or turn is None:
            return self.carrier.media(SILENCE_FRAME, timestamp_ms)
        pos = self._answer_pos
        if pos == 0:
            turn.start = now
        frame = answer.ulaw[pos : pos + FRAME_BYTES]
        voice_end_byte = round(answer.voice_end_secs * SAMPLE_RATE)
        if turn.voice_end is None and pos < voice_end_byte <= pos + FRAME_BYTES:
            turn.voice_end = now + (voice_end_byte - pos) / SAMPLE_RATE
            self._awaiting_reply = turn
        self._answer_pos = pos + FRAME_BYTES
        if self._answer_pos >= len(answer.ulaw):
            turn.end = now + len(frame) / SAMPLE_RATE
            if turn.voice_end is None:
                turn.voice_end = turn.end
                self._awaiting_reply = turn
            self._answer = None
            self._answer_turn = None
            if self._prompt_queue:
                self._prompt_queue[0] = max(self._prompt_queue[0], turn.end + self.answer_gap_secs)
        if len(frame) < FRAME_BYTES:
            frame += SILENCE_FRAME[: FRAME_BYTES - len(frame)]
        return self.carrier.media(frame, timestamp_ms)

    # ------------------------------------------------------------------- results

    def _report_candidate(self, turn: TurnRecord) -> None:
        if id(turn) not in self._reported_candidate:
            self._reported_candidate.add(id(turn))
            self._emit("turn", turn=turn)

    def finish(self, now: float) -> None:
        """End the call at ``now``: close open turns and report what was not reported yet."""
        self._close_bot_turn()
        if self._answer_turn is not None:
            self._answer_turn.end = now
            self._answer = None
            self._answer_turn = None
        for turn in self.turns:
            if turn.speaker == "candidate":
                self._report_candidate(turn)

    def result(
        self, call_sid: str, closed_by: ClosedBy, error: str | None, duration_secs: float
    ) -> CallResult:
        """Report the call as a :class:`CallResult`."""
        return CallResult(
            call_sid=call_sid,
            turns=list(self.turns),
            bot_audio=bytes(self.bot_audio),
            late_frame_gaps=self.late_frame_gaps,
            frame_gaps=dict(self.frame_gaps),
            closed_by=closed_by,
            error=error,
            stream_sid=self.carrier.stream_sid,
            duration_secs=duration_secs,
            unanswered_prompts=self.unanswered_prompts,
            problems=list(self.problems),
            clears=list(self.clears),
        )


# ---------------------------------------------------------------------------- TwiML


@dataclass(frozen=True)
class StreamInstruction:
    """What the voice webhook's TwiML told the carrier to do."""

    stream_url: str | None
    parameters: dict[str, str]
    said: str = ""


def parse_twiml(twiml: str) -> StreamInstruction:
    """Read ``<Connect><Stream url>``, its ``<Parameter>``s and any ``<Say>`` text from TwiML."""
    try:
        root = ElementTree.fromstring(twiml.encode("utf-8"))
    except ElementTree.ParseError as exc:
        raise ValueError(
            f"voice webhook answered with invalid TwiML ({exc}): {twiml[:200]!r}"
        ) from None
    if root.tag != "Response":
        raise ValueError(f"TwiML root is <{root.tag}>, expected <Response>: {twiml[:200]!r}")
    said = " ".join((say.text or "").strip() for say in root.iter("Say")).strip()
    stream = root.find("./Connect/Stream")
    if stream is None:
        return StreamInstruction(stream_url=None, parameters={}, said=said)
    url = stream.get("url")
    if not url:
        raise ValueError(f"TwiML <Stream> has no url attribute: {twiml[:200]!r}")
    parameters = {
        p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter") if p.get("name")
    }
    return StreamInstruction(stream_url=url, parameters=parameters, said=said)


# ---------------------------------------------------------------------------- runner


def _random_sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


WS_MAX_MESSAGE_BYTES = 1 << 20
"""The largest message the caller accepts from the server (Twilio's bot audio comes in chunks)."""


class _CallEnded(Exception):
    def __init__(self, closed_by: ClosedBy, error: str | None = None):
        super().__init__(error or closed_by)
        self.closed_by = closed_by
        self.error = error


async def _post_voice_webhook(
    voice_url: str, form: dict[str, str], twilio_auth_token: str | None
) -> StreamInstruction:
    import aiohttp

    headers = {"User-Agent": "TwilioProxy/1.1 (voicebot loadtest caller)"}
    if twilio_auth_token:
        headers["X-Twilio-Signature"] = compute_twilio_signature(twilio_auth_token, voice_url, form)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            async with http.post(voice_url, data=form, headers=headers) as response:
                body = await response.text()
                if response.status != 200:
                    raise _CallEnded(
                        "server",
                        f"voice webhook {voice_url} answered HTTP {response.status}: {body[:200]}",
                    )
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise _CallEnded(
            "caller", f"cannot reach the voice webhook {voice_url}: {exc!r}; is the server up?"
        ) from None
    try:
        instruction = parse_twiml(body)
    except ValueError as exc:
        raise _CallEnded("server", str(exc)) from None
    if instruction.stream_url is None:
        raise _CallEnded(
            "server",
            f"the server did not connect the call to a stream (said: {instruction.said!r})",
        )
    return instruction


async def run_call(
    base_url: str,
    *,
    answers: Sequence[str | Path | CandidateAnswer] = (),
    interview_id: str | None = None,
    from_number: str = "+15550100",
    to_number: str = "+15550199",
    call_sid: str | None = None,
    twilio_auth_token: str | None = None,
    dtmf: Mapping[int, str] | None = None,
    answer_gap_secs: float = 0.3,
    max_call_secs: float = 300,
    on_event: EventHook | None = None,
    barge_in: Mapping[int, float] | None = None,
) -> CallResult:
    """Place one simulated Twilio call against the server at ``base_url`` and report it.

    ``answers`` are spoken in order, one per prompt that awaits an answer; ``dtmf`` maps a prompt
    index (0 = the first prompt awaiting an answer, usually the consent question) to a key to
    press instead (it does not use up an answer). ``barge_in`` maps a prompt index to seconds
    after that prompt's audio starts at which the caller starts answering, talking over it.
    ``on_event(kind, data)`` sees ``"turn"`` (a finished :class:`TurnRecord`), ``"connected"``,
    ``"unanswered"`` and ``"closed"`` as they happen.
    Errors (server down, webhook refused, stream refused) come back in ``CallResult.error``.
    """
    call_sid = call_sid or _random_sid("CA")
    account_sid = "AC" + "0" * 32
    carrier = CarrierMessages(_random_sid("MZ"), call_sid, account_sid)
    state = CallerState(
        carrier,
        load_answers(answers),
        dtmf,
        answer_gap_secs=answer_gap_secs,
        on_event=on_event,
        barge_in=barge_in,
    )
    voice_url = base_url.rstrip("/") + "/twilio/voice"
    if interview_id:
        voice_url += "?" + urlencode({"interview_id": interview_id})
    form = {
        "CallSid": call_sid,
        "AccountSid": account_sid,
        "From": from_number,
        "To": to_number,
        "CallStatus": "in-progress",
        "Direction": "inbound",
        "ApiVersion": "2010-04-01",
    }
    loop = asyncio.get_running_loop()
    t0 = loop.time()

    def ended(closed_by: ClosedBy, error: str | None) -> CallResult:
        now = loop.time() - t0
        state.finish(now)
        if on_event is not None:
            on_event("closed", {"closed_by": closed_by, "error": error})
        return state.result(call_sid, closed_by, error, now)

    try:
        instruction = await _post_voice_webhook(voice_url, form, twilio_auth_token)
    except _CallEnded as exc:
        return ended(exc.closed_by, exc.error)
    closed_by, error, opened_at = await stream_call(
        instruction, state, max_call_secs=max_call_secs, on_event=on_event
    )
    if opened_at is not None:
        t0 = opened_at  # the stream's clock starts as it opens, as in the messages' times
    return ended(closed_by, error)


async def stream_call(
    instruction: StreamInstruction,
    state: CallerState,
    *,
    max_call_secs: float = 300,
    on_event: EventHook | None = None,
) -> tuple[ClosedBy, str | None, float | None]:
    """Open the Media Stream the TwiML asked for and hold it with ``state`` until a hang-up.

    Returns who closed it, what went wrong if anything, and the loop time the stream opened at
    (None if it never opened); times given to ``state`` count from that moment. Cancelling the
    task hangs up like a person: ``stop``, then the socket closes.
    """
    import aiohttp

    assert instruction.stream_url is not None
    call_sid = state.carrier.call_sid
    # Connect like Twilio: text frames, no compression, no proxy (loopback only). aiohttp's C
    # frame reader and writer cost half the CPU per frame of the pure-Python ``websockets``
    # client: in a load test the caller shares the server's cores (docs/PERFORMANCE.md).
    http = aiohttp.ClientSession()
    try:
        try:
            ws = await http.ws_connect(
                instruction.stream_url,
                compress=0,
                max_msg_size=WS_MAX_MESSAGE_BYTES,
                autoping=True,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5),
            )
        except aiohttp.WSServerHandshakeError as exc:
            return (
                "server",
                f"stream {instruction.stream_url} refused: HTTP {exc.status} "
                f"{_status_phrase(exc.status)} (the server's log says why)",
                None,
            )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            return "caller", f"cannot open the stream {instruction.stream_url}: {exc!r}", None
        if on_event is not None:
            on_event("connected", {"stream_url": instruction.stream_url, "call_sid": call_sid})
        t0 = asyncio.get_running_loop().time()
        closed_by, error = await _converse(
            ws, state.carrier, state, instruction.parameters, t0, max_call_secs
        )
        return closed_by, error, t0
    finally:
        await http.close()


async def _converse(
    ws: Any,
    carrier: CarrierMessages,
    state: CallerState,
    parameters: Mapping[str, str],
    t0: float,
    max_call_secs: float,
) -> tuple[ClosedBy, str | None]:
    """Hold the open stream until one side hangs up; who did, and what went wrong if anything.

    Times given to ``state`` count from ``t0``.
    """
    from aiohttp import WSMsgType

    loop = asyncio.get_running_loop()
    closing: dict[str, Any] = {}  # how the server ended the stream, as the receiver saw it
    try:
        await ws.send_str(carrier.connected())
        await ws.send_str(carrier.start(parameters))

        async def receive() -> None:
            while True:
                message = await ws.receive()
                if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    state.on_server_message(message.data, loop.time() - t0)
                elif message.type == WSMsgType.CLOSE:
                    closing.update(code=message.data, reason=message.extra or "")
                    return
                elif message.type == WSMsgType.ERROR:
                    closing.update(error=message.data)
                    return
                elif message.type in (WSMsgType.CLOSING, WSMsgType.CLOSED):
                    closing.setdefault("code", ws.close_code)
                    return

        async def send() -> None:
            schedule_origin = t0
            frame = 0
            while True:
                target = schedule_origin + frame * FRAME_SECS
                delay = target - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                behind = int((loop.time() - target) / FRAME_SECS)
                if behind > MAX_CATCH_UP_FRAMES:  # stalled: shift the schedule, never burst
                    schedule_origin += (behind - MAX_CATCH_UP_FRAMES) * FRAME_SECS
                    target = schedule_origin + frame * FRAME_SECS
                now = loop.time() - t0
                for message in state.poll(now):
                    await ws.send_str(message)
                timestamp_ms = round((target - t0) * 1000)
                await ws.send_str(state.next_media(now, timestamp_ms))
                frame += 1

        receiver = asyncio.create_task(receive(), name=f"caller-receive-{carrier.call_sid}")
        sender = asyncio.create_task(send(), name=f"caller-send-{carrier.call_sid}")
        try:
            done, _ = await asyncio.wait(
                {receiver, sender}, timeout=max_call_secs, return_when=asyncio.FIRST_COMPLETED
            )
            if sender in done and receiver not in done and _is_closed_socket(sender):
                # The socket closed under a send: give the receiver a moment to read why.
                await asyncio.wait({receiver}, timeout=1)
        finally:
            for task in (receiver, sender):
                task.cancel()
            await asyncio.gather(receiver, sender, return_exceptions=True)
        if not done:
            return "timeout", None
        if receiver in done and receiver.exception() is None or _is_closed_socket(sender):
            return "server", _abnormal_close(closing)
        failed = sender if sender in done else receiver
        return "caller", f"caller failed: {failed.exception()!r}"
    except ConnectionResetError:  # closed during connected/start
        return "server", _abnormal_close(closing)
    finally:
        await _hang_up(ws, carrier)


def _status_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "(unknown status)"


def _is_closed_socket(task: asyncio.Task[None]) -> bool:
    """Whether ``task`` ended because the WebSocket was closed under it."""
    return task.done() and not task.cancelled() and isinstance(task.exception(), ConnectionError)


def _abnormal_close(closing: Mapping[str, Any]) -> str | None:
    """Describe a close that was not a normal hang-up (codes 1000, 1001); None if it was."""
    if "error" in closing:  # the socket failed, e.g. a protocol error or a reset
        return f"connection to the server lost: {closing['error']!r}"
    code = closing.get("code")
    if code is None or code == 1006:
        return "connection to the server lost without a close frame (1006)"
    if code in (1000, 1001):
        return None
    return f"server closed the stream with code {code} {closing.get('reason', '')!r}"


async def _hang_up(ws: Any, carrier: CarrierMessages) -> None:
    """Send ``stop`` if the socket is still open, then close it."""
    try:
        if not ws.closed:
            await asyncio.wait_for(ws.send_str(carrier.stop()), timeout=2)
        await asyncio.wait_for(ws.close(), timeout=5)
    except (ConnectionError, TimeoutError, OSError):
        pass


# ------------------------------------------------------------------------------- CLI


def _parse_dtmf(items: Sequence[str]) -> dict[int, str]:
    mapping: dict[int, str] = {}
    for item in items:
        index, sep, digit = item.partition("=")
        valid_digit = len(digit) == 1 and digit in "0123456789*#ABCD"
        if not sep or not index.strip().isdigit() or not valid_digit:
            raise argparse.ArgumentTypeError(
                f"--dtmf {item!r}: expected N=D, a prompt index and one key, e.g. 0=1"
            )
        mapping[int(index)] = digit
    return mapping


def format_turn(turn: TurnRecord) -> str:
    """One human-readable line for a turn (a spoken answer ends where its speech ends)."""
    end = turn.voice_end if turn.voice_end is not None else turn.end
    span = f"[{turn.start:7.2f} - {end:7.2f}]"
    if turn.speaker == "bot":
        cut = " (cut off by clear)" if turn.interrupted else ""
        marks = ", ".join(turn.marks) if turn.marks else "-"
        return f"{span} bot        {turn.frames:4d} frames  marks: {marks}{cut}"
    what = f"pressed {turn.dtmf}" if turn.dtmf else Path(turn.answer or "?").name
    latency = (
        f"  voice-to-voice {turn.voice_to_voice_secs * 1000:6.0f} ms"
        if turn.voice_to_voice_secs is not None
        else ""
    )
    over = "  (bot talked over)" if turn.talked_over else ""
    return f"{span} candidate  prompt #{turn.prompt}: {what}{latency}{over}"


def summary_lines(result: CallResult) -> list[str]:
    """Summarise the call: how it ended and the latency percentiles."""
    v2v = result.voice_to_voice
    lines = [
        f"call {result.call_sid}: {result.duration_secs:.1f} s, closed by {result.closed_by}, "
        f"{len(result.turns)} turns, {len(result.bot_audio) / SAMPLE_RATE:.1f} s of bot audio, "
        f"{result.late_frame_gaps} late frame gaps, bot talked over {result.talked_over} answers",
    ]
    if v2v:
        p50, p95 = percentile(v2v, 50), percentile(v2v, 95)
        assert p50 is not None and p95 is not None
        lines.append(
            f"voice-to-voice over {len(v2v)} answers: p50 {p50 * 1000:.0f} ms, "
            f"p95 {p95 * 1000:.0f} ms, max {max(v2v) * 1000:.0f} ms"
        )
    if result.unanswered_prompts:
        lines.append(f"{result.unanswered_prompts} prompts got no answer (no answers left)")
    for problem in result.problems[:10]:
        lines.append(f"protocol problem: {problem}")
    if result.error:
        lines.append(f"error: {result.error}")
    return lines


def build_parser() -> argparse.ArgumentParser:
    """Build the ``voicebot call`` option parser."""
    parser = argparse.ArgumentParser(
        prog="voicebot call",
        description="Place a simulated Twilio call (voice webhook + Media Stream) against a "
        "running voicebot server, answer its prompts with WAV recordings, and report "
        "voice-to-voice latency.",
    )
    parser.add_argument("--url", default="http://127.0.0.1:8080", help="server base URL")
    parser.add_argument("--interview-id", help="interview to call into (else matched by --from)")
    parser.add_argument(
        "--answer",
        action="append",
        default=[],
        metavar="WAV",
        help="a recorded answer (16-bit WAV, any rate); repeat, spoken in order",
    )
    parser.add_argument(
        "--dtmf",
        action="append",
        default=[],
        metavar="N=D",
        help="answer prompt N (0 = first prompt awaiting an answer) by pressing key D; repeat",
    )
    parser.add_argument(
        "--barge-in",
        action="append",
        default=[],
        metavar="N=SECS",
        help="talk over prompt N, starting SECS after its audio starts (tests barge-in); repeat",
    )
    parser.add_argument("--from", dest="from_number", default="+15550100", help="caller number")
    parser.add_argument("--call-sid", help="CallSid to use (default: random)")
    parser.add_argument(
        "--twilio-auth-token",
        default=os.environ.get("VOICEBOT_TWILIO_AUTH_TOKEN") or None,
        help="sign the webhook with X-Twilio-Signature (default: $VOICEBOT_TWILIO_AUTH_TOKEN)",
    )
    parser.add_argument(
        "--answer-gap",
        type=float,
        default=0.3,
        metavar="SECS",
        help="pause between hearing a prompt end and answering (default 0.3)",
    )
    parser.add_argument(
        "--max-call-secs", type=float, default=300.0, help="hang up after this long (default 300)"
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``voicebot call``; returns 0 when the call completed without error."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        dtmf = _parse_dtmf(args.dtmf)
        barge_in = {int(k): float(v) for k, _, v in (item.partition("=") for item in args.barge_in)}
    except (argparse.ArgumentTypeError, ValueError) as exc:
        parser.error(str(exc))
    try:
        answers = load_answers(args.answer)
    except ValueError as exc:
        parser.error(str(exc))

    def show(kind: str, data: dict[str, Any]) -> None:
        if kind == "turn":
            print(format_turn(data["turn"]), flush=True)
        elif kind == "connected":
            print(f"connected: {data['stream_url']} (call {data['call_sid']})", flush=True)

    try:
        result = asyncio.run(
            run_call(
                args.url,
                answers=answers,
                interview_id=args.interview_id,
                from_number=args.from_number,
                call_sid=args.call_sid,
                twilio_auth_token=args.twilio_auth_token,
                dtmf=dtmf,
                answer_gap_secs=args.answer_gap,
                max_call_secs=args.max_call_secs,
                on_event=None if args.json else show,
                barge_in=barge_in,
            )
        )
    except KeyboardInterrupt:
        print("hung up", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(result.to_json_dict(), indent=2))
    else:
        for line in summary_lines(result):
            print(line)
    return 0 if result.error is None else 1


if __name__ == "__main__":
    raise SystemExit(main())
