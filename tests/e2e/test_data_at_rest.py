"""Data at rest, end to end: a real server with ``VOICEBOT_DATA_KEY`` holds a whole interview by a
simulated Twilio caller speaking real answers, with the HR bridge delivering its events.

What a user relies on: nothing under the data and recordings directories holds the candidate's
name, phone number or words in the clear; every file is 0600 and every folder 0700 (older loose
ones tightened at start-up), whatever the umask; the API, the report page and the recording link
still give the plaintext; key rotation (new key first, ``voicebot data-key rotate``, old key
removed) keeps everything readable; altered data is refused with a clear error, and a server
without the key its data needs does not start.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from loadtest.caller import run_call
from tests.conftest import (
    ROOT,
    TWILIO_AUTH_TOKEN,
    WEBHOOK_SECRET,
    start_server,
    stop_server,
)
from tests.webhook_receiver import WebhookReceiver
from voicebot.crypto import generate_key_entry

pytestmark = pytest.mark.e2e

NAME = "Zephyrine Quillfeather"
PHONE = "+14155550187"
ANSWERS = ["en_speaker_a.wav", "en_jfk.wav", "en_speaker_b.wav", "en_speaker_a.wav"]
KEY1 = generate_key_entry("k1")
KEY2 = generate_key_entry("k2")


def _files(*roots: Path) -> list[Path]:
    return [path for root in roots for path in root.rglob("*") if path.is_file()]


def _clear_text_hits(roots: list[Path], needles: list[bytes]) -> list[tuple[str, bytes]]:
    """(file, needle) for every needle found in the clear in a file under ``roots``."""
    hits = []
    for path in _files(*roots):
        raw = path.read_bytes()
        for needle in needles:
            if needle in raw or needle.decode().encode("utf-16-le") in raw:
                hits.append((str(path), needle))
    return hits


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def _recording(url: str, within: float = 30.0) -> tuple[int, bytes, dict[str, str]]:
    """GET a recording link once the file is written (the recorder writes it as the call ends)."""
    deadline = time.monotonic() + within
    while True:
        status, body, headers = _get(url)
        if status != 404 or time.monotonic() > deadline:
            return status, body, headers
        time.sleep(0.2)


def _rotate(tmp: Path, data_key: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "VOICEBOT_DATA_DIR": str(tmp / "data"),
        "VOICEBOT_RECORDINGS_DIR": str(tmp / "recordings"),
        "VOICEBOT_DATA_KEY": data_key,
    }
    return subprocess.run(
        [sys.executable, "-m", "voicebot.cli", "data-key", "rotate"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def encrypted_call(tmp_path_factory, audio_dir):
    """A whole interview on a server with a data key; the server is stopped afterwards."""
    tmp = tmp_path_factory.mktemp("at-rest")
    loose = tmp / "data" / "old-backups"
    loose.mkdir(parents=True, mode=0o755)
    (loose / "notes.txt").write_text("left by an older version")
    os.chmod(loose, 0o755)
    os.chmod(loose / "notes.txt", 0o644)
    receiver = WebhookReceiver(WEBHOOK_SECRET).start()
    previous = os.umask(0o022)  # the server inherits a permissive umask
    try:
        server = start_server(
            tmp,
            VOICEBOT_DATA_KEY=KEY1,
            VOICEBOT_WEBHOOK_URL=receiver.url,
            VOICEBOT_WEBHOOK_SECRET=WEBHOOK_SECRET,
        )
    finally:
        os.umask(previous)
    try:
        interview_id = server.create_interview(id="cand-at-rest", name=NAME, phone=PHONE)
        call_sid = "CA" + secrets.token_hex(16)
        result = asyncio.run(
            run_call(
                server.url,
                interview_id=interview_id,
                call_sid=call_sid,
                from_number=PHONE,
                answers=[audio_dir / name for name in ANSWERS],
                dtmf={0: "1"},
                twilio_auth_token=TWILIO_AUTH_TOKEN,
                max_call_secs=180,
            )
        )
        assert result.error is None, result.problems
        call = server.wait_for_call(call_sid)
        interview = server.wait_for_report(interview_id)
        receiver.wait_for(
            lambda r: any(e["type"] == "interview.completed" for e in r.events.values())
        )
        status, report = server.request("GET", f"/api/interviews/{interview_id}/report")
        assert status == 200, report
        recording_url = report["links"]["recordings"][call_sid]
        wav_status, wav, _ = _recording(recording_url)
        ranged = _get(recording_url, {"Range": "bytes=0-11"})
        page_status, page, _ = _get(report["links"]["report_html"])
        running_modes = {
            path: stat.S_IMODE(path.stat().st_mode)
            for path in [*_files(server.data_dir, server.recordings_dir)]
        }
    finally:
        stop_server(server)
        receiver.stop()
    words = [
        turn["text"] for turn in call["turns"] if turn["speaker"] == "candidate" and turn["text"]
    ]
    return {
        "tmp": tmp,
        "server": server,
        "interview_id": interview_id,
        "call_sid": call_sid,
        "call": call,
        "interview": interview,
        "words": words,
        "wav": (wav_status, wav),
        "ranged": ranged,
        "page": (page_status, page.decode(errors="replace")),
        "running_modes": running_modes,
        "webhooks": dict(receiver.events),
    }


def _phrase(words: list[str]) -> bytes:
    """A phrase of the candidate's answer as stored: the longest three-word run, verbatim."""
    runs = [run for text in words for run in re.findall(r"[A-Za-z']+ [A-Za-z']+ [A-Za-z']+", text)]
    assert runs, words
    return max(runs, key=len).encode()


