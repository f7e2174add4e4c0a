"""Call recording: a stereo WAV (left = candidate, right = bot) on the call clock, plus a timeline.

Both sides are placed by their time on the call clock (seconds since the media stream started):
candidate audio by the carrier's media timestamps, bot audio at the moment each frame was sent, so
a barge-in shows the bot channel stopping where the candidate stopped hearing it.

The recording is written to disk as the call goes, so a crash (even ``SIGKILL``) loses at most
about :data:`FLUSH_SECS` of it: each channel's mu-law audio (one byte a sample) is appended to its
own part file (``candidate.ulaw.part``, ``bot.ulaw.part``) as records of (sample offset, bytes),
and the timeline to ``timeline.jsonl``, every :data:`FLUSH_SECS`, by one writer thread shared by
every call (the event loop only gathers bytes). At the end :func:`assemble_recording` turns the
part files into ``call.wav`` (16-bit PCM) and removes them; the start-up settling of a call a dead
process left does the same with whatever reached the disk.

Every byte goes through a :class:`RecordingFiles`: :class:`PlainFiles` without a data key,
:class:`EncryptedFiles` with one (``VOICEBOT_DATA_KEY``): then the part files, the timeline and
``call.wav`` are all in :mod:`voicebot.crypto`'s chunked format (each half-second append one sealed
chunk, so a crash still loses at most the unflushed tail); either way they are 0600 in a 0700
folder. Read them with :func:`voicebot.crypto.read_stored_file`.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import struct
import threading
import time
import wave
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from voicebot.audio.codec import ULAW_SILENCE_BYTE, ulaw_decode
from voicebot.audio.frames import TELEPHONY_RATE
from voicebot.crypto import (
    EncryptedFileWriter,
    Keyring,
    make_private_dir,
    open_private,
    read_stored_file,
    write_stored_file,
)

log = logging.getLogger(__name__)

FLUSH_SECS = 0.5
"""How often a call's recording reaches the disk (the most a crash can lose, plus transit)."""
CANDIDATE_PART = "candidate.ulaw.part"
BOT_PART = "bot.ulaw.part"
WAV_NAME = "call.wav"
TIMELINE_NAME = "timeline.jsonl"
_RECORD = struct.Struct("<QI")
"""A part file record's header: the sample offset on the call clock, then the byte count."""


class RecordingFiles(Protocol):
    """Where a recording's bytes are kept (called from the recorder's writer thread only).

    ``append`` adds one chunk to a file (creating it, 0600); ``read`` returns everything appended
    to a file, in order (a chunk cut short by a crash may be left out); ``write`` replaces a whole
    file atomically; ``finish`` says nothing more will be appended to a file (the call ended). An
    implementation that encrypts seals each appended chunk on its own.
    """

    def append(self, path: Path, chunk: bytes) -> None:
        """Append one chunk to ``path``."""

    def read(self, path: Path) -> bytes:
        """Everything appended to ``path``."""

    def write(self, path: Path, data: bytes) -> None:
        """Replace ``path`` with ``data`` (a reader sees the old file or the new, never half)."""

    def finish(self, path: Path) -> None:
        """Nothing more will be appended to ``path`` (a file never appended to is left alone)."""


class PlainFiles:
    """Recording files as they are (no encryption), private (0600)."""

    def append(self, path: Path, chunk: bytes) -> None:
        """Append and hand the bytes to the OS (they survive the process being killed)."""
        with open_private(path, "ab") as file:
            file.write(chunk)

    def read(self, path: Path) -> bytes:
        """The file's bytes."""
        return path.read_bytes()

    def write(self, path: Path, data: bytes) -> None:
        """Write beside the file, then rename over it."""
        write_stored_file(path, data, None)

    def finish(self, path: Path) -> None:
        """Nothing to do: every append is complete on its own."""


