"""The ``voicebot`` command line: serve, call, interview, prompts, dialogues, users, purge, audit.

``voicebot --help`` lists every command; ``voicebot COMMAND --help`` its options.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys

from voicebot import __version__
from voicebot.config import ConfigError, Settings

log = logging.getLogger("voicebot")


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("faster_whisper", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _use_event_loop(kind: str) -> None:
    """Install uvloop's event loop when asked for (``auto``: when it is installed)."""
    if kind == "asyncio":
        return
    try:
        import uvloop
    except ImportError:
        if kind == "uvloop":
            raise SystemExit(
                "VOICEBOT_EVENT_LOOP=uvloop but uvloop is not installed: pip install uvloop, "
                "or set VOICEBOT_EVENT_LOOP=asyncio"
            ) from None
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    log.info("event loop: uvloop %s", uvloop.__version__)


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the server until interrupted."""
    from aiohttp import web

    from voicebot.app import create_app

    settings = Settings.from_env(host=args.host, port=args.port)
    os.umask(0o077)  # whatever else the server writes is private to its user too
    _setup_logging(settings.log_level)
    _use_event_loop(settings.event_loop)
    app = create_app(settings)
    log.info("voicebot %s listening on http://%s:%d", __version__, settings.host, settings.port)
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        print=None,
        shutdown_timeout=10,
        access_log=None,
    )
    return 0


async def _create_interview(
    url: str, token: str, job: str, candidate: str, name: str, phone: str, timezone: str
) -> dict:
    import aiohttp

    body = {
        "job_id": job,
        "candidate": {"id": candidate, "name": name, "phone": phone, "timezone": timezone},
    }
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{url.rstrip('/')}/api/interviews",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
        ) as response:
            data = await response.json()
            if response.status >= 400:
                raise SystemExit(f"error {response.status}: {data}")
            return data


def cmd_interview(args: argparse.Namespace) -> int:
    """Create an interview through the REST API and print its id."""
    token = args.token or os.environ.get("VOICEBOT_API_TOKEN", "")
    if not token:
        print("set VOICEBOT_API_TOKEN or pass --token", file=sys.stderr)
        return 2
    data = asyncio.run(
        _create_interview(
            args.url, token, args.job, args.candidate_id, args.name, args.phone, args.timezone
        )
    )
    print(data["id"] if not args.json else json.dumps(data, indent=2))
    return 0


def cmd_prompts(args: argparse.Namespace) -> int:
    """Render every scripted prompt into the audio cache (what the server does at start-up)."""
    from voicebot.dialogue.script import load_scripts, synthesised_prompts
    from voicebot.speech.prompt_cache import PromptCache
    from voicebot.speech.tts import build_tts

    settings = Settings.from_env()
    _setup_logging(settings.log_level)

    async def render() -> int:
        scripts = load_scripts(settings.dialogues_dir)
        tts = build_tts(settings.tts_engine, voice_path=settings.tts_voice or None)
        cache = PromptCache(settings.prompt_cache_dir or settings.data_dir / "prompt-cache", tts)
        items = [  # recorded prompts are not synthesised
            (t, s.language, s.voice)
            for s in scripts.values()
            for t in dict.fromkeys(synthesised_prompts(s).values())
        ]
        rendered = await cache.prerender(items)
        await tts.close()
        print(f"{len(items)} prompts in {len(scripts)} scripts; {rendered} newly rendered")
        return 0

    return asyncio.run(render())


def _prompt_cache_dir(settings: Settings):
    return settings.prompt_cache_dir or settings.data_dir / "prompt-cache"


def _describe_cached_prompts(settings: Settings) -> int:
    """Describe (``<key>.json``) the scripts' renderings cached before descriptions existed."""
    from voicebot.dialogue.script import fixed_prompts, load_scripts
    from voicebot.speech.prompt_cache import rendering_key, write_metadata
    from voicebot.speech.tts import build_tts
    from voicebot.speech.zh_text import speech_text

    directory = _prompt_cache_dir(settings)
    tts = build_tts(settings.tts_engine, voice_path=settings.tts_voice or None)
    described = 0
    for script in load_scripts(settings.dialogues_dir).values():
        for engine in getattr(tts, "engines", [tts]):
            if not engine.supports(script.language):
                continue
            voice = engine.voice_id(script.language, script.voice)
            for written in fixed_prompts(script):
                text = speech_text(written, script.language)  # as PromptCache keys it
                key = rendering_key(engine.name, voice, script.language, text)
                if (directory / f"{key}.ulaw").is_file() and not (
                    directory / f"{key}.json"
                ).exists():
                    write_metadata(
                        directory / f"{key}.json",
                        {
                            "engine": engine.name,
                            "voice": voice,
                            "language": script.language,
                            "text": text,
                        },
                    )
                    described += 1
    return described


