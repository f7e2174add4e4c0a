"""``voicebot campaigns create|list|show|pause|resume|import``: campaigns from the command line.

Like ``voicebot interview``, these talk to a running server's REST API (``--url``, the token from
``--token`` or ``VOICEBOT_API_TOKEN``), so validation, the per-client rule, the audit log and the
events to the HR system are the server's, exactly as for an HR system's requests. Exit status: 0
done, 1 the server refused (its message is printed) or some imported rows were invalid, 2 bad
usage (no token).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8080"


class ApiRefused(Exception):
    """The server answered with an error: ``status`` and its ``{"error": ...}`` body."""

    def __init__(self, status: int, body: Any):
        error = body.get("error", {}) if isinstance(body, dict) else {}
        super().__init__(
            f"error {status} {error.get('code', '')}: {error.get('message', body)}".strip()
        )


async def _request(
    args: argparse.Namespace,
    method: str,
    path: str,
    *,
    body: Any = None,
    csv_bytes: bytes | None = None,
) -> Any:
    import aiohttp

    headers = {"Authorization": f"Bearer {args.token}"}
    kwargs: dict[str, Any] = {"headers": headers}
    if csv_bytes is not None:
        headers["Content-Type"] = "text/csv; charset=utf-8"
        kwargs["data"] = csv_bytes
    elif body is not None:
        kwargs["json"] = body
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as session:
        async with session.request(method, args.url.rstrip("/") + path, **kwargs) as response:
            try:
                data = await response.json(content_type=None)
            except ValueError:
                data = {"error": {"message": (await response.text())[:200]}}
            if response.status >= 400:
                raise ApiRefused(response.status, data)
            return data


def _call(args: argparse.Namespace, method: str, path: str, **kwargs: Any) -> Any:
    import aiohttp

    try:
        return asyncio.run(_request(args, method, path, **kwargs))
    except aiohttp.ClientError as exc:
        raise ApiRefused(0, {"error": {"message": f"cannot reach {args.url}: {exc}"}}) from None


def _when(at: float | None) -> str:
    if at is None:
        return "-"
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _summary(campaign: dict[str, Any]) -> str:
    hours = campaign["calling_hours"]
    counts = campaign["by_status"]
    lines = [
        f"campaign {campaign['id']} ({campaign['name'] or 'no name'}), job {campaign['job_id']},"
        f" client {campaign['client']}: {'PAUSED' if campaign['paused'] else 'dialing'}",
        f"  calling hours {hours['start']}-{hours['end']} {','.join(hours['days'])} in the"
        f" candidate's zone (default {campaign['timezone']}), up to {campaign['max_attempts']}"
        f" attempts {campaign['retry_after_secs']:.0f} s apart, {campaign['max_concurrent']}"
        " at once",
        f"  candidates {campaign['interviews']}: "
        + ", ".join(f"{status} {n}" for status, n in counts.items() if n),
        f"  attempts {campaign['attempts']}: "
        + (", ".join(f"{o} {n}" for o, n in campaign["attempts_by_outcome"].items()) or "none yet"),
        f"  calls up {campaign['calls_up']}, scheduled {campaign['scheduled']}, next attempt"
        f" {_when(campaign['next_attempt_at'])}",
    ]
    return "\n".join(lines)


def cmd_create(args: argparse.Namespace) -> int:
    """Create a campaign and print its id."""
    body: dict[str, Any] = {
        "job_id": args.job,
        "name": args.name,
        "paused": args.paused,
        "calling_hours": {
            "start": args.start,
            "end": args.end,
            "days": [d.strip() for d in args.days.split(",") if d.strip()],
            "holidays": [d.strip() for d in args.holidays.split(",") if d.strip()],
        },
        "timezone": args.timezone,
        "max_attempts": args.max_attempts,
        "retry_after_secs": args.retry_after,
        "spread_retries": args.spread_retries,
        "max_concurrent": args.max_concurrent,
    }
    if args.caller_id:
        body["caller_id"] = args.caller_id
    campaign = _call(args, "POST", "/api/campaigns", body=body)
    print(json.dumps(campaign, indent=2) if args.json else campaign["id"])
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """List the campaigns with their progress."""
    campaigns = _call(args, "GET", "/api/campaigns")["campaigns"]
    if args.json:
        print(json.dumps(campaigns, indent=2))
        return 0
    if not campaigns:
        print("no campaigns: voicebot campaigns create --job JOB", file=sys.stderr)
        return 0
    table = [("id", "job", "state", "candidates", "done", "unreachable", "up", "next attempt")]
    for c in campaigns:
        done = sum(
            n for s, n in c["by_status"].items() if s not in ("pending", "in_progress", "scoring")
        )
        table.append(
            (
                c["id"],
                c["job_id"],
                "paused" if c["paused"] else "dialing",
                str(c["interviews"]),
                str(done),
                str(c["by_status"].get("unreachable", 0)),
                str(c["calls_up"]),
                _when(c["next_attempt_at"]),
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(f"{cell:<{width}}" for cell, width in zip(row, widths, strict=True)))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """One campaign's policy and progress."""
    campaign = _call(args, "GET", f"/api/campaigns/{args.campaign_id}")
    print(json.dumps(campaign, indent=2) if args.json else _summary(campaign))
    return 0


