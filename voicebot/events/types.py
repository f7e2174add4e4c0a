"""Events: what the voice bot tells the HR system and the live watchers, and the catalogue of types.

An :class:`Event` has a stable, unique, time-sortable id (``evt_`` + a 26-character ULID), a type
from :data:`EVENT_TYPES`, an ISO 8601 UTC timestamp with milliseconds and a JSON ``data`` object.
On the wire to the HR system it is a Standard Webhooks payload (:meth:`Event.payload`):
``{"type": ..., "timestamp": ..., "data": {...}}``; the event id travels in the ``webhook-id``
header, so a receiver deduplicates on it.

Two kinds of type:

* **durable** events (``call.answered``, ``interview.completed``, ...) go to the durable stream of
  the event bus, are kept until every consumer group acknowledged them and are delivered at least
  once to the HR system by the bridge;
* **live** events (``transcript.partial``, ``prosody.sample``) are best effort: they reach whoever
  watches a call now (the live WebSocket, the monitor) and are never stored.

``transcript.final`` is durable and also shown live (the call session publishes it on the live
feed too). ``docs/EVENTS.md`` lists every type with an example generated from this catalogue
(``python -m voicebot.events.types docs/EVENTS.md`` rewrites its generated part).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ID_PREFIX = "evt_"
EVENT_VERSION = 1
"""Version of the event envelope and of the data shapes below (bumped on an incompatible change)."""

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_RANDOM_BITS = 80
_TIME_BITS = 48
_id_lock = threading.Lock()
_last_ms = -1
_last_random = 0


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, rest = divmod(value, 32)
        chars.append(_CROCKFORD[rest])
    return "".join(reversed(chars))


def new_event_id(ms: int | None = None) -> str:
    """A new event id: ``evt_`` + ULID (48-bit millisecond time, 80 random bits; 26 characters).

    Ids sort by creation time (as strings). Within one process, ids made now (no ``ms``) are
    strictly increasing even within one millisecond: the random part is incremented instead of
    drawn again (a monotonic ULID), so events made in order sort in order. With ``ms`` the id is
    for that instant, outside that sequence.
    """
    global _last_ms, _last_random
    if ms is not None:
        return _ulid(ms, int.from_bytes(os.urandom(10), "big"))
    now = time.time_ns() // 1_000_000
    with _id_lock:
        if now <= _last_ms:
            now = _last_ms
            random_part = _last_random + 1
            if random_part >> _RANDOM_BITS:  # 2**79 ids in one millisecond: borrow the next one
                now += 1
                random_part = int.from_bytes(os.urandom(10), "big") >> 1
        else:
            random_part = int.from_bytes(os.urandom(10), "big") >> 1  # room to increment
        _last_ms, _last_random = now, random_part
    return _ulid(now, random_part)


def _ulid(ms: int, random_part: int) -> str:
    value = ((ms & ((1 << _TIME_BITS) - 1)) << _RANDOM_BITS) | (
        random_part & ((1 << _RANDOM_BITS) - 1)
    )
    return ID_PREFIX + _encode(value, 26)


def derived_event_id(ms: int, key: str) -> str:
    """An event id made from a key: the same key (and time) always gives the same id.

    For an event that a retried piece of work may emit again (settling a call a dead process
    left): the bus and the HR bridge keep one event per id, so it reaches the HR system once.
    """
    digest = hashlib.sha256(key.encode()).digest()
    return _ulid(ms, int.from_bytes(digest[:10], "big"))


def id_time_ms(event_id: str) -> int:
    """The creation time (Unix milliseconds) encoded in an event id."""
    value = 0
    for char in event_id.removeprefix(ID_PREFIX)[:10]:
        value = value * 32 + _CROCKFORD.index(char.upper())
    return value


def format_timestamp(ms: int) -> str:
    """ISO 8601 UTC with milliseconds and ``Z``: ``2026-11-22T09:30:15.123Z``."""
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


@dataclass(frozen=True)
class Event:
    """One event: immutable once made (use :func:`make_event`)."""

    id: str
    """``evt_`` + ULID: unique, sorts by creation time; the ``webhook-id`` of its deliveries."""
    type: str
    """A key of :data:`EVENT_TYPES`."""
    timestamp: str
    """When it happened: ISO 8601 UTC with milliseconds and ``Z``."""
    data: dict[str, Any]
    """The type's fields (see ``docs/EVENTS.md``); JSON-serialisable."""
    version: int = EVENT_VERSION

    @property
    def durable(self) -> bool:
        """Whether the type is durable (unknown types count as durable: never drop them)."""
        event_type = EVENT_TYPES.get(self.type)
        return event_type is None or event_type.durable

    def payload(self) -> dict[str, Any]:
        """The Standard Webhooks payload: ``{"type", "timestamp", "data"}`` (the id is a header)."""
        return {"type": self.type, "timestamp": self.timestamp, "data": self.data}

    def to_json(self) -> str:
        """Every field as compact JSON (UTF-8 text as is)."""
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Event:
        """An event from :meth:`to_json` (types unknown here are kept, for newer producers)."""
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise ValueError("an event is a JSON object")
        try:
            event = cls(
                id=raw["id"],
                type=raw["type"],
                timestamp=raw["timestamp"],
                data=raw["data"],
                version=raw.get("version", EVENT_VERSION),
            )
        except KeyError as missing:
            raise ValueError(f"event JSON lacks {missing}") from None
        if not isinstance(event.data, dict):
            raise ValueError("an event's data is a JSON object")
        return event


