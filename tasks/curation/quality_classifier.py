"""Model-based quality classifier (stage `quality_classifier`): fastText, DCLM-style.

A binary fastText model (`__label__hq` / `__label__lq`) scores each document that
near-duplicate removal kept; `quality_score` = P(hq) in [0, 1] is a column of the curated
Parquet. What is dropped is a config (conf/curate.py): a threshold on the score or a kept
share of the corpus (the cut-off then comes from every shard's scores, so it is the same
for any sharding).

Training (`train_classifier`, `crawl2chat quality-train`): positive and negative text
(Parquet `text` column, JSONL `text` field, or plain .txt), cut into windows of about
`window_words` words so both sides look alike in length; a held-out share (split by source
document, never by window) gives precision, recall and ROC AUC. The FineWeb-Edu path
(`label_with_endpoint`) labels documents with any OpenAI-compatible chat endpoint using
FineWeb-Edu's published annotation prompt, then trains on those labels (score ≥ 3 positive).

fastText models cannot be pickled: each worker loads the model once (`load_classifier`).
"""
from __future__ import annotations

import functools
import json
import os
import random
import re
import tempfile
from pathlib import Path
from typing import Any, Iterable

import numpy as np

POSITIVE, NEGATIVE = "__label__hq", "__label__lq"
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = REPO_ROOT / "data" / "quality" / "quality_fasttext.ftz"
_WS = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")  # fastText reads NUL and friends as separators

# FineWeb-Edu's annotation prompt, as published with the dataset (Penedo et al., "The FineWeb
# Datasets", arXiv:2406.17557, appendix; used with Llama-3-70B-Instruct on the first part of
# each page). Scores 0–5; FineWeb-Edu keeps pages scoring ≥ 3.
FINEWEB_EDU_PROMPT = """Below is an extract from a web page. Evaluate whether the page has a high educational value and could be useful in an educational setting for teaching from primary school to grade school levels using the additive 5-point scoring system described below. Points are accumulated based on the satisfaction of each criterion:

- Add 1 point if the extract provides some basic information relevant to educational topics, even if it includes some irrelevant or non-academic content like advertisements and promotional material.
- Add another point if the extract addresses certain elements pertinent to education but does not align closely with educational standards. It might mix educational content with non-educational material, offering a superficial overview of potentially useful topics, or presenting information in a disorganized manner and incoherent writing style.
- Award a third point if the extract is appropriate for educational use and introduces key concepts relevant to school curricula. It is coherent though it may not be comprehensive or could include some extraneous information. It may resemble an introductory section of a textbook or a basic tutorial that is suitable for learning but has notable limitations like treating concepts that are too complex for grade school students.
- Grant a fourth point if the extract highly relevant and beneficial for educational purposes for a level not higher than grade school, exhibiting a clear and consistent writing style. It could be similar to a chapter from a textbook or a tutorial, offering substantial educational content, including exercises and solutions, with minimal irrelevant information, and the concepts aren't too advanced for grade school students. The content is coherent, focused, and valuable for structured learning.
- Bestow a fifth point if the extract is outstanding in its educational value, perfectly suited for teaching either at primary school or grade school. It follows detailed reasoning, the writing style is easy to follow and offers profound and thorough insights into the subject matter, devoid of any non-educational or complex content.

The extract:
{extract}.

After examining the extract:
- Briefly justify your total score, up to 100 words.
- Conclude with the score using the format: "Educational score:  <total points>\""""
EDU_EXTRACT_CHARS = 1000  # the published annotations used the first 1,000 characters of a page
_EDU_SCORE = re.compile(r"educational score:\s*\**\s*(\d)", re.IGNORECASE)


def prepare(text: str) -> str:
    """What fastText sees: one line, lower case, whitespace collapsed (as in training)."""
    return _WS.sub(" ", _CONTROL.sub(" ", text)).strip().lower()


# ------------------------------------------------------------------ scoring
@functools.lru_cache(maxsize=2)
def load_classifier(path: str):
    """The fastText model at `path`, loaded once per process (models cannot be pickled to workers)."""
    from fasttext.FastText import _FastText

    if not os.path.isfile(path):
        raise FileNotFoundError(f"quality classifier {path} does not exist; train one with "
                                "`crawl2chat quality-train` or set curate.quality_model")
    return _FastText(path)


