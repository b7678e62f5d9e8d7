"""Resume inside a file: the progress of one input's shard, checkpointed every N records.

A Common Crawl WARC is ~1 GB and ~40 minutes of filtering; a worker killed at
minute 39 should not redo it. While `process_warc` reads a file, every
`checkpoint_every_records` records it saves, under `<shard>.ckpt/`:

- `part-NNNNN.parquet`: the rows kept since the previous checkpoint (atomic);
- `state.json` (atomic, written after the part it names): the position to
  resume at — byte offset of the next record's start (a gzip member boundary
  in Common Crawl files) and that record's WARC-Record-ID — plus every counter
  of the funnel so far, so a resumed run counts no record twice and misses none.

On a re-run with the same key (input fingerprint + config), the reader re-opens
the file at that offset (seek, or an HTTP Range request) and checks the record
there is the one recorded; parts written after the last state are deleted. The
final shard is always assembled from the parts plus the rows after the last
checkpoint, so an interrupted and an uninterrupted run write the same rows in
the same row groups. The folder is removed once the shard is in place.
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from core.atomic import atomic_path, write_json

log = logging.getLogger(__name__)


def counter_state(c) -> dict[str, Any]:
    """A StageCounter's numbers as JSON."""
    return {"n_in": c.n_in, "kept": c.kept, "dropped": dict(c.dropped), "ignored": dict(c.ignored)}


def restore_counter(c, d: dict[str, Any]) -> None:
    c.n_in, c.kept = int(d["n_in"]), int(d["kept"])
    c.dropped, c.ignored = dict(d["dropped"]), dict(d["ignored"])


class ShardCheckpoint:
    """The `.ckpt/` folder of one output shard (see module docstring)."""

    def __init__(self, out_path: str, key: str, schema: pa.Schema):
        self.out_path = Path(out_path)
        self.dir = Path(f"{out_path}.ckpt")
        self.key = key
        self.schema = schema
        self.parts: list[str] = []

    def load(self) -> dict[str, Any] | None:
        """The saved {position, state} for this key, or None (and a clean folder) if there is none."""
        try:
            meta = json.loads((self.dir / "state.json").read_text())
        except (OSError, ValueError):
            meta = None
        if not meta or meta.get("key") != self.key or not all((self.dir / p).is_file() for p in meta["parts"]):
            if self.dir.exists():
                log.info("%s: checkpoint is for other inputs/config or incomplete; starting the file afresh",
                         self.out_path.name)
            self.clear()
            return None
        self.parts = list(meta["parts"])
        for p in self.dir.iterdir():  # a part (or temp file) written after the last state.json
            if p.name != "state.json" and p.name not in self.parts:
                p.unlink(missing_ok=True)
        log.info("%s: resuming at record %d (byte %d), %d part(s) kept", self.out_path.name,
                 meta["position"]["records"], meta["position"]["offset"], len(self.parts))
        return meta

    def save(self, rows: list[dict[str, Any]], position: dict[str, Any], state: dict[str, Any]) -> None:
        """Write `rows` as the next part, then the state that names it; clears `rows`."""
        self.dir.mkdir(parents=True, exist_ok=True)
        if rows:
            name = f"part-{len(self.parts):05d}.parquet"
            with atomic_path(self.dir / name) as tmp:
                pq.write_table(pa.Table.from_pylist(rows, schema=self.schema), tmp, compression="zstd")
            self.parts.append(name)
            rows.clear()
        write_json(self.dir / "state.json", {"key": self.key, "parts": self.parts, "position": position,
                                             "state": state})

    def finish(self, rows: list[dict[str, Any]]) -> None:
        """Write the shard (all parts, then `rows`) atomically under its final name; drop the folder."""
        with atomic_path(self.out_path) as tmp:
            with pq.ParquetWriter(tmp, self.schema, compression="zstd") as writer:
                for p in self.parts:
                    writer.write_table(pq.read_table(self.dir / p, schema=self.schema))
                if rows:
                    writer.write_table(pa.Table.from_pylist(rows, schema=self.schema))
        rows.clear()
        self.clear()

    def clear(self) -> None:
        self.parts = []
        shutil.rmtree(self.dir, ignore_errors=True)


def runner_state(runner) -> dict[str, Any]:
    """A tasks.curation.steps.StepRunner's funnel, times, dropped samples and errors as JSON."""
    return {"counters": {n: counter_state(c) for n, c in runner.counters.items()},
            "seconds": dict(runner.seconds), "errors": dict(runner.errors),
            "samples": [[stage, reason, rows] for (stage, reason), rows in runner.samples.items()]}


def restore_runner(runner, d: dict[str, Any]) -> None:
    for name, c in d["counters"].items():
        restore_counter(runner.counters[name], c)
    runner.seconds.update(d["seconds"])
    runner.errors = dict(d["errors"])
    runner.samples = {(stage, reason): rows for stage, reason, rows in d["samples"]}
