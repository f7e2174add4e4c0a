"""End to end over real sockets with the real models: a Twilio-compatible caller holds a whole
scripted interview, answering with human speech through the 8 kHz mu-law phone path, while another
stream on the same server floods it with malformed messages.

Checks what users rely on: the stored transcript matches what the candidate said, the call and
interview are stored with consent and outcome, the recording has both channels on one clock, and
a bad stream never disturbs a good one.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import secrets
import wave
from pathlib import Path
from urllib.parse import urlencode

import jiwer
import numpy as np
import pytest
from websockets.asyncio.client import connect

from loadtest.caller import parse_twiml
from tests.conftest import API_TOKEN, TWILIO_AUTH_TOKEN
from tests.e2e.monitor_helpers import interview_call as run_interview
from voicebot.telephony.signature import compute_twilio_signature

pytestmark = pytest.mark.e2e

ANSWERS = {
    "en_jfk.wav": "And so my fellow Americans, ask not what your country can do for you, ask what "
    "you can do for your country.",
    "en_librispeech_1995-1837-0001.wav": "It was the first great sorrow of his life. It was not "
    "so much the loss of the cotton itself, but the fantasy, "
    "the hopes, the dreams built around it.",
    "en_speaker_a.wav": "He began a confused complaint against the wizard, who had vanished "
    "behind the curtain on the left.",
    "en_speaker_b.wav": "The horizon seems extremely distant.",
}


def normalise(text: str) -> str:
    text = re.sub(r"[^a-z0-9' ]+", " ", text.lower())
    return " ".join(text.split())


async def post_voice_webhook(url: str, interview_id: str, call_sid: str) -> dict[str, str]:
    """POST the signed voice webhook as Twilio would; returns the TwiML's stream parameters."""
    import aiohttp

    voice_url = f"{url}/twilio/voice?{urlencode({'interview_id': interview_id})}"
    form = {
        "CallSid": call_sid,
        "AccountSid": "AC" + "0" * 32,
        "From": "+15550100",
        "To": "+15550199",
        "CallStatus": "in-progress",
        "Direction": "inbound",
    }
    signature = compute_twilio_signature(TWILIO_AUTH_TOKEN, voice_url, form)
    async with aiohttp.ClientSession() as session:
        async with session.post(
            voice_url, data=form, headers={"X-Twilio-Signature": signature}
        ) as response:
            assert response.status == 200
            instruction = parse_twiml(await response.text())
    return {"url": instruction.stream_url, **instruction.parameters}


def start_message(stream_sid: str, call_sid: str, parameters: dict[str, str]) -> str:
    return json.dumps(
        {
            "event": "start",
            "sequenceNumber": "1",
            "streamSid": stream_sid,
            "start": {
                "streamSid": stream_sid,
                "accountSid": "AC" + "0" * 32,
                "callSid": call_sid,
                "tracks": ["inbound"],
                "customParameters": parameters,
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            },
        }
    )


def malformed_messages(stream_sid: str) -> list[str | bytes]:
    """One of each kind of bad input a carrier stream can carry."""
    good_audio = base64.b64encode(b"\xff" * 160).decode()
    return [
        "{not json",
        "[1, 2, 3]",
        json.dumps({"no_event": True}),
        json.dumps({"event": "surprise", "streamSid": stream_sid}),
        json.dumps({"event": "media", "streamSid": stream_sid, "media": {"payload": "%%%"}}),
        json.dumps({"event": "media", "streamSid": stream_sid, "media": {"payload": ""}}),
        json.dumps(
            {
                "event": "media",
                "streamSid": stream_sid,
                "media": {"payload": base64.b64encode(b"\xff" * 4000).decode()},
            }
        ),
        json.dumps(
            {"event": "media", "streamSid": "MZ-somebody-else", "media": {"payload": good_audio}}
        ),
        json.dumps({"event": "dtmf", "streamSid": stream_sid, "dtmf": {}}),
        json.dumps({"event": "mark", "streamSid": stream_sid}),
        json.dumps({"event": "start", "streamSid": stream_sid, "start": {}}),
        "x" * 100_000,
        b"\x00\x01binary",
    ]


