"""Screenshots for the README from a real pipeline run on `crawl2chat up` services.

    source .crawl2chat/env.sh
    prefect deployment run 'llm-pipeline/tiny' --watch      # note the flow run UUID
    python infra/screenshots.py --flow-run UUID [--out docs/img]

Takes, with headless Chromium (Debian `chromium`, driven by Playwright; never
`playwright install`): the Prefect flow-run graph of the pipeline run, and the
MLflow comparison of its nested stage runs.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.parse
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _stage_runs(mlflow_uri: str, flow_run_id: str) -> tuple[str, list[str]]:
    """(experiment id, [parent run id, stage run ids...]) of the pipeline run with this Prefect id."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_uri)
    exp = client.get_experiment_by_name(os.environ.get("CRAWL2CHAT_EXPERIMENT", "crawl2chat"))
    if exp is None:
        raise SystemExit(f"no experiment crawl2chat at {mlflow_uri}")
    runs = client.search_runs([exp.experiment_id], f"tags.prefect_flow_run_id = '{flow_run_id}'")
    if not runs:
        raise SystemExit(f"no MLflow run tagged with Prefect flow run {flow_run_id}")
    parent = runs[0]
    children = client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    # the training stages share metric names (loss, val loss...): the comparison that says something
    train = [r for r in children if r.info.run_name in ("pretrain", "sft", "rl", "reward", "rlhf", "dpo")]
    return exp.experiment_id, [r.info.run_id for r in (train or children)]


def build_parser() -> argparse.ArgumentParser:
    """The command line (tests/test_docs_commands.py parses the documented commands with it)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--flow-run", required=True, help="Prefect flow run id of an llm-pipeline run")
    ap.add_argument("--prefect-ui", default=None, help="default: PREFECT_API_URL without /api")
    ap.add_argument("--mlflow", default=os.environ.get("MLFLOW_TRACKING_URI"), help="MLflow server URL")
    ap.add_argument("--out", default="docs/img")
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    api = os.environ.get("PREFECT_API_URL", "")
    prefect_ui = (args.prefect_ui or api.removesuffix("/api")).rstrip("/")
    if not prefect_ui.startswith("http") or not (args.mlflow or "").startswith("http"):
        raise SystemExit("needs PREFECT_API_URL and MLFLOW_TRACKING_URI of running servers (source .crawl2chat/env.sh)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    exp_id, stage_runs = _stage_runs(args.mlflow, args.flow_run)

    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1600, "height": 1000}, device_scale_factor=1)

        page.goto(f"{prefect_ui}/runs/flow-run/{args.flow_run}", wait_until="networkidle", timeout=120_000)
        time.sleep(6)  # the graph is drawn on a canvas after the data arrives
        shot = out / "prefect-flow-run-graph.png"
        page.screenshot(path=str(shot.with_suffix(".tmp.png")))
        os.replace(shot.with_suffix(".tmp.png"), shot)
        print(f"wrote {shot}")

        runs = urllib.parse.quote(json.dumps(stage_runs))
        exps = urllib.parse.quote(json.dumps([exp_id]))
        page.set_viewport_size({"width": 1600, "height": 1800})
        page.goto(f"{args.mlflow.rstrip('/')}/#/compare-runs?runs={runs}&experiments={exps}",
                  wait_until="networkidle", timeout=120_000)
        time.sleep(6)
        # MLflow 3.x opens an assistant side panel: close it so the comparison gets the width
        for sel in ('[aria-label="Close"]', '[aria-label="close"]', 'button:has-text("×")'):
            try:
                page.locator(sel).first.click(timeout=2000)
                break
            except Exception:
                continue
        time.sleep(2)
        shot = out / "mlflow-run-comparison.png"
        page.screenshot(path=str(shot.with_suffix(".tmp.png")), full_page=True)
        os.replace(shot.with_suffix(".tmp.png"), shot)
        print(f"wrote {shot}")
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
