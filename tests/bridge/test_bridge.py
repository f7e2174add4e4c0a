"""The bridge over real loopback sockets: retries, aborts, dead letters, replays, filters, restarts.

Every receiver verifies every request with the official ``standardwebhooks`` library; "exactly
once after dedupe" means each event's ``webhook-id`` reached the receiver and a receiver that
dedupes by it stored it once (and, where the receiver always answered 2xx, it came exactly once).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest
from aiohttp import web

from hris_bridge.bridge import Bridge, payload_body
from hris_bridge.replay import replay
from hris_bridge.store import ABORTED, DEAD, DELIVERED, FAILED, iso_to_epoch
from tests.bridge.conftest import (
    FAST,
    INSTANT,
    FakeBus,
    bridge_for,
    call_event,
    completed_event,
    eventually,
)


@contextlib.asynccontextmanager
async def running(bridge: Bridge):
    task = bridge.start()
    try:
        yield task
    finally:
        await bridge.close(drain_secs=1)


async def statuses(store, events, endpoint_id="default"):
    return [(await store.get_delivery(e.id, endpoint_id)).status for e in events]


async def test_events_arrive_signed_with_the_payload_and_headers(bus, store, receiver):
    bridge = bridge_for(bus, store, [receiver.endpoint()])
    event = completed_event(1)
    async with running(bridge):
        await bus.publish(event)
        await eventually(lambda: receiver.requests)
        await eventually(lambda: bridge.stats.delivered == 1)
    [got] = receiver.requests
    assert got.verified  # the official library accepts our signature
    assert got.webhook_id == event.id
    assert got.payload == event.payload() and got.body == payload_body(event)
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["User-Agent"].startswith("voicebot-hris-bridge")
    assert abs(int(got.timestamp) - time.time()) < 5
    assert (await store.get_delivery(event.id, "default")).status == DELIVERED
    assert bus.unacked() == 0
    stats = bridge.stats.to_dict()
    assert stats["delivered"] == 1 and stats["latency_ms"]["p50"] is not None


async def test_receiver_failing_first_attempts_gets_every_event_once(bus, store, receiver):
    receiver.fail_first = 12
    bridge = bridge_for(bus, store, [receiver.endpoint()], schedule=FAST)
    events = [call_event("call.started", n) for n in range(20)]
    async with running(bridge):
        for event in events:
            await bus.publish(event)
        await eventually(lambda: bridge.stats.delivered == 20)
    assert all(r.verified for r in receiver.requests)
    assert receiver.unique_ids() == {e.id for e in events}
    assert len(receiver.requests) == 20 + 12  # each failure retried once more, nothing else
    assert set(await statuses(store, events)) == {DELIVERED}
    assert bridge.stats.retried == 12 and bridge.stats.dead == 0
    # Each retried event's attempt log shows the 500, then the 200.
    retried = await store.get_delivery(receiver.requests[0].webhook_id, "default")
    attempts = await store.attempts(retried.id)
    assert [a.status_code for a in attempts] == [500, 200] and retried.attempts == 2
    assert attempts[0].outcome == FAILED and attempts[0].error == "HTTP 500"


async def test_abort_message_header_stops_retries(bus, store, receiver):
    receiver.status = 500
    receiver.headers = {"webhook-delivery": "abort-message"}
    bridge = bridge_for(bus, store, [receiver.endpoint()], schedule=INSTANT)
    event = completed_event(3)
    async with running(bridge):
        await bus.publish(event)
        await eventually(lambda: bridge.stats.aborted == 1)
        await asyncio.sleep(0.3)  # several schedule spans: nothing more is sent
    assert len(receiver.requests) == 1
    row = await store.get_delivery(event.id, "default")
    assert (row.status, row.attempts, row.last_status_code) == (ABORTED, 1, 500)


async def test_abort_message_on_a_2xx_is_aborted_too(bus, store, receiver):
    receiver.headers = {"Webhook-Delivery": "Abort-Message"}
    bridge = bridge_for(bus, store, [receiver.endpoint()])
    event = completed_event(4)
    async with running(bridge):
        await bus.publish(event)
        await eventually(lambda: bridge.stats.aborted == 1)
    assert (await store.get_delivery(event.id, "default")).status == ABORTED


async def test_410_gone_aborts(bus, store, receiver):
    receiver.status = 410
    bridge = bridge_for(bus, store, [receiver.endpoint()], schedule=INSTANT)
    event = completed_event(5)
    async with running(bridge):
        await bus.publish(event)
        await eventually(lambda: bridge.stats.aborted == 1)
        await asyncio.sleep(0.3)
    assert len(receiver.requests) == 1
    assert (await store.get_delivery(event.id, "default")).status == ABORTED


async def test_dead_letter_after_the_schedule_then_replay_by_event_id(bus, store, receiver):
    receiver.status = 503
    bridge = bridge_for(bus, store, [receiver.endpoint()], schedule=INSTANT)
    dead_event, other = completed_event(6), call_event("call.ended", 6)
    async with running(bridge):
        await bus.publish(dead_event)
        await bus.publish(other)
        await eventually(lambda: bridge.stats.dead == 2, timeout=20)
        assert len(receiver.requests) == 16  # 8 attempts each
    row = await store.get_delivery(dead_event.id, "default")
    assert (row.status, row.attempts, row.last_status_code) == (DEAD, 8, 503)
    assert [r.event_id for r in await store.deliveries(status=DEAD)] == [dead_event.id, other.id]
    gaps = [
        b.at - a.at for a, b in zip(receiver.requests[::2], receiver.requests[2::2], strict=False)
    ]
    assert gaps[-1] > gaps[0]  # the waits grow along the schedule

    receiver.status = 200  # the HR system is fixed: replay one dead letter (no bridge running)
    results = await replay(store, [receiver.endpoint()], event_ids=[dead_event.id])
    assert [(r.event_id, r.status, r.status_code) for r in results] == [
        (dead_event.id, DELIVERED, 200)
    ]
    assert receiver.requests[-1].webhook_id == dead_event.id and receiver.requests[-1].verified
    row = await store.get_delivery(dead_event.id, "default")
    assert row.status == DELIVERED
    attempts = await store.attempts(row.id)
    assert len(attempts) == 9 and attempts[-1].replay and not attempts[0].replay
    assert (await store.get_delivery(other.id, "default")).status == DEAD
    missing = await replay(store, [receiver.endpoint()], event_ids=["evt_nope"])
    assert [(r.event_id, r.status) for r in missing] == [("evt_nope", "not_found")]


async def test_failed_replay_goes_back_on_the_schedule(bus, store, receiver):
    receiver.status = 500
    event = completed_event(7)
    await store.record_event(event, ["default"])
    [result] = await replay(store, [receiver.endpoint()], event_ids=[event.id], schedule=FAST)
    assert result.status == FAILED and result.status_code == 500
    receiver.status = 200
    bridge = bridge_for(bus, store, [receiver.endpoint()])
    async with running(bridge):  # a running bridge picks the replay's retry up from the store
        await eventually(lambda: bridge.stats.delivered == 1)
    assert receiver.ids() == [event.id, event.id]


async def test_replay_by_time_range_type_and_endpoint(bus, store, receivers):
    a, b = await receivers(), await receivers()
    endpoints = [a.endpoint("a"), b.endpoint("b")]
    events = [
        call_event("call.started", 1, timestamp="2026-11-22T08:59:59.999Z"),
        call_event("call.started", 2, timestamp="2026-11-22T09:00:00.000Z"),
        call_event("call.ended", 3, timestamp="2026-11-22T09:30:00.000Z"),
        call_event("call.started", 4, timestamp="2026-11-22T10:00:00.000Z"),
    ]
    bridge = bridge_for(bus, store, endpoints)
    async with running(bridge):
        for event in events:
            await bus.publish(event)
        await eventually(lambda: bridge.stats.delivered == 8)
    a.requests.clear()
    b.requests.clear()
    since, until = iso_to_epoch("2026-11-22T09:00:00Z"), iso_to_epoch("2026-11-22T10:00:00Z")
    results = await replay(store, endpoints, since=since, until=until)
    assert [(r.event_id, r.endpoint_id) for r in results] == [
        (events[1].id, "a"),
        (events[1].id, "b"),
        (events[2].id, "a"),
        (events[2].id, "b"),
    ]
    assert a.ids() == [events[1].id, events[2].id] and all(r.verified for r in a.requests)
    a.requests.clear()
    b.requests.clear()
    results = await replay(
        store, endpoints, since=since, event_type="call.started", endpoint_id="b"
    )
    assert [(r.event_id, r.endpoint_id) for r in results] == [
        (events[1].id, "b"),
        (events[3].id, "b"),
    ]
    assert a.requests == [] and b.ids() == [events[1].id, events[3].id]


async def test_per_endpoint_type_filters(bus, store, receivers):
    ats, calls, everything = await receivers(), await receivers(), await receivers()
    endpoints = [
        ats.endpoint("ats", event_types=("interview.completed", "candidate.*")),
        calls.endpoint("calls", event_types=("call.started", "call.ended")),
        everything.endpoint("all"),
    ]
    from voicebot.events.types import make_event

    events = [
        call_event("call.started", 1),
        completed_event(1),
        make_event("candidate.status_changed", {"candidate_id": "c1", "status": "passed_ai"}),
        call_event("call.ended", 1),
        call_event("call.answered", 1),
    ]
    bridge = bridge_for(bus, store, endpoints)
    async with running(bridge):
        for event in events:
            await bus.publish(event)
        await eventually(lambda: bridge.stats.delivered == 2 + 2 + 5)
    assert sorted(ats.ids()) == sorted([events[1].id, events[2].id])
    assert sorted(calls.ids()) == sorted([events[0].id, events[3].id])
    assert sorted(everything.ids()) == sorted(e.id for e in events)
    assert await store.get_delivery(events[4].id, "ats") is None  # no row for filtered types


async def test_one_in_flight_keeps_event_order_per_endpoint(bus, store, receiver):
    receiver.delay = 0.002
    bridge = bridge_for(bus, store, [receiver.endpoint(max_in_flight=1)])
    events = [call_event("call.started", n) for n in range(30)]
    async with running(bridge):
        for event in events:
            await bus.publish(event)
        await eventually(lambda: bridge.stats.delivered == 30)
    assert receiver.ids() == [e.id for e in events]


async def test_slow_endpoint_does_not_hold_up_another(bus, store, receivers):
    slow, fast = await receivers(), await receivers()
    slow.delay = 1.0
    endpoints = [slow.endpoint("slow", max_in_flight=1), fast.endpoint("fast")]
    bridge = bridge_for(bus, store, endpoints)
    events = [call_event("call.started", n) for n in range(10)]
    async with running(bridge):
        for event in events:
            await bus.publish(event)
        await eventually(lambda: len(fast.requests) == 10, timeout=5)
        assert len(slow.requests) < 10  # the fast one finished long before the slow one


async def test_timeouts_and_connection_errors_are_retried(bus, store, receivers):
    hanging = await receivers()
    hanging.delay = 5
    refused = await receivers()
    await refused.server.close()  # nothing listens on its port any more
    endpoints = [
        hanging.endpoint("hanging", timeout_secs=0.2),
        refused.endpoint("refused"),
    ]
    bridge = bridge_for(bus, store, endpoints, schedule=FAST)
    event = completed_event(8)
    async with running(bridge):
        await bus.publish(event)
        await eventually(lambda: store.get_delivery(event.id, "hanging"), timeout=5)

        async def retried():
            rows = await store.deliveries_for_event(event.id)
            return all(r.attempts >= 2 for r in rows) and rows

        rows = await eventually(retried, timeout=10)
    errors = {r.endpoint_id: r.last_error for r in rows}
    assert errors["hanging"] == "timeout after 0.2 s"
    assert errors["refused"].startswith("ClientConnectorError")
    assert all(r.status == FAILED and r.last_status_code is None for r in rows)


class AckBlocker:
    """Wraps a bus so that ``ack`` never returns: the bridge stores events, then hangs."""

    def __init__(self, bus: FakeBus) -> None:
        self.bus = bus
        self.blocked = asyncio.Event()

    async def read(self, *args, **kwargs):
        return await self.bus.read(*args, **kwargs)

    async def claim_stale(self, *args, **kwargs):
        return await self.bus.claim_stale(*args, **kwargs)

    async def ack(self, group, message_id):
        self.blocked.set()
        await asyncio.Event().wait()


async def _restart_mid_delivery(bus, store, receiver, second_consumer: str):
    receiver.delay = 0.01  # deliveries are in flight when the first bridge dies
    receiver.fail_first = 3
    events = [completed_event(n) for n in range(40)]
    first = bridge_for(AckBlocker(bus), store, [receiver.endpoint()], consumer="first")
    for event in events:
        await bus.publish(event)
    task = first.start()
    await eventually(lambda: first.bus.blocked.is_set())
    assert (await store.counts())["events"] > 0  # stored, not acked
    await eventually(lambda: receiver.requests)  # and mid-delivery
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert bus.unacked() > 0
    second = bridge_for(
        bus,
        store,
        [receiver.endpoint()],
        consumer=second_consumer,
        min_idle_ms=50,
        claim_interval_secs=0.05,
    )
    async with running(second):
        await eventually(lambda: receiver.unique_ids() == {e.id for e in events}, timeout=15)
        await eventually(lambda: bus.unacked() == 0)

        async def all_delivered():
            return set(await statuses(store, events)) == {DELIVERED}

        await eventually(all_delivered, timeout=10)
    counts = await store.counts()
    assert counts["events"] == 40 and sum(counts["deliveries"].values()) == 40
    assert all(r.verified for r in receiver.requests)
    # After dedupe by webhook-id each event is there exactly once; any copy is an attempt the
    # first bridge had in flight when it died (its 2xx never recorded), never a second delivery.
    duplicates = len(receiver.requests) - 3 - 40
    assert 0 <= duplicates <= first.endpoints[0].max_in_flight
    return second


async def test_restart_with_a_new_consumer_claims_the_stale_messages(bus, store, receiver):
    second = await _restart_mid_delivery(bus, store, receiver, "second")
    assert second.stats.claimed > 0


async def test_restart_with_the_same_consumer_reads_its_own_unacked_first(bus, store, receiver):
    second = await _restart_mid_delivery(bus, store, receiver, "first")
    assert second.stats.claimed == 0 and second.stats.received > 0


async def test_deliveries_resume_from_the_store_after_a_restart(tmp_path, bus, receiver):
    from hris_bridge.store import DeliveryStore

    receiver.status = 500
    path = tmp_path / "b.db"
    event = completed_event(9)
    async with DeliveryStore(path) as store:
        bridge = bridge_for(bus, store, [receiver.endpoint()], schedule=FAST)
        async with running(bridge):
            await bus.publish(event)
            await eventually(lambda: len(receiver.requests) >= 2)
    assert bus.unacked() == 0  # the bus is done with it: the retry lives in the store
    receiver.status = 200
    async with DeliveryStore(path) as store:
        bridge = bridge_for(bus, store, [receiver.endpoint()], schedule=FAST)
        async with running(bridge):
            await eventually(lambda: bridge.stats.delivered == 1, timeout=10)
        assert (await store.get_delivery(event.id, "default")).status == DELIVERED
    assert receiver.unique_ids() == {event.id}


async def test_bus_errors_back_off_and_recover(store, receiver):
    class Flaky(FakeBus):
        failures = 2

        async def read(self, *args, **kwargs):
            if self.failures:
                self.failures -= 1
                raise ConnectionError("redis down")
            return await super().read(*args, **kwargs)

    bus = Flaky()
    bridge = bridge_for(bus, store, [receiver.endpoint()])
    event = completed_event(10)
    await bus.publish(event)
    async with running(bridge):
        await eventually(lambda: bridge.stats.delivered == 1, timeout=10)
    assert bridge.stats.errors == 2


async def test_nothing_of_the_payload_is_logged(bus, store, receiver, caplog):
    receiver.fail_first = 1
    bridge = bridge_for(bus, store, [receiver.endpoint()], schedule=FAST)
    event = completed_event(11)
    with caplog.at_level("DEBUG", logger="hris_bridge"):
        async with running(bridge):
            await bus.publish(event)
            await eventually(lambda: bridge.stats.delivered == 1)
    text = caplog.text
    assert event.id in text
    for secret_word in ("Dana Whitfield", "forklift", "picker", receiver.secret):
        assert secret_word not in text


async def test_unknown_status_responses(bus, store, receivers):
    redirect = await receivers()

    async def to_elsewhere(rec, request):
        raise web.HTTPFound("https://example.com/")

    redirect.behaviour = to_elsewhere
    bridge = bridge_for(bus, store, [redirect.endpoint()], schedule=INSTANT)
    event = completed_event(12)
    async with running(bridge):
        await bus.publish(event)
        await eventually(lambda: bridge.stats.dead == 1, timeout=20)
    row = await store.get_delivery(event.id, "default")
    assert row.last_status_code == 302 and row.attempts == 8  # redirects are not followed


async def test_one_bridge_per_store(bus, store, receiver):
    from hris_bridge.bridge import StoreInUse

    first = bridge_for(bus, store, [receiver.endpoint()])
    second = bridge_for(bus, store, [receiver.endpoint()], consumer="other")
    async with running(first):
        with pytest.raises(StoreInUse, match="one bridge per store"):
            second.start()
    async with running(second):  # free again once the first stopped
        event = completed_event(13)
        await bus.publish(event)
        await eventually(lambda: second.stats.delivered == 1)


async def test_candidate_erased_removes_their_events_from_the_store_and_is_delivered(
    bus, store, receiver, tmp_path
):
    from voicebot.events.types import EVENT_TYPES, make_event

    receiver.status = 500  # the HR system is down: deliveries wait in the store
    example = EVENT_TYPES["interview.completed"].example["report"]
    report = {**example, "candidate": {**example["candidate"], "name": "Xavier Erasedson"}}
    erased_interview = completed_event(1, report=report)
    kept = completed_event(2)
    bridge = bridge_for(bus, store, [receiver.endpoint()], schedule=INSTANT)
    async with running(bridge):
        await bus.publish(erased_interview)
        await bus.publish(kept)
        await eventually(lambda: len(receiver.requests) >= 2)
        erased = make_event(
            "candidate.erased",
            {
                **EVENT_TYPES["candidate.erased"].example,
                "interviews": [
                    {"interview_id": "iv_test00001", "job_id": "j", "external_key": None}
                ],
            },
        )
        await bus.publish(erased)
        # Acked once stored and acted on (the erasure runs after the notice is stored).
        await eventually(lambda: bridge.stats.acked >= 3)
        assert await store.get_event(erased.id) is not None
        assert await store.get_event(erased_interview.id) is None
        assert await store.get_event(kept.id) is not None
        files = [p for p in tmp_path.iterdir() if p.name.startswith("bridge.db")]
        assert files and not any(b"Xavier Erasedson" in p.read_bytes() for p in files)
        receiver.status = 200  # back: the erasure notice goes out, the erased report never does
        answered_500 = len(receiver.requests)
        await eventually(lambda: erased.id in receiver.ids()[answered_500:])
        await eventually(lambda: kept.id in receiver.ids()[answered_500:])
    assert erased_interview.id not in receiver.ids()[answered_500:]