async def flood_stream(url: str, interview_id: str, rounds: int) -> int:
    """Open a valid stream, then send ``rounds`` x every kind of malformed message."""
    call_sid = "CAflood" + "0" * 27
    stream = await post_voice_webhook(url, interview_id, call_sid)
    stream_url = stream.pop("url")
    sent = 0
    async with connect(stream_url, max_size=None) as ws:
        await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        await ws.send(start_message("MZflood", call_sid, stream))
        for _ in range(rounds):
            for message in malformed_messages("MZflood"):
                await ws.send(message)
                sent += 1
            await asyncio.sleep(0.05)
        await ws.send(
            json.dumps({"event": "stop", "streamSid": "MZflood", "stop": {"callSid": call_sid}})
        )
    return sent


async def watch_live(base_url: str, call_sid: str) -> list[dict]:
    """Watch a call's live feed as a recruiter's client would, from as soon as it is live."""
    from websockets.exceptions import InvalidStatus

    url = base_url.replace("http", "ws", 1) + f"/api/calls/{call_sid}/live"
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    for _ in range(200):
        try:
            async with connect(url, additional_headers=headers) as ws:
                return [json.loads(message) async for message in ws]
        except InvalidStatus as error:
            assert error.response.status_code == 404  # not live yet
            await asyncio.sleep(0.05)
    raise AssertionError("the call never became live")


@pytest.fixture(scope="module")
def interview_call(server, audio_dir):
    """One whole interview by voice (consent by pressing 1), with a flooding stream beside it."""
    interview_id = server.create_interview()
    flood_interview = server.create_interview()
    status, before = server.request("GET", "/metrics", token=None)

    call_sid = "CA" + secrets.token_hex(16)

    async def scenario():
        call = asyncio.create_task(
            run_interview(server.url, interview_id, call_sid, audio_dir, answers=ANSWERS)
        )
        watcher = asyncio.create_task(watch_live(server.url, call_sid))
        await asyncio.sleep(2)
        flooded = await flood_stream(server.url, flood_interview, rounds=20)
        return await call, flooded, await watcher

    result, flooded, live = asyncio.run(scenario())
    call = server.wait_for_call(result.call_sid)
    interview = server.wait_for_report(interview_id)
    _, metrics_text = server.request("GET", "/metrics", token=None)
    return {
        "result": result,
        "call": call,
        "interview": interview,
        "flooded": flooded,
        "live": live,
        "metrics": metrics_text,
        "server": server,
    }


def test_the_call_runs_to_the_scripted_end(interview_call):
    result = interview_call["result"]
    assert result.error is None, result.problems
    assert result.closed_by == "server"
    call = interview_call["call"]
    assert call["status"] == "completed" and call["end_reason"] == "completed"
    interview = interview_call["interview"]
    assert interview["status"] == "completed"
    assert interview["consent"] is True and interview["consent_via"] == "dtmf"
    assert interview["attempts"] == 1
    bot_prompts = [t["prompt_id"] for t in call["turns"] if t["speaker"] == "bot"]
    assert bot_prompts[:2] == ["greeting", "consent"]
    assert bot_prompts[-1] == "closing"
    # Every question was heard whole (a question cut by a false end of turn is said again).
    heard = {
        t["prompt_id"]
        for t in call["turns"]
        if t["speaker"] == "bot" and t["prompt_id"].startswith("q:") and t["mark_echoed"]
    }
    assert len(heard) == 4
    # Every prompt played to its end was confirmed by the carrier's mark echo.
    assert all(
        t["mark_echoed"] for t in call["turns"] if t["speaker"] == "bot" and not t["interrupted"]
    )
    greeting = call["turns"][0]["text"]
    assert "AI" in greeting and "record" in greeting.lower()


def answers_by_question(turns: list[dict]) -> dict[str, str]:
    """Each question's answer: its candidate turns joined in order (an answer the bot cut into
    by starting the next question too early is stored in two parts, both under its question)."""
    answers: dict[str, list[str]] = {}
    for turn in turns:
        if turn["speaker"] == "candidate" and turn["question_id"]:
            answers.setdefault(turn["question_id"], []).append(turn["text"])
    return {question: " ".join(parts) for question, parts in answers.items()}


def test_stored_transcript_matches_what_the_candidate_said(interview_call):
    turns = interview_call["call"]["turns"]
    answers = answers_by_question(turns)
    assert len(answers) == len(ANSWERS)
    for text, (clip, truth) in zip(answers.values(), ANSWERS.items(), strict=True):
        error = jiwer.wer(normalise(truth), normalise(text))
        assert error <= 0.15, (clip, text, error)
    for turn in turns:
        if turn["speaker"] == "candidate":
            assert turn["asr_latency"] > 0 and turn["end"] > turn["start"]
    # The interview read-back carries the same transcript.
    transcript = interview_call["interview"]["transcript"]
    assert [t["text"] for t in transcript if t["speaker"] == "candidate"] == [
        t["text"] for t in turns if t["speaker"] == "candidate"
    ]


