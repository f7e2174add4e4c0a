"""Candidates' data at rest: AES-256-GCM fields and files, blind indexes, private file modes.

With ``VOICEBOT_DATA_KEY`` set, what the server stores about a candidate is encrypted before it
reaches the disk: fields of the store (names, phone numbers, transcripts, reports), the event log's
payloads, recordings and timelines. Without a key everything is stored as before; file modes are
private (0600 files, 0700 folders) either way.

Keys. ``VOICEBOT_DATA_KEY`` holds one or more comma-separated ``kid:key`` entries, ``key`` being
32 random bytes in (URL-safe or standard) base64 and ``kid`` a short key id (letters, digits,
``-``, ``_``). The first entry encrypts; every entry decrypts (key rotation: put the new key
first, run ``voicebot data-key rotate``, then drop the old key). ``voicebot data-key generate``
prints a fresh entry. Each key is never used directly: HKDF derives one subkey per purpose
(fields, files, blind indexes).

Fields (:meth:`Keyring.encrypt_field`) become the text ``vbenc1.<kid>.<base64url(nonce ||
ciphertext)>``. The associated data binds the value to where it is stored (``table/column/row``),
so a value copied to another row or column fails to decrypt instead of showing the wrong
candidate's data. A field that is not in this form is read as plaintext (data stored before the
key was set; ``data-key rotate`` encrypts it).

Blind indexes (:meth:`Keyring.blind_index`): equality look-ups (an inbound caller's number) go
through a keyed HMAC of the value, never the plaintext.

Files (:class:`EncryptedFileWriter`, :class:`EncryptedFileReader`): a header (magic, version, key
id, random salt) then independent AES-GCM chunks, each ``flag (1) | length (4) | ciphertext``.
A per-file key is derived from the file subkey and the salt; chunk ``i``'s nonce is ``i``, and its
associated data is the header, ``i``, the last-chunk flag and the file's context (its call and
name), so chunks cannot be reordered, dropped, moved to another file, and a file cut short is
told from a complete one. Chunks are written as data comes (append-friendly: a recorder writing
during the call can flush a chunk a second; a crash loses only the unflushed tail), and read
back one at a time (a reader streams, and serves byte ranges without decrypting the whole file).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import io
import json
import os
import re
import secrets
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_ENV = "VOICEBOT_DATA_KEY"
FIELD_PREFIX = "vbenc1."
FILE_MAGIC = b"VBENC\x00"
FILE_VERSION = 1
CHUNK_SIZE = 64 * 1024
"""Plaintext bytes per file chunk (a writer's ``flush()`` may cut a shorter one)."""
NONCE_BYTES = 12
TAG_BYTES = 16
SALT_BYTES = 16
_CHUNK_HEAD = struct.Struct(">BI")  # last-chunk flag, ciphertext length
_KID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700


class DataKeyError(ValueError):
    """``VOICEBOT_DATA_KEY`` is malformed; the message says what and how to fix it."""


class DecryptionError(ValueError):
    """Stored data cannot be decrypted: altered, moved, cut short, or its key is not configured."""


def _derive(secret: bytes, purpose: bytes, salt: bytes | None = None) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=purpose).derive(secret)


@dataclass(frozen=True)
class DataKey:
    """One configured key: its id and its 32 secret bytes, with the subkeys derived from them."""

    kid: str
    secret: bytes = field(repr=False)

    @property
    def field_key(self) -> bytes:
        """Subkey for store fields."""
        return _derive(self.secret, b"voicebot field v1")

    @property
    def file_key(self) -> bytes:
        """Subkey from which each file's key is derived (with the file's salt)."""
        return _derive(self.secret, b"voicebot file v1")

    @property
    def index_key(self) -> bytes:
        """Subkey for blind indexes (HMAC-SHA256)."""
        return _derive(self.secret, b"voicebot blind index v1")


def _decode_key(text: str, where: str) -> bytes:
    text = text.strip()
    padded = text + "=" * (-len(text) % 4)
    try:
        raw = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise DataKeyError(
            f"{KEY_ENV}: {where} is not 32 bytes in base64; generate one with "
            "`voicebot data-key generate`"
        )
    return raw


