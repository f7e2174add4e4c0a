"""Event ids, the envelope, the catalogue and docs/EVENTS.md."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from voicebot.events import types
from voicebot.events.types import (
    CANDIDATE_STATUSES,
    EVENT_TYPES,
    HR_STATUS_TERMS,
    Event,
    example_json,
    id_time_ms,
    make_event,
    new_event_id,
    render_catalogue,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "EVENTS.md"
ID_PATTERN = re.compile(r"^evt_[0-9A-HJKMNP-TV-Z]{26}$")
TIMESTAMP_PATTERN = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def test_ids_are_unique_well_formed_and_sort_in_creation_order():
    ids = [new_event_id() for _ in range(20_000)]  # many share a millisecond
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    assert all(ID_PATTERN.match(event_id) for event_id in ids[:100])


def test_ids_sort_by_time_across_milliseconds():
    early = new_event_id(1_795_339_815_123)
    late = new_event_id(1_795_339_815_124)
    assert early < late
    assert id_time_ms(late) == 1_795_339_815_124


def test_make_event_stamps_id_and_time_now():
    before = time.time()
    event = make_event("call.ended", {"call_sid": "CA1", "reason": "completed"})
    after = time.time()
    assert ID_PATTERN.match(event.id)
    assert TIMESTAMP_PATTERN.match(event.timestamp)
    stamped = datetime.strptime(event.timestamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert before - 0.002 <= stamped.timestamp() <= after + 0.002
    assert abs(id_time_ms(event.id) / 1000 - stamped.timestamp()) < 0.001
    assert event.version == 1
    assert event.durable


def test_payload_is_exactly_the_standard_webhooks_shape():
    data = {"call_sid": "CA1", "reason": "completed", "duration_secs": 12.5}
    event = make_event("call.ended", data, id="evt_X", timestamp="2026-11-22T09:30:15.123Z")
    assert event.payload() == {
        "type": "call.ended",
        "timestamp": "2026-11-22T09:30:15.123Z",
        "data": data,
    }


def test_json_round_trip_keeps_every_field():
    event = make_event(
        "transcript.final", {"call_sid": "CA1", "text": "我在仓库工作了三年", "start": 1.5}
    )
    text = event.to_json()
    assert "我在仓库" in text  # UTF-8 kept readable
    assert json.loads(text) == {
        "id": event.id,
        "type": "transcript.final",
        "timestamp": event.timestamp,
        "data": event.data,
        "version": 1,
    }
    assert Event.from_json(text) == event
    assert Event.from_json(text.encode()) == event


def test_from_json_rejects_what_is_not_an_event():
    with pytest.raises(ValueError, match="lacks"):
        Event.from_json('{"id": "evt_1", "type": "call.ended"}')
    with pytest.raises(ValueError):
        Event.from_json("[1, 2]")


def test_unknown_type_is_rejected_clearly():
    with pytest.raises(ValueError, match="unknown event type 'call.exploded'.*call.ended"):
        make_event("call.exploded", {})
    with pytest.raises(ValueError, match="dict"):
        make_event("call.ended", ["not", "a", "dict"])  # type: ignore[arg-type]


def test_candidate_status_must_be_known():
    for status in CANDIDATE_STATUSES:
        assert make_event("candidate.status_changed", {"status": status}).data["status"] == status
    with pytest.raises(ValueError, match="hired"):
        make_event("candidate.status_changed", {"status": "hired"})


def test_catalogue_has_every_type_with_durability():
    assert set(EVENT_TYPES) == {
        "call.started",
        "call.answered",
        "consent.recorded",
        "transcript.partial",
        "transcript.final",
        "prosody.sample",
        "question.answered",
        "barge_in",
        "call.ended",
        "interview.completed",
        "candidate.status_changed",
        "candidate.erased",
        "dial.attempted",
        "interview.unreachable",
        "campaign.progress",
    }
    live_only = {name for name, t in EVENT_TYPES.items() if not t.durable}
    assert live_only == {"transcript.partial", "prosody.sample"}
    assert EVENT_TYPES["transcript.final"].durable and EVENT_TYPES["transcript.final"].live
    assert set(CANDIDATE_STATUSES) == {
        "invited",
        "agreed",
        "no_answer",
        "passed_ai",
        "not_matched",
        "opted_out",
    }
    assert HR_STATUS_TERMS == {
        "agreed": "同意面试",
        "no_answer": "未联系上",
        "passed_ai": "通过AI面试",
        "not_matched": "暂不匹配",
    }


@pytest.mark.parametrize("name", sorted(EVENT_TYPES))
def test_examples_are_valid_events_with_documented_fields(name):
    event_type = EVENT_TYPES[name]
    event = make_event(name, event_type.example)  # the example passes validation
    assert Event.from_json(event.to_json()) == event
    assert set(event_type.example) <= set(event_type.fields), "undocumented example fields"
    assert event_type.description
    example = event_type.example
    if "call_sid" in example:
        assert example["call_sid"].startswith("CA")
    if "interview_id" in example:
        assert example["interview_id"].startswith("iv_")
    if name == "call.ended":
        assert "reason" in example
    if name == "interview.completed":
        assert example["report"]["interview_id"] == example["interview_id"]
    example_event = event_type.example_event()
    assert ID_PATTERN.match(example_event.id)
    assert id_time_ms(example_event.id) == 1_795_339_815_123  # the example timestamp's instant


def test_docs_list_every_type_with_its_example_json():
    doc = DOC.read_text(encoding="utf-8")
    for name, event_type in EVENT_TYPES.items():
        assert f"### `{name}`" in doc, name
        assert example_json(event_type) in doc, f"docs/EVENTS.md example of {name} is stale"
    for term in HR_STATUS_TERMS.values():
        assert term in doc


def test_docs_generated_part_is_current():
    doc = DOC.read_text(encoding="utf-8")
    generated = doc.split(types.DOC_BEGIN, 1)[1].split(types.DOC_END, 1)[0]
    assert generated.strip() == render_catalogue().strip(), (
        "docs/EVENTS.md is stale: run `python -m voicebot.events.types docs/EVENTS.md`"
    )


def test_a_derived_event_id_is_the_same_for_the_same_work_and_a_valid_id():
    from voicebot.events.types import derived_event_id, id_time_ms

    first = derived_event_id(1_700_000_000_000, "settle:CA1:call.ended")
    assert first == derived_event_id(1_700_000_000_000, "settle:CA1:call.ended")
    assert first != derived_event_id(1_700_000_000_000, "settle:CA2:call.ended")
    assert id_time_ms(first) == 1_700_000_000_000
    assert make_event("call.ended", {}, id=first).id == first
