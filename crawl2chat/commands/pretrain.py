"""`crawl2chat pretrain`: train the base GPT on token shards (the `pretrain` flow)."""
from __future__ import annotations

import argparse
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "pretrain", help="pretrain a GPT on token shards; registers crawl2chat-base",
        description="Train a GPT on the token shards of a tokenize output directory. Writes checkpoints "
                    "(<out>/latest every N steps and on SIGTERM, <out>/final), metrics.jsonl and "
                    "manifest.json under --out, tracks the run in MLflow and registers "
                    "crawl2chat-base (alias current). An interrupted run continues exactly where its "
                    "last checkpoint left off.")
    p.add_argument("--tokens", required=True, help="tokenize output directory (or its tokens/ folder)")
    p.add_argument("--out", required=True, help="output directory of this stage")
    p.add_argument("--preset", default="tiny", help="tiny | small | gpt2 | d20 (conf/presets/<name>.yaml)")
    p.add_argument("--max-steps", type=int, default=None, help="optimizer steps (overrides the preset)")
    p.add_argument("--resume", action="store_true", default=None,
                   help="continue from <out>/latest (default: resume when a checkpoint exists)")
    p.add_argument("--fresh", dest="resume", action="store_false", help="ignore checkpoints under --out")
    p.add_argument("--device", default=None, help="auto | cpu | cuda")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None, help="torch.compile the model")
    p.add_argument("--nproc-per-node", type=int, default=None, help="processes (GPUs) for torchrun/DDP")
    p.add_argument("--ray-address", default=None, help="run the training task on this Ray cluster")
    p.add_argument("--mlflow-root", default=None,
                   help="directory for the sqlite MLflow store when MLFLOW_TRACKING_URI is unset (default: --out)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from flows.pretrain import run_pretrain_flow
    from lm.checkpoint import CheckpointError

    overrides = {"device": args.device, "compile": args.compile, "nproc_per_node": args.nproc_per_node}
    try:
        m = run_pretrain_flow(args.tokens, args.out, preset=args.preset, max_steps=args.max_steps,
                              resume=args.resume, overrides=overrides, mlflow_root=args.mlflow_root,
                              ray_address=args.ray_address)
    except CheckpointError as e:
        print(f"crawl2chat pretrain: error: {e}", file=sys.stderr)
        return 2
    bpb = m.get("val_bpb")
    print(f"pretrain: {m['model_uri']} ({m['checkpoint']}), {m['step']} steps, "
          f"val loss {m.get('val_loss', float('nan')):.4f}" + (f", {bpb:.3f} bits/byte" if bpb else ""))
    return 0