def cmd_prompts_export(args: argparse.Namespace) -> int:
    """Pack the rendered prompts of the prompt cache into a zip another server can import."""
    from voicebot.speech.prompt_pack import PromptPackError, export_pack

    settings = Settings.from_env()
    _setup_logging(settings.log_level)
    _describe_cached_prompts(settings)
    engines = set(args.engine) if args.engine else None
    try:
        summary = export_pack(_prompt_cache_dir(settings), args.file, engines)
    except PromptPackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    by_engine = ", ".join(f"{n} by {e}" for e, n in sorted(summary.engines.items()))
    print(f"exported {summary.prompts} prompts ({by_engine}) to {args.file}")
    return 0


def cmd_prompts_import(args: argparse.Namespace) -> int:
    """Verify a prompt pack and add its prompts to the prompt cache (played from then on)."""
    from voicebot.speech.prompt_pack import PromptPackError, import_pack

    settings = Settings.from_env()
    _setup_logging(settings.log_level)
    try:
        summary = import_pack(args.file, _prompt_cache_dir(settings))
    except PromptPackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    by_engine = ", ".join(f"{n} by {e}" for e, n in sorted(summary.engines.items()))
    print(
        f"imported {summary.prompts} prompts ({by_engine}) into {_prompt_cache_dir(settings)}; "
        "a running server plays them after a restart"
    )
    return 0


def cmd_dialogues_check(args: argparse.Namespace) -> int:
    """Validate job scripts; every error with file, line and a fix hint."""
    from pathlib import Path

    from voicebot.dialogue.script import ScriptError, load_script

    settings = Settings.from_env()
    files = [Path(f) for f in args.files] or sorted(settings.dialogues_dir.glob("*.yaml"))
    failed = 0
    seen: dict[str, Path] = {}
    for path in files:
        try:
            script = load_script(path)
        except ScriptError as exc:
            failed += 1
            print(f"FAIL {exc}")
            continue
        if script.id in seen:
            failed += 1
            print(f"FAIL {path}: job id {script.id!r} is also used by {seen[script.id]}")
            continue
        seen[script.id] = path
        print(f"ok   {path}: {script.id} ({script.language}, {len(script.questions)} questions)")
        unusable, recorded = _check_recordings(script)
        failed += unusable
        failed += _check_voice(script, recorded, settings)
    return 1 if failed else 0


def _check_voice(script, recorded: set[str], settings: Settings) -> int:
    """Say whether the server would refuse the job for lack of a voice; 1 if it would."""
    from voicebot.dialogue.script import prompt_texts
    from voicebot.speech.prompt_cache import PromptCache
    from voicebot.speech.tts import build_tts
    from voicebot.speech.voices import (
        ESPEAK_UNFIT_LANGUAGES,
        allowed_languages,
        espeak_only_prompts,
        refusal_message,
    )

    if script.language not in ESPEAK_UNFIT_LANGUAGES:
        return 0
    tts = build_tts(settings.tts_engine, voice_path=settings.tts_voice or None)
    cache = PromptCache(_prompt_cache_dir(settings), tts)
    missing = asyncio.run(espeak_only_prompts(script, tts, cache, recorded))
    if not missing:
        return 0
    if script.language in allowed_languages(settings.allow_espeak_voice):
        print(
            f"warn   {script.id}: {len(missing)} prompts are spoken by espeak-ng "
            f"(VOICEBOT_ALLOW_ESPEAK_VOICE={settings.allow_espeak_voice})"
        )
        return 0
    print(f"FAIL   {refusal_message(script, missing, len(prompt_texts(script)))}")
    return 1


