"""Signed, expiring links to an interview's report page and its call recordings.

A link carries a token of its own purpose (see :mod:`voicebot.telephony.stream_token`), signed
with a key derived from the server's secret (``VOICEBOT_STREAM_TOKEN_SECRET``) for that purpose
alone, valid ``VOICEBOT_LINK_TTL_SECS``: a ``report`` token names the interview, a ``recording``
token the interview, the call and the file. Neither opens anything else (a stream least of all).
Recruiters' browsers and HR systems open them without the API token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from voicebot.telephony.stream_token import TokenSigner

RECORDING_FILE = "call.wav"
"""The one recording file a link opens."""


@dataclass(frozen=True)
class LinkSigner:
    """The signers of report links: one for report pages, one for recordings (separate keys)."""

    report: TokenSigner
    recording: TokenSigner

    @classmethod
    def from_secret(cls, secret: bytes, ttl_secs: float) -> LinkSigner:
        """Both signers, each with its purpose's key derived from ``secret``."""
        return cls(
            report=TokenSigner(secret, ttl_secs=ttl_secs, purpose="report"),
            recording=TokenSigner(secret, ttl_secs=ttl_secs, purpose="recording"),
        )


def signed_link(signer: TokenSigner, base_url: str, path: str, claims: dict[str, str]) -> str:
    """An absolute URL to ``path`` with a signed ``token`` query parameter."""
    return f"{base_url.rstrip('/')}{path}?token={signer.issue(claims)}"


def report_link(signers: LinkSigner, base_url: str, interview_id: str) -> str:
    """A link to an interview's report page."""
    return signed_link(
        signers.report,
        base_url,
        f"/interviews/{interview_id}/report",
        {"interview_id": interview_id},
    )


def recording_link(signers: LinkSigner, base_url: str, interview_id: str, call_sid: str) -> str:
    """A link to one call's recording of an interview."""
    return signed_link(
        signers.recording,
        base_url,
        f"/recordings/{call_sid}/{RECORDING_FILE}",
        {"interview_id": interview_id, "call_sid": call_sid, "file": RECORDING_FILE},
    )


def report_links(signers: LinkSigner, base_url: str, report: dict[str, Any]) -> dict:
    """Fresh links for a report: ``report_html`` and ``recordings`` (call sid -> URL)."""
    interview_id = report["interview_id"]
    return {
        "report_html": report_link(signers, base_url, interview_id),
        "recordings": {
            call["call_sid"]: recording_link(signers, base_url, interview_id, call["call_sid"])
            for call in report.get("calls", [])
        },
    }
