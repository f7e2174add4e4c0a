"""Monitor accounts and login sessions, both backends (SQLite file, a real redis-server), the
login throttle and the ``voicebot users`` command in a real subprocess."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import redis.asyncio as redis

from tests.redis_helper import RedisServer
from voicebot.config import Settings
from voicebot.monitor.accounts import (
    ROLES,
    Account,
    AccountError,
    Accounts,
    LoginThrottle,
    MonitorSession,
    RedisAccounts,
    SqliteAccounts,
    build_accounts,
    check_password_policy,
    hash_password,
    validate_username,
    verify_password,
)

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery"
OTHER_PASSWORD = "another long password"


class FakeClock:
    """Wall-clock time the test moves by hand."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    server = RedisServer().start()
    try:
        yield server.url
    finally:
        server.cleanup()


@pytest.fixture(params=["sqlite", "redis"])
async def make_accounts(request, tmp_path) -> AsyncIterator[Callable]:
    """``await make(ttl=..., clock=...)``: an opened store of this test's backend; two calls with
    ``shared=True`` (the default) see the same data, like two server processes."""
    opened: list[Accounts] = []
    prefix = f"test:{uuid.uuid4().hex[:8]}"
    url = request.getfixturevalue("redis_url") if request.param == "redis" else ""

    async def make(ttl: float = 3600.0, clock: Callable[[], float] | None = None) -> Accounts:
        kwargs = {"clock": clock} if clock is not None else {}
        if request.param == "redis":
            accounts: Accounts = RedisAccounts(url, ttl, prefix=prefix, **kwargs)
        else:
            accounts = SqliteAccounts(tmp_path / "data" / "accounts.sqlite3", ttl, **kwargs)
        await accounts.open()
        opened.append(accounts)
        return accounts

    make.backend = request.param  # type: ignore[attr-defined]
    make.prefix = prefix  # type: ignore[attr-defined]
    make.url = url  # type: ignore[attr-defined]
    yield make
    for accounts in opened:
        await accounts.close()


# -- passwords -------------------------------------------------------------------------------


def test_hash_and_verify():
    encoded = hash_password(PASSWORD)
    assert verify_password(PASSWORD, encoded)
    assert not verify_password(PASSWORD + "!", encoded)
    assert not verify_password("", encoded)
    algorithm, n, r, p, salt, digest = encoded.split("$")
    assert (algorithm, n, r, p) == ("scrypt", "32768", "8", "1")
    assert encoded.startswith("scrypt$32768$8$1$")
    again = hash_password(PASSWORD)
    assert again != encoded and again.split("$")[4] != salt  # a fresh salt each time
    assert verify_password(PASSWORD, again)


@pytest.mark.parametrize(
    "encoded",
    [
        "",
        "plain-text",
        "scrypt$32768$8$1$onlyfive",
        "bcrypt$32768$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "scrypt$x$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "scrypt$1000$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "scrypt$1073741824$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "scrypt$32768$8$1$not*base64$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "scrypt$32768$8$1$AAAAAAAAAAAAAAAAAAAAAA==$",
    ],
)
def test_malformed_encoding_is_false_not_an_error(encoded):
    assert verify_password(PASSWORD, encoded) is False


def test_password_policy_and_usernames():
    check_password_policy("x" * 12)
    with pytest.raises(AccountError, match="at least 12"):
        check_password_policy("x" * 11)
    with pytest.raises(AccountError, match="username"):
        check_password_policy("alice.example", "Alice.Example")
    assert validate_username("Alice@Example.com") == "alice@example.com"
    for bad in ("", "a b", "x" * 65, "al/ice", "ålice"):
        with pytest.raises(AccountError, match="letters, digits"):
            validate_username(bad)


# -- accounts, both backends -------------------------------------------------------------------


