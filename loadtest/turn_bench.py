"""Turn-taking benchmark: real conversational answers, each end-of-turn policy's decisions on them.

Offline mode (this module's ``main``): each answer of the evaluation set
(``loadtest/turn_eval/manifest.json``) goes through the phone path (16 kHz -> 8 kHz mu-law ->
back), the server's Silero VAD at 8 kHz and :class:`~voicebot.speech.turn.TurnDetector` find its
pauses, and at each pause the features the server would have are computed once and cached:
smart-turn's probability on the audio up to the pause (as the server computes it) and the words
Whisper hears in the turn so far (the server's speculative transcription). Each policy is then
replayed over the same pauses, much faster than real time: the smart-turn verdict arrives
``--smart-turn-delay`` after the pause and the words ``--asr-delay`` after it (what the real-time
mode measures on an idle server), and the first end of turn is compared with the answer's true
end (the last word's end in the corpus alignment, or the last voiced sample):

- interruption: the bot would have started before the answer's true end;
- latency: from the true end to the bot's first audio (end of turn + ``--reply-delay``), for
  answers that were not interrupted;
- resume: for an interrupted answer, how long the candidate hears the bot once they go on (from
  the later of the bot's start and their resuming to the barge-in: speech for
  ``min_speech_secs`` + ``barge_in_min_secs`` + one VAD batch);
- unheard: voiced VAD windows inside the answer that fell in no turn (a turn here spans from its
  speech start to its end; speech after a false end starts a new turn).

The real-time mode (:mod:`loadtest.turn_live`) plays the same answers through the server on real
sockets and reports the same figures from the call's timeline and stored turns, with WER.

    python -m loadtest.turn_bench [--split all|tune|holdout] [--policies baseline,default,...]

Writes ``loadtest/results/turn-bench-<time>.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from voicebot.audio.codec import ulaw_decode
from voicebot.audio.frames import MODEL_RATE, TELEPHONY_RATE, read_wav, to_phone_ulaw
from voicebot.audio.resample import resample
from voicebot.speech.turn import (
    SpeechPaused,
    SpeechResumed,
    SpeechStarted,
    TurnConfig,
    TurnDetector,
    TurnEnded,
)
from voicebot.speech.turn_policy import (
    PauseFeatures,
    QuestionContext,
    TurnPolicyConfig,
    decide,
    ends_on_closer,
)

ROOT = Path(__file__).resolve().parent
EVAL_DIR = ROOT / "turn_eval"
RESULTS_DIR = ROOT / "results"
CACHE_DIR = ROOT.parent / ".cache" / "turn-bench"
LEAD_SECS = 0.5
"""Silence before each answer (the candidate starts after the question)."""
TAIL_SECS = 6.0
"""Silence after each answer: longer than any policy's longest wait but 'let me think'."""
PRE_ROLL_SECS = 0.3
SPECULATIVE_PAD_SECS = 0.2
BARGE_IN_MIN_SECS = 0.3
BARGE_IN_RESUME_SECS = 0.064
CONTINUATION_WINDOW_SECS = 2.0
VAD_BATCH_SECS = 0.032
CLEAR_ENDS = frozenset({"smart_turn_words", "short_answer", "smart_turn", "closer"})
"""Ends the policy took as clearly done (the fast paths). Which answers a policy ends on a fast
path depends on the policy, so their latency flatters a policy that is fast on few answers:
the target is measured on :attr:`Answer.clearly_finished` instead."""
INTERRUPT_TOLERANCE_SECS = 0.05
"""A turn end this close before the true end is the alignment's noise, not an interruption."""


