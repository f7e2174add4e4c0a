"""The outbound side of a carrier: what the dialer needs to place a call and to end one.

The dialer (campaigns, issue 20) talks to a carrier only through :class:`OutboundCarrier`, so a
SIP carrier can implement the same two calls later. Twilio's REST API is the first implementation
(``voicebot.telephony.twilio_rest``).

Failures are raised as :class:`CarrierError` with a ``kind`` the dialer can act on:

- ``auth``: the carrier refused our credentials (401/403). Nothing will work until an operator
  fixes the configuration; the attempt is not the candidate's fault and is not counted.
- ``rate_limited``: the carrier asked us to slow down (429). ``retry_after_secs`` when it said.
- ``unavailable``: the carrier failed or did not answer (5xx, connection error, timeout). The
  attempt is retried with back-off and not counted as the candidate's.
- ``rejected``: the carrier refused this call (4xx other than the above: an invalid number, a
  number the account may not call). Retrying the same request will not help.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

CarrierErrorKind = Literal["auth", "rate_limited", "unavailable", "rejected"]

# The call progress events a status callback reports (Twilio's StatusCallbackEvent values).
STATUS_CALLBACK_EVENTS = ("initiated", "ringing", "answered", "completed")


@dataclass(frozen=True)
class OutboundCall:
    """One call to place.

    ``url`` is the voice webhook the carrier fetches when the call is answered (with
    ``?interview_id=``); ``status_callback`` gets the call's progress; ``amd_callback`` gets the
    answering-machine verdict while the call is already up (asynchronous detection).
    """

    to: str  # E.164
    from_: str  # E.164 caller ID
    url: str
    status_callback: str
    amd_callback: str | None = None
    ring_timeout_secs: int = 30
    # Free-form tags for logs and metrics, never sent to the carrier.
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PlacedCall:
    """What the carrier answered when it accepted a call."""

    call_sid: str
    status: str  # the carrier's first status, e.g. "queued"


class CarrierError(Exception):
    """The carrier did not take the request. See the module docstring for ``kind``."""

    def __init__(
        self,
        kind: CarrierErrorKind,
        message: str,
        *,
        status: int | None = None,
        retry_after_secs: float | None = None,
        code: int | None = None,
    ):
        super().__init__(message)
        self.kind: CarrierErrorKind = kind
        self.status = status
        self.retry_after_secs = retry_after_secs
        # The carrier's own error code when it gave one (Twilio's: 21211 invalid 'To', ...).
        self.code = code


class OutboundCarrier(Protocol):
    """A carrier that can place calls. Implementations never block the event loop."""

    name: str

    async def place_call(self, call: OutboundCall) -> PlacedCall:
        """Ask the carrier to place ``call``; raises :class:`CarrierError`."""
        ...

    async def hang_up(self, call_sid: str) -> None:
        """End a call the carrier placed (ringing or up); raises :class:`CarrierError`."""
        ...

    async def close(self) -> None:
        """Release the carrier's connections."""
        ...
