"""With ``VOICEBOT_ASR_PROMPT``, a call's answers reach the recogniser with the question asked
and its keywords as the decoder prompt (off by default).

Uses the fakes of ``test_session`` (energy VAD, scripted ASR, tone prompts): what is checked is
what the session hands the ASR pool, not what Whisper makes of it (``loadtest/zh_asr_bench.py``).
"""

from voicebot.dialogue.script import Competency, JobScript, Question, RubricLevel
from voicebot.speech.asr import FINALS, Priority

from .test_session import SCRIPT, ScriptedASR, _services, make_call

ZH_SCRIPT = JobScript(
    id="zh_job",
    title="普工",
    language="zh",
    greeting="您好，我是AI助手，本次通话会录音。",
    consent_question="您同意吗？",
    consent_declined="好的，再见。",
    consent_unclear="请说同意或不同意。",
    competencies=[
        Competency(
            id="attendance",
            name="出勤",
            weight=1,
            keywords=["准时", "两班倒"],
            rubric=[
                RubricLevel(score=40, description="没有例子"),
                RubricLevel(score=90, description="有例子", evidence=["交接班"]),
            ],
        )
    ],
    questions=[
        Question(id="q1", prompt="您怎么保证每天上班不耽误？", competency="attendance"),
        Question(id="q2", prompt="您能来厂里面试吗？"),
    ],
    closing="谢谢，再见。",
    reprompt="您还在吗？",
    no_response_goodbye="我们稍后再联系您，再见。",
    silence_timeout_secs=0.4,
    max_reprompts=1,
)


class PromptRecordingASR(ScriptedASR):
    """Scripted words; remembers the prompt of every final request."""

    def __init__(self, texts):
        super().__init__(texts)
        self.languages = frozenset({"en", "zh"})
        self.prompts: list[str | None] = []

    async def transcribe(self, audio, language, priority=Priority.FINAL, *, prompt=None, **kw):
        if priority in FINALS:
            self.prompts.append(prompt)
        return await super().transcribe(audio, language, priority, **kw)


async def _answer_both(services, job_id: str, texts=("同意", "我每天提前到", "可以")):
    asr = PromptRecordingASR(texts)
    call = await make_call(services, [], job_id=job_id, asr=asr)
    await call.wait_for_mark("consent:await")
    await call.speak(0.4)
    await call.wait_for_mark("q:q1:await")
    await call.speak(0.8)
    await call.wait_for_mark("q:q2:await")
    await call.speak(0.8)
    await call.run_out()
    return asr


async def test_a_chinese_answer_is_recognised_with_its_question_and_keywords(tmp_path):
    async with _services(tmp_path, asr_prompt="zh=question+keywords") as services:
        services.scripts = {ZH_SCRIPT.id: ZH_SCRIPT}
        asr = await _answer_both(services, ZH_SCRIPT.id)
    consent, answer, closed = asr.prompts
    assert consent is None  # nothing is known about a consent answer
    assert answer == "您怎么保证每天上班不耽误？准时、两班倒、交接班。"
    assert closed == "您能来厂里面试吗？"  # no competency: the question alone


async def test_no_prompt_by_default_nor_with_none(tmp_path):
    # the default: the tuning table showed no reliable gain (docs/PERFORMANCE.md)
    for setting in ({}, {"asr_prompt": "zh=none"}):
        async with _services(tmp_path / str(len(setting)), **setting) as services:
            services.scripts = {ZH_SCRIPT.id: ZH_SCRIPT}
            asr = await _answer_both(services, ZH_SCRIPT.id)
        assert asr.prompts == [None, None, None]


async def test_a_chinese_prompt_setting_leaves_english_answers_alone(tmp_path):
    async with _services(tmp_path, asr_prompt="zh=question+keywords") as services:
        asr = await _answer_both(services, SCRIPT.id, ("yes I agree", "first", "second"))
    assert asr.prompts == [None, None, None]
