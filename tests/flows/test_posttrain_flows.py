"""Post-training flows end to end on a real Prefect API and a real MLflow store (tiny sizes).

base (registered) → sft → rl ; base → reward → rlhf ; sft → dpo. Each run names its parent
model version and data; each registers its model with alias `current` (`@latest` resolves natively).
"""
from __future__ import annotations

import json
from pathlib import Path

from tests.support.posttrain_base import generated_preferences, tiny_base


COMMON = {"checkpoint_every": 1000, "log_every": 1}


def test_posttrain_flows_track_lineage_and_register(tmp_path, prefect_api, mlflow_uri):
    import mlflow
    from mlflow import MlflowClient

    from flows.dpo import dpo
    from flows.reward import reward
    from flows.rl import rl
    from flows.rlhf import rlhf
    from flows.runtime import mlflow_run, register_checkpoint
    from flows.sft import sft

    with mlflow_run("pretrain", tmp_path):
        register_checkpoint(tiny_base(), "crawl2chat-base")
    client = MlflowClient()

    m_sft = sft("models:/crawl2chat-base@latest", str(tmp_path / "sft"), preset=None, mlflow_root=str(tmp_path),
                overrides={**COMMON, "steps": 3, "batch_size": 4, "max_per_source": 30, "n_identity": 10,
                           "n_arithmetic": 20, "eval_every": 3, "eval_batches": 2,
                           # no system message: at this tiny context it would push some conversations out
                           "persona_system_fraction": 0.0})
    assert m_sft["model_uri"] == "models:/crawl2chat-sft@current"
    assert json.loads((tmp_path / "sft" / "manifest.json").read_text())["model_uri"] == m_sft["model_uri"]
    assert m_sft["data"]["kept"]["generated_arithmetic"] == 20 and m_sft["data"]["kept"]["alpaca"] > 0
    run = client.get_run(m_sft["mlflow_run_id"])
    assert run.data.tags["parent_model"] == "models:/crawl2chat-base@latest"
    assert run.data.tags["parent_model_version"] == "1" and run.data.tags["stage"] == "sft"
    assert {d.dataset.name for d in run.inputs.dataset_inputs} >= {"sft-alpaca", "sft-glaive-toolcall"}
    assert len(client.get_metric_history(run.info.run_id, "train/loss")) == 3

    m_rl = rl("models:/crawl2chat-sft@latest", str(tmp_path / "rl"), task="arithmetic", preset=None,
              mlflow_root=str(tmp_path),
              overrides={**COMMON, "steps": 2, "prompts_per_step": 2, "samples_per_prompt": 2, "max_new_tokens": 8,
                         "eval_prompts": 4, "eval_samples": 2, "eval_every": 2, "beta": 0.1,
                         "loss_type": "dr_grpo", "num_iterations": 2})
    run = client.get_run(m_rl["mlflow_run_id"])
    assert run.data.tags["parent_model_name"] == "crawl2chat-sft"
    assert run.data.params["loss_type"] == "dr_grpo" and run.data.params["beta"] == "0.1"
    for key in ("rl/reward_mean", "rl/pass_at_1", "rl/pass_at_2", "rl/response_len", "rl/kl", "rl/clip_frac",
                "train/loss", "rl/entropy", "rl/clip_frac_low", "rl/clip_frac_high", "rl/reward_std",
                "rl/frac_reward_zero_std", "rl/truncated_frac"):
        assert len(client.get_metric_history(run.info.run_id, key)) == 2, key
    assert json.loads((tmp_path / "rl" / "manifest.json").read_text())["diagnostics"]["entropy_end"] > 0
    assert m_rl["pass@1_before"] is not None

    prefs = str(generated_preferences(tmp_path / "generated_pairs.jsonl", 40, seed=0))
    m_rm = reward(m_sft["checkpoint"], str(tmp_path / "reward"), prefs=[prefs], preset=None,
                  mlflow_root=str(tmp_path), overrides={**COMMON, "steps": 3, "eval_every": 3})
    assert 0.0 <= m_rm["val_accuracy"] <= 1.0 and m_rm["n_val"] > 0
    run = client.get_run(m_rm["mlflow_run_id"])
    assert run.data.tags["parent_model_path"] == str(Path(m_sft["checkpoint"]).resolve())

    m_rlhf = rlhf("models:/crawl2chat-sft@latest", "models:/crawl2chat-reward@latest", str(tmp_path / "rlhf"),
                  prompts=[prefs], preset=None, mlflow_root=str(tmp_path),
                  overrides={**COMMON, "steps": 2, "prompts_per_step": 2, "samples_per_prompt": 2,
                             "max_new_tokens": 8, "eval_every": 1})
    run = client.get_run(m_rlhf["mlflow_run_id"])
    assert run.data.tags["reward_model_name"] == "crawl2chat-reward"
    assert len(client.get_metric_history(run.info.run_id, "rl/kl")) == 2

    m_dpo = dpo("models:/crawl2chat-sft@latest", str(tmp_path / "dpo"), prefs=[prefs], preset=None,
                mlflow_root=str(tmp_path), overrides={**COMMON, "steps": 2, "batch_size": 2, "eval_every": 2})
    run = client.get_run(m_dpo["mlflow_run_id"])
    assert len(client.get_metric_history(run.info.run_id, "train/margin")) == 2

    for name in ("crawl2chat-sft", "crawl2chat-rl", "crawl2chat-reward", "crawl2chat-rlhf", "crawl2chat-dpo"):
        mv = client.get_model_version_by_alias(name, "current")
        assert str(mv.version) == "1"
    # A registered model loads back through its URI.
    from lm.posttrain.reward import load_reward_model
    rm, _, meta = load_reward_model("models:/crawl2chat-reward@latest")
    assert meta["kind"] == "reward"
    mlflow.end_run()
