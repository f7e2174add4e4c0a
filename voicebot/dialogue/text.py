"""Text helpers for scoring answers: normalising, word segmentation, sentences, phrase matching.

Answers arrive as speech-recognition transcripts in English or Chinese. Scoring looks for a job
script's keywords and evidence phrases in them, so everything here works on *words*, never on raw
substrings: "handle" must hit "handled", and the keyword 班 (shift) must not hit inside 上班 (to go
to work).

* English words are found with a regular expression (apostrophes kept: "don't" is one word) and
  matched with light stemming (plural -s/-es, -ed, -ing: "customers" hits "customer").
* Chinese is segmented with jieba (dictionary-based, no HMM guessing, so the result is
  predictable). Phrases a script names are added to the dictionary, so a multi-character phrase
  such as 两班倒 comes out as one word. Traditional input is converted to Simplified first, and
  English words and digits inside Chinese ("我会Python和SQL") stay words of their own.
* Chinese phrases also match by pinyin with tones relaxed, because speech recognition writes a
  homophone as often as it drops a word: "两班到" still hits 两班倒 and "肯德及" 肯德基. Such a hit
  is reported apart (:meth:`PhraseMatcher.find_pinyin`) so a reviewer can see it. To keep false
  matches rare (``loadtest/pinyin_match.py`` measures them, docs/PERFORMANCE.md has the table):
  only phrases of two or more Chinese characters match by pinyin, within one run of Chinese
  characters (never across punctuation, spaces or English words), syllable by syllable, the
  phrase's characters read as in the phrase (倒 in 两班倒: dao) and the heard ones by any of
  their readings (行: xing or hang); at least half of the phrase's characters (two-character
  phrases: one) must be the very characters heard; the stretch heard must start where a word of
  the answer starts (们店 in 我们店 is not 门店) and must not be a dictionary word of its own
  (克服, to overcome, reads exactly as 客服 but is a word, not a mishearing).

jieba's dictionary takes about a second to load: call :func:`prewarm` once at start-up, in a
worker thread. Everything here is thread-safe; the module uses a private ``jieba.Tokenizer``, never
jieba's global one, so other code using jieba is unaffected.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Collection, Iterable, Mapping, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jieba

__all__ = [
    "PhraseMatcher",
    "PINYIN_MIN_CHARS",
    "normalise",
    "prewarm",
    "segment",
    "split_sentences",
    "to_simplified",
    "word_count",
]

_lock = threading.Lock()
_t2s: Any = None
_tokenizer: jieba.Tokenizer | None = None


def _converter() -> Any:
    global _t2s
    if _t2s is None:
        with _lock:
            if _t2s is None:
                from opencc import OpenCC

                _t2s = OpenCC("t2s")
    return _t2s


def _jieba() -> jieba.Tokenizer:
    """The module's private tokenizer (created on first use; its dictionary loads lazily)."""
    global _tokenizer
    if _tokenizer is None:
        with _lock:
            if _tokenizer is None:
                import jieba

                jieba.setLogLevel(60)
                _tokenizer = jieba.Tokenizer()
    return _tokenizer


def prewarm() -> None:
    """Load jieba's dictionary and the Traditional-to-Simplified tables (about 1.4 s, once).

    Safe to call from several threads and more than once; the server calls it in a worker thread
    at start-up so the first Chinese answer is not delayed.
    """
    _converter()
    _jieba().initialize()
    _readings("\u5012")  # loads pypinyin's dictionary


def to_simplified(text: str) -> str:
    """Return ``text`` with Traditional Chinese characters converted to Simplified (OpenCC t2s)."""
    if not text or not _HAN.search(text):
        return text
    return str(_converter().convert(text))


# --- normalising and segmenting -----------------------------------------------------------------

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_SINGLE_QUOTES = str.maketrans({c: "'" for c in "\u2018\u2019\u201a\u201b\u2032`"})
_DOUBLE_QUOTES = str.maketrans(
    {c: '"' for c in "\u201c\u201d\u201e\u201f\u2033\u300c\u300d\u300e\u300f"}
)
_SPACES = re.compile(r"\s+")
_EN_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
_HAS_WORD_CHAR = re.compile(r"[^\W_]")


def normalise(text: str, language: str) -> str:
    """Return ``text`` ready for matching.

    Unicode NFKC (full-width letters and digits become ASCII), Simplified Chinese for ``"zh"``,
    lower case, typographic quotes unified to ``'`` and ``"``, runs of white space collapsed to
    one space.
    """
    text = unicodedata.normalize("NFKC", text)
    if language == "zh":
        text = to_simplified(text)
    text = text.lower().translate(_SINGLE_QUOTES).translate(_DOUBLE_QUOTES)
    return _SPACES.sub(" ", text).strip()


