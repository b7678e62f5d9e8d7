"""`index` flow: curated Parquet → passages → Tantivy full-text index (BM25) + manifest.

    find curated shards (curate's manifest) ── all indexed, same config? → return the manifest
      └─ index-passages ×new shard     <out>/passages/<shard>.parquet
      └─ index-update (one writer)     <out>/tantivy/ (+ <out>/state.json after the commit)
      └─ manifest                      <out>/manifest.json, written last

Incremental: a re-run reads only shards that are new or changed since the last
run (size, mtime) and drops the passages of shards curate no longer lists.
Tracked in the MLflow run `index`: config as params, the curated data as input,
documents/passages/new shards as metrics, the manifest as an artifact.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from conf import load
from conf.index import IndexConfig
from core.run_root import clear_manifest, read_manifest, write_manifest
from flows.runtime import log_dataset, mlflow_run, publish_markdown
from tasks.index import passages_path, passages_task, plan_update, read_state, update_index_task
from tasks.tokenize import find_parquet, source_fingerprint

# Config fields that change the passages (the tool's top_k/max_tokens and the writer's do not).
_PASSAGE_FIELDS = ("passage_words", "max_passage_words", "min_passage_words", "title_column")


def passage_key(cfg: IndexConfig) -> str:
    blob = json.dumps({k: getattr(cfg, k) for k in _PASSAGE_FIELDS} | {"format": 1}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def plan(data: str, out: str, cfg: IndexConfig) -> dict[str, Any]:
    """What a run would do: {sources, todo (fingerprints), gone (paths), key, rebuild}."""
    sources = source_fingerprint([p.resolve() for p in find_parquet(data)])
    state, old_key = read_state(out)
    key = passage_key(cfg)
    rebuild = bool(state) and old_key != key
    if rebuild:  # other passage settings: every passage changes
        todo, gone = sources, list(state)
    else:
        todo, gone = plan_update(sources, state)
    return {"sources": sources, "todo": todo, "gone": gone, "key": key, "rebuild": rebuild}


def _tool(cfg: IndexConfig) -> dict[str, int]:
    return {"top_k": cfg.top_k, "max_tokens": cfg.max_tokens}


@flow(name="index")
def index(data: str, out: str, preset: str | None = "tiny", overrides: dict[str, Any] | None = None,
          mlflow_root: str | None = None) -> dict[str, Any]:
    """Index the passages of `data`'s curated shards under `out`; returns the manifest.

    `data`: a curate output dir (the shards its `curated/manifest.json` lists) or a
    folder of Parquet files with `text` and `url` columns.
    """
    logger = get_run_logger()
    cfg = load(IndexConfig, preset, overrides)
    out_dir = Path(out).resolve()
    p = plan(data, str(out_dir), cfg)
    done = read_manifest(out_dir)
    if done is not None and not p["todo"] and not p["gone"] and done.get("tool") == _tool(cfg):
        logger.info("index: %s is up to date with %d shards (%d passages); nothing to do", out_dir,
                    len(p["sources"]), done.get("passages", 0))
        return done

    t0 = time.perf_counter()
    params = {**cfg.model_dump(exclude={"section"}), "preset": preset, "data": str(Path(data).resolve()),
              "out": str(out_dir), "n_shards": len(p["sources"]), "new_shards": len(p["todo"])}
    with mlflow_run("index", mlflow_root or out_dir, params=params) as run:
        import mlflow

        log_dataset(data, "curated", context="index")
        clear_manifest(out_dir)  # the old manifest no longer describes the index once we write
        cfg_dict = cfg.model_dump(mode="json")
        added, failed = [], []
        for i, src in enumerate(p["todo"], 1):
            try:
                r = passages_task(src["path"], str(passages_path(out_dir, src["path"])), cfg_dict)
            except Exception as e:  # one unreadable shard is recorded; the others are indexed
                logger.warning("index: skipped %s: %s", src["path"], e)
                failed.append({"source": src["path"], "error": f"{type(e).__name__}: {e}"})
                continue
            added.append({**r, "size": src["size"], "mtime_ns": src["mtime_ns"]})
            logger.info("index: %d/%d shards cut into passages (%s: %d)", i, len(p["todo"]),
                        Path(src["path"]).name, r["passages"])
        if p["todo"] and not added and not read_state(out_dir)[0]:
            raise ValueError(f"no curated shard could be indexed; first error: {failed[0]['error']}")
        upd = update_index_task(str(out_dir), added, p["gone"], cfg_dict, p["key"])
        state = upd["state"]
        shards = [{"source": s["path"], **state[s["path"]]} for s in p["sources"] if s["path"] in state]
        manifest = {
            "stage": "index", "documents": sum(s["documents"] for s in shards),
            "passages": upd["num_passages"], "shards": shards, "new_shards": len(added),
            "removed_shards": upd["removed_shards"], "added_passages": upd["added_passages"],
            "rebuilt": p["rebuild"], "failed_inputs": failed, "tool": _tool(cfg), "passage_key": p["key"],
            "engine": "tantivy (BM25)", "config": cfg.model_dump(exclude={"section"}),
            "wall_seconds": round(time.perf_counter() - t0, 3), "mlflow_run_id": run.info.run_id,
        }
        mlflow.log_metrics({"documents": manifest["documents"], "passages": manifest["passages"],
                            "new_shards": len(added), "added_passages": upd["added_passages"],
                            "failed_inputs": len(failed), "index_seconds": upd["seconds"]})
        mlflow.log_dict(manifest, "manifest.json")
        publish_markdown("index-summary", "\n".join([
            "# index", f"- {manifest['passages']} passages from {manifest['documents']} documents "
            f"in {len(shards)} shards", f"- this run: {len(added)} new shard(s), {upd['added_passages']} "
            f"passages added, {upd['removed_shards']} shard(s) removed, {len(failed)} failed",
            f"- search tool: top {cfg.top_k}, {cfg.max_tokens} tokens"]))
        write_manifest(out_dir, manifest)  # last: marks the index complete
    logger.info("index: %d passages (%d new) from %d documents → %s", manifest["passages"],
                upd["added_passages"], manifest["documents"], out_dir)
    return manifest


def run_index(data: str, out: str, preset: str | None = "tiny", overrides: dict[str, Any] | None = None,
              mlflow_root: str | None = None) -> dict[str, Any]:
    """Run the `index` flow in this process (a local Prefect API when none is configured)."""
    from flows.runtime import ensure_prefect_api

    ensure_prefect_api()
    return index(data=data, out=out, preset=preset, overrides=overrides, mlflow_root=mlflow_root)


def summary(m: dict[str, Any]) -> list[str]:
    """What `crawl2chat index` prints."""
    lines = [f"index: {m.get('passages', 'n/a')} passages from {m.get('documents', 'n/a')} documents in "
             f"{len(m.get('shards') or [])} shard(s) ({m.get('new_shards', 'n/a')} new this run)"]
    lines += [f"skipped {f.get('source')}: {f.get('error')}" for f in m.get("failed_inputs", [])]
    return lines
