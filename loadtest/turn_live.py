"""Turn-taking benchmark, real-time mode: the evaluation set's answers played into live interviews.

The offline mode (:mod:`loadtest.turn_bench`) replays each answer's pauses through the end-of-turn
policies much faster than real time. This mode plays the same answers
(``loadtest/turn_eval/manifest.json``) through a real server over real sockets: each call is a
whole interview by :func:`loadtest.caller.run_call` (consent by pressing 1, then one clip per
question of the job at real-time pace through 8 kHz mu-law, started ``answer_gap_secs`` after
the question's ``:await`` mark has played). English answers go to ``turn_eval_en``, Chinese
ones to ``turn_eval_zh`` (each on a server of its own with the defaults): the bundled
``customer_service_*`` job with a closed question added last ("Have you worked in a call centre
before?"), which the answers the set marks ``closed`` answer ("No.", "six"), as in the offline
replay; the others answer the open questions. A call's remaining questions are answered with
padding clips of its language, which are not scored.

Per answer clip, from the call's timeline (``<recordings>/<call_sid>/timeline.jsonl``, call-clock
seconds from the stream's start), its stored turns (``GET /api/calls/{sid}``) and the caller's
clock (seconds since the stream opened; the two clocks agree within a frame): ``start`` is when
the caller began sending the clip and ``true_end = start + answer_end_s``.

- interrupted: a bot prompt (other than the ``take_your_time`` aside) started in
  ``[start, true_end - 0.05)``;
- latency: the first such prompt started at or after ``true_end - 0.05``, minus ``true_end``
  (answers that were not interrupted; none if the bot never spoke again);
- resume heard: for each prompt that started during the answer and was cut (barge-in), from the
  later of the prompt's start and the candidate's voice resuming (the server's next
  ``speech_started``) to the prompt's end: how long the candidate heard the bot over them once
  they went on. ``overlap`` is the cruder proxy, the cut prompt's whole play time;
- skipped/reprompted while speaking: ``question_skipped``, ``silence_timeout``, or a
  ``reprompt``/``move_on``/``no_response_goodbye`` prompt during ``[start, true_end]``;
- WER (CER for Chinese): the stored candidate turns of the answer's question (the last question
  prompt started before the clip), joined in order, against the manifest transcript (lower
  case, no punctuation, ``[laughter]``-style annotations dropped; Chinese by character).
  ``wer_by_time`` uses the candidate turns that overlap the clip's playing instead;
- unheard: seconds of ``speech_unheard`` (voice no turn took in) during the clip;
- voice-to-voice: the caller's measure (end of voice in the clip -> first bot audio);
- clearly finished: the latency of the answers the set calls clearly finished
  (:attr:`Answer.clearly_finished`: a closer at the end, or a short complete answer to a closed
  question), the issue's "response latency after a clearly finished answer".

With ``--calls N`` N calls are up at once (ramped over ``min(0.5 N, 20)`` s); when the set has
fewer calls than N its calls are repeated round-robin, and every repetition is scored.

    python -m loadtest.turn_live [--calls N] [--split tune|holdout|all] [--language en|zh|all]
                                 [--policy words|acoustic] [--url URL] [--out DIR]

Writes ``loadtest/results/turn-live-<time>.{json,md,png}`` and prints the Markdown.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import re
import tempfile
import threading
import time
import unicodedata
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from loadtest.caller import CallResult, CandidateAnswer, TurnRecord, run_call
from loadtest.turn_bench import (
    EVAL_DIR,
    INTERRUPT_TOLERANCE_SECS,
    RESULTS_DIR,
    Answer,
    load_set,
    pct,
)

BUNDLED_JOBS = {"en": "customer_service_en", "zh": "customer_service_zh"}
"""The bundled job each language's harness job is made from (open questions, no follow-ups)."""
JOBS = {"en": "turn_eval_en", "zh": "turn_eval_zh"}
"""The job each language's answers are played into: the bundled one with a closed question
(:data:`CLOSED_QUESTIONS`) last, which the answers the set marks ``closed`` ("No.", "six",
"你好世界。") answer, as the offline replay has them; written by :func:`write_jobs`."""
CLOSED_QUESTIONS = {
    "en": {"id": "call-centre", "prompt": "Have you worked in a call centre before?"},
    "zh": {"id": "call-centre", "prompt": "您以前在呼叫中心工作过吗？"},
}
SERVER_ENV: dict[str, dict[str, str]] = {"en": {}, "zh": {}}
"""What a server needs for a language's job beyond the defaults (none since each language gets
its bundled model)."""
ASIDE_PROMPTS = frozenset({"take_your_time"})
"""Prompts said over a thinking pause on purpose: not a reply, not an interruption."""
REPROMPT_PROMPTS = frozenset({"reprompt", "move_on", "no_response_goodbye"})
SKIP_EVENTS = frozenset({"question_skipped", "silence_timeout"})
EXTRA_PADDING = 2
"""Padding clips beyond the job's questions, for prompts that await an answer twice."""
PAD_MIN_SECS = 1.5
"""Padding clips have at least this much answer (a lone "Hello?" can go unheard)."""
UNHEARD_SLACK_SECS = 0.5
"""Unheard voice up to this long after the clip's end still counts as the clip's."""
RECORD_WAIT_SECS = 60.0
"""How long to wait after a call for the server's record of it (end reason, every answer)."""