@dataclass(frozen=True)
class EventType:
    """One type of event: whether it is durable, when it is sent, its data and an example."""

    name: str
    durable: bool
    description: str
    """When it is sent, in a sentence or two."""
    example: dict[str, Any]
    """A realistic ``data`` object."""
    fields: dict[str, str] = field(default_factory=dict)
    """Field name -> description, for ``docs/EVENTS.md``."""
    live: bool = False
    """Whether watchers see it live (every non-durable type; ``transcript.final`` too)."""

    def example_event(self) -> Event:
        """The example as an event with a fixed id and time (for the docs)."""
        return Event(id=EXAMPLE_ID, type=self.name, timestamp=EXAMPLE_TIMESTAMP, data=self.example)


EXAMPLE_ID = "evt_01M819F26K5SAGC3K8EXCSEPFA"
EXAMPLE_TIMESTAMP = "2026-11-22T09:30:15.123Z"

CANDIDATE_STATUSES: dict[str, str] = {
    "invited": "an interview was created for the candidate; the bot will call (or be called)",
    "agreed": "the candidate consented to the AI interview on the call (HR term: 同意面试)",
    "no_answer": "the candidate could not be reached or never answered (HR term: 未联系上)",
    "passed_ai": "the AI screen recommends advancing (HR term: 通过AI面试)",
    "not_matched": "the AI screen recommends rejecting, or a knock-out question failed "
    "(HR term: 暂不匹配)",
    "opted_out": "the candidate asked not to be called again",
}
"""``candidate.status_changed`` statuses and what they mean."""

HR_STATUS_TERMS: dict[str, str] = {
    "agreed": "同意面试",
    "no_answer": "未联系上",
    "passed_ai": "通过AI面试",
    "not_matched": "暂不匹配",
}
"""The Chinese HR-system terms for the statuses that have one."""

CALL_END_REASONS = (
    "completed",
    "consent_declined",
    "no_response",
    "caller_hangup",
    "knocked_out",
    "opted_out",
    "stream_closed",
    "server_restart",
    "voicemail",
)
"""``call.ended`` reasons: the call session gives them, ``server_restart`` the process that
settles a call a dead process left (its ``call.ended`` comes late, when that process starts),
``voicemail`` an answering machine took an outbound call (no interview)."""

_REFS_FIELDS = {
    "interview_id": "the voice bot's interview id (`iv_...`)",
    "job_id": "the job script's id",
    "candidate_id": "the candidate's id as given when the interview was created",
    "external_key": "the HR system's own key for the interview, or null",
    "client": "the API client that created the interview (`admin` for the admin token)",
}
_REFS = {
    "interview_id": "iv_3f9c2a71b04e8d15",
    "job_id": "warehouse-associate",
    "candidate_id": "cand_20418",
    "external_key": "ats-req-7731/app-5520",
    "client": "admin",
}
_CALL_SID = "CA5f1e8a9c0d2b4e6f8a1c3e5d7b9f0a2c"
_CALL_FIELDS = {**_REFS_FIELDS, "call_sid": "the carrier's call id (`CA...`)"}
_CALL = {**_REFS, "call_sid": _CALL_SID}

