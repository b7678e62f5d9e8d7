"""Shared wiring for every flow: Prefect API, Ray, MLflow.

Embedded defaults when nothing is configured (see docs/DESIGN.md, "Pitfalls"):
- Prefect: a real local API server for this process (Ray workers must report
  to the same API; without one each worker would start its own ephemeral
  server on the same sqlite file and lock it).
- Ray: a local instance sized to this machine, unless `RAY_ADDRESS`/config says
  where a cluster is.
- MLflow: `sqlite:///<abs run root>/mlflow.db`, unless `MLFLOW_TRACKING_URI`.
  Inside `tracking_context(uri, parent_run_id)` (the pipeline's), every stage run
  goes to that store, nested under that run: explicit state in a context
  variable, never written to `os.environ` (which stays the user's configuration).

Scale-out is configuration only: `PREFECT_API_URL`, `RAY_ADDRESS`,
`MLFLOW_TRACKING_URI` (+ S3 credentials for s3:// inputs and artifacts).
"""
from __future__ import annotations

import atexit
import json
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import closing, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.cache import cache_dir, sqlite_template
from core.telemetry import disable_telemetry

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
EXPERIMENT = "crawl2chat"
# Variables a Ray worker needs to reach the same services as the driver.
_PROPAGATED_ENV = (
    "PREFECT_API_URL", "PREFECT_HOME", "PREFECT_SERVER_ANALYTICS_ENABLED", "PREFECT_LOGGING_LEVEL",
    "MLFLOW_TRACKING_URI", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE",
    "MLFLOW_S3_ENDPOINT_URL", "CRAWL2CHAT_EXPERIMENT", "CRAWL2CHAT_EMBEDDED_PREFECT_API",
)
# Set to the API URL of the Prefect server ensure_prefect_api started in this
# process: Prefect's embedded server serves no UI, so its runs have no UI link.
EMBEDDED_API_ENV = "CRAWL2CHAT_EMBEDDED_PREFECT_API"


# ----------------------------------------------------------------- Prefect
def ensure_prefect_api(timeout: int = 90) -> str:
    """Return the Prefect API URL, starting a local server for this process if none is set."""
    import prefect.settings

    url = os.environ.get("PREFECT_API_URL") or prefect.settings.PREFECT_API_URL.value()
    if url:
        os.environ["PREFECT_API_URL"] = url
        return url
    from prefect.server.api.server import SubprocessASGIServer

    disable_telemetry()  # the server subprocess inherits this environment
    # The None-keyed instance is the one Prefect's own ephemeral client uses, so
    # the driver and the Ray workers (via PREFECT_API_URL) share one server.
    server = SubprocessASGIServer()
    if not server.running:
        from flows.prefect_db import default_db, seed

        seed(default_db())  # a new store starts as a copy of a migrated one (flows/prefect_db.py)
        log.info("starting a local Prefect API server")
        server.start(timeout=timeout)
    os.environ["PREFECT_API_URL"] = server.api_url
    os.environ[EMBEDDED_API_ENV] = server.api_url
    return server.api_url


def prefect_ui_url() -> str | None:
    """Base URL of the Prefect UI for the configured API, or None when there is none.

    PREFECT_UI_URL if set, else the API URL without its `/api` suffix (what
    `prefect server start` serves). Prefect's own `flow_run.ui_url` reads settings
    frozen before ensure_prefect_api set the URL, and gives "None/flow-runs/…".
    The embedded server this process started serves no UI: None.
    """
    ui = os.environ.get("PREFECT_UI_URL")
    if ui:
        return ui.rstrip("/")
    api = (os.environ.get("PREFECT_API_URL") or "").rstrip("/")
    if not api.startswith("http") or api == (os.environ.get(EMBEDDED_API_ENV) or "").rstrip("/"):
        return None
    return api[:-len("/api")] if api.endswith("/api") else api


