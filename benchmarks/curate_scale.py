"""How `curate` scales: orchestration overhead, memory per worker, dedup growth — measured in one run.

Three parts (pick with the first argument; `all` runs each at its default size):

- ``overhead``: the curate flow over N small GENERATED inputs (WARCs of 2 real
  response records each, cut from data/samples), on local Ray with a real
  Prefect server (`prefect server start`, its own PREFECT_HOME). Reference in the
  same run: the same stage functions called one after another in this process,
  no Prefect, no Ray. Prints wall time, orchestration overhead per input, Prefect
  task runs, Prefect database size and the driver's peak RSS, for each
  `--inputs-per-task` value. `--screenshot PNG` saves headless Chromium's view of
  the (last) flow run's page in the Prefect UI.
- ``memory``: peak RSS of one worker process running `process_warc` on a
  GENERATED WARC of each `--sizes-mb` (real text streamed into pages, written to
  a temp dir and deleted after). Reference: the smallest size.
- ``lsh-io``: the P partition tasks of one LSH band over GENERATED signature
  files (35,000 documents a file), on the old file layout (each task reads the
  whole band and filters) and on today's (bands sorted by partition hash: each
  task reads its slice). Prints bytes read (the kernel's rchar), seconds and
  peak memory per task, and old/new ratios; the pairs must be identical.
- ``dedup``: LSH buckets + clustering on GENERATED MinHash signatures with
  planted duplicate clusters (numpy only: no text), per `--docs` count, single
  node (`tasks.curation.minhash.lsh_band` + `cluster`) against the partitioned path
  (`tasks.curation.dedup_ray`, run serially here so peak memory is one partition's). Prints
  seconds and peak RSS per stage and the growth exponent between sizes.

    .venv/bin/python benchmarks/curate_scale.py overhead --inputs 200 --inputs-per-task 1 8
    .venv/bin/python benchmarks/curate_scale.py memory --sizes-mb 50 1024
    .venv/bin/python benchmarks/curate_scale.py dedup --docs 1000000 10000000 --partitions 16
    .venv/bin/python benchmarks/curate_scale.py lsh-io --docs 1000000 --partitions 8

Timings are wall seconds on a shared machine: compare ratios within one run,
and read `load` (the 1-minute load average, printed with every figure).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
SAMPLES = REPO / "data" / "samples"
CHROMIUM = os.environ.get("CRAWL2CHAT_CHROMIUM", "/usr/bin/chromium")


def load() -> str:
    return "load %.2f" % os.getloadavg()[0]


def rss_peak_mb() -> float:
    """This process's peak resident memory (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------- small inputs
def _response_records() -> list[bytes]:
    """Raw gzip members of every `response` record of the real sample WARCs."""
    from warcio.archiveiterator import ArchiveIterator

    out = []
    for p in sorted(SAMPLES.glob("*.warc.gz")):
        data = p.read_bytes()
        with open(p, "rb") as f:
            it = ArchiveIterator(f)
            for rec in it:
                if rec.rec_type == "response":
                    off, length = it.get_record_offset(), it.get_record_length()
                    out.append(data[off:off + length])
    return out


def write_small_inputs(dest: Path, n: int, records_per_input: int = 2) -> list[str]:
    """N GENERATED small WARCs, each `records_per_input` real response records (cut cyclically)."""
    recs = _response_records()
    dest.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(n):
        p = dest / f"generated_cut_{k:05d}.warc.gz"
        with open(p, "wb") as f:
            for j in range(records_per_input):
                f.write(recs[(k * records_per_input + j) % len(recs)])
        paths.append(str(p))
    return paths


# ------------------------------------------------------------ Prefect server
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_prefect_server(home: Path) -> tuple[subprocess.Popen, str]:
    """A real `prefect server start` (API + UI) on 127.0.0.1 with its own PREFECT_HOME."""
    import urllib.request

    port = _free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_API_URL": "", "PREFECT_UI_API_URL": f"http://127.0.0.1:{port}/api"}  # the UI's API
    log = open(home / "server.log", "wb")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "prefect"), "server", "start",
                             "--host", "127.0.0.1", "--port", str(port)], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url + "/api/health", timeout=2).read()
            return proc, url
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"prefect server exited; see {home / 'server.log'}")
            time.sleep(1)
    proc.terminate()
    raise RuntimeError(f"prefect server did not answer in 180 s; see {home / 'server.log'}")