# -- the plan --------------------------------------------------------------------------------


@dataclass
class CallPlan:
    """One interview: the clips that are scored, in order, then padding (not scored)."""

    language: str
    job_id: str
    scored: list[Answer]
    padding: list[Answer] = field(default_factory=list)
    sequence: list[tuple[Answer, bool]] = field(default_factory=list)
    """Every clip in the order played, each with whether it is scored (empty: the scored
    clips, then the padding)."""

    def played(self) -> list[tuple[Answer, bool]]:
        """The clips in playing order, each with whether it is scored."""
        if self.sequence:
            return list(self.sequence)
        return [(a, True) for a in self.scored] + [(a, False) for a in self.padding]


def plan_calls(
    answers: Sequence[Answer],
    questions: dict[str, int],
    extra_padding: int = EXTRA_PADDING,
    *,
    closed_last: bool = False,
    jobs: dict[str, str] | None = None,
) -> list[CallPlan]:
    """Group the answers by language into calls of one clip a question; pad what is left.

    ``questions`` is each language's job's number of questions. With ``closed_last`` the job's
    last question is closed: the answers the set plays to a closed question go there, one a
    call, and the others fill the open questions before it (else every answer is played to the
    next question, whatever its kind). Padding clips fill the questions no scored answer is
    left for, and ``extra_padding`` more answer re-asked questions: the language's shortest of
    at least ``PAD_MIN_SECS`` of answer (cheap to play, but not a lone word that may go
    unheard and draw a re-prompt), reused, never scored; a closed question's padding is a
    closed answer.
    """
    jobs = jobs or JOBS
    plans: list[CallPlan] = []
    for language in sorted({a.language for a in answers}):
        mine = [a for a in answers if a.language == language]
        per_call = questions[language]
        long_enough = [a for a in mine if a.answer_end >= PAD_MIN_SECS] or mine
        shortest = sorted(long_enough, key=lambda a: a.answer_end)
        pads = itertools.cycle(shortest)
        if not closed_last or per_call < 2:
            for index in range(0, len(mine), per_call):
                scored = mine[index : index + per_call]
                need = per_call - len(scored) + extra_padding
                padding = list(itertools.islice(pads, need))
                plans.append(CallPlan(language, jobs[language], scored, padding))
            continue
        closed = [a for a in mine if a.question == "closed"]
        open_ = [a for a in mine if a.question != "closed"]
        closed_pads = itertools.cycle(closed or shortest)
        per_open = per_call - 1
        calls = max(-(-len(open_) // per_open), len(closed))
        for index in range(calls):
            sequence = [(a, True) for a in open_[index * per_open : (index + 1) * per_open]]
            sequence += [(next(pads), False) for _ in range(per_open - len(sequence))]
            sequence.append(
                (closed[index], True) if index < len(closed) else (next(closed_pads), False)
            )
            sequence += [(next(pads), False) for _ in range(extra_padding)]
            plans.append(
                CallPlan(
                    language,
                    jobs[language],
                    scored=[a for a, scored in sequence if scored],
                    padding=[a for a, scored in sequence if not scored],
                    sequence=sequence,
                )
            )
    return plans


def write_jobs(dialogues_dir: Path, languages: Iterable[str] = JOBS) -> Path:
    """Write the harness's jobs (:data:`JOBS`) into ``dialogues_dir``; return it.

    Each is the language's bundled job (:data:`BUNDLED_JOBS`) under a new id, with the
    closed question of :data:`CLOSED_QUESTIONS` added last, marked ``answer: closed``.
    """
    import yaml

    from voicebot.config import PROJECT_ROOT

    dialogues_dir.mkdir(parents=True, exist_ok=True)
    for language in languages:
        source = PROJECT_ROOT / "dialogues" / f"{BUNDLED_JOBS[language]}.yaml"
        job = yaml.safe_load(source.read_text(encoding="utf-8"))
        job["id"] = JOBS[language]
        job["questions"] = [*job["questions"], {**CLOSED_QUESTIONS[language], "answer": "closed"}]
        (dialogues_dir / f"{JOBS[language]}.yaml").write_text(
            yaml.safe_dump(job, allow_unicode=True, sort_keys=False), encoding="utf-8"
        )
    return dialogues_dir


def schedule(plans: Sequence[CallPlan], concurrency: int) -> list[CallPlan]:
    """The calls to place: every plan once, repeated round-robin until ``concurrency`` calls."""
    total = max(len(plans), concurrency)
    return list(itertools.islice(itertools.cycle(plans), total))


_CLIPS: dict[str, CandidateAnswer] = {}


def clip(answer: Answer, name: str) -> CandidateAnswer:
    """The answer as the caller sends it (8 kHz mu-law), named ``name``."""
    from voicebot.audio.frames import read_wav

    if answer.id not in _CLIPS:
        pcm, rate = read_wav(answer.path)
        _CLIPS[answer.id] = CandidateAnswer.from_pcm(answer.id, pcm, rate)
    loaded = _CLIPS[answer.id]
    return CandidateAnswer(name=name, ulaw=loaded.ulaw, voice_end_secs=loaded.voice_end_secs)


def pad_name(index: int, answer: Answer) -> str:
    """A padding clip's name in the caller's turns (never scored)."""
    return f"pad{index}:{answer.id}"


# -- words -----------------------------------------------------------------------------------

_ANNOTATION = re.compile(r"\[[^\]]*\]|<[^>]*>")
_EN_DIGITS = "zero one two three four five six seven eight nine".split()
_ZH_DIGITS = "零一二三四五六七八九"


def normalise(text: str, language: str) -> list[str]:
    """Tokens to compare: words (English) or characters (Chinese), lower case, no punctuation.

    Annotations (``[laughter]``) are dropped; digits are spelled (a lone English digit as its
    word, each Chinese digit as its numeral: Whisper writes "6" and "1234" for "six", "一二三四").
    """
    text = unicodedata.normalize("NFKC", _ANNOTATION.sub(" ", text)).lower()
    if language.startswith("zh"):
        return [
            _ZH_DIGITS[int(c)] if c.isdecimal() and c.isascii() else c
            for c in text
            if unicodedata.category(c)[0] in "LN"
        ]
    cleaned = "".join(
        c if unicodedata.category(c)[0] in "LN" or c.isspace() else ("" if c == "'" else " ")
        for c in text
    )
    return [
        _EN_DIGITS[int(w)] if len(w) == 1 and w.isdecimal() and w.isascii() else w
        for w in cleaned.split()
    ]


def edit_distance(reference: Sequence[str], hypothesis: Sequence[str]) -> int:
    """Levenshtein distance between two token sequences (substitutions, insertions, deletions)."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, 1):
        current = [i] + [0] * len(hypothesis)
        for j, hyp in enumerate(hypothesis, 1):
            current[j] = min(
                previous[j] + 1,
                current[j - 1] + 1,
                previous[j - 1] + (ref != hyp),
            )
        previous = current
    return previous[-1]


def error_counts(reference: str, hypothesis: str, language: str) -> tuple[int, int]:
    """(edits, reference tokens): WER's numerator and denominator (CER's for Chinese)."""
    ref = normalise(reference, language)
    return edit_distance(ref, normalise(hypothesis, language)), len(ref)


# -- scoring ---------------------------------------------------------------------------------


@dataclass
class LiveOutcome:
    """One scored answer clip in one call."""

    id: str
    split: str
    language: str
    kinds: list[str]
    call: int
    call_sid: str
    played: bool
    question_id: str | None = None
    start: float | None = None
    true_end: float | None = None
    clip_end: float | None = None
    interrupted: bool = False
    interrupting_prompts: list[str] = field(default_factory=list)
    latency: float | None = None
    reply_prompt: str | None = None
    resume_hear_secs: list[float] = field(default_factory=list)
    overlap_secs: list[float] = field(default_factory=list)
    barge_ins: int = 0
    skipped_or_reprompted: list[str] = field(default_factory=list)
    take_your_time: int = 0
    end_reasons: list[str] = field(default_factory=list)
    """Why the server ended each turn in the answer (``speech_ended`` reasons, up to the reply)."""
    heard: str = ""
    stored_turns: int = 0
    edits: int = 0
    reference_tokens: int = 0
    wer: float | None = None
    heard_by_time: str = ""
    wer_by_time: float | None = None
    unheard_secs: float = 0.0
    voice_to_voice: float | None = None
    talked_over: bool = False
    clearly_finished: bool = False
    """The set calls the answer clearly finished (:attr:`Answer.clearly_finished`)."""


def read_timeline(path: Path) -> list[dict[str, Any]]:
    """The call's timeline events in time order (an unreadable line is skipped).

    A timeline encrypted at rest is decrypted with ``VOICEBOT_DATA_KEY`` from the environment.
    """
    from voicebot.crypto import Keyring, json_lines, read_stored_file

    if not path.is_file():
        return []
    keyring = Keyring.parse(os.environ.get("VOICEBOT_DATA_KEY", ""))
    events = list(json_lines(read_stored_file(path, keyring, allow_truncated=True)))
    events.sort(key=lambda e: e.get("t", 0.0))
    return events


def question_at(events: Sequence[dict[str, Any]], t: float) -> str | None:
    """The question whose prompt (``q:<id>`` or its follow-up ``f:<id>``) last started by ``t``."""
    question = None
    for event in events:
        if event.get("t", 0.0) > t:
            break
        prompt = event.get("prompt_id") or ""
        if event["event"] == "prompt_started" and prompt[:2] in ("q:", "f:"):
            question = prompt[2:]
    return question


def score_answer(
    answer: Answer,
    turn: TurnRecord | None,
    clip_secs: float,
    events: Sequence[dict[str, Any]],
    stored_turns: Sequence[dict[str, Any]],
    *,
    call: int = 0,
    call_sid: str = "",
) -> LiveOutcome:
    """One answer's figures from its caller turn, the call's timeline and stored turns."""
    outcome = LiveOutcome(
        answer.id, answer.split, answer.language, answer.kinds, call, call_sid, turn is not None
    )
    outcome.clearly_finished = answer.clearly_finished
    if turn is None:
        return outcome
    start = turn.start
    true_end = start + answer.answer_end
    clip_end = start + clip_secs
    outcome.start, outcome.true_end, outcome.clip_end = (
        round(start, 3),
        round(true_end, 3),
        round(clip_end, 3),
    )
    outcome.voice_to_voice = (
        None if turn.voice_to_voice_secs is None else round(turn.voice_to_voice_secs, 3)
    )
    outcome.talked_over = turn.talked_over
    cutoff = true_end - INTERRUPT_TOLERANCE_SECS
    ended = {e.get("mark"): e for e in events if e["event"] == "prompt_ended"}
    speech_starts = [e["t"] for e in events if e["event"] == "speech_started"]
    for event in events:
        kind, t = event["event"], event.get("t", 0.0)
        prompt = event.get("prompt_id") or ""
        if kind == "prompt_started" and start <= t and prompt not in ASIDE_PROMPTS:
            if t < cutoff:
                outcome.interrupting_prompts.append(f"{prompt}@{t - start:.2f}")
                cut = ended.get(event.get("mark"))
                if cut is not None and cut.get("interrupted"):
                    # The voice that cut it: the last speech start by the cut (backdated).
                    voice = max((s for s in speech_starts if s <= cut["t"]), default=t)
                    outcome.overlap_secs.append(round(cut["t"] - t, 3))
                    outcome.resume_hear_secs.append(round(max(0.0, cut["t"] - max(t, voice)), 3))
            elif outcome.latency is None and not outcome.interrupting_prompts:
                outcome.latency = round(t - true_end, 3)
                outcome.reply_prompt = prompt
        if start <= t <= true_end:
            if kind in SKIP_EVENTS:
                outcome.skipped_or_reprompted.append(f"{kind}@{t - start:.2f}")
            elif kind == "prompt_started" and prompt in REPROMPT_PROMPTS:
                outcome.skipped_or_reprompted.append(f"{prompt}@{t - start:.2f}")
        if start <= t < true_end and kind == "prompt_started" and prompt in ASIDE_PROMPTS:
            outcome.take_your_time += 1
        if start <= t < cutoff and kind == "barge_in":
            outcome.barge_ins += 1
        if kind == "speech_unheard" and start - 0.1 <= t <= clip_end + UNHEARD_SLACK_SECS:
            outcome.unheard_secs = round(outcome.unheard_secs + float(event.get("secs", 0.0)), 3)
    outcome.interrupted = bool(outcome.interrupting_prompts)
    if outcome.interrupted:
        outcome.latency = None
        outcome.reply_prompt = None
    until = true_end + outcome.latency if outcome.latency is not None else clip_end + 5.0
    outcome.end_reasons = [
        f"{e.get('reason')}@{e['t'] - start:.2f}"
        for e in events
        if e["event"] == "speech_ended" and start <= e["t"] <= until + 0.01
    ]
    # Words: the stored turns that overlap the clip's playing (by time) and, of those, the
    # ones under the question the clip answered (the last question asked before it started).
    # A turn under the question but outside the clip is another clip's (a re-asked question).
    outcome.question_id = question_at(events, start + 0.02)
    overlapping = [
        t
        for t in stored_turns
        if t.get("speaker") == "candidate"
        and t.get("start") is not None
        and t["start"] < clip_end + UNHEARD_SLACK_SECS
        and (t.get("end") if t.get("end") is not None else t["start"]) > start - 0.1
    ]
    mine = [t for t in overlapping if t.get("question_id") == outcome.question_id]
    outcome.stored_turns = len(mine)
    outcome.heard = _join([t.get("text") or "" for t in mine], answer.language)
    outcome.edits, outcome.reference_tokens = error_counts(
        answer.transcript, outcome.heard, answer.language
    )
    if outcome.reference_tokens:
        outcome.wer = round(outcome.edits / outcome.reference_tokens, 3)
    outcome.heard_by_time = _join([t.get("text") or "" for t in overlapping], answer.language)
    edits, tokens = error_counts(answer.transcript, outcome.heard_by_time, answer.language)
    if tokens:
        outcome.wer_by_time = round(edits / tokens, 3)
    return outcome


def _join(texts: Iterable[str], language: str) -> str:
    separator = "" if language.startswith("zh") else " "
    return separator.join(t.strip() for t in texts if t.strip())


# -- running calls ---------------------------------------------------------------------------


@dataclass
class Endpoint:
    """A server to call: its URL, API and Twilio tokens, and where its recordings are."""

    url: str
    api_token: str
    twilio_auth_token: str | None
    recordings_dir: Path | None = None

    def request(self, method: str, path: str, body: object | None = None) -> tuple[int, Any]:
        """One API request; (status, parsed JSON or text)."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url.rstrip("/") + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        req.add_header("Authorization", f"Bearer {self.api_token}")
        try:
            with urllib.request.urlopen(req, timeout=30) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")

    def create_interview(self, job_id: str, candidate_id: str, name: str) -> dict[str, Any]:
        """A new interview of ``job_id`` for a made-up candidate (raises if refused)."""
        status, interview = self.request(
            "POST",
            "/api/interviews",
            {
                "job_id": job_id,
                "candidate": {"id": candidate_id, "name": name, "phone": "+15550100"},
            },
        )
        if status != 201:
            raise RuntimeError(f"cannot create an interview for {job_id}: {status} {interview}")
        return interview

    def questions(self, job_id: str) -> int:
        """How many questions the job asks."""
        status, jobs = self.request("GET", "/api/jobs")
        if status != 200:
            raise RuntimeError(f"GET /api/jobs answered {status}: {jobs}")
        for job in jobs:
            if job["id"] == job_id:
                return len(job["questions"])
        raise RuntimeError(f"job {job_id} is not loaded on {self.url}")

    def call_record(
        self, call_sid: str, answers: int, interview_id: str | None = None
    ) -> dict[str, Any] | None:
        """The server's record of a finished call, once it has its end and its answers' words.

        The words are all in once there is a stored turn per answer played, or once the
        interview's report is built (the server builds it after the last answer is stored).
        """
        deadline = time.monotonic() + RECORD_WAIT_SECS
        record: dict[str, Any] | None = None
        while True:
            status, data = self.request("GET", f"/api/calls/{call_sid}")
            if status == 200 and isinstance(data, dict):
                record = data
                spoken = [t for t in data.get("turns", []) if t["speaker"] == "candidate"]
                if data.get("end_reason") is not None:
                    if len(spoken) >= answers:
                        return record
                    if interview_id is not None:
                        status, interview = self.request("GET", f"/api/interviews/{interview_id}")
                        if status == 200 and interview.get("status") not in (
                            "pending",
                            "in_progress",
                            "scoring",
                        ):
                            return self.request("GET", f"/api/calls/{call_sid}")[1]
            if time.monotonic() > deadline:
                return record
            time.sleep(0.5)

    def timeline(self, call_sid: str, record: dict[str, Any] | None) -> list[dict[str, Any]]:
        """The call's timeline events (from the recording folder on this machine)."""
        folder = (record or {}).get("recording_dir")
        if folder:
            path = Path(folder) / "timeline.jsonl"
        elif self.recordings_dir is not None:
            path = self.recordings_dir / call_sid / "timeline.jsonl"
        else:
            return []
        # The recorder closes the timeline as the call ends: give the last lines a moment.
        for _ in range(20):
            events = read_timeline(path)
            if any(e["event"] == "call_ended" for e in events):
                return events
            time.sleep(0.25)
        return read_timeline(path)


@dataclass
class CallOutcome:
    """One placed call: how it went and its scored answers."""

    index: int
    language: str
    job_id: str
    call_sid: str
    answers: list[str]
    error: str | None
    closed_by: str
    end_reason: str | None
    duration_secs: float
    unanswered_prompts: int
    answers_played: int
    timeline_events: int
    outcomes: list[LiveOutcome]
    caller_turns: list[dict[str, Any]] = field(default_factory=list)
    """The caller's side (seconds since the stream opened), to check the scoring against."""


async def place_call(
    endpoint: Endpoint, plan: CallPlan, index: int, *, max_call_secs: float = 300.0
) -> CallOutcome:
    """Hold one interview with ``plan``'s clips and score its scored clips."""
    interview = await asyncio.to_thread(
        endpoint.create_interview, plan.job_id, f"turn-live-{index}", "Turn Live"
    )
    clips = [
        clip(a, a.id if scored else pad_name(i, a)) for i, (a, scored) in enumerate(plan.played())
    ]
    result: CallResult = await run_call(
        endpoint.url,
        answers=clips,
        interview_id=interview["id"],
        dtmf={0: "1"},
        twilio_auth_token=endpoint.twilio_auth_token,
        max_call_secs=max_call_secs,
    )
    spoken = [t for t in result.turns if t.speaker == "candidate" and t.answer is not None]
    record = await asyncio.to_thread(
        endpoint.call_record, result.call_sid, len(spoken), interview["id"]
    )
    events = await asyncio.to_thread(endpoint.timeline, result.call_sid, record)
    stored = (record or {}).get("turns", [])
    by_name = {t.answer: t for t in spoken}
    outcomes = [
        score_answer(
            answer,
            by_name.get(answer.id),
            clip(answer, answer.id).duration_secs,
            events,
            stored,
            call=index,
            call_sid=result.call_sid,
        )
        for answer in plan.scored
    ]
    return CallOutcome(
        index=index,
        language=plan.language,
        job_id=plan.job_id,
        call_sid=result.call_sid,
        answers=[a.id for a in plan.scored],
        error=result.error,
        closed_by=result.closed_by,
        end_reason=(record or {}).get("end_reason"),
        duration_secs=round(result.duration_secs, 2),
        unanswered_prompts=result.unanswered_prompts,
        answers_played=len(spoken),
        timeline_events=len(events),
        outcomes=outcomes,
        caller_turns=[_caller_turn(t) for t in result.turns],
    )


def _caller_turn(turn: TurnRecord) -> dict[str, Any]:
    data: dict[str, Any] = {"speaker": turn.speaker, "start": round(turn.start, 3)}
    data["end"] = round(turn.end, 3)
    if turn.speaker == "bot":
        data.update(marks=turn.marks, interrupted=turn.interrupted)
    else:
        data.update(answer=turn.answer, dtmf=turn.dtmf, talked_over=turn.talked_over)
        if turn.voice_to_voice_secs is not None:
            data["voice_to_voice"] = round(turn.voice_to_voice_secs, 3)
    return data


async def run_calls(
    endpoint: Endpoint,
    plans: Sequence[CallPlan],
    concurrency: int,
    *,
    ramp_secs: float | None = None,
    first_index: int = 0,
    progress: bool = True,
) -> list[CallOutcome]:
    """Place every plan's call (repeated up to ``concurrency``), ``concurrency`` at a time."""
    calls = schedule(plans, concurrency)
    ramp = ramp_secs if ramp_secs is not None else min(0.5 * concurrency, 20.0)
    slots = asyncio.Semaphore(concurrency)
    started = time.monotonic()

    async def one(position: int, plan: CallPlan) -> CallOutcome:
        if 0 < position < concurrency and ramp > 0:  # never yield before the first call
            await asyncio.sleep(ramp * position / concurrency)
        async with slots:
            outcome = await place_call(endpoint, plan, first_index + position)
        if progress:
            print(
                f"[{time.monotonic() - started:6.1f} s] call {first_index + position} "
                f"({plan.language}, {len(plan.scored)} scored): {outcome.closed_by}, "
                f"{outcome.end_reason}, {outcome.duration_secs:.0f} s"
                + (f", error {outcome.error}" if outcome.error else ""),
                flush=True,
            )
        return outcome

    return list(await asyncio.gather(*(one(i, plan) for i, plan in enumerate(calls))))


# -- report ----------------------------------------------------------------------------------


def summarise(outcomes: Sequence[LiveOutcome]) -> dict[str, Any]:
    """One group's figures (answers that were never played count only in ``not_played``)."""
    played = [o for o in outcomes if o.played]
    n = len(played)
    latencies = [o.latency for o in played if o.latency is not None]
    finished = [o.latency for o in played if o.clearly_finished and o.latency is not None]
    resumes = [r for o in played for r in o.resume_hear_secs]
    overlaps = [r for o in played for r in o.overlap_secs]
    v2v = [o.voice_to_voice for o in played if o.voice_to_voice is not None]
    interrupted = sum(o.interrupted for o in played)
    languages = {o.language for o in played}
    edits = sum(o.edits for o in played)
    tokens = sum(o.reference_tokens for o in played)
    return {
        "answers": n,
        "not_played": len(outcomes) - n,
        "interruptions": interrupted,
        "interruptions_per_100": round(100 * interrupted / n, 1) if n else None,
        "latency_p50": _round(pct(latencies, 50)),
        "latency_p95": _round(pct(latencies, 95)),
        "clearly_finished": len(finished),
        "clearly_finished_p50": _round(pct(finished, 50)),
        "clearly_finished_p95": _round(pct(finished, 95)),
        "no_reply": sum(1 for o in played if not o.interrupted and o.latency is None),
        "reprompted_after": sum(1 for o in played if o.reply_prompt in REPROMPT_PROMPTS),
        "resume_hear_p95": _round(pct(resumes, 95)),
        "overlap_p95": _round(pct(overlaps, 95)),
        "barge_ins": sum(o.barge_ins for o in played),
        "error_rate": round(edits / tokens, 3) if tokens and len(languages) == 1 else None,
        "error_rate_median": _round(pct([o.wer for o in played if o.wer is not None], 50))
        if len(languages) == 1
        else None,
        "error_unit": ("CER" if languages == {"zh"} else "WER") if len(languages) == 1 else None,
        "no_words": sum(1 for o in played if not o.heard.strip()),
        "unheard_secs": round(sum(o.unheard_secs for o in played), 2),
        "answers_with_unheard": sum(1 for o in played if o.unheard_secs > 0),
        "skipped_or_reprompted": sum(len(o.skipped_or_reprompted) for o in played),
        "take_your_time": sum(o.take_your_time for o in played),
        "voice_to_voice_p50": _round(pct(v2v, 50)),
        "voice_to_voice_p95": _round(pct(v2v, 95)),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def group_outcomes(outcomes: Sequence[LiveOutcome]) -> dict[str, list[LiveOutcome]]:
    """Groups: ``<language>/<split>``, each language, each split, and ``all``."""
    groups: dict[str, list[LiveOutcome]] = {"all": list(outcomes)}
    for o in outcomes:
        groups.setdefault(f"{o.language}/{o.split}", []).append(o)
        groups.setdefault(o.language, []).append(o)
        groups.setdefault(o.split, []).append(o)
    return groups


GROUP_ORDER = ("en/tune", "en/holdout", "en", "zh/tune", "zh/holdout", "zh", "tune", "holdout")


def build_report(
    calls: Sequence[CallOutcome], *, settings: dict[str, Any], wall_secs: float
) -> dict[str, Any]:
    """The JSON report: settings, per-group summaries, every call and every scored answer."""
    outcomes = [o for c in calls for o in c.outcomes]
    groups = group_outcomes(outcomes)
    order = [g for g in GROUP_ORDER if g in groups] + ["all"]
    return {
        "mode": "real-time",
        **settings,
        "wall_secs": round(wall_secs, 1),
        "calls_placed": len(calls),
        "failed_calls": [
            {"call": c.index, "call_sid": c.call_sid, "error": c.error, "end_reason": c.end_reason}
            for c in calls
            if c.error or c.end_reason != "completed"
        ],
        "summary": {g: summarise(groups[g]) for g in order},
        "calls": [{k: v for k, v in asdict(c).items() if k != "outcomes"} for c in calls],
        "outcomes": [asdict(o) for o in outcomes],
    }


def markdown(report: dict[str, Any]) -> str:
    """The table: one row per language/split group."""
    failed = report["failed_calls"]
    lines = [
        f"Real-time turn-taking: {report['calls_placed']} calls ({report['concurrency']} at once), "
        f"policy {report['policy']}, {report['wall_secs']} s wall time, load average "
        f"{_load(report.get('load_average_1min'))}"
        + (f"; {len(failed)} calls failed or did not complete" if failed else "")
        + ".",
        "",
        "| group | answers | interruptions /100 | latency p50 | p95 "
        "| clearly finished: n | p50 | p95 | re-prompted after "
        "| resume heard p95 | overlap p95 | WER/CER (median) | no words | unheard s "
        "| skipped/reprompted while speaking | take your time | v2v p50 | v2v p95 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for group, s in report["summary"].items():
        rate = (
            "-"
            if s["error_rate"] is None
            else f"{s['error_unit']} {s['error_rate']:.2f} ({_fmt(s['error_rate_median'])})"
        )
        lines.append(
            f"| {group} | {s['answers']}"
            + (f" (+{s['not_played']} not played)" if s["not_played"] else "")
            + f" | {_fmt(s['interruptions_per_100'], 1)} | {_fmt(s['latency_p50'])} | "
            f"{_fmt(s['latency_p95'])} | {s['clearly_finished']} | "
            f"{_fmt(s['clearly_finished_p50'])} | {_fmt(s['clearly_finished_p95'])} | "
            f"{s['reprompted_after']} | {_fmt(s['resume_hear_p95'])} | "
            f"{_fmt(s['overlap_p95'])} | {rate} | {s['no_words']} | {s['unheard_secs']} | "
            f"{s['skipped_or_reprompted']} | {s['take_your_time']} | "
            f"{_fmt(s['voice_to_voice_p50'])} | {_fmt(s['voice_to_voice_p95'])} |"
        )
    lines += [
        "",
        "Seconds. Latency: the answer's true end -> the bot's next prompt (not interrupted "
        "answers; a re-prompt after a silence timeout counts, see 're-prompted after'). "
        "Resume heard: a cut prompt's play time after the candidate's voice resumed; overlap: "
        "its whole play time. WER/CER: all edits / all reference tokens (median per answer). "
        "v2v: the caller's voice-to-voice.",
    ]
    no_reply = sum(s["no_reply"] for g, s in report["summary"].items() if g == "all")
    if no_reply:
        lines.append(f"- {no_reply} answers got no bot prompt after them at all.")
    for call in failed:
        lines.append(
            f"- call {call['call']} ({call['call_sid']}): error {call['error']}, "
            f"ended {call['end_reason']}"
        )
    return "\n".join(lines) + "\n"


def _load(load: dict[str, Any] | None) -> str:
    if not load:
        return "-"
    return f"mean {load['mean']} / max {load['max']} on {load['cores']} cores"


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def plot(report: dict[str, Any], path: Path) -> None:
    """Interruptions per 100 answers against p50/p95 latency, one point pair per group."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 5))
    for group, s in report["summary"].items():
        if s["latency_p50"] is None or "/" not in group and group != "all":
            continue
        x = s["interruptions_per_100"]
        axes.plot([x, x], [s["latency_p50"], s["latency_p95"]], "-", color="grey", lw=1)
        axes.plot(x, s["latency_p50"], "o", label=f"{group} p50")
        axes.plot(x, s["latency_p95"], "^")
        axes.annotate(
            f"{group} (n={s['answers']})",
            (x, s["latency_p95"]),
            fontsize=8,
            xytext=(3, 3),
            textcoords="offset points",
        )
    axes.set_xlabel("interruptions per 100 answers")
    axes.set_ylabel("latency after the true end, s (o p50, ^ p95)")
    axes.set_title(f"Live calls, policy {report['policy']}, {report['concurrency']} at once")
    axes.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_report(report: dict[str, Any], out: Path) -> Path:
    """Write ``turn-live-<time>.{json,md,png}`` into ``out``; returns the stem."""
    out.mkdir(parents=True, exist_ok=True)
    stem = out / time.strftime("turn-live-%Y%m%d-%H%M%S")
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1, ensure_ascii=False))
    stem.with_suffix(".md").write_text(markdown(report))
    plot(report, stem.with_suffix(".png"))
    return stem


# -- main ------------------------------------------------------------------------------------


class LoadSampler:
    """The machine's 1-minute load average every 10 s while the benchmark runs.

    Other work on the same cores (another test run, a build) delays the server's audio and
    models and so shows in the latencies: the report says how busy the machine was.
    """

    def __init__(self, every_secs: float = 10.0) -> None:
        self.every_secs = every_secs
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load-sampler", daemon=True)

    def start(self) -> LoadSampler:
        """Start sampling in a daemon thread."""
        self._thread.start()
        return self

    def _run(self) -> None:
        while True:
            self.samples.append(round(os.getloadavg()[0], 2))
            if self._stop.wait(self.every_secs):
                return

    def stop(self) -> dict[str, float | None]:
        """Stop sampling; the load average's mean and max over the run (cores: os.cpu_count)."""
        self._stop.set()
        self._thread.join(timeout=2)
        samples = self.samples or [round(os.getloadavg()[0], 2)]
        return {
            "mean": round(sum(samples) / len(samples), 2),
            "max": max(samples),
            "cores": os.cpu_count(),
        }


def run_language(
    endpoint: Endpoint,
    answers: Sequence[Answer],
    language: str,
    concurrency: int,
    *,
    first_index: int = 0,
    ramp_secs: float | None = None,
    progress: bool = True,
    jobs: dict[str, str] | None = None,
) -> list[CallOutcome]:
    """Place one language's calls against ``endpoint``.

    ``jobs``: the job per language; the harness's own (:data:`JOBS`, a closed question last) by
    default, else (a server without them) every answer goes to the next question whatever its kind.
    """
    harness = jobs is None
    jobs = JOBS if jobs is None else jobs
    questions = endpoint.questions(jobs[language])
    plans = plan_calls(
        [a for a in answers if a.language == language],
        {language: questions},
        closed_last=harness,
        jobs=jobs,
    )
    # Load every clip now: that runs Silero VAD, which must not stall the callers' event loop.
    for plan in plans:
        for answer, _ in plan.played():
            clip(answer, answer.id)
    return asyncio.run(
        run_calls(
            endpoint,
            plans,
            concurrency,
            ramp_secs=ramp_secs,
            first_index=first_index,
            progress=progress,
        )
    )


def main(argv: list[str] | None = None) -> int:
    """Run the real-time benchmark and write JSON, Markdown and a PNG plot."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1, help="calls up at once (default 1)")
    parser.add_argument("--split", choices=("all", "tune", "holdout"), default="all")
    parser.add_argument("--language", choices=("all", "en", "zh"), default="all")
    parser.add_argument("--policy", choices=("words", "acoustic"), default="words")
    parser.add_argument(
        "--url", help="a running server to call instead (its own policy; same machine)"
    )
    parser.add_argument("--recordings-dir", type=Path, help="with --url: its recordings folder")
    parser.add_argument("--api-token", help="with --url: its API token (default: the tests')")
    parser.add_argument("--twilio-auth-token", help="with --url: its Twilio auth token")
    parser.add_argument("--ramp", type=float, help="seconds to ramp up to --calls (default 0.5 N)")
    parser.add_argument("--manifest", type=Path, default=EVAL_DIR / "manifest.json")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    if args.calls < 1:
        parser.error("--calls must be at least 1")
    answers = load_set(args.manifest)
    if args.split != "all":
        answers = [a for a in answers if a.split == args.split]
    languages = [lang for lang in ("en", "zh") if args.language in ("all", lang)]
    languages = [lang for lang in languages if any(a.language == lang for a in answers)]
    from tests.conftest import API_TOKEN, TWILIO_AUTH_TOKEN

    started = time.monotonic()
    load = LoadSampler().start()
    calls: list[CallOutcome] = []
    servers: dict[str, Any] = {}
    for language in languages:
        index = len(calls)
        if args.url:
            endpoint = Endpoint(
                args.url,
                args.api_token or API_TOKEN,
                args.twilio_auth_token or TWILIO_AUTH_TOKEN,
                args.recordings_dir,
            )
            calls += run_language(
                endpoint,
                answers,
                language,
                args.calls,
                first_index=index,
                ramp_secs=args.ramp,
                jobs=BUNDLED_JOBS,  # the harness's jobs are not on that server
            )
            continue
        from tests.conftest import start_server, stop_server

        tmp = Path(tempfile.mkdtemp(prefix=f"turn-live-{language}-"))
        env = {
            "VOICEBOT_TURN_POLICY": args.policy,
            "VOICEBOT_DIALOGUES_DIR": str(write_jobs(tmp / "dialogues", [language])),
            **SERVER_ENV[language],
        }
        print(f"starting a server for {language} ({env}) in {tmp}", flush=True)
        server = start_server(tmp, **env)
        servers[language] = {"env": env, "dir": str(tmp)}
        try:
            endpoint = Endpoint(server.url, API_TOKEN, TWILIO_AUTH_TOKEN, server.recordings_dir)
            calls += run_language(
                endpoint, answers, language, args.calls, first_index=index, ramp_secs=args.ramp
            )
        finally:
            try:
                stop_server(server)
            except AssertionError as exc:
                servers[language]["stop_error"] = str(exc)[:500]
    report = build_report(
        calls,
        settings={
            "policy": args.policy if not args.url else f"(the server's own, {args.url})",
            "concurrency": args.calls,
            "split": args.split,
            "languages": languages,
            "jobs": {lang: (BUNDLED_JOBS if args.url else JOBS)[lang] for lang in languages},
            "servers": servers,
            "manifest": str(args.manifest),
            "load_average_1min": load.stop(),
        },
        wall_secs=time.monotonic() - started,
    )
    stem = write_report(report, args.out)
    print(markdown(report))
    print(f"written {stem}.json/.md/.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
