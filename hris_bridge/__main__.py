"""``python -m hris_bridge``: run the bridge, replay events, list dead letters, show status.

Settings come from the environment, as for the voicebot server:

* ``VOICEBOT_DATA_DIR``: the bridge's store is ``<data dir>/hris_bridge.db`` (``--db`` overrides);
* ``VOICEBOT_REDIS_URL``: the event bus (empty: the embedded bus in the data directory);
* ``VOICEBOT_WEBHOOK_URL`` + ``VOICEBOT_WEBHOOK_SECRET`` and/or ``VOICEBOT_WEBHOOK_ENDPOINTS_FILE``:
  the endpoints (see :mod:`hris_bridge.endpoints`).

Subcommands::

    python -m hris_bridge run
    python -m hris_bridge replay --event-id evt_... [--event-id ...]
    python -m hris_bridge replay --since 2026-11-22T00:00:00Z [--until ...] [--type T]
                                 [--endpoint E]
    python -m hris_bridge dead [--endpoint E] [--json]
    python -m hris_bridge status [--json]
    python -m hris_bridge prune --days 30
    python -m hris_bridge new-secret

Exit status: 0 on success, 1 when a replay did not deliver everything, 2 for a configuration or
usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hris_bridge.bridge import STORE_NAME
from hris_bridge.endpoints import EndpointConfigError, load_endpoints
from hris_bridge.signing import new_secret
from hris_bridge.store import DEAD, DeliveryStore
from voicebot.crypto import DataKeyError, Keyring

log = logging.getLogger("hris_bridge")
STATS_LOG_SECS = 60.0


def data_dir(env: dict[str, str] | None = None) -> Path:
    """``VOICEBOT_DATA_DIR``, or the server's default (``<project>/data``)."""
    env = dict(os.environ) if env is None else env
    if env.get("VOICEBOT_DATA_DIR"):
        return Path(env["VOICEBOT_DATA_DIR"])
    from voicebot.config import PROJECT_ROOT

    return PROJECT_ROOT / "data"


def data_keyring() -> Keyring | None:
    """The data keys (``VOICEBOT_DATA_KEY``): the server's encrypted events are read with them."""
    return Keyring.parse(os.environ.get("VOICEBOT_DATA_KEY", ""))


def store_path(args: argparse.Namespace) -> Path:
    """The store file: ``--db`` or ``<data dir>/hris_bridge.db``."""
    return Path(args.db) if args.db else data_dir() / STORE_NAME


def _iso(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def _run(args: argparse.Namespace) -> int:
    from hris_bridge.bridge import Bridge

    endpoints = load_endpoints()
    if not endpoints:
        print(
            "no webhook endpoint configured: set VOICEBOT_WEBHOOK_URL and VOICEBOT_WEBHOOK_SECRET"
            " or VOICEBOT_WEBHOOK_ENDPOINTS_FILE",
            file=sys.stderr,
        )
        return 2
    from voicebot.events.bus import build_bus

    keyring = data_keyring()
    bus = build_bus(os.environ.get("VOICEBOT_REDIS_URL", ""), data_dir(), keyring=keyring)
    await bus.start()
    store = await DeliveryStore.open(store_path(args), keyring=keyring)
    bridge = Bridge(bus, store, endpoints, **({"consumer": args.consumer} if args.consumer else {}))
    task = bridge.start()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)

    async def report() -> None:
        while True:
            await asyncio.sleep(STATS_LOG_SECS)
            log.info("stats %s", json.dumps(bridge.stats.to_dict()))

    reporter = asyncio.create_task(report())
    try:
        waiter = asyncio.create_task(stop.wait())
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if task.done():
            task.result()  # a crash: re-raise it
    finally:
        reporter.cancel()
        await bridge.close()
        await store.close()
        await bus.close()
    log.info("stopped; stats %s", json.dumps(bridge.stats.to_dict()))
    return 0


async def _replay(args: argparse.Namespace) -> int:
    from hris_bridge.replay import ReplayError, parse_time, replay

    endpoints = load_endpoints()
    try:
        since = parse_time(args.since) if args.since else None
        until = parse_time(args.until) if args.until else None
        if args.event_id and (since is not None or until is not None):
            raise ReplayError("give --event-id or --since/--until, not both")
        async with DeliveryStore(store_path(args), data_keyring()) as store:
            results = await replay(
                store,
                endpoints,
                event_ids=args.event_id,
                since=since,
                until=until,
                event_type=args.type,
                endpoint_id=args.endpoint,
            )
    except ReplayError as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 2
    for result in results:
        if args.json:
            print(json.dumps(result.__dict__))
        else:
            code = result.status_code if result.status_code is not None else "-"
            print(
                f"{result.event_id}  {result.endpoint_id:<16} {result.status:<10} {code}"
                + (f"  {result.error}" if result.error and not result.ok else "")
            )
    if not results:
        print("replay: no stored event matches", file=sys.stderr)
        return 1
    return 0 if all(r.ok for r in results) else 1


