"""The recruiters' live monitor in real headless Chromium, against the real server and a real call.

A recruiter signs in at /monitor, sees a call appear while the test caller speaks (real speech
through the 8 kHz mu-law phone path), opens it and sees the candidate's words appear, listens in
and hears audio frames arrive, stops, signs out. A manager of another department never sees the
call; after it ends its recording plays with the transcript following.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from tests.browser import chrome, console_errors, wait_until
from tests.e2e.monitor_helpers import ANSWERS, PASSWORD, add_user, interview_call

pytestmark = pytest.mark.e2e

JOB = "customer_service_en"  # department: customer_service
JOB_ZH = "customer_service_zh"  # department: customer_service
ANSWERS_ZH = [
    "zh_aishell_BAC009S0724W0121.wav",
    "zh_news_mid.wav",
    "zh_aishell_BAC009S0724W0121.wav",
    "zh_news_mid.wav",
]
"""Four answers of real Mandarin speech."""
HAN = re.compile(r"[\u4e00-\u9fff]")


def sign_in(driver, server, username: str) -> None:
    driver.get(server.url + "/monitor")
    driver.find_element("id", "username").send_keys(username)
    driver.find_element("id", "password").send_keys(PASSWORD)
    driver.find_element("id", "login-submit").click()
    wait_until(lambda: driver.find_element("id", "whoami").text, what="the signed-in page")


def fetch_status(driver, path: str) -> int:
    """The status the page's own fetch() gets (its cookie, its origin)."""
    return driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0]).then(r => done(r.status), e => done(String(e)));",
        path,
    )


def socket_close_code(driver, path: str) -> int:
    """The close code a WebSocket from the page gets on ``path``."""
    return driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "const ws = new WebSocket('ws://' + location.host + arguments[0]);"
        "ws.onclose = e => done(e.code);",
        path,
    )


def row(driver, call_sid: str, kind: str = "call-row"):
    rows = driver.find_elements("css selector", f'tr.{kind}[data-call-sid="{call_sid}"]')
    return rows[0] if rows else None


class BackgroundCall:
    """A real simulated Twilio call in its own thread (the browser test drives the page)."""

    def __init__(
        self, server, audio_dir, interview_id: str, call_sid: str, answers=ANSWERS
    ) -> None:
        self.result = None
        self.error: BaseException | None = None

        def run() -> None:
            try:
                self.result = asyncio.run(
                    interview_call(server.url, interview_id, call_sid, audio_dir, answers)
                )
            except BaseException as error:  # reported by the test
                self.error = error

        self.thread = threading.Thread(target=run, name="test-call", daemon=True)
        self.thread.start()

    def join(self, timeout: float = 200.0):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the call did not end"
        assert self.error is None, self.error
        assert self.result.error is None, self.result.error
        return self.result


@pytest.fixture(scope="module")
def accounts(server):
    env = {"VOICEBOT_DATA_DIR": str(server.data_dir)}
    add_user("recruiter-admin", "admin", **env)
    add_user("service-lead", "manager", "customer_service", **env)
    add_user("sales-lead", "manager", "sales", **env)
    return server


