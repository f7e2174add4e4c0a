"""Descriptive prosody of real speech on the phone path: rate, pauses, pitch, loudness, fillers."""

from __future__ import annotations

import json
import math
from dataclasses import FrozenInstanceError, replace

import numpy as np
import pytest

from tests.conftest import phone_speech, speech_clip
from voicebot.audio.frames import phone_roundtrip_16k, rms_dbfs
from voicebot.audio.prosody import (
    ProsodyFeatures,
    ProsodyMeter,
    aggregate,
    analyse,
    count_fillers,
    count_words,
)
from voicebot.speech.vad import WINDOW_SAMPLES, WINDOW_SECS, SileroModel, SileroVAD

RATE = 16000

TRANSCRIPTS = {
    "en_jfk.wav": (
        "And so my fellow Americans, ask not what your country can do for you, "
        "ask what you can do for your country."
    ),
    "en_librispeech_1995-1837-0001.wav": (
        "It was the first great sorrow of his life. It was not so much the loss of the cotton "
        "itself, but the fantasy, the hopes, the dreams built around it."
    ),
    "en_speaker_a.wav": (
        "He began a confused complaint against the wizard, who had vanished behind the curtain "
        "on the left."
    ),
    "en_speaker_b.wav": "The horizon seems extremely distant.",
    "zh_aishell_BAC009S0724W0121.wav": "广州市房地产中介协会分析",
    "zh_news_mid.wav": "大学生利用漏洞免费吃肯德基获刑",  # approximate (shared/audio/README.md)
}
"""The shared clips' transcripts, from ../shared/audio/README.md."""

WORDS = {
    "en_jfk.wav": 22,
    "en_librispeech_1995-1837-0001.wav": 30,
    "en_speaker_a.wav": 17,
    "en_speaker_b.wav": 5,
    "zh_aishell_BAC009S0724W0121.wav": 12,
    "zh_news_mid.wav": 15,
}
"""Words (English) or characters (Chinese) in each transcript, counted by hand."""


def language(name: str) -> str:
    return name[:2]


def vad_flags(pcm16k: np.ndarray) -> np.ndarray:
    """Silero's speech verdict for each 32 ms window of 16 kHz audio."""
    return SileroVAD(SileroModel.shared()).process(pcm16k) > 0.5


