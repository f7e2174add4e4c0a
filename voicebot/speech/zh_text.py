"""Chinese prompt text as it is spoken: digits written out the way a Chinese speaker reads them.

A TTS engine handed ``"请在9:00-18:00之间拨打138 0013 8000"`` reads the digits however it likes
(espeak-ng spells some of them out in English). :func:`speech_text` rewrites a Chinese prompt's
digits into characters before synthesis, so every engine says the same, natural thing:

========================  ====================================  ==============================
written                   spoken                                rule
========================  ====================================  ==============================
3, 25, 100, 10000         三, 二十五, 一百, 一万                  cardinal
2个, 2班, 2年, 2万          两个, 两班, 两年, 两万                  两 before a measure word
12, 第2                   十二, 第二                             二 elsewhere
第3                       第三                                   ordinal
3.5, 50%                  三点五, 百分之五十                      decimal, percentage
¥3000, 3000元             三千元                                 money
2026年                    二零二六年                             a year digit by digit
2026-12-06, 2026年12月6日  二零二六年十二月六日                    date
9:00, 14:30, 9:05         九点, 十四点三十分, 九点零五分            time, 24-hour clock
9:00-18:00, 3-5年          九点到十八点, 三到五年                   range
138 0013 8000             幺三八 零零幺三 八零零零                 phone number, 幺 for 1
拨打95588                  拨打九五五八八                          after 拨打/电话/热线...: phone
验证码2580                 验证码二五八零                          after 验证码/编号/工号...
0755, 123456789           零七五五, 一二三四五六七八九              digit string
按1                       按一                                   keypad key
========================  ====================================  ==============================

Times are read on the 24-hour clock as written (十四点三十分, not 下午两点半): the candidate hears
exactly the time the script shows, with no guess at 上午/下午, and 两点 for 2 o'clock. Text in
any other language is returned unchanged. Pure and fast (regular expressions, no dictionary).
"""

from __future__ import annotations

import re

_DIGITS = "零一二三四五六七八九"
_PHONE_DIGITS = "零幺二三四五六七八九"
_FULL_WIDTH = str.maketrans("０１２３４５６７８９％．－～￥", "0123456789%.-~¥")
_FULL_WIDTH_COLON = re.compile(r"(?<=\d)：(?=\d)")  # ９：３０; a label's "时间：" is kept

_MEASURE_WORDS = (
    "个 班 年 天 次 位 名 件 小时 分钟 秒 周 星期 礼拜 种 项 家 份 本 张 条 台 岁 倍 块 元 "
    "人 层 轮 遍 套 把 辆 米 公里 斤 公斤 门 间 道 步 组 批 场 瓶 箱 双 点 句 万 千 百 亿 所 部"
).split()
"""Words after which 2 is read 两 (两个, 两班倒, 两年, 两万)."""

_SPOKEN_AS_DIGITS = {"618": "六一八"}
"""Numbers with a name read digit by digit (the 618 shopping festival)."""

_RANGE = r"\s*(?:-|~|–|—|至|到)\s*"


def _digits(number: str, table: str = _DIGITS) -> str:
    return "".join(table[int(d)] if d.isdigit() else " " for d in number)


def _group(value: int, liang: bool) -> str:
    """Read 0 < value < 10000 (千百十个), with 零 for inner zeros."""
    out = []
    zero = False
    for unit_value, unit in ((1000, "千"), (100, "百"), (10, "十"), (1, "")):
        digit = value // unit_value % 10
        if digit == 0:
            zero = bool(out)
            continue
        if zero:
            out.append("零")
            zero = False
        word = _DIGITS[digit]
        if digit == 2 and unit == "千" or digit == 2 and unit == "" and liang and len(out) == 0:
            word = "两"
        out.append(word + unit)
    return "".join(out)


