"""Start/stop helpers for `crawl2chat up`/`down` tests: free loopback ports, the CLI line, the
caller's environment after `source env.sh`, and the processes a run leaves behind."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "crawl2chat.cli"]


def free_port(lo: int = 20000, hi: int = 30000, span: int = 1) -> int:
    """A port p with p..p+span-1 free on 127.0.0.1 (Ray needs its GCS port outside 10002-19999)."""
    import random

    for _ in range(200):
        p = random.randrange(lo, hi - span)
        ok = True
        for q in range(p, p + span):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", q)) == 0:
                    ok = False
                    break
        if ok:
            return p
    raise RuntimeError("no free port")


def up_args(state: Path, ports: dict[str, int], runner: bool = False) -> list[str]:
    args = [*CLI, "up", "--state-dir", str(state), "--prefect-port", str(ports["prefect"]),
            "--mlflow-port", str(ports["mlflow"]), "--ray-port", str(ports["ray"]), "--no-ray-dashboard",
            "--num-cpus", "2", "--timeout", "400"]
    return args if runner else [*args, "--no-runner"]


def service_env(state: Path) -> dict[str, str]:
    """The caller's env after `source STATE/env.sh` in bash (as the README says)."""
    base = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
    base["PATH"] = "/usr/bin:/bin"  # a new user's shell: the venv is not on it
    out = subprocess.run(["bash", "-c", f'source "{state / "env.sh"}" && env -0'], env=base,
                         capture_output=True, timeout=30, check=True).stdout.decode()
    env = dict(item.split("=", 1) for item in out.split("\0") if "=" in item)
    env["PYTHONPATH"] = str(REPO)
    return env


def all_pids(state: Path) -> set[int]:
    """Every live process of the recorded services: their process groups and descendants."""
    from crawl2chat import services

    procs = services.read_state(state).get("procs", {})
    return {p.pid for p in services.group_processes({v["pgid"] for v in procs.values()})}


def leftovers(pids: set[int], state: Path) -> list[str]:
    """Processes still alive among `pids`, or mentioning the state/Ray temp dir on their command line."""
    import psutil

    from crawl2chat import services

    marks = [str(state), str(services.Settings(state_dir=state).ray_temp_dir)]
    out = []
    for p in psutil.process_iter(["pid", "cmdline", "status"]):
        if p.info["status"] == psutil.STATUS_ZOMBIE or p.pid == os.getpid():
            continue
        cmd = " ".join(p.info["cmdline"] or [])
        if p.pid in pids or any(m in cmd for m in marks):
            out.append(f"{p.pid}: {cmd[:200]}")
    return out