def generate_key_entry(kid: str | None = None) -> str:
    """A fresh ``kid:key`` entry for ``VOICEBOT_DATA_KEY`` (32 random bytes, URL-safe base64)."""
    kid = kid or f"k{secrets.token_hex(3)}"
    if not _KID.match(kid):
        raise DataKeyError(f"key id {kid!r}: use 1-32 letters, digits, '-' or '_'")
    return f"{kid}:{base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip('=')}"


class Keyring:
    """The configured data keys: the first encrypts, every one decrypts (by key id)."""

    def __init__(self, keys: list[DataKey]):
        if not keys:
            raise DataKeyError(f"{KEY_ENV} holds no key")
        self.keys = list(keys)
        self.by_kid = {key.kid: key for key in keys}
        self._field_ciphers = {key.kid: AESGCM(key.field_key) for key in keys}
        self._file_keys = {key.kid: key.file_key for key in keys}
        self._index_keys = {key.kid: key.index_key for key in keys}

    @property
    def primary(self) -> DataKey:
        """The key new data is encrypted with."""
        return self.keys[0]

    @classmethod
    def parse(cls, value: str) -> Keyring | None:
        """Keys from ``VOICEBOT_DATA_KEY`` (``kid:key,kid2:key2``); None when empty."""
        value = (value or "").strip()
        if not value:
            return None
        keys: list[DataKey] = []
        for number, entry in enumerate(value.split(","), start=1):
            entry = entry.strip()
            if not entry:
                continue
            kid, sep, text = entry.partition(":")
            if not sep:
                raise DataKeyError(
                    f"{KEY_ENV}: entry {number} has no key id; write it as kid:base64key "
                    "(`voicebot data-key generate` prints one)"
                )
            kid = kid.strip()
            if not _KID.match(kid):
                raise DataKeyError(
                    f"{KEY_ENV}: entry {number} key id {kid!r}: use 1-32 letters, digits, - or _"
                )
            if any(key.kid == kid for key in keys):
                raise DataKeyError(f"{KEY_ENV}: key id {kid!r} appears twice")
            keys.append(DataKey(kid, _decode_key(text, f"the key of {kid!r}")))
        return cls(keys)

    # -- fields ---------------------------------------------------------------------------

    def encrypt_field(self, plaintext: str, context: str) -> str:
        """The envelope of ``plaintext`` bound to ``context`` (``table/column/row``)."""
        kid = self.primary.kid
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._field_ciphers[kid].encrypt(
            nonce, plaintext.encode("utf-8"), _field_aad(kid, context)
        )
        return f"{FIELD_PREFIX}{kid}.{base64.urlsafe_b64encode(nonce + sealed).decode()}"

    def decrypt_field(self, value: str, context: str) -> str:
        """The plaintext of an envelope (a value not in envelope form is returned as it is)."""
        if not is_encrypted_field(value):
            return value
        kid, _, body = value[len(FIELD_PREFIX) :].partition(".")
        cipher = self._field_ciphers.get(kid)
        if cipher is None:
            raise DecryptionError(
                f"{context}: encrypted with key id {kid!r}, which {KEY_ENV} does not hold"
            )
        try:
            raw = base64.urlsafe_b64decode(body)
            plain = cipher.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], _field_aad(kid, context))
        except (InvalidTag, binascii.Error, ValueError) as exc:
            raise DecryptionError(
                f"{context}: the stored value fails authentication (altered, or copied from "
                "another record)"
            ) from exc
        return plain.decode("utf-8")

    # -- blind indexes --------------------------------------------------------------------

    def blind_index(self, value: str, purpose: str) -> str:
        """Keyed hash of ``value`` under the current key, for equality look-ups."""
        return self._index(self.primary.kid, value, purpose)

    def blind_indexes(self, value: str, purpose: str) -> list[str]:
        """The hash under every key (rows not yet re-keyed are found too)."""
        return [self._index(key.kid, value, purpose) for key in self.keys]

    def _index(self, kid: str, value: str, purpose: str) -> str:
        digest = hmac.new(
            self._index_keys[kid], f"{purpose}\x00{value}".encode(), hashlib.sha256
        ).hexdigest()
        return f"{kid}.{digest[:40]}"

    # -- files ----------------------------------------------------------------------------

    def file_cipher(self, kid: str, salt: bytes, context: str) -> AESGCM:
        """The AES-GCM cipher of one file (key id and salt from its header)."""
        base = self._file_keys.get(kid)
        if base is None:
            raise DecryptionError(
                f"{context}: encrypted with key id {kid!r}, which {KEY_ENV} does not hold"
            )
        return AESGCM(_derive(base, b"voicebot file chunk v1", salt))


