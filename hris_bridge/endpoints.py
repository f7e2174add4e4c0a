"""Webhook endpoints: where the bridge delivers, which events, signed with which secret.

Two sources, combined:

* ``VOICEBOT_WEBHOOK_URL`` + ``VOICEBOT_WEBHOOK_SECRET``: one endpoint, id ``default``, every event
  type;
* ``VOICEBOT_WEBHOOK_ENDPOINTS_FILE``: a YAML or JSON file with several endpoints::

      endpoints:
        - id: workday
          url: https://hr.example.com/hooks/voicebot
          secret: whsec_...            # or secret_env: WORKDAY_WEBHOOK_SECRET
          event_types: [interview.completed, candidate.status_changed]
          timeout_secs: 10
        - id: audit
          url: https://audit.example.com/in
          secret_env: AUDIT_WEBHOOK_SECRET
          event_types: ["*"]

``event_types`` entries are exact types or shell-style patterns (``interview.*``); ``["*"]`` (the
default) is every type. Every problem raises :class:`EndpointConfigError` naming the endpoint and
the field, never the secret itself.
"""

from __future__ import annotations

import fnmatch
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hris_bridge.signing import WebhookSecretError, parse_secret

DEFAULT_TIMEOUT_SECS = 15.0
DEFAULT_MAX_IN_FLIGHT = 4
ENV_URL = "VOICEBOT_WEBHOOK_URL"
ENV_SECRET = "VOICEBOT_WEBHOOK_SECRET"
ENV_FILE = "VOICEBOT_WEBHOOK_ENDPOINTS_FILE"
_ID_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


class EndpointConfigError(ValueError):
    """An endpoint is misconfigured; the message names where (env variable or file) and what."""