@dataclass
class Answer:
    """One answer of the evaluation set."""

    id: str
    path: Path
    language: str
    transcript: str
    answer_end: float
    """True end of the answer in the clip (seconds from the clip's start)."""
    kinds: list[str]
    split: str
    question: str = "open"
    spliced: bool = False
    """A supplement clip: real speech with pauses spliced in (reported apart)."""

    @property
    def clearly_finished(self) -> bool:
        """Done beyond doubt by its transcript, whatever a policy makes of it.

        A short answer to a closed question, or an answer whose corpus transcript ends on an
        explicit closer ("that's it", "all right, thanks", "就这些"). The 'after a clearly
        finished answer' latency target is measured on these.
        """
        if self.question != "open" and "short_complete" in self.kinds:
            return True
        language = "zh" if self.language.startswith("zh") else "en"
        return ends_on_closer(self.transcript, language, punctuated=False)

    @classmethod
    def from_manifest(cls, entry: dict[str, Any], base: Path) -> Answer:
        """Read one manifest entry."""
        kinds = list(entry.get("kind") or [])
        return cls(
            id=entry["id"],
            path=base / entry["file"],
            language=entry["language"],
            transcript=entry["transcript"],
            answer_end=float(entry["answer_end_s"]),
            kinds=kinds,
            split=entry.get("split", "tune"),
            question=entry.get("question") or ("closed" if "short_complete" in kinds else "open"),
            spliced=entry.get("speech_style") == "spliced",
        )


def load_set(manifest: Path = EVAL_DIR / "manifest.json") -> list[Answer]:
    """The evaluation set; fails with what to do when it is missing."""
    if not manifest.is_file():
        raise SystemExit(f"evaluation set {manifest} missing: see loadtest/turn_eval/README.md")
    entries = json.loads(manifest.read_text())
    answers = [Answer.from_manifest(entry, manifest.parent) for entry in entries]
    missing = [a.id for a in answers if not a.path.is_file()]
    if missing:
        # The clips fit for internal evaluation only are not in git: build.py makes them.
        print(
            f"{len(missing)} answers skipped, their clips are not here ({', '.join(missing[:4])}"
            f"{', ...' if len(missing) > 4 else ''}): run loadtest/turn_eval/build.py to add them"
        )
    return [a for a in answers if a.path.is_file()]


# -- features (computed once per answer, cached) ---------------------------------------------


@dataclass
class PauseRecord:
    """One pause of an answer as the server sees it, with its features."""

    speech_start: float
    speech_end: float
    t: float
    """When the pause was reached (``pause_secs`` after ``speech_end``)."""
    smart_turn: float
    words: str


@dataclass
class AnswerFeatures:
    """An answer's VAD probabilities (one per 32 ms window, 8 kHz) and its pauses."""

    probabilities: list[float]
    pauses: list[PauseRecord] = field(default_factory=list)
    window_secs: float = 0.032


def phone_audio(answer: Answer) -> np.ndarray:
    """The answer as the server hears it at 8 kHz (int16), with silence before and after."""
    pcm, rate = read_wav(answer.path)
    lead = np.zeros(int(LEAD_SECS * rate), np.int16)
    tail = np.zeros(int(TAIL_SECS * rate), np.int16)
    return ulaw_decode(to_phone_ulaw(np.concatenate([lead, pcm, tail]), rate))