def flow_run_info() -> dict[str, str]:
    """Id, name and (when a UI serves it) UI URL of the current Prefect flow run ({} outside a flow)."""
    try:
        from prefect.runtime import flow_run

        run_id = flow_run.id
        if not run_id:
            return {}
        info = {"prefect_flow_run_id": str(run_id), "prefect_flow_run_name": str(flow_run.name or "")}
        ui = prefect_ui_url()
        if ui:
            info["prefect_flow_run_url"] = f"{ui}/flow-runs/flow-run/{run_id}"
        return info
    except Exception:  # runtime info is best-effort metadata
        return {}


def artifact_key(text: str) -> str:
    """Prefect artifact keys: lowercase letters, digits and dashes only."""
    out = "".join(c if c.isalnum() else "-" for c in text.lower())
    return "-".join(p for p in out.split("-") if p)[:100] or "artifact"


def publish_markdown(key: str, markdown: str, description: str | None = None) -> None:
    """Attach a markdown artifact to the current flow run (no-op outside a run)."""
    try:
        from prefect.artifacts import create_markdown_artifact

        create_markdown_artifact(key=artifact_key(key), markdown=markdown, description=description)
    except Exception as e:  # artifacts are a view; never fail a run over one
        log.warning("could not publish markdown artifact %s: %s", key, e)


def publish_table(key: str, rows: list[dict[str, Any]], description: str | None = None) -> None:
    try:
        from prefect.artifacts import create_table_artifact

        create_table_artifact(key=artifact_key(key), table=rows, description=description)
    except Exception as e:
        log.warning("could not publish table artifact %s: %s", key, e)


def publish_link(key: str, link: str, text: str | None = None, description: str | None = None) -> None:
    try:
        from prefect.artifacts import create_link_artifact

        create_link_artifact(key=artifact_key(key), link=link, link_text=text, description=description)
    except Exception as e:
        log.warning("could not publish link artifact %s: %s", key, e)


# --------------------------------------------------------------------- Ray
def ray_address(explicit: str | None = None) -> str | None:
    """The Ray cluster to use: explicit > $RAY_ADDRESS > None (local)."""
    return explicit or os.environ.get("RAY_ADDRESS") or None


def ray_init_kwargs(address: str | None, num_cpus: int | None = None) -> dict[str, Any]:
    env = {k: os.environ[k] for k in _PROPAGATED_ENV if os.environ.get(k)}
    kwargs: dict[str, Any] = {"runtime_env": {"env_vars": env}, "include_dashboard": False,
                              "log_to_driver": True}
    if not address:
        kwargs["num_cpus"] = num_cpus or os.cpu_count() or 1
        # Ray's default object store takes 30% of RAM; our tasks pass paths.
        kwargs["object_store_memory"] = 1 << 30
        kwargs["_node_ip_address"] = "127.0.0.1"
    # A cluster on this machine's loopback (`crawl2chat up`, a second driver) is local too.
    _ray_local_only(not address or address.rsplit(":", 1)[0] in ("127.0.0.1", "localhost", "[::1]"))
    _ray_plain_logs()
    return kwargs


