"""FineWeb's quality filters, re-implemented: Gopher repetition, Gopher quality, C4 (without
the terminal-punctuation rule, as FineWeb) and FineWeb quality, with one word tokenization
per document serving all four.

The drop decision and reason equal datatrove's blocks (`load_datatrove_filters`, the
reference kept for tests and benchmarks) document for document; tests/tasks/curation/test_quality.py
checks it on the GENERATED mix, the real samples and thousands of GENERATED edge cases.

Why it is faster (datatrove tokenizes the text with spaCy three times, plus a spaCy
sentencizer run per kept C4 line):
- spaCy's English tokenizer splits text on whitespace first and tokenizes each
  whitespace-separated chunk on its own (prefix/suffix/infix rules, special cases).
  So the words of a text are the concatenation of the tokens of its chunks, and a
  chunk's tokens — with the per-chunk sums the filters need — are cached per process:
  on web text nearly every chunk is a cache hit, and spaCy only sees new chunks.
- The sentencizer (C4's sentence count) is a small automaton over token classes
  (`S` a sentence-ending character, `Q` other punctuation, `N` anything else, `W` a
  whitespace token), so a line's sentence count is a regex count over its class string.
- FineWeb's word count of C4's edited text is the sum of the kept lines' token counts.
- Gopher's n-gram statistics build no string per n-gram: word ids (top n-grams) and hashed
  spans of the glued text (duplicated n-grams) with numpy, strings compared only where hashes repeat.
Every threshold is the block's default (= FineWeb's published settings).
"""
from __future__ import annotations

import functools
import importlib.abc
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from itertools import accumulate, chain
from operator import itemgetter
from typing import Callable

QUALITY_STAGES = ("gopher_repetition", "gopher_quality", "c4", "fineweb")

# --- constants copied from datatrove 0.10.1 (the blocks' defaults) ---------------------------
_GOPHER_STOP_WORDS = frozenset(["the", "be", "to", "of", "and", "that", "have", "with"])
_TOP_N_GRAMS = ((2, 0.2), (3, 0.18), (4, 0.16))
_DUP_N_GRAMS = ((5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10))
_CITATION = re.compile(r"\[\d*]|\[edit]|\[citation needed]")
_POLICY = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")
_PARAGRAPH = re.compile(r"\n{2,}")
_LINES = re.compile("\n+")
_WS_SPLIT = re.compile(r"(\s+)")
# one sentence boundary of spaCy's Sentencizer: a sentence-ending token, then (after any
# punctuation) the first non-punctuation token starts the next sentence
_SENTENCE_BREAK = re.compile(r"S[SQ]*[NW]")


class _NoTorchForThinc(importlib.abc.MetaPathFinder):
    """Refuses `import torch` to thinc.compat alone (any other importer, any thread, gets torch)."""

    def find_spec(self, name, path=None, target=None):  # noqa: ARG002 — the finder protocol
        if name == "torch" or name.startswith("torch."):
            frame = sys._getframe(1)
            while frame is not None:
                if frame.f_globals.get("__name__") == "thinc.compat":
                    raise ModuleNotFoundError("spaCy's tokenizer needs no torch", name=name)
                frame = frame.f_back
        return None


@functools.lru_cache(maxsize=1)
def _import_spacy():
    """spaCy, imported without torch where torch is not loaded yet.

    spaCy's ML library thinc imports torch when it is installed (thinc.compat), and spaCy's
    tokenizer never uses it: ~1.2 s of a 2.1 s import, paid by every process that filters
    (each Ray worker of each curate run). thinc then runs without its torch shims, which
    the tokenizer does not touch; torch itself stays importable for everything else.
    """
    if "torch" in sys.modules or "spacy" in sys.modules:
        import spacy

        return spacy
    finder = _NoTorchForThinc()
    sys.meta_path.insert(0, finder)
    try:
        import spacy
    finally:
        sys.meta_path.remove(finder)
    return spacy


