"""The process-wide parts every call shares: models, worker pools, store, scripts, metrics.

Built once at server start (``Services.start``) and torn down at shutdown. Models are loaded once
per process, in worker threads, before the first call is accepted.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from voicebot.api.links import LinkSigner
from voicebot.audio.frames import TELEPHONY_RATE
from voicebot.call.claims import CallClaims
from voicebot.call.recorder import PlainFiles, RecordingFiles, recording_files
from voicebot.call.settle import CallSettler, ProcessIdentity
from voicebot.config import ConfigError, Settings
from voicebot.crypto import Keyring, make_private_dir, tighten_tree
from voicebot.dialogue.script import JobScript, load_scripts, prompt_texts, recorded_prompts
from voicebot.events.emitter import EventEmitter, candidate_status, interview_refs
from voicebot.events.live import LiveHub
from voicebot.metrics import Metrics
from voicebot.speech.asr import ASRPool, parse_beam_map
from voicebot.speech.prompt_cache import PromptCache
from voicebot.speech.tts import TTSEngine, build_tts
from voicebot.speech.turn import SmartTurnModel, TurnConfig
from voicebot.speech.turn_policy import TurnPolicyConfig
from voicebot.speech.vad import SileroModel
from voicebot.speech.vad_batch import VadBatcher
from voicebot.store.database import Store
from voicebot.telephony.stream_token import TokenSigner
from voicebot.threads import name_native_thread

log = logging.getLogger(__name__)


EventIds = Callable[[str], "str | None"]
"""An event's id by its type (see :func:`voicebot.events.types.derived_event_id`)."""

ANSWER_DRAIN_SECS = 60.0
"""At shutdown, how long ended calls' answers may wait for Whisper before the pool closes."""


