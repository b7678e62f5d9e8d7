"""`crawl2chat export --model MODEL --format hf --out DIR`: a model for the Hugging Face ecosystem.

DIR loads with transformers' AutoModelForCausalLM/AutoTokenizer (trust_remote_code=True
only where the model's options are not a stock architecture), with the chat template
and generation config; see lm/hf.py and docs/HUGGINGFACE.md.
"""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export", help="write a model as a Hugging Face transformers directory",
        description="Export MODEL (a checkpoint or stage directory, models:/ URI, or a transformers Llama/Qwen3 "
                    "directory) for transformers, vLLM, lm-eval's hf backend and the hub. A model with the "
                    "stock-architecture options becomes Qwen3ForCausalLM/LlamaForCausalLM; any other ships its "
                    "code (load with trust_remote_code=True).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", required=True, help="checkpoint directory, stage directory or MLflow URI")
    p.add_argument("--format", default="hf", choices=["hf"], help="export format")
    p.add_argument("--out", required=True, help="output directory (replaced)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from lm.checkpoint import load_model
    from lm.hf import export_hf

    model, tok, meta = load_model(args.model)
    summary = export_hf(model, tok, args.out, meta)
    print(json.dumps(summary, indent=2))
    return 0