def _ray_plain_logs() -> None:
    """Worker output echoed by the driver as plain lines: no "[repeated 7x across cluster]"
    notices and no ANSI colours in the logs a run leaves (terminal, runner log, Prefect).

    Ray reads RAY_DEDUP_LOGS when it loads (then the module global decides) and
    RAY_COLOR_PREFIX at each print; the user's own setting wins.
    """
    os.environ.setdefault("RAY_COLOR_PREFIX", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    dedup = os.environ["RAY_DEDUP_LOGS"].lower() not in ("0", "false")
    for name in ("ray._private.ray_logging", "ray._private.ray_constants"):
        mod = sys.modules.get(name)
        if mod is not None and hasattr(mod, "RAY_DEDUP_LOGS"):
            mod.RAY_DEDUP_LOGS = dedup


_RAY_CLUSTERS_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # read by ray._private.ray_constants at import


def _ray_local_only(local: bool) -> None:
    """Make a local Ray instance listen on 127.0.0.1 only (GCS, raylet, agents, workers, driver).

    On Linux Ray turns "127.0.0.1" into the machine's external address, so that
    other hosts can join, and its gRPC servers listen on every interface. It keeps
    loopback only where it thinks clusters are unsupported (its macOS/Windows
    default): say so for a local instance, and undo it before joining a cluster.
    The same switch keeps a driver's "127.0.0.1:port" address from being rewritten
    to the external one, which a loopback-only instance does not answer.
    Ray is not imported here: prefect_ray holds it as a lazy module, and importing
    a submodule of that half-loads Ray. If Ray is loaded, patch its constant;
    if not, the variable sets it when Ray loads. (Child processes inherit the
    variable: a `ray start --address` run from them must drop it, see services.)
    """
    constants = sys.modules.get("ray._private.ray_constants")
    if constants is not None:
        constants.ENABLE_RAY_CLUSTER = not local
    elif local:
        os.environ[_RAY_CLUSTERS_ENV] = "0"
    if not local and os.environ.get(_RAY_CLUSTERS_ENV) == "0":
        del os.environ[_RAY_CLUSTERS_ENV]


def ray_runner(address: str | None = None, num_cpus: int | None = None):
    """A RayTaskRunner for the configured cluster (Prefect API ensured first)."""
    from prefect_ray import RayTaskRunner

    ensure_prefect_api()
    address = ray_address(address)
    return RayTaskRunner(address=address, init_kwargs=ray_init_kwargs(address, num_cpus))


# ------------------------------------------------------------------ MLflow
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"  # the user's configuration: read, never written


@dataclass(frozen=True)
class Tracking:
    """Where the stage runs started in a context log: one store, nested under one parent run."""

    uri: str
    parent_run_id: str | None = None


# A context variable, not os.environ: it belongs to one thread/task (a pipeline in one
# thread cannot redirect a stage in another), and Prefect copies the caller's context
# into subflows and into the threads its tasks run in.
_TRACKING: ContextVar[Tracking | None] = ContextVar("crawl2chat_tracking", default=None)


def current_tracking() -> Tracking | None:
    """The innermost `tracking_context`, or None outside one."""
    return _TRACKING.get()


@contextmanager
def tracking_context(uri: str, parent_run_id: str | None = None) -> Iterator[Tracking]:
    """Send every `mlflow_run` started inside (this thread/task, its Prefect subflows) to `uri`,
    nested under `parent_run_id` when given."""
    token = _TRACKING.set(Tracking(uri, parent_run_id))
    try:
        yield _TRACKING.get()
    finally:
        _TRACKING.reset(token)


def tracking_uri(root: str | Path) -> str:
    """The enclosing tracking_context's store, else $MLFLOW_TRACKING_URI, else an sqlite store
    under the run root (absolute path)."""
    ctx = _TRACKING.get()
    if ctx is not None:
        return ctx.uri
    uri = os.environ.get(TRACKING_URI_ENV)
    if uri:
        return uri
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    _create_sqlite_store(root / "mlflow.db")
    return f"sqlite:///{root}/mlflow.db"


def _create_sqlite_store(db: Path) -> None:
    """Create a new sqlite store whole, or not at all: MLflow's table creation (migrations) killed
    half-way leaves a file no later run can open, so a copy of an empty store is renamed into place.

    The copy's Default experiment keeps its artifacts beside the store, as crawl2chat's own
    experiment does (`_artifact_location`): MLflow would put them under ./mlruns of whatever
    directory the store was first made in."""
    if db.exists():
        return
    tmp = db.with_name(f"{db.name}.tmp-{os.getpid()}")
    shutil.copyfile(_empty_store(), tmp)
    with closing(sqlite3.connect(tmp)) as c, c:
        c.execute("update experiments set artifact_location = ? where experiment_id = 0",
                  ((db.parent.resolve() / "mlartifacts" / "0").as_uri(),))
    os.replace(tmp, db)


_EMPTY_STORES: dict[str, Path] = {}
_EMPTY_STORES_LOCK = threading.Lock()

# Run in a subprocess: the process that migrates keeps MLflow's engine open on the file.
_MIGRATE_MLFLOW = "import sys\nfrom mlflow import MlflowClient\nMlflowClient(f'sqlite:///{sys.argv[1]}').search_experiments()\n"


def _empty_store() -> Path:
    """An empty, migrated sqlite store of this MLflow version, copied for each new store.

    MLflow's migrations (tracking + registry) take 1.4 s in an idle process and 5-8 s on a busy
    2-core machine; every process that made a store paid them: each `crawl2chat <stage>` on a
    new root, each re-run after a kill, each of the test suite's subprocesses. So the empty
    store is built once per machine and MLflow version under ~/.cache/crawl2chat/ (as
    flows/prefect_db.py does for Prefect's), and a copy takes a few ms. When the cache cannot be
    written, one is built per process in a temp folder. Never opened again after creation, so
    no run ever lands in it."""
    import mlflow

    with _EMPTY_STORES_LOCK:
        path = _EMPTY_STORES.get(mlflow.__version__)
        if path is None or not path.exists():
            try:
                path = _store_template(cache_dir() / f"mlflow-{mlflow.__version__}-empty.db")
            except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
                log.warning("no MLflow store template in the cache (%s); one for this process", exc)
                folder = Path(tempfile.mkdtemp(prefix="c2c-mlflow-empty-"))
                atexit.register(_remove_own, folder, os.getpid())
                path = _store_template(folder / "mlflow.db")
            _EMPTY_STORES[mlflow.__version__] = path
        return path


def _store_template(path: Path) -> Path:
    """Build the migrated empty store at `path` unless it is there (core/cache.py)."""
    env = {k: v for k, v in os.environ.items() if k != TRACKING_URI_ENV}
    return sqlite_template(path, _MIGRATE_MLFLOW, lambda db: env, "MLflow")


def _remove_own(folder: Path, pid: int) -> None:
    """At exit, remove `folder` only from the process that made it (a forked child shares the list)."""
    if os.getpid() == pid:
        shutil.rmtree(folder, ignore_errors=True)


# What MLflow's fluent set-up exports into os.environ (set_tracking_uri, set_experiment).
_MLFLOW_EXPORTS = (TRACKING_URI_ENV, "MLFLOW_EXPERIMENT_ID")
_MLFLOW_SETUP = threading.Lock()


@contextmanager
def _environment_untouched(names: tuple[str, ...] = _MLFLOW_EXPORTS) -> Iterator[None]:
    """Undo what MLflow exports while it is pointed at a store and an experiment.

    `mlflow.set_tracking_uri`/`set_experiment` export MLFLOW_TRACKING_URI/MLFLOW_EXPERIMENT_ID
    (for subprocesses). Left there, they read as the user's settings: every later
    stand-alone stage of this process would log to the first stage's store. The
    subprocesses that log get the URI explicitly (tasks/pretrain.py).
    """
    with _MLFLOW_SETUP:  # one thread at a time, so a snapshot never holds another's export
        before = {k: os.environ.get(k) for k in names}
        try:
            yield
        finally:
            for k, v in before.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def _artifact_location(uri: str) -> str | None:
    """Artifacts beside an sqlite store (not ./mlruns in the CWD); servers decide their own."""
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///"):])
        return (db.parent / "mlartifacts").resolve().as_uri()
    return None


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            s = json.dumps(v) if isinstance(v, (list, tuple)) else str(v)
            out[key] = s[:6000]  # MLflow's param value limit
    return out


def mlflow_run_url(run, uri: str = "") -> str | None:
    """The run's page in the MLflow UI ($MLFLOW_UI_URL, else an http tracking URI); None for a file store."""
    uri = os.environ.get("MLFLOW_UI_URL") or uri
    if uri.startswith("http"):
        return f"{uri.rstrip('/')}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
    return None


# ----------------------------------------------------- runs a kill left behind
# A SIGKILL leaves the MLflow run RUNNING and the Prefect flow run Running forever. The
# re-run of the same command (same `run_key`) finds them and says what happened: the
# dead run becomes KILLED, its Prefect flow run (and Running subflows) Crashed, and any
# model version it registered is deleted (its stage never finished). docs/CONTRACTS.md,
# "Tracking after a kill".
KEY_TAG, PID_TAG, HOST_TAG, PID_START_TAG = "run_key", "pid", "host", "pid_started"


def _process_identity() -> dict[str, str]:
    import socket

    ident = {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}
    try:
        import psutil

        ident[PID_START_TAG] = f"{psutil.Process().create_time():.2f}"
    except Exception:  # psutil is optional: the pid alone is checked then
        pass
    return ident


def _process_dead(tags: dict[str, str]) -> bool:
    """True when the run's recorded process is certainly gone (same host, pid dead or reused)."""
    import socket

    if tags.get(HOST_TAG) != socket.gethostname() or not tags.get(PID_TAG, "").isdigit():
        return False  # another machine's run: not ours to judge
    pid = int(tags[PID_TAG])
    if pid == os.getpid():
        return False
    try:
        import psutil
    except ImportError:
        try:
            os.kill(pid, 0)
            return False
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return True
        started = tags.get(PID_START_TAG)
        return bool(started) and f"{proc.create_time():.2f}" != started  # the pid was reused
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:  # access denied: alive as far as we can tell
        return False


def crash_prefect_flow_run(flow_run_id: str, message: str) -> None:
    """Set a flow run (and its Running subflows) Crashed, if it is still Running (best effort)."""
    try:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId
        from prefect.states import Crashed

        with get_client(sync_client=True) as client:
            todo = [flow_run_id]
            while todo:
                fid = todo.pop()
                fr = client.read_flow_run(fid)
                if fr.state is not None and fr.state.is_running():
                    client.set_flow_run_state(fid, Crashed(message=message), force=True)
                children = client.read_flow_runs(flow_run_filter=FlowRunFilter(
                    parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[fid])))
                todo += [str(c.id) for c in children if c.state is not None and c.state.is_running()]
    except Exception as e:  # the tracking of a dead process must never stop the re-run
        log.warning("could not mark Prefect flow run %s Crashed: %s", flow_run_id, e)


