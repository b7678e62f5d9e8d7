"""tasks.pretrain.run_pretrain: the torchrun launch path logs to a real MLflow run.

Token shards are GENERATED from the bundled tinyshakespeare (tests/support/token_data.py).
"""
from __future__ import annotations

from tests.support.token_data import MICRO, make_generated_token_dataset


def test_two_process_torchrun_launch_logs_to_the_given_mlflow_run(tmp_path, mlflow_uri):
    import mlflow

    from tasks.pretrain import run_pretrain

    tokens = make_generated_token_dataset(tmp_path / "tokenize")
    cfg = {**MICRO, "max_steps": 4, "eval_every": 4, "checkpoint_every": 0, "device_batch_size": 4,
           "nproc_per_node": 2}
    exp = mlflow.create_experiment("pretrain-task-test", artifact_location=(tmp_path / "artifacts").as_uri())
    run = mlflow.MlflowClient().create_run(exp)
    summary = run_pretrain(str(tokens), str(tmp_path / "out"), cfg, mlflow_run_id=run.info.run_id,
                           tracking_uri=mlflow_uri)
    assert summary["status"] == "completed" and summary["world_size"] == 2 and summary["step"] == 4
    client = mlflow.MlflowClient()
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")] == [1, 2, 3, 4]
    assert client.get_run(run.info.run_id).data.params["world_size"] == "2"
    assert (tmp_path / "out" / "final" / "model.safetensors").exists()
