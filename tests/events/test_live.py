"""Live feed routing: calls, the watchers of every call, and channels (call lists, listen-in)."""

from __future__ import annotations

from voicebot.call.listen import audio_channel
from voicebot.events.live import WATCH_ALL, LiveFeed, is_channel
from voicebot.monitor.registry import CALLS_CHANNEL


def drain(subscription) -> list[str]:
    return [subscription.queue.get_nowait()["type"] for _ in range(subscription.queue.qsize())]


def test_channels_are_not_call_sids():
    assert is_channel(CALLS_CHANNEL) and is_channel(audio_channel("CA1"))
    assert not is_channel("CA1") and not is_channel(None)


def test_a_watcher_of_every_call_gets_no_channel_traffic():
    live = LiveFeed()
    with live.subscribe() as everything:
        assert live.watched("CA1")
        assert not live.watched(audio_channel("CA1"))  # no listen-in mixing for it
        assert not live.watched(CALLS_CHANNEL)
        live.publish("CA1", "transcript.final", 1.0, text="hi")
        live.deliver({"type": "audio.chunk", "call_sid": audio_channel("CA1"), "data": {}})
        assert drain(everything) == ["transcript.final"]


def test_a_listener_alone_gets_the_audio_channel():
    live = LiveFeed()
    with live.subscribe(audio_channel("CA1")) as listener:
        assert live.watched(audio_channel("CA1")) and not live.watched("CA1")
        live.deliver({"type": "audio.chunk", "call_sid": audio_channel("CA1"), "data": {}})
        live.publish("CA1", "prosody.sample", 1.0)
        assert drain(listener) == ["audio.chunk"]


def test_remote_watchers_of_every_call_do_not_pull_channels_across():
    live = LiveFeed()
    forwarded = []
    live.forward = forwarded.append
    live.remote_watching = frozenset({WATCH_ALL})
    live.deliver({"type": "audio.chunk", "call_sid": audio_channel("CA1"), "data": {}})
    live.publish("CA1", "transcript.final", 1.0)
    assert [event["type"] for event in forwarded] == ["transcript.final"]
    live.remote_watching = frozenset({audio_channel("CA1")})
    live.deliver({"type": "audio.chunk", "call_sid": audio_channel("CA1"), "data": {}})
    assert forwarded[-1]["type"] == "audio.chunk"
