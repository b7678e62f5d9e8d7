"""Run `crawl2chat serve` as a subprocess on 127.0.0.1 and wait until /health answers (tests, benchmarks).

A test helper (moved out of crawl2chat/serve/: the product never launches itself this way)."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def start_server(model: str | Path, port: int, *args: str, log=None,
                 timeout: float = 120) -> tuple[subprocess.Popen, str]:
    """(process, base URL) of a `crawl2chat serve` on 127.0.0.1:`port`, once it answers /health.

    `args` are more `serve` flags; `log` is a file for its output (default: a temporary
    file; never a pipe nobody reads, which would block the server once full). Raises
    RuntimeError with the output if it exits or does not answer within `timeout`.
    """
    log = tempfile.TemporaryFile("w+") if log is None else log
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "crawl2chat.cli", "serve", "--model", str(model),
                             "--host", "127.0.0.1", "--port", str(port), *args], cwd=REPO_ROOT,
                            stdout=log, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:  # noqa: S310 (loopback URL we built)
                if r.status == 200:
                    return proc, url
        except (urllib.error.URLError, OSError):
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            log.flush()
            log.seek(0)
            raise RuntimeError(f"crawl2chat serve did not start (exit {proc.returncode}): {log.read()[-3000:]}")
        time.sleep(0.2)
