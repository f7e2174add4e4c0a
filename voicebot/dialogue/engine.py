"""The interview dialogue engine: a pure state machine that runs one call through a job script.

Sans-I/O in the style of ``websockets``' protocol core: the call layer feeds it events (what the
candidate said, a key press, a silence timeout, a hang-up) and carries out the actions it returns
(say a prompt, listen, record a result, end the call). It has no clock, no I/O and no asyncio, so
every path of a call is tested without sockets, models or timers.

The flow: greeting and consent question; the candidate's consent (by voice or keypad) before any
interview question; the questions in order; the closing. Silence is met with a reprompt and the
current prompt again, up to the script's ``max_reprompts``; then the bot says goodbye.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from voicebot.dialogue.consent import (
    ConsentAnswer,
    classify_consent,
    classify_dtmf_consent,
)
from voicebot.dialogue.script import (
    CLOSING_PROMPT,
    CONSENT_DECLINED_PROMPT,
    CONSENT_PROMPT,
    CONSENT_UNCLEAR_PROMPT,
    GREETING_PROMPT,
    NO_RESPONSE_GOODBYE_PROMPT,
    REPROMPT_PROMPT,
    JobScript,
    PromptId,
    Question,
    prompt_texts,
    question_prompt_id,
)

# --- events: what happened on the call ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CandidateSaid:
    """The candidate finished a turn; ``text`` is its final transcript."""

    text: str


@dataclass(frozen=True, slots=True)
class DtmfPressed:
    """The candidate pressed a key on the phone's keypad (``"0"``-``"9"``, ``"*"``, ``"#"``)."""

    digit: str


@dataclass(frozen=True, slots=True)
class SilenceTimeout:
    """The candidate said nothing for ``Listen.timeout_secs`` after the bot's prompts finished."""


@dataclass(frozen=True, slots=True)
class CallerHungUp:
    """The candidate (or the carrier) ended the call."""


Event = CandidateSaid | DtmfPressed | SilenceTimeout | CallerHungUp

# --- actions: what the call layer must do, in order --------------------------------------------

EndReason = Literal["completed", "consent_declined", "no_response", "caller_hangup"]
ConsentChannel = Literal["voice", "dtmf"]


@dataclass(frozen=True, slots=True)
class Say:
    """Play a fixed prompt; ``prompt_id`` is stable (marks, pre-rendered audio cache)."""

    prompt_id: PromptId
    text: str


@dataclass(frozen=True, slots=True)
class Listen:
    """Wait for the candidate's answer; always the last action of a turn that awaits one.

    The call layer starts the silence timer (``timeout_secs``) once the prompts before it have
    finished playing, and cuts an answer off after ``max_answer_secs``. ``question_id`` is ``None``
    while the answer is the consent answer.
    """

    timeout_secs: float
    question_id: str | None
    max_answer_secs: float


@dataclass(frozen=True, slots=True)
class ConsentRecorded:
    """The candidate's consent decision, to store with the call (``text``: transcript or key)."""

    granted: bool
    via: ConsentChannel
    text: str


@dataclass(frozen=True, slots=True)
class AnswerRecorded:
    """The candidate's answer to one question, to store with the call."""

    question_id: str
    text: str


@dataclass(frozen=True, slots=True)
class EndCall:
    """Hang up once the ``Say`` actions before this one have finished playing."""

    reason: EndReason


Action = Say | Listen | ConsentRecorded | AnswerRecorded | EndCall

EngineState = Literal["not_started", "consent", "question", "ended"]


