"""Real local services for crawl2chat: `crawl2chat up` / `crawl2chat down`.

Starts, on 127.0.0.1, a Prefect server (sqlite), an MLflow tracking server
(sqlite backend store, local artifact store served over HTTP), a Ray head node,
and a Prefect runner that serves every deployment of `flows/deployments.py`.
Everything lives under one state directory:

    STATE/services.json        what runs: pids, process groups, ports, URLs
    STATE/<name>.pid           one pid file per service
    STATE/logs/<name>.log      stdout+stderr of each service
    STATE/env.sh               `source` it: PREFECT_API_URL, MLFLOW_TRACKING_URI, RAY_ADDRESS
    STATE/prefect/             PREFECT_HOME of the server (its sqlite database)
    STATE/mlflow/              mlflow.db + artifacts/
    STATE/runs/                default output root of deployment runs

Each service starts in its own session (process group), so `down` can stop
exactly what `up` started — the group, plus any descendant that left it (Ray
gives each worker its own group) — and nothing else. Ray's processes stop in
`ray stop`'s order (raylet, then its agents and workers, then gcs_server), but
only ours: `ray stop` itself would stop every Ray process on the machine.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from core.atomic import write_text
from core.procs import pid_alive as _alive
from core.telemetry import TELEMETRY_OFF
from flows.prefect_db import default_db, seed

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PORTS = {"prefect": 4200, "mlflow": 5000, "ray": 6379, "ray_dashboard": 8265}
HOST = "127.0.0.1"
# Start order; `down` stops in reverse (the runner first, so no flow run starts mid-shutdown).
SERVICES = ("prefect", "mlflow", "ray", "runner")
RAY_START_ATTEMPTS = 3
ENV_VARS = ("PREFECT_API_URL", "MLFLOW_TRACKING_URI", "RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH")


def default_state_dir() -> Path:
    """$CRAWL2CHAT_STATE_DIR, else ./.crawl2chat in the current directory."""
    return Path(os.environ.get("CRAWL2CHAT_STATE_DIR") or Path.cwd() / ".crawl2chat").resolve()


@dataclass
class Settings:
    """What `up` starts and where (ports on 127.0.0.1)."""

    state_dir: Path
    prefect_port: int = DEFAULT_PORTS["prefect"]
    mlflow_port: int = DEFAULT_PORTS["mlflow"]
    ray_port: int = DEFAULT_PORTS["ray"]
    ray_dashboard_port: int = DEFAULT_PORTS["ray_dashboard"]
    ray_dashboard: bool = True
    num_cpus: int | None = None
    runner: bool = True
    timeout: float = 300.0

    @property
    def prefect_api_url(self) -> str:
        return f"http://{HOST}:{self.prefect_port}/api"

    @property
    def prefect_ui_url(self) -> str:
        return f"http://{HOST}:{self.prefect_port}"

    @property
    def mlflow_url(self) -> str:
        return f"http://{HOST}:{self.mlflow_port}"

    @property
    def ray_address(self) -> str:
        return f"{HOST}:{self.ray_port}"

    @property
    def ray_dashboard_url(self) -> str | None:
        return f"http://{HOST}:{self.ray_dashboard_port}" if self.ray_dashboard else None

    @property
    def ray_temp_dir(self) -> Path:
        # Ray's unix sockets live under its temp dir and must fit in 107 bytes, so
        # use a short path derived from the (possibly long) state dir.
        digest = hashlib.sha1(str(self.state_dir).encode()).hexdigest()[:10]
        return Path(tempfile.gettempdir()) / f"c2c-ray-{digest}"

    @property
    def ray_token_path(self) -> Path:
        return self.state_dir / "ray" / "auth_token"

    def ray_auth_env(self) -> dict[str, str]:
        """Ray token auth with this head's own token (not ~/.ray/auth_token, which any
        local `ray.init()` on the machine may rewrite)."""
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.ray_token_path)}

    def client_env(self) -> dict[str, str]:
        """The variables that point clients (CLI, flows, Ray workers) at these services."""
        return {"PREFECT_API_URL": self.prefect_api_url, "MLFLOW_TRACKING_URI": self.mlflow_url,
                "RAY_ADDRESS": self.ray_address, **self.ray_auth_env()}


@dataclass
class Proc:
    """One started service process (leader of its own process group)."""

    name: str
    pid: int
    pgid: int
    cmd: list[str]
    log: str
    started_at: float = field(default_factory=time.time)
    url: str | None = None


# ------------------------------------------------------------ state files
def _state_file(state: Path) -> Path:
    return state / "services.json"


def read_state(state: Path) -> dict[str, Any]:
    """services.json as a dict ({} when nothing was started here)."""
    try:
        return json.loads(_state_file(state).read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _write_state(state: Path, data: dict[str, Any]) -> None:
    write_text(_state_file(state), json.dumps(data, indent=2))
    for name in SERVICES:
        pidfile = state / f"{name}.pid"
        proc = data.get("procs", {}).get(name)
        if proc:
            write_text(pidfile, f"{proc['pid']}\n")
        elif pidfile.exists():
            pidfile.unlink()


def write_env_file(state: Path, settings: Settings) -> Path:
    """STATE/env.sh: `source` it to point the CLI and flows at these services.

    It also puts this environment's bin/ (the venv: crawl2chat, prefect, mlflow,
    ray) first on PATH, so the README's commands work after sourcing it.
    """
    import shlex

    lines = ["# generated by `crawl2chat up`; source this file", *(
        f"export {k}={v}" for k, v in settings.client_env().items())]
    lines.append(f"export MLFLOW_UI_URL={settings.mlflow_url}")
    lines.append(f'export PATH={shlex.quote(str(Path(sys.executable).parent))}:"$PATH"')
    path = state / "env.sh"
    write_text(path, "\n".join(lines) + "\n")
    return path


# ------------------------------------------------------------ process tools
def _psutil():
    import psutil

    return psutil


def group_processes(pgids: set[int]) -> list[Any]:
    """Live processes in the given process groups plus all their descendants."""
    psutil = _psutil()
    found: dict[int, Any] = {}
    for p in psutil.process_iter():
        try:
            if os.getpgid(p.pid) in pgids and p.status() != psutil.STATUS_ZOMBIE:
                found[p.pid] = p
        except (psutil.Error, OSError):
            continue
    for p in list(found.values()):
        try:
            for c in p.children(recursive=True):
                if c.status() != psutil.STATUS_ZOMBIE:
                    found[c.pid] = c
        except psutil.Error:
            continue
    found.pop(os.getpid(), None)
    return list(found.values())


def stop_processes(procs: list[Any], grace: float = 10.0) -> list[int]:
    """SIGTERM the processes, SIGKILL what is left after `grace` seconds; returns the pids stopped."""
    psutil = _psutil()
    pids = [p.pid for p in procs]
    for p in procs:
        try:
            p.send_signal(signal.SIGTERM)
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=grace)
    for p in alive:
        log.warning("pid %d did not stop on SIGTERM within %.0fs: SIGKILL", p.pid, grace)
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=5)
    return pids


def _spawn(name: str, cmd: list[str], state: Path, env: dict[str, str], cwd: Path | None = None) -> Proc:
    logs = state / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    logfile = logs / f"{name}.log"
    with open(logfile, "ab") as fh:
        fh.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n".encode())
        fh.flush()
        # A new session: the service and everything it forks share one process group.
        p = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             env=env, cwd=str(cwd or Path.cwd()), start_new_session=True)
    _POPEN[p.pid] = p
    return Proc(name=name, pid=p.pid, pgid=p.pid, cmd=cmd, log=str(logfile))


# Popen handles of the processes this process started (to read exit codes).
_POPEN: dict[int, subprocess.Popen] = {}


def _http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 (loopback URL we built)
            return 200 <= r.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _port_open(port: int, host: str = HOST) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex((host, port)) == 0


def _bin(name: str) -> str:
    """The console script from this interpreter's environment (the venv), else PATH."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"`{name}` not found next to {sys.executable} or on PATH; run `make setup`")
    return found


