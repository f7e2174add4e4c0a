r"""How fresh is what a recruiter sees? Interim words and listen-in delay of one watched call.

Against a running server (loopback): signs in to the monitor, places one simulated Twilio call
with real speech, watches it (``/monitor/ws/calls/{sid}``) and listens in
(``.../audio``) from its start, and reports:

- **partial lag**: from the end of the audio an interim transcript covers to its arrival at the
  watcher (``transcript.partial``: the call clock ``t`` against the arrival wall time);
- **final lag**: from the end of an answer to its final transcript at the watcher;
- **listen-in lag**: from the end of a 100 ms chunk on the call clock to its arrival (the page
  adds its jitter buffer, 250 ms, on top);
- the ASR time the watching cost: ``voicebot_asr_partials_total`` and
  ``voicebot_asr_busy_seconds`` before and after.

    python -m loadtest.monitor_latency --url http://127.0.0.1:8080 --username admin \\
        [--job customer_service_en] [--baseline] [--json out.json]

The password comes from ``VOICEBOT_MONITOR_PASSWORD``; the API token from ``VOICEBOT_API_TOKEN``
(to create the interview) and ``VOICEBOT_TWILIO_AUTH_TOKEN`` when the server checks signatures.
Call-clock times are placed on the wall clock by the call's ``started_at``; the caller streams in
real time from this machine, so the candidate's clock and the server's agree to a few ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from loadtest.caller import percentile, run_call

DEFAULT_ANSWERS = ["en_speaker_a.wav", "en_jfk.wav", "en_speaker_b.wav", "en_speaker_a.wav"]
AUDIO_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "audio"


def _percentiles(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50_ms": round(percentile(values, 50) * 1000),
        "p95_ms": round(percentile(values, 95) * 1000),
        "max_ms": round(max(values) * 1000),
        "mean_ms": round(statistics.fmean(values) * 1000),
    }


async def _metric(http: aiohttp.ClientSession, url: str, name: str) -> float:
    async with http.get(url + "/metrics") as response:
        text = await response.text()
    return sum(
        float(match.group(1))
        for match in re.finditer(rf"^{re.escape(name)}(?:{{[^}}]*}})? ([0-9.e+-]+)$", text, re.M)
    )


async def _interview(http: aiohttp.ClientSession, url: str, api: dict, job: str) -> str:
    async with http.post(
        url + "/api/interviews",
        json={
            "job_id": job,
            "candidate": {"id": "latency-probe", "name": "Latency Probe", "phone": "+15550100"},
        },
        headers=api,
    ) as response:
        if response.status != 201:
            raise SystemExit(f"cannot create the interview: {response.status}")
        return (await response.json())["id"]


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Run the call, watch and listen; return the figures."""
    url = args.url.rstrip("/")
    api = {"Authorization": f"Bearer {os.environ.get('VOICEBOT_API_TOKEN', '')}"}
    async with aiohttp.ClientSession() as http:
        interview_id = await _interview(http, url, api, args.job)
        async with http.post(
            url + "/monitor/login",
            data={"username": args.username, "password": os.environ["VOICEBOT_MONITOR_PASSWORD"]},
            allow_redirects=False,
        ) as response:
            if response.status != 303:
                raise SystemExit(f"monitor sign-in failed: {response.status}")
            cookie = {"Cookie": f"voicebot_monitor={response.cookies['voicebot_monitor'].value}"}
        baseline = None
        if args.baseline:  # the same call unwatched first: what Whisper costs without partials
            busy = await _metric(http, url, "voicebot_asr_busy_seconds")
            unwatched = await run_call(
                url,
                interview_id=await _interview(http, url, api, args.job),
                answers=[Path(args.audio_dir) / name for name in args.answers],
                dtmf={0: "1"},
                twilio_auth_token=os.environ.get("VOICEBOT_TWILIO_AUTH_TOKEN") or None,
                max_call_secs=240,
            )
            await asyncio.sleep(1.0)
            spent = await _metric(http, url, "voicebot_asr_busy_seconds") - busy
            baseline = {"call_error": unwatched.error, "asr_busy_secs": round(spent, 2)}
        partials_before = await _metric(http, url, "voicebot_asr_partials_total")
        busy_before = await _metric(http, url, "voicebot_asr_busy_seconds")
        call_sid = "CAlatency" + os.urandom(6).hex()
        answers = [Path(args.audio_dir) / name for name in args.answers]
        call = asyncio.create_task(
            run_call(
                url,
                interview_id=interview_id,
                call_sid=call_sid,
                answers=answers,
                dtmf={0: "1"},
                twilio_auth_token=os.environ.get("VOICEBOT_TWILIO_AUTH_TOKEN") or None,
                max_call_secs=240,
            )
        )
        watch = listen = None
        for _ in range(200):  # the stream starts a moment after the call is placed
            await asyncio.sleep(0.05)
            try:
                watch = await http.ws_connect(f"{url}/monitor/ws/calls/{call_sid}", headers=cookie)
            except aiohttp.WSServerHandshakeError:
                continue
            first = await watch.receive()
            if first.type == aiohttp.WSMsgType.TEXT:
                snapshot = json.loads(first.data)
                break
            watch = None
        if watch is None:
            raise SystemExit("the call never became live on the monitor")
        started_at = snapshot["data"]["started_at"]
        listen = await http.ws_connect(f"{url}/monitor/ws/calls/{call_sid}/audio", headers=cookie)
        partial_lags: list[float] = []
        final_lags: list[float] = []
        audio_lags: list[float] = []

        async def read_events() -> None:
            async for message in watch:
                arrived = time.time()
                event = json.loads(message.data)
                if event["type"] == "transcript.partial":
                    partial_lags.append(arrived - (started_at + event["t"]))
                elif event["type"] == "transcript.final":
                    final_lags.append(arrived - (started_at + event["data"]["end"]))
                elif event["type"] == "call.ended":
                    return

        async def read_audio() -> None:
            async for message in listen:
                if message.type != aiohttp.WSMsgType.BINARY:
                    continue
                chunk_end = int.from_bytes(message.data[4:8], "big") / 1000 + 0.1
                audio_lags.append(time.time() - (started_at + chunk_end))

        audio_task = asyncio.create_task(read_audio())
        await read_events()
        result = await call
        await listen.close()
        await audio_task
        await asyncio.sleep(0.5)
        partials_after = await _metric(http, url, "voicebot_asr_partials_total")
        busy_after = await _metric(http, url, "voicebot_asr_busy_seconds")
    return {
        "call_sid": call_sid,
        "call_error": result.error,
        "call_secs": round(result.duration_secs, 1),
        "partial_lag": _percentiles(partial_lags),
        "final_lag": _percentiles(final_lags),
        "listen_in_lag": _percentiles(audio_lags),
        "partials_counted": partials_after - partials_before,
        "asr_busy_secs": round(busy_after - busy_before, 2),
        "unwatched_baseline": baseline,
    }


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--username", required=True)
    parser.add_argument("--job", default="customer_service_en")
    parser.add_argument("--audio-dir", default=str(AUDIO_DIR))
    parser.add_argument("--answers", nargs="*", default=DEFAULT_ANSWERS)
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument(
        "--baseline", action="store_true", help="first run the same call unwatched (ASR cost)"
    )
    args = parser.parse_args(argv)
    figures = asyncio.run(measure(args))
    text = json.dumps(figures, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0 if figures["call_error"] is None else 1


if __name__ == "__main__":
    sys.exit(main())
