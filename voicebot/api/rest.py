"""The REST API for the HR system: interviews, calls, jobs. Every route needs the bearer token.

Errors are JSON ``{"error": {"code": ..., "message": ...}}`` with a message that says what was
wrong and how to fix it.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web
from pydantic import BaseModel, Field, ValidationError, field_validator

from voicebot.api.carrier import SERVICES_KEY

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
E164 = re.compile(r"^\+[1-9]\d{6,14}$")


def json_error(status: int, code: str, message: str) -> web.Response:
    """A JSON error response."""
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def require_token(handler: Handler) -> Handler:
    """Decorator: reject requests without ``Authorization: Bearer <VOICEBOT_API_TOKEN>``."""

    async def wrapper(request: web.Request) -> web.StreamResponse:
        services = request.app[SERVICES_KEY]
        expected = services.settings.resolved_api_token()
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip(), expected):
            services.metrics.http_errors.labels("api", "unauthorized").inc()
            response = json_error(
                401,
                "unauthorized",
                "missing or wrong bearer token: send 'Authorization: Bearer <VOICEBOT_API_TOKEN>'",
            )
            response.headers["WWW-Authenticate"] = "Bearer"
            return response
        return await handler(request)

    wrapper.__doc__ = handler.__doc__
    return wrapper


class CandidateIn(BaseModel):
    """The candidate of a new interview."""

    model_config = {"extra": "forbid"}

    id: str = Field(min_length=1, max_length=200)
    name: str = Field("", max_length=200)
    phone: str = Field("", max_length=20)
    timezone: str = Field("", max_length=64)

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str) -> str:
        value = value.replace(" ", "").replace("-", "")
        if value and not E164.match(value):
            raise ValueError("phone must be in E.164 form, e.g. +14155550100")
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        if value:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError("timezone must be an IANA name, e.g. Asia/Shanghai") from None
        return value


class InterviewIn(BaseModel):
    """``POST /api/interviews`` body."""

    model_config = {"extra": "forbid"}

    job_id: str = Field(min_length=1)
    candidate: CandidateIn
    external_key: str | None = Field(None, max_length=200)


def _interview_out(row: dict[str, Any]) -> dict[str, Any]:
    consent = row.get("consent")
    return {
        "id": row["id"],
        "job_id": row["job_id"],
        "status": row["status"],
        "attempts": row["attempts"],
        "external_key": row["external_key"],
        "candidate": {
            "id": row["candidate_id"],
            "name": row["candidate_name"],
            "phone": row["candidate_phone"],
            "timezone": row["candidate_timezone"],
        },
        "consent": None if consent is None else bool(consent),
        "consent_via": row.get("consent_via"),
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


@require_token
async def create_interview(request: web.Request) -> web.Response:
    """Create an interview (idempotent by ``external_key``)."""
    services = request.app[SERVICES_KEY]
    assert services.store is not None
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return json_error(400, "bad_json", "request body must be a JSON object")
    try:
        data = InterviewIn.model_validate(body)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        return json_error(422, "invalid_interview", problems)
    if data.job_id not in services.scripts:
        known = ", ".join(sorted(services.scripts)) or "none loaded"
        return json_error(422, "unknown_job", f"job_id {data.job_id!r} is unknown; known: {known}")
    row, created = await services.store.create_interview(
        job_id=data.job_id,
        candidate_id=data.candidate.id,
        candidate_name=data.candidate.name,
        candidate_phone=data.candidate.phone,
        candidate_timezone=data.candidate.timezone,
        external_key=data.external_key,
    )
    return web.json_response(_interview_out(row), status=201 if created else 200)


@require_token
async def get_interview(request: web.Request) -> web.Response:
    """One interview with its calls and transcript."""
    services = request.app[SERVICES_KEY]
    assert services.store is not None
    row = await services.store.get_interview(request.match_info["interview_id"])
    if row is None:
        return json_error(404, "not_found", "no such interview")
    out = _interview_out(row)
    calls = []
    for summary in await services.store.calls_for_interview(row["id"]):
        call = await services.store.get_call(summary["call_sid"])
        if call is not None:
            calls.append(call)
    out["calls"] = calls
    out["transcript"] = [
        {
            "call_sid": call["call_sid"],
            "speaker": t["speaker"],
            "text": t["text"],
            "start": t["start"],
            "end": t["end"],
        }
        for call in calls
        for t in call["turns"]
    ]
    return web.json_response(out)


@require_token
async def get_call(request: web.Request) -> web.Response:
    """One call with its turns."""
    services = request.app[SERVICES_KEY]
    assert services.store is not None
    call = await services.store.get_call(request.match_info["call_sid"])
    if call is None:
        return json_error(404, "not_found", "no such call")
    return web.json_response(call)


@require_token
async def list_jobs(request: web.Request) -> web.Response:
    """The job scripts loaded."""
    services = request.app[SERVICES_KEY]
    return web.json_response(
        [
            {
                "id": script.id,
                "title": script.title,
                "language": script.language,
                "questions": [{"id": q.id, "prompt": q.prompt} for q in script.questions],
            }
            for script in services.scripts.values()
        ]
    )


def add_routes(app: web.Application) -> None:
    """Register the REST endpoints."""
    app.router.add_post("/api/interviews", create_interview)
    app.router.add_get("/api/interviews/{interview_id}", get_interview)
    app.router.add_get("/api/calls/{call_sid}", get_call)
    app.router.add_get("/api/jobs", list_jobs)
