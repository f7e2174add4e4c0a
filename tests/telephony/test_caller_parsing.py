"""The simulated carrier: mark echoes, turns, answers and latency, without the real server.

``CallerState`` is driven with explicit times; a small fake Twilio-speaking server on loopback
checks that ``run_call`` moves the same messages over real sockets.
"""

from __future__ import annotations

import asyncio
import base64
import json

import numpy as np
import pytest
from aiohttp import WSMsgType, web

from loadtest.caller import (
    NON_SILENT_PEAK,
    NON_SILENT_RMS_DBFS,
    SILENCE_FRAME,
    CallerState,
    CallResult,
    CandidateAnswer,
    CarrierMessages,
    TurnRecord,
    build_parser,
    estimate_voice_end,
    format_turn,
    is_non_silent,
    main,
    parse_twiml,
    run_call,
    summary_lines,
)
from tests.conftest import AUDIO_DIR
from voicebot.audio.codec import ulaw_decode, ulaw_encode
from voicebot.telephony.signature import validate_twilio_signature
from voicebot.telephony.twilio import Dtmf, Mark, Media, Start, Stop, TwilioMediaStream
from voicebot.telephony.twiml import connect_stream_twiml, say_and_hangup_twiml

STREAM_SID = "MZ" + "1" * 32
FRAME = 0.02


