"""The recruiters' live monitor: ``GET /monitor``, its JSON API and its WebSockets.

Access: a recruiter signs in at ``/monitor`` (accounts from ``voicebot users add``); the session
is a random token in an HttpOnly, SameSite=Strict, Secure cookie, stored server-side as a hash
(shared by every process through Redis when configured). Every route below checks it; state
changing requests (sign-in, sign-out) and WebSocket handshakes must come from this origin, and
sign-out needs the session's CSRF token. Admins see every call; a department manager sees only
calls of jobs whose script names their department; anything else is answered as not found.

Live data comes from the call registry (who is on, in every process) and the live feed (one
call's events, from whichever process holds it): nothing here touches a call's audio path.

Routes:

- ``GET /monitor``: the app for a signed-in recruiter, the sign-in form otherwise.
- ``POST /monitor/login``, ``POST /monitor/logout``; ``GET /monitor/api/me``.
- ``GET /monitor/api/calls``: ``{"live": [...], "recent": [...]}``; every call names its job's
  ``language`` (the catalogue's: the page shows what it says about the call in it).
- ``GET /monitor/api/calls/{sid}``: one call with its turns, questions, recording and report
  links.
- ``GET /monitor/recordings/{sid}/call.wav``: the recording (range requests for seeking).
- ``GET /monitor/ws``: the call lists, then ``call.updated`` / ``call.ended``.
- ``GET /monitor/ws/calls/{sid}``: a snapshot of one live call, then its live events.
- ``GET /monitor/ws/calls/{sid}/audio``: listen-in, binary 100 ms mu-law chunks.
- The campaigns view (``/monitor/api/campaigns``, ``/monitor/ws/campaigns``):
  :mod:`voicebot.monitor.campaigns`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from voicebot.api.carrier import SERVICES_KEY
from voicebot.api.links import report_link
from voicebot.api.request_bodies import read_form
from voicebot.api.stored_files import recording_response
from voicebot.call.listen import audio_channel, chunk_frame
from voicebot.crypto import Keyring, json_lines, read_stored_file
from voicebot.dialogue.messages import catalogue_language
from voicebot.monitor.accounts import AccountError, MonitorSession
from voicebot.monitor.pages import SECURITY_HEADERS, app_page, login_page
from voicebot.monitor.registry import CALLS_CHANNEL
from voicebot.privacy.audit import record_access

log = logging.getLogger(__name__)

COOKIE = "voicebot_monitor"
STATIC_DIR = Path(__file__).parent / "static"
SESSION_KEY = web.RequestKey("monitor_session", MonitorSession)
RECHECK_SECS = 30.0
"""An open WebSocket re-checks its sign-in this often (sign-out or expiry closes it)."""
WS_HEARTBEAT_SECS = 15.0
CLOSE_UNAUTHORISED = 4401
CLOSE_NOT_FOUND = 4404
CLOSE_TRY_AGAIN = 1013
RECENT_LIMIT = 50

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# -- access ----------------------------------------------------------------------------------


def _same_origin(request: web.Request) -> bool:
    """Whether the request came from a page of this server.

    No Origin header: not a browser's cross-site request, allowed.
    """
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc == request.host


class AccountsUnavailable(web.HTTPServiceUnavailable):
    """The account store (Redis) cannot be reached: sign-ins wait, calls go on."""

    def __init__(self) -> None:
        super().__init__(
            text=json.dumps(
                {
                    "error": {
                        "code": "accounts_unavailable",
                        "message": "sign-in is unavailable: the account store cannot be "
                        "reached; try again in a moment",
                    }
                }
            ),
            content_type="application/json",
            headers={"Retry-After": "5"},
        )


async def _accounts(request: web.Request, call: Awaitable[Any]) -> Any:
    """Await an account-store call; its outage is a 503, counted, never a crash."""
    try:
        return await call
    except AccountError:
        raise
    except Exception as error:
        services = request.app[SERVICES_KEY]
        services.metrics.internal_errors.labels(where="monitor_accounts").inc()
        log.warning("monitor: account store unreachable (%s)", error)
        raise AccountsUnavailable() from None


async def current_session(request: web.Request) -> MonitorSession | None:
    """The signed-in recruiter's session, or None (:class:`AccountsUnavailable` if unknown)."""
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    return await _accounts(request, request.app[SERVICES_KEY].accounts.get_session(token))


def _json_error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def require_login(handler: Handler) -> Handler:
    """JSON routes: 401 without a valid sign-in."""

    async def wrapper(request: web.Request) -> web.StreamResponse:
        session = await current_session(request)
        if session is None:
            return _json_error(401, "signed_out", "sign in at /monitor")
        request[SESSION_KEY] = session
        return await handler(request)

    return wrapper


