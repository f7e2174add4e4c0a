"""Job scripts: the YAML file that says what the bot says in one job's phone screen.

A job script (``dialogues/<job>.yaml``) holds the AI/recording disclosure, the consent question
and its answers, the interview questions in order, and the texts for silence and the end of the
call. This module validates a script into a :class:`JobScript` and, when a file is wrong, raises a
:class:`ScriptError` that names the file, the field (``questions[2].prompt``), the line and how to
fix it.

The models are pydantic v2 with ``extra="forbid"``, so a misspelt key is an error rather than a
silently ignored setting; later versions grow them with new optional fields (competencies, scoring,
follow-ups, knock-outs) without breaking existing scripts.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

SLUG_PATTERN = r"^[a-z0-9]+(?:[-_][a-z0-9]+)*$"
"""Ids of scripts and questions: lower-case letters and digits, words joined by ``-`` or ``_``."""

PromptId = str
"""Stable name of one fixed prompt (``"greeting"``, ``"q:experience"``); see ``prompt_texts``."""

GREETING_PROMPT = "greeting"
CONSENT_PROMPT = "consent"
CONSENT_UNCLEAR_PROMPT = "consent_unclear"
CONSENT_DECLINED_PROMPT = "consent_declined"
REPROMPT_PROMPT = "reprompt"
CLOSING_PROMPT = "closing"
NO_RESPONSE_GOODBYE_PROMPT = "no_response_goodbye"
REPEAT_PROMPT = "repeat"
MOVE_ON_PROMPT = "move_on"
OPT_OUT_GOODBYE_PROMPT = "opt_out_goodbye"
KNOCKOUT_GOODBYE_PROMPT = "knockout_goodbye"
KNOCKOUT_UNCLEAR_PROMPT = "knockout_unclear"
TAKE_YOUR_TIME_PROMPT = "take_your_time"
WRAP_UP_PROMPT = "wrap_up"
VOICEMAIL_PROMPT = "voicemail"

Slug = Annotated[str, Field(pattern=SLUG_PATTERN)]
Text = Annotated[str, Field(min_length=1)]
Seconds = Annotated[float, Field(gt=0)]

# What the greeting must contain, per language: (words for "AI", words for "recorded").
_EN_AI_DISCLOSURE = re.compile(r"\bA\.?I\b|\bautomated\b|\bvirtual\b", re.IGNORECASE)
_EN_RECORDING_DISCLOSURE = re.compile(r"\brecord", re.IGNORECASE)
_ZH_AI_DISCLOSURE = re.compile(r"AI|人工智能|智能", re.IGNORECASE)
_ZH_RECORDING_DISCLOSURE = re.compile(r"录音|錄音")


# Texts a script may leave out: sensible defaults per language (a script can override each).
DEFAULT_TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "repeat_intro": "Sure, here it is again.",
        "move_on": "That's okay, let's move on.",
        "opt_out_goodbye": (
            "Understood. We won't call you again about this job. Thank you for your time. Goodbye."
        ),
        "knockout_goodbye": (
            "Thanks for being open. This role needs that, so we'll stop here. "
            "A recruiter will review your call. Goodbye."
        ),
        "knockout_unclear": "Sorry, I need a clear answer here: please say yes or no.",
        "take_your_time": "Take your time.",
        "wrap_up": "Thank you, that's very helpful. Let's go on.",
    },
    "zh": {
        "repeat_intro": "好的，我再说一遍。",
        "move_on": "没关系，我们看下一个问题。",
        "opt_out_goodbye": "明白了，我们不会再就这个职位给您打电话。感谢您的时间，再见。",
        "knockout_goodbye": (
            "谢谢您如实告诉我们。这个岗位需要这一点，今天就先到这里。招聘专员会查看通话，再见。"
        ),
        "knockout_unclear": "抱歉，这个问题需要您明确回答：请说“可以”或“不可以”。",
        "take_your_time": "不着急，您慢慢想。",
        "wrap_up": "谢谢，这些很有帮助。我们继续。",
    },
}


def question_prompt_id(question_id: str) -> PromptId:
    """Return the prompt id of a question's text: ``"q:<question_id>"``."""
    return f"q:{question_id}"


def follow_up_prompt_id(question_id: str) -> PromptId:
    """Return the prompt id of a question's follow-up: ``"f:<question_id>"``."""
    return f"f:{question_id}"


