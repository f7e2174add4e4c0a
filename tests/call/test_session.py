"""CallSession logic with fakes for the expensive parts (VAD, ASR, TTS), fast and deterministic.

The carrier protocol, playout pacing, store, recorder and interview engine are the real ones; the
VAD is an energy threshold, ASR returns scripted text, prompts are 100 ms tones. The real models
are exercised by the end-to-end tests in tests/e2e/.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import numpy as np
import pytest

import voicebot.call.turn_words as turn_words
from voicebot.audio.codec import ulaw_encode
from voicebot.call.session import CallSession, StreamRefused
from voicebot.config import Settings
from voicebot.dialogue.script import JobScript, Question
from voicebot.services import Services
from voicebot.speech.asr import FINALS, ASRPoolClosed, ASRResult, Priority
from voicebot.speech.vad import SileroState
from voicebot.store.database import Store
from voicebot.telephony.stream_token import StreamTokenSigner
from voicebot.telephony.twilio import TwilioMediaStream

TONE = ulaw_encode((np.sin(np.arange(160) / 3) * 12000).astype(np.int16))
SILENCE = b"\xff" * 160


class EnergyVAD:
    """Stands in for Silero at 8 kHz: a window is speech when it is loud."""

    sample_rate = 8000
    window_samples = 256
    window_secs = 0.032

    def initial_state(self):
        return SileroState()

    def infer(self, windows, state):
        windows = np.asarray(windows, dtype=np.float32).reshape(-1, self.window_samples)
        rms = np.sqrt(np.mean(windows * windows, axis=1))
        return (rms > 0.05).astype(np.float32), state or SileroState()

    def infer_batch(self, windows, states):
        probabilities, _ = self.infer(windows, None)
        return probabilities, list(states)


class ScriptedASR:
    """Returns the next scripted transcript for each final."""

    def __init__(self, texts):
        self.texts = list(texts)
        self.languages = frozenset({"en"})
        self.requests = 0
        self.asked: list[tuple[Priority, float]] = []
        """(priority, seconds of audio) of every request, in order."""
        self.has_free_worker = True
        self.queued_finals = 0
        """Final transcriptions other calls have waiting (what ``stats()`` reports)."""
        self.oldest_final_wait_secs = 0.0
        """How long the oldest of them has waited."""
        self.partials = 0
        self.delay_secs = 0.05
        self.closed = False

    def stats(self):
        return SimpleNamespace(
            queued_finals=self.queued_finals, oldest_final_wait_secs=self.oldest_final_wait_secs
        )

    async def transcribe(self, audio, language, priority=Priority.FINAL, **_):
        self.requests += 1
        self.asked.append((priority, len(audio) / 16000))
        await asyncio.sleep(self.delay_secs)
        if self.closed:
            raise ASRPoolClosed("closed while the request waited")
        if priority is Priority.PAUSE:  # the words at a pause: the turn's final text so far
            text = self.texts[0] if self.texts else ""
            return ASRResult(text, language, len(audio) / 16000, 0.05, 0.0, priority)
        if priority is Priority.PARTIAL:  # the words being said: the turn's final text so far
            self.partials += 1
            words = (self.texts[0] if self.texts else "").split()
            text = " ".join(words[: max(1, int(len(audio) / 16000 * 2.5))])
            return ASRResult(text, language, len(audio) / 16000, 0.05, 0.0, priority)
        text = self.texts.pop(0) if self.texts else ""
        return ASRResult(text, language, len(audio) / 16000, 0.05, 0.0, priority)

    async def close(self):
        self.closed = True


class TonePrompts:
    """Every prompt is 100 ms of tone."""

    def __init__(self):
        self.said = []

    async def get(self, text, *, language, voice=None):
        self.said.append(text)
        return TONE * 5


SCRIPT = JobScript(
    id="test_job",
    title="Test job",
    language="en",
    greeting="Hi, I am an AI assistant and this call is recorded.",
    consent_question="Do you agree?",
    consent_declined="Understood, goodbye.",
    consent_unclear="Please say yes or no.",
    questions=[
        Question(id="q1", prompt="Question one?"),
        Question(id="q2", prompt="Question two?"),
    ],
    closing="Thank you, goodbye.",
    reprompt="Are you still there?",
    no_response_goodbye="We will try again later. Goodbye.",
    silence_timeout_secs=0.4,
    max_reprompts=1,
)


class Harness:
    """A session fed by a fake carrier that sends 20 ms frames in real time."""

    def __init__(self, services, interview_id, asr):
        self.services = services
        self.asr = asr
        self.sent: list[dict] = []
        self.closed = asyncio.Event()
        self.protocol = TwilioMediaStream()
        self.session = CallSession(services, self.protocol, self._send, self._close)
        self.interview_id = interview_id
        self.script: list[tuple[float, bytes]] = []  # (start, frames) of speech to send
        self._chunk = 0

    async def _send(self, text):
        self.sent.append(json.loads(text))

    async def _close(self):
        self.closed.set()

    async def feed(self, message: dict):
        for event in self.protocol.receive(json.dumps(message)):
            await self.session.handle(event)

    async def start(self):
        token = self.services.token_signer.issue(
            {"interview_id": self.interview_id, "call_sid": "CA1"}
        )
        await self.feed({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        await self.feed(
            {
                "event": "start",
                "streamSid": "MZ1",
                "start": {
                    "streamSid": "MZ1",
                    "callSid": "CA1",
                    "accountSid": "AC1",
                    "tracks": ["inbound"],
                    "customParameters": {"token": token},
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                },
            }
        )

    async def media(self, payload: bytes):
        self._chunk += 1
        await self.feed(
            {
                "event": "media",
                "streamSid": "MZ1",
                "media": {
                    "track": "inbound",
                    "chunk": str(self._chunk),
                    "timestamp": str(self._chunk * 20),
                    "payload": base64.b64encode(payload).decode(),
                },
            }
        )

    async def speak(self, secs: float):
        for _ in range(int(secs / 0.02)):
            await self.media(TONE)
            await asyncio.sleep(0.02)

    async def silence(self, secs: float):
        for _ in range(int(secs / 0.02)):
            await self.media(SILENCE)
            await asyncio.sleep(0.02)

    async def dtmf(self, digit: str):
        await self.feed(
            {
                "event": "dtmf",
                "streamSid": "MZ1",
                "dtmf": {"track": "inbound_track", "digit": digit},
            }
        )

    async def wait_for_mark(self, suffix: str, limit_secs: float = 5):
        """Keep the line open (silence) until the server sends a mark ending with ``suffix``."""
        seen = len(self.sent)
        for _ in range(int(limit_secs / 0.02)):
            for message in self.sent[seen:]:
                if message["event"] == "mark" and message["mark"]["name"].endswith(suffix):
                    await self.feed(
                        {
                            "event": "mark",
                            "streamSid": "MZ1",
                            "mark": {"name": message["mark"]["name"]},
                        }
                    )
                    return message["mark"]["name"]
            await self.media(SILENCE)
            await asyncio.sleep(0.02)
        raise AssertionError(f"no mark ending {suffix!r}; sent {self.marks()}")

    async def run_out(self, limit_secs: float = 8):
        """Keep sending silence until the server hangs up."""
        for _ in range(int(limit_secs / 0.02)):
            if self.closed.is_set():
                await self.reports_stored()
                return
            await self.media(SILENCE)
            await asyncio.sleep(0.02)
        raise AssertionError(f"the server did not hang up; marks {self.marks()}")

    async def reports_stored(self):
        """Wait until the reports of ended calls are stored (the interview's outcome status)."""
        while self.services.reports:
            await asyncio.wait(set(self.services.reports))

    async def hang_up(self):
        await self.feed({"event": "stop", "streamSid": "MZ1", "stop": {"callSid": "CA1"}})

    def marks(self):
        return [m["mark"]["name"] for m in self.sent if m["event"] == "mark"]


def candidate_answers(stored_call: dict) -> list[tuple[str | None, str]]:
    """(question id, words) of each candidate turn of a stored call."""
    return [
        (t["question_id"], t["text"]) for t in stored_call["turns"] if t["speaker"] == "candidate"
    ]


class ScriptedSmartTurn:
    """Stands in for smart-turn: returns the next scripted probability for each question."""

    def __init__(self, probabilities):
        self.probabilities = list(probabilities)
        self.asked = 0

    def predict(self, audio):
        self.asked += 1
        return self.probabilities.pop(0) if self.probabilities else 0.0


@pytest.fixture
async def services(tmp_path):
    async with _services(tmp_path) as built:
        yield built


@contextlib.asynccontextmanager
async def _services(tmp_path, **overrides):
    values = {
        "smart_turn": False,
        "turn_pause_secs": 0.1,
        "turn_end_secs": 0.2,
        "turn_max_silence_secs": 0.3,
        "turn_open_max_silence_secs": 0.3,
        "turn_unfinished_max_silence_secs": 0.3,
        "turn_pace_margin_secs": 0.0,
        "barge_in_min_secs": 0.1,
        "prestart_min_speech_secs": 0.5,
    }
    values.update(overrides)
    settings = Settings(
        data_dir=tmp_path,
        recordings_dir=tmp_path / "recordings",
        stream_token_secret="s",
        **values,
    )
    services = Services(settings)
    services.store = Store(tmp_path / "db.sqlite3")
    await services.store.open()
    services.scripts = {SCRIPT.id: SCRIPT}
    services.prompts = TonePrompts()
    services.vad_model = EnergyVAD()
    services.token_signer = StreamTokenSigner(b"s")
    services.vad_executor = ThreadPoolExecutor(1)
    services.turn_executor = ThreadPoolExecutor(1)
    try:
        yield services
    finally:
        if services.reports:
            await asyncio.wait(set(services.reports), timeout=30)
        services.vad_executor.shutdown()
        services.turn_executor.shutdown()
        await services.store.close()


async def make_call(services, texts, *, job_id: str = SCRIPT.id, asr=None) -> Harness:
    """A call into a new interview of ``job_id``, the ASR answering ``texts`` in turn."""
    interview, _ = await services.store.create_interview(job_id=job_id, candidate_id="c1")
    services.asr = asr if asr is not None else ScriptedASR(texts)
    harness = Harness(services, interview["id"], services.asr)
    await harness.start()
    return harness


async def test_streams_arriving_together_for_one_call_give_one_call_and_leave_it_alone(services):
    interview, _ = await services.store.create_interview(job_id=SCRIPT.id, candidate_id="c1")
    services.asr = ScriptedASR([])
    harnesses = [Harness(services, interview["id"], services.asr) for _ in range(10)]
    outcomes = await asyncio.gather(*(h.start() for h in harnesses), return_exceptions=True)
    refusals = [o.reason for o in outcomes if isinstance(o, StreamRefused)]
    winners = [h for h, o in zip(harnesses, outcomes, strict=True) if o is None]
    assert refusals == ["duplicate_call"] * 9 and len(winners) == 1
    for loser in (h for h in harnesses if h not in winners):
        await loser.session.finish("stream_closed")  # what the stream route does
    assert services.sessions == {"CA1": winners[0].session}
    assert services.metrics.calls_active._value.get() == 1
    stored = await services.store.get_call("CA1")
    assert stored["status"] == "in_progress"
    row = await services.store.get_interview(interview["id"])
    assert row["status"] == "in_progress" and row["attempts"] == 1
    # The winner's call goes on to its end.
    await winners[0].wait_for_mark("consent:await")
    await winners[0].dtmf("2")
    await winners[0].run_out()
    assert (await services.store.get_call("CA1"))["end_reason"] == "consent_declined"
    assert services.metrics.calls_active._value.get() == 0 and not services.call_claims


async def test_refusal_by_key_ends_politely_and_is_stored(services):
    call = await make_call(services, [])
    await call.wait_for_mark("consent:await")
    await call.dtmf("2")
    await call.run_out()
    interview = await services.store.get_interview(call.interview_id)
    assert interview["status"] == "declined" and interview["consent"] == 0
    assert interview["consent_via"] == "dtmf"
    assert services.prompts.said[-1] == SCRIPT.consent_declined
    stored = await services.store.get_call("CA1")
    assert stored["end_reason"] == "consent_declined"


async def test_silence_gets_a_reprompt_then_a_polite_end(services):
    call = await make_call(services, [])
    await call.run_out(limit_secs=10)
    said = services.prompts.said
    assert said.count(SCRIPT.reprompt) == 1
    assert said[-1] == SCRIPT.no_response_goodbye
    assert (await services.store.get_interview(call.interview_id))["status"] == "no_response"


async def test_spoken_answers_run_the_interview_to_its_end(services):
    call = await make_call(services, ["yes I agree", "first answer", "second answer"])
    await call.wait_for_mark("consent:await")
    await call.speak(0.4)
    await call.wait_for_mark("q:q1:await")
    await call.speak(0.8)
    await call.wait_for_mark("q:q2:await")
    await call.speak(0.8)
    await call.run_out()
    stored = await services.store.get_call("CA1")
    assert stored["end_reason"] == "completed"
    assert candidate_answers(stored) == [
        (None, "yes I agree"),
        ("q1", "first answer"),
        ("q2", "second answer"),
    ]
    interview = await services.store.get_interview(call.interview_id)
    assert interview["status"] == "completed" and interview["consent_via"] == "voice"
    # Each question was answered by the next prompt with its response latency stored.
    responses = [t for t in stored["turns"] if t["speaker"] == "bot" and t["response_latency"]]
    assert len(responses) == 3


async def test_a_prestarted_question_awaits_its_answer_while_whisper_is_behind(services):
    """Under load the transcript can come after the next question has finished playing: the
    question's mark still says an answer is awaited, and the answer lands on that question."""
    call = await make_call(services, ["yes", "first answer", "second answer"])
    await call.wait_for_mark("consent:await")
    await call.speak(0.4)
    await call.wait_for_mark("q:q1:await")
    services.asr.delay_secs = 1.5  # Whisper is behind
    await call.speak(0.8)
    await call.wait_for_mark("q:q2:await", limit_secs=1.2)  # with the question, not the words
    stored = await services.store.get_call("CA1")
    assert [t["text"] for t in stored["turns"] if t["speaker"] == "candidate"] == ["yes"]
    await call.speak(0.8)
    # Answered while the first answer's words are still in Whisper: the script moved on at the
    # end of that turn, so this answer is q2's and the closing starts without waiting either.
    await call.wait_for_mark("closing", limit_secs=1.0)
    await call.run_out()
    if services.pending_answers:  # the goodbye can finish before the last answer's words
        await asyncio.wait(set(services.pending_answers), timeout=5)
    stored = await services.store.get_call("CA1")
    assert stored["end_reason"] == "completed"
    assert candidate_answers(stored) == [
        (None, "yes"),
        ("q1", "first answer"),
        ("q2", "second answer"),
    ]
    assert SCRIPT.reprompt not in services.prompts.said


async def test_an_answer_is_stored_when_the_candidate_hangs_up_before_its_transcript(services):
    call = await make_call(services, ["yes", "my only answer"])
    await call.wait_for_mark("consent:await")
    await call.speak(0.4)
    await call.wait_for_mark("q:q1:await")
    services.asr.delay_secs = 1.0
    await call.speak(0.8)
    await call.wait_for_mark("q:q2:await", limit_secs=0.9)  # the turn ended; no words yet
    await call.hang_up()
    # The call's end is stored at once, not held up by Whisper ...
    stored = await services.store.get_call("CA1")
    assert stored["end_reason"] == "caller_hangup"
    assert services.pending_answers
    # ... and the words join it when they come.
    await asyncio.wait(set(services.pending_answers), timeout=5)
    stored = await services.store.get_call("CA1")
    assert candidate_answers(stored) == [(None, "yes"), ("q1", "my only answer")]


async def test_a_short_answer_is_stored_when_the_candidate_hangs_up_before_its_words(services):
    """Too short to move the script on unheard (it waits for its words); still not lost."""
    call = await make_call(services, ["yes", "no"])
    await call.wait_for_mark("consent:await")
    await call.speak(0.4)
    await call.wait_for_mark("q:q1:await")
    services.asr.delay_secs = 1.0
    await call.speak(0.3)
    await call.silence(0.6)  # the turn ended; its words are still in Whisper
    await call.hang_up()
    await asyncio.wait(set(services.pending_answers), timeout=5)
    stored = await services.store.get_call("CA1")
    assert candidate_answers(stored) == [(None, "yes"), ("q1", "no")]


async def test_shutdown_stores_ended_calls_answers_before_closing(tmp_path):
    services = Services(Settings(data_dir=tmp_path, stream_token_secret="s", smart_turn=False))
    services.asr = ScriptedASR(["my words"])
    services.asr.delay_secs = 0.5
    services.store = Store(tmp_path / "db.sqlite3")
    await services.store.open()
    await services.store.create_call(call_sid="CA9", interview_id=None, stream_sid="MZ9")

    async def answer_waiting_for_whisper():
        result = await services.asr.transcribe(np.zeros(1600, np.int16), "en")
        await services.store.add_turn(
            call_sid="CA9", seq=1, speaker="candidate", text=result.text, start=0.0
        )

    services.keep_until_stored(asyncio.create_task(answer_waiting_for_whisper()))
    await services.close()  # what the server runs at shutdown: the words are stored first
    assert not services.pending_answers
    reopened = Store(tmp_path / "db.sqlite3")
    await reopened.open()
    try:
        stored = await reopened.get_call("CA9")
        assert [t["text"] for t in stored["turns"]] == ["my words"]
    finally:
        await reopened.close()


async def test_an_empty_transcript_is_not_taken_as_an_answer(services):
    call = await make_call(services, ["", "yes"])
    await call.wait_for_mark("consent:await")
    await call.speak(0.3)  # a cough: transcribed as nothing
    await call.silence(0.5)  # the turn ends after 0.3 s of silence; its transcript is empty
    # The consent's words decide the next step: the call waits on them.
    assert [p for p, _ in services.asr.asked if p is not Priority.PAUSE] == [Priority.WAITED]
    said = services.prompts.said
    assert SCRIPT.consent_unclear not in said and SCRIPT.reprompt not in said
    await call.speak(0.3)
    await call.wait_for_mark("q:q1:await")
    interview = await services.store.get_interview(call.interview_id)
    assert interview["consent"] == 1


async def test_talking_over_a_question_clears_playout(services):
    call = await make_call(services, ["yes", "my long answer"])
    services.prompts.get = _long_prompts(services.prompts)
    await call.wait_for_mark("consent:await", limit_secs=10)
    await call.speak(0.3)
    await call.silence(0.5)  # the consent is decided; question one starts
    await call.speak(1.0)  # ...and the candidate talks over it
    assert any(m["event"] == "clear" for m in call.sent)
    await call.silence(0.5)
    stored = await services.store.get_call("CA1")
    cut = [t for t in stored["turns"] if t["speaker"] == "bot" and t["interrupted"]]
    assert len(cut) == 1 and cut[0]["prompt_id"] == "q:q1"
    assert 0 < cut[0]["heard_secs"] < 2.0


def _long_prompts(prompts):
    """Questions become 2 s long so there is something to talk over."""
    original = prompts.get

    async def get(text, *, language, voice=None):
        audio = await original(text, language=language, voice=voice)
        return audio * 20 if text.startswith("Question") else audio

    return get


async def _answer_q1_until_question_two(call, services, limit_secs: float = 1.5) -> None:
    """Consent by voice, answer question one, then silence until question two starts."""
    await call.wait_for_mark("consent:await", limit_secs=10)
    await call.speak(0.3)
    await call.wait_for_mark("q:q1:await", limit_secs=10)
    await call.speak(0.8)
    for _ in range(round(limit_secs / 0.02)):  # the turn ends: question two starts at once
        if services.prompts.said[-1] == "Question two?":
            break
        await call.silence(0.02)
    assert services.prompts.said[-1] == "Question two?"


async def test_going_on_over_a_too_early_next_question_continues_the_answer(services):
    call = await make_call(services, ["yes", "first part", "and the rest", "second answer"])
    services.prompts.get = _long_prompts(services.prompts)
    await _answer_q1_until_question_two(call, services)
    await call.speak(0.8)  # ...but the candidate had not finished
    assert any(m["event"] == "clear" for m in call.sent)
    mark = await call.wait_for_mark("q:q2:await", limit_secs=10)  # question two, said again
    await call.speak(0.8)
    await call.run_out()
    stored = await services.store.get_call("CA1")
    assert candidate_answers(stored) == [
        (None, "yes"),
        ("q1", "first part"),
        ("q1", "and the rest"),
        ("q2", "second answer"),
    ]
    q2 = [t for t in stored["turns"] if t["prompt_id"] == "q:q2"]
    assert [t["interrupted"] for t in q2] == [True, False] and mark.endswith(":await")
    assert stored["end_reason"] == "completed"


async def test_an_open_answer_continued_over_a_closed_question_keeps_its_own_pauses(tmp_path):
    """The candidate goes on over the closed question that followed their open answer, and
    pauses in it: the pause is the open answer's (its longer wait), not the closed question's
    short one, so the rest is one turn and the closed question is said again once, after it."""
    script = SCRIPT.model_copy(
        update={
            "id": "open_then_closed",
            "questions": [
                Question(id="q1", prompt="Question one?"),
                Question(id="q2", prompt="Question two?", answer="closed"),
            ],
        }
    )
    async with _services(
        tmp_path,
        turn_max_silence_secs=0.3,
        turn_open_max_silence_secs=1.0,
        turn_unfinished_max_silence_secs=1.0,
    ) as services:
        services.scripts[script.id] = script
        texts = ["yes", "First part.", "And the rest of it.", "No."]
        call = await make_call(services, texts, job_id=script.id)
        services.prompts.get = _long_prompts(services.prompts)
        await _answer_q1_until_question_two(call, services, limit_secs=3.0)
        await call.speak(0.5)  # ...but they go on
        assert any(m["event"] == "clear" for m in call.sent)
        await call.silence(0.6)  # a pause longer than the closed question's wait
        await call.speak(0.5)
        await call.wait_for_mark("q:q2:await", limit_secs=10)
        await call.speak(0.3)
        await call.run_out()
        stored = await services.store.get_call("CA1")
        assert candidate_answers(stored) == [
            (None, "yes"),
            ("q1", "First part."),
            ("q1", "And the rest of it."),
            ("q2", "No."),
        ]
        q2 = [t for t in stored["turns"] if t["prompt_id"] == "q:q2"]
        assert [t["interrupted"] for t in q2] == [True, False]


class SoftVAD(EnergyVAD):
    """EnergyVAD whose loud windows score ``soft`` (below the speech threshold) while ``soft``
    is set: a breathy or quiet voice Silero only half believes."""

    soft: float | None = None

    def infer(self, windows, state):
        probabilities, state = super().infer(windows, state)
        if self.soft is not None:
            probabilities = probabilities * self.soft
        return probabilities, state


@pytest.mark.parametrize(("score", "stops"), [(0.4, True), (0.1, False)])
async def test_a_soft_voice_going_on_over_the_reply_stops_it_if_the_vad_half_hears_it(
    tmp_path, score, stops
):
    """The VAD scores the candidate's soft "um" below its threshold as they go on over the
    question that followed their answer: the line's level stops the bot when the VAD at least
    half hears it; a sound it scores near nothing (a door, a breath) does not."""
    async with _services(tmp_path) as services:
        services.vad_model = vad = SoftVAD()
        call = await make_call(services, ["yes", "first part", "and the rest", "second"])
        services.prompts.get = _long_prompts(services.prompts)
        await _answer_q1_until_question_two(call, services)
        vad.soft = score
        await call.speak(0.3)  # soft: no turn starts (threshold 0.5)
        assert any(m["event"] == "clear" for m in call.sent) is stops
        vad.soft = None


class BriefVAD(EnergyVAD):
    """EnergyVAD that believes a loud run for its first ``brief`` windows only, then scores it
    0.2: a quiet one-word "Hello?" Silero calls speech for less than a turn's 0.15 s."""

    brief = 3

    def __init__(self):
        self._run = 0

    def infer(self, windows, state):
        loud, state = super().infer(windows, state)
        out = np.zeros_like(loud)
        for index, voiced in enumerate(loud):
            self._run = self._run + 1 if voiced else 0
            out[index] = (0.9 if self._run <= self.brief else 0.2) if voiced else 0.0
        return out, state

    def infer_batch(self, windows, states):
        probabilities, _ = self.infer(windows, None)
        return probabilities, list(states)


async def test_a_word_the_vad_believes_only_briefly_starts_a_turn_while_the_bot_is_silent(
    tmp_path,
):
    """A quiet "Hello?" scored as speech for 3 windows (under the 0.15 s a turn needs) starts a
    turn at once while an answer is awaited and the line's level carries a voice: it is answered
    as a turn, not taken in by the hearing check 1.5 s after it ends. Over the bot's voice the
    same brief word starts nothing (barge-in keeps its own rules)."""
    async with _services(tmp_path) as services:
        services.vad_model = BriefVAD()
        # The word over question one is taken in late by the hearing check (no words in it).
        call = await make_call(services, ["", "hello", "second"])
        services.prompts.get = _long_prompts(services.prompts)
        await call.wait_for_mark("consent:await", limit_secs=10)
        await call.dtmf("1")
        await call.silence(0.5)  # question one plays (2 s)...
        await call.speak(0.3)  # ...and a brief word over it starts no turn
        await call.wait_for_mark("q:q1:await", limit_secs=10)
        assert "speech_started" not in [e["event"] for e in timeline(call)]
        assert not any(m["event"] == "clear" for m in call.sent)
        await call.silence(0.5)
        await call.speak(0.3)  # the answer, while the bot is silent
        for _ in range(50):  # the turn ends at its pause; question two starts
            if services.prompts.said[-1] == "Question two?":
                break
            await call.silence(0.02)
        assert services.prompts.said[-1] == "Question two?"
        events = timeline(call)
        started = [e["t"] for e in events if e["event"] == "speech_started"]
        assert len(started) == 1
        late = [e for e in events if e["event"] == "speech_recovered" and e["t"] >= started[0]]
        assert not late
        stored = await services.store.get_call("CA1")
        assert candidate_answers(stored) == [("q1", "hello")]


async def _call_at_first_question(services, texts) -> Harness:
    """A call whose consent was given by voice (smart-turn sure), now at the first question.

    Consent answers are not held to the answer floor; ``services.smart_turn`` is scripted
    (0.9) until the caller sets its own for the answer.
    """
    call = await make_call(services, texts)
    services.smart_turn = ScriptedSmartTurn([0.9])
    await call.wait_for_mark("consent:await")
    await call.speak(0.4)
    await call.wait_for_mark("q:q1:await")
    return call


@pytest.mark.parametrize(
    ("words", "ends_early"),
    [("I helped the customer.", True), ("I helped the customer and", False), ("Um,", False)],
)
async def test_the_words_so_far_decide_whether_a_sure_pause_ends_the_answer(
    tmp_path, words, ends_early
):
    # Smart-turn is sure (0.9) at every pause; what the candidate said decides: a finished
    # sentence ends the answer after the open wait (0.6 s here), a trailing conjunction or
    # filler waits the ceiling.
    async with _services(
        tmp_path,
        turn_open_max_silence_secs=1.5,
        turn_unfinished_max_silence_secs=1.5,
        turn_min_answer_secs=0.5,
        turn_unconfirmed_end_secs=1.0,
        turn_open_end_secs=0.6,
    ) as services:
        call = await _call_at_first_question(services, ["yes", words, "next"])
        services.smart_turn = ScriptedSmartTurn([0.9])
        await call.speak(0.8)
        await call.silence(0.9)
        assert any(mark.endswith("q:q2:await") for mark in call.marks()) is ends_early


@pytest.mark.parametrize(
    ("words", "ends_early"),
    [("I helped the customer.", False), ("I helped the customer. That's all.", True)],
)
async def test_an_open_answer_ends_at_once_on_a_closer_and_waits_after_a_finished_sentence(
    tmp_path, words, ends_early
):
    # The default open wait: a candidate may think and go on after a finished sentence, so
    # only a closer ("that's all") ends the answer before the ceiling (1.5 s here).
    async with _services(
        tmp_path, turn_open_max_silence_secs=1.5, turn_min_answer_secs=0.5
    ) as services:
        call = await _call_at_first_question(services, ["yes", words, "next"])
        services.smart_turn = ScriptedSmartTurn([0.9])
        await call.speak(0.8)
        await call.silence(0.9)
        assert any(mark.endswith("q:q2:await") for mark in call.marks()) is ends_early


async def _closer_answer_call(services) -> Harness:
    """At the first question (open), about to answer with a closer; smart-turn sure (0.9)."""
    call = await _call_at_first_question(
        services, ["yes", "I helped the customer. That's all.", "next"]
    )
    services.smart_turn = ScriptedSmartTurn([0.9])
    return call


async def test_the_words_at_a_pause_are_heard_while_the_asr_pool_is_busy(tmp_path):
    # Other calls keep the pool busy: the words of the pause still reach the policy (ahead of
    # that work, in the pause lane), so a closer ends the open answer before the ceiling.
    async with _services(
        tmp_path, turn_open_max_silence_secs=1.5, turn_min_answer_secs=0.5
    ) as services:
        call = await _closer_answer_call(services)
        services.asr.has_free_worker = False
        await call.speak(0.8)
        await call.silence(0.9)
        assert any(mark.endswith("q:q2:await") for mark in call.marks())
        assert Priority.PAUSE in [priority for priority, _ in services.asr.asked]


async def test_the_words_at_a_pause_wait_for_no_one_but_answers_come_first_under_load(tmp_path):
    # Other calls' answers wait for Whisper: the pause's words are not asked for (they would go
    # ahead of those answers and every call's transcripts would fall behind); the open ceiling
    # ends the answer, and its final transcript is taken as ever.
    async with _services(
        tmp_path, turn_open_max_silence_secs=1.5, turn_min_answer_secs=0.5
    ) as services:
        call = await _closer_answer_call(services)
        services.asr.queued_finals = 2
        services.asr.oldest_final_wait_secs = 0.8
        before = len(services.asr.asked)
        await call.speak(0.8)
        await call.silence(2.2)
        assert Priority.PAUSE not in [priority for priority, _ in services.asr.asked[before:]]
        assert services.metrics.pause_words_skipped._value.get() >= 1
        assert "pause_words_skipped" in [e["event"] for e in timeline(call)]
        assert any(mark.endswith("q:q2:await") for mark in call.marks())
        stored = await services.store.get_call("CA1")
        assert candidate_answers(stored)[-1] == ("q1", "I helped the customer. That's all.")


async def test_a_short_answer_the_call_waits_on_gets_its_words_at_the_pause_under_load(services):
    # The same backlog, but a short spoken consent: its words at the pause are its final
    # transcription (the pool joins the two), and the call is silent until them, so they are
    # asked for (as an answer's words, which finals kept for the record do not overtake).
    call = await make_call(services, ["yes", "first answer"])
    services.asr.queued_finals = 2
    services.asr.oldest_final_wait_secs = 0.8
    flags: list[bool] = []
    transcribe = services.asr.transcribe

    async def noting(audio, language, priority=Priority.FINAL, **kwargs):
        if priority is Priority.PAUSE:
            flags.append(kwargs.get("answer", False))
        return await transcribe(audio, language, priority, **kwargs)

    services.asr.transcribe = noting
    await call.wait_for_mark("consent:await")
    await call.speak(0.4)
    await call.wait_for_mark("q:q1:await")
    assert flags and all(flags)
    assert services.metrics.pause_words_skipped._value.get() == 0
    interview = await services.store.get_interview(call.interview_id)
    assert interview["consent"] == 1


async def test_a_final_just_queued_by_another_call_does_not_hold_back_the_pause_words(tmp_path):
    # At 20 calls another call's turn has nearly always just ended: its final is no backlog,
    # and skipping the words for it left a closer to the whole-turn transcription, 1 s later.
    async with _services(
        tmp_path, turn_open_max_silence_secs=1.5, turn_min_answer_secs=0.5
    ) as services:
        call = await _closer_answer_call(services)
        services.asr.queued_finals = 1
        services.asr.oldest_final_wait_secs = 0.05
        await call.speak(0.8)
        await call.silence(0.9)
        assert Priority.PAUSE in [priority for priority, _ in services.asr.asked]
        assert any(mark.endswith("q:q2:await") for mark in call.marks())


@pytest.mark.parametrize(
    ("speech_secs", "priority"), [(0.3, Priority.WAITED), (0.8, Priority.FINAL)]
)
async def test_a_short_answer_s_words_are_waited_for_a_long_one_s_only_stored(
    tmp_path, speech_secs, priority
):
    # A short answer may be a request ("repeat that?"): the call waits for its words, which go
    # ahead of other calls' finals; a longer one's next question starts at once, its words are
    # only stored.
    async with _services(tmp_path) as services:
        call = await _call_at_first_question(services, ["yes", "an answer", "next"])
        before = len(services.asr.asked)
        await call.speak(speech_secs)
        await call.silence(0.6)
        asked = [p for p, _ in services.asr.asked[before:] if p in FINALS]
        assert asked == [priority]
        assert any(mark.endswith("q:q2:await") for mark in call.marks())


async def test_the_words_at_a_pause_are_the_turn_s_last_seconds_only(tmp_path, monkeypatch):
    # The policy reads how the turn ends; the whole turn is the final transcription's job.
    monkeypatch.setattr(turn_words, "PAUSE_WORDS_SECS", 0.4)
    async with _services(
        tmp_path, turn_open_max_silence_secs=1.5, turn_min_answer_secs=0.5
    ) as services:
        call = await _call_at_first_question(services, ["yes", "That's all.", "next"])
        services.smart_turn = ScriptedSmartTurn([0.9])
        await call.speak(1.2)
        await call.silence(1.8)  # a finished sentence (no closer read): the open ceiling ends it
        paused = [secs for priority, secs in services.asr.asked if priority is Priority.PAUSE]
        finals = [secs for priority, secs in services.asr.asked if priority in FINALS]
        assert paused and max(paused) <= 0.4 + turn_words.SPECULATIVE_PAD_SECS + 0.01
        assert max(finals) >= 1.2  # the answer's final transcript has all of it


@pytest.mark.parametrize(("probability", "ends_early"), [(0.96, False), (0.99, True)])
async def test_the_acoustic_policy_holds_a_short_answer_to_a_surer_verdict(
    tmp_path, probability, ends_early
):
    # VOICEBOT_TURN_POLICY=acoustic, the policy before the words were read, kept for
    # comparison: "And so my fellow Americans." scores 0.96, a short answer is often a preamble.
    async with _services(
        tmp_path,
        turn_policy="acoustic",
        turn_max_silence_secs=1.5,
        turn_min_answer_secs=3.0,
    ) as services:
        call = await _call_at_first_question(services, ["yes", "short", "next"])
        services.smart_turn = ScriptedSmartTurn([probability])
        await call.speak(0.8)
        await call.silence(0.9)
        assert any(mark.endswith("q:q2:await") for mark in call.marks()) is ends_early


@pytest.mark.parametrize(
    ("probability", "words", "ends_early"),
    [
        (0.35, "I helped them.", True),
        (0.1, "I helped them.", False),
        (0.35, "So I took the", False),
    ],
)
async def test_an_unsure_verdict_ends_a_finished_answer_after_the_hesitant_wait(
    tmp_path, probability, words, ends_early
):
    # Smart-turn unsure (0.2-0.5) and the words read finished: the hesitant wait (0.5 s here)
    # ends it. Sure the candidate goes on (under 0.2), or unfinished words: the ceiling (1.5 s).
    async with _services(
        tmp_path,
        turn_open_max_silence_secs=1.5,
        turn_unfinished_max_silence_secs=1.5,
        turn_hesitant_end_secs=0.5,
        turn_min_answer_secs=0.5,
    ) as services:
        call = await _call_at_first_question(services, ["yes", words, "next"])
        services.smart_turn = ScriptedSmartTurn([probability])
        await call.speak(0.8)
        await call.silence(0.9)
        assert services.smart_turn.asked == 1
        assert any(mark.endswith("q:q2:await") for mark in call.marks()) is ends_early


def _smart_turn_outcomes(services) -> dict[str, float]:
    counter = services.metrics.smart_turn
    return {
        outcome: counter.labels(outcome)._value.get()
        for outcome in ("run", "early", "skipped", "early_unused")
    }


async def _early_services(tmp_path):
    # Windows of 32 ms: the early hint at 0.128 s of silence, the pause at 0.224 s.
    return _services(
        tmp_path,
        turn_pause_secs=0.2,
        smart_turn_early_secs=0.1,
        turn_end_secs=0.2,
        turn_max_silence_secs=1.5,
        turn_min_answer_secs=0.5,
    )


async def test_a_verdict_started_before_the_pause_ends_the_turn_at_the_pause(tmp_path):
    async with await _early_services(tmp_path) as services:
        call = await _call_at_first_question(services, ["yes", "an answer", "next"])
        before = _smart_turn_outcomes(services)
        services.smart_turn = ScriptedSmartTurn([0.9])
        await call.speak(0.8)
        await call.silence(0.9)  # well under the 1.5 s silence: only the verdict ends it
        assert any(mark.endswith("q:q2:await") for mark in call.marks())
        after = _smart_turn_outcomes(services)
        assert services.smart_turn.asked == 1  # one inference, started early, used
        assert after["early"] - before["early"] == 1 and after["run"] == before["run"]
        assert services.smart_turn_pending == 0


async def test_an_early_verdict_is_dropped_when_the_candidate_goes_on(tmp_path):
    async with await _early_services(tmp_path) as services:
        call = await _call_at_first_question(services, ["yes", "an answer", "next"])
        before = _smart_turn_outcomes(services)
        # Complete at the gap between words would end the answer there: it must not count.
        services.smart_turn = ScriptedSmartTurn([0.9, 0.9])
        await call.speak(0.8)
        await call.silence(0.16)  # past the early hint (0.128 s), short of the pause (0.224 s)
        await call.speak(0.6)
        assert not any(mark.endswith("q:q2:await") for mark in call.marks())
        await call.silence(0.9)
        assert any(mark.endswith("q:q2:await") for mark in call.marks())
        after = _smart_turn_outcomes(services)
        assert after["early_unused"] - before["early_unused"] == 1
        assert after["early"] - before["early"] == 1  # the real pause's, also started early


async def test_no_early_verdict_while_smart_turn_is_busy(tmp_path):
    async with await _early_services(tmp_path) as services:
        call = await _call_at_first_question(services, ["yes", "an answer", "next"])
        before = _smart_turn_outcomes(services)
        services.smart_turn = ScriptedSmartTurn([0.9])
        services.smart_turn_pending += 1  # another call's inference in the smart-turn thread
        await call.speak(0.8)
        await call.silence(0.9)
        services.smart_turn_pending -= 1
        assert any(mark.endswith("q:q2:await") for mark in call.marks())
        after = _smart_turn_outcomes(services)
        assert after["early"] == before["early"] and after["run"] - before["run"] == 1


class StalledVAD(EnergyVAD):
    """EnergyVAD whose thread can be held, as on a machine too busy to score audio in time."""

    def __init__(self):
        self.running = threading.Event()
        self.running.set()

    def infer_batch(self, windows, states):
        self.running.wait(5)
        return super().infer_batch(windows, states)


async def test_a_vad_backlog_is_not_taken_for_silence(services):
    services.vad_model = vad = StalledVAD()
    call = await make_call(services, ["yes"])
    await call.wait_for_mark("consent:await")
    vad.running.clear()  # the VAD falls behind...
    await call.speak(0.4)  # ...while the candidate answers
    await call.silence(0.6)  # the 0.4 s silence timeout passes on the wall clock
    vad.running.set()
    await call.wait_for_mark("q:q1:await")
    assert SCRIPT.reprompt not in services.prompts.said
    assert (await services.store.get_interview(call.interview_id))["consent"] == 1


async def test_audio_the_carrier_skipped_is_filled_with_silence_and_counted(services):
    # A carrier (or a caller starved of CPU) whose media timestamps jump: the gap becomes
    # silence on the call clock (faint noise, not digital silence, which deafens Silero: see
    # tests/speech/test_vad.py), so a pause in the answer grows by as much. It is counted and
    # put on the timeline, so a turn that ended on such a pause can be explained.
    call = await make_call(services, ["yes"])
    await call.wait_for_mark("consent:await")
    await call.speak(0.4)
    call._chunk += 10  # 200 ms of the candidate's audio never arrive
    await call.silence(0.1)
    assert services.metrics.inbound_gaps._value.get() == 1
    assert services.metrics.inbound_gap_seconds._value.get() == pytest.approx(0.2, abs=0.021)
    await call.run_out()
    call.session.recorder.wait_written()
    timeline = services.settings.recordings_dir / "CA1" / "timeline.jsonl"
    gaps = [
        e for e in map(json.loads, timeline.read_text().splitlines()) if e["event"] == "inbound_gap"
    ]
    assert len(gaps) == 1 and gaps[0]["ms"] == pytest.approx(200, abs=20)  # one frame's slack


class DeafeningVAD(EnergyVAD):
    """Energy VAD whose recurrent state can go deaf (as Silero's does at 8 kHz after long
    non-speech, per pipecat): a deaf state scores everything 0 until the stream is reset;
    ``incurable`` also makes a new state deaf (a VAD that hears nothing at all)."""

    DEAF = 99.0

    def __init__(self, incurable: bool = False):
        self.deafen_next = False
        self.incurable = incurable

    def initial_state(self):
        state = SileroState()
        if self.incurable and self.deafen_next is None:
            state.state[:] = self.DEAF
        return state

    def infer_batch(self, windows, states):
        probabilities, _ = self.infer(windows, None)
        out = []
        for index, state in enumerate(states):
            if self.deafen_next:
                state = SileroState(state=np.full_like(state.state, self.DEAF))
            if state.state.flat[0] == self.DEAF:
                probabilities[index] = 0.0
            out.append(state)
        if self.deafen_next:
            self.deafen_next = None if self.incurable else False
        return probabilities, out


def timeline(call: Harness) -> list[dict]:
    call.session.recorder.wait_written()  # the recorder writes every FLUSH_SECS
    path = call.session.recorder.directory / "timeline.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


async def _deaf_call(services, vad) -> Harness:
    services.vad_model = vad
    call = await make_call(services, ["first answer", "second answer"])
    await call.wait_for_mark("consent:await")
    await call.dtmf("1")
    await call.wait_for_mark("q:q1:await")
    vad.deafen_next = True  # the VAD stops hearing this call
    return call


async def test_a_vad_that_goes_deaf_mid_answer_is_reset_and_the_answer_heard(tmp_path):
    async with _services(tmp_path, barge_in_min_secs=0.3) as services:
        call = await _deaf_call(services, DeafeningVAD())
        await call.speak(1.5)
        await call.silence(4.0)  # an open answer's finished sentence is held 2.6 s, then some
        events = timeline(call)
        names = [e["event"] for e in events]
        # The witness heard voice the VAD scored silent, and reset the VAD while it went on:
        # the rest of the answer started a turn, nothing was reprompted over the candidate.
        assert "vad_reset" in names
        assert "speech_started" in names[names.index("vad_reset") :]
        answered = names.index("answer")  # q1's, once the candidate stopped
        assert "silence_timeout" not in names[:answered]
        assert services.metrics.vad_resets.labels("unheard")._value.get() >= 1
        # What the VAD missed before the reset is not lost: the turn starts where the voice
        # began (the level witness saw it), so its first words are taken in.
        assert not [e for e in events if e["event"] == "speech_unheard"]
        assert services.metrics.unheard_speech_seconds.labels("silent")._value.get() == 0
        started = [e for e in events if e["event"] == "speech_started"]
        voice_began = next(e for e in events if e["event"] == "vad_reset")["voice_since"]
        assert started[-1]["t"] == pytest.approx(voice_began, abs=0.05)
        assert services.metrics.turn_onsets_moved._value.get() == 1
        stored = await services.store.get_call("CA1")
        assert candidate_answers(stored)[-1] == ("q1", "first answer")


async def test_an_answer_a_deaf_vad_never_heard_is_taken_in_late_as_a_turn(tmp_path):
    async with _services(tmp_path) as services:
        call = await _deaf_call(services, DeafeningVAD(incurable=True))
        await call.speak(1.0)
        await call.silence(2.5)  # the stretch settles: no turn took it in, so it becomes one
        events = timeline(call)
        recovered = [e for e in events if e["event"] == "speech_recovered"]
        assert len(recovered) == 1 and recovered[0]["vad"] == "silent"
        assert recovered[0]["secs"] == pytest.approx(1.0, abs=0.1)
        assert not [e for e in events if e["event"] == "speech_unheard"]
        metric = services.metrics.speech_recovered_seconds.labels("silent")._value.get()
        assert metric == pytest.approx(recovered[0]["secs"])
        # q1 was answered by the late turn, not reprompted while the candidate spoke.
        after_q1 = [m for m in call.marks() if "reprompt" in m or "q:q2" in m]
        assert after_q1 and after_q1[0].endswith("q:q2:await"), call.marks()
        stored = await services.store.get_call("CA1")
        assert candidate_answers(stored) == [("q1", "first answer")]


async def test_a_call_s_heard_voice_is_not_reported_unheard(services):
    call = await make_call(services, ["yes", "first answer", "second answer"])
    await call.wait_for_mark("consent:await")
    await call.speak(0.4)
    await call.wait_for_mark("q:q1:await")
    await call.speak(0.8)
    await call.wait_for_mark("q:q2:await")
    await call.speak(0.8)
    await call.run_out()
    assert not [e for e in timeline(call) if e["event"] == "speech_unheard"]
    assert call.session.stats.get("unheard_speech_secs", 0) == 0


async def test_let_me_think_gets_take_your_time_and_a_longer_wait(tmp_path):
    async with _services(tmp_path, turn_think_secs=1.5) as services:
        call = await make_call(services, ["Let me think.", "I would calm them down."])
        await call.wait_for_mark("consent:await")
        await call.dtmf("1")
        await call.wait_for_mark("q:q1:await")
        await call.speak(0.5)
        await call.silence(1.0)  # thinking: past the 0.3 s ceiling, within the 1.5 s wait
        assert "Take your time." in services.prompts.said
        assert not any(mark.endswith("q:q2:await") for mark in call.marks())
        await call.speak(0.8)  # the answer, in the same turn
        await call.wait_for_mark("q:q2:await", limit_secs=3)
        stored = await services.store.get_call("CA1")
        assert candidate_answers(stored) == [("q1", "I would calm them down.")]


async def test_an_answer_past_its_time_limit_gets_a_wrap_up_at_its_next_pause(tmp_path):
    async with _services(tmp_path) as services:
        questions = [q.model_copy(update={"max_answer_secs": 1.0}) for q in SCRIPT.questions]
        script = SCRIPT.model_copy(update={"questions": questions})
        services.scripts = {script.id: script}
        call = await make_call(services, ["a very long answer"])
        await call.wait_for_mark("consent:await")
        await call.dtmf("1")
        await call.wait_for_mark("q:q1:await")
        await call.speak(1.6)  # past the limit while talking: not cut off mid-sentence
        assert not any(mark.endswith("q:q2:await") for mark in call.marks())
        await call.wait_for_mark("q:q2:await", limit_secs=3)
        said = services.prompts.said
        assert said.index(script.wrap_up) < len(said) - 1 and said[-1] == "Question two?"
        names = [e["event"] for e in timeline(call)]
        ended = [e for e in timeline(call) if e["event"] == "speech_ended"]
        assert "answer_time_limit" in names and ended[-1]["reason"] == "max_answer"
        # The whole answer, to its pause: not cut at the 1 s limit.
        assert ended[-1]["speech_end"] - ended[-1]["speech_start"] >= 1.4


def _audio_by_mark(call: Harness) -> dict[str, bytes]:
    """Outbound audio the carrier received, cut at each mark: ``{mark name: audio before it}``."""
    pieces: dict[str, bytes] = {}
    audio = b""
    for message in call.sent:
        if message["event"] == "media":
            audio += base64.b64decode(message["media"]["payload"])
        elif message["event"] == "mark":
            pieces[message["mark"]["name"]] = audio
            audio = b""
    return pieces


async def test_recorded_prompts_are_played_instead_of_synthesised_speech(services, tmp_path):
    import wave

    from tests.conftest import speech_clip
    from voicebot.speech.recorded import load_recording

    def recording(name: str, start: float) -> bytes:
        path = tmp_path / name
        with wave.open(str(path), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(16000)
            clip = speech_clip("en_jfk.wav")[int(start * 16000) : int((start + 0.8) * 16000)]
            wav.writeframes(clip.astype("<i2").tobytes())
        return load_recording(path)

    greeting, question = recording("greeting.wav", 0.5), recording("q1.wav", 3.0)
    services.recordings = {SCRIPT.id: {"greeting": greeting, "q:q1": question}}
    call = await make_call(services, [])
    await call.wait_for_mark("consent:await")
    await call.dtmf("1")
    await call.wait_for_mark("q:q1:await")
    await call.hang_up()
    said = _audio_by_mark(call)
    greeting_mark = next(m for m in call.marks() if m.endswith("greeting"))
    question_mark = next(m for m in call.marks() if m.endswith("q:q1:await"))
    assert said[greeting_mark].rstrip(b"\xff") == greeting.rstrip(b"\xff")
    assert said[question_mark].rstrip(b"\xff") == question.rstrip(b"\xff")
    # The TTS was asked only for the prompts with no recording.
    assert SCRIPT.greeting not in services.prompts.said
    assert "Question one?" not in services.prompts.said
    assert SCRIPT.consent_question in services.prompts.said
