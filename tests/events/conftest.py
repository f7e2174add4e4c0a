"""Fixtures for the event bus tests: a real redis-server per test, on a free loopback port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.redis_helper import RedisServer


@pytest.fixture
def redis_server(tmp_path) -> Iterator[RedisServer]:
    """A fresh redis-server (nothing persisted) for one test."""
    server = RedisServer(workdir=tmp_path / "redis")
    (tmp_path / "redis").mkdir()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def durable_redis_server(tmp_path) -> Iterator[RedisServer]:
    """A redis-server with an append-only file (fsync always): its data survives a restart."""
    server = RedisServer(appendonly=True, workdir=tmp_path / "redis-aof")
    (tmp_path / "redis-aof").mkdir()
    server.start()
    try:
        yield server
    finally:
        server.stop()
