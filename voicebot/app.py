"""The aiohttp application: routes, start-up (models, store, prompt cache) and shutdown."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from voicebot import __version__
from voicebot.api import campaigns, carrier, openapi, rest
from voicebot.api.address_limits import ADDRESS_LIMIT_KEY, AddressRateLimit, address_limits
from voicebot.api.carrier import SERVICES_KEY
from voicebot.api.errors import unexpected_errors
from voicebot.config import Settings
from voicebot.crypto import DecryptionError
from voicebot.gc_tuning import freeze_startup_objects, observe_pauses, watch_loop_lag
from voicebot.monitor import web as monitor_web
from voicebot.services import Services

LOOP_LAG_TASK: web.AppKey[asyncio.Task] = web.AppKey("loop_lag_task", asyncio.Task)

log = logging.getLogger(__name__)


async def healthz(request: web.Request) -> web.Response:
    """Liveness and readiness: 200 once models and the store are up."""
    services = request.app[SERVICES_KEY]
    return web.json_response(
        {
            "status": "ok",
            "version": __version__,
            "calls_active": len(services.sessions),
            "jobs": len(services.scripts),
            "asr_model": services.settings.asr_model,
            "asr_models": getattr(services.asr, "models", None) or {},
            "tts_engine": services.settings.tts_engine,
            "bus": "redis" if services.settings.redis_url else "embedded",
            "redis_up": getattr(services.bus, "redis_up", None),
            "events_waiting": services.bus.outbox_pending() if services.bus is not None else 0,
            "bridge": services.bridge is not None,
        }
    )


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition (no candidate data in it)."""
    services = request.app[SERVICES_KEY]
    m = services.metrics
    if services.asr is not None and services.asr.started:
        stats = services.asr.stats()
        m.asr_queued.set(stats.queued)
        m.asr_busy_seconds.set(stats.busy_secs)
        m.asr_transcriptions.set(stats.completed)
        m.asr_decodes.set(stats.runs)
        m.asr_reused.set(stats.reused)
        m.asr_joined.set(stats.joined)
    if services.vad_model is not None and services.vad_executor is not None:
        m.vad_batch_mean.set(services.vad_batcher.mean_batch)
    if services.bus is not None:
        m.events_waiting.set(services.bus.outbox_pending())
        m.redis_errors.set(getattr(services.bus, "redis_errors", 0))
    if services.events is not None:
        m.events_emitted.set(services.events.emitted)
    if services.bridge is not None:
        stats = services.bridge.stats
        for outcome in ("delivered", "retried", "dead", "aborted"):
            m.webhooks.labels(outcome).set(getattr(stats, outcome))
    body = m.render()
    return web.Response(body=body, headers={"Content-Type": services.metrics.content_type})


@web.middleware
async def stored_data_errors(request: web.Request, handler):
    """Stored data that fails to decrypt (altered, or its key not configured): a clear 500.

    The message names the record (table/column/row ids, never its content) and what to check;
    it is logged and counted (``voicebot_internal_errors_total{where="decryption"}``).
    """
    try:
        return await handler(request)
    except DecryptionError as exc:
        services = request.app[SERVICES_KEY]
        services.metrics.internal_errors.labels("decryption").inc()
        log.error("%s %s: stored data cannot be decrypted: %s", request.method, request.path, exc)
        return web.json_response(
            {
                "error": "stored_data_unreadable",
                "message": f"stored data cannot be decrypted: {exc}. Check that "
                "VOICEBOT_DATA_KEY holds the key it was written with; if it does, the stored "
                "data was altered.",
            },
            status=500,
        )


def create_app(
    settings: Settings | None = None, services: Services | None = None
) -> web.Application:
    """Build the application; models load in ``on_startup`` before the server accepts calls."""
    settings = settings or Settings.from_env()
    services = services or Services(settings)
    app = web.Application(
        client_max_size=1 << 20,
        middlewares=[unexpected_errors, address_limits, stored_data_errors],
    )
    app[ADDRESS_LIMIT_KEY] = AddressRateLimit(settings.unauth_requests_per_min)
    app[SERVICES_KEY] = services
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    carrier.add_routes(app)
    rest.add_routes(app)
    campaigns.add_routes(app)
    openapi.add_routes(app)
    monitor_web.add_routes(app)

    async def start(app: web.Application) -> None:
        settings.resolved_api_token()
        if not settings.twilio_auth_token:
            log.warning(
                "VOICEBOT_TWILIO_AUTH_TOKEN is not set: X-Twilio-Signature is NOT validated"
            )
        if settings.redis_url or settings.webhook_url:
            log.warning(
                "VOICEBOT_REDIS_URL / VOICEBOT_WEBHOOK_URL are set but the Redis bus and the HR "
                "webhook bridge are not built yet: events stay in this process"
            )
        await services.start()
        observe_pauses(services.metrics.gc_pause)
        frozen = freeze_startup_objects()
        log.info("garbage collector: %d start-up objects frozen", frozen)
        app[LOOP_LAG_TASK] = asyncio.create_task(
            watch_loop_lag(services.metrics.loop_lag), name="loop-lag"
        )

    async def stop(app: web.Application) -> None:
        watcher = app.get(LOOP_LAG_TASK)
        if watcher is not None:
            watcher.cancel()
        for session in list(services.sessions.values()):
            await session.finish("server_shutdown")
        await services.close()

    app.on_startup.append(start)
    app.on_shutdown.append(stop)
    return app