async def test_add_get_list_remove(make_accounts):
    accounts = await make_accounts()
    alice = await accounts.add_user("Alice", "manager", "customer_service", PASSWORD)
    assert isinstance(alice, Account)
    assert (alice.username, alice.role, alice.department) == (
        "alice",
        "manager",
        "customer_service",
    )
    root = await accounts.add_user("root", "admin", None, OTHER_PASSWORD)
    assert root.department is None
    assert await accounts.get_user("ALICE") == alice
    assert await accounts.get_user("nobody") is None
    assert await accounts.get_user("not a name") is None
    assert await accounts.list_users() == [alice, root]
    assert await accounts.remove_user("alice") is True
    assert await accounts.remove_user("alice") is False
    assert await accounts.get_user("alice") is None
    assert [a.username for a in await accounts.list_users()] == ["root"]


async def test_bad_input_is_explained(make_accounts):
    accounts = await make_accounts()
    await accounts.add_user("alice", "admin", None, PASSWORD)
    with pytest.raises(AccountError, match="already exists.*voicebot users passwd alice"):
        await accounts.add_user("ALICE", "admin", None, PASSWORD)
    with pytest.raises(AccountError, match="--department"):
        await accounts.add_user("bob", "manager", None, PASSWORD)
    with pytest.raises(AccountError, match="--department"):
        await accounts.add_user("bob", "manager", "  ", PASSWORD)
    with pytest.raises(AccountError, match="drop --department"):
        await accounts.add_user("bob", "admin", "sales", PASSWORD)
    with pytest.raises(AccountError, match="admin, manager"):
        await accounts.add_user("bob", "owner", None, PASSWORD)
    with pytest.raises(AccountError, match="customer_service"):
        await accounts.add_user("bob", "manager", "Customer Service", PASSWORD)
    with pytest.raises(AccountError, match="at least 12"):
        await accounts.add_user("bob", "admin", None, "short")
    with pytest.raises(AccountError, match="no user 'bob'"):
        await accounts.set_password("bob", PASSWORD)
    assert [a.username for a in await accounts.list_users()] == ["alice"]
    assert ROLES == ("admin", "manager")


async def test_concurrent_adds_of_one_name(make_accounts):
    one, two = await make_accounts(), await make_accounts()  # like two processes
    results = await asyncio.gather(
        one.add_user("alice", "admin", None, PASSWORD),
        two.add_user("alice", "manager", "sales", OTHER_PASSWORD),
        return_exceptions=True,
    )
    assert sorted(type(r).__name__ for r in results) == ["Account", "AccountError"]
    assert len(await one.list_users()) == 1


async def test_authenticate(make_accounts):
    accounts = await make_accounts()
    added = await accounts.add_user("alice", "manager", "sales", PASSWORD)
    assert await accounts.authenticate("alice", PASSWORD) == added
    assert await accounts.authenticate("Alice", PASSWORD) == added
    assert await accounts.authenticate("alice", PASSWORD.upper()) is None
    assert await accounts.authenticate("alice", "") is None
    assert await accounts.authenticate("mallory", PASSWORD) is None
    assert await accounts.authenticate("not a name!", PASSWORD) is None
    await accounts.set_password("alice", OTHER_PASSWORD)
    assert await accounts.authenticate("alice", PASSWORD) is None
    assert await accounts.authenticate("alice", OTHER_PASSWORD) == added


async def test_unknown_users_cost_a_hash_check_too(make_accounts, monkeypatch):
    from voicebot.monitor import accounts as module

    checked: list[str] = []

    def counting_verify(password: str, encoded: str) -> bool:
        checked.append(encoded)
        return verify_password(password, encoded)

    monkeypatch.setattr(module, "verify_password", counting_verify)
    accounts = await make_accounts()
    assert await accounts.authenticate("nobody", PASSWORD) is None
    assert await accounts.authenticate("not a name!", PASSWORD) is None
    assert await accounts.authenticate("nobody", "x" * 5000) is None
    assert checked == [module.DUMMY_HASH] * 3
    assert module.DUMMY_HASH.startswith("scrypt$32768$8$1$")