def _segment_normalised(text: str, language: str) -> list[str]:
    if language != "zh":
        return _EN_WORD.findall(text)
    words = []
    for token in _jieba().cut(text, HMM=False):
        token = token.strip()
        if token and _HAS_WORD_CHAR.search(token):
            words.append(token)
    return words


def segment(text: str, language: str) -> list[str]:
    """Return the words of ``text``, lower-cased, punctuation and spaces dropped.

    English: words of letters and digits, apostrophes kept (``"don't"``). Chinese (``"zh"``):
    jieba's dictionary segmentation (plus the phrases registered by any :class:`PhraseMatcher`) on
    the Simplified text; English words and numbers inside Chinese stay whole words.
    """
    return _segment_normalised(normalise(text, language), language)


def word_count(text: str, language: str) -> int:
    """Return how many words ``text`` has (Chinese: segmented words, not characters)."""
    return len(segment(text, language))


_SENTENCE_END = {
    "en": re.compile(r"(?<=[.!?;\u2026])\s+|\n+"),
    "zh": re.compile(r"(?<=[。！？；!?;\u2026])\s*|\n+"),
}
_CLAUSE_END = re.compile(r"(?<=[,，、:：])\s*")
_MAX_SENTENCE_CHARS = 200
# A space between two Chinese characters or punctuation marks (left by line-folding or ASR).
_SPACE_IN_CHINESE = re.compile(
    r"(?<=[\u3000-\u303f\u3400-\u9fff\uff00-\uffef]) (?=[\u3000-\u303f\u3400-\u9fff\uff00-\uffef])"
)


def split_sentences(text: str, language: str) -> list[str]:
    """Return the sentences of ``text`` as written (not normalised), empty ones dropped.

    White space inside a sentence is collapsed to one space (Chinese: dropped between Chinese
    characters and punctuation, where line-folding or speech recognition may leave it).

    Sentences end at ``. ! ? ;`` followed by a space (Chinese: at ``。！？；`` and their ASCII
    forms) and at line breaks. A transcript without punctuation can make a very long "sentence":
    one over 200 characters is cut further at commas, so evidence quotes stay readable.
    """
    pattern = _SENTENCE_END["zh" if language == "zh" else "en"]
    sentences: list[str] = []
    for part in pattern.split(text):
        part = _SPACES.sub(" ", part).strip()
        if language == "zh":
            part = _SPACE_IN_CHINESE.sub("", part)
        if not part:
            continue
        if len(part) <= _MAX_SENTENCE_CHARS:
            sentences.append(part)
            continue
        chunk = ""
        for clause in _CLAUSE_END.split(part):
            if chunk and len(chunk) + len(clause) > _MAX_SENTENCE_CHARS:
                sentences.append(chunk.strip())
                chunk = ""
            chunk += clause if language == "zh" or not chunk else f" {clause}"
        if chunk.strip():
            sentences.append(chunk.strip())
    return sentences


# --- phrase matching ----------------------------------------------------------------------------

_DOUBLED_END = re.compile(r"([b-df-hj-km-np-rtv-y])\1$")  # doubled consonant, not l, s or z


def _stem(word: str) -> str:
    """Light English stemming: enough that plural and -ed/-ing forms meet their base word.

    Both the phrase and the answer go through it, so only consistency matters: "handle",
    "handles", "handled" and "handling" all become "handl"; "customers" becomes "customer";
    "policies" and "policy" both "policy"; "stopped" and "stop" both "stop".
    """
    if not word.isascii() or not word.isalpha():
        if word.endswith("'s") and len(word) > 3:
            return _stem(word[:-2])
        return word
    if len(word) <= 3:
        return word
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith(("sses", "xes", "ches", "shes", "zes")):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    if word.endswith("ied") and len(word) > 4:
        word = word[:-3] + "y"
    else:
        for suffix in ("ing", "ed"):
            if word.endswith(suffix) and len(word) - len(suffix) >= 3:
                word = word[: -len(suffix)]
                if _DOUBLED_END.search(word):
                    word = word[:-1]
                break
    return word[:-1] if word.endswith("e") and len(word) > 3 else word


