"""The monitor in real headless Chromium: a Chinese call in Chinese, an English call in English.

The monitor's real routes, call registry and live feed run in a thread on real loopback sockets;
the two calls' events are published the way a call session publishes them (the same names and
fields), so every notice can be shown: consent by keypad, a failed knock-out, an opt-out, a
follow-up, fillers. Two recruiters watch at once, one each call, while both calls are on the
list. Real calls through the phone path are watched in tests/e2e/test_monitor_browser.py.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time

import pytest

from tests.browser import chrome, console_errors, wait_until
from tests.monitor.test_web import PASSWORD, monitor_server
from voicebot.monitor.accounts import SqliteAccounts

ZH, EN = "CAzh" + "0" * 28, "CAen" + "0" * 28


class MonitorInThread:
    """The monitor app on its own event loop in a thread (Selenium blocks the test's thread)."""

    def __init__(self, tmp_path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.accounts = SqliteAccounts(tmp_path / "accounts.sqlite3", 3600)
        self.server, self.services = self.run(monitor_server(tmp_path, self.accounts))
        self.url = str(self.server.make_url("")).rstrip("/")

    def run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(30)

    def do(self, function, *args, **kwargs) -> None:
        """Call ``function`` on the server's loop (as a session does: synchronously there)."""

        async def call():
            function(*args, **kwargs)

        self.run(call())

    def publish(self, call_sid: str, kind: str, t: float, **data) -> None:
        self.do(self.services.live.publish, call_sid, kind, t, **data)

    def close(self) -> None:
        self.run(self.server.close())
        self.run(self.accounts.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def monitor(tmp_path):
    running = MonitorInThread(tmp_path)
    yield running
    running.close()


def summary(call_sid: str, job_id: str, name: str, **position) -> dict:
    """A call as a session lists it (``CallSession.summary``)."""
    return {
        "call_sid": call_sid,
        "interview_id": "iv-" + call_sid,
        "job_id": job_id,
        "candidate_name": name,
        "started_at": time.time() - 30,
        "state": "consent",
        "question_id": None,
        "question_index": None,
        "question_count": None,
        "in_follow_up": False,
        "scores": None,
        **position,
    }


def sign_in(driver, url: str) -> None:
    driver.get(url + "/monitor")
    driver.find_element("id", "username").send_keys("admin1")
    driver.find_element("id", "password").send_keys(PASSWORD)
    driver.find_element("id", "login-submit").click()
    wait_until(lambda: driver.find_element("id", "whoami").text, what="the signed-in page")


def text_of(driver, selector: str) -> str:
    return driver.find_element("css selector", selector).text


def texts(driver, selector: str) -> list[str]:
    return [node.text for node in driver.find_elements("css selector", selector)]


def words(driver, selector: str) -> list[str]:
    """The text of the elements as written (``texts`` is as shown: CSS may upper-case it)."""
    return [
        node.get_attribute("textContent") for node in driver.find_elements("css selector", selector)
    ]


def row_cell(driver, call_sid: str, cell: str, kind: str = "call-row") -> str:
    rows = driver.find_elements("css selector", f'tr.{kind}[data-call-sid="{call_sid}"]')
    return rows[0].find_element("css selector", f"td.{cell}").text if rows else ""


def open_call(driver, call_sid: str) -> None:
    driver.find_element("css selector", f'tr.call-row[data-call-sid="{call_sid}"]').click()
    wait_until(
        lambda: driver.find_elements("css selector", "#questions li"),
        what="the call's snapshot (its questions)",
    )


def speak(monitor: MonitorInThread, call_sid: str, lines: dict) -> None:
    """One stretch of a call, as its session publishes it."""
    publish = monitor.publish
    publish(call_sid, "bot.speaking", 0.2, prompt_id="greeting", text=lines["greeting"])
    publish(call_sid, "consent.recorded", 6.0, granted=True, via="dtmf")
    position = {"state": "question", "question_index": 0, "question_count": 5}
    publish(call_sid, "script.position", 6.1, question_id="shifts", **position)
    call = summary(call_sid, lines["job"], lines["name"], **position)
    monitor.do(monitor.services.registry.upsert, call)
    publish(
        call_sid,
        "transcript.partial",
        9.0,
        question_id="shifts",
        stable=lines["answer"][:3],
        unstable="",
        text=lines["answer"][:3],
        speech_rate=lines["rate"],
        rate_unit=lines["unit"],
        speech_rate_wpm=None if lines["unit"] == "cpm" else lines["rate"],
    )
    publish(call_sid, "transcript.final", 11.0, text=lines["answer"], start=8.0, end=11.0)
    publish(
        call_sid,
        "prosody.answer",
        11.1,
        duration_secs=3.0,
        speech_rate=lines["rate"],
        word_count=lines["words"],
        filler_count=2,
        pause_ratio=0.2,
    )
    publish(
        call_sid,
        "knockout.recorded",
        11.2,
        question_id="shifts",
        expected="yes",
        answer="no",
        passed=False,
        via="voice",
    )
    publish(call_sid, "script.position", 11.3, in_follow_up=True, question_id="shifts", **position)
    publish(call_sid, "opt_out.recorded", 12.0, via="voice", question_id="shifts")
    publish(
        call_sid,
        "scores.updated",
        12.1,
        overall=40,
        recommendation=None,
        competencies=[{"id": "reliability", "name": lines["competency"], "score": 40}],
    )


def test_a_chinese_call_is_shown_in_chinese_beside_an_english_one(monitor):
    registry = monitor.services.registry
    registry_zh = summary(ZH, "workshop_operator_zh", "王小明")
    monitor.do(registry.upsert, registry_zh)
    monitor.do(registry.upsert, summary(EN, "workshop_operator_en", "Dana Whitfield"))
    zh_recruiter, en_recruiter = chrome(), chrome()
    try:
        for driver in (zh_recruiter, en_recruiter):
            sign_in(driver, monitor.url)
        page = zh_recruiter
        # Both calls on one list, each row about its call in the call's language; the page's
        # own words (column headings) stay English.
        wait_until(lambda: row_cell(page, ZH, "state") == "征求同意", what="the Chinese row")
        assert row_cell(page, EN, "state") == "consent"
        assert row_cell(page, ZH, "position") == "征求同意"
        assert row_cell(page, ZH, "job") == "车间普工（两班倒）"
        assert words(page, "#live-calls thead th")[:2] == ["Candidate", "Job"]
        assert text_of(page, "#live-heading").startswith("Live calls")

        open_call(zh_recruiter, ZH)
        open_call(en_recruiter, EN)
        zh_lines = {
            "job": "workshop_operator_zh",
            "name": "王小明",
            "greeting": "您好，我是AI智能助理，本次通话会录音。",
            "answer": "嗯，那个，我可以上夜班，就是，两班倒没问题。",
            "rate": 186.0,
            "unit": "cpm",
            "words": 19,
            "competency": "出勤与守时",
        }
        en_lines = {
            "job": "workshop_operator_en",
            "name": "Dana Whitfield",
            "greeting": "Hello, I am an AI assistant. This call is recorded.",
            "answer": "Um, you know, nights are fine with me.",
            "rate": 142.0,
            "unit": "wpm",
            "words": 8,
            "competency": "Reliability",
        }
        speak(monitor, ZH, zh_lines)
        speak(monitor, EN, en_lines)

        def settled(driver, count):
            return len(texts(driver, "#timeline .tl-item")) >= count and texts(
                driver, "#score-overall"
            ) != [""]

        wait_until(lambda: settled(zh_recruiter, 3), what="the Chinese call's events")
        wait_until(lambda: settled(en_recruiter, 3), what="the English call's events")

        zh = zh_recruiter
        assert zh.find_element("id", "call-detail").get_attribute("lang") == "zh-CN"
        assert [text_of(zh, f"#{box} h3") for box in ("questions-box", "scores-box")] == [
            "问题",
            "评分",
        ]
        assert text_of(zh, "#transcript-box h3") == "通话记录"
        assert text_of(zh, "#timeline-box h3") == "时间线"
        assert text_of(zh, "#prosody h3") == "候选人的声音"
        assert text_of(zh, "#meter-rate .label") == "语速"
        assert text_of(zh, "#meter-rate .unit") == "字/分钟"  # characters, not words, a minute
        assert text_of(zh, "#meter-rate .value") == "186"
        assert words(zh, "#transcript .utt .who") == ["面试官（AI）", "候选人"]
        prosody = text_of(zh, "#transcript .utt.candidate .utt-prosody")
        assert "186 字/分钟" in prosody and "填充词（嗯/那个/就是）2 个" in prosody
        assert "19 字" in prosody and "停顿占比 20%" in prosody
        timeline = texts(zh, "#timeline .tl-text")
        assert "同意继续（按键）" in timeline
        assert "淘汰题 第 1 题：未通过（回答：否）" in timeline
        assert "要求不再来电（语音）" in timeline
        assert text_of(zh, "#call-position") == "1/5（追问）"
        assert text_of(zh, "#score-overall") == "目前（已作答的能力项）40 / 100"
        assert text_of(zh, "#scores-note") == "实时评分——暂定，供人工复核"
        assert text_of(zh, "#listen") == "Listen in"  # the recruiter's own controls: English

        en = en_recruiter
        assert en.find_element("id", "call-detail").get_attribute("lang") == "en"
        assert text_of(en, "#questions-box h3") == "Questions"
        assert text_of(en, "#meter-rate .unit") == "wpm"
        assert words(en, "#transcript .utt .who") == ["Interviewer (AI)", "Candidate"]
        prosody = text_of(en, "#transcript .utt.candidate .utt-prosody")
        assert "142 wpm" in prosody and "2 fillers" in prosody and "8 words" in prosody
        timeline = texts(en, "#timeline .tl-text")
        assert "consent granted (keypad)" in timeline
        assert "knock-out question 1: not passed (answer: no)" in timeline
        assert "opt-out via voice" in timeline
        assert text_of(en, "#call-position") == "1/5 (follow-up)"
        assert text_of(en, "#score-overall") == "So far (answered competencies) 40 / 100"
        assert not re.search(r"[\u4e00-\u9fff]", text_of(en, "#call-detail"))

        # The Chinese call ends: on the recent list its outcome and time read in Chinese.
        zh.find_element("id", "close-detail").click()
        ended = {
            **registry_zh,
            "ended_at": time.time(),
            "duration_secs": 42.0,
            "end_reason": "knocked_out",
            "status": "scoring",
        }
        monitor.do(registry.ended, ended)
        wait_until(lambda: row_cell(zh, ZH, "status", "recent-row"), what="the recent row")
        assert row_cell(zh, ZH, "status", "recent-row") == "评分中 淘汰题未通过"
        assert re.fullmatch(r"\d{1,2}:\d{2}", row_cell(zh, ZH, "when", "recent-row"))
        monitor.do(registry.outcome, "iv-" + ZH, "knocked_out")
        wait_until(
            lambda: row_cell(zh, ZH, "status", "recent-row") == "淘汰题未通过",
            what="the outcome in Chinese",
        )
        assert row_cell(zh, EN, "state") == "question"  # the English call goes on, in English
        for driver in (zh_recruiter, en_recruiter):
            assert console_errors(driver) == []
    finally:
        zh_recruiter.quit()
        en_recruiter.quit()
