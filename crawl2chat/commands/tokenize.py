"""`crawl2chat tokenize`: train the tokenizer and write token shards (the `tokenize` flow)."""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "tokenize", help="train a BPE tokenizer on curated text and write token shards",
        description="Train a byte-level BPE tokenizer on curated Parquet text, tokenize every shard on Ray "
                    "and write <out>/tokenizer.json, <out>/tokens/{train,val}_NNNNN.bin and "
                    "<out>/tokens/meta.json. Re-running with the same inputs does nothing.")
    p.add_argument("--data", required=True,
                   help="a curate output dir (uses its curated/*.parquet) or a folder of Parquet files "
                        "with a `text` column")
    p.add_argument("--out", required=True, help="output directory of this stage")
    p.add_argument("--vocab-size", type=int, default=None, help="vocabulary size incl. bytes and special tokens")
    p.add_argument("--preset", default="tiny", help="config preset (conf/presets/<name>.yaml), default tiny")
    p.add_argument("--val-fraction", type=float, default=None, help="share of documents held out for validation")
    p.add_argument("--max-chars", type=int, default=None, help="cap on characters used to train the tokenizer")
    p.add_argument("--ray-address", default=None, help="Ray cluster address (default: $RAY_ADDRESS or local)")
    p.add_argument("--mlflow-root", default=None,
                   help="directory for the sqlite MLflow store when MLFLOW_TRACKING_URI is unset (default: --out)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from flows.tokenize import run_tokenize
    from tasks.tokenize import compression_markdown

    overrides = {"val_fraction": args.val_fraction, "max_chars": args.max_chars}
    meta = run_tokenize(args.data, args.out, preset=args.preset, vocab_size=args.vocab_size,
                        ray_address=args.ray_address, overrides=overrides, mlflow_root=args.mlflow_root)
    splits = meta["splits"]
    print(f"tokenizer: {args.out}/tokenizer.json (vocab {meta['vocab_size']}, {meta['dtype']} shards)")
    for split in ("train", "val"):
        print(f"{split}: {splits[split]['n_docs']} docs, {splits[split]['n_tokens']} tokens")
    if meta.get("failed_sources"):
        print(f"skipped {len(meta['failed_sources'])} unreadable input(s): see {args.out}/tokens/meta.json")
    if meta.get("compression"):
        print(compression_markdown(meta["compression"]))
    return 0
