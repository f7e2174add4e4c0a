"""Endpoint configuration from the environment and from YAML/JSON files, with clear errors."""

from __future__ import annotations

import json

import pytest

from hris_bridge.endpoints import Endpoint, EndpointConfigError, load_endpoints
from hris_bridge.signing import new_secret

SECRET = new_secret()


def test_env_gives_one_default_endpoint_for_every_type():
    [endpoint] = load_endpoints(
        {"VOICEBOT_WEBHOOK_URL": "https://hr.example.com/in", "VOICEBOT_WEBHOOK_SECRET": SECRET}
    )
    assert endpoint.id == "default" and endpoint.url == "https://hr.example.com/in"
    assert endpoint.accepts("interview.completed") and endpoint.accepts("anything.else")
    assert SECRET not in repr(endpoint)
    assert load_endpoints({}) == []


def test_yaml_file_with_several_endpoints_and_filters(tmp_path):
    path = tmp_path / "endpoints.yaml"
    path.write_text(
        f"""
endpoints:
  - id: ats
    url: https://ats.example.com/hooks?tenant=7
    secret: {SECRET}
    event_types: [interview.completed, "candidate.*"]
    timeout_secs: 5
    max_in_flight: 1
  - id: audit
    url: http://10.0.0.5:8080/in
    secret_env: AUDIT_SECRET
"""
    )
    env = {
        "VOICEBOT_WEBHOOK_ENDPOINTS_FILE": str(path),
        "AUDIT_SECRET": SECRET,
        "VOICEBOT_WEBHOOK_URL": "https://hr.example.com/in",
        "VOICEBOT_WEBHOOK_SECRET": SECRET,
    }
    default, ats, audit = load_endpoints(env)
    assert [default.id, ats.id, audit.id] == ["default", "ats", "audit"]
    assert ats.accepts("interview.completed") and ats.accepts("candidate.status_changed")
    assert not ats.accepts("call.started")
    assert ats.timeout_secs == 5 and ats.max_in_flight == 1
    assert audit.accepts("call.started") and audit.event_types == ("*",)
    assert ats.describe()["url"] == "https://ats.example.com/hooks"  # no query in displays


def test_json_file(tmp_path):
    path = tmp_path / "endpoints.json"
    path.write_text(json.dumps([{"id": "a", "url": "https://a.example/x", "secret": SECRET}]))
    [endpoint] = load_endpoints({"VOICEBOT_WEBHOOK_ENDPOINTS_FILE": str(path)})
    assert endpoint.id == "a"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://hr.example.com/in", "must start with https://"),
        ("hr.example.com/in", "must start with https://"),
        ("https:///in", "no host"),
        ("https://hr.example.com:99999/in", "not a valid URL"),
        ("", "url is missing"),
    ],
)
def test_bad_urls(url, message):
    with pytest.raises(EndpointConfigError, match=message):
        Endpoint(id="x", url=url, secret=SECRET)


def test_env_errors_name_the_variable():
    with pytest.raises(EndpointConfigError, match="VOICEBOT_WEBHOOK_SECRET is not"):
        load_endpoints({"VOICEBOT_WEBHOOK_URL": "https://hr.example.com/in"})
    with pytest.raises(EndpointConfigError, match="VOICEBOT_WEBHOOK_URL is not"):
        load_endpoints({"VOICEBOT_WEBHOOK_SECRET": SECRET})
    with pytest.raises(EndpointConfigError, match="VOICEBOT_WEBHOOK_SECRET: .*whsec_"):
        load_endpoints(
            {"VOICEBOT_WEBHOOK_URL": "https://hr.example.com/in", "VOICEBOT_WEBHOOK_SECRET": "pw"}
        )
    with pytest.raises(EndpointConfigError, match="VOICEBOT_WEBHOOK_URL: url must start"):
        load_endpoints(
            {"VOICEBOT_WEBHOOK_URL": "hr.example.com", "VOICEBOT_WEBHOOK_SECRET": SECRET}
        )


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"url": "https://a.example/x", "secret": SECRET}, "'#1'.*id is missing"),
        ({"id": "a", "url": "https://a.example/x"}, "'a'.*secret is missing"),
        ({"id": "a", "url": "https://a.example/x", "secret": "whsec_!!"}, "'a'.*not valid base64"),
        (
            {"id": "a", "url": "https://a.example/x", "secret_env": "NOPE"},
            "'NOPE', which is not set",
        ),
        ({"id": "a", "url": "mailto:x", "secret": SECRET}, "'a'.*must start with https"),
        ({"id": "a", "url": "https://a.example/x", "secret": SECRET, "urll": 1}, "unknown field"),
        ({"id": "a b", "url": "https://a.example/x", "secret": SECRET}, "id must be"),
        (
            {"id": "a", "url": "https://a.example/x", "secret": SECRET, "event_types": []},
            "non-empty",
        ),
        (
            {"id": "a", "url": "https://a.example/x", "secret": SECRET, "timeout_secs": 0},
            "positive",
        ),
        (
            {"id": "a", "url": "https://a.example/x", "secret": SECRET, "timeout_secs": "x"},
            "number",
        ),
    ],
)
def test_file_errors_name_the_endpoint_and_field(tmp_path, entry, message):
    path = tmp_path / "endpoints.yaml"
    path.write_text(json.dumps({"endpoints": [entry]}))
    with pytest.raises(EndpointConfigError, match=message) as info:
        load_endpoints({"VOICEBOT_WEBHOOK_ENDPOINTS_FILE": str(path)})
    assert str(path) in str(info.value)
    assert SECRET not in str(info.value)


def test_file_level_errors(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(EndpointConfigError, match="cannot read"):
        load_endpoints({"VOICEBOT_WEBHOOK_ENDPOINTS_FILE": str(missing)})
    bad = tmp_path / "bad.yaml"
    bad.write_text("endpoints: [\n")
    with pytest.raises(EndpointConfigError, match="not valid"):
        load_endpoints({"VOICEBOT_WEBHOOK_ENDPOINTS_FILE": str(bad)})
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("hooks: []\n")
    with pytest.raises(EndpointConfigError, match="top-level 'endpoints'"):
        load_endpoints({"VOICEBOT_WEBHOOK_ENDPOINTS_FILE": str(wrong)})
    twice = tmp_path / "twice.yaml"
    entry = {"id": "default", "url": "https://a.example/x", "secret": SECRET}
    twice.write_text(json.dumps({"endpoints": [entry]}))
    with pytest.raises(EndpointConfigError, match="'default' is used twice"):
        load_endpoints(
            {
                "VOICEBOT_WEBHOOK_ENDPOINTS_FILE": str(twice),
                "VOICEBOT_WEBHOOK_URL": "https://b.example/y",
                "VOICEBOT_WEBHOOK_SECRET": SECRET,
            }
        )
