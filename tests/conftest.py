"""Shared fixtures: a real voicebot server process on a free loopback port, with the real models.

The server is started once per test session (``python -m voicebot.cli serve``) with its own data and
recordings directories, a known API token, a Twilio auth token (so every webhook must be signed) and
a known stream-token secret (so tests can mint expired tokens).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from loadtest.harness import free_port
from voicebot.audio.frames import phone_roundtrip_16k, read_wav

ROOT = Path(__file__).resolve().parent.parent
AUDIO_DIR = Path(
    os.environ.get("VOICEBOT_TEST_AUDIO_DIR") or ROOT.parent / "shared" / "audio"
).resolve()
"""The human speech clips (../shared/audio beside the checkout)."""
API_TOKEN = "test-api-token"
WEBHOOK_SECRET = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
CLIENTS = {"acme_ats": "acme-token-0123456789", "beta_hris": "beta-token-0123456789"}
"""HR systems with their own API tokens (VOICEBOT_API_CLIENTS)."""
TWILIO_AUTH_TOKEN = "test-twilio-auth-token"
STREAM_SECRET = "test-stream-token-secret"


def speech_clip(name: str) -> np.ndarray:
    """A real 16 kHz speech clip from the shared test audio (int16)."""
    path = AUDIO_DIR / name
    if not path.is_file():
        pytest.fail(f"test speech {path} missing (../shared/audio or VOICEBOT_TEST_AUDIO_DIR)")
    pcm, rate = read_wav(path)
    assert rate == 16000
    return pcm


def phone_speech(name: str) -> np.ndarray:
    """A real speech clip as the server hears it: through 8 kHz mu-law and back to 16 kHz."""
    return phone_roundtrip_16k(speech_clip(name))


@dataclass
class RunningServer:
    """A voicebot server process the tests talk to over real sockets."""

    url: str
    process: subprocess.Popen
    data_dir: Path
    recordings_dir: Path
    log_path: Path
    webhooks: Any = None
    """The webhook receiver the server delivers to (``tests.webhook_receiver``), if any."""

    def request(
        self, method: str, path: str, body: object | None = None, token: str | None = API_TOKEN
    ) -> tuple[int, object]:
        """One HTTP request; returns (status, parsed JSON or text)."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=30) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")

    def create_interview(self, job_id: str = "customer_service_en", **candidate) -> str:
        """Create an interview through the API and return its id."""
        body = {
            "job_id": job_id,
            "candidate": {
                "id": "cand-test",
                "name": "Test Candidate",
                "phone": "+15550100",
                **candidate,
            },
        }
        status, data = self.request("POST", "/api/interviews", body)
        assert status == 201, data
        return data["id"]

    def wait_for_report(self, interview_id: str, timeout: float = 60.0) -> dict:
        """Read an interview back once its call has ended and its report is stored."""
        deadline = time.monotonic() + timeout
        while True:
            status, interview = self.request("GET", f"/api/interviews/{interview_id}")
            assert status == 200, interview
            if interview["status"] not in ("pending", "in_progress", "scoring"):
                return interview
            if time.monotonic() > deadline:
                raise AssertionError(f"interview still {interview['status']} after {timeout} s")
            time.sleep(0.2)

    def wait_for_call(self, call_sid: str, timeout: float = 30.0) -> dict:
        """Read a call back once the server has settled it (the caller may hang up first)."""
        deadline = time.monotonic() + timeout
        while True:
            status, call = self.request("GET", f"/api/calls/{call_sid}")
            assert status == 200, call
            if call["status"] != "in_progress":
                return call
            if time.monotonic() > deadline:
                raise AssertionError(f"call still in_progress after {timeout} s")
            time.sleep(0.1)

    def log_text(self) -> str:
        """What the server logged so far."""
        return self.log_path.read_text(errors="replace")


