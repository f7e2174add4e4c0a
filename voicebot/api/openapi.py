"""The REST API's OpenAPI 3.1 document: ``voicebot/api/openapi.yaml``, served at ``/openapi.json``.

The document is written by hand next to the routes (the responses are plain dicts, not models a
generator could read); ``tests/api/test_openapi.py`` keeps it true to the server. It is a contract,
with no data in it, so it is served without authentication.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from voicebot import __version__

DOCUMENT_PATH = Path(__file__).with_name("openapi.yaml")


@cache
def openapi_document() -> dict[str, Any]:
    """The OpenAPI document as a dict (read once), with the server's version."""
    document = yaml.safe_load(DOCUMENT_PATH.read_text(encoding="utf-8"))
    document["info"]["version"] = __version__
    return document


@cache
def _document_body() -> bytes:
    return json.dumps(openapi_document(), ensure_ascii=False, indent=1).encode()


async def openapi_json(request: web.Request) -> web.Response:
    """``GET /openapi.json``: the REST API's OpenAPI 3.1 document."""
    return web.Response(body=_document_body(), content_type="application/json")


def add_routes(app: web.Application) -> None:
    """Register ``GET /openapi.json``; the document is read now, not on a request."""
    _document_body()
    app.router.add_get("/openapi.json", openapi_json)
