"""The `curate` flow end to end: real Prefect API, real Ray, real MLflow (sqlite).

Inputs: the real sample WARCs in data/samples (Common Crawl excerpts + a wget
crawl), and GENERATED multi-shard corpora built by data/build_warc.py from real
text (for the SIGKILL/resume test and the local HTTP "Common Crawl" mirror).
"""
from __future__ import annotations

import gzip
import http.server
import json
import os
import shutil
import threading
import uuid
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.support import kill_resume as kr

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "data" / "samples"
CURATED_COLUMNS = ["id", "url", "domain", "date", "warc_file", "text", "language", "language_score",
                   "dup_cluster_size", "quality_score", "pii_replacements"]
TASK_NAMES = ("process_warc", "minhash", "lsh", "cluster", "finalize")


# ----------------------------------------------------------------- helpers
def _curated_ids(out: Path) -> list[str]:
    ids: list[str] = []
    for p in sorted((out / "curated").glob("*.parquet")):
        ids += pq.read_table(p, columns=["id"]).column("id").to_pylist()
    return ids


def _mtimes(out: Path) -> dict[str, int]:
    return {str(p.relative_to(out)): p.stat().st_mtime_ns
            for d in ("curated", "work/process", "work/minhash", "work/lsh", "work/cluster")
            for p in (out / d).glob("*") if p.is_file() and p.name != "manifest.json"}


def _task_runs(flow_run_id: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        return client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[uuid.UUID(flow_run_id)])))


def _assert_funnel_consistent(stats: dict) -> None:
    stages = stats["stages"]
    assert [s["stage"] for s in stages][:2] == ["read", "url_filter"]
    assert [s["stage"] for s in stages][-4:] == ["minhash_dedup", "quality_classifier", "line_dedup", "pii"]
    for st in stages:
        assert st["in"] == st["kept"] + sum(st["dropped"].values()), st
    for prev, nxt in zip(stages, stages[1:]):
        assert nxt["in"] == prev["kept"], (prev, nxt)


def _generated_corpus(dest: Path, n_files: int, docs_per_file: int) -> list[Path]:
    """GENERATED WARCs (data/build_warc.py: real text in built pages), one seed per file."""
    from data import build_warc

    paths = []
    for k in range(n_files):
        path = dest / f"part{k:02d}-{build_warc.generated_name(docs_per_file, k)}"
        build_warc.build_warc(path, docs_per_file, seed=k)
        paths.append(path)
    return paths


