"""Load harness: many concurrent simulated Twilio carriers holding whole interviews.

Each simulated carrier is ``loadtest.caller.run_call``: the Twilio voice webhook, a Media Stream
over a real loopback socket, 20 ms 8 kHz mu-law frames paced by the clock, answers from the human
speech in ``../shared/audio``. Callers start ramped over ``ramp_secs`` and each holds interviews
back to back until ``duration_secs`` have passed (at least one whole interview each).

Measured per call and in total: voice-to-voice latency (last voiced answer sample -> first
non-silent bot frame) p50/p95/p99; end of speech -> final transcript (from the server's stored
turns, for voicebot); playout health (inter-arrival gaps between bot frames, gaps over 60 ms);
failed calls; the bot talking over answers; server CPU and RSS over time. Output: JSON, a Markdown
summary and a PNG plot. ``--search`` finds the largest number of calls at which p95
voice-to-voice <= 900 ms with no late frames and no failed calls. ``--target both`` also drives a
peer built the way pipecat's Twilio example builds one (``loadtest/peers/pipecat_bot.py``) in the
same session and reports ours/pipecat ratios. ``--mix en=10,zh=10`` holds calls in several
languages at once (each language's job, its callers answering with its own clips: the Mandarin
clips of ``../shared/audio`` for ``zh``) and reports voice-to-voice per language beside the total.

    voicebot loadtest --calls 10                       # one level
    voicebot loadtest --search --levels 5,10,20,30,40  # capacity search
    voicebot loadtest --mix en=10,zh=10 --duration 120 # 10 English beside 10 Chinese calls
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadtest.caller import GAP_BUCKETS_MS, CallResult, load_answers, percentile, run_call

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_AUDIO = ROOT.parent / "shared" / "audio"
DEFAULT_CLIPS = (
    "en_jfk.wav",
    "en_librispeech_1995-1837-0001.wav",
    "en_speaker_a.wav",
    "en_speaker_b.wav",
)
DEFAULT_ZH_CLIPS = (
    "zh_aishell_BAC009S0724W0121.wav",
    "zh_news_mid.wav",
    "zh_news_long.wav",
    "zh_aishell_BAC009S0724W0121.wav",
)
"""The Chinese callers' answers: the Mandarin speech in ``../shared/audio`` (4 to 8 s each)."""
LANGUAGE_CALLERS = {
    "en": ("customer_service_en", DEFAULT_CLIPS),
    "zh": ("customer_service_zh", DEFAULT_ZH_CLIPS),
}
"""Language of a ``--mix`` -> the job its callers are interviewed for and their answer clips."""
P95_BUDGET_SECS = 0.9
"""The latency budget a level must meet in the capacity search (ARCHITECTURE.md)."""
API_TOKEN = "loadtest-token"


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class CallerGroup:
    """Callers of one kind in a level: how many, the job they are interviewed for, their answers.

    ``language`` is None for the single group of a level without ``--mix``.
    """

    language: str | None
    calls: int
    job_id: str
    answers: tuple[Path, ...]


def parse_mix(text: str, audio_dir: Path = DEFAULT_AUDIO) -> list[CallerGroup]:
    """``"en=10,zh=10"`` -> one :class:`CallerGroup` a language (:data:`LANGUAGE_CALLERS`).

    Raises ValueError saying what is wrong and what would do.
    """
    groups: list[CallerGroup] = []
    known = ", ".join(LANGUAGE_CALLERS)
    for item in (part.strip() for part in text.split(",")):
        language, equals, count = item.partition("=")
        language = language.strip().lower()
        if not equals or not language:
            raise ValueError(f"--mix item {item!r} is not LANGUAGE=CALLS (e.g. en=10,zh=10)")
        if language not in LANGUAGE_CALLERS:
            raise ValueError(f"--mix language {language!r} is not one of {known}")
        if any(group.language == language for group in groups):
            raise ValueError(f"--mix names {language!r} twice")
        try:
            calls = int(count)
        except ValueError:
            raise ValueError(
                f"--mix {language}={count.strip()!r}: the number of calls must be a whole number"
            ) from None
        if calls < 1:
            raise ValueError(f"--mix {language}={calls}: the number of calls must be at least 1")
        job_id, clips = LANGUAGE_CALLERS[language]
        groups.append(
            CallerGroup(language, calls, job_id, tuple(audio_dir / clip for clip in clips))
        )
    return groups


def interleave(groups: Sequence[CallerGroup]) -> list[CallerGroup]:
    """Each caller's group, the groups taken in turn (en, zh, en, zh, ...): the ramp mixes them."""
    order: list[CallerGroup] = []
    left = {id(group): group.calls for group in groups}
    while any(left.values()):
        for group in groups:
            if left[id(group)]:
                order.append(group)
                left[id(group)] -= 1
    return order


# ------------------------------------------------------------------------------ targets


