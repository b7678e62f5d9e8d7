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
from prefect.cache_policies import INPUTS, NO_CACHE, TASK_SOURCE

from core.atomic import write_text

log = logging.getLogger(__name__)

CACHE = INPUTS + TASK_SOURCE
# Shared by every task: cache across runs, results as JSON (small dicts/ints).
_PERSIST = {"cache_policy": CACHE, "persist_result": True, "result_serializer": "json"}


class InputUnavailable(RuntimeError):
    """An input could not be read completely: unreachable, vanished, or cut short by a network fault
    past the retry limits (tasks/curation/remote.py).

    Raised (not counted-and-cached) so that nothing marks the shard done and a
    later run tries again — from the file's last checkpoint when there is one.
    The flow counts it in `failed_inputs` by `reason` and carries on.
    """

    def __init__(self, message: str, reason: str = "unreachable"):
        super().__init__(message)
        self.reason = reason

    def __reduce__(self):  # keep `reason` across Ray/Prefect pickling
        return (type(self), (str(self), self.reason))


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


# No Prefect retries: the reader's own limits (conf.curate remote_*) are the limits.
@task(name="process_warc", **_PERSIST)
def process_warc_task(src: str, out_path: str, cfg: dict[str, Any], key: str) -> dict[str, Any]:
    """One WARC → one filtered (pre-dedup) Parquet shard; returns its funnel.

    Raises InputUnavailable when the input could not be opened at all or ended
    early on a network fault, so the shard is neither cached nor marked done
    and a re-run tries it again (resuming at its checkpoint).
    """
    from tasks.curation.process import process_warc
    from tasks.curation.warc import fault_of

    def compute() -> dict[str, Any]:
        stats = process_warc(src, out_path, _cfg(cfg), key)
        errors = stats.get("errors", {})
        read_in = stats["stages"][0]["in"] if stats.get("stages") else 0
        reason = fault_of(errors)
        if reason is None and read_in == 0:
            reason = next((k for k in ("missing_file", "unreachable") if errors.get(k)), None)
        if reason:
            raise InputUnavailable(f"{src}: not read completely ({reason}; {errors}); a re-run will try "
                                   f"again", reason)
        return stats

    stats = run_once(f"process {src}", out_path, sidecar_for(out_path), key, compute)
    _logger().info("process %s: %d documents kept", src, _kept(stats))
    return stats


@task(name="minhash", **_PERSIST, retries=1, retry_delay_seconds=1)
def minhash_task(parquet_path: str, out_path: str, shard_index: int, cfg: dict[str, Any], key: str) -> int:
    """MinHash signatures of one pre-dedup shard (.npz); returns the number of signed documents."""
    from tasks.curation.minhash import compute_signatures

    return run_once(f"minhash shard {shard_index}", out_path, sidecar_for(out_path), key,
                    lambda: compute_signatures(parquet_path, out_path, shard_index, _cfg(cfg)))


@task(name="lsh", **_PERSIST, retries=1, retry_delay_seconds=1)
def lsh_task(signature_paths: list[str], bands: list[int], out_paths: list[str], keys: list[str], part: int = 0,
             n_parts: int = 1) -> int:
    """Candidate duplicate pairs of LSH bands (one partition of each) across all shards, one output
    file per band; returns the count. Each band is skipped on its own when already done."""
    from tasks.curation.minhash import lsh_band

    return sum(run_once(f"lsh band {band} part {part}/{n_parts}", out, sidecar_for(out), key,
                        lambda band=band, out=out: lsh_band(signature_paths, band, out, part, n_parts))
               for band, out, key in zip(bands, out_paths, keys, strict=True))


@task(name="cluster", **_PERSIST, retries=1, retry_delay_seconds=1)
def cluster_task(pair_paths: list[str], out_path: str, key: str, n_parts: int = 1,
                 signature_paths: list[str] | None = None,
                 jaccard_threshold: float | None = None) -> dict[str, int]:
    """Connected components over all bands' pairs → the duplicate table; returns its counts.

    One partition: `tasks.curation.minhash.cluster` in this worker (a Parquet file).
    More: `tasks.curation.dedup_ray.cluster_partitioned` fans the work out as Ray tasks
    (a directory of Parquet parts at `out_path`; the same rows).
    """
    import shutil

    from tasks.curation.dedup_ray import cluster_partitioned
    from tasks.curation.minhash import cluster

    def compute() -> dict[str, int]:
        if n_parts > 1:
            return cluster_partitioned(pair_paths, out_path, n_parts, f"{out_path}.work", signature_paths,
                                       jaccard_threshold)
        if Path(out_path).is_dir():  # an earlier partitioned run's table
            shutil.rmtree(out_path)
        return cluster(pair_paths, out_path, signature_paths, jaccard_threshold)

    return run_once("cluster", out_path, sidecar_for(out_path), key, compute)


