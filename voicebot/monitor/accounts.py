"""Recruiter accounts and login sessions of the live monitor (``GET /monitor``).

Two roles: an ``admin`` sees every call; a ``manager`` sees the calls of one hiring department (the
``department`` slug of the job scripts). Accounts are made with ``voicebot users add``; there is
no sign-up page.

Where they live. Several server processes may serve one deployment: with ``VOICEBOT_REDIS_URL``
every process (and the ``voicebot users`` command) shares accounts and sessions in Redis
(:class:`RedisAccounts`), so a recruiter logged in through one process is logged in on all of
them. Without Redis one process keeps them in ``<VOICEBOT_DATA_DIR>/accounts.sqlite3``
(:class:`SqliteAccounts`, WAL mode, so the command can write while the server runs).
:func:`build_accounts` picks the backend from the settings.

Passwords are hashed with scrypt (``hashlib.scrypt``, n=2**15, r=8, p=1, a 16-byte random salt):
scrypt is memory-hard, each hash needs 128 * r * n = 32 MiB and ~50-100 ms, so a stolen store
cannot be brute-forced cheaply on GPUs. The encoding names the algorithm and its parameters
(``scrypt$32768$8$1$<salt>$<hash>``) so they can be raised later without breaking old hashes.
Hashing runs in worker threads (at most :data:`HASH_CONCURRENCY` at a time, bounding memory),
never on the event loop. An unknown username is checked against a dummy hash, so the time a
login takes does not tell which usernames exist; :class:`LoginThrottle` slows guessing.

A login session is a random token (``secrets.token_urlsafe(32)``) the browser keeps in a cookie.
The server stores only its SHA-256: someone who reads the store (a backup, a Redis dump) gets no
usable cookie. Sessions slide: each request extends them to ``VOICEBOT_MONITOR_SESSION_TTL_SECS``
from now (written at most once a minute per session). Removing a user or changing their password
ends their sessions; a session also ends when its user no longer matches it (removed, or added
again, perhaps with another role). Nothing here logs a password, a token or a token's hash.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
import unicodedata
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import aiosqlite

if TYPE_CHECKING:
    from voicebot.config import Settings

log = logging.getLogger(__name__)

ROLES = ("admin", "manager")
"""``admin`` sees every department's calls; ``manager`` only its own department's."""

SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
SCRYPT_MAXMEM = 64 * 1024 * 1024
"""OpenSSL's limit for one hash; n=2**15, r=8 needs 32 MiB (its default limit is 32 MiB too)."""
SALT_BYTES = 16
HASH_BYTES = 32
HASH_CONCURRENCY = 2
"""Password hashes computed at once per process (each takes 32 MiB and a core for ~0.1 s)."""

MIN_PASSWORD_CHARS = 12
MAX_PASSWORD_CHARS = 1024
USERNAME_PATTERN = re.compile(r"[a-z0-9._@-]{1,64}")
DEPARTMENT_PATTERN = re.compile(r"[a-z0-9]+(?:[-_][a-z0-9]+)*")
"""The job scripts' ``department`` slug (``voicebot.dialogue.script.SLUG_PATTERN``)."""
MAX_DEPARTMENT_CHARS = 64
MAX_TOKEN_CHARS = 256
REFRESH_EVERY_SECS = 60.0
"""A session's sliding expiry is written at most this often (or a tenth of the TTL if shorter)."""


class AccountError(ValueError):
    """Bad account input or state; the message says what is wrong, where and what to do."""


@dataclass(frozen=True)
class Account:
    """A recruiter who may log in to the monitor."""

    username: str
    role: str
    department: str | None
    created_at: float


@dataclass(frozen=True)
class MonitorSession:
    """A logged-in recruiter (found by the session cookie's token)."""

    username: str
    role: str
    department: str | None
    csrf: str
    """Sent back by the page with each state-changing request (double submit)."""
    created_at: float
    expires_at: float


# -- passwords -------------------------------------------------------------------------------