class InterviewEngine:
    """Run one interview call through a :class:`JobScript`: events in, actions out.

    Consent: the candidate must agree (voice "yes" or key 1) before any question is asked. A
    refusal (voice "no" or key 2) ends the call politely. An unclear answer (or any other key) is
    met once with the script's ``consent_unclear`` text; a second unclear answer counts as
    declined, because without a clear yes the bot may not go on (recorded as not granted).

    Silence: each ``SilenceTimeout`` in a row is met with ``reprompt`` and the current prompt again,
    up to ``max_reprompts``; the next ends the call with ``no_response_goodbye``. Any answer resets
    the count. A blank transcript counts as silence. Keys pressed during the questions are ignored,
    and every event after the end of the call returns no action.
    """

    def __init__(self, script: JobScript) -> None:
        self.script = script
        self._texts = prompt_texts(script)
        self._state: EngineState = "not_started"
        self._question_index: int | None = None
        self._answers_recorded = 0
        self._unclear_consent_answers = 0
        self._silences_in_a_row = 0
        self._end_reason: EndReason | None = None

    # --- what the monitor and the call layer read -------------------------------------------

    @property
    def state(self) -> EngineState:
        """Where the call is: ``"not_started"``, ``"consent"``, ``"question"`` or ``"ended"``."""
        return self._state

    @property
    def ended(self) -> bool:
        """Whether the engine has ended the call (no further actions will come)."""
        return self._state == "ended"

    @property
    def end_reason(self) -> EndReason | None:
        """Why the call ended, or ``None`` while it goes on."""
        return self._end_reason

    @property
    def current_question(self) -> Question | None:
        """The question awaiting an answer, or ``None`` outside the questions."""
        if self._state != "question" or self._question_index is None:
            return None
        return self.script.questions[self._question_index]

    @property
    def question_index(self) -> int | None:
        """0-based index of the question awaiting an answer, or ``None`` outside the questions."""
        return self._question_index if self._state == "question" else None

    @property
    def question_count(self) -> int:
        """Number of questions in the script."""
        return len(self.script.questions)

    @property
    def answers_recorded(self) -> int:
        """Number of questions answered so far."""
        return self._answers_recorded

    def next_prompts_if_independent(self) -> list[Say] | None:
        """Return the prompts said after the candidate's answer if the answer cannot change them.

        ``None`` when it can (the consent answer) or when no answer is awaited (before the start,
        after the end). During the questions: the next question, or the closing after the last.
        The call layer uses this to start the next prompt the moment the candidate's turn ends,
        without waiting for the final transcript.
        """
        if self._state != "question" or self._question_index is None:
            return None
        next_index = self._question_index + 1
        if next_index < self.question_count:
            return [self._say(question_prompt_id(self.script.questions[next_index].id))]
        return [self._say(CLOSING_PROMPT)]

    # --- driving the call ----------------------------------------------------------------------

    def start(self) -> list[Action]:
        """Open the call: greeting (AI and recording disclosure), consent question, listen."""
        if self._state != "not_started":
            raise RuntimeError(f"InterviewEngine.start() called twice (state is {self._state!r})")
        self._state = "consent"
        return [self._say(GREETING_PROMPT), self._say(CONSENT_PROMPT), self._listen()]

    def handle(self, event: Event) -> list[Action]:
        """Advance the interview by one event and return the actions to carry out, in order."""
        if self._state == "ended":
            return []
        if isinstance(event, CallerHungUp):
            return self._end("caller_hangup")
        if self._state == "not_started":
            raise RuntimeError("InterviewEngine.handle() before start(): start the call first")
        if isinstance(event, SilenceTimeout):
            return self._on_silence()
        if isinstance(event, CandidateSaid):
            if not event.text.strip():
                return self._on_silence()
            if self._state == "consent":
                answer = classify_consent(event.text, self.script.language)
                return self._on_consent(answer, "voice", event.text)
            return self._on_answer(event.text)
        if isinstance(event, DtmfPressed):
            if self._state == "consent":
                return self._on_consent(classify_dtmf_consent(event.digit), "dtmf", event.digit)
            return []
        raise TypeError(f"unknown dialogue event {event!r}")

    # --- transitions ---------------------------------------------------------------------------

    def _on_consent(self, answer: ConsentAnswer, via: ConsentChannel, text: str) -> list[Action]:
        self._silences_in_a_row = 0
        if answer == "yes":
            return [ConsentRecorded(granted=True, via=via, text=text), *self._ask(0)]
        if answer == "unclear" and self._unclear_consent_answers == 0:
            self._unclear_consent_answers += 1
            return [self._say(CONSENT_UNCLEAR_PROMPT), self._listen()]
        return [
            ConsentRecorded(granted=False, via=via, text=text),
            self._say(CONSENT_DECLINED_PROMPT),
            *self._end("consent_declined"),
        ]

    def _on_answer(self, text: str) -> list[Action]:
        assert self._question_index is not None
        self._silences_in_a_row = 0
        question = self.script.questions[self._question_index]
        self._answers_recorded += 1
        recorded = AnswerRecorded(question_id=question.id, text=text)
        next_index = self._question_index + 1
        if next_index < self.question_count:
            return [recorded, *self._ask(next_index)]
        return [recorded, self._say(CLOSING_PROMPT), *self._end("completed")]

    def _on_silence(self) -> list[Action]:
        if self._silences_in_a_row >= self.script.max_reprompts:
            return [self._say(NO_RESPONSE_GOODBYE_PROMPT), *self._end("no_response")]
        self._silences_in_a_row += 1
        question = self.current_question
        current_prompt = CONSENT_PROMPT if question is None else question_prompt_id(question.id)
        return [self._say(REPROMPT_PROMPT), self._say(current_prompt), self._listen()]

    def _ask(self, index: int) -> list[Action]:
        self._state = "question"
        self._question_index = index
        self._silences_in_a_row = 0
        question = self.script.questions[index]
        return [self._say(question_prompt_id(question.id)), self._listen()]

    def _end(self, reason: EndReason) -> list[Action]:
        self._state = "ended"
        self._end_reason = reason
        return [EndCall(reason)]

    def _say(self, prompt_id: PromptId) -> Say:
        return Say(prompt_id=prompt_id, text=self._texts[prompt_id])

    def _listen(self) -> Listen:
        question = self.current_question
        if question is None:
            return Listen(self.script.silence_timeout_secs, None, self.script.max_answer_secs)
        max_answer = question.max_answer_secs or self.script.max_answer_secs
        return Listen(self.script.silence_timeout_secs, question.id, max_answer)