def wait_healthy(url: str, process: subprocess.Popen, log_path: Path, timeout: float) -> None:
    """Wait until ``GET /healthz`` answers 200 (models are loaded before the port opens)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{log_path.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"server not healthy after {timeout} s:\n{log_path.read_text()[-4000:]}")


def start_server(tmp: Path, **env_overrides: str | None) -> RunningServer:
    """Start ``voicebot serve`` in a subprocess and wait until it is healthy.

    An override of ``None`` leaves that setting unset (the server's default), e.g.
    ``VOICEBOT_ALLOW_ESPEAK_VOICE=None`` for a server started as a new user would start it.
    """
    port = free_port()
    data_dir = tmp / "data"
    recordings_dir = tmp / "recordings"
    log_path = tmp / "server.log"
    env = {
        **os.environ,
        "VOICEBOT_HOST": "127.0.0.1",
        "VOICEBOT_PORT": str(port),
        "VOICEBOT_DATA_DIR": str(data_dir),
        "VOICEBOT_RECORDINGS_DIR": str(recordings_dir),
        "VOICEBOT_API_TOKEN": API_TOKEN,
        "VOICEBOT_API_CLIENTS": ",".join(f"{name}={token}" for name, token in CLIENTS.items()),
        "VOICEBOT_TWILIO_AUTH_TOKEN": TWILIO_AUTH_TOKEN,
        "VOICEBOT_STREAM_TOKEN_SECRET": STREAM_SECRET,
        "VOICEBOT_LOG_LEVEL": "INFO",
        **env_overrides,
    }
    # Chinese has an offline voice by default (Kokoro); a test server configured without one
    # (VOICEBOT_TTS_ENGINE=espeak) still serves Chinese jobs with espeak-ng. A test of the
    # refusal sets this to "", one of the defaults to None (unset).
    env.setdefault("VOICEBOT_ALLOW_ESPEAK_VOICE", "zh")
    # Share the rendered prompt audio between test sessions on this machine: rendering is slow.
    env.setdefault("VOICEBOT_PROMPT_CACHE_DIR", str(ROOT / ".cache" / "test-prompts"))
    env = {name: value for name, value in env.items() if value is not None}
    log_file = log_path.open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "voicebot.cli", "serve"],
        cwd=ROOT,
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process, log_path, timeout=180)
    except Exception:
        process.kill()
        raise
    return RunningServer(url, process, data_dir, recordings_dir, log_path)


def stop_server(server: RunningServer) -> None:
    """Stop the server with SIGTERM, as an orchestrator does; fail if it does not exit cleanly.

    A server that ignored SIGTERM (a shutdown step raising and leaving the store's thread
    alive) is killed, and the test that owns it fails, saying so.
    """
    server.process.terminate()
    try:
        code = server.process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
        tail = server.log_path.read_text()[-3000:]
        raise AssertionError(f"server did not exit within 60 s of SIGTERM:\n{tail}") from None
    if code != 0:
        tail = server.log_path.read_text()[-3000:]
        raise AssertionError(f"server exited with {code} on SIGTERM:\n{tail}")


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> RunningServer:
    """One real voicebot server for the whole test session (embedded bus, in-process bridge).

    Its webhooks go to a real receiver (``server.webhooks``) that verifies every signature.
    """
    from tests.webhook_receiver import WebhookReceiver

    receiver = WebhookReceiver(WEBHOOK_SECRET).start()
    running = start_server(
        tmp_path_factory.mktemp("server"),
        VOICEBOT_WEBHOOK_URL=receiver.url,
        VOICEBOT_WEBHOOK_SECRET=WEBHOOK_SECRET,
        VOICEBOT_PUBLIC_URL="",
    )
    running.webhooks = receiver
    yield running
    stop_server(running)
    receiver.stop()


@pytest.fixture(scope="session")
def audio_dir() -> Path:
    """The shared real-speech clips."""
    if not AUDIO_DIR.is_dir():
        pytest.fail(f"real speech clips not found at {AUDIO_DIR} (../shared/audio)")
    return AUDIO_DIR