def department_of(request: web.Request, job_id: str | None) -> str | None:
    """The department owning a job (its script's), or None."""
    script = request.app[SERVICES_KEY].scripts.get(job_id or "")
    return None if script is None else script.department


def can_view(session: MonitorSession, department: str | None) -> bool:
    """Admins see every call; a manager only calls of their department's jobs."""
    if session.role == "admin":
        return True
    return department is not None and department == session.department


def _with_job(request: web.Request, call: dict[str, Any]) -> dict[str, Any]:
    """A call summary with its job's title, department and language from the loaded scripts.

    ``language`` is the message catalogue's (``"zh"``, ``"en"``): the page shows what it says
    about the call in it.
    """
    script = request.app[SERVICES_KEY].scripts.get(call.get("job_id") or "")
    if script is None:
        return call
    return {
        **call,
        "job_title": script.title,
        "department": script.department,
        "language": catalogue_language(script.language),
    }


def _questions(script: Any) -> list[dict[str, Any]]:
    """A script's questions as the monitor lists them."""
    if script is None:
        return []
    return [{"id": q.id, "prompt": q.prompt, "competency": q.competency} for q in script.questions]


def _visible(request: web.Request, session: MonitorSession, calls: list[dict]) -> list[dict]:
    out = []
    for call in calls:
        call = _with_job(request, call)
        if can_view(session, call.get("department")):
            out.append(call)
    return out


# -- pages -----------------------------------------------------------------------------------


def _page(html: str, status: int = 200) -> web.Response:
    return web.Response(
        text=html, status=status, content_type="text/html", headers=SECURITY_HEADERS
    )


async def monitor_page(request: web.Request) -> web.Response:
    """The monitor app, or the sign-in form."""
    try:
        session = await current_session(request)
    except AccountsUnavailable:
        return _page(login_page("Sign-in is unavailable for a moment; reload to try again."), 503)
    if session is None:
        return _page(login_page())
    return _page(app_page(session.username, session.role, session.department, session.csrf))


def _client_ip(request: web.Request) -> str:
    return request.remote or "unknown"


async def login(request: web.Request) -> web.Response:
    """Check the form's username and password; on success set the session cookie."""
    services = request.app[SERVICES_KEY]
    metrics = services.metrics
    if not _same_origin(request):
        metrics.monitor_logins.labels("refused").inc()
        return _page(login_page("Sign in from this server's own page."), 403)
    form = await read_form(request)
    username = str(form.get("username", "")).strip().lower()[:64]
    password = str(form.get("password", ""))
    throttle = services.login_throttle
    ip = _client_ip(request)
    # Decided and counted before the slow password check: concurrent guesses cannot all pass.
    wait = await throttle.begin_attempt(username, ip)
    if wait > 0:
        metrics.monitor_logins.labels("throttled").inc()
        minutes = max(1, round(wait / 60))
        response = _page(
            login_page(f"Too many failed sign-ins. Try again in about {minutes} min."), 429
        )
        response.headers["Retry-After"] = str(int(wait) + 1)
        return response
    try:
        account = (
            await _accounts(request, services.accounts.authenticate(username, password))
            if username
            else None
        )
    except AccountsUnavailable:
        await throttle.end_attempt(username, ip, "undecided")
        return _page(login_page("Sign-in is unavailable for a moment; try again shortly."), 503)
    if account is None:
        await throttle.end_attempt(username, ip, "failed")
        metrics.monitor_logins.labels("failed").inc()
        log.info("monitor sign-in failed from %s", ip)
        return _page(login_page("Wrong username or password."), 401)
    await throttle.end_attempt(username, ip, "ok")
    try:
        token, session = await _accounts(request, services.accounts.create_session(account))
    except (AccountsUnavailable, AccountError):
        return _page(login_page("Sign-in is unavailable for a moment; try again shortly."), 503)
    metrics.monitor_logins.labels("ok").inc()
    log.info("monitor sign-in: %s (%s)", account.username, account.role)
    response = web.HTTPSeeOther("/monitor")
    response.set_cookie(
        COOKIE,
        token,
        path="/",
        httponly=True,
        secure=services.settings.cookie_secure,
        samesite="Strict",
        max_age=int(services.settings.monitor_session_ttl_secs),
    )
    raise response


