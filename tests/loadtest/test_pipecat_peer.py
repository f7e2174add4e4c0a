"""The pipecat peer bot answers a Twilio call from our caller and runs its interview to the end.

One real call over loopback: the peer runs as its own process (uvicorn, pipecat pipeline, Whisper
tiny.en, Piper, Silero, smart-turn), the caller presses 1 for consent and answers two questions
with human speech clips. The script that stands in for the LLM is also driven frame by frame
in a pipecat test pipeline. Skipped when the ``peers`` extra (fastapi, uvicorn) is not installed.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the pipecat peer needs the peers extra (fastapi, uvicorn)")
pytest.importorskip("uvicorn", reason="the pipecat peer needs the peers extra (fastapi, uvicorn)")

from pipecat.audio.dtmf.types import KeypadEntry  # noqa: E402
from pipecat.frames.frames import (  # noqa: E402
    BotStoppedSpeakingFrame,
    DataFrame,
    EndWorkerFrame,
    Frame,
    InputDTMFFrame,
    InterruptionFrame,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    LLMTextFrame,
)
from pipecat.pipeline.pipeline import Pipeline  # noqa: E402
from pipecat.processors.aggregators.llm_context import LLMContext  # noqa: E402
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor  # noqa: E402
from pipecat.tests.utils import SleepFrame, run_test  # noqa: E402

from loadtest.caller import CallResult, run_call  # noqa: E402
from loadtest.harness import free_port  # noqa: E402
from loadtest.peers.pipecat_bot import (  # noqa: E402
    CLOSING,
    CONSENT,
    DECLINED,
    GREETING,
    QUESTIONS,
    InterviewScript,
    ScriptedInterviewer,
)
from tests.conftest import AUDIO_DIR, ROOT  # noqa: E402

pytestmark = pytest.mark.peer

STARTUP_SECS = 90
"""How long the peer may take to import pipecat and start listening on a busy 2-core box."""


def _wait_listening(process: subprocess.Popen, port: int, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the peer exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"the peer did not listen on port {port} in {STARTUP_SECS} s")


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The peer serving a two-question interview on a free loopback port: (base URL, its log)."""
    port = free_port()
    log = tmp_path_factory.mktemp("pipecat-peer") / "peer.log"
    command = [sys.executable, "-m", "loadtest.peers.pipecat_bot", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--questions", "2"]
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_listening(process, port, log)
        yield f"http://127.0.0.1:{port}", log
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def call(peer: tuple[str, Path]) -> CallResult:
    """One call: press 1 at the consent question, then answer both questions by voice."""
    base_url, _ = peer
    answers = [AUDIO_DIR / "en_speaker_a.wav", AUDIO_DIR / "en_speaker_b.wav"]
    return asyncio.run(run_call(base_url, answers=answers, dtmf={0: "1"}, max_call_secs=150))


def test_the_call_runs_to_the_end_and_the_peer_hangs_up(
    call: CallResult, peer: tuple[str, Path]
) -> None:
    _, log = peer
    details = "\n".join(str(turn) for turn in call.turns) + "\n" + log.read_text()[-3000:]
    assert call.error is None, details
    assert call.closed_by == "server", details
    assert call.unanswered_prompts == 0, details
    assert "interview over" in log.read_text(), details


def test_the_bot_speaks_after_each_answer(call: CallResult) -> None:
    spoken = [t for t in call.turns if t.speaker == "candidate" and t.answer is not None]
    assert [Path(t.answer).name for t in spoken] == ["en_speaker_a.wav", "en_speaker_b.wav"]
    assert len(call.voice_to_voice) == 2, call.turns  # a bot reply heard after each answer
    last_answer = call.turns.index(spoken[-1])
    closing = [t for t in call.turns[last_answer + 1 :] if t.speaker == "bot"]
    assert closing and sum(t.frames for t in closing) > 0, call.turns


def test_the_greeting_and_consent_question_are_spoken_before_the_key_press(
    call: CallResult,
) -> None:
    first_bot = next(t for t in call.turns if t.speaker == "bot")
    key_press = next(t for t in call.turns if t.dtmf is not None)
    assert first_bot.frames > 0 and first_bot.start < key_press.start
    assert key_press.dtmf == "1" and key_press.prompt == 0


# ------------------------------------------------------------- the script, frame by frame


class _Played(DataFrame):
    """Test signal: the output has finished playing what it was given."""


class _FakeOutput(FrameProcessor):
    """Stands for the output transport: reports the bot stopped speaking when told to."""

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, _Played):
            await self.push_frame(BotStoppedSpeakingFrame(), FrameDirection.UPSTREAM)
        else:
            await self.push_frame(frame, direction)


