"""`crawl2chat index`: cut curated documents into passages and build the search index (the `index` flow)."""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "index", help="build the full-text search index (Tantivy, BM25) of the curated corpus",
        description="Cut the curated documents into passages of a few hundred words (with URL, title/domain "
                    "and date) and index them with Tantivy under <out>/tantivy; <out>/manifest.json is "
                    "written last. Re-running adds only new curated shards. The `search` tool reads it.")
    p.add_argument("--data", required=True,
                   help="a curate output dir (the shards its curated/manifest.json lists) or a folder of "
                        "Parquet files with `text` and `url` columns")
    p.add_argument("--out", required=True, help="output directory of this stage (e.g. RUN/index)")
    p.add_argument("--preset", default="tiny", help="config preset (conf/presets/<name>.yaml), default tiny")
    p.add_argument("--passage-words", type=int, default=None, help="words per passage (closes at a line break)")
    p.add_argument("--top-k", type=int, default=None, help="passages the search tool returns")
    p.add_argument("--max-tokens", type=int, default=None, help="token budget of the search tool's output")
    p.add_argument("--mlflow-root", default=None,
                   help="directory for the sqlite MLflow store when MLFLOW_TRACKING_URI is unset (default: --out)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from flows.index import run_index

    overrides = {"passage_words": args.passage_words, "top_k": args.top_k, "max_tokens": args.max_tokens}
    m = run_index(args.data, args.out, preset=args.preset, overrides={k: v for k, v in overrides.items() if v},
                  mlflow_root=args.mlflow_root)
    print(f"index: {m['passages']} passages from {m['documents']} documents in {len(m['shards'])} shard(s) "
          f"→ {args.out} ({m['new_shards']} new this run)")
    for f in m.get("failed_inputs", []):
        print(f"skipped {f['source']}: {f['error']}")
    return 0
