"""Twilio's side of the server: the voice webhook (TwiML) and the Media Streams WebSocket.

``POST /twilio/voice`` answers Twilio's voice webhook with ``<Connect><Stream>`` TwiML whose
``<Parameter>``s name the interview and carry a signed, short-lived stream token.
``GET /twilio/stream`` is the bidirectional media stream; this module only moves messages between
the socket, the Sans-I/O protocol parser and the ``CallSession``.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import sys
from collections import Counter

from aiohttp import WSMsgType, web

from voicebot.api.admission import PendingStreams
from voicebot.api.request_bodies import read_form
from voicebot.call.session import SAFE_SID, CallSession, StreamRefused
from voicebot.events.emitter import interview_refs
from voicebot.services import Services
from voicebot.store.database import CALLABLE_STATUSES
from voicebot.telephony.signature import validate_twilio_signature
from voicebot.telephony.stream_token import InvalidStreamToken
from voicebot.telephony.twilio import ProtocolError, Start, Stop, TwilioMediaStream
from voicebot.telephony.twiml import (
    connect_stream_twiml,
    say_and_hangup_twiml,
    stream_url_from_public_url,
    without_xml_forbidden,
)

log = logging.getLogger(__name__)

SERVICES_KEY = web.AppKey("services", Services)
PENDING_STREAMS_KEY = web.AppKey("pending_streams", PendingStreams)
HARD_MESSAGE_LIMIT = 1 << 20
"""Messages above this close the socket (aiohttp limit); smaller oversized ones are only dropped."""
LOGGED_ERRORS_PER_CODE = 5


def _public_base(request: web.Request, services: Services) -> str:
    if services.settings.public_url:
        return services.settings.public_url.rstrip("/")
    forwarded_proto = request.headers.get("X-Forwarded-Proto")
    scheme = forwarded_proto or request.scheme
    return f"{scheme}://{request.host}"


def _twiml(body: str) -> web.Response:
    return web.Response(text=body, content_type="application/xml")


async def voice_webhook(request: web.Request) -> web.Response:
    """Twilio's voice webhook: which interview is this call, and where to stream it."""
    services = request.app[SERVICES_KEY]
    assert services.store is not None and services.token_signer is not None
    try:
        form = await read_form(request)
    except web.HTTPBadRequest:
        services.metrics.http_errors.labels("twilio_voice", "bad_form").inc()
        raise
    params = {key: form.getall(key) for key in set(form.keys())}
    flat = {key: str(values[0]) for key, values in params.items()}
    auth_token = services.settings.twilio_auth_token
    if auth_token:
        base = _public_base(request, services)
        url = base + request.rel_url.path_qs if services.settings.public_url else str(request.url)
        signature = request.headers.get("X-Twilio-Signature", "")
        str_params = {k: [str(v) for v in vals] for k, vals in params.items()}
        if not signature or not validate_twilio_signature(auth_token, url, str_params, signature):
            services.metrics.http_errors.labels("twilio_voice", "bad_signature").inc()
            log.warning("voice webhook: missing or invalid X-Twilio-Signature (url %s)", url)
            raise web.HTTPForbidden(text="invalid X-Twilio-Signature")
    call_sid = flat.get("CallSid", "")
    from_number = flat.get("From", "")
    if not SAFE_SID.fullmatch(call_sid):
        services.metrics.http_errors.labels("twilio_voice", "bad_call_sid").inc()
        raise web.HTTPBadRequest(text="CallSid must be 1-64 letters, digits, _ or -")
    interview_id = request.query.get("interview_id")
    if interview_id:
        interview = await services.store.get_interview(interview_id)
    else:
        interview = await services.store.find_pending_interview_by_phone(from_number)
    if interview is None:
        services.metrics.http_errors.labels("twilio_voice", "no_interview").inc()
        log.info("voice webhook: call %s has no interview to hold", call_sid)
        return _twiml(
            say_and_hangup_twiml(
                "Sorry, we could not find an interview scheduled for this call. Goodbye."
            )
        )
    script = services.scripts.get(interview["job_id"])
    if script is None:
        reason = "unknown_job"
    elif services.asr is not None and script.language not in services.asr.languages:
        reason = "language_unsupported"
    elif interview["status"] not in CALLABLE_STATUSES:
        reason = f"interview_{interview['status']}"
    elif services.call_claims.interview_busy(interview["id"]):
        reason = "interview_busy"
    else:
        reason = ""
    if reason:
        services.metrics.http_errors.labels("twilio_voice", reason).inc()
        log.info("voice webhook: interview %s not callable (%s)", interview["id"], reason)
        return _twiml(
            say_and_hangup_twiml(
                "This interview is not available any more. A recruiter will contact you. Goodbye."
            )
        )
    if len(services.call_claims) >= services.settings.max_calls:
        services.metrics.http_errors.labels("twilio_voice", "at_capacity").inc()
        return _twiml(
            say_and_hangup_twiml(
                "Sorry, all our interviewers are busy. Please try again in a few minutes. Goodbye."
            )
        )
    if not interview_id and interview.get("next_attempt_at") is not None:
        # A call back to the caller ID: the candidate is interviewed now, the campaign stops
        # dialing them (its scheduled attempts are cancelled).
        from voicebot.campaigns.store import campaign_store

        await (await campaign_store(services)).cancel_scheduled_attempts(interview["id"])
    token = services.token_signer.issue({"interview_id": interview["id"], "call_sid": call_sid})
    stream_url = stream_url_from_public_url(_public_base(request, services))
    if services.events is not None:
        services.events.emit(
            "call.started",
            **interview_refs(interview),
            call_sid=call_sid,
            direction=form.get("Direction", ""),
        )
    return _twiml(
        connect_stream_twiml(
            stream_url,
            {
                "interview_id": interview["id"],
                "job_id": interview["job_id"],
                "token": token,
                "from": without_xml_forbidden(from_number),
            },
        )
    )


