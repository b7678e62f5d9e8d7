"""Tokenize stage logic: train the tokenizer, write token shards, measure compression.

Pure functions over files (paths in, counts out), then thin Prefect task
wrappers at the bottom. The train/val split is decided per document by a hash
of its id (`is_val`), so it is deterministic, independent of how documents are
sharded, and the tokenizer never trains on the documents the compression table
and the pretraining validation loss are measured on.
"""
from __future__ import annotations

import hashlib
import heapq
import json
import logging
import math
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import INPUTS, TASK_SOURCE

from lm.tokenizer import Tokenizer
from lm.tokens import SPLITS, ShardWriter, dtype_for_vocab, shard_name

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
GPT2_VOCAB = "cs336_gpt2_vocab.json"
GPT2_MERGES = "cs336_gpt2_merges.txt"
# Where the GPT-2 reference files are looked for when the config names none.
GPT2_SEARCH_DIRS = (REPO_ROOT / "data" / "text",)


# ------------------------------------------------------------------ inputs
def find_parquet(data: str | Path) -> list[Path]:
    """Parquet inputs of a run, in order.

    A curate output dir: the shards its `curated/manifest.json` lists (stray or
    stale files beside them are ignored), else every `curated/*.parquet`. Any
    other folder: its `*.parquet`. A single file: itself.
    """
    p = Path(data)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise FileNotFoundError(f"--data {p} does not exist; give a curate output dir or a folder of Parquet files")
    for d in (p / "curated", p):
        manifest = d / "manifest.json"
        listed = _manifest_shards(manifest) if manifest.exists() else []
        if listed:
            listed = [d / name for name in listed]
            missing = [str(f) for f in listed if not f.exists()]
            if missing:
                raise FileNotFoundError(f"{manifest} lists shards that are missing: {missing[:3]}; re-run curate")
            return listed
        files = sorted(f for f in d.glob("*.parquet") if f.is_file())
        if files:
            return files
    raise FileNotFoundError(f"no Parquet files in {p} or {p / 'curated'}; "
                            "give a curate output dir or a folder of Parquet files with a `text` column")


def _manifest_shards(manifest: Path) -> list[str]:
    """Shard file names a curate manifest lists ([] when it lists none: then the folder is globbed)."""
    try:
        data = json.loads(manifest.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"curate manifest {manifest} is unreadable ({e}); re-run curate") from e
    shards = data.get("shards") if isinstance(data, dict) else None
    if not isinstance(shards, list):
        return []
    return [s["path"] for s in shards if isinstance(s, dict) and isinstance(s.get("path"), str)]


