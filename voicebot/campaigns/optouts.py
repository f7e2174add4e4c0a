"""The do-not-call list: numbers no campaign may ever dial (``opt_outs``, migration 7).

A number is listed by the admin (``POST /api/opt-outs``, with a reason), by the candidate on a
call ("stop calling me", "不要再打了": source ``voice``) or by an import. The dialer asks
:meth:`DoNotCallList.is_opted_out` when it claims an attempt, so a number listed after the
candidate joined a campaign is never dialed either.

Rows are keyed by ``phone_key``, a keyed hash of the E.164 number, never by the number:

- with a data key (``VOICEBOT_DATA_KEY``): the data keyring's blind index (purpose
  ``do_not_call``), as the interviews' phone numbers are found;
- without one: HMAC-SHA256 under a key derived from the server secret
  (``VOICEBOT_STREAM_TOKEN_SECRET``, as the signed links derive theirs), or, when that is unset
  (random per process), from a random key kept in ``<VOICEBOT_DATA_DIR>/do-not-call.key`` (0600)
  so the list survives restarts and is shared by the CLI.

Look-ups try every key that may have listed a number (each data key, the server secret's, the
key file's), so setting a data key later keeps old entries found; ``voicebot data-key rotate``
moves the entries to the new data key (:meth:`DoNotCallList.rekey`). ``phone`` (sealed with the
data key when set) is kept only for listing: erasing a candidate (:mod:`voicebot.privacy.erasure`)
drops it and keeps the entry under the key file's key, which never rotates, so the number stays
listed. Changing ``VOICEBOT_STREAM_TOKEN_SECRET`` without a data key hides the entries listed
under the old secret (set ``VOICEBOT_DATA_KEY``, or keep the secret).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voicebot.crypto import Keyring, create_private_file, seal, unseal
from voicebot.store.database import OPT_OUT_SOURCES, Store

INDEX_PURPOSE = "do_not_call"
"""The blind index's purpose label for do-not-call numbers."""
KEY_FILE = "do-not-call.key"
"""The key file in the data folder, used when neither a data key nor a server secret is set."""
KEY_LABEL = b"voicebot/do-not-call/v1"


def _secret_key(secret: bytes) -> bytes:
    """The do-not-call HMAC key derived from a server secret (its own purpose label)."""
    return hmac.new(secret, KEY_LABEL, hashlib.sha256).digest()


def load_key_file(data_dir: Path) -> bytes:
    """The random key of ``data_dir/do-not-call.key``, created (0600) on first use. Blocking."""
    path = Path(data_dir) / KEY_FILE
    if not path.exists() or path.stat().st_size == 0:
        create_private_file(path)
        with path.open("r+b") as file:
            if not file.read():  # another process may have written it meanwhile
                file.write(secrets.token_bytes(32).hex().encode())
    return bytes.fromhex(path.read_text().strip())


@dataclass(frozen=True)
class PhoneKeys:
    """Keyed hashes of a phone number: the one a new entry is stored under, and all to look up."""

    keyring: Keyring | None
    secret_keys: tuple[bytes, ...]
    """HMAC keys from the server secret and/or the key file (the first stores when no keyring)."""

    def _hmac(self, key: bytes, phone: str) -> str:
        return "s." + hmac.new(key, phone.encode(), hashlib.sha256).hexdigest()[:40]

    def primary(self, phone: str) -> str:
        """The key a number is listed under now."""
        if self.keyring is not None:
            return self.keyring.blind_index(phone, INDEX_PURPOSE)
        return self._hmac(self.secret_keys[0], phone)

    def stable(self, phone: str) -> str:
        """The key of an erased candidate's entry: under the key file's key, never rotated.

        The number is gone, so a data key rotation could not re-key the entry.
        """
        return self._hmac(self.secret_keys[-1], phone)

    def all(self, phone: str) -> list[str]:
        """Every key the number may have been listed under."""
        keys = self.keyring.blind_indexes(phone, INDEX_PURPOSE) if self.keyring else []
        return keys + [self._hmac(key, phone) for key in self.secret_keys]


def phone_keys(server_secret: str, keyring: Keyring | None, data_dir: Path) -> PhoneKeys:
    """The phone keys of this configuration (reads or creates the key file: blocking)."""
    keys = []
    if server_secret:
        keys.append(_secret_key(server_secret.encode()))
    keys.append(_secret_key(load_key_file(data_dir)))
    return PhoneKeys(keyring, tuple(keys))


