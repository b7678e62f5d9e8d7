"""`crawl2chat tokenize`: the stage's common flags (conf/stages.py) plus the Ray cluster to run on."""
from __future__ import annotations

import argparse

from conf.stages import row


def register(subparsers) -> None:
    from crawl2chat.stage_cli import register_stage

    p = register_stage(
        subparsers, row("tokenize"), func=run,
        description="Train a byte-level BPE tokenizer on curated Parquet text, tokenize every shard on Ray "
                    "and write <out>/tokenizer.json, <out>/tokens/{train,val}_NNNNN.bin and "
                    "<out>/tokens/meta.json. Re-running with the same inputs does nothing.")
    p.add_argument("--ray-address", default=None, help="Ray cluster address (default: $RAY_ADDRESS or local)")


def run(args: argparse.Namespace) -> int:
    from crawl2chat.stage_cli import preflight
    from flows.tokenize import run_tokenize, summary

    overrides = preflight(row("tokenize"), args)
    meta = run_tokenize(args.data, args.out, preset=args.preset or None, ray_address=args.ray_address,
                        overrides=overrides, mlflow_root=args.mlflow_root)
    for line in summary(meta, args.out):
        print(line)
    return 0