class FeatureExtractor:
    """The server's models, loaded once: Silero at 8 kHz, smart-turn, Whisper per language."""

    def __init__(self, pause_secs: float = 0.2) -> None:
        from voicebot.speech.turn import SmartTurnModel
        from voicebot.speech.vad import SileroModel

        self.vad = SileroModel(sample_rate=TELEPHONY_RATE)
        self.smart_turn = SmartTurnModel()
        self.pause_secs = pause_secs
        self._whisper: dict[str, Any] = {}

    def whisper(self, language: str) -> Any:
        """The Whisper model the server uses for ``language`` (tiny.en; base for Chinese)."""
        from voicebot.speech.asr import WhisperTranscriber, resolve_model

        name = "tiny.en" if language == "en" else "base"
        if name not in self._whisper:
            self._whisper[name] = WhisperTranscriber(
                resolve_model(name, cache_dir=CACHE_DIR / "models"),
                compute_type="int8",
                cpu_threads=2,
                num_workers=1,
                beam_size=1,
                min_window_secs=10.0,
            )
        return self._whisper[name]

    def features(self, answer: Answer) -> AnswerFeatures:
        """VAD probabilities and every pause's smart-turn probability and words."""
        audio = phone_audio(answer)
        window = self.vad.window_samples
        usable = len(audio) - len(audio) % window
        windows = (audio[:usable].astype(np.float32) / 32768.0).reshape(-1, window)
        probabilities, _ = self.vad.infer(windows, self.vad.initial_state())
        detector = TurnDetector(
            TurnConfig(pause_secs=self.pause_secs, end_secs=self.pause_secs, early_secs=0.0)
        )
        detector.set_max_silence(1e9)  # every pause, however long: policies decide the ends
        result = AnswerFeatures(
            [round(float(p), 4) for p in probabilities], [], self.vad.window_secs
        )
        whisper = self.whisper(answer.language)
        for index, probability in enumerate(probabilities.tolist()):
            t = (index + 1) * self.vad.window_secs
            for event in detector.feed(probability, t):
                if not isinstance(event, SpeechPaused):
                    continue
                phone = audio[
                    max(
                        0, int((max(event.speech_start - PRE_ROLL_SECS, t - 8.1)) * TELEPHONY_RATE)
                    ) : int(t * TELEPHONY_RATE)
                ]
                smart = self.smart_turn.predict(resample(phone, TELEPHONY_RATE, MODEL_RATE))
                turn = audio[
                    max(0, int((event.speech_start - PRE_ROLL_SECS) * TELEPHONY_RATE)) : int(
                        (event.speech_end + SPECULATIVE_PAD_SECS) * TELEPHONY_RATE
                    )
                ]
                speech16 = resample(turn, TELEPHONY_RATE, MODEL_RATE).astype(np.float32) / 32768.0
                words, _ = whisper.transcribe(speech16, answer.language, None)
                result.pauses.append(
                    PauseRecord(
                        round(event.speech_start, 3),
                        round(event.speech_end, 3),
                        round(t, 3),
                        round(float(smart), 4),
                        words.strip(),
                    )
                )
        return result


def cached_features(answer: Answer, extractor: Callable[[], FeatureExtractor]) -> AnswerFeatures:
    """An answer's features from the cache, computing them on a miss."""
    digest = hashlib.sha256(answer.path.read_bytes()).hexdigest()[:16]
    path = CACHE_DIR / f"{answer.id}-{digest}-v1.json"
    if path.is_file():
        data = json.loads(path.read_text())
        return AnswerFeatures(
            data["probabilities"],
            [PauseRecord(**p) for p in data["pauses"]],
            data["window_secs"],
        )
    features = extractor().features(answer)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(features)))
    return features


# -- policies --------------------------------------------------------------------------------

Policy = Callable[[PauseFeatures, "PolicyView"], "tuple[float, str]"]


@dataclass(frozen=True)
class PolicyView:
    """What a replayed policy sees besides the features: the stage the pause is at."""

    stage: str
    """``"smart_turn"`` (acoustic verdict only) or ``"words"`` (the transcript too)."""


def baseline_policy(
    features: PauseFeatures, view: PolicyView, *, max_silence: float = 1.2
) -> tuple[float, str]:
    """Today's defaults before this change (VOICEBOT_TURN_*): acoustic only, words ignored."""
    probability = features.smart_turn
    if probability is None:
        return max_silence, "silence"
    short = features.speech_secs < 3.0
    if probability >= 0.5 and (not short or probability >= 0.98):
        return 0.2, "smart_turn"
    if 0.2 <= probability < 0.5 and not short:
        return 0.5, "hesitant"
    return max_silence, "silence"


def config_policy(config: TurnPolicyConfig) -> Policy:
    """The policy of :mod:`voicebot.speech.turn_policy` with ``config``."""

    def policy(features: PauseFeatures, view: PolicyView) -> tuple[float, str]:
        decision = decide(features, config)
        return decision.wait_secs, decision.reason

    return policy


def policy_ceiling(policy_name: str, config: TurnPolicyConfig | None, question: str) -> float:
    """The silence that ends a turn under a policy, for a question kind."""
    if config is None:
        return 1.2
    return config.open_max_silence_secs if question == "open" else config.closed_max_silence_secs


# -- replay ----------------------------------------------------------------------------------


