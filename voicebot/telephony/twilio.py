"""Twilio Media Streams (bidirectional), Sans-I/O: messages in, events out, replies built.

Twilio opens a WebSocket to the server and sends JSON text frames: ``connected``, then ``start``
(stream metadata and the TwiML ``<Parameter>``s), then ``media`` (20 ms of 8 kHz mu-law, base64),
``dtmf``, ``mark`` (echo of a mark we sent, once the audio before it has played) and finally
``stop``. The server answers with ``media``, ``mark`` and ``clear`` messages.

:class:`TwilioMediaStream` parses what Twilio sends into typed events and builds what the server
sends back. It owns no socket and reads no clock: the asyncio layer feeds it each received message
and writes the returned text. Bad input never raises: it comes back as a :class:`ProtocolError`
event with a stable ``code`` (for metrics) and a message that says what was wrong, where, and what
to do. A non-fatal error drops only the offending message; a fatal one means the stream cannot be
served and should be closed.

Message shapes follow https://www.twilio.com/docs/voice/media-streams/websocket-messages
"""

from __future__ import annotations

import base64
import binascii
import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

from voicebot.json_nesting import json_depth

TWILIO_ENCODING = "audio/x-mulaw"
"""The only media encoding bidirectional Media Streams carry."""

TWILIO_SAMPLE_RATE = 8000
"""Sample rate of Media Streams audio, in Hz."""

TWILIO_CHANNELS = 1
"""Media Streams audio is mono."""

DTMF_DIGITS = frozenset("0123456789*#ABCD")
"""Digits a DTMF event may carry."""

MAX_JSON_DEPTH = 16
"""Nesting levels a message may have (Twilio's have 3); deeper ones are dropped unparsed."""


@dataclass(frozen=True, slots=True)
class Connected:
    """Twilio's first message: the WebSocket is up and speaks this protocol version."""

    protocol: str
    version: str


@dataclass(frozen=True, slots=True)
class Start:
    """Stream metadata, sent once before any media; carries the TwiML ``<Parameter>``s."""

    stream_sid: str
    call_sid: str
    account_sid: str
    tracks: tuple[str, ...]
    custom_parameters: dict[str, str]
    encoding: str
    sample_rate: int
    channels: int


@dataclass(frozen=True, slots=True)
class Media:
    """One chunk of caller audio: decoded from base64, still 8 kHz mu-law (usually 160 bytes)."""

    payload: bytes
    timestamp_ms: int
    chunk: int
    track: str


@dataclass(frozen=True, slots=True)
class Dtmf:
    """The caller pressed a key."""

    digit: str


@dataclass(frozen=True, slots=True)
class Mark:
    """Twilio played the audio sent before the mark of this name (or a ``clear`` dropped it)."""

    name: str


@dataclass(frozen=True, slots=True)
class Stop:
    """The stream ended (the call hung up or the ``<Stream>`` was stopped)."""

    call_sid: str


@dataclass(frozen=True, slots=True)
class ProtocolError:
    """A message that could not be used; returned as a value, never raised.

    ``code`` is stable and suitable as a metrics label. ``fatal`` means the stream cannot be
    served (close it); otherwise only the offending message was dropped.
    """

    code: str
    message: str
    fatal: bool = False


TwilioEvent = Connected | Start | Media | Dtmf | Mark | Stop | ProtocolError
"""Everything :meth:`TwilioMediaStream.receive` can return."""


class TwilioStreamNotStarted(RuntimeError):
    """An outbound message was built before the ``start`` message gave us a ``streamSid``."""


class _Reject(Exception):
    """Internal: abort parsing one message with this protocol error."""

    def __init__(self, code: str, message: str, fatal: bool = False):
        super().__init__(message)
        self.error = ProtocolError(code, message, fatal)


def _dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