async def logout(request: web.Request) -> web.Response:
    """End the session (needs its CSRF token from the page) and clear the cookie."""
    services = request.app[SERVICES_KEY]
    token = request.cookies.get(COOKIE)
    session = await current_session(request)
    form = await read_form(request)
    if session is not None:
        if form.get("csrf") != session.csrf or not _same_origin(request):
            return _json_error(403, "csrf", "sign out from the monitor page")
        await _accounts(request, services.accounts.end_session(token))
        log.info("monitor sign-out: %s", session.username)
    response = web.HTTPSeeOther("/monitor")
    response.del_cookie(COOKIE, path="/")
    raise response


@require_login
async def me(request: web.Request) -> web.Response:
    """Who is signed in."""
    session = request[SESSION_KEY]
    return web.json_response(
        {"username": session.username, "role": session.role, "department": session.department}
    )


async def _lists(request: web.Request, session: MonitorSession) -> dict[str, list]:
    registry = request.app[SERVICES_KEY].registry
    live = _visible(request, session, await registry.live_calls())
    recent = _visible(request, session, await registry.recent_calls(RECENT_LIMIT))
    return {"live": live, "recent": recent}


@require_login
async def calls(request: web.Request) -> web.Response:
    """Live calls and recently finished ones the recruiter may see."""
    return web.json_response(await _lists(request, request[SESSION_KEY]))


def _report_url(request: web.Request, interview: dict[str, Any] | None) -> str | None:
    services = request.app[SERVICES_KEY]
    if interview is None or not interview.get("report") or services.link_signer is None:
        return None
    return report_link(services.link_signer, "", interview["id"])


def _scores_of(report: dict[str, Any] | None) -> dict[str, Any] | None:
    if not report:
        return None
    scores = report.get("scores") or report
    competencies = scores.get("competencies") or []
    return {
        "overall": scores.get("overall"),
        "recommendation": scores.get("recommendation") or report.get("recommendation"),
        "competencies": [
            {"id": c.get("id"), "name": c.get("name"), "score": c.get("score")}
            for c in competencies
            if isinstance(c, dict)
        ],
    }


@require_login
async def call_detail(request: web.Request) -> web.Response:
    """One call: its turns (times on the recording's clock), recording and report links."""
    services = request.app[SERVICES_KEY]
    session = request[SESSION_KEY]
    call_sid = request.match_info["call_sid"]
    call = await services.store.get_call(call_sid)
    if call is None:  # held by another process: what the shared registry knows
        known = await services.registry.get(call_sid)
        turns = await services.registry.transcript(call_sid)
        if known is None:
            recent = await services.registry.recent_calls(RECENT_LIMIT)
            known = next((c for c in recent if c["call_sid"] == call_sid), None)
            turns = []
        if known is None or not can_view(session, _with_job(request, known).get("department")):
            return _json_error(404, "not_found", "no such call")
        return web.json_response(
            {
                **_with_job(request, known),
                "turns": turns,
                "recording_url": None,  # in the other process's recordings directory
                "report_url": None,
                "held_elsewhere": True,
            }
        )
    interview = await services.store.get_interview(call.get("interview_id") or "")
    summary = _with_job(
        request,
        {
            "call_sid": call_sid,
            "interview_id": call.get("interview_id"),
            "job_id": None if interview is None else interview["job_id"],
            "candidate_name": "" if interview is None else interview.get("candidate_name", ""),
            "status": None if interview is None else interview.get("status"),
            "started_at": call.get("started_at"),
            "ended_at": call.get("ended_at"),
            "duration_secs": call.get("duration_secs"),
            "end_reason": call.get("end_reason"),
            "live": call.get("ended_at") is None,
        },
    )
    if not can_view(session, summary.get("department")):
        return _json_error(404, "not_found", "no such call")
    await record_access(
        services,
        f"monitor:{session.username}",
        "monitor.call.view",
        interview=interview,
        interview_id=call.get("interview_id"),
        call_sid=call_sid,
    )
    recording = Path(call["recording_dir"]) / "call.wav" if call.get("recording_dir") else None
    turns = [
        {
            key: turn.get(key)
            for key in (
                "speaker",
                "text",
                "start",
                "end",
                "question_id",
                "response_latency",
                "interrupted",
                "via",
                "follow_up",
            )
        }
        for turn in call["turns"]
    ]
    report = None if interview is None else interview.get("report")
    events = await asyncio.to_thread(_timeline_events, call.get("recording_dir"), services.keyring)
    return web.json_response(
        {
            **summary,
            "turns": turns,
            "recording_url": f"/monitor/recordings/{call_sid}/call.wav"
            if recording is not None and recording.is_file()
            else None,
            "report_url": _report_url(request, interview),
            "scores": _scores_of(report),
            "events": events,
            "questions": _questions(services.scripts.get(summary.get("job_id") or "")),
        }
    )


