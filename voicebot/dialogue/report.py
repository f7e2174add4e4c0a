"""The interview report: what a recruiter reads, and what the HR system receives, after a call.

Built from what the store holds once the call has ended: the job script, every call of the
interview with its turns (the candidate's answers by question, follow-up answers, keypad answers),
the call outcomes (knock-outs, opt-out, skipped questions) and each answer's prosody. Scoring
(:mod:`voicebot.dialogue.scoring`) runs in a worker thread: word segmentation is CPU work.

The report is plain JSON (``GET /api/interviews/{id}``, the ``interview.completed`` event) and is
rendered as a page by :func:`voicebot.dialogue.report_html.render_report`. Its words for people
are in the job's language (:mod:`voicebot.dialogue.messages`); a Chinese job's report is in
Simplified characters throughout. Every recommendation in
it is for a human to review; prosody is descriptive.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from voicebot.dialogue.messages import catalogue_language, message, simplified
from voicebot.dialogue.script import JobScript
from voicebot.store.database import Store

REPORT_VERSION = 1

OUTCOME_STATUS = {
    "completed": "completed",
    "consent_declined": "declined",
    "no_response": "no_response",
    "caller_hangup": "incomplete",
    "knocked_out": "knocked_out",
    "opted_out": "opted_out",
    "server_restart": "incomplete",
    "stream_lost": "incomplete",
}
"""Interview status for the end reason of its latest call. A call the server process died in
(``server_restart``) ended early like a hang-up, unless what was stored of it says otherwise (see
:func:`interview_status`)."""


def _answers_by_question(calls: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The candidate's words per question across calls (the latest call's answer wins)."""
    answers: dict[str, dict[str, Any]] = {}
    for call in calls:
        seen_in_call: set[str] = set()
        for turn in call["turns"]:
            question_id = turn.get("question_id")
            if turn["speaker"] != "candidate" or not question_id:
                continue
            if question_id not in seen_in_call:
                # A new call's answer replaces an earlier call's (the candidate was called back).
                answers[question_id] = {
                    "text": [],
                    "follow_up": [],
                    "via": turn.get("via", "voice"),
                    "call_sid": call["call_sid"],
                    "start": turn["start"],
                    "end": turn["end"],
                    "prosody": [],
                }
                seen_in_call.add(question_id)
            entry = answers[question_id]
            (entry["follow_up"] if turn.get("follow_up") else entry["text"]).append(turn["text"])
            entry["end"] = turn["end"]
            if turn.get("prosody"):
                entry["prosody"].append(turn["prosody"])
    return answers


def _prosody_of(samples: list[dict[str, Any]]) -> dict[str, Any] | None:
    from voicebot.audio.prosody import ProsodyFeatures, aggregate

    features = [ProsodyFeatures(**sample) for sample in samples]
    combined = aggregate(features)
    return None if combined is None else combined.to_dict()


def _score(
    script: JobScript,
    answers: dict[str, dict[str, Any]],
    knockouts: list[dict[str, Any]],
    call_prosody: dict[str, Any] | None,
) -> tuple[dict[str, Any], str]:
    from voicebot.dialogue.scoring import (
        AnswerText,
        KnockoutResult,
        candidate_feedback,
        score_interview,
    )

    texts = [
        AnswerText(
            question_id=question_id,
            text=" ".join(entry["text"]),
            follow_up_text=" ".join(entry["follow_up"]),
            via=entry["via"],
        )
        for question_id, entry in answers.items()
    ]
    results = [
        KnockoutResult(
            question_id=k["question_id"],
            expected=k["expected"],
            answer=k["answer"],
            passed=k["passed"],
        )
        for k in knockouts
    ]
    score = score_interview(script, texts, results, call_prosody)
    return score.to_dict(), candidate_feedback(script, score)


