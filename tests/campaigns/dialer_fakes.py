"""Fakes and fixtures for the dialer's tests: a real store and embedded bus, a fake carrier, clock.

The fixtures are in ``dialer_fixtures.py`` (a plugin the test modules name, not a
``conftest.py``, which the campaigns part's tests may bring too).

The carrier is a fake (the dialer's logic, fast and deterministic); the real Twilio REST client
and the simulated carrier are exercised elsewhere. Campaign rows are written straight into the
schema of migration 7 (the campaigns part owns their REST and store functions).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voicebot.config import Settings
from voicebot.dialogue.script import load_scripts
from voicebot.events.bus import EmbeddedBus
from voicebot.events.emitter import EventEmitter
from voicebot.services import Services
from voicebot.store.database import Store, new_id
from voicebot.telephony.outbound import CarrierError, OutboundCall, PlacedCall

JOB = "customer_service_en"
SCRIPTS = load_scripts(Settings().dialogues_dir)


class FakeClock:
    """Time that moves only when a test moves it."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, secs: float) -> None:
        self.now += secs


@dataclass
class FakeCarrier:
    """Takes every call (``CA0001``, ...) unless told to fail the next ones."""

    name: str = "fake"
    placed: list[OutboundCall] = field(default_factory=list)
    hung_up: list[str] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    sid_prefix: str = "CA"
    counter: dict[str, int] = field(default_factory=lambda: {"n": 0})

    async def place_call(self, call: OutboundCall) -> PlacedCall:
        if self.errors:
            error = self.errors.pop(0)
            if isinstance(error, CarrierError):
                raise error
            await error  # an awaitable that never ends: the carrier hangs
        self.counter["n"] += 1
        self.placed.append(call)
        return PlacedCall(call_sid=f"{self.sid_prefix}{self.counter['n']:04d}", status="queued")

    async def hang_up(self, call_sid: str) -> None:
        self.hung_up.append(call_sid)

    async def close(self) -> None:
        pass


class FakeSchedule:
    """Calling hours as a test sets them: open or closed; retries due ``retry`` seconds later."""

    def __init__(self, retry: float = 3600.0) -> None:
        self.open = True
        self.retry = retry
        self.window_opens_in = 7200.0
        self.asked: list[tuple[str, int]] = []

    def in_window(self, policy: dict[str, Any], tz_name: str, at: float) -> bool:
        return self.open

    def next_attempt_at(
        self, policy: dict[str, Any], tz_name: str, failed_at: float, attempt_number: int
    ) -> float:
        self.asked.append((tz_name, attempt_number))
        return failed_at + self.retry

    def window_start(self, policy: dict[str, Any], tz_name: str, at: float) -> float:
        return at + self.window_opens_in


async def make_services(data_dir: Path, **settings: Any) -> Services:
    """Services over a real store and embedded bus in ``data_dir`` (no models)."""
    values = {
        "data_dir": data_dir,
        "recordings_dir": data_dir / "rec",
        "stream_token_secret": "s",
        "public_url": "https://bot.example.com",
        "twilio_caller_id": "+15550000000",
        "dialer_calls_per_sec": 100.0,
        **settings,
    }
    services = Services(Settings(**values))
    services.store = Store(data_dir / "voicebot.sqlite3")
    await services.store.open()
    services.scripts = {JOB: SCRIPTS[JOB]}
    services.bus = EmbeddedBus(data_dir / "events.sqlite3")
    await services.bus.start()
    services.events = EventEmitter(services.bus)
    services.events.start()
    return services


async def close_services(services: Services) -> None:
    await services.events.close()
    await services.bus.close()
    await services.store.close()


async def add_campaign(store: Store, *, paused: bool = False, **policy: Any) -> str:
    """A campaign row for ``JOB`` with this policy (migration 7's schema)."""
    campaign_id = new_id("cmp")
    now = time.time()
    await store.db.execute(
        "INSERT INTO campaigns (id, client, job_id, name, policy, paused, created_at, updated_at)"
        " VALUES (?, 'admin', ?, 'test', ?, ?, ?, ?)",
        (campaign_id, JOB, json.dumps(policy), int(paused), now, now),
    )
    await store.db.commit()
    return campaign_id


async def add_candidate(
    store: Store,
    campaign_id: str,
    *,
    due_at: float,
    phone: str = "+15551230000",
    timezone: str = "America/Chicago",
    candidate_id: str | None = None,
) -> str:
    """An interview of ``campaign_id``, due at ``due_at``."""
    interview, _ = await store.create_interview(
        job_id=JOB,
        candidate_id=candidate_id or new_id("cand"),
        candidate_name="Dana Whitfield",
        candidate_phone=phone,
        candidate_timezone=timezone,
    )
    await store.db.execute(
        "UPDATE interviews SET campaign_id = ?, next_attempt_at = ? WHERE id = ?",
        (campaign_id, due_at, interview["id"]),
    )
    await store.db.commit()
    return interview["id"]


async def attempt_rows(store: Store, interview_id: str | None = None) -> list[dict[str, Any]]:
    where, params = ("WHERE interview_id = ?", [interview_id]) if interview_id else ("", [])
    return await store._all(f"SELECT * FROM dial_attempts {where} ORDER BY created_at", params)


async def events_of(services: Services) -> list:
    """Every durable event emitted so far (read once)."""
    await services.events.flush()
    deliveries = await services.bus.read("test", "t", count=1000, block_ms=0)
    for delivery in deliveries:
        await services.bus.ack("test", delivery.message_id)
    return [delivery.event for delivery in deliveries]
