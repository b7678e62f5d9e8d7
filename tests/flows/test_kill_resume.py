"""Every stage survives a kill (issue 24): SIGKILL of its process group, then the same call again,
ends exactly where an uninterrupted run ends — and the tracking says what happened.

Per stage: an uninterrupted reference run (its own MLflow store), a run killed after its first
checkpoint (training stages) or mid-way (probe and the data stages), and the re-run. Checked:
identical final weights/outputs, the same manifest figures (wall time and ids aside), the killed
MLflow run KILLED (none left RUNNING), each metric step once and the same series as the
reference, the killed Prefect flow run Crashed, registered versions only from the finished run.
Real Prefect API, real Ray (data stages), real sqlite MLflow stores; one tiny GENERATED base model.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.support import kill_resume as kr
from tests.support.curated_data import write_generated_curated, write_generated_shards
from tests.support.posttrain_base import generated_preferences, tiny_base

pytestmark = pytest.mark.slow  # ten kill-and-rerun tests: `make test` starts this module early

POST = {"log_every": 1, "device": "cpu"}
STAGES = ["probe", "sft", "rl", "reward", "rlhf", "dpo", "tokenize", "index", "evaluate"]
# Step-by-step figures that measure the clock, not the model.
CLOCK_METRICS = ("throughput/", "step_time", "gen_s", "seconds", "final/seconds", "final/steps_done_time")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, repo_data):
    """What the stages read, built once: the base model, GENERATED preferences and curated shards."""
    d = tmp_path_factory.mktemp("kill-inputs")
    base = str(tiny_base())
    prefs = str(generated_preferences(d / "generated_pairs.jsonl", 40, seed=0))
    write_generated_curated(repo_data, d / "tok-data", n_files=4, per_file=40)
    write_generated_shards(repo_data, d / "idx-data" / "curated", n_files=3, per_file=30)
    (d / "idx-data" / "curated" / "manifest.json").write_text(json.dumps(
        {"shards": sorted(p.name for p in (d / "idx-data" / "curated").glob("*.parquet"))}))
    return {"dir": d, "base": base, "prefs": prefs}


@pytest.fixture(scope="module")
def reward_ckpt(inputs):
    """A tiny reward model for RLHF (trained once, without tracking)."""
    import conf
    from conf.posttrain import RewardConfig
    from tasks.posttrain import run_reward

    cfg = conf.load(RewardConfig, None, {"steps": 2, "eval_every": 2, "checkpoint_every": 1000, **POST})
    return run_reward(inputs["base"], [inputs["prefs"]], str(inputs["dir"] / "rm"), cfg)["checkpoint"]


def _spec(stage: str, inputs, request, ray_address: str | None):
    """(target, kwargs without out/mlflow_root, ready(out, store) predicate, output files to hash: None = all)."""
    base, prefs = inputs["base"], inputs["prefs"]
    ckpt = lambda out, store: (out / "latest" / "train_state.pt").exists()  # noqa: E731 - the first checkpoint
    weights = ["final/model.safetensors", "final/config.json"]
    if stage == "probe":
        return ("flows.probe:probe", {"model": base, "preset": None, "overrides": {
            # 20 batches: on an idle machine a handful finish between two polls of the killer
            "n_questions": 60, "samples": 2, "max_new_tokens": 6, "batch_size": 3, "shots": 1, "device": "cpu"}},
            lambda out, store: (out / "replies.partial.json").exists(), ["results.jsonl", "refusal_sft.GENERATED.jsonl"])
    if stage == "sft":
        return ("flows.sft:sft", {"model": base, "preset": None, "overrides": {
            **POST, "steps": 8, "batch_size": 4, "max_per_source": 20, "n_identity": 5, "n_arithmetic": 10,
            "eval_every": 3, "eval_batches": 1, "checkpoint_every": 2, "persona_system_fraction": 0.0}}, ckpt, weights)
    if stage == "rl":
        return ("flows.rl:rl", {"model": base, "task": "arithmetic", "preset": None, "overrides": {
            **POST, "steps": 4, "prompts_per_step": 2, "samples_per_prompt": 2, "max_new_tokens": 8,
            "eval_prompts": 4, "eval_samples": 2, "eval_every": 2, "beta": 0.1, "checkpoint_every": 1}},
            ckpt, weights)
    if stage == "reward":
        return ("flows.reward:reward", {"model": base, "prefs": [prefs], "preset": None, "overrides": {
            **POST, "steps": 8, "eval_every": 3, "checkpoint_every": 2}}, ckpt, weights + ["final/extra.safetensors"])
    if stage == "rlhf":
        return ("flows.rlhf:rlhf", {"policy": base, "reward": request.getfixturevalue("reward_ckpt"),
                                    "prompts": [prefs], "preset": None, "overrides": {
            **POST, "steps": 4, "prompts_per_step": 2, "samples_per_prompt": 2, "max_new_tokens": 8, "eval_every": 1,
            "checkpoint_every": 1}}, ckpt, weights)
    if stage == "dpo":
        return ("flows.dpo:dpo", {"model": base, "prefs": [prefs], "preset": None, "overrides": {
            **POST, "steps": 6, "batch_size": 2, "eval_every": 2, "checkpoint_every": 2}}, ckpt, weights)
    if stage == "tokenize":
        return ("flows.tokenize:run_tokenize", {"data": str(inputs["dir"] / "tok-data"), "preset": None,
                                                "vocab_size": 512, "ray_address": ray_address, "overrides": {
            "val_fraction": 0.1, "compression_docs": 20, "batch_docs": 8}},
            lambda out, store: any((out / "tokens").glob("*.bin")),
            None)
    if stage == "index":
        return ("flows.index:run_index", {"data": str(inputs["dir"] / "idx-data"), "preset": None,
                                          "overrides": {"passage_words": 40, "max_passage_words": 80}},
            lambda out, store: any(out.rglob("*.parquet")), None)
    if stage == "evaluate":
        started: list[float] = []

        def mid_way(out, store):  # no checkpoint to wait for: kill a second into its MLflow run
            if not started and any(s == "RUNNING" for _, s in kr.mlflow_runs(store / "mlflow.db", "evaluate")):
                started.append(time.time())
            return bool(started) and time.time() - started[0] > 1.0
        return ("flows.evaluate:evaluate", {"model": base, "preset": None, "models": {"base": base}, "overrides": {
            "suite": "basic", "gsm8k_n": 3, "gsm8k_k": 2, "gsm8k_max_new_tokens": 16, "arithmetic_n": 4,
            "python_n": 2, "compliance_n": 2, "n_samples": 2, "max_new_tokens": 16, "bpb_max_tokens": 2048}},
            mid_way, None)
    raise AssertionError(stage)


def _outputs(out: Path) -> list[str]:
    """Every file a stage wrote: its manifest aside (it names the MLflow run and the wall time), Tantivy's
    segment files (named by random UUIDs; the index's content is checked through its manifest), the
    report card (a view with dates and links; its figures are eval.json's) and Prefect's task cache (named
    by hashes of the task inputs, which hold the output path)."""
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p.name != "manifest.json"
                  and not {"tantivy", "report", "prefect-results"} & set(p.relative_to(out).parts))


def _content(out: Path, name: str) -> str:
    """A file's sha256; for JSON, its figures with the output path and the clock left out."""
    p = out / name
    if p.suffix == ".json":
        return kr.canon(kr.figures(json.loads(p.read_text()), out))
    if p.suffix == ".jsonl":
        return kr.canon([kr.figures(json.loads(line), out) for line in p.read_text().splitlines()])
    return kr.sha256(p)


def _call(target: str, kwargs: dict):
    import importlib

    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)(**kwargs)


def _histories(client, run_id: str) -> dict[str, list[tuple[int, float]]]:
    run = client.get_run(run_id)
    return {k: sorted((m.step, m.value) for m in client.get_metric_history(run_id, k))
            for k in run.data.metrics if not any(c in k for c in CLOCK_METRICS)}


def _runs(client, stage: str) -> list:
    exp = client.get_experiment_by_name("crawl2chat")
    return client.search_runs([exp.experiment_id], filter_string=f"tags.stage = '{stage}'")


@pytest.mark.parametrize("stage", STAGES)
def test_stage_killed_then_rerun_ends_as_uninterrupted(stage, inputs, request, tmp_path, prefect_api, ray_cluster):
    import os

    from mlflow import MlflowClient

    ray_address = ray_cluster.get_runtime_context().gcs_address
    target, kwargs, ready, files = _spec(stage, inputs, request, ray_address)
    ref_out, ref_store = tmp_path / "ref" / stage, tmp_path / "ref"
    out, store = tmp_path / "run" / stage, tmp_path / "run"

    ref = _call(target, {**kwargs, "out": str(ref_out), "mlflow_root": str(ref_store)})

    env = {"PREFECT_API_URL": prefect_api, "RAY_ADDRESS": ray_address, "OMP_NUM_THREADS": "1",
           "PREFECT_HOME": os.environ["PREFECT_HOME"]}
    code = kr.run_killed(target, {**kwargs, "out": str(out), "mlflow_root": str(store)}, env,
                         lambda: ready(out, store))
    assert code == -9, f"{stage}: the run ended (exit {code}) before the kill; give it more steps"
    assert not (out / "manifest.json").exists() and not (out / "tokens" / "meta.json").exists()
    ghosts = [rid for rid, s in kr.mlflow_runs(store / "mlflow.db", stage) if s == "RUNNING"]
    assert len(ghosts) == 1  # what a kill leaves: the re-run must settle it

    m = _call(target, {**kwargs, "out": str(out), "mlflow_root": str(store)})  # the same call again

    for f in files or _outputs(ref_out):
        assert _content(out, f) == _content(ref_out, f), f"{stage}: {f} differs from the uninterrupted run"
    assert kr.canon(kr.figures(m, out)) == kr.canon(kr.figures(ref, ref_out)), stage
    assert not list(out.rglob("*.tmp-*"))

    # Tracking tells the truth: the killed run KILLED, the re-run FINISHED, nothing RUNNING.
    client = MlflowClient(f"sqlite:///{store}/mlflow.db")
    runs = {r.info.run_id: r for r in _runs(client, stage)}
    assert runs[ghosts[0]].info.status == "KILLED" and "killed_reason" in runs[ghosts[0]].data.tags
    assert sorted(r.info.status for r in runs.values()) == ["FINISHED", "KILLED"]
    done = next(r for r in runs.values() if r.info.status == "FINISHED")
    # The killed Prefect flow run is Crashed, not Running forever.
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as pc:
        state = pc.read_flow_run(runs[ghosts[0]].data.tags["prefect_flow_run_id"]).state
    assert state.is_crashed(), state
    # Each step once, and the series an uninterrupted run logs (carried over up to the checkpoint).
    hist = _histories(client, done.info.run_id)
    for key, points in hist.items():
        steps = [s for s, _ in points]
        assert len(steps) == len(set(steps)), f"{stage}: {key} logs a step twice: {steps}"
    ref_client = MlflowClient(f"sqlite:///{ref_store}/mlflow.db")
    ref_run = next(r for r in _runs(ref_client, stage) if r.info.status == "FINISHED")
    assert hist == _histories(ref_client, ref_run.info.run_id), stage
    # The registry holds versions of finished runs only.
    for mv in client.search_model_versions("name LIKE 'crawl2chat-%'"):
        assert mv.run_id == done.info.run_id, f"{mv.name} v{mv.version} comes from an unfinished run"


def test_refused_registration_is_one_line_no_manifest_and_the_rerun_registers(tmp_path, prefect_api):
    """The store refuses the model version (an sqlite trigger: a real refusal of the real store):
    StageFailedError in one line, no manifest, no version, run FAILED; the same call again registers
    and reports the figures measured before training (saved with the checkpoint)."""
    import sqlite3

    from mlflow import MlflowClient

    from core.errors import StageFailedError
    from flows.sft import sft

    store, out = tmp_path, tmp_path / "sft"
    client = MlflowClient(f"sqlite:///{store}/mlflow.db")
    client.search_experiments()  # creates the schema
    with sqlite3.connect(store / "mlflow.db") as c:
        c.execute("CREATE TRIGGER refuse BEFORE INSERT ON model_versions "
                  "BEGIN SELECT RAISE(ABORT, 'model versions are read-only here'); END")
    over = {**POST, "steps": 2, "batch_size": 4, "max_per_source": 10, "n_identity": 5, "n_arithmetic": 10,
            "eval_every": 2, "eval_batches": 1, "checkpoint_every": 1000, "persona_system_fraction": 0.0}
    with pytest.raises(StageFailedError) as e:
        sft(str(tiny_base()), str(out), preset=None, overrides=over, mlflow_root=str(store))
    msg = str(e.value)
    assert "\n" not in msg and "crawl2chat-sft" in msg and "failed" in msg and "re-run" in msg
    assert not (out / "manifest.json").exists() and (out / "final" / "model.safetensors").exists()
    assert not client.search_model_versions("name='crawl2chat-sft'")
    assert [r.info.status for r in _runs(client, "sft")] == ["FAILED"]

    with sqlite3.connect(store / "mlflow.db") as c:
        c.execute("DROP TRIGGER refuse")
    m = sft(str(tiny_base()), str(out), preset=None, overrides=over, mlflow_root=str(store))
    assert m["model_uri"] == "models:/crawl2chat-sft@current" and (out / "manifest.json").exists()
    assert isinstance(m["val_loss_start"], float)  # measured by the first run, saved with its checkpoint
    versions = client.search_model_versions("name='crawl2chat-sft'")
    assert [v.run_id for v in versions] == [m["mlflow_run_id"]]
    # the re-run (which trained nothing) still holds the first run's per-step history, each step once
    hist = _histories(client, m["mlflow_run_id"])
    assert [s for s, _ in hist["train/loss"]] == [1, 2] and [s for s, _ in hist["val/loss"]] == [0, 2]