def resolve_model(path: str | None) -> str:
    """The model path of the config (None → the shipped default)."""
    return str(DEFAULT_MODEL) if not path else path


def score_texts(texts: Iterable[str | None], model) -> np.ndarray:
    """P(hq) of each text in [0, 1] (0.0 for an empty text)."""
    out = []
    for t in texts:
        if not t:
            out.append(0.0)
            continue
        labels, probs = model.predict(prepare(t), k=2)
        p = dict(zip(labels, probs)).get(POSITIVE, 0.0)
        out.append(min(1.0, max(0.0, float(p))))
    return np.asarray(out, dtype=np.float64)


def share_cutoff(histograms: Iterable[list[int]], keep_share: float) -> float:
    """Score cut-off that keeps about `keep_share` of the documents, from 1000-bin score histograms."""
    total = np.zeros(1000, dtype=np.int64)
    for h in histograms:
        total += np.asarray(h, dtype=np.int64)
    n = int(total.sum())
    if n == 0 or keep_share >= 1.0:
        return 0.0
    want = keep_share * n
    above = np.cumsum(total[::-1])  # documents at or above each bin, from the top
    k = int(np.searchsorted(above, want))  # first top-bin count reaching the share
    return (999 - min(k, 999)) / 1000.0


def histogram(scores: np.ndarray) -> list[int]:
    """1000-bin histogram of scores in [0, 1] (bin i: [i/1000, (i+1)/1000))."""
    bins = np.minimum((np.asarray(scores) * 1000).astype(np.int64), 999)
    return np.bincount(bins, minlength=1000).tolist()


# ------------------------------------------------------------------ reading training text
def warc_texts(path: str | Path, part: str = "boilerplate") -> list[str]:
    """Text of every HTML page of a WARC: `main` (trafilatura's main text, as curate extracts
    it), `page` (the whole page as text, resiliparse with main-content detection off) or
    `boilerplate` (the page's lines that the main text leaves out: menus, footers, cookie and
    newsletter lines — raw web text without the article, so a page's content is never both
    a negative here and a curated document later)."""
    from resiliparse.extract.html2text import extract_plain_text

    from tasks.curation.extract import extract_trafilatura
    from tasks.curation.funnel import StageCounter
    from tasks.curation.warc import iter_records

    out = []
    for rec in iter_records(str(path), StageCounter("read"), {}):
        if rec.kind == "text":
            text = rec.text if part != "boilerplate" else ""
        elif part == "main":
            text = extract_trafilatura(rec.text) or ""
        else:
            full = extract_plain_text(rec.text, main_content=False) or ""
            if part == "boilerplate":
                main = {ln.strip() for ln in (extract_trafilatura(rec.text) or "").splitlines() if ln.strip()}
                full = "\n".join(ln for ln in full.splitlines() if ln.strip() and ln.strip() not in main)
            text = full
        if text.strip():
            out.append(text)
    return out


def read_texts(path: str | Path, warc_part: str = "boilerplate") -> list[str]:
    """Documents of a Parquet (`text` column), JSONL (`text` field), WARC (`warc_texts(path, warc_part)`)
    or text file.

    A text file's documents are separated by blank lines; one without blank lines holds a
    document a line when its lines are long (≥ 100 words on average), else it is cut into
    documents of 40 lines.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p} does not exist")
    if ".warc" in p.name or p.name.endswith((".wet.gz", ".arc.gz")):
        return warc_texts(p, warc_part)
    if p.is_dir():
        return [t for f in sorted(p.glob("*.parquet")) for t in read_texts(f, warc_part)]
    if p.suffix == ".parquet":
        import pyarrow.parquet as pq

        return [t for t in pq.read_table(p, columns=["text"]).column("text").to_pylist() if t]
    if p.suffix in (".jsonl", ".json"):
        out = []
        with open(p, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    obj = json.loads(line)
                    t = obj.get("text") if isinstance(obj, dict) else None
                    if t:
                        out.append(t)
        return out
    text = p.read_text(encoding="utf-8", errors="replace")
    docs = [d for d in re.split(r"\n\s*\n", text) if d.strip()]
    if len(docs) == 1:
        lines = [ln for ln in docs[0].splitlines() if ln.strip()]
        if sum(len(ln.split()) for ln in lines) >= 100 * len(lines):  # one document a line (articles)
            return lines
        docs = ["\n".join(lines[i:i + 40]) for i in range(0, len(lines), 40)]
    return docs


def windows(docs: list[str], window_words: int, max_per_doc: int = 20) -> list[tuple[int, str]]:
    """(source document index, window text) of ~window_words words; at most `max_per_doc` windows
    of one document, so that one long page does not become most of a class."""
    out: list[tuple[int, str]] = []
    for i, d in enumerate(docs):
        words = d.split()
        for k in range(0, min(len(words), max_per_doc * window_words), window_words):
            chunk = words[k:k + window_words]
            if len(chunk) >= max(8, window_words // 4):
                out.append((i, " ".join(chunk)))
    return out


# ------------------------------------------------------------------ metrics
def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann–Whitney U, ties counted half)."""
    labels = np.asarray(labels, dtype=bool)
    pos, neg = int(labels.sum()), int((~labels).sum())
    if not pos or not neg:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    s = np.asarray(scores)[order]
    i = 0
    while i < len(s):  # average ranks over ties
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1
        i = j + 1
    return float((ranks[labels].sum() - pos * (pos + 1) / 2) / (pos * neg))