def cardinal(value: int, *, liang: bool = False) -> str:
    """Read a whole number: 25 -> 二十五, 10010 -> 一万零一十; ``liang``: 2 -> 两."""
    if value == 0:
        return "零"
    parts = []
    units = ["", "万", "亿", "万亿"]
    index = 0
    groups = []
    while value:
        groups.append(value % 10000)
        value //= 10000
    need_zero = False
    for index in range(len(groups) - 1, -1, -1):
        group = groups[index]
        if group == 0:
            need_zero = bool(parts)
            continue
        if parts and (need_zero or group < 1000):
            parts.append("零")
        need_zero = False
        word = _group(group, liang and index == 0 and len(groups) == 1)
        if group == 2 and index > 0:
            word = "两"  # 两万, 两亿
        parts.append(word + units[index])
    text = "".join(parts)
    if text.startswith("一十"):
        text = text[1:]  # 十五, 十万, not 一十五
    return text


def _number(text: str, *, liang: bool = False) -> str:
    """Read a written number (whole or decimal, maybe with thousands commas)."""
    text = text.replace(",", "")
    whole, _, fraction = text.partition(".")
    if whole in _SPOKEN_AS_DIGITS and not fraction:
        return _SPOKEN_AS_DIGITS[whole]
    if len(whole) > 1 and whole.startswith("0") or len(whole) > 12:
        spoken = _digits(whole)  # 0755, long codes: digit by digit
    else:
        spoken = cardinal(int(whole), liang=liang and not fraction)
    if fraction:
        spoken += "点" + _digits(fraction)
    return spoken


def _before_measure(rest: str) -> bool:
    return any(rest.startswith(word) for word in _MEASURE_WORDS)


def _time(hour: str, minute: str, second: str | None) -> str | None:
    h, m = int(hour), int(minute)
    if h > 24 or m > 59 or (second is not None and int(second) > 59):
        return None
    spoken = ("两" if h == 2 else cardinal(h)) + "点"
    if m:
        spoken += ("零" if m < 10 else "") + cardinal(m) + "分"
    if second is not None and int(second):
        spoken += ("零" if int(second) < 10 else "") + cardinal(int(second)) + "秒"
    return spoken


def _date(year: str | None, month: str | None, day: str | None, day_word: str = "日") -> str:
    spoken = ""
    if year:
        spoken += _digits(year) + "年"
    if month:
        spoken += cardinal(int(month)) + "月"
    if day:
        spoken += cardinal(int(day)) + day_word
    return spoken


_NUM = r"\d+(?:,\d{3})*(?:\.\d+)?"
_PHONE = re.compile(
    r"(?<![\d.])(?:\+?86[ -]?)?"
    r"(1[3-9]\d[ -]?\d{4}[ -]?\d{4}|0\d{2,3}[ -]\d{7,8}|400[ -]?\d{3}[ -]?\d{4})(?![\d.])"
)
_DATE_FULL = re.compile(
    r"(?<!\d)(\d{4})(?:年(\d{1,2})月(\d{1,2})([日号])?|([-/.])(\d{1,2})\5(\d{1,2}))(?![\d.])"
)
_YEAR_MONTH = re.compile(r"(?<!\d)([12]\d{3})年(?:(\d{1,2})月)?")
_MONTH_DAY = re.compile(r"(?<![\d.])(\d{1,2})月(\d{1,2})([日号])")
_TIME = r"(\d{1,2}):(\d{2})(?::(\d{2}))?"
_TIME_RANGE = re.compile(rf"(?<!\d)(?<!\d:){_TIME}{_RANGE}{_TIME}(?!\d|:\d)")
_TIME_ONE = re.compile(rf"(?<!\d)(?<!\d:){_TIME}(?!\d|:\d)")
_MONEY = re.compile(rf"[¥]\s*({_NUM})(\s*元)?")
_PERCENT_RANGE = re.compile(rf"(?<![\d.])({_NUM})%?{_RANGE}({_NUM})%")
_PERCENT = re.compile(rf"(?<![\d.])({_NUM})\s*%")
_ORDINAL = re.compile(r"第\s*(\d+)")
_RANGE_NUMBERS = re.compile(rf"(?<![\d.:-])({_NUM})(?:-|~|–|—)({_NUM})(?![\d.:])")
_DIALLED = re.compile(
    r"((?:拨打|致电|电话|热线|号码|手机|分机|座机|打给)(?:号码?|是|为){0,2}[：:]?\s*)"
    r"(\d{3,}(?:[ -]\d{3,})*)"
)
_CODE = re.compile(r"((?:验证码|编号|工号|订单号|邮编|尾号|代码)(?:是|为)?[：:]?\s*)(\d{2,})")
_LONG_DIGITS = re.compile(r"(?<![\d.])\d{9,}(?![\d.])")
_NUMBER = re.compile(_NUM)