def _check_recordings(script) -> tuple[int, set[str]]:
    """Check a script's recorded prompts, print what was found.

    Returns how many are unusable and the ids of the usable ones.
    """
    from voicebot.dialogue.script import recorded_prompts, synthesised_prompts
    from voicebot.speech.recorded import check_recording

    failed = 0
    usable: set[str] = set()
    for prompt_id, (text, path) in recorded_prompts(script).items():
        found = check_recording(path, text, script.language)
        for error in found.errors:
            print(f"FAIL   {script.id} recording {prompt_id}: {error}")
        for warning in found.warnings:
            print(f"warn   {script.id} recording {prompt_id}: {warning}")
        if not found.errors:
            print(
                f"ok     {script.id} recording {prompt_id}: {path.name} "
                f"({found.duration_secs:.1f} s, {found.speech_secs:.1f} s speech)"
            )
        failed += bool(found.errors)
        if not found.errors:
            usable.add(prompt_id)
    synthesised = synthesised_prompts(script)
    if synthesised:
        print(
            f"tts    {script.id}: {len(synthesised)} prompts fall back to speech synthesis: "
            + ", ".join(synthesised)
        )
    else:
        print(f"ok     {script.id}: every prompt is recorded")
    return failed, usable


def cmd_purge(args: argparse.Namespace) -> int:
    """Remove the data past its retention (what the server does daily); ``--dry-run`` counts."""
    from voicebot.privacy.audit import AuditLog
    from voicebot.privacy.retention import purge
    from voicebot.store.database import Store

    settings = Settings.from_env()
    _setup_logging(settings.log_level)

    async def run() -> int:
        store = Store(settings.data_dir / "voicebot.sqlite3")
        await store.open()
        audit = AuditLog(store.path)
        await audit.open()
        try:
            result = await purge(
                store, settings, dry_run=args.dry_run, audit=audit, actor="cli:purge"
            )
        finally:
            await audit.close()
            await store.close()
        print(result.summary())
        return 0

    return asyncio.run(run())


def cmd_audit_verify(args: argparse.Namespace) -> int:
    """Check the audit log's hash chain; name the first entry that does not match."""
    import sqlite3

    from voicebot.privacy.audit import verify_file

    settings = Settings.from_env()
    path = settings.data_dir / "voicebot.sqlite3"
    if not path.is_file():
        print(f"voicebot audit: no store at {path} (VOICEBOT_DATA_DIR)", file=sys.stderr)
        return 2
    try:
        check = verify_file(path)
    except sqlite3.Error as exc:
        print(f"voicebot audit: cannot read the audit log in {path}: {exc}", file=sys.stderr)
        return 2
    if check.ok:
        print(f"audit log intact: {check.entries} entries, every hash matches")
        return 0
    print(
        f"audit log BROKEN at entry {check.broken_seq}: {check.reason}"
        f" ({check.entries - 1} entries before it match)"
    )
    return 1


def cmd_config(args: argparse.Namespace) -> int:
    """Print the effective configuration (secrets masked)."""
    settings = Settings.from_env()
    described = settings.describe()
    try:  # the Whisper model of each loaded script's language, as the server would load them
        from voicebot.dialogue.script import load_scripts

        languages = {script.language for script in load_scripts(settings.dialogues_dir).values()}
        effective = settings.asr_model_map(languages)
        described["VOICEBOT_ASR_MODELS"] = ",".join(f"{k}={v}" for k, v in effective.items())
    except Exception as exc:  # noqa: BLE001 - the rest of the configuration still prints
        print(f"# ASR models by language unknown: {exc}", file=sys.stderr)
    for name, value in described.items():
        print(f"{name}={value}")
    return 0


