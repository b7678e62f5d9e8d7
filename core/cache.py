"""crawl2chat's cache on this machine: what is built once per machine and version, then copied."""
from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    """$XDG_CACHE_HOME/crawl2chat, else ~/.cache/crawl2chat (empty, migrated Prefect and MLflow stores)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "crawl2chat"


def sqlite_template(path: Path, script: str, env_for: Callable[[Path], dict[str, str]], what: str,
                    timeout: float = 300) -> Path:
    """`path`: an sqlite store `script` migrates, built unless it is there.

    The script runs as `python -c script DB` in a subprocess (a library's settings and open
    engines stay out of this process) with the environment `env_for(DB)`, DB a file in a temp
    folder beside `path`; the write-ahead log is folded in (one self-contained file, no
    -wal/-shm beside it) and the file renamed onto `path`: whole or absent, and a racing
    builder's copy is the same. Raises RuntimeError when the script fails."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"c2c-{what.lower()}-db-", dir=path.parent) as tmp:
        db = Path(tmp) / "store.db"
        log.info("building an empty %s store (once per machine and %s version): %s", what, what, path)
        r = subprocess.run([sys.executable, "-c", script, str(db)], cwd=tmp, env=env_for(db),
                           capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"{what}'s migrations failed (exit {r.returncode}): {r.stderr[-2000:]}")
        with closing(sqlite3.connect(db)) as c:
            c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            c.execute("PRAGMA journal_mode=DELETE")
        os.replace(db, path)
    return path
