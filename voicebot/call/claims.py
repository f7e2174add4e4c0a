"""Which calls and interviews have a media stream: at most one stream per call and per interview.

A stream claims its call sid and its interview before it awaits anything (the store, a model),
so of several streams that arrive at once for one call exactly one wins; the check and the claim
happen in one step of the event loop. The losers are refused and never touch the winner's
records. The store's unique call sid is the second line (another process, a stale row): a
stream whose call row cannot be created is refused the same way.
"""

from __future__ import annotations

from typing import Literal

ClaimRefusal = Literal["duplicate_call", "interview_busy"]


class CallClaims:
    """The streams this process holds or is setting up, by call sid and by interview."""

    def __init__(self) -> None:
        self._interview_of_call: dict[str, str] = {}
        self._call_of_interview: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._interview_of_call)

    def __contains__(self, call_sid: object) -> bool:
        return call_sid in self._interview_of_call

    def claim(self, call_sid: str, interview_id: str) -> ClaimRefusal | None:
        """Claim a call and its interview for one stream; the reason it is refused, or None."""
        if call_sid in self._interview_of_call:
            return "duplicate_call"
        if interview_id in self._call_of_interview:
            return "interview_busy"
        self._interview_of_call[call_sid] = interview_id
        self._call_of_interview[interview_id] = call_sid
        return None

    def interview_busy(self, interview_id: str) -> bool:
        """Whether a stream holds (or is setting up) a call of this interview."""
        return interview_id in self._call_of_interview

    def release(self, call_sid: str) -> None:
        """Give up a call's claim (its stream ended or was refused after claiming)."""
        interview_id = self._interview_of_call.pop(call_sid, None)
        if interview_id is not None and self._call_of_interview.get(interview_id) == call_sid:
            del self._call_of_interview[interview_id]