def tone(seconds: float, rate: int = 8000, level: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (level * 32767 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)


TONE_FRAME = ulaw_encode(tone(0.02))


def answer(name: str, voiced_secs: float, silence_secs: float = 0.0) -> CandidateAnswer:
    pcm = np.concatenate([tone(voiced_secs), np.zeros(int(silence_secs * 8000), np.int16)])
    return CandidateAnswer.from_pcm(name, pcm, 8000)


def new_state(answers=(), dtmf=None, gap: float = 0.3) -> CallerState:
    carrier = CarrierMessages(STREAM_SID, "CA" + "2" * 32, "AC" + "3" * 32)
    return CallerState(carrier, answers, dtmf, answer_gap_secs=gap)


def bot_media(payload: bytes = TONE_FRAME, stream_sid: str = STREAM_SID) -> str:
    return json.dumps(
        {
            "event": "media",
            "streamSid": stream_sid,
            "media": {"payload": base64.b64encode(payload).decode()},
        }
    )


def bot_mark(name: str) -> str:
    return json.dumps({"event": "mark", "streamSid": STREAM_SID, "mark": {"name": name}})


CLEAR = json.dumps({"event": "clear", "streamSid": STREAM_SID})


def play_prompt(state: CallerState, start: float, frames: int, mark: str | None) -> float:
    """The server sends ``frames`` tone frames in real time from ``start``, then ``mark``."""
    for i in range(frames):
        state.on_server_message(bot_media(), start + i * FRAME)
    end = start + frames * FRAME
    if mark is not None:
        state.on_server_message(bot_mark(mark), end - 0.001)
    return end


def run_ticks(state: CallerState, start: float, end: float) -> list[dict]:
    """Tick the caller every 20 ms; return every message it sent, decoded, with its time."""
    sent = []
    n = 0
    while start + n * FRAME <= end + 1e-9:
        now = round(start + n * FRAME, 6)
        for message in state.poll(now):
            sent.append({"t": now, **json.loads(message)})
        sent.append({"t": now, **json.loads(state.next_media(now, round(now * 1000)))})
        n += 1
    return sent


def control(sent: list[dict]) -> list[dict]:
    return [m for m in sent if m["event"] != "media"]


def spoken(sent: list[dict]) -> list[dict]:
    return [
        m
        for m in sent
        if m["event"] == "media" and base64.b64decode(m["media"]["payload"]) != SILENCE_FRAME
    ]


# ---------------------------------------------------------------------------- audio


def test_silence_and_speech_frames_are_told_apart():
    assert not is_non_silent(SILENCE_FRAME)
    assert not is_non_silent(ulaw_encode(np.full(160, 20, np.int16)))
    assert is_non_silent(TONE_FRAME)
    assert is_non_silent(ulaw_encode(tone(0.02, level=0.01)))


def test_the_fast_silence_check_agrees_with_peak_and_rms_on_every_kind_of_frame():
    """The table lookups decide most frames; they must decide them as the full check would."""

    def reference(ulaw: bytes) -> bool:
        pcm = ulaw_decode(ulaw).astype(np.float32)
        peak = float(np.max(np.abs(pcm)))
        rms = float(np.sqrt(np.mean(pcm * pcm)))
        return peak > NON_SILENT_PEAK or rms > 32768.0 * 10 ** (NON_SILENT_RMS_DBFS / 20)

    rng = np.random.default_rng(7)
    frames = [SILENCE_FRAME, TONE_FRAME]
    # Quiet noise around the RMS threshold (~104) and the peak threshold (256), where the
    # answer turns on the RMS, plus sparse clicks and louder speech-like frames.
    for level in (20, 60, 90, 100, 110, 120, 150, 200, 250, 300, 1000):
        for _ in range(40):
            pcm = rng.normal(0, level, 160).clip(-level * 2.5, level * 2.5)
            frames.append(ulaw_encode(pcm.astype(np.int16)))
    for _ in range(40):
        pcm = np.zeros(160)
        pcm[rng.integers(0, 160, 3)] = rng.integers(-400, 400, 3)
        frames.append(ulaw_encode(pcm.astype(np.int16)))
    answers = [is_non_silent(frame) for frame in frames]
    assert answers == [reference(frame) for frame in frames]
    assert 50 < sum(answers) < len(frames) - 50  # both kinds
    rms_amplitude = 32768.0 * 10 ** (NON_SILENT_RMS_DBFS / 20)
    peaks = [int(np.max(np.abs(ulaw_decode(frame).astype(np.int32)))) for frame in frames]
    # Frames whose peak lies between the two thresholds are decided by their RMS (the slow
    # path); the others by the table alone.
    assert sum(rms_amplitude < peak <= NON_SILENT_PEAK for peak in peaks) > 20


def test_voice_end_ignores_trailing_silence():
    clip = answer("a", 0.5, silence_secs=1.0)
    assert clip.duration_secs == pytest.approx(1.5)
    assert clip.voice_end_secs == pytest.approx(0.5, abs=0.021)


def test_voice_end_of_real_speech_with_a_silent_tail():
    clip = CandidateAnswer.from_wav(AUDIO_DIR / "en_speaker_b.wav")
    assert clip.duration_secs == pytest.approx(5.0, abs=0.01)
    assert len(clip.ulaw) == 40000  # 16 kHz file resampled to 8 kHz mu-law
    assert 2.2 < clip.voice_end_secs < 2.9  # "The horizon seems extremely distant." then silence


def test_voice_end_of_an_untrimmed_recording_is_near_its_end():
    clip = CandidateAnswer.from_wav(AUDIO_DIR / "en_librispeech_1995-1837-0001.wav")
    assert clip.duration_secs - 0.3 < clip.voice_end_secs <= clip.duration_secs


def test_voice_end_ignores_background_noise_that_outlasts_the_voice():
    # JFK's last word ends near 10.5 s; the crowd noise behind him goes on to the end (11.0 s)
    # and is louder than the recording's noise floor, so the level alone cannot find the end.
    clip = CandidateAnswer.from_wav(AUDIO_DIR / "en_jfk.wav")
    assert estimate_voice_end(clip.ulaw) == pytest.approx(clip.duration_secs)
    assert 10.2 < clip.voice_end_secs < 10.75


def test_voice_end_of_silence_is_the_whole_clip():
    assert estimate_voice_end(SILENCE_FRAME * 10) == pytest.approx(0.2)


def test_unreadable_answer_file_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="cannot read"):
        CandidateAnswer.from_wav(tmp_path / "missing.wav")
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not a wav")
    with pytest.raises(ValueError, match="WAV"):
        CandidateAnswer.from_wav(bad)


# ------------------------------------------------------------------- marks and turns


def test_mark_is_echoed_once_the_audio_before_it_has_played():
    state = new_state()
    end = play_prompt(state, 0.0, frames=10, mark="1:greeting")
    assert state.poll(end - 0.01) == []
    [echo] = state.poll(end)
    assert json.loads(echo) == {
        "event": "mark",
        "sequenceNumber": "1",
        "streamSid": STREAM_SID,
        "mark": {"name": "1:greeting"},
    }
    assert state.poll(end + 1) == []


