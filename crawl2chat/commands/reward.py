"""`crawl2chat reward`: train a reward model on preferences (the `reward` flow)."""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "reward", help="train a reward model (GPT + scalar head) on preference pairs and rankings",
        description="Bradley–Terry on chosen/rejected pairs, Plackett–Luce on rankings; reports held-out "
                    "pairwise accuracy; registers crawl2chat-reward.")
    p.add_argument("--model", required=True, help="checkpoint directory or MLflow URI")
    p.add_argument("--prefs", nargs="+", default=None,
                   help="preference files (HH-RLHF jsonl[.gz], LLaMA-Factory DPO json, rankings jsonl)")
    p.add_argument("--out", required=True)
    p.add_argument("--preset", default="tiny")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--split-salt", default=None, help="a different salt trains on a different split (second RM)")
    p.add_argument("--device", default=None)
    p.add_argument("--mlflow-root", default=None)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from flows.reward import reward

    m = reward(args.model, args.out, prefs=args.prefs, preset=args.preset, mlflow_root=args.mlflow_root,
               overrides={"steps": args.steps, "split_salt": args.split_salt, "device": args.device})
    print(f"reward: {m['model_uri']}; held-out accuracy {m['val_accuracy']:.3f} on {m['n_val']} pairs")
    return 0