def harmonic_tone(
    f0_start: float,
    secs: float = 2.0,
    f0_end: float | None = None,
    first_harmonic: int = 1,
    peak: float = 0.3,
) -> np.ndarray:
    """A voice-like harmonic tone (harmonics at 1/k up to 3.8 kHz), int16 at 16 kHz.

    ``f0_end`` makes it glide exponentially (evenly in semitones); ``first_harmonic=2`` leaves out
    the fundamental, as a phone line's band (300-3400 Hz) does for a low voice.
    """
    n = int(secs * RATE)
    f0 = f0_start * (f0_end / f0_start) ** (np.arange(n) / n) if f0_end else np.full(n, f0_start)
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    top = int(3800 // max(f0_start, f0_end or 0))
    wave = sum(np.sin(k * phase) / k for k in range(first_harmonic, top + 1))
    fade = np.minimum(1.0, np.minimum(np.arange(n), np.arange(n)[::-1]) / (0.02 * RATE))
    wave = wave * fade * peak / np.max(np.abs(wave))
    return np.round(wave * 32767).astype(np.int16)


def on_the_line(pcm: np.ndarray) -> np.ndarray:
    """A sound between half seconds of -60 dBFS hiss, through the phone path (as a caller's voice).

    The energy detector needs a noise floor to tell speech from; a steady tone alone is no speech.
    """
    hiss = np.random.default_rng(11).normal(0, 33, RATE // 2).astype(np.int16)
    return phone_roundtrip_16k(np.concatenate([hiss, pcm, hiss]))


def span_reference(name: str) -> float:
    """Words (characters) a minute over the speech span Silero VAD finds: an independent rate."""
    pcm = phone_speech(name)
    speech = np.flatnonzero(vad_flags(pcm))
    span = (speech[-1] + 1 - speech[0]) * WINDOW_SECS
    return WORDS[name] / span * 60


# --- speech rate and pauses ----------------------------------------------------------------


@pytest.mark.parametrize("name", list(TRANSCRIPTS))
def test_speech_rate_of_real_clips_is_human_and_matches_the_transcript(name: str) -> None:
    lang = language(name)
    features = analyse(phone_speech(name), RATE, TRANSCRIPTS[name], lang)

    assert features.rate_unit == ("cpm" if lang == "zh" else "wpm")
    assert features.word_count == WORDS[name]
    low, high = (150, 400) if lang == "zh" else (80, 250)
    assert low <= features.speech_rate <= high
    # Close to the transcript's words over the span the (independent) Silero VAD hears.
    assert features.speech_rate == pytest.approx(span_reference(name), rel=0.12)
    # Articulation leaves the pauses out, so it can only be faster.
    assert features.articulation_rate >= features.speech_rate
    assert features.speech_secs <= features.duration_secs
    assert 0.0 <= features.pause_ratio < 0.5


def test_jfk_pauses_are_counted_and_silence_around_speech_is_not() -> None:
    # "And so, my fellow Americans: ask not what your country can do for you; ask what you can
    # do for your country." is delivered with long oratorical pauses.
    pcm = phone_speech("en_jfk.wav")
    features = analyse(pcm, RATE, TRANSCRIPTS["en_jfk.wav"], "en")
    assert 3 <= features.pause_count <= 7
    assert 0.4 <= features.mean_pause_secs <= 1.2
    assert 0.25 <= features.pause_ratio <= 0.5
    assert features.speech_rate == pytest.approx(
        features.word_count / (features.speech_secs + features.pause_secs) * 60
    )

    # Two seconds of silence before and after change neither the pauses nor the rate.
    padded = np.concatenate([np.zeros(2 * RATE, np.int16), pcm, np.zeros(2 * RATE, np.int16)])
    padded_features = analyse(padded, RATE, TRANSCRIPTS["en_jfk.wav"], "en")
    assert padded_features.duration_secs == pytest.approx(features.duration_secs + 4)
    assert padded_features.pause_count == features.pause_count
    assert padded_features.speech_secs == pytest.approx(features.speech_secs, abs=0.05)
    assert padded_features.speech_rate == pytest.approx(features.speech_rate, rel=0.02)


@pytest.mark.parametrize(
    ("name", "noise_dbfs"),
    [
        ("en_librispeech_1995-1837-0001.wav", None),
        ("en_librispeech_1995-1837-0001.wav", -60.0),
        ("en_librispeech_1995-1837-0001.wav", -50.0),  # about the recording's own background
        ("en_jfk.wav", None),
    ],
    ids=["libri-digital-silence", "libri-60dBFS-hiss", "libri-50dBFS-hiss", "jfk-digital-silence"],
)
def test_silence_inserted_mid_answer_is_one_more_pause(name: str, noise_dbfs: float | None) -> None:
    clean = speech_clip(name)
    middle = len(clean) // 2  # inside the speech in both clips
    gap = np.zeros(int(1.5 * RATE), np.int16)
    if noise_dbfs is not None:  # a real line is never digitally silent
        level = 32768 * 10 ** (noise_dbfs / 20)
        gap = np.random.default_rng(3).normal(0, level, len(gap)).astype(np.int16)
    longer = np.concatenate([clean[:middle], gap, clean[middle:]])

    before = analyse(phone_roundtrip_16k(clean), RATE, TRANSCRIPTS[name], "en")
    after = analyse(phone_roundtrip_16k(longer), RATE, TRANSCRIPTS[name], "en")

    assert after.pause_count == before.pause_count + 1
    assert after.pause_secs - before.pause_secs == pytest.approx(1.5, abs=0.2)
    span = before.speech_secs + before.pause_secs
    assert after.pause_ratio == pytest.approx((before.pause_secs + 1.5) / (span + 1.5), abs=0.03)
    assert after.pause_ratio > before.pause_ratio + 0.05
    assert after.speech_secs == pytest.approx(before.speech_secs, abs=0.2)
    assert after.speech_rate < before.speech_rate * 0.9
    assert after.articulation_rate == pytest.approx(before.articulation_rate, rel=0.05)


# --- loudness ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["en_jfk.wav", "zh_aishell_BAC009S0724W0121.wav"])
def test_half_the_amplitude_is_6_db_quieter_and_nothing_else_changes(name: str) -> None:
    clean = speech_clip(name)
    half = np.round(clean.astype(np.float64) * 0.5).astype(np.int16)
    full_features = analyse(phone_roundtrip_16k(clean), RATE, TRANSCRIPTS[name], language(name))
    half_features = analyse(phone_roundtrip_16k(half), RATE, TRANSCRIPTS[name], language(name))

    assert full_features.loudness_dbfs - half_features.loudness_dbfs == pytest.approx(6.02, abs=0.5)
    assert -35 < full_features.loudness_dbfs < -10
    assert half_features.speech_secs == pytest.approx(full_features.speech_secs, rel=0.05)
    assert half_features.pitch_median_hz == pytest.approx(full_features.pitch_median_hz, rel=0.03)


def test_int16_and_float_input_give_the_same_figures() -> None:
    pcm = phone_speech("en_speaker_b.wav")
    text = TRANSCRIPTS["en_speaker_b.wav"]
    from_int = analyse(pcm, RATE, text, "en")
    from_float = analyse(pcm.astype(np.float32) / 32768.0, RATE, text, "en")
    assert from_float.to_dict() == from_int.to_dict()


# --- pitch ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("f0", "first_harmonic"),
    [(150.0, 1), (220.0, 1), (150.0, 2), (110.0, 3), (85.0, 4)],
    ids=["150Hz", "220Hz", "150Hz-no-fundamental", "110Hz-from-330Hz", "85Hz-from-340Hz"],
)
def test_harmonic_tone_through_the_phone_path_gives_its_pitch(
    f0: float, first_harmonic: int
) -> None:
    # Harmonics below 300 Hz left out, as the phone band does to a low voice: the period is
    # still found from the harmonics.
    tone = on_the_line(harmonic_tone(f0, first_harmonic=first_harmonic))
    features = analyse(tone, RATE, "", "en")
    assert features.pitch_median_hz == pytest.approx(f0, rel=0.02)
    assert features.pitch_range_semitones < 0.3
    assert features.speech_rate is None  # no transcript, no rate


def test_pitch_range_of_an_octave_glide() -> None:
    # 120 -> 240 Hz evenly in semitones: the 10th-90th percentile span is 80 % of 12 semitones.
    glide = on_the_line(harmonic_tone(120.0, secs=3.0, f0_end=240.0))
    features = analyse(glide, RATE, "", "en")
    assert features.pitch_range_semitones == pytest.approx(9.6, abs=0.5)
    assert features.pitch_median_hz == pytest.approx(120 * 2**0.5, rel=0.03)


def test_pitch_orders_low_and_high_voices() -> None:
    low = analyse(on_the_line(harmonic_tone(110.0)), RATE, "", "en")
    high = analyse(on_the_line(harmonic_tone(220.0)), RATE, "", "en")
    assert 12 * math.log2(high.pitch_median_hz / low.pitch_median_hz) == pytest.approx(12, abs=0.3)

    # A man (speaker A) and a woman (LibriSpeech 1995) reading: about an octave apart.
    man = analyse(phone_speech("en_speaker_a.wav"), RATE, "", "en")
    woman = analyse(phone_speech("en_librispeech_1995-1837-0001.wav"), RATE, "", "en")
    assert 80 <= man.pitch_median_hz <= 130
    assert 170 <= woman.pitch_median_hz <= 240
    assert 12 * math.log2(woman.pitch_median_hz / man.pitch_median_hz) > 6


@pytest.mark.parametrize("name", list(TRANSCRIPTS))
def test_pitch_of_real_speech_is_human_and_survives_the_phone_path(name: str) -> None:
    phone = analyse(phone_speech(name), RATE, "", language(name))
    studio = analyse(speech_clip(name), RATE, "", language(name))
    assert 70 <= phone.pitch_median_hz <= 350
    assert 2 <= phone.pitch_range_semitones <= 15
    assert phone.pitch_median_hz == pytest.approx(studio.pitch_median_hz, rel=0.05)


def telephone_high_pass(pcm: np.ndarray, order: int = 2, corner_hz: float = 300.0) -> np.ndarray:
    """A line's low cut: a Butterworth-shaped high-pass (magnitude only, applied by FFT)."""
    spectrum = np.fft.rfft(pcm.astype(np.float64))
    freqs = np.fft.rfftfreq(len(pcm), 1 / RATE)
    gain = 1 / np.sqrt(1 + (corner_hz / np.maximum(freqs, 1e-3)) ** (2 * order))
    filtered = np.fft.irfft(spectrum * gain, len(pcm))
    return np.clip(np.round(filtered), -32768, 32767).astype(np.int16)


@pytest.mark.parametrize("name", list(TRANSCRIPTS))
def test_pitch_of_real_speech_survives_a_telephone_low_cut(name: str) -> None:
    # 300 Hz, 12 dB an octave: speaker A's ~92 Hz fundamental loses about 20 dB.
    pcm = phone_speech(name)
    full = analyse(pcm, RATE, "", language(name))
    cut = analyse(telephone_high_pass(pcm), RATE, "", language(name))
    assert cut.pitch_median_hz == pytest.approx(full.pitch_median_hz, rel=0.1)
    assert cut.pitch_range_semitones == pytest.approx(full.pitch_range_semitones, abs=3)


# --- silence and bad input -----------------------------------------------------------------


@pytest.mark.parametrize(
    "audio",
    [
        np.zeros(2 * RATE, np.int16),
        np.zeros(0, np.int16),
        np.zeros(100, np.float32),
        np.random.default_rng(5).normal(0, 100, 2 * RATE).astype(np.int16),  # -50 dBFS hiss
        phone_roundtrip_16k(harmonic_tone(120.0)),  # a steady hum is not speech either
    ],
    ids=["silence", "empty", "shorter-than-a-frame", "line-noise", "steady-hum"],
)
def test_silence_and_noise_measure_no_speech(audio: np.ndarray) -> None:
    features = analyse(audio, RATE, "um", "en")
    assert features.duration_secs == pytest.approx(len(audio) / RATE)
    assert features.speech_secs == 0.0
    assert features.pause_count == 0
    assert features.speech_rate is None
    assert features.articulation_rate is None
    assert features.pause_ratio is None
    assert features.pitch_median_hz is None
    assert features.pitch_range_semitones is None
    assert features.loudness_dbfs is None
    assert (features.filler_count, features.filler_rate) == (1, 100.0)
    json.dumps(features.to_dict())


def test_too_little_voiced_audio_gives_no_pitch() -> None:
    features = analyse(on_the_line(harmonic_tone(150.0, secs=0.12)), RATE, "", "en")
    assert features.speech_secs > 0
    assert features.pitch_median_hz is None
    assert features.pitch_range_semitones is None


def test_rejects_audio_it_cannot_measure() -> None:
    with pytest.raises(ValueError, match="mono"):
        analyse(np.zeros((RATE, 2), np.int16), RATE, "", "en")
    with pytest.raises(ValueError, match="int16 or float"):
        analyse(np.zeros(RATE, np.int32), RATE, "", "en")
    with pytest.raises(ValueError, match="below 8 kHz"):
        analyse(np.zeros(RATE, np.int16), 4000, "", "en")


def test_8khz_input_is_measured_like_16khz() -> None:
    pcm = phone_speech("en_speaker_a.wav")
    narrow = pcm[::2].copy()  # the phone path carries nothing above 4 kHz
    wide_features = analyse(pcm, RATE, TRANSCRIPTS["en_speaker_a.wav"], "en")
    narrow_features = analyse(narrow, 8000, TRANSCRIPTS["en_speaker_a.wav"], "en")
    assert narrow_features.speech_secs == pytest.approx(wide_features.speech_secs, abs=0.05)
    assert narrow_features.pitch_median_hz == pytest.approx(wide_features.pitch_median_hz, rel=0.03)
    assert narrow_features.loudness_dbfs == pytest.approx(wide_features.loudness_dbfs, abs=0.5)


# --- words and fillers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fillers"),
    [
        ("Um, I think, uh, you know, it was fine. I mean, hmm.", 5),
        ("Umm... errm, well, ahh, I guess, er, yes.", 4),
        ("It was hard, you know.", 1),
        ("You know, I led the team - I mean - two people.", 2),
        ("Do you know Python? That's what I mean. You know what I mean?", 0),
        ("I like it, like, a lot.", 0),  # "like" is never counted
        ("Uh-huh, mm-hmm, her umbrella, the hummingbird.", 0),
        ("", 0),
    ],
)
def test_english_fillers(text: str, fillers: int) -> None:
    assert count_fillers(text, "en") == fillers


