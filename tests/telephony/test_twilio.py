"""Twilio Media Streams protocol: real-shaped messages parse; bad input is a value, not a crash."""

from __future__ import annotations

import base64
import json

import pytest

from voicebot.telephony.twilio import (
    Connected,
    Dtmf,
    Mark,
    Media,
    ProtocolError,
    Start,
    Stop,
    TwilioMediaStream,
    TwilioStreamNotStarted,
)

STREAM_SID = "MZ18ad3ab5a668481ce02b83e7395059f0"
CALL_SID = "CA5b2d6a9a7c8e4f0b1d3c5e7f9a1b3c5d"
ACCOUNT_SID = "AC25e16e9a716a4a1786a7c83f58e30482"
FRAME = bytes(range(96, 256))  # 160 bytes, 20 ms of 8 kHz mu-law

# Shapes as in https://www.twilio.com/docs/voice/media-streams/websocket-messages
CONNECTED = '{"event": "connected", "protocol": "Call", "version": "1.0.0"}'
START = json.dumps(
    {
        "event": "start",
        "sequenceNumber": "1",
        "start": {
            "accountSid": ACCOUNT_SID,
            "streamSid": STREAM_SID,
            "callSid": CALL_SID,
            "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            "customParameters": {"interview_id": "iv_1", "token": "abc.def"},
        },
        "streamSid": STREAM_SID,
    }
)


def media_message(payload: bytes = FRAME, chunk: int = 1, stream_sid: str = STREAM_SID) -> str:
    return json.dumps(
        {
            "event": "media",
            "sequenceNumber": str(chunk + 1),
            "media": {
                "track": "inbound",
                "chunk": str(chunk),
                "timestamp": str(20 * (chunk - 1)),
                "payload": base64.b64encode(payload).decode(),
            },
            "streamSid": stream_sid,
        }
    )


DTMF = json.dumps(
    {
        "event": "dtmf",
        "streamSid": STREAM_SID,
        "sequenceNumber": "5",
        "dtmf": {"track": "inbound_track", "digit": "1"},
    }
)
MARK = json.dumps(
    {
        "event": "mark",
        "sequenceNumber": "4",
        "streamSid": STREAM_SID,
        "mark": {"name": "3:q1:await"},
    }
)
STOP = json.dumps(
    {
        "event": "stop",
        "sequenceNumber": "6",
        "streamSid": STREAM_SID,
        "stop": {"accountSid": ACCOUNT_SID, "callSid": CALL_SID},
    }
)


def started() -> TwilioMediaStream:
    stream = TwilioMediaStream()
    assert isinstance(stream.receive(CONNECTED)[0], Connected)
    assert isinstance(stream.receive(START)[0], Start)
    return stream


def only_error(events: list) -> ProtocolError:
    assert len(events) == 1 and isinstance(events[0], ProtocolError), events
    return events[0]


def test_a_whole_call_parses_into_typed_events():
    stream = TwilioMediaStream()
    assert stream.receive(CONNECTED) == [Connected(protocol="Call", version="1.0.0")]
    [start] = stream.receive(START)
    assert start == Start(
        stream_sid=STREAM_SID,
        call_sid=CALL_SID,
        account_sid=ACCOUNT_SID,
        tracks=("inbound",),
        custom_parameters={"interview_id": "iv_1", "token": "abc.def"},
        encoding="audio/x-mulaw",
        sample_rate=8000,
        channels=1,
    )
    assert (stream.started, stream.stream_sid, stream.call_sid) == (True, STREAM_SID, CALL_SID)
    assert stream.receive(media_message(chunk=1)) == [
        Media(payload=FRAME, timestamp_ms=0, chunk=1, track="inbound")
    ]
    [second] = stream.receive(media_message(chunk=2))
    assert (second.chunk, second.timestamp_ms) == (2, 20)
    assert stream.receive(DTMF) == [Dtmf(digit="1")]
    assert stream.receive(MARK) == [Mark(name="3:q1:await")]
    assert stream.receive(STOP) == [Stop(call_sid=CALL_SID)]
    assert stream.stopped
    assert stream.media_frames_received == 2 and stream.media_bytes_received == 320
    assert stream.event_counts["media"] == 2 and not stream.error_counts


def test_start_without_connected_is_accepted():
    stream = TwilioMediaStream()
    assert isinstance(stream.receive(START)[0], Start)


def test_numbers_may_come_as_json_numbers():
    stream = started()
    message = json.loads(media_message(chunk=7))
    message["media"]["chunk"] = 7
    message["media"]["timestamp"] = 120
    [media] = stream.receive(json.dumps(message))
    assert (media.chunk, media.timestamp_ms) == (7, 120)


def _with(base: str, **changes) -> str:
    message = json.loads(base)
    message.update(changes)
    return json.dumps(message)