def source_fingerprint(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Identity of input files (absolute path, size, mtime) for cache keys and the manifest."""
    out = []
    for p in paths:
        st = Path(p).stat()
        out.append({"path": str(Path(p).resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns})
    return out


def is_val(key: str, val_fraction: float, seed: str = "crawl2chat-val") -> bool:
    """Whether a document (by id) is held out: hash in the first `val_fraction` of the range."""
    if val_fraction <= 0:
        return False
    return _key_hash(key, seed) < val_fraction * 2.0**64


def _key_hash(key: str, seed: str) -> int:
    h = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8, person=seed.encode()[:16])
    return int.from_bytes(h.digest(), "big")


def effective_val_fraction(parquet_paths: Sequence[str | Path], val_fraction: float, min_val_docs: int,
                           split_seed: str = "crawl2chat-val", text_column: str = "text",
                           id_column: str = "id") -> float:
    """`val_fraction`, raised just enough that at least `min_val_docs` documents are held out.

    A tiny corpus (a handful of pages) would otherwise often get an empty
    validation split. Keeps at least one training document. Deterministic: it
    depends only on the set of document keys.
    """
    if min_val_docs <= 0:
        return val_fraction
    n_docs, smallest = 0, []
    for p in parquet_paths:
        try:
            for docs in iter_documents(p, text_column, id_column):
                n_docs += len(docs)
                smallest = heapq.nsmallest(min_val_docs, smallest + [_key_hash(k, split_seed) for k, _ in docs])
        except ValueError:
            continue  # unreadable inputs are reported by the shard tasks
    k = min(min_val_docs, n_docs - 1)
    if k <= 0:
        return val_fraction
    # Just above the k-th smallest hash, so exactly those k documents (at least) fall under it.
    needed = math.nextafter(smallest[k - 1] / 2.0**64, 1.0)
    return max(val_fraction, needed)


def iter_documents(path: str | Path, text_column: str = "text", id_column: str = "id",
                   batch_docs: int = 1024, skipped: Counter | None = None) -> Iterator[list[tuple[str, str]]]:
    """Batches of (key, text) from one Parquet file; empty/null texts are counted in `skipped`.

    The key is the document id when the file has `id_column`, else the text itself.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    skipped = skipped if skipped is not None else Counter()
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise ValueError(f"{path} is not a readable Parquet file: {e}") from e
    names = pf.schema_arrow.names
    if text_column not in names:
        raise ValueError(f"{path} has no {text_column!r} column (columns: {names}); "
                         "give Parquet files with a text column, e.g. a curate output")
    ttype = pf.schema_arrow.field(text_column).type
    if not (pa.types.is_string(ttype) or pa.types.is_large_string(ttype)):
        raise ValueError(f"{path}: column {text_column!r} is {ttype}, expected a string column")
    cols = [text_column] + ([id_column] if id_column in names and id_column != text_column else [])
    try:
        for batch in pf.iter_batches(columns=cols, batch_size=batch_docs):
            texts = batch.column(0).to_pylist()
            keys = batch.column(1).to_pylist() if len(cols) == 2 else texts
            docs = []
            for k, t in zip(keys, texts):
                if not t:
                    skipped["empty_text"] += 1
                    continue
                docs.append((str(k) if k is not None else t, t))
            if docs:
                yield docs
    except (pa.ArrowException, OSError) as e:
        raise ValueError(f"{path} is damaged (read failed part-way): {e}") from e


# --------------------------------------------------------------- training
def train_tokenizer(parquet_paths: Sequence[str | Path], vocab_size: int, out_dir: str | Path,
                    max_chars: int, min_frequency: int = 2, val_fraction: float = 0.01,
                    split_seed: str = "crawl2chat-val", text_column: str = "text",
                    id_column: str = "id") -> dict[str, Any]:
    """Train byte-level BPE on the train-split text (≤ `max_chars`); write `<out_dir>/tokenizer.json`.

    Unreadable files are skipped with a warning and counted. Returns
    {path, sha256, vocab_size, n_docs, n_chars, skipped}.
    """
    counts: Counter = Counter()
    skipped: Counter = Counter()

    def texts() -> Iterator[str]:
        for p in parquet_paths:
            try:
                for docs in iter_documents(p, text_column, id_column, skipped=skipped):
                    for key, text in docs:
                        if is_val(key, val_fraction, split_seed):
                            continue
                        yield text
                        counts["docs"] += 1
                        counts["chars"] += len(text)
                        if counts["chars"] >= max_chars:
                            return
            except ValueError as e:
                log.warning("tokenizer training skips %s: %s", p, e)
                skipped["unreadable_file"] += 1
            log.info("tokenizer training: read %s (%d docs, %d chars so far)", Path(p).name,
                     counts["docs"], counts["chars"])

    tok = Tokenizer.train(texts(), vocab_size=vocab_size, min_frequency=min_frequency)
    if counts["docs"] == 0:
        raise ValueError(f"no training text in {len(parquet_paths)} Parquet file(s) "
                         f"(skipped: {dict(skipped)}); check --data and the text column")
    if tok.vocab_size < vocab_size:
        log.warning("asked for vocab %d, got %d: too little text (%d chars) for more merges",
                    vocab_size, tok.vocab_size, counts["chars"])
    path = tok.save(Path(out_dir) / "tokenizer.json")
    return {"path": str(path), "sha256": tok.sha256(), "vocab_size": tok.vocab_size,
            "n_docs": counts["docs"], "n_chars": counts["chars"], "skipped": dict(skipped)}


# ------------------------------------------------------------- sharding
def tokenize_shard(parquet_path: str | Path, tokenizer_path: str | Path, tokens_dir: str | Path,
                   index: int, val_fraction: float = 0.01, split_seed: str = "crawl2chat-val",
                   text_column: str = "text", id_column: str = "id", batch_docs: int = 1024) -> dict[str, Any]:
    """Tokenize one Parquet file into `train_<index>.bin` and `val_<index>.bin` under `tokens_dir`.

    Each document is written as BOS + its ids. Both shards are written
    atomically (and both always exist, possibly empty). A damaged input gives
    no shards and an `error` naming the reason, so one bad file never stops a
    run. Returns {source, shards: [{path, split, n_tokens, n_docs, n_bytes}],
    skipped, error}.
    """
    tok = Tokenizer.load(tokenizer_path)
    tokens_dir = Path(tokens_dir)
    skipped: Counter = Counter()
    n_bytes = Counter()
    result: dict[str, Any] = {"source": str(parquet_path), "index": index, "shards": [], "error": None}
    try:
        with ExitStack() as stack:
            writers = {s: stack.enter_context(ShardWriter(tokens_dir / shard_name(s, index), tok.vocab_size, tok.bos_id))
                       for s in SPLITS}
            for docs in iter_documents(parquet_path, text_column, id_column, batch_docs, skipped):
                ids = tok.encode_batch([t for _, t in docs])
                for (key, text), doc_ids in zip(docs, ids):
                    split = "val" if is_val(key, val_fraction, split_seed) else "train"
                    writers[split].add(doc_ids)
                    n_bytes[split] += len(text.encode("utf-8"))
    except ValueError as e:
        log.warning("skipping shard %s: %s", parquet_path, e)
        result["error"] = str(e)
        skipped["unreadable_file"] += 1
        result["skipped"] = dict(skipped)
        return result
    for s in SPLITS:
        w = writers[s]
        st = w.path.stat()  # (size, mtime) let a cached result be checked against the file
        result["shards"].append({"path": w.path.name, "split": s, "n_tokens": w.n_tokens,
                                 "n_docs": w.n_docs, "n_bytes": n_bytes[s], "source": str(parquet_path),
                                 "size": st.st_size, "mtime_ns": st.st_mtime_ns})
    result["skipped"] = dict(skipped)
    log.info("tokenized %s: %s", Path(parquet_path).name,
             ", ".join(f"{e['split']} {e['n_docs']} docs / {e['n_tokens']} tokens" for e in result["shards"]))
    return result


def build_meta(tokenizer: Tokenizer, tokenizer_path: str | Path, tokens_dir: str | Path,
               shard_results: Sequence[dict[str, Any]], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The token dataset manifest (lm/tokens.py format) from `tokenize_shard` results."""
    shards = [s for r in shard_results for s in r["shards"]]
    splits = {}
    for split in SPLITS:
        mine = [s for s in shards if s["split"] == split]
        splits[split] = {k: sum(s[k] for s in mine) for k in ("n_tokens", "n_docs", "n_bytes")}
    skipped: Counter = Counter()
    for r in shard_results:
        skipped.update(r.get("skipped", {}))
    rel_tok = os.path.relpath(Path(tokenizer_path).resolve(), Path(tokens_dir).resolve())
    return {
        "format_version": 1,
        "dtype": dtype_for_vocab(tokenizer.vocab_size).name,
        "vocab_size": tokenizer.vocab_size,
        "bos_id": tokenizer.bos_id,
        "tokenizer_sha256": tokenizer.sha256(),
        "tokenizer_path": rel_tok,
        "shards": shards,
        "n_tokens": sum(s["n_tokens"] for s in shards),
        "splits": splits,
        "sources": [r["source"] for r in shard_results],
        "failed_sources": [{"source": r["source"], "reason": r["error"]} for r in shard_results if r.get("error")],
        "skipped": dict(skipped),
        **(extra or {}),
    }


# ------------------------------------------------------------ compression
def held_out_texts(parquet_paths: Sequence[str | Path], n_docs: int, val_fraction: float,
                   split_seed: str = "crawl2chat-val", text_column: str = "text",
                   id_column: str = "id") -> list[str]:
    """The first `n_docs` validation documents, in file order (never seen in tokenizer training)."""
    out: list[str] = []
    for p in parquet_paths:
        try:
            for docs in iter_documents(p, text_column, id_column):
                out.extend(t for k, t in docs if is_val(k, val_fraction, split_seed))
                if len(out) >= n_docs:
                    return out[:n_docs]
        except ValueError as e:
            log.warning("compression report skips %s: %s", p, e)
    return out


def find_gpt2_files(vocab: str | None = None, merges: str | None = None) -> tuple[Path, Path] | None:
    """Paths of the GPT-2 vocab.json + merges.txt: the given ones, else the first found in GPT2_SEARCH_DIRS."""
    if vocab or merges:
        if not (vocab and merges):
            raise ValueError("give both gpt2_vocab and gpt2_merges, or neither")
        v, m = Path(vocab), Path(merges)
        for f in (v, m):
            if not f.exists():
                raise FileNotFoundError(f"GPT-2 reference file {f} not found")
        return v, m
    for d in GPT2_SEARCH_DIRS:
        if (d / GPT2_VOCAB).exists() and (d / GPT2_MERGES).exists():
            return d / GPT2_VOCAB, d / GPT2_MERGES
    return None


def load_gpt2(vocab: str | Path, merges: str | Path):
    """GPT-2's tokenizer (50257 tokens) from its vocab.json + merges.txt, as a HF tokenizer."""
    from tokenizers.implementations import ByteLevelBPETokenizer

    return ByteLevelBPETokenizer(str(vocab), str(merges), add_prefix_space=False)


def compression_report(tokenizer: Tokenizer, texts: Sequence[str], gpt2: Any | None = None,
                       name: str = "crawl2chat") -> list[dict[str, Any]]:
    """Bytes per token of our tokenizer (and GPT-2's, when given) on `texts`.

    One row per tokenizer: name, vocab_size, n_docs, n_bytes, n_tokens,
    bytes_per_token, tokens_vs_gpt2 (our token count / GPT-2's: < 1 is better).
    """
    texts = [t for t in texts if t]
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    rows = []
    ours = sum(len(ids) for ids in tokenizer.encode_batch(list(texts))) if texts else 0
    rows.append({"tokenizer": name, "vocab_size": tokenizer.vocab_size, "n_tokens": ours})
    if gpt2 is not None:
        encs = gpt2.encode_batch(list(texts), add_special_tokens=False) if texts else []
        rows.append({"tokenizer": "gpt2", "vocab_size": gpt2.get_vocab_size(),
                     "n_tokens": sum(len(e.ids) for e in encs)})
    ref = rows[1]["n_tokens"] if gpt2 is not None else None
    for r in rows:
        r["n_docs"] = len(texts)
        r["n_bytes"] = n_bytes
        r["bytes_per_token"] = round(n_bytes / r["n_tokens"], 4) if r["n_tokens"] else None
        r["tokens_vs_gpt2"] = round(r["n_tokens"] / ref, 4) if ref else None
    return rows


def compression_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The compression rows as a markdown table."""
    cols = ["tokenizer", "vocab_size", "n_docs", "n_bytes", "n_tokens", "bytes_per_token", "tokens_vs_gpt2"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join("" if r.get(c) is None else str(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def run_compression(tokenizer_path: str | Path, parquet_paths: Sequence[str | Path], n_docs: int,
                    val_fraction: float, split_seed: str = "crawl2chat-val", text_column: str = "text",
                    id_column: str = "id", gpt2_vocab: str | None = None,
                    gpt2_merges: str | None = None) -> list[dict[str, Any]]:
    """Compression rows on held-out documents of `parquet_paths` (file paths in, rows out)."""
    tok = Tokenizer.load(tokenizer_path)
    texts = held_out_texts(parquet_paths, n_docs, val_fraction, split_seed, text_column, id_column)
    if not texts:
        log.warning("no held-out documents (val_fraction=%s): compression report is empty", val_fraction)
        return []
    files = find_gpt2_files(gpt2_vocab, gpt2_merges)
    if files is None:
        log.warning("GPT-2 vocab/merges not found in %s: compression report without the GPT-2 row",
                    [str(d) for d in GPT2_SEARCH_DIRS])
    gpt2 = load_gpt2(*files) if files else None
    return compression_report(tok, texts, gpt2)


# ------------------------------------------------------- Prefect wrappers
# Inputs are paths plus content fingerprints (source sizes/mtimes, tokenizer
# sha256), so a cache hit means same inputs → same outputs across runs.
# JSON results (never unpickled); the flow puts them under the run root (flows/results.py)
_CACHED = {"cache_policy": INPUTS + TASK_SOURCE, "persist_result": True, "result_serializer": "json"}


@task(name="train-tokenizer", **_CACHED)
def train_tokenizer_task(parquet_paths: list[str], vocab_size: int, out_dir: str, max_chars: int,
                         min_frequency: int, val_fraction: float, split_seed: str, text_column: str,
                         id_column: str, sources: list[dict[str, Any]]) -> dict[str, Any]:
    """`train_tokenizer` as a cached Prefect task (`sources` only keys the cache)."""
    return train_tokenizer(parquet_paths, vocab_size, out_dir, max_chars, min_frequency, val_fraction,
                           split_seed, text_column, id_column)


@task(name="tokenize-shard", **_CACHED, retries=1)
def tokenize_shard_task(parquet_path: str, tokenizer_path: str, tokens_dir: str, index: int,
                        val_fraction: float, split_seed: str, text_column: str, id_column: str,
                        batch_docs: int, tokenizer_sha256: str, source: dict[str, Any]) -> dict[str, Any]:
    """`tokenize_shard` as a cached Prefect task (`tokenizer_sha256`, `source` only key the cache)."""
    return tokenize_shard(parquet_path, tokenizer_path, tokens_dir, index, val_fraction, split_seed,
                          text_column, id_column, batch_docs)


@task(name="val-split", **_CACHED)
def val_split_task(parquet_paths: list[str], val_fraction: float, min_val_docs: int, split_seed: str,
                   text_column: str, id_column: str, sources: list[dict[str, Any]]) -> float:
    """`effective_val_fraction` as a cached Prefect task (`sources` only keys the cache)."""
    return effective_val_fraction(parquet_paths, val_fraction, min_val_docs, split_seed, text_column, id_column)


@task(name="compression-report")
def compression_task(tokenizer_path: str, parquet_paths: list[str], n_docs: int, val_fraction: float,
                     split_seed: str, text_column: str, id_column: str, gpt2_vocab: str | None,
                     gpt2_merges: str | None) -> list[dict[str, Any]]:
    """`run_compression` as a Prefect task."""
    return run_compression(tokenizer_path, parquet_paths, n_docs, val_fraction, split_seed, text_column,
                           id_column, gpt2_vocab, gpt2_merges)
