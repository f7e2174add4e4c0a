"""REST routes of outbound campaigns and the do-not-call list (issue 20).

``/api/campaigns``: a job and a calling policy (:class:`voicebot.campaigns.hours.CallingPolicy`,
given flat in the body) that the dialer works through; candidates join in bulk, as a JSON list or
a ``text/csv`` file with the header ``id,name,phone,timezone,external_key``: every row gets a
result, bad rows are reported by number with what is wrong, good rows are queued (one
transaction). An API client sees and changes only its own campaigns (the admin token: all).

``/api/opt-outs``: the do-not-call list, admin token only; each change needs a reason and is
written to the audit log. Errors have the API's shape ``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field, ValidationError, field_validator

from voicebot.api.carrier import SERVICES_KEY
from voicebot.api.request_bodies import BadJsonBody, read_json_body
from voicebot.api.rest import CLIENT_KEY, E164, actor, audit, json_error, require_token
from voicebot.campaigns.hours import (
    CallingHours,
    CallingPolicy,
    NoCallingWindow,
    next_window_start,
    valid_zone,
)
from voicebot.campaigns.store import SCHEDULED_STATUSES, CandidateRow, campaign_store
from voicebot.config import ADMIN_CLIENT
from voicebot.events.emitter import interview_refs
from voicebot.monitor.registry import campaign_changed
from voicebot.store.database import INTERVIEW_STATUSES

CSV_COLUMNS = ("id", "name", "phone", "timezone", "external_key")
"""The columns of a candidates CSV (header row required; order free; name, timezone and
external_key may be left out)."""
REQUIRED_COLUMNS = ("id", "phone")
EMIT_BATCH = 200
"""Events emitted for an import between two yields to the event loop."""


def _problems(exc: ValidationError, prefix: str = "") -> str:
    return "; ".join(
        f"{prefix}{'.'.join(str(p) for p in err['loc']) or '(body)'}: "
        f"{err['msg'].removeprefix('Value error, ')}"
        for err in exc.errors()
    )


def normalize_phone(value: str) -> str:
    """A phone number without spaces and dashes (``+1 415-555-0100`` -> ``+14155550100``)."""
    return value.replace(" ", "").replace("-", "")


class CampaignIn(BaseModel):
    """``POST /api/campaigns``: a job and its calling policy (the policy's fields, flat)."""

    model_config = {"extra": "forbid"}

    job_id: str = Field(min_length=1)
    name: str = Field("", max_length=200)
    # strict: JSON's true/false and numbers only (0 is no boolean, "3" no number)
    paused: bool = Field(False, strict=True)
    calling_hours: CallingHours = Field(default_factory=CallingHours)
    timezone: str = "UTC"
    max_attempts: int = Field(3, strict=True)
    retry_after_secs: float = Field(86400.0, strict=True)
    spread_retries: bool = Field(False, strict=True)
    max_concurrent: int = Field(5, strict=True)
    caller_id: str | None = None

    def policy(self) -> CallingPolicy:
        """The calling policy (validated: raises ``ValidationError`` saying what to fix)."""
        return CallingPolicy.model_validate(self.model_dump(exclude={"job_id", "name", "paused"}))


class CandidateRowIn(BaseModel):
    """One candidate joining a campaign (a JSON list item or a CSV row)."""

    model_config = {"extra": "forbid"}

    id: str = Field(min_length=1, max_length=200)
    name: str = Field("", max_length=200)
    phone: str = Field(min_length=1, max_length=20)
    timezone: str = Field("", max_length=64)
    external_key: str | None = Field(None, max_length=200)

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str) -> str:
        value = normalize_phone(value)
        if not E164.fullmatch(value):
            raise ValueError(
                "phone must be in E.164 form: '+' then 7-15 ASCII digits, e.g. +14155550100"
            )
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        if value and not valid_zone(value):
            raise ValueError("timezone must be an IANA name, e.g. Asia/Shanghai (or empty)")
        return value

    @field_validator("external_key")
    @classmethod
    def _external_key(cls, value: str | None) -> str | None:
        return value or None


