"""The `llm-pipeline` flow: every stage as a subflow, one parent MLflow run.

    curate ─▶ tokenize ─▶ pretrain ─▶ probe ┄▶ sft ─▶ rl
                                             ├─────▶ reward ─▶ rlhf
                                             └─────▶ dpo
                                                        └─▶ evaluate (+ report card)

(probe ┄▶ sft: the probe's GENERATED answers/refusals join SFT's mixture when it ran.)
(curate ─▶ index ┄▶ sft, evaluate: the search index of the curated passages, built after
pretrain; GENERATED search conversations join SFT's mixture, and evaluate scores search use, when it ran.)

Every stage writes under one run root `ROOT/<stage>/`. A stage is skipped when
its output manifest is complete, so re-running after a failure resumes from the
first unfinished stage; a failing stage stops the run with a Failed state that
names the stage, and leaves the earlier stages' outputs untouched.

MLflow: one parent run `llm-pipeline` (experiment `crawl2chat`), a nested run
per stage: the stages run inside `runtime.tracking_context(<root's store>, <parent run id>)`,
so each stage's own `runtime.mlflow_run` logs there, nested under the parent (no os.environ).
Every run is tagged with its Prefect flow-run id/URL and every flow run gets a
link artifact to its MLflow run (`runtime.mlflow_run`).

The stage table (`STAGES`) is the one place that knows each stage flow's
parameters; `flows/deployments.py` builds per-stage deployments from it.
"""
from __future__ import annotations

import importlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from conf import stages as conf_stages
from conf.stages import StageRow, registered_models
from core.run_root import read_manifest, resolve_checkpoint
from core.atomic import write_json
from flows import runtime
from tasks.headline import headline_line, headline_metrics, headline_params

log = logging.getLogger(__name__)

SAMPLES = runtime.REPO_ROOT / "data" / "samples"
FLOW_NAME = "llm-pipeline"


def runs_dir() -> Path:
    """Where deployment runs write by default: $CRAWL2CHAT_RUNS_DIR, else ./runs."""
    return Path(os.environ.get("CRAWL2CHAT_RUNS_DIR") or Path.cwd() / "runs").resolve()


def default_root(preset: str) -> Path:
    return runs_dir() / f"{FLOW_NAME}-{preset}"


def sample_inputs() -> list[str]:
    """The real sample WARC files shipped in data/samples (the tiny pipeline's input)."""
    files = sorted(str(p) for p in SAMPLES.glob("*.warc.gz"))
    if not files:
        raise FileNotFoundError(f"no sample WARC files in {SAMPLES}; pass inputs=[...] to the pipeline")
    return files


