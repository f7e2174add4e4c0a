"""Twilio's REST API as an ``OutboundCarrier``: place calls and end them.

A call is placed with ``POST {api}/2010-04-01/Accounts/{AccountSid}/Calls.json`` (form-encoded,
HTTP basic auth ``AccountSid:AuthToken``): ``To``, ``From``, ``Url`` (the voice webhook Twilio
fetches when the call is answered), ``StatusCallback`` with ``StatusCallbackEvent`` repeated for
``initiated ringing answered completed``, ``Timeout`` (ring time) and, when the call has an AMD
callback, asynchronous answering-machine detection (``MachineDetection=DetectMessageEnd``,
``AsyncAmd=true``, ``AsyncAmdStatusCallback``): the person hears the greeting at once while
detection runs, and a machine's verdict comes after its beep. Twilio answers 201 with the call's
JSON (``sid``, ``status`` "queued"). A call is ended with ``POST .../Calls/{CallSid}.json``
``Status=completed`` (which also cancels a call still ringing).

Errors come as ``{"code", "message", "more_info", "status"}`` and are raised as
:class:`CarrierError` kinds the dialer acts on (see ``voicebot.telephony.outbound``). Twilio's
message may quote the number dialled, so messages and logs carry numbers masked
(:func:`mask_number`); the auth token is never logged.

References: https://www.twilio.com/docs/voice/api/call-resource (create and update a call),
https://www.twilio.com/docs/voice/answering-machine-detection (AsyncAmd),
https://www.twilio.com/docs/api/errors/20429 (429: not processed, safe to retry after backing off).

The request building and the error mapping are pure functions (:func:`create_call_form`,
:func:`error_from_response`), tested without sockets; :class:`TwilioCarrier` only moves them over
one aiohttp session.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import aiohttp

from voicebot.telephony.outbound import (
    STATUS_CALLBACK_EVENTS,
    CarrierError,
    OutboundCall,
    OutboundCarrier,
    PlacedCall,
)

if TYPE_CHECKING:
    from voicebot.config import Settings
    from voicebot.metrics import Metrics

log = logging.getLogger(__name__)

API_VERSION = "2010-04-01"
DEFAULT_API_URL = "https://api.twilio.com"
REQUEST_TIMEOUT_SECS = 10.0
"""Most a REST request may take, connection included; then the carrier counts as unavailable."""

CALL_ALREADY_ENDED = 21220
"""Twilio's error code for updating a call that is no longer queued, ringing or in progress."""

_NUMBER = re.compile(r"\+?\d[\d ().-]{5,}\d")


def mask_number(number: str) -> str:
    """A phone number with all but its country prefix and last two digits hidden, for logs."""
    digits = re.sub(r"\D", "", number)
    if len(digits) <= 4:
        return "***"
    plus = "+" if number.strip().startswith("+") else ""
    return f"{plus}{digits[:2]}***{digits[-2:]}"


def redact_numbers(text: str) -> str:
    """``text`` with every phone-number-like run of digits masked (see :func:`mask_number`)."""
    return _NUMBER.sub(lambda m: mask_number(m.group(0)), text)