async def test_hashing_does_not_block_the_event_loop(make_accounts):
    accounts = await make_accounts()
    gaps: list[float] = []

    async def ticker() -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(0.005)
            gaps.append(loop.time() - last)
            last = loop.time()

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.02)
    await accounts.add_user("alice", "admin", None, PASSWORD)  # one hash
    assert await accounts.authenticate("alice", PASSWORD) is not None  # one more
    task.cancel()
    assert len(gaps) > 10 and max(gaps) < 0.08, max(gaps)


async def test_session_create_get_end(make_accounts):
    clock = FakeClock()
    accounts = await make_accounts(ttl=3600.0, clock=clock)
    alice = await accounts.add_user("alice", "manager", "sales", PASSWORD)
    token, session = await accounts.create_session(alice)
    assert isinstance(session, MonitorSession)
    assert len(token) >= 40 and len(session.csrf) >= 30 and token != session.csrf
    assert (session.username, session.role, session.department) == ("alice", "manager", "sales")
    assert session.expires_at == session.created_at + 3600.0 == clock.now + 3600.0
    assert await accounts.get_session(token) == session
    other, _ = await accounts.create_session(alice)
    assert other != token
    assert await accounts.get_session(token + "x") is None
    assert await accounts.get_session("") is None
    assert await accounts.get_session("x" * 10_000) is None
    await accounts.end_session(token)
    await accounts.end_session(token)  # twice, and unknown tokens: no error
    await accounts.end_session("unknown")
    assert await accounts.get_session(token) is None
    assert await accounts.get_session(other) is not None


async def test_session_expiry_slides(make_accounts):
    clock = FakeClock()
    accounts = await make_accounts(ttl=600.0, clock=clock)
    alice = await accounts.add_user("alice", "admin", None, PASSWORD)
    token, session = await accounts.create_session(alice)
    clock.now += 30  # within a minute: no write, same expiry
    assert (await accounts.get_session(token)).expires_at == session.expires_at
    clock.now += 500  # 530 s: still valid, extended to now + TTL
    extended = await accounts.get_session(token)
    assert extended.expires_at == clock.now + 600.0
    clock.now += 590  # 1120 s after login: alive only because it slid
    assert await accounts.get_session(token) is not None
    clock.now += 601  # idle longer than the TTL
    assert await accounts.get_session(token) is None
    clock.now -= 601  # and it is gone, not just hidden
    assert await accounts.get_session(token) is None


async def test_session_expires_in_real_time(make_accounts):
    accounts = await make_accounts(ttl=0.5)
    alice = await accounts.add_user("alice", "admin", None, PASSWORD)
    token, _ = await accounts.create_session(alice)
    assert await accounts.get_session(token) is not None
    await asyncio.sleep(0.7)
    assert await accounts.get_session(token) is None


async def test_remove_and_password_change_end_sessions(make_accounts):
    accounts = await make_accounts()
    alice = await accounts.add_user("alice", "manager", "sales", PASSWORD)
    bob = await accounts.add_user("bob", "admin", None, PASSWORD)
    first, _ = await accounts.create_session(alice)
    second, _ = await accounts.create_session(alice)
    bobs, _ = await accounts.create_session(bob)
    await accounts.set_password("alice", OTHER_PASSWORD)
    assert await accounts.get_session(first) is None
    assert await accounts.get_session(second) is None
    assert await accounts.get_session(bobs) is not None

    alice = await accounts.authenticate("alice", OTHER_PASSWORD)
    third, _ = await accounts.create_session(alice)
    assert await accounts.remove_user("alice")
    assert await accounts.get_session(third) is None
    with pytest.raises(AccountError, match="no user 'alice'"):
        await accounts.create_session(alice)  # removed between login and session

    # Added again (now an admin): a session of the old account does not come back.
    await accounts.add_user("alice", "admin", None, PASSWORD)
    with pytest.raises(AccountError):
        await accounts.create_session(alice)
    assert await accounts.get_session(bobs) is not None


