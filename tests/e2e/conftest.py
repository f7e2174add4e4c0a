"""Fixtures shared by the end-to-end tests of several server processes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT, start_server, stop_server
from tests.redis_helper import RedisServer
from tests.webhook_receiver import WebhookReceiver

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    """Redis (with AOF, as in production), two voicebot servers, a bridge, a receiver."""
    tmp = tmp_path_factory.mktemp("cluster")
    for name in ("redis", "a", "b", "bridge"):
        (tmp / name).mkdir()
    redis = RedisServer(appendonly=True, workdir=tmp / "redis").start()
    receiver = WebhookReceiver(SECRET).start()
    env = {"VOICEBOT_REDIS_URL": redis.url, "VOICEBOT_BRIDGE": "off"}
    servers = []
    bridge = None
    try:
        servers = [start_server(tmp / name, **env) for name in ("a", "b")]
        bridge_log = (tmp / "bridge.log").open("a")

        def start_bridge() -> subprocess.Popen:
            return subprocess.Popen(
                [sys.executable, "-m", "hris_bridge", "run"],
                cwd=ROOT,
                env={
                    **os.environ,
                    "VOICEBOT_DATA_DIR": str(tmp / "bridge"),
                    "VOICEBOT_REDIS_URL": redis.url,
                    "VOICEBOT_WEBHOOK_URL": receiver.url,
                    "VOICEBOT_WEBHOOK_SECRET": SECRET,
                },
                stdout=bridge_log,
                stderr=subprocess.STDOUT,
            )

        state = {
            "redis": redis,
            "receiver": receiver,
            "servers": servers,
            "bridge": start_bridge(),
            "start_bridge": start_bridge,
        }
        yield state
        bridge = state["bridge"]
    finally:
        if bridge is not None:
            bridge.terminate()
            bridge.wait(20)
        unclean = []
        for server in servers:
            try:
                stop_server(server)
            except AssertionError as exc:  # stop the others first, then say so
                unclean.append(exc)
        receiver.stop()
        redis.stop()
        redis.cleanup()
        if unclean:
            raise unclean[0]