def precision_recall(labels: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> tuple[float, float]:
    """Precision and recall of `score ≥ threshold` as the positive prediction."""
    labels = np.asarray(labels, dtype=bool)
    pred = np.asarray(scores) >= threshold
    tp = int((pred & labels).sum())
    return (tp / int(pred.sum()) if pred.sum() else 0.0, tp / int(labels.sum()) if labels.sum() else 0.0)


# ------------------------------------------------------------------ training
def _fit_and_save(kw: dict[str, Any], out: str) -> None:
    import fasttext

    fasttext.train_supervised(**kw).save_model(out)


def _train_in_fresh_process(kw: dict[str, Any], out: Path) -> str:
    """Train in a spawned interpreter (no state inherited from this process) and return the model's path."""
    import multiprocessing

    proc = multiprocessing.get_context("spawn").Process(target=_fit_and_save, args=(kw, str(out)))
    proc.start()
    proc.join()
    if proc.exitcode != 0 or not out.exists():
        raise RuntimeError(f"fastText training failed in a fresh process (exit {proc.exitcode}): Encountered NaN")
    return str(out)


def train_classifier(positives: list[str], negatives: list[str], out_path: str | Path, *,
                     held_out: float = 0.2, window_words: int = 50, seed: int = 0, epoch: int = 10,
                     dim: int = 32, word_ngrams: int = 2, quantize: bool = True) -> dict[str, Any]:
    """Train a fastText hq/lq classifier; write it to `out_path`; return held-out figures.

    The split is by source document (a document's windows all go to one side), seeded.
    """
    import fasttext

    if not hasattr(fasttext, "train_supervised"):
        raise RuntimeError("the installed `fasttext` module predicts only (fasttext-predict); training "
                           "needs fasttext-numpy2-wheel (pip install fasttext-numpy2-wheel)")
    if not positives or not negatives:
        raise ValueError(f"need positive and negative text (got {len(positives)} and {len(negatives)} documents)")
    rng = random.Random(seed)

    def split(docs: list[str]) -> tuple[list[str], list[str]]:
        idx = list(range(len(docs)))
        rng.shuffle(idx)
        n_test = max(1, round(held_out * len(docs))) if len(docs) > 1 else 0
        test_docs = set(idx[:n_test])
        train, test = [], []
        for i, w in windows(docs, window_words):
            (test if i in test_docs else train).append(w)
        return train, test

    pos_train, pos_test = split(positives)
    neg_train, neg_test = split(negatives)
    # balance the classes in training by repeating the smaller side (fastText has no class weights)
    rows = [(POSITIVE, w) for w in pos_train] + [(NEGATIVE, w) for w in neg_train]
    short, long_ = sorted((pos_train, neg_train), key=len)
    if short and len(long_) > len(short):
        label = POSITIVE if short is pos_train else NEGATIVE
        rows += [(label, short[i % len(short)]) for i in range(len(long_) - len(short))]
    rng.shuffle(rows)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        train_file = Path(tmp) / "train.txt"
        train_file.write_text("".join(f"{lab} {prepare(w)}\n" for lab, w in rows), encoding="utf-8")
        lr = 0.1
        kw = dict(input=str(train_file), epoch=epoch, dim=dim, wordNgrams=word_ngrams, minCount=2,
                  bucket=200_000, seed=seed, thread=1, verbose=0)
        fresh = False
        while True:  # fastText can diverge ("Encountered NaN") on a small, uneven set: retry slower
            try:
                if fresh:  # in a new process: a long-lived one (a test session) has diverged where this did not
                    model = fasttext.load_model(_train_in_fresh_process({**kw, "lr": lr}, Path(tmp) / "fresh.bin"))
                else:
                    model = fasttext.train_supervised(lr=lr, **kw)
                break
            except RuntimeError as e:
                if "NaN" not in str(e) or lr < 0.01:
                    raise
                fresh = True
                lr /= 2
        if quantize:  # ~100× smaller file, to ship in the repository
            model.quantize(input=str(train_file), qnorm=True, retrain=False, cutoff=20_000)
        tmp_model = Path(tmp) / "model.bin"
        model.save_model(str(tmp_model))
        _move(tmp_model, out_path)
    load_classifier.cache_clear()
    test_texts = pos_test + neg_test
    labels = np.array([True] * len(pos_test) + [False] * len(neg_test))
    scores = score_texts(test_texts, load_classifier(str(out_path)))
    p, r = precision_recall(labels, scores)
    return {"model": str(out_path), "train_windows": {"positive": len(pos_train), "negative": len(neg_train)},
            "held_out_windows": {"positive": len(pos_test), "negative": len(neg_test)},
            "documents": {"positive": len(positives), "negative": len(negatives)},
            "precision": round(p, 4), "recall": round(r, 4), "auc": round(roc_auc(labels, scores), 4),
            "threshold": 0.5, "window_words": window_words, "seed": seed, "epoch": epoch, "lr": lr, "dim": dim,
            "word_ngrams": word_ngrams, "quantized": quantize, "bytes": out_path.stat().st_size}


def _move(src: Path, dst: Path) -> None:
    import shutil

    from core.atomic import atomic_path

    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


# ------------------------------------------------------------------ FineWeb-Edu labelling
def parse_edu_score(reply: str) -> int | None:
    """The 0–5 score of a FineWeb-Edu annotation reply ("Educational score: 3"), None if absent."""
    m = _EDU_SCORE.findall(reply or "")
    return min(5, int(m[-1])) if m else None


def edu_prompt(text: str, template: str = FINEWEB_EDU_PROMPT, extract_chars: int = EDU_EXTRACT_CHARS) -> str:
    """The FineWeb-Edu annotation prompt for one document (its first `extract_chars` characters)."""
    return template.replace("{extract}", text[:extract_chars])


def label_with_endpoint(texts: list[str], base_url: str, model: str, *, api_key: str | None = None,
                        max_tokens: int = 256, timeout_s: float = 120.0, template: str = FINEWEB_EDU_PROMPT,
                        extract_chars: int = EDU_EXTRACT_CHARS) -> list[dict[str, Any]]:
    """Annotate each text with an OpenAI-compatible chat endpoint; one {score, reply, error} per text.

    `base_url` is the API root (`http://127.0.0.1:8000/v1`). Score None when the reply carries
    no "Educational score: N", or when the endpoint refused that document (a 4xx such as 413,
    prompt over the model's context: `error` says which); counted by the caller, not guessed.
    A server error (5xx) or an unreachable endpoint raises.
    """
    import httpx

    url = base_url.rstrip("/") + "/chat/completions"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    out = []
    with httpx.Client(timeout=timeout_s) as client:
        for t in texts:
            body = {"model": model, "messages": [{"role": "user", "content": edu_prompt(t, template, extract_chars)}],
                    "max_tokens": max_tokens, "temperature": 0.0}
            resp = client.post(url, json=body, headers=headers)
            if 400 <= resp.status_code < 500:
                out.append({"score": None, "reply": "", "error": f"{resp.status_code}: {resp.text[:200]}"})
                continue
            resp.raise_for_status()
            reply = resp.json()["choices"][0]["message"]["content"] or ""
            out.append({"score": parse_edu_score(reply), "reply": reply[:2000], "error": None})
    return out
