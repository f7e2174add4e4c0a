"""Descriptive prosody of a candidate's speech: speech rate, pauses, pitch, loudness and fillers.

Everything here *describes* how something was said, in physical units (words a minute, seconds,
hertz, semitones, dBFS, counts). Nothing here infers emotions, stress, confidence, honesty or any
other inner state, and nothing rates the speaker: the EU AI Act prohibits emotion recognition in
recruitment, and these figures say nothing about ability. Whether they may weigh in anything is
the script's ``prosody_in_recommendation`` switch (off by default, see ``dialogues/README.md``).

Three entry points:

- :func:`analyse` measures one finished utterance (16 kHz mono, as the server hears it after the
  8 kHz mu-law phone path) together with its transcript;
- :func:`aggregate` sums a call's utterances into one set of per-call figures;
- :class:`ProsodyMeter` follows a call live for the monitor, chunk by chunk.

How it measures:

- Speech and pauses from frame energy (25 ms frames, 10 ms hop) against an adaptive threshold
  between the noise floor (quietest frames) and the loudest frames. Silence of at least
  :data:`MIN_PAUSE_SECS` between the first and the last speech is a pause; shorter gaps
  (stop closures, joins between words) count as speech, and leading/trailing silence counts as
  neither. The speech rate counts the pauses in (words over the time from the first speech to the
  last, the figure people quote), the articulation rate leaves them out.
- Pitch (F0) with YIN (de Cheveigne and Kawahara 2002) on the waveform resampled to 8 kHz,
  60-400 Hz, vectorised over all frames with FFT correlations. A phone line rolls off below about
  300 Hz, so a man's fundamental may be 20 dB down; YIN still finds the period from the
  harmonics. Checked on synthetic tones without their lowest harmonics (85-150 Hz: within 2 %)
  and on the shared clips through a second-order 300 Hz high-pass (medians within 8 %, a little
  high because the lowest, creakiest frames drop out). A brick-wall cut at 300 Hz is harder: a
  voice whose second harmonic dominates can then read an octave high, so pitch on such a line is
  approximate (one more reason it weighs in nothing by default).
- Loudness as the RMS of the speech frames in dBFS (0 dBFS = full scale).
- Fillers from the transcript (see :func:`count_fillers`). Whisper tends to leave fillers out of
  its transcripts, so filler counts are a lower bound.

Cost, measured on the 2-core development machine (medians of 50 runs, varying with its load):
:func:`analyse` takes 5-8 ms for 10 s of phone-path speech with pauses (JFK) and 8-9 ms for 10 s
of continuous speech, about 1 ms of it the resampling to 8 kHz and most of the rest the pitch
tracker's FFTs: cheap enough to run after every answer. :class:`ProsodyMeter` costs 0.6-1 ms a
sample.
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from voicebot.audio.frames import SILENCE_DBFS, TELEPHONY_RATE, as_float32
from voicebot.audio.resample import StreamResampler, resample

FRAME_SECS = 0.025
"""Length of one energy frame for the speech/pause decision."""

HOP_SECS = 0.010
"""Hop between energy frames, the time resolution of speech and pauses."""

PITCH_HOP_SECS = 0.020
"""Hop between pitch frames: every other energy frame (the 30 ms pitch windows still overlap, and
the medians and percentiles came out the same as with 10 ms, at half the cost)."""

MIN_PAUSE_SECS = 0.25
"""Shortest silence inside speech that counts as a pause; shorter gaps count as speech."""

MIN_SPEECH_SECS = 0.06
"""Shorter bursts of energy (clicks, line pops) are not speech."""

PITCH_MIN_HZ = 60.0
"""Lowest F0 searched for (a low male voice)."""

PITCH_MAX_HZ = 400.0
"""Highest F0 searched for (a high female or child voice)."""

MIN_VOICED_SECS = 0.2
"""Voiced audio needed before a pitch median or range is reported."""

METER_MIN_VOICED_SECS = 0.1
"""Voiced audio a :class:`ProsodyMeter` window needs before it reports a pitch."""

SPEECH_BELOW_LOUDEST_DB = 30.0
"""Frames this far below the loudest frames are never speech (35 dB let a clip's own background
noise through as speech when a quieter stretch had pulled the noise floor down)."""

SPEECH_ABOVE_FLOOR_DB = 10.0
"""Frames must be this far above the noise floor to be speech (capped, see :func:`_speech_mask`)."""

SPEECH_MIN_DYNAMICS_DB = 12.0
"""Audio whose loudest frames are less than this above its noise floor holds no speech (steady
hiss, hum, a tone); the shared speech clips swing by 21-51 dB."""

DIGITAL_SILENCE_DBFS = -80.0
"""Frames quieter than this are (near) digital silence, not line noise: mu-law's smallest step is
about -78 dBFS."""

SPEECH_MIN_DBFS = -65.0
"""Frames quieter than this are never speech, however quiet the line."""

RATE_UNITS = {"en": "wpm", "zh": "cpm"}
"""Unit of :attr:`ProsodyFeatures.speech_rate` by language: words or characters a minute."""

_YIN_THRESHOLD = 0.2
"""Largest normalised YIN difference at which a frame counts as voiced (0 = perfectly periodic).

