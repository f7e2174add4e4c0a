"""The interview report as one HTML page a recruiter reads (on a desk or on a phone).

Self-contained (inline CSS, no scripts, no external assets), every value escaped. Shows the
recommendation as a suggestion for human review, the per-competency scores with the transcript
quotes and keywords behind them, knock-outs, the answers question by question, descriptive prosody,
the transcript, recording links and the candidate-facing thank-you text.
"""

from __future__ import annotations

import datetime as dt
from html import escape
from typing import Any

_RECOMMENDATION_LABEL = {
    "advance": "Advance",
    "hold": "Hold",
    "reject": "Do not advance",
}

_CSS = """
body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,'Noto Sans SC',sans-serif;
margin:0;background:#f5f6f8;color:#1d2330}
main{max-width:920px;margin:0 auto;padding:16px}
h1{font-size:1.4em;margin:.2em 0}h2{font-size:1.1em;margin:1.4em 0 .5em}
section,.card{background:#fff;border-radius:8px;padding:12px 16px;margin:10px 0;
box-shadow:0 1px 2px rgba(0,0,0,.08)}
.muted{color:#667085}.badge{display:inline-block;padding:2px 10px;border-radius:12px;
font-weight:600}.advance{background:#d1fadf;color:#05603a}.hold{background:#fef0c7;
color:#93370d}.reject{background:#fee4e2;color:#912018}
.bar{height:8px;background:#e4e7ec;border-radius:4px;overflow:hidden}
.bar>span{display:block;height:100%;background:#2e90fa}
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:4px 6px;
border-bottom:1px solid #eaecf0;vertical-align:top}
blockquote{margin:4px 0;padding:4px 10px;border-left:3px solid #2e90fa;background:#f0f7ff}
.kw{display:inline-block;background:#eef4ff;border-radius:4px;padding:0 6px;margin:2px}
.bot{color:#475467}.candidate{color:#101828;font-weight:500}
.review{border-left:4px solid #f79009}
@media (max-width:600px){main{padding:8px}td,th{font-size:.92em}}
"""