class EncryptedFiles:
    """Recording files in :mod:`voicebot.crypto`'s chunked AES-256-GCM format (a data key is set).

    Each :meth:`append` is sealed as one chunk and pushed to the OS, through a writer kept open
    per file until :meth:`finish` or :meth:`read` (so an append costs one seal, not a re-scan of
    the file). A file a crash left without its last chunk is read up to its last whole chunk,
    and appending to it carries on after that chunk (or, for a plain or finished file, carries
    its content into a fresh encrypted file). ``call.wav`` is written whole with
    :func:`~voicebot.crypto.write_stored_file`.
    """

    def __init__(self, keyring: Keyring):
        self.keyring = keyring
        self._writers: dict[Path, EncryptedFileWriter] = {}
        self._lock = threading.Lock()

    def append(self, path: Path, chunk: bytes) -> None:
        """Seal ``chunk`` as one chunk of ``path`` and hand it to the OS."""
        with self._lock:
            writer = self._writers.get(path)
            if writer is None:
                writer = EncryptedFileWriter(path, self.keyring, append=True)
                self._writers[path] = writer
            try:
                writer.write(chunk)
                writer.flush()
            except BaseException:
                self._writers.pop(path, None)
                writer.abandon()
                raise

    def read(self, path: Path) -> bytes:
        """Everything appended to ``path``, decrypted (a crash's torn last chunk left out)."""
        with self._lock:
            writer = self._writers.pop(path, None)
            if writer is not None:  # every append is already flushed: no last chunk needed
                writer.abandon()
        return read_stored_file(path, self.keyring, allow_truncated=True)

    def write(self, path: Path, data: bytes) -> None:
        """Replace ``path`` with ``data``, encrypted (written beside it, then renamed)."""
        write_stored_file(path, data, self.keyring)

    def finish(self, path: Path) -> None:
        """Seal ``path``'s last chunk: a reader can tell the file is complete."""
        with self._lock:
            writer = self._writers.pop(path, None)
        if writer is not None:
            writer.close()


def recording_files(keyring: Keyring | None) -> RecordingFiles:
    """The recording files for a data keyring: encrypted with one, plain without."""
    return PlainFiles() if keyring is None else EncryptedFiles(keyring)


_writer: ThreadPoolExecutor | None = None
_writer_lock = threading.Lock()


def _writer_thread() -> ThreadPoolExecutor:
    """The one thread that writes every call's recording files, in submission order."""
    global _writer
    with _writer_lock:
        if _writer is None:
            _writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recorder")
        return _writer


class _PendingTrack:
    """One channel's audio not yet on disk: records of (sample offset, mu-law bytes)."""

    def __init__(self) -> None:
        self.records: list[tuple[int, bytearray]] = []

    def add(self, offset_samples: int, data: bytes) -> None:
        if offset_samples < 0:
            data = data[-offset_samples:]
            offset_samples = 0
        if not data:
            return
        if self.records:
            start, last = self.records[-1]
            if start + len(last) == offset_samples:  # contiguous: one record
                last.extend(data)
                return
        self.records.append((offset_samples, bytearray(data)))

    def take(self) -> bytes:
        chunk = b"".join(_RECORD.pack(start, len(data)) + data for start, data in self.records)
        self.records = []
        return chunk


