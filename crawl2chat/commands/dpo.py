"""`crawl2chat dpo`: direct preference optimisation (the `dpo` flow)."""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "dpo", help="direct preference optimisation with a frozen reference",
        description="DPO on chosen/rejected pairs; logs implicit-reward margins and accuracy; registers "
                    "crawl2chat-dpo.")
    p.add_argument("--model", required=True, help="checkpoint directory or MLflow URI")
    p.add_argument("--prefs", nargs="+", default=None, help="preference files")
    p.add_argument("--out", required=True)
    p.add_argument("--preset", default="tiny")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--beta", type=float, default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--mlflow-root", default=None)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from flows.dpo import dpo

    m = dpo(args.model, args.out, prefs=args.prefs, preset=args.preset, mlflow_root=args.mlflow_root,
            overrides={"steps": args.steps, "beta": args.beta, "device": args.device})
    val = m.get("val") or {}
    print(f"dpo: {m['model_uri']}; held-out margin {val.get('margin')}, accuracy {val.get('accuracy')}")
    return 0
