"""Tests for job scripts: the shipped scripts load, broken ones say where and how to fix them."""

from pathlib import Path

import pytest

from voicebot.dialogue.script import (
    JobScript,
    ScriptError,
    fixed_prompts,
    load_script,
    load_scripts,
    prompt_texts,
)

DIALOGUES = Path(__file__).resolve().parents[2] / "dialogues"

VALID = """\
id: test-job
title: Test Job
language: en
greeting: Hi, I am an AI assistant and this call is recorded.
consent_question: Do you agree to continue? Say yes or press 1.
consent_declined: Okay, goodbye.
consent_unclear: Sorry, please say yes or no.
questions:
  - id: first
    prompt: First question?
  - id: second
    prompt: Second question?
    max_answer_secs: 30
closing: Thanks, goodbye.
reprompt: Are you still there?
no_response_goodbye: I can't hear you, goodbye.
"""


def write(tmp_path: Path, text: str, name: str = "job.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def line_of(text: str, fragment: str) -> int:
    """1-based line of the first line containing ``fragment``."""
    return next(i for i, line in enumerate(text.splitlines(), 1) if fragment in line)


def load_error(tmp_path: Path, text: str) -> ScriptError:
    path = write(tmp_path, text)
    with pytest.raises(ScriptError) as caught:
        load_script(path)
    assert str(path) in str(caught.value)
    return caught.value


# --- shipped scripts -------------------------------------------------------------------------


SHIPPED = sorted(DIALOGUES.glob("*.yaml"))


def test_there_are_shipped_scripts() -> None:
    assert any(path.name == "customer_service_en.yaml" for path in SHIPPED)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda path: path.name)
def test_shipped_script_loads(path: Path) -> None:
    script = load_script(path)
    assert script.id == path.stem
    assert len(script.questions) >= 1


def test_load_scripts_keys_every_shipped_script_by_id() -> None:
    scripts = load_scripts(DIALOGUES)
    assert set(scripts) == {path.stem for path in SHIPPED}
    english = scripts["customer_service_en"]
    assert english.language == "en"
    assert 3 <= len(english.questions) <= 4
    assert "Northwind Retail" in english.greeting
    assert "press 1" in english.consent_question and "press 2" in english.consent_question


def test_shipped_english_prompts_are_short_enough_for_a_phone_call() -> None:
    script = load_script(DIALOGUES / "customer_service_en.yaml")
    for text in fixed_prompts(script):
        assert len(text.split()) <= 22, text


# --- the model -------------------------------------------------------------------------------


def test_valid_script_fields_and_defaults(tmp_path: Path) -> None:
    script = load_script(write(tmp_path, VALID))
    assert script.id == "test-job"
    assert script.voice is None
    assert script.silence_timeout_secs == 6.0
    assert script.max_reprompts == 1
    assert script.max_answer_secs == 90.0
    assert [q.id for q in script.questions] == ["first", "second"]
    assert script.questions[0].max_answer_secs is None
    assert script.question("second").max_answer_secs == 30


def test_folded_text_is_stripped(tmp_path: Path) -> None:
    text = VALID.replace("closing: Thanks, goodbye.", "closing: >\n  Thanks,\n  goodbye.\n")
    assert load_script(write(tmp_path, text)).closing == "Thanks, goodbye."


def test_prompt_texts_have_stable_ids_and_fixed_prompts_cover_them(tmp_path: Path) -> None:
    script = load_script(write(tmp_path, VALID))
    texts = prompt_texts(script)
    assert list(texts) == [
        "greeting",
        "consent",
        "consent_unclear",
        "consent_declined",
        "q:first",
        "q:second",
        "reprompt",
        "repeat",
        "move_on",
        "knockout_unclear",
        "knockout_goodbye",
        "opt_out_goodbye",
        "take_your_time",
        "wrap_up",
        "closing",
        "no_response_goodbye",
    ]
    assert texts["q:second"] == "Second question?"
    prompts = fixed_prompts(script)
    assert set(prompts) == set(texts.values())
    assert len(prompts) == len(set(prompts))


