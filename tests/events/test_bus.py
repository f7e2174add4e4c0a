"""The event bus, both backends (embedded SQLite, Redis on a real redis-server): durable delivery
with consumer groups, redelivery and claims, live events, outages and restarts."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import redis.asyncio as redis

from voicebot.crypto import DecryptionError, Keyring, generate_key_entry
from voicebot.events.bus import (
    BusUnavailable,
    Delivery,
    EmbeddedBus,
    EventBus,
    RedisBus,
    build_bus,
)
from voicebot.events.types import Event, make_event

BusFactory = Callable[..., EventBus]


def ended(n: int, call_sid: str = "CA1") -> Event:
    return make_event(
        "call.ended",
        {"call_sid": call_sid, "interview_id": f"iv_{n:04d}", "reason": "completed", "n": n},
    )


async def collect(
    bus: EventBus, group: str, consumer: str, n: int, within: float = 10.0, ack: bool = False
) -> list[Delivery]:
    """Read until ``n`` distinct messages came (redeliveries of unacked ones are skipped)."""
    got: dict[str, Delivery] = {}
    deadline = time.monotonic() + within
    while len(got) < n and time.monotonic() < deadline:
        for delivery in await bus.read(group, consumer, count=100, block_ms=200):
            got.setdefault(delivery.message_id, delivery)
            if ack:
                await bus.ack(group, delivery.message_id)
    assert len(got) == n, f"{len(got)} of {n} messages came"
    return list(got.values())


async def wait_for(condition: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def publish_all(bus: EventBus, events: list[Event]) -> None:
    """Publish, and wait until the events are in the shared log (Redis: the outbox flushed)."""
    for event in events:
        await bus.publish(event)
    await wait_for(lambda: bus.outbox_pending() == 0)


DATA_KEY = Keyring.parse(generate_key_entry("k1"))


@pytest.fixture(params=["embedded", "redis", "embedded+key", "redis+key"])
async def make_bus(request, tmp_path) -> AsyncIterator[BusFactory]:
    """Makes started buses of the parametrised backend; ``name`` picks the outbox (a process).

    The embedded backend has one file (its buses are restarts of one process). ``+key``: the
    files hold the events encrypted (``VOICEBOT_DATA_KEY``); the bus behaves the same.
    """
    buses: list[EventBus] = []
    backend, _, key = request.param.partition("+")
    server = request.getfixturevalue("redis_server") if backend == "redis" else None

    async def factory(name: str = "a", **kwargs) -> EventBus:
        if key:
            kwargs.setdefault("keyring", DATA_KEY)
        if server is None:
            bus: EventBus = EmbeddedBus(tmp_path / "events.sqlite3", **kwargs)
        else:
            bus = RedisBus(server.url, outbox_path=tmp_path / f"outbox-{name}.sqlite3", **kwargs)
        await bus.start()
        buses.append(bus)
        return bus

    factory.backend = backend  # type: ignore[attr-defined]
    yield factory
    for bus in buses:
        await bus.close()


async def test_publish_read_ack_leaves_nothing_pending(make_bus):
    bus = await make_bus()
    events = [ended(n) for n in range(5)]
    await publish_all(bus, events)
    deliveries = await collect(bus, "hr", "bridge-1", 5)
    assert [d.event for d in deliveries] == events  # in order, whole events
    assert all(d.deliveries == 1 for d in deliveries)
    assert await bus.pending("hr") == 5
    for delivery in deliveries:
        assert await bus.ack("hr", delivery.message_id)
    assert await bus.pending("hr") == 0
    assert await bus.read("hr", "bridge-1", block_ms=0) == []
    assert await bus.pending("nobody") == 0
    assert bus.published == 5


async def test_read_blocks_until_an_event_comes(make_bus):
    bus = await make_bus()
    assert await bus.read("hr", "c", block_ms=0) == []  # makes the group
    started = time.monotonic()
    reader = asyncio.create_task(bus.read("hr", "c", block_ms=5000))
    await asyncio.sleep(0.1)
    event = ended(1)
    await bus.publish(event)
    deliveries = await reader
    assert [d.event for d in deliveries] == [event]
    assert time.monotonic() - started < 2.0
    started = time.monotonic()
    assert await bus.read("hr", "c", block_ms=0) == [
        Delivery(deliveries[0].message_id, event, 2)  # unacked: handed back
    ]
    await bus.ack("hr", deliveries[0].message_id)
    assert await bus.read("hr", "c", block_ms=300) == []
    assert 0.25 < time.monotonic() - started < 2.0


async def test_group_created_at_the_start_of_the_log(make_bus):
    bus = await make_bus()
    events = [ended(n) for n in range(3)]
    await publish_all(bus, events)
    # A group made after the events were published still gets them all.
    deliveries = await collect(bus, "late-group", "c", 3)
    assert [d.event for d in deliveries] == events


async def test_unacked_messages_come_back_to_the_same_consumer_after_a_restart(make_bus):
    bus = await make_bus()
    events = [ended(n) for n in range(4)]
    await publish_all(bus, events[:3])
    first = await collect(bus, "hr", "bridge-1", 3)
    await bus.ack("hr", first[0].message_id)
    await bus.close()

    bus = await make_bus()  # the same process, restarted (same files)
    await bus.publish(events[3])
    again = await bus.read("hr", "bridge-1", count=100, block_ms=0)
    # Its own unacked messages first (delivered a second time), in order.
    assert [(d.message_id, d.event, d.deliveries) for d in again[:2]] == [
        (first[1].message_id, events[1], 2),
        (first[2].message_id, events[2], 2),
    ]
    rest = again[2:] or await collect(bus, "hr", "bridge-1", 3)
    assert rest[-1].event == events[3]
    assert rest[-1].deliveries == 1
    assert await bus.pending("hr") == 3


async def test_own_pending_messages_fill_the_count_first(make_bus):
    bus = await make_bus()
    events = [ended(n) for n in range(5)]
    await publish_all(bus, events[:3])
    await collect(bus, "hr", "c", 3)
    await publish_all(bus, events[3:])
    batch = await bus.read("hr", "c", count=2, block_ms=0)
    assert [d.event for d in batch] == events[:2]  # the oldest unacked, not new ones
    assert [d.deliveries for d in batch] == [2, 2]


async def test_claim_stale_hands_a_dead_consumers_messages_to_another(make_bus):
    bus = await make_bus()
    events = [ended(n) for n in range(3)]
    await publish_all(bus, events)
    taken = await collect(bus, "hr", "bridge-dead", 3)  # then it dies, never acks
    assert await bus.claim_stale("hr", "bridge-2", min_idle_ms=60_000) == []  # not idle yet
    await asyncio.sleep(0.15)
    claimed = await bus.claim_stale("hr", "bridge-2", min_idle_ms=100)
    assert [(d.message_id, d.event, d.deliveries) for d in claimed] == [
        (d.message_id, d.event, 2) for d in taken
    ]
    # Now bridge-2's: they come back to it on its reads, not to the dead consumer.
    assert [d.message_id for d in await bus.read("hr", "bridge-2", block_ms=0)] == [
        d.message_id for d in taken
    ]
    assert await bus.read("hr", "bridge-dead", block_ms=0) == []
    for delivery in claimed:
        await bus.ack("hr", delivery.message_id)
    assert await bus.pending("hr") == 0
    assert await bus.claim_stale("hr", "bridge-2", min_idle_ms=0) == []
    assert await bus.claim_stale("no-such-group", "bridge-2", min_idle_ms=0) == []


async def test_each_consumer_group_sees_every_event(make_bus):
    bus = await make_bus()
    events = [ended(n) for n in range(6)]
    await publish_all(bus, events)
    hr = await collect(bus, "hr", "c1", 6, ack=True)
    analytics = await collect(bus, "analytics", "c1", 6, ack=True)
    assert [d.event for d in hr] == events
    assert [d.event for d in analytics] == events
    assert await bus.pending("hr") == 0 and await bus.pending("analytics") == 0


async def test_consumers_of_one_group_share_the_events(make_bus):
    bus = await make_bus()
    events = [ended(n) for n in range(6)]
    await publish_all(bus, events)
    one = await bus.read("hr", "c1", count=4, block_ms=1000)
    two = await bus.read("hr", "c2", count=4, block_ms=1000)
    assert [d.event for d in one + two] == events


async def test_live_events_reach_subscribers_and_stay_out_of_the_durable_log(make_bus):
    bus = await make_bus()
    partial = make_event("transcript.partial", {"call_sid": "CA1", "text": "I worked", "t": 3.2})
    other_call = make_event("prosody.sample", {"call_sid": "CA2", "t": 1.0, "speaking": True})
    with bus.live.subscribe("CA1") as watcher, bus.live.subscribe() as everything:
        assert bus.live.watched("CA1") and bus.live.watched("CA2")
        await bus.publish(partial)
        await bus.publish(other_call)
        bus.live.publish("CA1", "script.position", 4.0, question_id="q2")  # the session's way
        got = await asyncio.wait_for(watcher.get(), 2)
        assert got["type"] == "transcript.partial"
        assert got["call_sid"] == "CA1" and got["t"] == 3.2 and got["id"] == partial.id
        assert got["data"] == partial.data
        assert (await asyncio.wait_for(watcher.get(), 2))["type"] == "script.position"
        seen = [(await asyncio.wait_for(everything.get(), 2))["type"] for _ in range(3)]
        assert seen == ["transcript.partial", "prosody.sample", "script.position"]
        assert watcher.queue.empty() and everything.queue.empty()  # each once
    assert not bus.live.watched("CA1")
    durable = ended(1)
    await bus.publish(durable)
    deliveries = await collect(bus, "hr", "c", 1)
    assert [d.event for d in deliveries] == [durable]
    assert bus.published == 1 and bus.live_published == 2
    if isinstance(bus, RedisBus):
        client = redis.from_url(bus.url)
        try:
            assert await client.xlen(bus.stream) == 1
        finally:
            await client.aclose()


async def test_unknown_event_types_are_refused(make_bus):
    bus = await make_bus()
    with pytest.raises(ValueError, match="unknown event type"):
        await bus.publish(Event(id="evt_1", type="nope", timestamp="", data={}))


async def test_with_a_data_key_the_redis_stream_holds_no_candidate_words(redis_server, tmp_path):
    said = make_event(
        "transcript.final",
        {"call_sid": "CA1", "speaker": "candidate", "text": "I repaired analytical engines"},
    )
    async with RedisBus(
        redis_server.url, outbox_path=tmp_path / "outbox.sqlite3", keyring=DATA_KEY
    ) as bus:
        await publish_all(bus, [said])
        deliveries = await collect(bus, "hr", "c", 1)
        client = redis.Redis.from_url(redis_server.url)
        try:
            entries = await client.xrange(bus.stream)
        finally:
            await client.aclose()
    assert [d.event for d in deliveries] == [said]
    stored = b"".join(value for _, fields in entries for value in fields.values())
    assert said.id.encode() in stored and b"analytical" not in stored
    assert b"analytical" not in (tmp_path / "outbox.sqlite3").read_bytes()


# --- embedded only -------------------------------------------------------------------------------


async def test_with_a_data_key_the_event_log_holds_no_candidate_words(tmp_path):
    path = tmp_path / "events.sqlite3"
    said = make_event(
        "transcript.final",
        {"call_sid": "CA1", "speaker": "candidate", "text": "I repaired analytical engines"},
    )
    async with EmbeddedBus(path, keyring=DATA_KEY) as bus:
        await bus.publish(said)
        await wait_for(lambda: bus.outbox_pending() == 0)
        deliveries = await bus.read("hr", "c", block_ms=0)
    assert [d.event for d in deliveries] == [said]
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert b"analytical" not in raw
    async with EmbeddedBus(path) as bus:  # a reader without the key is refused, not fooled
        with pytest.raises(DecryptionError, match="VOICEBOT_DATA_KEY is not set"):
            await bus.read("other", "c", block_ms=0)


async def test_embedded_bus_is_durable_across_close_and_reopen(tmp_path):
    path = tmp_path / "events.sqlite3"
    events = [ended(n) for n in range(5)]
    async with EmbeddedBus(path) as bus:
        for event in events:
            await bus.publish(event)
        await bus.publish(events[0])  # the same event again: stored once
    async with EmbeddedBus(path) as bus:
        deliveries = await bus.read("hr", "c", block_ms=0)
        assert [d.event for d in deliveries] == events
        assert [int(d.message_id) for d in deliveries] == sorted(
            int(d.message_id) for d in deliveries
        )
        await bus.ack("hr", deliveries[0].message_id)
    async with EmbeddedBus(path) as bus:
        assert await bus.pending("hr") == 4
        assert [d.event for d in await bus.read("hr", "c", block_ms=0)] == events[1:]


async def test_embedded_bus_bounds_its_log(tmp_path):
    async with EmbeddedBus(tmp_path / "events.sqlite3", maxlen=50) as bus:
        await bus.read("hr", "c", block_ms=0)
        for n in range(300):
            await bus.publish(ended(n))
        deliveries = await bus.read("hr", "c", count=1000, block_ms=0)
    assert 50 <= len(deliveries) <= 50 + 100  # trimmed every 100 appends
    assert deliveries[-1].event.data["n"] == 299
    with sqlite3.connect(tmp_path / "events.sqlite3") as db:
        (rows,) = db.execute("SELECT COUNT(*) FROM events").fetchone()
    assert rows <= 150


class FlakyEmbeddedBus(EmbeddedBus):
    """An embedded bus whose file fails its first few writes (a full disk, say)."""

    failures = 3

    async def _store(self, event: Event) -> None:
        if self.failures:
            self.failures -= 1
            raise sqlite3.OperationalError("database or disk is full")
        await super()._store(event)


async def test_a_failing_store_never_raises_and_keeps_the_order(tmp_path, caplog):
    caplog.set_level(logging.CRITICAL, logger="voicebot.events.bus")
    events = [ended(n) for n in range(5)]
    async with FlakyEmbeddedBus(tmp_path / "events.sqlite3") as bus:
        for event in events:
            await bus.publish(event)  # never raises
        await wait_for(lambda: bus.outbox_pending() == 0)
        deliveries = await bus.read("hr", "c", block_ms=0)
        assert [d.event for d in deliveries] == events
        assert bus.store_errors >= 1 and bus.published == 5


# --- Redis only ----------------------------------------------------------------------------------


async def test_two_processes_publish_one_group_sees_both(redis_server, tmp_path):
    one = RedisBus(redis_server.url, outbox_path=tmp_path / "p1.sqlite3")
    two = RedisBus(redis_server.url, outbox_path=tmp_path / "p2.sqlite3")
    async with one, two:
        from_one = [ended(n, "CA_one") for n in range(10)]
        from_two = [ended(n, "CA_two") for n in range(10)]
        for a, b in zip(from_one, from_two, strict=True):
            await one.publish(a)
            await two.publish(b)
        consumer = RedisBus(redis_server.url, outbox_path=tmp_path / "consumer.sqlite3")
        async with consumer:
            deliveries = await collect(consumer, "hr", "bridge", 20, ack=True)
    got = [d.event for d in deliveries]
    assert sorted(got, key=lambda e: e.id) == sorted(from_one + from_two, key=lambda e: e.id)
    # Each process's events stay in their order.
    assert [e for e in got if e.data["call_sid"] == "CA_one"] == from_one
    assert [e for e in got if e.data["call_sid"] == "CA_two"] == from_two


async def test_redis_outage_loses_nothing_and_duplicates_nothing(
    durable_redis_server, tmp_path, caplog
):
    caplog.set_level(logging.INFO, logger="voicebot.events.bus")
    server = durable_redis_server
    bus = RedisBus(server.url, outbox_path=tmp_path / "outbox.sqlite3")
    await bus.start()
    try:
        events = [ended(n) for n in range(50)]
        for event in events[:10]:
            await bus.publish(event)
        await wait_for(lambda: bus.outbox_pending() == 0)

        server.stop()
        slowest = 0.0
        for event in events[10:]:
            started = time.monotonic()
            await bus.publish(event)  # never raises, never waits on the dead Redis
            slowest = max(slowest, time.monotonic() - started)
            await asyncio.sleep(0.01)  # the flusher keeps trying meanwhile
        assert slowest < 0.25
        assert bus.outbox_pending() == 40
        assert bus.redis_errors > 0 and not bus.redis_up
        with pytest.raises(BusUnavailable):
            await bus.read("hr", "c", block_ms=0)

        server.start()
        started = time.monotonic()
        await wait_for(lambda: bus.outbox_pending() == 0)
        assert time.monotonic() - started < 3.0  # backoff capped near 1 s
        deliveries = await collect(bus, "hr", "c", 50, ack=True)
        assert [d.event for d in deliveries] == events  # every one, once, in order
        assert bus.flushed == 50 and bus.published == 50
        client = redis.from_url(server.url)
        try:
            assert await client.xlen(bus.stream) == 50
        finally:
            await client.aclose()
    finally:
        await bus.close()
    outage_logs = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(outage_logs) == 1, "one log line per outage, not per event"
    assert any(" back after " in r.getMessage() for r in caplog.records)


async def test_outbox_survives_a_restart_while_redis_is_down(redis_server, tmp_path, caplog):
    caplog.set_level(logging.CRITICAL, logger="voicebot.events.bus")
    outbox = tmp_path / "outbox.sqlite3"
    events = [ended(n) for n in range(5)]
    redis_server.stop()
    bus = RedisBus(redis_server.url, outbox_path=outbox)
    started = time.monotonic()
    await bus.start()  # Redis down: starts anyway, at once
    assert time.monotonic() - started < 1.0
    for event in events:
        await bus.publish(event)
    await bus.close()  # the events stay in the outbox

    redis_server.start()
    async with RedisBus(redis_server.url, outbox_path=outbox) as bus:
        deliveries = await collect(bus, "hr", "c", 5)
        assert [d.event for d in deliveries] == events
        await wait_for(lambda: bus.outbox_pending() == 0)


async def test_a_flush_repeated_after_a_lost_reply_adds_nothing(redis_server, tmp_path):
    async with RedisBus(redis_server.url, outbox_path=tmp_path / "outbox.sqlite3") as bus:
        events = [ended(n) for n in range(3)]
        for event in events:
            await bus.publish(event)
        await wait_for(lambda: bus.outbox_pending() == 0)
        # Redis stored the rows but the flusher never heard back: it sends them again.
        with sqlite3.connect(bus.outbox.path) as db:
            db.execute("UPDATE outbox SET sent = 0")
        bus.outbox._unsent = 3
        bus._wake.set()
        await wait_for(lambda: bus.outbox_pending() == 0)
        assert bus.duplicates_skipped == 3
        deliveries = await collect(bus, "hr", "c", 3)
        assert [d.event for d in deliveries] == events
        assert await bus.read("hr", "c2", block_ms=300) == []  # nothing more in the stream


async def test_maxlen_bounds_the_stream(redis_server, tmp_path):
    async with RedisBus(
        redis_server.url, outbox_path=tmp_path / "outbox.sqlite3", maxlen=100
    ) as bus:
        events = [ended(n) for n in range(1000)]
        for event in events:
            await bus.publish(event)
        await wait_for(lambda: bus.outbox_pending() == 0)
        client = redis.from_url(redis_server.url, decode_responses=True)
        try:
            length = await client.xlen(bus.stream)
            ((last_id, last_fields),) = await client.xrevrange(bus.stream, count=1)
        finally:
            await client.aclose()
    assert 100 <= length <= 200  # MAXLEN ~: trimmed by whole stream nodes
    assert last_fields["id"] == events[-1].id
    assert Event.from_json(last_fields["event"]) == events[-1]


async def test_live_events_cross_processes(redis_server, tmp_path):
    one = RedisBus(redis_server.url, outbox_path=tmp_path / "p1.sqlite3")
    two = RedisBus(redis_server.url, outbox_path=tmp_path / "p2.sqlite3")
    async with one, two:
        assert not one.live.watched("CA9")
        with two.live.subscribe("CA9") as watcher, one.live.subscribe("CA9") as local:
            await wait_for(lambda: one.live.watched_elsewhere("CA9"), within=5)
            assert not one.live.watched_elsewhere("CA_unwatched")
            sample = make_event(
                "prosody.sample", {"call_sid": "CA9", "t": 2.5, "loudness_dbfs": -20.0}
            )
            await one.publish(sample)
            one.live.publish("CA9", "transcript.final", 3.0, text="three years")
            one.live.publish("CA_unwatched", "transcript.final", 3.0, text="nobody sees this")
            first = await asyncio.wait_for(watcher.get(), 3)
            second = await asyncio.wait_for(watcher.get(), 3)
            assert first["type"] == "prosody.sample" and first["data"] == sample.data
            assert second["type"] == "transcript.final"
            assert second["data"] == {"text": "three years"}
            assert (await local.get())["type"] == "prosody.sample"  # local: direct, once
            assert (await local.get())["type"] == "transcript.final"
            await asyncio.sleep(0.2)
            assert watcher.queue.empty() and local.queue.empty()
            assert one.live.forwarded == 2  # the unwatched call cost no traffic
        # The watcher left: process one stops forwarding soon after.
        await wait_for(lambda: not one.live.watched("CA9"), within=5)
        client = redis.from_url(redis_server.url)
        try:
            assert not await client.exists(one.stream)  # nothing live in the durable stream
        finally:
            await client.aclose()


async def test_build_bus_picks_the_backend(redis_server, tmp_path: Path):
    embedded = build_bus("", tmp_path)
    assert isinstance(embedded, EmbeddedBus)
    assert embedded.path == tmp_path / "events.sqlite3"
    remote = build_bus(redis_server.url, tmp_path)
    assert isinstance(remote, RedisBus)
    assert remote.outbox.path == tmp_path / "outbox.sqlite3"
    async with remote:
        await remote.publish(ended(1))
        assert len(await collect(remote, "hr", "c", 1)) == 1


async def test_live_events_cross_again_after_a_redis_restart(redis_server, tmp_path, caplog):
    caplog.set_level(logging.CRITICAL, logger="voicebot.events.bus")
    one = RedisBus(redis_server.url, outbox_path=tmp_path / "p1.sqlite3")
    two = RedisBus(redis_server.url, outbox_path=tmp_path / "p2.sqlite3")
    async with one, two:
        with two.live.subscribe("CA7") as watcher:
            await wait_for(lambda: one.live.watched_elsewhere("CA7"), within=5)
            redis_server.restart()  # empty again: the watch list is gone too
            await wait_for(lambda: one.redis_up and two.redis_up, within=5)

            async def arrives() -> bool:
                one.live.publish("CA7", "transcript.final", 9.0, text="back")
                try:
                    await asyncio.wait_for(watcher.get(), 0.2)
                except TimeoutError:
                    return False
                return True

            deadline = time.monotonic() + 5
            while not await arrives():
                assert time.monotonic() < deadline, "live events did not resume"
