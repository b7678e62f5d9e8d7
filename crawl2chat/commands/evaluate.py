"""`crawl2chat evaluate` (alias `eval`): score a model and write a report card.

The stage's common flags come from its row (conf/stages.py); here only what evaluation
adds: the run root the card covers, a per-suite item limit, and a run without Prefect/MLflow.
"""
from __future__ import annotations

import argparse

from conf.stages import row


def register(subparsers) -> None:
    from crawl2chat.stage_cli import register_stage

    p = register_stage(subparsers, row("evaluate"), func=run)
    p.add_argument("--root", default=None, help="pipeline run root whose stages the report card covers "
                                                 "(default: the parent of --out)")
    p.add_argument("--limit", type=int, default=None,
                   help="items per core/chat task, chosen deterministically (0 = all; default: the preset's)")
    p.add_argument("--no-flow", action="store_true",
                   help="run the functions directly: no Prefect flow run, no MLflow run")


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from crawl2chat.stage_cli import preflight

    overrides = preflight(row("evaluate"), args)
    if args.limit is not None:
        overrides.update(core_limit=args.limit, chat_limit=args.limit)
    if args.no_flow:
        import conf
        from conf.evaluate import EvalConfig
        from flows.evaluate import failed_models
        from tasks.evaluate import run_evaluate
        from tasks.report import build_report

        cfg = conf.load(EvalConfig, args.preset or None, overrides)
        doc = run_evaluate({"model": args.model}, args.out, cfg, args.tokens)
        report = build_report(args.root or Path(args.out).parent, Path(args.out) / "report", doc, with_mlflow=False)
        failed_models(doc, report)  # a model that could not be scored is a failed run (exit 1)
        result = {"report": str(report), **{k: v for k, v in doc["models"]["model"].items()
                                            if isinstance(v, (int, float))}}
    else:
        from flows.evaluate import evaluate
        from flows.runtime import ensure_prefect_api

        ensure_prefect_api()
        result = evaluate(model=args.model, out=args.out, preset=args.preset or None, tokens=args.tokens,
                          root=args.root, mlflow_root=args.mlflow_root, overrides=overrides)
    print(json.dumps(result, indent=2, default=str))
    return 0
