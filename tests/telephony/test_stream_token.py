"""Signed tokens: issued ones verify until they expire, for their purpose and binding alone;
forged, garbled, missing, misdirected ones do not."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from voicebot.api.links import LinkSigner, recording_link, report_link, report_links
from voicebot.telephony.stream_token import (
    PURPOSES,
    InvalidStreamToken,
    StreamTokenSigner,
    TokenSigner,
    purpose_key,
)

SECRET = b"0123456789abcdef0123456789abcdef"
NOW = 1_700_000_000.0
CLAIMS = {"interview_id": "iv", "call_sid": "CA1"}


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
    token = StreamTokenSigner(SECRET).issue(
        {"interview_id": "面试/1+2", "call_sid": "CA1"}, now=NOW
    )
    assert token.count(".") == 1
    assert all(c.isalnum() or c in "-_." for c in token)


def test_each_token_is_unique():
    signer = StreamTokenSigner(SECRET)
    tokens = {signer.issue({"interview_id": "iv", "call_sid": "CA1"}, now=NOW) for _ in range(20)}
    assert len(tokens) == 20


def test_expired():
    signer = StreamTokenSigner(SECRET, ttl_secs=120)
    token = signer.issue({"interview_id": "iv", "call_sid": "CA1"}, now=NOW)
    assert reason(signer, token, now=NOW + 120) == "expired"
    assert reason(signer, token, now=NOW + 3600) == "expired"


def test_default_clock_is_wall_time():
    signer = StreamTokenSigner(SECRET)
    assert (
        signer.verify(signer.issue({"interview_id": "iv", "call_sid": "CA1"}))["interview_id"]
        == "iv"
    )


def test_token_from_another_server_is_forged():
    token = StreamTokenSigner(b"another secret, another server").issue(
        {"interview_id": "iv", "call_sid": "CA1"}
    )
    assert reason(StreamTokenSigner(SECRET), token, now=NOW) == "bad_signature"


def test_changed_claims_break_the_signature():
    signer = StreamTokenSigner(SECRET)
    payload, signature = signer.issue({"interview_id": "iv_1", "call_sid": "CA1"}, now=NOW).split(
        "."
    )
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
        signer.verify(signer.issue(CLAIMS, now=NOW), now=NOW + 5)


def test_reserved_claims_and_bad_configuration_are_refused():
    with pytest.raises(ValueError, match="exp"):
        StreamTokenSigner(SECRET).issue({**CLAIMS, "exp": "never"})
    with pytest.raises(ValueError, match="purpose"):
        StreamTokenSigner(SECRET).issue({**CLAIMS, "purpose": "report"})
    with pytest.raises(ValueError, match="call_sid"):
        StreamTokenSigner(SECRET).issue({"interview_id": "iv"})
    with pytest.raises(ValueError, match="purpose"):
        TokenSigner(SECRET, purpose="anything")
    with pytest.raises(ValueError, match="secret"):
        StreamTokenSigner(b"")
    with pytest.raises(ValueError, match="ttl"):
        StreamTokenSigner(SECRET, ttl_secs=0)


# -- purposes and bindings -----------------------------------------------------------------------

BINDINGS = {
    "stream": {"interview_id": "iv_1", "call_sid": "CA1"},
    "report": {"interview_id": "iv_1"},
    "recording": {"interview_id": "iv_1", "call_sid": "CA1", "file": "call.wav"},
}


def signers() -> dict[str, TokenSigner]:
    return {purpose: TokenSigner(SECRET, purpose=purpose) for purpose in PURPOSES}


def test_each_purpose_has_its_own_key_derived_from_the_one_secret():
    keys = {purpose_key(SECRET, purpose) for purpose in PURPOSES}
    assert len(keys) == len(PURPOSES) and SECRET not in keys
    assert purpose_key(SECRET, "stream") == purpose_key(SECRET, "stream")
    assert purpose_key(SECRET, "stream") != purpose_key(b"another secret", "stream")


def test_a_token_is_good_for_its_own_purpose_and_refused_for_every_other():
    by_purpose = signers()
    for issued_for, issuer in by_purpose.items():
        token = issuer.issue(BINDINGS[issued_for], now=NOW)
        assert issuer.verify(token, now=NOW)["purpose"] == issued_for
        for checked_as, checker in by_purpose.items():
            if checked_as != issued_for:
                assert reason(checker, token) == "bad_signature", (issued_for, checked_as)


def test_a_token_signed_with_the_right_key_but_naming_another_purpose_is_refused():
    """Defence in depth: the purpose claim is checked even where the key would pass."""
    stream = TokenSigner(SECRET, purpose="stream")
    body = json.dumps({**BINDINGS["stream"], "purpose": "report", "exp": NOW + 60}).encode()
    payload = base64.urlsafe_b64encode(body).rstrip(b"=").decode()
    signature = base64.urlsafe_b64encode(stream._sign(payload)).rstrip(b"=").decode()
    assert reason(stream, payload + "." + signature) == "wrong_purpose"


def test_a_token_names_what_it_binds_and_is_refused_for_anything_else():
    stream = TokenSigner(SECRET, purpose="stream")
    token = stream.issue({"interview_id": "iv_1", "call_sid": "CA_A"}, now=NOW)
    assert stream.verify(token, now=NOW, expect={"call_sid": "CA_A"})["interview_id"] == "iv_1"
    with pytest.raises(InvalidStreamToken) as caught:
        stream.verify(token, now=NOW, expect={"call_sid": "CA_B"})
    assert caught.value.reason == "binding_mismatch"
    with pytest.raises(InvalidStreamToken) as caught:
        stream.verify(token, now=NOW, expect={"call_sid": ""})
    assert caught.value.reason == "binding_mismatch"


@pytest.mark.parametrize("missing", ["call_sid", "interview_id"])
def test_a_stream_token_without_its_call_or_interview_does_not_verify(missing):
    """Only reachable with the key (issue refuses such claims), but verify checks it too."""
    stream = TokenSigner(SECRET, purpose="stream")
    claims = {**BINDINGS["stream"], missing: "", "purpose": "stream", "exp": NOW + 60}
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    signature = base64.urlsafe_b64encode(stream._sign(payload)).rstrip(b"=").decode()
    assert reason(stream, payload + "." + signature) == "malformed"


def test_a_token_of_the_old_single_key_format_no_longer_verifies():
    """Before purposes, every token was signed with the raw secret and named no purpose."""
    claims = {**BINDINGS["report"], "purpose": "report", "exp": NOW + 60}
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    raw = hmac.new(SECRET, payload.encode(), hashlib.sha256).digest()
    old = payload + "." + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    for signer in signers().values():
        assert reason(signer, old) == "bad_signature"


def test_report_links_carry_report_and_recording_tokens_bound_to_what_they_open():
    links = LinkSigner.from_secret(SECRET, ttl_secs=3600)
    report = {"interview_id": "iv_1", "calls": [{"call_sid": "CA1"}, {"call_sid": "CA2"}]}
    out = report_links(links, "https://hr.example/", report)
    assert out["report_html"].startswith("https://hr.example/interviews/iv_1/report?token=")
    report_token = out["report_html"].split("token=")[1]
    assert links.report.verify(report_token, expect={"interview_id": "iv_1"})
    with pytest.raises(InvalidStreamToken):
        links.recording.verify(report_token)
    for call_sid in ("CA1", "CA2"):
        url = out["recordings"][call_sid]
        assert url.startswith(f"https://hr.example/recordings/{call_sid}/call.wav?token=")
        claims = links.recording.verify(url.split("token=")[1])
        assert (claims["interview_id"], claims["call_sid"], claims["file"]) == (
            "iv_1",
            call_sid,
            "call.wav",
        )
        with pytest.raises(InvalidStreamToken):
            links.report.verify(url.split("token=")[1])
    stream = TokenSigner(SECRET, purpose="stream")
    for url in (report_link(links, "", "iv_1"), recording_link(links, "", "iv_1", "CA1")):
        with pytest.raises(InvalidStreamToken):
            stream.verify(url.split("token=")[1])