The original paper uses 0.1 on clean studio speech; mu-law quantisation noise and the missing
fundamental of phone audio raise the dip, and 0.2 kept the voiced frames of the phone-path clips
without admitting the unvoiced ones (which sit near 1).
"""
_YIN_FALLBACK_THRESHOLD = 0.35
"""A frame with no dip below :data:`_YIN_THRESHOLD` is still voiced if its deepest dip is below
this: on the phone-path clips it found a third more voiced frames (glides, creaky ends of Mandarin
third tones) whose F0 agreed with a spectral reference nearly as often (90 % of frames within
10 %, against 93 % without them)."""
_PITCH_RATE = TELEPHONY_RATE  # 8 kHz: all the phone path carries, and half the FFT work
_YIN_WINDOW = 240  # 30 ms at 8 kHz: two periods of 66 Hz
_TAU_MIN = int(_PITCH_RATE / PITCH_MAX_HZ)  # 20 samples
_TAU_MAX = int(math.ceil(_PITCH_RATE / PITCH_MIN_HZ)) + 1  # 135 samples (one spare for the fit)
_FFT_SIZE = 384  # >= window + tau_max: the correlations in _yin never wrap around


@dataclass(frozen=True)
class ProsodyFeatures:
    """Descriptive prosody of one utterance (or, from :func:`aggregate`, of a whole call).

    ``None`` means "not measurable here" (no speech, no transcript, too little voiced audio).
    """

    duration_secs: float
    """Length of the audio analysed, silence included."""
    speech_secs: float
    """Time spent speaking: from the first to the last speech, pauses excluded."""
    speech_rate: float | None
    """Words (English) or characters (Chinese) a minute, pauses included: from the first speech to
    the last (the rate people quote: about 120-160 wpm in conversation)."""
    articulation_rate: float | None
    """Words or characters a minute of :attr:`speech_secs`, pauses excluded."""
    rate_unit: str
    """``"wpm"`` (words a minute) or ``"cpm"`` (Chinese characters a minute)."""
    word_count: int
    """Words (English) or characters plus Latin words (Chinese) in the transcript, fillers too."""
    pause_count: int
    """Silences of at least :data:`MIN_PAUSE_SECS` inside the speech (not before or after it)."""
    mean_pause_secs: float | None
    """Mean length of those pauses; ``None`` when there were none."""
    pause_ratio: float | None
    """Pause time over speech plus pause time (leading/trailing silence excluded)."""
    pitch_median_hz: float | None
    """Median F0 of the voiced frames."""
    pitch_range_semitones: float | None
    """Spread of F0 from its 10th to its 90th percentile, in semitones (12 = one octave)."""
    loudness_dbfs: float | None
    """RMS level of the speech frames in dBFS (0 = full scale)."""
    filler_count: int
    """Filler words in the transcript (a lower bound: Whisper drops many)."""
    filler_rate: float | None
    """Fillers per 100 words (English) or per 100 characters (Chinese)."""

    @property
    def pause_secs(self) -> float:
        """Total pause time."""
        return (self.mean_pause_secs or 0.0) * self.pause_count

    def to_dict(self) -> dict[str, Any]:
        """The figures as a JSON-ready dict, rounded to what the measurement can resolve."""
        digits = {
            "duration_secs": 2,
            "speech_secs": 2,
            "speech_rate": 1,
            "articulation_rate": 1,
            "mean_pause_secs": 2,
            "pause_ratio": 3,
            "pitch_median_hz": 1,
            "pitch_range_semitones": 1,
            "loudness_dbfs": 1,
            "filler_rate": 2,
        }
        out = asdict(self)
        for key, places in digits.items():
            if out[key] is not None:
                out[key] = round(float(out[key]), places)
        return out


# --- fillers -------------------------------------------------------------------------------

_EN_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_EN_FILLER_WORD = re.compile(r"(?<![\w'-])(?:u+m+|u+h+|e+r+m*|a+h+|h+m+)(?![\w'-])")
"""um, uh, er, erm, ah, hmm, also drawn out (umm, uhh, errm, ahh, hmmm); not the hyphenated
backchannels uh-huh and mm-hmm, which answer "yes"."""
_EN_FILLER_PHRASE = re.compile(r"\b(?:you know|i mean)\b")
_ASIDE_MARKS = (",", "-", "\u2013", "\u2014", "\u2026", "...")
"""Punctuation right after a phrase that sets it off as an aside ("you know, ...")."""
_CLAUSE_MARKS = ",;:.!?-\u2013\u2014\u2026"
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_ZH_UNIT = re.compile(rf"[{_CJK}]|[a-z]+(?:'[a-z]+)?|[0-9]")
_ZH_CLAUSE_START = rf"(?:^|(?<=[^{_CJK}a-z0-9]))"
_ZH_FILLERS = re.compile(
    "|".join(
        (
            "嗯+",  # always an interjection
            "呃+",  # always an interjection
            rf"{_ZH_CLAUSE_START}额+(?![外度头定])",  # not 额外, 额度, 额头, 额定
            rf"{_ZH_CLAUSE_START}啊+",  # not the sentence-final particle (好啊)
            r"那个(?=那个|\s*[，,、…])",  # hesitation, not the demonstrative (那个项目)
            r"(?<!也)就是说",  # not 也就是说 ("that is to say")
            # 就是 hesitated on, not 也就是 / 不就是 / 那就是 ("that is") or 就是 as "is exactly"
            r"(?<![也不那还可正只要都这])(?:就是)+(?=\s*[，,、…]|\s*就是)",
            r"然后(?:\s*[，,、…]?\s*然后)+",  # 然后 repeated, not a single "and then"
        )
    )
)


def count_words(text: str, language: str) -> int:
    """Words in ``text`` (English) or Chinese characters plus Latin words and digits (Chinese).

    In Chinese one character is one syllable, the usual unit of speech rate; a Latin word
    ("Python", "AI") counts as one unit and a digit as one (as it is usually read out).
    """
    lowered = text.lower()
    if language == "zh":
        return len(_ZH_UNIT.findall(lowered))
    return len(_EN_WORD.findall(lowered))


def count_fillers(text: str, language: str) -> int:
    """Filler words in a transcript.

    English: "um", "uh", "er", "erm", "ah", "hmm" (drawn-out spellings too) wherever they stand,
    and "you know" / "I mean" when punctuation sets them off as an aside ("You know, I ...",
    "..., I mean, ...", "..., you know."), not when they carry meaning ("Do you know Python?",
    "that's what I mean."); without punctuation they are not counted. "like" is not counted at
    all: as a filler it cannot be told from the verb and the preposition in a transcript.

    Chinese: 嗯 and 呃 (always interjections), 额 and 啊 at the start of a clause (not 额外/额度
    or the sentence-final 啊 in 好啊), 那个 when hesitated on (repeated or followed by a pause
    mark, not the demonstrative in 那个项目), 就是说 (not 也就是说), 就是 when hesitated on
    (before a pause mark or repeated: 就是，... / 就是就是; not 也就是, 不就是, 那就是 or 就是 as
    "is exactly" in 这就是我的优点) and 然后 repeated (然后，然后; a single 然后 is the connective
    "and then"). A run such as 嗯嗯 or 然后然后然后 counts once.

    Whisper tends to leave fillers out of its transcripts, so this is a lower bound.
    """
    lowered = text.lower()
    if language == "zh":
        return len(_ZH_FILLERS.findall(lowered))
    count = len(_EN_FILLER_WORD.findall(lowered))
    for match in _EN_FILLER_PHRASE.finditer(lowered):
        before = lowered[: match.start()].rstrip()
        after = lowered[match.end() :].lstrip()
        clause_start = not before or before[-1] in _CLAUSE_MARKS
        clause_end = not after or after[0] in ".!?"
        if after.startswith(_ASIDE_MARKS) or (clause_start and clause_end):
            count += 1
    return count


# --- signal --------------------------------------------------------------------------------


def _frame_power(samples: np.ndarray, frame: int, hop: int) -> np.ndarray:
    """Mean square of each frame, from one cumulative sum (O(n), no frame copies)."""
    if len(samples) < frame:
        return np.zeros(0)
    squares = np.concatenate(([0.0], np.cumsum(samples.astype(np.float64) ** 2)))
    starts = np.arange(0, len(samples) - frame + 1, hop)
    return (squares[starts + frame] - squares[starts]) / frame


def _power_db(power: np.ndarray) -> np.ndarray:
    return 10.0 * np.log10(np.maximum(power, 1e-12))


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) indices of the runs of True in a boolean array."""
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


