"""Deployments for every flow, with named presets, and the runner that serves them.

Names (`<flow>/<deployment>`): `llm-pipeline/<preset>` for every preset in
conf/presets (at least `tiny`), `<stage>/<preset>` for each stage flow that
exists (acting on the pipeline's run root for that preset, so `pretrain/gpt2`
re-trains from `runs/llm-pipeline-gpt2/tokenize`), and `<stage>/default` for
the data stages (curate, tokenize, evaluate: the tiny root).

    python -m flows.deployments list                  # names + parameters
    python -m flows.deployments serve [--ready-file F] # what `crawl2chat up` runs

Stage flows whose tasks run on Ray are exposed here as module attributes
(`<stage>_flow`) carrying a Ray task runner, and deployed by module path, so the
process that executes a run imports the flow *with* its task runner.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from core.atomic import write_json
from flows import pipeline, runtime

log = logging.getLogger(__name__)

MODULE = "flows.deployments"


def presets() -> list[str]:
    """Preset names from conf/presets, `tiny` always included."""
    import conf

    names = conf.preset_names()
    return sorted(set(names) | {"tiny"}, key=lambda n: (n != "tiny", n))


def _stage_presets(st: pipeline.Stage) -> list[str]:
    import conf

    out = []
    for p in presets():
        try:
            data = conf.read_preset(p)
        except ValueError:
            data = {}
        if p == "tiny" or st.row.section in data or not data:
            out.append(p)
    return out


def _attr(stage_name: str) -> str:
    return f"{stage_name}_flow"


def __getattr__(name: str):
    """`<stage>_flow`: the stage's flow with its Ray task runner (resolved lazily on import by path)."""
    if name.endswith("_flow"):
        st = pipeline.stage(name[: -len("_flow")])
        f = pipeline.stage_flow(st)
        globals()[name] = f
        return f
    raise AttributeError(name)


def specs(parameters: bool = True) -> list[dict[str, Any]]:
    """Every deployment as {flow, name, parameters, entrypoint}, from the flows that exist now.

    `parameters=False` leaves them out (None): the curate deployments' default inputs include
    a GENERATED WARC under the runs folder, built when their parameters are made, and listing
    names must not write a file."""
    out: list[dict[str, Any]] = []
    for p in presets():
        out.append({"flow": pipeline.FLOW_NAME, "name": p, "parameters": {"preset": p},
                    "entrypoint": "flows.pipeline.llm_pipeline",
                    "description": f"the whole recipe with preset {p!r} → runs/llm-pipeline-{p}"})
    for st in pipeline.STAGES:
        names = [(p, p) for p in _stage_presets(st)]
        if not st.row.trains:  # a stage that registers no model (curate, tokenize, index, probe, evaluate)
            names.insert(0, ("default", "tiny"))
        for dep_name, p in names:
            root = pipeline.default_root(p)
            entry = f"{MODULE}.{_attr(st.name)}" if st.ray else None
            out.append({"flow": st.flow_name, "name": dep_name, "stage": st.name,
                        "parameters": st.args(root, p, {"deployment": True}) if parameters else None,
                        "entrypoint": entry,
                        "description": f"stage {st.name} of runs/llm-pipeline-{p} (preset {p!r})"})
    return out


def build(path: str | Path | None = None) -> list[Any]:
    """RunnerDeployment objects for `specs()` (path: working directory a worker runs them in)."""
    from prefect.deployments.runner import EntrypointType, RunnerDeployment

    deps = []
    for spec in specs():
        f = pipeline.llm_pipeline if spec["flow"] == pipeline.FLOW_NAME else pipeline.stage(spec["stage"]).flow()
        dep = RunnerDeployment.from_flow(f, name=spec["name"], parameters=spec["parameters"],
                                         description=spec["description"], tags=["crawl2chat"],
                                         entrypoint_type=EntrypointType.MODULE_PATH)
        if spec["entrypoint"]:
            dep.entrypoint = spec["entrypoint"]
        if path is not None:
            dep._path = str(path)
        deps.append(dep)
    return deps


def deployment_names() -> list[str]:
    return [f"{s['flow']}/{s['name']}" for s in specs(parameters=False)]


async def _serve(ready_file: Path | None) -> None:
    from prefect.runner import Runner

    runner = Runner(name="crawl2chat", pause_on_shutdown=False)
    deps = build()
    for dep in deps:
        await runner.add_deployment(dep)
    names = [f"{d.flow_name}/{d.name}" for d in deps]
    log.info("serving %d deployments: %s", len(names), ", ".join(names))
    if ready_file:
        write_json(ready_file, {"deployments": names, "pid": os.getpid()})
    await runner.start()


def apply_to_pool(work_pool: str, path: str | Path) -> list[str]:
    """Register every deployment on a work pool (workers run them from `path`); returns the names."""
    names = []
    for dep in build(path=path):
        dep.apply(work_pool_name=work_pool)
        names.append(f"{dep.flow_name}/{dep.name}")
    return names


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m flows.deployments")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sv = sub.add_parser("serve", help="register and serve every deployment (blocks)")
    sv.add_argument("--ready-file", default=None, help="written once the deployments are registered")
    sub.add_parser("list", help="print deployment names and parameters as JSON")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.cmd == "list":
        print(json.dumps(specs(), indent=2, default=str))
        return 0
    runtime.ensure_prefect_api()
    asyncio.run(_serve(Path(args.ready_file) if args.ready_file else None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
