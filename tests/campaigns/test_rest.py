"""Campaign and do-not-call REST routes on a real socket: validation, per-client, bulk, erasure.

The app is the real aiohttp app on a loopback port (tests/api/app_server.py: real store, real job
scripts, no models); every response is checked against the OpenAPI document.
"""

from __future__ import annotations

import time

import aiohttp
import pytest

from tests.api.app_server import API_TOKEN, start_app_server
from tests.api.test_openapi import assert_conforms

ACME, BETA = "acme-token-0123456789", "beta-token-0123456789"
JOB = "customer_service_en"


class Api:
    """Requests to the real server, each response checked against the OpenAPI document."""

    def __init__(self, http: aiohttp.ClientSession, base: str):
        self.http, self.base = http, base

    async def call(
        self,
        method: str,
        template: str,
        path: str | None = None,
        *,
        body: object = None,
        csv: str | None = None,
        token: str = API_TOKEN,
        check: bool = True,
    ):
        headers = {"Authorization": f"Bearer {token}"}
        kwargs: dict = {"headers": headers}
        if csv is not None:
            kwargs["data"] = csv.encode()
            headers["Content-Type"] = "text/csv"
        elif body is not None:
            kwargs["json"] = body
        async with self.http.request(method, self.base + (path or template), **kwargs) as r:
            payload = await r.read()
            if not check:
                return r.status, payload
            return r.status, assert_conforms(
                method, template, r.status, r.headers.get("Content-Type", ""), payload
            )

    async def campaign(self, token: str = API_TOKEN, **fields) -> dict:
        status, body = await self.call(
            "POST", "/api/campaigns", body={"job_id": JOB, **fields}, token=token
        )
        assert status == 201, body
        return body

    async def add(self, campaign_id: str, rows=None, csv=None, token: str = API_TOKEN):
        template = "/api/campaigns/{campaign_id}/interviews"
        return await self.call(
            "POST",
            template,
            f"/api/campaigns/{campaign_id}/interviews",
            body=rows,
            csv=csv,
            token=token,
        )


@pytest.fixture
async def api(tmp_path):
    server, services = await start_app_server(tmp_path, api_clients=f"acme={ACME},beta={BETA}")
    from voicebot.privacy.audit import AuditLog

    services.audit = AuditLog(services.store.path, services.metrics)
    await services.audit.open()
    async with aiohttp.ClientSession() as http:
        client = Api(http, str(server.make_url("")).rstrip("/"))
        client.services, client.server = services, server
        yield client
    await services.audit.close()
    await server.close()


async def test_a_campaign_is_created_with_its_policy_and_shows_its_progress(api):
    created = await api.campaign(
        name="Spring",
        calling_hours={"start": "10:00", "end": "18:00", "days": ["mon", "fri"]},
        timezone="Asia/Shanghai",
        max_attempts=2,
        caller_id="+1 415-555-0199",
    )
    assert created["id"].startswith("cmp_") and created["job_id"] == JOB
    assert created["calling_hours"]["days"] == ["mon", "fri"]
    assert created["caller_id"] == "+14155550199" and created["max_attempts"] == 2
    assert created["retry_after_secs"] == 86400 and created["paused"] is False
    assert created["interviews"] == 0 and created["by_status"]["unreachable"] == 0
    status, got = await api.call(
        "GET", "/api/campaigns/{campaign_id}", f"/api/campaigns/{created['id']}"
    )
    assert status == 200 and got["id"] == created["id"] and got["next_attempt_at"] is None


@pytest.mark.parametrize(
    ("fields", "code", "says"),
    [
        ({"job_id": "no_such_job"}, "unknown_job", "known: "),
        ({"calling_hours": {"start": "20:00", "end": "09:00"}}, "invalid_campaign", "midnight"),
        ({"timezone": "Asia/Atlantis"}, "invalid_campaign", "IANA"),
        ({"max_attempts": 0}, "invalid_campaign", "max_attempts"),
        ({"caller_id": "555-0100"}, "invalid_campaign", "E.164"),
        ({"calling_hours": {"days": ["someday"]}}, "invalid_campaign", "calling_hours.days"),
        ({"dial_everyone": True}, "invalid_campaign", "dial_everyone"),
    ],
)
async def test_a_bad_campaign_is_a_422_saying_what_to_fix(api, fields, code, says):
    status, body = await api.call("POST", "/api/campaigns", body={"job_id": JOB, **fields})
    assert status == 422, body
    assert body["error"]["code"] == code and says in body["error"]["message"]


