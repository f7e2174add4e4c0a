"""The report's words for people, per language: scoring reasons, the report and its page.

Everything a recruiter or a candidate reads in an interview report (the scoring reasons, the
prosody note, the report page's headings and labels, the transcript text the HR bridge sends)
comes from :data:`CATALOGUE`, in the job script's ``language``: Simplified Chinese for ``"zh"``,
English otherwise. Machine-readable codes (recommendations, end reasons, field names, ids) stay as
they are in every language.

:func:`simplified` converts the person-readable strings of a Chinese report to Simplified
characters (a script or an answer may hold Traditional ones).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "CATALOGUE",
    "catalogue_language",
    "code_label",
    "message",
    "quoted_list",
    "simplified",
]

CATALOGUE: dict[str, dict[str, str]] = {
    "en": {
        # scoring reasons
        "competency_unanswered": "{name}: no answer to {questions}, so it scores 0.",
        "competency_score": "{name}: {value}/100, rubric level {level} (\u201c{description}\u201d)",
        "competency_evidence": " from the evidence {items}",
        "competency_bonus": (
            "; +{bonus} for keywords ({found} found) and answer structure ({structure}/100)"
        ),
        "competency_pinyin": "; {items} matched by sound only (pinyin), check the quotes",
        "competency_incomplete": "; answers {percent}% complete",
        "competency_missing": " (no answer to {items})",
        "sentence_end": ".",
        "competency_unscored": (
            "{name}: no question of the script scores it; left out of the overall score."
        ),
        "no_competency": "The script scores no competency: no overall score; a recruiter decides.",
        "overall_advance": (
            "Overall {overall} (weighted mean of the competency scores) is at or above the "
            "advance threshold {advance}: advance."
        ),
        "overall_hold": (
            "Overall {overall} (weighted mean of the competency scores) is below the advance "
            "threshold {advance} and at or above the hold threshold {hold}: hold."
        ),
        "overall_reject": (
            "Overall {overall} (weighted mean of the competency scores) is below the hold "
            "threshold {hold}: reject."
        ),
        "knockout_failed": (
            "Knock-out question \u2018{question}\u2019 failed: the job needs"
            " \u2018{expected}\u2019, the answer was \u2018{answer}\u2019. Recommendation: reject."
        ),
        "knockout_unclear": (
            "Knock-out question \u2018{question}\u2019 was answered unclearly: the recommendation"
            " is at most hold until a recruiter checks the answer."
        ),
        "human_review": "A recruiter reviews this interview before any decision is made.",
        "fluency_no_data": (
            "Prosody counts for this job (prosody_in_recommendation), but no speech rate or "
            "pause measurement was available: no fluency adjustment."
        ),
        "fluency_pause": "pause ratio {ratio} ({points})",
        "fluency_rate": "speech rate {rate} {unit} ({points})",
        "fluency": (
            "Fluency adjustment {total} points to the overall score, because this job script "
            "opts in to prosody (prosody_in_recommendation): {parts}. "
            "It reflects fluency only, not emotion or personality."
        ),
        "unit_wpm": "wpm",
        "unit_cpm": "cpm",
        # report
        "prosody_note": (
            "Speech rate, pauses, pitch and loudness describe how the answers were spoken. "
            "They are not used in the recommendation{exception} and are no measure of emotion "
            "or personality."
        ),
        "prosody_note_exception": " except as the script's documented fluency adjustment",
        # report page
        "page_title": "Interview report: {name}",
        "interview": "interview",
        "recommendation_advance": "Advance",
        "recommendation_hold": "Hold",
        "recommendation_reject": "Do not advance",
        "overall": "Overall",
        "review_notice": (
            "<b>Suggestion for human review.</b> The AI interviewer's score is not a decision: "
            "read the evidence and listen to the recording before deciding."
        ),
        "outcome_consent": "Outcome of the call: {outcome}. Consent: {consent}.",
        "opted_out": (
            "<b>The candidate asked not to be called again.</b> Honour this in the HR system."
        ),
        "knockouts_heading": "Knock-out questions",
        "competencies_heading": "Competencies",
        "no_competencies": "No competencies scored.",
        "answers_heading": "Answers",
        "prosody_heading": "How the answers were spoken (descriptive)",
        "recordings_heading": "Recordings",
        "no_recording": "No recording.",
        "recording_of_call": "Recording of call {call_sid}",
        "transcript_heading": "Transcript",
        "feedback_heading": "Message for the candidate",
        "no_evidence": "No evidence in the answers.",
        "weight": "weight",
        "keywords": "Keywords:",
        "by_sound": "matched by sound only (pinyin): check the quote",
        "pinyin": "pinyin",
        "structure": "Structure:",
        "completeness": "Completeness {percent}%",
        "skipped": "No answer (skipped after silence)",
        "not_answered": "Not asked or not answered",
        "keypad": "keypad",
        "follow_up": "Follow-up:",
        "knockout_passed": "Knock-out passed",
        "knockout_failed_short": "Knock-out FAILED",
        "knockout_unclear_short": "Knock-out unclear",
        "knockout_detail": "needs {expected}, answered {answer}",
        "passed": "passed",
        "failed": "failed",
        "unclear": "unclear",
        "pauses": "pauses",
        "no_speech": "No speech to describe.",
        "speech_rate": "Speech rate",
        "pause_ratio": "Pause ratio",
        "mean_pause": "Mean pause",
        "pitch_median": "Pitch median",
        "pitch_range": "Pitch range",
        "loudness": "Loudness",
        "fillers": "Fillers",
        "semitones": "semitones",
        "bot": "Bot",
        "candidate": "Candidate",
        # transcript text for the HR system
        "transcript_line": "{who}: {text}",
        "transcript_bot": "Interviewer (AI)",
        "transcript_candidate": "Candidate",
    },
    "zh": {
        "competency_unanswered": "{name}：{questions} 未作答，得 0 分。",
        "competency_score": (
            "{name}：{value}/100，评分标准等级 {level}（\u201c{description}\u201d）"
        ),
        "competency_evidence": "，依据 {items}",
        "competency_bonus": "；关键词（命中 {found} 个）和回答结构（{structure}/100）加 {bonus} 分",
        "competency_pinyin": "；{items} 仅按读音（拼音）匹配，请核对原话",
        "competency_incomplete": "；回答完整度 {percent}%",
        "competency_missing": "（{items} 未作答）",
        "sentence_end": "。",
        "competency_unscored": "{name}：脚本中没有问题考察这项能力，不计入总分。",
        "no_competency": "脚本没有评分的能力项：没有总分，由招聘专员决定。",
        "overall_advance": (
            "总分 {overall}（各能力得分的加权平均）达到晋级线 {advance}：建议进入下一轮。"
        ),
        "overall_hold": (
            "总分 {overall}（各能力得分的加权平均）低于晋级线 {advance}，"
            "达到待定线 {hold}：建议待定。"
        ),
        "overall_reject": "总分 {overall}（各能力得分的加权平均）低于待定线 {hold}：不建议录用。",
        "knockout_failed": (
            "淘汰题\u201c{question}\u201d未通过：岗位要求\u201c{expected}\u201d，"
            "回答是\u201c{answer}\u201d。建议：不录用。"
        ),
        "knockout_unclear": (
            "淘汰题\u201c{question}\u201d回答不明确：在招聘专员核实回答之前，建议最多为待定。"
        ),
        "human_review": "在做出任何决定之前，招聘专员会复核这次面试。",
        "fluency_no_data": (
            "本岗位的评分计入语音表现（prosody_in_recommendation），"
            "但没有语速或停顿数据：不做流利度调整。"
        ),
        "fluency_pause": "停顿占比 {ratio}（{points}）",
        "fluency_rate": "语速 {rate} {unit}（{points}）",
        "fluency": (
            "总分的流利度调整为 {total} 分，因为本岗位脚本选择计入语音表现"
            "（prosody_in_recommendation）：{parts}。它只反映流利度，不反映情绪或性格。"
        ),
        "unit_wpm": "词/分钟",
        "unit_cpm": "字/分钟",
        "prosody_note": (
            "语速、停顿、音高和音量描述回答是怎样说出来的。"
            "它们{exception}不用于推荐结论，也不衡量情绪或性格。"
        ),
        "prosody_note_exception": "除脚本写明的流利度调整外",
        "page_title": "面试报告：{name}",
        "interview": "面试",
        "recommendation_advance": "建议进入下一轮",
        "recommendation_hold": "待定",
        "recommendation_reject": "不建议录用",
        "overall": "总分",
        "review_notice": (
            "<b>供人工复核的建议。</b>AI 面试官的评分不是决定：请先阅读依据、收听录音，再做决定。"
        ),
        "outcome_consent": "通话结果：{outcome}。同意：{consent}。",
        "opted_out": "<b>候选人要求不再来电。</b>请在 HR 系统中遵照执行。",
        "knockouts_heading": "淘汰题",
        "competencies_heading": "能力评分",
        "no_competencies": "没有评分的能力项。",
        "answers_heading": "回答",
        "prosody_heading": "回答的说话方式（仅作描述）",
        "recordings_heading": "录音",
        "no_recording": "没有录音。",
        "recording_of_call": "通话 {call_sid} 的录音",
        "transcript_heading": "通话记录",
        "feedback_heading": "给候选人的话",
        "no_evidence": "回答中没有找到依据。",
        "weight": "权重",
        "keywords": "关键词：",
        "by_sound": "仅按读音（拼音）匹配：请核对原话",
        "pinyin": "拼音",
        "structure": "结构：",
        "completeness": "完整度 {percent}%",
        "skipped": "未作答（沉默后跳过）",
        "not_answered": "未提问或未作答",
        "keypad": "按键",
        "follow_up": "追问：",
        "knockout_passed": "淘汰题通过",
        "knockout_failed_short": "淘汰题未通过",
        "knockout_unclear_short": "淘汰题回答不明确",
        "knockout_detail": "要求 {expected}，回答 {answer}",
        "passed": "通过",
        "failed": "未通过",
        "unclear": "不明确",
        "pauses": "停顿",
        "no_speech": "没有可描述的语音。",
        "speech_rate": "语速",
        "pause_ratio": "停顿占比",
        "mean_pause": "平均停顿",
        "pitch_median": "音高中位数",
        "pitch_range": "音高范围",
        "loudness": "音量",
        "fillers": "语气填充词",
        "semitones": "半音",
        "bot": "机器人",
        "candidate": "候选人",
        "transcript_line": "{who}：{text}",
        "transcript_bot": "面试官（AI）",
        "transcript_candidate": "候选人",
        # codes shown on the page (English shows the codes themselves)
        "code_completed": "完成",
        "code_consent_declined": "拒绝同意",
        "code_no_response": "无应答",
        "code_caller_hangup": "候选人挂断",
        "code_knocked_out": "淘汰题未通过",
        "code_opted_out": "要求不再来电",
        "code_server_restart": "服务器重启中断",
        "code_stream_lost": "通话中断",
        "code_True": "同意",
        "code_False": "不同意",
        "code_None": "未回答",
        "code_yes": "是",
        "code_no": "否",
        "code_unclear": "不明确",
    },
}
"""Message key -> text, per language (``str.format`` fields in braces)."""


def catalogue_language(language: str | None) -> str:
    """The catalogue's language for a job script's ``language`` (``"zh-CN"`` counts as ``"zh"``)."""
    base = (language or "").split("-")[0].split("_")[0].lower()
    return base if base in CATALOGUE else "en"


def message(language: str | None, key: str, **fields: Any) -> str:
    """The text of ``key`` in ``language`` with ``fields`` filled in."""
    return CATALOGUE[catalogue_language(language)][key].format(**fields)


def code_label(language: str | None, code: Any) -> str:
    """How a machine-readable code (an end reason, consent) reads in ``language``.

    English shows the code itself; a code the catalogue lacks is shown as it is.
    """
    texts = CATALOGUE[catalogue_language(language)]
    return texts.get(f"code_{code}", str(code))


def quoted_list(language: str | None, items: Sequence[str]) -> str:
    """``items`` quoted and listed: ‘a’, ‘b’ (English); “a”、“b” (Chinese)."""
    if catalogue_language(language) == "zh":
        return "\u3001".join(f"\u201c{item}\u201d" for item in items)
    return ", ".join(f"\u2018{item}\u2019" for item in items)


_CODE_KEYS = frozenset(
    {
        "recommendation",
        "outcome",
        "end_reason",
        "speaker",
        "via",
        "rate_unit",
        "language",
        "timezone",
        "expected",
        "questions",
    }
)
"""Keys whose string values are machine-readable codes, never converted."""


def simplified(value: Any) -> Any:
    """``value`` (JSON) with its person-readable strings in Simplified Chinese.

    Dictionary keys, ids (keys ending in ``id``/``sid``) and codes stay as they are.
    """
    from voicebot.dialogue.text import to_simplified

    def convert(item: Any, key: str = "") -> Any:
        if isinstance(item, str):
            if key in _CODE_KEYS or key.endswith(("id", "sid", "_ids")):
                return item
            return to_simplified(item)
        if isinstance(item, dict):
            return {k: convert(v, str(k)) for k, v in item.items()}
        if isinstance(item, list | tuple):
            return [convert(v, key) for v in item]
        return item

    return convert(value)