async def test_session_of_a_changed_account_is_refused(make_accounts):
    """A session whose user changed role under it (an edited store) is not honoured."""
    accounts = await make_accounts()
    alice = await accounts.add_user("alice", "manager", "sales", PASSWORD)
    token, _ = await accounts.create_session(alice)
    if make_accounts.backend == "sqlite":
        await accounts.db.execute("UPDATE users SET role = 'admin', department = NULL")
        await accounts.db.commit()
    else:
        record = json.loads(await accounts.redis.hget(accounts.users_key, "alice"))
        record.update(role="admin", department=None)
        await accounts.redis.hset(accounts.users_key, "alice", json.dumps(record))
    assert await accounts.get_session(token) is None


async def test_store_keeps_only_the_token_hash(make_accounts, tmp_path):
    accounts = await make_accounts()
    alice = await accounts.add_user("alice", "admin", None, PASSWORD)
    token, session = await accounts.create_session(alice)
    digest = hashlib.sha256(token.encode()).hexdigest()
    if make_accounts.backend == "sqlite":
        with sqlite3.connect(tmp_path / "data" / "accounts.sqlite3") as db:
            sessions = db.execute("SELECT * FROM sessions").fetchall()
            users = db.execute("SELECT * FROM users").fetchall()
            mode = db.execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"
        dump = repr(sessions) + repr(users)
        assert len(sessions) == 1 and sessions[0][0] == digest
    else:
        client = redis.from_url(make_accounts.url, decode_responses=True)
        try:
            keys = sorted(await client.keys(f"{make_accounts.prefix}:*"))
            assert keys == [
                f"{make_accounts.prefix}:session:{digest}",
                f"{make_accounts.prefix}:user-sessions:alice",
                f"{make_accounts.prefix}:users",
            ]
            session_key = f"{make_accounts.prefix}:session:{digest}"
            assert 3590 * 1000 < await client.pttl(session_key) <= 3600 * 1000
            dump = repr(keys) + await client.get(session_key)
            dump += repr(await client.hgetall(f"{make_accounts.prefix}:users"))
            dump += repr(await client.smembers(f"{make_accounts.prefix}:user-sessions:alice"))
        finally:
            await client.aclose()
    assert token not in dump and PASSWORD not in dump
    assert session.csrf in dump  # the CSRF token is stored: it is no credential on its own
    assert "scrypt$32768$8$1$" in dump


async def test_two_redis_processes_share_accounts_and_sessions(redis_url):
    prefix = f"test:{uuid.uuid4().hex[:8]}"
    one = RedisAccounts(redis_url, 3600.0, prefix=prefix)
    two = RedisAccounts(redis_url, 3600.0, prefix=prefix)
    elsewhere = RedisAccounts(redis_url, 3600.0, prefix=prefix + "-other")
    for accounts in (one, two, elsewhere):
        await accounts.open()
    try:
        await one.add_user("alice", "manager", "sales", PASSWORD)
        alice = await two.authenticate("alice", PASSWORD)
        assert alice is not None
        token, session = await two.create_session(alice)
        assert await one.get_session(token) == session
        assert await elsewhere.get_session(token) is None
        assert await elsewhere.list_users() == []
        await one.set_password("alice", OTHER_PASSWORD)
        assert await two.get_session(token) is None
        token, _ = await one.create_session(await one.authenticate("alice", OTHER_PASSWORD))
        await two.end_session(token)
        assert await one.get_session(token) is None
    finally:
        for accounts in (one, two, elsewhere):
            await accounts.close()


