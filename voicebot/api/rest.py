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
from voicebot.api.links import RECORDING_FILE, report_links
from voicebot.api.request_bodies import BadJsonBody, read_json_body
from voicebot.api.stored_files import recording_response
from voicebot.campaigns.attempts import dial_attempts_of
from voicebot.config import ADMIN_CLIENT
from voicebot.events.emitter import interview_refs
from voicebot.events.types import format_timestamp
from voicebot.privacy.audit import record_access
from voicebot.telephony.stream_token import InvalidStreamToken

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
E164 = re.compile(r"\+[1-9][0-9]{6,14}")
"""A phone number in E.164 form: ``+``, then 7-15 ASCII digits (fullmatch)."""
INTEGER = re.compile(r"-?[0-9]{1,20}")
"""A query parameter the document calls an integer: ASCII digits (fullmatch)."""


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


def actor(request: web.Request) -> str:
    """Who makes the request, for the audit log: ``api:<client>``."""
    return f"api:{request.get(CLIENT_KEY)}"


async def audit(request: web.Request, action: str, **what: Any) -> None:
    """Record in the audit log that the request's client did ``action`` (see privacy.audit)."""
    await record_access(request.app[SERVICES_KEY], actor(request), action, **what)


async def _gone_or_missing(request: web.Request, interview_id: str) -> web.Response:
    """404, or 410 with the tombstone's date when the interview's candidate was erased."""
    services = request.app[SERVICES_KEY]
    stone = await services.store.tombstone_of_interview(interview_id)
    if stone is None or (
        request.get(CLIENT_KEY) != ADMIN_CLIENT and stone["client"] != request.get(CLIENT_KEY)
    ):
        return json_error(404, "not_found", "no such interview")
    when = format_timestamp(int(stone["erased_at"] * 1000))
    return json_error(
        410,
        "erased",
        f"the candidate of this interview was erased on request at {when}; nothing about them"
        " is kept here",
    )


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
            except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: "America" is a folder
                raise ValueError("timezone must be an IANA name, e.g. Asia/Shanghai") from None
        return value


class InterviewIn(BaseModel):
    """``POST /api/interviews`` body."""

    model_config = {"extra": "forbid"}

    job_id: str = Field(min_length=1)
    candidate: CandidateIn
    external_key: str | None = Field(None, max_length=200)
    campaign_id: str | None = Field(None, max_length=100)

    @field_validator("external_key")
    @classmethod
    def _external_key(cls, value: str | None) -> str | None:
        return value or None  # an empty key is no key (it was stored, then a 500 the next time)


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
        "campaign_id": row.get("campaign_id"),
        "next_attempt_at": row.get("next_attempt_at"),
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
    if data.job_id in services.refused_jobs:
        return json_error(422, "unknown_job", services.refused_jobs[data.job_id])
    if data.job_id not in services.scripts:
        known = ", ".join(sorted(services.scripts)) or "none loaded"
        return json_error(422, "unknown_job", f"job_id {data.job_id!r} is unknown; known: {known}")
    campaign = None
    if data.campaign_id is not None:
        from voicebot.api.campaigns import campaign_to_join

        campaign, refusal = await campaign_to_join(request, data)
        if refusal is not None:
            return refusal
    row, created = await services.store.create_interview(
        job_id=data.job_id,
        candidate_id=data.candidate.id,
        candidate_name=data.candidate.name,
        candidate_phone=data.candidate.phone,
        candidate_timezone=data.candidate.timezone,
        external_key=data.external_key,
        client=request[CLIENT_KEY],
    )
    if created and campaign is not None:
        from voicebot.campaigns.store import campaign_store

        campaigns = await campaign_store(services)
        await campaigns.join_campaign(row["id"], campaign, data.candidate.timezone)
        row = await services.store.get_interview(row["id"])
        if services.dialer is not None:
            services.dialer.wake()
    if created and services.events is not None:
        services.events.emit("candidate.status_changed", **interview_refs(row), status="invited")
    if created:
        await audit(request, "interview.create", interview=row)
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
    if "reports" in row.get("purged", ()):  # removed by the retention purge: not built again
        return None
    from voicebot.dialogue.report import build_report

    script = services.scripts.get(row["job_id"])
    if script is None or not await services.store.calls_for_interview(row["id"]):
        return None
    return await build_report(services.store, script, row["id"])


def _bearer_is_admin(request: web.Request) -> bool:
    """Whether the request carries the admin API token."""
    services = request.app[SERVICES_KEY]
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        token.strip(), services.settings.resolved_api_token()
    )


def _link_claims(request: web.Request, purpose: str, expect: dict[str, str]) -> dict | None:
    """The request's signed link's claims, if it is a valid ``purpose`` link bound as expected.

    ``expect`` maps claims to the values they must have; None (counted by reason) otherwise.
    """
    services = request.app[SERVICES_KEY]
    assert services.link_signer is not None
    signer = getattr(services.link_signer, purpose)
    try:
        return signer.verify(request.query.get("token"), expect=expect)
    except InvalidStreamToken as exc:
        services.metrics.http_errors.labels(f"{purpose}_link", exc.reason).inc()
        return None