def _new_password(username: str) -> str:
    """A new password: ``VOICEBOT_NEW_PASSWORD``, else typed twice (AccountError if they differ)."""
    import getpass
    import warnings

    from voicebot.monitor.accounts import AccountError, check_password_policy

    password = os.environ.get("VOICEBOT_NEW_PASSWORD", "")
    if password:
        check_password_policy(password, username)
        return password
    try:
        with warnings.catch_warnings():  # no terminal: getpass prints its own warning
            warnings.simplefilter("ignore", getpass.GetPassWarning)
            password = getpass.getpass(f"new password for {username}: ")
            check_password_policy(password, username)
            again = getpass.getpass("the same password again: ")
    except EOFError:
        raise AccountError(
            "no password: type it at the prompt, or set VOICEBOT_NEW_PASSWORD"
        ) from None
    if password != again:
        raise AccountError("the two passwords differ: run the command again")
    return password


def _password_or_none(username: str) -> str | None:
    """:func:`_new_password`, or None after printing why there is none."""
    from voicebot.monitor.accounts import AccountError

    try:
        return _new_password(username)
    except AccountError as exc:
        print(f"voicebot users: {exc}", file=sys.stderr)
        return None


def _users(action) -> int:
    """Run ``action(accounts, settings)`` on the configured account store, reporting errors."""
    import sqlite3

    from redis.exceptions import RedisError

    from voicebot.monitor.accounts import AccountError, build_accounts

    settings = Settings.from_env()

    async def run() -> int:
        accounts = build_accounts(settings)
        await accounts.open()
        try:
            return await action(accounts, settings)
        finally:
            await accounts.close()

    try:
        return asyncio.run(run())
    except AccountError as exc:
        print(f"voicebot users: {exc}", file=sys.stderr)
        return 2
    except (RedisError, sqlite3.Error, OSError) as exc:
        where = "Redis (VOICEBOT_REDIS_URL)" if settings.redis_url else str(settings.data_dir)
        print(f"voicebot users: cannot use the accounts in {where}: {exc}", file=sys.stderr)
        return 1


def _job_departments(settings: Settings) -> set[str]:
    """The departments named by the job scripts (unreadable scripts skipped)."""
    from voicebot.dialogue.script import ScriptError, load_script

    departments = set()
    for path in sorted(settings.dialogues_dir.glob("*.yaml")):
        try:
            department = load_script(path).department
        except (ScriptError, OSError):
            continue
        if department:
            departments.add(department)
    return departments


def cmd_users_add(args: argparse.Namespace) -> int:
    """Add a recruiter account for the live monitor."""
    from voicebot.monitor.accounts import AccountError, validate_department, validate_username

    async def check(accounts, settings) -> int:
        name = validate_username(args.username)
        validate_department(args.role, args.department)
        if await accounts.get_user(name) is not None:
            raise AccountError(
                f"user {name!r} already exists in {accounts.location}: choose another username,"
                f" or `voicebot users passwd {name}` to change their password"
            )
        return 0

    code = _users(check)  # the name, role and department before asking for a password
    password = _password_or_none(args.username.lower()) if not code else None
    if password is None:
        return code or 2

    async def add(accounts, settings) -> int:
        account = await accounts.add_user(args.username, args.role, args.department, password)
        if account.department:
            print(f"added {account.role} {account.username} (department: {account.department})")
            if account.department not in _job_departments(settings):
                print(
                    f"note: no job script in {settings.dialogues_dir} has department"
                    f" {account.department!r} yet; {account.username} sees no calls until one"
                    " does",
                    file=sys.stderr,
                )
        else:
            print(f"added {account.role} {account.username}")
        return 0

    return _users(add)