DtmfKey = Annotated[str, Field(pattern=r"^[0-9*#]$")]


class RubricLevel(BaseModel):
    """One level of a competency's rubric: the score it is worth and the evidence that earns it."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)

    score: int = Field(ge=0, le=100)
    """Score (0-100) an answer reaching this level earns."""
    description: Text
    """What an answer at this level shows, for the recruiter reading the report."""
    evidence: list[Text] = Field(default_factory=list)
    """Words or phrases (any of them, synonyms of the competency count too) that earn the level;
    empty for the lowest level, which every answer reaches."""
    min_matches: int = Field(default=1, ge=1)
    """How many different ``evidence`` items the answers must contain to reach the level."""


class Competency(BaseModel):
    """One competency of the job's competency model (岗位胜任力模型), scored 0-100."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)

    id: Slug
    """Stable id, unique in the script; questions name it in ``competency``."""
    name: Text
    """Name shown in the report."""
    weight: float = Field(gt=0)
    """Relative weight in the overall score (weights are normalised, they need not sum to 1)."""
    description: str = ""
    """What the competency means for this job, for the recruiter."""
    keywords: list[Text] = Field(default_factory=list)
    """Words or phrases an answer showing this competency tends to contain."""
    synonyms: dict[str, list[Text]] = Field(default_factory=dict)
    """Other ways to say a keyword or evidence phrase: ``{keyword: [synonym, ...]}``."""
    rubric: list[RubricLevel] = Field(min_length=2)
    """The levels, from the lowest score to the highest."""
    improvement_tip: str = ""
    """Advice for the candidate when this competency scored low (in the thank-you text)."""

    @field_validator("rubric")
    @classmethod
    def _rubric_ascending(cls, rubric: list[RubricLevel]) -> list[RubricLevel]:
        for index in range(1, len(rubric)):
            if rubric[index].score <= rubric[index - 1].score:
                raise PydanticCustomError(
                    "rubric_order",
                    "rubric levels must go from the lowest score to the highest: level {index} "
                    "scores {score}, not more than the level before it ({previous})",
                    {
                        "index": index,
                        "score": rubric[index].score,
                        "previous": rubric[index - 1].score,
                        "at": (index, "score"),
                    },
                )
        if rubric[0].evidence:
            raise PydanticCustomError(
                "rubric_base_evidence",
                "the lowest rubric level is the one every answer reaches: it takes no evidence",
                {"at": (0, "evidence")},
            )
        return rubric


class FollowUp(BaseModel):
    """A second question asked once when the answer is too short or misses the evidence."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)

    prompt: Text
    """What the bot asks, e.g. "Could you give me a concrete example?"."""
    min_words: int = Field(default=12, ge=0)
    """Answers shorter than this (words; Chinese: segmented words) get the follow-up."""
    when_missing_evidence: bool = True
    """Also ask it when the answer hits none of the competency's keywords or evidence."""


class Knockout(BaseModel):
    """A yes/no requirement: the wrong answer ends the interview politely and is reported."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)

    expected: Literal["yes", "no"]
    """The answer the job needs."""
    goodbye: str = ""
    """Said when the answer is the other one; empty uses the script's ``knockout_goodbye``."""


class Question(BaseModel):
    """One interview question, asked in the order the script lists them."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)

    id: Slug
    """Stable id, unique in the script; answers and reports are keyed by it."""
    prompt: Text
    """What the bot says to ask the question."""
    competency: Slug | None = None
    """Id of the competency the answer is scored against; ``None``: not scored."""
    max_answer_secs: Seconds | None = None
    """Longest answer before the bot moves on; ``None`` uses the script's ``max_answer_secs``."""
    follow_up: FollowUp | None = None
    """Asked once when the answer is too short or misses the competency's evidence."""
    knockout: Knockout | None = None
    """Makes the question a yes/no requirement."""
    dtmf: dict[DtmfKey, Text] | None = None
    """Keypad answers: ``{"1": "yes", "2": "no"}``; a key press answers with its text."""
    answer: Literal["open", "closed"] | None = None
    """``closed``: a short answer is expected (yes/no, a number): a short complete answer ends
    the turn at once and pauses get the closed ceiling. ``None``: closed for knock-out and
    keypad questions, open otherwise (open answers allow longer thinking pauses)."""
    max_pause_secs: Seconds | None = None
    """Longest thinking pause inside an answer before the bot takes its turn whatever was said;
    ``None`` uses the server's ``VOICEBOT_TURN_OPEN_MAX_SILENCE_SECS`` or ``..._CLOSED_...``."""

    @property
    def answer_kind(self) -> Literal["open", "closed"]:
        """Whether the answer is expected to be open (talk) or closed (yes/no, a number)."""
        if self.answer is not None:
            return self.answer
        return "closed" if self.knockout is not None or self.dtmf is not None else "open"

    @property
    def depends_on_answer(self) -> bool:
        """Whether what the bot says next depends on the words of this question's answer."""
        return self.follow_up is not None or self.knockout is not None


