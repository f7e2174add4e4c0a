"""Schemathesis: requests generated from the OpenAPI document, sent to the live test server.

Valid and invalid requests (positive and negative generation: boundary values from the
document's constraints, then random ones) for every documented operation, over a real socket
with a valid API token; Twilio's voice webhook signed as Twilio signs it, so generated forms reach
the code behind the signature check. Each response must be no 500 and exactly what the document
says: a documented status code, content type, headers and JSON schema; invalid input refused with
a 4xx. Bounded: a fixed number of examples per operation, no shrinking (a failure is reported as
found), no example database.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings

from tests.conftest import API_TOKEN, TWILIO_AUTH_TOKEN, start_server, stop_server
from voicebot.api.openapi import openapi_document
from voicebot.telephony.signature import compute_twilio_signature

pytestmark = pytest.mark.e2e

EXAMPLES_PER_OPERATION = 200
"""Random examples per operation, both generation modes together (the coverage phase adds its
own boundary cases)."""

CONFIG = schemathesis.Config.from_dict(
    {
        "headers": {"Authorization": f"Bearer {API_TOKEN}"},
        "request-timeout": 10,
        "generation": {
            "mode": "all",
            "max-examples": EXAMPLES_PER_OPERATION,
            "no-shrink": True,
            "database": "none",
        },
        "phases": {"stateful": {"enabled": False}},
        "checks": {
            # A job id or time zone the document allows may still be unknown to this server (a
            # 422 that says so): valid by the schema is not always accepted.
            "positive_data_acceptance": {"enabled": False},
        },
    }
)
# The checked-in document (the served one is the same: tests/api/test_openapi.py), loaded at
# collection so that each operation is a test of its own.
schema = schemathesis.openapi.from_dict(openapi_document(), config=CONFIG)


def sign_voice_webhook(case: schemathesis.Case, base_url: str) -> None:
    """Add the ``X-Twilio-Signature`` Twilio would send for this request's URL and form."""
    sent = case.as_transport_kwargs(base_url=base_url)
    url = requests.Request("POST", sent["url"], params=sent.get("params")).prepare().url
    form: dict[str, Any] = {}
    if isinstance(sent.get("data"), dict):
        for name, value in sent["data"].items():
            values = value if isinstance(value, list) else [value]
            form[name] = [str(v) for v in values if v is not None]
    signature = compute_twilio_signature(TWILIO_AUTH_TOKEN, url, form)
    case.headers = {**(case.headers or {}), "X-Twilio-Signature": signature}


LOADED_JOBS = ("customer_service_en", "workshop_operator_zh")


def aim_at_real_data(case: schemathesis.Case, interview_id: str) -> None:
    """Point generated ids at things that exist, so the code past "not found" is fuzzed too.

    A generated ``job_id`` is a loaded job (any non-empty string is valid by the document, but
    an unknown job is a 422 before the rest is looked at); about every other ``interview_id``
    (in a path, or the voice webhook's query) is a pending interview the server holds.
    """
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("job_id"), str) and body["job_id"]:
        body["job_id"] = LOADED_JOBS[len(body["job_id"]) % len(LOADED_JOBS)]
    for where in (case.path_parameters, case.query):  # the report routes; the voice webhook
        if isinstance(where, dict) and "interview_id" in where:
            if len(str(where["interview_id"])) % 2:
                where["interview_id"] = interview_id


@pytest.fixture(scope="module")
def fuzzed_server(tmp_path_factory):
    """A server of its own: the hundreds of interviews and webhook calls made here stay here.

    It must still shut down cleanly on SIGTERM afterwards.
    """
    running = start_server(
        tmp_path_factory.mktemp("fuzzed"),
        VOICEBOT_PUBLIC_URL="",
        VOICEBOT_UNAUTH_REQUESTS_PER_MIN="0",  # hundreds of requests from one address, on purpose
    )
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def interview_id(fuzzed_server) -> str:
    return fuzzed_server.create_interview()


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_the_server_answers_every_generated_request_as_documented(
    case, fuzzed_server, interview_id
):
    server = fuzzed_server
    aim_at_real_data(case, interview_id)
    if case.operation.label == "POST /twilio/voice":
        sign_voice_webhook(case, server.url)
    response = case.call(base_url=server.url)
    case.validate_response(response)
