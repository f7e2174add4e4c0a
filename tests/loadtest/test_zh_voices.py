"""The Chinese voice evaluation's prompts and its character error count."""

from __future__ import annotations

import re

from loadtest.zh_voices import character_errors, chinese_prompts


def test_the_prompts_are_the_chinese_scripts_own_as_spoken():
    prompts = chinese_prompts()
    ids = [ident for ident, _ in prompts]
    assert len(prompts) >= 40 and len(set(ids)) == len(ids)
    assert {ident.split(":")[0] for ident in ids} >= {"customer_service_zh", "workshop_operator_zh"}
    texts = [text for _, text in prompts]
    assert len(set(texts)) == len(texts)  # each distinct prompt once
    assert not any(re.search(r"[0-9]", text) for text in texts)  # digits as spoken: "按一"
    assert chinese_prompts(limit=3) == prompts[:3]


def test_character_errors_count_characters_not_punctuation_nor_script():
    assert character_errors("您好，世界。", "您好世界") == (0, 4)
    assert character_errors("时间", "時間") == (0, 2)  # Whisper's Traditional is no error
    assert character_errors("按一", "按你") == (1, 2)
    assert character_errors("再见", "") == (2, 2)