def _valid_date(month: str | None, day: str | None) -> bool:
    return (month is None or 1 <= int(month) <= 12) and (day is None or 1 <= int(day) <= 31)


def _full_date(match: re.Match) -> str:
    year, month, day, day_word = match.group(1), match.group(2), match.group(3), match.group(4)
    if month is None:
        month, day = match.group(6), match.group(7)
    if not _valid_date(month, day):
        return match.group(0)
    return _date(year, month, day, day_word or "日")


def _phone(match: re.Match) -> str:
    number = match.group(1)
    if re.fullmatch(r"1\d{10}", number):
        number = f"{number[:3]} {number[3:7]} {number[7:]}"  # a mobile number, said 3-4-4
    return _digits(number, _PHONE_DIGITS)


def _time_range(match: re.Match) -> str:
    start, end = _time(*match.group(1, 2, 3)), _time(*match.group(4, 5, 6))
    if start is None or end is None:
        return match.group(0)
    return f"{start}到{end}"


def _one_time(match: re.Match) -> str:
    return _time(*match.group(1, 2, 3)) or match.group(0)


def _numbers_in_range(match: re.Match) -> str:
    liang = _before_measure(match.string[match.end() :])
    return f"{_number(match.group(1), liang=liang)}到{_number(match.group(2), liang=liang)}"


def _plain_number(match: re.Match) -> str:
    return _number(match.group(0), liang=_before_measure(match.string[match.end() :]))


def is_chinese(language: str) -> bool:
    """Tell whether a script language is Chinese (``zh``, ``zh-CN``, ``cmn``...)."""
    base = language.strip().replace("_", "-").split("-")[0].lower()
    return base in ("zh", "cmn", "yue")


def normalize_zh(text: str) -> str:
    """Write out the digits of Chinese text as they are read aloud (see the module's table)."""
    if not any(ch.isdigit() for ch in text):
        return text
    text = _FULL_WIDTH_COLON.sub(":", text.translate(_FULL_WIDTH))
    text = _PHONE.sub(_phone, text)
    text = _DIALLED.sub(lambda m: m.group(1) + _digits(m.group(2), _PHONE_DIGITS), text)
    text = _CODE.sub(lambda m: m.group(1) + _digits(m.group(2)), text)
    text = _DATE_FULL.sub(_full_date, text)
    text = _YEAR_MONTH.sub(
        lambda m: (
            _date(m.group(1), m.group(2), None) if _valid_date(m.group(2), None) else m.group(0)
        ),
        text,
    )
    text = _MONTH_DAY.sub(
        lambda m: (
            _date(None, m.group(1), m.group(2), m.group(3))
            if _valid_date(m.group(1), m.group(2))
            else m.group(0)
        ),
        text,
    )
    text = _TIME_RANGE.sub(_time_range, text)
    text = _TIME_ONE.sub(_one_time, text)
    text = _MONEY.sub(lambda m: _number(m.group(1)) + "元", text)
    text = _PERCENT_RANGE.sub(
        lambda m: f"百分之{_number(m.group(1))}到百分之{_number(m.group(2))}", text
    )
    text = _PERCENT.sub(lambda m: "百分之" + _number(m.group(1)), text)
    text = _ORDINAL.sub(lambda m: "第" + _number(m.group(1)), text)
    text = _LONG_DIGITS.sub(lambda m: _digits(m.group(0)), text)
    text = _RANGE_NUMBERS.sub(_numbers_in_range, text)
    return _NUMBER.sub(_plain_number, text)


def speech_text(text: str, language: str) -> str:
    """Return the text a TTS engine should speak: Chinese normalised, any other unchanged."""
    return normalize_zh(text) if is_chinese(language) else text
