"""The monitor's campaigns view in real headless Chromium.

The monitor's real routes over a real store run in a thread on loopback sockets. A campaign's
interviews end the way they do in a server: the store gets the outcome, then the call registry
says the call ended (a person interviewed) or the dialer says the campaign changed (a candidate
not reached); the recruiter's page moves its bar without a reload. Pause and resume are clicked
on the page and reach the store; a manager of another department does not see the campaign.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from tests.browser import chrome, console_errors, wait_until
from tests.campaign_page import bar, card, count, sign_in
from tests.monitor.test_campaigns import (
    SALES_JOB,
    SERVICE_JOB,
    add_campaign,
    campaign_monitor,
    finish,
)
from tests.monitor.test_web import PASSWORD
from voicebot.campaigns.store import campaign_store
from voicebot.monitor.accounts import SqliteAccounts
from voicebot.monitor.registry import campaign_changed


class CampaignMonitorInThread:
    """The monitor app on its own event loop in a thread (Selenium blocks the test's thread)."""

    def __init__(self, tmp_path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.accounts = SqliteAccounts(tmp_path / "accounts.sqlite3", 3600)
        self.server, self.services = self.run(campaign_monitor(tmp_path, self.accounts))
        self.url = str(self.server.make_url("")).rstrip("/")

    def run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(30)

    def interviewed(self, interview_id: str, n: int) -> None:
        """A candidate was interviewed to the end: outcome stored, the call off the live list."""

        async def done():
            await finish(self.services, interview_id, "completed")
            self.services.registry.ended(
                {
                    "call_sid": f"CA{n:032d}",
                    "interview_id": interview_id,
                    "job_id": SERVICE_JOB,
                    "candidate_name": "x",
                    "started_at": time.time() - 60,
                    "status": "completed",
                }
            )

        self.run(done())

    def not_reached(self, campaign_id: str, interview_id: str) -> None:
        """The dialer's last attempt did not reach the candidate."""

        async def done():
            await finish(self.services, interview_id, "unreachable")
            campaign_changed(self.services.live, campaign_id)

        self.run(done())

    def paused(self, campaign_id: str) -> bool:
        async def get():
            return (await (await campaign_store(self.services)).get_campaign(campaign_id))["paused"]

        return self.run(get())

    def close(self) -> None:
        self.run(self.server.close())
        self.run(self.accounts.close())
        self.run(self.services.audit.close())
        self.run(self.services.store.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def monitor(tmp_path):
    running = CampaignMonitorInThread(tmp_path)
    yield running
    running.close()


def next_attempts(driver, campaign_id: str) -> str:
    return card(driver, campaign_id).find_element("css selector", ".campaign-next").text


def test_progress_moves_live_pause_resume_from_the_page_other_department_sees_nothing(monitor):
    service = monitor.run(add_campaign(monitor.services, SERVICE_JOB, "Service spring", 4))
    sales = monitor.run(add_campaign(monitor.services, SALES_JOB, "Sales spring", 2))
    lead, other = chrome(), chrome()
    try:
        sign_in(lead, monitor.url, "service-lead", PASSWORD)
        sign_in(other, monitor.url, "sales-lead", PASSWORD)
        assert wait_until(lambda: bar(lead, service["id"]) == (0, 4), what="the bar at 0 of 4")
        assert count(lead, service["id"], "scheduled") == "4"
        assert next_attempts(lead, service["id"]).endswith("(4)")  # all four due now
        assert card(lead, sales["id"]) is None  # another department's campaign
        wait_until(lambda: card(other, sales["id"]), what="the sales lead's own campaign")
        assert card(other, service["id"]) is None
        assert other.find_element("id", "campaigns-count").text == "1"

        # Interviews end: the bar moves without a reload.
        monitor.interviewed(service["interview_ids"][0], 1)
        wait_until(lambda: bar(lead, service["id"]) == (1, 4), what="1 of 4 after an interview")
        assert count(lead, service["id"], "completed") == "1"
        monitor.interviewed(service["interview_ids"][1], 2)
        wait_until(lambda: bar(lead, service["id"]) == (2, 4), what="2 of 4")
        monitor.not_reached(service["id"], service["interview_ids"][2])
        wait_until(lambda: bar(lead, service["id"]) == (3, 4), what="3 of 4")
        wait_until(lambda: count(lead, service["id"], "unreachable") == "1", what="unreachable")
        assert count(lead, service["id"], "completed") == "2"
        assert count(lead, service["id"], "scheduled") == "1"
        assert "3 of 4 finished" in card(lead, service["id"]).text
        assert next_attempts(lead, service["id"]).endswith("(1)")
        assert card(other, service["id"]) is None  # its changes do not show elsewhere

        # Pause from the page, then resume.
        card(lead, service["id"]).find_element("css selector", "button.campaign-toggle").click()
        wait_until(lambda: monitor.paused(service["id"]), what="the campaign paused in the store")
        wait_until(
            lambda: card(lead, service["id"]).get_attribute("data-paused") == "true",
            what="the page showing it paused",
        )
        toggle = card(lead, service["id"]).find_element("css selector", "button.campaign-toggle")
        assert toggle.text == "Resume"
        assert "paused" in card(lead, service["id"]).text
        toggle.click()
        wait_until(lambda: not monitor.paused(service["id"]), what="the campaign resumed")
        wait_until(
            lambda: card(lead, service["id"]).get_attribute("data-paused") == "false",
            what="the page showing it running",
        )
        assert not monitor.paused(sales["id"])
        assert console_errors(lead) == [] and console_errors(other) == []
    finally:
        lead.quit()
        other.quit()
