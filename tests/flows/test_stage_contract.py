"""The stage contract (docs/CONTRACTS.md): a stage is complete only when its manifest is written,
last — after training, the MLflow run and the model registration.

Seam: the post-training task wrote manifest.json before the flow registered the model; when
registration failed, a valid manifest stayed behind and the pipeline skipped the stage on every
later run, so the model was never registered. Real MLflow store (sqlite), real training of a
GENERATED tiny base model (tests/support/posttrain_base.py).
"""
from __future__ import annotations

import pytest

from tests.support.posttrain_base import tiny_base


SFT = {"steps": 2, "batch_size": 4, "max_per_source": 20, "n_identity": 5, "n_arithmetic": 10, "eval_every": 2,
       "eval_batches": 1, "checkpoint_every": 1000}


def test_failed_registration_leaves_no_manifest(tmp_path, mlflow_uri):
    from conf import load
    from conf.posttrain import SFTConfig
    from core.run_root import read_manifest, write_manifest
    from flows._stage import tracked_stage
    from flows.pipeline import stage
    from tasks.posttrain import run_sft

    base, out = str(tiny_base()), tmp_path / "sft"
    write_manifest(out, {"stage": "sft", "checkpoint": "from-an-earlier-run"})  # stale, must not survive
    cfg = load(SFTConfig, None, SFT)
    with pytest.raises(Exception, match="(?i)name"):
        # An empty model name: the registry refuses it after training has finished.
        tracked_stage("sft", "", str(out), str(tmp_path), cfg, None, {"parent_model": base}, [],
                      lambda log_fn: run_sft(base, str(out), cfg, log_fn), [])
    assert (out / "final" / "config.json").exists()  # the training is kept: a re-run resumes, cheaply
    assert read_manifest(out) is None
    assert not stage("sft").done(tmp_path)  # so the pipeline runs the stage again

    m = tracked_stage("sft", "crawl2chat-sft", str(out), str(tmp_path), cfg, None, {"parent_model": base}, [],
                      lambda log_fn: run_sft(base, str(out), cfg, log_fn), [])
    assert read_manifest(out)["model_uri"] == m["model_uri"] == "models:/crawl2chat-sft@current"
    assert stage("sft").done(tmp_path)
