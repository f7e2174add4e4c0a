"""Short-lived signed tokens, each good for one purpose and bound to what it opens.

Three purposes (:data:`PURPOSES`): ``stream`` (the voice webhook puts one in a TwiML
``<Parameter>``; Twilio hands it back in the stream's ``start`` message; bound to the call sid and
the interview), ``report`` (a link to an interview's report page; bound to the interview) and
``recording`` (a link to one call's recording; bound to the interview, the call and the file).
Each purpose signs with its own key, derived from the one server secret as
``HMAC-SHA256(secret, "voicebot/<purpose>/v1")``, and names itself in the ``purpose`` claim: a
token of one purpose does not verify as another, and :meth:`TokenSigner.verify` checks the
binding claims the caller expects.

The format is compact and URL-safe: ``base64url(JSON claims) + "." +
base64url(HMAC-SHA256(purpose key, first part))``, no padding. Claims always include ``purpose``,
``iat`` and ``exp`` (Unix seconds) and a random ``jti``, plus the purpose's binding claims. Like a
JWT with one fixed algorithm, so there is no algorithm field to confuse.
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

RESERVED_CLAIMS = frozenset({"purpose", "iat", "exp", "jti"})
"""Claims the signer sets itself; ``issue`` refuses them in caller claims."""

PURPOSES: dict[str, tuple[str, ...]] = {
    "stream": ("interview_id", "call_sid"),
    "report": ("interview_id",),
    "recording": ("interview_id", "call_sid", "file"),
}
"""What each kind of token is for, and the claims that bind it (all required, non-empty)."""

KEY_VERSION = "v1"

InvalidReason = Literal[
    "missing", "malformed", "bad_signature", "expired", "wrong_purpose", "binding_mismatch"
]


class InvalidStreamToken(Exception):
    """A token did not verify; ``reason`` is one of the :data:`InvalidReason` strings."""

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


def _non_empty_str(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def purpose_key(secret: bytes, purpose: str) -> bytes:
    """The HMAC key of one purpose, derived from the server secret."""
    label = f"voicebot/{purpose}/{KEY_VERSION}".encode("ascii")
    return hmac.new(bytes(secret), label, hashlib.sha256).digest()


class TokenSigner:
    """Issues and verifies the tokens of one purpose, with that purpose's key and time to live."""

    def __init__(self, secret: bytes, ttl_secs: float = 120.0, purpose: str = "stream"):
        if not secret:
            raise ValueError(
                "TokenSigner: secret is empty; give it at least 32 random bytes "
                "(e.g. secrets.token_bytes(32))"
            )
        if ttl_secs <= 0:
            raise ValueError(f"TokenSigner: ttl_secs must be positive, got {ttl_secs}")
        if purpose not in PURPOSES:
            raise ValueError(f"TokenSigner: unknown purpose {purpose!r}; known: {sorted(PURPOSES)}")
        self._key = purpose_key(secret, purpose)
        self.purpose = purpose
        self.binding = PURPOSES[purpose]
        self.ttl_secs = ttl_secs

    def _sign(self, payload_part: str) -> bytes:
        return hmac.new(self._key, payload_part.encode("ascii"), hashlib.sha256).digest()

    def issue(self, claims: dict[str, str], now: float | None = None) -> str:
        """Issue a token carrying ``claims``, ``purpose``, ``iat``, ``exp`` and a random ``jti``.

        ``claims`` must name the purpose's binding claims (non-empty); ``exp`` is now + ttl.
        """
        clash = RESERVED_CLAIMS.intersection(claims)
        if clash:
            raise ValueError(
                f"TokenSigner.issue: claims {sorted(clash)} are set by the signer; rename them"
            )
        unbound = [name for name in self.binding if not claims.get(name)]
        if unbound:
            raise ValueError(
                f"TokenSigner.issue: a {self.purpose} token must name {list(self.binding)}; "
                f"missing or empty: {unbound}"
            )
        issued_at = time.time() if now is None else now
        payload = {
            **claims,
            "purpose": self.purpose,
            "iat": issued_at,
            "exp": issued_at + self.ttl_secs,
            "jti": secrets.token_urlsafe(12),
        }
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
        payload_part = _b64url_encode(body.encode("utf-8"))
        return payload_part + "." + _b64url_encode(self._sign(payload_part))

    def verify(
        self,
        token: str | None,
        now: float | None = None,
        expect: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Return the claims if the token is authentic, of this purpose, bound and unexpired.

        Every binding claim must be present, and each claim in ``expect`` (claim -> value) must
        have that value. Otherwise raise :class:`InvalidStreamToken`.
        """
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
        if claims.get("purpose") != self.purpose:
            raise InvalidStreamToken(
                "wrong_purpose", f"a {claims.get('purpose')!r} token is not a {self.purpose} token"
            )
        unbound = [name for name in self.binding if not _non_empty_str(claims.get(name))]
        if unbound:
            raise InvalidStreamToken("malformed", f"the token does not name its {unbound}")
        current = time.time() if now is None else now
        if current >= expires:
            raise InvalidStreamToken(
                "expired", f"expired {current - expires:.1f} s ago (ttl {self.ttl_secs:g} s)"
            )
        for name, value in (expect or {}).items():
            if claims.get(name) != value:
                raise InvalidStreamToken(
                    "binding_mismatch", f"the token was issued for another {name}"
                )
        return claims


StreamTokenSigner = TokenSigner
"""The name from before tokens had purposes (a :class:`TokenSigner` signs stream tokens by
default)."""
