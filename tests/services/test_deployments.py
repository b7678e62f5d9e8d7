"""flows/deployments.py against a real Prefect API: the named deployments exist for
the flows that exist, and `crawl2chat deploy --work-pool` registers them on a
process work pool with entrypoints a worker can import."""
from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from flows import deployments, pipeline


@pytest.fixture(autouse=True, scope="module")
def _runs_dir(tmp_path_factory):
    """Deployment parameters name the runs folder, and building them makes the curate
    deployments' GENERATED input there: this module's go under its own temp folder, not ./runs."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CRAWL2CHAT_RUNS_DIR", str(tmp_path_factory.mktemp("runs")))
        yield


def test_deployment_names_cover_every_flow():
    names = deployments.deployment_names()
    assert len(names) == len(set(names))
    assert "llm-pipeline/tiny" in names
    for st in pipeline.STAGES:
        assert f"{st.flow_name}/tiny" in names, st.name
        assert st.flow().name == st.flow_name  # the table's name is the @flow's name
    assert "curate/default" in names and "tokenize/default" in names and "pretrain/gpt2" in names


def test_ray_stage_entrypoints_carry_the_ray_task_runner():
    from prefect_ray import RayTaskRunner

    for spec in deployments.specs():
        if spec["entrypoint"] and spec["entrypoint"].startswith("flows.deployments."):
            mod, attr = spec["entrypoint"].rsplit(".", 1)
            f = getattr(importlib.import_module(mod), attr)
            assert f.name == spec["flow"] and isinstance(f.task_runner, RayTaskRunner), spec["entrypoint"]


def test_apply_to_work_pool(prefect_api, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

    with get_client(sync_client=True) as c:
        c.create_work_pool(WorkPoolCreate(name="c2c-test-pool", type="process"))
    names = deployments.apply_to_pool("c2c-test-pool", tmp_path)
    assert set(names) == set(deployments.deployment_names())
    with get_client(sync_client=True) as c:
        deps = {f"{c.read_flow(d.flow_id).name}/{d.name}": d for d in c.read_deployments()}
    pipe = deps["llm-pipeline/tiny"]
    assert pipe.work_pool_name == "c2c-test-pool" and pipe.path == str(tmp_path)
    assert pipe.parameters == {"preset": "tiny"} and pipe.entrypoint == "flows.pipeline.llm_pipeline"
    cur = deps["curate/default"]
    assert cur.entrypoint == "flows.deployments.curate_flow"
    assert cur.parameters["inputs"] and cur.parameters["out"].endswith("llm-pipeline-tiny/curate")
    runs = pipeline.runs_dir()
    assert cur.parameters["out"].startswith(str(runs))  # $CRAWL2CHAT_RUNS_DIR decides where deployments write
    made = [p for p in cur.parameters["inputs"] if p.startswith(str(runs))]
    assert len(made) == 1 and made[0].endswith(".warc.gz") and Path(made[0]).exists()  # the GENERATED input, built
