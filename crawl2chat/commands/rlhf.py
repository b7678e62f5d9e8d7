"""`crawl2chat rlhf`: optimise a policy against a reward model (the `rlhf` flow)."""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "rlhf", help="optimise a policy against a reward model with a KL penalty (GRPO)",
        description="GRPO with the reward model's score, a KL penalty to the starting policy and a reward-"
                    "hacking watch (second RM or length); registers crawl2chat-rlhf.")
    p.add_argument("--policy", required=True, help="checkpoint directory or MLflow URI of the SFT policy")
    p.add_argument("--reward", required=True, help="reward model (models:/crawl2chat-reward@latest or a dir)")
    p.add_argument("--check-reward", default=None, help="independent second reward model (different split)")
    p.add_argument("--prompts", nargs="+", default=None, help="preference/prompt files to draw prompts from")
    p.add_argument("--out", required=True)
    p.add_argument("--preset", default="tiny")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--kl-coef", type=float, default=None)
    p.add_argument("--kl-max", type=float, default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--mlflow-root", default=None)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from flows.rlhf import rlhf

    m = rlhf(args.policy, args.reward, args.out, check_reward=args.check_reward, prompts=args.prompts,
             preset=args.preset, mlflow_root=args.mlflow_root,
             overrides={"steps": args.steps, "kl_coef": args.kl_coef, "kl_max": args.kl_max, "device": args.device})
    print(f"rlhf: {m['model_uri']}; RM score {m['rm_score_start']} → {m['rm_score_end']}, KL {m['kl_end']}, "
          f"stop: {m['stop_reason']}")
    return 0
