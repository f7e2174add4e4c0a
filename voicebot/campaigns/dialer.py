"""The dialer: places the calls of outbound campaigns, and settles how each attempt ended.

One asyncio task per server process (:class:`Dialer`, started and stopped with the services like
the call settler; no thread). Every :data:`TICK_SECS` it

1. (every :data:`SETTLE_EVERY_SECS`) settles attempts whose lease ran out
   (:meth:`Dialer.settle_expired`): a ``claimed`` one whose process died before placing it is
   released (it never reached the carrier); a ``placing`` one
   whose process died during the carrier's REST request may or may not have reached the carrier,
   so it is **never placed again as it was**: it ends ``failed`` with the detail "unknown:
   process died while placing" (counted as an attempt, the next one is scheduled as after any
   failed attempt); a ``dialing`` one whose outcome never came (no status callback within the
   ring timeout + ``VOICEBOT_DIALER_STATUS_TIMEOUT_SECS``) ends ``no_answer`` unless its stream
   started (then it is ``up``); an ``up`` one ends ``answered`` once its call is no longer in
   progress (the call settler settles the call itself);
2. unless dialing is held back (the carrier refused our credentials or asked us to slow down,
   or the server is loaded: Whisper's queue of final transcriptions or the event loop's lag over
   a threshold, so calls it places never push live calls past the latency budget), claims due
   interviews (:mod:`voicebot.campaigns.attempts`) within the server-wide cap
   ``VOICEBOT_DIALER_MAX_CALLS`` (live calls count too) and the rate
   ``VOICEBOT_DIALER_CALLS_PER_SEC`` (a token bucket), skipping numbers on the do-not-call list
   (checked here, at claim time) and moving those outside their calling hours to the next
   window; each claimed attempt is placed through the :class:`OutboundCarrier` in its own task.

A carrier error is not the candidate's: the attempt is released (deleted; the interview is due
again after a back-off) except ``rejected`` (the carrier refused this number), which ends the
attempt ``failed``. ``rate_limited`` holds the whole dialer back (``Retry-After`` when given) and
halves its rate for a while; ``auth`` holds it back for :data:`AUTH_PAUSE_SECS` with an error in
the log on every try. All are counted on ``/metrics`` (``voicebot_dialer_*``).

The carrier reports each call's progress to ``POST /twilio/status`` and the answering-machine
verdict to ``POST /twilio/amd`` (:mod:`voicebot.api.carrier`), which hand it to
:meth:`Dialer.on_status` / :meth:`Dialer.on_amd`. Both are idempotent: an attempt only moves
forward (claimed, placing, dialing, up, ended), so a repeated, late or out-of-order callback
changes nothing. When an attempt ends without reaching the candidate the interview is due again
at the :class:`Schedule`'s next attempt time, or, after its campaign's last attempt, ends
``unreachable``; the HR system hears ``dial.attempted``, ``candidate.status_changed``
(``no_answer`` with the next attempt time), ``interview.unreachable`` and ``campaign.progress``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

from prometheus_client import Counter, Gauge

from voicebot.campaigns import attempts
from voicebot.events.emitter import interview_refs
from voicebot.events.types import derived_event_id, format_timestamp
from voicebot.monitor.registry import campaign_changed
from voicebot.telephony.outbound import CarrierError, OutboundCall, OutboundCarrier

if TYPE_CHECKING:
    from voicebot.services import Services

log = logging.getLogger(__name__)

TICK_SECS = 0.25
"""How often the dialer looks for due interviews and expired leases."""
CLAIM_LEASE_SECS = 30.0
"""A claimed attempt not placed within this is released by whoever looks next."""
PLACE_TIMEOUT_SECS = 30.0
"""The longest the dialer waits for the carrier to take a call (its own timeout is shorter)."""
PLACING_LEASE_SECS = PLACE_TIMEOUT_SECS + 30.0
"""A ``placing`` attempt is someone else's to settle after this (its process died)."""
UP_LEASE_SECS = 300.0
"""An answered attempt's lease: renewed while its call is in progress."""
AUTH_PAUSE_SECS = 300.0
"""After the carrier refused our credentials, dialing waits this long before trying again."""
BACKOFF_SECS = (5.0, 15.0, 60.0, 300.0)
"""Back-off after consecutive carrier failures (429 without Retry-After, 5xx, timeouts)."""
LAG_SAMPLES = 8
"""The loop lag that holds the dialer back is the worst of this many ticks (2 s)."""
IDLE_POLL_SECS = 2.0
"""While nothing is due, the store is asked again at most this often (doubling from a tick):
due interviews of paused or full campaigns are still read past (37 ms for 9,000 of them)."""
REPORT_GRACE_SECS = 60.0
"""An ended attempt's events not on the bus this long after it ended are sent again."""
REPORT_SWEEP_SECS = 300.0
"""How often a running dialer looks for such attempts (and once at start)."""
PROGRESS_EVERY_SECS = 10.0
"""How often changed campaigns' counts go out as ``campaign.progress``."""
SETTLE_EVERY_SECS = 1.0
"""How often the dialer looks for attempts whose lease ran out."""
DUE_BATCH = 50
"""At most this many due interviews are looked at per tick."""