def test_mark_without_audio_before_it_is_echoed_at_once():
    state = new_state()
    state.on_server_message(bot_mark("ping"), 0.5)
    assert [json.loads(m)["mark"]["name"] for m in state.poll(0.5)] == ["ping"]


def test_await_mark_ends_the_bot_turn_and_the_answer_follows_after_the_gap():
    state = new_state([answer("first.wav", 0.2)], gap=0.3)
    end = play_prompt(state, 0.0, frames=10, mark="1:consent:await")
    sent = run_ticks(state, 0.0, 1.2)
    assert [m["event"] for m in control(sent)] == ["mark"]
    speech = spoken(sent)
    assert len(speech) == 10  # 0.2 s of answer
    assert speech[0]["t"] == pytest.approx(end + 0.3)
    bot, candidate = state.turns
    assert (bot.speaker, bot.frames, bot.marks) == ("bot", 10, ["1:consent:await"])
    assert (bot.start, bot.end) == (pytest.approx(0.0), pytest.approx(end))
    assert candidate.speaker == "candidate" and candidate.answer == "first.wav"
    assert candidate.prompt == 0
    assert candidate.start == pytest.approx(end + 0.3)
    assert candidate.end == pytest.approx(end + 0.5)


def test_media_frames_are_numbered_and_timestamped_like_twilio():
    state = new_state()
    sent = run_ticks(state, 0.0, 0.1)
    media = [m["media"] for m in sent if m["event"] == "media"]
    assert [m["chunk"] for m in media] == ["1", "2", "3", "4", "5", "6"]
    assert [m["timestamp"] for m in media] == ["0", "20", "40", "60", "80", "100"]
    assert all(base64.b64decode(m["payload"]) == SILENCE_FRAME for m in media)
    first = next(m for m in sent if m["event"] == "media")
    first = {key: value for key, value in first.items() if key != "t"}  # run_ticks' send time
    assert first == {
        "event": "media",
        "sequenceNumber": first["sequenceNumber"],
        "media": {
            "track": "inbound",
            "chunk": "1",
            "timestamp": "0",
            "payload": media[0]["payload"],
        },
        "streamSid": state.carrier.stream_sid,
    }
    assert int(first["sequenceNumber"]) >= 1


def test_voice_to_voice_runs_from_end_of_speech_to_first_non_silent_bot_frame():
    state = new_state([answer("a.wav", 0.4, silence_secs=1.0)], gap=0.3)
    end = play_prompt(state, 0.0, frames=5, mark="1:q1:await")
    run_ticks(state, 0.0, 0.9)
    candidate = state.turns[-1]
    speech_start = end + 0.3
    assert candidate.start == pytest.approx(speech_start)
    assert candidate.voice_end == pytest.approx(speech_start + 0.4, abs=0.021)
    # The bot replies during the answer's silent tail: first silence, then sound.
    reply = candidate.voice_end + 0.5
    state.on_server_message(bot_media(SILENCE_FRAME), reply - 0.1)
    state.on_server_message(bot_media(), reply)
    assert candidate.voice_to_voice_secs == pytest.approx(0.5)
    assert not candidate.talked_over
    run_ticks(state, 0.92, 3.0)
    result = state.result(state.carrier.call_sid, "server", None, 3.0)
    assert result.voice_to_voice == [pytest.approx(0.5)]
    assert result.talked_over == 0


def test_bot_audio_while_the_candidate_speaks_is_talk_over():
    state = new_state([answer("a.wav", 1.0)], gap=0.0)
    play_prompt(state, 0.0, frames=5, mark="1:q1:await")
    run_ticks(state, 0.0, 0.5)
    state.on_server_message(bot_media(), 0.5)
    candidate = state.turns[1]
    assert candidate.talked_over
    assert candidate.voice_to_voice_secs is None  # that frame came before the answer ended
    assert [t.speaker for t in state.turns] == ["bot", "candidate", "bot"]