async def test_build_accounts(tmp_path, redis_url):
    settings = Settings(data_dir=tmp_path / "d", monitor_session_ttl_secs=120)
    accounts = build_accounts(settings)
    assert isinstance(accounts, SqliteAccounts)
    assert accounts.path == tmp_path / "d" / "accounts.sqlite3"
    assert accounts.session_ttl_secs == 120
    await accounts.open()
    await accounts.close()
    assert accounts.path.is_file()
    accounts = build_accounts(Settings(data_dir=tmp_path / "d", redis_url=redis_url))
    assert isinstance(accounts, RedisAccounts)
    assert accounts.session_ttl_secs == 8 * 3600
    assert accounts.users_key == "voicebot:monitor:users"


async def test_redis_location_hides_the_password():
    accounts = RedisAccounts("redis://:hunter2hunter2@db.example:6380/1", 60)
    assert "hunter2" not in accounts.location and "db.example:6380" in accounts.location


# -- login throttle ----------------------------------------------------------------------------


def test_throttle_locks_a_user_after_five_failures():
    clock = FakeClock(0.0)
    throttle = LoginThrottle(clock=clock)
    for _ in range(4):
        assert throttle.retry_after("alice", "10.0.0.1") == 0
        throttle.failed("alice", "10.0.0.1")
        clock.now += 10
    assert throttle.retry_after("alice", "10.0.0.1") == 0
    throttle.failed("Alice", "10.0.0.2")  # the fifth, another address, other case
    wait = throttle.retry_after("alice", "10.0.0.3")
    assert wait == pytest.approx(900 - 40)
    assert throttle.retry_after("bob", "10.0.0.1") == 0  # other users are not locked
    clock.now += wait  # the oldest failure leaves the window: one more attempt
    assert throttle.retry_after("alice", "10.0.0.1") == 0
    throttle.failed("alice", "10.0.0.1")
    assert throttle.retry_after("alice", "10.0.0.1") == pytest.approx(10)
    clock.now += 10_000
    assert throttle.retry_after("alice", "10.0.0.1") == 0


def test_throttle_success_resets_the_user():
    clock = FakeClock(0.0)
    throttle = LoginThrottle(clock=clock)
    for _ in range(4):
        throttle.failed("alice", "10.0.0.1")
    throttle.succeeded("alice", "10.0.0.1")
    for _ in range(4):
        throttle.failed("alice", "10.0.0.1")
    assert throttle.retry_after("alice", "10.0.0.1") == 0
    throttle.failed("alice", "10.0.0.1")
    assert throttle.retry_after("alice", "10.0.0.1") > 0


def test_throttle_limits_an_address():
    clock = FakeClock(0.0)
    throttle = LoginThrottle(max_per_user=5, max_per_ip=20, window_secs=900, clock=clock)
    for n in range(20):
        assert throttle.retry_after(f"user{n}", "10.0.0.9") == 0
        throttle.failed(f"user{n}", "10.0.0.9")
        clock.now += 1
    assert throttle.retry_after("someone-new", "10.0.0.9") == pytest.approx(900 - 20)
    assert throttle.retry_after("someone-new", "10.0.0.8") == 0
    throttle.succeeded("user0", "10.0.0.9")  # a success does not unlock the address
    assert throttle.retry_after("user0", "10.0.0.9") > 0
    clock.now += 900
    assert throttle.retry_after("someone-new", "10.0.0.9") == 0


def test_throttle_memory_is_bounded():
    throttle = LoginThrottle(clock=FakeClock(0.0))
    throttle.MAX_KEYS = 100
    for n in range(1000):
        throttle.failed(f"user{n}", f"10.0.{n // 256}.{n % 256}")
    assert len(throttle._users) == 100 and len(throttle._ips) == 100


# -- the voicebot users command ----------------------------------------------------------------