@task(name="line_pass", **_PERSIST, retries=1, retry_delay_seconds=1)
def line_pass_task(parquet_in: str, shard_index: int, dedup_path: str | None, hashes_out: str | None,
                   scores_out: str | None, cfg: dict[str, Any], key: str) -> dict[str, Any]:
    """Line hashes + quality scores of one shard's documents that near-duplicate removal kept."""
    from tasks.curation.line_dedup import shard_pass

    marker = hashes_out or scores_out
    return run_once(f"line/score pass shard {shard_index}", marker, sidecar_for(marker), key,
                    lambda: shard_pass(parquet_in, shard_index, dedup_path, hashes_out, scores_out, _cfg(cfg)))


@task(name="line_count", **_PERSIST, retries=1, retry_delay_seconds=1)
def line_count_task(hash_paths: list[str], out_dir: str, n_parts: int, key: str) -> dict[str, int]:
    """Lines in ≥ 2 documents, counted by hash range: one Ray task per partition (tasks/curation/line_dedup.py)."""
    from tasks.curation.line_dedup import count_duplicates

    marker = str(Path(out_dir) / "done.json")

    def compute() -> dict[str, int]:
        stats = count_duplicates(hash_paths, out_dir, n_parts)
        write_text(marker, json.dumps(stats))
        return stats

    return run_once("line count", marker, sidecar_for(marker), key, compute)


@task(name="finalize", **_PERSIST, retries=1, retry_delay_seconds=1)
def finalize_task(parquet_in: str, shard_index: int, dedup_path: str | None, out_path: str,
                  sidecar: str, cfg: dict[str, Any], key: str, lines: dict[str, Any] | None = None) -> dict[str, Any]:
    """Drop duplicates and low-quality documents, remove duplicated lines, scrub PII → one final
    curated Parquet shard; returns its funnel. `lines`: {lines_dir, line_parts, scores_path,
    quality_cut} from the line/score pass (None: both stages off)."""
    from tasks.curation.finalize import finalize_shard

    stats = run_once(f"finalize shard {shard_index}", out_path, sidecar, key,
                     lambda: finalize_shard(parquet_in, shard_index, dedup_path, out_path, _cfg(cfg), **(lines or {})))
    _logger().info("finalize shard %d: %d documents in %s", shard_index, _kept(stats), out_path)
    return stats


# ------------------------------------------------------- batches (conf: inputs_per_task > 1)
# One Prefect task per WARC costs a task run's orchestration (state changes on
# the API, a Ray task, a result file) per step per input; a crawl of thousands of
# small inputs pays it thousands of times (benchmarks/curate_scale.py). A batch
# task runs the same per-input functions for several inputs in turn. It is not
# cached by Prefect: each input's sidecar (run_once) already makes a re-run skip
# what is done, and a batch that had a failed input must run again next time.
_BATCH = {"cache_policy": NO_CACHE, "persist_result": False}


@task(name="process_batch", **_BATCH)
def process_batch_task(srcs: list[str], out_paths: list[str], cfg: dict[str, Any], keys: list[str],
                       sig_paths: list[str] | None, shard_indices: list[int],
                       sig_keys: list[str]) -> list[dict[str, Any]]:
    """process_warc (+ minhash signatures when `sig_paths`) of several inputs, one after another.

    Returns one outcome per input: {"stats": funnel, "signed": n | None} or
    {"failed": reason, "error": message}; one input's failure does not stop the others.
    """
    out: list[dict[str, Any]] = []
    for j, (src, op, key) in enumerate(zip(srcs, out_paths, keys)):
        try:
            stats = process_warc_task.fn(src, op, cfg, key)
        except InputUnavailable as exc:
            out.append({"failed": exc.reason, "error": str(exc)})
            continue
        except Exception as exc:  # noqa: BLE001 — counted by the flow as process_failed, like a failed task
            _logger().error("process %s failed: %s: %s", src, type(exc).__name__, exc)
            out.append({"failed": "process_failed", "error": f"{type(exc).__name__}: {exc}"})
            continue
        signed = None
        if sig_paths:
            signed = minhash_task.fn(op, sig_paths[j], shard_indices[j], cfg, sig_keys[j])
        out.append({"stats": stats, "signed": signed})
    return out


@task(name="finalize_batch", **_BATCH)
def finalize_batch_task(parquet_ins: list[str], shard_indices: list[int], dedup_path: str | None,
                        out_paths: list[str], sidecars: list[str], cfg: dict[str, Any],
                        keys: list[str], lines: list[dict[str, Any] | None] | None = None) -> list[dict[str, Any]]:
    """finalize of several shards, one after another; returns their funnels in order."""
    lines = lines or [None] * len(parquet_ins)
    return [finalize_task.fn(p, i, dedup_path, o, s, cfg, k, ln)
            for p, i, o, s, k, ln in zip(parquet_ins, shard_indices, out_paths, sidecars, keys, lines)]
