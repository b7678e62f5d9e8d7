"""`evaluate` flow: score the pipeline's models, then write the run's report card.

    evaluate-models (task)   OUT/eval.json, OUT/samples.jsonl   (tasks/evaluate.py)
    report-card (task)       OUT/report/report.md + PNGs         (tasks/report.py)
    OUT/manifest.json        written last

MLflow run `evaluate`: tags name every evaluated model and, for `models:/`
URIs, its registry version and run (lineage); the held-out data are logged as
inputs; metrics are `<model>.<metric>`; the report is an artifact and a Prefect
markdown artifact.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from prefect import flow

from conf import load
from conf.evaluate import EvalConfig
from core.errors import StageFailedError
from core.run_root import clear_manifest, write_manifest
from flows.runtime import log_dataset, mlflow_run, publish_markdown
from lm.datasets import gsm8k
from tasks.evaluate import evaluate_task, report_task

log = logging.getLogger(__name__)


def _metric_name(model: str, key: str) -> str:
    return f"{model}.{key}".replace("@", "_at_")


def failed_models(doc: dict[str, Any], report: str | Path) -> None:
    """Raise StageFailedError (exit 1, no manifest) when a model could not be scored; the card still says why."""
    bad = {n: m["error"] for n, m in doc["models"].items() if isinstance(m, dict) and m.get("error")}
    if bad:
        what = "; ".join(f"{n}: {e}" for n, e in bad.items())
        raise StageFailedError(f"evaluation failed for {len(bad)} of {len(doc['models'])} model(s) ({what}); "
                               f"report card of what ran: {report}")


def summary(m: dict[str, Any]) -> list[str]:
    """What `crawl2chat evaluate` prints: where the card is."""
    return [f"evaluate: report card {m.get('report')}"]


@flow(name="evaluate")
def evaluate(model: str | None = None, out: str = "runs/evaluate", preset: str | None = "tiny",
             tokens: str | None = None, models: dict[str, str] | None = None, root: str | None = None,
             mlflow_root: str | None = None, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Evaluate `model` (and any `models` {name: checkpoint|models:/ URI}); write eval.json + report card."""
    import mlflow

    from flows._stage import model_lineage

    cfg = load(EvalConfig, preset, overrides)
    out_dir = Path(out).resolve()
    clear_manifest(out_dir)  # complete again only when this run writes it, last
    named = {k: v for k, v in (models or {}).items() if v}
    main = next((k for k, v in named.items() if v == model), None)
    if model and main is None:
        main = "model"
        named = {"model": model, **named}
    if not named:
        raise ValueError("evaluate needs a model: a checkpoint directory or models:/<name>@<alias>")
    main = main or next(iter(named))
    tags: dict[str, str] = {}
    for name, uri in named.items():
        tags.update(model_lineage(uri, "evaluated_model" if name == main else f"model_{name}"))
    run_root = Path(root).resolve() if root else out_dir.parent
    # The store: the pipeline's (mlflow_root), else the run root named by --root, else --out itself;
    # never the parent of --out, which may be the current directory (no command writes there unasked).
    store = mlflow_root or (run_root if root else out_dir)
    params = {**cfg.model_dump(exclude={"section"}), "preset": preset, "models": named, "tokens": tokens}
    with mlflow_run("evaluate", store, params=params, tags=tags) as run:
        if tokens and Path(tokens).exists():
            log_dataset(tokens, "val-tokens", context="evaluation")
        if Path(cfg.gsm8k_path).exists():
            log_dataset(cfg.gsm8k_path, f"gsm8k-heldout-last-{gsm8k.HELDOUT}", context="evaluation")
        if cfg.search_index and cfg.search_n and Path(cfg.search_index).exists():
            log_dataset(cfg.search_index, "search-index", context="evaluation")  # held-out passages asked about
        doc = evaluate_task(named, str(out_dir), cfg.model_dump(mode="json"), tokens, main)
        metrics = {_metric_name(n, k): float(v) for n, m in doc["models"].items() for k, v in m.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
        # suite metrics of the main model also go unprefixed (eval/core/<task>, eval/chat/<task>),
        # so runs of different models line up side by side in the MLflow UI
        metrics.update({k: float(v) for k, v in doc["models"][main].items()
                        if k.startswith("eval/") and isinstance(v, (int, float)) and not isinstance(v, bool)})
        if metrics:
            mlflow.log_metrics(metrics)
        mlflow.log_artifact(str(out_dir / "eval.json"))
        mlflow.log_artifact(str(out_dir / "samples.jsonl"))
        report = Path(report_task(str(run_root), str(out_dir / "report"), doc))
        mlflow.log_artifacts(str(report.parent), artifact_path="report")
        publish_markdown("report-card", report.read_text(), description=f"report card of {run_root}")
        failed_models(doc, report)  # inside the run: MLflow marks it FAILED; no manifest below
        manifest = {"stage": "evaluate", "main": main, "models": named, "eval": str(out_dir / "eval.json"),
                    "report": str(report), "mlflow_run_id": run.info.run_id,
                    **{k: v for k, v in doc["models"][main].items() if isinstance(v, (int, float))}}
    write_manifest(out_dir, manifest)  # last, after the MLflow run closed cleanly
    log.info("evaluate done: %s", report)
    return manifest