def _speech_mask(level_db: np.ndarray) -> np.ndarray:
    """Frames that hold speech, by an adaptive energy threshold.

    The loudest frames (98th percentile) and the noise floor (10th percentile) are taken over the
    frames above :data:`DIGITAL_SILENCE_DBFS`: a stretch of digital silence (a gap in the media
    stream, zero padding) is no measure of the line's noise, and would otherwise make the noise
    between words look like speech. The threshold sits :data:`SPEECH_ABOVE_FLOOR_DB` above the
    floor, but never more than 15 dB below the loudest frames (so a clip with hardly any silence
    keeps its quiet speech), nor lower than :data:`SPEECH_BELOW_LOUDEST_DB` below them or than
    :data:`SPEECH_MIN_DBFS`. Audio whose level hardly varies (less than
    :data:`SPEECH_MIN_DYNAMICS_DB` between floor and loudest frames) is hiss, hum or a tone, not
    speech: speech always swings between syllables and the gaps between them.
    """
    audible = level_db[level_db > DIGITAL_SILENCE_DBFS]
    if len(audible) == 0:
        return np.zeros(len(level_db), dtype=bool)
    loudest, floor = np.percentile(audible, [98, 10])
    if loudest - floor < SPEECH_MIN_DYNAMICS_DB:
        return np.zeros(len(level_db), dtype=bool)
    threshold = max(
        loudest - SPEECH_BELOW_LOUDEST_DB,
        min(floor + SPEECH_ABOVE_FLOOR_DB, loudest - 15.0),
        SPEECH_MIN_DBFS,
    )
    return level_db > threshold


