"""A new sqlite MLflow store is a copy of one empty, migrated store made once per machine and
MLflow version (MLflow's migrations cost 1.4 s per process idle, 5-8 s on a busy 2-core machine;
a copy a few ms), its Default experiment's artifacts beside it. Real MLflow, real subprocesses."""
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


def test_a_new_stores_default_experiment_keeps_artifacts_beside_it(tmp_path, monkeypatch):
    """MLflow's Default experiment pointed at ./mlruns of the directory the first store was made
    in: a user logging to it wrote into whatever directory that was."""
    from mlflow import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    uri = runtime.tracking_uri(tmp_path / "root")
    client = MlflowClient(uri)
    assert client.get_experiment("0").artifact_location == (tmp_path / "root" / "mlartifacts" / "0").as_uri()
    run = client.create_run("0")
    client.log_text(run.info.run_id, "x", "note.txt")
    assert (tmp_path / "root" / "mlartifacts" / "0").is_dir() and not (tmp_path / "mlruns").exists()


_MAKE_STORE = """
import logging
import sys
logging.basicConfig(level=logging.INFO)
from flows import runtime
runtime.tracking_uri(sys.argv[1])
"""


def test_the_empty_store_is_migrated_once_per_machine(tmp_path):
    """The first process on a machine builds the template under $XDG_CACHE_HOME/crawl2chat; the
    next ones copy it (MLflow's migrations: 1.4 s per process idle, 5-8 s on a busy box). A cache
    that cannot be written leaves each process its own template."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "PYTHONPATH": str(runtime.REPO_ROOT)}
    env.pop("MLFLOW_TRACKING_URI", None)

    def make(root: str, cache_env=env) -> str:
        r = subprocess.run([sys.executable, "-c", _MAKE_STORE, str(tmp_path / root)], env=cache_env,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        assert (tmp_path / root / "mlflow.db").exists()
        return r.stderr

    first = make("a")
    (template,) = (tmp_path / "cache" / "crawl2chat").glob("mlflow-*-empty.db")
    stamp = template.stat().st_mtime_ns
    assert "building an empty MLflow store" in first
    second = make("b")
    assert "Creating initial MLflow database tables" not in second and "building" not in second
    assert template.stat().st_mtime_ns == stamp
    assert not list((tmp_path / "cache" / "crawl2chat").glob("c2c-mlflow-db-*"))  # no build folder left

    (tmp_path / "not-a-folder").write_text("")
    third = make("c", {**env, "XDG_CACHE_HOME": str(tmp_path / "not-a-folder")})
    assert "no MLflow store template in the cache" in third
