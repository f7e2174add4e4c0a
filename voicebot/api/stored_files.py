"""Serving stored call files (recordings) over HTTP, decrypted on the fly when encrypted at rest.

A plain file is sent as it is (``FileResponse``: ranges, sendfile). A file in the encrypted chunked
format (``VOICEBOT_DATA_KEY``) is decrypted chunk by chunk in a worker thread as it is sent, with
single byte-range requests answered too (a browser's audio player seeks with them), so a long
recording is never decrypted whole into memory and the event loop never waits on the disk.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from aiohttp import web

from voicebot.crypto import EncryptedFileReader, Keyring, is_encrypted_file

log = logging.getLogger(__name__)


async def recording_response(
    request: web.Request, path: Path, keyring: Keyring | None
) -> web.StreamResponse:
    """A call's recording (``call.wav``), decrypted, never cached by the browser or a proxy."""
    return await stored_file_response(
        request, path, keyring, content_type="audio/wav", headers={"Cache-Control": "no-store"}
    )


async def stored_file_response(
    request: web.Request,
    path: Path,
    keyring: Keyring | None,
    *,
    content_type: str,
    headers: dict[str, str] | None = None,
) -> web.StreamResponse:
    """The file's plaintext as a response (200, or 206 for a satisfiable ``Range``).

    Raises :class:`voicebot.crypto.DecryptionError` when an encrypted file cannot be read (no
    key, altered, cut short) before anything is sent.
    """
    headers = {"Content-Type": content_type, **(headers or {})}
    if not await asyncio.to_thread(is_encrypted_file, path):
        return web.FileResponse(path, headers=headers)
    reader = await asyncio.to_thread(EncryptedFileReader, path, keyring)
    try:
        size = reader.size
        start, end = 0, size
        status = 200
        try:
            wanted = request.http_range
        except ValueError:
            wanted = slice(None, None)
        if wanted.start is not None or wanted.stop is not None:
            start, end, _ = wanted.indices(size)
            if wanted.start is not None and wanted.start < 0:  # "bytes=-N": the last N bytes
                start, end = max(0, size + wanted.start), size
            if start >= end:
                return web.Response(
                    status=416, headers={"Content-Range": f"bytes */{size}", **headers}
                )
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        # Every chunk to be sent is authenticated before the status line goes out: an altered
        # file gets a clear error, not a response cut off half-way (AES-GCM runs at GB/s).
        await asyncio.to_thread(_authenticate, reader, start, end)
        response = web.StreamResponse(status=status, headers=headers)
        response.content_length = end - start
        response.headers["Accept-Ranges"] = "bytes"
        await response.prepare(request)
        position = start
        while position < end:
            piece = await asyncio.to_thread(_first_piece, reader, position, end)
            await response.write(piece)
            position += len(piece)
        await response.write_eof()
        return response
    finally:
        reader.close()


def _authenticate(reader: EncryptedFileReader, start: int, end: int) -> None:
    """Decrypt (and drop) the chunks holding ``[start, end)``: raises if one was altered."""
    for _ in reader.read_range(start, end):
        pass


def _first_piece(reader: EncryptedFileReader, start: int, end: int) -> bytes:
    """The bytes from ``start`` to the end of the chunk holding it (or ``end``)."""
    for piece in reader.read_range(start, end):
        return piece
    return b""
