"""The OpenAPI document (voicebot/api/openapi.yaml) against the real server.

Valid OpenAPI 3.1; served at ``/openapi.json``; naming every route the server has; each response of
the API flows an HR system runs (including a real call and its report) matching the document's
status codes, content types and schemas.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.conftest import API_TOKEN, CLIENTS, TWILIO_AUTH_TOKEN
from voicebot.api.openapi import openapi_document

DOCUMENT_URI = "urn:voicebot:openapi"


def test_the_document_is_valid_openapi_3_1():
    document = openapi_document()
    assert document["openapi"].startswith("3.1")
    validate(document)  # raises with the path of the first problem


def test_the_document_names_every_route_the_server_has():
    """A route added to the code without documenting it (or the reverse) fails here."""
    from voicebot.app import create_app
    from voicebot.config import Settings

    app = create_app(Settings())
    routes = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("formatter") or info.get("path")
        if path is None or route.method == "HEAD":
            continue  # static files
        if path.startswith("/monitor"):
            continue  # the recruiters' browser UI: not an integration API (see the document)
        routes.add((route.method.lower(), path))
    documented = {
        (method, path)
        for path, operations in openapi_document()["paths"].items()
        for method in operations
        if method != "parameters"
    }
    assert routes == documented, {
        "in the code, not documented": sorted(routes - documented),
        "documented, not in the code": sorted(documented - routes),
    }


# --- real responses against the document ---------------------------------------------------------


def _pointer(*parts: str) -> str:
    return "".join("/" + part.replace("~", "~0").replace("/", "~1") for part in parts)


REGISTRY = Registry().with_resource(
    DOCUMENT_URI, Resource.from_contents(openapi_document(), default_specification=DRAFT202012)
)


def _resolve(node: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """A ``$ref``'d response followed to its target, with the target's JSON pointer."""
    ref = node.get("$ref")
    if ref is None:
        return node, ""
    target: Any = openapi_document()
    for part in ref.removeprefix("#/").split("/"):
        target = target[part.replace("~1", "/").replace("~0", "~")]
    return target, ref.removeprefix("#")


def assert_conforms(method: str, template: str, status: int, content_type: str, body: bytes) -> Any:
    """Fail unless the response's status, content type and body are what the document says.

    Returns the parsed JSON body (or the text).
    """
    operation = openapi_document()["paths"][template][method.lower()]
    responses = operation["responses"]
    assert str(status) in responses, f"{method} {template}: {status} is not documented"
    response, pointer = _resolve(responses[str(status)])
    if not pointer:
        pointer = _pointer("paths", template, method.lower(), "responses", str(status))
    media_type = content_type.split(";")[0].strip()
    content = response.get("content", {})
    if not content:
        return body
    assert media_type in content, f"{method} {template} {status}: {media_type} not documented"
    if media_type != "application/json":
        return body.decode(errors="replace") if media_type.startswith("text/") else body
    parsed = json.loads(body)
    schema_ref = DOCUMENT_URI + "#" + pointer + _pointer("content", media_type, "schema")
    validator = Draft202012Validator({"$ref": schema_ref}, registry=REGISTRY)
    errors = sorted(validator.iter_errors(parsed), key=lambda e: list(e.absolute_path))
    assert not errors, f"{method} {template} {status}: " + "; ".join(
        f"{'/'.join(map(str, e.absolute_path)) or '(body)'}: {e.message}" for e in errors[:5]
    )
    return parsed


class DocumentedClient:
    """HTTP requests to the real server whose every response is checked against the document."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.checked = 0

    def call(
        self,
        method: str,
        template: str,
        path: str | None = None,
        *,
        body: object | None = None,
        raw: bytes | None = None,
        token: str | None = API_TOKEN,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base_url + (path or template), data=data, method=method
        )
        if data is not None and "Content-Type" not in (headers or {}):
            request.add_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, content_type, payload = (
                    response.status,
                    response.headers.get("Content-Type", ""),
                    response.read(),
                )
        except urllib.error.HTTPError as exc:
            status, content_type, payload = (
                exc.code,
                exc.headers.get("Content-Type", ""),
                exc.read(),
            )
        self.checked += 1
        return status, assert_conforms(method, template, status, content_type, payload)


@pytest.fixture
def api(server) -> DocumentedClient:
    return DocumentedClient(server.url)


@pytest.mark.e2e
def test_the_served_document_is_the_checked_in_one(api):
    status, served = api.call("GET", "/openapi.json", token=None)
    assert status == 200
    assert served == openapi_document()
    assert "bearerAuth" in served["components"]["securitySchemes"]