class TwilioMediaStream:
    """Sans-I/O parser and message builder for one bidirectional Twilio Media Stream.

    Feed every received WebSocket message to :meth:`receive`; send what :meth:`media`,
    :meth:`mark` and :meth:`clear` return. Counters (``event_counts``, ``error_counts``,
    ``media_frames_received``, ``media_bytes_received``, ``media_frames_sent``) are for metrics.
    """

    def __init__(self, max_message_bytes: int = 65536, max_media_bytes: int = 1600):
        if max_message_bytes <= 0 or max_media_bytes <= 0:
            raise ValueError(
                "TwilioMediaStream: max_message_bytes and max_media_bytes must be positive, got "
                f"{max_message_bytes} and {max_media_bytes}"
            )
        self.max_message_bytes = max_message_bytes
        self.max_media_bytes = max_media_bytes
        self.stream_sid: str | None = None
        self.call_sid: str | None = None
        self.account_sid: str | None = None
        self.custom_parameters: dict[str, str] = {}
        self.connected = False
        self.started = False
        self.stopped = False
        self.event_counts: Counter[str] = Counter()
        self.error_counts: Counter[str] = Counter()
        self.media_frames_received = 0
        self.media_bytes_received = 0
        self.media_frames_sent = 0
        self.marks_sent = 0

    # ------------------------------------------------------------------ inbound

    def receive(self, message: str | bytes) -> list[TwilioEvent]:
        """Parse one WebSocket message from Twilio into events (zero or one event today)."""
        try:
            event = self._parse(message)
        except _Reject as rejected:
            self.error_counts[rejected.error.code] += 1
            return [rejected.error]
        self.event_counts[type(event).__name__.lower()] += 1
        return [event]

    def _parse(self, message: str | bytes) -> TwilioEvent:
        if isinstance(message, (bytes, bytearray, memoryview)):
            raise _Reject(
                "binary_frame",
                f"received a binary WebSocket frame of {len(message)} bytes; Twilio Media Streams "
                "sends JSON text frames only, so this peer is not Twilio or is misconfigured",
            )
        size = len(message) if message.isascii() else len(message.encode("utf-8"))
        if size > self.max_message_bytes:
            raise _Reject(
                "message_too_large",
                f"message of {size} bytes exceeds the limit of {self.max_message_bytes} bytes; "
                "dropped (a Twilio media message is about 400 bytes)",
            )
        if self.stopped:
            raise _Reject(
                "after_stop",
                f"message received after the stream's stop event: {message[:80]!r}; dropped "
                "(the peer should close the socket after stop)",
            )
        if json_depth(message) > MAX_JSON_DEPTH:
            raise _Reject(
                "bad_json",
                f"message is nested more than {MAX_JSON_DEPTH} levels deep (Twilio's nest 3):"
                f" {message[:80]!r}; dropped",
            )
        try:
            data = json.loads(message)
        except ValueError as exc:
            raise _Reject(
                "bad_json", f"message is not valid JSON ({exc}): {message[:80]!r}; dropped"
            ) from None
        if not isinstance(data, dict):
            raise _Reject(
                "not_an_object",
                f"message is JSON {type(data).__name__}, expected an object with an 'event' "
                f"field: {message[:80]!r}; dropped",
            )
        event = data.get("event")
        if not isinstance(event, str) or not event:
            raise _Reject(
                "missing_event",
                f"message has no 'event' string field: {message[:80]!r}; dropped",
            )
        if event == "connected":
            return self._parse_connected(data)
        if event == "start":
            return self._parse_start(data)
        if event in ("media", "dtmf", "mark", "stop"):
            self._check_in_stream(event, data)
            if event == "media":
                return self._parse_media(data)
            if event == "dtmf":
                return self._parse_dtmf(data)
            if event == "mark":
                return self._parse_mark(data)
            return self._parse_stop(data)
        raise _Reject(
            "unknown_event",
            f"unknown event {event[:40]!r}; expected connected, start, media, dtmf, mark or "
            "stop; dropped",
        )

    def _parse_connected(self, data: dict[str, Any]) -> Connected:
        if self.started:
            raise _Reject(
                "out_of_order",
                "'connected' received after 'start'; Twilio sends it first; dropped",
            )
        self.connected = True
        return Connected(
            protocol=str(data.get("protocol", "")), version=str(data.get("version", ""))
        )

    def _parse_start(self, data: dict[str, Any]) -> Start:
        if self.started:
            raise _Reject(
                "duplicate_start",
                f"second 'start' on stream {self.stream_sid}; Twilio sends one per stream; dropped",
            )
        start = data.get("start")
        if not isinstance(start, dict):
            raise _Reject(
                "bad_start",
                "'start' message has no 'start' object with the stream metadata; the stream "
                "cannot be served",
                fatal=True,
            )
        stream_sid = start.get("streamSid", data.get("streamSid"))
        call_sid = start.get("callSid")
        for field, value in (("start.streamSid", stream_sid), ("start.callSid", call_sid)):
            if not isinstance(value, str) or not value:
                raise _Reject(
                    "bad_start",
                    f"'start' message lacks the string field {field}; the stream cannot be served",
                    fatal=True,
                )
        media_format = start.get("mediaFormat") or {}
        if not isinstance(media_format, dict):
            media_format = {}
        encoding = media_format.get("encoding")
        sample_rate = media_format.get("sampleRate")
        channels = media_format.get("channels", TWILIO_CHANNELS)
        if (
            encoding != TWILIO_ENCODING
            or not _int_equals(sample_rate, TWILIO_SAMPLE_RATE)
            or not _int_equals(channels, TWILIO_CHANNELS)
        ):
            raise _Reject(
                "unsupported_media_format",
                f"stream {stream_sid} announces mediaFormat encoding={encoding!r} "
                f"sampleRate={sample_rate!r} channels={channels!r}; only {TWILIO_ENCODING} "
                f"{TWILIO_SAMPLE_RATE} Hz mono is supported (use <Connect><Stream>)",
                fatal=True,
            )
        raw_parameters = start.get("customParameters") or {}
        if not isinstance(raw_parameters, dict):
            raise _Reject(
                "bad_start",
                f"'start.customParameters' is {type(raw_parameters).__name__}, expected an "
                "object of strings; the stream cannot be served",
                fatal=True,
            )
        parameters = {
            str(k): v if isinstance(v, str) else str(v) for k, v in raw_parameters.items()
        }
        tracks = start.get("tracks") or []
        account_sid = start.get("accountSid")
        self.started = True
        self.stream_sid = stream_sid
        self.call_sid = call_sid
        self.account_sid = account_sid if isinstance(account_sid, str) else ""
        self.custom_parameters = parameters
        return Start(
            stream_sid=stream_sid,
            call_sid=call_sid,
            account_sid=self.account_sid,
            tracks=tuple(str(t) for t in tracks) if isinstance(tracks, list) else (),
            custom_parameters=parameters,
            encoding=encoding,
            sample_rate=TWILIO_SAMPLE_RATE,
            channels=TWILIO_CHANNELS,
        )

    def _check_in_stream(self, event: str, data: dict[str, Any]) -> None:
        if not self.started:
            raise _Reject(
                "out_of_order",
                f"'{event}' received before 'start'; Twilio sends start first; dropped",
            )
        stream_sid = data.get("streamSid")
        if stream_sid is not None and stream_sid != self.stream_sid:
            raise _Reject(
                "wrong_stream_sid",
                f"'{event}' for streamSid {str(stream_sid)[:40]!r} on stream {self.stream_sid}; "
                "dropped",
            )

    def _parse_media(self, data: dict[str, Any]) -> Media:
        media = data.get("media")
        if not isinstance(media, dict):
            raise _Reject("bad_field", "'media' message has no 'media' object; dropped")
        encoded = media.get("payload")
        if not isinstance(encoded, str):
            raise _Reject("bad_field", "'media.payload' is missing or not a string; dropped")
        try:
            payload = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise _Reject(
                "bad_base64",
                f"'media.payload' is not valid base64 (chunk {media.get('chunk')!r}); dropped",
            ) from None
        if not payload:
            raise _Reject(
                "empty_media",
                f"'media.payload' is empty (chunk {media.get('chunk')!r}); dropped",
            )
        if len(payload) > self.max_media_bytes:
            raise _Reject(
                "media_too_large",
                f"media payload of {len(payload)} bytes exceeds {self.max_media_bytes} bytes "
                f"(Twilio sends 160 bytes = 20 ms) (chunk {media.get('chunk')!r}); dropped",
            )
        timestamp = _as_int(media.get("timestamp"))
        chunk = _as_int(media.get("chunk"))
        if timestamp is None or chunk is None:
            raise _Reject(
                "bad_field",
                f"'media' needs integer 'timestamp' and 'chunk', got {media.get('timestamp')!r} "
                f"and {media.get('chunk')!r}; dropped",
            )
        self.media_frames_received += 1
        self.media_bytes_received += len(payload)
        return Media(
            payload=payload,
            timestamp_ms=timestamp,
            chunk=chunk,
            track=str(media.get("track", "inbound")),
        )

    def _parse_dtmf(self, data: dict[str, Any]) -> Dtmf:
        dtmf = data.get("dtmf")
        digit = dtmf.get("digit") if isinstance(dtmf, dict) else None
        if not isinstance(digit, str) or digit not in DTMF_DIGITS:
            raise _Reject(
                "bad_field",
                f"'dtmf.digit' is {digit!r}, expected one of 0-9 * # A-D; dropped",
            )
        return Dtmf(digit=digit)

    def _parse_mark(self, data: dict[str, Any]) -> Mark:
        mark = data.get("mark")
        name = mark.get("name") if isinstance(mark, dict) else None
        if not isinstance(name, str) or not name:
            raise _Reject("bad_field", f"'mark.name' is {name!r}, expected a string; dropped")
        return Mark(name=name)

    def _parse_stop(self, data: dict[str, Any]) -> Stop:
        stop = data.get("stop")
        call_sid = stop.get("callSid") if isinstance(stop, dict) else None
        self.stopped = True
        return Stop(call_sid=call_sid if isinstance(call_sid, str) else (self.call_sid or ""))

    # ----------------------------------------------------------------- outbound

    def _require_stream_sid(self, what: str) -> str:
        if self.stream_sid is None:
            raise TwilioStreamNotStarted(
                f"cannot build a '{what}' message before Twilio's 'start' gave a streamSid; "
                "wait for the Start event"
            )
        return self.stream_sid

    def media(self, payload: bytes) -> str:
        """Build a ``media`` message carrying 8 kHz mu-law audio for Twilio to play."""
        stream_sid = self._require_stream_sid("media")
        if not payload:
            raise ValueError("TwilioMediaStream.media: payload is empty; send at least one sample")
        self.media_frames_sent += 1
        return _dumps(
            {
                "event": "media",
                "streamSid": stream_sid,
                "media": {"payload": base64.b64encode(payload).decode("ascii")},
            }
        )

    def mark(self, name: str) -> str:
        """Build a ``mark``: Twilio echoes it once the audio sent before it has played."""
        stream_sid = self._require_stream_sid("mark")
        if not name:
            raise ValueError("TwilioMediaStream.mark: name is empty; give the mark a name")
        self.marks_sent += 1
        return _dumps({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}})

    def clear(self) -> str:
        """Build a ``clear``: Twilio drops audio not yet played and echoes the pending marks."""
        stream_sid = self._require_stream_sid("clear")
        return _dumps({"event": "clear", "streamSid": stream_sid})


def _as_int(value: Any) -> int | None:
    """Twilio sends numbers as strings ("chunk": "1"); accept both, reject anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return None
    return None


def _int_equals(value: Any, expected: int) -> bool:
    return _as_int(value) == expected
