"""The HR-system bridge: durable call events from the bus to HR systems as Standard Webhooks.

Two halves, one process:

* **intake** reads the bus as consumer ``consumer`` of group ``group`` (and every
  ``claim_interval_secs`` claims messages a dead bridge left unacked for ``min_idle_ms``), stores
  each event with one ``pending`` delivery per matching endpoint in one SQLite transaction, and
  only then acks the bus messages. A crash before the commit leaves the messages unacked (the bus
  delivers them again); a crash between commit and ack makes the bus deliver an event the store
  already has, and the unique (event, endpoint) key keeps it at one delivery. The store is the
  outbox: a delivery is durably scheduled the moment it is stored.
* **schedulers**, one per endpoint, send the deliveries due in the store, oldest event first, at
  most ``endpoint.max_in_flight`` at a time per endpoint and ``max_concurrency`` overall. Each
  attempt POSTs ``event.payload()`` as JSON, signed (``webhook-id`` = the event id on every attempt
  and replay, so receivers dedupe), and its outcome is written with the attempt log in one
  transaction: ``2xx`` delivered; ``410 Gone`` or a ``webhook-delivery: abort-message`` response
  header aborted (no more retries of that message for that endpoint); anything else (other
  statuses, timeouts, connection errors, redirects) failed, retried per :class:`RetrySchedule`,
  dead-lettered after the last attempt. Retries live in the store, so they survive restarts.

Delivery is at least once: a crash after a receiver's ``2xx`` and before the store write sends that
attempt again, with the same ``webhook-id``. Nothing about payloads is logged: event ids, types,
endpoint ids, status codes and timings only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import socket
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from hris_bridge.endpoints import Endpoint
from hris_bridge.schedule import RetrySchedule
from hris_bridge.signing import webhook_headers
from hris_bridge.store import (
    ABORTED,
    DEAD,
    DELIVERED,
    FAILED,
    DeliveryStore,
    DueDelivery,
)
from voicebot.events.types import Event

log = logging.getLogger(__name__)

USER_AGENT = "voicebot-hris-bridge/1 (Standard Webhooks)"
DEFAULT_GROUP = "hris_bridge"
STORE_NAME = "hris_bridge.db"
"""The bridge's store in the data directory."""
ABORT_HEADER = "webhook-delivery"
ABORT_VALUE = "abort-message"
MAX_ERROR_CHARS = 300
RESPONSE_READ_BYTES = 64 * 1024
LATENCY_SAMPLES = 10_000


class EventSource(Protocol):
    """The consumer side of the durable event bus (:class:`voicebot.events.bus.EventBus`)."""

    async def read(
        self, group: str, consumer: str, count: int = 100, block_ms: int = 1000
    ) -> list[Any]:
        """Own unacked deliveries first, then new ones."""

    async def ack(self, group: str, message_id: str) -> None:
        """Mark one message handled for the group."""

    async def claim_stale(
        self, group: str, consumer: str, min_idle_ms: int, count: int = 100
    ) -> list[Any]:
        """Take over messages other consumers left unacked for ``min_idle_ms``."""


class StoreInUse(RuntimeError):
    """Another bridge is running on the same store file (one bridge per store)."""


def lock_store(path: str) -> Any:
    """Take the store's exclusive bridge lock (``<store>.lock``); the open file holds it.

    Two bridges on one store would both send its due deliveries: the second one is refused.
    ``None`` for an in-memory store or where ``fcntl`` is missing (Windows).
    """
    if path == ":memory:":
        return None
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return None
    handle = open(f"{path}.lock", "a+")  # noqa: SIM115 - held for the bridge's lifetime
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise StoreInUse(
            f"another bridge is running on {path}: run one bridge per store (each server "
            "process with its own VOICEBOT_DATA_DIR, or VOICEBOT_BRIDGE=off and one "
            "`python -m hris_bridge run`)"
        ) from None
    return handle


def default_consumer() -> str:
    """``<hostname>-<pid>``: unique per bridge process."""
    return f"{socket.gethostname()}-{os.getpid()}"