MACHINE_ANSWERS = frozenset(
    {"machine_start", "machine_end_beep", "machine_end_silence", "machine_end_other", "fax"}
)
"""``AnsweredBy`` values that mean no person took the call (Twilio AMD)."""
FAILED_STATUSES = {
    "no-answer": "no_answer",
    "busy": "busy",
    "failed": "failed",
    "canceled": "canceled",
}
"""Twilio's ``CallStatus`` of a call that ended without being answered -> the attempt's outcome."""
RINGING_STATUSES = frozenset({"queued", "initiated", "ringing"})
DONE_STATUSES = frozenset({"completed", "declined", "knocked_out", "opted_out", "unreachable"})
"""Interview statuses after which no further attempt is scheduled."""
CUT_SHORT_STATUSES = frozenset({"incomplete", "no_response"})
"""Outcomes of a held interview after which a campaign calls again (attempts left)."""


# -- seams the campaigns part fills (calling hours, the do-not-call list) ---------------------


class Schedule(Protocol):
    """When a campaign may call (``voicebot.campaigns.hours``, in the candidate's time zone)."""

    def in_window(self, policy: dict[str, Any], tz_name: str, at: float) -> bool:
        """Whether ``at`` is inside the policy's calling hours in ``tz_name``."""
        ...

    def next_attempt_at(
        self, policy: dict[str, Any], tz_name: str, failed_at: float, attempt_number: int
    ) -> float:
        """When to call again after attempt ``attempt_number`` failed at ``failed_at``."""
        ...

    def window_start(self, policy: dict[str, Any], tz_name: str, at: float) -> float:
        """The first time at or after ``at`` inside the calling hours."""
        ...


class CallingHours:
    """The calling-hours functions of :mod:`voicebot.campaigns.hours` as a :class:`Schedule`.

    The policy comes as the stored JSON (a dict); it was validated when the campaign was made, so
    one that no longer parses (an edited row) is read with the defaults and logged. A policy with
    no window in the next ``SEARCH_DAYS`` days (every day a holiday) puts the attempt that far off.
    """

    def _policy(self, policy: dict[str, Any]) -> Any:
        from voicebot.campaigns import hours

        try:
            return hours.CallingPolicy.model_validate(policy)
        except ValueError:
            log.warning("dialer: a campaign's stored policy is invalid; its defaults are used")
            return hours.CallingPolicy()

    def in_window(self, policy: dict[str, Any], tz_name: str, at: float) -> bool:
        """See :class:`Schedule`."""
        from voicebot.campaigns import hours

        return bool(hours.in_window(self._policy(policy), tz_name, at))

    def next_attempt_at(
        self, policy: dict[str, Any], tz_name: str, failed_at: float, attempt_number: int
    ) -> float:
        """See :class:`Schedule`."""
        from voicebot.campaigns import hours

        try:
            return float(
                hours.next_attempt_at(self._policy(policy), tz_name, failed_at, attempt_number)
            )
        except hours.NoCallingWindow:
            return failed_at + hours.SEARCH_DAYS * 86400.0

    def window_start(self, policy: dict[str, Any], tz_name: str, at: float) -> float:
        """See :class:`Schedule`: the next window's start (``at`` when inside one)."""
        from voicebot.campaigns import hours

        try:
            return float(hours.next_window_start(self._policy(policy), tz_name, at))
        except hours.NoCallingWindow:
            return at + hours.SEARCH_DAYS * 86400.0


class DoNotCall(Protocol):
    """The do-not-call list (``opt_outs``), checked when an attempt is claimed."""

    async def is_listed(self, phone: str) -> bool:
        """Whether ``phone`` (E.164) must never be called."""
        ...


class StoreOptOuts:
    """The store's do-not-call list (:class:`voicebot.campaigns.optouts.DoNotCallList`)."""

    def __init__(self, services: Services) -> None:
        self.services = services

    async def is_listed(self, phone: str) -> bool:
        """See :class:`DoNotCall`."""
        if not phone:
            return False
        from voicebot.campaigns.store import campaign_store

        campaigns = await campaign_store(self.services)
        return await campaigns.do_not_call.is_opted_out(phone)


# -- rate -------------------------------------------------------------------------------------


