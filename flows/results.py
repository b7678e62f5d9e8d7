"""Prefect result storage that survives a kill: the cache of the curate and tokenize tasks.

Prefect's own LocalFileSystem opens a result's final name and writes into it, so
a SIGKILL mid-write leaves an empty or cut result file under that name (CI caught
one after the curate SIGKILL test), and the next run's cache lookup trips on it.
Here every result goes through core.atomic (temp name + os.replace), like every
other file a run writes.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from prefect.filesystems import LocalFileSystem

from core.atomic import write_bytes
from core.procs import pid_alive

log = logging.getLogger(__name__)


class AtomicResultStorage(LocalFileSystem):
    """Prefect's local result storage, but a result file appears whole or not at all."""

    # its own block type, so it does not replace LocalFileSystem in Prefect's type registry
    _block_type_name = "crawl2chat atomic result storage"
    _block_type_slug = "crawl2chat-atomic-result-storage"

    async def awrite_path(self, path: str, content: bytes) -> str:
        return self.write_path(path, content, _sync=True)

    def write_path(self, path: str, content: bytes, _sync: bool | None = None) -> str:  # noqa: ARG002
        # `_sync` is what Prefect's call_explicitly_sync_block_method passes to its dual methods.
        target = self._resolve_path(path)
        if target.exists() and not target.is_file():
            raise ValueError(f"Path {target} already exists and is not a file.")
        return str(write_bytes(target, content))


def result_storage(folder: Path) -> AtomicResultStorage:
    """`folder` made ready as a run's result storage, saved as a block (Prefect takes no unsaved
    block as a task's storage): unreadable results and dead writers' temp files removed.

    One block document per folder, named by its path and overwritten by each run:
    the API keeps one per output root, not one per run.
    """
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    drop_broken_results(folder)
    for tmp in folder.glob("*.tmp-*"):
        pid = tmp.name.rsplit(".tmp-", 1)[1]
        if not (pid.isdigit() and pid_alive(int(pid))):
            tmp.unlink(missing_ok=True)
    store = AtomicResultStorage(basepath=str(folder))
    store.save("results-" + hashlib.sha256(str(folder).encode()).hexdigest()[:16], overwrite=True)
    return store


def drop_broken_results(results: Path) -> int:
    """Delete persisted Prefect results that do not parse; returns how many.

    AtomicResultStorage never leaves a cut file, but a folder written by an older
    crawl2chat (Prefect's own storage writes in place) or damaged on disk may hold
    one, and it would make the cache lookup fail instead of recomputing the task.
    """
    n = 0
    for p in results.glob("*"):
        if not p.is_file() or ".tmp-" in p.name:
            continue
        try:
            json.loads(p.read_bytes())
        except (ValueError, OSError):
            log.warning("removing unreadable Prefect result %s (an interrupted run)", p)
            p.unlink(missing_ok=True)
            n += 1
    return n
