"""Fuzzing the routes anyone can reach with Hypothesis, over a real socket against the real app.

The Twilio voice webhook: form bodies of any names and values (control characters, other
scripts, repeated names), with a valid ``X-Twilio-Signature`` (so they reach the handler's
logic), with a wrong one, and raw bodies of any bytes under any content type: every answer is a
2xx with well-formed TwiML or a clean 4xx. The signed report and recording links with any id and
token, and the monitor's sign-in with any form: a clean 4xx (or the sign-in's redirect). Never a
500, and nothing is counted as an internal error. Bounded: a few seconds a test.
"""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET
from urllib.parse import quote, urlencode

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from tests.api.app_server import API_TOKEN, TWILIO_AUTH_TOKEN, start_app_server
from voicebot.telephony.signature import compute_twilio_signature

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# Any character a form can carry (not lone surrogates, which no client can encode).
any_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
twilio_names = st.sampled_from(
    ["CallSid", "From", "To", "Direction", "AccountSid", "CallStatus", "CallerName", "Digits"]
)
call_sids = st.one_of(st.just("CA0123456789abcdef"), any_text)
forms = st.builds(
    lambda sid, fields, extra: [("CallSid", sid), *fields, *extra],
    call_sids,
    st.lists(st.tuples(twilio_names, any_text), max_size=6),
    st.lists(st.tuples(any_text, any_text), max_size=3),
)
interview_ids = st.one_of(st.none(), st.just("REAL"), any_text)


class AppOnLoop:
    """A real app server on its own event loop, and a client to post to it from sync tests."""

    def __init__(self, tmp_path) -> None:
        self.loop = asyncio.new_event_loop()
        self.server, self.services = self.loop.run_until_complete(
            start_app_server(tmp_path, unauth_requests_per_min=0)  # the handler, not the limit
        )
        self.http = self.loop.run_until_complete(self._session())
        row, _ = self.loop.run_until_complete(
            self.services.store.create_interview(
                job_id="customer_service_en", candidate_id="c1", candidate_phone="+14155550100"
            )
        )
        self.interview_id = row["id"]

    @staticmethod
    async def _session() -> aiohttp.ClientSession:
        return aiohttp.ClientSession()

    def url(self, interview_id: str | None) -> str:
        base = str(self.server.make_url("/twilio/voice"))
        if interview_id is None:
            return base
        if interview_id == "REAL":
            interview_id = self.interview_id
        return base + "?interview_id=" + quote(interview_id, safe="")

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str, str]:
        return self.request("POST", url, body, headers)

    def request(
        self,
        method: str,
        url: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, str, str]:
        async def send() -> tuple[int, str, str]:
            async with self.http.request(
                method, URL(url, encoded=True), data=body, headers=headers, allow_redirects=False
            ) as r:
                return r.status, r.content_type, await r.text(errors="replace")

        return self.loop.run_until_complete(send())

    def internal_errors(self) -> str:
        return [
            line
            for line in self.services.metrics.render().decode().splitlines()
            if line.startswith("voicebot_internal_errors_total")
        ]

    def close(self) -> None:
        self.loop.run_until_complete(self.http.close())
        self.loop.run_until_complete(self.server.close())
        self.loop.close()


@pytest.fixture(scope="module")
def webhook(tmp_path_factory):
    running = AppOnLoop(tmp_path_factory.mktemp("webhook"))
    yield running
    assert running.internal_errors() == [], running.internal_errors()
    running.close()


def check_answer(status: int, content_type: str, text: str) -> None:
    assert status < 500, (status, text)
    if status == 200:
        assert content_type == "application/xml"
        root = ET.fromstring(text)  # well-formed XML 1.0
        assert root.tag == "Response"
    else:
        assert 400 <= status < 500 and text  # a clean refusal that says something


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@FUZZ
@given(form=forms, interview_id=interview_ids)
def test_signed_forms_of_any_content_get_twiml_or_a_4xx(webhook, form, interview_id):
    url = webhook.url(interview_id)
    params: dict[str, list[str]] = {}
    for name, value in form:
        params.setdefault(name, []).append(value)
    signature = compute_twilio_signature(TWILIO_AUTH_TOKEN, url, params)
    answer = webhook.post(url, urlencode(form).encode(), {**FORM, "X-Twilio-Signature": signature})
    check_answer(*answer)
    if answer[0] == 200 and interview_id == "REAL" and "<Stream" not in answer[2]:
        assert "<Hangup/>" in answer[2]