def _password_bytes(password: str) -> bytes:
    # NFKC: the same password typed on keyboards that compose characters differently matches.
    return unicodedata.normalize("NFKC", password).encode("utf-8")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str) -> str:
    """Hash a password: ``scrypt$n$r$p$<salt base64>$<hash base64>`` (blocking, ~0.1 s)."""
    salt = secrets.token_bytes(SALT_BYTES)
    digest = hashlib.scrypt(
        _password_bytes(password),
        salt=salt,
        n=SCRYPT_N,
        r=SCRYPT_R,
        p=SCRYPT_P,
        maxmem=SCRYPT_MAXMEM,
        dklen=HASH_BYTES,
    )
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    """Whether ``password`` matches ``encoded``; False for a malformed encoding (blocking)."""
    try:
        algorithm, n_text, r_text, p_text, salt_text, digest_text = encoded.split("$")
        n, r, p = int(n_text), int(r_text), int(p_text)
        if algorithm != "scrypt" or not (2 <= n <= 2**20 and n & (n - 1) == 0):
            return False
        if not (1 <= r <= 32 and 1 <= p <= 16):  # bounds: a corrupt row must not eat the RAM
            return False
        salt = base64.b64decode(salt_text, validate=True)
        expected = base64.b64decode(digest_text, validate=True)
        if not salt or not 16 <= len(expected) <= 64:
            return False
        digest = hashlib.scrypt(
            _password_bytes(password),
            salt=salt,
            n=n,
            r=r,
            p=p,
            maxmem=max(SCRYPT_MAXMEM, 2 * 128 * r * n * p),
            dklen=len(expected),
        )
    except (ValueError, TypeError, AttributeError, binascii.Error, MemoryError):
        return False
    return hmac.compare_digest(digest, expected)


def check_password_policy(password: str, username: str | None = None) -> None:
    """Raise :class:`AccountError` for a password too short (< 12), too long or = the username."""
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_CHARS:
        raise AccountError(
            f"password too short: use at least {MIN_PASSWORD_CHARS} characters (a few unrelated"
            " words make a good one)"
        )
    if len(password) > MAX_PASSWORD_CHARS:
        raise AccountError(f"password too long: use at most {MAX_PASSWORD_CHARS} characters")
    if username is not None and password.strip().lower() == username.strip().lower():
        raise AccountError("password equals the username: choose a different password")


def validate_username(username: str) -> str:
    """The username lower-cased; :class:`AccountError` unless it is 1-64 of ``a-z 0-9 . _ @ -``."""
    name = username.lower() if isinstance(username, str) else ""
    if not USERNAME_PATTERN.fullmatch(name):
        shown = username[:70] if isinstance(username, str) else repr(username)
        raise AccountError(
            f"username {shown!r}: use 1-64 characters: letters, digits and . _ @ - (for example"
            " alice or alice@example.com)"
        )
    return name


def validate_department(role: str, department: str | None) -> str | None:
    """The department to store for ``role``: a manager's slug, None for an admin.

    :class:`AccountError` for a role not in :data:`ROLES`, a manager without a department (or not
    written as the job scripts' ``department`` slug) and an admin with one.
    """
    if role not in ROLES:
        raise AccountError(f"role {role!r}: choose one of {', '.join(ROLES)}")
    department = (department or "").strip()
    if role == "admin":
        if department:
            raise AccountError("admins see every department: drop --department for an admin")
        return None
    if not department:
        raise AccountError(
            "a manager sees the calls of one department: give --department, the `department` of"
            " the job scripts (dialogues/*.yaml), e.g. customer_service"
        )
    slug = department.lower()
    if len(slug) > MAX_DEPARTMENT_CHARS or not DEPARTMENT_PATTERN.fullmatch(slug):
        raise AccountError(
            f"department {department[:70]!r}: write it as in the job scripts' `department` field:"
            " lower-case letters and digits, words joined by - or _ (e.g. customer_service)"
        )
    return slug


def _username_or_none(username: str) -> str | None:
    try:
        return validate_username(username)
    except AccountError:
        return None


