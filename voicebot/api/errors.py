"""What any unexpected error in a route becomes: a JSON 500, counted, logged without its data.

A handler that raises something other than an HTTP answer is a bug; the client gets
``{"error": {"code": "internal_error", ...}}`` (never the exception text, which may quote a
candidate's name or number), ``voicebot_internal_errors_total{where="http"}`` counts it, and the
log says which route and which exception type, with the traceback's frames (file, line,
function) but not the exception's message or any request data.
"""

from __future__ import annotations

import logging
import traceback
from pathlib import Path

from aiohttp import web

from voicebot.api.carrier import SERVICES_KEY

log = logging.getLogger(__name__)


def _route(request: web.Request) -> str:
    """The route's pattern (``/api/interviews/{interview_id}``): no ids, no query."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "(no route)"


def _frames(error: BaseException) -> str:
    return " <- ".join(
        f"{Path(frame.filename).name}:{frame.lineno} {frame.name}"
        for frame in reversed(traceback.extract_tb(error.__traceback__))
    )


@web.middleware
async def unexpected_errors(request: web.Request, handler) -> web.StreamResponse:
    """Turn an unhandled exception into a counted JSON 500 (HTTP answers pass through)."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception as error:  # the last line of defence: every route's bugs land here
        services = request.app.get(SERVICES_KEY)
        if services is not None:
            services.metrics.internal_errors.labels("http").inc()
        log.error(
            "unexpected %s in %s %s (at %s)",
            type(error).__name__,
            request.method,
            _route(request),
            _frames(error),
        )
        if request.headers.get("Upgrade", "").lower() == "websocket":
            raise  # a socket already switched protocols cannot carry a 500
        return web.json_response(
            {
                "error": {
                    "code": "internal_error",
                    "message": "the server failed to handle this request; it was logged and"
                    " counted. Try again; if it persists, tell the operator the time.",
                }
            },
            status=500,
        )