def _field_aad(kid: str, context: str) -> bytes:
    return f"{FIELD_PREFIX}{kid}|{context}".encode()


def is_encrypted_field(value: Any) -> bool:
    """Whether a stored value is a field envelope."""
    return isinstance(value, str) and value.startswith(FIELD_PREFIX)


def seal(keyring: Keyring | None, value: str | None, context: str) -> str | None:
    """``value`` encrypted for storage when a keyring is configured, else as it is."""
    if keyring is None or value is None:
        return value
    return keyring.encrypt_field(value, context)


def unseal(keyring: Keyring | None, value: Any, context: str) -> Any:
    """The plaintext of a stored value (envelopes need the keyring; plaintext passes through)."""
    if not is_encrypted_field(value):
        return value
    if keyring is None:
        raise DecryptionError(f"{context}: the value is encrypted and {KEY_ENV} is not set")
    return keyring.decrypt_field(value, context)


# -- files --------------------------------------------------------------------------------


def file_context(path: Path | str) -> str:
    """What a file's chunks are bound to: its folder and name (``<call_sid>/call.wav``)."""
    path = Path(path)
    return f"{path.parent.name}/{path.name}"


def _header(kid: str, salt: bytes) -> bytes:
    kid_bytes = kid.encode()
    return FILE_MAGIC + bytes([FILE_VERSION, len(kid_bytes)]) + kid_bytes + salt


def _chunk_aad(header: bytes, index: int, last: bool, context: str) -> bytes:
    return header + struct.pack(">QB", index, int(last)) + context.encode()


def _nonce(index: int) -> bytes:
    return index.to_bytes(NONCE_BYTES, "big")


def _read_header(stream: IO[bytes], context: str) -> tuple[bytes, str, bytes]:
    """(header bytes, key id, salt) of an encrypted file positioned at its start."""
    fixed = stream.read(len(FILE_MAGIC) + 2)
    if len(fixed) < len(FILE_MAGIC) + 2 or not fixed.startswith(FILE_MAGIC):
        raise DecryptionError(f"{context}: not an encrypted voicebot file")
    version, kid_len = fixed[-2], fixed[-1]
    if version != FILE_VERSION:
        raise DecryptionError(f"{context}: encrypted file version {version} is not supported")
    rest = stream.read(kid_len + SALT_BYTES)
    if len(rest) != kid_len + SALT_BYTES:
        raise DecryptionError(f"{context}: the encrypted file's header is cut short")
    kid = rest[:kid_len].decode("ascii", "replace")
    return fixed + rest, kid, rest[kid_len:]


def is_encrypted_file(path: Path | str) -> bool:
    """Whether the file starts with the encrypted format's magic bytes."""
    try:
        with open(path, "rb") as stream:
            return stream.read(len(FILE_MAGIC)) == FILE_MAGIC
    except OSError:
        return False


def open_private(path: Path | str, mode: str = "ab", encoding: str | None = None) -> IO[Any]:
    """Open a file for writing (``wb``, ``ab``, ``r+b``, ``a``...), created 0600 whatever the umask.

    Its folder is made (0700) if missing; an existing file is tightened to 0600.
    """
    path = Path(path)
    if not path.parent.exists():
        make_private_dir(path.parent)
    if mode.startswith("r+"):
        flags = os.O_RDWR | os.O_CREAT
    elif mode.startswith("a"):
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
    else:
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    fd = os.open(path, flags, PRIVATE_FILE_MODE)
    with contextlib.suppress(OSError):
        os.fchmod(fd, PRIVATE_FILE_MODE)
    return os.fdopen(fd, mode, encoding=encoding)


