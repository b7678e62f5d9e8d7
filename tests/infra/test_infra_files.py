"""infra/ files parse and agree with the code (no Docker engine or cluster here).

Checks: every YAML parses; the image installs this project; ports and
environment variable names in compose/Ray/KubeRay files match
crawl2chat/services.py and flows/runtime.py; the deployments the README and
compose worker rely on exist in flows/deployments.py.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml

from crawl2chat import services
from flows import runtime

INFRA = Path(__file__).resolve().parents[2] / "infra"
COMPOSE = INFRA / "docker-compose.yml"


def _load(name: str) -> list:
    return [d for d in yaml.safe_load_all((INFRA / name).read_text()) if d is not None]


@pytest.fixture(scope="module")
def compose() -> dict:
    return _load("docker-compose.yml")[0]


def test_every_yaml_parses():
    files = sorted(INFRA.glob("*.y*ml"))
    assert {f.name for f in files} >= {"docker-compose.yml", "ray-cluster.yaml", "kuberay-raycluster.yaml"}
    for f in files:
        docs = _load(f.name)
        assert docs and all(isinstance(d, dict) for d in docs), f


def test_dockerfile_installs_the_project():
    text = (INFRA / "Dockerfile").read_text()
    assert re.search(r"^COPY \. \.", text, re.M), "the image must copy the project source"
    assert re.search(r"pip install -e \"?\.", text), "the image must pip-install the project"
    assert "FROM python:3.11" in text  # pyproject: requires-python >= 3.11
    ignore = (INFRA / "Dockerfile.dockerignore").read_text().split()
    assert ".venv" in ignore and ".git" in ignore


def test_compose_services_and_ports_match_the_code(compose):
    svc = compose["services"]
    assert {"prefect-server", "prefect-db", "mlflow", "mlflow-db", "minio", "ray-head", "ray-worker",
            "prefect-worker"} <= set(svc)
    ports = services.DEFAULT_PORTS

    def published(name):
        return {int(p.split(":")[-1]) for p in svc[name].get("ports", [])}

    assert ports["prefect"] in published("prefect-server")
    assert ports["mlflow"] in published("mlflow")
    assert {ports["ray"], ports["ray_dashboard"]} <= published("ray-head")
    for name, s in svc.items():
        for p in s.get("ports", []):
            assert p.startswith("127.0.0.1:"), f"{name} publishes {p} beyond loopback"
    # The images of Prefect and Ray must match the versions the project pins.
    import prefect
    import ray

    assert svc["prefect-server"]["image"].split(":")[1].startswith(prefect.__version__)
    assert f"--port {ports['prefect']}" in svc["prefect-server"]["command"]
    assert f"--port {ports['ray']}" in svc["ray-head"]["command"]
    kuberay = _load("kuberay-raycluster.yaml")[0]
    assert kuberay["spec"]["rayVersion"] == ray.__version__


def test_compose_env_switches_the_project_onto_the_services(compose):
    svc = compose["services"]
    for name in ("prefect-worker", "ray-head", "ray-worker", "mlflow"):
        env = svc[name]["environment"]
        for var in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI", "RAY_ADDRESS"):
            assert var in env, (name, var)
        assert env["PREFECT_API_URL"] == f"http://prefect-server:{services.DEFAULT_PORTS['prefect']}/api"
        assert env["MLFLOW_TRACKING_URI"] == f"http://mlflow:{services.DEFAULT_PORTS['mlflow']}"
        assert env["RAY_ADDRESS"] == f"ray-head:{services.DEFAULT_PORTS['ray']}"
        # S3 (MinIO) for MLflow artifacts: the variables flows/runtime.py forwards to Ray workers
        for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL"):
            assert var in runtime._PROPAGATED_ENV and var in env, var
        assert env["AWS_ACCESS_KEY_ID"] == svc["minio"]["environment"]["MINIO_ROOT_USER"]
        assert env["AWS_SECRET_ACCESS_KEY"] == svc["minio"]["environment"]["MINIO_ROOT_PASSWORD"]
    assert "s3://mlflow" in svc["mlflow"]["command"]
    assert "mc mb --ignore-existing local/mlflow" in svc["minio-init"]["entrypoint"]
    assert "postgresql" in svc["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    assert "postgresql://" in svc["mlflow"]["command"]
    # the services the project image runs are built from infra/Dockerfile
    assert svc["mlflow"]["build"]["dockerfile"] == "infra/Dockerfile"


def test_compose_worker_registers_existing_deployments(compose):
    from flows import deployments

    cmd = compose["services"]["prefect-worker"]["command"]
    pool = re.search(r"crawl2chat deploy --work-pool (\S+)", cmd).group(1)
    assert f"--pool {pool}" in cmd and f"work-pool create {pool}" in cmd
    names = deployments.deployment_names()
    assert "llm-pipeline/tiny" in names
    readme = (INFRA / "README.md").read_text()
    for used in re.findall(r"deployment run '([^']+)'", readme):
        assert used in names, f"infra/README.md runs {used!r}, not a deployment in flows/deployments.py"


def test_ray_configs_use_the_code_ports_and_env():
    ports = services.DEFAULT_PORTS
    cluster = _load("ray-cluster.yaml")[0]
    assert cluster["docker"]["image"] == "crawl2chat:latest"
    head = " ".join(cluster["head_start_ray_commands"])
    assert f"--port={ports['ray']}" in head and f"--dashboard-port={ports['ray_dashboard']}" in head
    assert f":{ports['ray']}" in " ".join(cluster["worker_start_ray_commands"])
    forwarded = {o.split()[-1] for o in cluster["docker"]["run_options"] if o.startswith("-e ")}
    assert {"PREFECT_API_URL", "MLFLOW_TRACKING_URI"} <= forwarded <= set(runtime._PROPAGATED_ENV)

    kuberay, configmap, secret = _load("kuberay-raycluster.yaml")
    assert kuberay["kind"] == "RayCluster" and kuberay["apiVersion"] == "ray.io/v1"
    head = kuberay["spec"]["headGroupSpec"]
    assert head["rayStartParams"]["port"] == str(ports["ray"])
    assert head["template"]["spec"]["containers"][0]["image"] == "crawl2chat:latest"
    for var in configmap["data"]:
        assert var in runtime._PROPAGATED_ENV or var.startswith("RAY_"), var
    assert set(secret["stringData"]) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}


def test_readme_documents_the_env_and_torchrun():
    readme = (INFRA / "README.md").read_text()
    for var in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI", "RAY_ADDRESS", "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY", "MLFLOW_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL"):
        assert var in readme
    assert "torchrun --nnodes" in readme and "--rdzv-endpoint" in readme
    for f in ("docker-compose.yml", "ray-cluster.yaml", "kuberay-raycluster.yaml"):
        assert f in readme


def test_local_services_env_names_match_runtime(tmp_path, monkeypatch):
    """`crawl2chat up`'s env.sh, once sourced, is what flows/runtime.py acts on: the MLflow store,
    the Ray cluster and the Prefect UI come from its variables, and Ray workers are handed them."""
    s = services.Settings(state_dir=tmp_path)
    exported = dict(re.findall(r"^export (\w+)=(.*)$", services.write_env_file(tmp_path, s).read_text(), re.M))
    assert {k: exported.get(k) for k in s.client_env()} == s.client_env()
    assert s.prefect_api_url == f"http://127.0.0.1:{services.DEFAULT_PORTS['prefect']}/api"
    assert s.ray_address == f"127.0.0.1:{services.DEFAULT_PORTS['ray']}"
    # As a shell that sourced env.sh (and nothing else that would win: an explicit UI URL, an embedded API).
    for var in ("PREFECT_UI_URL", runtime.EMBEDDED_API_ENV):
        monkeypatch.delenv(var, raising=False)
    for var in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI", "RAY_ADDRESS"):
        monkeypatch.setenv(var, exported[var])
    assert runtime.tracking_uri(tmp_path / "runs") == s.mlflow_url
    assert not (tmp_path / "runs").exists()  # no local sqlite store made beside the server
    assert runtime.ray_address() == s.ray_address
    assert runtime.prefect_ui_url() == s.prefect_api_url.removesuffix("/api")
    # ray_init_kwargs flips Ray's local-only switch for a loopback address: put it back after the test.
    monkeypatch.delenv(runtime._RAY_CLUSTERS_ENV, raising=False)
    constants = sys.modules.get("ray._private.ray_constants")
    if constants is not None:
        monkeypatch.setattr(constants, "ENABLE_RAY_CLUSTER", constants.ENABLE_RAY_CLUSTER)
    forwarded = runtime.ray_init_kwargs(runtime.ray_address())["runtime_env"]["env_vars"]
    assert forwarded["PREFECT_API_URL"] == s.prefect_api_url and forwarded["MLFLOW_TRACKING_URI"] == s.mlflow_url
