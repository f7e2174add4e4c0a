"""Playout: real-time pacing, marks after prompts, clear on barge-in."""

from __future__ import annotations

import asyncio
import time

from voicebot.call.playout import Playout


class CarrierSink:
    """Collects what the playout would put on the socket, with arrival times."""

    def __init__(self):
        self.messages: list[tuple[str, object, float]] = []

    async def media(self, frame: bytes) -> None:
        self.messages.append(("media", frame, time.monotonic()))

    async def mark(self, name: str) -> None:
        self.messages.append(("mark", name, time.monotonic()))

    async def clear(self) -> None:
        self.messages.append(("clear", None, time.monotonic()))

    def kinds(self):
        return [kind for kind, _, _ in self.messages]


def make_playout(sink: CarrierSink, **kwargs) -> Playout:
    return Playout(send_media=sink.media, send_mark=sink.mark, send_clear=sink.clear, **kwargs)


async def test_prompts_play_as_20ms_frames_paced_in_real_time_with_marks():
    sink = CarrierSink()
    playout = make_playout(sink)
    playout.start()
    playout.enqueue("1:greeting", b"\x10" * 1600, "greeting")  # 10 frames = 200 ms
    playout.enqueue("2:consent:await", b"\x20" * 800, "consent")  # 5 frames
    started = time.monotonic()
    await asyncio.wait_for(playout.wait_idle(), 5)
    elapsed = time.monotonic() - started
    await playout.close()

    assert sink.kinds() == ["media"] * 10 + ["mark"] + ["media"] * 5 + ["mark"]
    assert [m[1] for m in sink.messages if m[0] == "mark"] == ["1:greeting", "2:consent:await"]
    frames = [m for m in sink.messages if m[0] == "media"]
    assert all(len(frame) == 160 for _, frame, _ in frames)
    # Paced by the clock, never bursted: 15 frames cannot go out much faster than 15 x 20 ms.
    assert elapsed >= 14 * 0.02
    first = frames[0][2]
    for index, (_, _, sent_at) in enumerate(frames):
        assert sent_at - first >= index * 0.02 - 0.002


async def test_last_partial_frame_is_padded_with_silence():
    sink = CarrierSink()
    playout = make_playout(sink)
    playout.start()
    playout.enqueue("1:p", b"\x00" * 170, "p")
    await asyncio.wait_for(playout.wait_idle(), 5)
    await playout.close()
    frames = [m[1] for m in sink.messages if m[0] == "media"]
    assert len(frames) == 2 and frames[1] == b"\x00" * 10 + b"\xff" * 150


async def test_clear_stops_playout_and_reports_what_was_sent():
    sink = CarrierSink()
    cut_segments = []
    playout = make_playout(sink, on_segment_end=cut_segments.append)
    playout.start()
    playout.enqueue("1:q", b"\x10" * 8000, "q")  # one second
    playout.enqueue("2:r", b"\x10" * 8000, "r")
    await asyncio.sleep(0.2)
    cut = await playout.clear()
    frames_at_clear = sum(1 for kind in sink.kinds() if kind == "media")
    await asyncio.sleep(0.1)
    await playout.close()

    assert [s.mark for s in cut] == ["1:q", "2:r"]
    assert cut[0].cleared and 0 < cut[0].frames_sent < 50
    assert cut[1].frames_sent == 0
    assert sink.kinds()[-1] == "clear"
    assert sum(1 for kind in sink.kinds() if kind == "media") == frames_at_clear
    assert "mark" not in sink.kinds()  # a cut prompt never reports being played to its end
    assert not playout.playing


async def test_drop_queued_keeps_the_current_prompt():
    sink = CarrierSink()
    playout = make_playout(sink)
    playout.start()
    playout.enqueue("1:a", b"\x10" * 800, "a")
    playout.enqueue("2:b", b"\x10" * 800, "b")
    await asyncio.sleep(0.03)
    dropped = playout.drop_queued()
    await asyncio.wait_for(playout.wait_idle(), 5)
    await playout.close()
    assert [s.mark for s in dropped] == ["2:b"]
    assert [m[1] for m in sink.messages if m[0] == "mark"] == ["1:a"]
    assert "clear" not in sink.kinds()


async def test_mark_echo_is_tracked():
    sink = CarrierSink()
    playout = make_playout(sink)
    playout.start()
    segment = playout.enqueue("1:a", b"\x10" * 160, "a")
    await asyncio.wait_for(playout.wait_idle(), 5)
    assert playout.mark_echoed("1:a") is segment and segment.echoed
    assert playout.mark_echoed("unknown") is None
    await playout.close()