@dataclass
class Target:
    """A server under test: ours (``voicebot``) or the pipecat peer (``pipecat``)."""

    name: str
    base_url: str
    pid: int | None = None
    api_token: str | None = None
    job_id: str = "customer_service_en"
    twilio_auth_token: str | None = None
    process: subprocess.Popen | None = None
    log_path: Path | None = None

    @classmethod
    def spawn(cls, name: str, work: Path, env_overrides: dict[str, str] | None = None) -> Target:
        """Start a server process on a free loopback port and wait until it answers."""
        port = free_port()
        log_path = work / f"{name}-server.log"
        env = {**os.environ, **(env_overrides or {})}
        if name == "voicebot":
            env.update(
                {
                    "VOICEBOT_HOST": "127.0.0.1",
                    "VOICEBOT_PORT": str(port),
                    "VOICEBOT_API_TOKEN": API_TOKEN,
                    "VOICEBOT_DATA_DIR": str(work / "data"),
                    "VOICEBOT_RECORDINGS_DIR": str(work / "recordings"),
                    "VOICEBOT_LOG_LEVEL": env.get("VOICEBOT_LOG_LEVEL", "WARNING"),
                }
            )
            env.pop("VOICEBOT_TWILIO_AUTH_TOKEN", None)
            # Chinese jobs are measured with whatever voice this machine has, espeak-ng too.
            env.setdefault("VOICEBOT_ALLOW_ESPEAK_VOICE", "zh")
            command = [sys.executable, "-m", "voicebot.cli", "serve"]
        elif name == "pipecat":
            command = [
                sys.executable,
                "-m",
                "loadtest.peers.pipecat_bot",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ]
        else:
            raise ValueError(f"unknown target {name!r}: use voicebot or pipecat")
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log_path.open("w")
        )
        target = cls(
            name=name,
            base_url=f"http://127.0.0.1:{port}",
            pid=process.pid,
            api_token=API_TOKEN if name == "voicebot" else None,
            process=process,
            log_path=log_path,
        )
        target.wait_ready(timeout=240)
        return target

    def wait_ready(self, timeout: float) -> None:
        """Wait until the server accepts HTTP (voicebot: ``/healthz`` is 200)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                tail = self.log_path.read_text()[-3000:] if self.log_path else ""
                raise RuntimeError(f"{self.name} server exited during start-up:\n{tail}")
            try:
                if self.name == "voicebot":
                    urllib.request.urlopen(self.base_url + "/healthz", timeout=2)
                else:
                    host, port = self.base_url.rsplit("//", 1)[1].split(":")
                    socket.create_connection((host, int(port)), timeout=1).close()
                return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"{self.name} server not ready after {timeout} s")

    def stop(self) -> None:
        """Stop a spawned server."""
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                print(
                    f"{self.name} server did not exit within 30 s of SIGTERM: killed"
                    f" (its log: {self.log_path})",
                    file=sys.stderr,
                )
                self.process.kill()

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """Call voicebot's REST API."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.base_url + path,
            data=data,
            method=method,
            headers={
                "Authorization": f"Bearer {self.api_token}",
                "Content-Type": "application/json",
            },
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def server_counters(self) -> dict[str, float]:
        """Voicebot's work counters from ``/metrics`` (empty for the peer or on error)."""
        if self.name != "voicebot":
            return {}
        try:
            with urllib.request.urlopen(self.base_url + "/metrics", timeout=10) as response:
                text = response.read().decode()
        except OSError:
            return {}
        return parse_counters(text)


SERVER_COUNTERS = {
    "asr_runs": ("voicebot_asr_transcriptions", None),
    "asr_busy_secs": ("voicebot_asr_busy_seconds", None),
    "asr_decodes": ("voicebot_asr_decodes", None),
    "speculations_kept": ("voicebot_asr_speculations_total", 'outcome="kept"'),
    "speculations_discarded": ("voicebot_asr_speculations_total", 'outcome="discarded"'),
    "smart_turn_runs": ("voicebot_smart_turn_total", 'outcome="run"'),
    "smart_turn_skipped": ("voicebot_smart_turn_total", 'outcome="skipped"'),
    "smart_turn_early": ("voicebot_smart_turn_total", 'outcome="early"'),
    "smart_turn_early_unused": ("voicebot_smart_turn_total", 'outcome="early_unused"'),
    "late_frames": ("voicebot_playout_late_frames_total", None),
    "inbound_gaps": ("voicebot_inbound_gaps_total", None),
    "loop_ticks": ("voicebot_event_loop_lag_seconds_count", None),
    "loop_ticks_on_time": ("voicebot_event_loop_lag_seconds_bucket", 'le="0.02"'),
}
"""What the server spent per level: report name -> (metric, label filter)."""


def parse_counters(text: str) -> dict[str, float]:
    """Pick :data:`SERVER_COUNTERS` out of a Prometheus text exposition (missing: 0)."""
    found = dict.fromkeys(SERVER_COUNTERS, 0.0)
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        name, _, labels = series.partition("{")
        for key, (metric, wanted) in SERVER_COUNTERS.items():
            if name == metric and (wanted is None or wanted in labels):
                found[key] += float(value)
    return found


