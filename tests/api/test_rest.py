"""The REST API over a real server: bearer auth, interview creation and validation, jobs, calls."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.e2e


def test_every_api_route_needs_the_bearer_token(server):
    for method, path in [
        ("GET", "/api/jobs"),
        ("POST", "/api/interviews"),
        ("GET", "/api/interviews/iv_x"),
        ("GET", "/api/interviews/iv_x/report"),
        ("GET", "/api/calls/CA1"),
    ]:
        status, body = server.request(method, path, token=None)
        assert status == 401, (method, path)
        assert "Bearer" in body["error"]["message"]
        status, _ = server.request(method, path, token="wrong-token")
        assert status == 401


def test_health_and_metrics_are_served(server):
    status, body = server.request("GET", "/healthz", token=None)
    assert status == 200 and body["status"] == "ok" and body["jobs"] >= 1
    status, text = server.request("GET", "/metrics", token=None)
    assert status == 200 and "voicebot_calls_active" in text
    # What an operator watches under load: the ASR backlog, VAD batching, GC pauses.
    for name in (
        "voicebot_asr_queued",
        "voicebot_asr_busy_seconds",
        "voicebot_asr_transcriptions",
        "voicebot_vad_batch_mean_windows",
        "voicebot_gc_pause_seconds_count",
        "voicebot_events_waiting",
        'voicebot_webhooks{outcome="delivered"}',
    ):
        assert name in text, name
    assert body["bus"] == "embedded" and body["bridge"] is True


def test_jobs_list_the_loaded_scripts(server):
    status, jobs = server.request("GET", "/api/jobs")
    assert status == 200
    by_id = {job["id"]: job for job in jobs}
    assert by_id["customer_service_en"]["language"] == "en"
    assert by_id["customer_service_en"]["title"]
    assert len(by_id["customer_service_en"]["questions"]) >= 3
    # Each job shows its competency model and how each question is used.
    workshop = by_id["workshop_operator_zh"]
    assert workshop["language"] == "zh"
    assert workshop["competencies"] and all(c["rubric"] for c in workshop["competencies"])
    competency_ids = {c["id"] for c in workshop["competencies"]}
    assert any(q["knockout"] == {"expected": "yes"} for q in workshop["questions"])
    assert all(q["competency"] in competency_ids for q in workshop["questions"] if q["competency"])
    assert workshop["thresholds"]["advance"] >= workshop["thresholds"]["hold"]


def test_create_and_read_back_an_interview_idempotently(server):
    body = {
        "job_id": "customer_service_en",
        "candidate": {
            "id": "ats-cand-7",
            "name": "Ada",
            "phone": "+14155550100",
            "timezone": "Asia/Shanghai",
        },
        "external_key": "ats-application-7",
    }
    status, created = server.request("POST", "/api/interviews", body)
    assert status == 201 and created["id"].startswith("iv_")
    status, again = server.request("POST", "/api/interviews", body)
    assert status == 200 and again["id"] == created["id"]
    status, interview = server.request("GET", f"/api/interviews/{created['id']}")
    assert status == 200
    assert interview["status"] == "pending" and interview["attempts"] == 0
    assert interview["candidate"]["timezone"] == "Asia/Shanghai"
    assert interview["calls"] == [] and interview["transcript"] == []
    assert [h["status"] for h in interview["status_history"]] == ["pending"]
    assert interview["report"] is None and interview["opted_out"] is False
    status, error = server.request("GET", f"/api/interviews/{created['id']}/report")
    assert status == 409 and "pending" in error["error"]["message"]


def test_report_pages_and_recordings_need_a_valid_signed_link_or_the_token(server):
    interview_id = server.create_interview()
    for path in (f"/interviews/{interview_id}/report", "/recordings/CA_x/call.wav"):
        assert server.request("GET", path, token=None)[0] == 401
        assert server.request("GET", path + "?token=forged.token", token=None)[0] == 401
    # The bearer token opens the page (no report yet: 404, not 401).
    assert server.request("GET", f"/interviews/{interview_id}/report")[0] == 404


@pytest.mark.parametrize(
    "body, fragment",
    [
        ({"candidate": {"id": "c"}}, "job_id"),
        ({"job_id": "no_such_job", "candidate": {"id": "c"}}, "known:"),
        ({"job_id": "customer_service_en", "candidate": {"id": "c", "phone": "555"}}, "E.164"),
        (
            {"job_id": "customer_service_en", "candidate": {"id": "c", "timezone": "Mars/Base"}},
            "IANA",
        ),
        ({"job_id": "customer_service_en", "candidate": {"id": "c"}, "surprise": 1}, "surprise"),
    ],
)
def test_bad_interview_requests_say_what_is_wrong(server, body, fragment):
    status, response = server.request("POST", "/api/interviews", body)
    assert status == 422
    assert fragment in response["error"]["message"]


def test_unknown_ids_are_404(server):
    assert server.request("GET", "/api/interviews/iv_missing")[0] == 404
    assert server.request("GET", "/api/calls/CA_missing")[0] == 404


def test_each_hr_client_sees_only_its_own_interviews(server):
    from tests.conftest import CLIENTS

    acme, beta = CLIENTS["acme_ats"], CLIENTS["beta_hris"]
    body = {
        "job_id": "customer_service_en",
        "candidate": {"id": "cand-1", "name": "Lin", "phone": "+14155550111"},
        "external_key": "application-1",
    }
    status, mine = server.request("POST", "/api/interviews", body, token=acme)
    assert status == 201 and mine["client"] == "acme_ats"
    # Another HR system may use the same key of its own: a different interview.
    status, theirs = server.request("POST", "/api/interviews", body, token=beta)
    assert status == 201 and theirs["id"] != mine["id"]
    status, again = server.request("POST", "/api/interviews", body, token=acme)
    assert status == 200 and again["id"] == mine["id"]
    # Each reads back its own; the other's is not found; the admin token sees both.
    assert server.request("GET", f"/api/interviews/{mine['id']}", token=acme)[0] == 200
    assert server.request("GET", f"/api/interviews/{mine['id']}", token=beta)[0] == 404
    assert server.request("GET", f"/api/interviews/{mine['id']}/report", token=beta)[0] == 404
    assert server.request("GET", f"/api/interviews/{theirs['id']}")[0] == 200
    assert server.request("GET", "/api/jobs", token=beta)[0] == 200