def test_sign_in_is_needed_for_any_call_data(accounts):
    server = accounts
    status, page = server.request("GET", "/monitor", token=None)
    assert status == 200 and 'id="login-form"' in page
    for path in ("/monitor/api/calls", "/monitor/api/me", "/monitor/api/calls/CA1"):
        assert server.request("GET", path, token=None)[0] == 401
    # The REST API's bearer token is not a monitor sign-in.
    assert server.request("GET", "/monitor/api/calls")[0] == 401
    # A sign-in posted from another site's page is refused, even with the right password.
    form = urllib.parse.urlencode({"username": "recruiter-admin", "password": PASSWORD}).encode()
    request = urllib.request.Request(
        server.url + "/monitor/login", data=form, headers={"Origin": "https://evil.example"}
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 403


def test_recruiter_watches_listens_to_and_replays_a_call(accounts, audio_dir):
    server = accounts
    interview_id = server.create_interview(JOB, name="Dana Whitfield")
    call_sid = "CAmonitor" + os.urandom(8).hex()
    admin, outsider = chrome(), chrome(width=390, height=844)  # the outsider on a phone screen
    try:
        sign_in(admin, server, "recruiter-admin")
        sign_in(outsider, server, "sales-lead")
        assert "admin" in admin.find_element("id", "whoami").text
        call = BackgroundCall(server, audio_dir, interview_id, call_sid)

        # The call appears in the list without a reload, with its candidate and job.
        live_row = wait_until(lambda: row(admin, call_sid), timeout=30, what="the live call row")
        assert "Dana Whitfield" in live_row.find_element("css selector", ".candidate").text
        assert "Customer Service" in live_row.find_element("css selector", ".job").text
        live_row.click()
        detail = admin.find_element("id", "call-detail")
        wait_until(detail.is_displayed, what="the call's detail")

        # The candidate's words appear (interim, then final) while the call goes on.
        def candidate_words():
            lines = admin.find_elements("css selector", "#transcript .utt.candidate")
            return [line.text for line in lines if any(c.isalpha() for c in line.text)]

        wait_until(candidate_words, timeout=90, what="the candidate's transcript")
        wait_until(
            lambda: re.search(r"\d+/\d+", admin.find_element("id", "call-position").text),
            what="the script position (question n/m)",
        )

        # Listen in: audio frames arrive over the WebSocket, then it stops cleanly.
        listen = admin.find_element("id", "listen")
        listen.click()
        stats = admin.find_element("id", "listen-stats")
        wait_until(
            lambda: int(stats.get_attribute("data-frames") or 0) >= 10,
            timeout=20,
            what="10 listen-in frames (1 s of audio)",
        )
        listen.click()
        wait_until(lambda: "Listen" in listen.text and "Stop" not in listen.text, what="stop")
        stopped_at = int(stats.get_attribute("data-frames"))
        time.sleep(0.6)  # six more chunks would have come had it not stopped
        assert int(stats.get_attribute("data-frames")) - stopped_at <= 1

        # A manager of another department sees nothing of it, by page, API or socket.
        assert row(outsider, call_sid) is None
        assert fetch_status(outsider, f"/monitor/api/calls/{call_sid}") == 404
        assert socket_close_code(outsider, f"/monitor/ws/calls/{call_sid}") == 4404
        assert socket_close_code(outsider, f"/monitor/ws/calls/{call_sid}/audio") == 4404
        listed = outsider.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "fetch('/monitor/api/calls').then(r => r.json()).then(done);"
        )
        assert call_sid not in json.dumps(listed)

        # The call ends: it moves to the recent calls, with its recording and report.
        call.join()
        server.wait_for_report(interview_id)
        assert row(outsider, call_sid, "recent-row") is None
        admin.find_element("id", "close-detail").click()
        recent = wait_until(
            lambda: row(admin, call_sid, "recent-row"), timeout=30, what="the recent call row"
        )
        assert row(admin, call_sid) is None
        recent.click()
        audio = wait_until(
            lambda: admin.find_element("id", "recording").get_attribute("src"),
            what="the recording player",
        )
        assert f"/monitor/recordings/{call_sid}/call.wav" in audio
        assert fetch_status(admin, f"/monitor/recordings/{call_sid}/call.wav") == 200
        assert fetch_status(outsider, f"/monitor/recordings/{call_sid}/call.wav") == 404
        wait_until(
            lambda: admin.find_element("id", "report-link").get_attribute("href"),
            what="the report link",
        )
        consent = wait_until(
            lambda: admin.find_elements("css selector", "#timeline .tl-consent-recorded"),
            what="the consent on the finished call's timeline",
        )
        assert "keypad" in consent[0].text
        # Seek into the candidate's first answer: its line is highlighted.
        answer = wait_until(
            lambda: admin.find_elements("css selector", "#transcript .utt.candidate[data-start]"),
            what="the recorded transcript",
        )[0]
        start = float(answer.get_attribute("data-start"))
        admin.execute_script(
            "const a = document.getElementById('recording'); a.currentTime = arguments[0];"
            "a.dispatchEvent(new Event('timeupdate'));",
            start + 0.2,
        )
        wait_until(
            lambda: "current" in answer.get_attribute("class").split(), what="the line to follow"
        )
        assert console_errors(admin) == []

        # Sign out: back to the form, and the API refuses the old cookie's page.
        admin.find_element("id", "logout").click()
        wait_until(lambda: admin.find_elements("id", "login-form"), what="the sign-in form")
        assert fetch_status(admin, "/monitor/api/calls") == 401
    finally:
        admin.quit()
        outsider.quit()


def test_department_manager_sees_own_departments_calls(accounts):
    """The customer-service lead sees the finished customer-service call; sales does not."""
    server = accounts
    lead, sales = chrome(), chrome()
    try:
        sign_in(lead, server, "service-lead")
        sign_in(sales, server, "sales-lead")
        script = (
            "const done = arguments[arguments.length - 1];"
            "fetch('/monitor/api/calls').then(r => r.json()).then(done);"
        )
        mine = lead.execute_async_script(script)["recent"]
        theirs = sales.execute_async_script(script)["recent"]
        assert mine and all(call["department"] == "customer_service" for call in mine)
        assert all(call["department"] == "sales" for call in theirs)
    finally:
        lead.quit()
        sales.quit()


def _words(driver, selector: str) -> list[str]:
    """The elements' text as written (CSS upper-cases some labels on screen)."""
    return [n.get_attribute("textContent") for n in driver.find_elements("css selector", selector)]


