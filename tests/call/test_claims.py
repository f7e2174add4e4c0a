"""One stream per call and per interview: the first claim wins, the others are told why."""

from __future__ import annotations

from voicebot.call.claims import CallClaims


def test_the_first_claim_of_a_call_wins_and_the_others_are_refused():
    claims = CallClaims()
    assert claims.claim("CA1", "iv1") is None
    assert [claims.claim("CA1", "iv1") for _ in range(9)] == ["duplicate_call"] * 9
    assert claims.claim("CA2", "iv1") == "interview_busy"
    assert len(claims) == 1 and "CA1" in claims and claims.interview_busy("iv1")


def test_a_refused_claim_leaves_the_winner_alone_and_release_frees_both():
    claims = CallClaims()
    claims.claim("CA1", "iv1")
    claims.claim("CA2", "iv1")  # refused: releasing it must not free the winner's interview
    claims.release("CA2")
    assert claims.interview_busy("iv1") and "CA1" in claims
    claims.release("CA1")
    assert len(claims) == 0 and not claims.interview_busy("iv1")
    assert claims.claim("CA3", "iv1") is None
