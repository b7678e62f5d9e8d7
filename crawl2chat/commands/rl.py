"""`crawl2chat rl`: RL with verifiable rewards, GRPO (the `rl` flow)."""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "rl", help="GRPO on problems with checkable answers (GSM8K or generated arithmetic)",
        description="Sample k answers per problem, reward exact final answers, update with a clipped "
                    "policy-gradient objective; writes <out>/final and registers crawl2chat-rl.")
    p.add_argument("--model", required=True, help="checkpoint directory or MLflow URI (models:/crawl2chat-sft/latest)")
    p.add_argument("--task", choices=["gsm8k", "arithmetic"], default=None, help="default: the preset's")
    p.add_argument("--out", required=True, help="output directory of this stage")
    p.add_argument("--preset", default="tiny")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--difficulty", type=int, default=None, help="arithmetic difficulty (1 = one-digit sums)")
    p.add_argument("--samples", type=int, default=None, help="k completions per prompt")
    p.add_argument("--kl-coef", type=float, default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--mlflow-root", default=None)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from flows.rl import rl

    m = rl(args.model, args.out, task=args.task, preset=args.preset, mlflow_root=args.mlflow_root,
           overrides={"steps": args.steps, "difficulty": args.difficulty, "samples_per_prompt": args.samples,
                      "kl_coef": args.kl_coef, "device": args.device})
    print(f"rl ({m['task']}): {m['model_uri']}; held-out pass@1 {m['pass@1_before']} → {m['pass@1_after']}")
    return 0
