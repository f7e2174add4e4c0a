"""The monitor's sign-in and sign-out forms refuse bodies they cannot read with a 400, not a 500."""

from __future__ import annotations

import aiohttp
import pytest

from tests.monitor.test_web import monitor_server
from voicebot.monitor.accounts import SqliteAccounts


@pytest.mark.parametrize("path", ["/monitor/login", "/monitor/logout"])
@pytest.mark.parametrize(
    "content_type, body",
    [
        ("application/x-www-form-urlencoded; charset=nonsense", b"username=a&password=b"),
        ("application/x-www-form-urlencoded; charset=utf-16", b"\xff"),
        ("multipart/form-data; boundary=xyz", b"--xyz\r\nbroken"),
    ],
)
async def test_unreadable_forms_are_a_400(tmp_path, path, content_type, body):
    accounts = SqliteAccounts(tmp_path / "accounts.sqlite3", 3600)
    server, services = await monitor_server(tmp_path, accounts)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(
                server.make_url(path),
                data=body,
                headers={"Content-Type": content_type},
                allow_redirects=False,
            ) as response:
                assert response.status == 400, await response.text()
                assert "form" in await response.text()
    finally:
        await server.close()
        await accounts.close()
