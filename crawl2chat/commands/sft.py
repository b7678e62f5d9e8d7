"""`crawl2chat sft`: supervised fine-tuning on chat data (the `sft` flow)."""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "sft", help="fine-tune a model on conversations (loss on assistant tokens only)",
        description="Fine-tune MODEL on Alpaca-style instructions, tool-calling conversations and GENERATED "
                    "identity/arithmetic conversations; writes <out>/final and registers crawl2chat-sft.")
    p.add_argument("--model", required=True, help="checkpoint directory or MLflow URI (models:/crawl2chat-base@latest)")
    p.add_argument("--out", required=True, help="output directory of this stage")
    p.add_argument("--preset", default="tiny", help="config preset (conf/presets/<name>.yaml), default tiny")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--device", default=None, help="auto | cpu | cuda")
    p.add_argument("--mlflow-root", default=None, help="sqlite MLflow store dir when MLFLOW_TRACKING_URI is unset")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from flows.sft import sft

    m = sft(args.model, args.out, preset=args.preset, mlflow_root=args.mlflow_root,
            overrides={"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "device": args.device})
    print(f"sft: {m['model_uri']} ({m['checkpoint']}), val loss {m['val_loss_start']:.4f} → {m['val_loss']:.4f}")
    print(f"data: kept {m['data']['kept']}, skipped {m['data']['skipped']}")
    return 0
