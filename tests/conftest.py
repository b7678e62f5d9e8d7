"""Session fixtures that start REAL services: a Prefect API server, a local Ray
instance and an sqlite MLflow store. Nothing here is mocked."""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "data"  # real sample data shipped in the repo (data/README.md, data/PROVENANCE.md)
SAMPLES = DATA / "samples"

# Keep Prefect state out of ~/.prefect and off the network before prefect imports.
_PREFECT_HOME = tempfile.mkdtemp(prefix="c2c-prefect-home-")
os.environ.setdefault("PREFECT_HOME", _PREFECT_HOME)
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.pop("MLFLOW_TRACKING_URI", None)
os.environ.pop("RAY_ADDRESS", None)
# Under pytest-xdist the cores are shared out among the workers, before torch is imported, for the
# torch work of a test and of the pipelines it starts (subprocesses inherit this). torch runs one
# OpenMP thread per core, and OpenMP threads spin while they wait for each other: with a second
# process busy on a 2-core box, a thread waits a whole time slice per tiny op. Measured with one
# CPU hog beside the end-to-end pipeline: 762 s with torch's default (evaluate alone 531 s),
# 123 s with 1 thread; tests/lm on two workers: 78 s → 61 s.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1)
                                                     // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))))


@pytest.fixture(scope="session")
def repo_data() -> Path:
    """The repo's data/ folder: the real text, langid, blocklist, SFT, prefs and GSM8K files."""
    missing = [p for p in ("text", "langid", "blocklists", "samples") if not (DATA / p).is_dir()]
    if missing:
        pytest.fail(f"real sample data missing under {DATA}: {missing} (see data/README.md)")
    return DATA


def _owner_pid() -> int:
    """The pytest process that owns this run: xdist's controller for a worker, else this one."""
    return os.getppid() if os.environ.get("PYTEST_XDIST_WORKER") else os.getpid()


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory):
    """A real Prefect API server (subprocess, sqlite) for the whole run, shared by all workers.

    The first process that needs it starts it (tests/support/shared.py); its URL is
    exported as PREFECT_API_URL so Ray workers and subprocesses report to the same server.
    """
    import prefect.context
    import prefect.settings

    from tests.support.shared import prefect_server, shared_root

    url = prefect_server(shared_root(tmp_path_factory), _owner_pid())
    old = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = url
    try:
        with prefect.settings.temporary_settings(updates={prefect.settings.PREFECT_API_URL: url}), \
                prefect.context._temporary_global_settings_context(prefect.context.get_settings_context()):
            yield url
            _drain_prefect_logs()
    finally:
        if old is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = old


def _drain_prefect_logs() -> None:
    """Send this process's queued Prefect logs and events before the session ends (as the harness does)."""
    import inspect

    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.utilities.asyncutils import run_coro_as_sync

    async def drain():
        try:
            result = APILogWorker.instance().drain()
            if inspect.isawaitable(result):
                await result
        except RuntimeError:
            pass
        result = EventsWorker.drain_all()
        if inspect.isawaitable(result):
            await result

    run_coro_as_sync(drain())


# What a run writes into the working directory when nobody gave it a root: MLflow's ./mlruns
# (artifacts of an experiment made without a location) and ./mlflow.db, crawl2chat's default run
# root ./runs and `up`'s state folder ./.crawl2chat. No command writes into the current directory
# unless told to (docs/CONTRACTS.md), and a test tells it to write under tmp_path: the suite
# runs from the repository, so whatever forgets its root shows up here and fails the run.
_STRAYS = ("mlruns", "mlflow.db", "mlartifacts", "runs", ".crawl2chat")
_SESSION_START = time.time()


def _written_since(path: Path, since: float) -> bool:
    if not path.exists():
        return False
    if path.is_file():
        return path.stat().st_mtime >= since
    return any(Path(d).stat().st_mtime >= since for d, _, _ in os.walk(path))  # a new entry touches its folder