def test_fixed_prompts_says_a_repeated_text_once(tmp_path: Path) -> None:
    text = VALID.replace(
        "no_response_goodbye: I can't hear you, goodbye.", "no_response_goodbye: Okay, goodbye."
    )
    prompts = fixed_prompts(load_script(write(tmp_path, text)))
    assert prompts.count("Okay, goodbye.") == 1


def test_chinese_greeting_disclosure_is_checked_in_chinese(tmp_path: Path) -> None:
    chinese = VALID.replace("language: en", "language: zh").replace(
        "greeting: Hi, I am an AI assistant and this call is recorded.",
        "greeting: 您好，我是智能助理，本次通话会录音。",
    )
    assert load_script(write(tmp_path, chinese)).language == "zh"
    no_recording = chinese.replace("本次通话会录音。", "很高兴和您通话。")
    error = load_error(tmp_path, no_recording)
    assert error.field == "greeting"
    assert "录音" in str(error)


def test_script_can_be_built_in_code() -> None:
    data = {
        "id": "code-job",
        "title": "T",
        "language": "en",
        "greeting": "This is an automated assistant; we record calls.",
        "consent_question": "OK?",
        "consent_declined": "Bye.",
        "consent_unclear": "Yes or no?",
        "questions": [{"id": "q1", "prompt": "Why?"}],
        "closing": "Bye.",
        "reprompt": "Hello?",
        "no_response_goodbye": "Bye.",
    }
    assert JobScript.model_validate(data).questions[0].id == "q1"


# --- broken scripts: file, field path, line, fix hint ------------------------------------------


def test_missing_field_names_the_question_and_its_line(tmp_path: Path) -> None:
    text = VALID.replace("    prompt: Second question?\n", "")
    error = load_error(tmp_path, text)
    assert error.field == "questions[1].prompt"
    assert error.line == line_of(text, "id: second")
    assert "questions[1].prompt" in str(error)
    assert f":{error.line}:" in str(error)
    assert "add `prompt:`" in str(error)


def test_missing_top_level_field(tmp_path: Path) -> None:
    error = load_error(tmp_path, VALID.replace("closing: Thanks, goodbye.\n", ""))
    assert error.field == "closing"
    assert "add `closing:`" in str(error)


def test_wrong_type_names_field_and_line(tmp_path: Path) -> None:
    text = VALID + "silence_timeout_secs: soon\n"
    error = load_error(tmp_path, text)
    assert error.field == "silence_timeout_secs"
    assert error.line == line_of(text, "silence_timeout_secs")
    assert "number" in str(error)


def test_question_written_as_plain_text(tmp_path: Path) -> None:
    text = VALID.replace("  - id: first\n    prompt: First question?\n", "  - First question?\n")
    error = load_error(tmp_path, text)
    assert error.field == "questions[0]"
    assert error.line == line_of(text, "- First question?")


def test_negative_timeout_is_rejected(tmp_path: Path) -> None:
    error = load_error(tmp_path, VALID + "silence_timeout_secs: -1\n")
    assert error.field == "silence_timeout_secs"


def test_duplicate_question_id_points_at_the_second_one(tmp_path: Path) -> None:
    text = VALID.replace("id: second", "id: first")
    error = load_error(tmp_path, text)
    assert error.field == "questions[1].id"
    assert error.line == line_of(text, "prompt: Second question?") - 1
    assert "'first'" in str(error) and "questions[0]" in str(error)


def test_unknown_key_lists_allowed_keys(tmp_path: Path) -> None:
    text = VALID.replace("    max_answer_secs: 30", "    max_answer_sec: 30")
    error = load_error(tmp_path, text)
    assert error.field == "questions[1].max_answer_sec"
    assert error.line == line_of(text, "max_answer_sec:")
    assert "max_answer_secs" in str(error)  # the allowed keys, so the typo is obvious


def test_greeting_without_ai_disclosure(tmp_path: Path) -> None:
    text = VALID.replace("I am an AI assistant", "I am calling from Northwind")
    error = load_error(tmp_path, text)
    assert error.field == "greeting"
    assert error.line == line_of(text, "greeting:")
    assert "AI" in str(error)


def test_greeting_without_recording_notice(tmp_path: Path) -> None:
    error = load_error(tmp_path, VALID.replace(" and this call is recorded", ""))
    assert error.field == "greeting"
    assert "recorded" in str(error)