def test_barge_in_is_planned_when_the_next_prompt_starts_in_the_answers_silent_tail():
    """A quick reply can start while the previous answer's clip still plays its silent tail:
    the candidate has stopped talking, so the talk-over planned for that prompt still happens."""
    carrier = CarrierMessages(STREAM_SID, "CA" + "2" * 32, "AC" + "3" * 32)
    state = CallerState(
        carrier,
        [answer("yes.wav", 0.4, silence_secs=0.5), answer("long.wav", 2.0)],
        None,
        answer_gap_secs=0.3,
        barge_in={1: 1.0},
    )
    end = play_prompt(state, 0.0, frames=5, mark="1:consent:await")
    run_ticks(state, 0.0, end + 0.3 + 0.5)  # the answer's voice is over, its tail is not
    reply = end + 0.3 + 0.6
    play_prompt(state, reply, frames=150, mark="2:q1:await")  # a 3 s question
    sent = run_ticks(state, end + 0.82, reply + 2.0)
    talk_over_starts = min(m["t"] for m in spoken(sent) if m["t"] > reply)
    assert talk_over_starts == pytest.approx(reply + 1.0, abs=0.021)


def test_a_planned_talk_over_waits_for_the_reply_when_an_aside_comes_mid_answer():
    """An aside said while the candidate still talks ("take your time") is not the prompt the
    talk-over was planned for: the caller keeps it for the bot's reply after the answer."""
    state = new_state([answer("long.wav", 2.0), answer("more.wav", 1.0)], gap=0.3)
    state._barge_in = {1: 0.2}
    end = play_prompt(state, 0.0, frames=5, mark="1:q1:await")
    run_ticks(state, 0.0, end + 0.4)  # the answer starts 0.3 s after the mark
    aside = end + 0.6
    play_prompt(state, aside, frames=10, mark="2:take_your_time")  # over the answer
    run_ticks(state, end + 0.42, aside + 2.5)  # the answer's voice ends at end + 2.3
    assert state.prompts_seen == 1  # nothing started over the aside
    reply = aside + 2.6
    play_prompt(state, reply, frames=100, mark="3:q2:await")
    sent = run_ticks(state, aside + 2.52, reply + 1.0)
    talk_over_starts = min(m["t"] for m in spoken(sent) if m["t"] > reply)
    assert talk_over_starts == pytest.approx(reply + 0.2, abs=0.021)
    assert state.prompts_seen == 2


def test_clear_drops_buffered_bot_audio_and_echoes_pending_marks():
    state = new_state()
    for i in range(50):  # the server sent 1 s of audio at once (faster than real time)
        state.on_server_message(bot_media(), 0.0 + i * 0.0001)
    state.on_server_message(bot_mark("1:q1"), 0.01)
    assert state.poll(0.3) == []  # still playing
    state.on_server_message(CLEAR, 0.3)
    assert [json.loads(m)["mark"]["name"] for m in state.poll(0.3)] == ["1:q1"]
    [bot] = state.turns
    assert bot.interrupted and bot.end == pytest.approx(0.3)
    assert len(state.bot_audio) == 50 * 160  # everything received is still reported


def test_dtmf_answers_a_prompt_without_using_up_an_answer():
    state = new_state([answer("q1.wav", 0.1)], dtmf={0: "1"}, gap=0.2)
    end = play_prompt(state, 0.0, frames=5, mark="1:consent:await")
    sent = run_ticks(state, 0.0, 0.5)
    dtmf = [m for m in control(sent) if m["event"] == "dtmf"]
    assert len(dtmf) == 1
    assert dtmf[0]["dtmf"] == {"track": "inbound_track", "digit": "1"}
    assert dtmf[0]["streamSid"] == STREAM_SID
    assert dtmf[0]["t"] == pytest.approx(end + 0.2, abs=0.021)  # on the next 20 ms tick
    assert spoken(sent) == []
    end = play_prompt(state, 0.52, frames=5, mark="2:q1:await")
    sent = run_ticks(state, 0.52, 1.2)
    assert len(spoken(sent)) == 5
    turns = [(t.speaker, t.prompt, t.dtmf, t.answer) for t in state.turns]
    assert turns == [
        ("bot", None, None, None),
        ("candidate", 0, "1", None),
        ("bot", None, None, None),
        ("candidate", 1, None, "q1.wav"),
    ]


def test_no_answers_left_means_silence():
    state = new_state([], gap=0.1)
    play_prompt(state, 0.0, frames=5, mark="1:q1:await")
    sent = run_ticks(state, 0.0, 1.0)
    assert spoken(sent) == []
    assert state.unanswered_prompts == 1


