"""The interview report in the shape applicant-tracking systems take (a scorecard per application).

:func:`to_ats_application_result` maps the data of an ``interview.completed`` event (the interview's
ids, its status and the report of :mod:`voicebot.dialogue.report`) onto what ATS integrations
(Merge's unified ATS model, Greenhouse / Lever / Workday scorecards) expect: who (candidate and
application ids), which job, which stage, a scorecard with an overall recommendation in Merge's
``overall_recommendation`` values, per-competency scores with the evidence quotes behind them, the
answers, the transcript and links to the report page and the recordings.

Every recommendation is for a human to review (``human_review_required`` is always true): the AI
screen never rejects anybody. ``hris_bridge/README.md`` documents the mapping field by field.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from voicebot.dialogue.messages import message

SCHEMA = "voicebot.ats_application_result"
SCHEMA_VERSION = 1
STRONG_YES_AT = 85.0
"""An ``advance`` at or above this overall score is ``STRONG_YES``."""
SCREENED_STATUSES = frozenset({"completed", "knocked_out"})
"""Interview statuses in which the screen took place (others get ``NO_DECISION``)."""
RECOMMENDATIONS = ("DEFINITELY_NO", "NO", "YES", "STRONG_YES", "NO_DECISION")
"""Merge's ATS Scorecard ``overall_recommendation`` values."""


def overall_recommendation(
    recommendation: str | None, overall: float | None, status: str | None = None
) -> str:
    """Merge's ``overall_recommendation`` for the screen's recommendation.

    ``advance`` -> ``YES`` (``STRONG_YES`` at overall >= 85), ``hold`` -> ``NO_DECISION``,
    ``reject`` -> ``NO``; ``NO_DECISION`` when there is no recommendation or the screen did not
    take place (no answer, declined, hung up, opted out).

    ``DEFINITELY_NO`` is never produced: an automated screen does not get the last word.
    """
    if status is not None and status not in SCREENED_STATUSES:
        return "NO_DECISION"
    if recommendation == "advance":
        if overall is not None and overall >= STRONG_YES_AT:
            return "STRONG_YES"
        return "YES"
    if recommendation == "reject":
        return "NO"
    return "NO_DECISION"


def _iso(ts: Any) -> str | None:
    if isinstance(ts, int | float):
        return datetime.fromtimestamp(ts, tz=UTC).isoformat().replace("+00:00", "Z")
    return ts if isinstance(ts, str) else None


def _links(data: dict[str, Any], report: dict[str, Any]) -> dict[str, Any]:
    """Signed links from the event data or the report (``{"report_html", "recordings"}``)."""
    links = data.get("links") or report.get("links") or {}
    return links if isinstance(links, dict) else {}


def _competencies(scores: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for competency in scores.get("competencies") or []:
        level = competency.get("level")
        out.append(
            {
                "id": competency.get("id"),
                "name": competency.get("name"),
                "weight": competency.get("weight"),
                "score": competency.get("score"),
                "scale": {"min": 0, "max": 100},
                "level": level.get("description") if isinstance(level, dict) else None,
                "answered_questions": competency.get("answered"),
                "evidence": [
                    {"question_id": quote.get("question_id"), "quote": quote.get("quote")}
                    for quote in competency.get("evidence") or []
                    if isinstance(quote, dict) and quote.get("quote")
                ],
            }
        )
    return out


def _transcript(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "call_id": turn.get("call_sid"),
            "speaker": turn.get("speaker"),
            "text": turn.get("text"),
            "start_secs": turn.get("start"),
            "end_secs": turn.get("end"),
            "question_id": turn.get("question_id"),
        }
        for turn in report.get("transcript") or []
    ]


def _transcript_text(turns: list[dict[str, Any]], language: str | None) -> str:
    """The transcript as lines of text, the speakers named in the job's language."""

    def who(speaker: str) -> str:
        if speaker in ("bot", "candidate"):
            return message(language, f"transcript_{speaker}")
        return speaker

    return "\n".join(
        message(language, "transcript_line", who=who(t["speaker"]), text=t["text"]) for t in turns
    )


def to_ats_application_result(report_event_data: dict[str, Any]) -> dict[str, Any]:
    """Map ``interview.completed`` data (or a bare report) to an ATS application result.

    Accepts the event's ``data`` (``interview_id``, ``job_id``, ``candidate_id``,
    ``external_key``, ``status``, ``report`` and optionally ``links``) or the report itself.
    Missing parts map to ``None`` / empty lists, never to an exception.
    """
    data = report_event_data or {}
    report = data.get("report") if isinstance(data.get("report"), dict) else data
    scores = report.get("scores") or {}
    job = report.get("job") or {}
    candidate = report.get("candidate") or {}
    status = data.get("status") or report.get("status")
    recommendation = report.get("recommendation") or scores.get("recommendation")
    overall = scores.get("overall")
    links = _links(data, report)
    recording_links = links.get("recordings") or {}
    transcript = _transcript(report)
    external_key = data.get("external_key") or report.get("external_key")
    screened = status is None or status in SCREENED_STATUSES
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "interview_id": data.get("interview_id") or report.get("interview_id"),
        "candidate": {
            "remote_id": data.get("candidate_id") or candidate.get("id"),
            "name": candidate.get("name"),
            "timezone": candidate.get("timezone"),
        },
        "application": {"remote_id": external_key},
        "job": {"remote_id": data.get("job_id") or job.get("id"), "title": job.get("title")},
        "stage": "ai_screen_completed" if screened else "ai_screen_not_completed",
        "interview_status": status,
        "outcome": report.get("outcome"),
        "completed_at": _iso(report.get("generated_at")),
        "consent": report.get("consent"),
        "opted_out": report.get("opted_out"),
        "scorecard": {
            "interview_type": "ai_phone_screen",
            "overall_recommendation": overall_recommendation(recommendation, overall, status),
            "overall_score": overall,
            "score_scale": {"min": 0, "max": 100},
            "ai_recommendation": recommendation,
            "human_review_required": True,
            "competencies": _competencies(scores),
            "reasons": list(scores.get("reasons") or []),
            "knockouts": [
                {
                    "question_id": k.get("question_id"),
                    "answer": k.get("answer"),
                    "passed": k.get("passed"),
                }
                for k in scores.get("knockouts") or []
                if isinstance(k, dict)
            ],
        },
        "answers": [
            {
                "question_id": q.get("id"),
                "question": q.get("prompt"),
                "competency": q.get("competency"),
                "answered": q.get("answered"),
                "skipped": q.get("skipped"),
                "answer": q.get("answer"),
                "follow_up_answer": q.get("follow_up_answer"),
                "via": q.get("via"),
            }
            for q in report.get("questions") or []
        ],
        "transcript": transcript,
        "transcript_text": _transcript_text(transcript, job.get("language")),
        "transcript_url": links.get("report_html") or links.get("transcript"),
        "recordings": [
            {
                "call_id": call.get("call_sid"),
                "started_at": _iso(call.get("started_at")),
                "duration_secs": call.get("duration_secs"),
                "end_reason": call.get("end_reason"),
                "url": recording_links.get(call.get("call_sid")),
            }
            for call in report.get("calls") or []
        ],
        "links_expire_at": _iso(links.get("expires_at")),
    }
