"""The bridge end to end on the real embedded bus (voicebot.events.bus.EmbeddedBus), in-process
and as ``python -m hris_bridge run`` in its own process, over real loopback sockets."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys

import pytest

from hris_bridge.store import DELIVERED, DeliveryStore
from tests.bridge.conftest import FAST, bridge_for, call_event, completed_event, eventually
from tests.bridge.test_bridge import AckBlocker, running

bus_module = pytest.importorskip("voicebot.events.bus")
EmbeddedBus = bus_module.EmbeddedBus
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
async def embedded(tmp_path):
    bus = EmbeddedBus(tmp_path / "events.sqlite3", poll_ms=50)
    await bus.start()
    yield bus
    await bus.close()


async def test_every_event_published_reaches_the_receiver_once(embedded, store, receiver):
    from voicebot.events.emitter import EventEmitter

    emitter = EventEmitter(embedded)
    emitter.start()
    bridge = bridge_for(embedded, store, [receiver.endpoint(max_in_flight=1)])
    async with running(bridge):
        events = [emitter.emit("call.started", **call_event(n=n).data) for n in range(30)]
        events.append(emitter.emit("interview.completed", **completed_event(1).data))
        await eventually(lambda: bridge.stats.delivered == 31, timeout=10)
    await emitter.close()
    assert receiver.ids() == [e.id for e in events]  # in order, each once
    assert all(r.verified for r in receiver.requests)
    assert receiver.requests[-1].payload == events[-1].payload()
    assert await embedded.pending("hris_bridge") == 0


@pytest.mark.parametrize("second_consumer", ["second", "first"])
async def test_restart_mid_delivery_loses_nothing(tmp_path, store, receiver, second_consumer):
    path = tmp_path / "events.sqlite3"
    receiver.delay = 0.01
    receiver.fail_first = 2
    events = [completed_event(n) for n in range(25)]
    async with EmbeddedBus(path, poll_ms=50) as bus:
        for event in events:
            await bus.publish(event)
        first = bridge_for(AckBlocker(bus), store, [receiver.endpoint()], consumer="first")
        task = first.start()
        await eventually(lambda: first.bus.blocked.is_set() and receiver.requests)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert await bus.pending("hris_bridge") > 0  # stored by the bridge, never acked
    async with EmbeddedBus(path, poll_ms=50) as bus:  # the bus restarted too
        second = bridge_for(
            bus,
            store,
            [receiver.endpoint()],
            consumer=second_consumer,
            min_idle_ms=50,
            claim_interval_secs=0.05,
        )
        async with running(second):

            async def settled():
                rows = [await store.get_delivery(e.id, "default") for e in events]
                return all(r is not None and r.status == DELIVERED for r in rows)

            await eventually(settled, timeout=15)

            async def all_acked():
                return await bus.pending("hris_bridge") == 0

            await eventually(all_acked, timeout=5)
    assert receiver.unique_ids() == {e.id for e in events}
    assert len(receiver.accepted_ids()) == 25
    counts = await store.counts()
    assert counts["events"] == 25 and sum(counts["deliveries"].values()) == 25


def _env(tmp_path, receiver) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICEBOT_")}
    env.update(
        VOICEBOT_DATA_DIR=str(tmp_path),
        VOICEBOT_WEBHOOK_URL=receiver.url,
        VOICEBOT_WEBHOOK_SECRET=receiver.secret,
        PYTHONPATH=ROOT,
    )
    return env


async def _cli(env, *args, timeout=30) -> tuple[int, str, str]:  # noqa: ASYNC109
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hris_bridge",
        *args,
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode, out.decode(), err.decode()


async def test_cli_run_dead_status_and_replay(tmp_path, receiver):
    env = _env(tmp_path, receiver)
    good, doomed = completed_event(1), completed_event(2)
    async with EmbeddedBus(tmp_path / "events.sqlite3") as bus:
        await bus.publish(good)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hris_bridge",
        "run",
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await eventually(lambda: receiver.requests, timeout=20)
        assert receiver.ids() == [good.id] and receiver.requests[0].verified
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, err.decode()
    assert "Dana Whitfield" not in err.decode()

    # A dead letter, made directly in the bridge's store; then the CLI lists it and replays it.
    async with DeliveryStore(tmp_path / "hris_bridge.db") as store:
        await store.record_event(doomed, ["default"])
        row = await store.get_delivery(doomed.id, "default")
        await store.record_attempt(
            row.id, status="dead", attempted_at=0, duration_ms=1, status_code=500, error="HTTP 500"
        )
    code, out, _ = await _cli(env, "dead", "--json")
    assert code == 0
    [dead] = [json.loads(line) for line in out.splitlines()]
    assert dead["event_id"] == doomed.id and dead["last_status_code"] == 500

    code, out, _ = await _cli(env, "status", "--json")
    status = json.loads(out)
    assert (
        code == 0 and status["deliveries"]["delivered"] == 1 and status["deliveries"]["dead"] == 1
    )
    assert status["endpoints"][0]["id"] == "default" and receiver.secret not in out

    code, out, err = await _cli(env, "replay", "--event-id", doomed.id)
    assert code == 0, err
    assert doomed.id in out and "delivered" in out
    assert receiver.ids() == [good.id, doomed.id]

    code, out, err = await _cli(env, "replay", "--event-id", "evt_unknown")
    assert code == 1 and "not_found" in out

    code, out, err = await _cli(
        env, "replay", "--since", "2000-01-01T00:00:00Z", "--type", "interview.completed", "--json"
    )
    assert code == 0, err
    assert [json.loads(line)["event_id"] for line in out.splitlines()] == [good.id, doomed.id]


async def test_cli_errors_are_clear(tmp_path, receiver):
    env = _env(tmp_path, receiver)
    env["VOICEBOT_WEBHOOK_SECRET"] = "hunter2"
    code, _, err = await _cli(env, "run")
    assert code == 2 and "VOICEBOT_WEBHOOK_SECRET" in err and "whsec_" in err
    env.pop("VOICEBOT_WEBHOOK_SECRET")
    env.pop("VOICEBOT_WEBHOOK_URL")
    code, _, err = await _cli(env, "run")
    assert code == 2 and "no webhook endpoint configured" in err
    code, _, err = await _cli(env, "replay")
    assert code == 2 and "event ids, or a time range" in err
    code, _, err = await _cli(env, "replay", "--since", "yesterday")
    assert code == 2 and "not an ISO 8601 time" in err
    code, out, _ = await _cli(env, "new-secret")
    assert code == 0 and out.startswith("whsec_")


def test_fast_schedule_is_fast():
    assert FAST.total_span() < 10


async def test_bridge_open_as_the_server_embeds_it(tmp_path, embedded, receiver):
    from hris_bridge.bridge import Bridge

    bridge = await Bridge.open(
        embedded, tmp_path, [receiver.endpoint()], consumer="server", block_ms=50
    )
    event = completed_event(3)
    await embedded.publish(event)
    await eventually(lambda: bridge.stats.delivered == 1)
    await bridge.close()
    assert (tmp_path / "hris_bridge.db").exists() and receiver.ids() == [event.id]
    with pytest.raises(RuntimeError):
        bridge.store.db  # noqa: B018 - closed with the bridge


async def test_cli_bridge_reads_and_keeps_encrypted_events_with_the_data_key(tmp_path, receiver):
    """``voicebot bridge`` in its own process with the server's VOICEBOT_DATA_KEY."""
    from voicebot.crypto import Keyring, generate_key_entry

    entry = generate_key_entry("k1")
    env = {**_env(tmp_path, receiver), "VOICEBOT_DATA_KEY": entry}
    event = completed_event(1)
    async with EmbeddedBus(tmp_path / "events.sqlite3", keyring=Keyring.parse(entry)) as bus:
        await bus.publish(event)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hris_bridge",
        "run",
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await eventually(lambda: receiver.requests, timeout=20)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, err.decode()
    assert receiver.requests[0].payload == event.payload()  # the HR system gets the plaintext
    code, out, err = await _cli(env, "replay", "--event-id", event.id)
    assert code == 0 and "delivered" in out, err
    raw = b"".join(path.read_bytes() for path in tmp_path.iterdir() if path.is_file())
    assert b"Dana Whitfield" not in raw  # neither the bus's file nor the bridge's store