def _fmt_time(epoch: float | None) -> str:
    if not epoch:
        return ""
    return dt.datetime.fromtimestamp(epoch, tz=dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _num(value: Any, digits: int = 0, unit: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        value = round(value, digits) if digits else round(value)
    return f"{value}{unit}"


def _competency_rows(scores: dict[str, Any]) -> str:
    rows = []
    for comp in scores.get("competencies", []):
        score = comp.get("score", 0)
        level = comp.get("level") or {}
        quotes = (
            "".join(
                f"<blockquote>“{escape(e.get('quote', ''))}”"
                f" <span class=muted>({escape(str(e.get('question_id', '')))})</span></blockquote>"
                for e in comp.get("evidence", [])
            )
            or "<p class=muted>No evidence in the answers.</p>"
        )
        by_sound = set(comp.get("keywords_pinyin") or ())
        keywords = "".join(
            f"<span class=kw title='matched by sound only (pinyin): check the quote'>"
            f"{escape(str(k))} (pinyin)</span>"
            if k in by_sound
            else f"<span class=kw>{escape(str(k))}</span>"
            for k in comp.get("keywords_hit", [])
        )
        structure = ", ".join(
            escape(str(m)) for m in (comp.get("structure") or {}).get("markers", [])
        )
        rows.append(
            f"<div class=card><b>{escape(comp.get('name', comp.get('id', '')))}</b>"
            f" <span class=muted>weight {escape(_num(comp.get('weight'), 2))}</span>"
            f"<div style='display:flex;gap:10px;align-items:center'>"
            f"<div class=bar style='flex:1'><span style='width:{int(score)}%'></span></div>"
            f"<b>{int(score)}</b></div>"
            f"<p>{escape(level.get('description', ''))}</p>"
            f"{quotes}"
            + (f"<p>Keywords: {keywords}</p>" if keywords else "")
            + (f"<p class=muted>Structure: {structure}</p>" if structure else "")
            + f"<p class=muted>Completeness {int(100 * (comp.get('completeness') or 0))}%</p>"
            "</div>"
        )
    return "".join(rows)


def _question_rows(report: dict[str, Any]) -> str:
    rows = []
    for q in report.get("questions", []):
        answer = q.get("answer")
        if q.get("skipped") and not answer:
            answer_html = "<i class=muted>No answer (skipped after silence)</i>"
        elif not answer:
            answer_html = "<i class=muted>Not asked or not answered</i>"
        else:
            answer_html = escape(answer)
            if q.get("via") == "dtmf":
                answer_html += " <span class=muted>(keypad)</span>"
        if q.get("follow_up_answer"):
            answer_html += (
                f"<br><span class=muted>Follow-up:</span> {escape(q['follow_up_answer'])}"
            )
        knockout = q.get("knockout")
        if knockout:
            passed = knockout.get("passed")
            verdict = {True: "passed", False: "FAILED", None: "unclear"}[passed]
            answer_html += (
                f"<br><b>Knock-out {verdict}</b> <span class=muted>(needs "
                f"{escape(str(knockout.get('expected')))}, answered "
                f"{escape(str(knockout.get('answer')))})</span>"
            )
        prosody = q.get("prosody") or {}
        prosody_html = ""
        if prosody:
            prosody_html = (
                f"<span class=muted>{_num(prosody.get('speech_rate'))} "
                f"{escape(str(prosody.get('rate_unit', '')))}, pauses "
                f"{_num(100 * (prosody.get('pause_ratio') or 0))}%</span>"
            )
        rows.append(
            f"<tr><td><b>{escape(q.get('prompt', ''))}</b><br>{answer_html}</td>"
            f"<td>{prosody_html}</td></tr>"
        )
    return "".join(rows)


def _prosody_section(report: dict[str, Any]) -> str:
    prosody = report.get("prosody") or {}
    call = prosody.get("call") or {}
    if not call:
        return "<p class=muted>No speech to describe.</p>"
    items = [
        (
            "Speech rate",
            f"{_num(call.get('speech_rate'))} {escape(str(call.get('rate_unit', '')))}",
        ),
        ("Pause ratio", f"{_num(100 * (call.get('pause_ratio') or 0))}%"),
        ("Mean pause", _num(call.get("mean_pause_secs"), 2, " s")),
        ("Pitch median", _num(call.get("pitch_median_hz"), 0, " Hz")),
        ("Pitch range", _num(call.get("pitch_range_semitones"), 1, " semitones")),
        ("Loudness", _num(call.get("loudness_dbfs"), 1, " dBFS")),
        ("Fillers", f"{_num(call.get('filler_count'))} ({_num(call.get('filler_rate'), 1)})"),
    ]
    cells = "".join(f"<tr><th>{name}</th><td>{value}</td></tr>" for name, value in items)
    return f"<table>{cells}</table><p class=muted>{escape(prosody.get('note', ''))}</p>"


def _transcript(report: dict[str, Any]) -> str:
    lines = []
    for turn in report.get("transcript", []):
        speaker = turn.get("speaker", "")
        who = "Bot" if speaker == "bot" else "Candidate"
        lines.append(
            f"<tr class={escape(speaker)}><td class=muted>{_num(turn.get('start'), 1, ' s')}</td>"
            f"<td>{who}</td><td>{escape(turn.get('text', ''))}</td></tr>"
        )
    return f"<table>{''.join(lines)}</table>"


def render_report(report: dict[str, Any], *, recording_urls: dict[str, str] | None = None) -> str:
    """Return the report page (HTML) for one interview report."""
    recording_urls = recording_urls or {}
    scores = report.get("scores") or {}
    recommendation = report.get("recommendation") or "hold"
    candidate = report.get("candidate") or {}
    job = report.get("job") or {}
    lang = "zh-CN" if job.get("language") == "zh" else "en"
    reasons = "".join(f"<li>{escape(str(r))}</li>" for r in scores.get("reasons", []))
    knockouts = [q for q in report.get("questions", []) if q.get("knockout")]
    knockout_html = "".join(
        f"<li>{escape(q['prompt'])}: "
        f"<b>{ {True: 'passed', False: 'failed', None: 'unclear'}[q['knockout'].get('passed')] }"
        f"</b></li>"
        for q in knockouts
    )
    recordings = "".join(
        f"<li><a href='{escape(recording_urls[c['call_sid']])}'>Recording of call "
        f"{escape(c['call_sid'])}</a> ({_num(c.get('duration_secs'), 0, ' s')}, "
        f"{escape(str(c.get('end_reason')))})</li>"
        for c in report.get("calls", [])
        if c.get("call_sid") in recording_urls
    )
    opted_out = (
        "<section class=review><b>The candidate asked not to be called again.</b> "
        "Honour this in the HR system.</section>"
        if report.get("opted_out")
        else ""
    )
    return f"""<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Interview report: {escape(candidate.get("name") or candidate.get("id", ""))}</title>
<style>{_CSS}</style></head>
<body><main>
<p class=muted>{escape(job.get("title", ""))} · interview {escape(report.get("interview_id", ""))}
 · {_fmt_time(report.get("generated_at"))}</p>
<h1>{escape(candidate.get("name") or candidate.get("id", ""))}</h1>
{opted_out}
<section class=review>
<span class="badge {escape(recommendation)}">{_RECOMMENDATION_LABEL.get(recommendation, "")}</span>
 Overall <b>{_num(scores.get("overall"), 1)}</b> / 100
 <p><b>Suggestion for human review.</b> The AI interviewer's score is not a decision: read the
 evidence and listen to the recording before deciding.</p>
 <ul>{reasons}</ul>
 <p class=muted>Outcome of the call: {escape(str(report.get("outcome")))}.
 Consent: {escape(str(report.get("consent")))}.</p>
</section>
{f"<h2>Knock-out questions</h2><section><ul>{knockout_html}</ul></section>" if knockouts else ""}
<h2>Competencies</h2>
{_competency_rows(scores) or "<p class=muted>No competencies scored.</p>"}
<h2>Answers</h2>
<section><table>{_question_rows(report)}</table></section>
<h2>How the answers were spoken (descriptive)</h2>
<section>{_prosody_section(report)}</section>
<h2>Recordings</h2>
<section>{f"<ul>{recordings}</ul>" if recordings else "<p class=muted>No recording.</p>"}</section>
<h2>Transcript</h2>
<section>{_transcript(report)}</section>
<h2>Message for the candidate</h2>
<section><p>{escape(report.get("candidate_feedback", "")).replace(chr(10), "<br>")}</p></section>
</main></body></html>
"""