def server_work(before: dict[str, float], after: dict[str, float], answers: int) -> dict:
    """Counter deltas over a level, and per answer where that reads better."""
    if not before or not after:
        return {}
    work = {key: round(after[key] - before[key], 3) for key in SERVER_COUNTERS}
    work["loop_stalls"] = work.pop("loop_ticks") - work.pop("loop_ticks_on_time")
    if answers:
        work["asr_runs_per_answer"] = round(work["asr_runs"] / answers, 2)
        work["asr_secs_per_answer"] = round(work["asr_busy_secs"] / answers, 3)
        inferences = (
            work["smart_turn_runs"] + work["smart_turn_early"] + work["smart_turn_early_unused"]
        )
        work["smart_turn_runs_per_answer"] = round(inferences / answers, 2)
    if work["asr_decodes"]:
        work["asr_batch_mean"] = round(work["asr_runs"] / work["asr_decodes"], 2)
    return work


# ------------------------------------------------------------------------------ sampling


def _process_tree(pid: int) -> list[int]:
    """A process and its descendants.

    Children of any of its threads count: the Whisper workers are started from a worker thread.
    """
    pids, frontier = [pid], [pid]
    while frontier:
        parent = frontier.pop()
        children: list[int] = []
        try:
            tasks = list(Path(f"/proc/{parent}/task").iterdir())
        except OSError:
            tasks = []
        for task in tasks:
            try:
                children.extend(int(c) for c in (task / "children").read_text().split())
            except OSError:
                continue
        pids.extend(children)
        frontier.extend(children)
    return pids


def _cpu_and_rss(pid: int) -> tuple[float, float]:
    """CPU seconds used and RSS in MB of a process and its children."""
    cpu = rss = 0.0
    for member in _process_tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            rss += int(fields[21]) * os.sysconf("SC_PAGE_SIZE") / 2**20
        except (OSError, IndexError, ValueError):
            continue
    return cpu, rss


@dataclass
class ResourceSampler:
    """Samples a server's CPU (cores) and RSS (MB) once a second."""

    pid: int | None
    series: list[dict[str, float]] = field(default_factory=list)

    async def run(self, stop: asyncio.Event) -> None:
        """Sample until ``stop`` is set."""
        if self.pid is None:
            return
        start = time.monotonic()
        last_cpu, last_t = _cpu_and_rss(self.pid)[0], start
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except TimeoutError:
                pass
            now = time.monotonic()
            cpu, rss = _cpu_and_rss(self.pid)
            self.series.append(
                {
                    "t": round(now - start, 2),
                    "cpu_cores": round((cpu - last_cpu) / max(now - last_t, 1e-6), 3),
                    "rss_mb": round(rss, 1),
                }
            )
            last_cpu, last_t = cpu, now


# ------------------------------------------------------------------------------ one level


def _stats(values: list[float]) -> dict[str, float | int | None]:
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "max": max(values) if values else None,
    }


SERVER_RECORD_WAIT_SECS = 60.0
"""How long to wait for the server to store every answer of a finished call."""


def _server_call(target: Target, result: CallResult) -> dict[str, Any] | None:
    """The server's record of a call once it holds the call's end and every answer's words."""
    if not target.api_token or not result.call_sid:
        return None
    deadline = time.monotonic() + SERVER_RECORD_WAIT_SECS
    record = None
    while True:
        try:
            record = target.api("GET", f"/api/calls/{result.call_sid}")
        except OSError:
            return record
        answers = [t for t in record.get("turns", []) if t["speaker"] == "candidate"]
        complete = record.get("end_reason") is not None and len(answers) >= len(
            result.voice_to_voice
        )
        if complete or time.monotonic() > deadline:
            return record
        time.sleep(0.5)


def _call_failed(result: CallResult, server_call: dict[str, Any] | None) -> str | None:
    if result.error:
        return result.error
    if result.closed_by != "server":
        return f"closed by {result.closed_by}"
    if server_call is not None and server_call.get("end_reason") != "completed":
        return f"ended {server_call.get('end_reason')}"
    return None


def cpu_times() -> tuple[int, int] | None:
    """The machine's (steal, total) CPU time in clock ticks, from ``/proc/stat``; None if absent.

    Steal is time the hypervisor gave this virtual machine's CPUs to someone else: on a shared
    host it stalls the server and the callers alike, whatever the code does.
    """
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()
    except OSError:
        return None
    if len(fields) < 9 or fields[0] != "cpu":
        return None
    values = [int(v) for v in fields[1:9]]  # user nice system idle iowait irq softirq steal
    return values[7], sum(values)