_REPORT_EXAMPLE: dict[str, Any] = {
    "report_version": 1,
    "interview_id": _REFS["interview_id"],
    "generated_at": 1795346223.412,
    "job": {"id": "warehouse-associate", "title": "Warehouse Associate", "language": "en"},
    "candidate": {"id": "cand_20418", "name": "Dana Whitfield", "timezone": "America/Chicago"},
    "outcome": "completed",
    "consent": True,
    "opted_out": False,
    "opt_out": None,
    "questions": [
        {
            "id": "forklift",
            "prompt": "Do you hold a current forklift certification?",
            "competency": None,
            "answered": True,
            "skipped": False,
            "answer": "Yes, I got certified last spring.",
            "follow_up_answer": None,
            "via": "voice",
            "knockout": {"question_id": "forklift", "answer": "yes", "passed": True},
            "prosody": None,
        },
        {
            "id": "teamwork",
            "prompt": "Tell me about a time you helped a teammate under pressure.",
            "competency": "teamwork",
            "answered": True,
            "skipped": False,
            "answer": "During peak season our picker was out, so first I split his aisles...",
            "follow_up_answer": None,
            "via": "voice",
            "knockout": None,
            "prosody": {"speech_rate": 142.0, "pause_ratio": 0.18, "rate_unit": "wpm"},
        },
    ],
    "scores": {
        "overall": 78.5,
        "recommendation": "advance",
        "competencies": [{"id": "teamwork", "name": "Teamwork", "score": 82}],
        "reasons": ["Teamwork: a complete STAR answer with two concrete actions."],
        "human_review_required": True,
    },
    "recommendation": "advance",
    "human_review_required": True,
    "calls": [
        {
            "call_sid": _CALL_SID,
            "end_reason": "completed",
            "started_at": 1795345990.2,
            "duration_secs": 221.4,
        }
    ],
}