def token_hash(token: str) -> str:
    """The SHA-256 (hex) of a session token: what the store keeps instead of the token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


DUMMY_HASH = (
    "scrypt$32768$8$1$4JrpLTYXg0Zz4ismKuA//Q==$6enF+8wx8FwobPQZlKEbrwojKo5v9ghdaE1EUteUvIk="
)
"""What an unknown username's password is checked against (same cost as a real check): the hash
of a random password nobody kept; a match would be ignored anyway."""


# -- the stores -------------------------------------------------------------------------------


class Accounts(ABC):
    """Recruiter accounts and their login sessions (async; backends below)."""

    location: str = ""
    """Where the accounts live, for messages (no secrets)."""

    def __init__(self, session_ttl_secs: float, *, clock: Callable[[], float] = time.time):
        if session_ttl_secs <= 0:
            raise ValueError("session_ttl_secs must be positive")
        self.session_ttl_secs = float(session_ttl_secs)
        self.clock = clock
        """Wall-clock time (shared across processes: session expiry is absolute)."""
        self._hashing = asyncio.Semaphore(HASH_CONCURRENCY)

    # -- lifecycle ---------------------------------------------------------------------------

    @abstractmethod
    async def open(self) -> None:
        """Connect / open the store (creates the SQLite schema)."""

    @abstractmethod
    async def close(self) -> None:
        """Release the connection."""

    async def __aenter__(self) -> Accounts:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- backend primitives --------------------------------------------------------------------

    @abstractmethod
    async def _user_record(self, username: str) -> dict[str, Any] | None:
        """``{"role", "department", "password_hash", "created_at"}`` or None."""

    @abstractmethod
    async def _insert_user(self, username: str, record: dict[str, Any]) -> bool:
        """Store a new user; False if the name is taken."""

    @abstractmethod
    async def _update_password(self, username: str, password_hash: str) -> bool:
        """Replace a user's hash; False if there is no such user."""

    @abstractmethod
    async def _delete_user(self, username: str) -> bool:
        """Delete a user; False if there was none."""

    @abstractmethod
    async def _user_records(self) -> dict[str, dict[str, Any]]:
        """Every user's record by username."""

    @abstractmethod
    async def _end_user_sessions(self, username: str) -> None:
        """Delete every session of the user."""

    @abstractmethod
    async def _insert_session(self, digest: str, record: dict[str, Any]) -> None:
        """Store a session record under its token's hash."""

    @abstractmethod
    async def _session_record(self, digest: str) -> dict[str, Any] | None:
        """The session stored under this token hash, or None."""

    @abstractmethod
    async def _extend_session(self, digest: str, record: dict[str, Any]) -> None:
        """Store the record's new ``expires_at`` (only if the session still exists)."""

    @abstractmethod
    async def _delete_session(self, digest: str) -> None:
        """Delete one session (no error when there is none)."""

    # -- accounts ------------------------------------------------------------------------------

    async def _hash(self, password: str) -> str:
        async with self._hashing:
            return await asyncio.to_thread(hash_password, password)

    async def _verify(self, password: str, encoded: str | None) -> bool:
        async with self._hashing:
            if encoded is None:
                await asyncio.to_thread(verify_password, password, DUMMY_HASH)
                return False
            return await asyncio.to_thread(verify_password, password, encoded)

    @staticmethod
    def _account(username: str, record: dict[str, Any]) -> Account:
        return Account(
            username=username,
            role=record["role"],
            department=record.get("department"),
            created_at=float(record["created_at"]),
        )

    async def add_user(
        self, username: str, role: str, department: str | None, password: str
    ) -> Account:
        """Create an account (AccountError: bad input or the user exists)."""
        name = validate_username(username)
        department = validate_department(role, department)
        check_password_policy(password, name)
        if await self._user_record(name) is not None:
            raise self._exists(name)
        now = self.clock()
        record = {
            "role": role,
            "department": department,
            "password_hash": await self._hash(password),
            "created_at": now,
            "password_changed_at": now,
        }
        if not await self._insert_user(name, record):
            raise self._exists(name)
        log.info("monitor account added: %s (%s)", name, role)
        return self._account(name, record)

    def _exists(self, name: str) -> AccountError:
        return AccountError(
            f"user {name!r} already exists in {self.location}: choose another username, or"
            f" `voicebot users passwd {name}` to change their password"
        )

    def _unknown(self, name: str) -> AccountError:
        return AccountError(
            f"no user {name!r} in {self.location}: `voicebot users list` shows the users,"
            " `voicebot users add` adds one"
        )

    async def set_password(self, username: str, password: str) -> None:
        """Change a password and end the user's sessions (AccountError: unknown user, weak)."""
        name = validate_username(username)
        check_password_policy(password, name)
        if await self._user_record(name) is None:
            raise self._unknown(name)
        if not await self._update_password(name, await self._hash(password)):
            raise self._unknown(name)
        await self._end_user_sessions(name)
        log.info("monitor account password changed: %s (sessions ended)", name)

    async def remove_user(self, username: str) -> bool:
        """Delete an account and end its sessions; False if there was none."""
        name = _username_or_none(username)
        if name is None:
            return False
        removed = await self._delete_user(name)
        await self._end_user_sessions(name)
        if removed:
            log.info("monitor account removed: %s", name)
        return removed

    async def list_users(self) -> list[Account]:
        """Every account, by username."""
        records = await self._user_records()
        return [self._account(name, records[name]) for name in sorted(records)]

    async def get_user(self, username: str) -> Account | None:
        """One account, or None."""
        name = _username_or_none(username)
        record = await self._user_record(name) if name is not None else None
        return self._account(name, record) if record is not None else None

    async def authenticate(self, username: str, password: str) -> Account | None:
        """The account if the password is right, else None (same cost for unknown users)."""
        name = _username_or_none(username) if isinstance(username, str) else None
        record = await self._user_record(name) if name is not None else None
        if not isinstance(password, str) or len(password) > MAX_PASSWORD_CHARS:
            password, record = "", None
        if not await self._verify(password, record["password_hash"] if record else None):
            return None
        assert name is not None and record is not None
        return self._account(name, record)

    # -- sessions ------------------------------------------------------------------------------

    def _refresh_after(self) -> float:
        return min(REFRESH_EVERY_SECS, self.session_ttl_secs / 10)

    async def create_session(self, account: Account) -> tuple[str, MonitorSession]:
        """A new login session: (token for the cookie, session); only the token's hash is stored.

        AccountError if the account was removed (or removed and added again) since it was
        authenticated.
        """
        record = await self._user_record(account.username)
        if record is None or float(record["created_at"]) != account.created_at:
            raise self._unknown(account.username)
        token = secrets.token_urlsafe(32)
        now = self.clock()
        session = MonitorSession(
            username=account.username,
            role=record["role"],
            department=record.get("department"),
            csrf=secrets.token_urlsafe(24),
            created_at=now,
            expires_at=now + self.session_ttl_secs,
        )
        await self._insert_session(
            token_hash(token),
            {
                "username": session.username,
                "role": session.role,
                "department": session.department,
                "csrf": session.csrf,
                "created_at": session.created_at,
                "expires_at": session.expires_at,
                "user_created_at": float(record["created_at"]),
            },
        )
        return token, session

    async def get_session(self, token: str) -> MonitorSession | None:
        """The live session of a cookie token, extended to now + TTL.

        None if the token is unknown or expired, or its user was removed or changed role.
        """
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
            return None
        digest = token_hash(token)
        record = await self._session_record(digest)
        if record is None:
            return None
        now = self.clock()
        user = await self._user_record(record["username"])
        if (
            float(record["expires_at"]) <= now
            or user is None
            or user["role"] != record["role"]
            or user.get("department") != record.get("department")
            or float(user["created_at"]) != float(record["user_created_at"])
        ):
            await self._delete_session(digest)
            return None
        expires_at = now + self.session_ttl_secs
        if expires_at - float(record["expires_at"]) >= self._refresh_after():
            record = {**record, "expires_at": expires_at}
            await self._extend_session(digest, record)
        return MonitorSession(
            username=record["username"],
            role=record["role"],
            department=record.get("department"),
            csrf=record["csrf"],
            created_at=float(record["created_at"]),
            expires_at=float(record["expires_at"]),
        )

    async def end_session(self, token: str) -> None:
        """Log out: forget the session (no error if it is unknown)."""
        if isinstance(token, str) and token and len(token) <= MAX_TOKEN_CHARS:
            await self._delete_session(token_hash(token))