def create_private_file(path: Path | str) -> Path:
    """Create an empty file 0600 if missing (an existing one is tightened to 0600).

    SQLite gives a database's ``-wal`` and ``-shm`` files the database file's mode: creating the
    file first keeps all three private whatever the umask.
    """
    path = Path(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE_MODE)
    try:
        with contextlib.suppress(OSError):
            os.fchmod(fd, PRIVATE_FILE_MODE)
    finally:
        os.close(fd)
    return path


def make_private_dir(path: Path | str) -> Path:
    """Create a folder (and missing parents) as 0700; an existing one is tightened to 0700."""
    path = Path(path)
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        os.chmod(path, PRIVATE_DIR_MODE)
    return path


def tighten_tree(root: Path | str) -> int:
    """Make every folder under ``root`` 0700 and every file 0600; returns how many were changed."""
    root = Path(root)
    if not root.exists():
        return 0
    changed = 0
    for directory, _, files in os.walk(root):
        entries = [(Path(directory), PRIVATE_DIR_MODE)] + [
            (Path(directory) / name, PRIVATE_FILE_MODE) for name in files
        ]
        for path, mode in entries:
            try:
                st = path.lstat()
                if path.is_symlink() or (st.st_mode & 0o777) == mode:
                    continue
                os.chmod(path, mode)
                changed += 1
            except OSError:
                continue
    return changed


class EncryptedFileWriter:
    """Writes the chunked encrypted format, chunk by chunk as data comes (file-like: bytes).

    ``write()`` buffers and seals each full :data:`CHUNK_SIZE` chunk; ``flush()`` seals what is
    buffered as a chunk of its own (a recorder calls it about once a second: a crash loses only
    what came after); ``close()`` seals the last chunk, flagged as last. ``append=True`` continues
    a file a crashed writer left unfinished (its torn tail, if any, is cut off).
    """

    def __init__(
        self,
        path: Path | str,
        keyring: Keyring,
        *,
        context: str | None = None,
        append: bool = False,
        chunk_size: int = CHUNK_SIZE,
    ):
        self.path = Path(path)
        self.context = context if context is not None else file_context(self.path)
        self.chunk_size = chunk_size
        self._buffer = bytearray()
        self.closed = False
        resumed = None
        if append and self.path.exists() and self.path.stat().st_size > 0:
            resumed = _scan_for_append(self.path, keyring, self.context)
        if resumed is not None:  # an unfinished file: carry on after its last whole chunk
            self._header, self._cipher, self._index, end = resumed
            self._file = open_private(self.path, "r+b")
            self._file.seek(end)
            self._file.truncate()
            return
        carried = b""
        if append and self.path.exists() and self.path.stat().st_size > 0:
            # A finished (or plain) file: its content goes first into a new file with a new salt
            # (a new key: no nonce is ever used twice), which then takes its place.
            carried = read_stored_file(self.path, keyring)
        salt = secrets.token_bytes(SALT_BYTES)
        kid = keyring.primary.kid
        self._header = _header(kid, salt)
        self._cipher = keyring.file_cipher(kid, salt, self.context)
        self._index = 0
        target = self.path
        if carried:
            target = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}.tmp")
        self._file = open_private(target, "wb")
        self._file.write(self._header)
        if carried:
            self.write(carried)
            self.flush()
            os.fsync(self._file.fileno())
            os.replace(target, self.path)

    def write(self, data: bytes) -> int:
        """Add plaintext; full chunks are sealed and written."""
        if self.closed:
            raise ValueError(f"{self.path} is closed")
        self._buffer += data
        while len(self._buffer) > self.chunk_size:
            self._seal(bytes(self._buffer[: self.chunk_size]), last=False)
            del self._buffer[: self.chunk_size]
        return len(data)

    def flush(self) -> None:
        """Seal what is buffered as a chunk and push it to the operating system."""
        if self.closed:
            return
        if self._buffer:
            self._seal(bytes(self._buffer), last=False)
            self._buffer.clear()
        self._file.flush()

    def close(self) -> None:
        """Seal the last chunk (flagged last) and close the file."""
        if self.closed:
            return
        self._seal(bytes(self._buffer), last=True)
        self._buffer.clear()
        self.closed = True
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()

    def abandon(self) -> None:
        """Close as a crash would: what is buffered is lost, no last chunk (tests, errors)."""
        self._buffer.clear()
        self._file.flush()
        self.closed = True
        self._file.close()

    def _seal(self, plain: bytes, *, last: bool) -> None:
        sealed = self._cipher.encrypt(
            _nonce(self._index), plain, _chunk_aad(self._header, self._index, last, self.context)
        )
        self._file.write(_CHUNK_HEAD.pack(int(last), len(sealed)) + sealed)
        self._index += 1

    def __enter__(self) -> EncryptedFileWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class _Chunk:
    offset: int  # of its head in the file
    length: int  # ciphertext length (plaintext + tag)
    last: bool
    plain_start: int