def steal_percent(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """Share of the machine's CPU time stolen between two :func:`cpu_times` readings."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return round(100 * (after[0] - before[0]) / (after[1] - before[1]), 1)


def cpu_probe_ms(rounds: int = 15) -> float | None:
    """How fast this machine is right now: one smart-turn inference (one thread), median ms.

    Taken before each level, with the server idle. On a shared machine the same code ran at
    64 ms and at 90-114 ms an hour apart, which moves every latency under load; levels are
    only comparable at a similar probe. ``None`` when the model cannot be loaded here.
    """
    try:
        import numpy as np

        from voicebot.speech.turn import SmartTurnModel

        model = SmartTurnModel.shared()
    except Exception:  # the harness also drives a remote server from a bare checkout
        return None
    audio = np.random.default_rng(0).normal(0.0, 0.05, 8 * 16000).astype(np.float32)
    model.predict(audio)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        model.predict(audio)
        times.append(time.perf_counter() - start)
    return round(statistics.median(times) * 1000, 1)


async def run_level(
    target: Target,
    calls: int,
    *,
    duration_secs: float = 0.0,
    ramp_secs: float | None = None,
    answers: list[Path],
    progress: bool = True,
    mix: Sequence[CallerGroup] | None = None,
) -> dict[str, Any]:
    """Hold ``calls`` concurrent interviews against ``target``; return the level's report.

    With ``mix`` the callers are its groups' (``calls`` is then their sum) and the level also
    reports each language's figures under ``by_language``.
    """
    groups = list(mix) if mix else [CallerGroup(None, calls, target.job_id, tuple(answers))]
    calls = sum(group.calls for group in groups)
    of_caller = interleave(groups)
    loaded = {id(group): load_answers(group.answers) for group in groups}
    probe = cpu_probe_ms()
    ramp = ramp_secs if ramp_secs is not None else min(0.5 * calls, 20.0)
    started = time.monotonic()
    caller_cpu_start = time.process_time()  # this process: the callers, on the server's cores
    per_call: list[dict[str, Any]] = []
    live = 0
    v2v_all: list[float] = []
    finished: list[tuple[int, CallResult]] = []

    def count_answer(kind: str, data: dict[str, Any]) -> None:
        turn = data.get("turn")
        if kind == "turn" and turn.speaker == "candidate" and turn.voice_to_voice_secs is not None:
            v2v_all.append(turn.voice_to_voice_secs)

    async def caller(index: int) -> None:
        nonlocal live
        group = of_caller[index]
        await asyncio.sleep(ramp * index / max(calls, 1))
        while True:
            interview_id = None
            if target.api_token:
                interview_id = (
                    await asyncio.to_thread(
                        target.api,
                        "POST",
                        "/api/interviews",
                        {"job_id": group.job_id, "candidate": {"id": f"load-{index}"}},
                    )
                )["id"]
            live += 1
            try:
                result = await run_call(
                    target.base_url,
                    answers=loaded[id(group)],
                    dtmf={0: "1"},
                    interview_id=interview_id,
                    max_call_secs=300,
                    twilio_auth_token=target.twilio_auth_token,
                    on_event=count_answer,
                )
            finally:
                live -= 1
            finished.append((index, result))
            if time.monotonic() - started >= duration_secs:
                return

    async def report_progress(stop: asyncio.Event) -> None:
        interactive = sys.stderr.isatty()
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), 1.0 if interactive else 10.0)
            except TimeoutError:
                pass
            sample = sampler.series[-1] if sampler.series else {}
            line = (
                f"\r[{target.name}] {calls} calls: {live} live, {len(finished)} done, "
                f"{len(v2v_all)} answers, v2v p50 {_ms(percentile(v2v_all, 50))} "
                f"p95 {_ms(percentile(v2v_all, 95))} ms, "
                f"cpu {sample.get('cpu_cores', 0):.2f} cores, "
                f"rss {sample.get('rss_mb', 0):.0f} MB, {time.monotonic() - started:.0f} s "
            )
            print(
                line if interactive else line.strip(),
                end="" if interactive else "\n",
                file=sys.stderr,
                flush=True,
            )
        if interactive:
            print(file=sys.stderr)

    counters_before = await asyncio.to_thread(target.server_counters)
    times_before = cpu_times()
    sampler = ResourceSampler(target.pid)
    stop = asyncio.Event()
    background = [asyncio.create_task(sampler.run(stop))]
    if progress:
        background.append(asyncio.create_task(report_progress(stop)))
    try:
        await asyncio.gather(*(caller(i) for i in range(calls)))
    finally:
        stop.set()
        await asyncio.gather(*background)
    stolen = steal_percent(times_before, cpu_times())

    # The server's side of each call, once it is complete: an answer's words can be stored
    # after the call ended (the goodbye played while Whisper was behind).
    server_calls = await asyncio.gather(
        *(asyncio.to_thread(_server_call, target, result) for _index, result in finished)
    )
    for (index, result), server_call in zip(finished, server_calls, strict=True):
        eos = [
            t["end_of_speech_to_final"]
            for t in (server_call or {}).get("turns", [])
            if t["speaker"] == "candidate" and t["end_of_speech_to_final"] is not None
        ]
        per_call.append(
            {
                "caller": index,
                "language": of_caller[index].language,
                "job_id": of_caller[index].job_id,
                "call_sid": result.call_sid,
                "duration_secs": round(result.duration_secs, 2),
                "voice_to_voice": [round(v, 4) for v in result.voice_to_voice],
                "end_of_speech_to_final": eos,
                "late_frame_gaps": result.late_frame_gaps,
                "frame_gaps": result.frame_gaps,
                "talked_over": result.talked_over,
                "failure": _call_failed(result, server_call),
            }
        )
    counters_after = await asyncio.to_thread(target.server_counters)
    gaps: Counter[str] = Counter()
    for call in per_call:
        gaps.update(call["frame_gaps"])
    failures = [c for c in per_call if c["failure"]]
    cpu = [s["cpu_cores"] for s in sampler.series]
    rss = [s["rss_mb"] for s in sampler.series]
    wall = time.monotonic() - started
    level = {
        "target": target.name,
        "calls": calls,
        "interviews": len(per_call),
        "wall_secs": round(wall, 1),
        "cpu_probe_ms": probe,
        "cpu_steal_percent": stolen,
        "voice_to_voice": _stats(v2v_all),
        "voice_to_voice_by_answer": _by_answer_of_groups(per_call, groups),
        "end_of_speech_to_final": _stats(
            [e for c in per_call for e in c["end_of_speech_to_final"]]
        ),
        "frame_gaps": {bucket: gaps.get(bucket, 0) for bucket in _gap_bucket_names()},
        "late_frame_gaps": sum(c["late_frame_gaps"] for c in per_call),
        "failed_calls": len(failures),
        "failures": [c["failure"] for c in failures][:20],
        "talked_over": sum(c["talked_over"] for c in per_call),
        "cpu_cores": {
            "mean": round(sum(cpu) / len(cpu), 3) if cpu else None,
            "max": max(cpu, default=None),
        },
        "rss_mb": {"max": max(rss, default=None)},
        "caller_cpu_cores": round((time.process_time() - caller_cpu_start) / max(wall, 1e-6), 3),
        "server_work": server_work(counters_before, counters_after, len(v2v_all)),
        "timeseries": sampler.series,
        "per_call": per_call,
    }
    if mix:
        level["by_language"] = by_language(per_call, groups)
    level["meets_budget"] = meets_budget(level)
    return level


def by_language(per_call: list[dict[str, Any]], groups: Sequence[CallerGroup]) -> dict[str, Any]:
    """Each language's callers, interviews, failures and voice-to-voice statistics."""
    out: dict[str, Any] = {}
    for group in groups:
        calls = [call for call in per_call if call.get("language") == group.language]
        out[str(group.language)] = {
            "job_id": group.job_id,
            "calls": group.calls,
            "interviews": len(calls),
            "failed_calls": sum(1 for call in calls if call["failure"]),
            "talked_over": sum(call["talked_over"] for call in calls),
            "voice_to_voice": _stats([v for call in calls for v in call["voice_to_voice"]]),
            "end_of_speech_to_final": _stats(
                [e for call in calls for e in call["end_of_speech_to_final"]]
            ),
        }
    return out


def _by_answer_of_groups(
    per_call: list[dict[str, Any]], groups: Sequence[CallerGroup]
) -> dict[str, Any]:
    """:func:`_by_answer` of each group's calls (a clip both groups use: both groups' answers)."""
    if len(groups) == 1:
        return _by_answer(per_call, list(groups[0].answers))
    values: dict[str, list[float]] = {}
    for group in groups:
        names = [Path(a).name for a in group.answers]
        for call in per_call:
            if call.get("language") != group.language:
                continue
            for index, value in enumerate(call["voice_to_voice"]):
                values.setdefault(names[index % len(names)], []).append(value)
    return {name: _stats(found) for name, found in values.items()}


def _by_answer(per_call: list[dict[str, Any]], answers: list[Path]) -> dict[str, Any]:
    """Voice-to-voice statistics of each answer clip (the n-th answer of an interview)."""
    names = [Path(a).name for a in answers]
    values: dict[str, list[float]] = {name: [] for name in names}
    for call in per_call:
        for index, value in enumerate(call["voice_to_voice"]):
            values[names[index % len(names)]].append(value)
    return {name: _stats(found) for name, found in values.items()}


def _gap_bucket_names() -> list[str]:
    return [f"<={edge}ms" for edge in GAP_BUCKETS_MS] + [f">{GAP_BUCKETS_MS[-1]}ms"]


def _or_dash(value: Any) -> str:
    return "-" if value is None else str(value)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f}"