def _task_run_count(api: str, flow_run_id: str) -> int:
    """Task runs of one flow run (the API's /task_runs/count)."""
    import httpx

    r = httpx.post(f"{api}/task_runs/count", json={"flow_runs": {"id": {"any_": [flow_run_id]}}}, timeout=60)
    r.raise_for_status()
    return int(r.json())


def screenshot(url: str, png: Path) -> None:
    """Headless Chromium's view of `url` (the Prefect UI's flow-run page), saved as a PNG."""
    from playwright.sync_api import sync_playwright

    args = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        t0 = time.perf_counter()
        page.goto(url, wait_until="networkidle", timeout=120_000)
        page.wait_for_timeout(3000)
        png.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(png))
        print(f"  screenshot of {url} → {png} (page loaded in {time.perf_counter() - t0:.1f}s)")
        browser.close()


def plain_reference(inputs: list[str], out: Path) -> float:
    """The stage functions one after another in this process (no Prefect, no Ray): seconds."""
    from conf.curate import CurateConfig
    from tasks.curation.finalize import finalize_shard
    from tasks.curation.minhash import cluster, compute_signatures, lsh_band
    from tasks.curation.process import process_warc

    cfg = CurateConfig()
    for d in ("process", "minhash", "lsh", "curated"):
        (out / d).mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    sigs = []
    for i, src in enumerate(inputs):
        process_warc(src, str(out / "process" / f"{i}.parquet"), cfg)
        sigs.append(str(out / "minhash" / f"{i}.npz"))
        compute_signatures(str(out / "process" / f"{i}.parquet"), sigs[-1], i, cfg)
    pairs = []
    for b in range(cfg.minhash_buckets):
        pairs.append(str(out / "lsh" / f"{b}.npy"))
        lsh_band(sigs, b, pairs[-1])
    cluster(pairs, str(out / "dup.parquet"))
    for i in range(len(inputs)):
        finalize_shard(str(out / "process" / f"{i}.parquet"), i, str(out / "dup.parquet"),
                       str(out / "curated" / f"{i}.parquet"), cfg)
    return time.perf_counter() - t0


def _flow_child(inputs_dir: str, out: str, k: int, runner: str = "ray") -> None:
    """One curate flow run in this (fresh) process: the driver whose peak RSS is reported.

    runner "threads": the same flow with Prefect's thread pool (2 threads) instead
    of Ray — for a machine so loaded that Ray's 30 s start-up check fails.
    """
    import logging

    logging.getLogger().setLevel(logging.WARNING)
    from conf.curate import CurateConfig
    from flows.curate import curate, run_curate

    inputs = sorted(str(p) for p in Path(inputs_dir).glob("*.warc.gz"))
    rss0 = rss_peak_mb()
    t0 = time.perf_counter()
    cfg = CurateConfig(inputs_per_task=k)
    if runner == "threads":
        from prefect.task_runners import ThreadPoolTaskRunner

        summary = curate.with_options(task_runner=ThreadPoolTaskRunner(max_workers=2))(
            inputs=inputs, out=out, config=cfg.model_dump(mode="json"))
    else:
        summary = run_curate(inputs, out, cfg, num_cpus=2)
    print("RESULT " + json.dumps({"wall_s": time.perf_counter() - t0, "rss_mb": rss_peak_mb(), "rss0_mb": rss0,
                                  "documents": summary["documents"], "failed": summary["failed_inputs"],
                                  "flow_run_id": summary["prefect_flow_run_id"],
                                  "flow_run_url": summary.get("prefect_flow_run_url")}))


def _plain_child(inputs_dir: str, out: str) -> None:
    inputs = sorted(str(p) for p in Path(inputs_dir).glob("*.warc.gz"))
    print("RESULT " + json.dumps({"wall_s": plain_reference(inputs, Path(out)), "rss_mb": rss_peak_mb()}))


