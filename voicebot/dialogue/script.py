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

Slug = Annotated[str, Field(pattern=SLUG_PATTERN)]
Text = Annotated[str, Field(min_length=1)]
Seconds = Annotated[float, Field(gt=0)]

# What the greeting must contain, per language: (words for "AI", words for "recorded").
_EN_AI_DISCLOSURE = re.compile(r"\bA\.?I\b|\bautomated\b|\bvirtual\b", re.IGNORECASE)
_EN_RECORDING_DISCLOSURE = re.compile(r"\brecord", re.IGNORECASE)
_ZH_AI_DISCLOSURE = re.compile(r"AI|人工智能|智能", re.IGNORECASE)
_ZH_RECORDING_DISCLOSURE = re.compile(r"录音|錄音")


def question_prompt_id(question_id: str) -> PromptId:
    """Return the prompt id of a question's text: ``"q:<question_id>"``."""
    return f"q:{question_id}"


class Question(BaseModel):
    """One interview question, asked in the order the script lists them."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)

    id: Slug
    """Stable id, unique in the script; answers and reports are keyed by it."""
    prompt: Text
    """What the bot says to ask the question."""
    max_answer_secs: Seconds | None = None
    """Longest answer before the bot moves on; ``None`` uses the script's ``max_answer_secs``."""


class JobScript(BaseModel):
    """A job's phone-screen script: disclosure, consent, questions and the end of the call."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)

    id: Slug
    """The job id the HR system and ``POST /api/interviews`` use."""
    title: Text
    """Job title, shown to recruiters."""
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
    silence_timeout_secs: Seconds = 6.0
    """Silence after a prompt before the bot reprompts."""
    max_reprompts: int = Field(default=1, ge=0)
    """Reprompts in a row before the bot gives up with ``no_response_goodbye``."""
    max_answer_secs: Seconds = 90.0
    """Default longest answer for every question (and for the consent answer)."""

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
    texts[REPROMPT_PROMPT] = script.reprompt
    texts[CLOSING_PROMPT] = script.closing
    texts[NO_RESPONSE_GOODBYE_PROMPT] = script.no_response_goodbye
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
    _reject_duplicate_keys(root, file)
    data = _construct(root)
    try:
        return JobScript.model_validate(data)
    except ValidationError as error:
        raise ScriptError(
            [_problem_from_error(file, root, detail) for detail in error.errors()]
        ) from error


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


# --- YAML nodes: parse once, keep the line marks ------------------------------------------------


def _compose(text: str, file: str) -> yaml.Node | None:
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
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


def _construct(root: yaml.Node) -> Any:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_document(root)
    finally:
        loader.dispose()


def _reject_duplicate_keys(node: yaml.Node, file: str, path: tuple[str | int, ...] = ()) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                raise ScriptError(
                    [
                        ScriptProblem(
                            file,
                            _field_path((*path, key)),
                            key_node.start_mark.line + 1,
                            f"key '{key}' appears twice",
                            "keep only one of them",
                        )
                    ]
                )
            seen.add(key)
            _reject_duplicate_keys(value_node, file, (*path, key))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _reject_duplicate_keys(item, file, (*path, index))


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
    loc = tuple(detail["loc"])
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


def _hint(error_type: str, loc: tuple[str | int, ...], context: dict[str, Any]) -> str:
    model = Question if len(loc) >= 3 and loc[0] == "questions" else JobScript
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
    if error_type == "string_pattern_mismatch":
        return "use lower-case letters and digits, words joined by '-' or '_' (e.g. why-this-role)"
    if error_type in ("string_type", "string_too_short"):
        return "write the text after the colon; quote it if it has ': ' or starts with '{', '['"
    if error_type == "literal_error":
        return f"use one of: {context.get('expected', 'the documented values')}"
    if error_type in ("list_type", "too_short"):
        return "list at least one question as `- id: ...` / `prompt: ...` items"
    if error_type in ("model_type", "dict_type", "model_attributes_type"):
        return "write `id:` and `prompt:` on their own indented lines under the `-`"
    if error_type.startswith(("float", "int", "greater_than", "less_than")):
        return "use a positive number (seconds, or a count)"
    return "see dialogues/README.md for the format of this field"
