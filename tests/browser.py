"""Real headless Chromium for the web UI tests: Debian's ``chromium`` driven by Selenium.

The system browser and its matching ``chromedriver`` (package ``chromium-driver``) are used as
they are: nothing is downloaded (the README's test set-up installs both when missing).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from typing import Any

import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
DRIVERS = ("chromedriver",)


def _find(names: tuple[str, ...]) -> str | None:
    for name in names:
        path = shutil.which(name) or shutil.which(name, path="/usr/bin:/usr/lib/chromium")
        if path:
            return path
    return None


def chrome(width: int = 1280, height: int = 900) -> Any:
    """A new headless Chromium (its own profile: cookies are not shared between two)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver = _find(BROWSERS), _find(DRIVERS)
    if browser is None or driver is None:
        pytest.fail(
            "the web UI tests need Chromium and chromedriver: apt-get install -y chromium "
            "chromium-driver (the README's test set-up does it)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--autoplay-policy=no-user-gesture-required",
        f"--window-size={width},{height}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=options)


def wait_until(check: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy (returned), or fail saying what."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except Exception as error:  # the page is still changing under us
            last_error = error
            value = None
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} ({last_error})")


def console_errors(driver: Any) -> list[str]:
    """Severe messages the page logged (JavaScript errors)."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