def test_a_prompt_that_arrives_while_answering_is_answered_next():
    state = new_state([answer("a.wav", 0.4), answer("b.wav", 0.2)], gap=0.1)
    play_prompt(state, 0.0, frames=5, mark="1:q1:await")
    run_ticks(state, 0.0, 0.3)  # answer a (20 frames) starts at 0.2: 6 frames sent by 0.3
    play_prompt(state, 0.3, frames=2, mark="2:q2:await")  # the server cut in early
    sent = run_ticks(state, 0.32, 1.5)
    first, second = [t for t in state.turns if t.speaker == "candidate"]
    assert (first.answer, second.answer) == ("a.wav", "b.wav")
    assert second.start == pytest.approx(first.end + 0.1)
    assert len(spoken(sent)) == (20 - 6) + 10  # the rest of a, then all of b


def test_without_await_marks_the_caller_answers_after_bot_silence():
    state = new_state([answer("a.wav", 0.2)], gap=0.3)
    end = play_prompt(state, 0.0, frames=10, mark="1:greeting")
    sent = run_ticks(state, 0.0, end + 1.4)
    assert spoken(sent) == []  # 1.4 s of silence is not yet a turn end
    sent = run_ticks(state, end + 1.42, end + 2.0)
    speech = spoken(sent)
    assert speech and speech[0]["t"] == pytest.approx(end + 1.5, abs=0.021)


def test_without_any_marks_the_caller_still_answers_after_bot_silence():
    state = new_state([answer("a.wav", 0.2)])
    end = play_prompt(state, 0.0, frames=10, mark=None)
    sent = run_ticks(state, 0.0, end + 2.0)
    assert spoken(sent) and spoken(sent)[0]["t"] == pytest.approx(end + 1.5, abs=0.021)


def test_once_the_server_uses_await_marks_plain_marks_do_not_trigger_answers():
    state = new_state([answer("a.wav", 0.1), answer("b.wav", 0.1)], gap=0.1)
    play_prompt(state, 0.0, frames=5, mark="1:q1:await")
    run_ticks(state, 0.0, 0.5)
    play_prompt(state, 0.6, frames=5, mark="2:thanks")  # not a question: no answer expected
    sent = run_ticks(state, 0.5, 4.0)
    assert spoken(sent) == []
    assert [t.answer for t in state.turns if t.speaker == "candidate"] == ["a.wav"]


def test_late_frame_gaps_count_within_a_turn_but_not_across_marks():
    state = new_state()
    times = [0.0, 0.02, 0.04, 0.14, 0.16, 0.30]  # two gaps above 60 ms
    for t in times:
        state.on_server_message(bot_media(), t)
    state.on_server_message(bot_mark("1:a"), 0.31)
    state.on_server_message(bot_media(), 0.80)  # next prompt after a pause: not late
    assert state.late_frame_gaps == 2
    assert state.turns[0].frames == 7


def test_bad_server_messages_are_recorded_not_fatal():
    state = new_state()
    state.on_server_message(bot_media(stream_sid="MZwrong"), 0.0)
    state.on_server_message(json.dumps({"event": "hello", "streamSid": STREAM_SID}), 0.0)
    state.on_server_message("not json", 0.0)
    state.on_server_message(b"\x00\x01", 0.0)
    state.on_server_message(
        json.dumps({"event": "media", "streamSid": STREAM_SID, "media": {"payload": "!!"}}), 0.0
    )
    assert len(state.problems) == 5
    assert any("MZwrong" in p for p in state.problems)
    state.on_server_message(bot_media(), 0.1)
    assert len(state.bot_audio) == 160


def test_events_report_finished_turns():
    seen: list[tuple[str, str]] = []
    carrier = CarrierMessages(STREAM_SID, "CA1", "AC1")
    state = CallerState(
        carrier,
        [answer("a.wav", 0.1)],
        answer_gap_secs=0.1,
        on_event=lambda kind, data: seen.append((kind, data["turn"].speaker)),
    )
    play_prompt(state, 0.0, frames=5, mark="1:q1:await")
    run_ticks(state, 0.0, 0.6)
    state.on_server_message(bot_media(), 0.7)
    assert seen == [("turn", "bot"), ("turn", "candidate")]


# -------------------------------------------------------------------- results, CLI