@pytest.mark.parametrize(
    ("text", "fillers"),
    [
        # 嗯, the hesitant 那个 and 就是说; not the demonstrative 那个项目 or the particle in 好的啊
        ("嗯，我觉得那个，那个项目就是说挺好的啊。", 3),
        ("呃呃我用Python写了三个程序。", 1),
        ("啊，是这样的，嗯嗯。", 2),
        ("额，也就是说金额不多，额外的工作也不多。", 1),  # not 也就是说, 金额, 额外
        ("那个那个我想想", 1),
        ("我在那个公司工作了三年。", 0),
        # 就是 hesitated on (before a pause mark or repeated), not 就是 as "is exactly"
        ("就是，我觉得这个工作挺适合我的。", 1),
        ("我就是就是想找个稳定的工作。", 1),
        ("我就是想找个稳定的工作，也就是，不用总换。", 0),  # not 也就是
        ("这就是我的优点。", 0),
        ("不就是加班嘛，那就是，多干一点。", 0),  # not 不就是 / 那就是
        # 然后 repeated (a connective the speaker is stuck on), not a single "and then"
        ("然后，然后我就去找了班长。", 1),
        ("然后然后然后我就走了。", 1),
        ("先做首件，然后批量做。", 0),
        ("然后，我把记录写好。", 0),
    ],
)
def test_chinese_fillers(text: str, fillers: int) -> None:
    assert count_fillers(text, "zh") == fillers


