"""Every stage command built from its row of the stage table (conf/stages.py).

Each stage command has the same shape: its inputs (flags named after the flow's
parameters), `--out`, `--preset`, `--set STAGE.KEY=VALUE` (repeatable, the syntax of
`crawl2chat pipeline`), `--mlflow-root`, and the row's shorthands (older flags such as
`--steps`, kept as aliases of `--set`). Running one: check everything that can be
checked before any work (exit 2, one line), run the stage's flow, print its summary.
Stages with options beyond these (curate, tokenize, pretrain, evaluate) keep a module
in crawl2chat/commands/ that adds them on top of `add_stage_arguments`.
"""
from __future__ import annotations

import argparse
import importlib
import os
from typing import Any

from conf.stages import STAGES, StageRow, row
from core.errors import Refused

_TYPES = {"int": int, "float": float, "str": str}


def add_stage_arguments(p: argparse.ArgumentParser, st: StageRow, out_required: bool = True) -> None:
    """The flags every stage command shares, plus the row's inputs and shorthands."""
    for inp in st.inputs:
        kw: dict[str, Any] = {"dest": inp.param, "help": inp.help, "required": inp.required}
        if inp.many:
            kw["nargs"] = "+"
        p.add_argument(inp.flag, *inp.aliases, **kw)
    p.add_argument("--out", required=out_required, help="output directory of this stage (e.g. runs/demo/%s)" % st.name)
    p.add_argument("--preset", default="tiny", help="config preset, conf/presets/<name>.yaml (default: tiny)")
    p.add_argument("--set", action="append", default=[], metavar=f"{st.name}.KEY=VALUE",
                   help=f"override one config value, e.g. --set {st.name}.{_example_key(st)} (repeatable; VALUE "
                        "is YAML; an unknown key is refused with the list of valid ones)")
    p.add_argument("--mlflow-root", default=None,
                   help="directory of the sqlite MLflow store when MLFLOW_TRACKING_URI is unset (default: --out)")
    for sh in st.shorthands:
        if sh.type == "bool":
            p.add_argument(sh.flag, dest=f"short_{sh.key}", action=argparse.BooleanOptionalAction, default=None,
                           help=f"{sh.help} (= --set {st.name}.{sh.key}=true/false)")
        else:
            p.add_argument(sh.flag, dest=f"short_{sh.key}", type=_TYPES[sh.type], default=None,
                           metavar={"int": "N", "float": "X"}.get(sh.type, "VALUE"),
                           help=f"{sh.help + ' ' if sh.help else ''}(= --set {st.name}.{sh.key}=…)")


def _example_key(st: StageRow) -> str:
    return f"{st.shorthands[0].key}=…" if st.shorthands else "KEY=…"


def parse_sets(items: list[str]) -> dict[str, dict[str, Any]]:
    """`["pretrain.max_steps=20", ...]` → {"pretrain": {"max_steps": 20}} (stage names normalised: eval → evaluate)."""
    import yaml

    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        stage, dot, field = key.strip().partition(".")
        if not sep or not dot or not stage or not field:
            raise Refused(f"--set {item!r}: expected STAGE.KEY=VALUE, e.g. pretrain.max_steps=20")
        try:
            name = row(stage).name
        except ValueError as e:
            raise Refused(f"--set {item!r}: STAGE.KEY=VALUE names a stage; {e}") from None
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise Refused(f"--set {item!r}: VALUE is not valid YAML ({str(e).splitlines()[0]})") from None
        out.setdefault(name, {})[field.strip()] = parsed
    return out


def config_class(st: StageRow):
    """The stage's config class (pydantic), imported by the row's "module:Class"."""
    module, _, cls = st.config.partition(":")
    return getattr(importlib.import_module(module), cls)


def check_keys(sets: dict[str, dict[str, Any]]) -> None:
    """Refuse (exit 2) a `--set` key the stage's config does not have, naming the valid keys (or, for a
    removed one, why it went and what to set instead)."""
    from conf.settings import check_removed

    for name, values in sets.items():
        try:
            check_removed(name, values)
        except ValueError as e:
            raise Refused(f"--set {e}") from None
        fields = [f for f in config_class(row(name)).model_fields if f != "section"]
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise Refused(f"--set {name}.{unknown[0]}: {name} has no setting {unknown[0]!r}; valid keys: "
                          f"{', '.join(fields)}")