def _base_env(state: Path) -> dict[str, str]:
    env = dict(os.environ)
    # RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER: a local Ray here sets it (flows.runtime); it would forbid joining nodes
    for k in (*ENV_VARS, "PREFECT_HOME", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"):
        env.pop(k, None)
    env.update({**TELEMETRY_OFF, "PYTHONUNBUFFERED": "1"})
    pp = env.get("PYTHONPATH")
    env["PYTHONPATH"] = f"{REPO_ROOT}{os.pathsep}{pp}" if pp else str(REPO_ROOT)
    return env


# ------------------------------------------------------------ the services
def _prefect_cmd(s: Settings) -> tuple[list[str], dict[str, str]]:
    home = s.state_dir / "prefect"
    home.mkdir(parents=True, exist_ok=True)
    seed(default_db(home))  # a new store starts as a copy of a migrated one (flows/prefect_db.py)
    cmd = [_bin("prefect"), "server", "start", "--host", HOST, "--port", str(s.prefect_port), "--analytics-off"]
    return cmd, {"PREFECT_HOME": str(home), "PREFECT_UI_API_URL": s.prefect_api_url,
                 "PREFECT_SERVER_API_HOST": HOST, "PREFECT_SERVER_API_PORT": str(s.prefect_port)}


def _mlflow_cmd(s: Settings) -> tuple[list[str], dict[str, str]]:
    root = s.state_dir / "mlflow"
    (root / "artifacts").mkdir(parents=True, exist_ok=True)
    cmd = [_bin("mlflow"), "server", "--host", HOST, "--port", str(s.mlflow_port),
           "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
           "--artifacts-destination", str(root / "artifacts"), "--workers", "1"]
    # The job-execution consumers (huey) are for MLflow's GenAI jobs, unused here.
    return cmd, {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def _ray_cmd(s: Settings) -> tuple[list[str], dict[str, str]]:
    cmd = [_bin("ray"), "start", "--head", "--port", str(s.ray_port), "--node-ip-address", HOST,
           "--num-cpus", str(s.num_cpus or os.cpu_count() or 1), "--temp-dir", str(s.ray_temp_dir),
           "--disable-usage-stats", "--object-store-memory", str(1 << 30),
           # fixed defaults (10001, 52365) would clash with any other Ray head on this machine
           "--ray-client-server-port", str(s.ray_port + 1), "--dashboard-agent-listen-port", str(s.ray_port + 2)]
    if s.ray_dashboard:
        cmd += ["--include-dashboard=true", "--dashboard-host", HOST, "--dashboard-port", str(s.ray_dashboard_port)]
    else:
        cmd += ["--include-dashboard=false"]
    return cmd, s.ray_auth_env()


def _runner_cmd(s: Settings) -> tuple[list[str], dict[str, str]]:
    runs = s.state_dir / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "flows.deployments", "serve", "--ready-file", str(s.state_dir / "runner.ready")]
    return cmd, {**s.client_env(), "MLFLOW_UI_URL": s.mlflow_url, "CRAWL2CHAT_RUNS_DIR": str(runs),
                 "PREFECT_HOME": str(s.state_dir / "runner-home"),
                 # the runner's log is where flow-run logs land: keep them at INFO
                 "PREFECT_LOGGING_LEVEL": "INFO",
                 # pick up `prefect deployment run` within seconds, not the default 10 s
                 "PREFECT_RUNNER_POLL_FREQUENCY": "2"}


def healthy(name: str, s: Settings, proc: dict[str, Any] | None = None) -> bool:
    """Is the service answering? (the runner: alive and its deployments registered)."""
    # Our process must be alive too: another program may answer on the port.
    if name == "prefect":
        return (proc is None or _alive(proc["pid"])) and _http_ok(f"{s.prefect_api_url}/health")
    if name == "mlflow":
        return (proc is None or _alive(proc["pid"])) and _http_ok(f"{s.mlflow_url}/health")
    if name == "ray":
        # `ray start` exits once the head is up; its daemons keep the process group.
        return bool(proc) and bool(group_processes({proc["pgid"]})) and _port_open(s.ray_port)
    if name == "runner":
        return bool(proc) and _alive(proc["pid"]) and (s.state_dir / "runner.ready").exists()
    raise ValueError(f"unknown service {name!r}")


def _tail(path: str, n: int = 30) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def _wait(name: str, s: Settings, proc: Proc, deadline: float) -> None:
    while time.monotonic() < deadline:
        if healthy(name, s, asdict(proc)):
            return
        popen = _POPEN.get(proc.pid)
        rc = popen.poll() if popen is not None else None
        if name == "ray" and rc not in (None, 0):
            raise RuntimeError(f"`ray start` failed (exit {rc}); log {proc.log}:\n{_tail(proc.log)}")
        if name != "ray" and (rc is not None or not _alive(proc.pid)):
            raise RuntimeError(f"{name} exited during start-up; log {proc.log}:\n{_tail(proc.log)}")
        time.sleep(0.5)
    raise TimeoutError(f"{name} not healthy after {s.timeout:.0f}s; log {proc.log}:\n{_tail(proc.log)}")


def up(s: Settings) -> dict[str, Any]:
    """Start whatever is not already running and healthy; return services.json's content."""
    state = s.state_dir
    state.mkdir(parents=True, exist_ok=True)
    data = read_state(state)
    procs: dict[str, Any] = data.get("procs", {})
    if data.get("settings") and procs:
        old = data["settings"]
        for key in ("prefect_port", "mlflow_port", "ray_port"):
            if old.get(key) != getattr(s, key):
                raise ValueError(f"{state} already runs services with {key}={old.get(key)}; "
                                 f"run `crawl2chat down --state-dir {state}` first or use another --state-dir")
    wanted = [n for n in SERVICES if n != "runner" or s.runner]
    env0 = _base_env(state)
    builders = {"prefect": _prefect_cmd, "mlflow": _mlflow_cmd, "ray": _ray_cmd, "runner": _runner_cmd}
    ports = {"prefect": s.prefect_port, "mlflow": s.mlflow_port, "ray": s.ray_port}
    started: dict[str, Proc] = {}
    deadline = time.monotonic() + s.timeout

    def start(name: str) -> None:
        old = procs.get(name)
        if old and healthy(name, s, old):
            log.info("%s already running (pid %s)", name, old["pid"])
            return
        if old:  # recorded but not healthy: clear leftovers of that start
            stop_processes(group_processes({old["pgid"]}))
            procs.pop(name, None)
        if name in ports and _port_open(ports[name]):
            raise RuntimeError(f"port {ports[name]} on {HOST} is taken by another program; "
                               f"choose another with --{name}-port")
        if name == "runner":
            (state / "runner.ready").unlink(missing_ok=True)
        if name == "ray":
            if s.ray_temp_dir.exists():
                shutil.rmtree(s.ray_temp_dir, ignore_errors=True)
            ensure_ray_token(s.ray_token_path)
        cmd, extra = builders[name](s)
        # Flow runs start in the project root: presets name data files relative to it.
        proc = _spawn(name, cmd, state, {**env0, **extra}, cwd=REPO_ROOT if name == "runner" else state)
        started[name] = proc
        procs[name] = asdict(proc)
        _write_state(state, {"settings": _settings_dict(s), "procs": procs})
        log.info("started %s (pid %d): %s", name, proc.pid, " ".join(cmd))

    try:
        for name in ("prefect", "mlflow", "ray"):  # independent: start all, then wait
            start(name)
        for name in ("prefect", "mlflow", "ray"):
            if name not in started:
                continue
            for attempt in range(1, RAY_START_ATTEMPTS + 1):
                try:
                    _wait(name, s, started[name], deadline)
                    if name == "ray":
                        _check_ray_start(started[name])
                    break
                except RuntimeError as e:
                    # `ray start` gives its raylet a fixed 30 s to register; on a
                    # loaded machine that can pass, so try again.
                    if name != "ray" or attempt == RAY_START_ATTEMPTS or time.monotonic() > deadline:
                        raise
                    log.warning("ray start attempt %d failed (%s); retrying", attempt, str(e).splitlines()[0])
                    stop_processes(group_processes({started[name].pgid}))
                    del started[name]
                    procs.pop(name, None)
                    start(name)
        if "runner" in wanted:
            start("runner")
            if "runner" in started:
                _wait("runner", s, started["runner"], deadline)
    except BaseException:
        log.error("start-up failed; stopping what this call started")
        stop_processes(group_processes({p.pgid for p in started.values()}))
        for name in started:
            procs.pop(name, None)
        _write_state(state, {"settings": _settings_dict(s), "procs": procs})
        raise
    urls = {"prefect": s.prefect_ui_url, "mlflow": s.mlflow_url, "ray": s.ray_dashboard_url}
    for name, url in urls.items():
        if name in procs:
            procs[name]["url"] = url
    data = {"settings": _settings_dict(s), "procs": procs, "env": s.client_env(),
            "ray_temp_dir": str(s.ray_temp_dir)}
    _write_state(state, data)
    write_env_file(state, s)
    return data


def _check_ray_start(proc: Proc) -> None:
    """`ray start` must have exited 0 once the head answers."""
    popen = _POPEN.get(proc.pid)
    for _ in range(120):
        rc = popen.poll() if popen is not None else (None if _alive(proc.pid) else 0)
        if rc is not None:
            if rc != 0:
                raise RuntimeError(f"`ray start` failed (exit {rc}); log {proc.log}:\n{_tail(proc.log)}")
            return
        time.sleep(0.5)
    log.warning("`ray start` (pid %d) still running after the head came up", proc.pid)


def ensure_ray_token(path: Path) -> Path:
    """A random Ray auth token at `path` (mode 0600), kept across restarts."""
    if not path.exists():
        import secrets

        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
        os.replace(tmp, path)
    return path


def _settings_dict(s: Settings) -> dict[str, Any]:
    d = asdict(s)
    d["state_dir"] = str(s.state_dir)
    return d


def settings_from_state(state: Path) -> Settings | None:
    data = read_state(state)
    if not data.get("settings"):
        return None
    d = dict(data["settings"])
    d["state_dir"] = Path(d["state_dir"])
    return Settings(**d)


def status(state: Path) -> dict[str, bool]:
    """Health of each recorded service."""
    s = settings_from_state(state)
    procs = read_state(state).get("procs", {})
    return {name: bool(s) and healthy(name, s, procs[name]) for name in procs}


def _ours(procs: list[Any], proc: dict[str, Any]) -> list[Any]:
    """Drop processes older than the recorded start: after a reboot the pid/pgid may be someone else's."""
    out = []
    for p in procs:
        try:
            if p.create_time() >= proc.get("started_at", 0) - 5:
                out.append(p)
        except Exception:  # gone meanwhile
            continue
    return out


# `ray stop`'s order (ray/scripts/scripts.py): the raylet first (its agents fate-share
# with it and exit on their own), the other processes next, the GCS last.
RAY_FIRST, RAY_LAST = "raylet", "gcs_server"


def ray_stop_buckets(procs: list[Any]) -> list[list[Any]]:
    """Split Ray processes into `ray stop`'s three rounds: raylet, everything else, gcs_server."""
    def name(p) -> str:
        try:
            return p.name()
        except Exception:  # gone meanwhile: stop it with the middle round
            return ""
    first = [p for p in procs if name(p) == RAY_FIRST]
    last = [p for p in procs if name(p) == RAY_LAST]
    rest = [p for p in procs if p not in first and p not in last]
    return [b for b in (first, rest, last) if b]


def down(state: Path, grace: float = 10.0) -> list[int]:
    """Stop exactly the processes `up` started under `state` (and their descendants); return their pids."""
    data = read_state(state)
    procs: dict[str, Any] = dict(data.get("procs", {}))
    pgids = {p["pgid"] for p in procs.values()}
    stopped: list[int] = []
    for name in reversed(SERVICES):
        proc = procs.get(name)
        if not proc:
            continue
        victims = _ours(group_processes({proc["pgid"]}), proc)
        log.info("stopping %s: %d process(es)", name, len(victims))
        for bucket in ray_stop_buckets(victims) if name == "ray" else [victims]:
            stopped += stop_processes(bucket, grace=grace)
        procs.pop(name)
        _write_state(state, {**data, "procs": procs})
    # Descendants that outlived their parents (re-parented to init) can't be
    # found through the tree any more; a last sweep over the groups catches them.
    oldest = min((p.get("started_at", 0) for p in data.get("procs", {}).values()), default=0)
    left = _ours(group_processes(pgids), {"started_at": oldest}) if pgids else []
    if left:
        stopped += stop_processes(left, grace=5)
    (state / "runner.ready").unlink(missing_ok=True)
    temp = data.get("ray_temp_dir")
    if temp and Path(temp).name.startswith("c2c-ray-"):
        shutil.rmtree(temp, ignore_errors=True)
    return stopped