async def build_report(store: Store, script: JobScript, interview_id: str) -> dict[str, Any]:
    """Build the report of one interview from the store (scoring in a worker thread).

    Links (the report page, recordings) are signed and expire, so they are not part of the
    stored report: the API adds fresh ones each time it serves it.
    """
    interview = await store.get_interview(interview_id)
    if interview is None:
        raise KeyError(interview_id)
    calls = []
    for summary in await store.calls_for_interview(interview_id):
        call = await store.get_call(summary["call_sid"])
        if call is not None:
            calls.append(call)
    answers = _answers_by_question(calls)
    knockouts: dict[str, dict[str, Any]] = {}
    skipped: set[str] = set()
    opt_out = None
    for call in calls:
        outcome = call.get("outcome") or {}
        knockouts.update(outcome.get("knockouts") or {})
        skipped.update(outcome.get("skipped") or {})
        if outcome.get("opt_out"):
            opt_out = {"call_sid": call["call_sid"], **outcome["opt_out"].get("request", {})}
    skipped -= set(answers)  # answered on a later call
    prosody_samples = [sample for entry in answers.values() for sample in entry["prosody"]]
    call_prosody = await asyncio.to_thread(_prosody_of, prosody_samples)
    scores, feedback = await asyncio.to_thread(
        _score, script, answers, list(knockouts.values()), call_prosody
    )
    questions = []
    for question in script.questions:
        entry = answers.get(question.id)
        questions.append(
            {
                "id": question.id,
                "prompt": question.prompt,
                "competency": question.competency,
                "answered": entry is not None,
                "skipped": question.id in skipped,
                "answer": None if entry is None else " ".join(entry["text"]),
                "follow_up_answer": (
                    None
                    if entry is None or not entry["follow_up"]
                    else " ".join(entry["follow_up"])
                ),
                "via": None if entry is None else entry["via"],
                "knockout": knockouts.get(question.id),
                "prosody": (
                    None if entry is None or not entry["prosody"] else _prosody_of(entry["prosody"])
                ),
            }
        )
    last = calls[-1] if calls else None
    candidate = {
        "id": interview["candidate_id"],
        "name": interview["candidate_name"],
        "timezone": interview["candidate_timezone"],
    }
    report = {
        "report_version": REPORT_VERSION,
        "interview_id": interview_id,
        "generated_at": time.time(),
        "job": {"id": script.id, "title": script.title, "language": script.language},
        "candidate": candidate,
        "outcome": None if last is None else last.get("end_reason"),
        "consent": None if interview["consent"] is None else bool(interview["consent"]),
        "opted_out": bool(interview.get("opted_out")) or opt_out is not None,
        "opt_out": opt_out,
        "questions": questions,
        "scores": scores,
        "recommendation": scores["recommendation"],
        "human_review_required": True,
        "prosody": {
            "call": call_prosody,
            "descriptive_only": not script.prosody_in_recommendation,
            "note": message(
                script.language,
                "prosody_note",
                exception=(
                    message(script.language, "prosody_note_exception")
                    if script.prosody_in_recommendation
                    else ""
                ),
            ),
        },
        "calls": [
            {
                "call_sid": call["call_sid"],
                "end_reason": call.get("end_reason"),
                "started_at": call.get("started_at"),
                "duration_secs": call.get("duration_secs"),
            }
            for call in calls
        ],
        "transcript": [
            {
                "call_sid": call["call_sid"],
                "speaker": turn["speaker"],
                "text": turn["text"],
                "start": turn["start"],
                "end": turn["end"],
                "question_id": turn.get("question_id"),
                "prompt_id": turn.get("prompt_id"),
                "via": turn.get("via", "voice"),
            }
            for call in calls
            for turn in call["turns"]
        ],
        "candidate_feedback": feedback,
    }
    if catalogue_language(script.language) == "zh":
        # Script, answers, quotes and transcript in Simplified characters; the candidate's
        # name stays as the HR system spells it.
        report = await asyncio.to_thread(simplified, report)
        report["candidate"] = candidate
    return report


def interview_status(end_reason: str | None, report: dict[str, Any] | None = None) -> str:
    """The interview's status once its latest call ended for ``end_reason``.

    For a call the server process died in (``server_restart``) the stored ``report`` decides what
    the call had already settled before the crash: an opt-out, a failed knock-out or a refused
    consent ends the interview as it would have ended the call; otherwise it is ``incomplete``
    (the candidate may be called again), as when a candidate hangs up early.
    """
    if end_reason == "server_restart" and report is not None:
        if report.get("opted_out"):
            return "opted_out"
        if any((q.get("knockout") or {}).get("passed") is False for q in report["questions"]):
            return "knocked_out"
        if report.get("consent") is False:
            return "declined"
    return OUTCOME_STATUS.get(end_reason or "", "incomplete")
