"""Idle carrier streams: what WebSockets that never send ``start`` cost a server, and after.

Whether the server gets the memory back when they go.

Starts a voicebot server (or measures one already running, given its URL and process id), then
``--rounds`` times opens ``--connections`` WebSockets to ``/twilio/stream`` at once, spread over
``--addresses`` loopback source addresses (127.0.0.2, 127.0.0.3, ...), sends only ``connected``,
holds them all open, and closes them. The server's resident memory (VmRSS) is read before, with
every connection of a round open, and after the last round once the server counts no stream
pending (plus ``--settle-secs``). Prints a JSON summary.

    python -m loadtest.idle_streams --connections 1000 --rounds 5
    python -m loadtest.idle_streams --server-root /path/to/another/checkout   # compare versions
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rss_mb(pid: int) -> float:
    """Resident memory of a process, in MB (from /proc)."""
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", text, re.MULTILINE)
    assert match, "no VmRSS in /proc status"
    return int(match.group(1)) / 1024


def metric(url: str, name: str) -> float | None:
    """One unlabelled sample from the server's /metrics, None if absent."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return None


def free_port() -> int:
    """A free loopback TCP port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(root: Path, workdir: Path, connections: int, addresses: int) -> tuple:
    """``voicebot serve`` from ``root`` with caps that let the whole round in."""
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(root),
        "VOICEBOT_HOST": "127.0.0.1",
        "VOICEBOT_PORT": str(port),
        "VOICEBOT_DATA_DIR": str(workdir / "data"),
        "VOICEBOT_RECORDINGS_DIR": str(workdir / "recordings"),
        "VOICEBOT_STREAM_TOKEN_SECRET": "idle-streams-measurement",
        "VOICEBOT_LOG_LEVEL": "WARNING",
        "VOICEBOT_STREAM_MAX_PENDING": str(connections),
        "VOICEBOT_STREAM_MAX_PENDING_PER_ADDRESS": str(-(-connections // addresses)),
        "VOICEBOT_STREAM_START_TIMEOUT_SECS": "120",
    }
    env.setdefault("VOICEBOT_PROMPT_CACHE_DIR", str(ROOT / ".cache" / "test-prompts"))
    log = (workdir / "server.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "voicebot.cli", "serve"],
        cwd=root,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError((workdir / "server.log").read_text()[-3000:])
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2):
                return url, process
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise RuntimeError("server not healthy within 300 s")


async def open_idle(url: str, connections: int, addresses: int) -> tuple[list, list, int]:
    """Open ``connections`` idle streams at once; (open sockets, client sessions, refused)."""
    import aiohttp

    stream_url = url.replace("http", "ws", 1) + "/twilio/stream"
    sessions = [
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, local_addr=(f"127.0.0.{2 + i}", 0))
        )
        for i in range(addresses)
    ]
    hello = json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})
    gate = asyncio.Semaphore(64)  # handshakes in flight; every socket stays open once made

    async def open_one(i: int):
        async with gate:
            try:
                ws = await sessions[i % addresses].ws_connect(stream_url, autoping=True)
            except (aiohttp.ClientError, OSError):
                return None
            await ws.send_str(hello)
            return ws

    sockets = await asyncio.gather(*(open_one(i) for i in range(connections)))
    opened = [ws for ws in sockets if ws is not None and not ws.closed]
    return opened, sessions, connections - len(opened)


async def measure(url: str, pid: int, connections: int, addresses: int, rounds: int, settle: float):
    """RSS before, at each round's peak, and after every idle stream has gone."""
    before = rss_mb(pid)
    peaks = []
    opened_total = refused_total = 0
    for _ in range(rounds):
        sockets, sessions, refused = await open_idle(url, connections, addresses)
        await asyncio.sleep(1.0)
        peaks.append(
            {
                "open": len(sockets),
                "refused": refused,
                "pending_gauge": await asyncio.to_thread(metric, url, "voicebot_streams_pending"),
                "rss_mb": round(rss_mb(pid), 1),
            }
        )
        opened_total += len(sockets)
        refused_total += refused
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
        await asyncio.gather(*(session.close() for session in sessions))
    for _ in range(120):  # the server notices the closes
        if (await asyncio.to_thread(metric, url, "voicebot_streams_pending") or 0) == 0:
            break
        await asyncio.sleep(0.5)
    await asyncio.sleep(settle)
    return {
        "connections_per_round": connections,
        "rounds": rounds,
        "opened": opened_total,
        "refused": refused_total,
        "rss_before_mb": round(before, 1),
        "rounds_peak": peaks,
        "rss_after_mb": round(rss_mb(pid), 1),
    }


def main(argv: list[str] | None = None) -> int:
    """Measure, print the JSON summary."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--addresses", type=int, default=20)
    parser.add_argument("--settle-secs", type=float, default=5.0)
    parser.add_argument("--url", help="a running server (with --pid)")
    parser.add_argument("--pid", type=int, help="the running server's process id")
    parser.add_argument("--server-root", type=Path, default=ROOT, help="checkout to serve from")
    args = parser.parse_args(argv)
    process = None
    if args.url:
        if not args.pid:
            parser.error("--url needs --pid (to read the server's memory)")
        url, pid = args.url, args.pid
    else:
        workdir = Path(tempfile.mkdtemp(prefix="idle-streams-"))
        url, process = start_server(
            args.server_root.resolve(), workdir, args.connections, args.addresses
        )
        pid = process.pid
    try:
        result = asyncio.run(
            measure(url, pid, args.connections, args.addresses, args.rounds, args.settle_secs)
        )
    finally:
        if process is not None:
            process.terminate()
            process.wait(60)
    result["server_root"] = str(args.server_root.resolve())
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
