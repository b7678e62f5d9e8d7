"""One curate run over every real sample WARC (data/samples), shared by the whole test run.

The curate flow module and the two-node Ray test both need exactly this run (the default
config, the session's local Ray, MLflow on sqlite under the output root); under xdist the
first worker that asks builds it under a lock in the run's shared folder, the other reuses
it (tests/support/shared.py). Nothing writes into it but a re-run that must change nothing
(test_curate_flow's skip check).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "data" / "samples"


def sample_inputs() -> list[str]:
    """Every sample, the WET file included (flows/pipeline.sample_inputs, the pipeline's default,
    takes the .warc.gz files only): curate must read both kinds."""
    return [str(p) for p in sorted(SAMPLES.glob("*.warc*.gz"))]


def sample_curation(tmp_path_factory) -> tuple[Path, dict]:
    """(output root, run_curate's summary) of the shared run; needs `prefect_api` and `ray_cluster`."""
    from conf.curate import CurateConfig
    from flows.curate import run_curate
    from tests.support.shared import built_once, shared_root

    with built_once(shared_root(tmp_path_factory), "curate-samples") as out:
        summary_file = out.parent / "curate-samples.summary.json"
        if not summary_file.exists():
            os.environ.pop("MLFLOW_TRACKING_URI", None)
            summary = run_curate(sample_inputs(), out, CurateConfig())
            summary_file.write_text(json.dumps(summary))
        return out, json.loads(summary_file.read_text())
