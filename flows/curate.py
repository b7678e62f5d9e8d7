"""The `curate` flow: WARC files → clean, deduplicated, PII-free Parquet shards.

The DAG (every box is a Prefect task; the work runs on Ray):

    process_warc ×N ─▶ minhash ×N ─▶ lsh ≤bands·P ─▶ cluster ×1 ─▶ line_pass ×N ─▶ line_count ×1 ─▶ finalize ×N
    (filter one WARC)   (signatures)   (pairs)        (components)  (line hashes,   (lines in ≥ 2    (drop dups and
                                                                     quality scores) docs, P Ray tasks) low quality, lines, PII)

Scale knobs (conf/curate.py; none changes the output): `inputs_per_task` puts
several inputs in one task (process_batch = process + minhash, finalize_batch),
so thousands of small inputs do not cost thousands of task runs per step;
past `dedup_docs_per_partition` documents each band is bucketed in P partitions
and `cluster` runs P Ray tasks per round (tasks/curation/dedup_ray.py), so no worker
holds every document or every pair.

Layout under the output root `OUT`:

    OUT/work/process/<shard>.parquet     pre-dedup shards (+ .stats.json sidecars)
    OUT/work/minhash/<shard>.npz         signatures
    OUT/work/lsh/band_NNN.npy            candidate pairs per band (band_NNN-part_PPPP-of-MMMM.npy if P > 1)
    OUT/work/cluster/duplicates.parquet  duplicate clusters (a directory of Parquet parts if P > 1)
    OUT/work/lines/<shard>.{hashes,scores}.npy  line hashes, quality scores (tasks/curation/line_dedup.py)
    OUT/work/lines/duplicates/           duplicated line hashes by hash range
    OUT/work/finalize/*.stats.json       sidecars of the final shards
    OUT/work/prefect-results/            Prefect's persisted task results (cache)
    OUT/curated/<shard>.parquet          FINAL shards (schema in docs/CONTRACTS.md)
    OUT/stats.json                       the merged funnel
    OUT/curated/manifest.json            written last: the output is complete

Each task's output file is written atomically (temp name + os.replace), so a
run killed at any point leaves no partial file under a final name, and a
re-run redoes exactly the unfinished tasks (see tasks/curation/curate.py).
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.futures import as_completed

from conf.curate import CurateConfig
from core.atomic import write_json
from flows import runtime
from flows.results import AtomicResultStorage, result_storage
from tasks.curation.curate import (
    InputUnavailable, cluster_task, finalize_batch_task, finalize_task, line_count_task, line_pass_task, lsh_task,
    minhash_task, process_batch_task, process_warc_task,
)
from tasks.curation.funnel import funnel_chart, funnel_plot, funnel_table, merge_stats
from tasks.progress import StageProgress
from tasks.curation.remote import RetryPolicy, remote_stat

log = logging.getLogger(__name__)

# Fields that change how the run is executed, not what it produces.
_COMPUTE_ONLY = {"ray_address", "max_warc_files", "dedup_docs_per_partition", "inputs_per_task",
                 "line_dedup_hashes_per_partition", "lsh_band_docs_per_task"}
# How a file is read (retries, timeouts, checkpoints): the tasks need them, but
# they do not change the output, so they stay out of the cache keys.
_READ_POLICY = {"remote_retries", "remote_backoff_s", "remote_backoff_max_s", "remote_read_timeout_s",
                "remote_connect_timeout_s", "checkpoint_every_records"}


def config_hash(cfg: CurateConfig) -> str:
    """Hash of the config fields that affect the output (cache/sidecar keys)."""
    blob = json.dumps(cfg.model_dump(mode="json", exclude=_COMPUTE_ONLY | _READ_POLICY), sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def shard_name(index: int, src: str) -> str:
    """Stable, readable shard name: index, input base name, short hash of the full input."""
    base = re.sub(r"\.(warc|wet|arc)(\.wet)?(\.gz)?$", "", src.rstrip("/").rsplit("/", 1)[-1])
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", base)[:40] or "input"
    return f"{index:05d}-{base}-{hashlib.sha1(src.encode()).hexdigest()[:6]}"


def input_fingerprint(src: str, policy: RetryPolicy | None = None) -> list[Any]:
    """What identifies an input's content cheaply: (path, size, mtime) locally, (URL, size, ETag) remotely.

    The size/ETag come from a HEAD request (with the reader's retries): a remote
    object that changed is a new input, not a cache hit.
    """
    local = src[len("file://"):] if src.startswith("file://") else src
    if "://" not in local:
        try:
            st = os.stat(local)
            return [os.path.abspath(local), st.st_size, st.st_mtime_ns]
        except OSError:
            return [local]
    meta = remote_stat(src, policy)
    return [src, meta.get("size"), meta.get("etag")] if meta else [src]


def input_fingerprints(srcs: list[str], policy: RetryPolicy | None = None) -> list[list[Any]]:
    """`input_fingerprint` of every input; remote ones looked up 16 at a time."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(lambda s: input_fingerprint(s, policy), srcs))


def _opts(task_obj, name: str, out_path: str | Path, results: AtomicResultStorage):
    """Per-call options: readable run name, shared result storage, refresh if the output is gone."""
    return task_obj.with_options(task_run_name=name, result_storage=results,
                                 refresh_cache=not Path(out_path).exists())


def _funnel_metrics(stats: dict[str, Any]) -> dict[str, float]:
    def clean(s: str) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", s)

    metrics: dict[str, float] = {}
    for st in stats.get("stages", []):
        name = clean(st["stage"])
        metrics[f"funnel.{name}.in"] = st["in"]
        metrics[f"funnel.{name}.kept"] = st["kept"]
        for reason, n in st.get("dropped", {}).items():
            metrics[f"dropped.{name}.{clean(reason)}"] = n
        if "lines_removed" in st:  # line_dedup: lines taken out of documents that stay
            metrics[f"funnel.{name}.lines_removed"] = st["lines_removed"]
    for kind, n in stats.get("errors", {}).items():
        metrics[f"errors.{clean(kind)}"] = n
    for stage, sec in stats.get("seconds", {}).items():  # wall time per stage (tasks/curation/steps.py)
        metrics[f"seconds.{clean(stage)}"] = sec
    for what, n in stats.get("retried", {}).items():
        metrics[f"retried.{clean(what)}"] = n
    return metrics


def _clean_stale(curated: Path, keep: set[str], work: Path) -> None:
    """Remove final shards this run did not produce (an earlier run's inputs) and dead temp files."""
    for p in curated.glob("*.parquet"):
        if p.name not in keep:
            log.warning("removing %s: not an output of this run's inputs", p)
            p.unlink()
    for d in (curated, *[p for p in work.rglob("*") if p.is_dir()], work):
        for p in d.glob("*.tmp-*"):
            try:
                p.unlink()
            except OSError:
                pass


def _report(root: Path, srcs: list[str], names: list[str], ok: list[int], failed: dict[int, str],
            proc_stats: dict[int, Any], fin_stats: dict[int, Any], cfgd: dict[str, Any], chash: str,
            t_start: float) -> tuple[int, float, dict[str, Any]]:
    """Write stats.json, publish the funnel to Prefect and MLflow; return the manifest for the flow to write last."""
    import mlflow

    curated = root / "curated"
    per_shard = [merge_stats([proc_stats[i], fin_stats[i]]) for i in ok]
    per_shard += [{"stages": [], "errors": {reason: 1}} for reason in failed.values()]
    stats = merge_stats(per_shard)
    n_docs = stats["stages"][-1]["kept"] if stats["stages"] else 0
    _clean_stale(curated, {f"{names[i]}.parquet" for i in ok}, root / "work")
    pii: dict[str, int] = {}
    for fs in fin_stats.values():
        for st in fs.get("stages", []):
            for kind, n in (st.get("replaced") or {}).items():
                pii[kind] = pii.get(kind, 0) + int(n)
    wall = time.perf_counter() - t_start
    failed_inputs = {srcs[i]: r for i, r in sorted(failed.items())}
    failed_by_reason: dict[str, int] = {}
    for r in failed.values():
        failed_by_reason[r] = failed_by_reason.get(r, 0) + 1
    network: dict[str, int] = {}  # faults overcome by retries/resumes, summed over the complete inputs
    for i in ok:
        for k, n in (proc_stats[i].get("network") or {}).items():
            network[k] = network.get(k, 0) + int(n)
    write_json(root / "stats.json", {
        **stats, "pii_replaced": pii, "documents": n_docs, "shards": len(ok), "inputs": len(srcs),
        "failed_inputs": failed_inputs, "failed_by_reason": dict(sorted(failed_by_reason.items())),
        "network": dict(sorted(network.items())), "config_hash": chash, "wall_seconds": round(wall, 2)})
    shards = [{"path": f"{names[i]}.parquet", "source": srcs[i],
               "documents": fin_stats[i]["stages"][-1]["kept"] if fin_stats[i].get("stages") else 0}
              for i in ok]
    # A manifest with `partial` true exists only when the loss was accepted (allow_partial, see
    # `curate`); the pipeline reports it on every later run that skips this output.
    manifest = {"stage": "curate", "documents": n_docs, "shards": shards, "config": cfgd, "config_hash": chash,
                "inputs": len(srcs), "failed_inputs": failed_inputs, "failed_input_count": len(failed_inputs),
                "partial": bool(failed_inputs), "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                # WARC records read as documents (the first funnel stage's input), and why files ended early
                "records_read": stats["stages"][0]["in"] if stats["stages"] else 0,
                "read_errors": dict(sorted((stats.get("errors") or {}).items()))}

    rows = [{"stage": st["stage"], "in": st["in"], "kept": st["kept"], "dropped": sum(st["dropped"].values()),
             "kept_pct": round(100.0 * st["kept"] / st["in"], 1) if st["in"] else None,
             "reasons": ", ".join(f"{k}: {v}" for k, v in st["dropped"].items()),
             "seconds": stats.get("seconds", {}).get(st["stage"]),
             "docs_per_s": (round(st["in"] / stats["seconds"][st["stage"]], 1)
                            if stats.get("seconds", {}).get(st["stage"]) else None)}
            for st in stats["stages"]]
    runtime.publish_table("curate-funnel", rows, description=f"curate funnel: {n_docs} documents kept")
    runtime.publish_markdown("curate-funnel-chart",
                             f"# curate funnel\n\n{funnel_table(stats)}\n\n{funnel_chart(stats)}\n\n"
                             f"Output: `{curated}` ({len(ok)} shards, {n_docs} documents)",
                             description="documents kept after each curation stage")
    mlflow.log_metrics({**_funnel_metrics(stats), **{f"pii.{k}": v for k, v in pii.items()},
                        **{f"failed_inputs.{k}": v for k, v in failed_by_reason.items()},
                        **{f"network.{k}": v for k, v in network.items()},
                        "documents": n_docs, "shards": len(ok), "failed_inputs": len(failed),
                        "wall_seconds": wall})
    if failed_inputs:  # which inputs, by reason, next to the numbers
        mlflow.log_dict({"failed_inputs": failed_inputs, "failed_by_reason": failed_by_reason},
                        "failed_inputs.json")
    mlflow.log_artifact(str(root / "stats.json"))
    png = funnel_plot(stats, root / "funnel.png")
    if png is not None:
        mlflow.log_artifact(str(png))
    runtime.log_dataset(curated, name="curated", context="output", digest=chash)
    return n_docs, wall, manifest


class _Resolved:
    """A finished value where the flow expects a future (`.result()`): a batch's minhash count."""

    def __init__(self, value: Any):
        self.value = value

    def result(self) -> Any:
        return self.value


def _process_in_batches(cfg: CurateConfig, srcs: list[str], names: list[str], ppaths: list[str],
                        pkeys: list[str], task_cfg: dict[str, Any], chash: str, work: Path,
                        proc_stats: dict[int, Any], failed: dict[int, str], mfuts: dict[int, Any],
                        progress: StageProgress | None = None) -> None:
    """process (+ minhash) in tasks of `cfg.inputs_per_task` inputs; fills proc_stats, failed, mfuts."""
    logger = get_run_logger()
    k = cfg.inputs_per_task
    futs = {}
    for lo in range(0, len(srcs), k):
        idx = list(range(lo, min(lo + k, len(srcs))))
        sig = [str(work / "minhash" / f"{names[i]}.npz") for i in idx] if cfg.dedup else None
        name = f"process-{names[idx[0]]}" + (f"-and-{len(idx) - 1}-more" if len(idx) > 1 else "")
        f = process_batch_task.with_options(task_run_name=name).submit(
            [srcs[i] for i in idx], [ppaths[i] for i in idx], task_cfg, [pkeys[i] for i in idx], sig, idx,
            [_key("minhash", pkeys[i], chash) for i in idx])
        futs[f] = idx
    n_done = 0
    for fut in as_completed(list(futs)):
        for i, res in zip(futs[fut], fut.result()):
            n_done += 1
            if "failed" in res:
                failed[i] = res["failed"]
                logger.error("input %s failed: %s; counted as %s, a re-run retries it", srcs[i], res["error"],
                             res["failed"])
                continue
            proc_stats[i] = res["stats"]
            if cfg.dedup:
                mfuts[i] = _Resolved(res["signed"])
        kept = sum(s["stages"][-1]["kept"] for s in proc_stats.values() if s.get("stages"))
        if progress is not None:  # a line every 10 % of the files (not one per file: there may be thousands)
            progress.update(n_done, documents=kept)


def _finalize_in_batches(k: int, names: list[str], fargs: dict[int, tuple]) -> dict[int, Any]:
    """finalize in tasks of `k` shards; returns {shard index: funnel}."""
    ok = sorted(fargs)
    futs = []
    for lo in range(0, len(ok), k):
        idx = ok[lo:lo + k]
        cols = list(zip(*(fargs[i] for i in idx)))  # (parquet_in, index, dedup, out, sidecar, cfg, key, lines)
        name = f"finalize-{names[idx[0]]}" + (f"-and-{len(idx) - 1}-more" if len(idx) > 1 else "")
        futs.append((idx, finalize_batch_task.with_options(task_run_name=name).submit(
            list(cols[0]), idx, cols[2][0], list(cols[3]), list(cols[4]), cols[5][0], list(cols[6]), list(cols[7]))))
    return {i: st for idx, f in futs for i, st in zip(idx, f.result())}


def _line_pass(cfg: CurateConfig, ok: list[int], names: list[str], ppaths: list[str], pkeys: list[str],
               dedup_path: str | None, ckey: str, chash: str, task_cfg: dict[str, Any], work: Path,
               results: AtomicResultStorage) -> tuple[dict[int, dict[str, Any]], str]:
    """line_pass ×N (hashes + scores), the classifier's cut, line_count ×1; returns finalize's `lines`
    argument per shard and a key for everything they depend on."""
    from tasks.curation.line_dedup import n_partitions
    from tasks.curation.quality_classifier import share_cutoff

    if not ok or not (cfg.line_dedup or cfg.quality_classifier):
        return {}, "no-line-pass"
    logger = get_run_logger()
    lines = work / "lines"
    lines.mkdir(parents=True, exist_ok=True)
    outs, futs = {}, {}
    for i in ok:
        hp = str(lines / f"{names[i]}.hashes.npy") if cfg.line_dedup else None
        sp = str(lines / f"{names[i]}.scores.npy") if cfg.quality_classifier else None
        k = _key("line_pass", pkeys[i], ckey, chash)
        outs[i] = (hp, sp, k)
        futs[i] = _opts(line_pass_task, f"line-pass-{names[i]}", hp or sp, results).submit(
            ppaths[i], i, dedup_path, hp, sp, task_cfg, k)
    passes = {i: f.result() for i, f in futs.items()}
    cut = None
    if cfg.quality_classifier:
        cut = (share_cutoff([passes[i]["histogram"] for i in ok], cfg.quality_keep_share)
               if cfg.quality_keep_share else cfg.quality_threshold)
        logger.info("quality classifier: documents scoring under %.3f are dropped", cut)
    ldir, n_parts, lkey = None, 1, "no-line-dedup"
    if cfg.line_dedup:
        total = sum(passes[i]["hashes"] for i in ok)
        n_parts = n_partitions(total, cfg.line_dedup_hashes_per_partition)
        ldir = str(lines / "duplicates")
        lkey = _key("line_count", [outs[i][2] for i in ok], n_parts)
        lc = _opts(line_count_task, "line-count", str(Path(ldir) / "done.json"), results).submit(
            [outs[i][0] for i in ok], ldir, n_parts, lkey).result()
        logger.info("line dedup: %d line hashes, %d in two or more documents (%d partition(s))", total,
                    lc["duplicate_lines"], n_parts)
    args = {i: {"lines_dir": ldir, "line_parts": n_parts, "scores_path": outs[i][1], "quality_cut": cut}
            for i in ok}
    return args, _key(lkey, [outs[i][2] for i in ok], cut)


@flow(name="curate")
def curate(inputs: list[str], out: str, config: dict[str, Any] | None = None,
           allow_partial: bool = False) -> dict[str, Any]:
    """Curate WARC inputs (already expanded: paths or URLs) into `out`/curated/*.parquet.

    allow_partial: when inputs were lost (unreachable, or cut short past the
        retry limits), still write `curated/manifest.json` (marked `partial`, with
        the lost inputs). Without it a partial output gets no manifest: nothing
        downstream (the pipeline's skip check, tokenize) takes it for complete, and
        the next run retries the lost inputs. Either way the result says `partial`.
    """
    logger = get_run_logger()
    t_start = time.perf_counter()
    cfg = CurateConfig(**(config or {}))
    cfgd = cfg.model_dump(mode="json")
    # Tasks get only the fields that shape the output, so a new --ray-address or
    # --limit does not change their Prefect cache keys.
    task_cfg = cfg.model_dump(mode="json", exclude=_COMPUTE_ONLY)
    root = Path(out).resolve()
    work, curated = root / "work", root / "curated"
    results = work / "prefect-results"
    for d in (work / "process", work / "minhash", work / "lsh", work / "cluster", work / "finalize",
              curated, results):
        d.mkdir(parents=True, exist_ok=True)
    store = result_storage(results)
    # This run rewrites the output: it is not complete until the manifest is back.
    (curated / "manifest.json").unlink(missing_ok=True)
    srcs = list(inputs)[: cfg.max_warc_files] if cfg.max_warc_files else list(inputs)
    if not srcs:
        raise ValueError("no inputs to curate")
    chash = config_hash(cfg)
    names = [shard_name(i, s) for i, s in enumerate(srcs)]
    logger.info("curate: %d input(s) → %s (config %s)", len(srcs), root, chash)

    params = {**cfgd, "n_inputs": len(srcs), "inputs": srcs[:20], "config_hash": chash}
    with runtime.mlflow_run("curate", root, params=params) as mlrun:
        # 1. process_warc ×N — then minhash for each shard as soon as it is filtered
        fingerprints = input_fingerprints(srcs, RetryPolicy.from_config(cfg))
        pkeys = [_key("process", s, fp, chash) for s, fp in zip(srcs, fingerprints)]
        ppaths = [str(work / "process" / f"{n}.parquet") for n in names]
        pfuts = {}
        if cfg.inputs_per_task == 1:  # one task per input; else batches (_process_in_batches, below)
            for i, (src, pp) in enumerate(zip(srcs, ppaths)):
                f = _opts(process_warc_task, f"process-{names[i]}", pp, store).submit(src, pp, task_cfg, pkeys[i])
                pfuts[f] = i
        proc_stats: dict[int, dict[str, Any]] = {}
        failed: dict[int, str] = {}
        mfuts: dict[int, Any] = {}
        # the run's log and a progress artifact: processing the inputs is most of curate's time
        progress = StageProgress("curate", len(srcs), unit="WARC file")
        for n_done, fut in enumerate(as_completed(list(pfuts)), 1):
            i = pfuts[fut]
            try:
                proc_stats[i] = fut.result()
            except Exception as exc:  # noqa: BLE001 — one input's failure must not stop the run
                cause = getattr(exc, "cause", None) or exc  # Ray wraps task exceptions
                if isinstance(exc, InputUnavailable) or isinstance(cause, InputUnavailable):
                    reason = getattr(cause, "reason", None) or getattr(exc, "reason", None) or (
                        "unreachable" if "://" in srcs[i] else "missing_file")
                else:
                    reason = "process_failed"
                failed[i] = reason
                logger.error("input %s failed: %s: %s; counted as %s, a re-run retries it",
                             srcs[i], type(cause).__name__, cause, reason)
                continue
            kept = sum(s["stages"][-1]["kept"] for s in proc_stats.values() if s.get("stages"))
            progress.update(n_done, documents=kept)
            if cfg.dedup:
                mp = str(work / "minhash" / f"{names[i]}.npz")
                mfuts[i] = _opts(minhash_task, f"minhash-{names[i]}", mp, store).submit(
                    ppaths[i], mp, i, task_cfg, _key("minhash", pkeys[i], chash))
        if cfg.inputs_per_task > 1:
            _process_in_batches(cfg, srcs, names, ppaths, pkeys, task_cfg, chash, work, proc_stats, failed, mfuts,
                                progress)
        ok = sorted(proc_stats)

        # 2. MinHash dedup across all shards: lsh per band, then one cluster task
        dedup_path: str | None = None
        ckey = "no-dedup"
        if cfg.dedup and ok:
            sig_paths = [str(work / "minhash" / f"{names[i]}.npz") for i in ok]
            mkeys = [_key("minhash", pkeys[i], chash) for i in ok]
            n_signed = sum(int(mfuts[i].result()) for i in ok)
            # Past dedup_docs_per_partition documents no worker sees a whole band (tasks/curation/dedup_ray.py).
            n_parts = max(1, math.ceil(n_signed / cfg.dedup_docs_per_partition))
            logger.info("minhash signatures done for %d shards (%d documents; %d partition(s) per band)",
                        len(ok), n_signed, n_parts)
            lkeys, lpaths, lfuts = [], [], []
            # a small corpus: several bands per task (cfg.lsh_band_docs_per_task); partitioned: one each
            per_task = 1 if n_parts > 1 else max(1, cfg.lsh_band_docs_per_task // max(1, n_signed))
            for lo in range(0, cfg.minhash_buckets, per_task):
                bands = list(range(lo, min(lo + per_task, cfg.minhash_buckets)))
                for part in range(n_parts):
                    if n_parts == 1:
                        lp = [str(work / "lsh" / f"band_{b:03d}.npy") for b in bands]
                        lk = [_key("lsh", b, mkeys, chash) for b in bands]
                        name = f"lsh-band-{bands[0]:03d}" + (f"-to-{bands[-1]:03d}" if len(bands) > 1 else "")
                    else:
                        lp = [str(work / "lsh" / f"band_{b:03d}-part_{part:04d}-of-{n_parts:04d}.npy") for b in bands]
                        lk = [_key("lsh", b, part, n_parts, mkeys, chash) for b in bands]
                        name = f"lsh-band-{bands[0]:03d}-part-{part:04d}"
                    lkeys += lk
                    lpaths += lp
                    missing = next((p for p in lp if not Path(p).exists()), lp[0])  # refresh if any is gone
                    lfuts.append(_opts(lsh_task, name, missing, store).submit(sig_paths, bands, lp, lk, part,
                                                                               n_parts))
            n_pairs = sum(f.result() for f in lfuts)
            logger.info("lsh: %d candidate pairs over %d band partitions in %d task(s)", n_pairs, len(lpaths),
                        len(lfuts))
            dedup_path = str(work / "cluster" / "duplicates.parquet")  # a directory of parts if n_parts > 1
            ckey = _key("cluster", lkeys)
            cstats = _opts(cluster_task, "cluster", dedup_path, store).submit(
                lpaths, dedup_path, ckey, n_parts, sig_paths, cfg.dedup_jaccard_threshold).result()
            logger.info("cluster: %s", cstats)

        # 3. corpus-level quality classifier + exact line dedup: per shard, line hashes and scores
        #    of the documents dedup kept; then lines in ≥ 2 documents, counted by hash range
        lines_args, lkey = _line_pass(cfg, ok, names, ppaths, pkeys, dedup_path, ckey, chash, task_cfg, work,
                                      store)

        # 4. finalize ×N: drop duplicates and low-quality documents, remove lines, scrub PII
        ffuts = {}
        fargs = {i: (ppaths[i], i, dedup_path, str(curated / f"{names[i]}.parquet"),
                     str(work / "finalize" / f"{names[i]}.parquet.stats.json"), task_cfg,
                     _key("finalize", pkeys[i], ckey, lkey, chash), lines_args.get(i)) for i in ok}
        if cfg.inputs_per_task == 1:
            for i in ok:
                ffuts[i] = _opts(finalize_task, f"finalize-{names[i]}", fargs[i][3], store).submit(*fargs[i])
            fin_stats = {i: f.result() for i, f in ffuts.items()}
        else:
            fin_stats = _finalize_in_batches(cfg.inputs_per_task, names, fargs)
        logger.info("finalized %d shards", len(fin_stats))

        # 5. funnel (stats.json), Prefect artifacts, MLflow
        n_docs, wall, manifest = _report(root, srcs, names, ok, failed, proc_stats, fin_stats, cfgd, chash, t_start)
        progress.finish()
        logger.info("curate done: %d documents in %d shards, %.1fs (MLflow run %s)", n_docs, len(ok), wall,
                    mlrun.info.run_id)
    if failed and not allow_partial:
        logger.warning("curate: PARTIAL: %d of %d input(s) not read completely; no manifest written (the output "
                       "is not complete): re-run to retry them, or pass allow_partial to accept", len(failed),
                       len(srcs))
    else:  # last, after the MLflow run closed: the output is complete (or its loss accepted)
        write_json(curated / "manifest.json", manifest)
    return {**runtime.flow_run_info(), "out": str(root), "curated": str(curated), "documents": n_docs,
            "shards": len(ok), "inputs": len(srcs), "failed_inputs": len(failed), "partial": bool(failed),
            "records_read": manifest.get("records_read", 0), "read_errors": manifest.get("read_errors", {}),
            "manifest_written": not failed or allow_partial, "mlflow_run_id": mlrun.info.run_id,
            "failed": {srcs[i]: r for i, r in sorted(failed.items())}, "wall_seconds": round(wall, 2)}


def run_curate(inputs: list[str], out: str | Path, cfg: CurateConfig, num_cpus: int | None = None,
               allow_partial: bool = False) -> dict[str, Any]:
    """Run the curate flow on Ray: Prefect API first (Ray workers must inherit its URL), then Ray."""
    runtime.ensure_prefect_api()
    runner = runtime.ray_runner(cfg.ray_address, num_cpus)
    return curate.with_options(task_runner=runner)(
        inputs=list(inputs), out=str(out), config=cfg.model_dump(mode="json"), allow_partial=allow_partial)