def _runs_mask(size: int, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """A boolean array of ``size``, True in the runs ``[starts[i], ends[i])``."""
    steps = np.zeros(size + 1, dtype=np.int32)
    np.add.at(steps, starts, 1)
    np.add.at(steps, ends, -1)
    return np.cumsum(steps[:-1]) > 0


def _drop_short_runs(mask: np.ndarray, shortest: int) -> np.ndarray:
    """Clear runs of True shorter than ``shortest`` frames."""
    starts, ends = _runs(mask)
    short = (ends - starts) < shortest
    return mask & ~_runs_mask(len(mask), starts[short], ends[short])


def _yin(samples8k: np.ndarray, hop: int, frames: np.ndarray | None = None) -> np.ndarray:
    """F0 in Hz for each frame of 8 kHz audio (frame ``i`` starts at ``i * hop``), NaN if unvoiced.

    YIN's cumulative-mean-normalised difference, all frames at once: the difference function
    ``d(tau) = e(0) + e(tau) - 2 r(tau)`` takes the energies ``e`` from a cumulative sum and the
    correlations ``r`` from one batched FFT. The first dip below :data:`_YIN_THRESHOLD` between
    60 and 400 Hz is the period, refined by a parabola through its neighbours. ``frames`` limits
    the work to the given frame indices (the rest are NaN).
    """
    span = _YIN_WINDOW + _TAU_MAX
    count = max(0, (len(samples8k) - span) // hop + 1)
    f0 = np.full(count, np.nan)
    index = np.arange(count) if frames is None else frames[frames < count]
    if len(index) == 0:
        return f0
    starts = index * hop
    # Correlations in float32 (half the FFT work; ample precision for a threshold of 0.1-0.35).
    blocks = sliding_window_view(np.asarray(samples8k, dtype=np.float32), span)[starts]
    spectrum = np.fft.rfft(blocks, _FFT_SIZE)
    spectrum *= np.conj(np.fft.rfft(blocks[:, :_YIN_WINDOW], _FFT_SIZE))
    corr = np.fft.irfft(spectrum, _FFT_SIZE)[:, :_TAU_MAX]
    # Energy of the window starting at every sample, from one cumulative sum.
    squares = np.concatenate(([0.0], np.cumsum(np.square(samples8k, dtype=np.float64))))
    window_energy = squares[_YIN_WINDOW:] - squares[:-_YIN_WINDOW]
    energy_tau = sliding_window_view(window_energy, _TAU_MAX)[starts]
    energy0 = energy_tau[:, 0]
    diff = np.maximum(energy0[:, None] + energy_tau - 2.0 * corr, 0.0)
    cmnd = np.empty_like(diff)
    cmnd[:, 0] = 1.0
    np.cumsum(diff[:, 1:], axis=1, out=cmnd[:, 1:])
    np.divide(diff[:, 1:] * np.arange(1, _TAU_MAX), np.maximum(cmnd[:, 1:], 1e-12), out=cmnd[:, 1:])
    # The first local minimum below the threshold; failing that, the deepest local minimum if it
    # is below the fallback threshold.
    inner = cmnd[:, _TAU_MIN : _TAU_MAX - 1]
    local_min = (inner <= cmnd[:, _TAU_MIN - 1 : _TAU_MAX - 2]) & (inner < cmnd[:, _TAU_MIN + 1 :])
    candidate = local_min & (inner < _YIN_THRESHOLD)
    has_candidate = candidate.any(axis=1)
    pick = np.where(
        has_candidate,
        np.argmax(candidate, axis=1),
        np.argmin(np.where(local_min, inner, np.inf), axis=1),
    )
    depth = inner[np.arange(len(inner)), pick]
    voiced = (has_candidate | (depth < _YIN_FALLBACK_THRESHOLD)) & (energy0 > 1e-9)
    rows = np.flatnonzero(voiced)
    best = pick[rows] + _TAU_MIN
    below, at, above = (cmnd[rows, best - 1], cmnd[rows, best], cmnd[rows, best + 1])
    curvature = below - 2.0 * at + above
    safe = np.where(np.abs(curvature) > 1e-12, curvature, 1.0)
    shift = np.where(np.abs(curvature) > 1e-12, 0.5 * (below - above) / safe, 0.0)
    period = best + np.clip(shift, -0.5, 0.5)
    f0[index[rows]] = _PITCH_RATE / period
    return f0


def _pitch_track(samples: np.ndarray, rate: int, speech: np.ndarray) -> np.ndarray:
    """F0 every :data:`PITCH_HOP_SECS` of float audio at any rate, NaN where unvoiced.

    ``speech`` flags the 10 ms energy frames worth tracking; pitch frame ``k`` is centred on
    energy frame ``2 k``, and only flagged ones are computed (see :func:`_yin`).
    """
    narrow = samples if rate == _PITCH_RATE else resample(samples, rate, _PITCH_RATE)
    # Centre the 30 ms YIN window where the 25 ms energy frame of the same time is centred.
    lead = (_YIN_WINDOW - int(FRAME_SECS * _PITCH_RATE)) // 2
    padded = np.concatenate(
        (np.zeros(lead, narrow.dtype), narrow, np.zeros(_TAU_MAX, narrow.dtype))
    )
    step = int(round(PITCH_HOP_SECS / HOP_SECS))
    return _yin(padded, int(PITCH_HOP_SECS * _PITCH_RATE), np.flatnonzero(speech[::step]))


def _pitch_summary(f0: np.ndarray) -> tuple[float | None, float | None]:
    """Median F0 and its 10th-90th percentile range in semitones, or ``None`` for too little."""
    voiced = f0[np.isfinite(f0)]
    if len(voiced) * PITCH_HOP_SECS < MIN_VOICED_SECS:
        return None, None
    low, median, high = np.percentile(voiced, [10, 50, 90])
    return float(median), float(12.0 * np.log2(high / low))


# --- one utterance -------------------------------------------------------------------------


def analyse(audio: np.ndarray, sample_rate: int, text: str, language: str) -> ProsodyFeatures:
    """Measure the prosody of one utterance and its transcript.

    ``audio`` is mono int16 or float32 in [-1, 1] at ``sample_rate`` (at least 8 kHz; the server
    passes the candidate's 16 kHz phone-path audio). ``language`` is ``"en"`` or ``"zh"``
    (anything else is measured like English). Silence or empty audio gives zero speech and
    ``None`` for the figures that need speech.

    About 5-9 ms for 10 s of 16 kHz audio on the 2-core development machine (see the module doc).
    """
    if sample_rate < TELEPHONY_RATE:
        raise ValueError(f"prosody: sample rate {sample_rate} Hz is below 8 kHz")
    samples = as_float32(audio, "prosody")
    hop = int(round(HOP_SECS * sample_rate))
    frame = int(round(FRAME_SECS * sample_rate))
    words = count_words(text, language)
    fillers = count_fillers(text, language)
    level_db = _power_db(_frame_power(samples, frame, hop))

    mask = _drop_short_runs(_speech_mask(level_db), int(round(MIN_SPEECH_SECS / HOP_SECS)))
    starts, ends = _runs(mask)
    # A gap of silence shows as fewer silent frames than its length: the frames that straddle
    # its edges hold some speech. Add that back when measuring gaps.
    straddle = (frame - hop) / sample_rate
    gaps = (starts[1:] - ends[:-1]) * HOP_SECS + straddle
    pauses = gaps[gaps >= MIN_PAUSE_SECS]
    inside = np.zeros_like(mask)  # from the first to the last speech, pauses excluded
    span_secs = 0.0
    if len(starts):
        span_secs = float((ends[-1] - starts[0]) * HOP_SECS + straddle)
        inside[starts[0] : ends[-1]] = True
        is_pause = gaps >= MIN_PAUSE_SECS
        inside &= ~_runs_mask(len(mask), ends[:-1][is_pause], starts[1:][is_pause])
    pause_secs = float(pauses.sum())
    speech_secs = max(0.0, span_secs - pause_secs)

    speech_frames = np.flatnonzero(mask)
    loudness = (
        float(10.0 * np.log10(np.mean(10.0 ** (level_db[speech_frames] / 10.0))))
        if len(speech_frames)
        else None
    )
    f0 = _pitch_track(samples, sample_rate, inside)
    pitch_median, pitch_range = _pitch_summary(f0)

    return ProsodyFeatures(
        duration_secs=len(samples) / sample_rate,
        speech_secs=float(speech_secs),
        speech_rate=words / span_secs * 60.0 if words and span_secs > 0 else None,
        articulation_rate=words / speech_secs * 60.0 if words and speech_secs > 0 else None,
        rate_unit=RATE_UNITS.get(language, "wpm"),
        word_count=words,
        pause_count=len(pauses),
        mean_pause_secs=float(pauses.mean()) if len(pauses) else None,
        pause_ratio=pause_secs / span_secs if span_secs > 0 else None,
        pitch_median_hz=pitch_median,
        pitch_range_semitones=pitch_range,
        loudness_dbfs=loudness,
        filler_count=fillers,
        filler_rate=fillers / words * 100.0 if words else None,
    )


# --- a whole call --------------------------------------------------------------------------


def aggregate(features: Sequence[ProsodyFeatures]) -> ProsodyFeatures | None:
    """Per-call figures from a call's utterances; ``None`` for no utterances.

    Rates are total words over total time (speech plus pauses for the speech rate, speech alone
    for the articulation rate) over the utterances that have both words and speech: the
    time-weighted mean of their rates. Durations, pauses and fillers are summed, the pause ratio
    is total pause time over total speech plus pause time, pitch is the median of the utterances'
    medians (and of their ranges), and loudness the speech-time-weighted mean power in dBFS.
    Raises ``ValueError`` when the utterances mix rate units (languages).
    """
    if not features:
        return None
    units = {item.rate_unit for item in features}
    if len(units) > 1:
        raise ValueError(f"prosody aggregate: utterances mix rate units {sorted(units)}")
    speech = sum(item.speech_secs for item in features)
    pause_count = sum(item.pause_count for item in features)
    pause_secs = sum(item.pause_secs for item in features)
    words = sum(item.word_count for item in features)
    fillers = sum(item.filler_count for item in features)
    rated = [item for item in features if item.word_count and item.speech_secs > 0]
    rated_words = sum(item.word_count for item in rated)
    rated_speech = sum(item.speech_secs for item in rated)
    rated_span = rated_speech + sum(item.pause_secs for item in rated)
    medians = [item.pitch_median_hz for item in features if item.pitch_median_hz is not None]
    ranges = [
        item.pitch_range_semitones for item in features if item.pitch_range_semitones is not None
    ]
    loud = [item for item in features if item.loudness_dbfs is not None and item.speech_secs > 0]
    loud_secs = sum(item.speech_secs for item in loud)
    power = sum(10.0 ** (item.loudness_dbfs / 10.0) * item.speech_secs for item in loud)
    return ProsodyFeatures(
        duration_secs=sum(item.duration_secs for item in features),
        speech_secs=speech,
        speech_rate=rated_words / rated_span * 60.0 if rated else None,
        articulation_rate=rated_words / rated_speech * 60.0 if rated else None,
        rate_unit=units.pop(),
        word_count=words,
        pause_count=pause_count,
        mean_pause_secs=pause_secs / pause_count if pause_count else None,
        pause_ratio=pause_secs / (speech + pause_secs) if speech + pause_secs > 0 else None,
        pitch_median_hz=float(np.median(medians)) if medians else None,
        pitch_range_semitones=float(np.median(ranges)) if ranges else None,
        loudness_dbfs=10.0 * math.log10(power / loud_secs) if loud_secs > 0 else None,
        filler_count=fillers,
        filler_rate=fillers / words * 100.0 if words else None,
    )


# --- live ----------------------------------------------------------------------------------


class ProsodyMeter:
    """Live prosody of the utterance in progress, for the call monitor.

    :meth:`push` takes each 20-32 ms chunk of candidate audio (16 kHz by default) with the VAD's
    verdict; :meth:`sample`, every half second or so, describes the last :attr:`window_secs`.
    Pushing costs O(chunk) (one dot product; every window's worth of audio it also runs the pitch
    tracker over the audio not yet tracked). Sampling tracks the pitch of the audio pushed since
    the previous sample and takes the median over the window's frames: on the 2-core development
    machine, sampling every 0.5 s during continuous speech took 0.6-1 ms a sample and a push
    5-10 us, so a meter per call on the event loop costs about 0.2 % of a core per call.
    """

    def __init__(self, sample_rate: int = 16000, window_secs: float = 1.5):
        if sample_rate < TELEPHONY_RATE:
            raise ValueError(f"prosody: sample rate {sample_rate} Hz is below 8 kHz")
        self.sample_rate = sample_rate
        self.window_secs = window_secs
        self._window_samples = int(window_secs * sample_rate)
        self._min_pause = int(MIN_PAUSE_SECS * sample_rate)
        self._pitch_hop = int(PITCH_HOP_SECS * _PITCH_RATE)
        self.reset()

    def reset(self) -> None:
        """Start a new utterance: forget the window, the pitch history and the pause statistics."""
        # (samples, sum of squares) of each chunk in the window, for the level.
        self._levels: deque[tuple[int, float]] = deque()
        self._level_samples = 0
        # Audio not yet pitch-tracked, at the input rate, and each chunk's VAD flag.
        self._pending: list[np.ndarray] = []
        self._pending_flags: list[bool] = []
        self._pending_samples = 0
        self._resampler = StreamResampler(self.sample_rate, _PITCH_RATE, dtype="float32")
        self._input_total = 0  # input samples handed to the resampler
        # 8 kHz audio and flags not yet consumed by whole pitch frames.
        self._narrow = np.zeros(0, dtype=np.float32)
        self._narrow_flags = np.zeros(0, dtype=bool)
        self._f0: deque[float] = deque(maxlen=max(1, int(self.window_secs / PITCH_HOP_SECS)))
        self._heard_speech = False
        self._speech_samples = 0
        self._pause_samples = 0
        self._gap_samples = 0
        self._since_speech = 0

    def push(self, audio_chunk: np.ndarray, is_speech: bool) -> None:
        """Add one chunk of candidate audio (int16 or float) and whether the VAD heard speech."""
        chunk = as_float32(audio_chunk, "prosody")
        n = len(chunk)
        if n == 0:
            return
        energy = float(np.square(chunk).sum())  # not np.dot: BLAS releases the GIL per call
        self._levels.append((n, energy))
        self._level_samples += n
        while self._level_samples - self._levels[0][0] >= self._window_samples:
            self._level_samples -= self._levels.popleft()[0]

        self._pending.append(chunk)
        self._pending_flags.append(is_speech)
        self._pending_samples += n
        if self._pending_samples >= self._window_samples:
            self._track_pitch()  # keeps memory bounded when nobody samples

        if is_speech:
            if self._heard_speech:
                if self._gap_samples >= self._min_pause:
                    self._pause_samples += self._gap_samples
                else:
                    self._speech_samples += self._gap_samples
            self._speech_samples += n
            self._gap_samples = 0
            self._heard_speech = True
            self._since_speech = 0
        else:
            if self._heard_speech:
                self._gap_samples += n
            self._since_speech += n

    def _track_pitch(self) -> None:
        """Pitch-track the whole pitch frames that the pending audio completes."""
        if not self._pending:
            return
        lengths = np.array([len(chunk) for chunk in self._pending])
        # Each chunk's flag over the 8 kHz samples it becomes (rounded on the running total).
        ends = np.round(
            (self._input_total + np.cumsum(lengths)) * _PITCH_RATE / self.sample_rate
        ).astype(np.int64)
        begins = np.concatenate(([round(self._input_total * _PITCH_RATE / self.sample_rate)], ends))
        flags = np.repeat(np.array(self._pending_flags), np.diff(begins))
        narrow = self._resampler.process(np.concatenate(self._pending))
        self._input_total += int(lengths.sum())
        self._pending, self._pending_flags, self._pending_samples = [], [], 0

        self._narrow = np.concatenate((self._narrow, narrow))
        self._narrow_flags = np.concatenate((self._narrow_flags, flags))
        span = _YIN_WINDOW + _TAU_MAX
        count = max(0, (len(self._narrow) - span) // self._pitch_hop + 1)
        if count == 0:
            return
        centres = np.arange(count) * self._pitch_hop + _YIN_WINDOW // 2
        speech = self._narrow_flags[centres]  # the resampler lags: flags are always ahead
        f0 = _yin(self._narrow, self._pitch_hop, np.flatnonzero(speech))
        self._f0.extend(f0[:count].tolist())
        consumed = count * self._pitch_hop
        self._narrow = self._narrow[consumed:]
        self._narrow_flags = self._narrow_flags[consumed:]

    @property
    def pause_ratio(self) -> float | None:
        """Pause time over speech plus pause time of the utterance so far (``None`` before speech).

        Pauses are silences of at least :data:`MIN_PAUSE_SECS` between speech, by the VAD flags
        passed to :meth:`push`; silence after the latest speech counts once speech resumes.
        """
        total = self._speech_samples + self._pause_samples
        return self._pause_samples / total if total else None

    def sample(self) -> dict[str, Any] | None:
        """The latest window: ``loudness_dbfs``, ``pitch_hz``, ``speaking``, ``pause_ratio``.

        ``loudness_dbfs`` is the RMS level of the whole window (a level meter: it drops in
        pauses), ``pitch_hz`` the median F0 of the window's voiced speech (``None`` with less
        than :data:`METER_MIN_VOICED_SECS` of it), ``speaking`` whether the VAD heard speech in the
        last quarter second, ``pause_ratio`` that of the utterance so far (:attr:`pause_ratio`).
        ``None`` before any audio was pushed.
        """
        if not self._levels:
            return None
        self._track_pitch()
        mean_square = sum(energy for _, energy in self._levels) / self._level_samples
        loudness = (
            max(SILENCE_DBFS, 10.0 * math.log10(mean_square)) if mean_square > 0 else SILENCE_DBFS
        )
        f0 = np.fromiter(self._f0, dtype=np.float64, count=len(self._f0))
        voiced = f0[np.isfinite(f0)]
        pitch = None
        if len(voiced) * PITCH_HOP_SECS >= METER_MIN_VOICED_SECS:
            pitch = round(float(np.median(voiced)), 1)
        ratio = self.pause_ratio
        return {
            "loudness_dbfs": round(loudness, 1),
            "pitch_hz": pitch,
            "speaking": self._heard_speech and self._since_speech < 0.25 * self.sample_rate,
            "pause_ratio": round(ratio, 3) if ratio is not None else None,
        }