def payload_body(event: Event) -> bytes:
    """The webhook body: ``event.payload()`` as compact UTF-8 JSON."""
    return json.dumps(event.payload(), separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` (0-100) percentile of ``values`` (nearest rank), ``None`` when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


@dataclass
class BridgeStats:
    """Counters of one bridge process (since it started)."""

    received: int = 0
    """Bus messages taken (read or claimed)."""
    claimed: int = 0
    """Of those, taken over from other consumers."""
    deliveries_created: int = 0
    acked: int = 0
    attempts: int = 0
    delivered: int = 0
    retried: int = 0
    """Failed attempts after which a retry was scheduled."""
    dead: int = 0
    aborted: int = 0
    errors: int = 0
    """Bus or store errors (the loop backs off and carries on)."""
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))
    """Event received from the bus to the receiver's 2xx (the latest samples)."""
    attempt_ms: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))
    """HTTP round trip of each attempt (the latest samples)."""

    def latency(self) -> dict[str, float | None]:
        """Delivery latency percentiles in milliseconds."""
        values = list(self.latencies_ms)
        return {
            "p50": percentile(values, 50),
            "p90": percentile(values, 90),
            "p99": percentile(values, 99),
            "max": max(values) if values else None,
        }

    def to_dict(self) -> dict[str, Any]:
        """Counters and latency percentiles as JSON."""
        out = {
            name: getattr(self, name)
            for name in (
                "received",
                "claimed",
                "deliveries_created",
                "acked",
                "attempts",
                "delivered",
                "retried",
                "dead",
                "aborted",
                "errors",
            )
        }
        out["latency_ms"] = self.latency()
        out["attempt_ms_p50"] = percentile(list(self.attempt_ms), 50)
        return out


@dataclass(frozen=True)
class AttemptResult:
    """What one HTTP attempt got back."""

    attempted_at: float
    duration_ms: float
    status_code: int | None
    error: str | None
    abort: bool
    """The receiver asked to stop (``410 Gone`` or ``webhook-delivery: abort-message``)."""

    @property
    def ok(self) -> bool:
        """A 2xx without an abort request."""
        return not self.abort and self.status_code is not None and 200 <= self.status_code < 300


class Sender:
    """Signs and POSTs one event to one endpoint (used by the bridge and by replays)."""

    def __init__(self, session: aiohttp.ClientSession, user_agent: str = USER_AGENT) -> None:
        self.session = session
        self.user_agent = user_agent

    async def send(self, endpoint: Endpoint, event: Event) -> AttemptResult:
        """One attempt: never raises for HTTP trouble, it is in the result."""
        body = payload_body(event)
        attempted_at = time.time()
        headers = {
            "content-type": "application/json",
            "user-agent": self.user_agent,
            **webhook_headers(endpoint.key, event.id, body, timestamp=int(attempted_at)),
        }
        started = time.perf_counter()
        status_code: int | None = None
        error: str | None = None
        abort = False
        try:
            async with self.session.post(
                endpoint.url,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=endpoint.timeout_secs),
                allow_redirects=False,
            ) as response:
                status_code = response.status
                abort = (
                    response.headers.get(ABORT_HEADER, "").strip().lower() == ABORT_VALUE
                    or status_code == 410
                )
                # Read (a bounded part of) the answer so the connection can be reused.
                await response.content.read(RESPONSE_READ_BYTES)
        except TimeoutError:
            error = f"timeout after {endpoint.timeout_secs:g} s"
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            error = _describe_error(exc, endpoint)
        duration_ms = (time.perf_counter() - started) * 1000
        if status_code is not None and error is None and not 200 <= status_code < 300:
            error = f"HTTP {status_code}"
        return AttemptResult(attempted_at, duration_ms, status_code, error, abort)


def _describe_error(exc: BaseException, endpoint: Endpoint) -> str:
    text = f"{type(exc).__name__}: {exc}".replace(endpoint.url, endpoint.describe()["url"])
    return text[:MAX_ERROR_CHARS]


def outcome_of(
    result: AttemptResult,
    attempts_made: int,
    schedule: RetrySchedule,
    rng: random.Random | None = None,
) -> tuple[str, float | None]:
    """The delivery's status after ``result``, and when its next attempt is due.

    ``result`` was the ``attempts_made``-th attempt; the time is ``None`` once settled.
    """
    if result.abort:
        return ABORTED, None
    if result.ok:
        return DELIVERED, None
    delay = schedule.next_delay(attempts_made, rng)
    if delay is None:
        return DEAD, None
    return FAILED, result.attempted_at + result.duration_ms / 1000 + delay


@dataclass
class _EndpointState:
    endpoint: Endpoint
    wake: asyncio.Event
    slots: asyncio.Semaphore
    in_flight: set[int] = field(default_factory=set)


class Bridge:
    """Consumes the bus and delivers every event to the endpoints that take its type."""

    def __init__(
        self,
        bus: EventSource,
        store: DeliveryStore,
        endpoints: Sequence[Endpoint],
        *,
        group: str = DEFAULT_GROUP,
        consumer: str | None = None,
        schedule: RetrySchedule | None = None,
        session: aiohttp.ClientSession | None = None,
        read_count: int = 100,
        block_ms: int = 1000,
        claim_interval_secs: float = 10.0,
        min_idle_ms: int = 30_000,
        poll_secs: float = 1.0,
        max_concurrency: int = 64,
        user_agent: str = USER_AGENT,
        rng: random.Random | None = None,
    ) -> None:
        ids = [endpoint.id for endpoint in endpoints]
        if len(set(ids)) != len(ids):
            raise ValueError(f"endpoint ids must be unique: {ids}")
        self.bus = bus
        self.store = store
        self.endpoints = list(endpoints)
        self.group = group
        self.consumer = consumer or default_consumer()
        self.schedule = schedule or RetrySchedule()
        self.read_count = read_count
        self.block_ms = block_ms
        self.claim_interval_secs = claim_interval_secs
        self.min_idle_ms = min_idle_ms
        self.poll_secs = poll_secs
        self.max_concurrency = max_concurrency
        self.user_agent = user_agent
        self.rng = rng
        self.stats = BridgeStats()
        self._session = session
        self._own_session = session is None
        self._slots = asyncio.Semaphore(max_concurrency)
        self._states = {
            endpoint.id: _EndpointState(
                endpoint, asyncio.Event(), asyncio.Semaphore(endpoint.max_in_flight)
            )
            for endpoint in self.endpoints
        }
        self._attempts: set[asyncio.Task] = set()
        self._task: asyncio.Task | None = None
        self._closing = False
        self._own_store = False
        self._store_lock: Any = None
        self._sender: Sender | None = None

    # --- lifecycle --------------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        bus: EventSource,
        data_dir: str | os.PathLike[str],
        endpoints: Sequence[Endpoint],
        **kwargs: Any,
    ) -> Bridge:
        """A started bridge with its store at ``<data_dir>/hris_bridge.db``.

        :meth:`close` closes that store too. This is how the voicebot server runs the bridge
        in its own process.
        """
        from pathlib import Path

        store = await DeliveryStore.open(Path(data_dir) / STORE_NAME, kwargs.pop("keyring", None))
        bridge = cls(bus, store, endpoints, **kwargs)
        bridge._own_store = True
        bridge.start()
        return bridge

    async def run(self) -> None:
        """Run intake and the schedulers until cancelled (or :meth:`close`).

        Raises :class:`StoreInUse` when another bridge runs on the same store file.
        """
        if self._store_lock is None:
            self._store_lock = lock_store(self.store.path)
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.max_concurrency, limit_per_host=0)
            )
        self._sender = Sender(self._session, self.user_agent)
        log.info(
            "hris bridge %s/%s: %d endpoint(s): %s",
            self.group,
            self.consumer,
            len(self.endpoints),
            ", ".join(e.id for e in self.endpoints),
        )
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._intake(), name="hris-intake")
                for state in self._states.values():
                    tasks.create_task(self._scheduler(state), name=f"hris-{state.endpoint.id}")
        finally:
            for task in list(self._attempts):
                task.cancel()
            if self._attempts:
                await asyncio.gather(*self._attempts, return_exceptions=True)
            if self._own_session and self._session is not None:
                await self._session.close()
                self._session = None
            if self._store_lock is not None:
                self._store_lock.close()
                self._store_lock = None

    def start(self) -> asyncio.Task:
        """Run the bridge as a background task (for embedding in the voicebot server).

        Raises :class:`StoreInUse` at once when another bridge runs on the same store file.
        """
        if self._task is None or self._task.done():
            if self._store_lock is None:
                self._store_lock = lock_store(self.store.path)
            self._task = asyncio.create_task(self.run(), name="hris-bridge")
        return self._task

    async def close(self, drain_secs: float = 5.0) -> None:
        """Stop: attempts in flight get ``drain_secs`` to finish, then everything is cancelled.

        Nothing is lost either way: unfinished attempts are still due in the store.
        """
        if self._task is not None:
            self._closing = True
            if self._attempts:
                await asyncio.wait(set(self._attempts), timeout=drain_secs)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
            self._closing = False
        if self._store_lock is not None:  # the task was cancelled before it ever ran
            self._store_lock.close()
            self._store_lock = None
        if self._own_store:
            await self.store.close()
            self._own_store = False

    def wake(self, endpoint_id: str | None = None) -> None:
        """Make the schedulers (or one) look at the store now (e.g. after a replay)."""
        for state in self._states.values():
            if endpoint_id is None or state.endpoint.id == endpoint_id:
                state.wake.set()

    # --- intake -----------------------------------------------------------------------------------

    async def _intake(self) -> None:
        backoff = 0.5
        last_claim = float("-inf")
        while True:
            try:
                batch: list[Any] = []
                if time.monotonic() - last_claim >= self.claim_interval_secs:
                    last_claim = time.monotonic()
                    claimed = await self.bus.claim_stale(
                        self.group, self.consumer, self.min_idle_ms, self.read_count
                    )
                    if claimed:
                        self.stats.claimed += len(claimed)
                        log.info("claimed %d stale bus message(s)", len(claimed))
                    batch.extend(claimed)
                if not batch:
                    batch = await self.bus.read(
                        self.group, self.consumer, self.read_count, self.block_ms
                    )
                if batch:
                    await self.take(batch)
                backoff = 0.5
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.stats.errors += 1
                log.warning(
                    "bus intake failed (%s); retrying in %.1f s", type(exc).__name__, backoff
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)

    async def take(self, messages: Sequence[Any]) -> None:
        """Store bus messages (events + deliveries, one transaction), wake schedulers, then ack."""
        items = []
        touched: set[str] = set()
        for message in messages:
            event: Event = message.event
            ids = [e.id for e in self.endpoints if e.accepts(event.type)]
            touched.update(ids)
            items.append((event, ids))
        self.stats.received += len(messages)
        created = await self.store.record_events(items)
        self.stats.deliveries_created += created
        for message in messages:  # what this store holds of an erased candidate goes too
            if message.event.type == "candidate.erased":
                erased = [
                    item.get("interview_id")
                    for item in message.event.data.get("interviews", [])
                    if isinstance(item, dict)
                ]
                await self.store.erase_interviews([i for i in erased if isinstance(i, str)])
        for endpoint_id in touched:
            self._states[endpoint_id].wake.set()
        await asyncio.gather(*(self.bus.ack(self.group, m.message_id) for m in messages))
        self.stats.acked += len(messages)
        if log.isEnabledFor(logging.DEBUG):
            for message in messages:
                log.debug("event %s (%s) stored and acked", message.event.id, message.event.type)

    # --- delivery ---------------------------------------------------------------------------------

    async def _scheduler(self, state: _EndpointState) -> None:
        endpoint_id = state.endpoint.id
        while True:
            try:
                state.wake.clear()
                now = time.time()
                due = await self.store.due(endpoint_id, now=now, limit=100, exclude=state.in_flight)
                for item in due:
                    if self._closing:
                        break
                    await state.slots.acquire()
                    await self._slots.acquire()
                    state.in_flight.add(item.row.id)
                    task = asyncio.create_task(self._attempt(state, item))
                    self._attempts.add(task)
                    task.add_done_callback(self._attempts.discard)
                if due and not self._closing:
                    continue
                next_at = await self.store.next_due_at(endpoint_id, after=now)
                wait = self.poll_secs
                if next_at is not None:
                    wait = min(wait, max(0.0, next_at - time.time()))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(state.wake.wait(), wait)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.stats.errors += 1
                log.warning("scheduler %s: store query failed (%s)", endpoint_id, exc)
                await asyncio.sleep(1.0)

    async def _attempt(self, state: _EndpointState, item: DueDelivery) -> None:
        endpoint = state.endpoint
        row = item.row
        try:
            assert self._sender is not None
            result = await self._sender.send(endpoint, item.event)
            attempts_made = row.attempts + 1
            status, next_at = outcome_of(result, attempts_made, self.schedule, self.rng)
            await self.store.record_attempt(
                row.id,
                status=status,
                attempted_at=result.attempted_at,
                duration_ms=result.duration_ms,
                status_code=result.status_code,
                error=result.error,
                next_attempt_at=next_at,
            )
            self._count(result, status, row.event_received_at)
            log_attempt(endpoint.id, item.event, attempts_made, result, status, next_at)
        except asyncio.CancelledError:
            raise
        except Exception:
            self.stats.errors += 1
            log.exception("delivery %s of event %s to %s failed", row.id, row.event_id, endpoint.id)
            await asyncio.sleep(1.0)  # the row is still due: do not spin on a broken store
        finally:
            state.in_flight.discard(row.id)
            state.slots.release()
            self._slots.release()
            state.wake.set()

    def _count(self, result: AttemptResult, status: str, received_at: float | None) -> None:
        self.stats.attempts += 1
        self.stats.attempt_ms.append(result.duration_ms)
        if status == DELIVERED:
            self.stats.delivered += 1
            if received_at is not None:
                done = result.attempted_at + result.duration_ms / 1000
                self.stats.latencies_ms.append(max(0.0, (done - received_at) * 1000))
        elif status == FAILED:
            self.stats.retried += 1
        elif status == DEAD:
            self.stats.dead += 1
        elif status == ABORTED:
            self.stats.aborted += 1


def log_attempt(
    endpoint_id: str,
    event: Event,
    attempt: int,
    result: AttemptResult,
    status: str,
    next_at: float | None,
    *,
    replay: bool = False,
) -> None:
    """Log one attempt: ids, type, status code, outcome. Never the payload."""
    what = "replay" if replay else f"attempt {attempt}"
    code = result.status_code if result.status_code is not None else "-"
    if status == DELIVERED:
        log.debug(
            "event %s (%s) -> %s: %s %s in %.0f ms",
            event.id,
            event.type,
            endpoint_id,
            what,
            code,
            result.duration_ms,
        )
    elif status == FAILED:
        log.info(
            "event %s (%s) -> %s: %s failed (%s), next in %.1f s",
            event.id,
            event.type,
            endpoint_id,
            what,
            result.error,
            (next_at or time.time()) - time.time(),
        )
    elif status == DEAD:
        log.warning(
            "event %s (%s) -> %s: dead-lettered after %s (%s)",
            event.id,
            event.type,
            endpoint_id,
            what,
            result.error,
        )
    elif status == ABORTED:
        log.warning(
            "event %s (%s) -> %s: receiver aborted the message (%s %s)",
            event.id,
            event.type,
            endpoint_id,
            code,
            "abort-message" if result.status_code != 410 else "Gone",
        )
