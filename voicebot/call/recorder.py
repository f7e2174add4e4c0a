"""Call recording: a stereo WAV (left = candidate, right = bot) on the call clock, plus a timeline.

Both sides are placed by their time on the call clock (seconds since the media stream started):
candidate audio by the carrier's media timestamps, bot audio at the moment each frame was sent, so
a barge-in shows the bot channel stopping where the candidate stopped hearing it. Audio is kept as
mu-law (one byte a sample, ~29 MB an hour for both sides) and written as 16-bit PCM at the end, in a
worker thread. ``timeline.jsonl`` gets one JSON event a line as it happens, so a crash mid-call
keeps the timeline up to the crash.

With a data key (``VOICEBOT_DATA_KEY``) both files are encrypted (:mod:`voicebot.crypto`'s chunked
format, one chunk per timeline event); either way they are 0600 in a 0700 folder. Read them with
:func:`voicebot.crypto.read_stored_file`.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
from pathlib import Path
from typing import IO, Any

import numpy as np

from voicebot.audio.codec import ULAW_SILENCE_BYTE, ulaw_decode
from voicebot.audio.frames import TELEPHONY_RATE, write_wav
from voicebot.crypto import (
    EncryptedFileWriter,
    Keyring,
    make_private_dir,
    open_private,
    write_stored_file,
)

log = logging.getLogger(__name__)


class _Track:
    """One channel of mu-law audio placed at sample offsets; gaps are silence."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def write(self, offset_samples: int, data: bytes) -> None:
        if offset_samples < 0:
            data = data[-offset_samples:]
            offset_samples = 0
        end = offset_samples + len(data)
        if end > len(self.buffer):
            self.buffer.extend(bytes([ULAW_SILENCE_BYTE]) * (end - len(self.buffer)))
        self.buffer[offset_samples:end] = data


class CallRecorder:
    """Records one call into ``<recordings_dir>/<call_sid>/``."""

    def __init__(self, directory: Path, keyring: Keyring | None = None):
        self.directory = make_private_dir(directory)
        self.keyring = keyring
        self.wav_path = self.directory / "call.wav"
        self.timeline_path = self.directory / "timeline.jsonl"
        self._candidate = _Track()
        self._bot = _Track()
        self._timeline: IO[str] | EncryptedFileWriter | None = (
            open_private(self.timeline_path, "a", encoding="utf-8")
            if keyring is None
            else EncryptedFileWriter(self.timeline_path, keyring, append=True)
        )
        self.closed = False

    def candidate_audio(self, t: float, ulaw: bytes) -> None:
        """Candidate audio that starts at call-clock time ``t`` (seconds)."""
        self._candidate.write(round(t * TELEPHONY_RATE), ulaw)

    def bot_audio(self, t: float, ulaw: bytes) -> None:
        """Bot audio sent to the carrier at call-clock time ``t``."""
        self._bot.write(round(t * TELEPHONY_RATE), ulaw)

    def event(self, t: float, kind: str, **data: Any) -> None:
        """Append one event to the timeline."""
        if self._timeline is None:
            return
        record = {"t": round(t, 3), "event": kind, **data}
        line = json.dumps(record, ensure_ascii=False) + "\n"
        if isinstance(self._timeline, EncryptedFileWriter):
            self._timeline.write(line.encode())  # one sealed chunk per event
        else:
            self._timeline.write(line)
        self._timeline.flush()

    def _write_wav(self) -> None:
        length = max(len(self._candidate.buffer), len(self._bot.buffer))
        stereo = np.zeros((length, 2), dtype=np.int16)
        stereo[: len(self._candidate.buffer), 0] = ulaw_decode(bytes(self._candidate.buffer))
        stereo[: len(self._bot.buffer), 1] = ulaw_decode(bytes(self._bot.buffer))
        wav = io.BytesIO()
        write_wav(wav, stereo, TELEPHONY_RATE)
        write_stored_file(self.wav_path, wav.getvalue(), self.keyring)

    async def close(self) -> None:
        """Write the WAV (in a worker thread) and close the timeline."""
        if self.closed:
            return
        self.closed = True
        if self._timeline is not None:
            self._timeline.close()
            self._timeline = None
        await asyncio.to_thread(self._write_wav)
