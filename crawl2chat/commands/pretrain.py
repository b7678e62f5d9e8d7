"""`crawl2chat pretrain`: the stage's common flags (conf/stages.py) plus resume control and the Ray cluster."""
from __future__ import annotations

import argparse

from conf.stages import row


def register(subparsers) -> None:
    from crawl2chat.stage_cli import register_stage

    p = register_stage(
        subparsers, row("pretrain"), func=run,
        description="Train a GPT on the token shards of a tokenize output directory. Writes checkpoints "
                    "(<out>/latest every N steps and on SIGTERM, <out>/final), metrics.jsonl and "
                    "manifest.json under --out, tracks the run in MLflow and registers "
                    "crawl2chat-base (alias current). An interrupted run continues exactly where its "
                    "last checkpoint left off.")
    p.add_argument("--resume", action="store_true", default=None,
                   help="continue from <out>/latest (the default when a checkpoint exists)")
    p.add_argument("--fresh", dest="resume", action="store_false", help="ignore checkpoints under --out")
    p.add_argument("--ray-address", default=None, help="run the training task on this Ray cluster")


def run(args: argparse.Namespace) -> int:
    from crawl2chat.stage_cli import preflight
    from lm.tokens import resolve_tokens_dir

    overrides = preflight(row("pretrain"), args)
    resolve_tokens_dir(args.tokens)  # no token shards: exit 2 before any flow starts (FileNotFoundError)
    from flows.pretrain import run_pretrain_flow, summary

    m = run_pretrain_flow(args.tokens, args.out, preset=args.preset or None, resume=args.resume,
                          overrides=overrides, mlflow_root=args.mlflow_root, ray_address=args.ray_address)
    for line in summary(m):
        print(line)
    return 0