@pytest.mark.parametrize(
    ("message", "code"),
    [
        (b'{"event": "media"}', "binary_frame"),
        ("{not json", "bad_json"),
        ("[1, 2, 3]", "not_an_object"),
        ('"media"', "not_an_object"),
        ('{"streamSid": "MZ1"}', "missing_event"),
        ('{"event": 5}', "missing_event"),
        ('{"event": "hangup"}', "unknown_event"),
        (media_message().replace(base64.b64encode(FRAME).decode(), "!!notbase64!!"), "bad_base64"),
        (media_message(b""), "empty_media"),
        (media_message(b"\xff" * 1601), "media_too_large"),
        (media_message(stream_sid="MZ00000000000000000000000000000000"), "wrong_stream_sid"),
        (_with(MARK, streamSid="MZother"), "wrong_stream_sid"),
        (START, "duplicate_start"),
        (CONNECTED, "out_of_order"),
        (_with(DTMF, dtmf={"digit": "x"}), "bad_field"),
        (_with(MARK, mark={}), "bad_field"),
        (_with(media_message(), media={"payload": base64.b64encode(FRAME).decode()}), "bad_field"),
        ("x" * 70000, "message_too_large"),
    ],
)
def test_bad_message_is_a_non_fatal_error_and_the_stream_keeps_working(message, code):
    stream = started()
    error = only_error(stream.receive(message))
    assert error.code == code
    assert not error.fatal
    assert error.message
    assert stream.error_counts[code] == 1
    [media] = stream.receive(media_message(chunk=2))
    assert isinstance(media, Media) and media.payload == FRAME
    assert stream.stream_sid == STREAM_SID


@pytest.mark.parametrize("message", [media_message(), DTMF, MARK, STOP])
def test_stream_messages_before_start_are_out_of_order(message):
    stream = TwilioMediaStream()
    stream.receive(CONNECTED)
    assert only_error(stream.receive(message)).code == "out_of_order"
    assert isinstance(stream.receive(START)[0], Start)
    assert isinstance(stream.receive(media_message())[0], Media)


@pytest.mark.parametrize(
    "media_format",
    [
        {"encoding": "audio/x-l16", "sampleRate": 16000, "channels": 1},
        {"encoding": "audio/x-mulaw", "sampleRate": 16000, "channels": 1},
        {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 2},
        None,
    ],
)
def test_unsupported_media_format_is_fatal(media_format):
    message = json.loads(START)
    message["start"]["mediaFormat"] = media_format
    stream = TwilioMediaStream()
    error = only_error(stream.receive(json.dumps(message)))
    assert (error.code, error.fatal) == ("unsupported_media_format", True)
    assert "audio/x-mulaw" in error.message
    assert not stream.started


def test_start_without_call_sid_is_fatal():
    message = json.loads(START)
    del message["start"]["callSid"]
    error = only_error(TwilioMediaStream().receive(json.dumps(message)))
    assert (error.code, error.fatal) == ("bad_start", True)
    assert "callSid" in error.message


def test_anything_after_stop_is_dropped():
    stream = started()
    stream.receive(STOP)
    for message in (media_message(), MARK, START, "{junk"):
        assert only_error(stream.receive(message)).code == "after_stop"
    assert stream.error_counts["after_stop"] == 4


def test_limits_are_configurable():
    stream = TwilioMediaStream(max_message_bytes=300, max_media_bytes=100)
    stream.receive(CONNECTED)
    assert only_error(stream.receive(START)).code == "message_too_large"
    stream = TwilioMediaStream(max_media_bytes=100)
    stream.receive(START)
    assert only_error(stream.receive(media_message(FRAME))).code == "media_too_large"
    assert isinstance(stream.receive(media_message(FRAME[:100]))[0], Media)


def test_non_ascii_message_size_is_counted_in_bytes():
    stream = TwilioMediaStream(max_message_bytes=100)
    message = '{"event": "connected", "protocol": "' + "\u00e9" * 40 + '"}'
    assert len(message) < 100 < len(message.encode())
    assert only_error(stream.receive(message)).code == "message_too_large"


def test_builders_make_twilio_messages_for_this_stream():
    stream = started()
    media = json.loads(stream.media(FRAME))
    assert media == {
        "event": "media",
        "streamSid": STREAM_SID,
        "media": {"payload": base64.b64encode(FRAME).decode()},
    }
    assert json.loads(stream.mark("3:q1:await")) == {
        "event": "mark",
        "streamSid": STREAM_SID,
        "mark": {"name": "3:q1:await"},
    }
    assert json.loads(stream.clear()) == {"event": "clear", "streamSid": STREAM_SID}
    assert stream.media_frames_sent == 1 and stream.marks_sent == 1


def test_builders_refuse_before_start():
    stream = TwilioMediaStream()
    stream.receive(CONNECTED)
    for build in (lambda: stream.media(FRAME), lambda: stream.mark("m"), stream.clear):
        with pytest.raises(TwilioStreamNotStarted, match="start"):
            build()


def test_builders_refuse_empty_input():
    stream = started()
    with pytest.raises(ValueError):
        stream.media(b"")
    with pytest.raises(ValueError):
        stream.mark("")


def test_parser_reads_what_the_simulated_carrier_sends():
    """The load-test caller and the server agree on every message shape."""
    from loadtest.caller import CarrierMessages

    carrier = CarrierMessages(STREAM_SID, CALL_SID, ACCOUNT_SID)
    stream = TwilioMediaStream()
    events = []
    for message in (
        carrier.connected(),
        carrier.start({"token": "t", "interview_id": "iv"}),
        carrier.media(FRAME, 0),
        carrier.media(FRAME, 20),
        carrier.dtmf("2"),
        carrier.mark("1:greeting"),
        carrier.stop(),
    ):
        events += stream.receive(message)
    assert [type(e) for e in events] == [Connected, Start, Media, Media, Dtmf, Mark, Stop]
    assert events[1].custom_parameters == {"token": "t", "interview_id": "iv"}
    assert [(e.chunk, e.timestamp_ms) for e in events[2:4]] == [(1, 0), (2, 20)]
    assert events[4].digit == "2" and events[5].name == "1:greeting"
    assert events[6].call_sid == CALL_SID
