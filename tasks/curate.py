"""Prefect tasks of the `curate` stage: thin wrappers around the stage functions.

Every wrapper takes paths and plain values (never DataFrames or clients, so
Prefect can hash its inputs), returns small JSON-able stats, and is safe to
re-run. Two layers make re-runs skip finished work:

1. Prefect's cache: `cache_policy=INPUTS + TASK_SOURCE`, `persist_result=True`
   (JSON serializer: results are small dicts/ints, and JSON never unpickles).
   The flow points `result_storage` at a folder under the run root (a shared
   local disk, so a Ray worker and the driver see the same results), and passes
   `refresh_cache=True` for a task whose output file is gone, so a deleted
   output is recomputed rather than "restored" from a stale result.
2. A sidecar: after the output is written (atomically, by the stage function)
   the wrapper writes `<sidecar>.stats.json` = {key, output size, stats}. A task
   whose output exists and whose sidecar carries the same key returns the saved
   stats without recomputing: this works without Prefect's result store (cleared
   results, changed task source, a run killed between the output and the result).

The `key` argument is computed by the flow from everything the output depends on
(inputs, upstream keys, config hash), so it is both part of Prefect's INPUTS
hash and the sidecar check.
"""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable

from prefect import task
from prefect.cache_policies import INPUTS, TASK_SOURCE

from crawl2chat.atomic import write_text

log = logging.getLogger(__name__)

CACHE = INPUTS + TASK_SOURCE
# Shared by every task: cache across runs, results as JSON (small dicts/ints).
_PERSIST = {"cache_policy": CACHE, "persist_result": True, "result_serializer": "json"}


class InputUnavailable(RuntimeError):
    """An input WARC could not be opened at all (unreachable URL, vanished file).

    Raised (not counted-and-cached) so that Prefect retries it and a later run
    tries again; the flow counts it in the funnel's `errors` and carries on.
    """


def _logger():
    try:
        from prefect import get_run_logger

        return get_run_logger()
    except Exception:  # outside a Prefect run (plain function call)
        return log


def sidecar_for(out_path: str | os.PathLike) -> str:
    """Default sidecar path of an output file."""
    return f"{out_path}.stats.json"


def load_done(out_path: str, sidecar: str, key: str) -> Any | None:
    """Saved stats if `out_path` exists and its sidecar records `key` and the file's size, else None."""
    try:
        meta = json.loads(Path(sidecar).read_text())
        size = os.path.getsize(out_path)
    except (OSError, ValueError):
        return None
    if meta.get("key") != key or meta.get("size") != size:
        return None
    return meta.get("stats")


def save_done(out_path: str, sidecar: str, key: str, stats: Any) -> None:
    """Record that `out_path` is complete for `key` (temp file + os.replace)."""
    meta = {"key": key, "size": os.path.getsize(out_path), "stats": stats, "output": str(out_path),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    write_text(sidecar, json.dumps(meta, indent=1))


def run_once(what: str, out_path: str, sidecar: str, key: str, compute: Callable[[], Any]) -> Any:
    """Return saved stats when `out_path` is done for `key`; else compute, record and return."""
    logger = _logger()
    saved = load_done(out_path, sidecar, key)
    if saved is not None:
        logger.info("%s: already done (%s), skipped", what, Path(out_path).name)
        return saved
    t0 = time.perf_counter()
    stats = compute()
    save_done(out_path, sidecar, key, stats)
    logger.info("%s: done in %.1fs → %s", what, time.perf_counter() - t0, out_path)
    return stats


def _cfg(cfg: dict[str, Any]):
    from conf.curate import CurateConfig

    return CurateConfig(**cfg)


def _kept(stats: dict[str, Any]) -> int:
    stages = stats.get("stages") or []
    return int(stages[-1]["kept"]) if stages else 0


@task(name="process_warc", **_PERSIST, retries=1, retry_delay_seconds=2,
      retry_condition_fn=lambda task, run, state: _is_unavailable(state))
def process_warc_task(src: str, out_path: str, cfg: dict[str, Any], key: str) -> dict[str, Any]:
    """One WARC → one filtered (pre-dedup) Parquet shard; returns its funnel.

    Raises InputUnavailable when the input could not be opened at all, so the
    shard is neither cached nor marked done and a re-run tries it again.
    """
    from tasks.process import process_warc

    def compute() -> dict[str, Any]:
        stats = process_warc(src, out_path, _cfg(cfg))
        errors = stats.get("errors", {})
        read_in = stats["stages"][0]["in"] if stats.get("stages") else 0
        if read_in == 0 and (errors.get("unreachable") or errors.get("missing_file")):
            raise InputUnavailable(f"{src}: could not be opened ({errors}); a re-run will try again")
        return stats

    stats = run_once(f"process {src}", out_path, sidecar_for(out_path), key, compute)
    _logger().info("process %s: %d documents kept", src, _kept(stats))
    return stats


def _is_unavailable(state) -> bool:
    try:
        state.result()
    except InputUnavailable:
        return True
    except Exception:  # noqa: BLE001 — other failures are bugs: do not retry them blindly
        return False
    return False


@task(name="minhash", **_PERSIST, retries=1, retry_delay_seconds=1)
def minhash_task(parquet_path: str, out_path: str, shard_index: int, cfg: dict[str, Any], key: str) -> int:
    """MinHash signatures of one pre-dedup shard (.npz); returns the number of signed documents."""
    from tasks.minhash import compute_signatures

    return run_once(f"minhash shard {shard_index}", out_path, sidecar_for(out_path), key,
                    lambda: compute_signatures(parquet_path, out_path, shard_index, _cfg(cfg)))


@task(name="lsh", **_PERSIST, retries=1, retry_delay_seconds=1)
def lsh_task(signature_paths: list[str], band: int, out_path: str, key: str) -> int:
    """Candidate duplicate pairs of one LSH band across all shards; returns the pair count."""
    from tasks.minhash import lsh_band

    return run_once(f"lsh band {band}", out_path, sidecar_for(out_path), key,
                    lambda: lsh_band(signature_paths, band, out_path))


@task(name="cluster", **_PERSIST, retries=1, retry_delay_seconds=1)
def cluster_task(pair_paths: list[str], out_path: str, key: str) -> dict[str, int]:
    """Connected components over all bands' pairs → the duplicate table; returns its counts."""
    from tasks.minhash import cluster

    return run_once("cluster", out_path, sidecar_for(out_path), key, lambda: cluster(pair_paths, out_path))


@task(name="finalize", **_PERSIST, retries=1, retry_delay_seconds=1)
def finalize_task(parquet_in: str, shard_index: int, dedup_path: str | None, out_path: str,
                  sidecar: str, cfg: dict[str, Any], key: str) -> dict[str, Any]:
    """Drop duplicates, scrub PII → one final curated Parquet shard; returns its funnel."""
    from tasks.finalize import finalize_shard

    stats = run_once(f"finalize shard {shard_index}", out_path, sidecar, key,
                     lambda: finalize_shard(parquet_in, shard_index, dedup_path, out_path, _cfg(cfg)))
    _logger().info("finalize shard %d: %d documents in %s", shard_index, _kept(stats), out_path)
    return stats
