"""Fuzzing the Twilio Media Streams parser with Hypothesis: any message is an event or a value.

Whatever a peer sends (text, bytes, JSON of any shape, real-shaped messages with fields of the
wrong type, deep nesting), :meth:`TwilioMediaStream.receive` returns a list of events, never
raises, and a :class:`ProtocolError` has a code and a message. Bounded: a few seconds a test.
"""

from __future__ import annotations

import base64
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voicebot.telephony.twilio import Media, ProtocolError, Start, TwilioMediaStream

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
fields = st.sampled_from(
    [
        "event", "streamSid", "start", "media", "dtmf", "mark", "stop", "callSid",
        "customParameters", "mediaFormat", "tracks", "payload", "chunk", "timestamp", "digit",
        "name", "encoding", "sampleRate", "channels", "accountSid", "protocol", "version",
    ]
)  # fmt: skip


def shaped(values):
    """Objects with Twilio's field names holding anything, nested like Twilio's messages."""
    return st.recursive(
        values,
        lambda children: st.dictionaries(fields, children, max_size=6),
        max_leaves=25,
    )


events = st.sampled_from(["connected", "start", "media", "dtmf", "mark", "stop", "other", ""])
base64_payloads = st.binary(max_size=2000).map(lambda b: base64.b64encode(b).decode())
messages = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=200),
    json_values.map(json.dumps),
    st.builds(
        lambda event, body: json.dumps({**body, "event": event}),
        events,
        st.dictionaries(fields, shaped(json_values | base64_payloads), max_size=6),
    ),
    st.integers(1, 100_000).map(lambda depth: "[" * depth + "]" * depth),
    st.integers(1, 30_000).map(lambda depth: '{"event": "start", "start": ' + "[" * depth),
    st.text(max_size=20).map(lambda t: '{"event": "media", "media": {"payload": "' + t + '"}}'),
)

START = json.dumps(
    {
        "event": "start",
        "start": {
            "streamSid": "MZ1",
            "callSid": "CA1",
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            "customParameters": {"token": "t"},
        },
    }
)


def check(stream: TwilioMediaStream, message: str | bytes) -> None:
    received = stream.receive(message)
    assert isinstance(received, list)
    for event in received:
        if isinstance(event, ProtocolError):
            assert event.code and event.message
            assert isinstance(event.fatal, bool)


@FUZZ
@given(st.lists(messages, min_size=1, max_size=8), st.booleans())
def test_any_messages_give_events_or_protocol_errors(sequence, started):
    stream = TwilioMediaStream(max_message_bytes=65536)
    if started:
        assert isinstance(stream.receive(START)[0], Start)
    for message in sequence:
        check(stream, message)


@FUZZ
@given(shaped(json_values | base64_payloads))
def test_any_media_message_after_start_is_audio_or_a_dropped_message(media):
    stream = TwilioMediaStream()
    stream.receive(START)
    (event,) = stream.receive(json.dumps({"event": "media", "streamSid": "MZ1", "media": media}))
    assert isinstance(event, Media | ProtocolError)
    if isinstance(event, ProtocolError):
        assert not event.fatal  # one bad frame never ends the call


def test_deeply_nested_message_is_a_protocol_error_not_a_crash():
    stream = TwilioMediaStream(max_message_bytes=1 << 20)
    (event,) = stream.receive("[" * 100_000 + "]" * 100_000)
    assert isinstance(event, ProtocolError) and event.code == "bad_json"
    assert "nested" in event.message
