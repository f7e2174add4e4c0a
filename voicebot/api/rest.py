"""The REST API for the HR system: interviews, calls, jobs. Every route needs the bearer token.

Errors are JSON ``{"error": {"code": ..., "message": ...}}`` with a message that says what was
wrong and how to fix it.
"""

from __future__ import annotations

import asyncio
import hmac
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web
from pydantic import BaseModel, Field, ValidationError, field_validator

from voicebot.api.carrier import SERVICES_KEY
from voicebot.api.links import report_links
from voicebot.api.request_bodies import BadJsonBody, read_json_body
from voicebot.config import ADMIN_CLIENT
from voicebot.events.emitter import interview_refs
from voicebot.telephony.stream_token import InvalidStreamToken

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
E164 = re.compile(r"\+[1-9][0-9]{6,14}")
"""A phone number in E.164 form: ``+``, then 7-15 ASCII digits (fullmatch)."""


def json_error(status: int, code: str, message: str) -> web.Response:
    """A JSON error response."""
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


CLIENT_KEY = "api_client"
"""Request key of the authenticated API client's name (``admin`` for VOICEBOT_API_TOKEN)."""


def api_client(request: web.Request) -> str | None:
    """The API client a bearer token belongs to, or ``None`` (every token is compared)."""
    services = request.app[SERVICES_KEY]
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = token.strip()
    found = None
    candidates = [(ADMIN_CLIENT, services.settings.resolved_api_token())]
    candidates += list(services.settings.api_client_tokens().items())
    for name, expected in candidates:
        if hmac.compare_digest(token.encode(), expected.encode()) and found is None:
            found = name
    return found


def can_see(request: web.Request, row: dict[str, Any] | None) -> bool:
    """Whether the request's client may see this interview (its own, or admin: all)."""
    if row is None:
        return False
    client = request.get(CLIENT_KEY)
    return client == ADMIN_CLIENT or row.get("client", ADMIN_CLIENT) == client


def require_token(handler: Handler) -> Handler:
    """Decorator: reject requests without a valid ``Authorization: Bearer <token>``.

    The admin token (``VOICEBOT_API_TOKEN``) or one of the HR systems' tokens
    (``VOICEBOT_API_CLIENTS``); the client's name is put in ``request[CLIENT_KEY]``.
    """

    async def wrapper(request: web.Request) -> web.StreamResponse:
        services = request.app[SERVICES_KEY]
        client = api_client(request)
        if client is None:
            services.metrics.http_errors.labels("api", "unauthorized").inc()
            response = json_error(
                401,
                "unauthorized",
                "missing or wrong bearer token: send 'Authorization: Bearer <VOICEBOT_API_TOKEN>'",
            )
            response.headers["WWW-Authenticate"] = "Bearer"
            return response
        request[CLIENT_KEY] = client
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
        if value and not E164.fullmatch(value):
            raise ValueError(
                "phone must be in E.164 form: '+' then 7-15 ASCII digits 0-9 (no other digit"
                " scripts), e.g. +14155550100"
            )
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
        "status_history": row.get("status_history", []),
        "opted_out": bool(row.get("opted_out")),
        "attempts": row["attempts"],
        "external_key": row["external_key"],
        "client": row.get("client", ADMIN_CLIENT),
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
        body = await read_json_body(request, services.settings.api_max_body_bytes)
    except BadJsonBody as exc:
        services.metrics.http_errors.labels("api", exc.code).inc()
        return json_error(exc.status, exc.code, exc.message)
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
        client=request[CLIENT_KEY],
    )
    if created and services.events is not None:
        services.events.emit("candidate.status_changed", **interview_refs(row), status="invited")
    return web.json_response(_interview_out(row), status=201 if created else 200)


REPORT_PENDING_STATUSES = frozenset({"pending", "in_progress"})
"""No report yet: the interview has not been held (or is being held)."""


def _report_links(request: web.Request, report: dict[str, Any]) -> dict[str, Any]:
    """Fresh signed links for a report: its page and each call's recording."""
    services = request.app[SERVICES_KEY]
    assert services.link_signer is not None
    base = services.settings.public_url.rstrip("/") or f"{request.scheme}://{request.host}"
    return report_links(services.link_signer, base, report)