@dataclass
class Outcome:
    """One answer under one policy."""

    id: str
    split: str
    language: str
    kinds: list[str]
    ends: list[tuple[float, str]]
    """Every end of turn (time in the answer's clock, reason) until the answer's end + tail."""
    interrupted: bool
    latency: float | None
    """True end -> the bot's first audio, when not interrupted."""
    resume_hear_secs: list[float]
    unheard_secs: float
    clearly_finished: bool = False
    """The answer is :attr:`Answer.clearly_finished`."""


def replay(
    answer: Answer,
    features: AnswerFeatures,
    policy: Policy,
    ceiling_secs: float,
    *,
    smart_turn_delay: float,
    asr_delay: float,
    reply_delay: float,
    pause_secs: float = 0.2,
    min_speech_secs: float = 0.15,
) -> Outcome:
    """Replay the answer's VAD windows and pauses under ``policy``; see the module docstring."""
    detector = TurnDetector(TurnConfig(pause_secs=pause_secs, end_secs=pause_secs, early_secs=0.0))
    detector.set_max_silence(ceiling_secs)
    pauses = {(p.speech_start, p.speech_end): p for p in features.pauses}
    true_end = LEAD_SECS + answer.answer_end
    window = features.window_secs
    language = "zh" if answer.language.startswith("zh") else "en"
    question = QuestionContext(kind=answer.question)  # type: ignore[arg-type]
    resumed_in_call: list[float] = []
    pending: list[tuple[float, PauseFeatures, str, SpeechPaused]] = []
    ends: list[tuple[float, str]] = []
    turn_spans: list[tuple[float, float]] = []
    bot_started: float | None = None
    barge_pending_since: float | None = None
    resume_hear: list[float] = []
    turn_start: float | None = None
    for index, probability in enumerate(features.probabilities):
        t = (index + 1) * window
        # Deliver the verdicts whose time has come (they were computed on the pause's audio).
        due = [item for item in pending if item[0] <= t + 1e-9]
        pending = [item for item in pending if item[0] > t + 1e-9]
        events: list[object] = []
        for _, pause_features, stage, pause in due:
            wait, reason = policy(pause_features, PolicyView(stage))
            events.extend(detector.set_pause_wait(wait, reason, pause=pause))
        events.extend(detector.feed(probability, t))
        for event in events:
            if isinstance(event, SpeechStarted):
                turn_start = event.speech_start
                if bot_started is not None and barge_pending_since is None:
                    barge_pending_since = event.speech_start
            elif isinstance(event, SpeechResumed):
                resumed_in_call.append(detector.resumed_pauses[-1])
            elif isinstance(event, SpeechPaused):
                record = pauses.get((round(event.speech_start, 3), round(event.speech_end, 3)))
                base = PauseFeatures(
                    speech_secs=event.speech_end - event.speech_start,
                    language=language,
                    question=question,
                    resumed_pauses=tuple(resumed_in_call),
                )
                if record is None:
                    continue  # not in the cache (a different pause_secs): silence decides
                acoustic = replace(base, smart_turn=record.smart_turn)
                worded = replace(acoustic, words=record.words)
                pending.append((t + smart_turn_delay, acoustic, "smart_turn", event))
                pending.append((t + asr_delay, worded, "words", event))
            elif isinstance(event, TurnEnded):
                ends.append((round(event.t - LEAD_SECS, 3), event.reason))
                turn_spans.append((event.speech_start, event.speech_end))
                turn_start = None
                if bot_started is None:
                    bot_started = event.t + reply_delay
        # Barge-in: the candidate went on over the bot (the server's rule: on a prompt that
        # started at the end of the answer less than 2 s ago, 64 ms of voice; else 0.3 s).
        if bot_started is not None and t >= bot_started and not detector.paused:
            resuming = t - bot_started <= CONTINUATION_WINDOW_SECS
            since = detector.voiced_since if resuming else turn_start
            need = BARGE_IN_RESUME_SECS if resuming else BARGE_IN_MIN_SECS
            if since is not None and t - since + 1e-9 >= need:
                stopped = t + VAD_BATCH_SECS
                voice = max(bot_started, since)
                resume_hear.append(round(max(0.0, stopped - voice), 3))
                bot_started = None
                barge_pending_since = None
    if turn_start is not None:
        turn_spans.append((turn_start, detector.speech_end))
    first_end = ends[0][0] + LEAD_SECS if ends else None
    interrupted = first_end is not None and first_end < true_end - INTERRUPT_TOLERANCE_SECS
    latency = None
    if first_end is not None and not interrupted:
        latency = round(first_end + reply_delay - true_end, 3)
    voiced = np.asarray(features.probabilities) >= 0.5
    times = (np.arange(len(voiced)) + 1) * window
    covered = np.zeros(len(voiced), bool)
    for start, end in turn_spans:
        covered |= (times >= start - 1e-6) & (times <= end + 1e-6)
    in_answer = times <= true_end + 0.1
    unheard = float(np.count_nonzero(voiced & ~covered & in_answer) * window)
    return Outcome(
        answer.id,
        answer.split,
        answer.language,
        answer.kinds,
        ends,
        interrupted,
        latency,
        resume_hear,
        round(unheard, 3),
        answer.clearly_finished,
    )