def _ray_head_child() -> None:
    """Start a local Ray instance (retrying: on a loaded machine its 30 s start-up check can fail), serve it."""
    import ray
    import ray._private.services as services

    from flows.runtime import ray_init_kwargs

    # Ray gives its raylet 30 s (hard-coded) to register; a machine at load 30 needs
    # more. Only this benchmark helper waits longer: make the lookup patient.
    lookup = services.get_node

    def patient_get_node(*a, **k):
        t0 = time.monotonic()
        while True:
            try:
                return lookup(*a, **k)
            except RuntimeError:
                if time.monotonic() - t0 > 150:  # a raylet that died does not come back
                    raise
                time.sleep(1)

    services.get_node = patient_get_node
    for attempt in range(6):
        try:
            ray.init(**ray_init_kwargs(None, num_cpus=2))
            break
        except Exception as exc:  # noqa: BLE001 — "node timed out during startup" under load
            print(f"ray start attempt {attempt + 1} failed: {exc}", file=sys.stderr, flush=True)
            ray.shutdown()
            time.sleep(5)
    else:
        raise SystemExit("could not start Ray")
    print("RAY " + ray.get_runtime_context().gcs_address, flush=True)
    while True:
        time.sleep(3600)


def ray_token_env(home: Path) -> dict[str, str]:
    """Ray token auth (on by default in Ray ≥ 2.5x) with a token of this run: the head and every
    driver that connects to it (the flow children) must read the same one."""
    from crawl2chat.services import ensure_ray_token

    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(ensure_ray_token(home / "ray_auth_token"))}


def start_ray_head(auth: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """A local Ray instance in a helper process, shared by the flow runs (RAY_ADDRESS)."""
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "_ray_head"], stdout=subprocess.PIPE,
                            text=True, env={**os.environ, **auth, "PYTHONPATH": str(REPO),
                                            "RAY_worker_register_timeout_seconds": "600",
                                            "RAY_agent_register_timeout_ms": "600000"})
    for line in proc.stdout:
        if line.startswith("RAY "):
            return proc, line.split()[1]
    raise RuntimeError("the Ray helper process exited without starting Ray")


