"""The application side of Twilio's outbound calls, for tests of the carrier simulator.

A tiny aiohttp app on a loopback port standing in for the voicebot server (whose
``/twilio/status`` and ``/twilio/amd`` are built elsewhere): it checks ``X-Twilio-Signature`` on
every callback with :func:`voicebot.telephony.signature.validate_twilio_signature`, records what
arrived, answers the voice webhook with ``<Connect><Stream>``, and plays a minimal bot on the
stream: one prompt (a tone) ending in an ``:await`` mark, then it listens and records the
caller's audio, each frame with the time it arrived.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiohttp import WSMsgType, web

from voicebot.audio.codec import ulaw_decode
from voicebot.telephony.signature import validate_twilio_signature

PROMPT_SECS = 0.6


@dataclass
class Arrival:
    """One callback as received."""

    path: str
    params: dict[str, str]
    signature_valid: bool
    at: float


@dataclass
class StreamLog:
    """What the bot's side of one Media Stream saw."""

    call_sid: str = ""
    parameters: dict[str, str] = field(default_factory=dict)
    inbound: list[tuple[float, bytes]] = field(default_factory=list)  # (arrival, mu-law)
    marks_echoed: list[tuple[float, str]] = field(default_factory=list)
    stopped: bool = False
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    first_second: asyncio.Event = field(default_factory=asyncio.Event)  # 50 frames came in

    def audio_after(self, t: float) -> np.ndarray:
        """The caller's audio that arrived after ``t``, as PCM."""
        data = b"".join(payload for at, payload in self.inbound if at > t)
        return ulaw_decode(data).astype(np.float32) if data else np.zeros(0, np.float32)


def has_tone(pcm: np.ndarray, hz: float, rate: int = 8000) -> bool:
    """Whether some 100 ms of ``pcm`` is dominated by a tone at ``hz``."""
    window = rate // 10
    for start in range(0, len(pcm) - window + 1, window):
        chunk = pcm[start : start + window]
        if float(np.sqrt(np.mean(chunk * chunk))) < 500:
            continue
        spectrum = np.abs(np.fft.rfft(chunk * np.hanning(window)))
        peak_hz = float(np.argmax(spectrum)) * rate / window
        if abs(peak_hz - hz) <= 20:
            return True
    return False


def is_voiced(pcm: np.ndarray) -> bool:
    """Whether ``pcm`` carries sound above a quiet line's level."""
    return len(pcm) > 0 and float(np.sqrt(np.mean(pcm * pcm))) > 300


def _prompt_frames() -> list[bytes]:
    from voicebot.audio.frames import to_phone_ulaw

    t = np.arange(int(PROMPT_SECS * 8000)) / 8000
    ulaw = to_phone_ulaw((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 8000)
    return [ulaw[i : i + 160] for i in range(0, len(ulaw), 160)]


class TwilioReceiver:
    """Status, AMD and voice webhooks plus a Media Stream, checked and recorded.

    ``hang_up_after_secs``: the bot closes the stream this long after the caller's first voiced
    frame (None: it never does; the caller or the carrier ends the call).
    """

    def __init__(self, auth_token: str, *, hang_up_after_secs: float | None = None):
        self.auth_token = auth_token
        self.hang_up_after_secs = hang_up_after_secs
        self.arrivals: list[Arrival] = []
        self.streams: dict[str, StreamLog] = {}
        self.stream_opened = asyncio.Event()
        self._arrived = asyncio.Condition()
        self.status_code = 200  # what the callbacks answer
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/twilio/status", self._callback)
        app.router.add_post("/twilio/amd", self._callback)
        app.router.add_post("/twilio/voice", self._voice)
        app.router.add_get("/twilio/stream", self._stream)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def received(self, path: str, call_sid: str | None = None) -> list[Arrival]:
        """Callbacks that arrived on ``path`` (for one call), in arrival order."""
        return [
            a
            for a in self.arrivals
            if a.path == path and (call_sid is None or a.params.get("CallSid") == call_sid)
        ]

    async def wait_for(self, path: str, call_sid: str, call_status: str | None = None) -> Arrival:
        """Wait for a callback on ``path`` for the call (with that ``CallStatus``, if given)."""

        def found() -> list[Arrival]:
            return [
                a
                for a in self.received(path, call_sid)
                if call_status is None or a.params.get("CallStatus") == call_status
            ]

        async with self._arrived:
            await self._arrived.wait_for(found)
        return found()[0]

    async def first_second(self, call_sid: str) -> StreamLog:
        """Wait until the call's stream has brought a second of the caller's audio."""
        async with self._arrived:
            await self._arrived.wait_for(lambda: call_sid in self.streams)
        log = self.streams[call_sid]
        await log.first_second.wait()
        return log

    async def _record(self, request: web.Request) -> Arrival:
        form = await request.post()
        params = {k: str(v) for k, v in form.items()}
        valid = validate_twilio_signature(
            self.auth_token, str(request.url), params, request.headers.get("X-Twilio-Signature")
        )
        arrival = Arrival(request.path, params, valid, time.monotonic())
        self.arrivals.append(arrival)
        async with self._arrived:
            self._arrived.notify_all()
        return arrival

    async def _callback(self, request: web.Request) -> web.Response:
        await self._record(request)
        return web.Response(status=self.status_code)

    async def _voice(self, request: web.Request) -> web.Response:
        arrival = await self._record(request)
        if not arrival.signature_valid:
            return web.Response(status=403)
        ws_url = self.base_url.replace("http", "ws", 1) + "/twilio/stream"
        call_sid = arrival.params.get("CallSid", "")
        twiml = (
            '<?xml version="1.0" encoding="UTF-8"?><Response><Connect>'
            f'<Stream url="{ws_url}"><Parameter name="call" value="{call_sid}"/></Stream>'
            "</Connect></Response>"
        )
        return web.Response(text=twiml, content_type="text/xml")

    async def _stream(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        log = StreamLog()
        stream_sid = ""
        first_voice: float | None = None
        try:
            async for message in ws:
                if message.type != WSMsgType.TEXT:
                    break
                data: dict[str, Any] = json.loads(message.data)
                event = data.get("event")
                if event == "start":
                    stream_sid = data["start"]["streamSid"]
                    log.call_sid = data["start"]["callSid"]
                    log.parameters = data["start"]["customParameters"]
                    self.streams[log.call_sid] = log
                    self.stream_opened.set()
                    async with self._arrived:
                        self._arrived.notify_all()
                    for frame in _prompt_frames():
                        payload = base64.b64encode(frame).decode()
                        await ws.send_str(
                            json.dumps(
                                {
                                    "event": "media",
                                    "streamSid": stream_sid,
                                    "media": {"payload": payload},
                                }
                            )
                        )
                    await ws.send_str(
                        json.dumps(
                            {"event": "mark", "streamSid": stream_sid, "mark": {"name": "q1:await"}}
                        )
                    )
                elif event == "media":
                    now = time.monotonic()
                    payload = base64.b64decode(data["media"]["payload"])
                    log.inbound.append((now, payload))
                    if len(log.inbound) == 50:
                        log.first_second.set()
                    if first_voice is None and is_voiced(ulaw_decode(payload).astype(np.float32)):
                        first_voice = now
                    if (
                        self.hang_up_after_secs is not None
                        and first_voice is not None
                        and now - first_voice >= self.hang_up_after_secs
                    ):
                        break  # the bot ends the call
                elif event == "mark":
                    log.marks_echoed.append((time.monotonic(), data["mark"]["name"]))
                elif event == "stop":
                    log.stopped = True
                    break
        finally:
            await ws.close()
            log.closed.set()
        return ws