class CallRecorder:
    """Records one call into ``<recordings_dir>/<call_sid>/``."""

    def __init__(
        self,
        directory: Path,
        files: RecordingFiles | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.directory = make_private_dir(directory)
        self.files: RecordingFiles = files or PlainFiles()
        self.wav_path = self.directory / WAV_NAME
        self.timeline_path = self.directory / TIMELINE_NAME
        self._candidate = _PendingTrack()
        self._bot = _PendingTrack()
        self._timeline: list[str] = []
        self._clock = clock
        self._flushed_at = clock()
        self._last_write: Future | None = None
        self.write_errors = 0
        self.closed = False

    def candidate_audio(self, t: float, ulaw: bytes) -> None:
        """Candidate audio that starts at call-clock time ``t`` (seconds)."""
        if not self.closed:
            self._candidate.add(round(t * TELEPHONY_RATE), ulaw)
            self._maybe_flush()

    def bot_audio(self, t: float, ulaw: bytes) -> None:
        """Bot audio sent to the carrier at call-clock time ``t``."""
        if not self.closed:
            self._bot.add(round(t * TELEPHONY_RATE), ulaw)
            self._maybe_flush()

    def event(self, t: float, kind: str, **data: Any) -> None:
        """Append one event to the timeline."""
        if self.closed:
            return
        record = {"t": round(t, 3), "event": kind, **data}
        self._timeline.append(json.dumps(record, ensure_ascii=False) + "\n")
        self._maybe_flush()

    def _maybe_flush(self) -> None:
        now = self._clock()
        if now - self._flushed_at >= FLUSH_SECS:
            self._flushed_at = now
            self.flush()

    def flush(self) -> None:
        """Hand what is gathered to the writer thread (returns at once)."""
        writes = [
            (self.directory / CANDIDATE_PART, self._candidate.take()),
            (self.directory / BOT_PART, self._bot.take()),
            (self.timeline_path, "".join(self._timeline).encode()),
        ]
        self._timeline = []
        writes = [(path, chunk) for path, chunk in writes if chunk]
        if writes:
            self._last_write = _writer_thread().submit(self._write, writes)

    def wait_written(self, timeout: float = 10.0) -> None:
        """Flush and block until everything recorded so far is on disk.

        For tests and tools: it blocks, so never on the event loop of a running server.
        """
        if not self.closed:
            self.flush()
        if self._last_write is not None:
            self._last_write.result(timeout)

    def _write(self, writes: list[tuple[Path, bytes]]) -> None:  # in the writer thread
        for path, chunk in writes:
            try:
                self.files.append(path, chunk)
            except OSError as error:
                self.write_errors += 1
                log.error("recording %s: writing %s failed (%s)", self.directory, path.name, error)

    async def close(self) -> None:
        """Write what is left, then assemble ``call.wav`` from the part files (writer thread)."""
        if self.closed:
            return
        self.flush()
        self.closed = True
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(_writer_thread(), self._finish)

    def _finish(self) -> None:  # in the writer thread, after every write of the call
        try:
            self.files.finish(self.timeline_path)
        except OSError as error:
            self.write_errors += 1
            log.error("recording %s: finishing the timeline failed (%s)", self.directory, error)
        assemble_recording(self.directory, self.files)


def _read_records(data: bytes) -> list[tuple[int, bytes]]:
    """Records of a part file; a record cut short by a crash is dropped."""
    records = []
    position = 0
    while position + _RECORD.size <= len(data):
        offset, length = _RECORD.unpack_from(data, position)
        position += _RECORD.size
        if position + length > len(data):
            break
        records.append((offset, data[position : position + length]))
        position += length
    return records


def _track(records: list[tuple[int, bytes]]) -> bytes:
    """One channel as mu-law from its records, later records over earlier; gaps are silence."""
    length = max((offset + len(data) for offset, data in records), default=0)
    buffer = bytearray([ULAW_SILENCE_BYTE]) * length
    for offset, data in records:
        buffer[offset : offset + len(data)] = data
    return bytes(buffer)


def assemble_recording(directory: Path, files: RecordingFiles | None = None) -> float | None:
    """Turn a call's part files into ``call.wav`` and remove them; its length in seconds.

    ``None`` when there was nothing to assemble (no part files).

    Blocking (run it in a thread). Safe to run again after a crash at any point: the part files
    go only once the WAV is in place, and a directory without part files is left as it is.
    """
    files = files or PlainFiles()
    directory = Path(directory)
    parts = [directory / CANDIDATE_PART, directory / BOT_PART]
    if not any(part.exists() for part in parts):
        return None
    candidate, bot = (
        _track(_read_records(files.read(part))) if part.exists() else b"" for part in parts
    )
    length = max(len(candidate), len(bot))
    stereo = np.zeros((length, 2), dtype=np.int16)
    stereo[: len(candidate), 0] = ulaw_decode(candidate)
    stereo[: len(bot), 1] = ulaw_decode(bot)
    wav = io.BytesIO()
    with wave.open(wav, "wb") as writer:
        writer.setnchannels(2)
        writer.setsampwidth(2)
        writer.setframerate(TELEPHONY_RATE)
        writer.writeframes(np.ascontiguousarray(stereo, dtype="<i2").tobytes())
    files.write(directory / WAV_NAME, wav.getvalue())
    for part in parts:
        part.unlink(missing_ok=True)
    return length / TELEPHONY_RATE


def unassembled_recordings(recordings_dir: Path) -> list[Path]:
    """Call folders under ``recordings_dir`` that still hold part files (blocking: a thread).

    A call in progress has them; so has a call whose process died before or while assembling.
    """
    directory = Path(recordings_dir)
    if not directory.is_dir():
        return []
    folders = {
        part.parent for name in (CANDIDATE_PART, BOT_PART) for part in directory.glob(f"*/{name}")
    }
    return sorted(folders)