def _cli_env(prefect_api: str, ray_address: str) -> dict[str, str]:
    """The CLI's environment: the session's Prefect API and Ray cluster, MLflow under --out."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PREFECT_API_URL"] = prefect_api
    env["RAY_ADDRESS"] = ray_address
    env["PYTHONPATH"] = str(REPO)
    return env


# ------------------------------------------------------- shared sample run
@pytest.fixture(scope="module")
def sample_run(prefect_api, ray_cluster, tmp_path_factory):
    """One flow run over every real sample WARC (MLflow on sqlite under the output root), the one the
    two-node Ray test compares with (tests/support/sample_curation.py)."""
    from tests.support.sample_curation import sample_curation

    return sample_curation(tmp_path_factory)


def test_curate_samples_end_to_end(sample_run):
    out, summary = sample_run
    stats = json.loads((out / "stats.json").read_text())
    _assert_funnel_consistent(stats)
    assert stats["shards"] == stats["inputs"] == 4
    assert stats["documents"] == summary["documents"] > 0
    # the Aragonese Wikipedia capture and the non-English pages are dropped by language ID
    lang = next(s for s in stats["stages"] if s["stage"] == "language")
    assert lang["dropped"].get("other_language", 0) > 0

    manifest = json.loads((out / "curated" / "manifest.json").read_text())
    files = sorted((out / "curated").glob("*.parquet"))
    assert sorted(s["path"] for s in manifest["shards"]) == [p.name for p in files]
    assert sum(s["documents"] for s in manifest["shards"]) == stats["documents"]
    ids = []
    for p in files:
        t = pq.read_table(p)
        assert t.column_names[:len(CURATED_COLUMNS)] == CURATED_COLUMNS
        ids += t.column("id").to_pylist()
        if t.num_rows:
            assert set(t.column("language").to_pylist()) == {"en"}
            assert min(t.column("language_score").to_pylist()) >= 0.65
            assert all(u.startswith("http") for u in t.column("url").to_pylist())
    assert len(ids) == len(set(ids)) == stats["documents"]
    assert not list(out.rglob("*.tmp-*"))

    # Prefect: the flow run's table + markdown funnel artifacts and the MLflow link
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    run_id = uuid.UUID(summary["prefect_flow_run_id"])
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id])))
        flow_run = client.read_flow_run(run_id)
    assert flow_run.state.is_completed()
    by_key = {a.key: a for a in arts}
    assert by_key["curate-funnel"].type == "table"
    table = by_key["curate-funnel"].data
    table = json.loads(table) if isinstance(table, str) else table
    assert [r["stage"] for r in table] == [s["stage"] for s in stats["stages"]]
    assert by_key["curate-funnel-chart"].type == "markdown"
    assert "minhash_dedup" in by_key["curate-funnel-chart"].data
    assert summary["mlflow_run_id"] in by_key["mlflow-curate"].description  # the MLflow link
    names = {tr.name.split("-")[0] for tr in _task_runs(summary["prefect_flow_run_id"])}
    assert {"process", "minhash", "lsh", "cluster", "line", "finalize"} <= names

    # MLflow: funnel metrics, config params, tags, output dataset, artifacts
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{out}/mlflow.db")
    run = client.get_run(summary["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == "curate"
    m = run.data.metrics
    assert m["documents"] == stats["documents"]
    for st in stats["stages"]:
        assert m[f"funnel.{st['stage']}.kept"] == st["kept"]
    assert m["dropped.language.other_language"] == lang["dropped"]["other_language"]
    assert run.data.params["minhash_buckets"] == "14" and run.data.params["extractor"] == "trafilatura"
    assert run.data.tags["prefect_flow_run_id"] == summary["prefect_flow_run_id"]
    assert run.data.tags["stage"] == "curate"
    datasets = [d.dataset for d in run.inputs.dataset_inputs]
    assert any(d.name == "curated" and str(out / "curated") in d.source for d in datasets)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"stats.json", "funnel.png"} <= artifacts


def test_rerun_skips_finished_shards(sample_run):
    """A second run of the same inputs: every task is a Prefect cache hit and no output is rewritten."""
    from conf.curate import CurateConfig
    from flows.curate import run_curate
    from tests.support.sample_curation import sample_inputs

    out, first = sample_run
    before = _mtimes(out)
    stats_before = json.loads((out / "stats.json").read_text())
    second = run_curate(sample_inputs(), out, CurateConfig())
    assert _mtimes(out) == before
    stats_after = json.loads((out / "stats.json").read_text())
    assert stats_after["stages"] == stats_before["stages"]
    runs = _task_runs(second["prefect_flow_run_id"])
    assert len(runs) == 4 + 4 + 1 + 1 + 4 + 4 + 1  # one lsh task for the 14 bands; line_pass ×4, line_count
    assert {tr.state.name for tr in runs} == {"Cached"}, sorted((tr.name, tr.state.name) for tr in runs)
    # the one lsh task wrote every band's file (the partitioned run below, one task per band, agrees)
    assert [tr.name for tr in runs if tr.name.startswith("lsh")] == ["lsh-band-000-to-013"]
    assert len(list((out / "work" / "lsh").glob("band_*.npy"))) == 14
    assert (out / "curated" / "manifest.json").exists()


def test_batched_inputs_and_partitioned_dedup_change_nothing(sample_run, tmp_path):
    """inputs_per_task > 1 (batch tasks) and dedup in partitions (Ray tasks inside `cluster`): same output."""
    from collections import Counter

    from conf.curate import CurateConfig
    from flows.curate import run_curate
    from tests.support.sample_curation import sample_inputs

    out, _ = sample_run
    out2 = tmp_path / "batched"
    summary = run_curate(sample_inputs(), out2,
                         CurateConfig(inputs_per_task=3, dedup_docs_per_partition=8))
    assert _curated_ids(out2) == _curated_ids(out)
    one, two = (json.loads((o / "stats.json").read_text()) for o in (out, out2))
    assert two["stages"] == one["stages"] and two["shards"] == one["shards"] == 4
    assert (out2 / "work" / "cluster" / "duplicates.parquet").is_dir()  # one Parquet part per partition
    names = Counter(tr.name.split("-")[0] for tr in
                    _task_runs(summary["prefect_flow_run_id"]))
    n_lsh = len(list((out2 / "work" / "lsh").glob("band_*-part_*.npy")))
    assert n_lsh > 14 and n_lsh % 14 == 0
    assert names == {"process": 2, "finalize": 2, "lsh": n_lsh, "cluster": 1, "line": 4 + 1}


def test_run_once_skips_on_sidecar_without_prefect(tmp_path):
    """The sidecar alone (no Prefect cache) skips finished work, and only for the same key."""
    from tasks.curation.curate import run_once, sidecar_for

    out = tmp_path / "x.bin"
    calls = []

    def compute():
        calls.append(1)
        out.write_bytes(b"data")
        return {"n": len(calls)}

    assert run_once("t", str(out), sidecar_for(out), "k1", compute) == {"n": 1}
    assert run_once("t", str(out), sidecar_for(out), "k1", compute) == {"n": 1}
    assert len(calls) == 1
    assert run_once("t", str(out), sidecar_for(out), "k2", compute) == {"n": 2}  # other config/inputs
    out.write_bytes(b"truncated?")  # output replaced behind our back: size no longer matches
    assert run_once("t", str(out), sidecar_for(out), "k2", compute) == {"n": 3}
    out.unlink()
    assert run_once("t", str(out), sidecar_for(out), "k2", compute) == {"n": 4}


# --------------------------------------------------------- SIGKILL + resume
def _scan_final_files(out: Path) -> None:
    """Every file under a final name opens: no partial file is ever visible."""
    for p in out.rglob("*"):
        if not p.is_file() or ".tmp-" in p.name or p.name.startswith("mlflow.db"):
            continue
        try:
            _open_final(p)
        except Exception as exc:  # noqa: BLE001 — say which file, whatever the reader raised
            raise AssertionError(f"{p} ({p.stat().st_size} bytes) does not open: {exc!r}") from exc


def _open_final(p: Path) -> None:
    if p.suffix == ".parquet":
        pq.read_table(p)
    elif p.suffix == ".npz":
        with np.load(p, allow_pickle=False) as z:
            for k in z.files:
                z[k]
    elif p.suffix == ".npy":
        np.load(p, allow_pickle=False)
    elif p.suffix == ".json" or p.parent.name == "prefect-results":
        json.loads(p.read_bytes())


@pytest.mark.slow
def test_resume_after_sigkill(prefect_api, ray_cluster, tmp_path):
    """`crawl2chat curate` killed with SIGKILL mid-run, then re-run, gives exactly the uninterrupted result."""
    from conf.curate import CurateConfig
    from crawl2chat.cli import main
    from flows.curate import run_curate

    import conf

    corpus = _generated_corpus(tmp_path / "generated", n_files=6, docs_per_file=24)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    cli_args = ["curate", "--input", str(tmp_path / "generated"), "--preset", "tiny", "--limit", "6"]
    cfg = conf.load(CurateConfig, "tiny", {"max_warc_files": 6})  # what the CLI runs with
    ref = run_curate([str(p) for p in corpus], tmp_path / "ref", cfg)
    ref_ids = _curated_ids(tmp_path / "ref")
    assert ref["shards"] == 6 and len(ref_ids) == len(set(ref_ids)) == ref["documents"] > 0
    ref_stats = json.loads((tmp_path / "ref" / "stats.json").read_text())
    # the planted near-duplicates (looked up by reason: the corpus-level stages after MinHash vary)
    assert sum(st["dropped"].get("near_duplicate", 0) for st in ref_stats["stages"]) > 0

    out = tmp_path / "killed"
    # The CLI joins the session's Ray cluster (a second driver): SIGKILL of the driver's process
    # group kills its Ray job's workers mid-task, as on a real cluster. The CLI runs in a child of
    # the kill tests' forkserver (modules preloaded: no fresh interpreter to start).
    env = _cli_env(prefect_api, ray_cluster.get_runtime_context().gcs_address)
    code = kr.run_killed("crawl2chat.cli:main", {"argv": [*cli_args, "--out", str(out)]}, env,
                         lambda: any((out / "work" / "process").glob("*.parquet")))
    assert code == -9, f"the CLI ended (exit {code}) before the kill"
    done_before = sorted((out / "work" / "process").glob("*.parquet"))
    assert done_before, "no shard finished before the deadline"
    assert not (out / "curated" / "manifest.json").exists()
    assert len(list((out / "work" / "process").glob("*.parquet"))) < 6  # really killed half-way
    _scan_final_files(out)
    sidecar = Path(f"{done_before[0]}.stats.json")
    first_mtime = done_before[0].stat().st_mtime_ns

    rc = main([*cli_args, "--out", str(out)])
    assert rc == 0
    ids = _curated_ids(out)
    assert len(ids) == len(set(ids))  # nothing twice
    assert sorted(ids) == sorted(ref_ids)  # nothing lost
    assert json.loads((out / "stats.json").read_text())["stages"] == ref_stats["stages"]
    if sidecar.exists():  # finished before the kill: not redone
        assert done_before[0].stat().st_mtime_ns == first_mtime
    _scan_final_files(out)
    assert not list(out.rglob("*.tmp-*"))


# ------------------------------------------------- https:// (local mirror)
class _Handler(http.server.SimpleHTTPRequestHandler):
    requested: list[str] = []

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        type(self).requested.append(self.path)
        super().do_GET()


def test_crawl_mode_over_http(prefect_api, ray_cluster, tmp_path):
    """--crawl against a 127.0.0.1 mirror of Common Crawl's layout; an unreachable WARC is counted."""
    from crawl2chat.cli import main

    crawl = "CC-MAIN-2099-01"
    root = tmp_path / "mirror"
    seg = f"crawl-data/{crawl}/segments/1700000000000.0/warc"
    (root / seg).mkdir(parents=True)
    listing = [f"{seg}/a.warc.gz", f"{seg}/gone.warc.gz", f"{seg}/b.warc.gz", f"{seg}/c.warc.gz"]
    shutil.copy(SAMPLES / "noncc_wget-2024_dolma_sample-0000.warc.gz", root / listing[0])
    shutil.copy(SAMPLES / "cc-main-2024-22_whirlwind.warc.gz", root / listing[2])
    shutil.copy(SAMPLES / "cc-main-2024-22_whirlwind.warc.gz", root / listing[3])
    (root / f"crawl-data/{crawl}/warc.paths.gz").write_bytes(gzip.compress("\n".join(listing).encode()))

    handler = type("H", (_Handler,), {"requested": []})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), lambda *a, **k: handler(*a, directory=str(root), **k))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    out = tmp_path / "out"
    try:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        rc = main(["curate", "--crawl", crawl, "--warc-files", "3", "--base-url", base, "--out", str(out)])
    finally:
        server.shutdown()
        server.server_close()
    assert rc == 3  # finished, but an input is missing (exit code 3 unless --allow-partial)
    stats = json.loads((out / "stats.json").read_text())
    assert stats["errors"].get("remote_not_found") == 1
    assert stats["failed_inputs"] == {f"{base}/{listing[1]}": "remote_not_found"}
    assert stats["inputs"] == 3 and stats["shards"] == 2
    _assert_funnel_consistent(stats)
    warc_files = set()
    for p in (out / "curated").glob("*.parquet"):
        warc_files |= set(pq.read_table(p, columns=["warc_file"]).column("warc_file").to_pylist())
    assert warc_files == {f"{base}/{listing[0]}"}  # b (Aragonese) keeps nothing
    assert stats["stages"][0]["in"] > 22  # a and b were both read
    assert f"/{listing[3]}" not in handler.requested  # --warc-files 3 stops before c