def test_a_chinese_call_shows_in_chinese_beside_an_english_call(accounts, audio_dir):
    """Two real calls at once, one per job language: each on the monitor in its own language."""
    server = accounts
    zh_id = server.create_interview(JOB_ZH, name="王小明", phone="+15550111")
    en_id = server.create_interview(JOB, name="Dana Whitfield", phone="+15550112")
    zh_sid, en_sid = "CAzh" + os.urandom(8).hex(), "CAen" + os.urandom(8).hex()
    zh_page, en_page = chrome(), chrome()
    try:
        sign_in(zh_page, server, "recruiter-admin")
        sign_in(en_page, server, "service-lead")
        zh_call = BackgroundCall(server, audio_dir, zh_id, zh_sid, ANSWERS_ZH)
        en_call = BackgroundCall(server, audio_dir, en_id, en_sid)

        # Both on the list at once, each row's state in its call's language.
        def state(driver, sid):
            found = row(driver, sid)
            cell = found.find_element("css selector", ".state") if found else None
            return cell.get_attribute("textContent") if cell else None

        wait_until(lambda: state(zh_page, zh_sid) == "提问中", timeout=90, what="zh in question")
        wait_until(lambda: state(zh_page, en_sid) == "question", timeout=30, what="en row")
        row(zh_page, zh_sid).click()
        wait_until(lambda: row(en_page, en_sid), timeout=30, what="the English row").click()

        def answers(driver):
            lines = driver.find_elements("css selector", "#transcript .utt.candidate.final")
            return [line.find_element("css selector", ".text").text for line in lines]

        zh_answer = wait_until(
            lambda: [a for a in answers(zh_page) if HAN.search(a)], timeout=120, what="zh words"
        )
        assert zh_answer
        wait_until(
            lambda: [a for a in answers(en_page) if re.search("[A-Za-z]", a)],
            timeout=120,
            what="the English candidate's words",
        )
        # Live: who speaks, the voice's units and headings in the call's language.
        assert set(_words(zh_page, "#transcript .utt .who")) == {"面试官（AI）", "候选人"}
        assert set(_words(en_page, "#transcript .utt .who")) == {"Interviewer (AI)", "Candidate"}
        assert zh_page.find_element("css selector", "#meter-rate .unit").text == "字/分钟"
        assert en_page.find_element("css selector", "#meter-rate .unit").text == "wpm"
        assert _words(zh_page, "#transcript-box h3") == ["通话记录"]
        assert _words(en_page, "#transcript-box h3") == ["Transcript"]
        # The descriptive figures of a Chinese answer: characters a minute.
        wait_until(
            lambda: "字/分钟" in " ".join(_words(zh_page, "#transcript .utt-prosody")),
            timeout=60,
            what="a Chinese answer's speech rate in characters a minute",
        )

        zh_call.join()
        en_call.join()
        server.wait_for_report(zh_id, timeout=120)
        server.wait_for_report(en_id, timeout=120)
        # Finished: the recent list and the recorded view, still each in its own language.
        for driver in (zh_page, en_page):
            driver.find_element("id", "close-detail").click()
        recent = wait_until(lambda: row(zh_page, zh_sid, "recent-row"), what="the zh recent row")
        wait_until(
            lambda: _words(zh_page, f'tr[data-call-sid="{zh_sid}"] .status') == ["完成"],
            what="the Chinese call's outcome",
        )
        english = wait_until(lambda: row(zh_page, en_sid, "recent-row"), what="the en recent row")
        assert english.find_element("css selector", ".status").get_attribute("textContent") == (
            "completed"
        )
        recent.click()
        wait_until(
            lambda: "同意继续（按键）" in _words(zh_page, "#timeline .tl-text"),
            timeout=30,
            what="the consent on the finished Chinese call's timeline",
        )
        assert _words(zh_page, "#scores-note") == ["评分——供人工复核的建议，不是决定"]
        assert zh_page.find_element("id", "call-position").text == "完成"
        assert set(_words(zh_page, "#transcript .utt .who")) == {"面试官（AI）", "候选人"}
        wait_until(lambda: row(en_page, en_sid, "recent-row"), what="the en recent row").click()
        wait_until(
            lambda: "consent granted (keypad)" in _words(en_page, "#timeline .tl-text"),
            timeout=30,
            what="the consent on the finished English call's timeline",
        )
        assert not HAN.search(en_page.find_element("id", "call-detail").text)
        assert console_errors(zh_page) == [] and console_errors(en_page) == []
    finally:
        zh_page.quit()
        en_page.quit()


def test_wrong_password_is_refused_and_repeated_failures_are_throttled(accounts):
    server = accounts
    driver = chrome()
    try:
        for attempt in range(6):
            driver.get(server.url + "/monitor")
            driver.find_element("id", "username").send_keys("service-lead")
            driver.find_element("id", "password").send_keys("not the password")
            driver.find_element("id", "login-submit").click()
            error = wait_until(
                lambda: driver.find_element("id", "login-error").text, what="the error"
            )
            if attempt < 5:
                assert "Wrong username or password" in error
        assert "Too many failed sign-ins" in error
        assert not driver.find_elements("id", "whoami")
    finally:
        driver.quit()
