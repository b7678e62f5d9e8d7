"""GSM8K post-training on one GPU: base → SFT → GRPO on GSM8K, and a reward model.

    # on a GPU box (torch, numpy, pyarrow, tokenizers, pydantic + pyyaml for conf/):
    python benchmarks/posttrain_gsm8k.py --tokens runs/demo/tokenize --out runs/gsm8k
    python benchmarks/posttrain_gsm8k.py --base runs/demo/pretrain/final --out runs/gsm8k
    # CI: tiny sizes on CPU, a minute
    python benchmarks/posttrain_gsm8k.py --cpu-smoke --base CKPT --out DIR

What it measures (issue 4's GPU figures), with the `gpt2` preset by default:
1. a base model: `--base` (a checkpoint directory) or pretrained here on
   `--tokens` (a tokenize output) for `--pretrain-steps`;
2. SFT on the preset's mixture, which for gpt2/d20 includes GSM8K's worked
   solutions from its training part, calculator marks as tool calls;
3. GRPO on GSM8K (exact check of the final number). pass@1 on the held-out
   part (the last 500 problems of data/gsm8k/train.jsonl; never trained on) is
   printed before and after RL;
4. a reward model from the base on the preference data (HH-RLHF + DPO pairs):
   held-out pairwise accuracy before and after training.

The stages are the same functions the Prefect flows run (`tasks/posttrain.py`),
called without Prefect, Ray or MLflow, so this runs on a bare GPU machine.
`--set STAGE.KEY=VALUE` overrides any preset field (stages: pretrain, sft, rl,
reward).
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

STAGES = ("pretrain", "sft", "rl", "reward")

# Small enough for about a minute on 2 CPU cores: checks the wiring, measures nothing.
SMOKE: dict[str, dict[str, Any]] = {
    "pretrain": dict(max_steps=3, eval_every=3, eval_tokens=1024, checkpoint_every=0, progress=False, threads=1),
    "sft": dict(steps=3, batch_size=4, eval_every=3, eval_batches=1, n_identity=8, n_arithmetic=16,
                max_per_source=16, gsm8k=True, log_every=1, device="cpu"),
    "rl": dict(task="gsm8k", steps=2, prompts_per_step=2, samples_per_prompt=2, max_new_tokens=8,
               eval_prompts=4, eval_samples=2, eval_every=2, log_every=1, device="cpu"),
    "reward": dict(steps=3, batch_size=4, eval_every=3, max_pairs=40, log_every=1, device="cpu"),
}


def parse_sets(items: list[str]) -> dict[str, dict[str, Any]]:
    """`stage.key=value` strings (the pipeline's `--set`, VALUE is YAML) → {stage: {key: value}} for STAGES."""
    from crawl2chat.stage_cli import parse_sets as parse_pipeline_sets

    sets = parse_pipeline_sets(items)
    unknown = sorted(set(sets) - set(STAGES))
    if unknown:
        raise ValueError(f"--set expects STAGE.KEY=VALUE with STAGE in {STAGES}, got stage(s) {unknown}")
    return {s: sets.get(s, {}) for s in STAGES}


def configs(preset: str, overrides: dict[str, dict[str, Any]]):
    """The four stage configs from conf/presets/<preset>.yaml plus overrides."""
    import conf
    from conf.posttrain import RewardConfig, RLConfig, SFTConfig
    from conf.pretrain import PretrainConfig

    return {"pretrain": conf.load(PretrainConfig, preset, overrides["pretrain"]),
            "sft": conf.load(SFTConfig, preset, overrides["sft"]),
            "rl": conf.load(RLConfig, preset, {"task": "gsm8k", **overrides["rl"]}),
            "reward": conf.load(RewardConfig, preset, overrides["reward"])}


def pretrain(cfg, tokens: str, out: Path) -> str:
    """Pretrain a base model with lm.train (no MLflow); returns its final checkpoint directory."""
    from conf.pretrain import PretrainSettings
    from lm.train import train

    values = cfg.model_dump()
    values.pop("section", None)
    summary = train(PretrainSettings.from_dict(values), tokens, out)
    if summary["status"] != "completed":
        raise RuntimeError(f"pretraining stopped: {summary['status']}")
    print(f"pretrain: {summary['step']} steps, {summary['tokens_per_s']:,.0f} tokens/s, "
          f"val bpb {summary.get('val_bpb')}")
    return summary["final_dir"]


def build_parser() -> argparse.ArgumentParser:
    """The command line (tests/test_docs_commands.py parses the documented commands with it)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--base", help="base checkpoint directory (skips pretraining)")
    src.add_argument("--tokens", help="tokenize output to pretrain a base on")
    ap.add_argument("--out", required=True, help="run directory (one subfolder per stage)")
    ap.add_argument("--preset", default=None, help="conf preset (default gpt2; tiny with --cpu-smoke)")
    ap.add_argument("--pretrain-steps", type=int, help="pretraining steps (default: the preset's)")
    ap.add_argument("--sft-steps", type=int)
    ap.add_argument("--rl-steps", type=int)
    ap.add_argument("--reward-steps", type=int)
    ap.add_argument("--set", action="append", default=[], metavar="STAGE.KEY=VALUE")
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny CPU run that checks the wiring (CI)")
    ap.add_argument("--json", help="also write the figures here")
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)

    import torch

    from tasks.posttrain import run_reward, run_rl, run_sft

    preset = args.preset or ("tiny" if args.cpu_smoke else "gpt2")
    try:
        sets = parse_sets(args.set)
    except ValueError as e:
        ap.error(str(e))
    if args.cpu_smoke:
        sets = {s: {**SMOKE[s], **sets[s]} for s in STAGES}
        torch.set_num_threads(1)
    elif not torch.cuda.is_available():
        print("no CUDA device: run with --cpu-smoke, or on a GPU machine", file=sys.stderr)
        return 2
    for stage, flag in (("pretrain", "pretrain_steps"), ("sft", "sft_steps"), ("rl", "rl_steps"),
                        ("reward", "reward_steps")):
        if getattr(args, flag) is not None:
            sets[stage]["max_steps" if stage == "pretrain" else "steps"] = getattr(args, flag)
    cfgs = configs(preset, sets)
    out = Path(args.out)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() and not args.cpu_smoke else "cpu"
    print(f"device: {device}, torch {torch.__version__}, preset {preset}")

    times: dict[str, float] = {}

    def timed(stage: str, fn, *fn_args, **fn_kwargs):
        t = time.time()
        result = fn(*fn_args, **fn_kwargs)
        times[stage] = time.time() - t
        if isinstance(result, dict):  # the stage's result beside its checkpoints (no flow here: no manifest)
            from core.atomic import write_json

            write_json(out / stage / "result.json", result)
        return result

    log = lambda stage: (lambda m, step: print(f"{stage} step {step}: " + ", ".join(  # noqa: E731
        f"{k} {v:.4g}" for k, v in m.items() if isinstance(v, (int, float)))))
    base = args.base or timed("pretrain", pretrain, cfgs["pretrain"], args.tokens, out / "pretrain")
    sft = timed("sft", run_sft, base, str(out / "sft"), cfgs["sft"], log_fn=log("sft"))
    rl = timed("rl", run_rl, sft["checkpoint"], str(out / "rl"), cfgs["rl"], log_fn=log("rl"))
    rm = timed("reward", run_reward, base, list(cfgs["reward"].prefs), str(out / "reward"), cfgs["reward"],
               log_fn=log("reward"))

    from lm.datasets import gsm8k

    n_eval = min(cfgs["rl"].eval_prompts, gsm8k.HELDOUT)
    figures = {
        "device": device, "preset": preset, "base": str(base),
        "sft_val_loss": [sft.get("val_loss_start"), sft["val_loss"]],
        "sft_gsm8k_conversations": sft["data"]["kept"].get("gsm8k", 0),
        "sft_gsm8k_skipped": {k: v for k, v in sft["data"]["skipped"].items() if k.startswith("gsm8k/")},
        "gsm8k_heldout_n": n_eval,
        "gsm8k_pass@1_before_rl": rl["pass@1_before"], "gsm8k_pass@1_after_rl": rl["pass@1_after"],
        "rl_stop_reason": rl["stop_reason"],
        "checkpoints": {"sft": sft["checkpoint"], "rl": rl["checkpoint"], "reward": rm["checkpoint"]},
        "reward_val_accuracy": [rm.get("val_accuracy_start"), rm["val_accuracy"]],
        "reward_n_train": rm["n_train"], "reward_n_val": rm["n_val"],
        "seconds": {k: round(v, 1) for k, v in times.items()},
    }
    print(f"\nGSM8K held-out ({n_eval} problems) pass@1: before RL {rl['pass@1_before']:.3f} → "
          f"after RL {rl['pass@1_after']:.3f}")
    start = rm.get("val_accuracy_start")
    print(f"reward model held-out pairwise accuracy: {rm['val_accuracy']:.3f} "
          f"(untrained head: {start if start is None else f'{start:.3f}'}; n_val {rm['n_val']})")
    print("seconds per stage: " + ", ".join(f"{k} {v:.0f}" for k, v in times.items()))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
