"""What the processes of one test run share: a folder, a lock, the Prefect API server.

`make test` runs pytest-xdist workers (one process each). Session fixtures are per
process, so a real service or a toy model built in a session fixture would be
built once per worker. The run's base temp folder is shared (a worker's own is
one level below it), so a thing built once goes there, under a file lock, and
every worker reuses it. Without xdist the same code builds it once in the one
process.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from filelock import FileLock

from tests.support.services import free_port

SERVER_INFO = "prefect-server.json"


def shared_root(tmp_path_factory) -> Path:
    """The folder every process of this test run sees (the run's basetemp)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@contextlib.contextmanager
def built_once(root: Path, name: str):
    """A lock held while one process builds `name` under `root`; the others wait, then reuse it."""
    with FileLock(str(root / f".{name}.lock"), timeout=1800):
        yield root / name


def prefect_server(root: Path, owner_pid: int, timeout: float = 180.0) -> str:
    """URL of the run's Prefect API server, started by the first process that asks.

    The server is Prefect's own (uvicorn over `prefect.server.api.server:create_app`,
    as `prefect_test_harness` starts it) on a sqlite file under `root`. It is started
    by tests/support/prefect_server_main.py, which stops it when `owner_pid` (the
    pytest process that owns the run) is gone, so even a killed run leaves none;
    `stop_prefect_server` stops it at a normal end.
    """
    with built_once(root, SERVER_INFO) as info:
        if info.exists():
            return json.loads(info.read_text())["url"]
        from flows.prefect_db import seed

        seed(root / "prefect.db")  # migrated once per machine (flows/prefect_db.py), as the product does
        port = free_port()
        env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1",
               "PREFECT__SERVER_FINAL": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
               "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{root / 'prefect.db'}"}
        env.pop("PREFECT_API_URL", None)
        log = open(root / "prefect-server.log", "ab")
        proc = subprocess.Popen([sys.executable, "-m", "tests.support.prefect_server_main", str(owner_pid), str(port)],
                                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                cwd=Path(__file__).resolve().parents[2])
        url = f"http://127.0.0.1:{port}/api"
        _wait_healthy(url, proc, timeout, root / "prefect-server.log")
        info.write_text(json.dumps({"url": url, "pid": proc.pid}))
        return url


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float, log: Path) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the Prefect API server exited {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"the Prefect API server did not answer within {timeout:.0f} s: {log.read_text()[-2000:]}")


def stop_prefect_server(root: Path) -> None:
    """Stop the run's Prefect API server, if one was started (by the run's owner, at its end)."""
    info = root / SERVER_INFO
    if not info.exists():
        return
    pid = json.loads(info.read_text())["pid"]
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    info.unlink(missing_ok=True)