# -- report ----------------------------------------------------------------------------------


def pct(values: Iterable[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100), or None for no values."""
    data = sorted(values)
    if not data:
        return None
    return float(np.percentile(data, q))


def summarise(outcomes: list[Outcome]) -> dict[str, Any]:
    """Interruptions per 100 answers, latency p50/p95, resume hear-time p95, unheard seconds."""
    n = len(outcomes)
    latencies = [o.latency for o in outcomes if o.latency is not None]
    clear = [
        o.latency
        for o in outcomes
        if o.latency is not None and o.ends and o.ends[0][1] in CLEAR_ENDS
    ]
    finished = [o for o in outcomes if o.clearly_finished]
    finished_latencies = [o.latency for o in finished if o.latency is not None]
    resumes = [r for o in outcomes for r in o.resume_hear_secs]
    interrupted = sum(o.interrupted for o in outcomes)
    return {
        "answers": n,
        "interruptions": interrupted,
        "interruptions_per_100": round(100 * interrupted / n, 1) if n else None,
        "latency_p50": _round(pct(latencies, 50)),
        "latency_p95": _round(pct(latencies, 95)),
        "clear_answers": len(clear),
        "clear_latency_p50": _round(pct(clear, 50)),
        "clear_latency_p95": _round(pct(clear, 95)),
        "finished_answers": len(finished),
        "finished_interrupted": sum(o.interrupted for o in finished),
        "finished_latency_p50": _round(pct(finished_latencies, 50)),
        "finished_latency_p95": _round(pct(finished_latencies, 95)),
        "resume_hear_p95": _round(pct(resumes, 95)),
        "unheard_secs": round(sum(o.unheard_secs for o in outcomes), 2),
        "no_end": sum(1 for o in outcomes if not o.ends),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def policies_to_try() -> dict[str, tuple[Policy, TurnPolicyConfig | None]]:
    """Today's defaults and the variants of the words policy that the report compares.

    ``previous`` is the words policy's waits before the open-answer change (an open answer
    ended 0.6 s after a finished sentence smart-turn called complete); every row has the
    closers and the closed-question rule, which the code always applies.
    """
    default = TurnPolicyConfig()
    previous = default.model_copy(
        update={
            "open_end_secs": 0.6,
            "finished_end_secs": 2.2,
            "hesitant_end_secs": 1.2,
            "short_open_end_secs": 1.2,
            "closed_finished_end_secs": 1.2,
            "pace_fast_margin_secs": 0.0,
        }
    )
    variants: dict[str, TurnPolicyConfig] = {
        "default": default,
        "previous": previous,
        "previous_closed_0.4": previous.model_copy(update={"closed_finished_end_secs": 0.4}),
        "open_end_1.2": previous.model_copy(
            update={"open_end_secs": 1.2, "closed_finished_end_secs": 0.4}
        ),
        "open_end_1.8": previous.model_copy(
            update={"open_end_secs": 1.8, "closed_finished_end_secs": 0.4}
        ),
        "open_end_2.4": previous.model_copy(
            update={"open_end_secs": 2.4, "closed_finished_end_secs": 0.4}
        ),
        "open_all_1.8": default.model_copy(
            update={
                "open_end_secs": 1.8,
                "finished_end_secs": 1.8,
                "hesitant_end_secs": 1.8,
                "short_open_end_secs": 1.8,
            }
        ),
        "no_pace_hold": default.model_copy(update={"pace_fast_margin_secs": 0.0}),
        "ceiling_2.0": default.model_copy(
            update={
                "open_max_silence_secs": 2.0,
                "open_end_secs": 2.0,
                "finished_end_secs": 2.0,
                "hesitant_end_secs": 2.0,
                "short_open_end_secs": 2.0,
            }
        ),
        "ceiling_3.0": default.model_copy(
            update={
                "open_max_silence_secs": 3.0,
                "open_end_secs": 3.0,
                "finished_end_secs": 3.0,
                "hesitant_end_secs": 3.0,
                "short_open_end_secs": 3.0,
            }
        ),
        "closed_finished_0.2": default.model_copy(update={"closed_finished_end_secs": 0.2}),
    }
    chosen: dict[str, tuple[Policy, TurnPolicyConfig | None]] = {
        "baseline": (baseline_policy, None)
    }
    for name, config in variants.items():
        chosen[name] = (config_policy(config), config)
    return chosen


def run(
    answers: list[Answer],
    policies: dict[str, tuple[Policy, TurnPolicyConfig | None]],
    *,
    smart_turn_delay: float = 0.06,
    asr_delay: float = 0.15,
    reply_delay: float = 0.03,
) -> dict[str, Any]:
    """Replay every answer under every policy; per policy: summaries by split and language."""
    extractor: FeatureExtractor | None = None

    def get_extractor() -> FeatureExtractor:
        nonlocal extractor
        if extractor is None:
            extractor = FeatureExtractor()
        return extractor

    started = time.monotonic()
    features = {a.id: cached_features(a, get_extractor) for a in answers}
    feature_secs = time.monotonic() - started
    report: dict[str, Any] = {
        "answers": len(answers),
        "audio_secs": round(
            sum(len(f.probabilities) * f.window_secs for f in features.values()), 1
        ),
        "feature_secs": round(feature_secs, 1),
        "delays": {"smart_turn": smart_turn_delay, "asr": asr_delay, "reply": reply_delay},
        "policies": {},
    }
    for name, (policy, config) in policies.items():
        replay_started = time.monotonic()
        outcomes = [
            replay(
                a,
                features[a.id],
                policy,
                policy_ceiling(name, config, a.question),
                smart_turn_delay=smart_turn_delay,
                asr_delay=asr_delay,
                reply_delay=reply_delay,
            )
            for a in answers
        ]
        groups: dict[str, list[Outcome]] = {"all": outcomes}
        spliced = {a.id for a in answers if a.spliced}
        for o in outcomes:
            style = "spliced" if o.id in spliced else "real"
            groups.setdefault(o.split, []).append(o)
            groups.setdefault(o.language, []).append(o)
            groups.setdefault(f"{style} {o.split}", []).append(o)
        report["policies"][name] = {
            "config": config.model_dump() if config is not None else "VOICEBOT_TURN_* before",
            "replay_secs": round(time.monotonic() - replay_started, 2),
            "summary": {group: summarise(items) for group, items in sorted(groups.items())},
            "outcomes": [asdict(o) for o in outcomes],
        }
    return report


def markdown(report: dict[str, Any]) -> str:
    """The trade-off table, one row per policy and split."""
    lines = [
        f"{report['answers']} answers, {report['audio_secs']} s of audio; verdict delays "
        f"smart-turn {report['delays']['smart_turn']} s, words {report['delays']['asr']} s, "
        f"reply {report['delays']['reply']} s.",
        "",
        "| policy | split | answers | interruptions /100 | latency p50 | p95 | fast-path ends: n "
        "| p50 | p95 | clearly finished answers: n | p50 | p95 | resume heard p95 | unheard s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, data in report["policies"].items():
        for split in (
            "real tune",
            "real holdout",
            "spliced tune",
            "spliced holdout",
            "tune",
            "holdout",
            "en",
            "zh",
            "all",
        ):
            s = data["summary"].get(split)
            if s is None:
                continue
            lines.append(
                f"| {name} | {split} | {s['answers']} | {s['interruptions_per_100']} | "
                f"{_fmt(s['latency_p50'])} | {_fmt(s['latency_p95'])} | {s['clear_answers']} | "
                f"{_fmt(s['clear_latency_p50'])} | {_fmt(s['clear_latency_p95'])} | "
                f"{s['finished_answers']} | {_fmt(s['finished_latency_p50'])} | "
                f"{_fmt(s['finished_latency_p95'])} | "
                f"{_fmt(s['resume_hear_p95'])} | {s['unheard_secs']} |"
            )
    return "\n".join(lines) + "\n"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def plot(report: dict[str, Any], path: Path) -> None:
    """Interruptions per 100 real answers against p50/p95 latency: one panel per split.

    Filled markers: latency after every answer that was not interrupted; hollow squares: after
    the clearly finished ones (the target's). Policies at the same x are spread a little.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, panels = plt.subplots(1, 2, figsize=(13, 5.5), sharey=True)
    colours = plt.cm.tab20.colors
    for axes, split in zip(panels, ("tune", "holdout"), strict=True):
        axes.axhspan(0, 0.9, xmax=1, color="green", alpha=0.05)
        axes.axhline(0.5, color="green", ls=":", lw=0.8)
        axes.axhline(0.9, color="green", ls="--", lw=0.8)
        axes.axvline(1.0, color="green", ls="--", lw=0.8)
        seen: dict[float, int] = {}
        for index, (name, data) in enumerate(report["policies"].items()):
            s = data["summary"].get(f"real {split}")
            if s is None or s["latency_p50"] is None:
                continue
            base = s["interruptions_per_100"]
            x = base + 0.12 * seen.get(base, 0)
            seen[base] = seen.get(base, 0) + 1
            colour = "black" if name == "default" else colours[index % len(colours)]
            width = 2.5 if name == "default" else 1
            axes.plot([x, x], [s["latency_p50"], s["latency_p95"]], "-", color=colour, lw=width)
            axes.plot(x, s["latency_p50"], "o", color=colour, label=name)
            axes.plot(x, s["latency_p95"], "^", color=colour)
            if s.get("finished_latency_p50") is not None:
                for key in ("finished_latency_p50", "finished_latency_p95"):
                    axes.plot(x, s[key], "s", mfc="none", color=colour, ms=5)
        axes.set_title(f"real answers, {split} split")
        axes.set_xlabel("interruptions per 100 answers (targets dashed; spread apart at equal x)")
        axes.grid(True, alpha=0.3)
    panels[0].set_ylabel("true end -> bot's voice, s\no p50, ^ p95: all; [] clearly finished")
    panels[1].legend(fontsize=7, loc="upper right")
    figure.suptitle("End-of-turn policies on real conversational answers (offline replay)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    """Run the offline benchmark and write JSON, Markdown and a PNG plot."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", choices=("all", "tune", "holdout"), default="all")
    parser.add_argument("--policies", default="", help="comma-separated names (default: all)")
    parser.add_argument("--smart-turn-delay", type=float, default=0.06)
    parser.add_argument(
        "--asr-delay", type=float, default=0.15, help="pause -> words (idle server: 0.07-0.17 s)"
    )
    parser.add_argument("--reply-delay", type=float, default=0.03)
    parser.add_argument("--manifest", type=Path, default=EVAL_DIR / "manifest.json")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    answers = load_set(args.manifest)
    if args.split != "all":
        answers = [a for a in answers if a.split == args.split]
    policies = policies_to_try()
    if args.policies:
        wanted = args.policies.split(",")
        unknown = [w for w in wanted if w not in policies]
        if unknown:
            parser.error(f"unknown policies {unknown}; known: {sorted(policies)}")
        policies = {name: policies[name] for name in wanted}
    report = run(
        answers,
        policies,
        smart_turn_delay=args.smart_turn_delay,
        asr_delay=args.asr_delay,
        reply_delay=args.reply_delay,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / time.strftime("turn-bench-%Y%m%d-%H%M%S")
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1, ensure_ascii=False))
    table = markdown(report)
    stem.with_suffix(".md").write_text(table)
    plot(report, stem.with_suffix(".png"))
    print(table)
    print(f"written {stem}.json/.md/.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