class DoNotCallList:
    """The ``opt_outs`` table over the interview store's connection."""

    def __init__(self, store: Store, keys: PhoneKeys):
        self.store = store
        self.keys = keys

    async def is_opted_out(self, phone: str) -> bool:
        """Whether the E.164 ``phone`` is on the list (the dialer asks at claim time)."""
        if not phone:
            return False
        keys = self.keys.all(phone)
        row = await self.store._one(
            f"SELECT 1 FROM opt_outs WHERE phone_key IN ({', '.join('?' * len(keys))})", keys
        )
        return row is not None

    async def listed(self, phones: list[str]) -> set[str]:
        """Which of ``phones`` are on the list (one query; for a bulk import)."""
        by_key = await asyncio.to_thread(self._keys_of, phones)  # thousands of HMACs
        if not by_key:
            return set()
        rows = await self.store._all(
            "SELECT phone_key FROM opt_outs WHERE phone_key IN (SELECT value FROM json_each(?))",
            (_json_list(list(by_key)),),
        )
        return {by_key[row["phone_key"]] for row in rows}

    def _keys_of(self, phones: list[str]) -> dict[str, str]:
        return {key: phone for phone in set(phones) if phone for key in self.keys.all(phone)}

    async def add(
        self, phone: str, *, reason: str, source: str, added_by: str
    ) -> tuple[dict[str, Any], bool]:
        """List ``phone``; returns (entry, newly listed). Listing twice keeps the first entry."""
        if source not in OPT_OUT_SOURCES:
            raise ValueError(f"unknown opt-out source {source!r}; known: {OPT_OUT_SOURCES}")
        existing = await self._entry(phone)
        if existing is not None:
            return existing, False
        key = self.keys.primary(phone)
        cursor = await self.store.db.execute(
            "INSERT INTO opt_outs (phone_key, phone, reason, source, added_by, added_at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (phone_key) DO NOTHING",
            (
                key,
                seal(self.store.keyring, phone, f"opt_outs/phone/{key}"),
                reason,
                source,
                added_by,
                time.time(),
            ),
        )
        await self.store.db.commit()
        entry = await self._entry(phone)
        assert entry is not None
        return entry, cursor.rowcount == 1

    async def remove(self, phone: str) -> dict[str, Any] | None:
        """Take ``phone`` off the list; the entry removed, or None if it was not listed."""
        entry = await self._entry(phone)
        if entry is None:
            return None
        keys = self.keys.all(phone)
        await self.store.db.execute(
            f"DELETE FROM opt_outs WHERE phone_key IN ({', '.join('?' * len(keys))})", keys
        )
        await self.store.db.commit()
        return entry

    async def entries(self) -> list[dict[str, Any]]:
        """Every entry, newest first; ``phone`` is None for an erased candidate's number."""
        rows = await self.store._all("SELECT * FROM opt_outs ORDER BY added_at DESC")
        return [self._out(row) for row in rows]

    async def forget_numbers(self, phones: list[str]) -> int:
        """Erasure: drop these numbers from their entries, keep them listed; rows changed.

        The entry moves to the :meth:`PhoneKeys.stable` key, so a later data key rotation (which
        re-keys entries by their number) cannot lose it.
        """
        changed = 0
        for phone in sorted(set(filter(None, phones))):
            keys = self.keys.all(phone)
            cursor = await self.store.db.execute(
                "UPDATE OR REPLACE opt_outs SET phone = NULL, phone_key = ?"
                " WHERE phone IS NOT NULL AND phone_key IN (SELECT value FROM json_each(?))",
                (self.keys.stable(phone), _json_list(keys)),
            )
            changed += cursor.rowcount
        await self.store.db.commit()
        await self.store.checkpoint()  # no copy of the number stays in the write-ahead log
        return changed

    async def rekey(self) -> int:
        """Data key rotation: entries with their number move to the current key (and its seal).

        ``voicebot data-key rotate`` runs this; entries of erased candidates are under the
        stable key already. Returns how many entries were re-keyed.
        """
        rows = await self.store._all(
            "SELECT phone_key, phone FROM opt_outs WHERE phone IS NOT NULL"
        )
        moved = 0
        for row in rows:
            phone = unseal(self.store.keyring, row["phone"], f"opt_outs/phone/{row['phone_key']}")
            key = self.keys.primary(phone)
            await self.store.db.execute(
                "UPDATE OR REPLACE opt_outs SET phone_key = ?, phone = ? WHERE phone_key = ?",
                (key, seal(self.store.keyring, phone, f"opt_outs/phone/{key}"), row["phone_key"]),
            )
            moved += 1
        await self.store.db.commit()
        return moved

    async def _entry(self, phone: str) -> dict[str, Any] | None:
        keys = self.keys.all(phone)
        row = await self.store._one(
            f"SELECT * FROM opt_outs WHERE phone_key IN ({', '.join('?' * len(keys))})", keys
        )
        return None if row is None else self._out(row)

    def _out(self, row: dict[str, Any]) -> dict[str, Any]:
        phone = unseal(self.store.keyring, row["phone"], f"opt_outs/phone/{row['phone_key']}")
        return {
            "phone": phone,
            "reason": row["reason"],
            "source": row["source"],
            "added_by": row["added_by"],
            "added_at": row["added_at"],
            "erased": phone is None,
        }


def _json_list(values: list[str]) -> str:
    import json

    return json.dumps(values)