@dataclass(frozen=True)
class Endpoint:
    """One HR-system webhook receiver."""

    id: str
    url: str
    secret: str = field(repr=False)
    """``whsec_<base64>``; never logged."""
    event_types: tuple[str, ...] = ("*",)
    timeout_secs: float = DEFAULT_TIMEOUT_SECS
    """Whole-attempt timeout (connect, send, response headers)."""
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    """Concurrent requests to this endpoint. 1 keeps deliveries strictly in event order (a failed
    one is retried later, after newer events)."""
    key: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        validate_endpoint(self)
        object.__setattr__(self, "key", parse_secret(self.secret))

    def accepts(self, event_type: str) -> bool:
        """Whether events of ``event_type`` go to this endpoint."""
        return any(
            pattern == "*" or fnmatch.fnmatchcase(event_type, pattern)
            for pattern in self.event_types
        )

    def describe(self) -> dict[str, Any]:
        """The endpoint for display (the secret masked, the URL without credentials or query)."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        if parts.port:
            host += f":{parts.port}"
        return {
            "id": self.id,
            "url": f"{parts.scheme}://{host}{parts.path}",
            "event_types": list(self.event_types),
            "timeout_secs": self.timeout_secs,
            "max_in_flight": self.max_in_flight,
        }


def validate_endpoint(endpoint: Endpoint, where: str = "") -> None:
    """Raise :class:`EndpointConfigError` if ``endpoint`` cannot be used."""
    label = f"endpoint {endpoint.id!r}{f' ({where})' if where else ''}"
    if not endpoint.id or not set(endpoint.id) <= _ID_CHARS:
        raise EndpointConfigError(f"{label}: id must be non-empty letters, digits, '-', '_' or '.'")
    check_url(endpoint.url, label)
    try:
        parse_secret(endpoint.secret)
    except WebhookSecretError as exc:
        raise EndpointConfigError(f"{label}: {exc}") from None
    if isinstance(endpoint.event_types, str) or not endpoint.event_types:
        raise EndpointConfigError(f"{label}: event_types must be a non-empty list (['*'] for all)")
    if not all(isinstance(t, str) and t for t in endpoint.event_types):
        raise EndpointConfigError(f"{label}: event_types must be strings")
    if not endpoint.timeout_secs > 0:
        raise EndpointConfigError(f"{label}: timeout_secs must be positive")
    if not (isinstance(endpoint.max_in_flight, int) and endpoint.max_in_flight >= 1):
        raise EndpointConfigError(f"{label}: max_in_flight must be an integer >= 1")


def check_url(url: str, label: str) -> None:
    """Raise :class:`EndpointConfigError` unless ``url`` is an absolute http(s) URL with a host."""
    if not url or not isinstance(url, str):
        raise EndpointConfigError(f"{label}: url is missing")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise EndpointConfigError(f"{label}: url is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise EndpointConfigError(
            f"{label}: url must start with https:// (or http://), got scheme {parts.scheme!r}"
        )
    if not parts.hostname:
        raise EndpointConfigError(f"{label}: url has no host")
    if parts.fragment:
        raise EndpointConfigError(f"{label}: url must not have a #fragment")


def _endpoint_from_mapping(raw: Any, where: str, index: int, env: Mapping[str, str]) -> Endpoint:
    if not isinstance(raw, Mapping):
        raise EndpointConfigError(f"{where}: endpoint #{index + 1} must be a mapping")
    known = {
        "id",
        "url",
        "secret",
        "secret_env",
        "event_types",
        "timeout_secs",
        "max_in_flight",
    }
    endpoint_id = str(raw.get("id") or "")
    label = f"endpoint {endpoint_id or f'#{index + 1}'!r} ({where})"
    unknown = sorted(set(raw) - known)
    if unknown:
        raise EndpointConfigError(f"{label}: unknown field(s) {unknown}; known: {sorted(known)}")
    if not endpoint_id:
        raise EndpointConfigError(f"{label}: id is missing")
    secret = raw.get("secret")
    if raw.get("secret_env"):
        if secret:
            raise EndpointConfigError(f"{label}: give secret or secret_env, not both")
        secret = env.get(str(raw["secret_env"]), "")
        if not secret:
            raise EndpointConfigError(
                f"{label}: secret_env names {raw['secret_env']!r}, which is not set"
            )
    if not secret:
        raise EndpointConfigError(f"{label}: secret is missing (whsec_...)")
    event_types = raw.get("event_types", ["*"])
    if isinstance(event_types, str):
        event_types = [event_types]
    if not isinstance(event_types, list | tuple):
        raise EndpointConfigError(f"{label}: event_types must be a list of event types")
    try:
        timeout = float(raw.get("timeout_secs", DEFAULT_TIMEOUT_SECS))
    except (TypeError, ValueError):
        raise EndpointConfigError(f"{label}: timeout_secs must be a number") from None
    max_in_flight = raw.get("max_in_flight", DEFAULT_MAX_IN_FLIGHT)
    try:
        return Endpoint(
            id=endpoint_id,
            url=str(raw.get("url") or ""),
            secret=str(secret),
            event_types=tuple(event_types),
            timeout_secs=timeout,
            max_in_flight=max_in_flight,
        )
    except EndpointConfigError as exc:
        raise EndpointConfigError(str(exc).replace(f"endpoint {endpoint_id!r}", label, 1)) from None


def parse_endpoints(
    data: Any, where: str = "endpoints", env: Mapping[str, str] | None = None
) -> list[Endpoint]:
    """Endpoints from parsed YAML/JSON: ``{"endpoints": [...]}`` or a bare list."""
    env = os.environ if env is None else env
    if isinstance(data, Mapping):
        if "endpoints" not in data:
            raise EndpointConfigError(f"{where}: expected a top-level 'endpoints' list")
        data = data["endpoints"]
    if not isinstance(data, list):
        raise EndpointConfigError(f"{where}: 'endpoints' must be a list")
    endpoints = [_endpoint_from_mapping(raw, where, i, env) for i, raw in enumerate(data)]
    _check_unique(endpoints, where)
    return endpoints


def endpoints_from_file(path: str | Path, env: Mapping[str, str] | None = None) -> list[Endpoint]:
    """Endpoints from a YAML (``.yaml``/``.yml``) or JSON file."""
    path = Path(path)
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise EndpointConfigError(f"{ENV_FILE}: cannot read {where}: {exc.strerror}") from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # yaml.YAMLError / json.JSONDecodeError
        raise EndpointConfigError(f"{where}: not valid {path.suffix or 'YAML'}: {exc}") from None
    return parse_endpoints(data, where, env)


def load_endpoints(
    env: Mapping[str, str] | None = None,
    *,
    url: str | None = None,
    secret: str | None = None,
    endpoints_file: str | Path | None = None,
) -> list[Endpoint]:
    """Every configured endpoint: the ``default`` one from the URL/secret pair, then the file's.

    Values come from ``env`` (default: the process environment) unless given as arguments.
    Returns an empty list when nothing is configured.
    """
    env = os.environ if env is None else env
    url = env.get(ENV_URL, "") if url is None else url
    secret = env.get(ENV_SECRET, "") if secret is None else secret
    endpoints_file = env.get(ENV_FILE, "") if endpoints_file is None else endpoints_file
    endpoints: list[Endpoint] = []
    if url or secret:
        if not url:
            raise EndpointConfigError(f"{ENV_SECRET} is set but {ENV_URL} is not")
        if not secret:
            raise EndpointConfigError(
                f"{ENV_URL} is set but {ENV_SECRET} is not: every webhook is signed "
                "(generate a secret with `python -m hris_bridge new-secret`)"
            )
        check_url(url, ENV_URL)
        try:
            parse_secret(secret)
        except WebhookSecretError as exc:
            raise EndpointConfigError(f"{ENV_SECRET}: {exc}") from None
        endpoints.append(Endpoint(id="default", url=url, secret=secret))
    if endpoints_file:
        endpoints.extend(endpoints_from_file(endpoints_file, env))
    _check_unique(endpoints, ENV_FILE if endpoints_file else "endpoints")
    return endpoints


def _check_unique(endpoints: Iterable[Endpoint], where: str) -> None:
    seen: set[str] = set()
    for endpoint in endpoints:
        if endpoint.id in seen:
            raise EndpointConfigError(f"{where}: endpoint id {endpoint.id!r} is used twice")
        seen.add(endpoint.id)
