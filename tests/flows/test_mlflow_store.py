"""A new sqlite MLflow store is a copy of one empty, migrated store made once per process
(MLflow's migrations cost 5-8 s per store on a busy 2-core machine; a copy 0.1 s). Real MLflow."""
from __future__ import annotations

from flows import runtime


def test_new_stores_are_independent_full_stores_and_migrate_once(tmp_path, monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    a, b = (runtime.tracking_uri(tmp_path / name) for name in ("a", "b"))
    assert a == f"sqlite:///{tmp_path}/a/mlflow.db" and b == f"sqlite:///{tmp_path}/b/mlflow.db"
    empty = runtime._empty_store()
    stamp = empty.stat().st_mtime_ns

    ca, cb = MlflowClient(a), MlflowClient(b)
    exp = ca.create_experiment("only-in-a")
    ca.create_run(exp)
    ca.create_registered_model("only-in-a")  # the registry tables come with the copy
    assert [e.name for e in cb.search_experiments()] == ["Default"]
    assert not cb.search_registered_models()
    cb.create_registered_model("in-b")
    # a third store is again empty: nothing written above reached the template
    c = MlflowClient(runtime.tracking_uri(tmp_path / "c"))
    assert [e.name for e in c.search_experiments()] == ["Default"] and not c.search_registered_models()
    assert runtime._empty_store() == empty and empty.stat().st_mtime_ns == stamp
    assert not list(tmp_path.rglob("*.tmp-*"))
    # an existing store is left as it is
    assert runtime.tracking_uri(tmp_path / "a") == a and ca.get_experiment_by_name("only-in-a")
