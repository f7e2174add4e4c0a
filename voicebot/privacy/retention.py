"""Retention per data class, and the purge that enforces it.

Four classes, each kept ``VOICEBOT_RETENTION_<CLASS>_DAYS`` (0, the default: kept until the
candidate is erased):

* ``recordings``: a call's directory (``call.wav``, ``timeline.jsonl``), from the call's end;
* ``transcripts``: the words of a call's turns, their prosody, the answers in its outcome and
  the recording's ``timeline.jsonl``, counted from the call's end;
* ``reports``: an interview's report, counted from when it was built;
* ``events``: durable events in the event log, the outbox, the Redis stream and the HR bridge's
  store (the bridge's only once every delivery of them settled).

What the audit and the HR contract need stays: interview and call ids, statuses and their
history, dates, durations, who spoke when. A purge is recorded in the audit log, counted in
``voicebot_purged_total{class}``, and runs in the server once at start-up and then daily
(:func:`run_daily`), or by hand: ``voicebot purge [--dry-run]``.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voicebot.privacy.event_stores import purge_events

log = logging.getLogger(__name__)

DAY_SECS = 86_400.0
PURGE_EVERY_SECS = DAY_SECS
DATA_CLASSES = ("recordings", "transcripts", "reports", "events")
TIMELINE = "timeline.jsonl"
REDIS_STREAM = "voicebot:events"
"""The durable stream of the Redis bus (``voicebot.events.bus.RedisBus``)."""
REDIS_TIMEOUT_SECS = 10.0


@dataclass
class PurgeResult:
    """What a purge removed (or, dry, would remove), per data class."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DATA_CLASSES, 0))
    dry_run: bool = False
    kept_forever: list[str] = field(default_factory=list)
    """Classes with no retention limit (0 days)."""

    def summary(self) -> str:
        """One line for people: what went (or would go)."""
        verb = "would remove" if self.dry_run else "removed"
        parts = [
            f"{self.counts[name]} {name}" for name in DATA_CLASSES if name not in self.kept_forever
        ]
        kept = f"; kept without limit: {', '.join(self.kept_forever)}" if self.kept_forever else ""
        return f"purge {verb}: {', '.join(parts) or 'nothing (no retention limit set)'}{kept}"


def retention_days(settings: Any) -> dict[str, float]:
    """Each data class's retention in days from the settings (0: no limit)."""
    return {name: float(getattr(settings, f"retention_{name}_days")) for name in DATA_CLASSES}


def remove_recording(recording_dir: str, recordings_root: Path, call_sid: str) -> bool:
    """Delete a call's recording directory (stored path, or ``<recordings>/<sid>``); whether any."""
    removed = False
    for path in {Path(recording_dir) if recording_dir else None, recordings_root / call_sid}:
        if path is None or not path.is_dir() or path.resolve() == recordings_root.resolve():
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed = True
    return removed


async def purge_redis_stream(url: str, stream: str, before: float, dry_run: bool = False) -> int:
    """Remove the stream's entries added before ``before`` (their ids are their times)."""
    import redis.asyncio as redis

    client = redis.from_url(url, decode_responses=True, socket_timeout=REDIS_TIMEOUT_SECS)
    last_ms = int(before * 1000) - 1
    try:
        if not dry_run:
            return await client.xtrim(stream, minid=f"{last_ms + 1}-0", approximate=False)
        count, start = 0, "-"
        while True:
            entries = await client.xrange(stream, min=start, max=str(last_ms), count=1000)
            count += len(entries)
            if len(entries) < 1000:
                return count
            start = "(" + entries[-1][0]
    finally:
        await client.aclose()


def remove_timeline(recording_dir: str, recordings_root: Path, call_sid: str) -> None:
    """Delete a call's ``timeline.jsonl`` (its transcript lines), keeping the audio."""
    for folder in {Path(recording_dir) if recording_dir else None, recordings_root / call_sid}:
        if folder is not None:
            (folder / TIMELINE).unlink(missing_ok=True)


async def purge(
    store: Any,
    settings: Any,
    *,
    now: float | None = None,
    dry_run: bool = False,
    audit: Any = None,
    actor: str = "system:retention",
    metrics: Any = None,
) -> PurgeResult:
    """Remove every data class's data older than its retention; see the module's docstring."""
    now = time.time() if now is None else now
    days = retention_days(settings)
    result = PurgeResult(dry_run=dry_run)
    result.kept_forever = [name for name, limit in days.items() if limit <= 0]
    for data_class in ("recordings", "transcripts"):
        if days[data_class] <= 0:
            continue
        calls = await store.calls_to_purge(data_class, now - days[data_class] * DAY_SECS)
        result.counts[data_class] = len(calls)
        if dry_run or not calls:
            continue
        root = Path(settings.recordings_dir)
        for call in calls:
            if data_class == "recordings":
                await asyncio.to_thread(
                    remove_recording, call["recording_dir"] or "", root, call["call_sid"]
                )
            else:  # the timeline holds the words too; the audio stays (its own class)
                await asyncio.to_thread(
                    remove_timeline, call["recording_dir"] or "", root, call["call_sid"]
                )
        await store.purge_calls(data_class, [call["call_sid"] for call in calls])
    if days["reports"] > 0:
        interview_ids = await store.reports_to_purge(now - days["reports"] * DAY_SECS)
        result.counts["reports"] = len(interview_ids)
        if not dry_run:
            await store.purge_reports(interview_ids)
    if days["events"] > 0:
        before = now - days["events"] * DAY_SECS
        result.counts["events"] = await asyncio.to_thread(
            purge_events, Path(settings.data_dir), before, dry_run
        )
        if settings.redis_url:
            result.counts["events"] += await purge_redis_stream(
                settings.redis_url, REDIS_STREAM, before, dry_run
            )
    if not dry_run:
        if metrics is not None:
            for name, count in result.counts.items():
                metrics.purged.labels(name).inc(count)
        if audit is not None and any(result.counts.values()):
            detail = {"removed": result.counts, "retention_days": days}
            await audit.record(actor, "retention.purge", detail=detail)
    return result


async def run_daily(services: Any) -> None:
    """The server's purge: once at start-up, then every day; a failure is logged and counted."""
    while True:
        try:
            result = await purge(
                services.store,
                services.settings,
                audit=services.audit,
                metrics=services.metrics,
            )
            if any(result.counts.values()):
                log.info("%s", result.summary())
        except asyncio.CancelledError:
            raise
        except Exception:
            services.metrics.internal_errors.labels("retention_purge").inc()
            log.exception("the retention purge failed; it runs again in a day")
        await asyncio.sleep(PURGE_EVERY_SECS)
