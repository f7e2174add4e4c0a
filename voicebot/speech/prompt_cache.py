"""Pre-rendered prompts: TTS output as 8 kHz mu-law, ready to stream to the carrier.

Every fixed prompt of a job script is rendered once, before the call, so it starts playing with no
TTS wait. Renders are kept on disk as ``<directory>/<key>.ulaw`` (raw mu-law bytes, 8 kHz, mono)
with what made them beside it in ``<key>.json`` (engine, voice, language, text: what prompt packs
carry, see :mod:`voicebot.speech.prompt_pack`), and in a small in-memory LRU. The key hashes
engine, voice, language and text, so changing the engine or voice never replays a stale rendering.
Concurrent requests for one prompt synthesise it once.

A prompt imported from a pack (``"imported": true`` in its ``.json``) is played instead of what
the engine that would speak now made or would make: a pack rendered with edge-tts on a machine
that reaches it serves an offline server whose only Chinese engine is espeak-ng.

The text of a Chinese prompt is normalised first (:func:`voicebot.speech.zh_text.speech_text`:
"按1" -> "按一", "9:00-18:00" -> "九点到十八点"): the engine speaks the normalised text, and the
key and the ``.json`` carry it, so the written and the spoken form of a prompt are one rendering.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import tempfile
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from voicebot.audio.codec import ulaw_encode
from voicebot.audio.resample import resample
from voicebot.speech.tts import SynthesizedAudio, TTSEngine, TTSUnavailable
from voicebot.speech.zh_text import speech_text

logger = logging.getLogger(__name__)

PROMPT_RATE = 8000
"""Sample rate of cached prompts (telephone mu-law), in Hz."""

LEAD_SILENCE_SECS = 0.01
"""Near-silence kept before the first voiced 10 ms: every millisecond of it is heard as latency
(the caller's "first non-silent frame" came 40 ms later with 50 ms kept), and the quiet onset
of the first word is above the trim threshold anyway, so it is kept whatever this says."""

TAIL_SILENCE_SECS = 0.05
"""Near-silence kept after the last voiced 10 ms (the decay of the last word)."""

RENDER_VERSION = 2
"""Part of the cache key: bumped when the rendering changes, so stale files are not served."""

_TRIM_FRAME_SECS = 0.01
_TRIM_FLOOR_DBFS = -55.0
_TRIM_BELOW_PEAK_DB = 40.0


def trim_silence(
    pcm: np.ndarray,
    rate: int,
    lead_secs: float = LEAD_SILENCE_SECS,
    tail_secs: float = TAIL_SILENCE_SECS,
) -> np.ndarray:
    """Cut leading and trailing near-silence from int16 audio.

    ``lead_secs`` of it are kept before the first voiced frame and ``tail_secs`` after the last.
    Near-silence is a 10 ms frame quieter than -55 dBFS or 40 dB below the loudest frame,
    whichever is louder. Audio with no voiced frame comes back unchanged.
    """
    frame = max(1, int(rate * _TRIM_FRAME_SECS))
    count = len(pcm) // frame
    if count == 0:
        return pcm
    frames = pcm[: count * frame].astype(np.float32).reshape(count, frame)
    rms = np.sqrt(np.mean(frames * frames, axis=1))
    floor = 32768.0 * 10 ** (_TRIM_FLOOR_DBFS / 20)
    threshold = max(floor, float(rms.max()) * 10 ** (-_TRIM_BELOW_PEAK_DB / 20))
    voiced = np.flatnonzero(rms > threshold)
    if voiced.size == 0:
        return pcm
    start = max(0, int(voiced[0]) * frame - int(rate * lead_secs))
    end = min(len(pcm), (int(voiced[-1]) + 1) * frame + int(rate * tail_secs))
    return pcm[start:end]


def render_ulaw(audio: SynthesizedAudio) -> bytes:
    """Turn synthesised speech into trimmed 8 kHz mu-law bytes."""
    pcm = np.asarray(audio.pcm, dtype=np.int16)
    narrowband = resample(pcm, audio.sample_rate, PROMPT_RATE)
    narrowband = np.asarray(narrowband, dtype=np.int16)
    return ulaw_encode(trim_silence(narrowband, PROMPT_RATE))


def _read_if_exists(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def rendering_key(engine: str, voice: str, language: str, text: str) -> str:
    """Return the cache key (hex SHA-256) of a rendering by ``engine`` with ``voice``."""
    material = f"v{RENDER_VERSION}|{engine}|{voice}|{language}|{text}"
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


def write_metadata(path: Path, metadata: dict) -> None:
    """Write a rendering's ``.json`` (atomically)."""
    _write_atomically(path, json.dumps(metadata, ensure_ascii=False, sort_keys=True).encode())


def read_metadata(path: Path) -> dict | None:
    """Read a rendering's ``.json``; ``None`` when it is missing or unreadable."""
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return metadata if isinstance(metadata, dict) else None


def _imported_index(directory: Path) -> dict[tuple[str, str], list[dict]]:
    """Imported renderings in a cache folder by (language, text)."""
    index: dict[tuple[str, str], list[dict]] = {}
    if not directory.is_dir():
        return index
    for path in sorted(directory.glob("*.json")):
        metadata = read_metadata(path)
        if not metadata or not metadata.get("imported"):
            continue
        if metadata.get("engine") == "espeak":
            continue  # the last resort, the same on every machine: never preferred
        if not (directory / f"{path.stem}.ulaw").is_file():
            continue
        language, text = metadata.get("language"), metadata.get("text")
        if isinstance(language, str) and isinstance(text, str):
            index.setdefault((language, text), []).append({**metadata, "key": path.stem})
    return index


class PromptCache:
    """Rendered prompts on disk and in memory, keyed by engine, voice, language and text."""

    def __init__(self, directory: Path, tts: TTSEngine, memory_items: int = 512) -> None:
        self.directory = Path(directory)
        self.tts = tts
        self.memory_items = memory_items
        self._memory: OrderedDict[str, bytes] = OrderedDict()
        self._rendering: dict[str, asyncio.Future[tuple[bytes, bool]]] = {}
        self._imported: dict[tuple[str, str], list[dict]] | None = None
        self.imported_hits = 0
        self.memory_hits = 0
        self.disk_hits = 0
        self.renders = 0
        self.failures = 0

    def _engine_for(self, language: str) -> TTSEngine:
        engine_for = getattr(self.tts, "engine_for", None)
        if engine_for is None:
            return self.tts
        try:
            return engine_for(language)
        except TTSUnavailable:
            return self.tts

    def key(
        self, text: str, *, language: str, voice: str | None = None, engine: str | None = None
    ) -> str:
        """Return the cache key (hex SHA-256) of a prompt, for the engine that would speak it now.

        The voice part is the voice that engine would really use (:meth:`TTSEngine.voice_id`).
        With ``engine`` given, the name and ``voice`` are taken as they are. The text part is
        the text as spoken (Chinese digits written out, see :mod:`voicebot.speech.zh_text`).
        """
        text = speech_text(text, language)
        if engine is None:
            speaker = self._engine_for(language)
            engine, voice_id = speaker.name, speaker.voice_id(language, voice)
        else:
            voice_id = voice or ""
        return rendering_key(engine, voice_id, language, text)

    def path(self, key: str) -> Path:
        """Where the rendering with this key lives on disk."""
        return self.directory / f"{key}.ulaw"

    def metadata_path(self, key: str) -> Path:
        """Where what made the rendering with this key (engine, voice, language, text) lives."""
        return self.directory / f"{key}.json"

    async def imported_rendering(
        self, text: str, *, language: str, voice: str | None = None
    ) -> dict | None:
        """Return what describes an imported rendering of ``text`` (engine, voice, key...).

        With ``voice`` given (a script's voice), only a rendering with that voice counts.
        The folder is read once, on the first call (prompts imported later need a restart).
        A rendering of the text as spoken is looked for first, then one of the text as written
        (packs made before Chinese prompts were normalised).
        """
        if self._imported is None:
            self._imported = await asyncio.to_thread(_imported_index, self.directory)
        for form in dict.fromkeys((speech_text(text, language), text)):
            for entry in self._imported.get((language, form), ()):
                if voice is None or entry.get("voice") == voice:
                    return entry
        return None

    async def imported(self, text: str, *, language: str, voice: str | None = None) -> str | None:
        """Return the key of an imported rendering of ``text``, or ``None``."""
        entry = await self.imported_rendering(text, language=language, voice=voice)
        return None if entry is None else entry["key"]

    def _remember(self, key: str, data: bytes) -> None:
        if self.memory_items <= 0:
            return
        self._memory[key] = data
        self._memory.move_to_end(key)
        while len(self._memory) > self.memory_items:
            self._memory.popitem(last=False)

    async def get(self, text: str, *, language: str, voice: str | None = None) -> bytes:
        """Return the prompt as 8 kHz mu-law bytes: from memory, from disk, or rendered now.

        Raises ``ValueError`` for blank text and :class:`TTSUnavailable` when no engine works.
        """
        data, _rendered = await self._fetch(text, language, voice)
        return data

    async def prerender(self, items: Iterable[tuple[str, str, str | None]]) -> int:
        """Render each ``(text, language, voice)`` not cached yet; return how many were rendered.

        A prompt that cannot be rendered (no engine works, blank text) is logged, counted in
        ``failures`` and skipped: the rest still render, and it is tried again when played.
        """
        rendered = 0
        for text, language, voice in items:
            try:
                _data, was_rendered = await self._fetch(text, language, voice)
            except (TTSUnavailable, ValueError) as exc:
                self.failures += 1
                logger.warning("cannot pre-render prompt %.60r (%s): %s", text, language, exc)
                continue
            rendered += was_rendered
        return rendered

    async def _fetch(self, text: str, language: str, voice: str | None) -> tuple[bytes, bool]:
        if not text or not text.strip():
            raise ValueError("PromptCache: cannot render a blank prompt")
        written, text = text, speech_text(text, language)  # text: what is spoken, keyed, described
        speaker = self._engine_for(language)
        voice_id = speaker.voice_id(language, voice)
        key = self.key(text, language=language, voice=voice_id, engine=speaker.name)
        data = self._memory.get(key)
        if data is not None:
            self._memory.move_to_end(key)
            self.memory_hits += 1
            return data, False
        pending = self._rendering.get(key)
        if pending is None:
            pending = asyncio.ensure_future(
                self._load_or_render(key, speaker.name, voice_id, text, language, voice, written)
            )
            self._rendering[key] = pending
            pending.add_done_callback(lambda _done: self._rendering.pop(key, None))
        # Shielded: a caller cancelled by barge-in does not abort a render others wait for.
        return await asyncio.shield(pending)

    def _metadata(self, engine: str, voice_id: str, language: str, text: str) -> dict:
        return {
            "engine": engine,
            "voice": voice_id,
            "language": language,
            "text": text,
            "sample_rate": PROMPT_RATE,
            "render_version": RENDER_VERSION,
        }

    def _describe_if_undescribed(self, key: str, metadata: dict) -> None:
        path = self.metadata_path(key)
        if path.exists():
            return
        try:  # renderings cached before the .json existed: described on their next use
            write_metadata(path, metadata)
        except OSError as exc:
            logger.debug("cannot describe prompt %s: %s", key[:12], exc)

    async def _load_or_render(
        self,
        key: str,
        engine: str,
        voice_id: str,
        text: str,
        language: str,
        voice: str | None,
        written: str,
    ) -> tuple[bytes, bool]:
        imported = await self.imported(written, language=language, voice=voice)
        if imported is not None:  # the operator's pack beats what this machine's engine made
            data = await asyncio.to_thread(_read_if_exists, self.path(imported))
            if data is not None:
                self.imported_hits += 1
                self._remember(key, data)
                return data, False
        data = await asyncio.to_thread(_read_if_exists, self.path(key))
        if data is not None:
            self.disk_hits += 1
            self._remember(key, data)
            metadata = self._metadata(engine, voice_id, language, text)
            await asyncio.to_thread(self._describe_if_undescribed, key, metadata)
            return data, False
        audio = await self.tts.synthesize(text, language=language, voice=voice)
        data = await asyncio.to_thread(render_ulaw, audio)
        if audio.engine and audio.engine != engine:
            # A failover engine spoke instead: file it under what really spoke, so the
            # preferred engine renders this prompt again once it is back.
            key = self.key(text, language=language, voice=audio.voice, engine=audio.engine)
            engine, voice_id = audio.engine, audio.voice
        await asyncio.to_thread(_write_atomically, self.path(key), data)
        await asyncio.to_thread(
            write_metadata,
            self.metadata_path(key),
            self._metadata(engine, voice_id, language, text),
        )
        self.renders += 1
        self._remember(key, data)
        logger.debug(
            "rendered prompt %s (%s, %.2f s): %.60r",
            key[:12],
            audio.engine or self.tts.name,
            len(data) / PROMPT_RATE,
            text,
        )
        return data, True
