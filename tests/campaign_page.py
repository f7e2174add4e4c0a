"""The campaigns card of the live monitor, as a recruiter's browser sees it (Selenium helpers)."""

from __future__ import annotations

from tests.browser import wait_until


def sign_in(driver, url: str, username: str, password: str) -> None:
    driver.get(url + "/monitor")
    driver.find_element("id", "username").send_keys(username)
    driver.find_element("id", "password").send_keys(password)
    driver.find_element("id", "login-submit").click()
    wait_until(lambda: driver.find_element("id", "whoami").text, what="the signed-in page")


def card(driver, campaign_id: str):
    found = driver.find_elements(
        "css selector", f'article.campaign[data-campaign-id="{campaign_id}"]'
    )
    return found[0] if found else None


def bar(driver, campaign_id: str) -> tuple[int, int] | None:
    item = card(driver, campaign_id)
    if item is None:
        return None
    progress = item.find_element("css selector", "progress.campaign-bar")
    return int(progress.get_attribute("value")), int(progress.get_attribute("max"))


def count(driver, campaign_id: str, bucket: str) -> str:
    return card(driver, campaign_id).find_element("css selector", f".count-{bucket} dd").text
