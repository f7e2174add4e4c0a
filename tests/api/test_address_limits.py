"""Per-address limits on the routes anyone can reach (issue 18, finding 6, its HTTP half).

The Twilio webhooks (before their signature is checked), the monitor's sign-in and the signed
report/recording links take at most ``VOICEBOT_UNAUTH_REQUESTS_PER_MIN`` requests a minute from
one address; more get a 429 that says when to come back. Routes behind the API's bearer token
and the health checks are not limited. Over real sockets against the real app.
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from tests.api.app_server import API_TOKEN, start_app_server
from voicebot.api.address_limits import AddressRateLimit


@pytest.fixture
async def limited(tmp_path):
    server, services = await start_app_server(tmp_path, unauth_requests_per_min=5)
    async with aiohttp.ClientSession() as http:
        yield server, services, http
    await server.close()


async def status_of(http, method: str, url, **kwargs) -> tuple[int, dict]:
    async with http.request(method, url, allow_redirects=False, **kwargs) as response:
        await response.read()
        return response.status, dict(response.headers)


@pytest.mark.parametrize(
    "method, path",
    [
        ("POST", "/twilio/voice"),
        ("POST", "/monitor/login"),
        ("GET", "/interviews/iv_1/report"),
        ("GET", "/recordings/CA1/call.wav"),
    ],
)
async def test_unauthenticated_routes_are_limited_per_address(limited, method, path):
    server, services, http = limited
    answers = await asyncio.gather(
        *(status_of(http, method, server.make_url(path), data=b"") for _ in range(8))
    )
    statuses = [status for status, _ in answers]
    assert statuses.count(429) == 3, statuses
    assert all(status < 500 for status in statuses)
    throttled = next(headers for status, headers in answers if status == 429)
    assert int(throttled["Retry-After"]) >= 1
    metrics = services.metrics.render().decode()
    assert 'voicebot_http_rejections_total{endpoint="address_limit",reason="rate_limited"} 3.0' in (
        metrics
    )


async def test_authenticated_api_and_health_are_not_limited(limited):
    server, services, http = limited
    for _ in range(3):  # use up the address's allowance on the open routes
        await status_of(http, "POST", server.make_url("/monitor/login"), data=b"")
        await status_of(http, "POST", server.make_url("/twilio/voice"), data=b"")
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    for _ in range(10):
        assert (await status_of(http, "GET", server.make_url("/api/jobs"), headers=auth))[0] == 200
        assert (await status_of(http, "GET", server.make_url("/healthz")))[0] == 200


def test_the_allowance_comes_back_as_time_passes():
    now = [100.0]
    limit = AddressRateLimit(per_minute=6, clock=lambda: now[0])
    assert [limit.wait_secs("10.0.0.1") for _ in range(7)] == [0.0] * 6 + [10.0]
    assert limit.wait_secs("10.0.0.2") == 0.0  # other addresses have their own
    now[0] += 10
    assert limit.wait_secs("10.0.0.1") == 0.0
    assert limit.wait_secs("10.0.0.1") == 10.0


def test_a_spray_of_addresses_does_not_grow_memory():
    limit = AddressRateLimit(per_minute=6, max_addresses=100)
    for n in range(1000):
        limit.wait_secs(f"10.0.{n // 256}.{n % 256}")
    assert len(limit) <= 100


def test_zero_turns_the_limit_off():
    limit = AddressRateLimit(per_minute=0)
    assert all(limit.wait_secs("10.0.0.1") == 0 for _ in range(1000))
