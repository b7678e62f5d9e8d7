"""`crawl2chat pipeline`: the whole recipe (the `llm-pipeline` flow) in this process."""
from __future__ import annotations

import argparse
import sys


def _csv(text: str | None) -> list[str] | None:
    return [s.strip() for s in text.split(",") if s.strip()] if text else None


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "pipeline", help="run every stage: curate → tokenize → pretrain → sft/rl/reward/rlhf/dpo → evaluate",
        description="Run the `llm-pipeline` flow: each stage as a Prefect subflow, one parent MLflow run "
                    "`llm-pipeline` with a nested run per stage. Stages whose output is complete are "
                    "skipped, so re-running resumes after a failure. Uses $PREFECT_API_URL, $RAY_ADDRESS "
                    "and $MLFLOW_TRACKING_URI when set (e.g. `source .crawl2chat/env.sh` after "
                    "`crawl2chat up`), else embedded defaults (a local Prefect API, a local Ray instance, "
                    "OUT/mlflow.db).")
    p.add_argument("--preset", default="tiny", help="config preset (conf/presets/<name>.yaml), default tiny")
    p.add_argument("--out", default=None, help="run root (default runs/llm-pipeline-<preset>)")
    p.add_argument("--input", action="append", default=[], metavar="PATH_OR_URL_OR_GLOB",
                   help="WARC inputs for curate (repeatable; default data/samples/*.warc.gz)")
    p.add_argument("--stages", default=None, help="comma-separated stages to run (default: all)")
    p.add_argument("--force", default=None, help="comma-separated stages to re-run even if complete")
    p.add_argument("--set", action="append", default=[], metavar="STAGE.KEY=VALUE",
                   help="override one config value of one stage, e.g. --set pretrain.max_steps=20 (repeatable; "
                        "VALUE is YAML)")
    p.set_defaults(func=run)


def parse_sets(items: list[str]) -> dict[str, dict]:
    """`["pretrain.max_steps=20", ...]` → {"pretrain": {"max_steps": 20}}."""
    import yaml

    out: dict[str, dict] = {}
    for item in items:
        key, sep, value = item.partition("=")
        stage, dot, field = key.strip().partition(".")
        if not sep or not dot or not stage or not field:
            raise ValueError(f"--set {item!r}: expected STAGE.KEY=VALUE, e.g. pretrain.max_steps=20")
        out.setdefault(stage, {})[field] = yaml.safe_load(value)
    return out


def run(args: argparse.Namespace) -> int:
    import conf
    from flows import pipeline

    if args.preset not in conf.preset_names():
        raise ValueError(f"unknown preset {args.preset!r}; choose one of {conf.preset_names()}")
    stages, force = _csv(args.stages), _csv(args.force)
    overrides = parse_sets(args.set)
    for name in (stages or []) + (force or []) + list(overrides):
        pipeline.stage(name)  # a typo is an error before anything starts
    inputs = None
    if args.input:
        from tasks.warc import expand_inputs

        inputs = expand_inputs(args.input)
        if not inputs:
            raise ValueError(f"no input files match {args.input}")
    out = args.out or str(pipeline.default_root(args.preset))
    print(f"llm-pipeline: preset {args.preset} → {out}", file=sys.stderr)
    summary = pipeline.run_pipeline(args.preset, out, inputs=inputs, stages=stages, force=force,
                                    overrides=overrides or None)
    for name, info in summary["stages"].items():
        extra = f" ({info['wall_seconds']:.1f}s)" if "wall_seconds" in info else ""
        print(f"  {name:<9} {info['status']}{extra}")
    print(f"done: {summary['root']} (summary in pipeline.json; MLflow parent run `llm-pipeline`)")
    return 0