# -- SQLite ------------------------------------------------------------------------------------

SQLITE_MIGRATIONS = [
    """
    CREATE TABLE users (
        username TEXT PRIMARY KEY,
        role TEXT NOT NULL,
        department TEXT,
        password_hash TEXT NOT NULL,
        created_at REAL NOT NULL,
        password_changed_at REAL NOT NULL
    );
    CREATE TABLE sessions (
        token_hash TEXT PRIMARY KEY,
        username TEXT NOT NULL,
        role TEXT NOT NULL,
        department TEXT,
        csrf TEXT NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        user_created_at REAL NOT NULL
    );
    CREATE INDEX sessions_username ON sessions (username);
    CREATE INDEX sessions_expires_at ON sessions (expires_at);
    """,
]


class SqliteAccounts(Accounts):
    """Accounts and sessions in one SQLite file (one server process, plus the CLI)."""

    def __init__(
        self, path: Path, session_ttl_secs: float, *, clock: Callable[[], float] = time.time
    ):
        super().__init__(session_ttl_secs, clock=clock)
        self.path = Path(path)
        self.location = str(self.path)
        self._db: aiosqlite.Connection | None = None

    async def open(self) -> None:
        """Open the file (creating its folder and schema)."""
        if self._db is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(self.path, timeout=10.0)
        try:
            db.row_factory = aiosqlite.Row
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA synchronous=NORMAL")
            async with db.execute("PRAGMA user_version") as cursor:
                (version,) = await cursor.fetchone()
            for number, script in enumerate(SQLITE_MIGRATIONS[version:], start=version + 1):
                await db.executescript(script)
                await db.execute(f"PRAGMA user_version = {number}")
            await db.commit()
        except BaseException:
            await db.close()
            raise
        self._db = db

    async def close(self) -> None:
        """Close the file."""
        if self._db is not None:
            await self._db.close()
            self._db = None

    @property
    def db(self) -> aiosqlite.Connection:
        """The open connection (``open()`` first)."""
        if self._db is None:
            raise RuntimeError("SqliteAccounts.open() was not called")
        return self._db

    async def _one(self, sql: str, params: tuple = ()) -> dict[str, Any] | None:
        async with self.db.execute(sql, params) as cursor:
            row = await cursor.fetchone()
        return dict(row) if row is not None else None

    async def _write(self, sql: str, params: tuple = ()) -> int:
        async with self.db.execute(sql, params) as cursor:
            count = cursor.rowcount
        await self.db.commit()
        return count

    async def _user_record(self, username: str) -> dict[str, Any] | None:
        return await self._one("SELECT * FROM users WHERE username = ?", (username,))

    async def _insert_user(self, username: str, record: dict[str, Any]) -> bool:
        try:
            await self._write(
                "INSERT INTO users (username, role, department, password_hash, created_at,"
                " password_changed_at) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    username,
                    record["role"],
                    record["department"],
                    record["password_hash"],
                    record["created_at"],
                    record["password_changed_at"],
                ),
            )
        except aiosqlite.IntegrityError:
            await self.db.rollback()
            return False
        return True

    async def _update_password(self, username: str, password_hash: str) -> bool:
        count = await self._write(
            "UPDATE users SET password_hash = ?, password_changed_at = ? WHERE username = ?",
            (password_hash, self.clock(), username),
        )
        return count > 0

    async def _delete_user(self, username: str) -> bool:
        return await self._write("DELETE FROM users WHERE username = ?", (username,)) > 0

    async def _user_records(self) -> dict[str, dict[str, Any]]:
        async with self.db.execute("SELECT * FROM users") as cursor:
            rows = await cursor.fetchall()
        return {row["username"]: dict(row) for row in rows}

    async def _end_user_sessions(self, username: str) -> None:
        await self._write("DELETE FROM sessions WHERE username = ?", (username,))

    async def _insert_session(self, digest: str, record: dict[str, Any]) -> None:
        await self.db.execute("DELETE FROM sessions WHERE expires_at <= ?", (self.clock(),))
        await self._write(
            "INSERT INTO sessions (token_hash, username, role, department, csrf, created_at,"
            " expires_at, user_created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                digest,
                record["username"],
                record["role"],
                record["department"],
                record["csrf"],
                record["created_at"],
                record["expires_at"],
                record["user_created_at"],
            ),
        )

    async def _session_record(self, digest: str) -> dict[str, Any] | None:
        return await self._one("SELECT * FROM sessions WHERE token_hash = ?", (digest,))

    async def _extend_session(self, digest: str, record: dict[str, Any]) -> None:
        await self._write(
            "UPDATE sessions SET expires_at = ? WHERE token_hash = ?",
            (record["expires_at"], digest),
        )

    async def _delete_session(self, digest: str) -> None:
        await self._write("DELETE FROM sessions WHERE token_hash = ?", (digest,))


