"""`evaluate` flow against a real Prefect API and a real sqlite MLflow store.

The model is the toy model (tests/support/toy.py: real text + GENERATED conversations),
registered in MLflow so the flow resolves a `models:/` URI and records lineage.
Val tokens are real Tiny Shakespeare text encoded with the toy tokenizer.
"""
import json
from pathlib import Path

import numpy as np

from tests.support.shared import shared_root
from tests.support.toy import make_toy_checkpoint

SMALL = {"gsm8k_n": 2, "gsm8k_k": 2, "gsm8k_max_new_tokens": 24, "arithmetic_n": 3, "python_n": 2, "compliance_n": 2,
         "n_samples": 2, "max_new_tokens": 24, "bpb_max_tokens": 2048}


def test_evaluate_flow_lineage_metrics_report(tmp_path, tmp_path_factory, prefect_api, mlflow_uri):
    import mlflow
    from mlflow import MlflowClient

    from flows.evaluate import evaluate
    from flows.runtime import mlflow_run, register_checkpoint
    from lm.tokenizer import Tokenizer

    ckpt = make_toy_checkpoint(shared_root(tmp_path_factory) / "toy-model", steps=150)
    root = tmp_path / "run"
    # a pretrain stage with a loss history, and its registered model
    with mlflow_run("pretrain", root) as run:
        for step, loss in enumerate([5.0, 4.0, 3.2, 2.9]):
            mlflow.log_metric("train_loss", loss, step=step)
        uri = register_checkpoint(ckpt, "crawl2chat-sft", alias="current")  # "latest" is reserved by MLflow
    (root / "pretrain").mkdir(parents=True)
    (root / "pretrain" / "manifest.json").write_text(json.dumps(
        {"checkpoint": str(ckpt), "mlflow_run_id": run.info.run_id, "final_loss": 2.9}))
    tok = Tokenizer.load(ckpt)
    tokens = root / "tokenize" / "tokens"
    tokens.mkdir(parents=True)
    ids = [tok.bos_id, *tok.encode(open(Path(__file__).resolve().parents[2] / "data" / "text" / "tinyshakespeare.txt").read()[-4000:])]
    np.asarray(ids, dtype="<u2").tofile(tokens / "val_00000.bin")
    (tokens / "meta.json").write_text(json.dumps({"dtype": "uint16", "vocab_size": tok.vocab_size, "n_tokens": len(ids),
                                                  "shards": [{"path": "val_00000.bin", "split": "val",
                                                              "n_tokens": len(ids)}]}))

    yardsticks = {"suite_by_model": {"sft": "basic,core,chat"}, "core_limit": 3, "core_tasks": ["copa", "arc_easy"],
                  "chat_limit": 2, "chat_max_new_tokens": 16}
    m = evaluate(model=uri, out=str(root / "evaluate"), preset="tiny", tokens=str(tokens), root=str(root),
                 models={"sft": uri}, overrides={**SMALL, **yardsticks})

    assert m["main"] == "sft" and 0 < m["val_bpb"] < 16
    assert json.loads((root / "evaluate" / "manifest.json").read_text())["mlflow_run_id"] == m["mlflow_run_id"]
    run = MlflowClient().get_run(m["mlflow_run_id"])
    assert run.data.tags["stage"] == "evaluate"
    assert run.data.tags["evaluated_model"] == uri and run.data.tags["evaluated_model_version"] == "1"
    assert "prefect_flow_run_id" in run.data.tags
    assert {"sft.val_bpb", "sft.gsm8k_pass_at_1", "sft.arith_acc_tool", "sft.chat_compliance"} <= set(run.data.metrics)
    # yardsticks: one metric per task, prefixed per model and, for the main model, as eval/<suite>/<task>
    assert {"eval/core/copa", "eval/core/arc_easy", "eval/core/core_score", "eval/chat/arc_easy", "eval/chat/gsm8k",
            "eval/chat/triviaqa", "sft.eval/core/copa"} <= set(run.data.metrics)
    assert {i.dataset.name for i in run.inputs.dataset_inputs} >= {"val-tokens", "gsm8k-heldout-last-500"}
    arts = {a.path for a in MlflowClient().list_artifacts(run.info.run_id, "report")}
    assert {"report/report.md", "report/losses.png", "report/eval.png"} <= arts
    md = (root / "evaluate" / "report" / "report.md").read_text()
    assert "## pretrain" in md and "![loss curves](losses.png)" in md and "| val_bpb |" in md
    assert "### base-model suite (core)" in md and "### chat-model suite (chat)" in md and "| copa |" in md
    samples = [json.loads(s) for s in (root / "evaluate" / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 2 and samples[0]["model"] == "sft"
