"""A real two-node Ray cluster on loopback runs the curate flow.

`ray start --head` (1 CPU) and `ray start --address` (1 CPU, its own temp dir)
make a two-node cluster; a curation driven from a fresh process runs on it: its
tasks land on both nodes (seen in each node's worker logs) and the curated
output is identical to the same curation on one node (the session's local Ray,
run in-process, once for this test and the curate flow module: no second cluster
start, no second driver process). Only the processes started here are stopped
afterwards (no `ray stop`).
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from crawl2chat import services

REPO = Path(__file__).resolve().parents[2]

DRIVER = r"""
import json, sys
from conf.curate import CurateConfig
from flows.curate import run_curate
cfg = CurateConfig(**{**json.loads(sys.argv[4]), "ray_address": sys.argv[3]})
summary = run_curate(json.loads(sys.argv[1]), sys.argv[2], cfg)
print("SUMMARY " + json.dumps(summary))
"""


def _free_port(span: int = 3) -> int:
    """p..p+span-1 free on loopback, above Ray's worker port range (10002-19999)."""
    import random
    import socket

    for _ in range(200):
        p = random.randrange(20000, 30000 - span)
        busy = False
        for q in range(p, p + span):
            with socket.socket() as s:
                busy = busy or s.connect_ex(("127.0.0.1", q)) == 0
        if not busy:
            return p
    raise RuntimeError("no free port")


def _ray_start(args: list[str], env: dict[str, str], log: Path, pgids: list[int], attempts: int = 3) -> None:
    """Run `ray start ...` in its own session, recording its process group in `pgids`.

    `ray start` gives a new raylet a fixed 30 s to register with the GCS; on a
    loaded 2-core machine that can pass, so a failed start is cleaned up and retried.
    """
    for attempt in range(1, attempts + 1):
        with open(log, "ab") as fh:
            p = subprocess.Popen([str(Path(sys.executable).parent / "ray"), "start", *args], stdout=fh,
                                 stderr=subprocess.STDOUT, env=env, start_new_session=True)
        pgids.append(p.pid)
        rc = p.wait(timeout=240)
        if rc == 0:
            return
        services.stop_processes(services.group_processes({p.pid}), grace=5)
        pgids.remove(p.pid)
        if attempt == attempts:
            raise RuntimeError(f"ray start {' '.join(args)} failed ({rc}) {attempts}x:\n{log.read_text()[-3000:]}")


def _curate(inputs: list[str], out: Path, address: str, env: dict[str, str], cfg: dict) -> dict:
    r = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(inputs), str(out), address, json.dumps(cfg)],
                       capture_output=True, text=True, env=env, timeout=900, cwd=REPO)
    assert r.returncode == 0, (r.stdout + r.stderr)[-5000:]
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("SUMMARY ")][-1]
    return json.loads(line[len("SUMMARY "):])


def _content(out: Path) -> dict:
    """Curated rows (sorted by id) and funnel of one output folder, paths removed."""
    import pyarrow.parquet as pq

    rows = []
    for f in sorted((out / "curated").glob("*.parquet")):
        rows += pq.read_table(f).to_pylist()
    rows.sort(key=lambda r: r["id"])
    stats = json.loads((out / "stats.json").read_text())
    # times differ between runs; every count must not ("retried": extraction retries are load-dependent)
    funnel = {k: v for k, v in stats.items() if k not in ("wall_seconds", "seconds", "retried")}
    names = sorted(p.name for p in (out / "curated").glob("*.parquet"))
    return {"rows": rows, "funnel": funnel, "shards": names}


def _tasks_on_node(temp_dir: Path) -> list[str]:
    """Names of the tasks Ray ran on one node, from its workers' log markers (`:task_name:<name>`)."""
    names: list[str] = []
    for f in temp_dir.glob("session_*/logs/worker-*.out"):
        for line in f.read_text(errors="replace").splitlines():
            if line.startswith(":task_name:"):
                names.append(line[len(":task_name:"):].strip())
    return names


@pytest.mark.slow
@pytest.mark.timeout(1800)  # real services on 2 cores; the suite-wide 900 s is too tight here
def test_curate_on_two_node_ray_cluster_matches_single_node(prefect_api, ray_cluster, tmp_path, tmp_path_factory):
    from conf.curate import CurateConfig
    from tests.support.sample_curation import sample_curation, sample_inputs

    inputs = sample_inputs()
    assert len(inputs) >= 3
    cfg = CurateConfig().model_dump(mode="json")  # the shared single-node run's config
    port = _free_port()
    # Ray's sockets must fit in 107 bytes: short temp dirs, one per node.
    tag = hashlib.sha1(str(tmp_path).encode()).hexdigest()[:8]
    head_tmp = Path(tempfile.gettempdir()) / f"c2c-2n-{tag}-h"
    worker_tmp = Path(tempfile.gettempdir()) / f"c2c-2n-{tag}-w"
    token = services.ensure_ray_token(tmp_path / "auth_token")
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token),
           "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(REPO), "PREFECT_API_URL": prefect_api}
    env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)  # the session's local Ray sets it; it forbids joining nodes
    env.pop("RAY_ADDRESS", None)
    common = ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--disable-usage-stats",
              "--object-store-memory", str(300 << 20)]
    address = f"127.0.0.1:{port}"
    pgids: list[int] = []
    try:
        _ray_start(["--head", "--port", str(port), "--temp-dir", str(head_tmp), "--include-dashboard=false",
                    "--ray-client-server-port", str(port + 1), "--dashboard-agent-listen-port", str(port + 2),
                    *common], env, tmp_path / "head.log", pgids)
        # `ray start --address` exits 0 only once the new raylet has registered with the head's GCS.
        _ray_start(["--address", address, "--temp-dir", str(worker_tmp), *common], env, tmp_path / "worker.log",
                   pgids)
        from flows import runtime

        runtime.tracking_uri(tmp_path / "double")  # its MLflow store, copied here: the driver skips the migrations
        double = _curate(inputs, tmp_path / "double", address, env, cfg)

        on_worker, on_head = _tasks_on_node(worker_tmp), _tasks_on_node(head_tmp)
        assert on_worker, f"no task ran on the second node ({worker_tmp})"
        assert on_head, f"no task ran on the head node ({head_tmp})"

        # The same curation on one node: the session's local Ray, driven in-process, run once for
        # this test and the curate flow module (tests/support/sample_curation.py).
        single_out, single = sample_curation(tmp_path_factory)
        assert len(ray_cluster.nodes()) == 1
        assert single["documents"] == double["documents"] > 0
        a, b = _content(single_out), _content(tmp_path / "double")
        assert a["shards"] == b["shards"]
        assert a["funnel"] == b["funnel"]
        assert a["rows"] == b["rows"]
        print(f"two-node run: {len(on_worker)} task(s) on the worker node, {len(on_head)} on the head; "
              f"e.g. {sorted(set(on_worker))[:5]}")
    finally:
        procs = services.group_processes(set(pgids))
        services.stop_processes(procs, grace=10)
        time.sleep(1)
        alive = [p.pid for p in services.group_processes(set(pgids))]
        for d in (head_tmp, worker_tmp):
            subprocess.run(["rm", "-rf", str(d)], check=False)
    assert alive == []