async def _report_of(request: web.Request, row: dict[str, Any]) -> dict[str, Any] | None:
    """The interview's stored report; built now if the call ended and none is stored yet."""
    services = request.app[SERVICES_KEY]
    if row.get("report") is not None or row["status"] in REPORT_PENDING_STATUSES:
        return row.get("report")
    from voicebot.dialogue.report import build_report

    script = services.scripts.get(row["job_id"])
    if script is None or not await services.store.calls_for_interview(row["id"]):
        return None
    return await build_report(services.store, script, row["id"])


def _authorised_link(request: web.Request, purpose: str, claim: str, value: str) -> bool:
    """Whether the request carries the API bearer token or a valid signed link for ``value``."""
    services = request.app[SERVICES_KEY]
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(
        token.strip(), services.settings.resolved_api_token()
    ):
        return True
    assert services.link_signer is not None
    try:
        claims = services.link_signer.verify(request.query.get("token"))
    except InvalidStreamToken:
        return False
    return claims.get("purpose") == purpose and claims.get(claim) == value


@require_token
async def get_interview(request: web.Request) -> web.Response:
    """One interview: status and its history, calls, transcript, the report when ready."""
    services = request.app[SERVICES_KEY]
    assert services.store is not None
    row = await services.store.get_interview(request.match_info["interview_id"])
    if not can_see(request, row):
        return json_error(404, "not_found", "no such interview")
    out = _interview_out(row)
    report = await _report_of(request, row)
    out["report"] = report
    out["links"] = None if report is None else _report_links(request, report)
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
async def get_interview_report(request: web.Request) -> web.Response:
    """The interview's report alone (JSON), with fresh signed links."""
    services = request.app[SERVICES_KEY]
    row = await services.store.get_interview(request.match_info["interview_id"])
    if not can_see(request, row):
        return json_error(404, "not_found", "no such interview")
    report = await _report_of(request, row)
    if report is None:
        return json_error(
            409,
            "report_not_ready",
            f"the interview is {row['status']}: its report is built when its call ends",
        )
    return web.json_response({**report, "links": _report_links(request, report)})


async def report_page(request: web.Request) -> web.Response:
    """The report as an HTML page: bearer token, or the signed link from the report's links."""
    from voicebot.dialogue.report_html import render_report

    services = request.app[SERVICES_KEY]
    interview_id = request.match_info["interview_id"]
    if not _authorised_link(request, "report", "interview_id", interview_id):
        services.metrics.http_errors.labels("report_page", "unauthorized").inc()
        return web.Response(
            status=401,
            text="This report link is invalid or has expired. Open the interview in the HR "
            "system (or GET /api/interviews/{id}) for a fresh link.",
        )
    row = await services.store.get_interview(interview_id)
    report = None if row is None else await _report_of(request, row)
    if report is None:
        return web.Response(status=404, text="No report for this interview (yet).")
    links = _report_links(request, report)
    html = render_report(report, recording_urls=links["recordings"])
    return web.Response(
        text=html,
        content_type="text/html",
        headers={
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
            "media-src 'self'",
            "X-Content-Type-Options": "nosniff",
        },
    )


async def recording_file(request: web.Request) -> web.StreamResponse:
    """A call's recording (stereo WAV): bearer token, or the signed link from a report."""
    services = request.app[SERVICES_KEY]
    call_sid = request.match_info["call_sid"]
    if not _authorised_link(request, "recording", "call_sid", call_sid):
        services.metrics.http_errors.labels("recording", "unauthorized").inc()
        return json_error(401, "unauthorized", "recording link invalid or expired")
    call = await services.store.get_call(call_sid)
    if call is None or not call.get("recording_dir"):
        return json_error(404, "not_found", "no recording for this call")
    path = Path(call["recording_dir"]) / "call.wav"
    if not path.is_file():
        return json_error(404, "not_found", "the recording file is missing")
    return web.FileResponse(
        path, headers={"Cache-Control": "no-store", "Content-Type": "audio/wav"}
    )