@FUZZ
@given(form=forms, interview_id=interview_ids, signature=st.one_of(st.none(), header_text))
def test_unsigned_or_badly_signed_forms_are_refused(webhook, form, interview_id, signature):
    headers = dict(FORM)
    if signature is not None:
        headers["X-Twilio-Signature"] = signature
    status, _, text = webhook.post(webhook.url(interview_id), urlencode(form).encode(), headers)
    assert status in (400, 403), (status, text)


content_types = st.sampled_from(
    [
        "application/x-www-form-urlencoded",
        "application/x-www-form-urlencoded; charset=latin-1",
        "application/x-www-form-urlencoded; charset=nonsense",
        "multipart/form-data",
        "multipart/form-data; boundary=xyz",
        "application/json",
        "text/plain",
        "",
    ]
)


@FUZZ
@given(body=st.binary(max_size=400), content_type=content_types, signed=st.booleans())
def test_raw_bodies_of_any_bytes_get_twiml_or_a_4xx(webhook, body, content_type, signed):
    url = webhook.url(None)
    headers = {"Content-Type": content_type} if content_type else {}
    if signed:  # signed over what a parser would make of the body, if anything
        headers["X-Twilio-Signature"] = compute_twilio_signature(TWILIO_AUTH_TOKEN, url, {})
    check_answer(*webhook.post(url, body, headers))


@FUZZ
@given(
    kind=st.sampled_from(["/interviews/{}/report", "/recordings/{}/call.wav"]),
    ident=st.one_of(st.just("REAL"), any_text.filter(bool)),
    token=st.one_of(st.none(), any_text, st.just("a.b"), header_text.map(lambda t: t + "." + t)),
)
def test_signed_links_with_any_id_and_token_are_refused_cleanly(webhook, kind, ident, token):
    ident = webhook.interview_id if ident == "REAL" else ident
    url = str(webhook.server.make_url("/")).rstrip("/") + kind.format(quote(ident, safe=""))
    if token is not None:
        url += "?token=" + quote(token, safe="")
    status, _, text = webhook.request("GET", url)
    assert status in (401, 404), (status, text)


@FUZZ
@given(
    form=st.lists(
        st.tuples(st.sampled_from(["username", "password", "csrf"]) | any_text, any_text),
        max_size=4,
    ),
    path=st.sampled_from(["/monitor/login", "/monitor/logout"]),
)
def test_sign_in_and_out_with_any_form_are_answered_cleanly(webhook, form, path):
    status, _, text = webhook.request(
        "POST", str(webhook.server.make_url(path)), urlencode(form).encode(), FORM
    )
    assert status in (303, 400, 401, 403, 429), (status, text)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | any_text,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            any_text | st.sampled_from(["job_id", "candidate", "id", "phone"]), children
        )
    ),
    max_leaves=15,
)
interview_bodies = st.one_of(
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {"job_id": st.just("customer_service_en") | any_text},
        optional={
            "candidate": st.dictionaries(
                st.sampled_from(["id", "name", "phone", "timezone"]) | any_text, json_values
            ),
            "external_key": json_values,
        },
    ).map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
)


@FUZZ
@given(body=interview_bodies)
def test_interview_creation_with_any_body_is_answered_cleanly(webhook, body):
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {API_TOKEN}"}
    status, _, text = webhook.request(
        "POST", str(webhook.server.make_url("/api/interviews")), body, headers
    )
    assert status in (200, 201, 400, 413, 422), (status, text)
    assert json.loads(text)["error" if status >= 400 else "id"]
