"""End to end: the server process is killed (SIGKILL) while a candidate answers; a new process on
the same data directory settles the call it left.

What a user notices: the call is ``failed``/``server_restart``, the interview ``incomplete`` with a
report of what was said before the crash, the recording holds the candidate's audio up to about a
second before the kill, the HR system hears of the end exactly once (also after another restart),
and the monitor lists no call as live. With ``VOICEBOT_DATA_KEY`` set the same holds, and what the
killed process left on disk (the recording's part files, the timeline) is encrypted.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import time
import wave
from pathlib import Path

import aiohttp
import numpy as np
import pytest

from loadtest.caller import CandidateAnswer, run_call
from tests.conftest import TWILIO_AUTH_TOKEN, WEBHOOK_SECRET, start_server, stop_server
from tests.e2e.monitor_helpers import PASSWORD, add_user
from tests.webhook_receiver import WebhookReceiver
from voicebot.audio.codec import ulaw_decode
from voicebot.audio.frames import TELEPHONY_RATE
from voicebot.crypto import FILE_MAGIC, Keyring, generate_key_entry, read_stored_file

pytestmark = pytest.mark.e2e

KILL_AFTER_SECS = 4.0
"""How far into the second answer the server is killed."""
LOSS_ALLOWED_SECS = 1.5
"""The recording may lack this much of the audio before the kill (about a second, plus transit)."""


def _events_of(receiver: WebhookReceiver, kind: str, call_sid: str, interview_id: str) -> list:
    with receiver._lock:
        items = list(receiver.events.items())
    return [
        (event_id, payload)
        for event_id, payload in items
        if payload["type"] == kind
        and payload["data"].get("interview_id") == interview_id
        and (kind != "call.ended" or payload["data"].get("call_sid") == call_sid)
    ]


def _wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not seen within {timeout} s")
        time.sleep(0.2)


async def _call_until_killed(server, interview_id: str, call_sid: str, audio_dir: Path) -> float:
    """Place the call: keypad consent, a first answer, then SIGKILL the server well into the
    second answer. Returns the caller's stream-clock time of the kill (seconds)."""
    answers = [
        CandidateAnswer.from_wav(audio_dir / "en_speaker_a.wav"),
        CandidateAnswer.from_wav(audio_dir / "en_jfk.wav"),
    ]
    loop = asyncio.get_running_loop()
    clock = {"t0": None}
    first_answer_done = asyncio.Event()
    second_prompt_end: asyncio.Future[float] = loop.create_future()

    def on_event(kind: str, data: dict) -> None:
        if kind == "connected":
            clock["t0"] = loop.time()
        elif kind == "turn":
            turn = data["turn"]
            if turn.speaker == "candidate" and (turn.answer or "").endswith("en_speaker_a.wav"):
                first_answer_done.set()
            elif turn.speaker == "bot" and first_answer_done.is_set():
                if not second_prompt_end.done():
                    second_prompt_end.set_result(turn.end)

    call = asyncio.create_task(
        run_call(
            server.url,
            interview_id=interview_id,
            call_sid=call_sid,
            answers=answers,
            dtmf={0: "1"},
            twilio_auth_token=TWILIO_AUTH_TOKEN,
            max_call_secs=120,
            on_event=on_event,
        )
    )
    prompt_end = await asyncio.wait_for(second_prompt_end, 90)
    kill_at = prompt_end + 0.3 + KILL_AFTER_SECS  # the caller answers 0.3 s after a prompt
    await asyncio.sleep(max(0.0, clock["t0"] + kill_at - loop.time()))
    killed_at = loop.time() - clock["t0"]
    os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait(10)
    result = await asyncio.wait_for(call, 30)
    assert result.closed_by in ("server", "caller"), result
    return killed_at


def _matched_secs(recorded: np.ndarray, answer: CandidateAnswer) -> tuple[float, float]:
    """Where the answer begins in the recorded candidate channel and how much of it is there."""
    sent = ulaw_decode(answer.ulaw)
    probe = sent[:TELEPHONY_RATE].tobytes()  # the answer's first second, sample for sample
    position = recorded.tobytes().find(probe)
    assert position >= 0 and position % 2 == 0, "the answer is not in the recording"
    start = position // 2
    window = recorded[start : start + len(sent)]
    differs = np.flatnonzero(window != sent[: len(window)])
    matched = int(differs[0]) if len(differs) else len(window)
    return start / TELEPHONY_RATE, matched / TELEPHONY_RATE