@dataclass
class Services:
    """Shared state of one server process."""

    settings: Settings
    metrics: Metrics = field(default_factory=Metrics)
    store: Store | None = None
    scripts: dict[str, JobScript] = field(default_factory=dict)
    asr: ASRPool | None = None
    tts: TTSEngine | None = None
    prompts: PromptCache | None = None
    recordings: dict[str, dict[str, bytes]] = field(default_factory=dict)
    refused_jobs: dict[str, str] = field(default_factory=dict)
    """Jobs not served, by id, with why (a Chinese job only espeak-ng could speak)."""
    """Recorded prompts as 8 kHz mu-law, by job id then prompt id (played instead of TTS)."""
    vad_model: SileroModel | None = None
    smart_turn: SmartTurnModel | None = None
    token_signer: TokenSigner | None = None
    """Signs the stream tokens the voice webhook puts in TwiML (purpose ``stream``)."""
    vad_executor: ThreadPoolExecutor | None = None
    turn_executor: ThreadPoolExecutor | None = None
    smart_turn_pending: int = 0
    """Smart-turn inferences submitted to ``turn_executor`` and not finished (all calls)."""
    sessions: dict[str, object] = field(default_factory=dict)
    call_claims: CallClaims = field(default_factory=CallClaims)
    """Calls (and their interviews) that have a stream, claimed before it is set up."""
    live: LiveHub = field(default_factory=LiveHub)
    """Live call events (transcripts, prosody samples, script position) for watchers."""
    bus: Any = None
    """The event bus (embedded SQLite, or Redis when ``VOICEBOT_REDIS_URL`` is set)."""
    events: EventEmitter | None = None
    """Durable events to the bus, in order (``None`` before start)."""
    bridge: Any = None
    """The HR-system bridge when it runs in this process (webhook endpoints configured)."""
    registry: Any = None
    """Live and recent calls of every process, for the monitor's lists."""
    accounts: Any = None
    """Recruiter accounts and monitor sessions (SQLite, or Redis when configured)."""
    login_throttle: Any = None
    """Failed monitor sign-ins per user and address (shared through Redis when configured)."""
    link_signer: LinkSigner | None = None
    """Signs the expiring links in reports (the report page, recordings)."""
    keyring: Keyring | None = None
    """The data keys (``VOICEBOT_DATA_KEY``): candidates' data is encrypted at rest; None: not."""
    pending_answers: set[asyncio.Task] = field(default_factory=set)
    """Ended calls' answers still waiting for their words (Whisper behind); drained at close."""
    reports: set[asyncio.Task] = field(default_factory=set)
    """Reports being built after calls ended; drained at close."""
    process: ProcessIdentity = field(default_factory=ProcessIdentity.current)
    """This server process, as the store knows it (the owner of the calls it holds)."""
    settler: CallSettler | None = None
    """Heartbeat of this process; settles the calls of dead processes (``None`` before start)."""
    carrier: Any = None
    """The outbound carrier (:class:`voicebot.telephony.outbound.OutboundCarrier`) the dialer
    places calls through; ``None``: this process places none (it still settles callbacks)."""
    dialer: Any = None
    """Outbound campaigns' dialer (:class:`voicebot.campaigns.dialer.Dialer`; after start)."""
    recording_files: RecordingFiles = field(default_factory=PlainFiles)
    """Where call recordings are written: encrypted with a data key (set at start), else plain."""
    audit: Any = None
    """The audit log (``voicebot.privacy.audit.AuditLog``): who read or changed which data."""
    _vad_batcher: VadBatcher | None = None
    _bridge_store: Any = None
    _purge_task: asyncio.Task | None = None

    def keep_until_stored(self, task: asyncio.Task) -> None:
        """Hold a finished call's answer task until it has stored the words."""
        self.pending_answers.add(task)
        task.add_done_callback(self.pending_answers.discard)

    def schedule_report(
        self,
        interview_id: str,
        job_id: str,
        end_reason: str | None,
        after: Sequence[asyncio.Task] = (),
    ) -> asyncio.Task:
        """Build and store an interview's report once the call's answers are stored.

        The interview is ``scoring`` meanwhile and takes its outcome status when the report is
        stored (also if building it fails: the outcome is not held back, the failure is logged
        and counted, and ``GET /api/interviews/{id}`` builds the report again on demand).
        """
        task = asyncio.create_task(
            self._build_report(interview_id, job_id, end_reason, list(after), time.monotonic()),
            name=f"report:{interview_id}",
        )
        self.reports.add(task)
        task.add_done_callback(self.reports.discard)
        return task

    async def report_events(
        self, interview_id: str, report: dict, status: str, event_ids: EventIds | None = None
    ) -> None:
        """``interview.completed`` with the report, and the candidate's new status if any.

        ``event_ids`` gives each event's id (for work that may run again: the ids repeat).
        """
        if self.events is None:
            return
        interview = await self.store.get_interview(interview_id)
        if interview is None:
            return
        from voicebot.api.links import report_links

        refs = interview_refs(interview)
        s = self.settings
        base = s.public_url or f"http://{s.host}:{s.port}"
        links = None if self.link_signer is None else report_links(self.link_signer, base, report)
        ids = event_ids or (lambda _type: None)
        self.events.emit_with_id(
            ids("interview.completed"),
            "interview.completed",
            **refs,
            status=status,
            report=report,
            links=links,
        )
        new_status = candidate_status(status, report.get("recommendation"))
        if new_status is not None:
            self.events.emit_with_id(
                ids("candidate.status_changed"),
                "candidate.status_changed",
                **refs,
                status=new_status,
            )

    async def _start_bus(self) -> None:
        """The event bus (Redis or embedded) and the writer of durable events to it."""
        from voicebot.events.bus import build_bus

        s = self.settings
        self.bus = build_bus(s.redis_url, s.data_dir, keyring=self.keyring)
        await self.bus.start()
        live = getattr(self.bus, "live", None)
        if live is not None:
            self.live = live  # in Redis mode, every process's live events reach every watcher
        self.events = EventEmitter(self.bus)
        self.events.start()
        from voicebot.monitor.accounts import build_accounts, build_throttle
        from voicebot.monitor.registry import CallRegistry, RedisRegistry

        if s.redis_url:
            self.registry = RedisRegistry(self.live, self.store, s.redis_url)
        else:
            self.registry = CallRegistry(self.live, self.store)
        await self.registry.start()
        self.accounts = build_accounts(s)
        await self.accounts.open()
        self.login_throttle = build_throttle(s)
        log.info("event bus: %s", "redis" if s.redis_url else "embedded (SQLite)")
        await self._start_bridge()

    async def _start_bridge(self) -> None:
        """The HR-system bridge in this process, when webhook endpoints are configured.

        With several server processes on one Redis each may run one: they share the consumer
        group, so every event is delivered once between them (``VOICEBOT_BRIDGE=off`` to run
        ``voicebot bridge`` on its own instead).
        """
        s = self.settings
        if s.bridge == "off":
            return
        from hris_bridge.bridge import Bridge
        from hris_bridge.endpoints import load_endpoints
        from hris_bridge.store import DeliveryStore

        endpoints = load_endpoints(
            {},
            url=s.webhook_url,
            secret=s.webhook_secret,
            endpoints_file=s.webhook_endpoints_file,
        )
        if not endpoints:
            return
        self._bridge_store = await DeliveryStore.open(
            s.data_dir / "hris_bridge.db", keyring=self.keyring
        )
        self.bridge = Bridge(self.bus, self._bridge_store, endpoints)
        self.bridge.start()
        log.info("HR bridge running in this process: %d webhook endpoints", len(endpoints))

    async def resume_reports(self) -> int:
        """Build the reports a previous process left unbuilt (interviews still ``scoring``)."""
        assert self.store is not None
        interviews = await self.store.interviews_with_status("scoring")
        for interview in interviews:
            calls = await self.store.calls_for_interview(interview["id"])
            reason = calls[-1]["end_reason"] if calls else None
            self.schedule_report(interview["id"], interview["job_id"], reason)
        return len(interviews)

    async def build_report(
        self,
        interview_id: str,
        job_id: str,
        end_reason: str | None,
        event_ids: EventIds | None = None,
    ) -> None:
        """Build, store and announce an interview's report now (as :meth:`schedule_report`)."""
        await self._build_report(
            interview_id, job_id, end_reason, [], time.monotonic(), event_ids=event_ids
        )

    async def _build_report(
        self,
        interview_id: str,
        job_id: str,
        end_reason: str | None,
        after: list[asyncio.Task],
        started: float,
        event_ids: EventIds | None = None,
    ) -> None:
        from voicebot.dialogue.report import build_report, interview_status

        assert self.store is not None
        if after:
            await asyncio.wait(after, timeout=ANSWER_DRAIN_SECS)
        status = interview_status(end_reason)
        script = self.scripts.get(job_id)
        try:
            if script is None:
                raise LookupError(f"job script {job_id!r} is not loaded")
            report = await build_report(self.store, script, interview_id)
        except Exception:
            log.exception("interview %s: building the report failed", interview_id)
            self.metrics.reports.labels("failed").inc()
            await self.store.update_interview(interview_id, status=status)
            return
        status = interview_status(end_reason, report)
        await self.store.save_report(interview_id, report, status)
        self.metrics.reports.labels("built").inc()
        if self.registry is not None:  # the monitor's recent calls show the outcome
            self.registry.outcome(interview_id, status)
        await self.report_events(interview_id, report, status, event_ids)
        if self.dialer is not None:  # an outbound campaign calls again after a cut-short call
            try:
                await self.dialer.interview_held(interview_id, status)
            except Exception:
                self.metrics.internal_errors.labels("dialer").inc()
                log.exception(
                    "interview %s: scheduling the campaign's next call failed", interview_id
                )
        self.metrics.report_seconds.observe(time.monotonic() - started)
        log.info("interview %s: report stored (%s)", interview_id, status)

    @property
    def vad_batcher(self) -> VadBatcher:
        """The process's VAD scheduler: every call's windows scored together in the VAD thread."""
        if self._vad_batcher is None:
            assert self.vad_model is not None and self.vad_executor is not None
            self._vad_batcher = VadBatcher(
                self.vad_model,
                self.vad_executor,
                max_batch=self.settings.vad_max_batch,
                gather_secs=self.settings.vad_batch_wait_ms / 1000,
            )
        return self._vad_batcher

    @property
    def turn_config(self) -> TurnConfig:
        """End-of-turn thresholds from the settings."""
        s = self.settings
        return TurnConfig(
            speech_threshold=s.vad_threshold,
            pause_secs=s.turn_pause_secs,
            early_secs=min(s.smart_turn_early_secs, s.turn_pause_secs / 2),
            end_secs=s.turn_end_secs,
            max_silence_secs=s.turn_max_silence_secs,
            smart_turn_threshold=s.smart_turn_threshold,
            hesitant_threshold=s.turn_hesitant_threshold,
            hesitant_end_secs=min(
                max(s.turn_hesitant_end_secs, s.turn_end_secs), s.turn_max_silence_secs
            ),
        )

    @cached_property
    def turn_policy_config(self) -> TurnPolicyConfig:
        """The end-of-turn policy's waits and thresholds from the settings."""
        s = self.settings
        return TurnPolicyConfig(
            end_secs=s.turn_end_secs,
            open_end_secs=max(s.turn_open_end_secs, s.turn_end_secs),
            closed_finished_end_secs=max(s.turn_closed_finished_end_secs, s.turn_end_secs),
            finished_end_secs=max(s.turn_finished_end_secs, s.turn_end_secs),
            unconfirmed_end_secs=max(s.turn_unconfirmed_end_secs, s.turn_end_secs),
            hesitant_end_secs=max(s.turn_hesitant_end_secs, s.turn_end_secs),
            complete_threshold=s.smart_turn_threshold,
            hesitant_threshold=s.turn_hesitant_threshold,
            open_max_silence_secs=s.turn_open_max_silence_secs,
            unfinished_max_silence_secs=s.turn_unfinished_max_silence_secs,
            closed_max_silence_secs=s.turn_max_silence_secs,
            min_open_answer_secs=s.turn_min_answer_secs,
            short_open_end_secs=s.turn_short_answer_end_secs,
            pace_margin_secs=s.turn_pace_margin_secs,
            pace_fast_margin_secs=s.turn_pace_margin_secs,
            pace_cap_secs=s.turn_pace_cap_secs,
            think_secs=s.turn_think_secs,
        )

    async def start(self) -> None:
        """Open the store, load scripts and models, pre-render every scripted prompt."""
        s = self.settings
        s.api_client_tokens()  # a malformed VOICEBOT_API_CLIENTS stops the start, saying why
        self.keyring = s.data_keyring()  # a malformed VOICEBOT_DATA_KEY stops the start
        self.recording_files = recording_files(self.keyring)  # the recorder's and the settler's
        await asyncio.to_thread(self._private_folders)
        self.store = Store(s.data_dir / "voicebot.sqlite3", keyring=self.keyring)
        await self.store.open()
        await self._check_data_keys()
        from voicebot.privacy.audit import AuditLog

        self.audit = AuditLog(self.store.path, self.metrics)
        await self.audit.open()
        await self._start_bus()
        self.scripts = load_scripts(s.dialogues_dir)
        log.info("loaded %d job scripts from %s", len(self.scripts), s.dialogues_dir)
        secret = (
            s.stream_token_secret.encode() if s.stream_token_secret else secrets.token_bytes(32)
        )
        self.token_signer = TokenSigner(secret, ttl_secs=s.stream_token_ttl_secs, purpose="stream")
        self.link_signer = LinkSigner.from_secret(secret, ttl_secs=s.link_ttl_secs)
        self.vad_executor = ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix="vad",
            initializer=name_native_thread,
            initargs=("vad",),
        )
        self.turn_executor = ThreadPoolExecutor(
            max_workers=s.smart_turn_threads,
            thread_name_prefix="smart-turn",
            initializer=name_native_thread,
            initargs=("smart-turn",),
        )
        asr_models = s.asr_model_map(script.language for script in self.scripts.values())
        self.asr = ASRPool(
            models=asr_models,
            workers=s.asr_workers,
            cpu_threads=s.asr_cpu_threads,
            compute_type=s.asr_compute_type,
            beam_size=s.asr_beam_size,
            beam_sizes=parse_beam_map(s.asr_beam_sizes),
            cache_dir=s.data_dir / "models",
            nice=s.asr_nice,
            min_window_secs=s.asr_min_window_secs,
            process=s.asr_process,
            batch=s.asr_batch,
        )
        self.tts = build_tts(
            s.tts_engine, voice_path=s.tts_voice or None, model_dir=s.data_dir / "models"
        )
        self.prompts = PromptCache(s.prompt_cache_dir or s.data_dir / "prompt-cache", self.tts)
        loop = asyncio.get_running_loop()
        self.vad_model, self.smart_turn, _ = await asyncio.gather(
            loop.run_in_executor(self.vad_executor, SileroModel.shared, TELEPHONY_RATE),
            loop.run_in_executor(
                self.turn_executor,
                SmartTurnModel.shared,
                max(1, min(s.smart_turn_cpu_threads, os.cpu_count() or 1)),
            )
            if s.smart_turn
            else asyncio.sleep(0, None),
            self.asr.start(),
        )
        log.info(
            "ASR models by language: %s",
            ", ".join(f"{lang}={name}" for lang, name in asr_models.items()),
        )
        for script in self.scripts.values():
            if script.language not in self.asr.languages:
                log.error(
                    "job %s cannot be interviewed (its calls are refused): %s",
                    script.id,
                    self.asr.unserved_reason(script.language),
                )
        if any(script.language == "zh" for script in self.scripts.values()):
            from voicebot.dialogue.text import prewarm

            await asyncio.to_thread(prewarm)  # Chinese word segmentation's dictionary
        await self.load_recordings()
        await self.refuse_voiceless_jobs()
        await self.seed_bundled_prompts()
        if s.prerender_prompts:
            await self.prerender()
        self.settler = CallSettler(self, self.process)
        settled = await self.settler.start()
        if settled:
            log.warning("settled %d calls left open by a dead server process", settled)
        from voicebot.campaigns.dialer import Dialer

        if self.carrier is None:
            from voicebot.telephony.twilio_rest import carrier_from_settings

            self.carrier = carrier_from_settings(s, self.metrics)
        self.dialer = Dialer(self, self.carrier)
        self.dialer.start()
        resumed = await self.resume_reports()
        if resumed:
            log.warning("building %d interview reports a previous process left", resumed)
        from voicebot.privacy.retention import run_daily

        self._purge_task = asyncio.create_task(run_daily(self), name="retention-purge")

    async def _check_data_keys(self) -> None:
        """Refuse to start when stored data needs a key ``VOICEBOT_DATA_KEY`` does not hold."""
        assert self.store is not None
        in_use = await self.store.key_ids_in_use()
        missing = sorted(in_use - set(self.keyring.by_kid if self.keyring else ()))
        if missing:
            await self.store.close()
            raise ConfigError(
                f"stored candidate data is encrypted with key id(s) {', '.join(missing)}, which "
                "VOICEBOT_DATA_KEY does not hold: add them back (after the current key), and "
                "remove a key only after `voicebot data-key rotate` has run"
            )

    def _private_folders(self) -> None:
        """Data and recordings folders 0700, every file in them 0600 (older ones tightened)."""
        s = self.settings
        for folder in (s.data_dir, s.recordings_dir):
            make_private_dir(folder)
            loosened = tighten_tree(folder)
            if loosened:
                log.warning("%s: made %d files and folders private (0600/0700)", folder, loosened)
        if self.keyring is None:
            log.warning(
                "VOICEBOT_DATA_KEY is not set: candidates' data is stored unencrypted "
                "(files are private to this user)"
            )
        else:
            log.info("data at rest: encrypted (key id %s)", self.keyring.primary.kid)

    async def load_recordings(self) -> int:
        """Decode every script's recorded prompts (``recordings:``); returns how many loaded.

        A recording that cannot be decoded is logged and its prompt is synthesised instead
        (``voicebot dialogues check`` says what is wrong with it).
        """
        from voicebot.speech.recorded import RecordingError, load_recording

        loaded = 0
        for script in self.scripts.values():
            audio: dict[str, bytes] = {}
            for prompt_id, (_text, path) in recorded_prompts(script).items():
                try:
                    audio[prompt_id] = await asyncio.to_thread(load_recording, path)
                except RecordingError as exc:
                    log.error("job %s, prompt %s: %s; using TTS", script.id, prompt_id, exc)
            if audio:
                self.recordings[script.id] = audio
                loaded += len(audio)
        if loaded:
            log.info("loaded %d recorded prompts", loaded)
        return loaded

    async def refuse_voiceless_jobs(self) -> dict[str, str]:
        """Stop serving the jobs with a prompt only espeak-ng could say, in Chinese.

        espeak-ng's Mandarin is unintelligible; ``VOICEBOT_ALLOW_ESPEAK_VOICE=zh`` accepts it.
        English jobs are never affected. Returns the refused jobs with why (also logged).
        """
        from voicebot.speech.voices import allowed_languages, espeak_only_prompts, refusal_message

        assert self.tts is not None and self.prompts is not None
        allowed = allowed_languages(self.settings.allow_espeak_voice)
        for script in list(self.scripts.values()):
            recorded = self.recordings.get(script.id, {})
            missing = await espeak_only_prompts(script, self.tts, self.prompts, recorded)
            if not missing:
                continue
            if script.language in allowed:
                log.warning(
                    "job %s: %d prompts are spoken by espeak-ng (VOICEBOT_ALLOW_ESPEAK_VOICE=%s)",
                    script.id,
                    len(missing),
                    self.settings.allow_espeak_voice,
                )
                continue
            message = refusal_message(script, missing, len(prompt_texts(script)))
            log.error("%s", message)
            self.refused_jobs[script.id] = message
            del self.scripts[script.id]
        return self.refused_jobs

    async def seed_bundled_prompts(self) -> int:
        """Add the shipped Kokoro renderings of the bundled Chinese prompts to the prompt cache.

        Only when Kokoro is one of the engines: the renderings are filed under Kokoro's keys and
        are never played for another engine (see :mod:`voicebot.speech.bundled_prompts`).
        """
        from voicebot.speech.bundled_prompts import seed_prompt_cache
        from voicebot.speech.prompt_pack import PromptPackError

        assert self.tts is not None and self.prompts is not None
        if not any(e.name == "kokoro" for e in getattr(self.tts, "engines", [self.tts])):
            return 0
        try:
            seeded = await asyncio.to_thread(seed_prompt_cache, self.prompts.directory)
        except (PromptPackError, OSError) as exc:
            log.warning("bundled Chinese prompts not used (%s); they are rendered instead", exc)
            return 0
        if seeded:
            log.info("prompt cache: %d bundled Chinese prompts (Kokoro) added", seeded)
        return seeded

    async def prerender(self) -> int:
        """Render every fixed prompt of every script into the audio cache; returns how many."""
        assert self.prompts is not None
        items = [
            (text, script.language, script.voice)
            for script in self.scripts.values()
            for text in dict.fromkeys(
                text
                for prompt_id, text in prompt_texts(script).items()
                if prompt_id not in self.recordings.get(script.id, {})
            )
        ]
        rendered = await self.prompts.prerender(items)
        log.info("prompt cache: %d prompts, %d newly rendered", len(items), rendered)
        self.metrics.tts_renders.inc(rendered)
        return rendered

    async def close(self) -> None:
        """Release models, pools and the store (ended calls' answers are stored first).

        Every step runs even when one before it fails (logged), and the store closes last
        whatever happened: its connection thread would otherwise keep the process alive.
        """
        try:
            if self._purge_task is not None:
                self._purge_task.cancel()
            if self.pending_answers:
                await asyncio.wait(set(self.pending_answers), timeout=ANSWER_DRAIN_SECS)
            if self.reports:
                await asyncio.wait(set(self.reports), timeout=ANSWER_DRAIN_SECS)
            closers: list[tuple[str, Any]] = [
                ("dialer", self.dialer),  # no new call; those being placed finish placing
                ("outbound carrier", self.carrier),
                ("call settler", self.settler),  # this process stopped cleanly (the store knows)
                ("events", self.events),  # queued events reach the bus (durable there)
                ("bridge", self.bridge),
                ("bridge store", self._bridge_store if self.bridge is not None else None),
                ("call registry", self.registry),
                ("accounts", self.accounts),
                ("login throttle", self.login_throttle),
                ("bus", self.bus),
                ("ASR pool", self.asr),
                ("TTS", self.tts),
                ("VAD batcher", self._vad_batcher),
                ("audit log", self.audit),
            ]
            for name, part in closers:
                if part is None or not hasattr(part, "close"):
                    continue
                try:
                    await part.close()
                except Exception:
                    self.metrics.internal_errors.labels("shutdown").inc()
                    log.exception("shutdown: closing the %s failed; going on", name)
            for executor in (self.vad_executor, self.turn_executor):
                if executor is not None:
                    executor.shutdown(wait=False, cancel_futures=True)
        finally:
            if self.store is not None:
                await self.store.close()