class Thresholds(BaseModel):
    """Overall scores at which the recommendation is advance or hold (below hold: reject)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    advance: int = Field(default=70, ge=0, le=100)
    hold: int = Field(default=50, ge=0, le=100)


class JobScript(BaseModel):
    """A job's phone-screen script: disclosure, consent, questions and the end of the call."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)

    id: Slug
    """The job id the HR system and ``POST /api/interviews`` use."""
    title: Text
    """Job title, shown to recruiters."""
    department: Slug | None = None
    """The hiring department that owns the job: a department manager sees only its calls on the
    live monitor (admins see every job). ``None``: only admins see the job's calls."""
    language: Literal["en", "zh"]
    """Language of every prompt; also passed to speech recognition."""
    voice: str | None = None
    """TTS voice name; ``None`` picks the engine's default for the language."""
    greeting: Text
    """First words of the call: must say the caller talks to an AI and that the call is recorded."""
    consent_question: Text
    """Asks to continue; the candidate answers by voice or with the keypad (1 yes, 2 no)."""
    consent_declined: Text
    """Polite goodbye when the candidate refuses consent."""
    consent_unclear: Text
    """Asked once when the consent answer is neither yes nor no."""
    questions: list[Question] = Field(min_length=1)
    """The interview questions, in order."""
    closing: Text
    """Thanks and next steps, said after the last answer."""
    reprompt: Text
    """Said after silence, before the current question is repeated."""
    no_response_goodbye: Text
    """Goodbye when the candidate stays silent after the reprompts."""
    repeat_intro: Text = ""
    """Said before the question again when the candidate asks to hear it again."""
    move_on: Text = ""
    """Said when a question got no answer after the reprompts, before the next question."""
    opt_out_goodbye: Text = ""
    """Goodbye when the candidate asks to stop or not to be called again (an opt-out)."""
    knockout_goodbye: Text = ""
    """Default goodbye after a failed knock-out question."""
    knockout_unclear: Text = ""
    """Asked once when a knock-out answer is neither yes nor no."""
    voicemail: str = ""
    """Short message left after the beep when an answering machine takes an outbound call (no
    interview ever runs with a machine); empty: the bot hangs up without a message."""
    take_your_time: Text = ""
    """Said once per answer when the candidate asks for time to think ("let me think")."""
    wrap_up: Text = ""
    """Said when an answer runs past its time limit, before the next question."""
    competencies: list[Competency] = Field(default_factory=list)
    """The job's competency model; questions are scored against these."""
    thresholds: Thresholds = Thresholds()
    """Overall score needed for "advance" and for "hold"."""
    prosody_in_recommendation: bool = False
    """Let prosody (speech rate, pauses) weigh in the recommendation. Off by default: see
    dialogues/README.md (the EU AI Act prohibits emotion inference in recruitment)."""
    silence_timeout_secs: Seconds = 6.0
    """Silence after a prompt before the bot reprompts."""
    max_reprompts: int = Field(default=1, ge=0)
    """Reprompts in a row before the bot moves on to the next question."""
    max_skipped_questions: int = Field(default=1, ge=0)
    """Questions in a row left unanswered (silent) before ``no_response_goodbye`` ends the call."""
    max_answer_secs: Seconds = 90.0
    """Default longest answer for every question (and for the consent answer)."""
    recordings: dict[str, Text] = Field(default_factory=dict)
    """Recorded audio files played instead of synthesised speech, by prompt id (``greeting``,
    ``q:<question id>``, ``take_your_time``...; see :func:`prompt_texts`). WAV (or anything PyAV
    decodes); relative paths start at the script's folder (:func:`load_script` resolves them)."""

    @model_validator(mode="before")
    @classmethod
    def _default_texts(cls, data: Any) -> Any:
        language = data.get("language") if isinstance(data, dict) else None
        if isinstance(language, str) and language in DEFAULT_TEXTS:
            defaults = DEFAULT_TEXTS[data["language"]]
            data = {**data, **{k: v for k, v in defaults.items() if not data.get(k)}}
        return data

    @field_validator("greeting")
    @classmethod
    def _greeting_discloses_ai_and_recording(cls, greeting: str, info: ValidationInfo) -> str:
        language = info.data.get("language")
        if language == "zh":
            checks = (
                (
                    _ZH_AI_DISCLOSURE,
                    "that the caller is talking to an AI ('AI', '人工智能' or '智能')",
                ),
                (_ZH_RECORDING_DISCLOSURE, "that the call is recorded ('录音')"),
            )
        else:
            checks = (
                (
                    _EN_AI_DISCLOSURE,
                    "that the caller is talking to an AI ('AI', 'automated' or 'virtual')",
                ),
                (_EN_RECORDING_DISCLOSURE, "that the call is recorded ('recorded')"),
            )
        missing = [what for pattern, what in checks if not pattern.search(greeting)]
        if missing:
            raise PydanticCustomError(
                "greeting_disclosure",
                "the greeting must say {missing}",
                {"missing": " and ".join(missing)},
            )
        return greeting

    @field_validator("questions")
    @classmethod
    def _question_ids_unique(cls, questions: list[Question]) -> list[Question]:
        first_index: dict[str, int] = {}
        for index, question in enumerate(questions):
            if question.id in first_index:
                raise PydanticCustomError(
                    "duplicate_question_id",
                    "question id '{id}' is already used by questions[{first}]",
                    {"id": question.id, "first": first_index[question.id], "at": (index, "id")},
                )
            first_index[question.id] = index
        return questions

    @field_validator("competencies")
    @classmethod
    def _competency_ids_unique(cls, competencies: list[Competency]) -> list[Competency]:
        seen: dict[str, int] = {}
        for index, competency in enumerate(competencies):
            if competency.id in seen:
                raise PydanticCustomError(
                    "duplicate_competency_id",
                    "competency id '{id}' is already used by competencies[{first}]",
                    {"id": competency.id, "first": seen[competency.id], "at": (index, "id")},
                )
            seen[competency.id] = index
        return competencies

    @model_validator(mode="after")
    def _cross_checks(self) -> JobScript:
        known = {competency.id for competency in self.competencies}
        for index, question in enumerate(self.questions):
            if question.competency is not None and question.competency not in known:
                listed = ", ".join(sorted(known)) or "none defined"
                raise PydanticCustomError(
                    "unknown_competency",
                    "question '{question}' names competency '{competency}', which the script "
                    "does not define (competencies: {listed})",
                    {
                        "question": question.id,
                        "competency": question.competency,
                        "listed": listed,
                        "at": ("questions", index, "competency"),
                    },
                )
            if question.follow_up is not None and question.knockout is not None:
                raise PydanticCustomError(
                    "follow_up_on_knockout",
                    "question '{question}' is a knock-out: a yes/no question takes no follow-up",
                    {"question": question.id, "at": ("questions", index, "follow_up")},
                )
        prompt_ids = prompt_texts(self)
        for prompt_id in self.recordings:
            if prompt_id not in prompt_ids:
                raise PydanticCustomError(
                    "unknown_prompt_id",
                    "recordings names prompt '{prompt_id}', which the script does not say "
                    "(prompts: {listed})",
                    {
                        "prompt_id": prompt_id,
                        "listed": ", ".join(prompt_ids),
                        "at": ("recordings", prompt_id),
                    },
                )
        if self.thresholds.hold > self.thresholds.advance:
            raise PydanticCustomError(
                "threshold_order",
                "thresholds.hold ({hold}) is above thresholds.advance ({advance})",
                {
                    "hold": self.thresholds.hold,
                    "advance": self.thresholds.advance,
                    "at": ("thresholds", "hold"),
                },
            )
        return self

    def competency(self, competency_id: str) -> Competency:
        """Return the competency with this id (``KeyError`` if there is none)."""
        for competency in self.competencies:
            if competency.id == competency_id:
                return competency
        raise KeyError(competency_id)

    def question(self, question_id: str) -> Question:
        """Return the question with this id (``KeyError`` if there is none)."""
        for question in self.questions:
            if question.id == question_id:
                return question
        raise KeyError(question_id)