async def test_a_client_sees_and_changes_only_its_own_campaigns(api):
    mine = await api.campaign(token=ACME)
    theirs = await api.campaign(token=BETA)
    status, listed = await api.call("GET", "/api/campaigns", token=ACME)
    assert [c["id"] for c in listed["campaigns"]] == [mine["id"]]
    status, everything = await api.call("GET", "/api/campaigns")
    assert {c["id"] for c in everything["campaigns"]} == {mine["id"], theirs["id"]}
    other = theirs["id"]
    for method, template, path in [
        ("GET", "/api/campaigns/{campaign_id}", f"/api/campaigns/{other}"),
        ("POST", "/api/campaigns/{campaign_id}/pause", f"/api/campaigns/{other}/pause"),
        ("POST", "/api/campaigns/{campaign_id}/resume", f"/api/campaigns/{other}/resume"),
    ]:
        assert (await api.call(method, template, path, token=ACME))[0] == 404
    status, _ = await api.add(other, [{"id": "c1", "phone": "+14155550100"}], token=ACME)
    assert status == 404
    # nor can an interview join another client's campaign
    status, body = await api.call(
        "POST",
        "/api/interviews",
        body={
            "job_id": JOB,
            "candidate": {"id": "c1", "phone": "+14155550100"},
            "campaign_id": other,
        },
        token=ACME,
    )
    assert status == 422 and body["error"]["code"] == "unknown_campaign"
    status, paused = await api.call(
        "POST",
        "/api/campaigns/{campaign_id}/pause",
        f"/api/campaigns/{mine['id']}/pause",
        token=ACME,
    )
    assert status == 200 and paused["paused"] is True
    status, resumed = await api.call(
        "POST",
        "/api/campaigns/{campaign_id}/resume",
        f"/api/campaigns/{mine['id']}/resume",
        token=ACME,
    )
    assert status == 200 and resumed["paused"] is False


async def test_bulk_json_queues_good_rows_and_reports_bad_ones_by_number(api):
    campaign = await api.campaign(timezone="Asia/Shanghai")
    status, body = await api.add(
        campaign["id"],
        [
            {"id": "c1", "name": "Ada", "phone": "+14155550100", "timezone": "America/New_York"},
            {"id": "c2", "phone": "4155550101"},
            {"id": "c3", "phone": "+8613800000003", "timezone": "Mars/Base"},
            "not an object",
            {"id": "c5", "phone": "+8613800000005", "external_key": "app-5"},
            {"id": "c6", "phone": "+8613800000006", "shoe_size": 42},
        ],
    )
    assert status == 200, body
    assert (body["queued"], body["invalid"], body["refused"], body["exists"]) == (2, 4, 0, 0)
    by_row = {r["row"]: r for r in body["results"]}
    assert [by_row[n]["status"] for n in range(1, 7)] == [
        "queued",
        "invalid",
        "invalid",
        "invalid",
        "queued",
        "invalid",
    ]
    assert "row 2: phone" in by_row[2]["error"] and "E.164" in by_row[2]["error"]
    assert "row 3: timezone" in by_row[3]["error"] and "IANA" in by_row[3]["error"]
    assert "row 6: shoe_size" in by_row[6]["error"]
    template = "/api/interviews/{interview_id}"
    status, interview = await api.call("GET", template, f"/api/interviews/{by_row[1]['id']}")
    assert status == 200
    assert interview["campaign_id"] == campaign["id"] and interview["dial_attempts"] == []
    assert interview["next_attempt_at"] == by_row[1]["next_attempt_at"]
    assert interview["candidate"]["timezone"] == "America/New_York"
    # the same external key again: not queued twice
    status, again = await api.add(
        campaign["id"], [{"id": "c5", "phone": "+8613800000005", "external_key": "app-5"}]
    )
    assert again["results"][0] == {"row": 1, "status": "exists", "id": by_row[5]["id"]}
    status, got = await api.call(
        "GET", "/api/campaigns/{campaign_id}", f"/api/campaigns/{campaign['id']}"
    )
    assert got["interviews"] == 2 and got["by_status"]["pending"] == 2 and got["scheduled"] == 2
    assert got["next_attempt_at"] is not None
    metrics = api.services.metrics.http_errors.labels("campaign_import", "bad_row")._value.get()
    assert metrics == 4


async def test_a_csv_of_ten_thousand_rows_queues_the_good_ones_and_lists_the_bad_by_line(api):
    campaign = await api.campaign()
    lines = ["id,name,phone,timezone,external_key"]
    bad = {17: "+1", 4242: "+8613800004242x", 9999: ""}
    for n in range(1, 10001):
        phone = bad.get(n, f"+86138{n:08d}")
        lines.append(f"c{n},Name {n},{phone},Asia/Shanghai,app-{n}")
    lines.insert(500, "")  # a blank line is no row
    lines.append("c10001,Too,+8613899999999,Asia/Shanghai,app-10001,extra")
    started = time.perf_counter()
    status, body = await api.add(campaign["id"], csv="\n".join(lines) + "\n")
    elapsed = time.perf_counter() - started
    print(f"POST of a 10,000-row CSV (10,001 rows, 4 bad): {elapsed:.2f} s")
    assert status == 200
    assert body["queued"] == 9997 and body["invalid"] == 4
    invalid = [r for r in body["results"] if r["status"] == "invalid"]
    assert [r["row"] for r in invalid] == [17, 4242, 9999, 10001]
    assert [r["line"] for r in invalid] == [18, 4244, 10001, 10003]
    assert "row 17 (line 18): phone" in invalid[0]["error"]
    assert "fields" in invalid[3]["error"]
    status, got = await api.call(
        "GET", "/api/campaigns/{campaign_id}", f"/api/campaigns/{campaign['id']}"
    )
    assert got["interviews"] == 9997


