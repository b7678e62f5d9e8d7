"""Build the `index` stage's search index with its pure functions (no Prefect)."""
from __future__ import annotations

import json
from pathlib import Path

from conf.index import IndexConfig
from tasks.index import passages_for_shard, passages_path, plan_update, read_state, update_index
from tasks.tokenize import source_fingerprint


def build_index(index_dir: Path, shards: list[Path], cfg: IndexConfig) -> dict:
    """Passages of every new shard, one update, the tool manifest."""
    state, _ = read_state(index_dir)
    todo, gone = plan_update(source_fingerprint(shards), state)
    added = [{**passages_for_shard(s["path"], passages_path(index_dir, s["path"]), cfg), "size": s["size"],
              "mtime_ns": s["mtime_ns"]} for s in todo]
    upd = update_index(index_dir, added, gone, cfg)
    shards_m = [{"source": p, **v} for p, v in upd["state"].items()]
    (index_dir / "manifest.json").write_text(json.dumps({"shards": shards_m, "passages": upd["num_passages"],
                                                         "tool": {"top_k": cfg.top_k, "max_tokens": cfg.max_tokens}}))
    return upd