def campaign_out(campaign: dict[str, Any], progress: dict[str, Any]) -> dict[str, Any]:
    """A campaign as the API shows it: its policy (flat), state and progress."""
    policy: CallingPolicy = campaign["policy"]
    counts = {status: progress["by_status"].get(status, 0) for status in INTERVIEW_STATUSES}
    return {
        "id": campaign["id"],
        "client": campaign["client"],
        "job_id": campaign["job_id"],
        "name": campaign["name"],
        "paused": campaign["paused"],
        **policy.model_dump(mode="json"),
        "created_at": campaign["created_at"],
        "updated_at": campaign["updated_at"],
        "interviews": progress["interviews"],
        "by_status": counts,
        "attempts_by_outcome": progress["attempts_by_outcome"],
        "attempts": progress["attempts"],
        "calls_up": progress["calls_up"],
        "scheduled": progress["scheduled"],
        "next_attempt_at": progress["next_attempt_at"],
    }


def _visible(request: web.Request, campaign: dict[str, Any] | None) -> bool:
    if campaign is None:
        return False
    client = request.get(CLIENT_KEY)
    return client == ADMIN_CLIENT or campaign["client"] == client


async def _campaign_or_404(request: web.Request) -> tuple[Any, dict[str, Any] | None]:
    services = request.app[SERVICES_KEY]
    campaigns = await campaign_store(services)
    campaign = await campaigns.get_campaign(request.match_info["campaign_id"])
    return campaigns, campaign if _visible(request, campaign) else None


def _not_found() -> web.Response:
    return json_error(404, "not_found", "no such campaign (GET /api/campaigns lists yours)")


def _unknown_job(services: Any, job_id: str) -> str | None:
    """Why ``job_id`` cannot be dialed, or None."""
    if job_id in services.refused_jobs:
        return services.refused_jobs[job_id]
    if job_id not in services.scripts:
        known = ", ".join(sorted(services.scripts)) or "none loaded"
        return f"job_id {job_id!r} is unknown; known: {known}"
    return None


@require_token
async def create_campaign(request: web.Request) -> web.Response:
    """Create a campaign: a job and its calling policy."""
    services = request.app[SERVICES_KEY]
    try:
        body = await read_json_body(request, services.settings.api_max_body_bytes)
    except BadJsonBody as exc:
        services.metrics.http_errors.labels("campaigns", exc.code).inc()
        return json_error(exc.status, exc.code, exc.message)
    try:
        data = CampaignIn.model_validate(body)
        policy = data.policy()
    except ValidationError as exc:
        services.metrics.http_errors.labels("campaigns", "invalid_campaign").inc()
        return json_error(422, "invalid_campaign", _problems(exc))
    why = _unknown_job(services, data.job_id)
    if why is not None:
        services.metrics.http_errors.labels("campaigns", "unknown_job").inc()
        return json_error(422, "unknown_job", why)
    campaigns = await campaign_store(services)
    campaign = await campaigns.create_campaign(
        client=request[CLIENT_KEY],
        job_id=data.job_id,
        name=data.name,
        policy=policy,
        paused=data.paused,
    )
    await audit(
        request, "campaign.create", detail={"campaign_id": campaign["id"], "job_id": data.job_id}
    )
    return web.json_response(
        campaign_out(campaign, await campaigns.progress(campaign["id"])), status=201
    )


@require_token
async def list_campaigns(request: web.Request) -> web.Response:
    """The client's campaigns (the admin token: every client's), newest first."""
    services = request.app[SERVICES_KEY]
    campaigns = await campaign_store(services)
    client = request[CLIENT_KEY]
    rows = await campaigns.list_campaigns(None if client == ADMIN_CLIENT else client)
    return web.json_response(
        {"campaigns": [campaign_out(row, await campaigns.progress(row["id"])) for row in rows]}
    )


