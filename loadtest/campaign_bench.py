"""An outbound campaign against a real server: ``python -m loadtest.campaign_bench``.

Starts the carrier simulator (:mod:`loadtest.carrier_sim`) and a real ``voicebot serve`` process
whose ``VOICEBOT_TWILIO_API_URL`` points at it, creates a campaign of ``--candidates`` (default
60) over the REST API whose numbers get mixed scenarios (:func:`carrier_sim.mixed_scenarios`:
people who answer and hold a short interview with recorded speech, no answer, busy, failed,
voicemail), and waits until every candidate's attempt has ended. Then it reports what the
simulated carrier saw (:meth:`CarrierSimulator.report`): calls held up at once, dials per minute,
the interviews' voice-to-voice p50/p95 while the dialer dialed (the 900 ms p95 budget), plus the
server's dialer counters (held back for ASR backlog or loop lag, carrier errors). With
``--claim-interviews N`` it also runs :mod:`loadtest.claim_bench` with N queued interviews.

One attempt per candidate (``max_attempts`` 1): the retry schedule is tested elsewhere; this
measures the dialer's pace and what it does to live calls.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from loadtest.caller import percentile
from loadtest.carrier_sim import (
    SHARED_AUDIO,
    CarrierSimulator,
    Scenario,
    SimulatorReport,
    mixed_scenarios,
)
from loadtest.harness import free_port

ROOT = Path(__file__).resolve().parent.parent
API_TOKEN = "campaign-bench-token"
AUTH_TOKEN = "campaign-bench-twilio-token"
CALLER_ID = "+14155550100"
BUDGET_P95_SECS = 0.9
ANSWERS = (
    "en_jfk.wav",
    "en_librispeech_1995-1837-0001.wav",
    "en_speaker_a.wav",
    "en_speaker_b.wav",
)
DIALER_COUNTERS = {
    "held_asr_backlog": ("voicebot_dialer_held_back_total", 'reason="asr_backlog"'),
    "held_loop_lag": ("voicebot_dialer_held_back_total", 'reason="loop_lag"'),
    "carrier_errors": ("voicebot_dialer_carrier_errors_total", None),
}


def mix(audio_dir: Path = SHARED_AUDIO) -> list[tuple[Scenario, float]]:
    """The campaign's outcomes: half answer, a fifth ring out, the rest busy/failed/voicemail."""
    answering = Scenario(
        "answer", answers=[audio_dir / n for n in ANSWERS], dtmf={0: "1"}, max_call_secs=240
    )
    return [
        (answering, 0.5),
        (Scenario("no_answer"), 0.2),
        (Scenario("busy"), 0.1),
        (Scenario("failed"), 0.05),
        (Scenario("voicemail", amd_secs=0.3, max_call_secs=60), 0.15),
    ]


def summarize(
    report: SimulatorReport,
    counters: dict[str, float],
    wall_secs: float,
    candidates: int,
    settled: int,
) -> dict[str, Any]:
    """The figures of one run: the carrier's view, the server's counters, the budget check."""
    p50 = percentile(report.voice_to_voice, 50)
    p95 = percentile(report.voice_to_voice, 95)
    return {
        "candidates": candidates,
        "settled": settled,
        "calls_placed": report.calls,
        "outcomes": dict(sorted(report.outcomes.items())),
        "answered_by": dict(sorted(report.answered_by.items())),
        "max_calls_at_once": report.max_concurrent_calls,
        "max_up_at_once": report.max_concurrent_up,
        "dials_per_minute": None
        if report.dials_per_minute is None
        else round(report.dials_per_minute, 1),
        "answers_timed": len(report.voice_to_voice),
        "voice_to_voice_p50_ms": None if p50 is None else round(p50 * 1000),
        "voice_to_voice_p95_ms": None if p95 is None else round(p95 * 1000),
        "within_budget": p95 is not None and p95 <= BUDGET_P95_SECS,
        "placed_twice": max(0, report.calls - candidates),
        "api_errors": {str(k): v for k, v in report.api_errors.items()},
        "callbacks_unanswered": report.callbacks_unanswered,
        "wall_secs": round(wall_secs, 1),
        "dialer": {name: counters.get(name, 0.0) for name in DIALER_COUNTERS},
    }


def dialer_counters(metrics_text: str) -> dict[str, float]:
    """The dialer's counters (summed over labels unless filtered) from ``/metrics`` text."""
    out: dict[str, float] = {}
    for name, (metric, label) in DIALER_COUNTERS.items():
        total = 0.0
        for line in metrics_text.splitlines():
            if not line.startswith(metric) or line.startswith("#"):
                continue
            head, _, value = line.rpartition(" ")
            if head.split("{")[0] not in (metric, metric + "_total"):
                continue
            if label is None or label in head:
                total += float(value)
        out[name] = total
    return out