@pytest.mark.e2e
def test_the_hr_system_flows_answer_as_documented(api):
    assert api.call("GET", "/healthz", token=None)[0] == 200
    assert api.call("GET", "/metrics", token=None)[0] == 200
    status, jobs = api.call("GET", "/api/jobs")
    assert status == 200 and {job["id"] for job in jobs} >= {"customer_service_en"}
    body = {
        "job_id": "customer_service_en",
        "candidate": {
            "id": "oa-cand-1",
            "name": "Ada",
            "phone": "+1 415-555-0142",
            "timezone": "Asia/Shanghai",
        },
        "external_key": "oa-application-1",
    }
    status, created = api.call("POST", "/api/interviews", body=body)
    assert status == 201 and created["candidate"]["phone"] == "+14155550142"
    assert api.call("POST", "/api/interviews", body=body)[0] == 200
    template = "/api/interviews/{interview_id}"
    path = f"/api/interviews/{created['id']}"
    status, interview = api.call("GET", template, path)
    assert status == 200 and interview["report"] is None and interview["links"] is None
    assert api.call("GET", template + "/report", path + "/report")[0] == 409
    # Another HR system's token does not see it; a wrong token is refused.
    assert api.call("GET", template, path, token=CLIENTS["beta_hris"])[0] == 404
    assert api.call("GET", template, path, token="wrong")[0] == 401
    assert api.call("GET", "/api/jobs", token=None)[0] == 401
    assert api.call("GET", "/api/calls/{call_sid}", "/api/calls/CA_none")[0] == 404
    assert api.call("GET", "/api/calls/{call_sid}/live", "/api/calls/CA_none/live")[0] == 404
    page = "/interviews/{interview_id}/report"
    assert api.call("GET", page, f"/interviews/{created['id']}/report", token=None)[0] == 401
    assert api.call("GET", page, f"/interviews/{created['id']}/report")[0] == 404
    wav = "/recordings/{call_sid}/call.wav"
    assert api.call("GET", wav, "/recordings/CA_none/call.wav?token=x.y", token=None)[0] == 401
    assert api.call("GET", wav, "/recordings/CA_none/call.wav")[0] == 404
    form = b"CallSid=CA1&From=%2B15550100"
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    status, _ = api.call("POST", "/twilio/voice", raw=form, token=None, headers=headers)
    assert status == 403  # unsigned (the test server checks X-Twilio-Signature)
    assert api.call("GET", "/twilio/stream", token=None)[0] == 400  # not an upgrade


@pytest.mark.e2e
@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        json.dumps({"candidate": {"id": "c"}}).encode(),
        json.dumps({"job_id": "no_such_job", "candidate": {"id": "c"}}).encode(),
        json.dumps(
            {"job_id": "customer_service_en", "candidate": {"id": "c", "phone": "5"}}
        ).encode(),
    ],
)
def test_bad_interview_requests_answer_as_documented(api, body):
    status, error = api.call("POST", "/api/interviews", raw=body)
    assert status in (400, 422) and error["error"]["message"]


@pytest.mark.e2e
@pytest.mark.parametrize(
    "candidate, fragment",
    [
        # A folder of the time-zone database is no time zone (was a 500: IsADirectoryError).
        ({"id": "c", "timezone": "America"}, "IANA"),
        # A line break after a valid number is no E.164 number (was accepted and stored).
        ({"id": "c", "phone": "+14155550100\n"}, "E.164"),
    ],
)
def test_candidate_fields_the_document_refuses_are_refused(api, candidate, fragment):
    body = {"job_id": "customer_service_en", "candidate": candidate}
    status, error = api.call("POST", "/api/interviews", body=body)
    assert status == 422 and fragment in error["error"]["message"]


@pytest.mark.e2e
def test_a_held_interview_its_call_and_report_answer_as_documented(api, server):
    """A real call (the candidate declines by pressing 2) and everything read back after it."""
    from loadtest.caller import run_call

    interview_id = server.create_interview()
    result = asyncio.run(
        run_call(
            server.url,
            interview_id=interview_id,
            twilio_auth_token=TWILIO_AUTH_TOKEN,
            dtmf={0: "2"},
            max_call_secs=90,
        )
    )
    assert result.error is None, result.error
    server.wait_for_call(result.call_sid)
    server.wait_for_report(interview_id)
    status, interview = api.call(
        "GET", "/api/interviews/{interview_id}", f"/api/interviews/{interview_id}"
    )
    assert status == 200 and interview["status"] == "declined"
    assert interview["report"] is not None and interview["calls"][0]["turns"]
    status, report = api.call(
        "GET", "/api/interviews/{interview_id}/report", f"/api/interviews/{interview_id}/report"
    )
    assert status == 200 and report["human_review_required"] is True
    status, call = api.call("GET", "/api/calls/{call_sid}", f"/api/calls/{result.call_sid}")
    assert status == 200 and call["interview_id"] == interview_id
    # The signed links open the page and the recording without the API token.
    page_link = report["links"]["report_html"].removeprefix(server.url)
    status, html = api.call("GET", "/interviews/{interview_id}/report", page_link, token=None)
    assert status == 200 and "<html" in html.lower()
    wav_link = report["links"]["recordings"][result.call_sid].removeprefix(server.url)
    status, audio = api.call("GET", "/recordings/{call_sid}/call.wav", wav_link, token=None)
    assert status == 200 and audio[:4] == b"RIFF"