class TokenBucket:
    """Calls per second the carrier allows: ``rate`` tokens a second, at most ``burst`` saved."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float]) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.tokens = burst
        self._at = clock()

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self._at) * self.rate)
        self._at = now

    def take(self) -> bool:
        """Spend one token if there is one."""
        self._refill()
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False

    def give_back(self) -> None:
        """Return a token taken for a call that was not placed."""
        self.tokens = min(self.burst, self.tokens + 1)


# -- metrics ----------------------------------------------------------------------------------


class DialerMetrics:
    """The dialer's ``voicebot_dialer_*`` metrics, on the server's registry."""

    def __init__(self, registry: Any) -> None:
        r = registry
        self.placed = Counter(
            "voicebot_dialer_calls_placed_total",
            "Calls the carrier took from the dialer.",
            registry=r,
        )
        self.attempts = Counter(
            "voicebot_dialer_attempts_total",
            "Dial attempts ended, by outcome (answered, no_answer, busy, failed, voicemail,"
            " canceled).",
            ["outcome"],
            registry=r,
        )
        self.carrier_errors = Counter(
            "voicebot_dialer_carrier_errors_total",
            "Carrier REST requests that failed, by kind (auth, rate_limited, unavailable,"
            " rejected); the attempt was released (rejected: ended failed).",
            ["kind"],
            registry=r,
        )
        self.held_back = Counter(
            "voicebot_dialer_held_back_total",
            "Dialer ticks that placed nothing on purpose, by reason (asr_backlog, loop_lag,"
            " rate_limited, carrier_auth, carrier_unavailable, at_capacity).",
            ["reason"],
            registry=r,
        )
        self.skipped = Counter(
            "voicebot_dialer_skipped_total",
            "Due interviews not dialed, by reason (do_not_call, outside_hours, no_phone).",
            ["reason"],
            registry=r,
        )
        self.callbacks = Counter(
            "voicebot_dialer_callbacks_total",
            "Carrier callbacks (status, amd) by result (applied, repeat, unknown_call,"
            " bad_signature, bad_request).",
            ["kind", "result"],
            registry=r,
        )
        self.expired = Counter(
            "voicebot_dialer_leases_expired_total",
            "Attempts settled after their lease ran out, by state (claimed, placing, dialing, up).",
            ["state"],
            registry=r,
        )
        self.dialing = Gauge(
            "voicebot_dialer_calls_dialing",
            "Attempts this process holds that are not answered yet (claimed, placing, ringing).",
            registry=r,
        )
        self.rate = Gauge(
            "voicebot_dialer_calls_per_second", "The dialer's current rate limit.", registry=r
        )


def dialer_metrics(metrics: Any) -> DialerMetrics:
    """The dialer metrics of a server's :class:`voicebot.metrics.Metrics` (made once)."""
    existing = getattr(metrics, "dialer", None)
    if existing is None:
        existing = DialerMetrics(metrics.registry)
        metrics.dialer = existing
    return existing


@dataclass
class Load:
    """Why the server is too loaded to place another call now, or None."""

    reason: str | None
    detail: str = ""