@functools.lru_cache(maxsize=1)
def _datatrove_sets() -> tuple[frozenset[str], tuple[str, ...], frozenset[str]]:
    """(PUNCTUATION_SET, FineWeb's stop chars, spaCy's sentence punctuation), from the packages."""
    _import_spacy()
    from datatrove.utils.text import PUNCTUATION_SET, TERMINAL_PUNCTUATION
    from spacy.pipeline.sentencizer import Sentencizer

    return frozenset(PUNCTUATION_SET), tuple(TERMINAL_PUNCTUATION), frozenset(Sentencizer.default_punct_chars)


@functools.lru_cache(maxsize=1)
def _spacy_english():
    """The pipeline whose tokenizer datatrove's English word splitter uses (`spacy.blank("en")`).

    Without lexical attribute getters: the tokenizer's splits depend only on its affix rules
    and special cases, while computing a new string's attributes (shape, like_num, …) was
    most of the time spent on new chunks; the one attribute we need, is_punct, is computed
    with spaCy's own function (`_is_punct`).
    """
    nlp = _import_spacy().blank("en")
    nlp.vocab.lex_attr_getters = {}
    return nlp


@functools.lru_cache(maxsize=1)
def _special_cases() -> frozenset[str]:
    """The English tokenizer's special-case strings ("cannot", "don't", "a.m.", ...)."""
    return frozenset(_spacy_english().tokenizer.rules)


@functools.lru_cache(maxsize=1)
def _is_punct_fn():
    _import_spacy()
    from spacy.lang.lex_attrs import is_punct

    return is_punct


@dataclass(slots=True, frozen=True)
class _Chunk:
    """What the filters need of one whitespace-free chunk of text (cached per process)."""

    words: tuple[str, ...]   # spaCy's tokens of the chunk
    classes: str             # one class letter per token (S, Q, N) for the sentence count
    n_nonsym: int            # tokens with a character outside datatrove's PUNCTUATION_SET
    len_nonsym: int          # their total length
    n_alpha: int             # tokens with an alphabetic character
    stop: frozenset[str]     # Gopher stop words among the tokens


_CACHE: dict[str, _Chunk] = {}
_CACHE_MAX = 500_000  # chunks (~150 MB at worst); cleared, not evicted, when full: simple and rare


def _summarise(tokens: list[tuple[str, bool]]) -> _Chunk:
    punct, _, sent_punct = _datatrove_sets()
    words = tuple(t for t, _ in tokens)
    classes = "".join("S" if t in sent_punct else ("Q" if p else "N") for t, p in tokens)
    nonsym = [w for w in words if not punct.issuperset(w)]
    # an ASCII word has a letter iff case changes it; others are checked character by character
    n_alpha = sum(1 for w in words if (w.lower() != w.upper() if w.isascii() else any(c.isalpha() for c in w)))
    return _Chunk(words, classes, len(nonsym), sum(map(len, nonsym)), n_alpha,
                  frozenset(w for w in words if w in _GOPHER_STOP_WORDS))