def _register(phrase: str) -> None:
    """Add a Chinese phrase to the private tokenizer's dictionary so it segments as one word."""
    tokenizer = _jieba()
    tokenizer.check_initialized()
    with _lock:
        if not tokenizer.FREQ.get(phrase):
            tokenizer.add_word(phrase)


class PhraseMatcher:
    """Finds which of a set of phrases (each with its variants) an answer contains.

    ``phrases`` maps each canonical phrase to its variants (synonyms); the canonical phrase itself
    always counts. A phrase hits when its words occur as consecutive words of a sentence: English
    words are compared stemmed, so "customers" hits "customer" and "handled" hits "handle" but
    "hand" hits neither. Chinese phrases are added to the tokenizer's dictionary (unless
    ``register`` is false), so 两班倒 segments as one word; a phrase of one word also hits a
    dictionary word inside a longer word (服务 in 客户服务, as jieba's search mode splits it),
    but a single character never hits inside a word (班 does not hit 上班).

    Chinese phrases (and variants) of :data:`PINYIN_MIN_CHARS` or more Chinese characters also
    match by pinyin, tones relaxed (unless ``pinyin`` is false): :meth:`find_pinyin` finds them,
    and :meth:`find_sentences` / :meth:`find` count them too.

    Building a matcher for Chinese loads jieba's dictionary if :func:`prewarm` has not yet.
    Matchers are read-only once built and safe to share between threads.
    """

    def __init__(
        self,
        language: str,
        phrases: Mapping[str, Iterable[str]],
        *,
        register: bool = True,
        pinyin: bool = True,
    ) -> None:
        self.language = language
        self.phrases: tuple[str, ...] = tuple(phrases)
        """The canonical phrases, in the order given."""
        self._index: dict[str, list[tuple[tuple[str, ...], str]]] = {}
        self._pinyin: list[tuple[str, tuple[str, ...], str]] = []
        """(variant as Simplified characters, its readings, canonical phrase) for pinyin."""
        for canonical, variants in phrases.items():
            seen: set[tuple[str, ...]] = set()
            for variant in (canonical, *variants):
                keys = self._phrase_keys(variant, register)
                if keys and keys not in seen:
                    seen.add(keys)
                    self._index.setdefault(keys[0], []).append((keys, canonical))
                if pinyin and language == "zh":
                    chars = normalise(variant, "zh")
                    if len(chars) >= PINYIN_MIN_CHARS and _HAN_RUN.fullmatch(chars):
                        entry = (chars, _phrase_readings(chars), canonical)
                        if entry not in self._pinyin:
                            self._pinyin.append(entry)

    def _phrase_keys(self, phrase: str, register: bool) -> tuple[str, ...]:
        text = normalise(phrase, self.language)
        if self.language == "zh" and register and _HAN.search(text) and " " not in text:
            _register(text)
        return tuple(self._keys(_segment_normalised(text, self.language)))

    def _keys(self, words: Sequence[str]) -> list[str]:
        if self.language == "zh":
            return [word if _HAN.search(word) else _stem(word) for word in words]
        return [_stem(word) for word in words]

    def find_words(self, words: Sequence[str]) -> list[str]:
        """Return the canonical phrases found in one sentence's words (from :func:`segment`).

        The result follows the order the phrases were given in, each phrase once.
        """
        keys = self._keys(words)
        found: set[str] = set()
        frequencies = _jieba().FREQ if self.language == "zh" else None
        for start, key in enumerate(keys):
            for keys_, canonical in self._index.get(key, ()):
                if canonical not in found and tuple(keys[start : start + len(keys_)]) == keys_:
                    found.add(canonical)
            if frequencies is not None and len(key) > 2 and _HAN.search(key):
                for inner in _inner_words(key, frequencies):
                    for keys_, canonical in self._index.get(inner, ()):
                        if len(keys_) == 1:
                            found.add(canonical)
        return [phrase for phrase in self.phrases if phrase in found]

    def find_pinyin(self, sentence: str, skip: Collection[str] = ()) -> dict[str, str]:
        """Return ``{canonical phrase: the characters heard}`` for phrases found only by pinyin.

        ``sentence`` is one sentence as written (from :func:`split_sentences`); phrases in
        ``skip`` (those :meth:`find_words` already found) are not looked for. A phrase hits when a
        stretch of one run of Chinese characters reads, syllable by syllable and tones relaxed,
        as the phrase (or one of its variants) does, at least half of its characters (rounded
        up; two-character phrases: one) are the phrase's own, not all of them are (a stretch
        spelled exactly like the phrase is left to :meth:`find_words`' word rules), the stretch
        starts where a word of the sentence starts, and it is not a dictionary word of its own
        (克服 is a word, so it does not hit 客服). The phrase's characters are read as in the
        phrase, the heard ones by any of their readings (行 reads xing or hang). The result
        follows the order the phrases were given in. Empty for English and when the matcher was
        built with ``pinyin=False``.
        """
        if not self._pinyin:
            return {}
        runs = _HAN_RUN.findall(normalise(sentence, "zh"))
        if not runs:
            return {}
        frequencies = _jieba().FREQ
        edges = [_word_edges(run) for run in runs]
        found: dict[str, str] = {}
        for chars, readings, canonical in self._pinyin:
            if canonical in found or canonical in skip:
                continue
            heard = _pinyin_hit(chars, readings, runs, frequencies, edges)
            if heard is not None:
                found[canonical] = heard
        return {phrase: found[phrase] for phrase in self.phrases if phrase in found}

    def find_sentences(self, sentences: Sequence[str]) -> dict[str, list[int]]:
        """Return ``{canonical phrase: [indexes of the sentences it occurs in]}`` (hits only).

        Pinyin-only hits (:meth:`find_pinyin`) count as hits here.
        """
        hits: dict[str, list[int]] = {}
        for index, sentence in enumerate(sentences):
            exact = self.find_words(segment(sentence, self.language))
            for phrase in (*exact, *self.find_pinyin(sentence, skip=exact)):
                hits.setdefault(phrase, []).append(index)
        return {phrase: hits[phrase] for phrase in self.phrases if phrase in hits}

    def find(self, text: str) -> dict[str, list[int]]:
        """Return ``{canonical phrase: [sentence indexes]}`` for the phrases ``text`` contains.

        Indexes point into ``split_sentences(text, language)``; phrases that do not occur are left
        out, the others keep the order they were given in.
        """
        return self.find_sentences(split_sentences(text, self.language))

    def __repr__(self) -> str:
        return f"PhraseMatcher({self.language!r}, {len(self.phrases)} phrases)"


