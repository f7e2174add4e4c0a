"""Twilio's ``X-Twilio-Signature``: proof that a webhook request really came from Twilio.

Twilio signs each webhook with the account's auth token: HMAC-SHA1 over the full URL it requested
(scheme, host, path and query string) followed by every POST parameter, sorted by name, written as
name then value with no separators; the header carries the base64 of the digest. A repeated
parameter contributes each of its values, in sorted order. See
https://www.twilio.com/docs/usage/security#validating-requests

Validation also accepts the URL with its default port added or removed, as Twilio's own helper
libraries do, because whether Twilio signed ``https://host/..`` or ``https://host:443/..`` is not
consistent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from urllib.parse import SplitResult, urlsplit, urlunsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}


def _values(params: Mapping[str, str | list[str]], name: str) -> list[str]:
    getall = getattr(params, "getall", None)  # aiohttp/multidict: one key, many values
    if callable(getall):
        values: Iterable[str] = getall(name)
    else:
        value = params[name]
        values = [value] if isinstance(value, str) else value
    return sorted(set(str(v) for v in values))


def compute_twilio_signature(
    auth_token: str, url: str, params: Mapping[str, str | list[str]]
) -> str:
    """Compute the ``X-Twilio-Signature`` Twilio would send for a POST of ``params`` to ``url``.

    ``params`` may map a name to one value or a list of values; a ``multidict`` (what aiohttp's
    ``await request.post()`` returns) works too.
    """
    pieces = [url]
    for name in sorted(set(params.keys())):
        for value in _values(params, name):
            pieces.append(name + value)
    digest = hmac.new(auth_token.encode("utf-8"), "".join(pieces).encode("utf-8"), hashlib.sha1)
    return base64.b64encode(digest.digest()).decode("ascii")


def _with_netloc(parts: SplitResult, netloc: str) -> str:
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _url_variants(url: str) -> list[str]:
    """List the URL as given, without its port, and with the scheme's default port."""
    variants = [url]
    parts = urlsplit(url)
    default_port = _DEFAULT_PORTS.get(parts.scheme.lower())
    if not parts.hostname:
        return variants
    userinfo = parts.netloc.rpartition("@")[0]
    prefix = userinfo + "@" if userinfo else ""
    host = parts.netloc[len(prefix) :]
    bare_host = host.rsplit(":", 1)[0] if parts.port is not None else host
    without_port = _with_netloc(parts, prefix + bare_host)
    if without_port not in variants:
        variants.append(without_port)
    if parts.port is None and default_port is not None:
        variants.append(_with_netloc(parts, f"{prefix}{bare_host}:{default_port}"))
    return variants


def validate_twilio_signature(
    auth_token: str, url: str, params: Mapping[str, str | list[str]], signature: str | None
) -> bool:
    """Whether ``signature`` (the ``X-Twilio-Signature`` header) signs this request.

    ``url`` must be the URL Twilio requested, as Twilio saw it (behind a proxy: the public URL,
    not the internal one), query string included. Comparison is constant-time.
    """
    if not signature or not auth_token:
        return False
    expected = signature.strip().encode("ascii", "replace")
    matched = False
    for candidate in _url_variants(url):
        computed = compute_twilio_signature(auth_token, candidate, params).encode("ascii")
        matched |= hmac.compare_digest(computed, expected)
    return matched