# -- Redis -------------------------------------------------------------------------------------

_UPDATE_USER = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
    redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
    return 1
end
return 0
"""
"""Compare-and-set of one user's JSON (another process may change it between read and write)."""


def _public_url(url: str) -> str:
    """A Redis URL without its password (for messages)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        return urlunsplit((parts.scheme, host, parts.path, "", ""))
    except ValueError:
        return "VOICEBOT_REDIS_URL"


class RedisAccounts(Accounts):
    """Accounts and sessions in Redis, shared by every server process of a deployment.

    ``{prefix}:users`` is a hash username -> JSON record; each session is the key
    ``{prefix}:session:<sha256 of the token>`` (JSON, expiring with the session, so Redis forgets
    it); ``{prefix}:user-sessions:<username>`` is the set of a user's session hashes, to end them.
    """

    def __init__(
        self,
        url: str,
        session_ttl_secs: float,
        prefix: str = "voicebot:monitor",
        *,
        clock: Callable[[], float] = time.time,
    ):
        super().__init__(session_ttl_secs, clock=clock)
        self.url = url
        self.prefix = prefix
        self.users_key = f"{prefix}:users"
        self.location = f"Redis {_public_url(url)} ({self.users_key})"
        self._redis: Any = None
        self._update_user: Any = None

    def _session_key(self, digest: str) -> str:
        return f"{self.prefix}:session:{digest}"

    def _user_sessions_key(self, username: str) -> str:
        return f"{self.prefix}:user-sessions:{username}"

    def _ttl_ms(self) -> int:
        return max(1, int(self.session_ttl_secs * 1000))

    async def open(self) -> None:
        """Connect and check that Redis answers."""
        if self._redis is not None:
            return
        from voicebot.redis_client import connect

        client = connect(self.url, socket_timeout=5.0, connect_timeout=2.0)
        try:
            await client.ping()
        except asyncio.CancelledError:
            await client.aclose()
            raise
        except Exception as error:  # calls go on without Redis; sign-ins wait for it
            log.warning("accounts: redis %s unreachable (%s)", _public_url(self.url), error)
        self._redis = client
        self._update_user = client.register_script(_UPDATE_USER)

    async def close(self) -> None:
        """Disconnect."""
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    @property
    def redis(self) -> Any:
        """The client (``open()`` first)."""
        if self._redis is None:
            raise RuntimeError("RedisAccounts.open() was not called")
        return self._redis

    async def _user_record(self, username: str) -> dict[str, Any] | None:
        raw = await self.redis.hget(self.users_key, username)
        return json.loads(raw) if raw is not None else None

    async def _insert_user(self, username: str, record: dict[str, Any]) -> bool:
        return bool(await self.redis.hsetnx(self.users_key, username, json.dumps(record)))

    async def _update_password(self, username: str, password_hash: str) -> bool:
        for _ in range(10):
            raw = await self.redis.hget(self.users_key, username)
            if raw is None:
                return False
            record = {
                **json.loads(raw),
                "password_hash": password_hash,
                "password_changed_at": self.clock(),
            }
            done = await self._update_user(
                keys=[self.users_key], args=[username, raw, json.dumps(record)], client=self.redis
            )
            if done:
                return True
        raise RuntimeError(f"user {username!r} kept changing while its password was being set")

    async def _delete_user(self, username: str) -> bool:
        return bool(await self.redis.hdel(self.users_key, username))

    async def _user_records(self) -> dict[str, dict[str, Any]]:
        raw = await self.redis.hgetall(self.users_key)
        return {name: json.loads(value) for name, value in raw.items()}

    async def _end_user_sessions(self, username: str) -> None:
        set_key = self._user_sessions_key(username)
        digests = await self.redis.smembers(set_key)
        async with self.redis.pipeline(transaction=True) as pipe:
            for digest in digests:
                pipe.delete(self._session_key(digest))
            pipe.delete(set_key)
            await pipe.execute()

    async def _insert_session(self, digest: str, record: dict[str, Any]) -> None:
        set_key = self._user_sessions_key(record["username"])
        ttl_ms = self._ttl_ms()
        # Forget the hashes of sessions Redis already expired, so the set stays small.
        digests = list(await self.redis.smembers(set_key))
        if digests:
            async with self.redis.pipeline(transaction=False) as pipe:
                for d in digests:
                    pipe.exists(self._session_key(d))
                alive = await pipe.execute()
            gone = [d for d, ok in zip(digests, alive, strict=True) if not ok]
            if gone:
                await self.redis.srem(set_key, *gone)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self._session_key(digest), json.dumps(record), px=ttl_ms)
            pipe.sadd(set_key, digest)
            pipe.pexpire(set_key, ttl_ms)
            await pipe.execute()

    async def _session_record(self, digest: str) -> dict[str, Any] | None:
        raw = await self.redis.get(self._session_key(digest))
        return json.loads(raw) if raw is not None else None

    async def _extend_session(self, digest: str, record: dict[str, Any]) -> None:
        ttl_ms = self._ttl_ms()
        async with self.redis.pipeline(transaction=True) as pipe:
            # XX: a session ended meanwhile (logout, password change) is not brought back.
            pipe.set(self._session_key(digest), json.dumps(record), px=ttl_ms, xx=True)
            pipe.pexpire(self._user_sessions_key(record["username"]), ttl_ms)
            await pipe.execute()

    async def _delete_session(self, digest: str) -> None:
        raw = await self.redis.get(self._session_key(digest))
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._session_key(digest))
            if raw is not None:
                pipe.srem(self._user_sessions_key(json.loads(raw)["username"]), digest)
            await pipe.execute()


def build_accounts(settings: Settings) -> Accounts:
    """Redis accounts when ``VOICEBOT_REDIS_URL`` is set, else ``<data dir>/accounts.sqlite3``."""
    if settings.redis_url:
        return RedisAccounts(settings.redis_url, settings.monitor_session_ttl_secs)
    return SqliteAccounts(
        Path(settings.data_dir) / "accounts.sqlite3", settings.monitor_session_ttl_secs
    )


# -- login throttling --------------------------------------------------------------------------


class LoginThrottle:
    """Failed logins per username and per client address in a sliding window (this process).

    After ``max_per_user`` failures for one username (or ``max_per_ip`` from one address) within
    ``window_secs``, further attempts wait until the oldest of those failures leaves the window.
    A successful login clears the username's failures.

    The web layer calls :meth:`begin_attempt` before the slow password check: it decides and
    counts the attempt as a failure in one step, so guesses sent all at once cannot all pass
    the check before the first failure is counted; a success then takes the count back.
    """

    MAX_KEYS = 10_000
    """Usernames/addresses tracked at most (a spray of made-up names cannot grow memory)."""

    def __init__(
        self,
        max_per_user: int = 5,
        max_per_ip: int = 20,
        window_secs: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.max_per_user = max_per_user
        self.max_per_ip = max_per_ip
        self.window_secs = window_secs
        self.clock = clock
        self._users: dict[str, deque[float]] = {}
        self._ips: dict[str, deque[float]] = {}

    @staticmethod
    def _user_key(username: str) -> str:
        return username.strip().lower()[:128]

    def _wait(self, failures: dict[str, deque[float]], key: str, limit: int, now: float) -> float:
        times = failures.get(key)
        if not times:
            return 0.0
        while times and times[0] <= now - self.window_secs:
            times.popleft()
        if not times:
            del failures[key]
            return 0.0
        if len(times) < limit:
            return 0.0
        return max(0.0, times[-limit] + self.window_secs - now)

    def retry_after(self, username: str, ip: str) -> float:
        """0 when a login attempt is allowed now, else the seconds to wait."""
        now = self.clock()
        return max(
            self._wait(self._users, self._user_key(username), self.max_per_user, now),
            self._wait(self._ips, ip, self.max_per_ip, now),
        )

    def _add(self, failures: dict[str, deque[float]], key: str, limit: int, now: float) -> None:
        times = failures.pop(key, None) or deque(maxlen=max(1, limit))
        times.append(now)
        failures[key] = times  # re-inserted: the dict stays ordered by latest failure
        while len(failures) > self.MAX_KEYS:  # forget the least recently failing
            del failures[next(iter(failures))]

    def failed(self, username: str, ip: str) -> None:
        """Count a failed login."""
        now = self.clock()
        self._add(self._users, self._user_key(username), self.max_per_user, now)
        self._add(self._ips, ip, self.max_per_ip, now)

    def succeeded(self, username: str, ip: str) -> None:
        """A successful login: forget that username's failures."""
        self._users.pop(self._user_key(username), None)

    def attempt(self, username: str, ip: str) -> float:
        """Decide and count an attempt at once: 0 (allowed, counted as a failure) or the wait."""
        wait = self.retry_after(username, ip)
        if wait <= 0:
            self.failed(username, ip)
        return wait

    def _uncount(self, username: str, ip: str) -> None:
        for failures, key in ((self._users, self._user_key(username)), (self._ips, ip)):
            times = failures.get(key)
            if times:
                times.pop()

    def attempt_succeeded(self, username: str, ip: str) -> None:
        """An attempt counted by :meth:`attempt` succeeded: forget the username's failures."""
        self._uncount(username, ip)
        self.succeeded(username, ip)

    def attempt_abandoned(self, username: str, ip: str) -> None:
        """An attempt counted by :meth:`attempt` was not decided (the store was down)."""
        self._uncount(username, ip)

    # The web layer awaits these, so the shared (Redis) throttle can stand in for this one.

    async def wait_secs(self, username: str, ip: str) -> float:
        """As :meth:`retry_after`."""
        return self.retry_after(username, ip)

    async def record_failure(self, username: str, ip: str) -> None:
        """As :meth:`failed`."""
        self.failed(username, ip)

    async def record_success(self, username: str, ip: str) -> None:
        """As :meth:`succeeded`."""
        self.succeeded(username, ip)

    async def begin_attempt(self, username: str, ip: str) -> float:
        """As :meth:`attempt`."""
        return self.attempt(username, ip)

    async def end_attempt(self, username: str, ip: str, outcome: str) -> None:
        """After :meth:`begin_attempt`: ``"ok"``, ``"failed"`` (stays counted), ``"undecided"``."""
        if outcome == "ok":
            self.attempt_succeeded(username, ip)
        elif outcome == "undecided":
            self.attempt_abandoned(username, ip)


