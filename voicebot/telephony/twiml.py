"""TwiML the voice webhook answers with: connect the call to our Media Stream, or say and hang up.

``<Connect><Stream>`` opens a bidirectional Media Stream to our WebSocket; its ``<Parameter>``s come
back to us in the stream's ``start`` message (that is how the stream learns its interview and its
signed stream token). Everything is XML-escaped, including newlines and tabs in attribute values,
which an XML parser would otherwise turn into spaces.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>'

# Characters XML 1.0 cannot carry at all, even escaped.
_XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")

_ATTRIBUTE_ESCAPES = {
    "&": "&amp;",
    "<": "&lt;",
    ">": "&gt;",
    '"': "&quot;",
    "'": "&apos;",
    "\n": "&#10;",
    "\r": "&#13;",
    "\t": "&#9;",
}
_ATTRIBUTE_SPECIAL = re.compile("[&<>\"'\n\r\t]")
_TEXT_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_TEXT_SPECIAL = re.compile("[&<>]")


def _check_xml_chars(value: str, where: str) -> None:
    bad = _XML_FORBIDDEN.search(value)
    if bad:
        raise ValueError(
            f"{where}: character U+{ord(bad.group()):04X} at index {bad.start()} cannot appear in "
            "XML; remove control characters from it"
        )


def without_xml_forbidden(value: str) -> str:
    """``value`` with the characters XML 1.0 cannot carry (C0 controls but tab/CR/LF) removed.

    For values from outside (a caller's ``From``) echoed in TwiML: the builders below refuse
    them, so what a carrier or a caller sent is cleaned first.
    """
    return _XML_FORBIDDEN.sub("", value)


def _attribute(value: str, where: str) -> str:
    _check_xml_chars(value, where)
    return '"' + _ATTRIBUTE_SPECIAL.sub(lambda m: _ATTRIBUTE_ESCAPES[m.group()], value) + '"'


def _text(value: str, where: str) -> str:
    _check_xml_chars(value, where)
    return _TEXT_SPECIAL.sub(lambda m: _TEXT_ESCAPES[m.group()], value)


def connect_stream_twiml(stream_url: str, parameters: Mapping[str, str]) -> str:
    """TwiML that connects the call to a bidirectional Media Stream at ``stream_url``.

    Each entry of ``parameters`` becomes a ``<Parameter name=".." value=".."/>``; Twilio hands
    them back in the stream's ``start.customParameters``.
    """
    if not stream_url.startswith(("ws://", "wss://")):
        raise ValueError(
            f"connect_stream_twiml: stream_url {stream_url!r} must be a ws:// or wss:// URL; "
            "build it with stream_url_from_public_url()"
        )
    parts = [XML_DECLARATION, "<Response><Connect>"]
    parts.append(f"<Stream url={_attribute(stream_url, 'url')}>")
    for name, value in parameters.items():
        if not name:
            raise ValueError("connect_stream_twiml: a <Parameter> name is empty")
        parts.append(
            f"<Parameter name={_attribute(name, f'parameter {name!r}')} "
            f"value={_attribute(value, f'parameter {name!r} value')}/>"
        )
    parts.append("</Stream></Connect></Response>")
    return "".join(parts)


def say_and_hangup_twiml(text: str, language: str = "en-US") -> str:
    """TwiML for a call we cannot serve: say ``text`` in ``language``, then hang up."""
    return (
        f"{XML_DECLARATION}<Response>"
        f"<Say language={_attribute(language, 'language')}>{_text(text, 'Say text')}</Say>"
        "<Hangup/></Response>"
    )


def stream_url_from_public_url(public_url: str, path: str = "/twilio/stream") -> str:
    """Derive the WebSocket URL Twilio should open from the server's public HTTP(S) base URL.

    ``https://bot.example.com`` becomes ``wss://bot.example.com/twilio/stream``; ``http`` becomes
    ``ws``; a base path (``https://example.com/voicebot``) is kept; query and fragment are dropped.
    """
    parts = urlsplit(public_url.strip())
    schemes = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}
    scheme = schemes.get(parts.scheme.lower())
    if scheme is None or not parts.netloc:
        raise ValueError(
            f"public URL {public_url!r} is not an absolute http(s) URL; set VOICEBOT_PUBLIC_URL "
            "to the address Twilio reaches, e.g. https://bot.example.com"
        )
    full_path = parts.path.rstrip("/") + "/" + path.lstrip("/")
    return urlunsplit((scheme, parts.netloc, full_path, "", ""))
