"""Resume benchmark, real time: the candidate goes on talking just as the bot starts its reply.

The turn-taking benchmark (:mod:`loadtest.turn_live`) measures whether the bot waits for the end
of an answer. This one measures the recovery when it did not wait long enough, on purpose: each
probe answers a question with a short clip A of the evaluation set
(``loadtest/turn_eval/manifest.json``), waits until the bot's reply (the next question) starts
playing, and ``delay`` seconds into it plays a second clip B, as a candidate who had not
finished. A person would expect the bot to stop at once, keep what they said as part of the same
answer, and ask the next question again only once they are done. Per probe, from the caller's
side (seconds since the stream opened) and the call's timeline and stored turns:

- heard over: from the voice of B beginning (Silero VAD on the clip, its first window of
  speech) to the ``clear`` that stopped the bot's audio (Twilio drops what it buffered at once):
  how long the candidate heard the bot over their own voice. A prompt that was not stopped counts
  its whole play after B's voice began, and the probe counts as not stopped;
- server reaction: the timeline's ``barge_in`` minus B's voice start (the clock of the stream);
- same answer: every stored candidate turn between A's start and B's end is stored against A's
  question, and B's words are there (WER/CER of the question's turns against A + B's
  transcripts, and of B's alone);
- asked again after: the cut prompt is started again, after B's true end (seconds after it),
  never while B still speaks;
- talked over: any other prompt (not the ``take_your_time`` aside) started while B spoke;
  unheard: seconds of ``speech_unheard`` during B.

Each call answers the consent with a key press, then runs one probe per question but the last
(the harness job's closed question, answered plainly); ``delay`` cycles through
:data:`DELAYS`. Clip A is one of the set's short open answers of the language (the bot replies
after its open-question wait, as it does after a thinking pause); every clip of the set is
played once as B (split tune/holdout by B).

    python -m loadtest.resume_live [--calls N] [--language en|zh|all] [--limit K] [--out DIR]

Writes ``loadtest/results/resume-live-<time>.{json,md}`` and prints the Markdown.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from loadtest.caller import CallResult, TurnRecord, run_call, vad_voice_start
from loadtest.turn_bench import EVAL_DIR, INTERRUPT_TOLERANCE_SECS, RESULTS_DIR, Answer, load_set
from loadtest.turn_bench import pct as percentile
from loadtest.turn_live import (
    ASIDE_PROMPTS,
    CLOSED_QUESTIONS,
    JOBS,
    REPROMPT_PROMPTS,
    SKIP_EVENTS,
    UNHEARD_SLACK_SECS,
    Endpoint,
    LoadSampler,
    _join,
    clip,
    error_counts,
    normalise,
    question_at,
    schedule,
    write_jobs,
)

DELAYS = (0.1, 0.3, 0.6, 1.0)
"""Seconds into the bot's reply at which the candidate goes on (a breath, a beat, a clause)."""
A_MIN_SECS, A_MAX_SECS = 1.5, 4.0
"""Clip A: a short open answer (long enough not to be a lone word the VAD may miss)."""
RESUME_TARGET_SECS = 0.15
"""The issue's target: the bot silent within 150 ms (p95) of the candidate's voice."""


@dataclass
class Probe:
    """One question answered with A, then B over the start of the bot's reply."""

    first: Answer
    then: Answer
    delay: float


@dataclass
class ResumePlan:
    """One interview: a probe per question but the last, then the closed question's answer."""

    language: str
    job_id: str
    probes: list[Probe]
    closing: Answer
    padding: list[Answer] = field(default_factory=list)

    def clips(self) -> list[tuple[Answer, str]]:
        """Every clip in playing order with its name in the caller's turns."""
        played: list[tuple[Answer, str]] = []
        for index, probe in enumerate(self.probes):
            played += [(probe.first, f"A{index}:{probe.first.id}")]
            played += [(probe.then, f"B{index}:{probe.then.id}")]
        played.append((self.closing, f"closing:{self.closing.id}"))
        played += [(a, f"pad{i}:{a.id}") for i, a in enumerate(self.padding)]
        return played

    def barge_in(self) -> dict[int, float]:
        """The caller's talk-over plan, by answer index.

        Answer ``2q + 2`` (B of probe q) starts ``delay`` s into the prompt that follows A
        (answer 0 is the consent key, A of probe q is ``2q + 1``).
        """
        return {2 * (q + 1): probe.delay for q, probe in enumerate(self.probes)}


