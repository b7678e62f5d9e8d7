"""End to end on real local services: `crawl2chat up`, then
`prefect deployment run 'llm-pipeline/tiny'` (the CLI), then check Prefect,
MLflow and the files on disk; the services used over HTTP and the Ray client from a
fresh process, `up` a second time harmless; then `crawl2chat down` leaves no process,
and `down` again is harmless. One `up`/`down` cycle for all of it (make test's time)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
from tests.support.services import CLI, all_pids, free_port, leftovers, service_env, up_args

from flows.pipeline import MODELS  # (registered model of each stage, docs/CONTRACTS.md)

# The tiny preset, shortened further so the whole chain fits CI's time: every
# stage still trains, evaluates, checkpoints and registers its model.
SHORT = {
    "curate": {"generated_docs": 100},  # the demo's default inputs, with a smaller GENERATED WARC
    "pretrain": {"max_steps": 10, "eval_every": 5, "checkpoint_every": 5},
    "sft": {"steps": 8, "eval_every": 4, "checkpoint_every": 4},
    "rl": {"steps": 2, "eval_every": 1, "checkpoint_every": 1, "eval_prompts": 8},
    # fewer preference pairs: ~30 held out, not ~130, scored at each evaluation
    "reward": {"steps": 6, "eval_every": 3, "checkpoint_every": 3, "max_pairs": 40, "generated_prefs": 80},
    "rlhf": {"steps": 2, "eval_every": 1, "checkpoint_every": 1},
    "dpo": {"steps": 4, "eval_every": 2, "checkpoint_every": 2, "max_pairs": 40, "generated_prefs": 80},
    "evaluate": {"gsm8k_n": 4, "gsm8k_k": 1, "arithmetic_n": 4, "python_n": 2, "compliance_n": 2, "n_samples": 1,
                 "bpb_max_tokens": 2048, "core_limit": 4, "chat_limit": 3, "chat_max_new_tokens": 16,
                 "honesty_n": 2},
}


@pytest.fixture(scope="module")
def pipeline_on_services(tmp_path_factory):
    """`crawl2chat up`, then one `prefect deployment run 'llm-pipeline/tiny' --watch` (the CLI), shared
    by the tests below; `crawl2chat down` afterwards must leave no process and need no SIGKILL."""
    from flows import pipeline

    tmp_path = tmp_path_factory.mktemp("e2e")
    state, out = tmp_path / "state", tmp_path / "run"
    ports = {"prefect": free_port(), "mlflow": free_port(), "ray": free_port(span=3)}
    expected = [st.name for st, action in pipeline.plan(out) if action == "run"]
    assert expected[:2] == ["curate", "tokenize"], expected
    pids: set[int] = set()
    try:
        started = time.monotonic()
        r = subprocess.run(up_args(state, ports, runner=True), capture_output=True, text=True, timeout=600,
                           cwd=tmp_path)
        assert r.returncode == 0, (r.stdout + r.stderr)[-5000:]
        first_up = time.monotonic() - started
        up_stdout = r.stdout
        ready = json.loads((state / "runner.ready").read_text())
        assert "llm-pipeline/tiny" in ready["deployments"]
        env = service_env(state)
        t0 = time.monotonic()
        params = json.dumps({"out": str(out), "overrides": SHORT})
        run = subprocess.run(["prefect", "deployment", "run", "llm-pipeline/tiny",  # on PATH via env.sh
                              "--params", params, "--watch", "--watch-timeout", "1500"],
                             capture_output=True, text=True, timeout=1600, env=env, cwd=tmp_path)
        wall = time.monotonic() - t0
        pids = all_pids(state)
        log_tail = (state / "logs" / "runner.log").read_text(errors="replace")[-6000:]
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:] + log_tail
        parent_id = re.search(r"UUID: ([0-9a-f-]{36})", run.stdout).group(1)
        print(f"llm-pipeline/tiny: {wall:.0f}s through `prefect deployment run`")
        yield {"state": state, "out": out, "ports": ports, "env": env, "expected": expected,
               "parent_id": parent_id, "watch": run.stdout, "up_stdout": up_stdout, "first_up": first_up,
               "tmp": tmp_path}
    finally:
        pids |= all_pids(state)
        d = subprocess.run([*CLI, "down", "--state-dir", str(state)], capture_output=True, text=True, timeout=300)
    assert d.returncode == 0, d.stdout + d.stderr
    # Ray stops in `ray stop`'s order and every process exits on SIGTERM: nothing needed SIGKILL
    assert "SIGKILL" not in d.stderr, d.stderr
    assert len(pids) >= 5  # prefect (+uvicorn), mlflow (+uvicorn), gcs, raylet, ... were really there
    time.sleep(1)
    assert leftovers(pids, state) == []
    assert not (state / "prefect.pid").exists() and json.loads((state / "services.json").read_text())["procs"] == {}
    # `down` again is harmless
    d2 = subprocess.run([*CLI, "down", "--state-dir", str(state)], capture_output=True, text=True, timeout=60)
    assert d2.returncode == 0 and "nothing running" in d2.stdout, d2.stdout + d2.stderr


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_services_answer_over_http_and_the_ray_client_and_up_twice_is_harmless(pipeline_on_services):
    """What `crawl2chat up` started: URLs printed, pid files, a token only its owner reads, the
    README's tools first on PATH after `source env.sh`; MLflow over HTTP (run, metric, proxied
    artifact) and Ray through the client from a fresh process; a second `up` starts nothing."""
    run = pipeline_on_services
    state, ports, env, tmp = run["state"], run["ports"], run["env"], run["tmp"]
    assert f"http://127.0.0.1:{ports['prefect']}" in run["up_stdout"]
    assert f"http://127.0.0.1:{ports['mlflow']}" in run["up_stdout"]
    data = json.loads((state / "services.json").read_text())
    assert set(data["procs"]) == {"prefect", "mlflow", "ray", "runner"}
    for name, proc in data["procs"].items():
        assert (state / f"{name}.pid").read_text().strip() == str(proc["pid"])
        assert Path(proc["log"]).is_file()

    # Prefect: health + the environment `env.sh` gives
    assert urllib.request.urlopen(f"http://127.0.0.1:{ports['prefect']}/api/health", timeout=10).status == 200
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
    pr = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, env=env, cwd=tmp)
    assert pr.returncode == 0, pr.stderr[-3000:]
    out = json.loads(pr.stdout.strip().splitlines()[-1])
    assert out["artifact_uri"].startswith("mlflow-artifacts:")  # proxied by the server
    assert list((state / "mlflow" / "artifacts").rglob("probe.txt")), "artifact not in the server's store"
    with urllib.request.urlopen(f"http://127.0.0.1:{ports['mlflow']}/api/2.0/mlflow/runs/get?run_id={out['run']}",
                                timeout=10) as r:
        assert json.loads(r.read())["run"]["data"]["metrics"][0]["value"] == 3.0
    assert out["nodes"] == 1 and out["cpus"] == 2.0 and out["node"]

    # Twice is harmless: same processes, nothing new, quick.
    t0 = time.monotonic()
    r2 = subprocess.run(up_args(state, ports, runner=True), capture_output=True, text=True, timeout=600, cwd=tmp)
    assert r2.returncode == 0, r2.stdout + r2.stderr
    assert "already running" in r2.stderr
    again = json.loads((state / "services.json").read_text())
    assert {k: v["pid"] for k, v in again["procs"].items()} == {k: v["pid"] for k, v in data["procs"].items()}
    assert time.monotonic() - t0 < max(30.0, run["first_up"] / 2)


@pytest.mark.slow
@pytest.mark.timeout(2400)  # real services on 2 cores; the suite-wide 900 s is too tight here
def test_llm_pipeline_tiny_deployment_on_local_services(pipeline_on_services):
    run = pipeline_on_services
    env, out, ports, expected, parent_id = run["env"], run["out"], run["ports"], run["expected"], run["parent_id"]
    # the CLI says which stage is running: `--watch` gives the run's UUID and states
    # (Prefect's watch prints no logs), `prefect flow-run logs UUID` the stage lines
    logs = subprocess.run(["prefect", "flow-run", "logs", parent_id], capture_output=True, text=True,
                          timeout=120, env=env)
    assert logs.returncode == 0, logs.stdout[-2000:] + logs.stderr[-2000:]
    for i, name in enumerate(expected, 1):
        assert f"stage {i}/{len(expected)} {name}: running" in logs.stdout, (name, logs.stdout[-3000:])

    # ---- Prefect: the pipeline and one subflow per stage, all Completed, each linked to MLflow
    flow_runs, links = _prefect_view(env)
    by_id = {fr["id"]: fr for fr in flow_runs}
    assert by_id[parent_id]["state"] == "COMPLETED"
    assert all(fr["state"] == "COMPLETED" for fr in flow_runs), [(f["flow"], f["state"]) for f in flow_runs]
    flows_seen = {fr["flow"] for fr in flow_runs}
    assert {"llm-pipeline", *expected} <= flows_seen, (expected, flows_seen)
    for fr in flow_runs:
        assert any(link["flow_run_id"] == fr["id"] and f":{ports['mlflow']}/" in link["data"]
                   for link in links), f"flow run {fr['flow']} has no link artifact to its MLflow run"

    # ---- MLflow: parent run, nested runs per stage with metrics + Prefect tags, registered models
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("crawl2chat")
    runs = client.search_runs([exp.experiment_id], max_results=200)
    parents = [r for r in runs if r.info.run_name == "llm-pipeline"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    parent = parents[0]
    assert parent.data.tags["prefect_flow_run_id"] == parent_id
    assert parent.data.tags["prefect_flow_run_url"] == (
        f"http://127.0.0.1:{ports['prefect']}/flow-runs/flow-run/{parent_id}")
    # the parent run carries every stage's headline numbers: two pipeline runs compare on it alone
    m = parent.data.metrics
    assert m["curate.documents"] > 0 and m["tokenize.n_tokens"] > 0 and m["pretrain.val_bpb"] > 0
    assert any(k.startswith("evaluate.") and k.endswith(".val_bpb") for k in m), sorted(m)
    children = {r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert set(expected) <= set(children), (expected, sorted(children))
    for name in expected:
        child = children[name]
        assert child.info.status == "FINISHED", name
        assert child.data.metrics, f"stage {name} logged no metrics"
        assert child.data.tags.get("prefect_flow_run_id") in by_id, name
        assert by_id[child.data.tags["prefect_flow_run_id"]]["flow"] == name
        assert parent.data.tags.get(f"stage.{name}") == "done"
    registered = {m.name for m in client.search_registered_models()}
    for name in expected:
        if name in MODELS:
            assert MODELS[name] in registered, (name, registered)

    # ---- files: curated Parquet, token shards, checkpoints, report
    assert list((out / "curate" / "curated").glob("*.parquet"))
    assert (out / "tokenize" / "tokens" / "meta.json").exists()
    assert list((out / "tokenize" / "tokens").glob("train_*.bin"))
    for name in expected:
        if name in MODELS:
            ckpt = Path(json.loads((out / name / "manifest.json").read_text())["checkpoint"])
            assert (ckpt / "model.safetensors").exists() and (ckpt / "config.json").exists(), name
    if "evaluate" in expected:
        report = Path(json.loads((out / "evaluate" / "manifest.json").read_text())["report"])
        assert report.exists() and "report card" in report.read_text(), "no report card"
        # the base model on the core suite, the chat models on the chat suite (eval.suite_by_model)
        text = report.read_text()
        assert "### base-model suite (core)" in text and "### chat-model suite (chat)" in text
    summary = json.loads((out / "pipeline.json").read_text())
    assert [k for k, v in summary["stages"].items() if v["status"] == "done"] == expected
    # the same default inputs as `make demo`: the samples plus the preset's GENERATED WARC
    assert list((out / "inputs").glob("generated_*docs_seed0.warc.gz"))


CHROMIUM = os.environ.get("CRAWL2CHAT_CHROMIUM", "/usr/bin/chromium")
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage"]


@pytest.mark.slow
@pytest.mark.timeout(2400)
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="headless browser missing: apt-get install -y chromium")
def test_mlflow_runs_page_and_prefect_flow_run_page_in_a_browser(pipeline_on_services):
    """The links the README and the MLflow tags give open real pages that show this run (headless Chromium)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    from mlflow import MlflowClient

    run = pipeline_on_services
    client = MlflowClient(tracking_uri=run["env"]["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("crawl2chat")
    parent = [r for r in client.search_runs([exp.experiment_id]) if r.info.run_name == "llm-pipeline"][0]
    mlflow_url = run["env"]["MLFLOW_TRACKING_URI"].rstrip("/")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            # MLflow 3.17's runs view of the experiment (the README's link): the pipeline run is listed
            page.goto(f"{mlflow_url}/#/experiments/{exp.experiment_id}/runs", timeout=120_000)
            page.wait_for_function("document.body.innerText.includes('llm-pipeline')", timeout=120_000)
            # ...and its run page shows a headline metric of a stage
            page.goto(f"{mlflow_url}/#/experiments/{exp.experiment_id}/runs/{parent.info.run_id}", timeout=120_000)
            page.wait_for_function("document.body.innerText.includes('pretrain.val_bpb')", timeout=120_000)
            # the Prefect UI page the MLflow tag links to: the flow run of llm-pipeline, Completed
            page.goto(parent.data.tags["prefect_flow_run_url"], timeout=120_000)
            page.wait_for_function("document.body.innerText.includes('llm-pipeline')", timeout=120_000)
            page.wait_for_function("document.body.innerText.includes('Completed')", timeout=120_000)
            assert "404" not in page.title()
        finally:
            browser.close()


def _prefect_view(env: dict[str, str]) -> tuple[list[dict], list[dict]]:
    """All flow runs and link artifacts of the (fresh) Prefect server, read in a subprocess
    so this test process keeps its own Prefect settings."""
    code = r"""
import json
from prefect.client.orchestration import get_client
with get_client(sync_client=True) as c:
    flows = {f.id: f.name for f in c.read_flows()}
    runs = [{"id": str(r.id), "flow": flows.get(r.flow_id), "state": r.state_type.value}
            for r in c.read_flow_runs()]
    # link artifacts are stored as markdown `[text](url)`; runtime.mlflow_run keys them mlflow-<stage>
    links = [{"flow_run_id": str(a.flow_run_id), "data": str(a.data)} for a in c.read_artifacts()
             if (a.key or "").startswith("mlflow-")]
print(json.dumps({"runs": runs, "links": links}))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    data = json.loads(r.stdout.strip().splitlines()[-1])
    return data["runs"], data["links"]


def test_env_of_services_is_used_by_runtime():
    """Guard for the e2e wiring: flows read exactly the variables `up` exports."""
    from crawl2chat import services

    s = services.Settings(state_dir=Path("/nonexistent"))
    assert set(services.ENV_VARS) == set(s.client_env())
    assert os.environ.get("RAY_ADDRESS") is None  # the test session itself runs embedded