def test_no_candidate_data_in_the_clear_in_any_stored_file(encrypted_call):
    server = encrypted_call["server"]
    phrase = _phrase(encrypted_call["words"])
    needles = [NAME.encode(), b"Quillfeather", PHONE.encode(), PHONE[2:].encode(), phrase]
    hits = _clear_text_hits([server.data_dir, server.recordings_dir], needles)
    assert hits == []
    recording = server.recordings_dir / encrypted_call["call_sid"]
    assert sorted(p.name for p in recording.iterdir()) == ["call.wav", "timeline.jsonl"]
    assert not (recording / "call.wav").read_bytes().startswith(b"RIFF")


def test_the_api_report_page_recording_link_and_webhooks_give_the_plaintext(encrypted_call):
    interview = encrypted_call["interview"]
    assert interview["candidate"]["name"] == NAME and interview["candidate"]["phone"] == PHONE
    assert interview["status"] == "completed"
    assert len(encrypted_call["words"]) >= 3
    assert encrypted_call["call"]["from_number"] == PHONE
    phrase = _phrase(encrypted_call["words"]).decode()
    assert phrase in " ".join(turn["text"] for turn in interview["transcript"])
    status, wav = encrypted_call["wav"]
    assert status == 200 and wav.startswith(b"RIFF") and len(wav) > 100_000
    status, head, headers = encrypted_call["ranged"]
    assert status == 206 and head == wav[:12]
    assert headers["Content-Range"] == f"bytes 0-11/{len(wav)}"
    status, page = encrypted_call["page"]
    assert status == 200 and NAME in page
    completed = [
        e for e in encrypted_call["webhooks"].values() if e["type"] == "interview.completed"
    ]
    assert completed and phrase in str(completed[0]["data"]) and NAME in str(completed[0]["data"])


def test_every_file_is_private_whatever_the_umask(encrypted_call):
    modes = encrypted_call["running_modes"]
    names = {path.name for path in modes}
    assert {"voicebot.sqlite3", "events.sqlite3", "hris_bridge.db", "call.wav"} <= names
    assert any(name.endswith("-wal") for name in names)
    assert {str(path): mode for path, mode in modes.items() if mode != 0o600} == {}
    tmp = encrypted_call["tmp"]
    folders = [tmp / "data", tmp / "recordings"]
    folders += [p for root in list(folders) for p in root.rglob("*") if p.is_dir()]
    assert {str(p): oct(stat.S_IMODE(p.stat().st_mode)) for p in folders} == {
        str(p): "0o700" for p in folders
    }
    assert stat.S_IMODE((tmp / "data" / "old-backups" / "notes.txt").stat().st_mode) == 0o600


def test_rotation_then_the_old_key_removed_and_tampering_refused(encrypted_call):
    tmp = encrypted_call["tmp"]
    interview_id, call_sid = encrypted_call["interview_id"], encrypted_call["call_sid"]
    done = _rotate(tmp, f"{KEY2},{KEY1}")
    assert done.returncode == 0, done.stderr
    assert "re-encrypted under key k2" in done.stdout and "remove them" in done.stdout
    stored = b"".join(path.read_bytes() for path in _files(tmp / "data", tmp / "recordings"))
    assert b"vbenc1.k1." not in stored  # nothing is left under the old key

    server = start_server(tmp, VOICEBOT_DATA_KEY=KEY2)  # the old key is gone
    try:
        status, interview = server.request("GET", f"/api/interviews/{interview_id}")
        assert status == 200, interview
        assert interview["candidate"]["name"] == NAME
        assert interview["transcript"] == encrypted_call["interview"]["transcript"]
        status, report = server.request("GET", f"/api/interviews/{interview_id}/report")
        wav_status, wav, _ = _get(report["links"]["recordings"][call_sid])
        assert wav_status == 200 and wav == encrypted_call["wav"][1]
        status, monitor_call = server.request("GET", f"/api/calls/{call_sid}")
        assert status == 200 and monitor_call["from_number"] == PHONE

        recording = tmp / "recordings" / call_sid / "call.wav"
        raw = bytearray(recording.read_bytes())
        raw[len(raw) // 2] ^= 0x01  # one bit of the ciphertext flipped on disk
        recording.write_bytes(bytes(raw))
        status, body, _ = _get(report["links"]["recordings"][call_sid])
        assert status == 500
        assert b"fails authentication" in body and b"VOICEBOT_DATA_KEY" in body
    finally:
        stop_server(server)

    for wrong in (KEY1, ""):  # only the retired key, or none: the server says so and stops
        with pytest.raises(RuntimeError, match="exited early") as refused:
            start_server(tmp, VOICEBOT_DATA_KEY=wrong)
        assert "encrypted with key id(s) k2, which VOICEBOT_DATA_KEY does not hold" in str(
            refused.value
        )
        assert NAME not in str(refused.value)