def test_word_counts() -> None:
    assert count_words("Um, I've led 3 teams.", "en") == 5
    assert count_words("我用Python写了3个程序。", "zh") == 9  # 7 characters, a word, a digit
    assert count_words(TRANSCRIPTS["en_jfk.wav"], "en") == 22
    assert count_words(TRANSCRIPTS["zh_aishell_BAC009S0724W0121.wav"], "zh") == 12


def test_filler_rate_is_per_100_words_or_characters() -> None:
    pcm = phone_speech("en_speaker_b.wav")
    english = analyse(pcm, RATE, "Um, the horizon, uh, seems extremely distant.", "en")
    assert (english.filler_count, english.word_count) == (2, 7)
    assert english.filler_rate == pytest.approx(2 / 7 * 100)
    chinese = analyse(pcm, RATE, "嗯，广州市房地产中介协会分析", "zh")
    assert (chinese.filler_count, chinese.word_count) == (1, 13)
    assert chinese.filler_rate == pytest.approx(100 / 13)


# --- aggregate -----------------------------------------------------------------------------


def test_aggregate_weights_rates_by_time_and_sums_counts() -> None:
    long_answer = analyse(phone_speech("en_jfk.wav"), RATE, TRANSCRIPTS["en_jfk.wav"], "en")
    short_answer = analyse(
        phone_speech("en_speaker_b.wav"), RATE, "Um, " + TRANSCRIPTS["en_speaker_b.wav"], "en"
    )
    third = analyse(phone_speech("en_speaker_a.wav"), RATE, TRANSCRIPTS["en_speaker_a.wav"], "en")
    answers = [long_answer, short_answer, third]
    call = aggregate(answers)
    assert call is not None

    spans = [item.speech_secs + item.pause_secs for item in answers]
    weighted = sum(item.speech_rate * span for item, span in zip(answers, spans, strict=True))
    assert call.speech_rate == pytest.approx(weighted / sum(spans))
    assert call.speech_rate != pytest.approx(np.mean([item.speech_rate for item in answers]))
    articulation = sum(item.articulation_rate * item.speech_secs for item in answers)
    assert call.articulation_rate == pytest.approx(
        articulation / sum(item.speech_secs for item in answers)
    )
    assert call.duration_secs == pytest.approx(sum(item.duration_secs for item in answers))
    assert call.speech_secs == pytest.approx(sum(item.speech_secs for item in answers))
    assert call.word_count == sum(item.word_count for item in answers)
    assert call.pause_count == sum(item.pause_count for item in answers)
    assert call.pause_secs == pytest.approx(sum(item.pause_secs for item in answers))
    assert call.pause_ratio == pytest.approx(call.pause_secs / (call.pause_secs + call.speech_secs))
    assert call.filler_count == 1
    assert call.filler_rate == pytest.approx(100 / call.word_count)
    assert call.pitch_median_hz == pytest.approx(
        float(np.median([item.pitch_median_hz for item in answers]))
    )
    louds = [item.loudness_dbfs for item in answers]
    assert min(louds) < call.loudness_dbfs < max(louds)