def test_result_is_json_ready_and_readable():
    result = CallResult(
        call_sid="CA1",
        turns=[
            TurnRecord("bot", 0.0, 2.0, frames=100, marks=["1:q:await"]),
            TurnRecord(
                "candidate",
                2.3,
                4.0,
                prompt=0,
                answer="/x/a.wav",
                voice_end=3.8,
                voice_to_voice_secs=0.45,
            ),
            TurnRecord("candidate", 5.0, 5.0, prompt=1, dtmf="1"),
        ],
        bot_audio=b"\xff" * 16000,
        closed_by="server",
        duration_secs=6.0,
    )
    data = json.loads(json.dumps(result.to_json_dict()))
    assert data["voice_to_voice"] == [0.45] and data["voice_to_voice_p50"] == 0.45
    assert data["bot_audio_secs"] == 2.0 and "bot_audio" not in data
    assert "voice-to-voice    450 ms" in format_turn(result.turns[1])
    assert "pressed 1" in format_turn(result.turns[2])
    assert "1:q:await" in format_turn(result.turns[0])
    text = "\n".join(summary_lines(result))
    assert "p50 450 ms" in text and "closed by server" in text


def test_cli_options():
    args = build_parser().parse_args(
        ["--answer", "a.wav", "--answer", "b.wav", "--dtmf", "0=1", "--json"]
    )
    assert args.url == "http://127.0.0.1:8080"
    assert args.answer == ["a.wav", "b.wav"] and args.dtmf == ["0=1"] and args.json


