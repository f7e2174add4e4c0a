"""Signed, expiring links to an interview's report page and its call recordings.

A link carries a token signed with the server's key (``VOICEBOT_STREAM_TOKEN_SECRET``) naming what
it opens (``purpose``: ``report`` or ``recording``, and the interview or call), valid
``VOICEBOT_LINK_TTL_SECS``. Recruiters' browsers and HR systems open them without the API token.
"""

from __future__ import annotations

from typing import Any

from voicebot.telephony.stream_token import StreamTokenSigner


def signed_link(signer: StreamTokenSigner, base_url: str, path: str, claims: dict[str, str]) -> str:
    """An absolute URL to ``path`` with a signed ``token`` query parameter."""
    return f"{base_url.rstrip('/')}{path}?token={signer.issue(claims)}"


def report_links(signer: StreamTokenSigner, base_url: str, report: dict[str, Any]) -> dict:
    """Fresh links for a report: ``report_html`` and ``recordings`` (call sid -> URL)."""
    interview_id = report["interview_id"]
    return {
        "report_html": signed_link(
            signer,
            base_url,
            f"/interviews/{interview_id}/report",
            {"purpose": "report", "interview_id": interview_id},
        ),
        "recordings": {
            call["call_sid"]: signed_link(
                signer,
                base_url,
                f"/recordings/{call['call_sid']}/call.wav",
                {"purpose": "recording", "call_sid": call["call_sid"]},
            )
            for call in report.get("calls", [])
        },
    }
