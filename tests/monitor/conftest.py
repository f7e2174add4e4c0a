"""Fixtures of the monitor tests."""

from __future__ import annotations

import pytest

from tests.redis_helper import RedisServer


@pytest.fixture(scope="module")
def redis_server():
    """A real redis-server on a free loopback port (nothing persisted)."""
    server = RedisServer().start()
    yield server
    server.stop()
    server.cleanup()
