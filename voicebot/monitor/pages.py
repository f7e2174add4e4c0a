"""The live call monitor's two HTML pages: the login form and the app shell.

Both are complete, static documents: every interpolated value is escaped, and neither carries an
inline script or an inline ``style`` attribute, so the strict Content-Security-Policy in
:data:`SECURITY_HEADERS` holds. The app shell is filled in by ``/monitor/static/monitor.js`` from
the monitor's REST and WebSocket API; its look is ``/monitor/static/monitor.css``.

The page's chrome (sign-in, lists, buttons) is English. What the app shows about one call comes
from the message catalogue (:func:`voicebot.dialogue.messages.monitor_catalogue`) in the call's
own language: the app shell carries the catalogue as a JSON data block (not a script: the CSP
holds), and elements of the call's detail name their message key in ``data-msg``.
"""

from __future__ import annotations

import json
from html import escape

from voicebot.dialogue.messages import monitor_catalogue

TITLE = "voicebot · call monitor"
STYLESHEET = "/monitor/static/monitor.css"
SCRIPT = "/monitor/static/monitor.js"
CAMPAIGNS_SCRIPT = "/monitor/static/campaigns.js"
"""The campaigns view's script (outbound campaigns: progress, pause and resume)."""

SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "media-src 'self' blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
        "form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
"""Headers the server adds to both pages (no inline script or style, no framing, no caching)."""


def _document(head_extra: str, body_class: str, body: str) -> str:
    return (
        "<!doctype html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="referrer" content="same-origin">\n'
        f"{head_extra}"
        f"<title>{escape(TITLE)}</title>\n"
        '<link rel="icon" href="data:,">\n'
        f'<link rel="stylesheet" href="{STYLESHEET}">\n'
        f'</head>\n<body class="{body_class}">\n{body}</body>\n</html>\n'
    )


def login_page(error: str | None = None) -> str:
    """The sign-in form (posts to ``/monitor/login``), with ``error`` shown above it when given."""
    error_html = f'<p id="login-error" role="alert">{escape(error)}</p>\n' if error else ""
    body = f"""<main class="login-card">
<h1>{escape(TITLE)}</h1>
{error_html}<form id="login-form" method="post" action="/monitor/login">
<label for="username">Username</label>
<input id="username" name="username" autocomplete="username" autocapitalize="none"
 spellcheck="false" required autofocus>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button id="login-submit" type="submit">Sign in</button>
</form>
</main>
"""
    return _document("", "login-page", body)


def _meter(meter_id: str, label: str, unit: str) -> str:
    return (
        f'<div class="meter" id="{meter_id}">'
        f'<span class="label" data-msg="monitor_{meter_id.replace("-", "_")}">'
        f"{escape(label)}</span>"
        '<span class="reading"><span class="value">–</span>'
        f' <span class="unit">{escape(unit)}</span></span>'
        '<span class="bar" aria-hidden="true"><span class="fill"></span></span>'
        "</div>\n"
    )


def _table_head(columns: tuple[tuple[str, str], ...]) -> str:
    # Header cells carry their column's class so that CSS can hide a column as a whole.
    cells = "".join(f'<th scope="col" class="{name}">{label}</th>' for name, label in columns)
    return f"<thead><tr>{cells}</tr></thead>"


LIVE_COLUMNS = (
    ("candidate", "Candidate"),
    ("job", "Job"),
    ("duration", "Duration"),
    ("position", "Position"),
    ("state", "State"),
)
RECENT_COLUMNS = (
    ("candidate", "Candidate"),
    ("job", "Job"),
    ("when", "When"),
    ("duration", "Duration"),
    ("status", "Outcome"),
)


def messages_block() -> str:
    """The monitor's catalogue as a JSON data block (``<`` escaped: it cannot end the element)."""
    data = json.dumps(monitor_catalogue(), ensure_ascii=False, separators=(",", ":"))
    data = data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f'<script id="monitor-messages" type="application/json">{data}</script>\n'


