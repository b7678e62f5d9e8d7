"""`probe` flow: what does the model know? → GENERATED answer/refusal SFT data for `sft`.

    probe-model (task)   <out>/results.jsonl, <out>/refusal_sft.GENERATED.jsonl   (tasks/probe.py)
    manifest             <out>/manifest.json, written last

MLflow run `probe`: tags name the probed model (and its registry version), the
config is logged as params, the counts (answers kept, refusals, known fraction,
per-sample right/wrong/abstain rates) as metrics, the conversations and the
manifest as artifacts.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from prefect import flow

from core.fmt import num
from conf import load
from conf.probe import ProbeConfig
from core.run_root import clear_manifest, write_manifest
from flows._stage import model_lineage
from flows.runtime import mlflow_run, publish_markdown
from tasks.probe import probe_task

log = logging.getLogger(__name__)


def probe_metrics(manifest: dict[str, Any]) -> dict[str, float]:
    """The manifest's numbers as run-level MLflow metrics (`final/<key>`, docs/CONTRACTS.md "Metric names")."""
    keys = ("n_questions", "k", "n_answers", "n_refusals", "n_left_out", "known_fraction", "seconds")
    out = {f"final/{k}": float(manifest[k]) for k in keys if isinstance(manifest.get(k), (int, float))}
    out.update({f"final/sample_{v}_rate": float(r) for v, r in (manifest.get("sample_rates") or {}).items()})
    return out


@flow(name="probe")
def probe(model: str, out: str, preset: str | None = "tiny", overrides: dict[str, Any] | None = None,
          mlflow_root: str | None = None) -> dict[str, Any]:
    """Probe `model` (checkpoint dir or models:/ URI) on TriviaQA; write refusal/answer SFT data under `out`."""
    import mlflow

    cfg = load(ProbeConfig, preset, overrides)
    out_dir = Path(out).resolve()
    clear_manifest(out_dir)
    params = {**cfg.model_dump(exclude={"section"}), "preset": preset, "out": str(out_dir), "model": str(model)}
    with mlflow_run("probe", mlflow_root or out_dir, params=params, tags=model_lineage(model, "probed_model")) as run:
        manifest = probe_task(model, str(out_dir), cfg)
        mlflow.log_metrics(probe_metrics(manifest))
        mlflow.log_artifact(manifest["conversations"])
        manifest["mlflow_run_id"] = run.info.run_id
        mlflow.log_dict(manifest, "manifest.json")
        r = manifest["sample_rates"]
        publish_markdown("probe-summary", "\n".join([
            "# probe", f"- model: `{model}` ({manifest['style']} prompts)",
            f"- {manifest['n_questions']} TriviaQA questions × {manifest['k']} samples: right {r['right']:.3f}, "
            f"wrong {r['wrong']:.3f}, abstained {r['abstain']:.3f}",
            f"- SFT data: {manifest['n_answers']} known answers, {manifest['n_refusals']} refusals "
            f"→ `{manifest['conversations']}`"]))
    write_manifest(out_dir, manifest)  # last: complete only once the MLflow run ended cleanly
    log.info("probe done: %d answers, %d refusals", manifest["n_answers"], manifest["n_refusals"])
    return manifest


def summary(m: dict[str, Any]) -> list[str]:
    """What `crawl2chat probe` prints."""
    r = m.get("sample_rates") or {}
    return [f"probe: {m.get('n_questions', 'n/a')} questions × {m.get('k', 'n/a')} samples ({m.get('style')} "
            f"prompts): right {num(r.get('right'), '.3f')}, wrong {num(r.get('wrong'), '.3f')}, abstained "
            f"{num(r.get('abstain'), '.3f')}",
            f"SFT data: {m.get('n_answers', 'n/a')} known answers, {m.get('n_refusals', 'n/a')} refusals → "
            f"{m.get('conversations')}"]
