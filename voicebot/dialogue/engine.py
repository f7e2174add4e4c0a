"""The interview dialogue engine: a pure state machine that runs one call through a job script.

Sans-I/O in the style of ``websockets``' protocol core: the call layer feeds it events (what the
candidate said, a key press, a silence timeout, a hang-up) and carries out the actions it returns
(say a prompt, listen, record a result, end the call). It has no clock, no I/O and no asyncio, so
every path of a call is tested without sockets, models or timers.

The flow: greeting and consent question; the candidate's consent (by voice or keypad) before any
interview question; the questions in order, each with its follow-up when the answer is too short
or misses the competency's evidence, knock-outs that end the call politely when failed; the
closing. At any point the candidate may ask to hear the question again or to stop (an opt-out,
honoured at once). Silence is met with a reprompt and the question again, up to the script's
``max_reprompts``; then the bot moves on to the next question, and after ``max_skipped_questions``
unanswered questions in a row it says goodbye.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from voicebot.dialogue.consent import (
    ConsentAnswer,
    classify_consent,
    classify_dtmf_consent,
)
from voicebot.dialogue.intents import YesNo, classify_yes_no, is_opt_out, is_repeat_request
from voicebot.dialogue.script import (
    CLOSING_PROMPT,
    CONSENT_DECLINED_PROMPT,
    CONSENT_PROMPT,
    CONSENT_UNCLEAR_PROMPT,
    GREETING_PROMPT,
    KNOCKOUT_GOODBYE_PROMPT,
    KNOCKOUT_UNCLEAR_PROMPT,
    MOVE_ON_PROMPT,
    NO_RESPONSE_GOODBYE_PROMPT,
    OPT_OUT_GOODBYE_PROMPT,
    REPEAT_PROMPT,
    REPROMPT_PROMPT,
    JobScript,
    PromptId,
    Question,
    follow_up_prompt_id,
    prompt_texts,
    question_prompt_id,
)

# --- events: what happened on the call ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CandidateSaid:
    """The candidate finished a turn; ``text`` is its final transcript.

    ``words_so_far`` is a transcript of the answer's beginning, when the call layer moves on
    before the final transcript is known (``text`` is then a placeholder): it settles a
    follow-up that the beginning alone makes unnecessary (see
    :meth:`InterviewEngine.next_prompts_if_independent`).
    """

    text: str
    words_so_far: str = ""


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

EndReason = Literal[
    "completed", "consent_declined", "no_response", "caller_hangup", "knocked_out", "opted_out"
]
Channel = Literal["voice", "dtmf"]
ConsentChannel = Channel


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
    while the answer is the consent answer; ``follow_up`` is true while it is the answer to the
    question's follow-up.
    """

    timeout_secs: float
    question_id: str | None
    max_answer_secs: float
    follow_up: bool = False


@dataclass(frozen=True, slots=True)
class ConsentRecorded:
    """The candidate's consent decision, to store with the call (``text``: transcript or key)."""

    granted: bool
    via: ConsentChannel
    text: str


@dataclass(frozen=True, slots=True)
class AnswerRecorded:
    """The candidate's answer to one question (or to its follow-up), to store with the call.

    Voice answers are stored by the call layer with their transcript and timing; a keypad answer
    (``via="dtmf"``) is stored from this action (``text`` is the script's meaning of the key,
    ``key`` the key).
    """

    question_id: str
    text: str
    via: Channel = "voice"
    follow_up: bool = False
    key: str | None = None


@dataclass(frozen=True, slots=True)
class KnockoutRecorded:
    """The result of a knock-out question; ``passed`` is ``None`` when the answer stayed unclear."""

    question_id: str
    expected: YesNo
    answer: YesNo
    passed: bool | None
    via: Channel
    text: str


@dataclass(frozen=True, slots=True)
class QuestionSkipped:
    """A question got no answer after the reprompts; the interview moved on."""

    question_id: str


@dataclass(frozen=True, slots=True)
class RepeatRequested:
    """The candidate asked to hear the question again (for the timeline and the report)."""

    question_id: str | None


@dataclass(frozen=True, slots=True)
class OptOutRecorded:
    """The candidate asked to stop and not to be called again: honour it and record it."""

    via: Channel
    text: str
    question_id: str | None


@dataclass(frozen=True, slots=True)
class EndCall:
    """Hang up once the ``Say`` actions before this one have finished playing."""

    reason: EndReason


Action = (
    Say
    | Listen
    | ConsentRecorded
    | AnswerRecorded
    | KnockoutRecorded
    | QuestionSkipped
    | RepeatRequested
    | OptOutRecorded
    | EndCall
)

EngineState = Literal["not_started", "consent", "question", "ended"]