def markdown(result: dict[str, Any]) -> str:
    """The table for docs/PERFORMANCE.md."""
    rows = [
        ("candidates (settled)", f"{result['candidates']} ({result['settled']})"),
        ("calls placed (placed twice)", f"{result['calls_placed']} ({result['placed_twice']})"),
        ("outcomes at the carrier", ", ".join(f"{k} {v}" for k, v in result["outcomes"].items())),
        ("calls held at once (ringing or up)", str(result["max_calls_at_once"])),
        ("calls up at once", str(result["max_up_at_once"])),
        ("dials per minute", str(result["dials_per_minute"])),
        (
            "voice-to-voice p50 / p95",
            f"{result['voice_to_voice_p50_ms']} / {result['voice_to_voice_p95_ms']} ms"
            f" ({result['answers_timed']} answers)",
        ),
        ("within the 900 ms p95 budget", "yes" if result["within_budget"] else "no"),
        (
            "dialer held back (ASR backlog / loop lag)",
            f"{result['dialer']['held_asr_backlog']:g} / {result['dialer']['held_loop_lag']:g}",
        ),
        ("wall time", f"{result['wall_secs']} s"),
    ]
    lines = ["| measure | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines)


def _request(base: str, method: str, path: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("Authorization", f"Bearer {API_TOKEN}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=60) as response:
        raw = response.read()
    return json.loads(raw) if raw.startswith((b"{", b"[")) else raw.decode()


def _spawn(work: Path, sim: CarrierSimulator, extra_env: dict[str, str]) -> tuple[Any, str]:
    port = free_port()
    env = {
        **os.environ,
        "VOICEBOT_HOST": "127.0.0.1",
        "VOICEBOT_PORT": str(port),
        "VOICEBOT_DATA_DIR": str(work / "data"),
        "VOICEBOT_RECORDINGS_DIR": str(work / "recordings"),
        "VOICEBOT_API_TOKEN": API_TOKEN,
        "VOICEBOT_PUBLIC_URL": "",
        "VOICEBOT_LOG_LEVEL": "WARNING",
        "VOICEBOT_TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "VOICEBOT_TWILIO_ACCOUNT_SID": sim.account_sid,
        "VOICEBOT_TWILIO_CALLER_ID": CALLER_ID,
        "VOICEBOT_TWILIO_API_URL": sim.api_url,
        "VOICEBOT_PROMPT_CACHE_DIR": str(ROOT / ".cache" / "test-prompts"),
        **extra_env,
    }
    log = (work / "server.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "voicebot.cli", "serve"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 240
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: see {work / 'server.log'}")
        try:
            urllib.request.urlopen(base + "/healthz", timeout=2)
            return process, base
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                raise RuntimeError("server not healthy after 240 s") from None
            time.sleep(0.5)


def _daytime_zone() -> str:
    offset = (14 - time.gmtime().tm_hour + 10) % 24 - 10
    return "Etc/GMT" + (f"{-offset:+d}" if offset else "")


async def run(candidates: int, max_concurrent: int, wait_secs: float, work: Path) -> dict[str, Any]:
    """One campaign through a real server; returns :func:`summarize`'s figures."""
    numbers = [f"+1555030{n:04d}" for n in range(candidates)]
    sim = CarrierSimulator(auth_token=AUTH_TOKEN, scenarios=mixed_scenarios(numbers, mix()))
    await sim.start()
    process, base = await asyncio.to_thread(
        _spawn, work, sim, {"VOICEBOT_DIALER_RING_TIMEOUT_SECS": "15"}
    )
    try:
        campaign = await asyncio.to_thread(
            _request,
            base,
            "POST",
            "/api/campaigns",
            {
                "job_id": "customer_service_en",
                "max_attempts": 1,
                "max_concurrent": max_concurrent,
                "timezone": _daytime_zone(),
            },
        )
        rows = [
            {"id": f"bench-{n}", "name": f"Bench {n}", "phone": number}
            for n, number in enumerate(numbers)
        ]
        started = time.monotonic()
        await asyncio.to_thread(
            _request, base, "POST", f"/api/campaigns/{campaign['id']}/interviews", rows
        )
        settled = 0
        while time.monotonic() - started < wait_secs:
            await asyncio.sleep(2)
            shown = await asyncio.to_thread(
                _request, base, "GET", f"/api/campaigns/{campaign['id']}"
            )
            outcomes = shown.get("attempts_by_outcome") or {}
            settled = sum(outcomes.values())
            if settled >= candidates and shown.get("calls_up", 0) == 0:
                break
        wall = time.monotonic() - started
        await asyncio.wait_for(sim.wait_idle(), 60)
        metrics = await asyncio.to_thread(_request, base, "GET", "/metrics")
        counters = dialer_counters(metrics if isinstance(metrics, str) else "")
        return summarize(sim.report(), counters, wall, candidates, settled)
    finally:
        process.terminate()
        await asyncio.to_thread(process.wait, 60)
        await sim.stop()


def main(argv: list[str] | None = None) -> int:
    """Command line: print the figures as JSON and the table as markdown."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=60)
    parser.add_argument("--max-concurrent", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--claim-interviews", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        result = asyncio.run(run(args.candidates, args.max_concurrent, args.timeout, Path(folder)))
    if args.claim_interviews:
        from loadtest import claim_bench

        result["claim"] = asyncio.run(claim_bench.run(args.claim_interviews, 20, 20))
    text = json.dumps(result, indent=2)
    print(text)
    print(markdown(result))
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
