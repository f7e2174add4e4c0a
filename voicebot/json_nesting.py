"""How deeply JSON text nests, counted without recursion (before anything parses it).

Python's ``json`` parser, ``repr`` and pydantic recurse once per level of nesting, so text such
as ``[[[[...`` 100,000 levels deep raises ``RecursionError`` wherever it is parsed or printed.
The REST API and the carrier parsers refuse text nested deeper than they need with
:func:`json_depth`, which only scans the brackets outside strings.
"""

from __future__ import annotations

import re

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")


def json_depth(text: str) -> int:
    """The deepest nesting of objects/arrays in JSON text (strings skipped; no recursion).

    For text that is not valid JSON the count is still bounded by its brackets, which is what
    a parser would recurse on.
    """
    brackets = _NOT_BRACKETS.sub("", _STRINGS.sub("", text))
    depth = deepest = 0
    for char in brackets:
        if char in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
        else:
            depth -= 1
    return deepest