def app_page(username: str, role: str, department: str | None, csrf: str) -> str:
    """The monitor app shell for a signed-in recruiter; ``csrf`` goes into the logout form."""
    whoami = " · ".join(part for part in (username, role, department) if part)
    csrf_value = escape(csrf)
    meters = (
        _meter("meter-rate", "Speech rate", "wpm")
        + _meter("meter-pitch", "Pitch", "Hz")
        + _meter("meter-loudness", "Loudness", "dBFS")
        + _meter("meter-pauses", "Pauses", "%")
    )
    live_head = _table_head(LIVE_COLUMNS)
    recent_head = _table_head(RECENT_COLUMNS)
    body = f"""<header class="topbar">
<h1 class="brand">{escape(TITLE)}</h1>
<span id="conn" data-state="connecting" role="status" aria-live="polite">connecting…</span>
<span id="whoami">{escape(whoami)}</span>
<form id="logout-form" method="post" action="/monitor/logout">
<input type="hidden" name="csrf" value="{csrf_value}">
<button id="logout" type="submit">Sign out</button>
</form>
</header>
<div id="notice" role="alert" hidden></div>
<main id="layout">
<div id="lists">
<section id="campaigns" class="card" aria-labelledby="campaigns-heading">
<h2 id="campaigns-heading">Campaigns <span id="campaigns-count" class="count">0</span></h2>
<p id="campaigns-error" role="alert" hidden></p>
<div id="campaign-list"></div>
<p id="campaigns-empty" class="empty">No outbound campaigns.</p>
</section>
<section id="live" class="card" aria-labelledby="live-heading">
<h2 id="live-heading">Live calls <span id="live-count" class="count">0</span></h2>
<table id="live-calls" hidden>
{live_head}
<tbody></tbody>
</table>
<p id="live-empty" class="empty">No live calls right now.</p>
</section>
<section id="recent" class="card" aria-labelledby="recent-heading">
<h2 id="recent-heading">Recent calls</h2>
<table id="recent-calls" hidden>
{recent_head}
<tbody></tbody>
</table>
<p id="recent-empty" class="empty">No finished calls yet.</p>
</section>
</div>
<section id="call-detail" class="card" aria-labelledby="call-title" hidden>
<div class="detail-head">
<button id="close-detail" type="button" lang="en"
 aria-label="Close this call and return to the lists">
← Calls</button>
<div class="detail-heading">
<h2 id="call-title" tabindex="-1"></h2>
<p class="detail-meta"><span id="call-position"></span>
<span id="call-duration" class="mono"></span>
<span id="call-when"></span></p>
</div>
</div>
<p id="detail-status" role="status" aria-live="polite"></p>
<div id="live-panel" hidden>
<div class="listen-bar" lang="en">
<button id="listen" type="button" aria-pressed="false">Listen in</button>
<label class="volume" for="volume">Volume</label>
<input id="volume" type="range" min="0" max="100" step="5" value="80">
<span id="listen-stats" data-frames="0" data-buffer-ms="0" data-underruns="0" data-gaps="0"
 aria-live="off">not listening</span>
</div>
<p id="speaking" data-msg="monitor_speaking" hidden>candidate speaking…</p>
<div id="prosody" class="sub">
<h3 data-msg="monitor_voice">Candidate's voice</h3>
<p class="note" data-msg="monitor_voice_note">Descriptive measures of the audio only (rate, pitch,
loudness, pauses): not a judgement of the candidate, their emotions or their personality, and not
used for scoring.</p>
<div class="meters">
{meters}</div>
<canvas id="prosody-chart" width="600" height="120" role="img"
 data-msg-label="monitor_chart_label"
 aria-label="Loudness and pitch of the candidate's voice over the last 60 seconds"></canvas>
<p class="legend"><span class="key loudness"
 data-msg="monitor_chart_loudness">loudness (dBFS)</span>
<span class="key pitch" data-msg="monitor_chart_pitch">pitch (Hz)</span>
<span class="muted" data-msg="monitor_chart_window">last 60 s</span></p>
</div>
<div id="questions-box" class="sub">
<h3 data-msg="monitor_questions">Questions</h3>
<ol id="questions"></ol>
</div>
</div>
<div id="finished-panel" hidden>
<audio id="recording" controls preload="metadata" hidden></audio>
<p id="no-recording" class="muted" data-msg="monitor_no_recording" hidden>No recording</p>
<p><a id="report-link" target="_blank" rel="noopener" data-msg="monitor_report"
 hidden>Report</a></p>
</div>
<div id="scores-box" class="sub">
<h3 data-msg="monitor_scores">Scores</h3>
<p id="scores-note" class="note">running scores — provisional,
for human review</p>
<p id="score-overall"></p>
<div id="scores"></div>
</div>
<div id="transcript-box" class="sub">
<h3 data-msg="monitor_transcript">Transcript</h3>
<div id="transcript"></div>
</div>
<div id="timeline-box" class="sub">
<h3 data-msg="monitor_timeline">Timeline</h3>
<ol id="timeline"></ol>
</div>
</section>
</main>
"""
    head = (
        f'<meta name="csrf-token" content="{csrf_value}">\n{messages_block()}'
        f'<script defer src="{SCRIPT}"></script>\n'
        f'<script defer src="{CAMPAIGNS_SCRIPT}"></script>\n'
    )
    return _document(head, "monitor-app", body)
