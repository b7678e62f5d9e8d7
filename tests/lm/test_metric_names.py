"""One scheme of MLflow metric names across stages (docs/CONTRACTS.md, "Metric names").

Seam: pretrain logged `loss`, SFT and reward `train_loss`, RL `pass@1`, so MLflow's run
comparison could not line stages up. Real MLflow store (sqlite, `mlflow_uri` fixture).
"""
from lm.tracking import MLflowLogger, metric_name


def test_every_stage_s_loss_is_train_loss():
    assert metric_name("loss") == metric_name("train_loss") == "train/loss"
    assert metric_name("val_loss") == "val/loss" and metric_name("val_bpb") == "val/bpb"
    assert metric_name("tokens_per_s") == "throughput/tok_per_s" and metric_name("lr") == "train/lr"
    assert metric_name("pass@1") == "rl/pass_at_1" and metric_name("pass@8") == "rl/pass_at_8"
    assert metric_name("val/margin") == "val/margin"  # already namespaced: kept
    assert metric_name("eval/core/hellaswag") == "eval/core/hellaswag"
    assert metric_name("margin") == "train/margin"  # any other per-step key is a training series
    assert "@" not in metric_name("acc@k")


def test_pretrain_and_sft_runs_compare_on_one_name(tmp_path, mlflow_uri):
    import mlflow

    client = mlflow.MlflowClient()
    exp = mlflow.create_experiment("metric-names", artifact_location=(tmp_path / "artifacts").as_uri())
    runs = [client.create_run(exp).info.run_id for _ in range(2)]
    MLflowLogger(runs[0]).log_metrics({"loss": 7.0, "val_bpb": 2.5, "flag": True}, 1)  # as lm.train logs
    MLflowLogger(runs[1]).log_metrics({"train_loss": 3.0, "val_loss": 3.2}, 1)  # as lm.posttrain.sft logs
    names = [set(client.get_run(r).data.metrics) for r in runs]
    assert names[0] == {"train/loss", "val/bpb"} and names[1] == {"train/loss", "val/loss"}
