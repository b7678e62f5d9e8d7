"""`crawl2chat eval --model MODEL --out DIR`: evaluate a model and write a report card."""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser("eval", help="evaluate a model (bpb, GSM8K, arithmetic, chat format) + report card",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", required=True, help="checkpoint directory or MLflow URI (models:/crawl2chat-sft/latest)")
    p.add_argument("--out", required=True, help="output directory (eval.json, samples.jsonl, report/)")
    p.add_argument("--tokens", default=None, help="token directory with val_*.bin shards (for bits per byte)")
    p.add_argument("--root", default=None, help="pipeline run root whose stages the report card covers")
    p.add_argument("--preset", default="tiny", help="conf/presets/<name>.yaml section `eval`")
    p.add_argument("--gsm8k-n", type=int, default=None, help="held-out GSM8K problems to score")
    p.add_argument("--device", default=None)
    p.add_argument("--suite", default=None,
                   help="comma list of basic (bpb, GSM8K, arithmetic, format), core (CORE-style base-model "
                        "multiple choice), chat (ARC, GSM8K, TriviaQA in chat format); preset default: basic")
    p.add_argument("--limit", type=int, default=None,
                   help="items per core/chat task, chosen deterministically (default: preset; 0 = all)")
    p.add_argument("--no-flow", action="store_true",
                   help="run the functions directly: no Prefect flow run, no MLflow run")
    p.set_defaults(func=run)


def run(args) -> int:
    import json
    from pathlib import Path

    overrides = {"gsm8k_n": args.gsm8k_n, "device": args.device, "suite": args.suite,
                 "core_limit": args.limit, "chat_limit": args.limit}
    if args.no_flow:
        import conf
        from conf.evaluate import EvalConfig
        from tasks.evaluate import run_evaluate
        from tasks.report import build_report

        cfg = conf.load(EvalConfig, args.preset, overrides)
        doc = run_evaluate({"model": args.model}, args.out, cfg, args.tokens)
        report = build_report(args.root or Path(args.out).parent, Path(args.out) / "report", doc, with_mlflow=False)
        result = {"report": str(report), **{k: v for k, v in doc["models"]["model"].items()
                                            if isinstance(v, (int, float))}}
    else:
        from flows.evaluate import evaluate
        from flows.runtime import ensure_prefect_api

        ensure_prefect_api()

        result = evaluate(model=args.model, out=args.out, preset=args.preset, tokens=args.tokens,
                          root=args.root, overrides={k: v for k, v in overrides.items() if v is not None})
    print(json.dumps(result, indent=2, default=str))
    return 0