def plan_resume_calls(
    answers: Sequence[Answer], questions: dict[str, int], delays: Sequence[float] = DELAYS
) -> list[ResumePlan]:
    """Every clip of each language once as B, in probes of ``questions - 1`` a call."""
    plans: list[ResumePlan] = []
    delay = itertools.cycle(delays)
    for language in sorted({a.language for a in answers}):
        mine = [a for a in answers if a.language == language]
        short_open = [
            a for a in mine if a.question == "open" and A_MIN_SECS <= a.answer_end <= A_MAX_SECS
        ]
        firsts = itertools.cycle(short_open or mine)
        closed = [a for a in mine if a.question == "closed"] or short_open or mine
        closings = itertools.cycle(closed)
        per_call = max(1, questions[language] - 1)
        for index in range(0, len(mine), per_call):
            probes = [Probe(next(firsts), b, next(delay)) for b in mine[index : index + per_call]]
            # A re-asked question takes one more answer: padding, never scored.
            padding = list(itertools.islice(firsts, 2))
            plans.append(
                ResumePlan(language, JOBS[language], probes, next(closings), padding=padding)
            )
    return plans


@dataclass
class ProbeOutcome:
    """One probe's figures."""

    first: str
    then: str
    split: str
    language: str
    delay: float
    call: int
    call_sid: str
    played: bool = False
    cut_prompt: str | None = None
    stopped: bool = False
    heard_over_secs: float | None = None
    """The bot's audio the candidate heard after their voice began (clear - voice start)."""
    server_reaction_secs: float | None = None
    same_question: bool = False
    """Every candidate turn stored over A and B is under A's question."""
    stored_questions: list[str | None] = field(default_factory=list)
    heard: str = ""
    wer: float | None = None
    """A + B against the question's stored turns."""
    recall_then: float | None = None
    """Of B's words, the share found in the question's stored turns that overlap B."""
    asked_again_after: float | None = None
    """The cut prompt started again this long after B's true end (negative: over B)."""
    talked_over: list[str] = field(default_factory=list)
    skipped_or_reprompted: list[str] = field(default_factory=list)
    unheard_secs: float = 0.0
    problem: str | None = None


def _turn(turns: Sequence[TurnRecord], name: str) -> TurnRecord | None:
    return next((t for t in turns if t.speaker == "candidate" and t.answer == name), None)


_VOICE_START: dict[str, float] = {}


def voice_start(answer: Answer) -> float:
    """Where a listener hears the clip's voice begin (seconds into the clip)."""
    if answer.id not in _VOICE_START:
        start = vad_voice_start(clip(answer, answer.id).ulaw)
        _VOICE_START[answer.id] = 0.0 if start is None else start
    return _VOICE_START[answer.id]


