"""A simulated Twilio for outbound calls: its REST API, the calls it places and its callbacks.

:class:`CarrierSimulator` is an aiohttp app on a loopback port that plays Twilio's side of calls
placed through the REST API, so the dialer, its tests and the load harness run without a phone
network:

- ``POST /2010-04-01/Accounts/{AccountSid}/Calls.json`` (form-encoded, HTTP basic auth
  ``AccountSid:AuthToken``; else 401 with Twilio's error JSON ``{"code", "message",
  "more_info", "status"}``) answers 201 with Twilio's call JSON (``status`` "queued") and then
  plays the :class:`Scenario` configured for the ``To`` number.
- ``POST .../Calls/{CallSid}.json`` with ``Status=completed`` ends a call (ringing: it ends
  ``canceled``; up: the stream stops and it ends ``completed``); ``Status=canceled`` cancels a
  call still ringing and leaves one that is up alone; a call already ended is error 21220.
  ``GET .../Calls/{CallSid}.json`` reads a call.
- Status callbacks go to ``StatusCallback`` for the events asked in ``StatusCallbackEvent``
  (``initiated``, ``ringing``, ``answered`` = ``CallStatus`` in-progress, ``completed`` = the
  final status: completed, busy, no-answer, failed or canceled; only ``completed`` when none
  is asked), numbered by ``SequenceNumber`` from 0, with ``CallbackSource``
  ``call-progress-events``, ``Timestamp`` (RFC 2822), ``Direction`` ``outbound-api`` and, at
  the end, ``CallDuration``. Asynchronous answering-machine detection (``MachineDetection`` with
  ``AsyncAmd=true``) posts ``AnsweredBy`` and ``MachineDetectionDuration`` (ms) to
  ``AsyncAmdStatusCallback`` while the call is already up; with ``DetectMessageEnd`` a machine's
  verdict (``machine_end_beep``) comes once its greeting and beep have played.
- When a call is answered its ``Url`` is fetched with a POST (``CallStatus`` in-progress), and
  the TwiML's ``<Connect><Stream>`` is followed by the Twilio-compatible caller of
  ``loadtest/caller.py``: a person answers the bot's prompts with recorded speech; a voicemail
  plays a spoken greeting and a 1 kHz beep, then listens.

Every callback and webhook is signed with ``X-Twilio-Signature`` as Twilio signs them. Faults are
injected on demand: the next N API requests answered 401/429/500 or never answered
(:meth:`CarrierSimulator.fail_next`, :meth:`CarrierSimulator.hang_next`); callbacks dropped,
sent twice or late (so later ones arrive first) per scenario (:class:`CallbackFaults`).
Everything the simulator did is recorded (:attr:`CarrierSimulator.requests`,
:attr:`CarrierSimulator.deliveries`, :attr:`CarrierSimulator.calls`) for assertions.

Twilio's documentation this follows: https://www.twilio.com/docs/voice/api/call-resource,
https://www.twilio.com/docs/voice/answering-machine-detection,
https://www.twilio.com/docs/usage/security#validating-requests,
https://www.twilio.com/docs/api/errors/20429.

Run it alone (e.g. for a server under a manual test) with ``python -m loadtest.carrier_sim``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import dataclasses
import logging
import math
import re
import secrets
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from aiohttp import ClientError, ClientSession, ClientTimeout, web

from loadtest.caller import (
    SAMPLE_RATE,
    CallerState,
    CallResult,
    CandidateAnswer,
    CarrierMessages,
    StreamInstruction,
    load_answers,
    parse_twiml,
    stream_call,
)
from voicebot.audio.frames import read_wav, to_phone_ulaw
from voicebot.telephony.signature import compute_twilio_signature

log = logging.getLogger(__name__)

API_VERSION = "2010-04-01"
DEFAULT_ACCOUNT_SID = "AC" + "5" * 32
DEFAULT_AUTH_TOKEN = "simulated-twilio-auth-token-0123"
SHARED_AUDIO = Path(__file__).resolve().parents[2] / "shared" / "audio"
DEFAULT_GREETING = SHARED_AUDIO / "en_speaker_b.wav"
"""A voicemail's spoken greeting (human speech, see ../shared/audio/README.md)."""

CALLBACK_TIMEOUT_SECS = 15.0
"""Twilio gives a webhook this long to answer."""

