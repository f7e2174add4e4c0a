"""Send stored events again: after an HR-system outage, a fixed receiver, or a dead letter.

Replays come from the bridge's own store (the bus may long have forgotten the event). Each replay
is a new attempt, logged as such (``attempts.replay = 1``), with the **same** ``webhook-id`` as the
original deliveries, so a receiver that already has the event drops the copy. A replay that fails
puts the delivery back on a fresh retry schedule, so a running bridge keeps trying; one that
succeeds marks it delivered.

Select events by id (``event_ids``) or by event time range (``since`` inclusive, ``until``
exclusive), optionally narrowed to one event type and one endpoint. Endpoints added since an event
was received get a delivery too, when their type filter takes the event.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp

from hris_bridge.bridge import USER_AGENT, Sender, log_attempt, outcome_of
from hris_bridge.endpoints import Endpoint
from hris_bridge.schedule import RetrySchedule
from hris_bridge.store import DeliveryStore


@dataclass(frozen=True)
class ReplayResult:
    """What one replayed (event, endpoint) delivery got."""

    event_id: str
    endpoint_id: str
    status: str
    """The delivery's status after the replay (``delivered``, ``failed``, ``aborted``, ...), or
    ``not_found`` for an event id the store does not have."""
    status_code: int | None = None
    error: str | None = None
    duration_ms: float | None = None

    @property
    def ok(self) -> bool:
        """Whether the receiver took it (2xx)."""
        return self.status == "delivered"


class ReplayError(ValueError):
    """A replay request that cannot be served (no selection, unknown endpoint)."""


async def replay(
    store: DeliveryStore,
    endpoints: Sequence[Endpoint],
    *,
    event_ids: Sequence[str] | None = None,
    since: float | None = None,
    until: float | None = None,
    event_type: str | None = None,
    endpoint_id: str | None = None,
    session: aiohttp.ClientSession | None = None,
    schedule: RetrySchedule | None = None,
    user_agent: str = USER_AGENT,
    rng: random.Random | None = None,
) -> list[ReplayResult]:
    """Re-send the selected events now to their endpoints, one at a time in event order."""
    if not event_ids and since is None and until is None:
        raise ReplayError("give event ids, or a time range (since and/or until)")
    targets = list(endpoints)
    if endpoint_id is not None:
        targets = [e for e in targets if e.id == endpoint_id]
        if not targets:
            known = ", ".join(e.id for e in endpoints) or "none"
            raise ReplayError(f"no endpoint {endpoint_id!r} is configured (configured: {known})")
    schedule = schedule or RetrySchedule()
    events = await store.events(
        event_ids=list(event_ids) if event_ids else None,
        since=since,
        until=until,
        event_type=event_type,
    )
    results: list[ReplayResult] = []
    if event_ids:
        found = {event.id for event in events}
        results += [
            ReplayResult(i, endpoint_id or "*", "not_found") for i in event_ids if i not in found
        ]
    own_session = session is None
    if session is None:
        session = aiohttp.ClientSession()
    sender = Sender(session, user_agent)
    try:
        for event in events:
            matching = [e for e in targets if e.accepts(event.type)]
            if not matching:
                continue
            await store.record_event(event, [e.id for e in matching])
            for endpoint in matching:
                row = await store.get_delivery(event.id, endpoint.id)
                assert row is not None
                result = await sender.send(endpoint, event)
                # A replay starts a fresh schedule: this was attempt 1 of it.
                status, next_at = outcome_of(result, 1, schedule, rng)
                await store.record_attempt(
                    row.id,
                    status=status,
                    attempted_at=result.attempted_at,
                    duration_ms=result.duration_ms,
                    status_code=result.status_code,
                    error=result.error,
                    next_attempt_at=next_at,
                    replay=True,
                    reset_attempts=True,
                )
                log_attempt(endpoint.id, event, 1, result, status, next_at, replay=True)
                results.append(
                    ReplayResult(
                        event.id,
                        endpoint.id,
                        status,
                        result.status_code,
                        result.error,
                        round(result.duration_ms, 1),
                    )
                )
    finally:
        if own_session:
            await session.close()
    return results


def parse_time(value: str) -> float:
    """Unix seconds of an ISO 8601 time (``2026-11-22T09:00:00Z``) or a plain number."""
    from hris_bridge.store import iso_to_epoch

    try:
        return float(value)
    except ValueError:
        pass
    parsed = iso_to_epoch(value)
    if parsed is None:
        raise ReplayError(f"not an ISO 8601 time: {value!r} (e.g. 2026-11-22T09:00:00Z)")
    return parsed
