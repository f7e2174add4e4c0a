"""Core call-path benchmark: voice-to-voice latency, end-of-speech -> final transcript, server RSS.

Starts its own ``voicebot serve`` on a free loopback port (so it can read the server's memory),
then for each concurrency level places that many simultaneous interview calls with the caller in
``loadtest/caller.py`` (consent by key press, four answers from the human speech in
``../shared/audio`` at real-time pace through 8 kHz mu-law). Prints a Markdown table and writes
JSON to ``loadtest/results/``. A measurement, not a test: nothing here asserts a number.

    python -m loadtest.core_benchmark --calls 1 --calls 5 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from loadtest.caller import percentile, run_call

ROOT = Path(__file__).resolve().parent.parent
AUDIO = ROOT.parent / "shared" / "audio"
CLIPS = ["en_jfk.wav", "en_librispeech_1995-1837-0001.wav", "en_speaker_a.wav", "en_speaker_b.wav"]
TOKEN = "benchmark-token"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _cpu_secs(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _request(url: str, method: str = "GET", body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as response:
        return json.loads(response.read())


async def _level(base: str, pid: int, calls: int, rounds: int, audio: Path) -> dict[str, Any]:
    answers = [audio / clip for clip in CLIPS]
    v2v: list[float] = []
    eos_to_final: list[float] = []
    server_response: list[float] = []
    asr: list[float] = []
    rss: list[float] = []
    failed = 0
    late_gaps = 0
    stop = asyncio.Event()

    async def sample() -> None:
        while not stop.is_set():
            rss.append(_rss_mb(pid))
            await asyncio.sleep(0.5)

    sampler = asyncio.create_task(sample())
    cpu_before, wall_before = _cpu_secs(pid), time.monotonic()
    for _ in range(rounds):
        interviews = [
            _request(
                f"{base}/api/interviews",
                "POST",
                {"job_id": "customer_service_en", "candidate": {"id": f"bench-{i}"}},
            )["id"]
            for i in range(calls)
        ]

        async def one(index: int, interview_id: str):
            await asyncio.sleep(index * 0.7)  # ramp up
            return await run_call(
                base, interview_id=interview_id, answers=answers, dtmf={0: "1"}, max_call_secs=240
            )

        results = await asyncio.gather(*(one(i, iv) for i, iv in enumerate(interviews)))
        for result in results:
            if result.error or result.closed_by != "server":
                failed += 1
            v2v.extend(result.voice_to_voice)
            late_gaps += result.late_frame_gaps
            call = _request(f"{base}/api/calls/{result.call_sid}")
            for turn in call["turns"]:
                if turn["speaker"] == "candidate" and turn["end_of_speech_to_final"] is not None:
                    eos_to_final.append(turn["end_of_speech_to_final"])
                    asr.append(turn["asr_latency"])
                if turn["speaker"] == "bot" and turn["response_latency"] is not None:
                    server_response.append(turn["response_latency"])
    cpu = (_cpu_secs(pid) - cpu_before) / (time.monotonic() - wall_before)
    stop.set()
    await sampler

    def stats(values: list[float]) -> dict[str, float | None]:
        return {
            "n": len(values),
            "p50": percentile(values, 50),
            "p95": percentile(values, 95),
            "mean": statistics.fmean(values) if values else None,
        }

    return {
        "calls": calls,
        "rounds": rounds,
        "failed_calls": failed,
        "late_frame_gaps": late_gaps,
        "voice_to_voice": stats(v2v),
        "server_response": stats(server_response),
        "end_of_speech_to_final": stats(eos_to_final),
        "asr_latency": stats(asr),
        "rss_mb_peak": max(rss, default=0.0),
        "cpu_cores_mean": cpu,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print a Markdown table."""
    parser = argparse.ArgumentParser(prog="python -m loadtest.core_benchmark")
    parser.add_argument("--calls", type=int, action="append", help="concurrency level; repeat")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of calls per level")
    parser.add_argument("--audio", type=Path, default=AUDIO, help="folder of the speech clips")
    parser.add_argument("--out", type=Path, default=ROOT / "loadtest" / "results")
    args = parser.parse_args(argv)
    levels = args.calls or [1, 5]
    port = _free_port()
    work = Path(tempfile.mkdtemp(prefix="voicebot-bench-"))
    env = {
        **os.environ,
        "VOICEBOT_PORT": str(port),
        "VOICEBOT_API_TOKEN": TOKEN,
        "VOICEBOT_DATA_DIR": str(work / "data"),
        "VOICEBOT_RECORDINGS_DIR": str(work / "recordings"),
        "VOICEBOT_LOG_LEVEL": "WARNING",
    }
    env.pop("VOICEBOT_TWILIO_AUTH_TOKEN", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "voicebot.cli", "serve"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(work / "server.log", "w"),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(base + "/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.3)
        idle_rss = _rss_mb(server.pid)
        report = {"machine": {"cores": os.cpu_count()}, "idle_rss_mb": idle_rss, "levels": []}
        for calls in levels:
            print(f"-- {calls} concurrent call(s) x {args.rounds} round(s) ...", flush=True)
            report["levels"].append(
                asyncio.run(_level(base, server.pid, calls, args.rounds, args.audio))
            )
    finally:
        server.terminate()
        server.wait(timeout=30)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"core-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2))

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value * 1000:.0f}"

    print(f"\nserver idle RSS {idle_rss:.0f} MB; results in {path}\n")
    print(
        "| calls | answers | v2v p50 ms | v2v p95 ms | server resp p50/p95 ms | "
        "EoS->final p50/p95 ms | ASR p50 ms | failed | late gaps | CPU cores | peak RSS MB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for level in report["levels"]:
        v, r, e, a = (
            level["voice_to_voice"],
            level["server_response"],
            level["end_of_speech_to_final"],
            level["asr_latency"],
        )
        print(
            f"| {level['calls']} | {v['n']} | {ms(v['p50'])} | {ms(v['p95'])} | "
            f"{ms(r['p50'])}/{ms(r['p95'])} | {ms(e['p50'])}/{ms(e['p95'])} | {ms(a['p50'])} | "
            f"{level['failed_calls']} | {level['late_frame_gaps']} | "
            f"{level['cpu_cores_mean']:.2f} | {level['rss_mb_peak']:.0f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
