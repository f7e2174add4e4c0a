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
    "monitor_catalogue",
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
        # the live monitor: what it shows about one call (its page chrome stays English)
        "monitor_unknown_candidate": "Unknown candidate",
        "monitor_follow_up": "{position} (follow-up)",
        "monitor_question_n": "question {n}",
        "monitor_questions": "Questions",
        "monitor_scores": "Scores",
        "monitor_transcript": "Transcript",
        "monitor_timeline": "Timeline",
        "monitor_voice": "Candidate\u2019s voice",
        "monitor_voice_note": (
            "Descriptive measures of the audio only (rate, pitch, loudness, pauses): not a "
            "judgement of the candidate, their emotions or their personality, and not used for "
            "scoring."
        ),
        "monitor_chart_label": (
            "Loudness and pitch of the candidate\u2019s voice over the last 60 seconds"
        ),
        "monitor_chart_loudness": "loudness (dBFS)",
        "monitor_chart_pitch": "pitch (Hz)",
        "monitor_chart_window": "last 60 s",
        "monitor_meter_rate": "Speech rate",
        "monitor_meter_pitch": "Pitch",
        "monitor_meter_loudness": "Loudness",
        "monitor_meter_pauses": "Pauses",
        "monitor_speaking": "candidate speaking\u2026",
        "monitor_scores_running": "running scores \u2014 provisional, for human review",
        "monitor_scores_final": "scores \u2014 a suggestion for human review, never a decision",
        "monitor_scoring": "scoring in progress\u2026",
        "monitor_no_scores": "no scores",
        "monitor_overall": "Overall {score} / 100",
        "monitor_so_far": "So far (answered competencies) {score} / 100",
        "monitor_suggestion": "suggestion: {label}",
        "monitor_competency": "competency: {name}",
        "monitor_no_transcript": "No transcript.",
        "monitor_cut_off": "cut off",
        "monitor_no_recording": "No recording",
        "monitor_report": "Report",
        "monitor_connecting": "connecting\u2026",
        "monitor_loading": "loading\u2026",
        "monitor_retrying": "connection lost \u00b7 retrying in {secs} s",
        "monitor_call_started": "call started",
        "monitor_call_ended": "call ended",
        "monitor_call_ended_reason": "call ended ({reason})",
        "monitor_response": "response {secs} s",
        "monitor_barge_in": "barge-in",
        "monitor_barge_in_at": "barge-in at {secs} s",
        "monitor_barge_in_cut": "{text} (cut {prompts})",
        "monitor_cut_after": "{prompt} after {secs} s",
        "monitor_consent_granted": "consent granted",
        "monitor_consent_declined": "consent declined",
        "monitor_via": " ({via})",
        "monitor_via_dtmf": "keypad",
        "monitor_via_voice": "voice",
        "monitor_knockout": "knock-out {question}: {result}",
        "monitor_knockout_passed": "passed",
        "monitor_knockout_not_passed": "not passed",
        "monitor_knockout_answer": " (answer: {answer})",
        "monitor_opt_out": "opt-out",
        "monitor_opt_out_via": "opt-out via {via}",
        "monitor_skipped": "question skipped: {question}",
        "monitor_repeat": "repeat requested: {question}",
        "monitor_answered": "answered {question}",
        "monitor_answered_follow_up": " (follow-up)",
        "monitor_answered_keypad": " by keypad",
        "monitor_answer_voice": "answer voice: {text}",
        "monitor_rate": "{value} {unit}",
        "monitor_articulation": "articulation {value} {unit}",
        "monitor_pause_ratio": "pauses {value}%",
        "monitor_pause_count": "{value} pauses",
        "monitor_mean_pause": "mean pause {value} s",
        "monitor_pitch": "pitch {value} Hz",
        "monitor_pitch_range": "range {value} st",
        "monitor_loudness": "{value} dBFS",
        "monitor_fillers": "{value} fillers",
        "monitor_words": "{value} words",
        "monitor_seconds": "{value} s",
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
        # the live monitor (see the English keys)
        "code_connecting": "连接中",
        "code_not_started": "未开始",
        "code_consent": "征求同意",
        "code_question": "提问中",
        "code_ended": "已结束",
        "code_pending": "待通话",
        "code_in_progress": "通话中",
        "code_scoring": "评分中",
        "code_declined": "拒绝同意",
        "code_incomplete": "未完成",
        "code_failed": "失败",
        "code_stream_closed": "通话中断",
        "code_server_shutdown": "服务器关闭中断",
        "monitor_unknown_candidate": "未知候选人",
        "monitor_follow_up": "{position}（追问）",
        "monitor_question_n": "第 {n} 题",
        "monitor_questions": "问题",
        "monitor_scores": "评分",
        "monitor_transcript": "通话记录",
        "monitor_timeline": "时间线",
        "monitor_voice": "候选人的声音",
        "monitor_voice_note": (
            "只描述声音本身（语速、音高、音量、停顿）：不评判候选人，不推断其情绪或性格，也不用于评分。"
        ),
        "monitor_chart_label": "候选人最近 60 秒声音的音量和音高",
        "monitor_chart_loudness": "音量（dBFS）",
        "monitor_chart_pitch": "音高（Hz）",
        "monitor_chart_window": "最近 60 秒",
        "monitor_meter_rate": "语速",
        "monitor_meter_pitch": "音高",
        "monitor_meter_loudness": "音量",
        "monitor_meter_pauses": "停顿",
        "monitor_speaking": "候选人正在说话\u2026",
        "monitor_scores_running": "实时评分——暂定，供人工复核",
        "monitor_scores_final": "评分——供人工复核的建议，不是决定",
        "monitor_scoring": "正在评分\u2026",
        "monitor_no_scores": "没有评分",
        "monitor_overall": "总分 {score} / 100",
        "monitor_so_far": "目前（已作答的能力项）{score} / 100",
        "monitor_suggestion": "建议：{label}",
        "monitor_competency": "能力项：{name}",
        "monitor_no_transcript": "没有通话记录。",
        "monitor_cut_off": "被打断",
        "monitor_no_recording": "没有录音",
        "monitor_report": "面试报告",
        "monitor_connecting": "连接中\u2026",
        "monitor_loading": "加载中\u2026",
        "monitor_retrying": "连接断开 \u00b7 {secs} 秒后重试",
        "monitor_call_started": "通话开始",
        "monitor_call_ended": "通话结束",
        "monitor_call_ended_reason": "通话结束（{reason}）",
        "monitor_response": "响应 {secs} 秒",
        "monitor_barge_in": "候选人插话",
        "monitor_barge_in_at": "候选人在 {secs} 秒插话",
        "monitor_barge_in_cut": "{text}（打断了 {prompts}）",
        "monitor_cut_after": "{prompt}（播放 {secs} 秒后）",
        "monitor_consent_granted": "同意继续",
        "monitor_consent_declined": "不同意继续",
        "monitor_via": "（{via}）",
        "monitor_via_dtmf": "按键",
        "monitor_via_voice": "语音",
        "monitor_knockout": "淘汰题 {question}：{result}",
        "monitor_knockout_passed": "通过",
        "monitor_knockout_not_passed": "未通过",
        "monitor_knockout_answer": "（回答：{answer}）",
        "monitor_opt_out": "要求不再来电",
        "monitor_opt_out_via": "要求不再来电（{via}）",
        "monitor_skipped": "跳过问题：{question}",
        "monitor_repeat": "要求重复：{question}",
        "monitor_answered": "已回答 {question}",
        "monitor_answered_follow_up": "（追问）",
        "monitor_answered_keypad": "（按键）",
        "monitor_answer_voice": "回答的声音：{text}",
        "monitor_rate": "{value} {unit}",
        "monitor_articulation": "发音速率 {value} {unit}",
        "monitor_pause_ratio": "停顿占比 {value}%",
        "monitor_pause_count": "停顿 {value} 次",
        "monitor_mean_pause": "平均停顿 {value} 秒",
        "monitor_pitch": "音高 {value} Hz",
        "monitor_pitch_range": "音域 {value} 半音",
        "monitor_loudness": "音量 {value} dBFS",
        "monitor_fillers": "填充词（嗯/那个/就是）{value} 个",
        "monitor_words": "{value} 字",
        "monitor_seconds": "{value} 秒",
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


MONITOR_SHARED_KEYS = (
    "transcript_bot",
    "transcript_candidate",
    "unit_wpm",
    "unit_cpm",
    "recommendation_advance",
    "recommendation_hold",
    "recommendation_reject",
)
"""Keys of the report the live monitor shows too (speaker labels as the HR bridge writes them)."""


def monitor_catalogue() -> dict[str, dict[str, str]]:
    """The live monitor's words, per language: what it shows about a call in the call's language.

    The ``monitor_*`` keys, the codes' labels (``code_*``: statuses, end reasons, script states;
    English shows the code itself) and :data:`MONITOR_SHARED_KEYS`. Fields are ``{name}``.
    """
    return {
        language: {
            key: text
            for key, text in texts.items()
            if key.startswith(("monitor_", "code_")) or key in MONITOR_SHARED_KEYS
        }
        for language, texts in CATALOGUE.items()
    }


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
