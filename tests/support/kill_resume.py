"""Kill a stage with SIGKILL of its whole process group, cheaply, then compare its re-run.

A killed run must be a separate process group. Starting a fresh Python for each stage
costs ~10 s of imports on these machines, so children are forked from one forkserver
that preloaded the stage modules once (multiprocessing's "forkserver": it forks from a
clean single-threaded process, never from pytest's threaded one); the forkserver also makes the
empty MLflow store each child copies for its new store (tests/support/empty_store.py: MLflow's
migrations cost 5-8 s per process on a busy machine). Each child makes itself
a process-group leader; `os.killpg(child, SIGKILL)` kills it and everything it started.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import multiprocessing
import os
import signal
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

PRELOAD = ["torch", "mlflow", "prefect", "flows.sft", "flows.rl", "flows.reward", "flows.rlhf", "flows.dpo",
           "flows.probe", "flows.tokenize", "flows.index", "flows.evaluate", "crawl2chat.cli",
           "tests.support.empty_store"]
_CTX = None


def _context():
    global _CTX
    if _CTX is None:
        _CTX = multiprocessing.get_context("forkserver")
        _CTX.set_forkserver_preload(PRELOAD)
    return _CTX


def _child(target: str, kwargs: dict[str, Any], env: dict[str, str]) -> None:
    os.setpgrp()  # its own process group: the kill takes the stage and whatever it started
    os.environ.update(env)
    module, _, name = target.partition(":")
    getattr(importlib.import_module(module), name)(**kwargs)


def run_killed(target: str, kwargs: dict[str, Any], env: dict[str, str], ready: Callable[[], bool],
               timeout: float = 240) -> int | None:
    """Run `module:function(**kwargs)` in a child; SIGKILL its process group once `ready()`.

    Returns the child's exit code (-9 when the kill landed, 0 when it finished first).
    """
    proc = _context().Process(target=_child, args=(target, kwargs, env), daemon=False)
    proc.start()
    deadline = time.time() + timeout
    try:
        while proc.is_alive() and time.time() < deadline and not ready():
            time.sleep(0.02)
        if proc.is_alive():
            os.killpg(proc.pid, signal.SIGKILL)
        proc.join(30)
    finally:
        if proc.is_alive():
            os.killpg(proc.pid, signal.SIGKILL)
            proc.join(10)
    return proc.exitcode


def mlflow_runs(db: Path, stage: str) -> list[tuple[str, str]]:
    """(run_id, status) of `stage`'s runs in an sqlite MLflow store, read without MLflow (safe mid-write)."""
    if not db.exists():
        return []
    # Read-write, not mode=ro: a writer killed mid-transaction leaves a hot journal, which only a
    # connection that may write can roll back (read-only, the query fails and the runs look absent).
    for attempt in range(20):
        try:
            with sqlite3.connect(str(db), timeout=10) as c:
                return c.execute("select r.run_uuid, r.status from runs r join tags t on t.run_uuid = r.run_uuid "
                                 "where t.key = 'stage' and t.value = ?", (stage,)).fetchall()
        except sqlite3.OperationalError as e:  # locked or mid-migration: wait, then say why
            if attempt == 19:
                raise RuntimeError(f"cannot read {db}: {e}") from e
            time.sleep(0.25)
    return []


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# Figures that honestly differ between two runs: wall time, throughput, ids, where things were written.
VOLATILE = ("seconds", "wall", "time", "created_at", "per_s", "gen_s", "run_id", "model_uri", "mlflow", "prefect", "tok_per_s")


def figures(doc: Any, out: Path) -> Any:
    """A manifest/summary with the volatile keys dropped and `out` replaced by <out> (for comparing runs)."""
    if isinstance(doc, dict):
        return {k: figures(v, out) for k, v in doc.items() if not any(s in k for s in VOLATILE)}
    if isinstance(doc, list):
        return [figures(v, out) for v in doc]
    if isinstance(doc, str):
        return doc.replace(str(out), "<out>")
    return doc


def canon(doc: Any) -> str:
    return json.dumps(doc, sort_keys=True, default=str)