def prompt_texts(script: JobScript) -> dict[PromptId, str]:
    """Return every fixed prompt of the script by its stable prompt id, in call order.

    The ids are the ones the dialogue engine puts in its ``Say`` actions; the call layer uses them
    for carrier marks and for the pre-rendered audio cache.
    """
    texts = {
        GREETING_PROMPT: script.greeting,
        CONSENT_PROMPT: script.consent_question,
        CONSENT_UNCLEAR_PROMPT: script.consent_unclear,
        CONSENT_DECLINED_PROMPT: script.consent_declined,
    }
    for question in script.questions:
        texts[question_prompt_id(question.id)] = question.prompt
        if question.follow_up is not None:
            texts[follow_up_prompt_id(question.id)] = question.follow_up.prompt
        if question.knockout is not None and question.knockout.goodbye:
            texts[f"knockout_goodbye:{question.id}"] = question.knockout.goodbye
    texts[REPROMPT_PROMPT] = script.reprompt
    texts[REPEAT_PROMPT] = script.repeat_intro
    texts[MOVE_ON_PROMPT] = script.move_on
    texts[KNOCKOUT_UNCLEAR_PROMPT] = script.knockout_unclear
    texts[KNOCKOUT_GOODBYE_PROMPT] = script.knockout_goodbye
    texts[OPT_OUT_GOODBYE_PROMPT] = script.opt_out_goodbye
    texts[TAKE_YOUR_TIME_PROMPT] = script.take_your_time
    texts[WRAP_UP_PROMPT] = script.wrap_up
    texts[CLOSING_PROMPT] = script.closing
    texts[NO_RESPONSE_GOODBYE_PROMPT] = script.no_response_goodbye
    if script.voicemail:
        texts[VOICEMAIL_PROMPT] = script.voicemail
    return texts


