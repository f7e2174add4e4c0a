"""Erasure, end to end: a real server, a real call with the real models, then the candidate erased.

What a data-protection officer relies on: after ``DELETE /api/candidates/{id}`` no file under the
server's data and recordings directories (the store, the event log, the HR bridge's store, the
recordings) holds the candidate's name, phone number or a phrase of their answers; the API
answers 410 for the interview and the tombstone for a second DELETE; the HR system is told by a
``candidate.erased`` webhook; every read and the erasure are in the audit log, whose chain
``voicebot audit verify`` finds intact. An erasure during the candidate's call is refused (409)
and erases nothing.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import API_TOKEN, CLIENTS, ROOT
from tests.e2e.monitor_helpers import interview_call

pytestmark = pytest.mark.e2e

NAME = "Zephyrine Quillfeather"
PHONE = "+14155550177"
CANDIDATE_ID = "erase-me-0001"


def files_containing(roots: list[Path], text: str) -> list[Path]:
    needle = text.encode()
    return [
        path
        for root in roots
        for path in root.rglob("*")
        if path.is_file() and needle in path.read_bytes()
    ]


def test_an_erased_candidate_leaves_no_trace_and_the_hr_system_is_told(server, audio_dir):
    roots = [server.data_dir, server.recordings_dir]
    interview_id = server.create_interview(id=CANDIDATE_ID, name=NAME, phone=PHONE)
    call_sid = "CA" + "e" * 32

    async def call_with_an_erasure_attempt():
        call = asyncio.create_task(interview_call(server.url, interview_id, call_sid, audio_dir))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status, interview = await asyncio.to_thread(
                server.request, "GET", f"/api/interviews/{interview_id}"
            )
            if interview["status"] == "in_progress":
                break
            await asyncio.sleep(0.3)
        refused = await asyncio.to_thread(
            server.request, "DELETE", f"/api/candidates/{CANDIDATE_ID}"
        )
        return refused, await call

    (refused_status, refused), result = asyncio.run(call_with_an_erasure_attempt())
    assert refused_status == 409 and refused["error"]["code"] == "candidate_busy", refused
    assert result.error is None, result.problems
    interview = server.wait_for_report(interview_id)
    answer = next(t["text"] for t in interview["transcript"] if t["speaker"] == "candidate")
    phrase = " ".join(answer.split()[:4])
    assert len(phrase) > 10
    # the HR system has had the interview's events (the bridge is idle before the erasure)
    server.webhooks.wait_for(
        lambda r: any(p["type"] == "interview.completed" for p in r.of(interview_id=interview_id))
    )
    # reads that the audit log must show: the report page by its signed link, the recording
    with urllib.request.urlopen(interview["links"]["report_html"], timeout=30) as page:
        assert page.status == 200
    recording_url = interview["links"]["recordings"][call_sid]
    with urllib.request.urlopen(recording_url, timeout=30) as wav:
        assert wav.read(4) == b"RIFF"
    for secret in (NAME, PHONE, phrase):  # the search finds them before the erasure
        assert files_containing(roots, secret), secret

    other_client = CLIENTS["acme_ats"]
    status, body = server.request("DELETE", f"/api/candidates/{CANDIDATE_ID}", token=other_client)
    assert status == 404, body  # not this client's candidate: nothing erased, nothing told
    status, erased = server.request("DELETE", f"/api/candidates/{CANDIDATE_ID}")
    assert status == 200, erased
    assert erased["status"] == "erased"
    (stone,) = erased["erasures"]
    assert stone["interview_ids"] == [interview_id] and stone["calls"] == 1
    assert CANDIDATE_ID not in str(stone) and NAME not in str(stone)

    for secret in (NAME, PHONE, phrase):
        assert files_containing(roots, secret) == [], secret
    assert not (server.recordings_dir / call_sid).exists()

    status, body = server.request("GET", f"/api/interviews/{interview_id}")
    assert status == 410 and body["error"]["code"] == "erased"
    status, body = server.request("GET", f"/api/calls/{call_sid}")
    assert status == 404
    status, again = server.request("DELETE", f"/api/candidates/{CANDIDATE_ID}")
    assert status == 200 and again["status"] == "already_erased"
    assert again["erasures"] == erased["erasures"]

    def erased_events(receiver) -> list[dict]:
        return [
            p for p in receiver.of(candidate_id=CANDIDATE_ID) if p["type"] == "candidate.erased"
        ]

    server.webhooks.wait_for(erased_events)
    told = erased_events(server.webhooks)
    data = told[0]["data"]
    assert data["interviews"][0]["interview_id"] == interview_id
    assert "recordings" in data["classes"] and data["erased_by"] == "api:admin"
    assert NAME not in str(told) and PHONE not in str(told)

    status, page = server.request("GET", f"/api/audit?interview_id={interview_id}&limit=500")
    assert status == 200
    done = {(e["actor"], e["action"]) for e in page["entries"]}
    assert {
        ("api:admin", "interview.create"),
        ("api:admin", "interview.read"),
        ("link:report", "report_page.open"),
        ("link:recording", "recording.open"),
    } <= done
    status, page = server.request("GET", "/api/audit?limit=500")
    assert ("api:admin", "candidate.erase") in {(e["actor"], e["action"]) for e in page["entries"]}
    for entry in page["entries"]:
        assert NAME not in str(entry) and PHONE not in str(entry) and phrase not in str(entry)
    status, body = server.request("GET", "/api/audit", token=other_client)
    assert status == 403
    status, body = server.request("GET", "/api/audit?limit=0")
    assert status == 400 and "limit" in body["error"]["message"]
    status, body = server.request("GET", f"/api/audit?after={10**30}")
    assert status == 400 and "after" in body["error"]["message"]
    status, body = server.request("GET", "/api/audit?after=first")
    assert status == 400 and "integers" in body["error"]["message"]
    status, first = server.request("GET", "/api/audit?limit=2")
    assert status == 200 and [e["seq"] for e in first["entries"]] == [1, 2]
    status, second = server.request("GET", f"/api/audit?after={first['next_after']}&limit=2")
    assert [e["seq"] for e in second["entries"]] == [3, 4]
    assert second["entries"][0]["prev_hash"] == first["entries"][1]["hash"]

    verify = subprocess.run(
        [sys.executable, "-m", "voicebot.cli", "audit", "verify"],
        cwd=ROOT,
        env={**os.environ, "VOICEBOT_DATA_DIR": str(server.data_dir)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert API_TOKEN not in verify.stdout