def voiced_seconds(channel: np.ndarray, start: float, end: float, rate: int = 8000) -> float:
    """Seconds of 20 ms frames in [start, end) whose level is clearly above silence."""
    segment = channel[int(start * rate) : int(end * rate)].astype(np.float64)
    frames = segment[: len(segment) // 160 * 160].reshape(-1, 160)
    if not len(frames):
        return 0.0
    rms = np.sqrt(np.mean(frames * frames, axis=1))
    return float(np.sum(rms > 300) * 0.02)


def test_recording_has_both_sides_aligned_on_the_call_clock(interview_call):
    call = interview_call["call"]
    directory = Path(call["recording_dir"])
    with wave.open(str(directory / "call.wav")) as wav:
        assert wav.getnchannels() == 2 and wav.getframerate() == 8000
        audio = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16).reshape(-1, 2)
    candidate, bot = audio[:, 0], audio[:, 1]
    assert len(audio) / 8000 == pytest.approx(call["duration_secs"], abs=1.5)
    for turn in call["turns"]:
        start, end = turn["start"], turn["end"]
        length = end - start
        if turn["speaker"] == "candidate":
            # The candidate speaks in the left channel during the stored turn ...
            assert voiced_seconds(candidate, start, end) > 0.5 * length, turn
            # ... and the bot is silent then, but for a prompt cut by barge-in within 0.5 s.
            assert voiced_seconds(bot, start + 0.2, end - 0.2) < 0.6, turn
        else:
            assert voiced_seconds(bot, start, end) > 0.5 * length, turn
            assert voiced_seconds(candidate, start, end) < 0.3, turn
    events = [
        json.loads(line)["event"]
        for line in (directory / "timeline.jsonl").read_text().splitlines()
    ]
    assert events[0] == "call_started" and events[-1] == "call_ended"
    assert {"prompt_started", "speech_ended", "transcript_final", "hangup"} <= set(events)


def test_a_flood_of_malformed_messages_is_counted_and_harms_no_other_call(interview_call):
    assert interview_call["flooded"] >= 200
    metrics = interview_call["metrics"]
    counted = {
        match.group(1): float(match.group(2))
        for match in re.finditer(r'voicebot_protocol_errors_total\{code="([^"]+)"\} (\S+)', metrics)
    }
    assert sum(counted.values()) >= interview_call["flooded"] - 20
    assert len(counted) >= 6, counted  # distinct error codes: each kind is told apart
    server = interview_call["server"]
    assert server.process.poll() is None
    assert server.request("GET", "/healthz", token=None)[0] == 200
    assert "Traceback" not in server.log_text()