def generated_input(root: Path, n_docs: int, seed: int = 0) -> str:
    """ROOT/inputs/generated_<n>docs_seed<s>.warc.gz, built from the real text in data/ if missing.

    data/build_warc.py is a script beside the data, not a package: load it by path.
    """
    import importlib.util

    spec = importlib.util.spec_from_file_location("crawl2chat_build_warc", runtime.REPO_ROOT / "data" / "build_warc.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    path = root / "inputs" / mod.generated_name(n_docs, seed)
    if not path.exists():
        log.info("building the GENERATED input %s (%d pages of real text from data/)", path, n_docs)
        mod.build_warc(path, n_docs=n_docs, seed=seed)  # writes to a temp name, then renames
    return str(path)


def default_inputs(root: Path, generated_docs: int) -> list[str]:
    """What curate reads when the pipeline gets no inputs: the samples (+ one GENERATED WARC)."""
    return sample_inputs() + ([generated_input(root, generated_docs)] if generated_docs else [])


def _manifest_ok(path: Path) -> bool:
    """A manifest counts only when it parses (it is written last, atomically)."""
    return read_manifest(path) is not None


# ------------------------------------------------------------------ stages
@dataclass(frozen=True)
class Stage:
    """One pipeline stage: its row of the stage table (conf/stages.py) and how the pipeline feeds its flow."""

    row: StageRow
    args: Callable[[Path, str, dict[str, Any]], dict[str, Any]]  # (root, preset, options) -> the flow's kwargs

    @property
    def name(self) -> str:  # also its folder under the run root and its flow's name
        return self.row.name

    @property
    def flow_name(self) -> str:  # the @flow(name=...): deployments are named after it
        return self.row.name

    @property
    def ray(self) -> bool:  # its tasks run on Ray
        return self.row.ray

    @property
    def after(self) -> tuple[str, ...]:
        return self.row.after

    def manifest(self, root: Path) -> Path:
        """The file that marks the stage's output complete."""
        return root / self.name / self.row.writes

    def flow(self):
        """The stage's Prefect flow object: the function named like the stage in flows/<stage>.py."""
        return getattr(importlib.import_module(f"flows.{self.name}"), self.name)

    def done(self, root: Path) -> bool:
        return _manifest_ok(self.manifest(root))


def _over(opts: dict[str, Any], name: str) -> dict[str, Any]:
    """The stage's config overrides (`--set <stage>.KEY=VALUE`), as the flow's `overrides` argument."""
    return dict((opts.get("overrides") or {}).get(name) or {})


def _curate_args(root: Path, preset: str, opts: dict[str, Any]) -> dict[str, Any]:
    import conf
    from conf.curate import CurateConfig

    # curate's flow takes its whole config (the services send it so): build it here, overrides included
    cfg = conf.load(CurateConfig, preset if preset in conf.preset_names() else None, _over(opts, "curate"))
    inputs = opts.get("inputs") or default_inputs(root, int(cfg.generated_docs))
    return {"inputs": list(inputs), "out": str(root / "curate"), "config": cfg.model_dump(mode="json"),
            "allow_partial": bool(opts.get("allow_partial"))}


def _checkpoint(root: Path, stage_name: str) -> str:
    """The checkpoint directory a finished stage recorded in its manifest (the one resolver decides)."""
    return str(resolve_checkpoint(stage(stage_name).manifest(root).parent, require_manifest=True))


# Registered model of each training stage (docs/CONTRACTS.md), from the stage table.
MODELS = registered_models()


def _input_value(root: Path, source: str, opts: dict[str, Any]) -> str | None:
    """What an input's source (conf/stages.Input.source) stands for in this run root."""
    kind, _, where = source.partition(":")
    if kind == "checkpoint":
        # a stand-alone deployment takes the newest registered version, resolved when the run starts
        return f"models:/{MODELS[where]}@latest" if opts.get("deployment") else _checkpoint(root, where)
    if kind == "dir":
        return str(root / where)
    return None  # given by hand only (e.g. extra preference files)


def _from_row(root: Path, preset: str, opts: dict[str, Any], st: StageRow) -> dict[str, Any]:
    """A flow's arguments from its row: each input from its source, the run root's store, the overrides."""
    inputs = {i.param: _input_value(root, i.source, opts) for i in st.inputs if i.source}
    args = {**inputs, "out": str(root / st.name), "preset": preset, "overrides": _over(opts, st.name)}
    args["mlflow_root"] = str(root)
    return args


def _sft_args(root: Path, preset: str, opts: dict[str, Any]) -> dict[str, Any]:
    """SFT on the pretrained model, mixing in the probe's answers/refusals and the index's search
    conversations when those stages have run.

    Neither is in `after`: without them (`stages` leaves them out) SFT still runs, on the rest
    of its mixture. An explicit `--set sft.refusal_data=...` wins.
    """
    args = _from_row(root, preset, opts, conf_stages.row("sft"))
    found = {}
    if not opts.get("deployment") and stage("probe").done(root):
        found["refusal_data"] = str(root / "probe")
    if not opts.get("deployment") and stage("index").done(root):  # GENERATED search conversations
        found["search_index"] = str(root / "index")
    args["overrides"] = {**found, **args["overrides"]}
    return args


# The models the evaluate stage scores and the card compares, base first (the table's `evaluated` rows).
EVALUATED = tuple(s.name for s in conf_stages.STAGES if s.evaluated)


def _evaluate_args(root: Path, preset: str, opts: dict[str, Any]) -> dict[str, Any]:
    if opts.get("deployment"):
        models = {n: f"models:/{MODELS[n]}@latest" for n in EVALUATED}
    else:
        models = {n: _checkpoint(root, n) for n in EVALUATED if stage(n).done(root)}
    main = next((models[n] for n in reversed(EVALUATED) if n in models), None)
    found = {"search_index": str(root / "index")} if stage("index").done(root) else {}  # the search eval's index
    return {"model": main, "models": models, "tokens": str(root / "tokenize" / "tokens"),
            "out": str(root / "evaluate"), "preset": preset, "mlflow_root": str(root), "root": str(root),
            "overrides": {**found, **_over(opts, "evaluate")}}


# Stages whose flow arguments are more than their row's inputs (everything else: `_from_row`).
_ARGS = {"curate": _curate_args, "sft": _sft_args, "evaluate": _evaluate_args}

STAGES: list[Stage] = [
    Stage(r, _ARGS.get(r.name) or (lambda root, preset, opts, r=r: _from_row(root, preset, opts, r)))
    for r in conf_stages.STAGES
]
STAGE_NAMES = [s.name for s in STAGES]


def stage(name: str) -> Stage:
    """The pipeline stage of `name` (or an alias such as `eval`); ValueError naming the stages otherwise."""
    name = conf_stages.row(name).name
    return next(s for s in STAGES if s.name == name)


def stage_flow(st: Stage):
    """The stage's flow, with its tasks on Ray where the stage uses Ray."""
    f = st.flow()
    if st.ray:
        # Not runtime.ray_runner(): building a flow must not start a Prefect API (a
        # deployment's process imports this; run_pipeline/serve ensure the API first).
        from prefect_ray import RayTaskRunner

        address = runtime.ray_address()
        f = f.with_options(task_runner=RayTaskRunner(address=address, init_kwargs=runtime.ray_init_kwargs(address)))
    return f


class StageFailed(RuntimeError):
    """A stage's subflow failed; earlier outputs are intact and a re-run resumes here."""


class StagePartial(StageFailed):
    """A stage finished but lost inputs (curate: unreachable, or cut short past the retry limits).

    Raised unless the run allows partial output; `crawl2chat pipeline` exits 3 on it,
    like `crawl2chat curate`.
    """


def lost_inputs(root: Path, st: Stage, result: Any = None) -> dict[str, Any] | None:
    """What a stage lost, {"failed": n, "inputs": N, "by_reason": {...}}, or None when it lost nothing.

    From the stage's result when it just ran, else from its manifest (a skipped
    stage whose loss an earlier run accepted). Only curate reports lost inputs.
    """
    if st.name != "curate":
        return None
    if isinstance(result, dict) and isinstance(result.get("failed"), dict):
        failed, n_in = result["failed"], result.get("inputs")
    else:
        m = read_manifest(st.manifest(root)) or {}
        failed, n_in = m.get("failed_inputs") or {}, m.get("inputs")
    if not failed:
        return None
    by_reason: dict[str, int] = {}
    for reason in failed.values():
        by_reason[reason] = by_reason.get(reason, 0) + 1
    return {"failed": len(failed), "inputs": n_in, "by_reason": dict(sorted(by_reason.items())),
            "failed_inputs": dict(failed)}


def describe_loss(loss: dict[str, Any]) -> str:
    """"1 of 4 input(s) not read completely (remote_http_503: 1)"."""
    reasons = ", ".join(f"{r}: {n}" for r, n in loss["by_reason"].items())
    of = f" of {loss['inputs']}" if loss.get("inputs") else ""
    return f"{loss['failed']}{of} input(s) not read completely ({reasons})"


def plan(root: Path, only: list[str] | None = None, force: list[str] | None = None) -> list[tuple[Stage, str]]:
    """(stage, action) in run order: "run", or "skip" when its output is complete (and not forced)."""
    for n in [*(only or []), *(force or [])]:
        stage(n)  # validates the name: a typo is an error, not a stage silently left out
    return [(st, "skip" if st.done(root) and st.name not in (force or []) else "run")
            for st in STAGES if not only or st.name in only]


@flow(name=FLOW_NAME, log_prints=True)
def llm_pipeline(preset: str = "tiny", out: str | None = None, inputs: list[str] | None = None,
                 stages: list[str] | None = None, force: list[str] | None = None,
                 overrides: dict[str, dict[str, Any]] | None = None, allow_partial: bool = False) -> dict[str, Any]:
    """Run the whole recipe under `out` (default runs/llm-pipeline-<preset>), resuming finished stages.

    inputs: WARC files/URLs for curate (default: data/samples/*.warc.gz, plus the preset's
        GENERATED WARC when `curate.generated_docs` > 0: tiny builds one of 800 pages);
    stages: run only these (default: all); force: re-run these even if complete;
    overrides: per-stage config overrides on top of the preset, e.g. {"pretrain": {"max_steps": 20}};
    allow_partial: go on when curate lost inputs (its manifest and this run's summary/MLflow
        parent record the loss); by default the run stops there (StagePartial) and the next
        run retries them.
    """
    for name in overrides or {}:
        stage(name)  # a typo is an error, not a silently ignored setting
    logger = get_run_logger()
    root = Path(out).resolve() if out else default_root(preset)
    root.mkdir(parents=True, exist_ok=True)
    return _run_stages(logger, root, preset, inputs, stages, force, overrides or {}, allow_partial)


def _run_stages(logger, root: Path, preset: str, inputs: list[str] | None, stages: list[str] | None,
                force: list[str] | None, overrides: dict[str, dict[str, Any]],
                allow_partial: bool = False) -> dict[str, Any]:
    steps = plan(root, stages, force)
    opts = {"inputs": inputs, "overrides": overrides, "allow_partial": allow_partial}
    summary: dict[str, Any] = {"root": str(root), "preset": preset, "stages": {}}
    import mlflow

    # flat and few (tasks/headline.py): preset, seed, stages, inputs, the settings this run changed
    params = headline_params(preset, [s.name for s, _ in steps], overrides, inputs)
    t_run = time.perf_counter()
    with runtime.mlflow_run(FLOW_NAME, root, params=params, tags={"preset": preset}) as parent:
        # One store for the parent and every stage run, each nested under this one: explicit
        # state the stage subflows see (runtime.tracking_context), not the process environment.
        with runtime.tracking_context(runtime.tracking_uri(root), parent.info.run_id):
            for i, (st, action) in enumerate(steps, 1):
                at = f"stage {i}/{len(steps)} {st.name}"  # in the run's logs: `prefect flow-run logs UUID`
                if action == "skip":
                    mlflow.set_tag(f"stage.{st.name}", "skipped")
                    summary["stages"][st.name] = {"status": "skipped", "headline": _log_headline(root, st)}
                    logger.info("%s: output complete (%s); skipped%s", at, st.manifest(root),
                                headline_line(st.name, summary["stages"][st.name]["headline"]))
                    _note_loss(logger, at, st.name, summary["stages"][st.name], lost_inputs(root, st))
                    continue
                logger.info("%s: running → %s", at, root / st.name)
                mlflow.set_tag("current_stage", st.name)
                t0 = time.perf_counter()
                try:
                    kwargs = st.args(root, preset, opts)
                    result = stage_flow(st)(**kwargs)
                except Exception as e:
                    mlflow.set_tag(f"stage.{st.name}", "failed")
                    raise StageFailed(
                        f"stage {st.name!r} failed: {type(e).__name__}: {e}. Outputs of the earlier stages "
                        f"under {root} are intact; fix the cause and re-run the pipeline with the same "
                        f"out={str(root)!r} to resume from {st.name!r}.") from e
                wall = time.perf_counter() - t0
                loss = lost_inputs(root, st, result)
                if loss and not allow_partial:
                    mlflow.set_tag(f"stage.{st.name}", "partial")
                    mlflow.set_tag(f"partial.{st.name}", describe_loss(loss))
                    mlflow.log_metric(f"{st.name}.failed_input_count", loss["failed"])
                    raise StagePartial(
                        f"stage {st.name!r} is PARTIAL: {describe_loss(loss)}; their documents are missing "
                        f"(listed in {root / st.name}/stats.json failed_inputs) and no complete output was "
                        f"recorded. Re-run the pipeline with the same out={str(root)!r} to retry them from their "
                        f"checkpoints, or pass --allow-partial (allow_partial=True) to accept the loss and go on.")
                if not st.done(root):
                    mlflow.set_tag(f"stage.{st.name}", "failed")
                    raise StageFailed(f"stage {st.name!r} finished but wrote no complete output "
                                      f"({st.manifest(root)} missing)")
                mlflow.set_tag(f"stage.{st.name}", "done")
                headline = _log_headline(root, st)
                summary["stages"][st.name] = {"status": "done", "wall_seconds": round(wall, 2),
                                              "headline": headline, "result": _brief(result)}
                _note_loss(logger, at, st.name, summary["stages"][st.name], loss)
                logger.info("%s: done in %.1fs%s", at, wall, headline_line(st.name, headline))
        mlflow.set_tag("current_stage", "finished")
        mlflow.log_metric("pipeline.wall_minutes", (time.perf_counter() - t_run) / 60)
        summary.update(mlflow_run_id=parent.info.run_id, mlflow_experiment_id=parent.info.experiment_id,
                       mlflow_tracking_uri=mlflow.get_tracking_uri())
        write_json(root / "pipeline.json", {**summary, **runtime.flow_run_info()})
        mlflow.log_artifact(str(root / "pipeline.json"))
    rows = [{"stage": k, **{kk: vv for kk, vv in v.items() if kk not in ("result", "headline")}}
            for k, v in summary["stages"].items()]
    runtime.publish_table("llm-pipeline-stages", rows, description=f"stages of {root}")
    return summary


def _note_loss(logger, at: str, name: str, entry: dict[str, Any], loss: dict[str, Any] | None) -> None:
    """An accepted loss (allow_partial, now or on an earlier run): in the summary, the log and the parent run."""
    if not loss:
        return
    import mlflow

    entry["partial"] = {k: loss[k] for k in ("failed", "inputs", "by_reason", "failed_inputs")}
    mlflow.set_tag(f"partial.{name}", describe_loss(loss) + "; accepted (allow_partial)")
    mlflow.log_metric(f"{name}.failed_input_count", loss["failed"])
    logger.warning("%s: PARTIAL output: %s; accepted (allow_partial). Re-run with force=[%r] to retry them.",
                   at, describe_loss(loss), name)


def _log_headline(root: Path, st: Stage) -> dict[str, float]:
    """Log the stage's headline numbers on the active (parent) MLflow run; return them."""
    import mlflow

    vals = headline_metrics(root, st.name)
    if vals:
        mlflow.log_metrics(vals)
    return vals


def _brief(result: Any) -> Any:
    """A JSON-able, short view of a stage's return value for pipeline.json."""
    if isinstance(result, dict):
        return {k: v for k, v in result.items() if isinstance(v, (str, int, float, bool)) or v is None}
    return str(result)[:500]


def run_pipeline(preset: str = "tiny", out: str | Path | None = None, inputs: list[str] | None = None,
                 stages: list[str] | None = None, force: list[str] | None = None,
                 overrides: dict[str, dict[str, Any]] | None = None, allow_partial: bool = False) -> dict[str, Any]:
    """Run `llm-pipeline` in this process (embedded services when none are configured)."""
    runtime.ensure_prefect_api()
    return llm_pipeline(preset=preset, out=str(out) if out else None, inputs=inputs, stages=stages, force=force,
                        overrides=overrides, allow_partial=allow_partial)
