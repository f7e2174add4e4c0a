"""Per-address request limits on the routes anyone can reach, before they do any work.

The Twilio webhooks (before their signature is checked), the monitor's sign-in and the signed
report and recording links answer requests from anywhere. :class:`AddressRateLimit` is a token
bucket per client address: ``per_minute`` requests a minute sustained, the same number at once
as a burst; more get a 429 with ``Retry-After``. The sign-in's own throttle (failed passwords per
user and address, ``voicebot.monitor.accounts``) still applies on top. Routes behind the API's
bearer token, the health check, the metrics and the media stream (which has its own limits) are
not counted here.

The address is the socket's peer: behind a reverse proxy every request comes from the proxy, so
set ``VOICEBOT_UNAUTH_REQUESTS_PER_MIN`` to 0 there and limit at the proxy instead.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from aiohttp import web

from voicebot.api.carrier import SERVICES_KEY

LIMITED_PREFIXES = ("/twilio/voice", "/twilio/status", "/twilio/amd", "/monitor/login")
"""Paths (and what lies below them) limited per address."""
LIMITED_PATTERNS = ("/interviews/{interview_id}/report", "/recordings/{call_sid}/call.wav")
"""Routes (by pattern) limited per address: opened with a signed link, no login."""


class AddressRateLimit:
    """A token bucket per client address (this process); memory bounded by ``max_addresses``."""

    def __init__(
        self,
        per_minute: int,
        *,
        max_addresses: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_minute = max(0, int(per_minute))
        self.max_addresses = max_addresses
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        """address -> (tokens left, when counted), least recently seen first."""

    def __len__(self) -> int:
        return len(self._buckets)

    def wait_secs(self, address: str) -> float:
        """Take one request from the address's allowance: 0, or the seconds until one is back."""
        if self.per_minute <= 0:
            return 0.0
        now = self.clock()
        rate = self.per_minute / 60.0
        tokens, then = self._buckets.pop(address, (float(self.per_minute), now))
        tokens = min(float(self.per_minute), tokens + (now - then) * rate)
        if tokens >= 1.0:
            tokens -= 1.0
            wait = 0.0
        else:
            wait = (1.0 - tokens) / rate
        self._buckets[address] = (tokens, now)  # re-inserted: most recently seen last
        while len(self._buckets) > self.max_addresses:
            self._buckets.popitem(last=False)
        return wait


ADDRESS_LIMIT_KEY = web.AppKey("address_limit", AddressRateLimit)


def _limited(request: web.Request) -> bool:
    path = request.path
    if any(path == prefix or path.startswith(prefix + "/") for prefix in LIMITED_PREFIXES):
        return True
    resource = request.match_info.route.resource
    return resource is not None and resource.canonical in LIMITED_PATTERNS


@web.middleware
async def address_limits(request: web.Request, handler) -> web.StreamResponse:
    """429 for a request to an open route from an address over its allowance."""
    limit = request.app.get(ADDRESS_LIMIT_KEY)
    if limit is None or not _limited(request):
        return await handler(request)
    wait = limit.wait_secs(request.remote or "unknown")
    if wait <= 0:
        return await handler(request)
    services = request.app.get(SERVICES_KEY)
    if services is not None:
        services.metrics.http_errors.labels("address_limit", "rate_limited").inc()
    seconds = int(wait) + 1
    response = web.json_response(
        {
            "error": {
                "code": "rate_limited",
                "message": f"too many requests from this address to {request.path}: at most"
                f" {limit.per_minute} a minute; try again in {seconds} s",
            }
        },
        status=429,
    )
    response.headers["Retry-After"] = str(seconds)
    return response