async def _dead(args: argparse.Namespace) -> int:
    async with DeliveryStore(store_path(args), data_keyring()) as store:
        rows = await store.deliveries(status=DEAD, endpoint_id=args.endpoint)
    for row in rows:
        if args.json:
            print(json.dumps(row.__dict__))
        else:
            code = row.last_status_code if row.last_status_code is not None else "-"
            print(
                f"{row.event_id}  {row.event_type:<26} {row.endpoint_id:<16}"
                f" attempts={row.attempts}  last={code}  {row.last_error or ''}"
                f"  at={_iso(row.updated_at)}"
            )
    if not args.json:
        print(
            f"{len(rows)} dead-lettered deliver{'y' if len(rows) == 1 else 'ies'}", file=sys.stderr
        )
    return 0


async def _status(args: argparse.Namespace) -> int:
    path = store_path(args)
    try:
        endpoints = [e.describe() for e in load_endpoints()]
        config_error = None
    except EndpointConfigError as exc:
        endpoints, config_error = [], str(exc)
    out: dict[str, Any] = {"store": str(path), "endpoints": endpoints}
    if config_error:
        out["config_error"] = config_error
    if path.exists():
        async with DeliveryStore(path) as store:
            out.update(await store.counts())
    else:
        out["note"] = "no store yet (the bridge has not run with this data directory)"
    if args.json:
        print(json.dumps(out, indent=2, default=str))
        return 0
    print(f"store: {out['store']}")
    for endpoint in endpoints:
        print(f"endpoint {endpoint['id']}: {endpoint['url']} types={endpoint['event_types']}")
    if config_error:
        print(f"config error: {config_error}")
    if "deliveries" in out:
        print(f"events: {out['events']}  attempts: {out['attempts']}")
        print("deliveries: " + "  ".join(f"{k}={v}" for k, v in out["deliveries"].items()))
        for endpoint_id, counts in out["by_endpoint"].items():
            print(f"  {endpoint_id}: " + "  ".join(f"{k}={v}" for k, v in counts.items()))
        if out["next_attempt_at"] is not None:
            wait = max(0.0, out["next_attempt_at"] - time.time())
            print(f"next attempt: {_iso(out['next_attempt_at'])} (in {wait:.0f} s)")
    else:
        print(out["note"])
    return 0


async def _prune(args: argparse.Namespace) -> int:
    async with DeliveryStore(store_path(args), data_keyring()) as store:
        removed = await store.prune(time.time() - args.days * 86400)
    print(f"removed {removed} settled event(s) received more than {args.days:g} day(s) ago")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m hris_bridge`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="python -m hris_bridge",
        description="Deliver voicebot events to HR systems as Standard Webhooks.",
    )
    parser.add_argument("--db", help=f"store file (default: $VOICEBOT_DATA_DIR/{STORE_NAME})")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="consume the event bus and deliver webhooks")
    run.add_argument("--consumer", help="consumer name in the bus group (default: host-pid)")
    rep = sub.add_parser("replay", help="re-send stored events (same webhook-id)")
    rep.add_argument("--event-id", action="append", default=[], help="an event id (repeatable)")
    rep.add_argument("--since", help="events at or after this ISO 8601 time")
    rep.add_argument("--until", help="events before this ISO 8601 time")
    rep.add_argument("--type", help="only events of this type")
    rep.add_argument("--endpoint", help="only this endpoint id")
    rep.add_argument("--json", action="store_true", help="one JSON object per line")
    dead = sub.add_parser("dead", help="list dead-lettered deliveries")
    dead.add_argument("--endpoint", help="only this endpoint id")
    dead.add_argument("--json", action="store_true", help="one JSON object per line")
    status = sub.add_parser("status", help="endpoints and delivery counts")
    status.add_argument("--json", action="store_true", help="as JSON")
    prune = sub.add_parser("prune", help="forget settled events (and their candidate data)")
    prune.add_argument("--days", type=float, required=True, help="older than this many days")
    sub.add_parser("new-secret", help="print a new whsec_ signing secret")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    os.umask(0o077)  # what the bridge writes (its store holds candidate data) is private
    if args.command == "new-secret":
        print(new_secret())
        return 0
    commands = {
        "run": _run,
        "replay": _replay,
        "dead": _dead,
        "status": _status,
        "prune": _prune,
    }
    try:
        return asyncio.run(commands[args.command](args))
    except (EndpointConfigError, DataKeyError) as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