def voicebot_users(tmp_path: Path, *args: str, password: str | None = PASSWORD, stdin: str = ""):
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICEBOT_")}
    env["VOICEBOT_DATA_DIR"] = str(tmp_path)
    if password is not None:
        env["VOICEBOT_NEW_PASSWORD"] = password
    return subprocess.run(
        [sys.executable, "-m", "voicebot.cli", "users", *args],
        cwd=ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_cli_add_list_authenticate_remove(tmp_path):
    added = voicebot_users(tmp_path, "add", "Alice", "--role", "manager", "--department", "sales")
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == "added manager alice (department: sales)"
    admin = voicebot_users(tmp_path, "add", "root", "--role", "admin")
    assert admin.returncode == 0 and admin.stdout.strip() == "added admin root"

    listed = voicebot_users(tmp_path, "list")
    assert listed.returncode == 0
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["username", "role", "department", "created"]
    assert lines[1].split()[:3] == ["alice", "manager", "sales"]
    assert lines[2].split()[:3] == ["root", "admin", "-"]
    as_json = json.loads(voicebot_users(tmp_path, "list", "--json").stdout)
    assert [(u["username"], u["role"], u["department"]) for u in as_json] == [
        ("alice", "manager", "sales"),
        ("root", "admin", None),
    ]

    async with SqliteAccounts(tmp_path / "accounts.sqlite3", 60) as accounts:
        alice = await accounts.authenticate("alice", PASSWORD)
        assert alice is not None and alice.department == "sales"
        token, _ = await accounts.create_session(alice)

    changed = voicebot_users(tmp_path, "passwd", "alice", password=OTHER_PASSWORD)
    assert changed.returncode == 0, changed.stderr
    async with SqliteAccounts(tmp_path / "accounts.sqlite3", 60) as accounts:
        assert await accounts.get_session(token) is None
        assert await accounts.authenticate("alice", OTHER_PASSWORD) is not None

    removed = voicebot_users(tmp_path, "remove", "alice")
    assert removed.returncode == 0 and "removed alice" in removed.stdout
    again = voicebot_users(tmp_path, "remove", "alice")
    assert again.returncode == 1 and "no user 'alice'" in again.stderr
    assert voicebot_users(tmp_path, "passwd", "alice").returncode == 1
    listed = voicebot_users(tmp_path, "list")
    assert [line.split()[0] for line in listed.stdout.splitlines()] == ["username", "root"]


@pytest.mark.parametrize(
    ("args", "password", "message"),
    [
        (("add", "bob", "--role", "boss"), PASSWORD, "invalid choice: 'boss'"),
        (("add", "bob", "--role", "admin"), "short", "at least 12 characters"),
        (("add", "bob", "--role", "manager"), PASSWORD, "give --department"),
        (("add", "bob", "--role", "admin", "--department", "x"), PASSWORD, "drop --department"),
        (("add", "b b", "--role", "admin"), PASSWORD, "letters, digits"),
    ],
)
def test_cli_bad_input(tmp_path, args, password, message):
    result = voicebot_users(tmp_path, *args, password=password)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_cli_prompted_password_and_duplicates(tmp_path):
    typed = f"{PASSWORD}\n{PASSWORD}\n"
    result = voicebot_users(tmp_path, "add", "carol", "--role", "admin", password=None, stdin=typed)
    assert result.returncode == 0, result.stderr
    assert PASSWORD not in result.stdout + result.stderr
    mismatch = f"{PASSWORD}\n{OTHER_PASSWORD}\n"
    result = voicebot_users(
        tmp_path, "add", "dave", "--role", "admin", password=None, stdin=mismatch
    )
    assert result.returncode == 2 and "differ" in result.stderr
    result = voicebot_users(tmp_path, "add", "erin", "--role", "admin", password=None)
    assert result.returncode == 2 and "VOICEBOT_NEW_PASSWORD" in result.stderr
    result = voicebot_users(tmp_path, "add", "CAROL", "--role", "admin")
    assert result.returncode == 2 and "already exists" in result.stderr
    assert "Traceback" not in result.stderr
    listed = voicebot_users(tmp_path, "list", "--json")
    assert [u["username"] for u in json.loads(listed.stdout)] == ["carol"]
