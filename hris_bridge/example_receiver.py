"""An example webhook receiver for HR teams: verify, dedupe, store, answer fast.

Run it::

    python -m hris_bridge.example_receiver --port 9000 --secret whsec_... [--db received.db]

and point the bridge at it (``VOICEBOT_WEBHOOK_URL=http://host:9000/webhooks``, the same secret).

What a production receiver should copy from it:

1. **Verify before anything else**, on the raw body bytes (not re-serialised JSON): the
   signature, and that ``webhook-timestamp`` is within five minutes (replay protection). A bad or
   old signature gets ``401``. :func:`hris_bridge.signing.verify` does it; so does the official
   library: ``standardwebhooks.Webhook(secret).verify(body, headers)``.
2. **Dedupe by ``webhook-id``**: delivery is at least once (retries, replays), so the same event
   can arrive twice. Here the id is the primary key of the ``received`` table; a repeat is
   answered ``200`` (so the bridge stops retrying) and not stored again.
3. **Answer 2xx fast** and do the real work (updating the ATS) afterwards, from the stored row:
   the bridge times out slow receivers and retries them.
4. To stop retries of a message you will never accept, answer with the response header
   ``webhook-delivery: abort-message`` (or ``410 Gone``).

The table holds candidate data: protect the database file like the HR system's own.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import aiosqlite
from aiohttp import web

from hris_bridge.signing import WebhookVerificationError, parse_secret, verify

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024 * 1024
DB_KEY = web.AppKey("db", aiosqlite.Connection)
STATS_KEY = web.AppKey("stats", dict)
SCHEMA = """
CREATE TABLE IF NOT EXISTS received (
    webhook_id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    event_timestamp TEXT,
    body TEXT NOT NULL,
    received_at REAL NOT NULL,
    deliveries INTEGER NOT NULL DEFAULT 1
);
"""


def make_app(secret: str | list[str], db_path: str | Path = ":memory:") -> web.Application:
    """The receiver app.

    ``POST /webhooks`` verifies, dedupes and stores; ``GET /received`` lists what was stored
    (ids and types only).
    """
    secrets_ = [secret] if isinstance(secret, str) else list(secret)
    for value in secrets_:
        parse_secret(value)  # fail at start-up, not on the first webhook
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[STATS_KEY] = {"accepted": 0, "duplicates": 0, "rejected": 0}

    async def open_db(app: web.Application) -> None:
        db = await aiosqlite.connect(str(db_path))
        await db.execute("PRAGMA journal_mode=WAL")
        await db.executescript(SCHEMA)
        await db.commit()
        app[DB_KEY] = db

    async def close_db(app: web.Application) -> None:
        await app[DB_KEY].close()

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            verify(secrets_, request.headers, body)
        except WebhookVerificationError as exc:
            app[STATS_KEY]["rejected"] += 1
            log.warning("rejected a webhook: %s", exc)
            return web.json_response({"error": "invalid signature", "detail": str(exc)}, status=401)
        try:
            payload = json.loads(body)
            event_type = str(payload["type"])
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error": "body is not an event payload"}, status=400)
        webhook_id = request.headers["webhook-id"]
        db = app[DB_KEY]
        cursor = await db.execute(
            "INSERT OR IGNORE INTO received (webhook_id, type, event_timestamp, body, received_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (webhook_id, event_type, payload.get("timestamp"), body.decode(), time.time()),
        )
        if cursor.rowcount == 0:  # seen before: count it, keep the first copy
            await db.execute(
                "UPDATE received SET deliveries = deliveries + 1 WHERE webhook_id = ?",
                (webhook_id,),
            )
            await db.commit()
            app[STATS_KEY]["duplicates"] += 1
            return web.json_response({"ok": True, "duplicate": True})
        await db.commit()
        app[STATS_KEY]["accepted"] += 1
        # Real work (updating the ATS) goes to a queue / the stored row here: answer now.
        return web.json_response({"ok": True, "duplicate": False})

    async def received(request: web.Request) -> web.Response:
        cursor = await app[DB_KEY].execute(
            "SELECT webhook_id, type, deliveries FROM received ORDER BY rowid"
        )
        rows = await cursor.fetchall()
        return web.json_response(
            {
                "stats": app[STATS_KEY],
                "received": [{"webhook_id": r[0], "type": r[1], "deliveries": r[2]} for r in rows],
            }
        )

    app.on_startup.append(open_db)
    app.on_cleanup.append(close_db)
    app.router.add_post("/webhooks", receive)
    app.router.add_get("/received", received)
    return app


def main(argv: list[str] | None = None) -> None:
    """``python -m hris_bridge.example_receiver --port P --secret whsec_...``."""
    parser = argparse.ArgumentParser(
        prog="python -m hris_bridge.example_receiver",
        description="Example Standard Webhooks receiver for voicebot events.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument(
        "--secret",
        action="append",
        required=True,
        help="whsec_ secret (repeat during a rotation: any one may sign)",
    )
    parser.add_argument("--db", default="received.db", help="SQLite file for received events")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    web.run_app(make_app(args.secret, args.db), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