def cmd_users_list(args: argparse.Namespace) -> int:
    """List the monitor accounts."""
    from datetime import UTC, datetime

    def created(account) -> str:
        return datetime.fromtimestamp(account.created_at, UTC).strftime("%Y-%m-%d %H:%M UTC")

    async def show(accounts, settings) -> int:
        users = await accounts.list_users()
        if args.json:
            rows = [
                {
                    "username": user.username,
                    "role": user.role,
                    "department": user.department,
                    "created_at": datetime.fromtimestamp(user.created_at, UTC).isoformat(),
                }
                for user in users
            ]
            print(json.dumps(rows, indent=2))
            return 0
        if not users:
            print(
                f"no monitor users in {accounts.location}: voicebot users add NAME --role"
                " admin|manager [--department D]",
                file=sys.stderr,
            )
            return 0
        table = [("username", "role", "department", "created")] + [
            (user.username, user.role, user.department or "-", created(user)) for user in users
        ]
        name_w, role_w, dept_w = (max(len(row[i]) for row in table) for i in range(3))
        for name, role, department, when in table:
            print(f"{name:<{name_w}}  {role:<{role_w}}  {department:<{dept_w}}  {when}")
        return 0

    return _users(show)


def cmd_users_remove(args: argparse.Namespace) -> int:
    """Remove a monitor account and end its sessions."""

    async def remove(accounts, settings) -> int:
        if not await accounts.remove_user(args.username):
            print(
                f"voicebot users: no user {args.username!r} in {accounts.location}", file=sys.stderr
            )
            return 1
        print(f"removed {args.username.lower()} (their monitor sessions ended)")
        return 0

    return _users(remove)


def cmd_users_passwd(args: argparse.Namespace) -> int:
    """Set a monitor account's password and end its sessions."""

    async def known(accounts, settings) -> int:
        if await accounts.get_user(args.username) is None:
            print(
                f"voicebot users: no user {args.username!r} in {accounts.location}", file=sys.stderr
            )
            return 1
        return 0

    code = _users(known)  # the name before asking for a password
    username = args.username.lower()
    password = _password_or_none(username) if not code else None
    if password is None:
        return code or 2

    async def change(accounts, settings) -> int:
        await accounts.set_password(username, password)
        print(f"password changed for {username} (their monitor sessions ended)")
        return 0

    return _users(change)


def cmd_data_key_generate(args: argparse.Namespace) -> int:
    """Print a fresh ``kid:key`` entry for ``VOICEBOT_DATA_KEY``."""
    from voicebot.crypto import generate_key_entry

    print(generate_key_entry(args.kid))
    return 0


async def _rotate(settings: Settings) -> dict[str, int]:
    from voicebot.crypto import reencrypt_file
    from voicebot.events.outbox import reencrypt_event_rows
    from voicebot.store.database import Store

    keyring = settings.data_keyring()
    if keyring is None:
        raise ConfigError("VOICEBOT_DATA_KEY is not set: there is no key to encrypt with")
    counts = {"store rows": 0, "events": 0, "files": 0}
    database = settings.data_dir / "voicebot.sqlite3"
    if database.exists():
        store = Store(database, keyring=keyring)
        await store.open()
        try:
            counts["store rows"] = await store.reencrypt()
            from voicebot.campaigns.optouts import DoNotCallList, phone_keys

            keys = await asyncio.to_thread(
                phone_keys, settings.stream_token_secret, keyring, database.parent
            )
            counts["store rows"] += await DoNotCallList(store, keys).rekey()
        finally:
            await store.close()
    for name, table, id_column, json_column in (
        ("events.sqlite3", "events", "event_id", "event"),
        ("outbox.sqlite3", "outbox", "event_id", "event"),
        ("hris_bridge.db", "events", "id", "json"),
    ):
        if (settings.data_dir / name).exists():
            counts["events"] += await asyncio.to_thread(
                reencrypt_event_rows,
                settings.data_dir / name,
                table,
                id_column,
                json_column,
                keyring,
            )
    recordings = settings.recordings_dir
    if recordings.is_dir():
        for call in sorted(recordings.iterdir()):
            if not call.is_dir():
                continue
            for path in sorted(call.iterdir()):
                if path.is_file() and not path.name.startswith("."):
                    counts["files"] += await asyncio.to_thread(reencrypt_file, path, keyring)
    return counts


