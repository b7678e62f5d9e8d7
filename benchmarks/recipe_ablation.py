"""Recipe ablation: which optimizer, schedule and architecture options learn most per step.

    python benchmarks/recipe_ablation.py                          # CPU, issue 17's shape, the key variants
    python benchmarks/recipe_ablation.py --shape tiny --variants all
    python benchmarks/recipe_ablation.py --variants default,muon_lr*2,decay_frac=0.8 --steps 100
    python benchmarks/recipe_ablation.py --list                   # the named variants
    python benchmarks/recipe_ablation.py --device cuda --shape gpt2 --variants key

Every variant trains a fresh model (same seed, so the same init where the
architecture is the same) on the SAME token batches in the same order, and is
evaluated on the same held-out windows at fixed steps. Printed: val loss
(nats/token) and bits-per-byte at each eval step, and each as a difference
against `default` — the `tiny` preset's current recipe (conf/presets/tiny.yaml,
`pretrain:`) at the chosen shape — measured in the same run. A variant that
differs from an earlier one only in its lr/wd schedule (decay_frac,
decay_shape, warmup, ...) trains identically until the two schedules part, so
it starts from that one's state at that step instead of from step 0 (e.g.
`decay_frac=0.65` after `default`'s 0.3 trains 195 of 300 steps); the result
is the same as from scratch, `--no-branch` turns it off.

A variant is a name from `--list`, or a spec `key=value` / `key*factor`
(several joined by `+`, e.g. `muon_lr*2+decay_frac=0.8`) applied to `default`.
`tiny-old` and `small-opt` are the two columns of issue 17's table (the tiny
preset before it, and the small preset's optimizer on tiny's schedule).

Shapes: `issue` (default on CPU) is issue 17's setup — depth 4, width 256,
4 heads, context 256, batch 8 × 256, 300 steps; `tiny` is the tiny preset's
own shape and step count (what `make demo` trains); `gpt2` is the gpt2
preset's model and micro-batch (bf16 on a GPU; give it a tokenize output of
~10 M+ tokens with --tokens, the demo's 0.5 M would be seen 19 times).

Tokens: `--tokens DIR` (a tokenize output), else the demo's
(runs/demo/tokenize), else GENERATED shards built once from the real text in
data/text (C4 and Wikipedia demo documents) with the project's tokenizer
(tests.support.toy.make_generated_token_shards) — so it runs on a fresh clone.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from conf.pretrain import PretrainSettings  # noqa: E402
from conf.settings import load_settings  # noqa: E402
from core.atomic import write_text  # noqa: E402
from lm.data import TokenBatchLoader, eval_batches  # noqa: E402
from lm.model import GPT, GPTConfig  # noqa: E402
from lm.optim import build_optimizer, set_lr, train_step  # noqa: E402
from lm.runtime import autocast_context, resolve_device, resolve_dtype  # noqa: E402
from lm.schedule import lr_multiplier, wd_multiplier  # noqa: E402
from lm.tokens import META_NAME, TokenShards, token_bytes  # noqa: E402
from lm.train import evaluate  # noqa: E402

# The settings a variant may change (fields of conf/pretrain.py's PretrainSettings).
RECIPE_KEYS = ("optimizer", "lr", "embedding_lr", "muon_lr", "weight_decay", "wd_schedule", "beta1", "beta2",
               "grad_clip", "schedule", "warmup_steps", "min_lr_ratio", "decay_frac", "decay_shape",
               "lr_ref_batch_tokens", "lr_ref_width", "rope_base", "softcap", "qk_norm", "value_embeds",
               "resid_scalars", "mlp", "mlp_hidden", "norm_weights", "norm_eps", "embed_norm", "tie_embeddings")
ARCH_KEYS = ("rope_base", "softcap", "qk_norm", "value_embeds", "resid_scalars", "mlp", "mlp_hidden", "norm_weights",
             "norm_eps", "embed_norm", "tie_embeddings")

# Issue 17's two columns, fixed here so they stay comparable after the presets change.
_BASE = dict(weight_decay=0.0, wd_schedule="constant", beta1=0.9, beta2=0.95, grad_clip=1.0, warmup_steps=10,
             decay_shape="linear", lr_ref_batch_tokens=0, lr_ref_width=0, rope_base=10000.0, softcap=15.0,
             qk_norm=True, value_embeds=False, resid_scalars=False, decay_frac=0.2, muon_lr=0.02)
FIXED = {
    # conf/presets/tiny.yaml before issue 17
    "tiny-old": {**_BASE, "optimizer": "adamw", "lr": 3e-3, "embedding_lr": 3e-2, "schedule": "cosine",
                 "min_lr_ratio": 0.1},
    # conf/presets/small.yaml's optimizer and schedule, tiny's warmup
    "small-opt": {**_BASE, "optimizer": "muon", "lr": 4e-3, "embedding_lr": 0.2, "muon_lr": 0.02,
                  "schedule": "wsd", "decay_frac": 0.2, "min_lr_ratio": 0.0},
}

# Named one-setting changes against `default` (the key ones run when --variants is not given).
KEY_VARIANTS = ["default", "tiny-old", "small-opt", "value_embeds=false"]
VARIANTS = KEY_VARIANTS + [
    "no-scaling",  # the preset's lrs/wd as written, without the batch/width transfer rule
    "optimizer=adamw",  # AdamW for the block matrices too, same schedule
    "muon_lr*0.5", "muon_lr*2",
    "embedding_lr*0.5", "embedding_lr*2",
    "lr*0.5", "lr*2",  # AdamW: output head (and matrices under adamw)
    "decay_frac=0.3", "decay_frac=0.65", "decay_frac=0.9", "decay_shape=sqrt", "decay_shape=cosine", "min_lr_ratio=0.1",
    "schedule=cosine",
    "warmup_steps=0", "warmup_steps=30",
    "weight_decay=0.05", "weight_decay=0.1+wd_schedule=linear",
    "beta2=0.99",
    "rope_base=100000", "qk_norm=false", "softcap=0", "softcap=30", "resid_scalars=true",
]

def preset(name: str) -> dict[str, Any]:
    """The `pretrain:` section of a preset, as PretrainSettings fields (no pydantic needed: conf/settings.py)."""
    return load_settings(PretrainSettings, name).model_dump()


def shape_settings(shape: str, tiny: dict[str, Any]) -> dict[str, Any]:
    """depth, sequence_len, batch (sequences per step), steps, eval_at of a named shape."""
    if shape == "issue":  # issue 17: depth 4 → width 256, 4 heads of 64
        return dict(depth=4, sequence_len=256, batch=8, steps=300, eval_at=(50, 100, 200, 300))
    if shape == "tiny":
        n = tiny["max_steps"]
        return dict(depth=tiny["depth"], sequence_len=tiny["sequence_len"], batch=tiny["device_batch_size"],
                    steps=n, eval_at=tuple(sorted({n // 6, n // 3, 2 * n // 3, n})))
    if shape == "gpt2":
        g = preset("gpt2")
        return dict(depth=g["depth"], sequence_len=g["sequence_len"], batch=g["device_batch_size"], steps=300,
                    eval_at=(50, 100, 200, 300))
    raise ValueError(f"unknown shape {shape!r}; choose issue, tiny or gpt2")


def _value(s: str) -> Any:
    low = s.lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return json.loads(s)
    except json.JSONDecodeError:
        return s


def resolve_variant(spec: str, default: dict[str, Any]) -> dict[str, Any]:
    """The full recipe of a variant name or `key=value`/`key*factor` spec (parts joined by `+`)."""
    if spec == "default":
        return dict(default)
    if spec in FIXED:
        return dict(FIXED[spec])
    if spec == "no-scaling":
        return {**default, "lr_ref_batch_tokens": 0, "lr_ref_width": 0}
    recipe = dict(default)
    for part in spec.split("+"):
        if "=" in part:
            k, v = part.split("=", 1)
            k = k.strip()
            if k not in RECIPE_KEYS:
                raise ValueError(f"variant {spec!r}: unknown setting {k!r}; known: {', '.join(RECIPE_KEYS)}")
            recipe[k] = _value(v.strip())
        elif "*" in part:
            k, f = part.split("*", 1)
            k = k.strip()
            if k not in RECIPE_KEYS or not isinstance(default.get(k), (int, float)) or isinstance(default[k], bool):
                raise ValueError(f"variant {spec!r}: {k!r} is not a numeric setting")
            recipe[k] = default[k] * float(f)
        else:
            raise ValueError(f"variant {spec!r}: expected a name from --list, key=value or key*factor")
    return recipe


# ----------------------------------------------------------------- tokens
DEMO_TOKENS = REPO / "runs" / "demo" / "tokenize"


def find_tokens(given: str | None, work: Path, build: bool = False) -> tuple[Path, str]:
    """A tokenize output to train on, and where it came from (`build`: the data/text shards even if the demo's exist)."""
    if given:
        return Path(given), "given"
    if not build and (DEMO_TOKENS / "tokens" / META_NAME).exists():
        return DEMO_TOKENS, "demo"
    out = work / "tokens-GENERATED"
    if not (out / "tokens" / META_NAME).exists():  # the manifest is written last: complete when present
        from tests.support.toy import make_generated_token_shards

        texts = []
        for line in (REPO / "data" / "text" / "llamafactory_c4_demo.jsonl").read_text(encoding="utf-8").splitlines():
            if line.strip():
                texts.append(json.loads(line)["text"])
        texts.append((REPO / "data" / "text" / "llamafactory_wiki_demo.txt").read_text(encoding="utf-8"))
        print(f"building GENERATED token shards from data/text (C4 + Wikipedia demo documents) in {out}")
        make_generated_token_shards(out, ["\n\n".join(texts)], vocab_size=4096, val_fraction=0.05,
                                    source="GENERATED:data/text c4+wiki demo")
    return out, "generated"


# ------------------------------------------------------------------- run
def train_variant(recipe: dict[str, Any], shape: dict[str, Any], vocab_size: int, batches, val, bytes_per_token,
                  device: torch.device, dtype: torch.dtype, seed: int, compile_model: bool = False,
                  progress: bool = True, start: dict[str, Any] | None = None,
                  snapshot_at: Iterable[int] = ()) -> dict[str, Any]:
    """Train one recipe on the given batches; val loss/bpb at shape['eval_at'].

    `start`: a snapshot (from an earlier variant's `snapshots`) to continue
    from instead of training its first `start["step"]` steps again; the result
    then equals a run from scratch (same state, same batches). `snapshot_at`:
    steps after which to keep such a snapshot, returned under `snapshots`.
    """
    torch.manual_seed(seed)
    mcfg = GPTConfig.from_depth(shape["depth"], vocab_size, shape["sequence_len"],
                                **{k: recipe[k] for k in ARCH_KEYS})
    model = GPT(mcfg).to(device)
    batch_tokens = shape["batch"] * shape["sequence_len"]
    opt = build_optimizer(model, optimizer=recipe["optimizer"], lr=recipe["lr"], embedding_lr=recipe["embedding_lr"],
                          muon_lr=recipe["muon_lr"], weight_decay=recipe["weight_decay"],
                          betas=(recipe["beta1"], recipe["beta2"]), batch_tokens=batch_tokens,
                          ref_batch_tokens=recipe["lr_ref_batch_tokens"], ref_width=recipe["lr_ref_width"])
    run_model = torch.compile(model) if compile_model else model
    steps = shape["steps"]

    def loss_fn(b):
        x, y = b[0].to(device, non_blocking=True), b[1].to(device, non_blocking=True)
        return run_model(x, y, loss_reduction="sum")

    evals: dict[int, dict[str, float]] = {}
    losses: list[float] = []
    first = 0
    if start is not None:
        model.load_state_dict(start["model"])
        opt.load_state_dict(copy.deepcopy(start["opt"]))
        first, losses = start["step"], list(start["losses"])
        evals = {k: dict(v) for k, v in start["evals"].items()}
    snapshot_at, snapshots = set(snapshot_at), {}
    t0 = time.perf_counter()
    model.train()
    for step in range(first, steps):
        mult = lr_multiplier(step, steps, recipe["warmup_steps"], recipe["schedule"], recipe["min_lr_ratio"],
                             recipe["decay_frac"], recipe["decay_shape"])
        set_lr(opt, mult, wd_multiplier(step, steps, recipe["wd_schedule"]))
        out = train_step(opt, run_model, [batches[step]], loss_fn, recipe["grad_clip"] or None,
                         normalizer=batch_tokens, autocast=lambda: autocast_context(device, dtype))
        if not math.isfinite(out["loss"]):
            evals[step + 1] = {"val_loss": float("nan"), "val_bpb": float("nan")}
            print(f"  diverged at step {step + 1}")
            break
        losses.append(out["loss"])
        if step + 1 in shape["eval_at"]:
            evals[step + 1] = evaluate(run_model, val, bytes_per_token, device, dtype)
            if progress:
                print(f"  step {step + 1}: train {np.mean(losses[-10:]):.3f}  val {evals[step + 1]['val_loss']:.3f} "
                      f"({evals[step + 1]['val_bpb']:.3f} bpb)  {time.perf_counter() - t0:.0f}s", flush=True)
        if step + 1 in snapshot_at:
            snapshots[step + 1] = {"step": step + 1, "model": copy.deepcopy(model.state_dict()),
                                   "opt": copy.deepcopy(opt.state_dict()), "losses": list(losses),
                                   "evals": {k: dict(v) for k, v in evals.items()}}
    return {"evals": {str(k): v for k, v in evals.items()}, "seconds": time.perf_counter() - t0,
            "n_params": model.num_params(), "lr_scales": {g["name"]: g["lr_scale"] for g in opt.param_groups},
            "snapshots": snapshots}


# Settings that only change the lr/wd multipliers per step: two recipes that differ only in these train
# identically until their multipliers first differ, so the later one can start from the earlier one's state.
SCHEDULE_KEYS = ("schedule", "warmup_steps", "min_lr_ratio", "decay_frac", "decay_shape", "wd_schedule")


def multipliers(recipe: dict[str, Any], steps: int) -> list[tuple[float, float]]:
    """(lr multiplier, weight-decay multiplier) of every step."""
    return [(lr_multiplier(s, steps, recipe["warmup_steps"], recipe["schedule"], recipe["min_lr_ratio"],
                           recipe["decay_frac"], recipe["decay_shape"]), wd_multiplier(s, steps, recipe["wd_schedule"]))
            for s in range(steps)]


def shared_steps(a: dict[str, Any], b: dict[str, Any], steps: int) -> int:
    """How many first steps recipes `a` and `b` train identically (0 unless they differ only in schedules)."""
    if any(a[k] != b[k] for k in RECIPE_KEYS if k not in SCHEDULE_KEYS):
        return 0
    n = 0
    for x, y in zip(multipliers(a, steps), multipliers(b, steps)):
        if x != y:
            break
        n += 1
    return n


def branch_plan(recipes: dict[str, dict[str, Any]], steps: int) -> dict[str, tuple[str, int]]:
    """For each variant that can reuse an earlier one's first steps: (that variant, step to start from)."""
    plan: dict[str, tuple[str, int]] = {}
    names = list(recipes)
    for j, name in enumerate(names):
        best = max(((shared_steps(recipes[i], recipes[name], steps), i) for i in names[:j]), default=(0, ""))
        if best[0] > 0:
            plan[name] = (best[1], best[0])
    return plan


def table(results: dict[str, dict[str, Any]], eval_at, reference: str = "default") -> str:
    """Markdown: val loss and bpb per eval step, each with its difference against `reference`."""
    head = "| variant | " + " | ".join(f"loss@{s} (Δ)" for s in eval_at) + f" | bpb@{eval_at[-1]} (Δ) | s |"
    lines = [head, "|" + "---|" * (len(eval_at) + 3)]
    ref = results.get(reference, {}).get("evals", {})
    for name, r in results.items():
        cells = []
        for s in eval_at:
            v = r["evals"].get(str(s), {}).get("val_loss")
            base = ref.get(str(s), {}).get("val_loss")
            if v is None:
                cells.append("—")
            elif base is None or name == reference:
                cells.append(f"{v:.3f}")
            else:
                cells.append(f"{v:.3f} ({v - base:+.3f})")
        last = str(eval_at[-1])
        b = r["evals"].get(last, {}).get("val_bpb")
        bb = ref.get(last, {}).get("val_bpb")
        cells.append("—" if b is None else f"{b:.3f}" if bb is None or name == reference else f"{b:.3f} ({b - bb:+.3f})")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {r['seconds']:.0f} |")
    return "\n".join(lines)


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def build_parser() -> argparse.ArgumentParser:
    """The command line (tests/test_docs_commands.py parses the documented commands with it)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shape", choices=["issue", "tiny", "gpt2"], default=None,
                   help="issue (CPU default), tiny (the tiny preset's shape) or gpt2 (GPU default)")
    p.add_argument("--variants", default=None,
                   help=f"comma-separated names/specs, 'all', or 'key' (default: {','.join(KEY_VARIANTS)})")
    p.add_argument("--list", action="store_true", help="print the named variants and exit")
    p.add_argument("--steps", type=int, help="train steps (default: the shape's); eval steps past it are dropped")
    p.add_argument("--eval-at", help="comma-separated steps to evaluate at (default: the shape's)")
    p.add_argument("--eval-tokens", type=int, default=40960, help="held-out tokens per evaluation (first N)")
    p.add_argument("--batch", type=int, help="sequences per step (default: the shape's)")
    p.add_argument("--tokens", help="tokenize output dir (default: runs/demo/tokenize, else built from data/text)")
    p.add_argument("--work", default=str(REPO / "runs" / "recipe_ablation"), help="where GENERATED tokens go")
    p.add_argument("--build-tokens", action="store_true",
                   help="train on GENERATED shards from data/text even where the demo's tokens exist")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write all results here (rewritten after every variant)")
    p.add_argument("--reference-json", help="take `default` from this earlier --json (same shape, tokens, seed) "
                                            "instead of training it: split a long ablation over processes")
    p.add_argument("--no-branch", action="store_true",
                   help="train every variant from step 0, even one that differs from an earlier one only in its "
                        "lr/wd schedule (by default it starts from that one's state where their schedules part)")
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)

    tiny = preset("tiny")
    default = {k: tiny[k] for k in RECIPE_KEYS}
    if args.list:
        print("default:", json.dumps(default))
        for name in VARIANTS:
            print(f"  {name}" + (f"  = {json.dumps(FIXED[name])}" if name in FIXED else ""))
        return 0
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    if args.threads:
        torch.set_num_threads(args.threads)
    shape = shape_settings(args.shape or ("gpt2" if device.type == "cuda" else "issue"), tiny)
    if args.batch:
        shape["batch"] = args.batch
    if args.steps:
        shape["steps"] = args.steps
    if args.eval_at:
        shape["eval_at"] = tuple(int(s) for s in args.eval_at.split(","))
    shape["eval_at"] = tuple(s for s in shape["eval_at"] if s <= shape["steps"]) or (shape["steps"],)
    names = (KEY_VARIANTS if args.variants in (None, "key") else VARIANTS if args.variants == "all"
             else [v.strip() for v in args.variants.split(",") if v.strip()])
    if args.reference_json:
        names = [n for n in names if n != "default"]
    elif "default" not in names:
        names = ["default", *names]
    recipes = {n: resolve_variant(n, default) for n in names}  # bad specs fail before any training

    tokens_dir, source = find_tokens(args.tokens, Path(args.work), args.build_tokens)
    train_shards, val_shards = TokenShards(tokens_dir, "train"), TokenShards(tokens_dir, "val")
    tok = train_shards.load_tokenizer()
    vocab = int(train_shards.vocab_size)
    loader = TokenBatchLoader(train_shards, shape["batch"], shape["sequence_len"], seed=args.seed)
    batches = [loader.next_batch() for _ in range(shape["steps"])]  # every variant sees exactly these
    epochs = shape["steps"] * shape["batch"] * shape["sequence_len"] / max(1, train_shards.n_tokens)
    if epochs > 1:
        print(f"warning: {epochs:.1f} epochs of a {train_shards.n_tokens:,}-token train split; a bigger "
              "tokenize output (--tokens) measures the recipe rather than memorisation")
    val = eval_batches(val_shards, shape["batch"], shape["sequence_len"], args.eval_tokens)
    if not val:
        raise SystemExit(f"{tokens_dir}: the val split is too small for one window of {shape['sequence_len']}")
    bpt = torch.from_numpy(token_bytes(tok).astype(np.int64)).to(device)
    header = {"shape": shape, "device": str(device), "dtype": str(dtype).removeprefix("torch."),
              "threads": torch.get_num_threads(), "tokens": str(tokens_dir), "token_source": source,
              "train_tokens": train_shards.n_tokens, "val_tokens_used": sum(int(y.numel()) for _, y in val),
              "vocab_size": vocab, "default": default, "seed": args.seed, "load_average_start": load_average()}
    print(json.dumps(header))
    plan = {} if args.no_branch else branch_plan(recipes, shape["steps"])
    wanted: dict[str, set[int]] = {}
    for parent, at in plan.values():
        wanted.setdefault(parent, set()).add(at)
    snapshots: dict[tuple[str, int], dict[str, Any]] = {}
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        start = snapshots.get(plan[name]) if name in plan else None  # None: the parent diverged before
        print(f"== {name}" + (f"  (from `{plan[name][0]}` at step {plan[name][1]}: same recipe until then)"
                              if start is not None else ""), flush=True)
        r = train_variant(recipes[name], shape, vocab, batches, val, bpt, device, dtype, args.seed, args.compile,
                          start=start, snapshot_at=wanted.get(name, ()))
        snapshots.update({(name, at): snap for at, snap in r.pop("snapshots").items()})
        results[name] = {"recipe": recipes[name], **r}
        if start is not None:
            results[name]["branched_from"] = {"variant": plan[name][0], "step": plan[name][1]}
        if args.json:  # atomic: a --reference-json reader in another process never sees half a file
            write_text(args.json, json.dumps({**header, "results": results}, indent=1))
    header["load_average_end"] = load_average()
    if args.reference_json:  # read at the end: the other process may still have been training it
        reference = json.loads(Path(args.reference_json).read_text())
        same = ("shape", "tokens", "train_tokens", "val_tokens_used", "vocab_size", "default", "seed")
        diff = [k for k in same if json.loads(json.dumps(header[k])) != reference.get(k)]
        if diff or "default" not in reference.get("results", {}):
            raise SystemExit(f"--reference-json {args.reference_json} is not comparable "
                             f"(differs in {diff or 'no default result'}); results are in --json")
        results = {"default": {**reference["results"]["default"], "from": args.reference_json}, **results}
    if args.json:
        write_text(args.json, json.dumps({**header, "results": results}, indent=1))
    print()
    print(table(results, shape["eval_at"]))
    print(f"\nval loss in nats/token, Δ against `default`; load average start {header['load_average_start']}, "
          f"end {header['load_average_end']} ({header['threads']} threads)")
    for name, r in results.items():
        if "branched_from" in r:
            print(f"`{name}`: steps 1–{r['branched_from']['step']} (and the evals there) are "
                  f"`{r['branched_from']['variant']}`'s, the same recipe until then; `s` counts the rest")
    return 0


if __name__ == "__main__":
    sys.exit(main())