def _tokenize_chunks(chunks: list[str]) -> list[_Chunk]:
    """Chunks → cached summaries; the new ones go through spaCy in one call, joined by spaces."""
    cache = _CACHE
    missing = [c for c in dict.fromkeys(chunks) if c not in cache]
    if missing:
        # Fast path: an ASCII chunk of only letters or only digits that is not one of the
        # tokenizer's special cases is one token (no English prefix, suffix or infix rule
        # matches without punctuation or a letter–digit mix, e.g. "10km" splits).
        rules = _special_cases()
        simple = [c for c in missing if c.isascii() and (c.isalpha() or c.isdigit()) and c not in rules]
        for c in simple:
            cache[c] = _summarise([(c, False)])
        if simple:
            missing = [c for c in missing if c not in cache]
    if missing:
        if len(cache) + len(missing) > _CACHE_MAX:
            cache.clear()
        nlp = _spacy_english()
        tok = nlp.tokenizer
        # datatrove retries a text spaCy fails on (the literal "IS_ALPHA", a spaCy bug once
        # strings are freed) without that word: every such call after the first does.
        joined = " ".join(c.replace("IS_ALPHA", "") if "IS_ALPHA" in c else c for c in missing)
        # as datatrove: strings made inside the zone are freed after it (no vocabulary growth)
        is_punct = _is_punct_fn()
        with nlp.memory_zone():
            per_chunk: list[list[tuple[str, bool]]] = [[]]
            for t in tok(joined):
                text = t.text
                per_chunk[-1].append((text, is_punct(text)))
                if t.whitespace_:
                    per_chunk.append([])
        if len(per_chunk) > len(missing) and not per_chunk[-1]:
            per_chunk.pop()
        if len(per_chunk) != len(missing):  # a chunk that was all "IS_ALPHA" has no tokens: one by one
            with nlp.memory_zone():
                per_chunk = [[(t.text, is_punct(t.text)) for t in tok(c.replace("IS_ALPHA", ""))] for c in missing]
        for c, toks in zip(missing, per_chunk):
            cache[c] = _summarise(toks)
    return [cache[c] for c in chunks]


def _sentences(line: str) -> int:
    """len(datatrove.utils.text.split_into_sentences(line)) for English, without running spaCy."""
    if "IS_ALPHA" in line:  # see _tokenize_chunks
        line = line.replace("IS_ALPHA", "")
    parts = _WS_SPLIT.split(line)  # chunk, ws, chunk, ws, ..., chunk (first/last may be "")
    chunks = parts[0::2]
    infos = _tokenize_chunks([c for c in chunks if c])
    cls: list[str] = []
    k = 0
    have_token = False
    for i, part in enumerate(parts):
        if i % 2 == 0:
            if part:
                cls.append(infos[k].classes)
                k += 1
                have_token = True
        else:
            # spaCy: a leading whitespace run is one token; later a run's first " " is the
            # previous token's trailing space and the rest (if any) is one token
            rest = part if not have_token else (part[1:] if part[0] == " " else part)
            if rest:
                cls.append("W")
                have_token = True
    # no tokens → span_tokenize yields no span and split_into_sentences returns [text]
    return 1 + len(_SENTENCE_BREAK.findall("".join(cls)))


@dataclass(slots=True)
class QualityDoc:
    """One document through the filters: its text (C4 edits it) and the tokenization they share."""

    text: str
    _chunks: list[_Chunk] | None = None
    _words: list[str] | None = None
    fineweb_words: int | None = None  # word count of C4's edited text (set by `c4`)
    meta: dict = field(default_factory=dict)

    def chunks(self) -> list[_Chunk]:
        if self._chunks is None:
            self._chunks = _tokenize_chunks(self.text.split())
        return self._chunks

    def words(self) -> list[str]:
        if self._words is None:
            self._words = list(chain.from_iterable(c.words for c in self.chunks()))
        return self._words


def _dup_count_chars(items: list[str]) -> tuple[int, int]:
    """datatrove's find_duplicates: (repeated elements, their characters)."""
    seen: set[str] = set()
    n = chars = 0
    for x in items:
        if x in seen:
            n += 1
            chars += len(x)
        else:
            seen.add(x)
    return n, chars


def _top_grams(words: list[str], sizes: tuple[int, ...]):
    """For n in `sizes` (2, 3, ... in a row): (n, characters, count) of datatrove's most common n-gram
    (" ".join of n words; the first to appear among equally common ones, as Counter.most_common).

    Exact without building the strings: no word holds whitespace, so " ".join is one-to-one on
    word tuples, and an n-gram is identified by (rank of its first n-1 words, id of its last).
    """
    import numpy as np

    n_words = len(words)
    vocab = {w: i for i, w in enumerate(dict.fromkeys(words))}
    ids = np.fromiter(map(vocab.__getitem__, words), dtype=np.int64, count=n_words)
    rank = ids
    for n in range(2, max(sizes) + 1):
        if n_words < n:
            return
        _, first, rank, counts = np.unique(rank[:-1] * len(vocab) + ids[n - 1:], return_index=True,
                                           return_inverse=True, return_counts=True)
        if n in sizes:
            best = counts.max()
            i = int(first[counts == best].min())
            yield n, sum(map(len, words[i:i + n])) + n - 1, int(best)