@require_token
async def get_campaign(request: web.Request) -> web.Response:
    """One campaign: its policy, counts by status, attempts by outcome, calls up, next due."""
    campaigns, campaign = await _campaign_or_404(request)
    if campaign is None:
        return _not_found()
    return web.json_response(campaign_out(campaign, await campaigns.progress(campaign["id"])))


async def _set_paused(request: web.Request, paused: bool) -> web.Response:
    campaigns, campaign = await _campaign_or_404(request)
    if campaign is None:
        return _not_found()
    moved = await campaigns.set_paused(campaign["id"], paused)
    campaign_changed(getattr(request.app[SERVICES_KEY], "live", None), campaign["id"])
    action = "campaign.pause" if paused else "campaign.resume"
    if not paused:
        _wake_dialer(request.app[SERVICES_KEY])
    await audit(request, action, detail={"campaign_id": campaign["id"], "rescheduled": moved})
    campaign = await campaigns.get_campaign(campaign["id"])
    return web.json_response(campaign_out(campaign, await campaigns.progress(campaign["id"])))


@require_token
async def pause_campaign(request: web.Request) -> web.Response:
    """Stop dialing a campaign (calls up now go on); idempotent."""
    return await _set_paused(request, True)


@require_token
async def resume_campaign(request: web.Request) -> web.Response:
    """Dial a paused campaign again; overdue attempts move into the next calling window."""
    return await _set_paused(request, False)


async def campaign_to_join(
    request: web.Request, data: Any
) -> tuple[dict[str, Any] | None, web.Response | None]:
    """For ``POST /api/interviews`` with ``campaign_id``: the campaign, or the 422 refusing it."""
    services = request.app[SERVICES_KEY]
    campaigns = await campaign_store(services)
    campaign = await campaigns.get_campaign(data.campaign_id)
    code, message = "", ""
    if not _visible(request, campaign):
        code = "unknown_campaign"
        message = (
            f"campaign_id {data.campaign_id!r} is not one of your campaigns (GET /api/campaigns)"
        )
    elif campaign["job_id"] != data.job_id:
        code = "campaign_job_mismatch"
        message = (
            f"campaign {campaign['id']} dials for job {campaign['job_id']!r}, not"
            f" {data.job_id!r}: send that job_id or another campaign"
        )
    elif not data.candidate.phone:
        code = "phone_required"
        message = "candidate.phone is required to join a campaign (the dialer calls it)"
    elif await campaigns.do_not_call.is_opted_out(data.candidate.phone):
        code = "do_not_call"
        message = "the candidate's phone number is on the do-not-call list: not queued"
    else:
        try:
            next_window_start(campaign["policy"], data.candidate.timezone, time.time())
        except NoCallingWindow as exc:
            code, message = "no_window", str(exc)
    if code:
        services.metrics.http_errors.labels("interviews", code).inc()
        return None, json_error(422, code, message)
    return campaign, None


class BadRows(ValueError):
    """The body cannot be read as rows at all (422 ``invalid_rows``)."""


