"""Which GRPO `loss_type` should the demo default to? grpo vs dr_grpo vs dapo, same steps, several seeds.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/rl_variants.py --task arithmetic --out rl_variants.json
    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/rl_variants.py --task gsm8k --shape small --steps 4 ...

Arithmetic: the test suite's GENERATED tiny base (tests/support/posttrain_base.py),
SFT'd once on GENERATED sums of 0–3 (as tests/lm/posttrain/test_rl.py does), then RL with the
`--preset`'s `rl` section for every (variant, seed). GSM8K: a model of the preset's
pretrain shape (`--shape small`: depth and context of conf/presets/small.yaml) with
the tiny base's tokenizer, from random init — no pretrained small checkpoint exists
on a CPU box, so this measures cost and whether any reward signal exists at all;
`--model` starts every run from a real SFT checkpoint instead.

Each run's held-out eval (the same prompts and sampling seed before and after
within a seed) gives per-prompt pass@1; the comparison is the report card's paired
bootstrap (lm/evals/paired_stats.py): each variant before → after, and each variant's
after against the first variant's, pooled over seeds (same prompts per seed).
Prints a table and writes JSON.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def sft_arithmetic(out: Path) -> Path:
    """The tiny GENERATED base, SFT'd on 600 GENERATED sums of 0–3 (tests/lm/posttrain/test_rl.py's start): its checkpoint."""
    import torch

    from conf.posttrain import SFTConfig
    from lm.posttrain.sft import train_sft
    from lm.posttrain.sft_data import SkipStats, build_sft_data, load_sources
    from tests.support.posttrain_base import SEQ_LEN, load_base

    torch.manual_seed(0)
    model, tok, _ = load_base()
    stats = SkipStats()
    convs = load_sources({}, stats, n_identity=20, n_arithmetic=600, arithmetic_difficulty=0, arithmetic_tool=False)
    data = build_sft_data(convs, tok, SEQ_LEN, 0.05, stats)
    res = train_sft(model, tok, data, SFTConfig(steps=200, batch_size=8, lr=3e-3, eval_every=1000,
                                                checkpoint_every=1000, alpaca_path=None, glaive_path=None), out)
    return Path(res["checkpoint"])


def small_shape_gsm8k(out: Path, preset: str) -> Path:
    """A random-init model of `preset`'s pretrain shape with the tiny base's tokenizer, saved as a checkpoint."""
    import torch

    import conf
    from conf.pretrain import PretrainConfig
    from lm.checkpoint import save_checkpoint
    from lm.model import GPT, GPTConfig
    from tests.support.posttrain_base import load_base

    _, tok, _ = load_base()
    p = conf.load(PretrainConfig, preset, {})
    torch.manual_seed(0)
    mcfg = GPTConfig.from_depth(p.depth, tok.vocab_size, p.sequence_len, aspect_ratio=p.aspect_ratio,
                                head_dim=p.head_dim)
    model = GPT(mcfg)
    return save_checkpoint(out / "base", model, tok, {"kind": "random-init-GENERATED", "preset": preset})


def run_one(ckpt: Path, rl_values: dict[str, Any], out: Path) -> dict[str, Any]:
    from conf.posttrain import RLSettings
    from lm.checkpoint import load_model
    from lm.posttrain.rl import train_rl

    model, tok, _ = load_model(ckpt)
    cfg = RLSettings.from_dict(rl_values)
    steps: list[dict[str, float]] = []
    t0 = time.time()
    res = train_rl(model, tok, cfg, out, log_fn=lambda m, s: steps.append(m) if "reward_mean" in m else None)
    h = res["history"]
    tail = steps[-max(1, len(steps) // 5):]  # the last fifth of the steps: where the variants have diverged
    mean = lambda key: sum(m[key] for m in tail) / len(tail)  # noqa: E731
    return {"before": h[0]["per_prompt"], "after": h[-1]["per_prompt"], "pass@1_before": res["pass@1_before"],
            "pass@1_after": res["pass@1_after"], "entropy_end": mean("entropy"), "clip_frac_end": mean("clip_frac"),
            "zero_std_end": mean("frac_reward_zero_std"), "reward_end": mean("reward_mean"),
            "response_len_end": mean("response_len"), "seconds": time.time() - t0}


def compare(runs: dict[str, dict[int, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per variant: means over seeds and the paired tests (pooled over seeds' prompts)."""
    from lm.evals.paired_stats import paired_bootstrap

    names = list(runs)
    ref = names[0]
    rows = []
    for v in names:
        seeds = sorted(runs[v])
        pool = lambda key, name=v: [x for s in seeds for x in runs[name][s][key]]  # noqa: E731
        row = {"variant": v, "seeds": seeds,
               "pass@1_before": sum(runs[v][s]["pass@1_before"] for s in seeds) / len(seeds),
               "pass@1_after": sum(runs[v][s]["pass@1_after"] for s in seeds) / len(seeds),
               "after_by_seed": [round(runs[v][s]["pass@1_after"], 3) for s in seeds],
               "gain_paired": paired_bootstrap(pool("before"), pool("after"))}
        for key in ("entropy_end", "clip_frac_end", "zero_std_end", "reward_end", "response_len_end", "seconds"):
            row[key] = sum(runs[v][s][key] for s in seeds) / len(seeds)
        if v != ref:
            row[f"vs_{ref}_paired"] = paired_bootstrap(pool("after", ref), pool("after"))
        rows.append(row)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    ref = rows[0]["variant"]
    lines = [f"| variant | pass@1 before | after (mean; by seed) | paired gain [95% CI] | after − {ref} [95% CI] "
             "| entropy end | clip end | zero-std end | s/run |", "|---|---|---|---|---|---|---|---|---|"]
    ci = lambda p: f"{p['diff']:+.3f} [{p['lo']:+.3f}, {p['hi']:+.3f}] n={p['n']}"  # noqa: E731
    for r in rows:
        vs = r.get(f"vs_{ref}_paired")
        lines.append(f"| {r['variant']} | {r['pass@1_before']:.3f} | {r['pass@1_after']:.3f}; {r['after_by_seed']} | "
                     f"{ci(r['gain_paired'])} | {ci(vs) if vs else '-'} | {r['entropy_end']:.3f} | "
                     f"{r['clip_frac_end']:.3f} | {r['zero_std_end']:.2f} | {r['seconds']:.0f} |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The command line (tests/test_docs_commands.py parses the documented commands with it)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--task", choices=["arithmetic", "gsm8k"], default="arithmetic")
    ap.add_argument("--preset", default="tiny", help="whose `rl` section the runs use")
    ap.add_argument("--shape", default="small", help="gsm8k: the preset whose pretrain shape the model has")
    ap.add_argument("--variants", default="dapo,grpo,dr_grpo", help="loss_type values; the first is the reference")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override an `rl` field for every run (VALUE is YAML), e.g. steps=30")
    ap.add_argument("--model", default=None, help="start every run from this checkpoint (an SFT model, e.g. "
                    "runs/demo/sft/final) instead of the built-in start")
    ap.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    ap.add_argument("--work", default="/tmp/rl_variants", help="checkpoints of the runs")
    ap.add_argument("--out", default=None, help="JSON of every run and the comparison")
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)

    import torch
    import yaml

    from conf.settings import preset_values

    torch.set_num_threads(1)
    work = Path(args.work) / args.task
    work.mkdir(parents=True, exist_ok=True)
    sets = {}
    for item in args.set:
        k, _, v = item.partition("=")
        sets[k] = yaml.safe_load(v)
    t0 = time.time()
    if args.model:
        ckpt = Path(args.model)
    elif args.task == "arithmetic":
        ckpt = sft_arithmetic(work / "sft")
    else:
        ckpt = small_shape_gsm8k(work, args.shape)
    base = preset_values("rl", args.preset, {"task": args.task, **sets})
    base.update(device=args.device, checkpoint_every=10_000, log_every=10_000)
    print(f"start {args.task}: checkpoint {ckpt} ({time.time() - t0:.0f}s); rl {base}", flush=True)
    runs: dict[str, dict[int, dict[str, Any]]] = {}
    for v in args.variants.split(","):
        for s in (int(x) for x in args.seeds.split(",")):
            r = run_one(ckpt, {**base, "loss_type": v, "seed": s}, work / f"{v}-{s}")
            runs.setdefault(v, {})[s] = r
            print(f"{v} seed {s}: pass@1 {r['pass@1_before']:.3f} -> {r['pass@1_after']:.3f}, entropy "
                  f"{r['entropy_end']:.3f}, {r['seconds']:.0f}s", flush=True)
    rows = compare(runs)
    print(table(rows))
    result = {"task": args.task, "preset": args.preset, "shape": args.shape if args.task == "gsm8k" else None,
              "rl": base, "rows": rows, "runs": runs, "wall_s": time.time() - t0}
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