def test_ai_inside_a_word_is_not_a_disclosure(tmp_path: Path) -> None:
    text = VALID.replace("I am an AI assistant", "I said hello")
    assert load_error(tmp_path, text).field == "greeting"


def test_bad_slug_id(tmp_path: Path) -> None:
    error = load_error(tmp_path, VALID.replace("id: test-job", "id: Test Job"))
    assert error.field == "id"
    assert "lower-case" in str(error)


def test_unknown_language(tmp_path: Path) -> None:
    error = load_error(tmp_path, VALID.replace("language: en", "language: fr"))
    assert error.field == "language"
    assert "'en' or 'zh'" in str(error)


def test_no_questions(tmp_path: Path) -> None:
    head, tail = VALID.split("questions:")[0], VALID.split("max_answer_secs: 30\n")[1]
    text = head + "questions: []\n" + tail
    error = load_error(tmp_path, text)
    assert error.field == "questions"


def test_bad_yaml_gives_the_line(tmp_path: Path) -> None:
    text = VALID.replace("reprompt: Are you still there?", "reprompt: [Are you still there?")
    error = load_error(tmp_path, text)
    assert error.field is None
    assert error.line is not None and error.line >= line_of(text, "reprompt:")
    assert "invalid YAML" in str(error)


def test_duplicate_key_is_an_error_not_silently_overwritten(tmp_path: Path) -> None:
    text = VALID + "title: Another Title\n"
    error = load_error(tmp_path, text)
    assert error.field == "title"
    assert error.line == line_of(text, "Another Title")


@pytest.mark.parametrize("text", ["", "- just\n- a list\n", "just a sentence\n"])
def test_file_that_is_not_a_mapping(tmp_path: Path, text: str) -> None:
    assert "not a mapping" in str(load_error(tmp_path, text))


def test_every_problem_is_reported(tmp_path: Path) -> None:
    text = VALID.replace("title: Test Job\n", "").replace("reprompt: Are you still there?\n", "")
    error = load_error(tmp_path, text)
    assert {problem.field for problem in error.problems} == {"title", "reprompt"}


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ScriptError, match="cannot read"):
        load_script(tmp_path / "absent.yaml")


def test_load_scripts_rejects_two_files_with_the_same_id(tmp_path: Path) -> None:
    write(tmp_path, VALID, "a.yaml")
    second = write(tmp_path, VALID, "b.yaml")
    with pytest.raises(ScriptError) as caught:
        load_scripts(tmp_path)
    assert caught.value.file == str(second)
    assert caught.value.field == "id"
    assert caught.value.line == 1
    assert "a.yaml" in str(caught.value)


def test_load_scripts_reports_the_broken_file(tmp_path: Path) -> None:
    write(tmp_path, VALID, "good.yaml")
    broken = write(tmp_path, VALID.replace("id: test-job", "id: other\nbogus: 1"), "broken.yml")
    with pytest.raises(ScriptError) as caught:
        load_scripts(tmp_path)
    assert caught.value.file == str(broken)
    assert caught.value.field == "bogus"


def test_load_scripts_on_a_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ScriptError, match="not a directory"):
        load_scripts(tmp_path / "nowhere")


# --- competencies, follow-ups, knock-outs, keypad answers ---------------------------------------

SCORED = VALID.replace(
    "questions:\n",
    """competencies:
  - id: service
    name: Customer service
    weight: 2
    keywords: [customer]
    rubric:
      - score: 20
        description: No example.
      - score: 80
        description: A real example.
        evidence: [customer, refund]
questions:
""",
).replace(
    "  - id: first\n    prompt: First question?\n",
    """  - id: first
    prompt: First question?
    competency: service
    follow_up:
      prompt: Could you give an example?
  - id: shifts
    prompt: Can you work nights? Press 1 for yes, 2 for no.
    knockout:
      expected: "yes"
    dtmf:
      "1": "yes"
      "2": "no"
""",
)