TIMELINE_KINDS = {
    "consent": "consent.recorded",
    "knockout": "knockout.recorded",
    "opt_out": "opt_out.recorded",
    "question_skipped": "question.skipped",
    "repeat_requested": "repeat.requested",
}
"""Events of a finished call's recorded timeline shown on the monitor's timeline (live names)."""


def _timeline_events(recording_dir: str | None, keyring: Keyring | None) -> list[dict[str, Any]]:
    """Consent, knock-outs, opt-outs, skips and repeats from the call's ``timeline.jsonl``.

    An encrypted timeline is decrypted (one a crash cut short is read up to the crash).
    """
    if not recording_dir:
        return []
    path = Path(recording_dir) / "timeline.jsonl"
    events = []
    try:
        data = read_stored_file(path, keyring, allow_truncated=True)
    except OSError:
        return []
    for record in json_lines(data):  # a line cut by a crash is skipped
        kind = TIMELINE_KINDS.get(record.pop("event", None))
        if kind is not None:
            events.append({"t": record.pop("t", None), "type": kind, "data": record})
    return events


@require_login
async def recording(request: web.Request) -> web.StreamResponse:
    """A finished call's recording, for the signed-in recruiter who may see the call."""
    services = request.app[SERVICES_KEY]
    call = await services.store.get_call(request.match_info["call_sid"])
    interview = (
        None if call is None else await services.store.get_interview(call.get("interview_id") or "")
    )
    job_id = None if interview is None else interview["job_id"]
    if call is None or not can_view(request[SESSION_KEY], department_of(request, job_id)):
        return _json_error(404, "not_found", "no such recording")
    path = Path(call.get("recording_dir") or "") / "call.wav"
    if not call.get("recording_dir") or not path.is_file():
        return _json_error(404, "not_found", "no recording for this call (yet)")
    await record_access(
        services,
        f"monitor:{request[SESSION_KEY].username}",
        "monitor.recording.open",
        interview=interview,
        call_sid=call["call_sid"],
    )
    return await recording_response(request, path, services.keyring)


# -- WebSockets ------------------------------------------------------------------------------


async def _open_socket(request: web.Request) -> tuple[web.WebSocketResponse, MonitorSession | None]:
    """Accept the handshake; close at once (4401) without a sign-in or from another origin."""
    ws = web.WebSocketResponse(heartbeat=WS_HEARTBEAT_SECS)
    await ws.prepare(request)
    try:
        session = await current_session(request) if _same_origin(request) else None
    except AccountsUnavailable:
        await ws.close(code=CLOSE_TRY_AGAIN, message=b"sign-in unavailable; try again")
        return ws, None
    if session is None:
        await ws.close(code=CLOSE_UNAUTHORISED, message=b"sign in at /monitor")
    return ws, session


async def _pump(
    request: web.Request,
    ws: web.WebSocketResponse,
    subscriptions: list[Any],
    send: Callable[[dict[str, Any]], Awaitable[bool]],
) -> None:
    """Forward live events to the socket until ``send`` says stop or the client leaves.

    The sign-in is checked every :data:`RECHECK_SECS`: a signed-out session closes it (4401).
    """
    services = request.app[SERVICES_KEY]
    receiver = asyncio.create_task(ws.receive())
    getters = {asyncio.create_task(sub.get()): sub for sub in subscriptions}
    checked = time.monotonic()
    services.metrics.monitor_watchers.inc()
    try:
        while not ws.closed:
            done, _ = await asyncio.wait(
                {receiver, *getters}, timeout=RECHECK_SECS, return_when=asyncio.FIRST_COMPLETED
            )
            if receiver in done:
                break
            if time.monotonic() - checked >= RECHECK_SECS:
                checked = time.monotonic()
                signed_in = True
                with contextlib.suppress(AccountsUnavailable):  # an outage is not a sign-out
                    signed_in = await current_session(request) is not None
                if not signed_in:
                    await ws.close(code=CLOSE_UNAUTHORISED, message=b"signed out")
                    break
            stop = False
            for getter in [g for g in getters if g in done]:
                subscription = getters.pop(getter)
                if not await send(getter.result()):
                    stop = True
                getters[asyncio.create_task(subscription.get())] = subscription
            if stop:
                break
    finally:
        services.metrics.monitor_watchers.dec()
        receiver.cancel()
        for getter in getters:
            getter.cancel()
        for subscription in subscriptions:
            subscription.close()
        await ws.close()


