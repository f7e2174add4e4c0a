"""What the dialer's store queries cost with a big queue: ``python -m loadtest.claim_bench``.

Builds a throw-away store with ``--interviews`` campaign interviews (default 100,000; a tenth of
them due now, the rest due later and dialed twice before, spread over ``--campaigns`` campaigns),
then times what the
dialer does every tick: reading the due interviews (``attempts.due_interviews``, 50 at a time),
claiming them one by one (``attempts.CLAIM_SQL``, one ``BEGIN IMMEDIATE`` statement each), the
expired-lease sweep, and prints SQLite's query plans (which index each one uses). No model, no
server; the numbers are for docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from voicebot.campaigns import attempts
from voicebot.store.database import Store


async def _fill(store: Store, interviews: int, campaigns: int, now: float) -> None:
    db = store.db
    await db.executemany(
        "INSERT INTO campaigns (id, job_id, policy, created_at, updated_at)"
        " VALUES (?, 'customer_service_en', ?, ?, ?)",
        [
            (f"cmp_{c}", json.dumps({"max_attempts": 3, "max_concurrent": 1000}), now, now)
            for c in range(campaigns)
        ],
    )
    rows = []
    for n in range(interviews):
        due = now - 60 if n % 10 == 0 else now + 3600 + n
        rows.append(
            (
                f"iv_{n:08d}",
                f"cand_{n}",
                f"+1555{n:07d}",
                f"cmp_{n % campaigns}",
                due,
                now,
                now,
            )
        )
    await db.executemany(
        "INSERT INTO interviews (id, job_id, candidate_id, candidate_phone, campaign_id,"
        " next_attempt_at, created_at, updated_at, status_history)"
        " VALUES (?, 'customer_service_en', ?, ?, ?, ?, ?, ?, '[]')",
        rows,
    )
    # The interviews due later were dialed twice before: ended attempts the counts must skip.
    await db.executemany(
        "INSERT INTO dial_attempts (id, interview_id, campaign_id, number, state, created_at,"
        " ended_at, outcome) VALUES (?, ?, ?, ?, 'ended', ?, ?, 'no_answer')",
        [
            (f"da_{row[0]}_{number}", row[0], row[3], number, now, now)
            for row in rows
            if row[4] > now
            for number in (1, 2)
        ],
    )
    await db.commit()


async def _plan(store: Store, sql: str, params: object) -> list[str]:
    async with store.db.execute("EXPLAIN QUERY PLAN " + sql, params) as cursor:
        return [row[3] for row in await cursor.fetchall()]


async def run(interviews: int, campaigns: int, rounds: int) -> dict:
    """Fill a store, time the queries; returns the figures (milliseconds)."""
    with tempfile.TemporaryDirectory() as folder:
        store = Store(Path(folder) / "bench.sqlite3")
        await store.open()
        now = time.time()
        started = time.perf_counter()
        await _fill(store, interviews, campaigns, now)
        fill_secs = time.perf_counter() - started
        due_ms, claim_ms, sweep_ms = [], [], []
        claimed = 0
        for _ in range(rounds):
            t0 = time.perf_counter()
            due = await attempts.due_interviews(store, now, 50)
            due_ms.append((time.perf_counter() - t0) * 1000)
            for row in due:
                t0 = time.perf_counter()
                got = await attempts.claim_attempt(
                    store, row["id"], owner="proc_bench", lease_until=now + 30, now=now
                )
                claim_ms.append((time.perf_counter() - t0) * 1000)
                claimed += got is not None
            t0 = time.perf_counter()
            await attempts.expired_attempts(store, now)
            await attempts.held_by_others(store, "proc_bench")
            await attempts.open_attempts_of(store, "proc_bench")
            sweep_ms.append((time.perf_counter() - t0) * 1000)
            # End this round's attempts so the next round finds new due interviews.
            await store.db.execute(
                "UPDATE dial_attempts SET state = 'ended', outcome = 'busy' WHERE state != 'ended'"
            )
            await store.db.execute(
                "UPDATE interviews SET next_attempt_at = NULL WHERE id IN"
                " (SELECT interview_id FROM dial_attempts)"
            )
            await store.db.commit()
        # The worst tick: every due interview's campaign paused (each due row is read and
        # skipped). 10,000 due now: the first 1,000 were claimed and ended above.
        await store.db.execute("UPDATE campaigns SET paused = 1")
        await store.db.commit()
        paused_ms = []
        for _ in range(5):
            t0 = time.perf_counter()
            await attempts.due_interviews(store, now, 50)
            paused_ms.append((time.perf_counter() - t0) * 1000)
        plans = {
            "due": await _plan(store, attempts.DUE_SQL, (now, 50)),
            "claim": await _plan(
                store,
                attempts.CLAIM_SQL,
                {
                    "attempt_id": "da_x",
                    "interview_id": "iv_00000010",
                    "owner": "p",
                    "lease_until": now,
                    "now": now,
                },
            ),
        }
        await store.close()

    def summary(values: list[float]) -> dict:
        ordered = sorted(values)
        return {
            "median_ms": round(statistics.median(ordered), 3),
            "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))], 3),
            "max_ms": round(ordered[-1], 3),
            "n": len(ordered),
        }

    return {
        "interviews": interviews,
        "campaigns": campaigns,
        "fill_secs": round(fill_secs, 1),
        "due_read_50": summary(due_ms),
        "claim_one": summary(claim_ms),
        "lease_queries": summary(sweep_ms),
        "due_read_all_paused": summary(paused_ms),
        "claimed": claimed,
        "plans": plans,
    }


def main() -> None:
    """Command line: print the figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interviews", type=int, default=100_000)
    parser.add_argument("--campaigns", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    result = asyncio.run(run(args.interviews, args.campaigns, args.rounds))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