@pytest.mark.parametrize("bad", ["1", "x=1", "0=12", "0=z"])
def test_cli_rejects_bad_dtmf(bad, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--dtmf", bad])
    assert exited.value.code == 2
    assert "--dtmf" in capsys.readouterr().err


def test_parse_twiml_rejects_garbage():
    with pytest.raises(ValueError, match="invalid TwiML"):
        parse_twiml("<Response><Connect>")
    with pytest.raises(ValueError, match="no url"):
        parse_twiml("<Response><Connect><Stream/></Connect></Response>")


# ----------------------------------------------------- over real sockets, fake server

AUTH_TOKEN = "test-auth-token"


class FakeTwilioServer:
    """A tiny bot: greets, awaits an answer, says goodbye once it heard one, hangs up."""

    def __init__(self, refuse_webhook: bool = False, say_only: bool = False):
        self.refuse_webhook = refuse_webhook
        self.say_only = say_only
        self.events: list[object] = []
        self.webhook_forms: list[dict[str, str]] = []
        self.signature_valid: bool | None = None

    async def voice(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        self.webhook_forms.append(form)
        self.signature_valid = validate_twilio_signature(
            AUTH_TOKEN, str(request.url), form, request.headers.get("X-Twilio-Signature")
        )
        if self.refuse_webhook:
            raise web.HTTPForbidden(text="invalid X-Twilio-Signature")
        if self.say_only:
            return web.Response(
                text=say_and_hangup_twiml("No interview. Goodbye."), content_type="application/xml"
            )
        url = f"ws://{request.host}/twilio/stream"
        twiml = connect_stream_twiml(
            url, {"interview_id": request.query["interview_id"], "token": "t&k"}
        )
        return web.Response(text=twiml, content_type="application/xml")

    async def stream(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        protocol = TwilioMediaStream()
        voiced = silent_after_voice = 0
        said_bye = False

        async def say(seconds: float, mark: str) -> None:
            for _ in range(round(seconds / FRAME)):
                await ws.send_str(protocol.media(TONE_FRAME))
                await asyncio.sleep(FRAME)
            await ws.send_str(protocol.mark(mark))

        async for message in ws:
            if message.type != WSMsgType.TEXT:
                continue
            for event in protocol.receive(message.data):
                self.events.append(event)
                if isinstance(event, Start):
                    asyncio.ensure_future(say(0.2, "1:greeting:await"))
                elif isinstance(event, Media) and not said_bye:
                    if is_non_silent(event.payload):
                        voiced += 1
                    elif voiced >= 5:
                        silent_after_voice += 1
                    if silent_after_voice >= 5:
                        said_bye = True
                        asyncio.ensure_future(say(0.2, "2:goodbye"))
                elif isinstance(event, Mark) and event.name == "2:goodbye":
                    await ws.close()
        return ws

    async def __aenter__(self) -> str:
        app = web.Application()
        app.router.add_post("/twilio/voice", self.voice)
        app.router.add_get("/twilio/stream", self.stream)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aexit__(self, *exc_info) -> None:
        await self._runner.cleanup()


async def test_run_call_over_real_sockets():
    server = FakeTwilioServer()
    async with server as base_url:
        result = await run_call(
            base_url,
            answers=[answer("a.wav", 0.3, silence_secs=0.3)],
            interview_id="iv_1",
            twilio_auth_token=AUTH_TOKEN,
            answer_gap_secs=0.1,
            max_call_secs=20,
        )
    assert result.error is None, result.error
    assert result.closed_by == "server"
    assert server.signature_valid is True
    form = server.webhook_forms[0]
    assert form["CallSid"] == result.call_sid and form["CallStatus"] == "in-progress"
    assert form["Direction"] == "inbound" and form["From"] == "+15550100"
    start = next(e for e in server.events if isinstance(e, Start))
    assert start.custom_parameters == {"interview_id": "iv_1", "token": "t&k"}
    assert start.call_sid == result.call_sid and start.stream_sid == result.stream_sid
    marks = [e.name for e in server.events if isinstance(e, Mark)]
    assert marks == ["1:greeting:await", "2:goodbye"]
    assert [t.speaker for t in result.turns] == ["bot", "candidate", "bot"]
    assert result.voice_to_voice and 0 < result.voice_to_voice[0] < 5
    assert len(result.bot_audio) == 2 * 10 * 160
    assert not result.problems
    assert not any(isinstance(e, (Dtmf, Stop)) for e in server.events)  # server hung up


async def test_run_call_reports_a_refused_webhook():
    async with FakeTwilioServer(refuse_webhook=True) as base_url:
        result = await run_call(base_url, interview_id="iv_1", max_call_secs=5)
    assert result.closed_by == "server"
    assert "403" in result.error and "X-Twilio-Signature" in result.error
    assert result.turns == []


async def test_run_call_reports_a_call_the_server_would_not_take():
    async with FakeTwilioServer(say_only=True) as base_url:
        result = await run_call(base_url, max_call_secs=5)
    assert result.closed_by == "server"
    assert "No interview. Goodbye." in result.error


async def test_run_call_times_out_and_hangs_up_with_stop():
    server = FakeTwilioServer()
    async with server as base_url:
        result = await run_call(base_url, interview_id="iv", max_call_secs=1.5)
        await asyncio.sleep(0.1)
    assert result.closed_by == "timeout" and result.error is None
    assert isinstance(server.events[-1], Stop)
    assert result.unanswered_prompts == 1


async def test_run_call_reports_an_unreachable_server():
    result = await run_call("http://127.0.0.1:9", max_call_secs=5)
    assert result.closed_by == "caller" and "cannot reach" in result.error


@pytest.mark.parametrize(
    ("ending", "expected"),
    [
        ("refuse", "refused: HTTP 403 Forbidden"),
        ("close_1011", "server closed the stream with code 1011 'boom'"),
        ("hang_up", None),
        ("drop", "without a close frame (1006)"),
    ],
)
async def test_run_call_says_how_the_server_ended_the_stream(ending, expected):
    """A refused stream, an error close, a normal hang-up and a dropped connection, as reported."""

    async def voice(request: web.Request) -> web.Response:
        stream_url = f"ws://{request.host}/twilio/stream"
        twiml = connect_stream_twiml(stream_url, {"token": "t"})
        return web.Response(text=twiml, content_type="text/xml")

    async def stream(request: web.Request) -> web.WebSocketResponse:
        if ending == "refuse":
            raise web.HTTPForbidden(text="stream token refused: expired")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        received = 0
        async for _ in ws:
            received += 1
            if received == 5:
                if ending == "close_1011":
                    await ws.close(code=1011, message=b"boom")
                elif ending == "hang_up":
                    await ws.close()
                else:
                    request.transport.close()
        return ws

    app = web.Application()
    app.router.add_post("/twilio/voice", voice)
    app.router.add_get("/twilio/stream", stream)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        result = await run_call(f"http://127.0.0.1:{port}", max_call_secs=5)
    finally:
        await runner.cleanup()
    assert result.closed_by == "server"
    if expected is None:
        assert result.error is None
    else:
        assert expected in result.error
