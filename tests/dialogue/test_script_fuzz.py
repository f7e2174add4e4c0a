"""Fuzzing the job-script loader with Hypothesis: any file is a script or a ScriptError.

Whatever an operator saves in ``dialogues/`` (any text, YAML or JSON of any shape, a real script
with fields replaced by values of other types or removed, YAML's tags, anchors and complex keys),
:func:`load_script` returns a :class:`JobScript` or raises :class:`ScriptError` whose problems
each say where and what, never another exception. Bounded: a few seconds a test.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voicebot.dialogue.script import JobScript, ScriptError, load_script

DIALOGUES = Path(__file__).resolve().parents[2] / "dialogues"
REAL = yaml.safe_load((DIALOGUES / "customer_service_en.yaml").read_text(encoding="utf-8"))

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(st.characters(exclude_categories=["Cs"]), max_size=30)
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=12,
)


def load_text(text: str) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "job.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            script = load_script(path)
        except ScriptError as error:
            assert error.problems
            for problem in error.problems:
                assert problem.message and problem.hint is not None
            assert str(error)
        else:
            assert isinstance(script, JobScript)


def paths(data, prefix=()):
    """Every (path, value) in a decoded script."""
    yield prefix, data
    if isinstance(data, dict):
        for key, value in data.items():
            yield from paths(value, (*prefix, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from paths(value, (*prefix, index))


REAL_PATHS = [path for path, _ in paths(REAL) if path]


def mutated(data, path, replacement, delete):
    data = json.loads(json.dumps(data))
    node = data
    for step in path[:-1]:
        node = node[step]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = replacement
    return data


@FUZZ
@given(st.text(st.characters(exclude_categories=["Cs"]), max_size=300))
def test_any_text_is_a_script_or_a_script_error(text):
    load_text(text)


@FUZZ
@given(values, st.booleans())
def test_any_yaml_or_json_value_is_a_script_or_a_script_error(value, as_json):
    load_text(json.dumps(value) if as_json else yaml.safe_dump(value, allow_unicode=True))


@FUZZ
@given(
    st.lists(st.tuples(st.sampled_from(REAL_PATHS), values, st.booleans()), min_size=1, max_size=4),
    st.booleans(),
)
def test_a_real_script_with_fields_changed_or_removed_loads_or_says_why(changes, as_json):
    data = REAL
    for path, replacement, delete in changes:
        try:
            data = mutated(data, path, replacement, delete)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change removed or replaced this field's parent
    load_text(json.dumps(data) if as_json else yaml.safe_dump(data, allow_unicode=True))


@pytest.mark.parametrize(
    "text",
    [
        "a: &x [*x]\n",  # a list that contains itself
        "id: &x {a: *x}\n",
        "questions: &q [*q]\n",
        "? [a, b]\n: c\n",  # a complex (non-string) key
        "? {a: 1}\n: c\nid: x\n",
        "id: !foo bar\n",  # an unknown tag
        "id: !!python/object:os.system x\n",
        "id: !!binary '%%%'\n",
        "id: !!timestamp nope\n",
        "id: !!int x\n",
        "[" * 5000 + "]" * 5000,
        "a:\n" + "".join("  " * n + "- \n" for n in range(1, 400)),
        '{"questions": ' + "[" * 100_000 + "]" * 100_000 + "}",
        "a: &a [1,2]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n",
        "a: &a [[[[[[[[[[1]]]]]]]]]]\nb: &b [[[[[[[[[[*a]]]]]]]]]]\n",  # deep through an alias
        "".join(f"a{n}: &a{n} [*a{n - 1}, *a{n - 1}]\n" for n in range(1, 40)).replace(
            "*a0, *a0", "1, 2"
        ),  # aliases of aliases: 2**40 values
        "\ufeffid: x\n",
        "%YAML 9.9\n---\nid: x\n",
        "--- a\n--- b\n",
    ],
)
def test_yaml_features_are_a_script_or_a_script_error(text):
    load_text(text)