def create_call_form(call: OutboundCall) -> list[tuple[str, str]]:
    """The form fields of Twilio's create-a-call request for ``call`` (repeated names allowed)."""
    form = [
        ("To", call.to),
        ("From", call.from_),
        ("Url", call.url),
        ("Method", "POST"),
        ("StatusCallback", call.status_callback),
        ("StatusCallbackMethod", "POST"),
        *(("StatusCallbackEvent", event) for event in STATUS_CALLBACK_EVENTS),
        ("Timeout", str(int(call.ring_timeout_secs))),
    ]
    if call.amd_callback:
        form += [
            ("MachineDetection", "DetectMessageEnd"),
            ("AsyncAmd", "true"),
            ("AsyncAmdStatusCallback", call.amd_callback),
            ("AsyncAmdStatusCallbackMethod", "POST"),
        ]
    return form


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date); None if absent."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _twilio_error(body: str) -> tuple[int | None, str]:
    """Twilio's error code and message from an error body (JSON), or what could be read of it."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict):
        code = data.get("code")
        message = data.get("message")
        return (
            code if isinstance(code, int) and not isinstance(code, bool) else None,
            redact_numbers(str(message)) if message else "(no message)",
        )
    snippet = " ".join(body.split())[:120]
    return None, redact_numbers(snippet) if snippet else "(empty body)"


def error_from_response(
    status: int, body: str, headers: Mapping[str, str], *, what: str
) -> CarrierError:
    """The :class:`CarrierError` for a non-2xx answer from Twilio to the request ``what``."""
    code, message = _twilio_error(body)
    detail = f"HTTP {status}" + (f", Twilio error {code}" if code is not None else "")
    said = f"({detail}: {message})"
    if status in (401, 403):
        return CarrierError(
            "auth",
            f"Twilio refused our credentials to {what} {said}; check "
            "VOICEBOT_TWILIO_ACCOUNT_SID and VOICEBOT_TWILIO_AUTH_TOKEN (the account's auth "
            "token, or an API key's secret)",
            status=status,
            code=code,
        )
    if status == 429:
        retry_after = parse_retry_after(headers.get("Retry-After"))
        wait = f"; it asks to wait {retry_after:g} s" if retry_after is not None else ""
        return CarrierError(
            "rate_limited",
            f"Twilio is rate-limiting us and did not {what} {said}{wait}; slow down and retry",
            status=status,
            retry_after_secs=retry_after,
            code=code,
        )
    if status >= 500:
        return CarrierError(
            "unavailable",
            f"Twilio failed to {what} {said}; retry later",
            status=status,
            code=code,
        )
    return CarrierError(
        "rejected",
        f"Twilio refused to {what} {said}; the same request will not succeed"
        + (f", see https://www.twilio.com/docs/errors/{code}" if code is not None else ""),
        status=status,
        code=code,
    )


class TwilioCarrier:
    """Places and ends calls through Twilio's REST API (or a Twilio-compatible one).

    One :class:`aiohttp.ClientSession` per carrier, opened on first use in the running loop;
    every request is bounded by ``request_timeout_secs``. ``metrics`` (optional) counts every
    request by outcome in ``voicebot_carrier_requests_total``.
    """

    name = "twilio"

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        api_url: str = DEFAULT_API_URL,
        request_timeout_secs: float = REQUEST_TIMEOUT_SECS,
        metrics: Metrics | None = None,
    ):
        if not account_sid or not auth_token:
            raise ValueError("TwilioCarrier needs an account SID and an auth token")
        self.account_sid = account_sid
        self.api_url = api_url.rstrip("/")
        self._auth = aiohttp.BasicAuth(account_sid, auth_token)
        self._timeout = aiohttp.ClientTimeout(total=request_timeout_secs)
        self._metrics = metrics
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:  # never the token
        return f"TwilioCarrier(account_sid={self.account_sid!r}, api_url={self.api_url!r})"

    @property
    def calls_url(self) -> str:
        """The account's Calls resource (create a call)."""
        return f"{self.api_url}/{API_VERSION}/Accounts/{quote(self.account_sid, safe='')}/Calls"

    def _session_now(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                headers={"Accept": "application/json", "User-Agent": "voicebot-dialer"},
            )
        return self._session

    def _count(self, request: str, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.carrier_requests.labels(self.name, request, outcome).inc()

    async def _post(
        self,
        request: str,
        url: str,
        form: list[tuple[str, str]],
        *,
        what: str,
        tags: str,
        ok_codes: frozenset[int] = frozenset(),
    ) -> tuple[int, str]:
        """POST ``form`` to ``url``; the status and body of the answer, or a :class:`CarrierError`.

        An error answer whose Twilio code is in ``ok_codes`` counts as an answer, not an error.
        """
        try:
            async with self._session_now().post(url, data=form, auth=self._auth) as response:
                body = await response.text(errors="replace")
                status, headers = response.status, response.headers
        except TimeoutError:
            error = CarrierError(
                "unavailable",
                f"Twilio did not answer within {self._timeout.total:g} s to {what}; retry later "
                "(whether it acted on the request is unknown: its status callback tells)",
            )
        except (aiohttp.ClientError, OSError) as exc:
            error = CarrierError(
                "unavailable",
                f"cannot reach Twilio's API at {self.api_url} to {what}: "
                f"{type(exc).__name__}: {redact_numbers(str(exc))[:200]}; retry later",
            )
        else:
            if 200 <= status < 300:
                return status, body
            error = error_from_response(status, body, headers, what=what)
            if error.code in ok_codes:
                return status, body
        self._count(request, error.kind)
        level = logging.ERROR if error.kind == "auth" else logging.WARNING
        log.log(
            level, "carrier %s %s failed (%s) %s: %s", self.name, request, error.kind, tags, error
        )
        raise error

    async def place_call(self, call: OutboundCall) -> PlacedCall:
        """Ask Twilio to place ``call``; the new call's SID and first status ("queued")."""
        tags = " ".join(f"{k}={v}" for k, v in sorted(call.tags.items()))
        what = f"place a call to {mask_number(call.to)}"
        _, body = await self._post(
            "place_call", self.calls_url + ".json", create_call_form(call), what=what, tags=tags
        )
        try:
            data: Any = json.loads(body)
        except ValueError:
            data = None
        sid = data.get("sid") if isinstance(data, dict) else None
        if not isinstance(sid, str) or not sid:
            # Accepted but unreadable: the call may be placed; its status callback will say.
            self._count("place_call", "unavailable")
            error = CarrierError(
                "unavailable",
                f"Twilio accepted the request to {what} but its answer has no call sid "
                f"({redact_numbers(' '.join(body.split()))[:120]!r})",
            )
            log.warning("carrier %s place_call failed (unavailable) %s: %s", self.name, tags, error)
            raise error
        self._count("place_call", "ok")
        status = data.get("status") if isinstance(data.get("status"), str) else "queued"
        log.info("carrier %s placed call %s (%s) %s", self.name, sid, status, tags)
        return PlacedCall(call_sid=sid, status=status)

    async def hang_up(self, call_sid: str) -> None:
        """End the call ``call_sid`` whether ringing or up (``Status=completed``).

        A call that has already ended counts as hung up (Twilio error 21220), so hanging up
        twice, or after the candidate did, is not an error.
        """
        url = f"{self.calls_url}/{quote(call_sid, safe='')}.json"
        await self._post(
            "hang_up",
            url,
            [("Status", "completed")],
            what=f"hang up call {call_sid}",
            tags=f"call_sid={call_sid}",
            ok_codes=frozenset({CALL_ALREADY_ENDED}),
        )
        self._count("hang_up", "ok")

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None
            await asyncio.sleep(0)  # let the connector close its transports


def outbound_not_configured(settings: Settings) -> str | None:
    """Why outbound calling is off with these settings (the variables to set); None when on."""
    missing = [
        name
        for name, value in (
            ("VOICEBOT_TWILIO_ACCOUNT_SID", settings.twilio_account_sid),
            ("VOICEBOT_TWILIO_AUTH_TOKEN", settings.twilio_auth_token),
            ("VOICEBOT_TWILIO_CALLER_ID", settings.twilio_caller_id),
        )
        if not value.strip()
    ]
    if not missing:
        return None
    return "outbound calls are off: set " + ", ".join(missing)


def carrier_from_settings(
    settings: Settings, metrics: Metrics | None = None
) -> OutboundCarrier | None:
    """The outbound carrier the settings configure, or None (the reason is logged).

    Outbound calling needs ``VOICEBOT_TWILIO_ACCOUNT_SID``, ``VOICEBOT_TWILIO_AUTH_TOKEN`` and
    ``VOICEBOT_TWILIO_CALLER_ID``; with none of the first and last set it is simply off (logged
    at info), with some set it is a configuration mistake (logged as a warning).
    """
    reason = outbound_not_configured(settings)
    if reason is not None:
        partly = bool(settings.twilio_account_sid.strip() or settings.twilio_caller_id.strip())
        log.log(logging.WARNING if partly else logging.INFO, "%s", reason)
        return None
    return TwilioCarrier(
        settings.twilio_account_sid.strip(),
        settings.twilio_auth_token,
        api_url=settings.twilio_api_url,
        metrics=metrics,
    )