def fixed_prompts(script: JobScript) -> list[str]:
    """Return every text the bot may say in this script, once each, for pre-rendering to audio."""
    return list(dict.fromkeys(prompt_texts(script).values()))


@dataclass(frozen=True, slots=True)
class ScriptProblem:
    """One thing wrong with a script file."""

    file: str
    field: str | None
    """Field path such as ``questions[2].prompt`` (indexes from 0); ``None`` for the whole file."""
    line: int | None
    """1-based line in the file, when it can be found."""
    message: str
    hint: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{field} {self.message}. Fix: {self.hint}"


class ScriptError(Exception):
    """A job script file that cannot be used; ``str()`` says where and how to fix it.

    ``problems`` lists every problem found; ``file``, ``field`` and ``line`` are the first one's.
    """

    def __init__(self, problems: Sequence[ScriptProblem]) -> None:
        if not problems:
            raise ValueError("ScriptError needs at least one problem")
        self.problems = list(problems)
        first = self.problems[0]
        self.file, self.field, self.line = first.file, first.field, first.line
        super().__init__("\n".join(str(problem) for problem in self.problems))


def load_script(path: str | Path) -> JobScript:
    """Read and validate one job script YAML file.

    Raises :class:`ScriptError` when the file is missing, is not valid YAML or breaks the format.
    """
    path = Path(path)
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ScriptError(
            [
                ScriptProblem(
                    file,
                    None,
                    None,
                    f"cannot read the file ({error})",
                    "check the path and save the file as UTF-8",
                )
            ]
        ) from error
    root = _compose(text, file)
    if not isinstance(root, yaml.MappingNode):
        line = None if root is None else root.start_mark.line + 1
        raise ScriptError(
            [
                ScriptProblem(
                    file,
                    None,
                    line,
                    "the file is not a mapping of fields",
                    "start the file with `id: ...`, `title: ...`; see dialogues/README.md",
                )
            ]
        )
    _check_nodes(root, file)
    data = _construct(root, file)
    try:
        script = JobScript.model_validate(data)
    except ValidationError as error:
        problems = [_problem_from_error(file, root, detail) for detail in error.errors()]
        reported = {problem.field for problem in problems}
        for problem in _reference_problems(file, root, data):
            if problem.field not in reported:  # the script's own checks did not get to run
                problems.append(problem)
        raise ScriptError(problems) from error
    if not script.recordings:
        return script
    folder = path.resolve().parent
    resolved = {
        pid: str(folder / Path(file).expanduser()) for pid, file in script.recordings.items()
    }
    return script.model_copy(update={"recordings": resolved})