def _csv_rows(text: str) -> list[tuple[int, int, dict[str, str]]]:
    """(row number, line, fields) of each data row of a candidates CSV; BadRows if unusable."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise BadRows(
            "the CSV is empty: send a header row id,name,phone,timezone,external_key"
        ) from None
    except csv.Error as exc:
        raise BadRows(f"the CSV header cannot be read ({exc})") from None
    header = [name.strip().lstrip("\ufeff").lower() for name in header]
    unknown = [name for name in header if name not in CSV_COLUMNS]
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    if unknown or missing or len(set(header)) != len(header):
        raise BadRows(
            "the CSV's first row must name its columns, from id,name,phone,timezone,external_key"
            " (id and phone required, each once)"
            + (f"; unknown: {', '.join(unknown)}" if unknown else "")
            + (f"; missing: {', '.join(missing)}" if missing else "")
        )
    rows: list[tuple[int, int, dict[str, str]]] = []
    number = 0
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise BadRows(f"line {reader.line_num}: the CSV cannot be read ({exc})") from None
        if not any(field.strip() for field in fields):
            continue  # blank lines are not rows
        number += 1
        if len(fields) != len(header):
            rows.append((number, reader.line_num, {"__width__": str(len(fields))}))
            continue
        rows.append(
            (number, reader.line_num, {k: v.strip() for k, v in zip(header, fields, strict=True)})
        )
    return rows


async def _read_rows(request: web.Request) -> list[tuple[int, int | None, Any]]:
    """The request's candidate rows: (row number, CSV line or None, raw row)."""
    services = request.app[SERVICES_KEY]
    limit = services.settings.api_max_import_bytes
    if request.content_type == "text/csv":
        if request.content_length is not None and request.content_length > limit:
            raise BadJsonBody(413, "body_too_large", _too_big(limit))
        raw = await request.content.read(limit + 1)
        if len(raw) > limit or not request.content.at_eof():
            raise BadJsonBody(413, "body_too_large", _too_big(limit))
        try:
            text = raw.decode(request.charset or "utf-8")
        except (UnicodeDecodeError, LookupError):
            raise BadRows("the CSV is not UTF-8: save it as UTF-8 CSV") from None
        return await asyncio.to_thread(_csv_rows, text)
    body = await read_json_body(request, limit)
    if not isinstance(body, list):
        raise BadRows(
            'send a JSON list of candidates ([{"id", "name", "phone", "timezone",'
            ' "external_key"}, ...]) or a text/csv file with that header row'
        )
    return [(n, None, row) for n, row in enumerate(body, start=1)]


def _too_big(limit: int) -> str:
    return (
        f"request body is larger than {limit} bytes (VOICEBOT_API_MAX_IMPORT_BYTES): send the"
        " candidates in several requests"
    )


def _validate_rows(
    raw_rows: list[tuple[int, int | None, Any]],
) -> tuple[list[tuple[int, CandidateRow]], dict[int, dict[str, Any]], dict[int, int]]:
    """The good rows, the invalid ones' results by row number, and each CSV row's line."""
    good: list[tuple[int, CandidateRow]] = []
    invalid: dict[int, dict[str, Any]] = {}
    lines: dict[int, int] = {}
    for number, line, raw in raw_rows:
        if line is not None:
            lines[number] = line
        where = f"row {number}" + (f" (line {line})" if line is not None else "")
        if isinstance(raw, dict) and "__width__" in raw:
            invalid[number] = _invalid(
                number, f"{where}: has {raw['__width__']} fields, the header has another count"
            )
            continue
        if not isinstance(raw, dict):
            invalid[number] = _invalid(number, f"{where}: must be an object with id and phone")
            continue
        try:
            row = CandidateRowIn.model_validate(raw)
        except ValidationError as exc:
            invalid[number] = _invalid(number, _problems(exc, f"{where}: "))
            continue
        good.append((number, CandidateRow(**row.model_dump())))
    return good, invalid, lines


