"""Standard Webhooks signatures (https://www.standardwebhooks.com/), our own implementation.

A webhook carries three headers:

* ``webhook-id``: the message id, the same on every attempt and replay (receivers dedupe by it);
* ``webhook-timestamp``: the attempt's time, integer unix seconds;
* ``webhook-signature``: space-separated ``v1,<base64 HMAC-SHA256>`` signatures of
  ``"{webhook-id}.{webhook-timestamp}.{body}"``, one per secret (several while a secret is rotated).

Secrets are ``whsec_`` followed by base64; the decoded bytes are the HMAC key (24 to 64 bytes, as
the specification recommends). :func:`verify` is what a receiver runs: constant-time comparison,
any one matching ``v1`` signature passes, timestamps more than five minutes away are refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable, Mapping

SECRET_PREFIX = "whsec_"
SIGNATURE_VERSION = "v1"
TOLERANCE_SECS = 5 * 60
"""How far a ``webhook-timestamp`` may be from the receiver's clock (replay protection)."""
MIN_KEY_BYTES = 24
MAX_KEY_BYTES = 64


class WebhookSecretError(ValueError):
    """A webhook secret is missing or malformed; the message says what is wrong (never the key)."""


class WebhookVerificationError(Exception):
    """A webhook failed verification: missing headers, stale timestamp or no matching signature."""


def parse_secret(secret: str | bytes) -> bytes:
    """Return the HMAC key of a ``whsec_<base64>`` secret (raw ``bytes`` pass through as the key).

    Raises :class:`WebhookSecretError` for an empty secret, a missing ``whsec_`` prefix, bad base64
    or a key outside 24..64 bytes.
    """
    if isinstance(secret, bytes):
        if not secret:
            raise WebhookSecretError("webhook secret is empty")
        return secret
    if not isinstance(secret, str) or not secret.strip():
        raise WebhookSecretError("webhook secret is empty")
    secret = secret.strip()
    if not secret.startswith(SECRET_PREFIX):
        raise WebhookSecretError(
            "webhook secret must look like 'whsec_<base64>' (generate one with "
            "`python -m hris_bridge new-secret`)"
        )
    encoded = secret[len(SECRET_PREFIX) :]
    try:
        # Unpadded base64 is common in the wild: pad it, then decode strictly.
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise WebhookSecretError(
            "webhook secret: the part after 'whsec_' is not valid base64"
        ) from None
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise WebhookSecretError(
            f"webhook secret: the key is {len(key)} bytes, it must be {MIN_KEY_BYTES} to "
            f"{MAX_KEY_BYTES} (generate one with `python -m hris_bridge new-secret`)"
        )
    return key


def new_secret(nbytes: int = 32) -> str:
    """A fresh random ``whsec_`` secret of ``nbytes`` key bytes."""
    if not MIN_KEY_BYTES <= nbytes <= MAX_KEY_BYTES:
        raise ValueError(f"nbytes must be {MIN_KEY_BYTES} to {MAX_KEY_BYTES}")
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(nbytes)).decode("ascii")


def _as_bytes(body: bytes | str) -> bytes:
    return body.encode("utf-8") if isinstance(body, str) else body


def sign(secret: str | bytes, msg_id: str, timestamp: int, body: bytes | str) -> str:
    """The ``v1,<base64>`` signature of one message attempt (one entry of ``webhook-signature``)."""
    key = parse_secret(secret)
    signed = f"{msg_id}.{int(timestamp)}.".encode() + _as_bytes(body)
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


def signature_header(
    secrets_: Iterable[str | bytes], msg_id: str, timestamp: int, body: bytes | str
) -> str:
    """The ``webhook-signature`` value: one signature per secret, space-separated."""
    return " ".join(sign(secret, msg_id, timestamp, body) for secret in secrets_)


def webhook_headers(
    secret: str | bytes | Iterable[str | bytes],
    msg_id: str,
    body: bytes | str,
    *,
    timestamp: int | None = None,
) -> dict[str, str]:
    """The three Standard Webhooks headers for sending ``body`` now (or at ``timestamp``)."""
    ts = int(time.time()) if timestamp is None else int(timestamp)
    keys = [secret] if isinstance(secret, str | bytes) else list(secret)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": signature_header(keys, msg_id, ts, body),
    }


def verify(
    secret: str | bytes | Iterable[str | bytes],
    headers: Mapping[str, str],
    body: bytes | str,
    *,
    tolerance: float = TOLERANCE_SECS,
    now: float | None = None,
) -> None:
    """Check a received webhook; raise :class:`WebhookVerificationError` if it must be refused.

    ``headers`` are looked up case-insensitively. ``secret`` may be several secrets (during a
    rotation): any ``v1`` signature matching any of them passes. Comparison is constant-time.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    msg_id = lowered.get("webhook-id")
    timestamp = lowered.get("webhook-timestamp")
    signatures = lowered.get("webhook-signature")
    if not (msg_id and timestamp and signatures):
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        ts = int(timestamp.strip())
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not integer unix seconds") from None
    now = time.time() if now is None else now
    if ts < now - tolerance:
        raise WebhookVerificationError("webhook-timestamp is too old")
    if ts > now + tolerance:
        raise WebhookVerificationError("webhook-timestamp is too far in the future")
    keys = [secret] if isinstance(secret, str | bytes) else list(secret)
    signed = f"{msg_id}.{ts}.".encode() + _as_bytes(body)
    expected = [hmac.new(parse_secret(k), signed, hashlib.sha256).digest() for k in keys]
    matched = False
    for entry in signatures.split():
        version, _, encoded = entry.partition(",")
        if version != SIGNATURE_VERSION:
            continue
        try:
            candidate = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        for digest in expected:
            # No early exit: every candidate is compared against every key.
            matched |= hmac.compare_digest(digest, candidate)
    if not matched:
        raise WebhookVerificationError("no matching signature")