async def _signed_form(request: web.Request, where: str) -> dict[str, str]:
    """A carrier callback's form, its ``X-Twilio-Signature`` checked (403 when wrong)."""
    services = request.app[SERVICES_KEY]
    try:
        form = await read_form(request)
    except web.HTTPBadRequest:
        services.metrics.http_errors.labels(where, "bad_form").inc()
        raise
    params = {key: [str(v) for v in form.getall(key)] for key in set(form.keys())}
    auth_token = services.settings.twilio_auth_token
    if auth_token:
        base = _public_base(request, services)
        url = base + request.rel_url.path_qs if services.settings.public_url else str(request.url)
        signature = request.headers.get("X-Twilio-Signature", "")
        if not signature or not validate_twilio_signature(auth_token, url, params, signature):
            services.metrics.http_errors.labels(where, "bad_signature").inc()
            log.warning("%s: missing or invalid X-Twilio-Signature (url %s)", where, url)
            raise web.HTTPForbidden(text="invalid X-Twilio-Signature")
    flat = {key: values[0] for key, values in params.items()}
    if not SAFE_SID.fullmatch(flat.get("CallSid", "")):
        services.metrics.http_errors.labels(where, "bad_call_sid").inc()
        raise web.HTTPBadRequest(text="CallSid must be 1-64 letters, digits, _ or -")
    return flat


def _dialer(services: Services):
    """Return the process's dialer (it settles callbacks even when it places no call itself)."""
    if services.dialer is None:
        from voicebot.campaigns.dialer import Dialer

        services.dialer = Dialer(services, services.carrier)
    return services.dialer


async def _dial_callback(request: web.Request, kind: str) -> web.Response:
    services = request.app[SERVICES_KEY]
    where = f"twilio_{kind}"
    params = await _signed_form(request, where)
    dialer = _dialer(services)
    attempt_id = request.query.get("attempt_id")
    handle = dialer.on_status if kind == "status" else dialer.on_amd
    result = await handle(attempt_id, params)
    if result is None:
        dialer.metrics.callbacks.labels(kind, "unknown_call").inc()
        services.metrics.http_errors.labels(where, "unknown_call").inc()
        raise web.HTTPNotFound(
            text=f"call {params['CallSid']} was not placed by this server's dialer"
        )
    dialer.metrics.callbacks.labels(kind, result).inc()
    return web.Response(status=204)


async def status_callback(request: web.Request) -> web.Response:
    """Twilio's status callback of a call the dialer placed (``CallStatus``); idempotent.

    ``?attempt_id=`` (the dialer puts it in the URL) names the attempt, so a callback that
    arrives before the carrier's answer to the REST request is still matched; the ``CallSid``
    must be the attempt's once known. 404: a call this server did not place.
    """
    return await _dial_callback(request, "status")


async def amd_callback(request: web.Request) -> web.Response:
    """Twilio's asynchronous answering-machine verdict (``AnsweredBy``) of a dialed call."""
    return await _dial_callback(request, "amd")