@require_token
async def add_interviews(request: web.Request) -> web.Response:
    """Queue candidates in a campaign: per-row results, bad rows by number, good rows kept."""
    services = request.app[SERVICES_KEY]
    campaigns, campaign = await _campaign_or_404(request)
    if campaign is None:
        return _not_found()
    try:
        raw_rows = await _read_rows(request)
    except BadJsonBody as exc:
        services.metrics.http_errors.labels("campaign_import", exc.code).inc()
        return json_error(exc.status, exc.code, exc.message)
    except BadRows as exc:
        services.metrics.http_errors.labels("campaign_import", "invalid_rows").inc()
        return json_error(422, "invalid_rows", str(exc))
    why = _unknown_job(services, campaign["job_id"])
    if why is not None:
        return json_error(409, "unknown_job", f"the campaign's job is not served now: {why}")
    # Validating thousands of rows is CPU work: a thread, so live calls' audio keeps flowing.
    good, invalid, lines = await asyncio.to_thread(_validate_rows, raw_rows)
    stored = {r["row"]: r for r in await campaigns.add_interviews(campaign, good)}
    results = []
    for number, _line, _raw in raw_rows:
        result = invalid.get(number) or stored[number]
        if number in lines:
            result["line"] = lines[number]
        results.append(result)
    counts = {status: 0 for status in ("queued", "exists", "refused", "invalid")}
    for result in results:
        counts[result["status"]] += 1
    if counts["invalid"]:
        services.metrics.http_errors.labels("campaign_import", "bad_row").inc(counts["invalid"])
    if counts["refused"]:
        services.metrics.http_errors.labels("campaign_import", "refused_row").inc(counts["refused"])
    if services.events is not None and counts["queued"]:
        candidates = dict(good)
        for n, result in enumerate(r for r in results if r["status"] == "queued"):
            services.events.emit(
                "candidate.status_changed",
                **_refs(campaign, result["id"], candidates[result["row"]]),
                status="invited",
            )
            if n % EMIT_BATCH == EMIT_BATCH - 1:
                await asyncio.sleep(0)  # let calls' audio through between batches
    await audit(request, "campaign.import", detail={"campaign_id": campaign["id"], **counts})
    if counts["queued"]:
        _wake_dialer(services)
        campaign_changed(getattr(services, "live", None), campaign["id"])
    body = {"campaign_id": campaign["id"], **counts, "results": results}
    return web.Response(
        text=await asyncio.to_thread(json.dumps, body), content_type="application/json"
    )


def _wake_dialer(services: Any) -> None:
    """Due interviews are dialed now, not at the dialer's next look at the store (up to 2 s)."""
    if services.dialer is not None:
        services.dialer.wake()


def _refs(campaign: dict[str, Any], interview_id: str, candidate: CandidateRow) -> dict[str, Any]:
    return interview_refs(
        {
            "id": interview_id,
            "job_id": campaign["job_id"],
            "candidate_id": candidate.id,
            "external_key": candidate.external_key,
            "client": campaign["client"],
        }
    )


def _invalid(number: int, message: str) -> dict[str, Any]:
    return {"row": number, "status": "invalid", "code": "invalid_row", "error": message}


# -- the do-not-call list ---------------------------------------------------------------------