def recorded_prompts(script: JobScript) -> dict[PromptId, tuple[str, Path]]:
    """Return ``{prompt id: (text, recording path)}`` of the prompts the script has recorded."""
    texts = prompt_texts(script)
    return {pid: (texts[pid], Path(file)) for pid, file in script.recordings.items()}


def synthesised_prompts(script: JobScript) -> dict[PromptId, str]:
    """Return ``{prompt id: text}`` of the prompts with no recording (spoken by TTS)."""
    return {pid: t for pid, t in prompt_texts(script).items() if pid not in script.recordings}


def load_scripts(directory: str | Path) -> dict[str, JobScript]:
    """Load every ``*.yaml``/``*.yml`` job script in a directory, keyed by script id.

    Raises :class:`ScriptError` for the first broken file, and when two files declare the same id.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ScriptError(
            [
                ScriptProblem(
                    str(directory),
                    None,
                    None,
                    "not a directory",
                    "point at the folder that holds the job scripts (dialogues/)",
                )
            ]
        )
    scripts: dict[str, JobScript] = {}
    origin: dict[str, Path] = {}
    paths = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
    for path in paths:
        script = load_script(path)
        if script.id in origin:
            root = _compose(path.read_text(encoding="utf-8"), str(path))
            raise ScriptError(
                [
                    ScriptProblem(
                        str(path),
                        "id",
                        _line_of(root, ("id",)),
                        f"script id '{script.id}' is already used by {origin[script.id]}",
                        "give each job script its own id",
                    )
                ]
            )
        scripts[script.id] = script
        origin[script.id] = path
    return scripts


def _reference_problems(file: str, root: yaml.Node, data: Any) -> list[ScriptProblem]:
    """Questions naming a competency the file does not define, checked on the raw data.

    The model's cross-checks run only once every field is valid; this one also runs when other
    fields are broken, so one ``check`` run lists every problem of the file.
    """
    if not isinstance(data, dict):
        return []
    competencies = data.get("competencies")
    questions = data.get("questions")
    if not isinstance(competencies, list):
        competencies = []
    if not isinstance(questions, list):
        return []
    known = {
        c.get("id") for c in competencies if isinstance(c, dict) and isinstance(c.get("id"), str)
    }
    problems = []
    for index, question in enumerate(questions):
        if not isinstance(question, dict) or not isinstance(question.get("competency"), str):
            continue
        if question["competency"] in known:
            continue
        loc = ("questions", index, "competency")
        listed = ", ".join(sorted(str(k) for k in known if k)) or "none defined"
        problems.append(
            ScriptProblem(
                file=file,
                field=_field_path(loc),
                line=_line_of(root, loc),
                message=f"question '{question.get('id')}' names competency "
                f"'{question['competency']}', which the script does not define "
                f"(competencies: {listed})",
                hint=_hint("unknown_competency", loc, {}),
            )
        )
    return problems


# --- YAML nodes: parse once, keep the line marks ------------------------------------------------


def _compose(text: str, file: str) -> yaml.Node | None:
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except RecursionError:  # PyYAML's composer recurses once per level
        raise ScriptError(
            [
                ScriptProblem(
                    file,
                    None,
                    None,
                    f"the YAML is nested more than {MAX_NESTING} levels deep",
                    "write the script as in dialogues/README.md (a few levels of indentation)",
                )
            ]
        ) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
        line = None if mark is None else mark.line + 1
        problem = getattr(error, "problem", None) or str(error)
        context = getattr(error, "context", None)
        context_mark = getattr(error, "context_mark", None)
        if context and context_mark is not None and mark and context_mark.line != mark.line:
            problem += f" ({context} that starts on line {context_mark.line + 1})"
        raise ScriptError(
            [
                ScriptProblem(
                    file,
                    None,
                    line,
                    f"invalid YAML: {problem}",
                    "check indentation and quote texts that contain ': ' or start with "
                    "a special character",
                )
            ]
        ) from error


def _construct(root: yaml.Node, file: str) -> Any:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_document(root)
    except (yaml.YAMLError, ValueError, TypeError, AttributeError, OverflowError) as error:
        # An explicit tag PyYAML's safe loader does not know (!foo, !!python/...), or a value
        # its tag cannot take (!!int x, !!timestamp nope, !!binary that is not base64).
        mark = getattr(error, "problem_mark", None)
        problem = getattr(error, "problem", None) or str(error) or type(error).__name__
        raise ScriptError(
            [
                ScriptProblem(
                    file,
                    None,
                    None if mark is None else mark.line + 1,
                    f"a value cannot be read: {problem}",
                    "remove YAML tags (`!...`, `!!...`) and write plain texts, numbers, lists"
                    " and mappings",
                )
            ]
        ) from None
    finally:
        loader.dispose()


MAX_NESTING = 16
"""Levels of mappings and lists a script may nest (the format needs 5)."""
MAX_NODES = 100_000
"""Values a script may hold once YAML aliases are expanded (a real one holds a few hundred)."""


def _check_nodes(root: yaml.Node, file: str) -> None:
    """Refuse what the model cannot take or would take forever on, before anything is built.

    A key that is not a plain name (``? [a, b]``), a key given twice, an alias inside its own
    anchor (``&x [*x]``), nesting deeper than :data:`MAX_NESTING` and aliases that expand to
    more than :data:`MAX_NODES` values ("billion laughs"). Iterative: no recursion per level.
    """

    def problem(node: yaml.Node, path: tuple[str | int, ...], message: str, hint: str):
        return ScriptError(
            [
                ScriptProblem(
                    file, _field_path(path) or None, node.start_mark.line + 1, message, hint
                )
            ]
        )

    too_deep = (
        f"the YAML is nested more than {MAX_NESTING} levels deep",
        "write the script as in dialogues/README.md (a few levels of indentation)",
    )
    sizes: dict[int, int] = {}  # expanded size of each node checked, by id (aliases share nodes)
    heights: dict[int, int] = {}  # levels below and including each node checked
    on_path: set[int] = set()
    # (node, path, depth, children entered?)
    stack: list[tuple[yaml.Node, tuple[str | int, ...], int, bool]] = [(root, (), 1, False)]
    while stack:
        node, path, depth, entered = stack.pop()
        if entered:
            on_path.discard(id(node))
            children = _children(node)
            sizes[id(node)] = 1 + sum(sizes[id(child)] for _, child in children)
            heights[id(node)] = 1 + max((heights[id(child)] for _, child in children), default=0)
            if sizes[id(node)] > MAX_NODES:
                raise problem(
                    node,
                    path,
                    f"YAML aliases expand this to more than {MAX_NODES} values",
                    "write the values out instead of repeating aliases (*name) of aliases",
                )
            continue
        if id(node) in sizes:  # an alias of a node already checked
            if depth - 1 + heights[id(node)] > MAX_NESTING:
                raise problem(node, path, *too_deep)
            continue
        if id(node) in on_path:
            raise problem(
                node,
                path,
                "an alias (*name) refers to the anchor (&name) it is inside of",
                "remove the alias, or write the value out",
            )
        if depth > MAX_NESTING:
            raise problem(node, path, *too_deep)
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise problem(
                        key_node,
                        path,
                        "a key is a list or a mapping",
                        "write each key as a plain name followed by a colon (`prompt: ...`)",
                    )
                key = key_node.value
                if key in seen:
                    raise problem(
                        key_node,
                        (*path, key),
                        f"key '{key}' appears twice",
                        "keep only one of them",
                    )
                seen.add(key)
        on_path.add(id(node))
        stack.append((node, path, depth, True))
        for step, child in _children(node):
            stack.append((child, (*path, step), depth + 1, False))


def _children(node: yaml.Node) -> list[tuple[str | int, yaml.Node]]:
    if isinstance(node, yaml.MappingNode):
        return [(key.value, value) for key, value in node.value]
    if isinstance(node, yaml.SequenceNode):
        return list(enumerate(node.value))
    return []


def _line_of(root: yaml.Node | None, loc: Sequence[str | int]) -> int | None:
    """Return the 1-based line of the field at ``loc``, or of its nearest existing parent."""
    if root is None:
        return None
    node: yaml.Node = root
    mark = root.start_mark
    for step in loc:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if key_node.value == str(step):
                    mark, node = key_node.start_mark, value_node
                    break
            else:
                return mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(step, int):
            if not 0 <= step < len(node.value):
                return mark.line + 1
            node = node.value[step]
            mark = node.start_mark
        else:
            break
    return mark.line + 1


def _field_path(loc: Sequence[str | int]) -> str:
    path = ""
    for step in loc:
        path += f"[{step}]" if isinstance(step, int) else (f".{step}" if path else str(step))
    return path


# --- pydantic errors -> problems with a fix hint ---------------------------------------------


def _problem_from_error(file: str, root: yaml.Node, detail: Any) -> ScriptProblem:
    loc = tuple(step for step in detail["loc"] if step != "[key]")  # a mapping's key: the key
    context = detail.get("ctx") or {}
    if "at" in context:
        loc = (*loc, *context["at"])
    return ScriptProblem(
        file=file,
        field=_field_path(loc) or None,
        line=_line_of(root, loc),
        message=detail["msg"],
        hint=_hint(detail["type"], loc, context),
    )


_NESTED_MODELS: dict[str, type[BaseModel]] = {
    "follow_up": FollowUp,
    "knockout": Knockout,
    "rubric": RubricLevel,
    "thresholds": Thresholds,
}


def _model_at(loc: tuple[str | int, ...]) -> type[BaseModel]:
    """The model whose field ``loc`` ends at (for the list of allowed keys)."""
    model: type[BaseModel] = JobScript
    for step in loc[:-1]:
        if not isinstance(step, str):
            continue
        if step == "questions":
            model = Question
        elif step == "competencies":
            model = Competency
        elif step in _NESTED_MODELS:
            model = _NESTED_MODELS[step]
    return model


def _hint(error_type: str, loc: tuple[str | int, ...], context: dict[str, Any]) -> str:
    model = _model_at(loc)
    field = loc[-1] if loc else ""
    if error_type == "missing":
        return f"add `{field}:` here; see dialogues/README.md for what it holds"
    if error_type == "extra_forbidden":
        allowed = ", ".join(model.model_fields)
        return f"remove `{field}` or fix its spelling; allowed keys: {allowed}"
    if error_type == "greeting_disclosure":
        return "say it is an AI assistant and that the call is recorded, in the greeting itself"
    if error_type == "duplicate_question_id":
        return "give every question its own id"
    if error_type == "duplicate_competency_id":
        return "give every competency its own id"
    if error_type == "unknown_competency":
        return "use the id of one of the script's `competencies`, or add that competency"
    if error_type == "unknown_prompt_id":
        return "use a prompt id: greeting, consent, q:<question id>, f:<question id>, closing..."
    if error_type == "follow_up_on_knockout":
        return "remove `follow_up` from the knock-out question, or make it an open question"
    if error_type == "threshold_order":
        return "set `hold` to a score at or below `advance` (e.g. advance: 70, hold: 50)"
    if error_type == "rubric_order":
        return "list rubric levels from the lowest score to the highest, each higher than the last"
    if error_type == "rubric_base_evidence":
        return "make the first level the floor (no `evidence`); put evidence on the higher levels"
    if error_type == "string_pattern_mismatch":
        if "dtmf" in loc:
            return "use one phone key per entry: a digit 0-9, '*' or '#', quoted (\"1\": yes)"
        return "use lower-case letters and digits, words joined by '-' or '_' (e.g. why-this-role)"
    if error_type in ("string_type", "string_too_short"):
        return "write the text after the colon; quote it if it has ': ' or starts with '{', '['"
    if error_type == "literal_error":
        return f"use one of: {context.get('expected', 'the documented values')}"
    if error_type in ("list_type", "too_short"):
        if "rubric" in loc:
            return "list at least two rubric levels as `- score: ...` / `description: ...` items"
        if loc and loc[0] == "competencies":
            return "write a list under the key, one `- ...` item per line"
        return "list at least one question as `- id: ...` / `prompt: ...` items"
    if error_type in ("model_type", "dict_type", "model_attributes_type"):
        return "write the fields on their own indented lines under the key (or the `-`)"
    if error_type == "bool_type":
        return "use true or false"
    if error_type.startswith(("float", "int", "greater_than", "less_than")):
        return "use a positive number (seconds, a count, a weight, or a score 0-100)"
    return "see dialogues/README.md for the format of this field"