@pytest.mark.e2e
@pytest.mark.parametrize(
    "content_type, body",
    [
        # Found by Schemathesis: a multipart type without its boundary was a 500 (ValueError).
        ("multipart/form-data", b"CallSid=CA1&From=%2B15550100"),
        ("multipart/form-data; boundary=x", b"--x\r\nContent-Disposition: broken\r\n\r\n1"),
    ],
)
def test_a_voice_webhook_body_that_is_no_form_is_a_400(api, content_type, body):
    headers = {"Content-Type": content_type}
    status, text = api.call("POST", "/twilio/voice", raw=body, token=None, headers=headers)
    assert status == 400 and "form" in text


@pytest.mark.e2e
def test_an_empty_external_key_is_no_key(api):
    """Found by Schemathesis: the second interview with ``external_key: ""`` was a 500."""
    body = {"job_id": "customer_service_en", "candidate": {"id": "c-empty"}, "external_key": ""}
    first = api.call("POST", "/api/interviews", body=body)
    second = api.call("POST", "/api/interviews", body=body)
    assert first[0] == second[0] == 201
    assert first[1]["id"] != second[1]["id"] and second[1]["external_key"] is None


@pytest.mark.e2e
def test_erasure_and_the_audit_log_answer_as_documented(api):
    """``DELETE /api/candidates/{id}`` (a candidate with no call), again, unknown; the audit log."""
    body = {
        "job_id": "customer_service_en",
        "candidate": {"id": "oa-erase-1", "name": "Grace", "phone": "+14155550177"},
    }
    status, created = api.call("POST", "/api/interviews", body=body, token=CLIENTS["acme_ats"])
    assert status == 201
    interview = f"/api/interviews/{created['id']}"
    assert api.call("GET", "/api/interviews/{interview_id}", interview)[0] == 200
    template = "/api/candidates/{candidate_id}"
    # Another client cannot erase (or learn about) acme's candidate.
    beta = CLIENTS["beta_hris"]
    assert api.call("DELETE", template, "/api/candidates/oa-erase-1", token=beta)[0] == 404
    status, erased = api.call(
        "DELETE", template, "/api/candidates/oa-erase-1", token=CLIENTS["acme_ats"]
    )
    assert status == 200 and erased["status"] == "erased"
    (stone,) = erased["erasures"]
    assert stone["client"] == "acme_ats" and stone["interview_ids"] == [created["id"]]
    assert stone["calls"] == 0 and "Grace" not in json.dumps(erased)
    status, again = api.call("DELETE", template, "/api/candidates/oa-erase-1")
    assert status == 200 and again["status"] == "already_erased"
    assert again["erasures"] == erased["erasures"]
    assert api.call("DELETE", template, "/api/candidates/oa-never-seen")[0] == 404
    assert api.call("DELETE", template, "/api/candidates/oa-erase-1", token="wrong")[0] == 401
    # The erased interview is gone, and says so.
    status, error = api.call("GET", "/api/interviews/{interview_id}", interview)
    assert status == 410 and error["error"]["code"] == "erased"
    status, error = api.call("GET", "/api/interviews/{interview_id}/report", interview + "/report")
    assert status == 410 and error["error"]["code"] == "erased"
    # The audit log: the admin reads it (the erasure is in it), a client may not.
    status, page = api.call(
        "GET", "/api/audit", f"/api/audit?limit=500&interview_id={created['id']}"
    )
    assert status == 200 and page["entries"]
    assert {"interview.create", "interview.read"} <= {e["action"] for e in page["entries"]}
    status, page = api.call("GET", "/api/audit", "/api/audit?limit=1")
    assert status == 200 and len(page["entries"]) == 1 and page["next_after"] == 1
    assert api.call("GET", "/api/audit", token=CLIENTS["acme_ats"])[0] == 403
    assert api.call("GET", "/api/audit", "/api/audit?limit=0")[0] == 400
    assert api.call("GET", "/api/audit", "/api/audit?after=x")[0] == 400
    assert api.call("GET", "/api/audit", token=None)[0] == 401


@pytest.mark.e2e
@pytest.mark.parametrize("query", ["limit=%EF%BC%95", "after=1_0", "after=%205", "limit=+5"])
def test_audit_paging_that_is_no_plain_integer_is_a_400(api, query):
    """What the document calls an integer: ASCII digits (Python's int() takes "５", "1_0", " 5")."""
    status, error = api.call("GET", "/api/audit", f"/api/audit?{query}")
    assert status == 400 and error["error"]["code"] == "bad_query"
