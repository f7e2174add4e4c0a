"""The interview report as one HTML page a recruiter reads (on a desk or on a phone).

Self-contained (inline CSS, no scripts, no external assets), every value escaped. Shows the
recommendation as a suggestion for human review, the per-competency scores with the transcript
quotes and keywords behind them, knock-outs, the answers question by question, descriptive prosody,
the transcript, recording links and the candidate-facing thank-you text. Its headings and labels
are in the job's language (:mod:`voicebot.dialogue.messages`): a Chinese job's page is
``lang="zh-CN"``, in Simplified characters throughout.
"""

from __future__ import annotations

import datetime as dt
from html import escape
from typing import Any

from voicebot.dialogue.messages import catalogue_language, code_label, message, simplified

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


def _competency_rows(scores: dict[str, Any], lang: str) -> str:
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
            or f"<p class=muted>{message(lang, 'no_evidence')}</p>"
        )
        by_sound = set(comp.get("keywords_pinyin") or ())
        keywords = "".join(
            f"<span class=kw title='{message(lang, 'by_sound')}'>"
            f"{escape(str(k))} ({message(lang, 'pinyin')})</span>"
            if k in by_sound
            else f"<span class=kw>{escape(str(k))}</span>"
            for k in comp.get("keywords_hit", [])
        )
        structure = ", ".join(
            escape(str(m)) for m in (comp.get("structure") or {}).get("markers", [])
        )
        rows.append(
            f"<div class=card><b>{escape(comp.get('name', comp.get('id', '')))}</b>"
            f" <span class=muted>{message(lang, 'weight')} {escape(_num(comp.get('weight'), 2))}"
            "</span>"
            f"<div style='display:flex;gap:10px;align-items:center'>"
            f"<div class=bar style='flex:1'><span style='width:{int(score)}%'></span></div>"
            f"<b>{int(score)}</b></div>"
            f"<p>{escape(level.get('description', ''))}</p>"
            f"{quotes}"
            + (f"<p>{message(lang, 'keywords')} {keywords}</p>" if keywords else "")
            + (f"<p class=muted>{message(lang, 'structure')} {structure}</p>" if structure else "")
            + "<p class=muted>"
            + message(lang, "completeness", percent=int(100 * (comp.get("completeness") or 0)))
            + "</p>"
            "</div>"
        )
    return "".join(rows)


def _question_rows(report: dict[str, Any], lang: str) -> str:
    rows = []
    for q in report.get("questions", []):
        answer = q.get("answer")
        if q.get("skipped") and not answer:
            answer_html = f"<i class=muted>{message(lang, 'skipped')}</i>"
        elif not answer:
            answer_html = f"<i class=muted>{message(lang, 'not_answered')}</i>"
        else:
            answer_html = escape(answer)
            if q.get("via") == "dtmf":
                answer_html += f" <span class=muted>({message(lang, 'keypad')})</span>"
        if q.get("follow_up_answer"):
            answer_html += (
                f"<br><span class=muted>{message(lang, 'follow_up')}</span> "
                f"{escape(q['follow_up_answer'])}"
            )
        knockout = q.get("knockout")
        if knockout:
            passed = knockout.get("passed")
            verdict = {
                True: "knockout_passed",
                False: "knockout_failed_short",
                None: "knockout_unclear_short",
            }[passed]
            detail = message(
                lang,
                "knockout_detail",
                expected=escape(code_label(lang, knockout.get("expected"))),
                answer=escape(code_label(lang, knockout.get("answer"))),
            )
            answer_html += (
                f"<br><b>{message(lang, verdict)}</b> <span class=muted>({detail})</span>"
            )
        prosody = q.get("prosody") or {}
        prosody_html = ""
        if prosody:
            prosody_html = (
                f"<span class=muted>{_num(prosody.get('speech_rate'))} "
                f"{_unit(prosody.get('rate_unit'), lang)}, {message(lang, 'pauses')} "
                f"{_num(100 * (prosody.get('pause_ratio') or 0))}%</span>"
            )
        rows.append(
            f"<tr><td><b>{escape(q.get('prompt', ''))}</b><br>{answer_html}</td>"
            f"<td>{prosody_html}</td></tr>"
        )
    return "".join(rows)


def _unit(rate_unit: Any, lang: str) -> str:
    """The speech rate's unit as a reader of ``lang`` writes it (``wpm``, ``字/分钟``)."""
    if rate_unit in ("wpm", "cpm"):
        return message(lang, f"unit_{rate_unit}")
    return escape(str(rate_unit or ""))


def _prosody_section(report: dict[str, Any], lang: str) -> str:
    prosody = report.get("prosody") or {}
    call = prosody.get("call") or {}
    if not call:
        return f"<p class=muted>{message(lang, 'no_speech')}</p>"
    semitones = " " + message(lang, "semitones")
    items = [
        (
            message(lang, "speech_rate"),
            f"{_num(call.get('speech_rate'))} {_unit(call.get('rate_unit'), lang)}",
        ),
        (message(lang, "pause_ratio"), f"{_num(100 * (call.get('pause_ratio') or 0))}%"),
        (message(lang, "mean_pause"), _num(call.get("mean_pause_secs"), 2, " s")),
        (message(lang, "pitch_median"), _num(call.get("pitch_median_hz"), 0, " Hz")),
        (message(lang, "pitch_range"), _num(call.get("pitch_range_semitones"), 1, semitones)),
        (message(lang, "loudness"), _num(call.get("loudness_dbfs"), 1, " dBFS")),
        (
            message(lang, "fillers"),
            f"{_num(call.get('filler_count'))} ({_num(call.get('filler_rate'), 1)})",
        ),
    ]
    cells = "".join(f"<tr><th>{name}</th><td>{value}</td></tr>" for name, value in items)
    return f"<table>{cells}</table><p class=muted>{escape(prosody.get('note', ''))}</p>"