class RedisLoginThrottle:
    """:class:`LoginThrottle`'s limits shared by every server process through Redis.

    Behind a load balancer each process would otherwise allow its own five guesses. Failures are
    counted per username and per address in fixed windows (``INCR`` + ``EXPIRE NX``); a key at
    its limit makes attempts wait for the key's expiry. :meth:`begin_attempt` checks both limits
    and counts the attempt in one Lua script, so concurrent guesses on several processes cannot
    all slip under a limit. While Redis is unreachable the process falls back to its own
    in-memory throttle (guessing never gets easier than with one process).
    """

    _BEGIN_ATTEMPT = """
    local wait = 0
    for i, key in ipairs(KEYS) do
        if tonumber(redis.call('GET', key) or '0') >= tonumber(ARGV[i]) then
            wait = math.max(wait, redis.call('PTTL', key))
        end
    end
    if wait > 0 then return wait end
    for _, key in ipairs(KEYS) do
        redis.call('INCR', key)
        if redis.call('PTTL', key) < 0 then redis.call('PEXPIRE', key, ARGV[3]) end
    end
    return 0
    """
    """Both limits checked and both counts raised in one step (milliseconds to wait, or 0)."""

    _UNCOUNT = """
    for _, key in ipairs(KEYS) do
        if tonumber(redis.call('GET', key) or '0') > 0 then redis.call('DECR', key) end
    end
    return 0
    """

    def __init__(
        self,
        url: str,
        max_per_user: int = 5,
        max_per_ip: int = 20,
        window_secs: float = 900.0,
        prefix: str = "voicebot:monitor:failures",
    ) -> None:
        self.url = url
        self.max_per_user = max_per_user
        self.max_per_ip = max_per_ip
        self.window_secs = window_secs
        self.prefix = prefix
        self.local = LoginThrottle(max_per_user, max_per_ip, window_secs)
        self._redis: Any = None

    def _client(self) -> Any:
        if self._redis is None:
            from voicebot.redis_client import connect

            self._redis = connect(self.url, socket_timeout=1.0)
        return self._redis

    def _keys(self, username: str, ip: str) -> tuple[str, str]:
        user = hashlib.sha256(LoginThrottle._user_key(username).encode()).hexdigest()[:32]
        return f"{self.prefix}:user:{user}", f"{self.prefix}:ip:{ip[:64]}"

    async def wait_secs(self, username: str, ip: str) -> float:
        """0 when a login attempt is allowed now, else the seconds to wait."""
        user_key, ip_key = self._keys(username, ip)
        try:
            pipe = self._client().pipeline(transaction=False)
            pipe.get(user_key).pttl(user_key).get(ip_key).pttl(ip_key)
            user_count, user_ttl, ip_count, ip_ttl = await pipe.execute()
        except Exception as error:
            log.warning("login throttle: redis unreachable (%s); this process's counts", error)
            return self.local.retry_after(username, ip)
        wait = 0.0
        if int(user_count or 0) >= self.max_per_user and user_ttl > 0:
            wait = user_ttl / 1000
        if int(ip_count or 0) >= self.max_per_ip and ip_ttl > 0:
            wait = max(wait, ip_ttl / 1000)
        return max(wait, self.local.retry_after(username, ip))

    async def record_failure(self, username: str, ip: str) -> None:
        """Count a failed login (in Redis and locally)."""
        self.local.failed(username, ip)
        window = max(1, int(self.window_secs))
        try:
            pipe = self._client().pipeline(transaction=False)
            for key in self._keys(username, ip):
                pipe.incr(key).expire(key, window, nx=True)
            await pipe.execute()
        except Exception as error:
            log.warning("login throttle: redis unreachable (%s)", error)

    async def record_success(self, username: str, ip: str) -> None:
        """A successful login: forget that username's failures."""
        self.local.succeeded(username, ip)
        try:
            await self._client().delete(self._keys(username, ip)[0])
        except Exception as error:
            log.warning("login throttle: redis unreachable (%s)", error)

    async def begin_attempt(self, username: str, ip: str) -> float:
        """Decide and count an attempt in one Redis step: 0 (allowed, counted) or the wait."""
        wait = self.local.retry_after(username, ip)
        if wait > 0:
            return wait
        window_ms = max(1, int(self.window_secs * 1000))
        try:
            wait_ms = await self._client().eval(
                self._BEGIN_ATTEMPT,
                2,
                *self._keys(username, ip),
                self.max_per_user,
                self.max_per_ip,
                window_ms,
            )
        except Exception as error:
            log.warning("login throttle: redis unreachable (%s); this process's counts", error)
            return self.local.attempt(username, ip)
        if int(wait_ms) > 0:
            return int(wait_ms) / 1000
        self.local.failed(username, ip)
        return 0.0

    async def end_attempt(self, username: str, ip: str, outcome: str) -> None:
        """After :meth:`begin_attempt`: ``"ok"``, ``"failed"`` (stays counted), ``"undecided"``."""
        if outcome == "failed":
            return
        user_key, ip_key = self._keys(username, ip)
        if outcome == "ok":
            self.local.attempt_succeeded(username, ip)
        else:
            self.local.attempt_abandoned(username, ip)
        try:
            if outcome == "ok":
                await self._client().delete(user_key)
                await self._client().eval(self._UNCOUNT, 1, ip_key)
            else:
                await self._client().eval(self._UNCOUNT, 2, user_key, ip_key)
        except Exception as error:
            log.warning("login throttle: redis unreachable (%s)", error)

    async def close(self) -> None:
        """Close the connection."""
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None


def build_throttle(settings: Settings) -> LoginThrottle | RedisLoginThrottle:
    """The sign-in throttle: shared through Redis when configured, else this process's."""
    return RedisLoginThrottle(settings.redis_url) if settings.redis_url else LoginThrottle()
