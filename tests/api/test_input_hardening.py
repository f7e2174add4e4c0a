"""Input the API and the voice webhook must survive (issue 18, findings 5, 7 and 8).

Over real loopback sockets against the real app (tests/api/app_server.py): concurrent identical
interview creations, deeply nested JSON, control characters in a signed voice webhook, phone
numbers with non-ASCII digits, and what any unexpected error in a route looks like.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlencode

import aiohttp
import pytest

from tests.api.app_server import API_TOKEN, TWILIO_AUTH_TOKEN, start_app_server
from voicebot.telephony.signature import compute_twilio_signature

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


@pytest.fixture
async def app_server(tmp_path):
    server, services = await start_app_server(tmp_path)
    async with aiohttp.ClientSession() as http:
        yield server, services, http
    await server.close()


def interview_body(**overrides) -> dict:
    return {
        "job_id": "customer_service_en",
        "candidate": {"id": "ats-cand-1", "name": "Ada Lovelace", "phone": "+14155550100"},
        "external_key": "ats-application-1",
        **overrides,
    }


async def test_concurrent_identical_creations_all_answer_with_the_one_interview(app_server):
    server, services, http = app_server
    url = str(server.make_url("/api/interviews"))

    async def create() -> tuple[int, dict]:
        async with http.post(url, json=interview_body(), headers=AUTH) as response:
            return response.status, await response.json()

    answers = await asyncio.gather(*(create() for _ in range(20)))
    statuses = sorted(status for status, _ in answers)
    assert statuses == [200] * 19 + [201], answers
    assert len({body["id"] for _, body in answers}) == 1
    assert all(body["external_key"] == "ats-application-1" for _, body in answers)


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("depth", [200, 100_000])
async def test_deeply_nested_json_is_a_400_that_says_why(app_server, depth):
    server, services, http = app_server
    body = '{"job_id": "customer_service_en", "candidate": ' + nested(depth) + "}"
    async with http.post(
        server.make_url("/api/interviews"),
        data=body,
        headers={**AUTH, "Content-Type": "application/json"},
    ) as response:
        assert response.status == 400
        error = (await response.json())["error"]
    assert error["code"] == "bad_json"
    assert "nested" in error["message"]
    # The server still serves.
    async with http.get(server.make_url("/api/jobs"), headers=AUTH) as response:
        assert response.status == 200


async def test_a_json_body_over_the_limit_is_a_413_that_says_the_limit(app_server):
    server, services, http = app_server
    body = interview_body(external_key="x" * 100) | {"padding": " " * 300_000}
    async with http.post(server.make_url("/api/interviews"), json=body, headers=AUTH) as response:
        assert response.status == 413
        error = (await response.json())["error"]
    assert "bytes" in error["message"]


@pytest.mark.parametrize("phone", ["+1415555١٢٣", "+14155550١00", "+１４１５５５５０１００"])
async def test_phone_numbers_take_ascii_digits_only(app_server, phone):
    server, services, http = app_server
    body = interview_body(candidate={"id": "c1", "name": "Ada", "phone": phone})
    async with http.post(server.make_url("/api/interviews"), json=body, headers=AUTH) as response:
        assert response.status == 422
        error = (await response.json())["error"]
    assert "candidate.phone" in error["message"] and "0-9" in error["message"]


async def signed_voice_post(server, http, params: dict, query: str = "") -> aiohttp.ClientResponse:
    url = str(server.make_url("/twilio/voice")) + query
    signature = compute_twilio_signature(TWILIO_AUTH_TOKEN, url, params)
    return await http.post(
        url,
        data=urlencode(params),
        headers={
            "X-Twilio-Signature": signature,
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )


@pytest.mark.parametrize("field", ["From", "To", "Direction", "CallerName"])
async def test_signed_voice_webhook_with_control_characters_gets_valid_twiml(app_server, field):
    server, services, http = app_server
    row, _ = await services.store.create_interview(
        job_id="customer_service_en", candidate_id="c1", candidate_phone="+14155550100"
    )
    params = {
        "CallSid": "CA0123",
        "From": "+14155550100",
        "To": "+14155550199",
        "Direction": "inbound",
    }
    params[field] = "+1415\x01555\x1b0100\x00"
    async with await signed_voice_post(
        server, http, params, f"?interview_id={row['id']}"
    ) as response:
        text = await response.text()
        assert response.status == 200, text
        assert response.content_type == "application/xml"
    import xml.etree.ElementTree as ET

    root = ET.fromstring(text)  # well-formed XML 1.0
    assert root.find("Connect/Stream") is not None


async def test_voice_webhook_with_a_control_character_in_from_and_no_interview(app_server):
    server, services, http = app_server
    params = {"CallSid": "CA0124", "From": "\x07+14155550100"}
    async with await signed_voice_post(server, http, params) as response:
        assert response.status == 200
        assert "<Hangup/>" in await response.text()


async def test_an_unexpected_error_is_a_counted_json_500_logged_without_candidate_data(
    app_server, caplog
):
    server, services, http = app_server
    secret = "Ada Lovelace +14155550100"

    async def broken(interview_id: str) -> None:
        raise RuntimeError(f"database exploded while reading {secret}")

    services.store.get_interview = broken
    with caplog.at_level(logging.DEBUG):
        async with http.get(server.make_url("/api/interviews/iv_123"), headers=AUTH) as response:
            assert response.status == 500
            error = (await response.json())["error"]
    assert error["code"] == "internal_error"
    assert secret not in error["message"]
    assert secret not in caplog.text
    assert "RuntimeError" in caplog.text
    metrics = services.metrics.render().decode()
    assert 'voicebot_internal_errors_total{where="http"} 1.0' in metrics
    # Other routes still answer.
    async with http.get(server.make_url("/api/jobs"), headers=AUTH) as response:
        assert response.status == 200