async def calls_socket(request: web.Request) -> web.WebSocketResponse:
    """The call lists, then their changes, filtered to what the recruiter may see."""
    ws, session = await _open_socket(request)
    if session is None:
        return ws
    services = request.app[SERVICES_KEY]
    subscription = services.live.subscribe(CALLS_CHANNEL)
    await ws.send_json({"type": "calls", **await _lists(request, session)})

    async def send(event: dict[str, Any]) -> bool:
        call = _with_job(request, event.get("call") or {})
        if can_view(session, call.get("department")):
            await ws.send_json({"type": event["type"], "call": call})
        return True

    await _pump(request, ws, [subscription], send)
    return ws


async def _visible_live_call(
    request: web.Request, ws: web.WebSocketResponse, session: MonitorSession
) -> dict[str, Any] | None:
    call_sid = request.match_info["call_sid"]
    call = await request.app[SERVICES_KEY].registry.get(call_sid)
    if call is not None:
        call = _with_job(request, call)
    if call is None or not can_view(session, call.get("department")):
        await ws.close(code=CLOSE_NOT_FOUND, message=b"no such live call")
        return None
    return call


async def call_socket(request: web.Request) -> web.WebSocketResponse:
    """One live call: a snapshot, then its live events until it ends.

    The snapshot holds the position, the transcript so far, scores and the script's questions.
    """
    ws, session = await _open_socket(request)
    if session is None:
        return ws
    services = request.app[SERVICES_KEY]
    call_sid = request.match_info["call_sid"]
    subscription = services.live.subscribe(call_sid)  # before the snapshot: nothing is missed
    call = await _visible_live_call(request, ws, session)
    if call is None:
        subscription.close()
        return ws
    await record_access(
        services,
        f"monitor:{session.username}",
        "monitor.call.watch",
        interview_id=call.get("interview_id"),
        call_sid=call_sid,
    )
    script = services.scripts.get(call.get("job_id") or "")
    snapshot = {
        **call,
        "transcript": await services.registry.transcript(call_sid),
        "questions": _questions(script),
        "competencies": []
        if script is None
        else [{"id": c.id, "name": c.name} for c in script.competencies],
    }
    await ws.send_json({"type": "snapshot", "call_sid": call_sid, "data": snapshot})

    async def send(event: dict[str, Any]) -> bool:
        await ws.send_json(event)
        return event.get("type") != "call.ended"

    await _pump(request, ws, [subscription], send)
    return ws


async def audio_socket(request: web.Request) -> web.WebSocketResponse:
    """Listen-in: the call's two sides mixed, as binary 100 ms mu-law chunks.

    Each has an 8-byte header (sequence and call-clock ms, uint32 big endian); sent until the
    call ends or the client stops.
    """
    ws, session = await _open_socket(request)
    if session is None:
        return ws
    services = request.app[SERVICES_KEY]
    call_sid = request.match_info["call_sid"]
    audio = services.live.subscribe(audio_channel(call_sid))
    ended = services.live.subscribe(call_sid)
    if await _visible_live_call(request, ws, session) is None:
        audio.close()
        ended.close()
        return ws
    log.info("listen-in: %s on call %s", session.username, call_sid)
    await record_access(
        services, f"monitor:{session.username}", "monitor.call.listen", call_sid=call_sid
    )
    await ws.send_json(
        {"type": "audio.format", "encoding": "mulaw", "sample_rate": 8000, "frame_ms": 100}
    )

    async def send(event: dict[str, Any]) -> bool:
        if event.get("type") == "audio.chunk":
            await ws.send_bytes(chunk_frame(event))
            return True
        if event.get("type") == "call.ended":
            await ws.send_json({"type": "call.ended"})
            return False
        return True  # the call's other events: not for this socket

    await _pump(request, ws, [audio, ended], send)
    return ws


def add_routes(app: web.Application) -> None:
    """Mount the monitor on the app."""
    app.router.add_get("/monitor", monitor_page)
    app.router.add_post("/monitor/login", login)
    app.router.add_post("/monitor/logout", logout)
    app.router.add_get("/monitor/api/me", me)
    app.router.add_get("/monitor/api/calls", calls)
    app.router.add_get("/monitor/api/calls/{call_sid}", call_detail)
    app.router.add_get("/monitor/recordings/{call_sid}/call.wav", recording)
    app.router.add_get("/monitor/ws", calls_socket)
    app.router.add_get("/monitor/ws/calls/{call_sid}", call_socket)
    app.router.add_get("/monitor/ws/calls/{call_sid}/audio", audio_socket)
    from voicebot.monitor import campaigns  # it builds on this module's access checks

    campaigns.add_routes(app)
    app.router.add_static("/monitor/static/", STATIC_DIR, append_version=False)
