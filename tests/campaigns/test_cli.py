"""``voicebot campaigns ...`` against a real server socket: create, import, show, pause, list."""

from __future__ import annotations

import asyncio

import pytest

from tests.api.app_server import API_TOKEN, start_app_server
from voicebot.cli import main


@pytest.fixture
async def server(tmp_path):
    server, services = await start_app_server(tmp_path)
    yield str(server.make_url("")).rstrip("/")
    await server.close()


async def voicebot(capsys, *argv: str) -> tuple[int, str, str]:
    """Run the ``voicebot`` command (in a thread: it runs its own event loop)."""
    code = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def test_create_import_show_pause_resume_list(server, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("VOICEBOT_API_TOKEN", API_TOKEN)
    code, out, err = await voicebot(
        capsys,
        "campaigns", "create", "--url", server, "--job", "customer_service_en",
        "--name", "Spring", "--days", "mon,tue,wed,thu,fri", "--timezone", "Asia/Shanghai",
    )  # fmt: skip
    assert code == 0, err
    campaign_id = out.strip()
    assert campaign_id.startswith("cmp_")
    csv = tmp_path / "candidates.csv"
    csv.write_text(
        "id,name,phone,timezone,external_key\n"
        "c1,Ada,+14155550100,America/New_York,app-1\n"
        "c2,Bob,not-a-number,,app-2\n"
        "c3,Li Lei,+8613800000003,,app-3\n"
    )
    code, out, err = await voicebot(
        capsys, "campaigns", "import", "--url", server, campaign_id, str(csv)
    )
    assert code == 1  # a row was invalid: the operator must look
    assert "queued 2" in out and "invalid 1" in out
    assert "line 3: invalid" in out and "E.164" in out
    code, out, _ = await voicebot(capsys, "campaigns", "show", "--url", server, campaign_id)
    assert code == 0 and "candidates 2: pending 2" in out and "dialing" in out
    code, out, _ = await voicebot(capsys, "campaigns", "pause", "--url", server, campaign_id)
    assert code == 0 and "PAUSED" in out
    code, out, _ = await voicebot(capsys, "campaigns", "resume", "--url", server, campaign_id)
    assert code == 0 and "PAUSED" not in out
    code, out, _ = await voicebot(capsys, "campaigns", "list", "--url", server)
    assert code == 0 and campaign_id in out and "customer_service_en" in out


async def test_the_servers_refusal_is_printed_with_what_to_fix(server, capsys, monkeypatch):
    monkeypatch.setenv("VOICEBOT_API_TOKEN", API_TOKEN)
    code, _, err = await voicebot(
        capsys, "campaigns", "create", "--url", server, "--job", "customer_service_en",
        "--start", "21:00", "--end", "08:00",
    )  # fmt: skip
    assert code == 1 and "invalid_campaign" in err and "midnight" in err
    code, _, err = await voicebot(capsys, "campaigns", "show", "--url", server, "cmp_nope")
    assert code == 1 and "404" in err
    monkeypatch.delenv("VOICEBOT_API_TOKEN")
    code, _, err = await voicebot(capsys, "campaigns", "list", "--url", server)
    assert code == 2 and "VOICEBOT_API_TOKEN" in err