def test_aggregate_edge_cases() -> None:
    assert aggregate([]) is None
    answer = analyse(phone_speech("en_speaker_b.wav"), RATE, TRANSCRIPTS["en_speaker_b.wav"], "en")
    assert aggregate([answer]).to_dict() == answer.to_dict()

    # A silent turn adds duration but no speech, and leaves the rates alone.
    silent = analyse(np.zeros(RATE, np.int16), RATE, "", "en")
    with_silent = aggregate([answer, silent])
    assert with_silent.duration_secs == pytest.approx(answer.duration_secs + 1)
    assert with_silent.speech_rate == pytest.approx(answer.speech_rate)
    assert with_silent.loudness_dbfs == pytest.approx(answer.loudness_dbfs)
    assert aggregate([silent]).speech_rate is None

    # An untranscribed turn (Whisper heard nothing) does not drag the rate down.
    untranscribed = replace(answer, word_count=0, speech_rate=None, articulation_rate=None)
    assert aggregate([answer, untranscribed]).speech_rate == pytest.approx(answer.speech_rate)

    chinese = analyse(phone_speech("zh_aishell_BAC009S0724W0121.wav"), RATE, "广州", "zh")
    with pytest.raises(ValueError, match="rate units"):
        aggregate([answer, chinese])


def test_features_are_frozen_and_round_for_json() -> None:
    features = analyse(phone_speech("en_jfk.wav"), RATE, TRANSCRIPTS["en_jfk.wav"], "en")
    with pytest.raises(FrozenInstanceError):
        features.speech_rate = 1.0  # type: ignore[misc]
    data = features.to_dict()
    assert set(data) == set(ProsodyFeatures.__dataclass_fields__)
    assert data["speech_rate"] == round(features.speech_rate, 1)
    assert data["pause_ratio"] == round(features.pause_ratio, 3)
    assert data["pitch_median_hz"] == round(features.pitch_median_hz, 1)
    assert json.loads(json.dumps(data)) == data