class OptOutIn(BaseModel):
    """``POST /api/opt-outs``."""

    model_config = {"extra": "forbid"}

    phone: str = Field(min_length=1, max_length=20)
    reason: str = Field(min_length=1, max_length=500)

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str) -> str:
        value = normalize_phone(value)
        if not E164.fullmatch(value):
            raise ValueError("phone must be in E.164 form, e.g. +14155550100")
        return value

    @field_validator("reason")
    @classmethod
    def _reason(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("say why the number is listed (e.g. 'asked by email on 2026-03-01')")
        return value.strip()


def _admin_only(request: web.Request) -> web.Response | None:
    if request[CLIENT_KEY] == ADMIN_CLIENT:
        return None
    request.app[SERVICES_KEY].metrics.http_errors.labels("opt_outs", "forbidden").inc()
    return json_error(
        403, "forbidden", "the do-not-call list is changed and read with the admin token only"
    )


@require_token
async def add_opt_out(request: web.Request) -> web.Response:
    """List a number: no campaign dials it; its scheduled campaign interviews are closed."""
    services = request.app[SERVICES_KEY]
    if (refused := _admin_only(request)) is not None:
        return refused
    try:
        body = await read_json_body(request, services.settings.api_max_body_bytes)
        data = OptOutIn.model_validate(body)
    except BadJsonBody as exc:
        services.metrics.http_errors.labels("opt_outs", exc.code).inc()
        return json_error(exc.status, exc.code, exc.message)
    except ValidationError as exc:
        services.metrics.http_errors.labels("opt_outs", "invalid_opt_out").inc()
        return json_error(422, "invalid_opt_out", _problems(exc))
    campaigns = await campaign_store(services)
    entry, created = await campaigns.do_not_call.add(
        data.phone, reason=data.reason, source="api", added_by=actor(request)
    )
    closed = await close_scheduled_interviews(services, data.phone) if created else []
    if created:
        await audit(
            request,
            "opt_out.add",
            detail={
                "phone_key": campaigns.do_not_call.keys.primary(data.phone),
                "reason": data.reason[:200],
                "interviews_closed": closed,
            },
        )
    return web.json_response(entry, status=201 if created else 200)


async def close_scheduled_interviews(services: Any, phone: str) -> list[str]:
    """A number was listed: its campaign interviews still to be dialed become ``opted_out``.

    Their scheduled attempts are cancelled and the HR system is told (the candidate's status).
    Returns their ids.
    """
    store = services.store
    same_phone, params = store._phone_match(phone)
    marks = ", ".join("?" * len(SCHEDULED_STATUSES))
    rows = await store._all(
        f"SELECT id FROM interviews WHERE {same_phone} AND campaign_id IS NOT NULL"
        f" AND status IN ({marks})",
        (*params, *SCHEDULED_STATUSES),
    )
    campaigns = await campaign_store(services)
    for row in rows:
        await campaigns.cancel_scheduled_attempts(row["id"])
        await store.update_interview(row["id"], status="opted_out", opted_out=1)
        interview = await store.get_interview(row["id"])
        if services.events is not None and interview is not None:
            services.events.emit(
                "candidate.status_changed", **interview_refs(interview), status="opted_out"
            )
    return [row["id"] for row in rows]


@require_token
async def list_opt_outs(request: web.Request) -> web.Response:
    """The do-not-call list, newest first (an erased candidate's entry has no number)."""
    services = request.app[SERVICES_KEY]
    if (refused := _admin_only(request)) is not None:
        return refused
    campaigns = await campaign_store(services)
    entries = await campaigns.do_not_call.entries()
    await audit(request, "opt_out.list", detail={"entries": len(entries)})
    return web.json_response({"opt_outs": entries})


@require_token
async def remove_opt_out(request: web.Request) -> web.Response:
    """Take a number off the list (``?reason=`` required: the audit log keeps it)."""
    services = request.app[SERVICES_KEY]
    if (refused := _admin_only(request)) is not None:
        return refused
    phone = normalize_phone(request.match_info["phone"])
    if not E164.fullmatch(phone):
        services.metrics.http_errors.labels("opt_outs", "bad_phone").inc()
        return json_error(
            400,
            "bad_phone",
            "the path must end in an E.164 number, e.g. /api/opt-outs/+14155550100",
        )
    reason = request.query.get("reason", "").strip()
    if not reason:
        services.metrics.http_errors.labels("opt_outs", "reason_required").inc()
        return json_error(
            400,
            "reason_required",
            "say why the number may be called again: DELETE /api/opt-outs/{phone}?reason=...",
        )
    campaigns = await campaign_store(services)
    key = campaigns.do_not_call.keys.primary(phone)
    entry = await campaigns.do_not_call.remove(phone)
    if entry is None:
        return json_error(404, "not_found", "this number is not on the do-not-call list")
    await audit(request, "opt_out.remove", detail={"phone_key": key, "reason": reason[:200]})
    return web.json_response({**entry, "removed_at": time.time()})


def add_routes(app: web.Application) -> None:
    """Register the campaign and do-not-call endpoints."""
    app.router.add_post("/api/campaigns", create_campaign)
    app.router.add_get("/api/campaigns", list_campaigns)
    app.router.add_get("/api/campaigns/{campaign_id}", get_campaign)
    app.router.add_post("/api/campaigns/{campaign_id}/pause", pause_campaign)
    app.router.add_post("/api/campaigns/{campaign_id}/resume", resume_campaign)
    app.router.add_post("/api/campaigns/{campaign_id}/interviews", add_interviews)
    app.router.add_post("/api/opt-outs", add_opt_out)
    app.router.add_get("/api/opt-outs", list_opt_outs)
    app.router.add_delete("/api/opt-outs/{phone}", remove_opt_out)
