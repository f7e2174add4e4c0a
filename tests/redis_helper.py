"""A real redis-server for tests: on a free loopback port, stoppable and restartable.

    server = RedisServer().start()      # or RedisServer(appendonly=True) to survive restarts
    server.url                          # redis://127.0.0.1:PORT/0
    server.stop(); server.start()       # an outage: same port, same data directory
    server.restart()
    server.stop()

By default nothing is persisted (``--save "" --appendonly no``): a restart comes back empty, like
a cache. ``appendonly=True`` (fsync always) keeps the data across restarts, like a production
Redis with AOF.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port() -> int:
    """A TCP port free on the loopback interface now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ping(port: int, timeout: float = 0.2) -> bool:
    """Whether a Redis answers PING on this loopback port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One redis-server process (restartable on the same port with the same data directory)."""

    def __init__(self, *, appendonly: bool = False, workdir: Path | str | None = None) -> None:
        self.appendonly = appendonly
        self._own_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="redis-test-"))
        self.port: int | None = None
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        if self.port is None:
            raise RuntimeError("redis-server not started")
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self.process is not None and self.process.poll() is None

    def start(self, port: int | None = None, timeout: float = 10.0) -> RedisServer:
        """Start (on ``port``, the previous port, or a free one) and wait until PING works."""
        if self.running:
            return self
        self.port = port or self.port or free_port()
        args = [
            REDIS_SERVER,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.workdir),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "always",
            "--logfile", str(self.workdir / "redis.log"),
        ]  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            self.process = subprocess.Popen(
                args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            while time.monotonic() < deadline and self.process.poll() is None:
                if ping(self.port):
                    return self
                time.sleep(0.02)
            if self.process.poll() is None or time.monotonic() >= deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.1)  # exited (the port still held a moment after a stop): try again

    def stop(self, kill: bool = False) -> None:
        """Stop the process (SIGTERM, or SIGKILL with ``kill``) and wait for it."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        if kill:
            process.kill()
        else:
            process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    def restart(self) -> RedisServer:
        """Stop and start again on the same port."""
        self.stop()
        return self.start()

    def cleanup(self) -> None:
        """Stop and remove the data directory (if this helper made it)."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
