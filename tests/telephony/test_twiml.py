"""TwiML for the voice webhook: well-formed, escaped, and readable by the simulated carrier."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree

import pytest

from loadtest.caller import parse_twiml
from voicebot.telephony.twiml import (
    connect_stream_twiml,
    say_and_hangup_twiml,
    stream_url_from_public_url,
)


def test_connect_stream_names_the_websocket_and_its_parameters():
    twiml = connect_stream_twiml(
        "wss://bot.example.com/twilio/stream", {"interview_id": "iv_1", "token": "a.b"}
    )
    root = ElementTree.fromstring(twiml)
    assert root.tag == "Response"
    stream = root.find("./Connect/Stream")
    assert stream is not None and stream.get("url") == "wss://bot.example.com/twilio/stream"
    assert [(p.get("name"), p.get("value")) for p in stream.findall("Parameter")] == [
        ("interview_id", "iv_1"),
        ("token", "a.b"),
    ]


def test_escaped_characters_round_trip_through_the_callers_parser():
    tricky = {
        "name": 'O\'Brien & <Sons> "quoted"',
        "multi line": "first\nsecond\ttabbed\r",
        "chinese": "面试 — ok",
    }
    url = "wss://bot.example.com/twilio/stream?a=1&b=2"
    twiml = connect_stream_twiml(url, tricky)
    assert "&amp;" in twiml and "&lt;Sons&gt;" in twiml
    instruction = parse_twiml(twiml)
    assert instruction.stream_url == url
    assert instruction.parameters == tricky


def test_connect_stream_refuses_what_xml_cannot_carry():
    with pytest.raises(ValueError, match="U\\+0001"):
        connect_stream_twiml("wss://x/twilio/stream", {"token": "bad\x01"})
    with pytest.raises(ValueError, match="ws:// or wss://"):
        connect_stream_twiml("https://x/twilio/stream", {})


def test_say_and_hangup_speaks_escaped_text_then_hangs_up():
    twiml = say_and_hangup_twiml("Sorry <all> interviewers & recruiters are busy.", "zh-CN")
    root = ElementTree.fromstring(twiml)
    say = root.find("Say")
    assert say is not None and say.get("language") == "zh-CN"
    assert say.text == "Sorry <all> interviewers & recruiters are busy."
    assert [child.tag for child in root] == ["Say", "Hangup"]
    instruction = parse_twiml(twiml)
    assert instruction.stream_url is None
    assert instruction.said == "Sorry <all> interviewers & recruiters are busy."


@pytest.mark.parametrize(
    ("public_url", "expected"),
    [
        ("https://bot.example.com", "wss://bot.example.com/twilio/stream"),
        ("https://bot.example.com/", "wss://bot.example.com/twilio/stream"),
        ("http://127.0.0.1:8080", "ws://127.0.0.1:8080/twilio/stream"),
        ("https://example.com/voicebot/", "wss://example.com/voicebot/twilio/stream"),
        ("HTTPS://bot.example.com?x=1#frag", "wss://bot.example.com/twilio/stream"),
        ("wss://bot.example.com", "wss://bot.example.com/twilio/stream"),
    ],
)
def test_stream_url_from_public_url(public_url, expected):
    assert stream_url_from_public_url(public_url) == expected


def test_stream_url_takes_another_path():
    assert stream_url_from_public_url("https://h", "custom/ws") == "wss://h/custom/ws"


@pytest.mark.parametrize("public_url", ["bot.example.com", "ftp://bot.example.com", "https://"])
def test_stream_url_rejects_what_is_not_an_http_url(public_url):
    with pytest.raises(ValueError, match="VOICEBOT_PUBLIC_URL"):
        stream_url_from_public_url(public_url)
