"""`crawl2chat up` / `down` for real: Prefect server, MLflow server and a Ray head
on loopback in a temp state dir; used over HTTP / the Ray client; started twice;
stopped with nothing left behind."""
from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support.services import CLI, all_pids, free_port, leftovers, service_env, up_args


def http_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read() or b"{}")


@pytest.mark.slow
@pytest.mark.timeout(1200)  # real services on 2 cores; the suite-wide 900 s is too tight here
def test_up_twice_use_then_down_leaves_nothing(tmp_path):
    state = tmp_path / "state"
    ports = {"prefect": free_port(), "mlflow": free_port(), "ray": free_port(span=3)}
    started = time.monotonic()
    pids: set[int] = set()
    try:
        r = subprocess.run(up_args(state, ports), capture_output=True, text=True, timeout=600, cwd=tmp_path)
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"http://127.0.0.1:{ports['prefect']}" in r.stdout and f"http://127.0.0.1:{ports['mlflow']}" in r.stdout
        data = json.loads((state / "services.json").read_text())
        assert set(data["procs"]) == {"prefect", "mlflow", "ray"}
        for name, proc in data["procs"].items():
            assert (state / f"{name}.pid").read_text().strip() == str(proc["pid"])
            assert Path(proc["log"]).is_file()
        pids = all_pids(state)
        first_up = time.monotonic() - started

        # Prefect: health + a real API call
        assert urllib.request.urlopen(f"http://127.0.0.1:{ports['prefect']}/api/health", timeout=10).status == 200
        env = service_env(state)
        assert env["PREFECT_API_URL"] == f"http://127.0.0.1:{ports['prefect']}/api"
        # env.sh puts the venv first on PATH: the README's next commands are found
        for tool in ("crawl2chat", "prefect", "mlflow", "ray"):
            found = subprocess.run(["bash", "-c", f"command -v {tool}"], env=env, capture_output=True, text=True)
            assert found.stdout.strip() == str(Path(sys.executable).parent / tool), (tool, found)
        assert Path(env["RAY_AUTH_TOKEN_PATH"]).stat().st_mode & 0o077 == 0  # token readable by owner only

        # MLflow over HTTP (run, metric, proxied artifact) and Ray through the client, from a fresh process
        probe = r"""
import json, os, tempfile, mlflow, ray
mlflow.set_experiment("up-down-probe")
with mlflow.start_run() as run:
    mlflow.log_metric("x", 3.0)
    f = os.path.join(tempfile.mkdtemp(), "probe.txt"); open(f, "w").write("hello")
    mlflow.log_artifact(f)
ray.init()
node = ray.get(ray.remote(lambda: ray.get_runtime_context().get_node_id()).remote())
print(json.dumps({"run": run.info.run_id, "artifact_uri": run.info.artifact_uri, "node": node,
                  "nodes": len(ray.nodes()), "cpus": ray.cluster_resources().get("CPU")}))
"""
        pr = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, env=env,
                            cwd=tmp_path)
        assert pr.returncode == 0, pr.stderr[-3000:]
        out = json.loads(pr.stdout.strip().splitlines()[-1])
        assert out["artifact_uri"].startswith("mlflow-artifacts:")  # proxied by the server
        assert list((state / "mlflow" / "artifacts").rglob("probe.txt")), "artifact not in the server's store"
        run = http_json(f"http://127.0.0.1:{ports['mlflow']}/api/2.0/mlflow/runs/get?run_id={out['run']}")
        assert run["run"]["data"]["metrics"][0]["value"] == 3.0
        assert out["nodes"] == 1 and out["cpus"] == 2.0 and out["node"]

        # Twice is harmless: same processes, nothing new, quick.
        t0 = time.monotonic()
        r2 = subprocess.run(up_args(state, ports), capture_output=True, text=True, timeout=600, cwd=tmp_path)
        assert r2.returncode == 0, r2.stdout + r2.stderr
        assert "already running" in r2.stderr
        again = json.loads((state / "services.json").read_text())
        assert {k: v["pid"] for k, v in again["procs"].items()} == {k: v["pid"] for k, v in data["procs"].items()}
        assert time.monotonic() - t0 < max(30.0, first_up / 2)
        pids |= all_pids(state)
    finally:
        d = subprocess.run([*CLI, "down", "--state-dir", str(state)], capture_output=True, text=True, timeout=300,
                           cwd=tmp_path)
    assert d.returncode == 0, d.stdout + d.stderr
    # Ray stops in `ray stop`'s order and every process exits on SIGTERM: nothing needed SIGKILL
    assert "SIGKILL" not in d.stderr, d.stderr
    assert len(pids) >= 5  # prefect (+uvicorn), mlflow (+uvicorn), gcs, raylet, ... were really there
    time.sleep(1)
    assert leftovers(pids, state) == []
    assert not (state / "prefect.pid").exists() and json.loads((state / "services.json").read_text())["procs"] == {}
    # `down` again is harmless
    d2 = subprocess.run([*CLI, "down", "--state-dir", str(state)], capture_output=True, text=True, timeout=60)
    assert d2.returncode == 0 and "nothing running" in d2.stdout