@require_token
async def get_interview(request: web.Request) -> web.Response:
    """One interview: status and its history, calls, transcript, the report when ready."""
    services = request.app[SERVICES_KEY]
    assert services.store is not None
    row = await services.store.get_interview(request.match_info["interview_id"])
    if not can_see(request, row):
        if row is None:
            return await _gone_or_missing(request, request.match_info["interview_id"])
        return json_error(404, "not_found", "no such interview")
    await audit(request, "interview.read", interview=row)
    out = _interview_out(row)
    out["purged"] = row.get("purged", [])
    out["dial_attempts"] = await dial_attempts_of(services.store, row["id"])
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
        if row is None:
            return await _gone_or_missing(request, request.match_info["interview_id"])
        return json_error(404, "not_found", "no such interview")
    await audit(request, "report.read", interview=row)
    report = await _report_of(request, row)
    if report is None and "reports" in row.get("purged", ()):
        return json_error(
            410,
            "report_purged",
            "the report was removed by the retention policy (VOICEBOT_RETENTION_REPORTS_DAYS)",
        )
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
    if (
        not _bearer_is_admin(request)
        and _link_claims(request, "report", {"interview_id": interview_id}) is None
    ):
        services.metrics.http_errors.labels("report_page", "unauthorized").inc()
        return web.Response(
            status=401,
            text="This report link is invalid or has expired. Open the interview in the HR "
            "system (or GET /api/interviews/{id}) for a fresh link.",
        )
    row = await services.store.get_interview(interview_id)
    if row is not None:
        who = "api:admin" if _bearer_is_admin(request) else "link:report"
        await record_access(services, who, "report_page.open", interview=row)
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
    bearer = _bearer_is_admin(request)
    claims = None
    if not bearer:
        claims = _link_claims(request, "recording", {"call_sid": call_sid, "file": RECORDING_FILE})
    if not bearer and claims is None:
        services.metrics.http_errors.labels("recording", "unauthorized").inc()
        return json_error(401, "unauthorized", "recording link invalid or expired")
    call = await services.store.get_call(call_sid)
    if claims is not None and (call is None or call.get("interview_id") != claims["interview_id"]):
        services.metrics.http_errors.labels("recording", "unauthorized").inc()
        return json_error(401, "unauthorized", "recording link invalid or expired")
    if call is None or not call.get("recording_dir"):
        return json_error(404, "not_found", "no recording for this call")
    who = "api:admin" if bearer else "link:recording"
    await record_access(
        services, who, "recording.open", interview_id=call.get("interview_id"), call_sid=call_sid
    )
    path = Path(call["recording_dir"]) / RECORDING_FILE
    if not path.is_file():
        return json_error(404, "not_found", "the recording file is missing")
    return await recording_response(request, path, services.keyring)


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
    await audit(request, "call.watch", interview=interview, call_sid=call_sid)
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
    await audit(
        request, "call.read", interview_id=call.get("interview_id"), call_sid=call["call_sid"]
    )
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


@require_token
async def erase_candidate(request: web.Request) -> web.Response:
    """Erase a candidate's data everywhere (PIPL art. 19/47, GDPR art. 17); see privacy.erasure.

    200 with the tombstones (``status``: ``erased``, or ``already_erased`` when done before);
    404 for a candidate id this client never created an interview for; 409 while the candidate
    is on a call or their report is being built (nothing erased: try again after the call); 503
    when the store is erased but a copy elsewhere could not be reached (DELETE again finishes).
    """
    from voicebot.privacy.erasure import CandidateBusy, ErasureIncomplete
    from voicebot.privacy.erasure import erase_candidate as erase

    services = request.app[SERVICES_KEY]
    candidate_id = request.match_info["candidate_id"]
    try:
        erasure = await erase(services, candidate_id, request[CLIENT_KEY], actor(request))
    except CandidateBusy as exc:
        services.metrics.http_errors.labels("erase_candidate", "busy").inc()
        return json_error(409, "candidate_busy", str(exc))
    except ErasureIncomplete as exc:
        response = json_error(503, "erasure_incomplete", str(exc))
        response.headers["Retry-After"] = "5"
        return response
    if erasure is None:
        return json_error(
            404,
            "not_found",
            "no interview was ever created for this candidate id by this API client",
        )
    return web.json_response(erasure.body())


AUDIT_PAGE_MAX = 500


@require_token
async def audit_log(request: web.Request) -> web.Response:
    """The audit log, oldest first, paged: ``?after=<seq>&limit=<1..500>[&interview_id=]``.

    Admin token only. ``next_after`` is the ``after`` of the next page (null: none yet).
    """
    services = request.app[SERVICES_KEY]
    if request[CLIENT_KEY] != ADMIN_CLIENT:
        services.metrics.http_errors.labels("audit", "forbidden").inc()
        return json_error(403, "forbidden", "the audit log is readable with the admin token only")
    after_text, limit_text = request.query.get("after", "0"), request.query.get("limit", "100")
    if not (INTEGER.fullmatch(after_text) and INTEGER.fullmatch(limit_text)):  # int() takes "５"
        services.metrics.http_errors.labels("audit", "bad_query").inc()
        return json_error(
            400, "bad_query", "after and limit must be integers, e.g. ?after=0&limit=100"
        )
    after, limit = int(after_text), int(limit_text)
    if not 0 <= after < 2**63 or not 1 <= limit <= AUDIT_PAGE_MAX:
        services.metrics.http_errors.labels("audit", "bad_query").inc()
        return json_error(
            400, "bad_query", f"after must be >= 0 and limit between 1 and {AUDIT_PAGE_MAX}"
        )
    entries = await services.audit.entries(
        after=after, limit=limit, interview_id=request.query.get("interview_id") or None
    )
    return web.json_response(
        {
            "entries": entries,
            "next_after": entries[-1]["seq"] if len(entries) == limit else None,
        }
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
    app.router.add_delete("/api/candidates/{candidate_id}", erase_candidate)
    app.router.add_get("/api/audit", audit_log)
