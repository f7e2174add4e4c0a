"""Durable events from the call path to the bus, in order, without ever holding up a call.

Sessions and the report builder call :meth:`EventEmitter.emit` (synchronous, O(1)): the event is
stamped (id, time) at once and queued; one writer task publishes the queue to the bus in order.
The bus itself never loses a durable event (the embedded bus writes SQLite; the Redis bus writes
its local outbox first and flushes when Redis is reachable), so a slow or absent Redis costs the
call nothing. At shutdown the queue is drained before the bus closes.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from voicebot.events.types import Event, make_event

log = logging.getLogger(__name__)

DRAIN_SECS = 30.0
"""At shutdown, how long queued events may take to reach the bus."""


class EventEmitter:
    """Queue of durable events for one bus, published by one writer task."""

    def __init__(self, bus: Any) -> None:
        self.bus = bus
        self._queue: asyncio.Queue[Event | asyncio.Future | None] = asyncio.Queue()
        self._writer: asyncio.Task | None = None
        self.emitted = 0
        self.failed = 0

    def start(self) -> None:
        """Start the writer task (on the running loop)."""
        if self._writer is None:
            self._writer = asyncio.create_task(self._write(), name="event-writer")

    def emit(self, type: str, **data: Any) -> Event:
        """Stamp and queue one event; returns it (its id is final)."""
        return self.emit_with_id(None, type, **data)

    def emit_with_id(self, event_id: str | None, type: str, **data: Any) -> Event:
        """As :meth:`emit`, with the event's id given (``None``: a new one)."""
        event = make_event(type, data, id=event_id)
        self._queue.put_nowait(event)
        self.emitted += 1
        return event

    async def _write(self) -> None:
        while True:
            event = await self._queue.get()
            if event is None:
                return
            if isinstance(event, asyncio.Future):
                if not event.done():
                    event.set_result(None)
                continue
            try:
                await self.bus.publish(event)
            except Exception:  # the bus keeps durable events itself; this is a bug, count it
                self.failed += 1
                log.exception("event %s (%s) could not be handed to the bus", event.id, event.type)

    async def flush(self, within_secs: float = DRAIN_SECS) -> bool:
        """Wait until every event queued so far was handed to the bus; whether it was in time."""
        if self._writer is None:
            return True
        handed = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(handed)
        try:
            await asyncio.wait_for(asyncio.shield(handed), within_secs)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        """Publish what is queued (at most ``DRAIN_SECS``), then stop the writer."""
        if self._writer is None:
            return
        self._queue.put_nowait(None)
        try:
            await asyncio.wait_for(asyncio.shield(self._writer), DRAIN_SECS)
        except TimeoutError:
            log.error("%d events still queued for the bus at shutdown", self._queue.qsize())
            self._writer.cancel()
        self._writer = None


def interview_refs(interview: dict[str, Any]) -> dict[str, Any]:
    """The ids an HR system matches an event on: interview, job, candidate, its own key."""
    return {
        "interview_id": interview["id"],
        "job_id": interview["job_id"],
        "candidate_id": interview["candidate_id"],
        "external_key": interview.get("external_key"),
        "client": interview.get("client", "admin"),
    }


STATUS_OF_OUTCOME = {
    "no_response": "no_answer",
    "knocked_out": "not_matched",
    "opted_out": "opted_out",
}
"""Candidate status for an interview outcome (a report's recommendation decides the rest)."""


def candidate_status(outcome_status: str, recommendation: str | None) -> str | None:
    """The candidate's new status once an interview's report is stored, or ``None`` (no change).

    ``passed_ai`` when the AI screen recommends advancing, ``not_matched`` when it recommends
    rejecting or a knock-out failed, ``no_answer`` when the candidate never answered,
    ``opted_out`` on an opt-out. A recommendation is for a human to review: the HR system decides.
    """
    if outcome_status in STATUS_OF_OUTCOME:
        return STATUS_OF_OUTCOME[outcome_status]
    if outcome_status != "completed":
        return None
    return {"advance": "passed_ai", "reject": "not_matched"}.get(recommendation or "")
