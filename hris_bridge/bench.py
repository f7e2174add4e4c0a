"""Measure the bridge: delivery latency to a healthy local receiver, and sustained events/s.

    python -m hris_bridge.bench [--latency-events 500] [--rate 100] [--events 2000]
                                [--max-in-flight 4] [--uvloop]

Real parts only: the embedded bus (SQLite file), the bridge's store (SQLite file), a receiver in
its own process on a loopback port that verifies every signature and answers ``204``.

* **latency**: events published one by one at ``--rate`` per second while the bridge runs;
  per event, from just before ``bus.publish`` to the receiver's arrival time (same machine
  clock), and the bridge's own figure (read from the bus to the receiver's 2xx);
* **throughput**: ``--events`` published while the bridge is stopped (a backlog, as after an
  outage), then the bridge started; events/s from its start until the receiver has them all.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from hris_bridge.bridge import Bridge, percentile
from hris_bridge.endpoints import Endpoint
from hris_bridge.signing import new_secret
from hris_bridge.store import DeliveryStore


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _receiver_main(port: int, secret: str) -> None:
    """The receiver process: verify, record (webhook-id, arrival time), answer 204."""
    from aiohttp import web

    from hris_bridge.signing import verify

    arrivals: list[tuple[str, float]] = []
    bad = 0

    async def hook(request: web.Request) -> web.Response:
        nonlocal bad
        body = await request.read()
        at = time.time()
        try:
            verify(secret, request.headers, body)
        except Exception:
            bad += 1
            return web.Response(status=401)
        arrivals.append((request.headers["webhook-id"], at))
        return web.Response(status=204)

    async def listing(request: web.Request) -> web.Response:
        return web.json_response({"arrivals": arrivals, "bad": bad})

    async def reset(request: web.Request) -> web.Response:
        arrivals.clear()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hooks", hook)
    app.router.add_get("/arrivals", listing)
    app.router.add_post("/reset", reset)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


async def _arrivals(session: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    async with session.get(f"{base}/arrivals") as response:
        return await response.json()


async def _wait_for(session: aiohttp.ClientSession, base: str, n: int, within: float) -> dict:
    deadline = time.monotonic() + within
    while True:
        got = await _arrivals(session, base)
        if len(got["arrivals"]) >= n or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.05)


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    """Run both measurements; return the numbers."""
    from voicebot.events.bus import EmbeddedBus
    from voicebot.events.types import make_event

    secret = new_secret()
    port = _free_port()
    receiver = multiprocessing.get_context("spawn").Process(
        target=_receiver_main, args=(port, secret), daemon=True
    )
    receiver.start()
    base = f"http://127.0.0.1:{port}"
    endpoint = Endpoint(
        id="bench", url=f"{base}/hooks", secret=secret, max_in_flight=args.max_in_flight
    )
    data = {
        "interview_id": "iv_bench",
        "job_id": "warehouse-associate",
        "candidate_id": "cand_1",
        "external_key": None,
        "client": "admin",
        "call_sid": "CA" + "0" * 32,
        "direction": "outbound-api",
    }
    results: dict[str, Any] = {}
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(100):  # the receiver process is up
                try:
                    await _arrivals(session, base)
                    break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
            with tempfile.TemporaryDirectory() as tmp:
                bus = EmbeddedBus(Path(tmp) / "events.sqlite3", poll_ms=500)
                await bus.start()
                store = await DeliveryStore.open(Path(tmp) / "hris_bridge.db")

                # --- latency: a steady stream while the bridge runs ---------------------------
                bridge = Bridge(bus, store, [endpoint], consumer="bench")
                bridge.start()
                published: dict[str, float] = {}
                interval = 1.0 / args.rate
                next_at = time.perf_counter()
                for _ in range(args.latency_events):
                    event = make_event("call.started", data)
                    published[event.id] = time.time()
                    await bus.publish(event)
                    next_at += interval
                    await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
                got = await _wait_for(session, base, args.latency_events, 60)
                latencies = [
                    (at - published[i]) * 1000 for i, at in got["arrivals"] if i in published
                ]
                results["latency"] = {
                    "events": len(latencies),
                    "rate_per_s": args.rate,
                    "publish_to_receiver_ms": {
                        "p50": round(percentile(latencies, 50), 2),
                        "p99": round(percentile(latencies, 99), 2),
                        "max": round(max(latencies), 2),
                    },
                    "bridge_read_to_2xx_ms": {
                        k: None if v is None else round(v, 2)
                        for k, v in bridge.stats.latency().items()
                    },
                    "bad_signatures": got["bad"],
                }
                await bridge.close()
                async with session.post(f"{base}/reset"):
                    pass

                # --- throughput: drain a backlog --------------------------------------------------
                for _ in range(args.events):
                    await bus.publish(make_event("call.started", data))
                bridge = Bridge(bus, store, [endpoint], consumer="bench")
                started = time.perf_counter()
                bridge.start()
                got = await _wait_for(session, base, args.events, 300)
                elapsed = time.perf_counter() - started
                await bridge.close()
                results["throughput"] = {
                    "events": len(got["arrivals"]),
                    "seconds": round(elapsed, 3),
                    "events_per_s": round(len(got["arrivals"]) / elapsed, 1),
                    "max_in_flight": args.max_in_flight,
                    "bad_signatures": got["bad"],
                }
                await store.close()
                await bus.close()
    finally:
        receiver.terminate()
        receiver.join(5)
    return results


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print the numbers as JSON."""
    parser = argparse.ArgumentParser(prog="python -m hris_bridge.bench", description=__doc__)
    parser.add_argument("--latency-events", type=int, default=500)
    parser.add_argument("--rate", type=float, default=100.0, help="events/s in the latency run")
    parser.add_argument("--events", type=int, default=2000, help="backlog in the throughput run")
    parser.add_argument("--max-in-flight", type=int, default=4)
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop")
    args = parser.parse_args(argv)
    if args.uvloop:
        import uvloop

        uvloop.install()
    print(json.dumps(asyncio.run(bench(args)), indent=2))


if __name__ == "__main__":
    main()