def _child(args: list[str], env: dict[str, str]) -> dict:
    r = subprocess.run([sys.executable, str(Path(__file__).resolve()), *args], env=env, capture_output=True,
                       text=True)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
    if r.returncode != 0 or not lines:
        raise RuntimeError(f"{args[0]} failed (exit {r.returncode}):\n{r.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def run_overhead(n_inputs: int, per_task: list[int], png: Path | None, keep: bool = False,
                 plain: bool = True, runner: str = "ray", records_per_input: int = 2) -> list[dict]:
    """The flow over `n_inputs` GENERATED inputs for each batching value, against the plain reference."""
    tmp = Path(tempfile.mkdtemp(prefix="c2c-scale-"))
    home = tmp / "prefect-home"
    home.mkdir()
    write_small_inputs(tmp / "inputs", n_inputs, records_per_input)
    print(f"overhead: {n_inputs} GENERATED inputs ({records_per_input} real response record(s) each) in "
          f"{tmp / 'inputs'}; runner {runner}; {load()}")
    auth = ray_token_env(home) if runner == "ray" else {}
    ray_proc, ray_addr = start_ray_head(auth) if runner == "ray" else (None, "")  # start-up is not overhead
    try:
        proc, url = start_prefect_server(home)
    except BaseException:
        if ray_proc is not None:
            ray_proc.terminate()
        raise
    print(f"  Prefect server {url}, Ray {ray_addr or '-'}; {load()}")
    env = {**os.environ, "PREFECT_API_URL": url + "/api", "PREFECT_HOME": str(home), "PREFECT_UI_URL": url,
           "RAY_ADDRESS": ray_addr, **auth,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "WARNING",
           "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(REPO)}
    env.pop("MLFLOW_TRACKING_URI", None)
    rows = []
    try:
        t_plain = None
        if plain:
            r = _child(["_plain", str(tmp / "inputs"), str(tmp / "plain")], env)
            t_plain = r["wall_s"]
            print(f"  plain (stage functions in one process, 1 core): {t_plain:.1f}s = "
                  f"{1000 * t_plain / n_inputs:.0f} ms/input, peak RSS {r['rss_mb']:.0f} MB; {load()}")
        for k in per_task:
            db0 = sum(p.stat().st_size for p in home.glob("prefect.db*"))
            r = _child(["_flow", str(tmp / "inputs"), str(tmp / f"flow-{k}"), str(k), runner], env)
            n_tasks = _task_run_count(url + "/api", r["flow_run_id"])
            db = sum(p.stat().st_size for p in home.glob("prefect.db*"))
            row = {"inputs": n_inputs, "inputs_per_task": k, "wall_s": round(r["wall_s"], 1),
                   "ms_per_input": round(1000 * r["wall_s"] / n_inputs), "task_runs": n_tasks,
                   "prefect_db_mb": round(db / 2**20, 1), "prefect_db_growth_mb": round((db - db0) / 2**20, 1),
                   "driver_peak_rss_mb": round(r["rss_mb"]), "documents": r["documents"],
                   "failed_inputs": r["failed"], "runner": runner, "load": round(os.getloadavg()[0], 2),
                   "flow_run_url": r["flow_run_url"]}
            if t_plain is not None:
                row["plain_s"] = round(t_plain, 1)
                row["overhead_ms_per_input"] = round(1000 * (r["wall_s"] - t_plain) / n_inputs)
            rows.append(row)
            print("  " + json.dumps(row))
        if png is not None and rows and rows[-1]["flow_run_url"]:
            screenshot(rows[-1]["flow_run_url"], png)
    finally:
        for pr in (ray_proc, proc):
            if pr is None:
                continue
            pr.terminate()
            try:
                pr.wait(60)
            except subprocess.TimeoutExpired:
                pr.kill()
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return rows


# ------------------------------------------------------------------ dedup growth
BANDS, ROWS = 14, 8
DOCS_PER_SHARD = 35_000  # one Common Crawl WARC file


def planted_band(n: int, band: int, dup_frac: float = 0.2, cluster_size: int = 4, seed: int = 0):
    """GENERATED band rows [n, ROWS] of n documents with planted duplicate clusters, and their keys.

    Random 64-bit min-hashes (two random rows never collide); a fraction
    `dup_frac` of the documents sits in clusters of `cluster_size` (members
    spread over all shards by a fixed permutation), each member copying the
    cluster's first document's row in about half of the bands (at least band
    0), so clusters join through different bands. Keys are shard << 32 | row
    with 35,000 documents a shard.
    """
    import numpy as np

    from tasks.curation.minhash import _mix64

    rng = np.random.default_rng([seed, band])
    mat = rng.integers(0, 2**63, size=(n, ROWS), dtype=np.uint64)
    n_dup = int(n * dup_frac) // cluster_size * cluster_size
    pos = np.random.default_rng(seed).permutation(n)[:n_dup]  # same members in every band
    members = pos.reshape(-1, cluster_size)
    base, rest = members[:, :1], members[:, 1:]
    copies = _mix64(rest.astype(np.uint64) * np.uint64(BANDS) + np.uint64(band)) >> np.uint64(63) == 0
    if band == 0:
        copies[:] = True
    src = np.broadcast_to(base, rest.shape)[copies]
    mat[rest[copies]] = mat[src]
    idx = np.arange(n, dtype=np.uint64)
    keys = ((idx // np.uint64(DOCS_PER_SHARD)) << np.uint64(32)) | (idx % np.uint64(DOCS_PER_SHARD))
    return keys, mat, pos


def _traced(fn, *args):
    """(result, seconds, peak MB allocated during the call: numpy buffers + Python objects)."""
    import tracemalloc

    tracemalloc.start()
    tracemalloc.reset_peak()
    t0 = time.perf_counter()
    out = fn(*args)
    dt = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return out, dt, peak


def signature_rate(n_docs: int = 4000) -> float:
    """Documents/second of `tasks.curation.minhash.signatures` on real text (C4 + Wikipedia in data/text), one core."""
    from tasks.curation.minhash import signatures

    c4 = [json.loads(x)["text"] for x in (REPO / "data" / "text" / "llamafactory_c4_demo.jsonl").read_text().splitlines()]
    docs = (c4 * (n_docs // len(c4) + 1))[:n_docs]
    signatures(docs[:50])  # warm the regex/tables
    t0 = time.perf_counter()
    signatures(docs)
    return len(docs) / (time.perf_counter() - t0)


def run_dedup(sizes: list[int], n_parts: int, rate_docs: int = 4000) -> list[dict]:
    """LSH + clustering on GENERATED signatures: single node against `n_parts` partitions, per size."""
    import numpy as np

    from tasks.curation.dedup_ray import cluster_partitioned
    from tasks.curation.minhash import bucket_pairs, band_partition, cluster

    rate = signature_rate(rate_docs)
    print(f"dedup: minhash signatures on real text: {rate:.0f} docs/s on one core ({load()})")
    rows = []
    warm = [5000]  # first calls pay imports (pyarrow.parquet, ...): not measured
    for n in warm + sizes:
        tmp = Path(tempfile.mkdtemp(prefix="c2c-dedup-"))
        try:
            (keys, mat, _), t_gen, _ = _traced(planted_band, n, 0)
            held = (keys.nbytes + mat.nbytes) / 2**20  # the band's input, loaded before the call
            # LSH, single node: one band over all n documents (each band costs the same).
            _, t_lsh, m_lsh = _traced(bucket_pairs, keys, mat)
            m_lsh += held
            # LSH, partitioned: the largest partition of the same band.
            part = band_partition(mat, n_parts)
            big = int(np.bincount(part, minlength=n_parts).argmax())
            sel = part == big
            k_p, m_p = keys[sel], mat[sel]
            del part, sel
            _, t_lshp, m_lshp = _traced(bucket_pairs, k_p, m_p)
            m_lshp += (k_p.nbytes + m_p.nbytes) / 2**20
            del keys, mat, k_p, m_p
            # Pairs of all 14 bands: random rows never collide, so the planted
            # documents alone give every band's pairs (as bucket_pairs on all n would).
            pair_paths, n_pairs = [], 0
            for b in range(BANDS):
                k, m, pos = planted_band(n, b)
                pr = bucket_pairs(k[pos], m[pos])
                del k, m
                pair_paths.append(str(tmp / f"band_{b:03d}.npy"))
                np.save(pair_paths[-1], pr)
                n_pairs += len(pr)
            cs, t_cl, m_cl = _traced(cluster, pair_paths, str(tmp / "single.parquet"))
            serial = lambda fn, calls: [fn(*c) for c in calls]  # noqa: E731 — one partition at a time: its peak
            cp, t_clp, m_clp = _traced(cluster_partitioned, pair_paths, str(tmp / "dist.parquet"), n_parts,
                                       str(tmp / "cc"), None, None, serial)
            same = {k: cp[k] for k in cs} == cs
            row = {"docs": n, "partitions": n_parts, "pairs": n_pairs, "clusters": cs["clusters"],
                   "lsh_band_s": round(t_lsh, 2), "lsh_band_peak_mb": round(m_lsh),
                   "lsh_band_part_s": round(t_lshp, 2), "lsh_band_part_peak_mb": round(m_lshp),
                   "cluster_s": round(t_cl, 2), "cluster_peak_mb": round(m_cl),
                   "cluster_partitioned_s": round(t_clp, 2), "cluster_partitioned_peak_mb": round(m_clp),
                   "cluster_rounds": cp["rounds"], "same_clusters": same,
                   "minhash_s_one_core": round(n / rate, 1), "generate_s": round(t_gen, 1),
                   "load": round(os.getloadavg()[0], 2)}
            if warm:
                warm.clear()
                continue
            rows.append(row)
            print("  " + json.dumps(row))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if len(rows) >= 2:
        a, b = rows[0], rows[-1]
        f = math.log(b["docs"] / a["docs"])
        for k in ("lsh_band_s", "lsh_band_peak_mb", "cluster_s", "cluster_peak_mb", "cluster_partitioned_peak_mb"):
            if a[k] > 0 and b[k] > 0:
                print(f"  growth of {k}: ×{b[k] / a[k]:.1f} for ×{b['docs'] / a['docs']:.0f} documents "
                      f"(exponent {math.log(b[k] / a[k]) / f:.2f})")
            else:  # small sizes on a fast machine: below the timer's or the allocator's resolution
                print(f"  growth of {k}: n/a ({a[k]} → {b[k]}: too small to measure; use larger --docs)")
        per_doc = b["lsh_band_peak_mb"] * 2**20 / b["docs"]
        print(f"  LSH memory per document and band: {per_doc:.0f} B; single node, 24 GB (20 GB usable, "
              f"one band at a time): {20 * 2**30 / per_doc / 1e6:.0f} M documents")
        project(b, rate, per_doc)
    return rows


def project(r: dict, rate: float, lsh_bytes_per_doc: float, n: float = 3e9, worker_gb: float = 4.0) -> None:
    """On paper: one snapshot (~3 B documents) on a Ray cluster, scaled linearly from the measured size."""
    scale = n / r["docs"]
    parts = math.ceil(n * lsh_bytes_per_doc / (worker_gb * 2**30))
    cc_parts = max(1, math.ceil(r["cluster_partitioned_peak_mb"] * r["partitions"] * scale / (worker_gb * 1024)))
    minhash_h = n / rate / 3600
    lsh_h = BANDS * r["lsh_band_s"] * scale / 3600
    cc_h = r["cluster_partitioned_s"] * scale / 3600
    print(f"  projection for {n:.0e} documents ({scale:.0f}× the largest run, linear): minhash {minhash_h:.0f} "
          f"core-h; LSH {lsh_h:.0f} core-h in {BANDS}×{parts} band partitions of ≤{worker_gb:.0f} GB; "
          f"clustering {cc_h:.0f} core-h in ≥{cc_parts} partitions of ≤{worker_gb:.0f} GB "
          f"(rounds grow ~log n); total ≈ {minhash_h + lsh_h + cc_h:.0f} core-h "
          f"(≈ {(minhash_h + lsh_h + cc_h) / 256:.1f} h on 256 cores)")


# ------------------------------------------------------------------ partitioned LSH: bytes read
def rchar() -> int:
    """Bytes this process has read through read()/pread() so far (the kernel's count, /proc/self/io)."""
    with open("/proc/self/io") as f:
        return next(int(ln.split()[1]) for ln in f if ln.startswith("rchar:"))


def write_signature_corpus(dest: Path, n: int, n_bands: int, layout: str) -> tuple[list[str], int]:
    """GENERATED signature files of `n` documents, 35,000 a file (one CC WARC), `n_bands` planted bands each.

    layout "sorted": today's compute_signatures format (`signature_arrays`: each
    band sorted by its partition hash); "legacy": the format before (bands in
    row order), which lsh_band reads whole and filters — the old path.
    Returns (paths, bytes on disk).
    """
    import numpy as np

    from tasks.curation.minhash import signature_arrays, write_signatures

    dest.mkdir(parents=True, exist_ok=True)
    sig = np.empty((n, n_bands * ROWS), np.uint64)
    for b in range(n_bands):
        sig[:, b * ROWS:(b + 1) * ROWS] = planted_band(n, b)[1]
    paths, size = [], 0
    for s, lo in enumerate(range(0, n, DOCS_PER_SHARD)):
        part = sig[lo:lo + DOCS_PER_SHARD]
        rows = np.arange(len(part), dtype=np.int64)
        p = dest / f"generated_sig_{s:05d}.npz"
        if layout == "sorted":
            write_signatures(str(p), signature_arrays(s, len(part), rows, part, n_bands, ROWS))
        else:
            np.savez(p, shard=np.asarray(s, np.int64), n_docs=np.asarray(len(part), np.int64), rows=rows,
                     **{f"band_{b:03d}": np.ascontiguousarray(part[:, b * ROWS:(b + 1) * ROWS])
                        for b in range(n_bands)})
        paths.append(str(p))
        size += p.stat().st_size
    return paths, size


def run_lsh_io(n: int, n_parts: int, n_bands: int) -> dict:
    """The P partition tasks of one band on the old layout (each reads the whole band) and the sorted one."""
    import numpy as np

    from tasks.curation.minhash import lsh_band

    tmp = Path(tempfile.mkdtemp(prefix="c2c-lshio-"))
    try:
        files = {}
        for layout in ("legacy", "sorted"):
            t0 = time.perf_counter()
            files[layout] = write_signature_corpus(tmp / layout, n, n_bands, layout)
            print(f"lsh-io: {n} GENERATED documents in {len(files[layout][0])} {layout} signature files "
                  f"({files[layout][1] / 2**20:.0f} MB, {n_bands} bands) in {time.perf_counter() - t0:.0f}s; {load()}")
        band_mb = n * ROWS * 8 / 2**20
        res, pairs = {}, {}
        for layout in ("legacy", "sorted"):
            paths = files[layout][0]
            lsh_band(paths[:1], 0, str(tmp / "warm.npy"), 0, n_parts)  # imports, first-touch: not measured
            tasks, got = [], []
            for p in range(n_parts):
                out = tmp / f"{layout}-{p}.npy"
                r0 = rchar()
                (_, dt, peak) = _traced(lsh_band, paths, 0, str(out), p, n_parts)
                tasks.append({"read_mb": (rchar() - r0) / 2**20, "s": dt, "peak_mb": peak})
                got.append(np.load(out))
            pairs[layout] = np.concatenate(got)
            res[layout] = {"tasks": n_parts, "read_mb_per_task_max": round(max(t["read_mb"] for t in tasks), 2),
                           "read_mb_total": round(sum(t["read_mb"] for t in tasks), 1),
                           "s_total": round(sum(t["s"] for t in tasks), 2),
                           "s_per_task_max": round(max(t["s"] for t in tasks), 2),
                           "peak_mb_per_task_max": round(max(t["peak_mb"] for t in tasks), 1),
                           "load": round(os.getloadavg()[0], 2)}
            print(f"  {layout:<6} {json.dumps(res[layout])}")
        same = sorted(map(tuple, pairs["legacy"].tolist())) == sorted(map(tuple, pairs["sorted"].tolist()))
        old, new = res["legacy"], res["sorted"]
        print(f"  one band = {band_mb:.1f} MB of band rows; pairs {len(pairs['sorted'])}, identical on both "
              f"layouts: {str(same).lower()}")
        for k in ("read_mb_total", "read_mb_per_task_max", "s_total", "peak_mb_per_task_max"):
            print(f"  old/new {k}: {old[k] / new[k]:.1f}× ({old[k]} → {new[k]})" if new[k] else
                  f"  old/new {k}: n/a ({old[k]} → {new[k]})")
        return {"docs": n, "partitions": n_parts, "legacy": old, "sorted": new, "same_pairs": same}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------ memory per worker
def _worker_peak(src: str) -> dict:
    """process_warc on `src` in a fresh process; its peak RSS (MB) and seconds."""
    code = ("import json,resource,sys,time;sys.path.insert(0,%r);from conf.curate import CurateConfig;"
            "from tasks.curation.process import process_warc;t=time.perf_counter();"
            "s=process_warc(sys.argv[1],sys.argv[2],CurateConfig());"
            "print(json.dumps({'rss_mb':resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024,"
            "'s':time.perf_counter()-t,'read':s['stages'][0]['in'],'kept':s['stages'][-1]['kept']}))") % str(REPO)
    out = Path(tempfile.mkdtemp(prefix="c2c-mem-"))
    try:
        r = subprocess.run([sys.executable, "-c", code, src, str(out / "x.parquet")], capture_output=True,
                           text=True, check=True)
        return json.loads(r.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(out, ignore_errors=True)


def generated_warc_of_size(path: Path, mb: int, core_pages: int = 100) -> dict:
    """A GENERATED WARC of about `mb` MB, streamed record by record (never held in memory).

    The first `core_pages` records are data/build_warc.py's mix (real text in
    built pages: clean, near-duplicate, PII, blocked, other languages, junk), the
    same in every size. The rest, up to `mb`, is filler that the reader still
    decompresses and parses but that is cheap to filter, so a 1 GB file finishes
    on a loaded 2-core machine: a pool of 64 pages of ~1 MB of real text each on
    UT1 adult domains (dropped by the URL filter before extraction), compressed
    once and written again and again; and, every ~100 MB, one 12 MB page (over
    max_body_bytes: skipped by its declared length).
    """
    import io
    import random
    from datetime import datetime, timezone

    sys.path.insert(0, str(REPO / "data"))
    try:
        import build_warc
    finally:
        sys.path.remove(str(REPO / "data"))
    core = path.with_name("core.warc.gz")
    build_warc.build_warc(core, core_pages, seed=0)
    english = build_warc.load_english()
    adult = build_warc._load_list(REPO / "data" / "blocklists" / "ut1_adult_domains_every100th_from_datatrove.txt")
    rng = random.Random(1)

    def record(url: str, n_chars: int) -> bytes:
        parts, size = [], 0
        while size < n_chars:
            paras = english[rng.randrange(len(english))]
            parts += paras
            size += sum(len(x) for x in paras)
        buf = io.BytesIO()
        build_warc._Writer(buf, rng, datetime(2024, 5, 21, tzinfo=timezone.utc)).record(
            url, build_warc.wrap_html(parts[0][:70], parts, rng).encode(), "text/html; charset=utf-8", "text/html")
        return buf.getvalue()

    pool = [record(f"https://{rng.choice(adult)}/p{k}.html", 1_000_000) for k in range(64)]
    big = record("https://www.big-generated.org/huge.html", 12_000_000)
    target = mb * 2**20
    n_filler = n_big = 0
    with open(path, "wb") as f:
        with open(core, "rb") as c:
            shutil.copyfileobj(c, f)
        core.unlink()
        next_big = 100 * 2**20
        while f.tell() < target:
            if f.tell() >= next_big:
                f.write(big)
                n_big += 1
                next_big += 100 * 2**20
                continue
            f.write(pool[n_filler % len(pool)])
            n_filler += 1
    return {"core_pages": core_pages, "filler_pages": n_filler, "over_size_pages": n_big}


def run_memory(sizes_mb: list[int]) -> list[dict]:
    rows = []
    for mb in sizes_mb:
        tmp = Path(tempfile.mkdtemp(prefix="c2c-bigwarc-", dir="/tmp"))
        try:
            p = tmp / f"generated_{mb}mb.warc.gz"
            t0 = time.perf_counter()
            made = generated_warc_of_size(p, mb)
            t_gen = time.perf_counter() - t0
            r = _worker_peak(str(p))
            row = {"warc_mb": round(p.stat().st_size / 2**20), **made, "worker_peak_rss_mb": round(r["rss_mb"]),
                   "seconds": round(r["s"], 1), "read": r["read"], "kept": r["kept"], "generate_s": round(t_gen),
                   "load": round(os.getloadavg()[0], 2)}
            rows.append(row)
            print("  " + json.dumps(row))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if len(rows) >= 2:
        print(f"  peak RSS ratio largest/smallest: {rows[-1]['worker_peak_rss_mb'] / rows[0]['worker_peak_rss_mb']:.2f} "
              f"for ×{rows[-1]['warc_mb'] / rows[0]['warc_mb']:.0f} input size")
    return rows


def build_parser() -> argparse.ArgumentParser:
    """The command line (tests/test_docs_commands.py parses the documented commands with it)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="part", required=True)
    o = sub.add_parser("overhead", help="flow orchestration overhead over many small inputs")
    o.add_argument("--inputs", type=int, default=100)
    o.add_argument("--inputs-per-task", type=int, nargs="+", default=[1, 10])
    o.add_argument("--screenshot", type=Path, default=None, help="PNG of the last flow run's Prefect UI page")
    o.add_argument("--keep", action="store_true", help="keep the temp dir (inputs, outputs, Prefect db)")
    o.add_argument("--no-plain", action="store_true", help="skip the in-process reference run")
    o.add_argument("--runner", choices=["ray", "threads"], default="ray",
                   help="threads: Prefect's thread pool instead of Ray (when Ray cannot start under load)")
    o.add_argument("--records-per-input", type=int, default=2)
    d = sub.add_parser("dedup", help="LSH + clustering growth on GENERATED signatures")
    d.add_argument("--docs", type=int, nargs="+", default=[100_000, 1_000_000])
    d.add_argument("--partitions", type=int, default=8)
    d.add_argument("--rate-docs", type=int, default=4000, help="real documents for the MinHash speed figure")
    io = sub.add_parser("lsh-io", help="bytes read by the partition tasks of one LSH band: old layout vs sorted")
    io.add_argument("--docs", type=int, default=1_000_000)
    io.add_argument("--partitions", type=int, default=8)
    io.add_argument("--bands", type=int, default=4, help="bands per GENERATED signature file")
    m = sub.add_parser("memory", help="peak RSS of one worker on GENERATED WARCs of these sizes")
    m.add_argument("--sizes-mb", type=int, nargs="+", default=[20, 200])
    sub.add_parser("all", help="each part at its default size")
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_flow":  # child processes of `overhead`
        _flow_child(argv[1], argv[2], int(argv[3]), argv[4])
        return 0
    if argv and argv[0] == "_ray_head":
        _ray_head_child()
        return 0
    if argv and argv[0] == "_plain":
        _plain_child(argv[1], argv[2])
        return 0
    args = ap.parse_args(argv)
    print(f"curate_scale: {os.cpu_count()} CPUs, {load()}")
    if args.part in ("overhead", "all"):
        a = args if args.part == "overhead" else o.parse_args([])
        run_overhead(a.inputs, a.inputs_per_task, a.screenshot, a.keep, not a.no_plain, a.runner,
                     a.records_per_input)
    if args.part in ("dedup", "all"):
        a = args if args.part == "dedup" else d.parse_args([])
        run_dedup(a.docs, a.partitions, a.rate_docs)
    if args.part in ("lsh-io", "all"):
        a = args if args.part == "lsh-io" else io.parse_args([])
        run_lsh_io(a.docs, a.partitions, a.bands)
    if args.part in ("memory", "all"):
        a = args if args.part == "memory" else m.parse_args([])
        run_memory(a.sizes_mb)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
