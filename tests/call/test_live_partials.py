"""Interim transcripts of a watched call: when they are asked for, skipped, published, dropped."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import numpy as np

from voicebot.call.live_partials import CLOSE_WINDOW_SECS, LivePartials
from voicebot.events.live import LiveFeed
from voicebot.metrics import Metrics
from voicebot.speech.asr import ASRDropped, ASRResult, Priority
from voicebot.speech.turn import SpeechPaused


class ScriptedASR:
    """Answers partial requests with the next scripted hypothesis."""

    def __init__(self, hypotheses, delay_secs: float = 0.0):
        self.hypotheses = list(hypotheses)
        self.delay_secs = delay_secs
        self.has_free_worker = True
        self.requests = []

    async def transcribe(self, audio, language, priority=Priority.FINAL, *, key=None, **_):
        self.requests.append((len(audio), priority, key))
        await asyncio.sleep(self.delay_secs)
        text = self.hypotheses.pop(0)
        if text is None:
            raise ASRDropped("replaced by a newer partial")
        return ASRResult(text, language, len(audio) / 16000, 0.01, 0.0, priority)


class FakeSession:
    """The parts of a CallSession the partials driver uses."""

    def __init__(self, asr, watched: bool = True):
        self.settings = SimpleNamespace(live_partials=True, live_partial_interval_secs=0.8)
        self.live = LiveFeed()
        self.services = SimpleNamespace(asr=asr, live=self.live)
        self.metrics = Metrics()
        self.call_sid = "CA1"
        self.script = SimpleNamespace(language="en")
        self.finished = False
        self._listening = SimpleNamespace(question_id="teamwork")
        self.tasks = []
        self.subscription = self.live.subscribe("CA1") if watched else None

    def _audio_between(self, start: float, end: float) -> np.ndarray:
        return np.zeros(int(max(end - start, 0) * 16000), dtype=np.float32)

    def recognition_prompt(self, listen) -> str | None:
        return None

    def _spawn(self, coro, name):
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self.tasks.append(task)
        return task

    async def settle(self):
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def partials(self):
        events = []
        while self.subscription is not None and not self.subscription.queue.empty():
            event = self.subscription.queue.get_nowait()
            if event["type"] == "transcript.partial":
                events.append(event)
        return events


def outcome(session, kind: str) -> float:
    return session.metrics.partials.labels(kind)._value.get()


async def test_partials_every_interval_of_speech_firm_up():
    asr = ScriptedASR(["During peak", "During peak season our", "During peak season our picker"])
    session = FakeSession(asr)
    partials = LivePartials(session)
    partials.start(10.0)
    for t in (10.3, 10.6):  # less than 0.8 s of speech: nothing asked yet
        partials.tick(t)
    assert asr.requests == []
    for t in (10.8, 11.7, 12.6):
        partials.tick(t)
        await session.settle()
    events = session.partials()
    assert [e["data"]["stable"] for e in events] == ["", "During peak", "During peak season our"]
    assert events[-1]["data"]["unstable"] == "picker"
    assert events[-1]["data"]["question_id"] == "teamwork"
    assert events[-1]["t"] == 12.6
    assert all(priority is Priority.PARTIAL and key == "CA1" for _, priority, key in asr.requests)
    assert asr.requests[0][0] == int((10.8 - 10.0 + 0.3) * 16000)  # the turn so far + pre-roll
    assert 0 < events[-1]["data"]["speech_rate"] < 400
    assert outcome(session, "published") == 3


async def test_one_request_at_a_time_per_call():
    asr = ScriptedASR(["one", "one two"], delay_secs=0.05)
    session = FakeSession(asr)
    partials = LivePartials(session)
    partials.start(0.0)
    partials.tick(1.0)
    await asyncio.sleep(0.01)
    partials.tick(2.0)  # the first is still running
    await asyncio.sleep(0.01)
    assert len(asr.requests) == 1
    await session.settle()
    partials.tick(2.0)
    await session.settle()
    assert len(asr.requests) == 2


async def test_a_busy_pool_skips_partials_finals_first():
    asr = ScriptedASR(["hello there"])
    session = FakeSession(asr)
    partials = LivePartials(session)
    partials.start(0.0)
    asr.has_free_worker = False
    partials.tick(1.0)
    partials.tick(1.1)  # not counted again before another interval
    assert asr.requests == [] and outcome(session, "skipped") == 1
    asr.has_free_worker = True
    partials.tick(1.5)  # still within the interval after the skip
    assert asr.requests == []
    partials.tick(1.9)
    await session.settle()
    assert [e["data"]["text"] for e in session.partials()] == ["hello there"]


async def test_dropped_partial_is_counted_and_shows_nothing():
    asr = ScriptedASR([None])
    session = FakeSession(asr)
    partials = LivePartials(session)
    partials.start(0.0)
    partials.tick(1.0)
    await session.settle()
    assert session.partials() == [] and outcome(session, "dropped") == 1


async def test_unwatched_call_costs_no_transcription():
    asr = ScriptedASR(["hello"])
    session = FakeSession(asr, watched=False)
    partials = LivePartials(session)
    partials.start(0.0)
    partials.tick(5.0)
    assert asr.requests == []


async def test_a_partial_that_comes_after_the_turn_ended_is_not_shown():
    asr = ScriptedASR(["late words"], delay_secs=0.05)
    session = FakeSession(asr)
    partials = LivePartials(session)
    partials.start(0.0)
    partials.tick(1.0)
    partials.stop()  # the turn ended: its final transcript takes over
    await session.settle()
    assert session.partials() == []


async def test_a_long_window_closes_at_a_pause():
    asr = ScriptedASR(["first part of a long answer", "and then more"])
    session = FakeSession(asr)
    partials = LivePartials(session)
    partials.start(0.0)
    end = CLOSE_WINDOW_SECS + 1.0
    partials.pause(SpeechPaused(t=end + 0.2, speech_start=0.0, speech_end=end))
    await session.settle()
    assert partials.window_start == end
    partials.tick(end + 1.0)
    await session.settle()
    events = session.partials()
    assert events[0]["data"]["stable"] == "first part of a long answer"
    assert events[1]["data"]["stable"] == "first part of a long answer"
    assert events[1]["data"]["unstable"] == "and then more"
    assert asr.requests[1][0] == int((1.0 + 0.3) * 16000)  # only the audio after the pause
