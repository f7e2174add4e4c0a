"""The real aiohttp app (routes, middlewares, store, scripts) on a real socket, without the models.

For the HTTP edge tests that need no call audio: the app is ``voicebot.app.create_app`` with its
model-loading start-up replaced by opening a real SQLite store, loading the real job scripts and
making the real token signers. Requests go over real loopback sockets (aiohttp's ``TestServer``).
"""

from __future__ import annotations

from pathlib import Path

from aiohttp.test_utils import TestServer

from voicebot.api.links import LinkSigner
from voicebot.app import create_app
from voicebot.config import PROJECT_ROOT, Settings
from voicebot.dialogue.script import load_scripts
from voicebot.monitor.accounts import LoginThrottle, SqliteAccounts
from voicebot.services import Services
from voicebot.store.database import Store
from voicebot.telephony.stream_token import TokenSigner

API_TOKEN = "app-test-api-token"
TWILIO_AUTH_TOKEN = "app-test-twilio-auth-token"
SCRIPTS = load_scripts(PROJECT_ROOT / "dialogues")


async def start_app_server(tmp_path: Path, **settings: object) -> tuple[TestServer, Services]:
    """Start the app on a free loopback port; close it with ``await server.close()``."""
    values = {
        "data_dir": tmp_path / "data",
        "recordings_dir": tmp_path / "recordings",
        "api_token": API_TOKEN,
        "twilio_auth_token": TWILIO_AUTH_TOKEN,
        **settings,
    }
    services = Services(Settings.from_env({}, **values))
    app = create_app(services.settings, services)
    app.on_startup.clear()  # no models: only what the HTTP routes use
    app.on_shutdown.clear()
    services.store = Store(tmp_path / "data" / "voicebot.sqlite3")
    await services.store.open()
    services.scripts = dict(SCRIPTS)
    services.token_signer = TokenSigner(b"s" * 32, ttl_secs=60, purpose="stream")
    services.link_signer = LinkSigner.from_secret(b"s" * 32, ttl_secs=60)
    services.login_throttle = LoginThrottle()
    services.accounts = SqliteAccounts(tmp_path / "data" / "accounts.sqlite3", 3600)
    await services.accounts.open()

    async def close_store(app: object) -> None:
        await services.store.close()
        await services.accounts.close()

    app.on_cleanup.append(close_store)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server, services
