"""Prometheus metrics for the server, served at ``GET /metrics``.

One registry per ``Metrics`` instance (not the global default), so tests and several apps in one
process do not collide.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)


class Metrics:
    """The server's counters, gauges and histograms."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.calls_active = Gauge("voicebot_calls_active", "Calls in progress.", registry=r)
        self.calls_total = Counter(
            "voicebot_calls_total", "Calls ended, by end reason.", ["reason"], registry=r
        )
        self.events_emitted = Gauge(
            "voicebot_events_emitted", "Durable events emitted by this process.", registry=r
        )
        self.events_waiting = Gauge(
            "voicebot_events_waiting",
            "Durable events not yet in the shared bus (the outbox while Redis is away).",
            registry=r,
        )
        self.redis_errors = Gauge(
            "voicebot_bus_redis_errors", "Redis errors the bus has met (it retried).", registry=r
        )
        self.webhooks = Gauge(
            "voicebot_webhooks",
            "Webhook deliveries by the in-process HR bridge, by outcome (delivered, retried,"
            " dead, aborted).",
            ["outcome"],
            registry=r,
        )
        self.reports = Counter(
            "voicebot_reports_total",
            "Interview reports built after a call, by outcome (built, failed).",
            ["outcome"],
            registry=r,
        )
        self.report_seconds = Histogram(
            "voicebot_report_seconds",
            "Hang-up to the interview report stored, seconds.",
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
            registry=r,
        )
        self.calls_refused = Counter(
            "voicebot_calls_refused_total", "Streams refused, by reason.", ["reason"], registry=r
        )
        self.streams_pending = Gauge(
            "voicebot_streams_pending",
            "Carrier streams open that have not sent a valid start yet.",
            registry=r,
        )
        self.protocol_errors = Counter(
            "voicebot_protocol_errors_total",
            "Malformed or unexpected carrier messages, by error code.",
            ["code"],
            registry=r,
        )
        self.http_errors = Counter(
            "voicebot_http_rejections_total",
            "HTTP requests rejected, by endpoint and reason.",
            ["endpoint", "reason"],
            registry=r,
        )
        self.carrier_requests = Counter(
            "voicebot_carrier_requests_total",
            "Requests to a carrier's REST API (place a call, hang up), by carrier, request and"
            " outcome (ok, auth, rate_limited, unavailable, rejected).",
            ["carrier", "request", "outcome"],
            registry=r,
        )
        self.asr_latency = Histogram(
            "voicebot_asr_seconds",
            "Final transcription latency.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.end_of_speech_to_final = Histogram(
            "voicebot_end_of_speech_to_final_seconds",
            "Candidate's last voiced sample to final transcript.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.response_latency = Histogram(
            "voicebot_response_seconds",
            "Candidate's last voiced sample to first bot audio frame sent (voice-to-voice).",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.gc_pause = Histogram(
            "voicebot_gc_pause_seconds",
            "Python garbage-collection pauses (they stop the event loop), by generation.",
            ["generation"],
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2),
            registry=r,
        )
        self.loop_lag = Histogram(
            "voicebot_event_loop_lag_seconds",
            "How late the event loop woke a 50 ms timer: what a stall (CPU starvation, a"
            " collection, blocking work) adds to every call's outgoing audio at that moment.",
            buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0),
            registry=r,
        )
        self.barge_ins = Counter(
            "voicebot_barge_ins_total", "Bot prompts cut by the candidate.", registry=r
        )
        self.inbound_gaps = Counter(
            "voicebot_inbound_gaps_total",
            "Times the carrier's media timestamps skipped 40 ms or more of the candidate's audio"
            " (filled with silence, so a pause in the answer grows by as much).",
            registry=r,
        )
        self.unheard_speech = Counter(
            "voicebot_unheard_speech_total",
            "Stretches of the candidate's voice (level well above the line's noise floor, 0.3 s"
            " or more) that no turn took in: words the interview did not hear.",
            ["vad"],
            registry=r,
        )
        self.unheard_speech_seconds = Counter(
            "voicebot_unheard_speech_seconds_total",
            "Seconds of the candidate's voice that no turn took in; vad: what the VAD made of"
            " it (silent: scored it non-speech; short: speech too short to start a turn).",
            ["vad"],
            registry=r,
        )
        self.speech_recovered = Counter(
            "voicebot_speech_recovered_total",
            "Stretches of the candidate's voice no turn took in at first, taken in late as a turn"
            " of their own (the call was waiting for an answer).",
            ["vad"],
            registry=r,
        )
        self.speech_recovered_seconds = Counter(
            "voicebot_speech_recovered_seconds_total",
            "Seconds of the candidate's voice taken in late as a turn of its own.",
            ["vad"],
            registry=r,
        )
        self.vad_resets = Counter(
            "voicebot_vad_resets_total",
            "Silero VAD recurrent-state resets; reason: quiet (every 2 s of clear non-speech) or"
            " unheard (after voice it scored as non-speech).",
            ["reason"],
            registry=r,
        )
        self.turn_onsets_moved = Counter(
            "voicebot_turn_onsets_moved_total",
            "Turns the VAD started after the candidate's voice had begun, moved back to where the"
            " voice began (their first words would otherwise be lost).",
            registry=r,
        )
        self.turn_decisions = Counter(
            "voicebot_turn_decisions_total",
            "End-of-turn policy decisions at pauses, by reason (smart_turn_words, smart_turn,"
            " words_unfinished, thinking, short_answer, closer, closed_finished, silence, ...).",
            ["reason"],
            registry=r,
        )
        self.inbound_gap_seconds = Counter(
            "voicebot_inbound_gap_seconds_total",
            "Candidate audio the carrier skipped, filled with silence.",
            registry=r,
        )
        self.late_frames = Counter(
            "voicebot_playout_late_frames_total",
            "Bot frames sent more than one frame late.",
            registry=r,
        )
        self.asr_queued = Gauge(
            "voicebot_asr_queued",
            "Transcriptions waiting for a Whisper worker (finals wait here when calls outpace"
            " ASR; the audio path does not).",
            registry=r,
        )
        self.asr_busy_seconds = Gauge(
            "voicebot_asr_busy_seconds",
            "Worker-seconds spent transcribing since start (rate = busy workers).",
            registry=r,
        )
        self.asr_transcriptions = Gauge(
            "voicebot_asr_transcriptions",
            "Transcriptions completed since start (finals, speculative finals and partials).",
            registry=r,
        )
        self.asr_reused = Gauge(
            "voicebot_asr_finals_reused",
            "Final transcriptions answered with the words at the pause that ended the turn (the"
            " same audio: a short answer), without a second Whisper run (kept words, or their"
            " decode joined in flight).",
            registry=r,
        )
        self.asr_joined = Gauge(
            "voicebot_asr_finals_joined",
            "Of voicebot_asr_finals_reused: finals that came while those pause words were queued"
            " or being decoded, and waited for that decode instead of running their own.",
            registry=r,
        )
        self.asr_decodes = Gauge(
            "voicebot_asr_decodes",
            "Whisper model runs since start; each decodes one transcription or a batch of them"
            " (transcriptions / decodes = the mean batch).",
            registry=r,
        )
        self.prefixes = Counter(
            "voicebot_asr_prefix_total",
            "Transcripts of an answer's beginning (questions with a follow-up), by outcome:"
            " settled (the follow-up was ruled out, so the next question can start at the end of"
            " the turn), unsettled, or cancelled (the turn ended first).",
            ["outcome"],
            registry=r,
        )
        self.speculations = Counter(
            "voicebot_asr_speculations_total",
            "Speculative final transcriptions started at a pause, by outcome: kept (the turn"
            " ended there) or discarded (the candidate went on; Whisper time spent for nothing"
            " if it had started).",
            ["outcome"],
            registry=r,
        )
        self.pause_words_skipped = Counter(
            "voicebot_pause_words_skipped_total",
            "Pauses whose words were not transcribed because the ASR pool was behind on final"
            " transcriptions (answers come first under load; the policy then decides on"
            " smart-turn and the waits alone).",
            registry=r,
        )
        self.pause_words_secs = Histogram(
            "voicebot_pause_words_seconds",
            "From a pause in a candidate's turn to the words of its last seconds (what the"
            " end-of-turn policy reads), transcribed ahead of other ASR work.",
            buckets=(0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0),
            registry=r,
        )
        self.partials = Counter(
            "voicebot_asr_partials_total",
            "Interim transcripts of watched calls, by outcome: published, skipped (the ASR pool"
            " was busy, finals first) or dropped (replaced or pushed out of the queue).",
            ["outcome"],
            registry=r,
        )
        self.monitor_logins = Counter(
            "voicebot_monitor_logins_total",
            "Monitor sign-ins, by outcome: ok, failed (wrong user or password), throttled, refused"
            " (posted from another origin).",
            ["outcome"],
            registry=r,
        )
        self.monitor_watchers = Gauge(
            "voicebot_monitor_sockets",
            "Open monitor WebSockets (call lists, calls watched, listen-ins).",
            registry=r,
        )
        self.smart_turn = Counter(
            "voicebot_smart_turn_total",
            "Smart-turn verdicts at pauses, by outcome: run (at the pause), early (started"
            " before the pause, on the audio padded with silence, and used), skipped (the pause"
            " was over before the model got to it), early_unused (started early, but the"
            " candidate went on before the pause).",
            ["outcome"],
            registry=r,
        )
        self.vad_batch_mean = Gauge(
            "voicebot_vad_batch_mean_windows",
            "Mean VAD windows scored per model run since start (grows with concurrent calls).",
            registry=r,
        )
        self.tts_renders = Counter(
            "voicebot_tts_renders_total", "Prompts synthesised (cache misses).", registry=r
        )
        self.internal_errors = Counter(
            "voicebot_internal_errors_total",
            "Unexpected errors, by where they happened.",
            ["where"],
            registry=r,
        )

        self.purged = Counter(
            "voicebot_purged_total",
            "Items removed by the retention purge, by data class (recordings, transcripts,"
            " reports, events).",
            ["data_class"],
            registry=r,
        )
        self.erasures = Counter(
            "voicebot_erasures_total",
            "Candidates erased (DELETE /api/candidates/{id}).",
            registry=r,
        )
        self.audit_entries = Counter(
            "voicebot_audit_entries_total",
            "Entries appended to the audit log, by action.",
            ["action"],
            registry=r,
        )

    def render(self) -> bytes:
        """The Prometheus text exposition of all metrics."""
        return generate_latest(self.registry)