@pytest.mark.parametrize("data_key", [None, generate_key_entry("k1")], ids=["plain", "data_key"])
def test_a_call_killed_mid_answer_is_settled_by_the_next_process(tmp_path, audio_dir, data_key):
    receiver = WebhookReceiver(WEBHOOK_SECRET).start()
    env = {
        "VOICEBOT_WEBHOOK_URL": receiver.url,
        "VOICEBOT_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "VOICEBOT_PUBLIC_URL": "",
    }
    keyring = None
    if data_key is not None:
        env["VOICEBOT_DATA_KEY"] = data_key
        keyring = Keyring.parse(data_key)
    server = start_server(tmp_path, **env)
    try:
        interview_id = server.create_interview("customer_service_en", name="Ada Crashley")
        call_sid = "CAcrash" + os.urandom(8).hex()
        killed_at = asyncio.run(_call_until_killed(server, interview_id, call_sid, audio_dir))
        left = sorted((tmp_path / "recordings" / call_sid).iterdir())
        assert {p.name for p in left} >= {"candidate.ulaw.part", "bot.ulaw.part", "timeline.jsonl"}
        if keyring is not None:  # what the killed process left is ciphertext
            for path in left:
                raw = path.read_bytes()
                assert raw.startswith(FILE_MAGIC) and b"prompt_started" not in raw, path.name

        server = start_server(tmp_path, **env)  # the same data and recordings directories
        status, call = server.request("GET", f"/api/calls/{call_sid}")
        assert status == 200, call
        assert (call["status"], call["end_reason"]) == ("failed", "server_restart")
        interview = server.wait_for_report(interview_id)
        assert interview["status"] == "incomplete"
        report = interview["report"]
        assert report is not None
        first = next(q for q in report["questions"] if q["answered"])
        assert first["answer"], "the answer given before the crash is in the report"
        assert any(t["speaker"] == "candidate" for t in report["transcript"])

        # The recording: call.wav with the candidate's audio up to about a second before the kill.
        wav_path = tmp_path / "recordings" / call_sid / "call.wav"
        assert wav_path.read_bytes().startswith(FILE_MAGIC) == (keyring is not None)
        with wave.open(io.BytesIO(read_stored_file(wav_path, keyring))) as wav:
            assert wav.getnchannels() == 2 and wav.getframerate() == TELEPHONY_RATE
            pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16).reshape(-1, 2)
        answer = CandidateAnswer.from_wav(audio_dir / "en_jfk.wav")
        start, matched = _matched_secs(pcm[:, 0], answer)
        assert start + matched >= killed_at - LOSS_ALLOWED_SECS, (start, matched, killed_at)
        assert not list((tmp_path / "recordings" / call_sid).glob("*.part"))

        # The HR system hears of the end once: the call's end, then the interview's outcome.
        ended = _wait_for(
            lambda: _events_of(receiver, "call.ended", call_sid, interview_id), 30, "call.ended"
        )
        completed = _wait_for(
            lambda: _events_of(receiver, "interview.completed", call_sid, interview_id),
            30,
            "interview.completed",
        )
        assert ended[0][1]["data"]["reason"] == "server_restart"
        assert completed[0][1]["data"]["status"] == "incomplete"

        # Nothing is live: not in the health check, not on the monitor.
        status, health = server.request("GET", "/healthz", token=None)
        assert health["calls_active"] == 0
        add_user("crash-admin", "admin", VOICEBOT_DATA_DIR=str(tmp_path / "data"))
        lists = asyncio.run(_monitor_lists(server.url, "crash-admin"))
        assert lists["live"] == []
        listed = next(c for c in lists["recent"] if c["call_sid"] == call_sid)
        assert listed["status"] == "incomplete"

        # Another restart settles nothing again and sends nothing again.
        stop_server(server)
        server = start_server(tmp_path, **env)
        _wait_for(
            lambda: server.request("GET", "/healthz", token=None)[1]["events_waiting"] == 0,
            30,
            "an empty outbox",
        )
        time.sleep(3)  # time for a wrongly repeated event to reach the receiver
        for kind in ("call.ended", "interview.completed"):
            events = _events_of(receiver, kind, call_sid, interview_id)
            assert len(events) == 1, (kind, events)
            assert receiver.arrivals[events[0][0]] == 1
        assert server.request("GET", f"/api/interviews/{interview_id}")[1]["status"] == (
            "incomplete"
        )
    finally:
        if server.process.poll() is None:
            stop_server(server)
        receiver.stop()


async def _monitor_lists(url: str, username: str) -> dict:
    async with aiohttp.ClientSession() as http:
        async with http.post(
            url + "/monitor/login",
            data={"username": username, "password": PASSWORD},
            allow_redirects=False,
        ) as response:
            assert response.status == 303, await response.text()
            cookie = {"Cookie": f"voicebot_monitor={response.cookies['voicebot_monitor'].value}"}
        async with http.get(url + "/monitor/api/calls", headers=cookie) as response:
            assert response.status == 200
            return await response.json()
