"""The parent run's headline: a few numbers with stable names, read from what each stage wrote."""
from __future__ import annotations

from core.atomic import write_json
from tasks.headline import HEADLINE_NAMES, compare_url, headline_line, headline_metrics, headline_params


def test_headline_metrics_come_from_each_stage_output(tmp_path):
    write_json(tmp_path / "pretrain" / "manifest.json", {"checkpoint": "x", "val_bpb": 2.79, "n_params": 1441792,
                                                         "world_size": 1, "ok": True, "status": "completed"})
    assert headline_metrics(tmp_path, "pretrain") == {"pretrain.val_bpb": 2.79, "pretrain.n_params": 1441792.0}
    write_json(tmp_path / "evaluate" / "eval.json", {"models": {
        "pretrain": {"val_bpb": 2.9, "core": {"core": 0.01}},
        "sft": {"val_bpb": 3.0, "gsm8k_pass@1": 0.0, "arith_acc_tool": 0.2, "arith_acc_no_tool": 0.5,
                "chat_compliance": float("nan"), "model": "x"},
        "rl": {"error": "gone"}}})
    assert headline_metrics(tmp_path, "evaluate") == {  # no NaN, no strings, no failed model: left out, not 0
        "evaluate.pretrain.val_bpb": 2.9, "evaluate.pretrain.core": 0.01, "evaluate.sft.arith_acc": 0.5,
        "evaluate.sft.gsm8k_pass_at_1": 0.0}
    assert headline_metrics(tmp_path, "dpo") == {}  # not run: nothing, no error
    write_json(tmp_path / "dpo" / "manifest.json", {"n_val": 45, "val": {"margin": 0.4, "accuracy": 0.6},
                                                    "config": {"lr": 0.1}})
    assert headline_metrics(tmp_path, "dpo") == {"dpo.val_margin": 0.4, "dpo.val_accuracy": 0.6}
    assert headline_line("pretrain", {"pretrain.val_bpb": 2.79}).startswith("; pretrain.val_bpb 2.79: held-out")
    # few, stable, and valid MLflow metric names
    assert len(HEADLINE_NAMES) <= 25 and len(set(HEADLINE_NAMES)) == len(HEADLINE_NAMES)
    assert all(n.replace(".", "").replace("_", "").isalnum() for n in HEADLINE_NAMES)


def test_params_are_flat_and_few():
    p = headline_params("tiny", ["pretrain", "sft"], {"pretrain": {"seed": 3, "max_steps": 20},
                                                      "sft": {"steps": 5}}, None)
    assert p == {"preset": "tiny", "seed": 3, "stages": "pretrain,sft", "inputs": "default",
                 "pretrain.max_steps": 20, "pretrain.seed": 3, "sft.steps": 5}
    assert headline_params("tiny", [], {}, ["a.warc.gz"])["seed"] == 0  # the preset's own seed
    assert compare_url("http://127.0.0.1:5001/", "1", ["a", "b"]) == (
        'http://127.0.0.1:5001/#/compare-runs?runs=["a","b"]&experiments=["1"]&workflowType=machine_learning')


def test_make_mlflow_ui_before_any_run_says_so_and_creates_nothing(tmp_path):
    from tasks.headline import ui_links

    db = tmp_path / "mlflow.db"
    assert "run `make demo` first" in ui_links(f"sqlite:///{db}", "http://127.0.0.1:5001")[0]
    assert not db.exists()