LIVE_HEARTBEAT_SECS = 15.0


@require_token
async def live_call(request: web.Request) -> web.StreamResponse:
    """WebSocket of one live call's events: position, transcripts, prosody samples, the end.

    The first message is a ``snapshot`` of where the call is; then every live event as JSON
    (``{"type", "call_sid", "t", "timestamp", "data"}``) until the call ends (``call.ended``)
    or the client leaves. A slow client loses the oldest events, never slows the call.
    """
    services = request.app[SERVICES_KEY]
    call_sid = request.match_info["call_sid"]
    session = services.sessions.get(call_sid)
    interview = getattr(session, "interview", None) or {}
    if session is None or not await _call_visible(request, interview.get("id")):
        return json_error(
            404, "not_live", "no call in progress with this sid here; GET /api/calls/{sid}"
        )
    ws = web.WebSocketResponse(heartbeat=LIVE_HEARTBEAT_SECS)
    await ws.prepare(request)
    with services.live.subscribe(call_sid) as subscription:
        await ws.send_json({"type": "snapshot", "call_sid": call_sid, "data": session.snapshot()})
        receiver = asyncio.create_task(ws.receive())  # notices the client leaving
        try:
            while not ws.closed:
                getter = asyncio.create_task(subscription.get())
                done, _ = await asyncio.wait(
                    {getter, receiver}, return_when=asyncio.FIRST_COMPLETED
                )
                if getter not in done:
                    getter.cancel()
                    break
                event = getter.result()
                await ws.send_json(event)
                if event["type"] == "call.ended":
                    break
        finally:
            receiver.cancel()
            await ws.close()
    return ws


@require_token
async def get_call(request: web.Request) -> web.Response:
    """One call with its turns."""
    services = request.app[SERVICES_KEY]
    assert services.store is not None
    call = await services.store.get_call(request.match_info["call_sid"])
    if call is None or not await _call_visible(request, call.get("interview_id")):
        return json_error(404, "not_found", "no such call")
    return web.json_response(call)


async def _call_visible(request: web.Request, interview_id: str | None) -> bool:
    """Whether the request's client may see a call (that of one of its interviews)."""
    if request.get(CLIENT_KEY) == ADMIN_CLIENT:
        return True
    if interview_id is None:
        return False
    services = request.app[SERVICES_KEY]
    return can_see(request, await services.store.get_interview(interview_id))


@require_token
async def list_jobs(request: web.Request) -> web.Response:
    """The job scripts loaded."""
    services = request.app[SERVICES_KEY]
    return web.json_response(
        [
            {
                "id": script.id,
                "title": script.title,
                "department": script.department,
                "language": script.language,
                "competencies": [
                    {
                        "id": c.id,
                        "name": c.name,
                        "weight": c.weight,
                        "description": c.description,
                        "keywords": c.keywords,
                        "rubric": [
                            {"score": level.score, "description": level.description}
                            for level in c.rubric
                        ],
                    }
                    for c in script.competencies
                ],
                "questions": [
                    {
                        "id": q.id,
                        "prompt": q.prompt,
                        "competency": q.competency,
                        "follow_up": None if q.follow_up is None else q.follow_up.prompt,
                        "knockout": None
                        if q.knockout is None
                        else {"expected": q.knockout.expected},
                        "dtmf": q.dtmf,
                    }
                    for q in script.questions
                ],
                "thresholds": script.thresholds.model_dump(),
            }
            for script in services.scripts.values()
        ]
    )


def add_routes(app: web.Application) -> None:
    """Register the REST endpoints."""
    app.router.add_post("/api/interviews", create_interview)
    app.router.add_get("/api/interviews/{interview_id}", get_interview)
    app.router.add_get("/api/interviews/{interview_id}/report", get_interview_report)
    app.router.add_get("/interviews/{interview_id}/report", report_page)
    app.router.add_get("/recordings/{call_sid}/call.wav", recording_file)
    app.router.add_get("/api/calls/{call_sid}", get_call)
    app.router.add_get("/api/calls/{call_sid}/live", live_call)
    app.router.add_get("/api/jobs", list_jobs)
