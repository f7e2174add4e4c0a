"""Chinese prompt text normalisation: digits read as a Chinese speaker reads them, before TTS."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.speech.test_prompt_cache import CountingEngine
from voicebot.dialogue.script import fixed_prompts, load_scripts
from voicebot.speech.prompt_cache import PromptCache, rendering_key, write_metadata
from voicebot.speech.zh_text import cardinal, normalize_zh, speech_text

DIALOGUES = Path(__file__).resolve().parents[2] / "dialogues"

CASES = [
    # cardinals
    ("3", "三"),
    ("25", "二十五"),
    ("100", "一百"),
    ("110", "一百一十"),
    ("10000", "一万"),
    ("10010", "一万零一十"),
    ("2026人", "两千零二十六人"),
    ("20000", "两万"),
    ("10万加", "十万加"),
    # 两 before a measure word, 二 elsewhere
    ("2个", "两个"),
    ("2班", "两班"),
    ("2年", "两年"),
    ("2班倒", "两班倒"),
    ("2万", "两万"),
    ("12", "十二"),
    ("2个月", "两个月"),
    ("2月", "二月"),
    ("2楼", "二楼"),
    ("2分钟", "两分钟"),
    ("12个", "十二个"),
    ("第2", "第二"),
    ("第2个", "第二个"),
    ("第3", "第三"),
    ("第12名", "第十二名"),
    # decimals, percentages, money
    ("3.5", "三点五"),
    ("2.5个小时", "二点五个小时"),
    ("50%", "百分之五十"),
    ("10%-20%", "百分之十到百分之二十"),
    ("¥3000", "三千元"),
    ("￥3,000", "三千元"),
    ("3000元", "三千元"),
    ("月薪5000-8000元", "月薪五千到八千元"),
    # years and dates
    ("2026年", "二零二六年"),
    ("1990年", "一九九零年"),
    ("2026年12月6日", "二零二六年十二月六日"),
    ("12月6日", "十二月六日"),
    ("12月6号", "十二月六号"),
    ("2026-12-06", "二零二六年十二月六日"),
    ("2026/12/6", "二零二六年十二月六日"),
    ("双11", "双十一"),
    ("618大促", "六一八大促"),
    # times (24-hour clock, as written) and ranges
    ("9:00", "九点"),
    ("2:00", "两点"),
    ("9:05", "九点零五分"),
    ("14:30", "十四点三十分"),
    ("22:30", "二十二点三十分"),
    ("9:00-18:00", "九点到十八点"),
    ("9:00~12:00", "九点到十二点"),
    ("9:00至18:00", "九点到十八点"),
    ("上午9点半", "上午九点半"),
    ("3-5年", "三到五年"),
    ("2-3个", "两到三个"),
    # phone numbers (幺 for 1) and digit strings
    ("138 0013 8000", "幺三八 零零幺三 八零零零"),
    ("13800138000", "幺三八 零零幺三 八零零零"),
    ("138-0013-8000", "幺三八 零零幺三 八零零零"),
    ("+86 138 0013 8000", "幺三八 零零幺三 八零零零"),
    ("020-12345678", "零二零 幺二三四五六七八"),
    ("400-800-1234", "四零零 八零零 幺二三四"),
    ("0755", "零七五五"),
    ("123456789", "一二三四五六七八九"),
    # numbers said as phone numbers where a phone number is asked for
    ("请拨打95588", "请拨打九五五八八"),
    ("客服热线：400 820 1111", "客服热线：四零零 八二零 幺幺幺幺"),
    ("电话12345", "电话幺二三四五"),
    ("联系电话：0755-12345678", "联系电话：零七五五 幺二三四五六七八"),
    ("电话12345，2个人", "电话幺二三四五，两个人"),
    ("验证码是2580", "验证码是二五八零"),
    # colons: full-width, and a label's colon before a time
    ("时间：9:00", "时间：九点"),
    ("时间:9:00", "时间:九点"),
    ("９：３０", "九点三十分"),
    ("注意：按1", "注意：按一"),
    # full-width digits
    ("２０２６年", "二零二六年"),
    # what the shipped Chinese scripts say
    (
        "同意请说“可以”或按1，不同意请说“不同意”或按2。",
        "同意请说“可以”或按一，不同意请说“不同意”或按二。",
    ),
    ("5S", "五S"),
    (
        "我们的工作时间是9:00-18:00，每月2次培训，请拨打138 0013 8000。",
        "我们的工作时间是九点到十八点，每月两次培训，请拨打幺三八 零零幺三 八零零零。",
    ),
    ("您好，本次通话会录音。", "您好，本次通话会录音。"),
]


@pytest.mark.parametrize(("written", "spoken"), CASES)
def test_chinese_digits_are_written_out_as_spoken(written, spoken):
    assert normalize_zh(written) == spoken
    assert speech_text(written, "zh") == spoken
    assert speech_text(written, "zh-CN") == spoken


def test_cardinal_numbers_up_to_the_hundred_millions():
    assert [cardinal(n) for n in (0, 10, 15, 101, 1001, 1010, 100000, 1000000)] == [
        "零",
        "十",
        "十五",
        "一百零一",
        "一千零一",
        "一千零一十",
        "十万",
        "一百万",
    ]
    assert cardinal(100010000) == "一亿零一万"
    assert cardinal(120000) == "十二万"


@pytest.mark.parametrize(
    "text",
    [
        "Call us between 9:00-18:00 on 2026-12-06, 50% off, ¥3000, 2 shifts.",
        "Press 1 to continue or 2 to stop.",
        "Hello.",
    ],
)
def test_other_languages_are_untouched(text):
    assert speech_text(text, "en") == text
    assert speech_text(text, "en-US") == text


def test_every_digit_of_the_shipped_chinese_prompts_is_written_out():
    scripts = [s for s in load_scripts(DIALOGUES).values() if s.language.startswith("zh")]
    assert scripts
    texts = [text for script in scripts for text in fixed_prompts(script)]
    assert any(re.search(r"\d", text) for text in texts)
    for text in texts:
        assert not re.search(r"\d", speech_text(text, "zh")), text


class RecordingEngine(CountingEngine):
    """A fake engine that remembers the text it was asked to speak."""

    def __init__(self, name: str = "fake", fail: bool = False):
        super().__init__(name, fail)
        self.texts: list[str] = []

    async def synthesize(self, text, *, language, voice=None):
        self.texts.append(text)
        return await super().synthesize(text, language=language, voice=voice)


async def test_the_engine_speaks_the_normalised_chinese_text(tmp_path):
    engine = RecordingEngine()
    cache = PromptCache(tmp_path, engine)
    written = "面试时间是12月6日14:30，请按1确认。"
    spoken = "面试时间是十二月六日十四点三十分，请按一确认。"
    await cache.get(written, language="zh")
    assert engine.texts == [spoken]
    # Keyed on the normalised text: engine + voice + language + text, as packs carry it.
    key = rendering_key("fake", "", "zh", spoken)
    assert cache.key(written, language="zh") == key
    assert cache.path(key).is_file()
    assert json.loads(cache.metadata_path(key).read_text("utf-8"))["text"] == spoken
    # The written and the spoken form are one rendering.
    await cache.get(spoken, language="zh")
    await PromptCache(tmp_path, engine).get(written, language="zh")
    assert engine.calls == 1


async def test_prerender_speaks_the_normalised_text(tmp_path):
    engine = RecordingEngine()
    cache = PromptCache(tmp_path, engine)
    await cache.prerender([("可以请按1，不可以请按2。", "zh", None), ("Press 1.", "en", None)])
    assert engine.texts == ["可以请按一，不可以请按二。", "Press 1."]


async def test_english_prompts_reach_the_engine_unchanged(tmp_path):
    engine = RecordingEngine()
    cache = PromptCache(tmp_path, engine)
    await cache.get("Press 1 between 9:00-18:00.", language="en")
    assert engine.texts == ["Press 1 between 9:00-18:00."]
    assert cache.key("Press 1.", language="en") == rendering_key("fake", "", "en", "Press 1.")


async def test_a_pack_rendered_from_the_written_text_still_plays(tmp_path):
    """A prompt imported from a pack made before normalisation (keyed on the written text)."""
    written = "请按1。"
    key = rendering_key("edge", "zh-CN-XiaoxiaoNeural", "zh", written)
    (tmp_path / f"{key}.ulaw").write_bytes(b"\xff" * 800)
    metadata = {"engine": "edge", "voice": "zh-CN-XiaoxiaoNeural", "language": "zh"}
    write_metadata(tmp_path / f"{key}.json", {**metadata, "text": written, "imported": True})
    engine = RecordingEngine("espeak", fail=True)
    cache = PromptCache(tmp_path, engine)
    assert await cache.get(written, language="zh") == b"\xff" * 800
    assert engine.calls == 0 and cache.imported_hits == 1
