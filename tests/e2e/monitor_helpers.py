"""What the monitor's end-to-end tests share: recruiter accounts and the call they watch."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from loadtest.caller import CallResult, run_call
from tests.conftest import ROOT, TWILIO_AUTH_TOKEN

PASSWORD = "correct horse battery staple"
ANSWERS = ["en_speaker_a.wav", "en_jfk.wav", "en_speaker_b.wav", "en_speaker_a.wav"]
"""Four answers of real speech: the call lasts about a minute."""


def add_user(username: str, role: str, department: str | None = None, **env: str) -> None:
    """``voicebot users add`` as an operator runs it (``env``: VOICEBOT_* of the deployment)."""
    command = [sys.executable, "-m", "voicebot.cli", "users", "add", username, "--role", role]
    if department:
        command += ["--department", department]
    environment = {**os.environ, **env, "VOICEBOT_NEW_PASSWORD": PASSWORD}
    done = subprocess.run(
        command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


async def interview_call(
    url: str,
    interview_id: str,
    call_sid: str,
    audio_dir: Path,
    answers: Iterable[str] = ANSWERS,
) -> CallResult:
    """One whole interview by a simulated Twilio caller: consent by keypad, four answers."""
    return await run_call(
        url,
        interview_id=interview_id,
        call_sid=call_sid,
        answers=[audio_dir / name for name in answers],
        dtmf={0: "1"},
        twilio_auth_token=TWILIO_AUTH_TOKEN,
        max_call_secs=180,
    )