def pytest_sessionfinish(session, exitstatus):
    """Fail the run when tests wrote a run, store or state folder into the repository or the working directory."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return
    where = {REPO, Path(session.config.invocation_params.dir)}
    strays = sorted(str(d / n) for d in where for n in _STRAYS if _written_since(d / n, _SESSION_START))
    if strays:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.ensure_newline()
            reporter.write_line(f"tests wrote into the working directory: {', '.join(strays)} "
                                "(give the run, store or experiment a root under tmp_path)", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_unconfigure(config):
    """The run's owner stops the shared Prefect API server (workers leave it to the owner)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return
    factory = getattr(config, "_tmp_path_factory", None)
    if factory is None or getattr(factory, "_basetemp", None) is None:
        return
    from tests.support.shared import stop_prefect_server

    stop_prefect_server(factory.getbasetemp())


def _ray_init() -> None:
    import ray

    from flows.runtime import ray_init_kwargs

    kwargs = ray_init_kwargs(None, num_cpus=2)
    kwargs["object_store_memory"] = 1 << 30
    ray.init(**kwargs)


@pytest.fixture(scope="session")
def ray_cluster(prefect_api):
    """A real local Ray instance with 2 CPUs, sharing the session's Prefect API.

    Session-scoped. A test that must shut it down (the two-node cluster test)
    calls `restart_local_ray()` when done, so later tests find it running.
    """
    import ray

    if not ray.is_initialized():
        _ray_init()
    yield ray
    if ray.is_initialized():
        ray.shutdown()


def restart_local_ray() -> None:
    """Bring the session's local Ray instance back after a test replaced it."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    _ray_init()


@pytest.fixture()
def mlflow_uri(tmp_path, monkeypatch) -> str:
    """A fresh sqlite MLflow store for one test, exported as MLFLOW_TRACKING_URI."""
    import mlflow

    from flows.runtime import _create_sqlite_store

    _create_sqlite_store(tmp_path / "mlflow.db")  # a copy of one migrated empty store: 0.1 s, not MLflow's 5-8 s
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    yield uri
    while mlflow.active_run():
        mlflow.end_run()


@pytest.fixture(scope="module")
def s3_server():
    """A local S3 API (moto's server on 127.0.0.1) with the AWS variables pointing at it.

    s3fs/botocore talk HTTP to it exactly as to AWS or MinIO: what runs is our
    s3:// path (fsspec URL → s3fs → signed requests), not a patched client.
    Yields a boto3 client for uploading fixtures. The variables are restored
    afterwards.
    """
    import boto3
    from moto.server import ThreadedMotoServer
    from s3fs import S3FileSystem

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "test-key",
           "AWS_SECRET_ACCESS_KEY": "test-secret", "AWS_DEFAULT_REGION": "us-east-1"}
    # fsspec caches filesystem instances by their arguments, not by the endpoint
    # in the environment: forget any made for an earlier server.
    S3FileSystem.clear_instance_cache()
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        yield boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1")
    S3FileSystem.clear_instance_cache()
    server.stop()


# ---- how `make test` spreads the tests over pytest-xdist workers (--dist loadscope)
def pytest_collection_modifyitems(config, items):
    """Start the long tests first.

    `make test` hands out whole modules (xdist's loadscope), so a module-scoped
    fixture (a curate run, the end-to-end pipeline on `crawl2chat up` services) is
    built once. With --no-loadscope-reorder xdist hands modules out in the order of
    their first test here, two per worker, then one as each finishes: a module
    holding a `slow` test goes first, so the run does not end waiting on one long
    test on one worker while the other idles. (xdist's `loadgroup` would allow
    finer units, but it renames `item._nodeid`, which pytest 9 no longer reads.)
    Without xdist this only reorders the run.
    """
    slow = {i.nodeid.split("::", 1)[0] for i in items if i.get_closest_marker("slow")}
    items.sort(key=lambda i: i.nodeid.split("::", 1)[0] not in slow)  # stable: collection order within
