"""Interim transcripts that firm up: LocalAgreement over successive Whisper hypotheses.

While a watched candidate speaks, the session re-transcribes the turn's audio so far every
``VOICEBOT_LIVE_PARTIAL_INTERVAL_SECS`` of new speech. Each run gives a hypothesis of the whole
window; its last words are often wrong (cut mid-word, or revised once more audio comes). The
LocalAgreement-2 policy of whisper_streaming (Machacek et al., 2023) shows a word as *stable* once
two consecutive hypotheses agree on it and everything before it; the rest is *unstable* (shown
greyed, may change). Stable words are never taken back, so a recruiter sees text that only grows,
and the final transcript at the end of the turn replaces the lot.

Without word timestamps a new hypothesis is lined up with the stable words by its tokens
(``difflib`` on normalised tokens): Whisper may rewrite an early word ("their" -> "there") and
the stable text must not then be repeated or shifted.

Long answers: Whisper sees at most 30 s, so the window is closed at a pause once it is long
(:meth:`LocalAgreement.close_window`): every word of the closing hypothesis (audio that ends in a
pause has no cut word) is frozen, and the next window starts at that pause.

Tokens are words for space-separated languages and single characters for Chinese (no spaces),
so agreement works the same in both.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

_TOKEN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]|[^\s\u3400-\u9fff\uf900-\ufaff]+")
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_NORMALISE = re.compile(r"[^\w\u3400-\u9fff]+")
_CJK_PUNCTUATION = set("，。！？、；：,.!?;:")


def tokens(text: str) -> list[str]:
    """Words of ``text`` (Chinese: one token per character; punctuation stays on its word)."""
    out: list[str] = []
    for token in _TOKEN.findall(text):
        if token in _CJK_PUNCTUATION and out:
            out[-1] += token  # Chinese punctuation belongs to the character before it
        else:
            out.append(token)
    return out


def join(words: list[str]) -> str:
    """Tokens back to text: no space around Chinese characters, one between other words."""
    text = ""
    for word in words:
        if text and not (_CJK.match(word[0]) or _CJK.match(text[-1]) or text[-1] in "，。！？、"):
            text += " "
        text += word
    return text


def _norm(word: str) -> str:
    return _NORMALISE.sub("", word).lower()


@dataclass(frozen=True)
class Partial:
    """What to show now.

    ``stable`` text (final unless the final transcript differs) and the ``unstable`` tail of the
    latest hypothesis.
    """

    stable: str
    unstable: str
    new_stable_words: int
    """Words that became stable with this hypothesis."""

    @property
    def text(self) -> str:
        """Stable and unstable together."""
        if not self.stable or not self.unstable:
            return self.stable or self.unstable
        return join([*tokens(self.stable), *tokens(self.unstable)])


class LocalAgreement:
    """LocalAgreement-n over hypotheses of a growing audio window (``n=2``: two must agree)."""

    def __init__(self, n: int = 2) -> None:
        if n < 2:
            raise ValueError("LocalAgreement needs n >= 2 hypotheses to agree")
        self.n = n
        self.frozen: list[str] = []
        """Words of closed windows."""
        self.committed: list[str] = []
        """Stable words of the current window."""
        self._tails: list[list[str]] = []
        """The last hypotheses' words after the committed ones (newest last, at most n - 1)."""
        self.hypotheses = 0

    @property
    def stable_words(self) -> list[str]:
        """Every word shown as stable."""
        return [*self.frozen, *self.committed]

    def _tail(self, hypothesis: list[str]) -> list[str]:
        """The hypothesis' words after those it shares with the committed ones."""
        if not self.committed:
            return hypothesis
        committed = [_norm(w) for w in self.committed]
        words = [_norm(w) for w in hypothesis]
        matcher = difflib.SequenceMatcher(a=committed, b=words, autojunk=False)
        blocks = [block for block in matcher.get_matching_blocks() if block.size]
        if not blocks:
            return hypothesis[len(self.committed) :]
        last = blocks[-1]
        # Words of the committed text after the last match were rewritten in this hypothesis:
        # skip as many of the hypothesis' words.
        unmatched_committed = len(committed) - (last.a + last.size)
        return hypothesis[last.b + last.size + unmatched_committed :]

    def update(self, hypothesis: str) -> Partial:
        """Take the newest hypothesis of the current window; return what to show."""
        self.hypotheses += 1
        tail = self._tail(tokens(hypothesis))
        previous = self._tails
        agreed = 0
        if len(previous) >= self.n - 1:
            while agreed < len(tail) and all(
                agreed < len(old) and _norm(old[agreed]) == _norm(tail[agreed]) for old in previous
            ):
                agreed += 1
        new_words = tail[:agreed]
        self.committed.extend(new_words)
        tail = tail[agreed:]
        self._tails = [*[old[agreed:] for old in previous], tail][-(self.n - 1) :]
        return Partial(join(self.stable_words), join(tail), len(new_words))

    def close_window(self, hypothesis: str) -> Partial:
        """The window's audio ended in a pause: freeze every word of its hypothesis.

        A new, empty window starts (the next hypotheses cover the audio after the pause only).
        """
        tail = self._tail(tokens(hypothesis))
        self.frozen.extend([*self.committed, *tail])
        self.committed = []
        self._tails = []
        return Partial(join(self.frozen), "", len(tail))

    def current(self) -> Partial:
        """What is shown now (stable words and the latest unstable tail)."""
        tail = self._tails[-1] if self._tails else []
        return Partial(join(self.stable_words), join(tail), 0)
