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
    p.add_argument("--allow-partial", action="store_true",
                   help="go on when curate lost inputs (unreachable, or cut short past the retry limits); the "
                        "loss is recorded in curate's manifest, pipeline.json and the MLflow parent run. "
                        "Default: stop there with exit 3 (the next run retries them)")
    p.add_argument("--set", action="append", default=[], metavar="STAGE.KEY=VALUE",
                   help="override one config value of one stage, e.g. --set pretrain.max_steps=20 (repeatable; "
                        "VALUE is YAML)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from core.errors import EXIT_PARTIAL
    from crawl2chat.stage_cli import check_keys, check_preset, parse_sets
    from flows import pipeline

    check_preset(args.preset)
    stages, force = _csv(args.stages), _csv(args.force)
    overrides = parse_sets(args.set)
    check_keys(overrides)  # an unknown STAGE.KEY is an error before anything starts, naming the valid keys
    stages = [pipeline.stage(n).name for n in stages] if stages else None  # a typo is an error; eval → evaluate
    force = [pipeline.stage(n).name for n in force] if force else None
    inputs = None
    if args.input:
        from tasks.curation.warc import expand_inputs

        inputs = expand_inputs(args.input)
        if not inputs:
            raise ValueError(f"no input files match {args.input}")
    out = args.out or str(pipeline.default_root(args.preset))
    print(f"llm-pipeline: preset {args.preset} → {out}", file=sys.stderr)
    try:
        summary = pipeline.run_pipeline(args.preset, out, inputs=inputs, stages=stages, force=force,
                                        overrides=overrides or None, allow_partial=args.allow_partial)
    except pipeline.StagePartial as e:
        # On stdout, like `crawl2chat curate`'s PARTIAL line: the run stopped on purpose.
        print(f"llm-pipeline: {e}")
        print(f"llm-pipeline: exit {EXIT_PARTIAL} (pass --allow-partial to accept a partial result)")
        return EXIT_PARTIAL
    for name, info in summary["stages"].items():
        extra = f" ({info['wall_seconds']:.1f}s)" if "wall_seconds" in info else ""
        if info.get("partial"):
            extra += f" PARTIAL: {pipeline.describe_loss(info['partial'])}; accepted (--allow-partial)"
        print(f"  {name:<9} {info['status']}{extra}")
    print(next_steps(summary))
    return 0


def _tool(name: str) -> str:
    """How to type a console script of this environment: bare when it is on PATH, else its path."""
    import os
    import shutil
    from pathlib import Path

    own = Path(sys.executable).parent / name
    if not own.exists() or shutil.which(name) == str(own):
        return name
    try:
        return os.path.relpath(own)
    except ValueError:
        return str(own)


def next_steps(summary: dict) -> str:
    """The closing lines of a pipeline run: where the report card is and the three next commands."""
    import json
    import os
    from pathlib import Path

    root = Path(summary["root"])
    shown = os.path.relpath(root) if root.is_relative_to(Path.cwd()) else str(root)
    lines = [f"done: {shown} (summary in {shown}/pipeline.json; MLflow parent run `llm-pipeline` "
             f"{summary.get('mlflow_run_id', '')})".replace(" )", ")")]
    try:
        report = json.loads((root / "evaluate" / "manifest.json").read_text())["report"]
        lines.append(f"report card: {os.path.relpath(report) if Path(report).is_relative_to(Path.cwd()) else report}")
    except (OSError, ValueError, KeyError):
        lines.append("report card: none (the evaluate stage did not run)")
    chat_model = next((f"{shown}/{n}" for n in ("sft", "rl", "pretrain") if (root / n / "manifest.json").exists()),
                      None)
    uri = summary.get("mlflow_tracking_uri") or f"sqlite:///{root}/mlflow.db"
    exp = summary.get("mlflow_experiment_id")
    lines.append("next:")
    if chat_model:
        lines.append(f"  {_tool('crawl2chat')} chat  --model {chat_model}    # chat in the terminal")
        lines.append(f"  {_tool('crawl2chat')} serve --model {chat_model}    # web chat + OpenAI API on "
                     "http://127.0.0.1:8000")
    # the runs table in model-training mode, not the GenAI start page (tasks/headline.runs_url)
    runs_view = f"/#/experiments/{exp}/runs?workflowType=machine_learning" if exp else ""
    if uri.startswith("http"):
        lines.append(f"  open {uri.rstrip('/')}{runs_view}    # MLflow: parent run `llm-pipeline` + one per stage")
    else:
        lines.append(f"  {_tool('mlflow')} ui --backend-store-uri {uri} --host 127.0.0.1 --port 5001"
                     f"    # then http://127.0.0.1:5001{runs_view}")
    if root == (Path.cwd() / "runs" / "demo").resolve():
        lines.append("  (the same for runs/demo: make chat | make serve | make mlflow-ui)")
    return "\n".join(lines)