def stage_overrides(args: argparse.Namespace, st: StageRow) -> dict[str, Any]:
    """This stage's config overrides: `--set` values, then shorthand flags (a flag given wins)."""
    sets = parse_sets(getattr(args, "set", []) or [])
    other = sorted(set(sets) - {st.name})
    if other:
        raise Refused(f"--set: this command sets only {st.name}.KEY=VALUE, got {', '.join(other)}")
    values = dict(sets.get(st.name, {}))
    for sh in st.shorthands:
        v = getattr(args, f"short_{sh.key}", None)
        if v is not None:
            values[sh.key] = v
    check_keys({st.name: values})
    return values


def check_preset(preset: str | None) -> None:
    """An unknown preset, or one naming a removed setting, is refused before any work."""
    import conf
    from conf.settings import check_removed

    if preset and preset not in conf.preset_names():
        raise Refused(f"unknown preset {preset!r}; choose one of {', '.join(conf.preset_names())}")
    for section, values in (conf.read_preset(preset) if preset else {}).items():
        try:
            check_removed(section, values if isinstance(values, dict) else {})
        except ValueError as e:
            raise Refused(f"preset {preset}: {e}") from None


def check_model_uri(*uris: str | None) -> None:
    """A `models:/` URI needs a tracking store: without one MLflow would make ./mlflow.db (exit 2 instead)."""
    if any(u and str(u).startswith("models:/") for u in uris) and not os.environ.get("MLFLOW_TRACKING_URI"):
        raise Refused("a models:/ URI needs the MLflow store that holds the registry: set MLFLOW_TRACKING_URI "
                      "(e.g. sqlite:////abs/path/runs/demo/mlflow.db or http://127.0.0.1:5000), or pass a "
                      "checkpoint directory such as runs/demo/sft instead")


def check_model_dir(uri: str | None) -> None:
    """A local model path must resolve to a checkpoint before any work (the one resolver says why not)."""
    if uri and not str(uri).startswith("models:/"):
        from core.run_root import resolve_checkpoint

        resolve_checkpoint(uri)  # CheckpointError is a ValueError: exit 2 with its one line


def preflight(st: StageRow, args: argparse.Namespace) -> dict[str, Any]:
    """Every check that needs no work: preset, `--set` keys, model inputs. Returns the overrides."""
    check_preset(args.preset)
    overrides = stage_overrides(args, st)
    models = [getattr(args, i.param, None) for i in st.inputs if i.source.startswith("checkpoint:")
              or i.param in ("check_reward",)]
    check_model_uri(*models)
    for m in models:
        check_model_dir(m)
    for i in st.inputs:  # curated data (tokenize, index): its Parquet files must be there before any flow starts
        if i.source == "dir:curate" and getattr(args, i.param, None):
            from tasks.tokenize import find_parquet

            find_parquet(getattr(args, i.param))  # ValueError naming the folder: exit 2
    return overrides


def stage_flow_module(st: StageRow):
    return importlib.import_module(f"flows.{st.name}")


def run_stage(args: argparse.Namespace) -> int:
    """A stage command with no options of its own: preflight, the flow, its summary."""
    st = row(args.command)
    overrides = preflight(st, args)
    from flows.runtime import ensure_prefect_api

    mod = stage_flow_module(st)
    ensure_prefect_api()  # a real local API when none is configured (Prefect's ephemeral one times out on CPU)
    inputs = {i.param: getattr(args, i.param, None) for i in st.inputs}
    m = getattr(mod, st.name)(**inputs, out=args.out, preset=args.preset or None, overrides=overrides,
                               mlflow_root=args.mlflow_root)
    for line in mod.summary(m):
        print(line)
    return 0


def register_stage(subparsers, st: StageRow, description: str | None = None, func=run_stage):
    """Add the stage's subcommand (and its aliases) from its row; returns the parser for more options."""
    p = subparsers.add_parser(st.name, aliases=list(st.aliases), help=st.help, description=description or st.help)
    add_stage_arguments(p, st)
    p.set_defaults(func=func, command=st.name)
    return p


def generic_stages() -> list[StageRow]:
    """Rows whose command is built here entirely (no module in crawl2chat/commands/)."""
    return [s for s in STAGES if importlib.util.find_spec(f"crawl2chat.commands.{s.name}") is None]
