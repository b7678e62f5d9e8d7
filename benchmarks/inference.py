"""Inference benchmark: KV-cached decoding (lm/engine.py) against recomputing the full context.

Measures, per model size and context length (256, 1024):
  - decode tokens/s with the KV cache (Engine.stream, after the first token)
  - decode tokens/s recomputing the whole context every step (the reference)
  - their ratio (goal: ≥ 10× at context 1024 on a GPU)
  - time to first token (prefill + one step)
and batched throughput (generated tokens/s over the batch) at batch 1, 8, 32.

Weights are RANDOM (a GENERATED model of the preset's shape): speed does not
depend on what the weights learned. Prompts are random token ids; stop tokens
are disabled so every row generates exactly --new-tokens tokens.

    .venv/bin/python benchmarks/inference.py                 # CPU: tiny + small
    .venv/bin/python benchmarks/inference.py --gpu           # CUDA: gpt2 shape, bf16
"""
from __future__ import annotations

import argparse
import time

import torch

from lm.engine import Engine
from lm.model import GPT, GPTConfig
from lm.tokenizer import Tokenizer

SIZES = {  # name -> (depth, vocab)
    "tiny": (4, 8192),
    "small": (6, 8192),
    "gpt2": (12, 50304),
}


def _tokenizer(vocab: int, max_chars: int | None = None) -> Tokenizer:
    """A real BPE tokenizer trained on the shared real text (as large as that text allows, ≤ vocab).

    `max_chars` caps each file's text (quick toy tokenizers for dry runs).
    """
    from pathlib import Path

    texts = [p.read_text(errors="replace")[:max_chars]
             for p in sorted((Path(__file__).resolve().parent.parent / "data" / "text").glob("*"))
             if p.suffix in (".txt", ".en", ".jsonl")]
    return Tokenizer.train(texts or ["the quick brown fox " * 1000], vocab_size=vocab)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _model(name: str, vocab: int, device: str, dtype: torch.dtype) -> GPT:
    depth, _ = SIZES[name]
    cfg = GPTConfig.from_depth(depth, vocab_size=vocab, sequence_len=1024 + 64)
    torch.manual_seed(0)
    with torch.device(device):
        model = GPT(cfg)
    # Non-degenerate random weights (the init zeroes the residual projections).
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02)
    return model.to(dtype=dtype).eval()


@torch.inference_mode()
def recompute_tps(model: GPT, prompt: torch.Tensor, n: int, device: str) -> float:
    """Greedy decoding that re-runs the whole context every step (no cache)."""
    x = prompt[None].to(device)
    _sync(device)
    t = time.perf_counter()
    for _ in range(n):
        nxt = model(x)[:, -1].argmax(-1, keepdim=True)
        x = torch.cat([x, nxt], dim=1)
    _sync(device)
    return n / (time.perf_counter() - t)


def cached_stats(engine: Engine, prompt: list[int], n: int, device: str) -> tuple[float, float]:
    """(decode tokens/s after the first token, time to first token in s) with the KV cache."""
    _sync(device)
    t0 = time.perf_counter()
    times = []
    for _ in engine.stream(prompt, n, temperature=0, stop_ids=set()):
        _sync(device)
        times.append(time.perf_counter())
    return (len(times) - 1) / (times[-1] - times[0]), times[0] - t0


def batched_tps(engine: Engine, prompt_len: int, batch: int, n: int, vocab: int, device: str) -> float:
    g = torch.Generator().manual_seed(batch)
    prompts = torch.randint(300, vocab, (batch, prompt_len), generator=g).tolist()
    _sync(device)
    t = time.perf_counter()
    comps = engine.generate(prompts, n, temperature=1.0, top_k=50, stop_ids=set(), seed=1)
    _sync(device)
    return sum(len(c.tokens) for c in comps) / (time.perf_counter() - t)


def build_parser() -> argparse.ArgumentParser:
    """The command line (tests/test_docs_commands.py parses the documented commands with it)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpu", action="store_true", help="run the gpt2 shape in bf16 on CUDA")
    ap.add_argument("--sizes", nargs="+", default=None, help=f"model shapes among {list(SIZES)}")
    ap.add_argument("--contexts", nargs="+", type=int, default=[256, 1024])
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 8, 32])
    ap.add_argument("--batch-prompt", type=int, default=128, help="prompt length for the batched runs")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    return ap


def main() -> None:
    ap = build_parser()
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.gpu:
        if not torch.cuda.is_available():
            raise SystemExit("--gpu given but no CUDA device is visible")
        device, dtype, sizes = "cuda", torch.bfloat16, args.sizes or ["gpt2"]
    else:
        device, dtype, sizes = "cpu", torch.float32, args.sizes or ["tiny", "small"]
    print(f"device={device} dtype={dtype} torch={torch.__version__} threads={torch.get_num_threads()} "
          f"new_tokens={args.new_tokens} (RANDOM weights, GENERATED prompts)")
    for name in sizes:
        tok = _tokenizer(SIZES[name][1])
        model = _model(name, tok.vocab_size, device, dtype)
        vocab = model.config.vocab_size
        engine = Engine(model, tok, tools=None, max_context=model.config.sequence_len)
        print(f"\n== {name}: depth {model.config.n_layer}, width {model.config.n_embd}, vocab {vocab}, "
              f"{model.num_params() / 1e6:.1f}M params")
        # warm-up (allocator, kernels)
        engine.generate([list(range(300, 364))], 4, temperature=0, stop_ids=set())
        print(f"{'context':>8} {'cached tok/s':>13} {'recompute tok/s':>16} {'speedup':>8} {'TTFT ms':>8}")
        for ctx in args.contexts:
            g = torch.Generator().manual_seed(ctx)
            prompt = torch.randint(300, vocab, (ctx,), generator=g)
            c_tps, ttft = cached_stats(engine, prompt.tolist(), args.new_tokens, device)
            r_tps = recompute_tps(model, prompt, args.new_tokens, device)
            print(f"{ctx:>8} {c_tps:>13.1f} {r_tps:>16.1f} {c_tps / r_tps:>7.1f}x {ttft * 1e3:>8.1f}")
        print(f"{'batch':>8} {'tokens/s':>10} {'vs batch 1':>11}   (prompt {args.batch_prompt} tokens)")
        base = None
        for b in args.batches:
            tps = batched_tps(engine, args.batch_prompt, b, args.new_tokens, vocab, device)
            base = base or tps
            print(f"{b:>8} {tps:>10.1f} {tps / base:>10.1f}x")


if __name__ == "__main__":
    main()