_CATALOGUE = [
    EventType(
        "call.started",
        True,
        "A call for an interview reached the voice bot: the carrier's voice webhook came (an "
        "outbound call being answered, or an inbound call ringing) and was matched to an "
        "interview. The media stream is not connected yet.",
        {**_CALL, "direction": "outbound-api"},
        {**_CALL_FIELDS, "direction": "the carrier's call direction (`inbound`, `outbound-api`)"},
    ),
    EventType(
        "call.answered",
        True,
        "The call's audio is connected (the media stream started) and the bot begins to speak: "
        "the candidate is on the line.",
        {**_CALL, "stream_sid": "MZ8b0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e"},
        {**_CALL_FIELDS, "stream_sid": "the carrier's media stream id (`MZ...`)"},
    ),
    EventType(
        "consent.recorded",
        True,
        "The candidate answered the consent question (AI interview, recording): granted or "
        "declined, by voice or keypad. A grant is followed by `candidate.status_changed` "
        "(`agreed`).",
        {**_CALL, "granted": True, "via": "voice"},
        {
            **_CALL_FIELDS,
            "granted": "true when the candidate agreed",
            "via": "`voice` or `dtmf` (keypad)",
        },
    ),
    EventType(
        "transcript.partial",
        False,
        "Words of the candidate's current utterance while they are still speaking (interim "
        "recognition; replaced by later partials and by `transcript.final`). Produced only while "
        "a recruiter watches the call, about every 0.8 s of speech (LocalAgreement-2: `stable` "
        "words were agreed by two successive hypotheses and never change; `unstable` may).",
        {
            **_CALL,
            "question_id": "teamwork",
            "stable": "During peak season our",
            "unstable": "picker was out",
            "text": "During peak season our picker was out",
            "speech_rate": 142.5,
            "rate_unit": "wpm",
            "speech_rate_wpm": 142.5,
            "t": 61.84,
        },
        {
            **_CALL_FIELDS,
            "question_id": "the question being answered, or null (consent, small talk)",
            "stable": "words that will not change any more (until the final transcript)",
            "unstable": "the latest hypothesis' words after the stable ones",
            "text": "stable and unstable together",
            "speech_rate": "words (Chinese: characters) per minute of the utterance so far",
            "rate_unit": "`wpm` or `cpm`",
            "speech_rate_wpm": "the same as `speech_rate` in English, null in Chinese",
            "t": "seconds since the call started: the end of the audio this covers",
        },
        live=True,
    ),
    EventType(
        "transcript.final",
        True,
        "The final transcript of one candidate utterance, when their turn ended. Durable (part "
        "of the record) and also shown live to watchers of the call.",
        {
            **_CALL,
            "text": "During peak season our picker was out, so first I split his aisles.",
            "question_id": "teamwork",
            "start": 58.92,
            "end": 66.31,
        },
        {
            **_CALL_FIELDS,
            "text": "the words",
            "question_id": "the question they answer, or null",
            "start": "seconds since the call started when the speech began",
            "end": "seconds since the call started when the speech ended",
        },
        live=True,
    ),
    EventType(
        "prosody.sample",
        False,
        "A level meter of the candidate's voice a few times a second, only while someone "
        "watches the call. Descriptive only: no measure of emotion or personality.",
        {
            "call_sid": _CALL_SID,
            "t": 62.5,
            "loudness_dbfs": -23.4,
            "pitch_hz": 182.5,
            "speaking": True,
            "pause_ratio": 0.142,
        },
        {
            "call_sid": "the carrier's call id (`CA...`)",
            "t": "seconds of inbound audio since the call started",
            "loudness_dbfs": "RMS level of the latest window (dBFS; drops in pauses)",
            "pitch_hz": "median pitch of the window's voiced speech, or null",
            "speaking": "whether speech was heard in the last quarter second",
            "pause_ratio": "pause share of the current utterance, or null",
        },
        live=True,
    ),
    EventType(
        "question.answered",
        True,
        "An answer to a script question was stored: its words (voice) or keypad choice (dtmf), "
        "once per question and follow-up.",
        {
            **_CALL,
            "question_id": "teamwork",
            "text": "During peak season our picker was out, so first I split his aisles.",
            "via": "voice",
            "follow_up": False,
            "start": 58.92,
            "end": 66.31,
            "prosody": {
                "duration_secs": 7.39,
                "speech_secs": 6.8,
                "speech_rate": 142.0,
                "articulation_rate": 158.6,
                "rate_unit": "wpm",
                "word_count": 16,
                "pause_count": 1,
                "mean_pause_secs": 0.41,
                "pause_ratio": 0.06,
                "pitch_median_hz": 176.2,
                "pitch_range_semitones": 7.9,
                "loudness_dbfs": -21.7,
                "filler_count": 0,
                "filler_rate": 0.0,
            },
        },
        {
            **_CALL_FIELDS,
            "question_id": "the script question's id",
            "text": "the answer's words (keypad: the option's text)",
            "via": "`voice` or `dtmf`",
            "follow_up": "true for the answer to the question's follow-up",
            "start": "seconds since the call started when the answer began",
            "end": "seconds since the call started when the answer ended",
            "prosody": "descriptive prosody of a voice answer, or null (absent for keypad)",
            "key": "the key pressed (keypad answers only)",
        },
    ),
    EventType(
        "barge_in",
        True,
        "The candidate talked over the bot and the bot stopped speaking; `cut` lists the prompts "
        "cut short and how much of each was heard.",
        {
            **_CALL,
            "t": 45.12,
            "cut": [{"mark": "m17", "prompt_id": "q:teamwork", "heard_secs": 2.64}],
        },
        {
            **_CALL_FIELDS,
            "t": "seconds since the call started",
            "cut": "prompts cut short: `mark`, `prompt_id`, `heard_secs`",
        },
    ),
    EventType(
        "call.ended",
        True,
        "The call ended, for whatever reason; `interview.completed` follows once the report is "
        "built.",
        {**_CALL, "reason": "completed", "duration_secs": 221.4},
        {
            **_CALL_FIELDS,
            "reason": "why: " + ", ".join(f"`{r}`" for r in CALL_END_REASONS),
            "duration_secs": "length of the call",
        },
    ),
    EventType(
        "interview.completed",
        True,
        "The interview's report was built after its call ended: the outcome, the answers, the "
        "per-competency scores and a recommendation for a human to review (never a decision).",
        {**_REFS, "status": "completed", "report": _REPORT_EXAMPLE},
        {
            **_REFS_FIELDS,
            "status": "the interview's outcome status (`completed`, `declined`, `no_response`, "
            "`incomplete`, `knocked_out`, `opted_out`, `failed`)",
            "report": "the report, as `GET /api/interviews/{id}/report` serves it (without its "
            "expiring links)",
        },
    ),
    EventType(
        "candidate.status_changed",
        True,
        "The candidate's status for the HR system changed: an interview was created, the "
        "candidate consented on the call, or the interview's outcome or report decided it.",
        {**_REFS, "status": "passed_ai"},
        {
            **_REFS_FIELDS,
            "status": "; ".join(
                f"`{status}`: {meaning}" for status, meaning in CANDIDATE_STATUSES.items()
            ),
            "next_attempt_at": "with `no_answer` from an outbound campaign: when the candidate is "
            "called again (ISO 8601 UTC), null after the last attempt (optional)",
        },
    ),
]