def meets_budget(level: dict[str, Any]) -> bool:
    """p95 voice-to-voice within budget, no late-frame gaps, no failed calls."""
    p95 = level["voice_to_voice"]["p95"]
    return (
        p95 is not None
        and p95 <= P95_BUDGET_SECS
        and level["late_frame_gaps"] == 0
        and level["failed_calls"] == 0
    )


async def capacity_search(target: Target, levels: list[int], **kwargs: Any) -> list[dict]:
    """Run levels in ascending order until one misses the budget; return every level run."""
    results = []
    for calls in sorted(levels):
        level = await run_level(target, calls, **kwargs)
        results.append(level)
        if not level["meets_budget"]:
            break
    return results


def capacity(levels: list[dict[str, Any]]) -> int:
    """The largest number of calls that met the budget (0 if none did)."""
    return max((lv["calls"] for lv in levels if lv["meets_budget"]), default=0)


# ------------------------------------------------------------------------------ report


def markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown summary."""
    lines = [
        f"# Load test {report['started']}",
        "",
        f"Machine: {report['machine']['cores']} cores. Answers: "
        f"{', '.join(report['answers'])}. Budget: p95 voice-to-voice <= "
        f"{P95_BUDGET_SECS * 1000:.0f} ms, no gaps > 60 ms, no failed calls. CPU probe: one "
        "smart-turn inference on one thread before the level, median ms (this machine's "
        "speed at the time: lower is faster). CPU stolen: the machine's CPU time its "
        "hypervisor gave to other guests during the level (stalls everything on a shared host). "
        "Caller CPU: this harness's own CPU (the simulated carriers), mean over the level: it "
        "runs on the server's cores.",
        "",
        "| target | calls | interviews | v2v p50 | p95 | p99 (ms) | EoS->final p50/p95 (ms) "
        "| gaps > 60 ms | failed | talked over | CPU mean/max (cores) | peak RSS (MB) "
        "| within budget | CPU probe (ms) | CPU stolen (%) | caller CPU (cores) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for lv in report["levels"]:
        v, e = lv["voice_to_voice"], lv["end_of_speech_to_final"]
        cpu = lv["cpu_cores"]
        lines.append(
            f"| {lv['target']} | {lv['calls']} | {lv['interviews']} | {_ms(v['p50'])} | "
            f"{_ms(v['p95'])} | {_ms(v['p99'])} | {_ms(e['p50'])}/{_ms(e['p95'])} | "
            f"{lv['late_frame_gaps']} | {lv['failed_calls']} | {lv['talked_over']} | "
            f"{cpu['mean'] if cpu['mean'] is not None else '-'}/"
            f"{cpu['max'] if cpu['max'] is not None else '-'} | "
            f"{lv['rss_mb']['max'] or '-'} | {'yes' if lv['meets_budget'] else 'no'} | "
            f"{lv.get('cpu_probe_ms') or '-'} | "
            f"{_or_dash(lv.get('cpu_steal_percent'))} | {_or_dash(lv.get('caller_cpu_cores'))} |"
        )
    lines += [
        "",
        "Voice-to-voice by answer clip, p50 / p95 (ms):",
        "",
        "| target | calls | " + " | ".join(report["answers"]) + " |",
        "|---|---|" + "---|" * len(report["answers"]),
    ]
    for lv in report["levels"]:
        by_answer = lv.get("voice_to_voice_by_answer", {})
        cells = [
            f"{_ms(by_answer[name]['p50'])} / {_ms(by_answer[name]['p95'])}"
            if name in by_answer
            else "-"
            for name in report["answers"]
        ]
        lines.append(f"| {lv['target']} | {lv['calls']} | " + " | ".join(cells) + " |")
    mixed = [lv for lv in report["levels"] if lv.get("by_language")]
    if mixed:
        lines += [
            "",
            "Voice-to-voice by language (callers of each language's job at once, answering in "
            "that language):",
            "",
            "| target | calls | language | job | calls of it | interviews | v2v p50 | p95 | "
            "p99 (ms) | EoS->final p50/p95 (ms) | failed | talked over |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for lv in mixed:
            for language, part in lv["by_language"].items():
                v, e = part["voice_to_voice"], part["end_of_speech_to_final"]
                lines.append(
                    f"| {lv['target']} | {lv['calls']} | {language} | {part['job_id']} | "
                    f"{part['calls']} | {part['interviews']} | {_ms(v['p50'])} | "
                    f"{_ms(v['p95'])} | {_ms(v['p99'])} | {_ms(e['p50'])}/{_ms(e['p95'])} | "
                    f"{part['failed_calls']} | {part['talked_over']} |"
                )
    worked = [lv for lv in report["levels"] if lv.get("server_work")]
    if worked:
        lines += [
            "",
            "Server work per answer (from its /metrics): Whisper runs and worker-seconds, "
            "the mean Whisper batch (transcriptions per decode), "
            "speculative transcriptions kept / discarded, smart-turn verdicts at the pause / "
            "started early and used / skipped / started early and unused, late frames, "
            "event-loop stalls (a 50 ms timer woken over 20 ms late), "
            "gaps in the caller's audio (its timestamps skipped 40 ms or more: a caller starved "
            "of CPU lengthens the candidate's pauses):",
            "",
            "| target | calls | Whisper runs | Whisper s | Whisper batch "
            "| speculations kept / discarded "
            "| smart-turn at pause / early / skipped / early unused | late frames (server) "
            "| loop stalls (server) | caller audio gaps |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for lv in worked:
            w = lv["server_work"]
            lines.append(
                f"| {lv['target']} | {lv['calls']} | {w.get('asr_runs_per_answer', '-')} | "
                f"{w.get('asr_secs_per_answer', '-')} | {w.get('asr_batch_mean', '-')} | "
                f"{w['speculations_kept']:.0f} / "
                f"{w['speculations_discarded']:.0f} | {w['smart_turn_runs']:.0f} / "
                f"{w.get('smart_turn_early', 0):.0f} / {w['smart_turn_skipped']:.0f} / "
                f"{w.get('smart_turn_early_unused', 0):.0f} | {w['late_frames']:.0f} | "
                f"{w.get('loop_stalls', 0):.0f} | "
                f"{w.get('inbound_gaps', 0):.0f} |"
            )
    lines.append("")
    for name, value in report.get("capacity", {}).items():
        lines.append(f"- capacity of {name}: {value} concurrent calls within budget")
    for name, value in report.get("ratios", {}).items():
        lines.append(f"- ours / pipecat, {name}: {value}")
    lines.append("")
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> None:
    """PNG: latency percentiles and CPU against concurrency; CPU and RSS over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (by_calls, over_time) = plt.subplots(1, 2, figsize=(12, 4.5))
    cpu_axis = by_calls.twinx()
    for name in sorted({lv["target"] for lv in report["levels"]}):
        levels = sorted(
            (lv for lv in report["levels"] if lv["target"] == name), key=lambda lv: lv["calls"]
        )
        xs = [lv["calls"] for lv in levels]
        for pct, style in (("p50", "-o"), ("p95", "--o"), ("p99", ":o")):
            ys = [(lv["voice_to_voice"][pct] or 0) * 1000 for lv in levels]
            by_calls.plot(xs, ys, style, label=f"{name} v2v {pct}")
        cpu_axis.plot(
            xs,
            [lv["cpu_cores"]["mean"] or 0 for lv in levels],
            "-s",
            alpha=0.4,
            label=f"{name} CPU",
        )
        last = levels[-1]
        ts = last["timeseries"]
        over_time.plot(
            [s["t"] for s in ts],
            [s["cpu_cores"] for s in ts],
            label=f"{name} CPU ({last['calls']} calls)",
        )
    by_calls.axhline(P95_BUDGET_SECS * 1000, color="grey", linewidth=0.8)
    by_calls.set_xlabel("concurrent calls")
    by_calls.set_ylabel("voice-to-voice (ms)")
    cpu_axis.set_ylabel("server CPU (cores)")
    cpu_axis.set_ylim(0, os.cpu_count() or 2)
    by_calls.set_ylim(bottom=0)
    by_calls.legend(loc="upper left", fontsize=7)
    cpu_axis.legend(loc="upper right", fontsize=7)
    over_time.set_xlabel("seconds")
    over_time.set_ylabel("server CPU (cores)")
    over_time.legend(fontsize=7)
    figure.suptitle(f"voicebot load test {report['started']}")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write_report(report: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write JSON, Markdown and PNG; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"load-{report['started'].replace(':', '').replace(' ', '-')}"
    paths = {
        "json": stem.with_suffix(".json"),
        "markdown": stem.with_suffix(".md"),
        "png": stem.with_suffix(".png"),
    }
    paths["json"].write_text(json.dumps(report, indent=2))
    paths["markdown"].write_text(markdown(report))
    plot(report, paths["png"])
    return paths


def ratios(report: dict[str, Any]) -> dict[str, str]:
    """ours/pipecat for p50, p95 (at the largest level both ran) and capacity."""
    ours = {lv["calls"]: lv for lv in report["levels"] if lv["target"] == "voicebot"}
    peer = {lv["calls"]: lv for lv in report["levels"] if lv["target"] == "pipecat"}
    common = sorted(set(ours) & set(peer))
    out: dict[str, str] = {}
    if common:
        n = common[-1]
        for pct in ("p50", "p95"):
            a, b = ours[n]["voice_to_voice"][pct], peer[n]["voice_to_voice"][pct]
            if a is not None and b:
                out[f"voice-to-voice {pct} at {n} calls"] = f"{a / b:.2f}"
    caps = report.get("capacity", {})
    if caps.get("voicebot") is not None and caps.get("pipecat"):
        out["capacity"] = f"{caps['voicebot'] / caps['pipecat']:.2f}"
    return out


# ------------------------------------------------------------------------------ CLI


def build_parser() -> argparse.ArgumentParser:
    """Options of ``voicebot loadtest``."""
    parser = argparse.ArgumentParser(
        prog="voicebot loadtest",
        description="Drive many concurrent simulated Twilio calls and report latency, playout "
        "health, failures, CPU and memory (JSON, Markdown, PNG).",
    )
    parser.add_argument("--calls", type=int, default=2, help="concurrent calls (default 2)")
    parser.add_argument(
        "--duration",
        type=float,
        default=0.0,
        metavar="SECS",
        help="keep calling for this long (default 0: one interview per caller)",
    )
    parser.add_argument(
        "--ramp",
        type=float,
        default=None,
        metavar="SECS",
        help="spread call starts over this long (default 0.5 s a call, max 20)",
    )
    parser.add_argument(
        "--search", action="store_true", help="capacity search over --levels instead of one level"
    )
    parser.add_argument(
        "--levels",
        default=None,
        help="comma-separated concurrency levels: each is run in turn (with "
        "--search: until one misses the budget; default 5,10,20,30,40,50)",
    )
    parser.add_argument(
        "--target",
        choices=("voicebot", "pipecat", "both"),
        default="voicebot",
        help="which server to start and drive (default voicebot)",
    )
    parser.add_argument("--url", help="drive an already running voicebot at this URL instead")
    parser.add_argument("--server-pid", type=int, help="with --url: the server's pid, for CPU/RSS")
    parser.add_argument(
        "--api-token",
        default=os.environ.get("VOICEBOT_API_TOKEN"),
        help="with --url: the server's API token (default $VOICEBOT_API_TOKEN)",
    )
    parser.add_argument(
        "--answer",
        action="append",
        type=Path,
        metavar="WAV",
        help="answer clips in order (default: four English clips in ../shared/audio)",
    )
    jobs = ", ".join(f"{language}: {job}" for language, (job, _) in LANGUAGE_CALLERS.items())
    parser.add_argument(
        "--mix",
        metavar="LANG=CALLS,...",
        help="hold calls in several languages at once, e.g. en=10,zh=10: each language's "
        f"callers are interviewed for its job ({jobs}) "
        "and answer with its clips in ../shared/audio; the report gives voice-to-voice per "
        "language (replaces --calls, --levels and --answer)",
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "loadtest" / "results", help="where the report files go"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    return parser


def _run(coroutine: Any) -> Any:
    """Run one level's event loop: uvloop when installed, start-up objects out of the GC.

    The simulated carriers share the machine with the server they measure, so their own
    overhead is kept small: uvloop's loop, and no full collection walking what the harness
    loaded before the calls (a stalled caller would be read as gaps in the server's audio).
    """
    gc.collect()
    gc.freeze()
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def main(argv: list[str] | None = None) -> int:
    """Run ``voicebot loadtest``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.url and not args.api_token:
        parser.error(
            "--url needs the server's API token (--api-token or VOICEBOT_API_TOKEN) "
            "to create the interviews it calls into"
        )
    mix = None
    if args.mix is not None:
        if args.target != "voicebot":
            parser.error("--mix drives voicebot only (the pipecat peer holds English calls)")
        if args.search or args.levels or args.answer:
            parser.error(
                "--mix sets the calls and each language's answers: leave out --search, "
                "--levels and --answer"
            )
        try:
            mix = parse_mix(args.mix)
        except ValueError as error:
            parser.error(str(error))
        args.calls = sum(group.calls for group in mix)
    answers = args.answer or [DEFAULT_AUDIO / clip for clip in DEFAULT_CLIPS]
    if mix:
        answers = list(dict.fromkeys(a for group in mix for a in group.answers))
    if args.levels:
        levels = [int(x) for x in args.levels.split(",")]
    else:
        levels = [5, 10, 20, 30, 40, 50] if args.search else [args.calls]
    names = ["voicebot", "pipecat"] if args.target == "both" else [args.target]
    report: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {"cores": os.cpu_count()},
        "answers": [Path(a).name for a in answers],
        "mix": None if mix is None else {str(g.language): g.calls for g in mix},
        "duration_secs": args.duration,
        "levels": [],
        "capacity": {},
    }
    work = Path(tempfile.mkdtemp(prefix="voicebot-load-"))
    options = {
        "duration_secs": args.duration,
        "ramp_secs": args.ramp,
        "answers": answers,
        "progress": not args.quiet,
        "mix": mix,
    }
    for name in names:
        if args.url and name == "voicebot":
            target = Target(
                "voicebot",
                args.url.rstrip("/"),
                pid=args.server_pid,
                api_token=args.api_token,
                twilio_auth_token=os.environ.get("VOICEBOT_TWILIO_AUTH_TOKEN"),
            )
        else:
            target = Target.spawn(name, work)
        try:
            if args.search:
                results = _run(capacity_search(target, levels, **options))
                report["capacity"][name] = capacity(results)
            else:
                results = [_run(run_level(target, n, **options)) for n in levels]
            report["levels"].extend(results)
        finally:
            target.stop()
    report["ratios"] = ratios(report)
    paths = write_report(report, args.out)
    print(markdown(report))
    print(f"report: {paths['json']}\n        {paths['markdown']}\n        {paths['png']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