class _GluedGrams:
    """datatrove's duplicated n-gram characters (find_all_duplicate: n-grams as "".join of n words)
    of one word list, for several n, with numpy instead of one string per n-gram.

    The n-grams are substrings of the glued text, hashed all at once (polynomial, mod 2^64):
    equal substrings have equal hashes, so an n-gram whose hash is unique is unique and
    only the few n-grams whose hash repeats are compared as strings and walked through
    datatrove's loop. A hash shared by different strings (a collision) returns None, and
    the caller takes the string path.
    """

    _B = 0x100000001B3  # odd, so invertible mod 2^64

    def __init__(self, words: list[str]):
        import numpy as np

        self.glued = "".join(words)
        self.offsets = np.zeros(len(words) + 1, dtype=np.int64)  # n-gram i is glued[off[i]:off[i + n]]
        np.cumsum(np.fromiter(map(len, words), dtype=np.int64, count=len(words)), out=self.offsets[1:])
        try:
            c = np.frombuffer(self.glued.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        except UnicodeError:
            self.prefix = None
            return
        with np.errstate(over="ignore"):  # integer arithmetic wraps mod 2^64, as wanted
            powers = np.full(len(c) + 1, self._B, dtype=np.uint64)
            powers[0] = 1
            inverse = np.full(len(c) + 1, pow(self._B, -1, 1 << 64), dtype=np.uint64)
            inverse[0] = 1
            self.inverse = np.cumprod(inverse)  # B^-k
            self.prefix = np.zeros(len(c) + 1, dtype=np.uint64)  # sum_(j<k) c_j B^j
            np.cumsum(c.astype(np.uint64) * np.cumprod(powers)[:-1], out=self.prefix[1:])

    def repeated_chars(self, n: int) -> int | None:
        """Characters of the repeated n-grams as datatrove counts them; None on a hash collision."""
        import numpy as np

        if self.prefix is None:
            return None
        off = self.offsets
        m = len(off) - n
        a, b = off[:m], off[n:]
        with np.errstate(over="ignore"):
            h = (self.prefix[b] - self.prefix[a]) * self.inverse[a]  # sum_k c_(a+k) B^k
        order = np.argsort(h, kind="stable")
        hs = h[order]
        same = hs[1:] == hs[:-1]
        if not same.any():
            return 0  # every n-gram is unique
        member = np.zeros(m, dtype=bool)
        member[1:] |= same
        member[:-1] |= same
        group = np.cumsum(np.concatenate(([True], ~same)))  # one id per distinct hash, in sorted order
        where = np.flatnonzero(member)
        first: dict[int, str] = {}
        cands = sorted(zip(order[where].tolist(), group[where].tolist()))
        starts = off.tolist()
        glued = self.glued
        for i, g in cands:
            gram = glued[starts[i]:starts[i + n]]
            if first.setdefault(g, gram) != gram:
                return None
        # datatrove's loop; an n-gram outside `cands` is unique: visiting it only moves on by one
        seen: set[int] = set()
        repeated = idx = 0
        for i, g in cands:
            if i < idx:
                continue
            if g in seen:
                repeated += starts[i + n] - starts[i]
                idx = i + n
            else:
                seen.add(g)
                idx = i + 1
        return repeated


def _repeated_chars(words: list[str], n: int) -> int:
    """datatrove's find_all_duplicate(words, n), as it is (the reference for `_GluedGrams`)."""
    unique: set[str] = set()
    repeated, idx = 0, 0
    while idx < len(words) - n + 1:
        gram = "".join(words[idx:idx + n])
        if gram in unique:
            repeated += len(gram)
            idx += n
        else:
            unique.add(gram)
            idx += 1
    return repeated


def gopher_repetition(doc: QualityDoc) -> str | None:
    """GopherRepetitionFilter(): None to keep, else its reason."""
    text = doc.text
    if not text:
        return "empty"
    paragraphs = _PARAGRAPH.split(text.strip())
    dups, chars = _dup_count_chars(paragraphs)
    if dups / len(paragraphs) > 0.3:
        return "dup_para_frac"
    if chars / len(text) > 0.2:
        return "dup_para_char_frac"
    lines = _LINES.split(text)
    dups, chars = _dup_count_chars(lines)
    if dups / len(lines) > 0.3:
        return "dup_line_frac"
    if chars / len(text) > 0.2:
        return "dup_line_char_frac"
    words = doc.words()
    n_words = len(words)
    if not n_words:
        return None
    n_text = len(text)
    top_frac = dict(_TOP_N_GRAMS)
    for n, chars, count in _top_grams(words, tuple(top_frac)):
        if chars * count / n_text > top_frac[n]:
            return f"top_{n}_gram"
    glued_grams = _GluedGrams(words)
    for n, frac in _DUP_N_GRAMS:
        m = n_words - n + 1
        if m <= 0:
            continue  # datatrove: 0 / len(text), never over the threshold
        repeated = glued_grams.repeated_chars(n)
        if repeated is None:
            repeated = _repeated_chars(words, n)
        if repeated / n_text > frac:
            return f"duplicated_{n}_n_grams"
    return None


def gopher_quality(doc: QualityDoc) -> str | None:
    """GopherQualityFilter(): None to keep, else its reason."""
    text = doc.text
    chunks = doc.chunks()
    n_words = n_nonsym = len_nonsym = n_alpha = 0
    stop: set[str] = set()
    for c in chunks:
        n_words += len(c.words)
        n_nonsym += c.n_nonsym
        len_nonsym += c.len_nonsym
        n_alpha += c.n_alpha
        if c.stop:
            stop |= c.stop
    if n_nonsym < 50:
        return "gopher_short_doc"
    if n_nonsym > 100000:
        return "gopher_long_doc"
    avg = len_nonsym / n_nonsym
    if avg < 3:
        return "gopher_below_avg_threshold"
    if avg > 10:
        return "gopher_above_avg_threshold"
    if text.count("#") / n_words > 0.1:
        return "gopher_too_many_hashes"
    if (text.count("...") + text.count("…")) / n_words > 0.1:
        return "gopher_too_many_ellipsis"
    lines = text.splitlines()
    if sum(s.lstrip().startswith(("•", "-")) for s in lines) / len(lines) > 0.9:
        return "gopher_too_many_bullets"
    if sum(s.rstrip().endswith(("...", "…")) for s in lines) / len(lines) > 0.3:
        return "gopher_too_many_end_ellipsis"
    if n_alpha / n_words < 0.8:
        return "gopher_below_alpha_threshold"
    if len(stop) < 2:
        return "gopher_enough_stop_words"
    return None


def c4(doc: QualityDoc) -> str | None:
    """C4QualityFilter(filter_no_terminal_punct=False): None to keep (doc.text edited), else its reason."""
    n_sentences = 0
    n_words = 0
    kept: list[str] = []
    for line in doc.text.splitlines():
        line = line.strip()
        words = line.split()
        if any(len(w) > 1000 for w in words):
            continue
        if "[" in line:
            line = _CITATION.sub("", line)
        if len(words) < 3:
            continue
        low = line.lower()
        if "lorem ipsum" in low:
            return "lorem_ipsum"
        if "javascript" in low:
            continue
        if "{" in line:
            return "curly_bracket"
        if any(p in low for p in _POLICY):
            continue
        n_sentences += _sentences(line)
        n_words += sum(len(c.words) for c in _tokenize_chunks(line.split()))
        kept.append(line)
    if n_sentences < 5:
        return "too_few_sentences"
    doc.text = "\n".join(kept).strip()
    doc.fineweb_words = n_words
    doc._chunks = doc._words = None
    return None


def fineweb(doc: QualityDoc) -> str | None:
    """FineWebQualityFilter(): None to keep, else its reason."""
    text = doc.text
    lines = [line for line in text.split("\n") if line.strip() != ""]
    if not lines:
        return "empty"
    stop_chars = _datatrove_sets()[1]
    if sum(1 for line in lines if line.endswith(stop_chars)) / len(lines) < 0.12:
        return "line_punct_ratio"
    if sum(1 for line in lines if len(line) <= 30) / len(lines) > 0.67:
        return "short_line_ratio"
    if _dup_count_chars(lines)[1] / len(text.replace("\n", "")) > 0.01:
        return "char_dup_ratio"
    n_words = doc.fineweb_words if doc.fineweb_words is not None else len(doc.words())
    if text.count("\n") / n_words > 0.3:
        return "list_ratio"
    return None


FILTERS: dict[str, Callable[[QualityDoc], str | None]] = {
    "gopher_repetition": gopher_repetition, "gopher_quality": gopher_quality, "c4": c4, "fineweb": fineweb}


@functools.lru_cache(maxsize=16)
def load_quality_filters(gopher_repetition: bool = True, gopher_quality: bool = True,
                         c4: bool = True, fineweb: bool = True) -> tuple[tuple[str, Callable], ...]:
    """(stage name, filter) for each enabled stage, in FineWeb's order."""
    on = {"gopher_repetition": gopher_repetition, "gopher_quality": gopher_quality, "c4": c4, "fineweb": fineweb}
    return tuple((name, FILTERS[name]) for name in QUALITY_STAGES if on[name])


def verdict(flt: Callable[[QualityDoc], str | None], doc: QualityDoc) -> str | None:
    """None if `flt` keeps `doc`, else its drop reason (C4 edits doc.text in place, as in FineWeb)."""
    return flt(doc)


def check_text(text: str, filters=None) -> tuple[str, str | None, str | None]:
    """Run the quality filters on one text: (possibly edited text, failing stage, reason)."""
    doc = QualityDoc(text)
    for stage, flt in filters if filters is not None else load_quality_filters():
        reason = flt(doc)
        if reason is not None:
            return doc.text, stage, reason
    return doc.text, None, None


# --- the reference: datatrove's own blocks ----------------------------------------------------
@functools.lru_cache(maxsize=4)
def load_datatrove_filters(gopher_repetition: bool = True, gopher_quality: bool = True,
                           c4: bool = True, fineweb: bool = True) -> tuple[tuple[str, object], ...]:
    """(stage name, datatrove filter) for each enabled stage: the reference of the tests and benchmarks."""
    from datatrove.pipeline.filters import (C4QualityFilter, FineWebQualityFilter,
                                            GopherQualityFilter, GopherRepetitionFilter)

    chosen = []
    if gopher_repetition:
        chosen.append(("gopher_repetition", GopherRepetitionFilter()))
    if gopher_quality:
        chosen.append(("gopher_quality", GopherQualityFilter()))
    if c4:
        chosen.append(("c4", C4QualityFilter(filter_no_terminal_punct=False)))
    if fineweb:
        chosen.append(("fineweb", FineWebQualityFilter()))
    return tuple(chosen)


def datatrove_check_text(text: str, filters=None) -> tuple[str, str | None, str | None]:
    """`check_text` through datatrove's blocks (the reference)."""
    from datatrove.data import Document

    doc = Document(text=text, id="")
    for stage, flt in filters if filters is not None else load_datatrove_filters():
        res = flt.filter(doc)
        if res is True or (not isinstance(res, tuple) and res):
            continue
        reason = str(res[1]) if isinstance(res, tuple) and len(res) > 1 and res[1] else "filtered"
        return doc.text, stage, reason
    return doc.text, None, None