def _scan_for_append(
    path: Path, keyring: Keyring, context: str
) -> tuple[bytes, AESGCM, int, int] | None:
    """(header, cipher, next chunk index, end offset) to continue an unfinished encrypted file.

    None for a finished or a plain file (the writer carries its content into a new file).
    """
    if not is_encrypted_file(path):
        return None
    reader = EncryptedFileReader(path, keyring, context=context, allow_truncated=True)
    try:
        if reader.complete:
            return None
        if reader.chunks:
            reader.read_chunk(len(reader.chunks) - 1)  # the tail must authenticate
        end = (
            reader.chunks[-1].offset + _CHUNK_HEAD.size + reader.chunks[-1].length
            if reader.chunks
            else len(reader.header)
        )
        return reader.header, reader.cipher, len(reader.chunks), end
    finally:
        reader.close()


class EncryptedFileReader:
    """Reads a chunked encrypted file: its size, one chunk or a byte range at a time.

    The chunk list comes from the chunk heads alone (no decryption); every chunk read is
    authenticated. A file without its last chunk is refused unless ``allow_truncated`` (a call's
    recording a crash cut short is still worth reading).
    """

    def __init__(
        self,
        path: Path | str,
        keyring: Keyring | None,
        *,
        context: str | None = None,
        allow_truncated: bool = False,
    ):
        self.path = Path(path)
        self.context = context if context is not None else file_context(self.path)
        self._file = open(self.path, "rb")  # noqa: SIM115 (closed by close())
        try:
            self.header, kid, salt = _read_header(self._file, self.context)
            if keyring is None:
                raise DecryptionError(
                    f"{self.context}: the file is encrypted and {KEY_ENV} is not set"
                )
            self.cipher = keyring.file_cipher(kid, salt, self.context)
            self.chunks: list[_Chunk] = []
            self.complete = False
            self._index_chunks()
        except BaseException:
            self._file.close()
            raise
        if not self.complete and not allow_truncated:
            self._file.close()
            raise DecryptionError(
                f"{self.context}: the encrypted file is cut short (its last chunk is missing)"
            )
        self.size = sum(chunk.length - TAG_BYTES for chunk in self.chunks)

    def _index_chunks(self) -> None:
        offset = len(self.header)
        plain = 0
        self._file.seek(offset)
        while True:
            head = self._file.read(_CHUNK_HEAD.size)
            if len(head) < _CHUNK_HEAD.size:
                return  # end of file (or a torn head: an unfinished file)
            flag, length = _CHUNK_HEAD.unpack(head)
            if length < TAG_BYTES or flag > 1:
                raise DecryptionError(f"{self.context}: chunk {len(self.chunks)} is malformed")
            end = offset + _CHUNK_HEAD.size + length
            self._file.seek(end)
            if self._file.tell() != end or end > os.fstat(self._file.fileno()).st_size:
                return  # a torn chunk at the end
            self.chunks.append(_Chunk(offset, length, bool(flag), plain))
            plain += length - TAG_BYTES
            offset = end
            if flag:
                self.complete = True
                if self._file.read(1):
                    raise DecryptionError(f"{self.context}: data after the last chunk")
                return

    def read_chunk(self, index: int) -> bytes:
        """The plaintext of chunk ``index`` (authenticated)."""
        chunk = self.chunks[index]
        self._file.seek(chunk.offset + _CHUNK_HEAD.size)
        sealed = self._file.read(chunk.length)
        try:
            return self.cipher.decrypt(
                _nonce(index), sealed, _chunk_aad(self.header, index, chunk.last, self.context)
            )
        except InvalidTag as exc:
            raise DecryptionError(
                f"{self.context}: chunk {index} fails authentication (the file was altered, "
                "or belongs elsewhere)"
            ) from exc

    def iter_chunks(self) -> Iterator[bytes]:
        """Every chunk's plaintext in order."""
        for index in range(len(self.chunks)):
            yield self.read_chunk(index)

    def read_range(self, start: int, end: int) -> Iterator[bytes]:
        """Plaintext bytes ``[start, end)``, decrypting only the chunks they fall in."""
        for index, chunk in enumerate(self.chunks):
            chunk_end = chunk.plain_start + chunk.length - TAG_BYTES
            if chunk_end <= start or chunk.plain_start >= end:
                continue
            plain = self.read_chunk(index)
            yield plain[max(0, start - chunk.plain_start) : end - chunk.plain_start]

    def read_all(self) -> bytes:
        """The whole plaintext."""
        return b"".join(self.iter_chunks())

    def close(self) -> None:
        """Close the file."""
        self._file.close()

    def __enter__(self) -> EncryptedFileReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_stored_file_writer(
    path: Path | str, keyring: Keyring | None, *, append: bool = False
) -> IO[bytes] | EncryptedFileWriter:
    """A binary writer for a file of candidate data: ``write()``, ``flush()``, ``close()``.

    Encrypted (the chunked format) when a keyring is configured, plain otherwise; 0600 either
    way. ``flush()`` makes what was written durable against a process crash (the encrypted writer
    seals it as a chunk): call it about once a second, not per frame. ``append`` continues an
    existing file (a crash's leftover). Read it back with :func:`read_stored_file` or
    :class:`EncryptedFileReader` (``allow_truncated`` for a file no ``close()`` finished).
    """
    if keyring is None:
        return open_private(path, "ab" if append else "wb")
    return EncryptedFileWriter(path, keyring, append=append)


