"""Our Standard Webhooks signatures against the official ``standardwebhooks`` library."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError as LibError

from hris_bridge.signing import (
    WebhookSecretError,
    WebhookVerificationError,
    new_secret,
    parse_secret,
    sign,
    verify,
    webhook_headers,
)

# The example secret of the Standard Webhooks / Svix documentation.
DOC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
BODY = '{"type":"interview.completed","timestamp":"2026-11-22T09:30:15.123Z","data":{"a":"é"}}'


def test_signature_matches_the_official_library():
    ts = 1_795_346_223
    ours = sign(DOC_SECRET, "evt_1", ts, BODY)
    theirs = Webhook(DOC_SECRET).sign("evt_1", datetime.fromtimestamp(ts, tz=UTC), BODY)
    assert ours == theirs
    assert ours.startswith("v1,")


def test_official_library_verifies_our_headers():
    secret = new_secret()
    headers = webhook_headers(secret, "evt_abc", BODY.encode())
    assert Webhook(secret).verify(BODY.encode(), headers) == {
        "type": "interview.completed",
        "timestamp": "2026-11-22T09:30:15.123Z",
        "data": {"a": "é"},
    }
    with pytest.raises(LibError):
        Webhook(new_secret()).verify(BODY.encode(), headers)


def test_we_verify_the_official_librarys_signature():
    secret = new_secret()
    now = datetime.now(tz=UTC)
    signature = Webhook(secret).sign("evt_x", now, BODY)
    headers = {
        "Webhook-Id": "evt_x",
        "Webhook-Timestamp": str(int(now.timestamp())),
        "Webhook-Signature": signature,
    }
    verify(secret, headers, BODY)  # case-insensitive headers, str body
    verify(secret, headers, BODY.encode())


def test_tampering_is_refused():
    secret = new_secret()
    headers = webhook_headers(secret, "evt_1", BODY)
    for bad_headers, bad_body in [
        (headers, BODY.replace("é", "e")),
        ({**headers, "webhook-id": "evt_2"}, BODY),
        ({**headers, "webhook-timestamp": str(int(headers["webhook-timestamp"]) + 1)}, BODY),
    ]:
        with pytest.raises(WebhookVerificationError, match="no matching signature"):
            verify(secret, bad_headers, bad_body)
    with pytest.raises(WebhookVerificationError, match="no matching"):
        verify(new_secret(), headers, BODY)


def test_old_and_future_timestamps_are_refused():
    secret = new_secret()
    now = time.time()
    old = webhook_headers(secret, "evt_1", BODY, timestamp=int(now) - 301)
    with pytest.raises(WebhookVerificationError, match="too old"):
        verify(secret, old, BODY, now=now)
    future = webhook_headers(secret, "evt_1", BODY, timestamp=int(now) + 301)
    with pytest.raises(WebhookVerificationError, match="future"):
        verify(secret, future, BODY, now=now)
    verify(secret, webhook_headers(secret, "evt_1", BODY, timestamp=int(now) - 299), BODY, now=now)


def test_missing_or_malformed_headers_are_refused():
    secret = new_secret()
    headers = webhook_headers(secret, "evt_1", BODY)
    for name in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        partial = {k: v for k, v in headers.items() if k != name}
        with pytest.raises(WebhookVerificationError, match="missing"):
            verify(secret, partial, BODY)
    with pytest.raises(WebhookVerificationError, match="integer"):
        verify(secret, {**headers, "webhook-timestamp": "soon"}, BODY)
    for garbage in ("v1", "v1,!!notbase64!!", "nonsense", "v1a,abc"):
        with pytest.raises(WebhookVerificationError):
            verify(secret, {**headers, "webhook-signature": garbage}, BODY)


def test_any_one_of_several_signatures_passes():
    secret = new_secret()
    headers = webhook_headers(secret, "evt_1", BODY)
    forged = "v1," + base64.b64encode(b"x" * 32).decode()
    several = f"v2,abc {forged} {headers['webhook-signature']}"
    verify(secret, {**headers, "webhook-signature": several}, BODY)
    with pytest.raises(WebhookVerificationError):
        verify(secret, {**headers, "webhook-signature": f"{forged} v2,abc"}, BODY)


def test_rotation_signs_with_every_secret_and_verifies_with_any():
    old, new = new_secret(), new_secret()
    headers = webhook_headers([old, new], "evt_1", BODY)
    assert len(headers["webhook-signature"].split()) == 2
    verify(old, headers, BODY)
    verify(new, headers, BODY)
    Webhook(old).verify(BODY, headers)
    Webhook(new).verify(BODY, headers)
    verify([new_secret(), new], webhook_headers(new, "evt_1", BODY), BODY)


def test_parse_secret_and_its_errors():
    assert len(parse_secret(DOC_SECRET)) == 24
    assert parse_secret(DOC_SECRET.rstrip("=")) == parse_secret(DOC_SECRET)
    secret = new_secret()
    assert secret.startswith("whsec_") and len(parse_secret(secret)) == 32
    assert new_secret() != new_secret()
    with pytest.raises(WebhookSecretError, match="empty"):
        parse_secret("")
    with pytest.raises(WebhookSecretError, match="whsec_"):
        parse_secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    with pytest.raises(WebhookSecretError, match="not valid base64"):
        parse_secret("whsec_not*base64*at*all")
    with pytest.raises(WebhookSecretError, match="24 to 64"):
        parse_secret("whsec_" + base64.b64encode(b"short").decode())
    with pytest.raises(WebhookSecretError) as info:
        parse_secret("whsec_" + base64.b64encode(b"k" * 100).decode())
    assert "k" * 10 not in str(info.value)  # the key itself is never in a message