async def media_stream(request: web.Request) -> web.StreamResponse:
    """Twilio Media Streams WebSocket: one call's audio both ways.

    Until a valid ``start`` the stream is pending: it holds only the socket and the protocol
    parser (the call's session is made at ``start``), it is closed after
    ``VOICEBOT_STREAM_START_TIMEOUT_SECS``, and only so many may be pending at once, in all and
    per remote address (:mod:`voicebot.api.admission`).
    """
    services = request.app[SERVICES_KEY]
    settings = services.settings
    metrics = services.metrics
    assert services.token_signer is not None
    query_token = request.query.get("token")
    if query_token is not None:  # carriers that can put the token in the URL are checked early
        try:
            services.token_signer.verify(query_token)
        except InvalidStreamToken as exc:
            metrics.calls_refused.labels(f"token_{exc.reason}").inc()
            raise web.HTTPForbidden(text=f"stream token refused: {exc.reason}") from None
    if len(services.call_claims) >= settings.max_calls:
        metrics.calls_refused.labels("at_capacity").inc()
        raise web.HTTPServiceUnavailable(text="at capacity")
    pending = request.app[PENDING_STREAMS_KEY]
    peer = request.remote or "unknown"
    refusal = pending.admit(
        peer, settings.stream_max_pending, settings.stream_max_pending_per_address
    )
    if refusal is not None:
        metrics.calls_refused.labels(refusal).inc()
        _log_sparingly(refusal, "stream from %s refused: %s", peer, refusal)
        raise web.HTTPServiceUnavailable(
            text=f"{refusal}: too many streams have not started yet; send `start` at once"
        )
    metrics.streams_pending.inc()
    is_pending = True

    def started() -> None:
        nonlocal is_pending
        if is_pending:
            is_pending = False
            pending.release(peer)
            metrics.streams_pending.dec()
            if pending.burst_over():
                _return_freed_memory()

    session: CallSession | None = None
    ws = web.WebSocketResponse(max_msg_size=HARD_MESSAGE_LIMIT, heartbeat=None, autoping=True)
    try:
        await ws.prepare(request)  # not a WebSocket request: 400, and no longer pending
    except BaseException:
        started()
        raise
    try:
        protocol = TwilioMediaStream(max_message_bytes=settings.max_message_bytes)
        send_lock = asyncio.Lock()

        async def send_text(text: str) -> None:
            if ws.closed:
                return
            async with send_lock:
                await ws.send_str(text)

        async def close_stream() -> None:
            if not ws.closed:
                await ws.close()

        async with asyncio.timeout(settings.stream_start_timeout_secs) as start_deadline:
            async for message in ws:
                if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    events = protocol.receive(message.data)
                elif message.type == WSMsgType.ERROR:
                    log.warning("stream from %s: socket error %s", peer, ws.exception())
                    break
                else:
                    continue
                for event in events:
                    if isinstance(event, ProtocolError):
                        metrics.protocol_errors.labels(event.code).inc()
                        seen = protocol.error_counts[event.code]
                        if seen <= LOGGED_ERRORS_PER_CODE or seen % 100 == 0:
                            # A flood is counted in full but logged sparingly.
                            log.warning(
                                "stream %s: %s (%d so far): %s",
                                peer if session is None else session.call_sid or peer,
                                event.code,
                                seen,
                                event.message,
                            )
                        if event.fatal:
                            await ws.close(code=1003, message=event.code.encode()[:120])
                            break
                        continue
                    if session is None:
                        if isinstance(event, Stop):
                            break
                        if not isinstance(event, Start):
                            continue  # nothing to do before the call is admitted
                        session = CallSession(services, protocol, send_text, close_stream)
                        await session.handle(event)
                        started()
                        start_deadline.reschedule(None)
                        continue
                    await session.handle(event)
                if ws.closed or (session is not None and session.finished):
                    break
    except TimeoutError:
        metrics.calls_refused.labels("no_start").inc()
        _log_sparingly(
            "no_start",
            "stream from %s: no valid start within %g s",
            peer,
            settings.stream_start_timeout_secs,
        )
    except StreamRefused as exc:
        metrics.calls_refused.labels(exc.reason).inc()
        log.warning("stream from %s refused: %s", peer, exc)
        await ws.close(code=1008, message=exc.reason.encode()[:120])
    except Exception:
        metrics.internal_errors.labels("media_stream").inc()
        log.exception("stream %s: unexpected error", peer if session is None else session.call_sid)
    finally:
        started()
        if session is not None:
            await session.finish("stream_closed")
        if not ws.closed:
            await ws.close()
    return ws


_logged: Counter[str] = Counter()
_trims: set[asyncio.Task] = set()


def _return_freed_memory() -> None:
    """Give the C heap's free memory back to the system, in a thread, one trim at a time.

    glibc keeps what a burst of connections freed (3,000 idle streams leave ~45 MB of it).
    """
    if _trims or not sys.platform.startswith("linux"):
        return
    try:
        malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to trim
        return
    task = asyncio.get_running_loop().create_task(asyncio.to_thread(malloc_trim, 0))
    _trims.add(task)
    task.add_done_callback(_trims.discard)


def _log_sparingly(kind: str, message: str, *args: object) -> None:
    """Log the first few of a kind of refusal, then every hundredth (all are counted)."""
    _logged[kind] += 1
    seen = _logged[kind]
    if seen <= LOGGED_ERRORS_PER_CODE or seen % 100 == 0:
        log.warning(message + " (%d so far)", *args, seen)


def add_routes(app: web.Application) -> None:
    """Register the carrier endpoints."""
    app[PENDING_STREAMS_KEY] = PendingStreams()
    app.router.add_post("/twilio/voice", voice_webhook)
    app.router.add_post("/twilio/status", status_callback)
    app.router.add_post("/twilio/amd", amd_callback)
    app.router.add_get("/twilio/stream", media_stream)
