"""The sign-in throttle holds when the guesses come all at once (issue 18, finding 4).

Forty wrong passwords for one user sent concurrently over real sockets: the attempt is counted
before the slow password hash, so only the first ``max_per_user`` are checked and the rest get a
429, for a known and an unknown username alike; a correct password works again once the window
has passed. In-process throttle (with a clock the test moves) and the Redis one (a real
redis-server, a short window).
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from tests.monitor.test_web import PASSWORD, monitor_server
from voicebot.monitor.accounts import LoginThrottle, RedisLoginThrottle, SqliteAccounts

GUESSES = 40


async def sign_in_status(http, server, username: str, password: str) -> int:
    async with http.post(
        server.make_url("/monitor/login"),
        data={"username": username, "password": password},
        allow_redirects=False,
    ) as response:
        await response.read()
        return response.status


async def guess_concurrently(server, username: str) -> list[int]:
    async with aiohttp.ClientSession() as http:
        return list(
            await asyncio.gather(
                *(
                    sign_in_status(http, server, username, f"wrong password {n:04d}")
                    for n in range(GUESSES)
                )
            )
        )


@pytest.mark.parametrize("username", ["admin1", "nobody-here"])
async def test_concurrent_wrong_passwords_are_throttled_after_the_limit(tmp_path, username):
    now = [1000.0]
    accounts = SqliteAccounts(tmp_path / "accounts.sqlite3", 3600)
    server, services = await monitor_server(tmp_path, accounts)
    services.login_throttle = LoginThrottle(
        max_per_user=5, max_per_ip=100, window_secs=900, clock=lambda: now[0]
    )
    try:
        statuses = await guess_concurrently(server, username)
        assert statuses.count(401) == 5, statuses
        assert statuses.count(429) == GUESSES - 5, statuses
        async with aiohttp.ClientSession() as http:
            # Within the window even the right password waits (no oracle either way) ...
            assert await sign_in_status(http, server, "admin1", PASSWORD) == (
                429 if username == "admin1" else 303
            )
            now[0] += 901  # ... and works once the window has passed.
            assert await sign_in_status(http, server, "admin1", PASSWORD) == 303
        metrics = services.metrics.render().decode()
        throttled = GUESSES - 5 + (username == "admin1")
        assert f'voicebot_monitor_logins_total{{outcome="throttled"}} {throttled}.0' in metrics
    finally:
        await server.close()
        await accounts.close()


async def test_concurrent_wrong_passwords_are_throttled_through_redis(tmp_path, redis_server):
    accounts = SqliteAccounts(tmp_path / "accounts.sqlite3", 3600)
    server, services = await monitor_server(tmp_path, accounts)
    window = 3.0
    throttle = RedisLoginThrottle(
        redis_server.url,
        max_per_user=5,
        max_per_ip=100,
        window_secs=window,
        prefix=f"test:{time.monotonic_ns()}",
    )
    services.login_throttle = throttle
    try:
        started = time.monotonic()
        statuses = await guess_concurrently(server, "admin1")
        assert statuses.count(401) == 5, statuses
        assert statuses.count(429) == GUESSES - 5, statuses
        await asyncio.sleep(max(0.0, window + 1.1 - (time.monotonic() - started)))
        async with aiohttp.ClientSession() as http:
            assert await sign_in_status(http, server, "admin1", PASSWORD) == 303
    finally:
        await throttle.close()
        await server.close()
        await accounts.close()