def crash_abandoned_flow_runs() -> list[str]:
    """Crash the Running flow runs of this flow with this flow run's very parameters (the same
    command), started before it: a kill can land before its MLflow run exists, so no
    `prefect_flow_run_id` tag leads to them. Two runs of one command at once (one output
    directory) are not supported; the newer one takes over. Best effort; returns their ids."""
    try:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import (FlowFilter, FlowFilterId, FlowRunFilter, FlowRunFilterState,
                                                    FlowRunFilterStateType)
        from prefect.client.schemas.objects import StateType
        from prefect.runtime import flow_run

        if not flow_run.id:
            return []
        with get_client(sync_client=True) as client:
            me = client.read_flow_run(flow_run.id)
            running = client.read_flow_runs(
                flow_filter=FlowFilter(id=FlowFilterId(any_=[me.flow_id])),
                flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(
                    any_=[StateType.RUNNING]))))
        stale = [str(r.id) for r in running if r.id != me.id and r.parameters == me.parameters
                 and (r.start_time or r.created) and me.start_time and (r.start_time or r.created) < me.start_time]
    except Exception as e:
        log.warning("could not look for abandoned Prefect flow runs: %s", e)
        return []
    for fid in stale:
        crash_prefect_flow_run(fid, "abandoned: a later run of the same command started (docs/CONTRACTS.md)")
    return stale


