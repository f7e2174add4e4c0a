"""Redis clients of the monitor's shared state (accounts, sessions, sign-in throttle, call list).

redis-py's asyncio client does not retry by default: after a Redis restart every pooled
connection is dead, and the first command on each fails. These clients retry a failed command
(on a fresh connection) a few times with a short backoff, so a restart costs a sign-in nothing,
and still fail within about a second when Redis is really down.
"""

from __future__ import annotations

from typing import Any


def connect(url: str, *, socket_timeout: float, connect_timeout: float = 0.5) -> Any:
    """A ``redis.asyncio`` client for ``url`` (strings in and out) that rides out a restart."""
    import redis.asyncio as redis
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff
    from redis.exceptions import ConnectionError, TimeoutError

    return redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 2),
        retry_on_error=[ConnectionError, TimeoutError],
    )
