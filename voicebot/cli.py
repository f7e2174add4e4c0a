"""The ``voicebot`` command line: serve, call, interview, prompts, dialogues, config.

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
    from voicebot.dialogue.script import fixed_prompts, load_scripts
    from voicebot.speech.prompt_cache import PromptCache
    from voicebot.speech.tts import build_tts

    settings = Settings.from_env()
    _setup_logging(settings.log_level)

    async def render() -> int:
        scripts = load_scripts(settings.dialogues_dir)
        tts = build_tts(settings.tts_engine, voice_path=settings.tts_voice or None)
        cache = PromptCache(settings.prompt_cache_dir or settings.data_dir / "prompt-cache", tts)
        items = [(t, s.language, s.voice) for s in scripts.values() for t in fixed_prompts(s)]
        rendered = await cache.prerender(items)
        await tts.close()
        print(f"{len(items)} prompts in {len(scripts)} scripts; {rendered} newly rendered")
        return 0

    return asyncio.run(render())


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
    return 1 if failed else 0


def cmd_config(args: argparse.Namespace) -> int:
    """Print the effective configuration (secrets masked)."""
    settings = Settings.from_env()
    for name, value in settings.describe().items():
        print(f"{name}={value}")
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

    prompts = commands.add_parser("prompts", help="pre-render every scripted prompt to audio")
    prompts.set_defaults(func=cmd_prompts)

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