def cmd_data_key_rotate(args: argparse.Namespace) -> int:
    """Re-encrypt every stored candidate datum under the first key of ``VOICEBOT_DATA_KEY``."""
    settings = Settings.from_env()
    os.umask(0o077)
    _setup_logging(settings.log_level)
    from voicebot.crypto import DecryptionError

    try:
        counts = asyncio.run(_rotate(settings))
    except DecryptionError as exc:
        print(
            f"voicebot: cannot re-encrypt: {exc}. Keep every key the data was written with in "
            "VOICEBOT_DATA_KEY (after the new one) until the rotation has run.",
            file=sys.stderr,
        )
        return 1
    keyring = settings.data_keyring()
    print(
        f"re-encrypted under key {keyring.primary.kid}: "
        + ", ".join(f"{count} {what}" for what, count in counts.items())
    )
    others = [key.kid for key in keyring.keys[1:]]
    if others:
        print(f"keys {', '.join(others)} are no longer needed: remove them from VOICEBOT_DATA_KEY")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every command."""
    parser = argparse.ArgumentParser(
        prog="voicebot",
        description="Real-time voice-bot server for AI phone screening interviews.",
    )
    parser.add_argument("--version", action="version", version=f"voicebot {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser("serve", help="run the server (HTTP, Twilio webhook and streams)")
    serve.add_argument("--host", help="bind address (VOICEBOT_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (VOICEBOT_PORT, default 8080)")
    serve.set_defaults(func=cmd_serve)

    call = commands.add_parser(
        "call",
        help="place a simulated Twilio call (answers prompts with WAV files)",
        add_help=False,
    )
    call.set_defaults(func=None)

    loadtest = commands.add_parser(
        "loadtest",
        help="many concurrent simulated calls: latency, playout, CPU, RSS; capacity search",
        add_help=False,
    )
    loadtest.set_defaults(func=None)

    interview = commands.add_parser("interview", help="create an interview via the REST API")
    interview.add_argument("--url", default="http://127.0.0.1:8080", help="server base URL")
    interview.add_argument("--token", help="API token (default: VOICEBOT_API_TOKEN)")
    interview.add_argument("--job", required=True, help="job script id, e.g. customer_service_en")
    interview.add_argument("--candidate-id", default="cand-1", help="the HR system's candidate id")
    interview.add_argument("--name", default="Test Candidate", help="candidate name")
    interview.add_argument("--phone", default="+15550100", help="candidate phone (E.164)")
    interview.add_argument("--timezone", default="", help="IANA time zone")
    interview.add_argument("--json", action="store_true", help="print the whole response")
    interview.set_defaults(func=cmd_interview)

    prompts = commands.add_parser(
        "prompts",
        help="pre-render every scripted prompt to audio; export/import FILE: prompt packs",
    )
    prompts.set_defaults(func=cmd_prompts)
    prompt_commands = prompts.add_subparsers(dest="prompts_command", metavar="ACTION")
    export = prompt_commands.add_parser(
        "export", help="pack the rendered prompts into a zip another server can import"
    )
    export.add_argument("file", help="the zip file to write")
    export.add_argument(
        "--engine",
        action="append",
        help="only prompts rendered by this engine (edge, piper, espeak...); may be repeated",
    )
    export.set_defaults(func=cmd_prompts_export)
    imports = prompt_commands.add_parser(
        "import", help="verify a prompt pack and add its prompts to the prompt cache"
    )
    imports.add_argument("file", help="the zip file written by `voicebot prompts export`")
    imports.set_defaults(func=cmd_prompts_import)

    dialogues = commands.add_parser("dialogues", help="job script tools")
    dialogue_commands = dialogues.add_subparsers(
        dest="dialogues_command", metavar="ACTION", required=True
    )
    check = dialogue_commands.add_parser("check", help="validate job scripts")
    check.add_argument(
        "files", nargs="*", help="YAML files (default: all in VOICEBOT_DIALOGUES_DIR)"
    )
    check.set_defaults(func=cmd_dialogues_check)

    commands.add_parser(
        "bridge",
        help="the HR-system bridge: run | replay --event-id ID | replay --since T | dead | status"
        " (same as python -m hris_bridge)",
        add_help=False,
    )
    from voicebot.monitor.accounts import ROLES

    users = commands.add_parser(
        "users",
        help="live monitor accounts: add | list | remove | passwd (Redis when VOICEBOT_REDIS_URL"
        " is set, else <VOICEBOT_DATA_DIR>/accounts.sqlite3)",
    )
    user_commands = users.add_subparsers(dest="users_command", metavar="ACTION", required=True)
    add = user_commands.add_parser(
        "add",
        help="add a recruiter (password: VOICEBOT_NEW_PASSWORD, else prompted twice)",
    )
    add.add_argument("username", help="1-64 letters, digits, . _ @ - (stored lower-case)")
    add.add_argument(
        "--role",
        required=True,
        choices=ROLES,
        help="admin: every call; manager: the calls of one department",
    )
    add.add_argument(
        "--department",
        help="a manager's department: the job scripts' `department`, e.g. customer_service",
    )
    add.set_defaults(func=cmd_users_add)
    listing = user_commands.add_parser("list", help="list the accounts")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(func=cmd_users_list)
    remove = user_commands.add_parser("remove", help="remove an account (ends its sessions)")
    remove.add_argument("username")
    remove.set_defaults(func=cmd_users_remove)
    passwd = user_commands.add_parser(
        "passwd",
        help="set a new password (VOICEBOT_NEW_PASSWORD, else prompted twice; ends its sessions)",
    )
    passwd.add_argument("username")
    passwd.set_defaults(func=cmd_users_passwd)

    purge = commands.add_parser(
        "purge",
        help="remove recordings, transcripts, reports and events past their retention"
        " (VOICEBOT_RETENTION_*_DAYS; the server also does it daily)",
    )
    purge.add_argument(
        "--dry-run", action="store_true", help="count what would be removed; remove nothing"
    )
    purge.set_defaults(func=cmd_purge)

    audit = commands.add_parser("audit", help="the audit log: verify")
    audit_commands = audit.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    verify = audit_commands.add_parser(
        "verify", help="check the hash chain; exit 1 naming the first entry that does not match"
    )
    verify.set_defaults(func=cmd_audit_verify)

    data_key = commands.add_parser(
        "data-key",
        help="encryption at rest (VOICEBOT_DATA_KEY): generate | rotate",
    )
    data_key_commands = data_key.add_subparsers(
        dest="data_key_command", metavar="ACTION", required=True
    )
    generate = data_key_commands.add_parser(
        "generate", help="print a new kid:key entry (32 random bytes, base64) for VOICEBOT_DATA_KEY"
    )
    generate.add_argument("--kid", help="its key id (default: random, e.g. k3f09a1)")
    generate.set_defaults(func=cmd_data_key_generate)
    rotate = data_key_commands.add_parser(
        "rotate",
        help="re-encrypt the store, event files and recordings under the first key of "
        "VOICEBOT_DATA_KEY (plaintext data too); run with the server stopped",
    )
    rotate.set_defaults(func=cmd_data_key_rotate)

    from voicebot.campaigns.cli import add_commands as add_campaign_commands

    add_campaign_commands(commands)

    config = commands.add_parser("config", help="print the effective configuration")
    config.set_defaults(func=cmd_config)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``voicebot`` command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["call"]:  # the caller has its own parser; pass its options through untouched
        from loadtest import caller

        return caller.main(argv[1:])
    if argv[:1] == ["loadtest"]:
        from loadtest import harness

        return harness.main(argv[1:])
    if argv[:1] == ["bridge"]:  # the HR-system bridge: `voicebot bridge run|replay|dead|status`
        from hris_bridge.__main__ import main as bridge_main

        return bridge_main(argv[1:] or ["run"])
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"voicebot: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
