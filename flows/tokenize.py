"""`tokenize` flow: curated Parquet → tokenizer.json + token shards + manifest.

    find Parquet inputs ── manifest up to date? → return it (nothing to do)
      └─ train-tokenizer (Ray)            <out>/tokenizer.json
          ├─ tokenize-shard ×N (Ray)      <out>/tokens/{train,val}_NNNNN.bin
          └─ compression-report (Ray)     bytes/token vs GPT-2 on held-out docs
      └─ manifest                         <out>/tokens/meta.json, written last
    the tasks' Prefect cache:             <out>/work/prefect-results/ (JSON, atomic: flows/results.py)

Tracked in the MLflow run `tokenize`: config as params, the curated data as
input, token counts and bytes/token as metrics, the compression table, the
tokenizer and the manifest as artifacts.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.futures import as_completed

from conf import load
from conf.tokenize import TokenizeConfig
from flows.results import result_storage
from flows.runtime import log_dataset, mlflow_run, publish_markdown, publish_table, ray_runner
from lm.tokenizer import Tokenizer
from lm.tokens import META_NAME, SPLITS, TOKENS_DIR, read_meta, write_meta
from tasks.progress import StageProgress
from tasks.tokenize import (build_meta, compression_markdown, compression_task, find_parquet,
                            source_fingerprint, tokenize_shard_task, train_tokenizer_task, val_split_task)


# Config fields that change the outputs (batch size and Ray address do not).
_OUTPUT_FIELDS = ("vocab_size", "max_chars", "min_frequency", "text_column", "id_column", "val_fraction",
                  "min_val_docs", "split_seed", "compression_docs", "gpt2_vocab", "gpt2_merges")


def inputs_key(sources: list[dict[str, Any]], cfg: TokenizeConfig) -> str:
    """Hash of everything the outputs depend on: input files (path/size/mtime) and config."""
    relevant = {k: getattr(cfg, k) for k in _OUTPUT_FIELDS}
    blob = json.dumps({"sources": sources, "config": relevant, "format": 1}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


def _tokenizer_matches(trained: dict[str, Any]) -> bool:
    path = Path(trained["path"])
    return path.exists() and Tokenizer.load(path).sha256() == trained["sha256"]


def _shards_intact(tokens_dir: Path, result: dict[str, Any]) -> bool:
    """Every shard a tokenize_shard result names still exists as it was written (size, mtime)."""
    for s in result["shards"]:
        f = tokens_dir / s["path"]
        if not f.exists():
            return False
        st = f.stat()
        if st.st_size != s["size"] or st.st_mtime_ns != s["mtime_ns"]:
            return False
    return True


def up_to_date(tokens_dir: Path, key: str) -> dict[str, Any] | None:
    """The existing manifest when it was made from the same inputs and every shard is intact."""
    if not (tokens_dir / META_NAME).exists():
        return None
    try:
        meta = read_meta(tokens_dir)
    except ValueError:
        return None
    if meta.get("inputs_key") != key:
        return None
    itemsize = 2 if meta["dtype"] == "uint16" else 4
    for s in meta["shards"]:
        f = tokens_dir / s["path"]
        if not f.exists() or f.stat().st_size != s["n_tokens"] * itemsize:
            return None
        if "mtime_ns" in s and f.stat().st_mtime_ns != s["mtime_ns"]:
            return None  # rewritten by another run since
    tok_path = (tokens_dir / meta.get("tokenizer_path", "../tokenizer.json")).resolve()
    if not tok_path.exists() or Tokenizer.load(tok_path).sha256() != meta.get("tokenizer_sha256"):
        return None
    return meta


@flow(name="tokenize")
def tokenize(data: str, out: str, preset: str | None = "tiny", vocab_size: int | None = None,
             overrides: dict[str, Any] | None = None, mlflow_root: str | None = None) -> dict[str, Any]:
    """Train the tokenizer on `data`'s Parquet text and write token shards under `out`.

    `data`: a curate output dir (`curated/*.parquet`) or a folder of Parquet files
    with a text column. Returns the manifest (`<out>/tokens/meta.json`).
    """
    logger = get_run_logger()
    cfg = load(TokenizeConfig, preset, {**(overrides or {}), "vocab_size": vocab_size})
    out_dir = Path(out).resolve()
    tokens_dir = out_dir / TOKENS_DIR
    parquet = [str(p.resolve()) for p in find_parquet(data)]
    sources = source_fingerprint(parquet)
    key = inputs_key(sources, cfg)
    done = up_to_date(tokens_dir, key)
    if done is not None:
        logger.info("tokenize: %s is up to date with %d inputs (%d tokens); nothing to do",
                    tokens_dir, len(parquet), done["n_tokens"])
        return done

    params = {**cfg.model_dump(exclude={"section"}), "preset": preset, "data": str(Path(data).resolve()),
              "out": str(out_dir), "n_sources": len(parquet)}
    with mlflow_run("tokenize", mlflow_root or out_dir, params=params) as run:
        import mlflow

        log_dataset(data, "curated", context="training")
        # The old manifest no longer describes what is on disk once we start writing.
        (tokens_dir / META_NAME).unlink(missing_ok=True)
        tok_path = out_dir / "tokenizer.json"
        cols = dict(split_seed=cfg.split_seed, text_column=cfg.text_column, id_column=cfg.id_column)
        # the tasks' Prefect cache, under the run root and written atomically (flows/results.py)
        store = result_storage(out_dir / "work" / "prefect-results")
        val_fraction = val_split_task.with_options(result_storage=store).submit(
            parquet, cfg.val_fraction, cfg.min_val_docs, sources=sources, **cols).result()
        if val_fraction != cfg.val_fraction:
            logger.info("tokenize: val_fraction raised %s → %.6g to hold out %d document(s)", cfg.val_fraction,
                        val_fraction, cfg.min_val_docs)
        common = dict(val_fraction=val_fraction, **cols)

        def train(refresh: bool) -> dict[str, Any]:
            return train_tokenizer_task.with_options(refresh_cache=refresh, result_storage=store).submit(
                parquet, cfg.vocab_size, str(out_dir), cfg.max_chars, cfg.min_frequency, sources=sources,
                **common).result()

        trained = train(refresh=False)
        if not _tokenizer_matches(trained):
            # A cached result whose file a later run (other config) has replaced.
            logger.info("tokenize: cached tokenizer result is stale; retraining")
            trained = train(refresh=True)
        tok = Tokenizer.load(trained["path"])
        logger.info("tokenizer: vocab %d, trained on %d docs / %d chars", tok.vocab_size, trained["n_docs"],
                    trained["n_chars"])

        comp = compression_task.submit(trained["path"], parquet, cfg.compression_docs, gpt2_vocab=cfg.gpt2_vocab,
                                       gpt2_merges=cfg.gpt2_merges, **common)

        def submit(i: int, refresh: bool):
            return tokenize_shard_task.with_options(refresh_cache=refresh, result_storage=store).submit(
                parquet[i], trained["path"], str(tokens_dir), i, batch_docs=cfg.batch_docs,
                tokenizer_sha256=tok.sha256(), source=sources[i], **common)

        results: list[dict[str, Any]] = [{} for _ in parquet]
        pending = [submit(i, refresh=False) for i in range(len(parquet))]
        t_shards = time.monotonic()
        for attempt in range(2):
            # a line every 10 % of the shards in the run's log (tasks/progress.py), and a progress artifact
            progress = StageProgress("tokenize", len(pending), unit="shard")
            n_tok = 0
            for n, fut in enumerate(as_completed(pending), 1):
                r = fut.result()
                results[r["index"]] = r
                n_tok += sum(int(s.get("n_tokens", 0)) for s in r.get("shards") or [])
                progress.update(n, n_tokens=n_tok, tokens_per_s=n_tok / max(1e-9, time.monotonic() - t_shards))
            # A cached result is trusted only while its files are the ones it wrote
            # (deleted, or overwritten by a run with another tokenizer → redo).
            stale = [i for i, r in enumerate(results) if not _shards_intact(tokens_dir, r)]
            if not stale or attempt == 1:
                break
            logger.info("tokenize: %d shard(s) missing or replaced since cached; redoing", len(stale))
            pending = [submit(i, refresh=True) for i in stale]
        if any(not _shards_intact(tokens_dir, r) for r in results):
            raise RuntimeError(f"token shards under {tokens_dir} changed while the flow ran; re-run")
        failed = [r for r in results if r["error"]]
        if len(failed) == len(results):
            raise ValueError(f"no input could be tokenized; first error: {failed[0]['error']}")
        for r in failed:
            logger.warning("tokenize: skipped %s: %s", r["source"], r["error"])

        rows = comp.result()
        meta = build_meta(tok, tok_path, tokens_dir, results, extra={
            "inputs_key": key, "config": cfg.model_dump(exclude={"section"}), "preset": preset,
            "val_fraction_effective": val_fraction,
            "sources_fingerprint": sources, "compression": rows, "tokenizer_training": trained,
            "mlflow_run_id": run.info.run_id})

        metrics = {f"{split}_{k}": v for split, c in meta["splits"].items() for k, v in c.items()}
        metrics.update(n_tokens=meta["n_tokens"], vocab_size=tok.vocab_size, failed_sources=len(failed),
                       tokenizer_train_chars=trained["n_chars"])
        for r in rows:
            if r["bytes_per_token"] is not None:
                metrics[f"bytes_per_token_{r['tokenizer']}"] = r["bytes_per_token"]
        mlflow.log_metrics(metrics)
        if rows:
            mlflow.log_table({k: [r[k] for r in rows] for k in rows[0]}, artifact_file="compression.json")
            md = compression_markdown(rows)
            publish_markdown("tokenize-compression", md, description="bytes per token on held-out curated text")
            publish_table("tokenize-compression-table", rows)
        mlflow.log_artifact(str(tok_path))
        # Shards of an earlier run with more inputs would linger unlisted: drop them.
        listed = {s["path"] for s in meta["shards"]}
        for f in tokens_dir.glob("*.bin"):
            if f.name not in listed:
                logger.info("tokenize: removing stale shard %s", f.name)
                f.unlink()
        write_meta(tokens_dir, meta)  # last: marks the dataset complete
        mlflow.log_artifact(str(tokens_dir / META_NAME))
        for split in SPLITS:
            logger.info("tokenize: %s %d docs, %d tokens", split, meta["splits"][split]["n_docs"],
                     meta["splits"][split]["n_tokens"])
    return meta


def run_tokenize(data: str, out: str, preset: str | None = "tiny", vocab_size: int | None = None,
                 ray_address: str | None = None, overrides: dict[str, Any] | None = None,
                 mlflow_root: str | None = None) -> dict[str, Any]:
    """Run the `tokenize` flow with its tasks on Ray (local, or the cluster at `ray_address`)."""
    cfg = load(TokenizeConfig, preset, {**(overrides or {}), "vocab_size": vocab_size})
    flow_ = tokenize
    # Starting Ray takes tens of seconds; an up-to-date run submits no task.
    sources = source_fingerprint(find_parquet(data))
    if up_to_date(Path(out).resolve() / TOKENS_DIR, inputs_key(sources, cfg)) is None:
        flow_ = tokenize.with_options(task_runner=ray_runner(ray_address or cfg.ray_address))
    return flow_(data=data, out=out, preset=preset, vocab_size=vocab_size, overrides=overrides,
                 mlflow_root=mlflow_root)


def summary(meta: dict[str, Any], out: str) -> list[str]:
    """What `crawl2chat tokenize` prints."""
    from tasks.tokenize import compression_markdown

    splits = meta.get("splits") or {}
    lines = [f"tokenizer: {out}/tokenizer.json (vocab {meta.get('vocab_size', 'n/a')}, {meta.get('dtype')} shards)"]
    lines += [f"{s}: {splits.get(s, {}).get('n_docs', 'n/a')} docs, {splits.get(s, {}).get('n_tokens', 'n/a')} tokens"
              for s in ("train", "val")]
    if meta.get("failed_sources"):
        lines.append(f"skipped {len(meta['failed_sources'])} unreadable input(s): see {out}/tokens/meta.json")
    if meta.get("compression"):
        lines.append(compression_markdown(meta["compression"]))
    return lines