STATUS_EVENTS = ("initiated", "ringing", "answered", "completed")
FINAL_STATUSES = ("completed", "busy", "no-answer", "failed", "canceled")
SIP_RESPONSE = {"completed": 200, "busy": 486, "no-answer": 487, "failed": 404, "canceled": 487}
E164 = re.compile(r"\+[1-9][0-9]{6,14}")

ScenarioKind = Literal["answer", "no_answer", "busy", "failed", "hangup_after", "voicemail"]
CallbackKind = Literal["status", "amd", "voice"]

TWILIO_ERRORS = {
    400: (21200, "Bad request"),
    401: (20003, "Authenticate"),
    403: (20003, "Permission denied"),
    404: (20404, "The requested resource was not found"),
    429: (20429, "Too Many Requests"),
    500: (20500, "Internal Server Error"),
    503: (20503, "Service Unavailable"),
}


def twilio_error(
    status: int,
    code: int | None = None,
    message: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """Twilio's error response: ``{"code", "message", "more_info", "status"}``."""
    default_code, default_message = TWILIO_ERRORS.get(status, (20001, "Error"))
    code = default_code if code is None else code
    body = {
        "code": code,
        "message": message or default_message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return web.json_response(body, status=status, headers=dict(headers or {}))


def beep_ulaw(secs: float = 0.5, hz: float = 1000.0) -> bytes:
    """An answering machine's beep: a 1 kHz tone as 8 kHz mu-law."""
    t = np.arange(int(secs * SAMPLE_RATE)) / SAMPLE_RATE
    return to_phone_ulaw((0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32), SAMPLE_RATE)


def voicemail_ulaw(greeting: Path = DEFAULT_GREETING) -> bytes:
    """What a voicemail plays on answering: its spoken greeting, a short pause and the beep."""
    pcm, rate = read_wav(greeting)
    pause = bytes([0xFF]) * int(0.3 * SAMPLE_RATE)
    return to_phone_ulaw(pcm, rate) + pause + beep_ulaw()


@dataclass(frozen=True)
class CallbackFaults:
    """How the simulator misdelivers one call's callbacks (events: the status events and ``amd``).

    ``drop``: never sent; ``duplicate``: sent twice; ``delay_secs``: sent this much later than
    they happen (a later event may then arrive first; its ``SequenceNumber`` still tells).
    """

    drop: frozenset[str] = frozenset()
    duplicate: frozenset[str] = frozenset()
    delay_secs: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Scenario:
    """What happens when the simulator places a call to one number.

    - ``answer``: rings ``ring_secs``, a person answers and takes the interview, speaking
      ``answers`` (or pressing ``dtmf``) as :func:`loadtest.caller.run_call` does; AMD says
      ``answered_by`` (default ``human``) ``amd_secs`` after the stream opens.
    - ``no_answer``: rings until the request's ``Timeout``, then ``no-answer``.
    - ``busy`` / ``failed``: ends so after ``ring_secs``, never answered.
    - ``hangup_after``: answers like ``answer``, then the person hangs up ``hangup_after_secs``
      after the stream opened, mid-interview.
    - ``voicemail``: answers, plays ``greeting`` and a beep on the stream; AMD says
      ``machine_end_beep`` once they have played (plus ``amd_secs``), then the machine records
      whatever the bot says until the bot hangs up (or ``max_call_secs``).
    """

    kind: ScenarioKind = "answer"
    ring_secs: float = 0.1
    answers: Sequence[str | Path | CandidateAnswer] = ()
    dtmf: Mapping[int, str] | None = None
    answered_by: str | None = None
    amd_secs: float = 0.5
    hangup_after_secs: float = 5.0
    greeting: Path = DEFAULT_GREETING
    max_call_secs: float = 300.0
    faults: CallbackFaults = field(default_factory=CallbackFaults)

    def verdict(self) -> str:
        """The AMD ``AnsweredBy`` this scenario reports."""
        if self.answered_by:
            return self.answered_by
        return "machine_end_beep" if self.kind == "voicemail" else "human"


@dataclass
class ApiRequest:
    """One request to the simulated REST API and how it was answered."""

    method: str
    path: str
    form: list[tuple[str, str]]
    status: int
    at: float


@dataclass
class Delivery:
    """One callback or webhook the simulator sent (or dropped) and how it was answered."""

    call_sid: str
    kind: CallbackKind
    event: str  # a status event, "amd" or "voice"
    url: str
    params: dict[str, str]
    signature: str
    status: int | None = None  # the receiver's HTTP status; None: not answered (error) or dropped
    error: str | None = None
    dropped: bool = False
    body: str = ""
    sent_at: float | None = None
    idempotency_token: str = field(default_factory=lambda: secrets.token_hex(16))
    """``I-Twilio-Idempotency-Token``: the same on every copy of one callback (a retry)."""


@dataclass
class SimulatedCall:
    """A call the simulator placed: its request, scenario, state and what the stream heard."""

    sid: str
    to: str
    from_: str
    form: list[tuple[str, str]]
    scenario: Scenario
    status: str = "queued"
    created_at: float = field(default_factory=time.time)
    answered_at: float | None = None
    ended_at: float | None = None
    answered_by: str | None = None
    result: CallResult | None = None
    opening_end: float | None = None  # stream time the voicemail's beep ended
    error: str | None = None
    sequence: int = 0
    hangup: asyncio.Event = field(default_factory=asyncio.Event)
    stream_opened: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)  # its play and callbacks

    def param(self, name: str) -> str | None:
        """The first value of ``name`` in the create request."""
        return next((v for k, v in self.form if k == name), None)

    def params(self, name: str) -> list[str]:
        """Every value of ``name`` in the create request."""
        return [v for k, v in self.form if k == name]

    @property
    def duration_secs(self) -> int:
        """``CallDuration``: whole seconds from answer to hang-up (0 if never answered)."""
        if self.answered_at is None or self.ended_at is None:
            return 0
        return int(math.ceil(self.ended_at - self.answered_at))


@dataclass(frozen=True)
class SimulatorReport:
    """What the simulated carrier saw of a dialer: for benchmarks and load tests."""

    calls: int
    outcomes: dict[str, int]  # final status (or the status now, for calls not ended)
    answered_by: dict[str, int]  # AMD verdicts
    max_concurrent_calls: int  # placed and not ended (ringing or up) at once
    max_concurrent_up: int  # answered and not ended at once
    dials_per_minute: float | None  # calls placed a minute, from the first to the last
    voice_to_voice: list[float]  # of every answer in answered calls, seconds
    api_errors: dict[int, int]  # API requests answered with an error, by HTTP status
    callbacks_unanswered: int  # callbacks the application did not answer with a 2xx

    def to_json_dict(self) -> dict[str, Any]:
        """JSON-ready (voice-to-voice as p50/p95)."""
        from loadtest.caller import percentile

        data = dict(self.__dict__)
        v2v = data.pop("voice_to_voice")
        data["voice_to_voice_p50"] = percentile(v2v, 50)
        data["voice_to_voice_p95"] = percentile(v2v, 95)
        data["api_errors"] = {str(k): v for k, v in self.api_errors.items()}
        return data


def _max_overlap(spans: Sequence[tuple[float, float]]) -> int:
    """Most of the ``(start, end)`` spans open at one instant."""
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    most = current = 0
    for _, step in edges:  # an end sorts before a start at the same instant
        current += step
        most = max(most, current)
    return most


def mixed_scenarios(
    numbers: Sequence[str], mix: Sequence[tuple[Scenario, float]], *, seed: int = 0
) -> dict[str, Scenario]:
    """Give ``numbers`` scenarios in the proportions of ``mix`` (weights), shuffled by ``seed``.

    E.g. 60 candidates, half answering, a fifth not answering, the rest busy, failing or
    voicemail: counts are rounded so that they add up to ``len(numbers)``.
    """
    import random

    total = sum(weight for _, weight in mix)
    if not mix or total <= 0:
        raise ValueError("mix: give at least one scenario with a positive weight")
    counts = [int(len(numbers) * weight / total) for _, weight in mix]
    by_remainder = sorted(
        range(len(mix)), key=lambda i: len(numbers) * mix[i][1] / total - counts[i], reverse=True
    )
    for i in by_remainder[: len(numbers) - sum(counts)]:
        counts[i] += 1
    assigned = [scenario for (scenario, _), n in zip(mix, counts, strict=True) for _ in range(n)]
    random.Random(seed).shuffle(assigned)
    return dict(zip(numbers, assigned, strict=True))


class CarrierSimulator:
    """Twilio's REST API and call progress on a loopback port (see the module docstring).

    ``scenarios`` maps a ``To`` number (E.164) to its :class:`Scenario`; other numbers get
    ``default``. The table may be changed while the simulator runs.
    """

    def __init__(
        self,
        *,
        account_sid: str = DEFAULT_ACCOUNT_SID,
        auth_token: str = DEFAULT_AUTH_TOKEN,
        scenarios: Mapping[str, Scenario] | None = None,
        default: Scenario | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.scenarios: dict[str, Scenario] = dict(scenarios or {})
        self.default = default or Scenario()
        self.host = host
        self.port = port
        self.requests: list[ApiRequest] = []
        self.deliveries: list[Delivery] = []
        self.calls: dict[str, SimulatedCall] = {}
        # the next requests' faults: (status, or None to hang; Retry-After; hang after placing)
        self._faults: deque[tuple[int | None, float | None, bool]] = deque()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._http: ClientSession | None = None
        self._voicemail_audio: dict[Path, bytes] = {}

    # ----------------------------------------------------------------- lifecycle

    @property
    def api_url(self) -> str:
        """Base URL of the simulated API (what ``VOICEBOT_TWILIO_API_URL`` points at)."""
        return f"http://{self.host}:{self.port}"

    async def start(self) -> str:
        """Start serving; returns :attr:`api_url`."""
        app = web.Application()
        base = f"/{API_VERSION}/Accounts/{{account}}/Calls"
        app.router.add_post(base + ".json", self._create_call)
        app.router.add_post(base + "/{sid}.json", self._update_call)
        app.router.add_get(base + "/{sid}.json", self._fetch_call)
        self._runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=2.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self._http = ClientSession(timeout=ClientTimeout(total=CALLBACK_TIMEOUT_SECS))
        return self.api_url

    async def stop(self) -> None:
        """Hang up every call, wait briefly for their last callbacks, stop serving."""
        self._closing.set()
        for call in self.calls.values():
            call.hangup.set()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=10)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> CarrierSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------ fault injection

    def fail_next(self, status: int, count: int = 1, *, retry_after: float | None = None) -> None:
        """Answer the next ``count`` API requests with ``status`` and Twilio's error JSON.

        ``retry_after`` adds a ``Retry-After`` header (seconds) to them.
        """
        self._faults.extend([(status, retry_after, False)] * count)

    def hang_next(self, count: int = 1, *, placed: bool = False) -> None:
        """Never answer the next ``count`` API requests (the client's timeout must end them).

        ``placed``: a create-call request is carried out all the same (the call rings, its
        callbacks come) and only the answer is lost, the case where a client that retries
        would call the person twice.
        """
        self._faults.extend([(None, None, placed)] * count)

    # ------------------------------------------------------------------- queries

    def deliveries_for(self, call_sid: str, kind: CallbackKind = "status") -> list[Delivery]:
        """What was sent for one call, of one kind, in the order it was sent."""
        return [d for d in self.deliveries if d.call_sid == call_sid and d.kind == kind]

    async def wait_done(self, call_sid: str) -> SimulatedCall:
        """Wait until the call has ended and every callback of it has been sent.

        Bound it with ``asyncio.timeout`` in the caller.
        """
        call = self.calls[call_sid]
        await call.done.wait()
        while call.tasks:
            await asyncio.wait(set(call.tasks))
        return call

    def report(self) -> SimulatorReport:
        """Sum up what the simulator did so far."""
        from collections import Counter

        now = time.time()
        calls = list(self.calls.values())
        placed = sorted(call.created_at for call in calls)
        dials_per_minute = None
        if len(placed) > 1 and placed[-1] > placed[0]:
            dials_per_minute = (len(placed) - 1) / (placed[-1] - placed[0]) * 60
        return SimulatorReport(
            calls=len(calls),
            outcomes=dict(Counter(call.status for call in calls)),
            answered_by=dict(Counter(call.answered_by for call in calls if call.answered_by)),
            max_concurrent_calls=_max_overlap([(c.created_at, c.ended_at or now) for c in calls]),
            max_concurrent_up=_max_overlap(
                [(c.answered_at, c.ended_at or now) for c in calls if c.answered_at is not None]
            ),
            dials_per_minute=dials_per_minute,
            voice_to_voice=[v for c in calls if c.result for v in c.result.voice_to_voice],
            api_errors=dict(Counter(r.status for r in self.requests if r.status >= 400)),
            callbacks_unanswered=sum(
                1
                for d in self.deliveries
                if not d.dropped and d.sent_at is not None and not 200 <= (d.status or 0) < 300
            ),
        )

    async def wait_idle(self) -> None:
        """Wait until no call is playing and no callback is being sent."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    # ------------------------------------------------------------------ REST API

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return secrets.compare_digest(user, self.account_sid) and secrets.compare_digest(
            password, self.auth_token
        )

    async def _prelude(
        self, request: web.Request
    ) -> tuple[list[tuple[str, str]], web.Response | None]:
        """Record the request and apply faults and auth; an error response ends it early.

        A fault that hangs after placing the call places it here first.
        """
        form: list[tuple[str, str]] = []
        if request.method == "POST":
            data = await request.post()
            form = [(k, str(v)) for k, v in data.items()]
        record = ApiRequest(request.method, request.path, form, 0, time.time())
        self.requests.append(record)
        response: web.Response | None = None
        if self._faults:
            status, retry_after, placed = self._faults.popleft()
            if status is None:  # hang: answer nothing until the simulator stops
                creates = request.match_info.get("sid") is None and request.method == "POST"
                if placed and creates and self._authorized(request):
                    self._place(form)
                await self._closing.wait()
                response = twilio_error(503)
            else:
                headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
                response = twilio_error(status, headers=headers)
        elif not self._authorized(request):
            response = twilio_error(401, headers={"WWW-Authenticate": 'Basic realm="Twilio API"'})
        elif request.match_info["account"] != self.account_sid:
            response = twilio_error(
                404,
                message=f"The requested resource {request.path} was not found",
            )
        if response is not None:
            record.status = response.status
        return form, response

    async def _create_call(self, request: web.Request) -> web.Response:
        form, response = await self._prelude(request)
        if response is None:
            response = self._place(form)
        self.requests[-1].status = response.status
        return response

    def _place(self, form: list[tuple[str, str]]) -> web.Response:
        values = dict(form)  # first value of each name wins below; events are read in full
        to, from_, url = values.get("To", ""), values.get("From", ""), values.get("Url", "")
        if not to:
            return twilio_error(400, 21201, "No 'To' number is specified")
        if not E164.fullmatch(to):
            return twilio_error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if not from_:
            return twilio_error(400, 21213, "No 'From' number is specified")
        if not E164.fullmatch(from_):
            return twilio_error(
                400, 21212, f"The 'From' number {from_} is not a valid phone number"
            )
        if not url:
            return twilio_error(400, 21205, "Url parameter is required.")
        events = [v for k, v in form if k == "StatusCallbackEvent"]
        unknown = [e for e in events if e not in STATUS_EVENTS]
        if unknown:
            return twilio_error(
                400, 21200, f"StatusCallbackEvent {unknown[0]!r} is not one of {STATUS_EVENTS}"
            )
        sid = "CA" + secrets.token_hex(16)
        call = SimulatedCall(sid, to, from_, form, self.scenarios.get(to, self.default))
        self.calls[sid] = call
        self._spawn(call, self._play(call), f"carrier-sim-{sid}")
        return web.json_response(self._call_json(call), status=201)

    async def _update_call(self, request: web.Request) -> web.Response:
        form, response = await self._prelude(request)
        if response is None:
            response = self._update(request.match_info["sid"], dict(form))
        self.requests[-1].status = response.status
        return response

    def _update(self, sid: str, values: Mapping[str, str]) -> web.Response:
        call = self.calls.get(sid)
        if call is None:
            return twilio_error(404, message=f"The requested resource Calls/{sid} was not found")
        status = values.get("Status")
        if status not in ("completed", "canceled"):
            return twilio_error(400, 21200, "Status must be completed or canceled")
        if call.status in FINAL_STATUSES:
            return twilio_error(
                400, 21220, "Invalid call state: the call is not queued, ringing or in-progress"
            )
        if status == "canceled" and call.status == "in-progress":
            return web.json_response(self._call_json(call))  # canceled leaves a call that is up
        call.hangup.set()
        ending = "completed" if call.status == "in-progress" else "canceled"
        return web.json_response({**self._call_json(call), "status": ending})

    async def _fetch_call(self, request: web.Request) -> web.Response:
        _, response = await self._prelude(request)
        if response is None:
            call = self.calls.get(request.match_info["sid"])
            if call is None:
                response = twilio_error(404)
            else:
                response = web.json_response(self._call_json(call))
        self.requests[-1].status = response.status
        return response

    def _call_json(self, call: SimulatedCall) -> dict[str, Any]:
        """The Call resource as Twilio's API shows it."""

        def rfc2822(ts: float | None) -> str | None:
            if ts is None:
                return None
            return format_datetime(datetime.fromtimestamp(ts, UTC), usegmt=False)

        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Calls/{call.sid}"
        return {
            "account_sid": self.account_sid,
            "annotation": None,
            "answered_by": call.answered_by,
            "api_version": API_VERSION,
            "caller_name": None,
            "date_created": rfc2822(call.created_at),
            "date_updated": rfc2822(time.time()),
            "direction": "outbound-api",
            "duration": str(call.duration_secs) if call.ended_at else None,
            "end_time": rfc2822(call.ended_at),
            "forwarded_from": None,
            "from": call.from_,
            "from_formatted": call.from_,
            "group_sid": None,
            "parent_call_sid": None,
            "phone_number_sid": "PN" + "0" * 32,
            "price": None,
            "price_unit": "USD",
            "queue_time": "0",
            "sid": call.sid,
            "start_time": rfc2822(call.answered_at),
            "status": call.status,
            "subresource_uris": {
                "recordings": uri + "/Recordings.json",
                "notifications": uri + "/Notifications.json",
                "events": uri + "/Events.json",
            },
            "to": call.to,
            "to_formatted": call.to,
            "trunk_sid": None,
            "uri": uri + ".json",
        }

    # --------------------------------------------------------------- call progress

    def _spawn(self, call: SimulatedCall, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        for tasks in (self._tasks, call.tasks):
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    @staticmethod
    async def _waits(event: asyncio.Event, secs: float) -> bool:
        """Wait ``secs`` unless ``event`` happens first; whether it did."""
        try:
            await asyncio.wait_for(event.wait(), timeout=secs)
        except TimeoutError:
            return False
        return True

    async def _rings(self, call: SimulatedCall, secs: float) -> bool:
        """Wait ``secs`` unless the call is hung up first; whether it was."""
        return await self._waits(call.hangup, secs)

    async def _play(self, call: SimulatedCall) -> None:
        scenario = call.scenario
        try:
            self._progress(call, "initiated", "initiated")
            if scenario.kind in ("busy", "failed"):
                hung_up = await self._rings(call, scenario.ring_secs)
                final = "canceled" if hung_up else ("busy" if scenario.kind == "busy" else "failed")
                self._end(call, final)
                return
            self._progress(call, "ringing", "ringing")
            if scenario.kind == "no_answer":
                timeout = _int(call.param("Timeout"), 60)
                hung_up = await self._rings(call, min(max(timeout, 1), 600))
                self._end(call, "canceled" if hung_up else "no-answer")
                return
            if await self._rings(call, scenario.ring_secs):
                self._end(call, "canceled")
                return
            call.answered_at = time.time()
            self._progress(call, "answered", "in-progress")
            await self._answered(call)
            self._end(call, "completed")
        except Exception as exc:  # a bug here must still end the call and be seen
            log.exception("carrier simulator: call %s failed", call.sid)
            call.error = f"simulator error: {exc!r}"
            if call.status not in FINAL_STATUSES:
                self._end(call, "failed")

    async def _answered(self, call: SimulatedCall) -> None:
        """The call is up: AMD in the background, fetch the TwiML, hold the stream."""
        scenario = call.scenario
        amd_url = call.param("AsyncAmdStatusCallback")
        synchronous_amd = bool(call.param("MachineDetection")) and call.param("AsyncAmd") != "true"
        if call.param("MachineDetection") and call.param("AsyncAmd") == "true" and amd_url:
            self._spawn(call, self._detect(call, amd_url), f"carrier-sim-amd-{call.sid}")
        elif synchronous_amd:
            # Detection first, the TwiML after it with AnsweredBy (a machine's greeting and beep
            # play during detection, before the stream opens).
            delay = scenario.amd_secs
            if scenario.kind == "voicemail":
                delay += len(self._voicemail(scenario.greeting)) / SAMPLE_RATE
            if await self._rings(call, delay):
                return
            call.answered_by = scenario.verdict()
        instruction = await self._fetch_twiml(call)
        if instruction is None or call.hangup.is_set():
            return
        opening = b""
        if scenario.kind == "voicemail" and not synchronous_amd:
            opening = self._voicemail(scenario.greeting)
        carrier = CarrierMessages("MZ" + secrets.token_hex(16), call.sid, self.account_sid)
        state = CallerState(
            carrier,
            load_answers(scenario.answers) if scenario.kind != "voicemail" else (),
            scenario.dtmf if scenario.kind != "voicemail" else None,
            opening_ulaw=opening,
        )
        max_secs = scenario.max_call_secs
        if scenario.kind == "hangup_after":
            max_secs = min(max_secs, scenario.hangup_after_secs)

        def on_event(kind: str, data: dict[str, Any]) -> None:
            if kind == "connected":
                call.stream_opened.set()

        talk = asyncio.create_task(
            stream_call(instruction, state, max_call_secs=max_secs, on_event=on_event),
            name=f"carrier-sim-stream-{call.sid}",
        )
        hangup = asyncio.create_task(call.hangup.wait())
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            await asyncio.wait({talk, hangup}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            hangup.cancel()
            if not talk.done():
                talk.cancel()  # the stream stops: stop message, socket closed
            outcome = await asyncio.gather(talk, return_exceptions=True)
        closed_by, error = "caller", None  # hung up by the carrier's side (REST or stop)
        if isinstance(outcome[0], tuple):
            closed_by, error, opened_at = outcome[0]
            started = opened_at if opened_at is not None else started
        elif isinstance(outcome[0], Exception):
            error = repr(outcome[0])
        state.finish(loop.time() - started)
        call.result = state.result(call.sid, closed_by, error, loop.time() - started)  # type: ignore[arg-type]
        call.opening_end = state.opening_end if opening else None
        if error and call.error is None:
            call.error = error

    def _voicemail(self, greeting: Path) -> bytes:
        if greeting not in self._voicemail_audio:
            self._voicemail_audio[greeting] = voicemail_ulaw(greeting)
        return self._voicemail_audio[greeting]

    async def _detect(self, call: SimulatedCall, url: str) -> None:
        """Asynchronous AMD: the verdict once detection would have reached it."""
        scenario = call.scenario
        started = time.time()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(call.stream_opened.wait(), timeout=10)
        delay = scenario.amd_secs
        if scenario.kind == "voicemail":  # DetectMessageEnd: after the greeting and the beep
            delay += len(self._voicemail(scenario.greeting)) / SAMPLE_RATE
        if await self._waits(call.done, delay):
            return  # ended before detection finished: no verdict
        call.answered_by = scenario.verdict()
        params = {
            "AccountSid": self.account_sid,
            "CallSid": call.sid,
            "AnsweredBy": call.answered_by,
            "MachineDetectionDuration": str(int((time.time() - started) * 1000)),
        }
        self._send(call, "amd", "amd", url, params)

    async def _fetch_twiml(self, call: SimulatedCall) -> StreamInstruction | None:
        """POST the call's ``Url`` as Twilio does on answer; the stream to open, or None."""
        url = call.param("Url") or ""
        params = self._base_params(call, "in-progress")
        if call.answered_by:  # synchronous AMD
            params["AnsweredBy"] = call.answered_by
        delivery = await self._deliver(
            Delivery(call.sid, "voice", "voice", url, params, self._sign(url, params))
        )
        if delivery.status != 200:
            call.error = (
                f"voice webhook {url} answered {delivery.status}: {delivery.body[:200]}"
                if delivery.status is not None
                else f"voice webhook {url} failed: {delivery.error}"
            )
            return None
        try:
            instruction = parse_twiml(delivery.body)
        except ValueError as exc:
            call.error = str(exc)
            return None
        if instruction.stream_url is None:  # e.g. <Say>...</Say><Hangup/>: the call ends
            return None
        return instruction

    def _base_params(self, call: SimulatedCall, status: str) -> dict[str, str]:
        return {
            "AccountSid": self.account_sid,
            "ApiVersion": API_VERSION,
            "CallSid": call.sid,
            "CallStatus": status,
            "Called": call.to,
            "Caller": call.from_,
            "Direction": "outbound-api",
            "From": call.from_,
            "To": call.to,
        }

    def _progress(self, call: SimulatedCall, event: str, status: str) -> None:
        """The call moved to ``status``: send the ``event`` status callback if it was asked."""
        call.status = status
        url = call.param("StatusCallback")
        asked = call.params("StatusCallbackEvent") or ["completed"]
        if not url or event not in asked:
            return
        params = self._base_params(call, status)
        params.update(
            CallbackSource="call-progress-events",
            SequenceNumber=str(call.sequence),
            Timestamp=format_datetime(datetime.now(UTC)),
        )
        call.sequence += 1
        if call.answered_by:
            params["AnsweredBy"] = call.answered_by
        if event == "completed":
            params["CallDuration"] = str(call.duration_secs)
            params["SipResponseCode"] = str(SIP_RESPONSE[status])
        self._send(call, "status", event, url, params)

    def _end(self, call: SimulatedCall, final: str) -> None:
        call.ended_at = time.time()
        self._progress(call, "completed", final)
        call.done.set()

    # ----------------------------------------------------------------- callbacks

    def _sign(self, url: str, params: Mapping[str, str]) -> str:
        return compute_twilio_signature(self.auth_token, url, params)

    def _send(
        self, call: SimulatedCall, kind: CallbackKind, event: str, url: str, params: dict[str, str]
    ) -> None:
        """Send one callback in the background, as the scenario's faults say."""
        faults = call.scenario.faults
        delivery = Delivery(call.sid, kind, event, url, params, self._sign(url, params))
        if event in faults.drop:
            delivery.dropped = True
            self.deliveries.append(delivery)
            return
        copies = 2 if event in faults.duplicate else 1
        delay = faults.delay_secs.get(event, 0.0)
        for _ in range(copies):
            copy = Delivery(**{**delivery.__dict__, "params": dict(params)})
            name = f"carrier-sim-callback-{call.sid}-{event}"
            self._spawn(call, self._deliver(copy, delay), name)

    async def _deliver(self, delivery: Delivery, delay: float = 0.0) -> Delivery:
        if delay:
            await asyncio.sleep(delay)
        assert self._http is not None
        delivery.sent_at = time.time()
        self.deliveries.append(delivery)
        headers = {
            "X-Twilio-Signature": delivery.signature,
            "User-Agent": "TwilioProxy/1.1 (voicebot carrier simulator)",
            "I-Twilio-Idempotency-Token": delivery.idempotency_token,
        }
        try:
            async with self._http.post(delivery.url, data=delivery.params, headers=headers) as r:
                delivery.body = await r.text(errors="replace")
                delivery.status = r.status
        except (ClientError, OSError, TimeoutError) as exc:
            delivery.error = repr(exc)
        return delivery


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


# ------------------------------------------------------------------------------- CLI


def parse_scenario(text: str) -> tuple[str, Scenario]:
    """``+15550001=no_answer`` -> the number and its scenario (CLI)."""
    number, sep, kind = text.partition("=")
    allowed = ("answer", "no_answer", "busy", "failed", "hangup_after", "voicemail")
    if not sep or not E164.fullmatch(number.strip()) or kind.strip() not in allowed:
        raise argparse.ArgumentTypeError(
            f"--scenario {text!r}: write NUMBER=KIND, an E.164 number and one of {allowed}"
        )
    return number.strip(), Scenario(kind=kind.strip())  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    """Run the simulator until interrupted (``python -m loadtest.carrier_sim``)."""
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.carrier_sim",
        description="A simulated Twilio REST API for outbound calls: point "
        "VOICEBOT_TWILIO_API_URL at it (with its account SID and auth token).",
    )
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--account-sid", default=DEFAULT_ACCOUNT_SID)
    parser.add_argument("--auth-token", default=DEFAULT_AUTH_TOKEN)
    parser.add_argument(
        "--scenario",
        action="append",
        default=[],
        type=parse_scenario,
        metavar="NUMBER=KIND",
        help="what happens when NUMBER is called; repeat (other numbers: answer)",
    )
    parser.add_argument(
        "--answer",
        action="append",
        default=[],
        metavar="WAV",
        help="a recorded answer the people who answer speak, in order; repeat",
    )
    args = parser.parse_args(argv)
    answers = load_answers(args.answer)
    scenarios = {
        number: dataclasses.replace(scenario, answers=answers) for number, scenario in args.scenario
    }

    async def serve() -> None:
        sim = CarrierSimulator(
            account_sid=args.account_sid,
            auth_token=args.auth_token,
            scenarios=scenarios,
            default=Scenario(answers=answers),
            port=args.port,
        )
        url = await sim.start()
        print(f"simulated Twilio API at {url} (account {args.account_sid})", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await sim.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