def delete_run_versions(client, run_id: str) -> list[str]:
    """Delete every model version registered from `run_id` (its stage did not finish); returns them."""
    gone = []
    try:
        for mv in client.search_model_versions(f"run_id='{run_id}'"):
            client.delete_model_version(mv.name, mv.version)
            gone.append(f"{mv.name}/{mv.version}")
    except Exception as e:
        log.warning("could not delete the model versions of unfinished run %s: %s", run_id, e)
    return gone


def close_dead_runs(client, experiment_id: str, key: str) -> list[str]:
    """Mark RUNNING runs of `key` whose process is dead KILLED (+ Prefect Crashed, versions deleted)."""
    import time

    from mlflow.entities import RunStatus

    closed = []
    runs = client.search_runs([experiment_id], filter_string=f"tags.{KEY_TAG} = '{key}' and attributes.status = 'RUNNING'",
                              max_results=100)
    for r in runs:
        if not _process_dead(r.data.tags):
            continue
        why = f"process {r.data.tags.get(PID_TAG)} died before the run ended (found by the re-run)"
        client.set_tag(r.info.run_id, "killed_reason", why)
        gone = delete_run_versions(client, r.info.run_id)
        if gone:
            client.set_tag(r.info.run_id, "deleted_model_versions", ",".join(gone))
        client.set_terminated(r.info.run_id, status=RunStatus.to_string(RunStatus.KILLED),
                              end_time=int(time.time() * 1000))
        if r.data.tags.get("prefect_flow_run_id"):
            crash_prefect_flow_run(r.data.tags["prefect_flow_run_id"], f"killed: {why}")
        log.warning("MLflow run %s (%s) was left RUNNING by a killed process: marked KILLED", r.info.run_id, key)
        closed.append(r.info.run_id)
    return closed


