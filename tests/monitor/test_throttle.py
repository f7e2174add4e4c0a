"""Sign-in throttling shared by several server processes through a real Redis."""

from __future__ import annotations

import time

from voicebot.monitor.accounts import LoginThrottle, RedisLoginThrottle


def pair(url: str) -> tuple[RedisLoginThrottle, RedisLoginThrottle]:
    prefix = f"test:{time.monotonic_ns()}"
    return RedisLoginThrottle(url, prefix=prefix), RedisLoginThrottle(url, prefix=prefix)


async def test_failures_on_two_processes_add_up(redis_server):
    a, b = pair(redis_server.url)
    try:
        for throttle in (a, b, a, b):
            assert await throttle.wait_secs("dana", "10.0.0.1") == 0
            await throttle.record_failure("dana", "10.0.0.1")
        await b.record_failure("Dana", "10.0.0.2")  # the fifth, another case, another address
        for throttle in (a, b):
            wait = await throttle.wait_secs("dana", "10.0.0.3")
            assert 800 < wait <= 900
        assert await a.wait_secs("lee", "10.0.0.1") == 0  # other users are not locked out
        await a.record_success("dana", "10.0.0.1")
        # b never saw a success locally, but its own count (2) is under the limit
        assert await b.wait_secs("dana", "10.0.0.1") == 0
    finally:
        await a.close()
        await b.close()


async def test_one_address_spraying_usernames_is_stopped(redis_server):
    a, b = pair(redis_server.url)
    try:
        for n in range(20):
            await (a if n % 2 else b).record_failure(f"user{n}", "10.9.9.9")
        assert await a.wait_secs("someone-else", "10.9.9.9") > 0
        assert await a.wait_secs("someone-else", "10.9.9.8") == 0
    finally:
        await a.close()
        await b.close()


async def test_without_redis_the_process_still_throttles_on_its_own():
    throttle = RedisLoginThrottle("redis://127.0.0.1:1/0")
    for _ in range(5):
        await throttle.record_failure("dana", "10.0.0.1")
    assert await throttle.wait_secs("dana", "10.0.0.1") > 0
    await throttle.close()


async def test_in_memory_throttle_has_the_same_async_face():
    throttle = LoginThrottle()
    for _ in range(5):
        await throttle.record_failure("dana", "10.0.0.1")
    assert await throttle.wait_secs("dana", "10.0.0.1") > 0
    await throttle.record_success("dana", "10.0.0.1")
    assert await throttle.wait_secs("dana", "10.0.0.1") == 0


async def test_attempts_are_counted_when_they_begin_and_taken_back_unless_they_fail(redis_server):
    for throttle in (LoginThrottle(), pair(redis_server.url)[0]):
        for _ in range(4):
            assert await throttle.begin_attempt("dana", "10.0.0.1") == 0
            await throttle.end_attempt("dana", "10.0.0.1", "undecided")  # the store was down
        for _ in range(4):
            assert await throttle.begin_attempt("dana", "10.0.0.1") == 0
            await throttle.end_attempt("dana", "10.0.0.1", "failed")
        assert await throttle.begin_attempt("dana", "10.0.0.1") == 0  # the fifth is checked
        assert await throttle.begin_attempt("dana", "10.0.0.1") > 0  # the sixth waits
        await throttle.end_attempt("dana", "10.0.0.1", "ok")  # the fifth was right
        assert await throttle.begin_attempt("dana", "10.0.0.1") == 0
        if isinstance(throttle, RedisLoginThrottle):
            await throttle.close()