def test_scored_script_loads_with_competencies_follow_ups_and_knockouts(tmp_path: Path) -> None:
    script = load_script(write(tmp_path, SCORED))
    assert script.competency("service").rubric[1].evidence == ["customer", "refund"]
    first, shifts = script.question("first"), script.question("shifts")
    assert first.competency == "service" and first.follow_up is not None
    assert first.depends_on_answer and shifts.depends_on_answer
    assert shifts.knockout is not None and shifts.knockout.expected == "yes"
    assert shifts.dtmf == {"1": "yes", "2": "no"}
    assert script.thresholds.advance == 70 and script.thresholds.hold == 50
    assert script.prosody_in_recommendation is False
    # Texts a script leaves out come from the language's defaults.
    assert script.repeat_intro and script.opt_out_goodbye and script.knockout_goodbye
    texts = prompt_texts(script)
    assert texts["f:first"] == "Could you give an example?"


def test_unknown_competency_names_the_question_and_line(tmp_path: Path) -> None:
    text = SCORED.replace("competency: service", "competency: sevice")
    error = load_error(tmp_path, text)
    assert error.field == "questions[0].competency"
    assert error.line == line_of(text, "competency: sevice")
    assert "'sevice'" in str(error) and "service" in error.problems[0].hint + str(error)


def test_rubric_levels_must_rise(tmp_path: Path) -> None:
    text = SCORED.replace("      - score: 80", "      - score: 10")
    error = load_error(tmp_path, text)
    assert error.field == "competencies[0].rubric[1].score"
    assert error.line == line_of(text, "- score: 10")
    assert "lowest score to the highest" in str(error)


def test_lowest_rubric_level_takes_no_evidence(tmp_path: Path) -> None:
    text = SCORED.replace(
        "        description: No example.\n",
        "        description: No example.\n        evidence: [hello]\n",
    )
    error = load_error(tmp_path, text)
    assert error.field == "competencies[0].rubric[0].evidence"
    assert "floor" in str(error)


def test_bad_keypad_key(tmp_path: Path) -> None:
    text = SCORED.replace('      "2": "no"', '      "22": "no"')
    error = load_error(tmp_path, text)
    assert error.field == "questions[1].dtmf.22"
    assert "phone key" in str(error)


def test_knockout_answer_must_be_yes_or_no(tmp_path: Path) -> None:
    text = SCORED.replace('expected: "yes"', "expected: maybe")
    error = load_error(tmp_path, text)
    assert error.field == "questions[1].knockout.expected"
    assert "'yes' or 'no'" in str(error)


def test_follow_up_on_a_knockout_is_refused(tmp_path: Path) -> None:
    text = SCORED.replace(
        '      expected: "yes"\n',
        '      expected: "yes"\n    follow_up:\n      prompt: Why?\n',
    )
    error = load_error(tmp_path, text)
    assert error.field == "questions[1].follow_up"
    assert "knock-out" in str(error)


def test_thresholds_in_order(tmp_path: Path) -> None:
    error = load_error(tmp_path, SCORED + "thresholds:\n  advance: 40\n  hold: 60\n")
    assert error.field == "thresholds.hold"
    assert "at or below" in str(error)


def test_misspelt_key_in_a_competency_lists_its_keys(tmp_path: Path) -> None:
    text = SCORED.replace("    weight: 2\n", "    wieght: 2\n")
    error = load_error(tmp_path, text)
    fields = [problem.field for problem in error.problems]
    assert "competencies[0].wieght" in fields and "competencies[0].weight" in fields
    typo = error.problems[fields.index("competencies[0].wieght")]
    assert "improvement_tip" in typo.hint  # the Competency's keys, not the script's