class Dialer:
    """Places the calls of every campaign from this process; settles their outcomes."""

    def __init__(
        self,
        services: Services,
        carrier: OutboundCarrier | None,
        *,
        schedule: Schedule | None = None,
        do_not_call: DoNotCall | None = None,
        clock: Callable[[], float] = time.time,
        owner: str | None = None,
        asr_backlog: Callable[[], int] | None = None,
    ) -> None:
        assert services.store is not None
        self.services = services
        self.store = services.store
        self.settings = services.settings
        self.carrier = carrier
        self.schedule: Schedule = schedule or CallingHours()
        self.do_not_call: DoNotCall = do_not_call or StoreOptOuts(services)
        self.clock = clock
        self.owner = owner or services.process.id
        self.metrics = dialer_metrics(services.metrics)
        s = self.settings
        self.max_rate = s.dialer_calls_per_sec
        self.bucket = TokenBucket(s.dialer_calls_per_sec, max(1.0, s.dialer_calls_per_sec), clock)
        self.metrics.rate.set(self.max_rate)
        self.held_until = 0.0
        self.held_reason = ""
        self.failures = 0
        self.loop_lag = 0.0
        self._asr_backlog = asr_backlog or self._asr_finals_queued
        self._placing: set[asyncio.Task] = set()
        self._task: asyncio.Task | None = None
        self._quiet = 0.0
        self._next_read = 0.0
        self._lags: deque[float] = deque(maxlen=LAG_SAMPLES)
        self._voicemails: set[asyncio.Task] = set()
        self._changed_campaigns: dict[str, tuple[str, str | None]] = {}

    # -- life -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the dialer's task on the running loop."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="dialer")
            log.info(
                "dialer running: at most %d calls, %g calls/s%s",
                self.settings.dialer_max_calls,
                self.max_rate,
                "" if self.carrier is not None else " (no outbound carrier: nothing is placed)",
            )

    async def close(self) -> None:
        """Stop dialing; calls being placed finish placing (at most ``PLACE_TIMEOUT_SECS``)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._placing:
            await asyncio.wait(set(self._placing), timeout=PLACE_TIMEOUT_SECS)
        if self._voicemails:
            await asyncio.wait(set(self._voicemails), timeout=PLACE_TIMEOUT_SECS)
        try:
            await self.send_progress()
        except Exception:
            log.exception("sending the campaigns' progress at shutdown failed")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_settle = loop.time()
        next_report_sweep = loop.time()
        next_progress = loop.time()
        while True:
            started = loop.time()
            await asyncio.sleep(TICK_SECS)
            # The dialer's own timer is a loop-lag probe: how late the loop woke it. The worst of
            # the last few wake-ups counts, so one quiet tick amid a stall does not let a call in.
            self._lags.append(max(0.0, loop.time() - started - TICK_SECS))
            self.loop_lag = max(self._lags)
            try:
                if loop.time() >= next_settle:
                    next_settle = loop.time() + SETTLE_EVERY_SECS
                    await self.settle_expired()
                if loop.time() >= next_report_sweep:
                    next_report_sweep = loop.time() + REPORT_SWEEP_SECS
                    await self.report_left()
                if loop.time() >= next_progress and self._changed_campaigns:
                    next_progress = loop.time() + PROGRESS_EVERY_SECS
                    await self.send_progress()
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                self.services.metrics.internal_errors.labels(where="dialer").inc()
                log.exception("dialer tick failed; trying again")

    # -- placing ----------------------------------------------------------------------------

    def _asr_finals_queued(self) -> int:
        asr = self.services.asr
        if asr is None or not getattr(asr, "started", False):
            return 0
        return asr.stats().queued_finals

    def load(self) -> Load:
        """Whether the server is too loaded to add a call (see the module)."""
        s = self.settings
        backlog = self._asr_backlog()
        if backlog >= s.dialer_hold_asr_backlog:
            return Load("asr_backlog", f"{backlog} final transcriptions queued")
        if self.loop_lag * 1000 >= s.dialer_hold_loop_lag_ms:
            return Load("loop_lag", f"event loop {self.loop_lag * 1000:.0f} ms late")
        return Load(None)

    async def tick(self) -> int:
        """Claim and start placing what is due now, within every limit; how many were started."""
        if self.carrier is None:
            return 0
        now = self.clock()
        if now < self.held_until:
            self.metrics.held_back.labels(self.held_reason).inc()
            return 0
        load = self.load()
        if load.reason is not None:
            self.metrics.held_back.labels(load.reason).inc()
            return 0
        held = await attempts.open_attempts_of(self.store, self.owner)
        self.metrics.dialing.set(held)
        room = self.settings.dialer_max_calls - held - len(self.services.call_claims)
        if room <= 0:
            self.metrics.held_back.labels("at_capacity").inc()
            return 0
        if now < self._next_read:
            return 0
        due = await attempts.due_interviews(self.store, now, DUE_BATCH)
        if not due:
            self._quiet = min(IDLE_POLL_SECS, max(TICK_SECS, self._quiet * 2))
            self._next_read = now + self._quiet
            return 0
        self._quiet = 0.0
        started = 0
        full: set[str] = set()  # campaigns at their max_concurrent this tick
        for row in due:
            if started >= room:
                break
            if row["campaign_id"] in full:
                continue
            tz_name = row["candidate_timezone"] or row["policy"].get("timezone") or "UTC"
            phone = row["candidate_phone"] or ""
            if not phone:
                self.metrics.skipped.labels("no_phone").inc()
                await attempts.set_next_attempt(self.store, row["id"], None)
                continue
            if await self.do_not_call.is_listed(phone):
                await self._opted_out(row)
                continue
            if not self.schedule.in_window(row["policy"], tz_name, now):
                self.metrics.skipped.labels("outside_hours").inc()
                at = self.schedule.window_start(row["policy"], tz_name, now)
                await attempts.set_next_attempt(self.store, row["id"], max(at, now + 1))
                continue
            if not self.bucket.take():
                break
            attempt = await attempts.claim_attempt(
                self.store,
                row["id"],
                owner=self.owner,
                lease_until=now + CLAIM_LEASE_SECS,
                now=now,
            )
            if attempt is None:  # another process took it, or its campaign is full now
                self.bucket.give_back()
                full.add(row["campaign_id"])
                continue
            started += 1
            campaign_changed(getattr(self.services, "live", None), row["campaign_id"])
            task = asyncio.create_task(self._place(attempt, row), name=f"dial:{attempt['id']}")
            self._placing.add(task)
            task.add_done_callback(self._placing.discard)
        return started

    def wake(self) -> None:
        """Look for due interviews at the next tick (a campaign resumed, interviews added)."""
        self._quiet = 0.0
        self._next_read = 0.0

    async def wait_placed(self) -> None:
        """Wait until every call this dialer started placing was placed (or failed)."""
        while self._placing:
            await asyncio.wait(set(self._placing))

    async def wait_voicemails(self) -> None:
        """Wait until the sessions answering machines took have left their calls."""
        while self._voicemails:
            await asyncio.wait(set(self._voicemails))

    async def _opted_out(self, row: dict[str, Any]) -> None:
        """A due interview's number is on the do-not-call list: it is never dialed."""
        self.metrics.skipped.labels("do_not_call").inc()
        await attempts.set_next_attempt(self.store, row["id"], None)
        await self.store.update_interview(row["id"], status="opted_out", opted_out=1)
        log.info("interview %s: number on the do-not-call list, not dialed", row["id"])
        interview = await self.store.get_interview(row["id"])
        if interview is not None and self.services.events is not None:
            self.services.events.emit(
                "candidate.status_changed", **interview_refs(interview), status="opted_out"
            )
            self._changed(row["campaign_id"], interview)

    def _call(self, attempt: dict[str, Any], row: dict[str, Any]) -> OutboundCall:
        s = self.settings
        base = s.public_url.rstrip("/") or f"http://{s.host}:{s.port}"
        attempt_q = quote(attempt["id"], safe="")
        return OutboundCall(
            to=row["candidate_phone"],
            from_=row["policy"].get("caller_id") or s.twilio_caller_id,
            url=f"{base}/twilio/voice?interview_id={quote(row['id'], safe='')}",
            status_callback=f"{base}/twilio/status?attempt_id={attempt_q}",
            amd_callback=f"{base}/twilio/amd?attempt_id={attempt_q}",
            ring_timeout_secs=int(s.dialer_ring_timeout_secs),
            tags={"campaign_id": row["campaign_id"], "attempt_id": attempt["id"]},
        )

    async def _place(self, attempt: dict[str, Any], row: dict[str, Any]) -> None:
        assert self.carrier is not None
        attempt_id = attempt["id"]
        try:
            if not await attempts.advance_attempt(
                self.store,
                attempt_id,
                "placing",
                owner=self.owner,
                lease_until=self.clock() + PLACING_LEASE_SECS,
            ):
                return  # its lease ran out and another process released it
            call = self._call(attempt, row)
            try:
                placed = await asyncio.wait_for(self.carrier.place_call(call), PLACE_TIMEOUT_SECS)
            except TimeoutError:
                raise CarrierError(
                    "unavailable", f"no answer from the carrier in {PLACE_TIMEOUT_SECS:g} s"
                ) from None
        except CarrierError as exc:
            await self._carrier_failed(attempt, row, exc)
            return
        except Exception:
            self.services.metrics.internal_errors.labels(where="dialer_place").inc()
            log.exception("attempt %s: placing the call failed; released", attempt_id)
            await attempts.release_attempt(
                self.store, attempt_id, retry_at=self.clock() + BACKOFF_SECS[0]
            )
            return
        self.metrics.placed.inc()
        self.failures = 0
        if self.bucket.rate < self.max_rate:  # recover from a 429 a step per placed call
            self.bucket.rate = min(self.max_rate, self.bucket.rate * 1.25)
            self.metrics.rate.set(self.bucket.rate)
        now = self.clock()
        moved = await attempts.advance_attempt(
            self.store,
            attempt_id,
            "dialing",
            owner=self.owner,
            call_sid=placed.call_sid,
            placed_at=now,
            lease_until=now + self._ring_lease(),
        )
        if not moved:
            stored = await attempts.get_attempt(self.store, attempt_id)
            if stored is not None and stored["call_sid"] == placed.call_sid:
                # Its status callback came first; the placing time is ours to give.
                await self.store.db.execute(
                    "UPDATE dial_attempts SET placed_at = COALESCE(placed_at, ?) WHERE id = ?",
                    (now, attempt_id),
                )
                await self.store.db.commit()
            else:
                # Settled while the carrier was slow (as if this process had died): the call
                # must not ring on without an attempt that owns it.
                log.warning("attempt %s: settled while being placed; hanging up", attempt_id)
                with contextlib.suppress(CarrierError):
                    await self.carrier.hang_up(placed.call_sid)
                return
        log.info("attempt %s: call %s placed", attempt_id, placed.call_sid)

    def _ring_lease(self) -> float:
        s = self.settings
        return s.dialer_ring_timeout_secs + s.dialer_status_timeout_secs

    async def _carrier_failed(
        self, attempt: dict[str, Any], row: dict[str, Any], exc: CarrierError
    ) -> None:
        """The carrier did not take the call: release it (not the candidate's), hold back."""
        self.metrics.carrier_errors.labels(exc.kind).inc()
        now = self.clock()
        if exc.kind == "rejected":
            log.warning(
                "attempt %s: the carrier refused the call: %s", attempt["id"], without_numbers(exc)
            )
            await self.finish(
                attempt, "failed", detail={"carrier": "rejected", "status": exc.status}
            )
            return
        if not (exc.kind == "rate_limited" and exc.retry_after_secs):
            # A 429 that says how long to wait is obeyed as it says, and does not lengthen
            # the back-off of a later failure.
            self.failures += 1
        if exc.kind == "auth":
            wait, reason = AUTH_PAUSE_SECS, "carrier_auth"
            log.error(
                "DIALER PAUSED for %g s: the carrier refused our credentials (%s). Check "
                "VOICEBOT_TWILIO_ACCOUNT_SID and VOICEBOT_TWILIO_AUTH_TOKEN.",
                wait,
                without_numbers(exc),
            )
        elif exc.kind == "rate_limited":
            wait = exc.retry_after_secs or self._backoff()
            reason = "rate_limited"
            self.bucket.rate = max(0.05, self.bucket.rate / 2)
            self.metrics.rate.set(self.bucket.rate)
            log.warning(
                "the carrier asked us to slow down (%s): waiting %g s, now %.2f calls/s",
                without_numbers(exc),
                wait,
                self.bucket.rate,
            )
        else:
            wait, reason = self._backoff(), "carrier_unavailable"
            log.warning(
                "the carrier failed to take a call (%s): waiting %g s", without_numbers(exc), wait
            )
        self.held_until = max(self.held_until, now + wait)
        self.held_reason = reason
        await attempts.release_attempt(self.store, attempt["id"], retry_at=now + wait)

    def _backoff(self) -> float:
        return BACKOFF_SECS[min(self.failures, len(BACKOFF_SECS)) - 1]

    # -- leases that ran out ---------------------------------------------------------------

    async def settle_expired(self) -> int:
        """Settle the open attempts whose lease ran out (see the module); how many moved.

        A ``claimed`` or ``placing`` attempt whose process is dead (as the call settler tells:
        stopped, its pid gone, its heartbeat stale) is settled at once, lease or not: after a
        crash and restart nobody waits for the dead process's leases.
        """
        now = self.clock()
        moved = 0
        expired = await attempts.expired_attempts(self.store, now)
        seen = {attempt["id"] for attempt in expired}
        others = [
            attempt
            for attempt in await attempts.held_by_others(self.store, self.owner)
            if attempt["id"] not in seen
        ]
        if others:
            owners = await self.store.processes({a["lease_owner"] for a in others})
            wall = time.time()
            for attempt in others:
                if not self.services.process.sees_alive(owners.get(attempt["lease_owner"]), wall):
                    expired.append(attempt)  # the dead process's lease is over
        for attempt in expired:
            # The lease as read (a dead process's may not have run out): taken only if unchanged.
            expired_before = max(now, (attempt["lease_until"] or 0) + 1)
            state = attempt["state"]
            if state == "claimed":
                done = await attempts.release_attempt(
                    self.store, attempt["id"], retry_at=None, expired_before=expired_before
                )
            elif state == "placing":
                done = await self.finish(
                    attempt,
                    "failed",
                    detail={"unknown": "process died while placing"},
                    only_state="placing",
                    expired_before=expired_before,
                )
            elif state == "dialing":
                status = (
                    await attempts.call_status(self.store, attempt["call_sid"])
                    if attempt["call_sid"]
                    else None
                )
                if status is not None:  # its stream started: answered, callbacks missed
                    done = await attempts.advance_attempt(
                        self.store,
                        attempt["id"],
                        "up",
                        answered_at=now,
                        lease_until=now + UP_LEASE_SECS,
                    )
                else:
                    done = await self.finish(
                        attempt,
                        "no_answer",
                        detail={"timeout": "no status callback came"},
                        only_state="dialing",
                        expired_before=expired_before,
                    )
            else:  # up
                status = await attempts.call_status(self.store, attempt["call_sid"] or "")
                if status == "in_progress":
                    await self._renew(attempt["id"], now + UP_LEASE_SECS)
                    continue
                done = await self.finish(
                    attempt, "answered", only_state="up", expired_before=expired_before
                )
            if done:
                moved += 1
                self.metrics.expired.labels(state).inc()
        return moved

    async def _renew(self, attempt_id: str, until: float) -> None:
        await self.store.db.execute(
            "UPDATE dial_attempts SET lease_until = ? WHERE id = ? AND state = 'up'",
            (until, attempt_id),
        )
        await self.store.db.commit()

    # -- outcomes --------------------------------------------------------------------------

    async def finish(
        self,
        attempt: dict[str, Any],
        outcome: str,
        *,
        detail: dict[str, Any] | None = None,
        call_sid: str | None = None,
        only_state: str | None = None,
        expired_before: float | None = None,
    ) -> bool:
        """End an attempt with ``outcome`` and decide the interview's next step; idempotent.

        Whether this call ended it. Not reached (every outcome but ``answered``): the interview
        is due again at the schedule's next attempt time, or ends ``unreachable`` after its
        campaign's last attempt; both in the transaction that ends the attempt. The events
        follow (:meth:`report`).
        """
        store = self.store
        now = self.clock()
        interview = await store.get_interview(attempt["interview_id"])
        campaign = await attempts.campaign_of(store, attempt["campaign_id"])
        policy = campaign["policy"] if campaign is not None else {}
        max_attempts = int(policy.get("max_attempts") or attempts.DEFAULT_MAX_ATTEMPTS)
        number = attempt["number"]
        next_at: float | None = None
        unreachable = False
        if interview is None or outcome == "answered" or interview["status"] in DONE_STATUSES:
            next_at = None
        elif number >= max_attempts:
            unreachable = True
        else:
            tz_name = interview["candidate_timezone"] or policy.get("timezone") or "UTC"
            next_at = self.schedule.next_attempt_at(policy, tz_name, now, number)
        if not await attempts.end_attempt(
            store,
            attempt,
            outcome,
            ended_at=now,
            next_attempt_at=next_at,
            unreachable=unreachable,
            detail=detail,
            call_sid=call_sid,
            only_state=only_state,
            expired_before=expired_before,
            report_by=now + REPORT_GRACE_SECS,
        ):
            return False
        self.metrics.attempts.labels(outcome).inc()
        self.wake()  # its campaign has room again
        log.info(
            "interview %s: attempt %d of %d ended %s%s",
            attempt["interview_id"],
            number,
            max_attempts,
            outcome,
            " (unreachable)" if unreachable else "",
        )
        await self.report(attempt["id"])
        return True

    async def report(self, attempt_id: str) -> None:
        """Tell the HR system how an ended attempt went (from what is stored; may run again).

        ``dial.attempted``; ``candidate.status_changed`` ``no_answer`` with the next attempt time
        when the candidate was not reached; ``interview.unreachable`` after the last attempt;
        ``campaign.progress``. Each event's id is derived from the attempt, so sending them again
        (a process died before they reached the bus) gives the same events.
        """
        store = self.store
        attempt = await attempts.get_attempt(store, attempt_id)
        if attempt is None or attempt["state"] != "ended":
            return
        interview = await store.get_interview(attempt["interview_id"])
        campaign = await attempts.campaign_of(store, attempt["campaign_id"])
        events = self.services.events
        if interview is not None and campaign is not None and events is not None:
            policy = campaign["policy"]
            max_attempts = int(policy.get("max_attempts") or attempts.DEFAULT_MAX_ATTEMPTS)
            number, outcome = attempt["number"], attempt["outcome"]
            refs = interview_refs(interview)
            ms = int(attempt["ended_at"] * 1000)

            def event_id(kind: str) -> str:
                return derived_event_id(ms, f"dial:{attempt_id}:{kind}")

            unreachable = interview["status"] == "unreachable" and number >= max_attempts
            next_at = interview["next_attempt_at"]
            next_iso = None if next_at is None else format_timestamp(int(next_at * 1000))
            events.emit_with_id(
                event_id("dial.attempted"),
                "dial.attempted",
                **refs,
                campaign_id=attempt["campaign_id"],
                attempt=number,
                max_attempts=max_attempts,
                outcome=outcome,
                call_sid=attempt["call_sid"],
                next_attempt_at=next_iso,
            )
            if outcome != "answered" and (unreachable or interview["status"] not in DONE_STATUSES):
                events.emit_with_id(
                    event_id("candidate.status_changed"),
                    "candidate.status_changed",
                    **refs,
                    status="no_answer",
                    next_attempt_at=next_iso,
                )
            if unreachable:
                events.emit_with_id(
                    event_id("interview.unreachable"),
                    "interview.unreachable",
                    **refs,
                    campaign_id=attempt["campaign_id"],
                    attempts=number,
                    last_outcome=outcome,
                )
            self._changed(attempt["campaign_id"], interview)
            if not await events.flush():
                return  # still queued: a later sweep sends them again (same ids)
        await attempts.mark_reported(store, attempt_id)

    async def report_left(self) -> int:
        """Send the events of ended attempts a process died before reporting; how many."""
        left = await attempts.unreported_attempts(self.store, self.clock())
        for attempt in left:
            await self.report(attempt["id"])
        if left:
            log.warning("sent the events of %d dial attempts a process left unreported", len(left))
        return len(left)

    async def interview_held(self, interview_id: str, status: str) -> None:
        """A campaign's interview was held (a person answered) and has its outcome ``status``.

        Cut short (``incomplete``: hung up early; ``no_response``: silent) with attempts left:
        the interview is due again at the schedule's next attempt time, as after a failed
        attempt. Any other outcome ends its campaign's calls.
        """
        interview = await self.store.get_interview(interview_id)
        if interview is None or not interview.get("campaign_id"):
            return
        campaign = await attempts.campaign_of(self.store, interview["campaign_id"])
        if campaign is None:
            return
        policy = campaign["policy"]
        max_attempts = int(policy.get("max_attempts") or attempts.DEFAULT_MAX_ATTEMPTS)
        made = len(await attempts.dial_attempts_of(self.store, interview_id))
        next_at = None
        if status in CUT_SHORT_STATUSES and made < max_attempts:
            tz_name = interview["candidate_timezone"] or policy.get("timezone") or "UTC"
            next_at = self.schedule.next_attempt_at(policy, tz_name, self.clock(), made)
        await attempts.set_next_attempt(self.store, interview_id, next_at)
        self._changed(interview["campaign_id"], interview)

    def _changed(self, campaign_id: str, interview: dict[str, Any]) -> None:
        """A campaign's counts changed: ``campaign.progress`` goes out with the next batch.

        The monitor's campaigns views hear of it at once (their own, cheap live channel).
        """
        self._changed_campaigns[campaign_id] = (interview["job_id"], interview.get("client"))
        campaign_changed(getattr(self.services, "live", None), campaign_id)

    async def send_progress(self) -> int:
        """``campaign.progress`` for every campaign whose counts changed; how many.

        At most every :data:`PROGRESS_EVERY_SECS` from the dialer's task: counting a campaign of
        100,000 interviews and their attempts takes about 0.2 s, too much for every attempt.
        """
        changed, self._changed_campaigns = self._changed_campaigns, {}
        if self.services.events is None:
            return 0
        for campaign_id, (job_id, client) in changed.items():
            counts = await attempts.campaign_counts(self.store, campaign_id)
            self.services.events.emit(
                "campaign.progress",
                campaign_id=campaign_id,
                job_id=job_id,
                client=client or "admin",
                **counts,
            )
        return len(changed)

    # -- carrier callbacks -----------------------------------------------------------------

    async def _attempt_of(self, attempt_id: str | None, call_sid: str) -> dict[str, Any] | None:
        """The attempt a callback is about, or None: not a call this server placed.

        By the id in its URL (the sid must match once known), else by its CallSid.
        """
        if attempt_id:
            attempt = await attempts.get_attempt(self.store, attempt_id)
            if attempt is None or attempt["state"] in ("claimed",):
                return None
            if attempt["call_sid"] not in (None, call_sid):
                return None
            return attempt
        return await attempts.attempt_of_call(self.store, call_sid)

    async def on_status(self, attempt_id: str | None, params: dict[str, str]) -> str | None:
        """A status callback (``CallStatus``); returns ``applied``/``repeat``, None: unknown."""
        call_sid = params.get("CallSid", "")
        attempt = await self._attempt_of(attempt_id, call_sid)
        if attempt is None:
            return None
        if attempt["state"] == "ended":
            return "repeat"
        status = params.get("CallStatus", "")
        now = self.clock()
        if status in RINGING_STATUSES:
            moved = await attempts.advance_attempt(
                self.store,
                attempt["id"],
                "dialing",
                call_sid=call_sid,
                lease_until=now + self._ring_lease(),
            )
        elif status == "in-progress":
            moved = await attempts.advance_attempt(
                self.store,
                attempt["id"],
                "up",
                call_sid=call_sid,
                answered_at=now,
                lease_until=now + UP_LEASE_SECS,
            )
        elif status == "completed":
            answered = (
                attempt["state"] == "up"
                or attempt["answered_at"] is not None
                or _positive(params.get("CallDuration"))
                or await attempts.call_status(self.store, call_sid) is not None
                or params.get("AnsweredBy") is not None
            )
            answered_by = params.get("AnsweredBy") or attempt["answered_by"] or ""
            if answered_by in MACHINE_ANSWERS:
                outcome = "voicemail"
            else:
                outcome = "answered" if answered else "no_answer"
            moved = await self.finish(
                attempt, outcome, call_sid=call_sid, detail=_detail(params, answered_by)
            )
        elif status in FAILED_STATUSES:
            moved = await self.finish(
                attempt, FAILED_STATUSES[status], call_sid=call_sid, detail=_detail(params, "")
            )
        else:
            return "repeat"  # a status we do not act on
        return "applied" if moved else "repeat"

    async def on_amd(self, attempt_id: str | None, params: dict[str, str]) -> str | None:
        """The answering-machine verdict (``AnsweredBy``); ``applied``/``repeat``, None: unknown.

        A machine (or fax): the interview stops at once (its session in this process leaves the
        call; elsewhere, the carrier hangs up) and the attempt ends ``voicemail`` when the call
        completes. A person (``human``) or ``unknown``: the interview goes on.
        """
        call_sid = params.get("CallSid", "")
        attempt = await self._attempt_of(attempt_id, call_sid)
        if attempt is None:
            return None
        answered_by = params.get("AnsweredBy", "")
        if attempt["state"] == "ended" or attempt["answered_by"]:
            return "repeat"
        await attempts.set_answered_by(self.store, attempt["id"], answered_by)
        if answered_by in MACHINE_ANSWERS:
            log.info("attempt %s: an answering machine took call %s", attempt["id"], call_sid)
            session = self.services.sessions.get(call_sid)
            stop = getattr(session, "stop_for_voicemail", None)
            if stop is not None:
                # The session stops at once; its message (if any) plays on after the callback
                # is answered (Twilio waits about 15 s for it).
                task = asyncio.create_task(stop(), name=f"voicemail:{call_sid}")
                self._voicemails.add(task)
                task.add_done_callback(self._voicemails.discard)
                await asyncio.sleep(0)  # it has begun: the interview takes no further step
            elif self.carrier is not None:
                try:
                    await self.carrier.hang_up(call_sid)
                except CarrierError as exc:
                    log.warning(
                        "call %s: hanging up on the machine failed: %s",
                        call_sid,
                        without_numbers(exc),
                    )
        return "applied"


_PHONE_LIKE = re.compile(r"\+?\d[\d ().-]{5,}\d")


def without_numbers(error: object) -> str:
    """An error's text for the log, phone numbers (any run of 7+ digits) masked.

    Carriers name the number they refused ("The 'To' number +1555... is not valid"); a
    candidate's number never reaches the log.
    """
    return _PHONE_LIKE.sub("<number>", str(error))


def _positive(value: str | None) -> bool:
    try:
        return float(value or 0) > 0
    except ValueError:
        return False


def _detail(params: dict[str, str], answered_by: str) -> dict[str, Any]:
    """What the carrier said of the call's end, for the attempt's ``detail`` (no phone data)."""
    detail: dict[str, Any] = {"call_status": params.get("CallStatus", "")}
    if params.get("CallDuration"):
        detail["duration_secs"] = params["CallDuration"]
    if answered_by:
        detail["answered_by"] = answered_by
    for key in ("SipResponseCode", "ErrorCode"):
        if params.get(key):
            detail[key] = params[key]
    return detail
