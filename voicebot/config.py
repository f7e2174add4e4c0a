"""Server configuration: one typed place, read from ``VOICEBOT_*`` environment variables.

Every option has a default that runs fully offline on one machine (SQLite, in-process bus, bundled
models). The README's configuration table lists the same names; ``voicebot config`` prints the
effective values (secrets masked).
"""

from __future__ import annotations

import logging
import os
import re
import secrets
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ENV_PREFIX = "VOICEBOT_"
log = logging.getLogger(__name__)

ADMIN_CLIENT = "admin"
"""The API client of ``VOICEBOT_API_TOKEN``: sees every interview."""


class ConfigError(ValueError):
    """A configuration value is missing or malformed; the message names the variable."""


class Settings(BaseModel):
    """Effective server settings. Field ``x`` is read from ``VOICEBOT_X``."""

    model_config = {"extra": "forbid"}

    host: str = Field("127.0.0.1", description="Address the HTTP/WebSocket server binds.")
    port: int = Field(8080, description="Port the server listens on.")
    data_dir: Path = Field(
        PROJECT_ROOT / "data", description="Database, prompt audio cache, model cache."
    )
    recordings_dir: Path = Field(
        PROJECT_ROOT / "recordings", description="Where call recordings land."
    )
    dialogues_dir: Path = Field(PROJECT_ROOT / "dialogues", description="Job scripts (YAML).")
    public_url: str = Field(
        "",
        description="Base URL the carrier reaches (used in TwiML). Empty: taken from the request.",
    )
    api_token: str = Field(
        "",
        description="Bearer token for the REST API. Empty: a random one is generated and logged.",
    )
    api_clients: str = Field(
        "",
        description="Per-client API tokens for HR systems, `name=token,name2=token2`: each client "
        "sees only the interviews it created; VOICEBOT_API_TOKEN sees all (admin).",
    )
    twilio_auth_token: str = Field(
        "", description="Validates X-Twilio-Signature. Empty: no validation (warning logged)."
    )
    twilio_account_sid: str = Field(
        "",
        description="Twilio account SID (AC...) the dialer places outbound calls with, over"
        " Twilio's REST API authenticated by VOICEBOT_TWILIO_AUTH_TOKEN. Empty: no outbound calls.",
    )
    twilio_caller_id: str = Field(
        "",
        description="Caller ID of outbound calls (E.164, a Twilio number or verified caller ID of"
        " the account); a campaign may override it. Empty: no outbound calls.",
    )
    twilio_api_url: str = Field(
        "https://api.twilio.com",
        description="Base URL of Twilio's REST API (tests and Twilio-compatible carriers point it"
        " elsewhere).",
    )
    stream_token_secret: str = Field(
        "",
        description="HMAC key for stream tokens and report/recording links. Empty: random per "
        "process.",
    )
    data_key: str = Field(
        "",
        description="Encrypts candidates' data at rest (AES-256-GCM): `kid:base64key` entries, "
        "comma-separated; the first encrypts, all decrypt (rotation). `voicebot data-key "
        "generate` prints one. Empty: stored unencrypted (files still 0600).",
    )
    stream_token_ttl_secs: float = Field(
        120.0, description="How long a stream token in TwiML stays valid."
    )
    link_ttl_secs: float = Field(
        3600.0,
        gt=0,
        description="How long a signed link to a report page or a recording stays valid.",
    )
    retention_recordings_days: float = Field(
        0,
        ge=0,
        description="Days a call's recording (call.wav, timeline.jsonl) is kept after the call;"
        " 0: kept until erased.",
    )
    retention_transcripts_days: float = Field(
        0,
        ge=0,
        description="Days a call's transcript (the words of its turns and answers, its"
        " timeline.jsonl) is kept; 0: kept until erased.",
    )
    retention_reports_days: float = Field(
        0,
        ge=0,
        description="Days an interview's report is kept after it was built; 0: kept until erased.",
    )
    retention_events_days: float = Field(
        0,
        ge=0,
        description="Days durable events are kept in the event log, outbox and HR bridge store"
        " (delivered ones); 0: kept.",
    )
    redis_url: str = Field("", description="Redis URL for the event bus. Empty: embedded bus.")
    webhook_url: str = Field("", description="HR-system webhook endpoint.")
    webhook_secret: str = Field("", description="Standard Webhooks secret (whsec_...).")
    webhook_endpoints_file: str = Field(
        "",
        description="YAML/JSON file of several webhook endpoints (url, secret, event types).",
    )
    bridge: Literal["auto", "off"] = Field(
        "auto",
        description="Run the HR-system bridge inside the server when webhook endpoints are "
        "configured (auto), or not (off: run `voicebot bridge` separately).",
    )
    asr_model: str = Field(
        "",
        description="One faster-whisper model name or local path for every language (as before"
        " VOICEBOT_ASR_MODELS). Empty: each language gets its bundled model ('tiny.en' for"
        " English, the multilingual 'base' for the others).",
    )
    asr_models: str = Field(
        "",
        description="Whisper model per language, `en=tiny.en,zh=base` (name or local path);"
        " languages not named take VOICEBOT_ASR_MODEL, else their bundled model. Only the"
        " loaded scripts' languages are loaded; each model is shared by all calls in it.",
    )
    asr_workers: int = Field(
        1, description="Parallel Whisper decodes (shared by every language's model)."
    )
    asr_cpu_threads: int = Field(
        1,
        ge=1,
        description="CTranslate2 threads per decode. 1: each answer's decode costs about a"
        " quarter less CPU than on 2 threads (at ~30 ms more for a lone answer), and Whisper"
        " never takes both cores from the calls' audio work (docs/PERFORMANCE.md).",
    )
    asr_compute_type: str = Field("int8", description="CTranslate2 compute type.")
    asr_beam_size: int = Field(1, description="Whisper beam size (1 = greedy, fastest).")
    asr_beam_sizes: str = Field(
        "zh=5",
        description="Whisper beam size per language, `zh=5,en=1`, over VOICEBOT_ASR_BEAM_SIZE."
        " Chinese: 5, chosen on the Chinese evaluation set (fewer errors on conversational"
        " phone answers, about a fifth more CPU per answer; docs/PERFORMANCE.md).",
    )
    asr_nice: int = Field(
        5,
        ge=0,
        le=19,
        description="Scheduling niceness of the Whisper threads (Linux): real-time audio work"
        " (VAD, smart-turn, playout) wins the CPU over transcription under load. 0: no change.",
    )
    asr_process: bool = Field(
        False,
        description="Run Whisper in worker processes (one per ASR worker) instead of threads of"
        " the server, so its Python side never holds the server's GIL. Off by default: on two"
        " cores it measured worse at 30 and 40 calls (docs/PERFORMANCE.md).",
    )
    asr_batch: int = Field(
        4,
        ge=1,
        le=32,
        description="Most waiting transcriptions one Whisper decode takes together (same"
        " language and window): under load they share the decoder's per-word cost. Nothing"
        " waits for a batch to fill. 1: one at a time.",
    )
    asr_min_window_secs: float = Field(
        10.0,
        ge=0,
        le=30,
        description="Whisper encodes an utterance in a window of its own length + 1 s, at least"
        " this long, instead of its fixed 30 s (2-5x less CPU, same words on the shared English"
        " clips; Chinese keeps the full window). 30: always the full window.",
    )
    asr_prompt: str = Field(
        "",
        description="What Whisper is told before it hears an answer, per language:"
        " `zh=question+keywords` prompts the decoder with the question just asked and the"
        " keywords and rubric evidence of its competency (parts `lead`, `question`, `keywords`"
        " joined by `+`, or `none`). Languages not named get no prompt. Empty (default): no"
        " prompt; on the Chinese evaluation set prompts helped some answers and cut others"
        " short (docs/PERFORMANCE.md).",
    )
    tts_engine: str = Field(
        "piper", description="piper | espeak | edge (each falls back to the offline engines)."
    )
    tts_voice: str = Field("", description="Piper voice model path; empty = bundled en_US-joe.")
    allow_espeak_voice: str = Field(
        "",
        description="Languages (comma-separated, e.g. `zh`) whose jobs may be spoken by"
        " espeak-ng. A Chinese job with a prompt that only espeak-ng could say (no recording,"
        " no imported prompt pack, no Chinese neural engine configured) is not served"
        " otherwise: its Mandarin is unintelligible.",
    )
    vad_threshold: float = Field(0.5, description="Silero speech probability threshold.")
    vad_max_batch: int = Field(
        64,
        ge=1,
        description="Most calls' VAD windows scored in one model run (all calls share one"
        " batched VAD thread).",
    )
    vad_batch_wait_ms: float = Field(
        8.0,
        ge=0.0,
        le=32.0,
        description="Once one call's VAD window is ready, wait this long for other calls' before"
        " scoring them together (bigger batches, less CPU; adds at most this to end of turn).",
    )
    turn_pause_secs: float = Field(
        0.2, description="Short pause that triggers smart-turn and a speculative transcription."
    )
    smart_turn_early_secs: float = Field(
        0.1,
        ge=0.0,
        description="Start smart-turn this long before the pause (on the audio so far, padded"
        " with silence to the pause) while its thread is idle, so the verdict is ready when the"
        " pause is; 0: off. At most half of VOICEBOT_TURN_PAUSE_SECS is used.",
    )
    turn_policy: Literal["words", "acoustic"] = Field(
        "words",
        description="End-of-turn policy: words (smart-turn with the words so far, the question"
        " and the candidate's pace; voicebot/speech/turn_policy.py) or acoustic (smart-turn and"
        " silence only, the policy before; for comparison).",
    )
    turn_end_secs: float = Field(
        0.2,
        description="Silence that ends a turn that is clearly done: a short complete answer to a"
        " closed question, an answer that ends on a closer ('that's it', 'all right, thanks',"
        " '就这些'), or a closed answer smart-turn judged complete with finished words.",
    )
    turn_open_end_secs: float = Field(
        2.6,
        description="Silence that ends an answer to an open question after a finished sentence"
        " smart-turn judged complete, with no closer: candidates go on after such sentences"
        " after thinking pauses of up to 2.5 s (turn benchmark).",
    )
    turn_closed_finished_end_secs: float = Field(
        0.4,
        description="Silence that ends an answer to a closed question (or the consent) whose"
        " words read finished (Chinese: any words) while smart-turn is unsure or says it goes"
        " on.",
    )
    turn_finished_end_secs: float = Field(
        2.6,
        description="Silence that ends a turn whose words read finished while smart-turn says"
        " the candidate goes on (on phone audio it often does at real ends).",
    )
    turn_unconfirmed_end_secs: float = Field(
        1.0,
        description="Silence that ends a turn smart-turn judged complete while its words are"
        " not transcribed yet (the words, when they come, shorten or lengthen the wait).",
    )
    turn_max_silence_secs: float = Field(
        1.2,
        description="Silence that ends an answer to a closed question (yes/no, keypad, the"
        " consent answer) whatever else was said.",
    )
    turn_open_max_silence_secs: float = Field(
        2.6,
        description="Silence that ends an answer to an open question whatever else was said"
        " (thinking pauses are shorter); a script's question may set its own max_pause_secs.",
    )
    turn_unfinished_max_silence_secs: float = Field(
        4.0,
        description="Silence that ends an answer whose words end mid-sentence (a trailing 'and',"
        " 'uh', '然后', an opened list): the candidate is thinking (at least the question's"
        " ceiling).",
    )
    turn_min_answer_secs: float = Field(
        3.0,
        description="An answer to an open question shorter than this does not end on the fast"
        " path: it waits VOICEBOT_TURN_SHORT_ANSWER_END_SECS at least.",
    )
    turn_short_answer_end_secs: float = Field(
        2.6,
        description="Silence that ends an answer to an open question shorter than"
        " VOICEBOT_TURN_MIN_ANSWER_SECS that sounds and reads finished ('And so my fellow"
        " Americans.' is a preamble, followed by a 1 s pause).",
    )
    smart_turn_threshold: float = Field(
        0.8,
        ge=0.0,
        le=1.0,
        description="Smart-turn probability at or above which a pause counts as complete (0.8"
        " interrupted fewer thinking candidates than pipecat's 0.5 at the same latency on the"
        " turn benchmark's tune split).",
    )
    turn_hesitant_threshold: float = Field(
        0.2,
        ge=0.0,
        le=1.0,
        description="Smart-turn probability from which, up to VOICEBOT_SMART_TURN_THRESHOLD, the"
        " model is unsure: a pause whose words read finished then ends after"
        " VOICEBOT_TURN_HESITANT_END_SECS.",
    )
    turn_hesitant_end_secs: float = Field(
        2.6,
        gt=0,
        description="Silence that ends a turn smart-turn was unsure about and whose words read"
        " finished. A candidate who goes on within 2 s of the next prompt starting is not cut"
        " off: the prompt stops, the answer continues and the prompt is said again.",
    )
    turn_pace_margin_secs: float = Field(
        0.6,
        ge=0,
        description="A candidate who already went on after a pause this call gets that pause"
        " plus this much before the bot takes its turn (up to VOICEBOT_TURN_PACE_CAP_SECS), after"
        " a finished sentence too; not after a closer.",
    )
    turn_pace_cap_secs: float = Field(
        4.0, gt=0, description="Most the candidate's own pace raises the silence ceiling to."
    )
    turn_think_secs: float = Field(
        8.0,
        gt=0,
        description="Silence allowed after 'let me think' / '让我想想' (the bot says 'take your"
        " time' once).",
    )
    smart_turn_threads: int = Field(
        1,
        ge=1,
        description="Threads running smart-turn. 2 lets coinciding pauses be judged side by side,"
        " but on 2 cores each inference then runs slower (measured: worse at 20 calls).",
    )
    smart_turn_cpu_threads: int = Field(
        2,
        ge=1,
        description="Threads one smart-turn inference is split over (capped at the CPU count)."
        " 2 takes a verdict from about 84 to 49 ms on an idle core for 5 % more CPU; 1 for"
        " the least CPU.",
    )
    smart_turn: bool = Field(True, description="Use pipecat's smart-turn model for end of turn.")
    barge_in_min_secs: float = Field(
        0.3, description="Candidate speech needed to interrupt the bot (stops playout)."
    )
    barge_in_resume_secs: float = Field(
        0.064,
        ge=0,
        description="Voice needed to stop a prompt that started at the end of an answer less"
        " than 2 s ago (the candidate had not finished): the bot goes quiet at once, the answer"
        " goes on in the same turn and the prompt is said again when it ends.",
    )
    prestart_min_speech_secs: float = Field(
        2.0,
        ge=0,
        description="Answers at least this long start the next (pre-rendered) question the "
        "instant the turn ends; shorter turns wait for their words (a request to repeat or to "
        "stop is short).",
    )
    monitor_session_ttl_secs: float = Field(
        8 * 3600.0,
        gt=0,
        description="A recruiter's monitor login lasts this long after their last request.",
    )
    cookie_secure: bool = Field(
        True,
        description="Mark the monitor's session cookie Secure (sent over HTTPS only; browsers"
        " also send it to http://localhost). false only for plain-HTTP test set-ups on other"
        " hosts.",
    )
    live_partials: bool = Field(
        True,
        description="Stream interim transcripts (LocalAgreement) of calls a recruiter watches,"
        " from the shared ASR pool at low priority (skipped when it is busy).",
    )
    live_partial_interval_secs: float = Field(
        0.8,
        gt=0.1,
        description="New speech between two interim transcriptions of a watched call.",
    )
    max_calls: int = Field(100, description="Concurrent calls accepted; more are refused.")
    dialer_max_calls: int = Field(
        20,
        ge=0,
        description="Calls the dialer holds at once in this process (being placed or ringing), "
        "live calls counted too; it places no call above this. 0: the dialer places nothing.",
    )
    dialer_calls_per_sec: float = Field(
        1.0,
        gt=0,
        description="Calls the dialer places per second at most (the carrier's limit; Twilio's "
        "default is 1). Halved for a while when the carrier answers 429.",
    )
    dialer_ring_timeout_secs: float = Field(
        30.0, gt=0, le=600, description="How long an outbound call rings before it is no answer."
    )
    dialer_status_timeout_secs: float = Field(
        120.0,
        gt=0,
        description="An outbound call whose outcome the carrier never reports is settled as no "
        "answer this long after its ring timeout.",
    )
    dialer_hold_asr_backlog: int = Field(
        3,
        ge=1,
        description="The dialer places no call while this many final transcriptions wait for "
        "Whisper (live calls keep their latency budget).",
    )
    dialer_hold_loop_lag_ms: float = Field(
        50.0,
        gt=0,
        description="The dialer places no call while the event loop wakes this late or later.",
    )
    max_message_bytes: int = Field(65536, description="Largest carrier WebSocket message.")
    stream_start_timeout_secs: float = Field(
        5.0,
        gt=0,
        description="A carrier stream that has not sent a valid `start` this long after it "
        "opened is closed.",
    )
    stream_max_pending: int = Field(
        200,
        gt=0,
        description="Carrier streams open at once that have not sent a valid `start` yet (no "
        "token checked); more are refused (HTTP 503) before the WebSocket upgrade.",
    )
    stream_max_pending_per_address: int = Field(
        50,
        gt=0,
        description="Of those, how many may come from one remote address (behind a reverse "
        "proxy, the proxy's address).",
    )
    unauth_requests_per_min: int = Field(
        600,
        ge=0,
        description="Requests a minute one client address may make to the routes anyone can"
        " reach (Twilio webhooks, monitor sign-in, signed report/recording links); more get a"
        " 429. 0: no limit (behind a reverse proxy, which shows one address for everyone).",
    )
    api_max_body_bytes: int = Field(
        262144,
        gt=0,
        description="Largest JSON request body of the REST API; larger ones get a 413.",
    )
    api_max_import_bytes: int = Field(
        16 * 1024 * 1024,
        gt=0,
        description="Largest body of `POST /api/campaigns/{id}/interviews` (candidates in bulk,"
        " JSON or CSV; 10,000 rows are about 1 MB); larger ones get a 413.",
    )
    prompt_cache_dir: Path | None = Field(
        None, description="Rendered prompt audio; default <VOICEBOT_DATA_DIR>/prompt-cache."
    )
    log_level: str = Field("INFO", description="Logging level.")
    event_loop: Literal["auto", "uvloop", "asyncio"] = Field(
        "auto",
        description="Event loop of the server: uvloop (less CPU per audio frame), asyncio, or"
        " auto (uvloop when installed).",
    )
    prerender_prompts: bool = Field(
        True, description="Render every scripted prompt to audio at start-up."
    )

    @field_validator("twilio_caller_id")
    @classmethod
    def _check_caller_id(cls, value: str) -> str:
        value = value.strip()
        if value and not re.fullmatch(r"\+[1-9][0-9]{6,14}", value):
            raise ValueError(
                "the caller ID must be an E.164 number: '+', the country code and the number,"
                f" 7-15 digits and nothing else (e.g. +14155550100), got {value!r}"
            )
        return value

    @field_validator("twilio_api_url")
    @classmethod
    def _check_twilio_api_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", value):
            raise ValueError(
                "must be an http(s) base URL without query, e.g. https://api.twilio.com"
            )
        return value

    @model_validator(mode="after")
    def _check_turn_timing(self) -> Settings:
        waits = (self.turn_pause_secs, self.turn_end_secs, self.turn_max_silence_secs)
        if min(waits) <= 0 or list(waits) != sorted(waits):
            raise ValueError(
                "end-of-turn waits must be positive and in order: VOICEBOT_TURN_PAUSE_SECS <= "
                "VOICEBOT_TURN_END_SECS <= VOICEBOT_TURN_MAX_SILENCE_SECS, got "
                f"{' / '.join(str(w) for w in waits)}"
            )
        from voicebot.speech.asr import parse_beam_map, parse_model_map

        parse_model_map(self.asr_models)  # a malformed map stops the start, saying which entry
        parse_beam_map(self.asr_beam_sizes)
        from voicebot.dialogue.recognition_prompt import parse_prompt_parts

        parse_prompt_parts(self.asr_prompt)
        if self.turn_hesitant_threshold > self.smart_turn_threshold:
            raise ValueError(
                "VOICEBOT_TURN_HESITANT_THRESHOLD must not exceed VOICEBOT_SMART_TURN_THRESHOLD,"
                f" got {self.turn_hesitant_threshold} > {self.smart_turn_threshold}"
            )
        return self

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``VOICEBOT_*`` variables; ``overrides`` win over the environment."""
        env = dict(os.environ if env is None else env)
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            key = ENV_PREFIX + name.upper()
            if key in env and env[key] != "":
                values[name] = env[key]
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            settings = cls(**values)
        except ValidationError as exc:
            problems = "; ".join(
                f"{ENV_PREFIX}{'.'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
                if err["loc"]
                else err["msg"].removeprefix("Value error, ")
                for err in exc.errors()
            )
            raise ConfigError(f"invalid configuration: {problems}") from None
        return settings

    def resolved_api_token(self) -> str:
        """Return the API token, generating (and logging once) a random one if unset."""
        if not self.api_token:
            self.api_token = secrets.token_urlsafe(24)
            log.warning(
                "VOICEBOT_API_TOKEN is not set: generated a token for this process: %s",
                self.api_token,
            )
        return self.api_token

    def api_client_tokens(self) -> dict[str, str]:
        """Client name -> token from ``api_clients``; raises ValueError on a malformed entry."""
        clients: dict[str, str] = {}
        for entry in filter(None, (part.strip() for part in self.api_clients.split(","))):
            name, sep, token = entry.partition("=")
            name, token = name.strip(), token.strip()
            if not sep or not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name) or len(token) < 16:
                raise ValueError(
                    f"VOICEBOT_API_CLIENTS entry {name or entry[:8]!r}: write name=token (name: "
                    "letters, digits, _ . -; token: at least 16 characters)"
                )
            if name == ADMIN_CLIENT or name in clients:
                raise ValueError(f"VOICEBOT_API_CLIENTS: client name {name!r} is used twice")
            clients[name] = token
        return clients

    def data_keyring(self) -> Any:
        """The :class:`voicebot.crypto.Keyring` of ``data_key``, None when unset.

        Raises ConfigError on a malformed key (the message says how to fix it).
        """
        from voicebot.crypto import DataKeyError, Keyring

        try:
            return Keyring.parse(self.data_key)
        except DataKeyError as exc:
            raise ConfigError(str(exc)) from None

    def asr_prompt_parts(self, language: str) -> set[str]:
        """What goes into the decoder prompt of an answer in ``language`` (empty: no prompt)."""
        from voicebot.dialogue.recognition_prompt import parse_prompt_parts

        return parse_prompt_parts(self.asr_prompt).get(language.split("-")[0].lower(), set())

    def asr_model_map(self, languages: Any) -> dict[str, str]:
        """The Whisper model each of ``languages`` (the loaded scripts') is transcribed with."""
        from voicebot.speech.asr import models_for_languages, parse_model_map

        return models_for_languages(
            languages, models=parse_model_map(self.asr_models), model=self.asr_model
        )

    def describe(self) -> dict[str, Any]:
        """Settings as a dict with secrets masked (for ``voicebot config`` and logs)."""
        secret_fields = {
            "api_token",
            "api_clients",
            "twilio_auth_token",
            "stream_token_secret",
            "webhook_secret",
            "data_key",
        }
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if name in secret_fields and value:
                value = "***"
            out[ENV_PREFIX + name.upper()] = str(value)
        return out