def carry_over_history(client, run_id: str, key: str, up_to_step: int) -> int:
    """Copy the per-step metrics of steps <= `up_to_step` from earlier runs of `key` into `run_id`.

    A resumed stage replays from its checkpoint's step; what the killed run(s) logged
    up to it comes over once per (metric, step), newest run first, so the resumed
    run's histories read as an uninterrupted run's. `final/` figures are not copied.
    Returns the number of points copied.
    """
    from mlflow.entities import Metric

    if up_to_step < 0:
        return 0
    earlier = [r for r in client.search_runs([client.get_run(run_id).info.experiment_id],
                                             filter_string=f"tags.{KEY_TAG} = '{key}'",
                                             order_by=["attributes.start_time DESC"], max_results=50)
               if r.info.run_id != run_id]
    seen: set[tuple[str, int]] = set()
    points: list = []
    for r in earlier:
        for name in r.data.metrics:
            if name.startswith("final/"):
                continue
            for m in client.get_metric_history(r.info.run_id, name):
                if m.step <= up_to_step and (name, m.step) not in seen:
                    seen.add((name, m.step))
                    points.append(Metric(name, m.value, m.timestamp, m.step))
    for i in range(0, len(points), 1000):  # log_batch takes at most 1000 metrics
        client.log_batch(run_id, metrics=points[i:i + 1000])
    if points:
        client.set_tag(run_id, "resumed_at_step", str(up_to_step))
    return len(points)