@pytest.mark.parametrize(
    ("csv", "says"),
    [
        ("", "empty"),
        ("name,phone\nAda,+14155550100\n", "missing: id"),
        ("id,phone,email\nc1,+14155550100,a@b.c\n", "unknown: email"),
    ],
)
async def test_a_csv_without_a_usable_header_is_a_422_that_names_the_columns(api, csv, says):
    campaign = await api.campaign()
    status, body = await api.add(campaign["id"], csv=csv)
    assert status == 422 and body["error"]["code"] == "invalid_rows"
    assert says in body["error"]["message"]


async def test_an_interview_joins_a_campaign_through_post_interviews(api):
    campaign = await api.campaign(token=ACME, timezone="Asia/Shanghai")
    body = {
        "job_id": JOB,
        "candidate": {"id": "c1", "phone": "+8613800000001", "timezone": "Asia/Shanghai"},
        "campaign_id": campaign["id"],
    }
    status, created = await api.call("POST", "/api/interviews", body=body, token=ACME)
    assert status == 201 and created["campaign_id"] == campaign["id"]
    assert created["next_attempt_at"] is not None
    status, wrong_job = await api.call(
        "POST",
        "/api/interviews",
        body={**body, "job_id": "workshop_operator_en", "external_key": "x"},
        token=ACME,
    )
    assert status == 422 and wrong_job["error"]["code"] == "campaign_job_mismatch"
    no_phone = {**body, "candidate": {"id": "c2"}}
    status, refused = await api.call("POST", "/api/interviews", body=no_phone, token=ACME)
    assert status == 422 and refused["error"]["code"] == "phone_required"
    # without a campaign: today's behaviour (waits for a call)
    alone = {"job_id": JOB, "candidate": {"id": "c3", "phone": "+8613800000003"}}
    status, waiting = await api.call("POST", "/api/interviews", body=alone, token=ACME)
    assert waiting["campaign_id"] is None and waiting["next_attempt_at"] is None


async def test_the_do_not_call_list_is_admin_only_needs_reasons_and_is_audited(api):
    body = {"phone": "+86 138-0000-0009", "reason": "asked by email"}
    status, refused = await api.call("POST", "/api/opt-outs", body=body, token=ACME)
    assert status == 403
    assert (await api.call("GET", "/api/opt-outs", token=ACME))[0] == 403
    status, bad = await api.call("POST", "/api/opt-outs", body={"phone": "+8613800000009"})
    assert status == 422 and "reason" in bad["error"]["message"]
    status, bad = await api.call("POST", "/api/opt-outs", body={"phone": "12", "reason": "x"})
    assert status == 422 and "E.164" in bad["error"]["message"]
    status, entry = await api.call("POST", "/api/opt-outs", body=body)
    assert status == 201 and entry["phone"] == "+8613800000009" and entry["source"] == "api"
    assert (await api.call("POST", "/api/opt-outs", body=body))[0] == 200
    status, listed = await api.call("GET", "/api/opt-outs")
    assert [e["phone"] for e in listed["opt_outs"]] == ["+8613800000009"]
    template = "/api/opt-outs/{phone}"
    status, no_reason = await api.call("DELETE", template, "/api/opt-outs/+8613800000009")
    assert status == 400 and no_reason["error"]["code"] == "reason_required"
    status, _ = await api.call(
        "DELETE", template, "/api/opt-outs/+8613800000009?reason=x", token=ACME
    )
    assert status == 403
    status, removed = await api.call(
        "DELETE", template, "/api/opt-outs/+8613800000009?reason=listed%20by%20mistake"
    )
    assert status == 200 and removed["phone"] == "+8613800000009"
    status, _ = await api.call("DELETE", template, "/api/opt-outs/+8613800000009?reason=again")
    assert status == 404
    entries = await api.services.audit.entries(limit=100)
    actions = [e["action"] for e in entries]
    assert actions.count("opt_out.add") == 1 and actions.count("opt_out.remove") == 1
    removal = next(e for e in entries if e["action"] == "opt_out.remove")
    assert removal["detail"]["reason"] == "listed by mistake" and removal["actor"] == "api:admin"
    assert "8613800000009" not in str(entries)