def _transcript(report: dict[str, Any], lang: str) -> str:
    lines = []
    for turn in report.get("transcript", []):
        speaker = turn.get("speaker", "")
        who = message(lang, "bot" if speaker == "bot" else "candidate")
        lines.append(
            f"<tr class={escape(speaker)}><td class=muted>{_num(turn.get('start'), 1, ' s')}</td>"
            f"<td>{who}</td><td>{escape(turn.get('text', ''))}</td></tr>"
        )
    return f"<table>{''.join(lines)}</table>"


def render_report(report: dict[str, Any], *, recording_urls: dict[str, str] | None = None) -> str:
    """Return the report page (HTML) for one interview report, in its job's language."""
    recording_urls = recording_urls or {}
    job = report.get("job") or {}
    lang = catalogue_language(job.get("language"))
    candidate = report.get("candidate") or {}
    if lang == "zh":
        # Reports stored before they were converted may hold Traditional characters.
        report = {**simplified(report), "candidate": candidate}
    scores = report.get("scores") or {}
    recommendation = report.get("recommendation") or "hold"
    html_lang = "zh-CN" if lang == "zh" else "en"
    label = (
        message(lang, f"recommendation_{recommendation}")
        if recommendation in ("advance", "hold", "reject")
        else ""
    )
    name = escape(candidate.get("name") or candidate.get("id", ""))
    reasons = "".join(f"<li>{escape(str(r))}</li>" for r in scores.get("reasons", []))
    knockouts = [q for q in report.get("questions", []) if q.get("knockout")]
    verdicts = {True: "passed", False: "failed", None: "unclear"}
    knockout_html = "".join(
        f"<li>{escape(q['prompt'])}: "
        f"<b>{message(lang, verdicts[q['knockout'].get('passed')])}</b></li>"
        for q in knockouts
    )
    recordings = "".join(
        f"<li><a href='{escape(recording_urls[c['call_sid']])}'>"
        f"{message(lang, 'recording_of_call', call_sid=escape(c['call_sid']))}</a>"
        f" ({_num(c.get('duration_secs'), 0, ' s')},"
        f" {escape(code_label(lang, c.get('end_reason')))})</li>"
        for c in report.get("calls", [])
        if c.get("call_sid") in recording_urls
    )
    opted_out = (
        f"<section class=review>{message(lang, 'opted_out')}</section>"
        if report.get("opted_out")
        else ""
    )
    outcome = message(
        lang,
        "outcome_consent",
        outcome=escape(code_label(lang, report.get("outcome"))),
        consent=escape(code_label(lang, report.get("consent"))),
    )
    knockout_section = (
        f"<h2>{message(lang, 'knockouts_heading')}</h2><section><ul>{knockout_html}</ul></section>"
        if knockouts
        else ""
    )
    competencies = (
        _competency_rows(scores, lang) or f"<p class=muted>{message(lang, 'no_competencies')}</p>"
    )
    recordings_html = (
        f"<ul>{recordings}</ul>"
        if recordings
        else f"<p class=muted>{message(lang, 'no_recording')}</p>"
    )
    interview_label = message(lang, "interview")
    interview_id = escape(report.get("interview_id", ""))
    feedback = escape(report.get("candidate_feedback", "")).replace(chr(10), "<br>")
    return f"""<!doctype html>
<html lang="{html_lang}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{message(lang, "page_title", name=name)}</title>
<style>{_CSS}</style></head>
<body><main>
<p class=muted>{escape(job.get("title", ""))} · {interview_label} {interview_id}
 · {_fmt_time(report.get("generated_at"))}</p>
<h1>{name}</h1>
{opted_out}
<section class=review>
<span class="badge {escape(recommendation)}">{label}</span>
 {message(lang, "overall")} <b>{_num(scores.get("overall"), 1)}</b> / 100
 <p>{message(lang, "review_notice")}</p>
 <ul>{reasons}</ul>
 <p class=muted>{outcome}</p>
</section>
{knockout_section}
<h2>{message(lang, "competencies_heading")}</h2>
{competencies}
<h2>{message(lang, "answers_heading")}</h2>
<section><table>{_question_rows(report, lang)}</table></section>
<h2>{message(lang, "prosody_heading")}</h2>
<section>{_prosody_section(report, lang)}</section>
<h2>{message(lang, "recordings_heading")}</h2>
<section>{recordings_html}</section>
<h2>{message(lang, "transcript_heading")}</h2>
<section>{_transcript(report, lang)}</section>
<h2>{message(lang, "feedback_heading")}</h2>
<section><p>{feedback}</p></section>
</main></body></html>
"""