_CATALOGUE.append(
    EventType(
        "candidate.erased",
        True,
        "The candidate's data was erased at the request of an API client (`DELETE "
        "/api/candidates/{id}`; PIPL art. 19/47, GDPR art. 17): their interviews' personal fields, "
        "recordings, transcripts, reports and every earlier event about them are gone from the "
        "voice bot (an anonymous tombstone stays for the audit). Earlier events about these "
        "interviews will not be delivered or replayed any more; delete your copies too.",
        {
            "candidate_id": "cand_20418",
            "client": "admin",
            "interviews": [
                {
                    "interview_id": _REFS["interview_id"],
                    "job_id": _REFS["job_id"],
                    "external_key": _REFS["external_key"],
                }
            ],
            "classes": ["personal_fields", "recordings", "transcripts", "reports", "events"],
            "erased_at": "2026-11-22T09:30:15.123Z",
            "erased_by": "api:admin",
        },
        {
            "candidate_id": "the candidate's id as given when their interviews were created",
            "client": "the API client whose candidate was erased",
            "interviews": "the erased interviews: `interview_id`, `job_id`, `external_key`",
            "classes": "the data classes erased (`personal_fields`, `recordings`, `transcripts`,"
            " `reports`, `events`)",
            "erased_at": "when (ISO 8601 UTC)",
            "erased_by": "who asked: `api:<client>`",
        },
    )
)

_CAMPAIGN_ID = "cmp_5d2e8f1a0b3c4d6e"
_NEXT_ATTEMPT = "2026-11-23T09:30:00.000Z"
_CATALOGUE += [
    EventType(
        "dial.attempted",
        True,
        "An outbound campaign's call attempt ended (the dialer placed the call and the carrier "
        "reported how it went): answered by a person, or not reached, with when the next "
        "attempt is due. A carrier failure (401/429/5xx) is no attempt and sends nothing.",
        {
            **_REFS,
            "campaign_id": _CAMPAIGN_ID,
            "attempt": 1,
            "max_attempts": 3,
            "outcome": "no_answer",
            "call_sid": _CALL_SID,
            "next_attempt_at": _NEXT_ATTEMPT,
        },
        {
            **_REFS_FIELDS,
            "campaign_id": "the campaign that placed the call (`cmp_...`)",
            "attempt": "this attempt's number, from 1",
            "max_attempts": "the campaign's attempts per candidate",
            "outcome": "`answered` (a person; the interview ran), `no_answer`, `busy`, `failed`, "
            "`voicemail` (an answering machine; no interview), `canceled`",
            "call_sid": "the carrier's call id, or null when the carrier never gave one",
            "next_attempt_at": "when the candidate is called again (ISO 8601 UTC, moved into "
            "the campaign's calling hours), or null: no further attempt",
        },
    ),
    EventType(
        "interview.unreachable",
        True,
        "The campaign's last attempt did not reach the candidate: the interview ends "
        "`unreachable` (HR term: 未联系上) and nobody calls again.",
        {
            **_REFS,
            "campaign_id": _CAMPAIGN_ID,
            "attempts": 3,
            "last_outcome": "busy",
        },
        {
            **_REFS_FIELDS,
            "campaign_id": "the campaign (`cmp_...`)",
            "attempts": "attempts made",
            "last_outcome": "how the last one ended (see `dial.attempted`)",
        },
    ),
    EventType(
        "campaign.progress",
        True,
        "A campaign's counts changed (attempts ended, numbers were skipped for the do-not-call "
        "list): its interviews by status and its attempts by outcome (by state while not ended: "
        "`dialing`, `up`). At most every 10 s per campaign, so a later one supersedes it.",
        {
            "campaign_id": _CAMPAIGN_ID,
            "job_id": _REFS["job_id"],
            "client": "admin",
            "interviews": {"pending": 41, "in_progress": 2, "completed": 12, "unreachable": 5},
            "attempts": {"answered": 14, "no_answer": 19, "busy": 3, "voicemail": 4, "dialing": 2},
        },
        {
            "campaign_id": "the campaign (`cmp_...`)",
            "job_id": "its job script's id",
            "client": "the API client that owns the campaign",
            "interviews": "the campaign's interviews by status",
            "attempts": "its attempts by outcome (by state while not ended)",
        },
    ),
]