class InterviewEngine:
    """Run one interview call through a :class:`JobScript`: events in, actions out.

    Consent: the candidate must agree (voice "yes" or key 1) before any question is asked. A
    refusal (voice "no" or key 2) ends the call politely. An unclear answer (or any other key) is
    met once with the script's ``consent_unclear`` text; a second unclear answer counts as
    declined, because without a clear yes the bot may not go on (recorded as not granted).

    Questions: an answer is recorded against the question; an open question with a ``follow_up``
    asks it once when :func:`~voicebot.dialogue.scoring.needs_follow_up` says the answer is too
    short or misses the competency's evidence. A knock-out question takes yes/no (by voice, or the
    keys of its ``dtmf`` map); an unclear answer is asked once more (``knockout_unclear``), a
    second unclear answer is recorded as unclear (for the recruiter) and the interview goes on;
    the wrong answer ends the call with the knock-out goodbye. A question with ``dtmf`` keys takes
    a key press as its answer; other keys during the questions are ignored.

    Any time: "can you repeat that?" replays the current prompt after ``repeat_intro``; "stop" /
    "don't call me again" ends the call with ``opt_out_goodbye`` and an :class:`OptOutRecorded`.

    Silence: each ``SilenceTimeout`` in a row is met with ``reprompt`` and the current prompt
    again, up to ``max_reprompts``. Then, during the questions, the bot says ``move_on`` and asks
    the next question (the skipped one is recorded) unless ``max_skipped_questions`` questions in
    a row were already skipped: then, as during consent, it ends the call with
    ``no_response_goodbye``. Any answer resets the counts. A blank transcript counts as silence;
    every event after the end of the call returns no action.
    """

    def __init__(self, script: JobScript) -> None:
        self.script = script
        self._texts = prompt_texts(script)
        self._state: EngineState = "not_started"
        self._question_index: int | None = None
        self._in_follow_up = False
        self._knockout_retried = False
        self._answers_recorded = 0
        self._unclear_consent_answers = 0
        self._silences_in_a_row = 0
        self._skipped_in_a_row = 0
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
    def in_follow_up(self) -> bool:
        """Whether the awaited answer is the one to the current question's follow-up."""
        return self._state == "question" and self._in_follow_up

    @property
    def question_count(self) -> int:
        """Number of questions in the script."""
        return len(self.script.questions)

    @property
    def answers_recorded(self) -> int:
        """Number of questions answered so far."""
        return self._answers_recorded

    def follow_up_settled(self, words_so_far: str) -> bool:
        """Whether the beginning of the answer already rules out the current question's follow-up.

        The follow-up comes for an answer too short or without the competency's evidence; once
        the words so far are long enough and hold the evidence, the rest of the answer cannot
        bring it back.
        """
        from voicebot.dialogue.scoring import needs_follow_up

        question = self.current_question
        if question is None or question.follow_up is None or self._in_follow_up:
            return True
        return bool(words_so_far.strip()) and not needs_follow_up(
            self.script, question, words_so_far
        )

    def next_prompts_if_independent(self, words_so_far: str = "") -> list[Say] | None:
        """Return the prompts said after the candidate's answer if the answer cannot change them.

        ``None`` when it can: the consent answer, a knock-out, a question whose follow-up is not
        yet ruled out by ``words_so_far`` (a transcript of the answer's beginning), or no answer
        awaited (before the start, after the end). Otherwise the next question, or the closing
        after the last. The call layer uses this to start the next prompt the moment the
        candidate's turn ends, without waiting for the final transcript (and then passes the same
        ``words_so_far`` with the answer). A request to repeat or to stop is short; the call
        layer waits for the words of short turns, and honours an opt-out found in a longer one
        with :meth:`late_words`.
        """
        question = self.current_question
        if question is None or self._question_index is None:
            return None
        if question.knockout is not None or not self.follow_up_settled(words_so_far):
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
            return self._on_words(event.text, event.words_so_far)
        if isinstance(event, DtmfPressed):
            return self._on_key(event.digit)
        raise TypeError(f"unknown dialogue event {event!r}")

    def late_words(self, question_id: str, text: str) -> list[Action]:
        """The words of an answer the script already moved on from (a pre-started prompt).

        Only an opt-out changes anything then: the call ends at once, as if it had been heard
        in time (also when the pre-started prompt was the closing: the call is then still on,
        saying goodbye). Anything else is just the answer, stored by the call layer.
        """
        if self._state == "ended" and self._end_reason != "completed":
            return []
        if not is_opt_out(text, self.script.language):
            return []
        return self._opt_out("voice", text, question_id)

    # --- transitions ---------------------------------------------------------------------------

    def _on_words(self, text: str, words_so_far: str = "") -> list[Action]:
        if not text.strip():
            return self._on_silence()
        language = self.script.language
        question = self.current_question
        if is_opt_out(text, language):
            return self._opt_out("voice", text, question.id if question else None)
        if is_repeat_request(text, language):
            return self._repeat()
        if self._state == "consent":
            return self._on_consent(classify_consent(text, language), "voice", text)
        assert question is not None
        if question.knockout is not None:
            return self._on_knockout(question, classify_yes_no(text, language), "voice", text)
        return self._on_answer(question, text, "voice", words_so_far=words_so_far)

    def _on_key(self, digit: str) -> list[Action]:
        if self._state == "consent":
            return self._on_consent(classify_dtmf_consent(digit), "dtmf", digit)
        question = self.current_question
        if question is None or not question.dtmf or digit not in question.dtmf:
            return []
        meaning = question.dtmf[digit]
        if question.knockout is not None:
            answer = classify_yes_no(meaning, self.script.language)
            return self._on_knockout(question, answer, "dtmf", meaning, key=digit)
        return self._on_answer(question, meaning, "dtmf", key=digit)

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

    def _on_answer(
        self,
        question: Question,
        text: str,
        via: Channel,
        key: str | None = None,
        words_so_far: str = "",
    ) -> list[Action]:
        from voicebot.dialogue.scoring import needs_follow_up

        self._silences_in_a_row = 0
        self._skipped_in_a_row = 0
        recorded = AnswerRecorded(
            question_id=question.id, text=text, via=via, follow_up=self._in_follow_up, key=key
        )
        if not self._in_follow_up:
            self._answers_recorded += 1
            settled = bool(words_so_far) and self.follow_up_settled(words_so_far)
            if via == "voice" and not settled and needs_follow_up(self.script, question, text):
                self._in_follow_up = True
                return [recorded, self._say(follow_up_prompt_id(question.id)), self._listen()]
        return [recorded, *self._next_after(question)]

    def _on_knockout(
        self,
        question: Question,
        answer: YesNo,
        via: Channel,
        text: str,
        key: str | None = None,
    ) -> list[Action]:
        assert question.knockout is not None
        self._silences_in_a_row = 0
        self._skipped_in_a_row = 0
        if answer == "unclear" and not self._knockout_retried:
            self._knockout_retried = True
            return [
                AnswerRecorded(question.id, text, via=via, key=key),
                self._say(KNOCKOUT_UNCLEAR_PROMPT),
                self._listen(),
            ]
        self._answers_recorded += 1
        expected = question.knockout.expected
        passed = None if answer == "unclear" else answer == expected
        result = KnockoutRecorded(question.id, expected, answer, passed, via, text)
        actions: list[Action] = [result]
        if not self._knockout_retried:
            actions.insert(0, AnswerRecorded(question.id, text, via=via, key=key))
        else:
            actions.insert(0, AnswerRecorded(question.id, text, via=via, follow_up=True, key=key))
        if passed is False:
            goodbye = f"knockout_goodbye:{question.id}"
            prompt = goodbye if goodbye in self._texts else KNOCKOUT_GOODBYE_PROMPT
            return [*actions, self._say(prompt), *self._end("knocked_out")]
        return [*actions, *self._next_after(question)]

    def _next_after(self, question: Question) -> list[Action]:
        index = self.script.questions.index(question)
        if index + 1 < self.question_count:
            return self._ask(index + 1)
        return [self._say(CLOSING_PROMPT), *self._end("completed")]

    def _repeat(self) -> list[Action]:
        question = self.current_question
        self._silences_in_a_row = 0
        return [
            RepeatRequested(question.id if question else None),
            self._say(REPEAT_PROMPT),
            self._say(self._current_prompt_id()),
            self._listen(),
        ]

    def _opt_out(self, via: Channel, text: str, question_id: str | None) -> list[Action]:
        return [
            OptOutRecorded(via=via, text=text, question_id=question_id),
            self._say(OPT_OUT_GOODBYE_PROMPT),
            *self._end("opted_out"),
        ]

    def _on_silence(self) -> list[Action]:
        question = self.current_question
        if self._silences_in_a_row < self.script.max_reprompts:
            self._silences_in_a_row += 1
            return [
                self._say(REPROMPT_PROMPT),
                self._say(self._current_prompt_id()),
                self._listen(),
            ]
        if question is None or self._skipped_in_a_row >= self.script.max_skipped_questions:
            return [self._say(NO_RESPONSE_GOODBYE_PROMPT), *self._end("no_response")]
        # Move on: the question stays unanswered (an unanswered knock-out stays unknown).
        self._skipped_in_a_row += 1
        skipped = QuestionSkipped(question.id)
        index = self.script.questions.index(question)
        if index + 1 < self.question_count:
            return [skipped, self._say(MOVE_ON_PROMPT), *self._ask(index + 1, keep_skips=True)]
        return [skipped, self._say(CLOSING_PROMPT), *self._end("completed")]

    def _current_prompt_id(self) -> PromptId:
        question = self.current_question
        if question is None:
            return CONSENT_PROMPT
        if self._in_follow_up and question.follow_up is not None:
            return follow_up_prompt_id(question.id)
        if self._knockout_retried and question.knockout is not None:
            return KNOCKOUT_UNCLEAR_PROMPT
        return question_prompt_id(question.id)

    def _ask(self, index: int, *, keep_skips: bool = False) -> list[Action]:
        self._state = "question"
        self._question_index = index
        self._in_follow_up = False
        self._knockout_retried = False
        self._silences_in_a_row = 0
        if not keep_skips:
            self._skipped_in_a_row = 0
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
        return Listen(
            self.script.silence_timeout_secs,
            question.id,
            max_answer,
            follow_up=self._in_follow_up or self._knockout_retried,
        )
