"""Shutdown: one part failing to close does not stop the rest, and the store always closes.

The server's own clean exit on SIGTERM after real calls is checked wherever a test stops a
server process (``tests.conftest.stop_server`` fails when it has to kill one).
"""

from __future__ import annotations

import asyncio
import threading

from voicebot.config import Settings
from voicebot.services import Services
from voicebot.store.database import Store


class Part:
    def __init__(self, fails: bool = False) -> None:
        self.fails = fails
        self.closed = False

    async def close(self) -> None:
        self.closed = True
        if self.fails:
            raise RuntimeError("boom")


async def test_a_failing_close_step_is_logged_and_the_rest_still_close(tmp_path, caplog):
    def store_threads() -> int:
        return sum("_connection_worker_thread" in t.name for t in threading.enumerate())

    services = Services(Settings(data_dir=tmp_path, stream_token_secret="s"))
    before = store_threads()
    services.store = Store(tmp_path / "db.sqlite3")
    await services.store.open()
    assert store_threads() == before + 1
    services.registry = Part(fails=True)
    services.asr = asr = Part()
    await services.close()
    assert asr.closed  # after the failing registry
    assert services.store._db is None
    assert "closing the call registry failed" in caplog.text
    value = services.metrics.internal_errors.labels("shutdown")._value.get()
    assert value == 1
    await asyncio.sleep(0.1)
    assert store_threads() == before  # its thread, which kept the process alive, is gone
