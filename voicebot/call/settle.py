"""Settling the calls a dead server process left open.

The call ends, the interview gets its outcome and report, the HR system hears of it once, the
recording is assembled.

Every server process registers itself in the store (:class:`ProcessIdentity`: an id, its host,
pid and the pid's start time) and holds the calls it creates (``calls.owner``); it renews a
heartbeat every :data:`HEARTBEAT_SECS` and says so when it stops cleanly. A call whose owner is
dead is settled by the next process to look: at start-up, and every :data:`SWEEP_SECS` while it
runs (for when several processes share one store). An owner is dead when it stopped, when (on
this host) its pid is gone or now belongs to another process, or (on another host) when its
heartbeat is older than :data:`STALE_SECS`. With SQLite, one process per data directory, the
previous process's calls are settled as soon as the next one starts.

Settling one call takes the same path as a call that ends normally, and can run again from any
point if the settling process dies too:

1. claim it atomically (``failed``/``server_restart``, now held by this process: of several
   processes trying, one wins);
2. assemble ``call.wav`` from the part files that reached the disk;
3. tell the monitor's lists that it ended;
4. emit ``call.ended``, build and store the report (:meth:`Services.build_report`, the interview's
   status by :func:`voicebot.dialogue.report.interview_status`), emit ``interview.completed`` and
   the candidate's new status, each with an id derived from the call, so an event emitted again
   after a crash is the same event (the bus and the HR bridge keep one per id);
5. wait until the events are on the bus, then mark the call settled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voicebot.call.recorder import _writer_thread, assemble_recording, unassembled_recordings
from voicebot.events.emitter import interview_refs
from voicebot.events.types import derived_event_id

if TYPE_CHECKING:
    from voicebot.services import Services

log = logging.getLogger(__name__)

HEARTBEAT_SECS = 5.0
"""How often a process renews its heartbeat in the store."""
STALE_SECS = 30.0
"""A process on another host whose heartbeat is this old is dead."""
SWEEP_SECS = 30.0
"""How often a running process looks for other processes' dead calls."""


def _pid_started(pid: int) -> str | None:
    """When ``pid`` started (clock ticks since boot, from ``/proc``).

    ``""`` when there is no such process; ``None`` when this system cannot tell (no ``/proc``).
    """
    if not Path("/proc/self/stat").exists():
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat[stat.rfind(")") + 2 :].split()[19]  # field 22: starttime


@dataclass(frozen=True)
class ProcessIdentity:
    """Who this server process is, as written beside the calls it holds."""

    id: str
    host: str
    pid: int
    pid_started: str

    @classmethod
    def current(cls) -> ProcessIdentity:
        """The running process, with a new random id."""
        pid = os.getpid()
        return cls(
            id=f"proc_{secrets.token_hex(8)}",
            host=socket.gethostname(),
            pid=pid,
            pid_started=_pid_started(pid) or "",
        )

    def sees_alive(self, owner: dict[str, Any] | None, now: float) -> bool:
        """Whether the process of a ``processes`` row (``None``: unknown) is alive."""
        if owner is None or owner.get("stopped_at") is not None:
            return False
        if owner["id"] == self.id:
            return True
        if owner["host"] != self.host:
            return now - owner["heartbeat_at"] < STALE_SECS
        if owner["pid"] == self.pid:
            return False  # that pid is this process now (a restarted container)
        started = _pid_started(owner["pid"])
        if started is None:  # no /proc: does the pid exist at all
            try:
                os.kill(owner["pid"], 0)
            except ProcessLookupError:
                return False
            except PermissionError:
                return True
            return True
        return started != "" and (not owner["pid_started"] or started == owner["pid_started"])