async def test_a_listed_number_is_never_queued_in_any_campaign_and_pending_ones_close(api):
    first = await api.campaign(token=ACME)
    second = await api.campaign(token=BETA)
    _, queued = await api.add(first["id"], [{"id": "c1", "phone": "+8613800000009"}], token=ACME)
    interview_id = queued["results"][0]["id"]
    status, _ = await api.call(
        "POST", "/api/opt-outs", body={"phone": "+8613800000009", "reason": "asked"}
    )
    assert status == 201
    template = "/api/interviews/{interview_id}"
    _, closed = await api.call("GET", template, f"/api/interviews/{interview_id}", token=ACME)
    assert closed["status"] == "opted_out" and closed["next_attempt_at"] is None
    for campaign, token in ((first, ACME), (second, BETA)):
        _, body = await api.add(
            campaign["id"],
            [{"id": "c9", "phone": "+8613800000009", "external_key": "k9"}],
            token=token,
        )
        assert body["results"][0]["status"] == "refused"
        assert body["results"][0]["code"] == "do_not_call"
    status, body = await api.call(
        "POST",
        "/api/interviews",
        body={
            "job_id": JOB,
            "candidate": {"id": "c9", "phone": "+8613800000009"},
            "campaign_id": second["id"],
        },
        token=BETA,
    )
    assert status == 422 and body["error"]["code"] == "do_not_call"


async def test_erasing_the_candidate_keeps_the_number_listed_without_the_number(api):
    campaign = await api.campaign(token=ACME)
    _, queued = await api.add(
        campaign["id"], [{"id": "cand-9", "phone": "+8613800000009"}], token=ACME
    )
    assert queued["queued"] == 1
    await api.call("POST", "/api/opt-outs", body={"phone": "+8613800000009", "reason": "asked"})
    status, erased = await api.call(
        "DELETE", "/api/candidates/{candidate_id}", "/api/candidates/cand-9", token=ACME
    )
    assert status == 200, erased
    _, listed = await api.call("GET", "/api/opt-outs")
    (entry,) = listed["opt_outs"]
    assert entry["phone"] is None and entry["erased"] is True
    _, body = await api.add(
        campaign["id"], [{"id": "cand-10", "phone": "+8613800000009"}], token=ACME
    )
    assert body["results"][0]["code"] == "do_not_call"
    data = b"".join(
        p.read_bytes() for p in api.services.store.path.parent.glob("voicebot.sqlite3*")
    )
    assert b"8613800000009" not in data


async def test_a_candidate_who_calls_back_is_interviewed_and_no_longer_dialed(api):
    from tests.api.test_input_hardening import signed_voice_post

    campaign = await api.campaign()
    _, queued = await api.add(campaign["id"], [{"id": "c1", "phone": "+14155550100"}])
    interview_id = queued["results"][0]["id"]
    params = {"CallSid": "CA_callback", "From": "+14155550100", "Direction": "inbound"}
    async with await signed_voice_post(api.server, api.http, params) as response:
        assert response.status == 200
        assert interview_id in await response.text()  # matched by From: connected to it
    template = "/api/interviews/{interview_id}"
    _, interview = await api.call("GET", template, f"/api/interviews/{interview_id}")
    assert interview["next_attempt_at"] is None
    _, got = await api.call(
        "GET", "/api/campaigns/{campaign_id}", f"/api/campaigns/{campaign['id']}"
    )
    assert got["scheduled"] == 0


async def test_an_unreachable_candidate_who_calls_back_is_still_interviewed(api):
    """未联系上 is not the end for a candidate who returns the missed call."""
    from tests.api.test_input_hardening import signed_voice_post

    campaign = await api.campaign()
    _, queued = await api.add(campaign["id"], [{"id": "c1", "phone": "+14155550100"}])
    interview_id = queued["results"][0]["id"]
    await api.services.store.update_interview(interview_id, status="unreachable")
    params = {"CallSid": "CA_late_callback", "From": "+14155550100", "Direction": "inbound"}
    async with await signed_voice_post(api.server, api.http, params) as response:
        text = await response.text()
    assert response.status == 200 and interview_id in text and "<Stream" in text


@pytest.mark.parametrize(
    "fields",
    [
        {"spread_retries": 0},
        {"paused": "yes"},
        {"max_attempts": "3"},
        {"retry_after_secs": "86400"},
        {"calling_hours": {"holidays": [1790000000]}},
    ],
)
async def test_values_of_the_wrong_json_type_are_refused_not_guessed(api, fields):
    status, body = await api.call("POST", "/api/campaigns", body={"job_id": JOB, **fields})
    assert status == 422 and body["error"]["code"] == "invalid_campaign"
    assert next(iter(fields)) in body["error"]["message"]