EVENT_TYPES: dict[str, EventType] = {event_type.name: event_type for event_type in _CATALOGUE}
"""Every event type by name."""
DURABLE_TYPES = frozenset(name for name, t in EVENT_TYPES.items() if t.durable)
LIVE_TYPES = frozenset(name for name, t in EVENT_TYPES.items() if not t.durable)
"""Types that only ever go to live watchers."""


def make_event(
    type: str, data: dict[str, Any], *, id: str | None = None, timestamp: str | None = None
) -> Event:
    """A new event of a catalogued type, stamped now (or with the given id and time).

    Raises ``ValueError`` for a type not in :data:`EVENT_TYPES`, data that is not a JSON object,
    and a ``candidate.status_changed`` whose status is not one of :data:`CANDIDATE_STATUSES`.
    """
    if type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type!r}; known: {', '.join(sorted(EVENT_TYPES))}")
    if not isinstance(data, dict):
        raise ValueError(f"{type} data must be a dict, not {data.__class__.__name__}")
    if type == "candidate.status_changed" and data.get("status") not in CANDIDATE_STATUSES:
        raise ValueError(
            f"candidate.status_changed status {data.get('status')!r} is not one of "
            + ", ".join(CANDIDATE_STATUSES)
        )
    event_id = new_event_id() if id is None else id
    if timestamp is None:
        ms = id_time_ms(event_id) if id is None else time.time_ns() // 1_000_000
        timestamp = format_timestamp(ms)
    return Event(id=event_id, type=type, timestamp=timestamp, data=data)


# --- docs/EVENTS.md -------------------------------------------------------------------------------

DOC_BEGIN = "<!-- generated by `python -m voicebot.events.types docs/EVENTS.md`: begin -->"
DOC_END = "<!-- generated: end -->"


def example_json(event_type: EventType) -> str:
    """The example payload of a type as the docs show it (indented JSON)."""
    return json.dumps(event_type.example_event().payload(), indent=2, ensure_ascii=False)


def render_catalogue() -> str:
    """The generated part of ``docs/EVENTS.md``: a summary table, then one section a type."""
    lines = [
        "| Type | Kind | When |",
        "|---|---|---|",
    ]
    for t in EVENT_TYPES.values():
        kind = "durable + live" if t.durable and t.live else "durable" if t.durable else "live"
        lines.append(
            f"| [`{t.name}`](#{t.name.replace('.', '')}) | {kind} | "
            f"{t.description.split('. ')[0].rstrip('.')}. |"
        )
    for t in EVENT_TYPES.values():
        if t.durable:
            kind = "**Durable**: stream, consumer groups, webhooks (at least once)"
            if t.live:
                kind += "; also shown live"
        else:
            kind = "**Live** only: watchers of the call, best effort, never stored"
        lines += ["", f"### `{t.name}`", "", kind + ".", "", t.description, ""]
        lines += ["| Field | Meaning |", "|---|---|"]
        lines += [f"| `{name}` | {meaning} |" for name, meaning in t.fields.items()]
        lines += ["", "```json", example_json(t), "```"]
    return "\n".join(lines) + "\n"


def update_doc(path: Path) -> bool:
    """Rewrite the generated part of a docs file; whether it changed."""
    text = path.read_text(encoding="utf-8")
    head, begin, rest = text.partition(DOC_BEGIN)
    _, end, tail = rest.partition(DOC_END)
    if not begin or not end:
        raise ValueError(f"{path} lacks the markers {DOC_BEGIN!r} ... {DOC_END!r}")
    new = head + DOC_BEGIN + "\n\n" + render_catalogue() + "\n" + DOC_END + tail
    if new == text:
        return False
    path.write_text(new, encoding="utf-8")
    return True


if __name__ == "__main__":  # pragma: no cover
    for arg in sys.argv[1:] or ["docs/EVENTS.md"]:
        print(f"{arg}: {'updated' if update_doc(Path(arg)) else 'up to date'}")