# --- live meter ----------------------------------------------------------------------------


def push_in_chunks(
    meter: ProsodyMeter, pcm: np.ndarray, flags: np.ndarray, chunk: int = 320
) -> list[tuple[float, dict]]:
    """Push 20 ms chunks with the VAD verdict at their start; sample every 0.5 s."""
    samples = []
    for index, start in enumerate(range(0, len(pcm), chunk)):
        window = min(start // WINDOW_SAMPLES, len(flags) - 1)
        meter.push(pcm[start : start + chunk], bool(flags[window]))
        if index % 25 == 24:
            samples.append(((start + chunk) / RATE, meter.sample()))
    return samples


def test_meter_follows_a_clip_pushed_in_20ms_chunks() -> None:
    speech = phone_speech("en_jfk.wav")
    pcm = np.concatenate([speech, np.zeros(int(1.6 * RATE), np.int16)])
    flags = vad_flags(pcm)
    meter = ProsodyMeter()
    assert meter.sample() is None

    samples = push_in_chunks(meter, pcm, flags)
    during = [sample for secs, sample in samples if 1.0 <= secs <= len(speech) / RATE]
    assert all(
        set(sample) == {"loudness_dbfs", "pitch_hz", "speaking", "pause_ratio"}
        for _, sample in samples
    )

    # Loudness is the level of the last 1.5 s, as rms_dbfs measures it.
    for secs, sample in samples:
        end = int(secs * RATE)
        window = pcm[max(0, end - int(1.5 * RATE)) : end]
        assert sample["loudness_dbfs"] == pytest.approx(rms_dbfs(window), abs=0.5)

    # Pitch while he speaks: human, and about what the whole-utterance analysis finds.
    whole = analyse(speech, RATE, TRANSCRIPTS["en_jfk.wav"], "en")
    pitches = [sample["pitch_hz"] for sample in during if sample["pitch_hz"] is not None]
    assert len(pitches) >= 0.8 * len(during)
    assert all(70 <= pitch <= 350 for pitch in pitches)
    assert float(np.median(pitches)) == pytest.approx(whole.pitch_median_hz, rel=0.1)
    assert sum(sample["speaking"] for sample in during) >= 0.6 * len(during)

    # The running pause ratio comes from the VAD's flags: near the analysis's energy-based one.
    assert samples[-1][1]["pause_ratio"] == pytest.approx(whole.pause_ratio, abs=0.15)

    # After 1.5 s of silence the window holds nothing but silence.
    last = samples[-1][1]
    assert last["speaking"] is False
    assert last["pitch_hz"] is None
    assert last["loudness_dbfs"] == -120.0

    meter.reset()
    assert meter.sample() is None
    assert meter.pause_ratio is None


def test_meter_pitch_of_a_tone_is_exact_across_chunk_edges() -> None:
    tone = phone_roundtrip_16k(harmonic_tone(150.0, secs=3.0, first_harmonic=2))
    meter = ProsodyMeter()
    samples = push_in_chunks(meter, tone, np.ones(len(tone) // WINDOW_SAMPLES + 1, bool), 512)
    pitches = [sample["pitch_hz"] for secs, sample in samples if secs >= 0.5]
    assert pitches
    assert all(pitch == pytest.approx(150.0, rel=0.01) for pitch in pitches)
    assert all(sample["speaking"] for _, sample in samples)
    assert samples[-1][1]["pause_ratio"] == 0.0


def test_meter_ignores_pitch_outside_speech_and_counts_pauses() -> None:
    # A steady hum the VAD calls non-speech gives no pitch; speech - 0.5 s gap - speech gives a
    # pause ratio of 0.5 / 1.5.
    hum = phone_roundtrip_16k(harmonic_tone(120.0, secs=1.0))
    meter = ProsodyMeter()
    for start in range(0, len(hum), 320):
        meter.push(hum[start : start + 320], False)
    sample = meter.sample()
    assert sample["pitch_hz"] is None
    assert sample["speaking"] is False
    assert sample["pause_ratio"] is None
    assert sample["loudness_dbfs"] > -30

    meter.reset()
    for is_speech, secs in [(True, 0.5), (False, 0.5), (True, 0.5)]:
        for _ in range(int(secs * 50)):
            meter.push(np.zeros(320, np.float32), is_speech)
    assert meter.pause_ratio == pytest.approx(1 / 3)
    # A gap shorter than a pause counts as speech.
    meter.reset()
    for is_speech, secs in [(True, 0.5), (False, 0.2), (True, 0.5)]:
        for _ in range(int(secs * 50)):
            meter.push(np.zeros(320, np.float32), is_speech)
    assert meter.pause_ratio == 0.0