# ---------------------------------------------------------------- CLI errors
def test_cli_refuses_missing_input(tmp_path, capsys):
    from crawl2chat.cli import main

    out = tmp_path / "out"
    missing = tmp_path / "nope" / "x.warc.gz"
    rc = main(["curate", "--input", str(SAMPLES), "--input", str(missing), "--out", str(out)])
    assert rc == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "does not exist" in err
    assert not out.exists()  # refused before any work
    rc = main(["curate", "--input", str(tmp_path / "*.warc.gz"), "--out", str(out)])
    assert rc == 2 and "matched no files" in capsys.readouterr().err
    rc = main(["curate", "--crawl", "CC-MAIN-2024-10", "--out", str(out)])
    assert rc == 2 and "--warc-files" in capsys.readouterr().err


def test_cli_garbage_inputs_are_refused_by_name(prefect_api, ray_cluster, tmp_path, capsys, monkeypatch):
    """Issue 23, finding 4: files that are no WARC give `not_warc`, and no record at all is exit 2, not 0."""
    from crawl2chat.cli import main

    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "notes.txt").write_text("hello world, this is no WARC file\n")
    (garbage / "blob.bin").write_bytes(bytes(range(256)) * 8)
    out = tmp_path / "out"
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    rc = main(["curate", "--input", str(garbage / "*"), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "no input yielded a single WARC record" in err and "not_warc: 2" in err
    stats = json.loads((out / "stats.json").read_text())
    assert stats["errors"] == {"not_warc": 2}  # named reasons, no internal exception text
    assert "Traceback" not in err