def cmd_pause(args: argparse.Namespace) -> int:
    """Stop dialing a campaign."""
    campaign = _call(args, "POST", f"/api/campaigns/{args.campaign_id}/pause")
    print(json.dumps(campaign, indent=2) if args.json else _summary(campaign))
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    """Dial a paused campaign again."""
    campaign = _call(args, "POST", f"/api/campaigns/{args.campaign_id}/resume")
    print(json.dumps(campaign, indent=2) if args.json else _summary(campaign))
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    """Queue the candidates of a CSV file (header id,name,phone,timezone,external_key)."""
    path = Path(args.file)
    try:
        data = path.read_bytes()
    except OSError as exc:
        print(f"voicebot campaigns import: cannot read {path}: {exc.strerror}", file=sys.stderr)
        return 2
    result = _call(args, "POST", f"/api/campaigns/{args.campaign_id}/interviews", csv_bytes=data)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"{path.name}: queued {result['queued']}, already there {result['exists']},"
            f" refused {result['refused']}, invalid {result['invalid']}"
        )
        for row in result["results"]:
            if row["status"] in ("refused", "invalid"):
                where = f"line {row['line']}" if "line" in row else f"row {row['row']}"
                print(f"  {where}: {row['status']} ({row.get('code')}): {row['error']}")
    return 1 if result["invalid"] else 0


def run(args: argparse.Namespace) -> int:
    """Run a campaigns command: the token checked, the server's refusal printed."""
    args.token = args.token or os.environ.get("VOICEBOT_API_TOKEN", "")
    if not args.token:
        print("voicebot campaigns: set VOICEBOT_API_TOKEN or pass --token", file=sys.stderr)
        return 2
    try:
        return args.campaign_command(args)
    except ApiRefused as exc:
        print(f"voicebot campaigns: {exc}", file=sys.stderr)
        return 1


def add_commands(commands: Any) -> None:
    """Add ``campaigns`` and its subcommands to the ``voicebot`` parser."""
    campaigns = commands.add_parser(
        "campaigns", help="outbound campaigns through the REST API: create, list, show, import"
    )
    sub = campaigns.add_subparsers(dest="campaigns_command", metavar="ACTION", required=True)

    def action(name: str, func: Any, help_text: str, with_id: bool = True) -> Any:
        parser = sub.add_parser(name, help=help_text)
        parser.add_argument("--url", default=DEFAULT_URL, help="server base URL")
        parser.add_argument("--token", help="API token (default: VOICEBOT_API_TOKEN)")
        parser.add_argument("--json", action="store_true", help="print the whole response")
        if with_id:
            parser.add_argument("campaign_id", help="the campaign's id (cmp_...)")
        parser.set_defaults(func=run, campaign_command=func)
        return parser

    create = action("create", cmd_create, "create a campaign and print its id", with_id=False)
    create.add_argument("--job", required=True, help="job script id, e.g. customer_service_en")
    create.add_argument("--name", default="", help="a name recruiters recognise")
    create.add_argument("--start", default="09:00", help="calling hours start, HH:MM")
    create.add_argument("--end", default="20:00", help="calling hours end, HH:MM (after start)")
    create.add_argument(
        "--days", default="mon,tue,wed,thu,fri,sat,sun", help="calling days, e.g. mon,tue,wed"
    )
    create.add_argument("--holidays", default="", help="dates without calls, YYYY-MM-DD,...")
    create.add_argument("--timezone", default="UTC", help="IANA zone of candidates who gave none")
    create.add_argument("--max-attempts", type=int, default=3, help="calls per candidate")
    create.add_argument(
        "--retry-after", type=float, default=86400, help="seconds from a failed attempt to the next"
    )
    create.add_argument(
        "--spread-retries", action="store_true", help="later attempts at other times of day"
    )
    create.add_argument("--max-concurrent", type=int, default=5, help="calls up at once")
    create.add_argument("--caller-id", default="", help="E.164 caller ID of this campaign")
    create.add_argument("--paused", action="store_true", help="create it paused")
    action("list", cmd_list, "list the campaigns with their progress", with_id=False)
    action("show", cmd_show, "one campaign's policy and progress")
    action("pause", cmd_pause, "stop dialing a campaign")
    action("resume", cmd_resume, "dial a paused campaign again")
    imports = action("import", cmd_import, "queue the candidates of a CSV file")
    imports.add_argument("file", help="CSV with the header id,name,phone,timezone,external_key")