class CallSettler:
    """Registers this process, keeps its heartbeat, settles dead processes' calls."""

    def __init__(self, services: Services, identity: ProcessIdentity) -> None:
        self.services = services
        self.identity = identity
        self.settled = 0
        self._lock = asyncio.Lock()
        self._task: asyncio.Task | None = None

    async def start(self) -> int:
        """Register this process and settle what dead processes left; how many calls."""
        identity = self.identity
        assert self.services.store is not None
        await self.services.store.register_process(
            identity.id, host=identity.host, pid=identity.pid, pid_started=identity.pid_started
        )
        settled = await self.settle_dead_calls()
        await self.assemble_left_recordings()
        self._task = asyncio.create_task(self._heartbeat(), name="process-heartbeat")
        return settled

    async def assemble_left_recordings(self) -> int:
        """Assemble the recordings of ended calls whose process died before it had done so.

        A call that ended normally is stored as ended before its ``call.wav`` is written: a
        crash in between leaves part files that no settling sees. Folders of calls in progress,
        and of calls this store does not know, are left alone. Returns how many were assembled.
        """
        services = self.services
        assert services.store is not None
        loop = asyncio.get_running_loop()
        writer = _writer_thread()
        folders = await loop.run_in_executor(
            writer, unassembled_recordings, services.settings.recordings_dir
        )
        assembled = 0
        for folder in folders:
            call = await services.store.get_call(folder.name)
            if call is None or call["status"] == "in_progress":
                continue  # unknown here, or on now (it may be another process's)
            await loop.run_in_executor(writer, assemble_recording, folder, services.recording_files)
            assembled += 1
        if assembled:
            log.warning("assembled %d call recordings a dead process left in parts", assembled)
        return assembled

    async def close(self) -> None:
        """Stop the heartbeat; the store records that this process stopped cleanly."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
            store = self.services.store
            if store is not None:
                await store.process_heartbeat(self.identity.id, stopped=True)

    async def _heartbeat(self) -> None:
        store = self.services.store
        assert store is not None
        last_sweep = time.monotonic()
        while True:
            await asyncio.sleep(HEARTBEAT_SECS)
            try:
                await store.process_heartbeat(self.identity.id)
                if time.monotonic() - last_sweep >= SWEEP_SECS:
                    last_sweep = time.monotonic()
                    await self.settle_dead_calls()
            except asyncio.CancelledError:
                raise
            except Exception:
                self.services.metrics.internal_errors.labels(where="process_heartbeat").inc()
                log.exception("process heartbeat or settling dead calls failed; trying again")

    async def settle_dead_calls(self) -> int:
        """Settle every call whose owner is dead; how many this process settled."""
        store = self.services.store
        assert store is not None
        async with self._lock:
            calls = await store.unsettled_calls(exclude_owner=self.identity.id)
            owners = await store.processes({call["owner"] for call in calls if call["owner"]})
            now = time.time()
            settled = 0
            for call in calls:
                owner = owners.get(call["owner"]) if call["owner"] else None
                if self.identity.sees_alive(owner, now):
                    continue
                try:
                    settled += await self._settle(call, owner)
                except Exception:
                    self.services.metrics.internal_errors.labels(where="settle_call").inc()
                    log.exception(
                        "settling call %s left by a dead process failed", call["call_sid"]
                    )
            self.settled += settled
            return settled

    async def _settle(self, call: dict[str, Any], owner: dict[str, Any] | None) -> bool:
        services = self.services
        store = services.store
        assert store is not None
        call_sid = call["call_sid"]
        # When the dead process was last seen alive: the call ended then at the latest.
        last_seen = owner["heartbeat_at"] if owner is not None else time.time()
        ended_at = call["ended_at"] or max(last_seen, call["started_at"])
        claimed = await store.claim_unsettled_call(
            call_sid, dead_owner=call["owner"], new_owner=self.identity.id, ended_at=ended_at
        )
        if not claimed:
            return False  # another process settles it
        recorded_secs = None
        if call["recording_dir"]:
            recorded_secs = await asyncio.get_running_loop().run_in_executor(
                _writer_thread(),
                assemble_recording,
                Path(call["recording_dir"]),
                services.recording_files,
            )
        stored = await store.get_call(call_sid)
        assert stored is not None
        if recorded_secs is not None and recorded_secs > (stored["duration_secs"] or 0):
            # The recording outlasts the last heartbeat: the call went on at least that long.
            await store.finish_call(
                call_sid,
                status="failed",
                end_reason="server_restart",
                duration_secs=round(recorded_secs, 3),
                stats=stored["stats"],
                ended_at=stored["started_at"] + recorded_secs,
            )
            stored = await store.get_call(call_sid)
            assert stored is not None
        interview = (
            await store.get_interview(call["interview_id"]) if call["interview_id"] else None
        )
        if services.registry is not None:
            services.registry.ended(
                {
                    "call_sid": call_sid,
                    "interview_id": call["interview_id"],
                    "job_id": call["job_id"],
                    "candidate_name": (interview or {}).get("candidate_name") or "",
                    "started_at": stored["started_at"],
                    "ended_at": stored["ended_at"],
                    "duration_secs": stored["duration_secs"],
                    "end_reason": "server_restart",
                    "status": "scoring",
                }
            )
        if interview is not None:
            await self._settle_interview(interview, stored)
        await store.mark_call_settled(call_sid)
        services.metrics.calls_total.labels(reason="server_restart").inc()
        log.warning("call %s left by a dead process settled", call_sid)
        return True

    async def _settle_interview(self, interview: dict[str, Any], call: dict[str, Any]) -> None:
        """The interview's outcome, report and events, as when a call ends (see the module)."""
        services = self.services
        store = services.store
        assert store is not None
        call_sid = call["call_sid"]
        calls = await store.calls_for_interview(interview["id"])
        if any(other["status"] == "in_progress" for other in calls):
            return  # the candidate is on another call now: that call gives the outcome
        if calls and calls[-1]["call_sid"] != call_sid:
            return  # a later call of this interview has given its outcome
        started_ms = int(call["started_at"] * 1000)

        def event_id(kind: str) -> str:
            return derived_event_id(started_ms, f"settle:{call_sid}:{kind}")

        if services.events is not None:
            services.events.emit_with_id(
                event_id("call.ended"),
                "call.ended",
                **interview_refs(interview),
                call_sid=call_sid,
                reason="server_restart",
                duration_secs=call["duration_secs"],
            )
        if interview["status"] in ("in_progress", "scoring"):
            await store.update_interview(interview["id"], status="scoring")
            await services.build_report(
                interview["id"], interview["job_id"], "server_restart", event_ids=event_id
            )
        elif interview["report"] is not None:
            # Settled before up to the report; its events may not have reached the bus: again,
            # with the same ids.
            await services.report_events(
                interview["id"], interview["report"], interview["status"], event_id
            )
        if services.events is not None:
            await services.events.flush()
