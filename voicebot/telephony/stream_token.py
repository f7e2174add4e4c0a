"""Short-lived signed stream tokens: only a call our voice webhook answered may open a Media Stream.

The voice webhook issues a token and puts it in a TwiML ``<Parameter>``; Twilio hands it back in
the stream's ``start`` message, and the stream is refused unless the token verifies. The format is
compact and URL-safe: ``base64url(JSON claims) + "." + base64url(HMAC-SHA256(secret, first part))``,
no padding. Claims always include ``iat`` and ``exp`` (Unix seconds) and a random ``jti``; callers
add their own (interview id, call sid, ...). Like a JWT with one fixed algorithm, so there is no
algorithm field to confuse.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import time
from typing import Any, Literal

RESERVED_CLAIMS = frozenset({"iat", "exp", "jti"})
"""Claims the signer sets itself; ``issue`` refuses them in caller claims."""

InvalidReason = Literal["missing", "malformed", "bad_signature", "expired"]


class InvalidStreamToken(Exception):
    """A stream token did not verify; ``reason`` is one of the :data:`InvalidReason` strings."""

    def __init__(self, reason: InvalidReason, detail: str = ""):
        self.reason: InvalidReason = reason
        self.detail = detail
        super().__init__(f"invalid stream token ({reason})" + (f": {detail}" if detail else ""))


def _b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


_B64URL = re.compile(r"[A-Za-z0-9_-]+")


def _b64url_decode(text: str) -> bytes:
    if not _B64URL.fullmatch(text):
        raise ValueError("not unpadded base64url")
    padded = text + "=" * (-len(text) % 4)
    return base64.b64decode(padded, altchars=b"-_", validate=True)


class StreamTokenSigner:
    """Issues and verifies stream tokens with one secret and a time to live."""

    def __init__(self, secret: bytes, ttl_secs: float = 120.0):
        if not secret:
            raise ValueError(
                "StreamTokenSigner: secret is empty; give it at least 32 random bytes "
                "(e.g. secrets.token_bytes(32))"
            )
        if ttl_secs <= 0:
            raise ValueError(f"StreamTokenSigner: ttl_secs must be positive, got {ttl_secs}")
        self._secret = bytes(secret)
        self.ttl_secs = ttl_secs

    def _sign(self, payload_part: str) -> bytes:
        return hmac.new(self._secret, payload_part.encode("ascii"), hashlib.sha256).digest()

    def issue(self, claims: dict[str, str], now: float | None = None) -> str:
        """Issue a token carrying ``claims`` plus ``iat``, ``exp`` (now + ttl), a random ``jti``."""
        clash = RESERVED_CLAIMS.intersection(claims)
        if clash:
            raise ValueError(
                f"StreamTokenSigner.issue: claims {sorted(clash)} are set by the signer; "
                "rename them"
            )
        issued_at = time.time() if now is None else now
        payload = {
            **claims,
            "iat": issued_at,
            "exp": issued_at + self.ttl_secs,
            "jti": secrets.token_urlsafe(12),
        }
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
        payload_part = _b64url_encode(body.encode("utf-8"))
        return payload_part + "." + _b64url_encode(self._sign(payload_part))

    def verify(self, token: str | None, now: float | None = None) -> dict[str, Any]:
        """Return the claims if authentic and unexpired; else raise :class:`InvalidStreamToken`."""
        if not token:
            raise InvalidStreamToken("missing", "no token in the stream's start parameters")
        if not isinstance(token, str) or token.count(".") != 1:
            raise InvalidStreamToken("malformed", "expected two base64url parts joined by '.'")
        payload_part, signature_part = token.split(".")
        try:
            signature = _b64url_decode(signature_part)
            payload_bytes = _b64url_decode(payload_part)
        except (binascii.Error, ValueError):
            raise InvalidStreamToken("malformed", "a part is not base64url") from None
        if not hmac.compare_digest(signature, self._sign(payload_part)):
            raise InvalidStreamToken("bad_signature", "signature does not match this server's key")
        try:
            claims = json.loads(payload_bytes.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise InvalidStreamToken("malformed", "payload is not JSON") from None
        expires = claims.get("exp") if isinstance(claims, dict) else None
        if not isinstance(expires, (int, float)) or isinstance(expires, bool):
            raise InvalidStreamToken("malformed", "payload has no numeric 'exp'")
        current = time.time() if now is None else now
        if current >= expires:
            raise InvalidStreamToken(
                "expired", f"expired {current - expires:.1f} s ago (ttl {self.ttl_secs:g} s)"
            )
        return claims
