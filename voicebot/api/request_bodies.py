"""Reading request bodies safely: every unreadable body is a 4xx with a message, never a 500.

JSON (the REST API): a size limit and a nesting limit, checked before parsing. Python's ``json``
parser recurses once per nesting level, so a body of ``[[[[...`` a hundred thousand levels deep
raised ``RecursionError`` inside the handler; :func:`read_json_body` counts the nesting without
recursion first and refuses a body above ``max_bytes`` before reading it all.

Forms (the Twilio webhooks, the monitor's sign-in): :func:`read_form` turns what aiohttp's form
parser raises on a body it cannot read (an unknown charset, bytes that are not in it, a broken
multipart body) into a 400.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_request import FileField
from multidict import MultiDictProxy

from voicebot.json_nesting import json_depth

MAX_JSON_DEPTH = 32
"""Nesting levels (objects and arrays) a request body may have; the API's bodies need 2-3."""


class BadJsonBody(ValueError):
    """A request body the API cannot take: ``status`` (400/413), ``code`` and a clear message."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


async def read_json_body(
    request: web.Request, max_bytes: int, max_depth: int = MAX_JSON_DEPTH
) -> Any:
    """The parsed JSON body; :class:`BadJsonBody` if too big, not UTF-8 JSON, or too deep."""
    too_big = BadJsonBody(
        413,
        "body_too_large",
        f"request body is larger than {max_bytes} bytes: send less (one interview per request)",
    )
    if request.content_length is not None and request.content_length > max_bytes:
        raise too_big
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(max_bytes + 1 - size):
        chunks.append(chunk)
        size += len(chunk)
        if size > max_bytes:  # a chunked body without a length: stop reading it
            raise too_big
    raw = b"".join(chunks)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadJsonBody(
            400, "bad_json", f"request body is not UTF-8 (byte {exc.start}): send UTF-8 JSON"
        ) from None
    if json_depth(text) > max_depth:
        raise BadJsonBody(
            400,
            "bad_json",
            f"request body is nested more than {max_depth} levels deep: send the documented"
            " JSON object",
        )
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        where = f" (line {exc.lineno}, column {exc.colno})" if hasattr(exc, "lineno") else ""
        raise BadJsonBody(
            400, "bad_json", f"request body is not valid JSON{where}: send a JSON object"
        ) from None


async def read_form(request: web.Request) -> MultiDictProxy[str | bytes | FileField]:
    """The request's form fields; ``HTTPBadRequest`` (400) for a body that is not a form."""
    try:
        return await request.post()
    except (ValueError, LookupError, AssertionError, HttpProcessingError):
        # ValueError: bytes not in the charset, bad multipart; LookupError: unknown charset;
        # AssertionError, HttpProcessingError: a multipart part aiohttp's reader cannot parse.
        raise web.HTTPBadRequest(
            text="the body must be a form (application/x-www-form-urlencoded, UTF-8)"
        ) from None