def _inner_words(word: str, frequencies: Mapping[str, int]) -> list[str]:
    """Dictionary words of two or three characters inside a longer word (jieba's search mode)."""
    inner = []
    for size in (2, 3):
        if len(word) > size:
            for start in range(len(word) - size + 1):
                gram = word[start : start + size]
                if frequencies.get(gram):
                    inner.append(gram)
    return inner


# --- pinyin matching ----------------------------------------------------------------------------

PINYIN_MIN_CHARS = 2
"""Shortest Chinese phrase (in characters) that also matches by pinyin."""
_HAN_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")


@lru_cache(maxsize=8192)
def _readings(char: str) -> frozenset[str]:
    """Every toneless pinyin reading of one Chinese character (``"行"`` -> xing, hang, heng)."""
    from pypinyin import Style, pinyin

    return frozenset(pinyin(char, style=Style.NORMAL, heteronym=True, errors="default")[0])


def _phrase_readings(phrase: str) -> tuple[str, ...]:
    """The toneless reading of each character of ``phrase`` as read in it (倒 in 两班倒: dao)."""
    from pypinyin import Style, lazy_pinyin

    readings = tuple(lazy_pinyin(phrase, style=Style.NORMAL, errors="default"))
    return readings if len(readings) == len(phrase) else tuple(min(_readings(c)) for c in phrase)


def _word_edges(run: str) -> frozenset[int]:
    """Offsets in ``run`` where a jieba word starts or ends."""
    edges = {0}
    for word in _jieba().cut(run, HMM=False):
        edges.add(max(edges) + len(word))
    return frozenset(edges)


def _pinyin_hit(
    phrase: str,
    readings: Sequence[str],
    runs: Sequence[str],
    words: Mapping[str, int],
    edges: Sequence[frozenset[int]],
) -> str | None:
    """The first stretch of ``runs`` that matches ``phrase`` by pinyin (see ``find_pinyin``)."""
    size = len(phrase)
    need_same = (size + 1) // 2
    for run, run_edges in zip(runs, edges, strict=True):
        for start in range(len(run) - size + 1):
            same = 0
            for offset, char in enumerate(run[start : start + size]):
                if char == phrase[offset]:
                    same += 1
                elif readings[offset] not in _readings(char):
                    break
            else:
                heard = run[start : start + size]
                if need_same <= same < size and not words.get(heard) and start in run_edges:
                    return heard
    return None