def score_probe(
    probe: Probe,
    index: int,
    result: CallResult,
    events: Sequence[dict[str, Any]],
    stored_turns: Sequence[dict[str, Any]],
    *,
    call: int = 0,
) -> ProbeOutcome:
    """One probe's figures from the caller's turns, the call's timeline and its stored turns."""
    b = probe.then
    outcome = ProbeOutcome(
        probe.first.id, b.id, b.split, b.language, probe.delay, call, result.call_sid
    )
    first = _turn(result.turns, f"A{index}:{probe.first.id}")
    then = _turn(result.turns, f"B{index}:{b.id}")
    if first is None or then is None:
        outcome.problem = "not played" if first is None else "B never started (no reply to A)"
        return outcome
    outcome.played = True
    voice = then.start + voice_start(b)
    true_end = then.start + b.answer_end
    clip_end = then.start + clip(b, b.id).duration_secs
    # The bot's audio around B's voice: the turn B talked over, and its rest (the caller
    # opens a new bot turn for frames that arrive once B has started).
    over = [
        t
        for t in result.turns
        if t.speaker == "bot" and t.start <= max(voice, then.start) + 0.1 and t.end > voice
    ]
    clear = next((c for c in result.clears if then.start <= c <= true_end), None)
    if clear is not None:
        outcome.stopped = True
        outcome.heard_over_secs = round(clear - voice, 3)
    elif over:
        outcome.heard_over_secs = round(max(t.end for t in over) - voice, 3)
    else:
        outcome.problem = "the bot's reply had ended before B's voice began"
    barge = next(
        (e for e in events if e["event"] == "barge_in" and then.start - 0.1 <= e["t"] <= true_end),
        None,
    )
    if barge is not None:
        outcome.server_reaction_secs = round(barge["t"] - voice, 3)
        cut = [c.get("prompt_id") for c in barge.get("cut", [])]
        outcome.cut_prompt = next((p for p in cut if p), None)
    if outcome.cut_prompt is not None:
        again = next(
            (
                e["t"]
                for e in events
                if e["event"] == "prompt_started"
                and e.get("prompt_id") == outcome.cut_prompt
                and e["t"] > barge["t"]  # type: ignore[index]
            ),
            None,
        )
        if again is not None:
            outcome.asked_again_after = round(again - true_end, 3)
    for event in events:
        kind, t = event["event"], event.get("t", 0.0)
        prompt = event.get("prompt_id") or ""
        if voice <= t < true_end - INTERRUPT_TOLERANCE_SECS:
            if kind == "prompt_started" and prompt not in ASIDE_PROMPTS:
                outcome.talked_over.append(f"{prompt}@{t - then.start:.2f}")
            if kind in SKIP_EVENTS or (kind == "prompt_started" and prompt in REPROMPT_PROMPTS):
                outcome.skipped_or_reprompted.append(f"{kind}:{prompt}@{t - then.start:.2f}")
        if kind == "speech_unheard" and then.start - 0.1 <= t <= clip_end + UNHEARD_SLACK_SECS:
            outcome.unheard_secs = round(outcome.unheard_secs + float(event.get("secs", 0.0)), 3)
    # Words: the candidate turns stored from A's start to B's end, and their questions.
    question = question_at(events, first.start + 0.02)
    spoken = [
        t
        for t in stored_turns
        if t.get("speaker") == "candidate"
        and t.get("start") is not None
        and first.start - 0.1 < (t.get("end") if t.get("end") is not None else t["start"])
        and t["start"] < clip_end + UNHEARD_SLACK_SECS
    ]
    outcome.stored_questions = [t.get("question_id") for t in spoken]
    outcome.same_question = bool(spoken) and all(q == question for q in outcome.stored_questions)
    mine = [t for t in spoken if t.get("question_id") == question]
    outcome.heard = _join([t.get("text") or "" for t in mine], b.language)
    separator = "" if b.language.startswith("zh") else " "
    edits, tokens = error_counts(
        probe.first.transcript + separator + b.transcript, outcome.heard, b.language
    )
    outcome.wer = round(edits / tokens, 3) if tokens else None
    over_b = [t for t in mine if (t.get("end") or t["start"]) > then.start - 0.1]
    outcome.recall_then = word_recall(
        b.transcript, _join([t.get("text") or "" for t in over_b], b.language), b.language
    )
    return outcome


def word_recall(reference: str, hypothesis: str, language: str) -> float | None:
    """The share of the reference's words (characters for Chinese) found in the hypothesis.

    Counted as multisets, order aside: whether what the candidate said reached the stored
    turns at all (Whisper's insertions and repetition loops on a clip do not count against it,
    as they would in a WER).
    """
    ref, hyp = Counter(normalise(reference, language)), Counter(normalise(hypothesis, language))
    total = sum(ref.values())
    return round(sum((ref & hyp).values()) / total, 3) if total else None


async def place_resume_call(
    endpoint: Endpoint, plan: ResumePlan, index: int, *, max_call_secs: float = 400.0
) -> tuple[CallResult, list[ProbeOutcome]]:
    """Hold one interview of probes and score them."""
    interview = await asyncio.to_thread(
        endpoint.create_interview, plan.job_id, f"resume-{index}", "Resume Live"
    )
    result = await run_call(
        endpoint.url,
        answers=[clip(answer, name) for answer, name in plan.clips()],
        interview_id=interview["id"],
        dtmf={0: "1"},
        twilio_auth_token=endpoint.twilio_auth_token,
        max_call_secs=max_call_secs,
        barge_in=plan.barge_in(),
    )
    spoken = [t for t in result.turns if t.speaker == "candidate" and t.answer is not None]
    record = await asyncio.to_thread(
        endpoint.call_record, result.call_sid, len(spoken), interview["id"]
    )
    events = await asyncio.to_thread(endpoint.timeline, result.call_sid, record)
    stored = (record or {}).get("turns", [])
    outcomes = [
        score_probe(probe, q, result, events, stored, call=index)
        for q, probe in enumerate(plan.probes)
    ]
    return result, outcomes