def fetch(url: str) -> tuple[int, bytes, str]:
    """GET a URL without the API token (as a recruiter's browser opening a report link)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as error:
        return error.code, error.read(), ""


def test_a_report_is_ready_after_the_call_with_scores_evidence_and_prosody(interview_call):
    interview = interview_call["interview"]
    history = [h["status"] for h in interview["status_history"]]
    assert history == ["pending", "in_progress", "scoring", "completed"]
    report = interview["report"]
    assert report["interview_id"] == interview["id"]
    assert report["job"]["id"] == "customer_service_en"
    assert report["human_review_required"] is True
    assert report["recommendation"] in ("advance", "hold", "reject")
    # Every answer is in the report under its question, with prosody of the real speech.
    answered = [q for q in report["questions"] if q["answered"]]
    assert len(answered) == len(ANSWERS)
    for question, truth in zip(answered, ANSWERS.values(), strict=True):
        assert jiwer.wer(normalise(truth), normalise(question["answer"])) <= 0.15
        prosody = question["prosody"]
        assert 80 <= prosody["speech_rate"] <= 260 and prosody["rate_unit"] == "wpm"
        assert 60 <= prosody["pitch_median_hz"] <= 400
    assert report["prosody"]["descriptive_only"] is True
    # Scores per competency of the job, each with its level and evidence (or a reason why not).
    scores = report["scores"]
    assert {c["id"] for c in scores["competencies"]} == {
        q["competency"] for q in report["questions"] if q["competency"]
    }
    for competency in scores["competencies"]:
        assert 0 <= competency["score"] <= 100
        for evidence in competency["evidence"]:
            assert evidence["quote"] in question_answers(report)[evidence["question_id"]]
    assert 0 <= scores["overall"] <= 100
    assert report["candidate_feedback"] and "%" not in report["candidate_feedback"]


def question_answers(report: dict) -> dict[str, str]:
    return {
        q["id"]: " ".join(filter(None, [q["answer"], q["follow_up_answer"]]))
        for q in report["questions"]
    }


def test_the_report_page_and_recording_open_from_their_signed_links(interview_call):
    interview = interview_call["interview"]
    links = interview["links"]
    status, page, content_type = fetch(links["report_html"])
    assert status == 200 and content_type.startswith("text/html")
    html = page.decode()
    assert "Suggestion for human review" in html
    assert interview["candidate"]["name"] in html
    for question in interview["report"]["questions"]:
        assert question["prompt"].replace("'", "&#x27;") in html
    ((call_sid, recording_url),) = links["recordings"].items()
    assert call_sid == interview_call["call"]["call_sid"]
    status, body, content_type = fetch(recording_url)
    assert status == 200 and body[:4] == b"RIFF"
    # A link for one interview does not open another's report, and a forged one opens nothing.
    other = interview_call["server"].create_interview()
    token = links["report_html"].split("token=")[1]
    base = interview_call["server"].url
    assert fetch(f"{base}/interviews/{other}/report?token={token}")[0] == 401
    assert fetch(links["report_html"][:-3] + "AAA")[0] == 401


def test_a_recruiter_watches_the_call_live(interview_call):
    live = interview_call["live"]
    kinds = [event["type"] for event in live]
    assert kinds[0] == "snapshot" and kinds[-1] == "call.ended"
    assert live[0]["data"]["job_id"] == "customer_service_en"
    positions = [e["data"]["question_id"] for e in live if e["type"] == "script.position"]
    assert [q for q in positions if q] == [
        q["id"] for q in interview_call["interview"]["report"]["questions"]
    ]
    # The candidate's words arrive live, the same as stored.
    finals = [e["data"]["text"] for e in live if e["type"] == "transcript.final"]
    stored = [t["text"] for t in interview_call["call"]["turns"] if t["speaker"] == "candidate"]
    assert finals == stored[: len(finals)] and len(finals) >= len(ANSWERS)
    # Prosody meters follow the real voice while it speaks.
    samples = [e["data"] for e in live if e["type"] == "prosody.sample"]
    speaking = [s for s in samples if s["speaking"] and s["pitch_hz"]]
    assert len(speaking) >= 10
    assert all(60 <= s["pitch_hz"] <= 400 for s in speaking)
    assert {"question.answered", "bot.speaking", "speech.started"} <= set(kinds)


def test_the_hr_system_gets_the_report_as_a_signed_webhook(interview_call):
    """Embedded mode: the server's own bridge delivers to the HR endpoint (verified signatures)."""
    from hris_bridge.mapping import to_ats_application_result

    server, interview = interview_call["server"], interview_call["interview"]
    receiver = server.webhooks
    receiver.wait_for(
        lambda r: any(
            p["type"] == "interview.completed" for p in r.of(interview_id=interview["id"])
        )
    )
    payloads = receiver.of(interview_id=interview["id"])
    kinds = [p["type"] for p in payloads]
    assert kinds[0] == "candidate.status_changed" and payloads[0]["data"]["status"] == "invited"
    assert kinds.count("question.answered") == len(ANSWERS)
    completed = next(p for p in payloads if p["type"] == "interview.completed")
    assert completed["data"]["report"]["interview_id"] == interview["id"]
    assert completed["data"]["report"]["recommendation"] == interview["report"]["recommendation"]
    # What an ATS takes, with a recording link that opens without the API token.
    result = to_ats_application_result(completed["data"])
    assert result["scorecard"]["overall_recommendation"] in (
        "YES",
        "STRONG_YES",
        "NO",
        "NO_DECISION",
    )
    assert result["scorecard"]["human_review_required"] is True
    recording = result["recordings"][0]["url"]
    status, body, _ = fetch(recording)
    assert status == 200 and body[:4] == b"RIFF"
    assert receiver.rejected == 0
    assert max(receiver.arrivals.values()) >= 1