def _user_turn(text: str | None = None) -> LLMContextFrame:
    context = LLMContext()
    if text is not None:
        context.add_message({"role": "user", "content": text})
    return LLMContextFrame(context=context)


async def _lines_said(frames: list[Frame], *, questions: int) -> tuple[list[str], list[Frame]]:
    """Run the interviewer on ``frames`` (a pause after each); return its lines and all output."""
    interviewer = ScriptedInterviewer(InterviewScript().limited_to(questions))
    paced: list[Frame] = []
    for frame in frames:
        paced += [frame, SleepFrame(0.05)]
    down, _ = await run_test(Pipeline([interviewer, _FakeOutput()]), frames_to_send=paced)
    lines, words = [], []
    for frame in down:
        if isinstance(frame, LLMTextFrame):
            words.append(frame.text)
        elif isinstance(frame, LLMFullResponseEndFrame):
            lines.append("".join(words))
            words = []
    return lines, list(down)


async def test_each_turn_gets_the_next_line_and_the_call_ends_after_the_closing() -> None:
    lines, down = await _lines_said(
        [_user_turn(), _Played(), InputDTMFFrame(KeypadEntry.ONE), _Played()]
        + [_user_turn("I worked in a shop."), _Played()],
        questions=1,
    )
    assert lines == [f"{GREETING} {CONSENT}", QUESTIONS[0], CLOSING]
    ends = [i for i, f in enumerate(down) if isinstance(f, EndWorkerFrame)]
    assert len(ends) == 1 and ends[0] > max(
        i for i, f in enumerate(down) if isinstance(f, LLMFullResponseEndFrame)
    )


async def test_a_line_cut_off_by_an_interruption_is_said_again_at_the_next_turn() -> None:
    lines, down = await _lines_said(
        [_user_turn(), _Played(), _user_turn("Yes."), InterruptionFrame(), _user_turn("Yes.")],
        questions=2,
    )
    assert lines == [f"{GREETING} {CONSENT}", QUESTIONS[0], QUESTIONS[0]]
    assert not any(isinstance(f, EndWorkerFrame) for f in down)


async def test_a_turn_ending_while_the_answer_is_still_playing_gets_no_second_answer() -> None:
    lines, _ = await _lines_said([_user_turn(), _user_turn("Hello?")], questions=2)
    assert lines == [f"{GREETING} {CONSENT}"]


async def test_saying_no_or_pressing_2_at_the_consent_question_ends_the_call_politely() -> None:
    for answer in (_user_turn("No, thank you."), InputDTMFFrame(KeypadEntry.TWO)):
        lines, down = await _lines_said([_user_turn(), _Played(), answer, _Played()], questions=4)
        assert lines == [f"{GREETING} {CONSENT}", DECLINED]
        assert any(isinstance(f, EndWorkerFrame) for f in down)


def test_the_script_can_be_shortened_but_not_lengthened() -> None:
    assert InterviewScript().limited_to(2).questions == QUESTIONS[:2]
    with pytest.raises(ValueError, match="between 0 and 4"):
        InterviewScript().limited_to(5)
