"""Stream tokens: issued tokens verify until they expire; forged, garbled or missing ones do not."""

from __future__ import annotations

import base64
import json

import pytest

from voicebot.telephony.stream_token import InvalidStreamToken, StreamTokenSigner

SECRET = b"0123456789abcdef0123456789abcdef"
NOW = 1_700_000_000.0


def reason(signer: StreamTokenSigner, token, now: float = NOW) -> str:
    with pytest.raises(InvalidStreamToken) as caught:
        signer.verify(token, now=now)
    return caught.value.reason


def test_issued_token_verifies_and_carries_the_claims():
    signer = StreamTokenSigner(SECRET, ttl_secs=120)
    token = signer.issue({"interview_id": "iv_1", "call_sid": "CA1"}, now=NOW)
    claims = signer.verify(token, now=NOW + 119)
    assert claims["interview_id"] == "iv_1" and claims["call_sid"] == "CA1"
    assert claims["iat"] == NOW and claims["exp"] == NOW + 120
    assert isinstance(claims["jti"], str) and len(claims["jti"]) >= 16


def test_token_is_compact_and_url_safe():
    token = StreamTokenSigner(SECRET).issue({"interview_id": "面试/1+2"}, now=NOW)
    assert token.count(".") == 1
    assert all(c.isalnum() or c in "-_." for c in token)


def test_each_token_is_unique():
    signer = StreamTokenSigner(SECRET)
    tokens = {signer.issue({"interview_id": "iv"}, now=NOW) for _ in range(20)}
    assert len(tokens) == 20


def test_expired():
    signer = StreamTokenSigner(SECRET, ttl_secs=120)
    token = signer.issue({"interview_id": "iv"}, now=NOW)
    assert reason(signer, token, now=NOW + 120) == "expired"
    assert reason(signer, token, now=NOW + 3600) == "expired"


def test_default_clock_is_wall_time():
    signer = StreamTokenSigner(SECRET)
    assert signer.verify(signer.issue({"interview_id": "iv"}))["interview_id"] == "iv"


def test_token_from_another_server_is_forged():
    token = StreamTokenSigner(b"another secret, another server").issue({"interview_id": "iv"})
    assert reason(StreamTokenSigner(SECRET), token, now=NOW) == "bad_signature"


def test_changed_claims_break_the_signature():
    signer = StreamTokenSigner(SECRET)
    payload, signature = signer.issue({"interview_id": "iv_1"}, now=NOW).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["interview_id"] = "iv_2"
    claims["exp"] = NOW + 10**9
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert reason(signer, forged + "." + signature) == "bad_signature"


@pytest.mark.parametrize("token", [None, ""])
def test_missing(token):
    assert reason(StreamTokenSigner(SECRET), token) == "missing"


@pytest.mark.parametrize(
    "token", ["abc", "a.b.c", ".", "abc.", ".abc", "ab+c.de/f", "a b.c", "é.e", "abc.!!!"]
)
def test_malformed(token):
    assert reason(StreamTokenSigner(SECRET), token) == "malformed"


def test_signed_garbage_payload_is_malformed():
    """Only reachable with the key, but verify must still not crash on it."""
    signer = StreamTokenSigner(SECRET)
    payload = base64.urlsafe_b64encode(b'["not", "an object"]').rstrip(b"=").decode()
    signature = base64.urlsafe_b64encode(signer._sign(payload)).rstrip(b"=").decode()
    assert reason(signer, payload + "." + signature) == "malformed"


def test_error_message_says_why():
    with pytest.raises(InvalidStreamToken, match="expired"):
        signer = StreamTokenSigner(SECRET, ttl_secs=1)
        signer.verify(signer.issue({}, now=NOW), now=NOW + 5)


def test_reserved_claims_and_bad_configuration_are_refused():
    with pytest.raises(ValueError, match="exp"):
        StreamTokenSigner(SECRET).issue({"exp": "never"})
    with pytest.raises(ValueError, match="secret"):
        StreamTokenSigner(b"")
    with pytest.raises(ValueError, match="ttl"):
        StreamTokenSigner(SECRET, ttl_secs=0)