def summarise(outcomes: Sequence[ProbeOutcome]) -> dict[str, Any]:
    """One group's figures."""
    played = [o for o in outcomes if o.played]
    heard = [o.heard_over_secs for o in played if o.heard_over_secs is not None]
    reaction = [o.server_reaction_secs for o in played if o.server_reaction_secs is not None]
    again = [o.asked_again_after for o in played if o.asked_again_after is not None]
    wers = [o.wer for o in played if o.wer is not None]
    return {
        "probes": len(outcomes),
        "played": len(played),
        "over_a_reply": len(heard),
        "stopped": sum(o.stopped for o in played),
        "heard_over_p50": _round(percentile(heard, 50)),
        "heard_over_p95": _round(percentile(heard, 95)),
        "heard_over_max": _round(max(heard, default=None)),
        "within_target": sum(1 for h in heard if h <= RESUME_TARGET_SECS),
        "server_reaction_p95": _round(percentile(reaction, 95)),
        "same_question": sum(o.same_question for o in played),
        "wer_median": _round(percentile(wers, 50)),
        "b_recall_median": _round(
            percentile([o.recall_then for o in played if o.recall_then is not None], 50)
        ),
        "b_words_missing": sum(1 for o in played if o.recall_then == 0.0),
        "asked_again": len(again),
        "asked_again_over_b": sum(1 for a in again if a < -INTERRUPT_TOLERANCE_SECS),
        "asked_again_p50": _round(percentile(again, 50)),
        "talked_over": sum(1 for o in played if o.talked_over),
        "skipped_or_reprompted": sum(len(o.skipped_or_reprompted) for o in played),
        "unheard_secs": round(sum(o.unheard_secs for o in played), 2),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def build_report(
    outcomes: Sequence[ProbeOutcome], calls: Sequence[dict[str, Any]], settings: dict[str, Any]
) -> dict[str, Any]:
    """Settings, per-group summaries (``<language>/<split>``, language, ``all``), every probe."""
    groups: dict[str, list[ProbeOutcome]] = {}
    for o in outcomes:
        groups.setdefault(f"{o.language}/{o.split}", []).append(o)
        groups.setdefault(o.language, []).append(o)
    groups["all"] = list(outcomes)
    return {
        **settings,
        "summary": {g: summarise(v) for g, v in sorted(groups.items(), key=_group_order)},
        "calls": list(calls),
        "outcomes": [asdict(o) for o in outcomes],
    }


def _group_order(item: tuple[str, Any]) -> tuple[int, str]:
    name = item[0]
    return (2 if name == "all" else 1 if "/" not in name else 0, name)


def markdown(report: dict[str, Any]) -> str:
    """The table, one row per group, and the probes that went wrong."""
    lines = [
        f"Resume over the bot's reply: {report['calls_placed']} calls ({report['concurrency']} at "
        f"once), {report['wall_secs']} s, load average {report['load_average_1min']}.",
        "",
        "| group | probes | over a reply | stopped | heard over p50 | p95 | max | <= 150 ms "
        "| server reaction p95 | same question | WER/CER median | B's words found (median) "
        "| none of B's words "
        "| asked again | of those over B | asked again p50 | talked over | skipped/reprompted "
        "| unheard s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for group, s in report["summary"].items():
        lines.append(
            f"| {group} | {s['probes']} | {s['over_a_reply']} | {s['stopped']} | "
            f"{_fmt(s['heard_over_p50'])} | {_fmt(s['heard_over_p95'])} | "
            f"{_fmt(s['heard_over_max'])} | {s['within_target']} | "
            f"{_fmt(s['server_reaction_p95'])} | {s['same_question']} | "
            f"{_fmt(s['wer_median'])} | {_fmt(s['b_recall_median'])} | "
            f"{s['b_words_missing']} | {s['asked_again']} | "
            f"{s['asked_again_over_b']} | {_fmt(s['asked_again_p50'])} | {s['talked_over']} | "
            f"{s['skipped_or_reprompted']} | {s['unheard_secs']} |"
        )
    lines += [
        "",
        "Seconds. Heard over: the bot's audio after the candidate's voice began (to the `clear`); "
        "server reaction: its `barge_in` after that voice; asked again: the cut prompt said "
        "again, seconds after the candidate's true end.",
    ]
    for o in report["outcomes"]:
        wrong = []
        if o["problem"]:
            wrong.append(o["problem"])
        if o["heard_over_secs"] is not None and not o["stopped"]:
            wrong.append("not stopped")
        if o["played"] and not o["same_question"]:
            wrong.append(f"stored under {o['stored_questions']}")
        if o["talked_over"] or o["skipped_or_reprompted"]:
            wrong.append(f"over B: {o['talked_over'] + o['skipped_or_reprompted']}")
        if (
            o["heard_over_secs"] is not None
            and o["heard_over_secs"] > RESUME_TARGET_SECS
            and o["stopped"]
        ):
            wrong.append(f"heard over {o['heard_over_secs']:.2f} s")
        if wrong:
            lines.append(
                f"- call {o['call']} {o['first']} then {o['then']} (+{o['delay']} s): "
                + "; ".join(wrong)
            )
    return "\n".join(lines) + "\n"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


async def run_calls(
    endpoint: Endpoint, plans: Sequence[ResumePlan], concurrency: int, first_index: int = 0
) -> tuple[list[ProbeOutcome], list[dict[str, Any]]]:
    """Place every plan's call (repeated up to ``concurrency``), ``concurrency`` at a time."""
    calls = schedule(plans, concurrency)  # type: ignore[arg-type]
    ramp = min(0.5 * concurrency, 20.0)
    slots = asyncio.Semaphore(concurrency)
    started = time.monotonic()

    async def one(position: int, plan: ResumePlan) -> tuple[CallResult, list[ProbeOutcome]]:
        if 0 < position < concurrency:
            await asyncio.sleep(ramp * position / concurrency)
        async with slots:
            result, outcomes = await place_resume_call(endpoint, plan, first_index + position)
        print(
            f"[{time.monotonic() - started:6.1f} s] call {first_index + position} "
            f"({plan.language}): {result.closed_by}, {result.duration_secs:.0f} s"
            + (f", error {result.error}" if result.error else ""),
            flush=True,
        )
        return result, outcomes

    done = await asyncio.gather(*(one(i, plan) for i, plan in enumerate(calls)))
    outcomes = [o for _, found in done for o in found]
    summary = [
        {
            "call": first_index + i,
            "call_sid": result.call_sid,
            "closed_by": result.closed_by,
            "error": result.error,
            "duration_secs": round(result.duration_secs, 2),
        }
        for i, (result, _) in enumerate(done)
    ]
    return outcomes, summary


def main(argv: list[str] | None = None) -> int:
    """Run the probes against a server per language (embedded defaults) and write the report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1, help="calls up at once (default 1)")
    parser.add_argument("--language", choices=("all", "en", "zh"), default="all")
    parser.add_argument("--limit", type=int, help="at most this many B clips per language")
    parser.add_argument("--manifest", type=Path, default=EVAL_DIR / "manifest.json")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    answers = load_set(args.manifest)
    languages = [lang for lang in ("en", "zh") if args.language in ("all", lang)]
    from tests.conftest import API_TOKEN, TWILIO_AUTH_TOKEN, start_server, stop_server

    started = time.monotonic()
    load = LoadSampler().start()
    outcomes: list[ProbeOutcome] = []
    calls: list[dict[str, Any]] = []
    for language in languages:
        mine = [a for a in answers if a.language == language][: args.limit]
        tmp = Path(tempfile.mkdtemp(prefix=f"resume-live-{language}-"))
        env = {"VOICEBOT_DIALOGUES_DIR": str(write_jobs(tmp / "dialogues", [language]))}
        server = start_server(tmp, **env)
        try:
            endpoint = Endpoint(server.url, API_TOKEN, TWILIO_AUTH_TOKEN, server.recordings_dir)
            plans = plan_resume_calls(mine, {language: endpoint.questions(JOBS[language])})
            for plan in plans:  # load the clips (Silero VAD) before any call starts
                for answer, _ in plan.clips():
                    clip(answer, answer.id)
                    voice_start(answer)
            found, placed = asyncio.run(run_calls(endpoint, plans, args.calls, len(calls)))
            outcomes += found
            calls += placed
        finally:
            stop_server(server)
    report = build_report(
        outcomes,
        calls,
        {
            "concurrency": args.calls,
            "languages": languages,
            "calls_placed": len(calls),
            "wall_secs": round(time.monotonic() - started, 1),
            "load_average_1min": load.stop(),
            "delays": list(DELAYS),
            "closed_question": {lang: CLOSED_QUESTIONS[lang]["prompt"] for lang in languages},
        },
    )
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / time.strftime("resume-live-%Y%m%d-%H%M%S")
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1, ensure_ascii=False))
    stem.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    print(f"written {stem}.json/.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