@contextmanager
def mlflow_run(stage: str, root: str | Path, params: dict[str, Any] | None = None,
               tags: dict[str, str] | None = None, key: str | None = None) -> Iterator[Any]:
    """Start an MLflow run for one stage: nested under the active run, else under the
    enclosing tracking_context's parent run (the pipeline's), else a top-level run.

    Tags the run with the stage, git commit and Prefect flow run; adds a Prefect
    link artifact pointing at the run. `key` names "the same run" across re-runs
    (default: stage + run root): runs of that key a killed process left RUNNING are
    marked KILLED first (close_dead_runs).
    """
    import mlflow

    uri = tracking_uri(root)
    experiment = os.environ.get("CRAWL2CHAT_EXPERIMENT", EXPERIMENT)
    with _environment_untouched():
        mlflow.set_tracking_uri(uri)
        if mlflow.get_experiment_by_name(experiment) is None:
            try:
                mlflow.create_experiment(experiment, artifact_location=_artifact_location(uri))
            except Exception:  # created concurrently by another process
                pass
        mlflow.set_experiment(experiment)
    ctx = _TRACKING.get()
    parent_id = ctx.parent_run_id if ctx is not None else None
    active = mlflow.active_run()  # per thread in MLflow: another thread's subflow sees the parent by id
    kwargs: dict[str, Any] = {"run_name": stage}
    if active is not None:
        kwargs["nested"] = True
    elif parent_id:
        kwargs["parent_run_id"] = parent_id
    key = key or f"{stage}:{Path(root).resolve()}"
    close_dead_runs(mlflow.MlflowClient(), mlflow.get_experiment_by_name(experiment).experiment_id, key)
    crash_abandoned_flow_runs()
    all_tags = {"stage": stage, "git_commit": git_commit(), "run_root": str(Path(root).resolve()),
                KEY_TAG: key, **_process_identity(), **flow_run_info(), **(tags or {})}
    with mlflow.start_run(**kwargs, tags=all_tags) as run:
        if params:
            flat = _flatten(params)
            items = list(flat.items())
            for i in range(0, len(items), 90):  # log_params batches are capped at 100
                mlflow.log_params(dict(items[i:i + 90]))
        url = mlflow_run_url(run, uri)
        publish_link(f"mlflow-{stage}", url or uri, text=f"MLflow run {stage} ({run.info.run_id})",
                     description=f"MLflow run id {run.info.run_id} in experiment {experiment} at {uri}")
        yield run


def log_dataset(path: str | Path, name: str, context: str = "training", digest: str | None = None) -> None:
    """Record a file/folder dataset as the active run's input (lineage)."""
    import mlflow
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.data.sources import LocalArtifactDatasetSource

    path = str(Path(path).resolve()) if "://" not in str(path) else str(path)
    try:
        source = LocalArtifactDatasetSource(path) if "://" not in path else path
        if isinstance(source, str):
            from mlflow.data.http_dataset_source import HTTPDatasetSource

            source = HTTPDatasetSource(path)
        ds = MetaDataset(source=source, name=name, digest=digest)
        mlflow.log_input(ds, context=context)
    except Exception as e:  # lineage is metadata: warn, don't fail the run
        log.warning("could not log dataset %s (%s): %s", name, path, e)


def register_checkpoint(ckpt_dir: str | Path, name: str, alias: str = "current",
                        artifact_path: str = "checkpoint", tags: dict[str, str] | None = None) -> str:
    """Log a checkpoint directory to the active run and register it as a model version.

    Returns the model URI `models:/<name>@<alias>`. A store that refuses (artifact upload,
    model version, alias) raises StageFailedError in one line, and leaves no version behind.
    """
    import mlflow
    from mlflow import MlflowClient

    from core.errors import StageFailedError

    run = mlflow.active_run()
    if run is None:
        raise RuntimeError("register_checkpoint needs an active MLflow run")
    client = MlflowClient()
    mv = None
    try:
        mlflow.log_artifacts(str(ckpt_dir), artifact_path=artifact_path)
        try:
            client.create_registered_model(name)
        except Exception:
            pass  # exists (a real refusal shows up at create_model_version)
        mv = client.create_model_version(name=name, source=f"{run.info.artifact_uri}/{artifact_path}",
                                         run_id=run.info.run_id, tags=tags or {})
        client.set_registered_model_alias(name, alias, mv.version)
        mlflow.set_tag(f"registered_model.{name}", mv.version)
    except Exception as e:
        if mv is not None:  # half-registered: a version without its alias would look finished
            delete_run_versions(client, run.info.run_id)
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise StageFailedError(f"registering model {name} in {mlflow.get_tracking_uri()} failed: {first}; "
                               "the checkpoint is kept, re-run the same command to register it") from e
    return f"models:/{name}@{alias}"