def test_cli_check_reports_every_problem_with_file_line_and_hint(tmp_path: Path) -> None:
    import subprocess
    import sys

    good = write(tmp_path, SCORED, "good.yaml")
    bad_text = SCORED.replace("competency: service", "competency: sevice").replace(
        "      - score: 80", "      - score: 10"
    )
    bad = write(tmp_path, bad_text.replace("id: test-job", "id: other-job"), "bad.yaml")
    result = subprocess.run(
        [sys.executable, "-m", "voicebot.cli", "dialogues", "check", str(good), str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert f"{bad}:{line_of(bad_text, 'competency: sevice')}: questions[0].competency" in output
    assert f"{bad}:{line_of(bad_text, '- score: 10')}: competencies[0].rubric[1].score" in output
    assert "Fix:" in output
    assert f"ok   {good}: test-job (en, 3 questions)" in output


def test_a_question_s_answer_kind_and_pause_ceiling():
    from pydantic import ValidationError

    from voicebot.dialogue.script import Knockout, Question

    assert Question(id="exp", prompt="Tell me about it.").answer_kind == "open"
    knockout = Question(id="auth", prompt="Can you work here?", knockout=Knockout(expected="yes"))
    assert knockout.answer_kind == "closed"
    keys = Question(id="shift", prompt="Nights? Press 1 or 2.", dtmf={"1": "yes", "2": "no"})
    assert keys.answer_kind == "closed"
    told = Question(id="years", prompt="How many years?", answer="closed", max_pause_secs=1.5)
    assert told.answer_kind == "closed" and told.max_pause_secs == 1.5
    with pytest.raises(ValidationError):
        Question(id="x", prompt="?", answer="maybe")
    with pytest.raises(ValidationError):
        Question(id="x", prompt="?", max_pause_secs=0)


# --- recorded prompts ------------------------------------------------------------------------


def _write_speech_wav(path: Path, clip: str = "en_jfk.wav", secs: float | None = None) -> Path:
    import wave

    from tests.conftest import speech_clip

    pcm = speech_clip(clip)
    if secs is not None:
        pcm = pcm[: int(secs * 16000)]
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        wav.writeframes(pcm.astype("<i2").tobytes())
    return path


def test_recordings_resolve_against_the_script_s_folder(tmp_path: Path) -> None:
    folder = tmp_path / "jobs"
    folder.mkdir()
    text = VALID + "recordings:\n  greeting: audio/greeting.wav\n  q:first: /abs/first.mp3\n"
    script = load_script(write(folder, text))
    assert script.recordings == {
        "greeting": str(folder.resolve() / "audio" / "greeting.wav"),
        "q:first": "/abs/first.mp3",
    }


def test_recording_for_a_prompt_the_script_does_not_say(tmp_path: Path) -> None:
    text = VALID + "recordings:\n  q:third: third.wav\n"
    error = load_error(tmp_path, text)
    assert error.field == "recordings.q:third"
    assert error.line == line_of(text, "q:third")
    assert "prompt 'q:third'" in str(error) and "q:first" in str(error)


def test_cli_check_verifies_every_recording_and_lists_synthesised_prompts(tmp_path: Path) -> None:
    import subprocess
    import sys
    import wave

    _write_speech_wav(tmp_path / "audio" / "greeting.wav", secs=4.0)
    _write_speech_wav(tmp_path / "audio" / "first.wav", secs=2.0)
    good = write(
        tmp_path,
        VALID + "recordings:\n  greeting: audio/greeting.wav\n  q:first: audio/first.wav\n",
        "good.yaml",
    )
    with wave.open(str(tmp_path / "audio" / "silent.wav"), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(b"\0\0" * 16000)
    bad_text = VALID.replace("id: test-job", "id: bad-job") + (
        "recordings:\n  greeting: audio/missing.wav\n  q:second: audio/silent.wav\n"
    )
    bad = write(tmp_path, bad_text, "bad.yaml")

    def check(*paths: Path) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "voicebot.cli", "dialogues", "check", *map(str, paths)],
            capture_output=True,
            text=True,
            timeout=120,
        )

    result = check(good)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok     test-job recording greeting: greeting.wav (4.0 s" in result.stdout
    assert "ok     test-job recording q:first: first.wav (2.0 s" in result.stdout
    synthesised = next(line for line in result.stdout.splitlines() if line.startswith("tts"))
    assert "consent, " in synthesised and "q:second" in synthesised
    assert "greeting" not in synthesised and "q:first" not in synthesised

    result = check(good, bad)
    assert result.returncode != 0
    assert "FAIL   bad-job recording greeting:" in result.stdout
    assert "missing.wav: no such file" in result.stdout
    assert "FAIL   bad-job recording q:second:" in result.stdout
    assert "no speech heard" in result.stdout
