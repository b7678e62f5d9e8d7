"""flows/results.py: the Prefect result storage of curate and tokenize survives a kill.

Real Prefect API (the session's server), real subprocess killed with SIGKILL.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

_WRITE_BIG_RESULT = """
import sys
from flows.results import AtomicResultStorage
AtomicResultStorage(basepath=sys.argv[1]).write_path("r", b"{" + b" " * 200_000_000 + b"}")
"""


def test_result_storage_killed_mid_write_leaves_no_result_file(tmp_path):
    """Prefect's results go through a temp name: SIGKILL mid-write leaves no cut file under the final name.

    (Prefect's own LocalFileSystem writes into the final name; CI once saw an empty result
    file after the curate SIGKILL test.) The 200 MB result makes the write long enough to kill.
    """
    from flows.results import AtomicResultStorage

    proc = subprocess.Popen([sys.executable, "-c", _WRITE_BIG_RESULT, str(tmp_path)], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob("r.tmp-*")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -9, "the write ended before the kill"
    assert not (tmp_path / "r").exists()
    # and a whole write reads back through Prefect's own read path
    store = AtomicResultStorage(basepath=str(tmp_path))
    store.write_path("r", b'{"n": 1}', _sync=True)
    assert json.loads(store.read_path("r", _sync=True)) == {"n": 1}
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" not in p.name] == ["r"]


def test_result_storage_is_saved_and_clears_what_a_killed_run_left(prefect_api, tmp_path):
    """A cut result and a dead writer's temp file go; a whole result, a live writer's temp file stay."""
    from prefect.blocks.core import Block

    from flows.results import AtomicResultStorage, result_storage

    folder = tmp_path / "prefect-results"
    folder.mkdir()
    (folder / "whole").write_text('{"result": 1}')
    (folder / "cut").write_bytes(b'{"resu')
    (folder / "empty").write_bytes(b"")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    (folder / f"x.tmp-{dead}").write_bytes(b"{")
    (folder / f"y.tmp-{os.getpid()}").write_bytes(b"{")  # this process is alive: may still be writing
    store = result_storage(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["whole", f"y.tmp-{os.getpid()}"]
    assert store._block_document_id is not None  # what Prefect asks of a task's result storage
    loaded = Block.load(f"crawl2chat-atomic-result-storage/{store._block_document_name}", _sync=True)
    assert isinstance(loaded, AtomicResultStorage) and Path(loaded.basepath) == folder.resolve()
    again = result_storage(folder)  # a second run on the same folder: the same document, overwritten
    assert again._block_document_id == store._block_document_id