def read_stored_file(
    path: Path | str, keyring: Keyring | None, *, allow_truncated: bool = False
) -> bytes:
    """A stored file's plaintext: decrypted when it is in the encrypted format, else as it is."""
    if not is_encrypted_file(path):
        return Path(path).read_bytes()
    with EncryptedFileReader(path, keyring, allow_truncated=allow_truncated) as reader:
        return reader.read_all()


def write_stored_file(path: Path | str, data: bytes, keyring: Keyring | None) -> None:
    """Write a whole file privately (0600), encrypted when a keyring is configured.

    Written to a temporary name and renamed, so a reader never sees half a file.
    """
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        if keyring is None:
            with open_private(temporary, "wb") as stream:
                stream.write(data)
                stream.flush()
                os.fsync(stream.fileno())
        else:
            with EncryptedFileWriter(temporary, keyring, context=file_context(path)) as writer:
                view = memoryview(data)
                for start in range(0, len(view), CHUNK_SIZE):
                    writer.write(bytes(view[start : start + CHUNK_SIZE]))
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


def reencrypt_file(path: Path | str, keyring: Keyring) -> bool:
    """Rewrite a stored file under the current key (a plaintext file gets encrypted).

    Returns whether it was rewritten (a file already under the current key is left alone). A
    file a crash cut short is rewritten as read (and stays readable).
    """
    path = Path(path)
    if is_encrypted_file(path):
        with open(path, "rb") as stream:
            _, kid, _ = _read_header(stream, file_context(path))
        if kid == keyring.primary.kid:
            return False
    data = read_stored_file(path, keyring, allow_truncated=True)
    write_stored_file(path, data, keyring)
    return True


def json_lines(data: bytes) -> Iterator[dict[str, Any]]:
    """The JSON objects of a JSON-lines text (a line cut by a crash is skipped)."""
    for line in io.BytesIO(data):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            yield record
