"""Training throughput: our GPT (`gpt2` preset) vs a classic nanoGPT GPT-2, same run.

    python benchmarks/train_throughput.py              # GPU: gpt2 preset vs reference
    python benchmarks/train_throughput.py --d20        # + MFU of the d20 preset
    python benchmarks/train_throughput.py --cpu-smoke  # tiny sizes, seconds, for CI

Both models see the same batch (device_batch_size × sequence_len of the gpt2
preset) of GENERATED random token ids (throughput does not depend on the text)
and run full training steps: bf16 autocast on GPU, `torch.compile`, fused
AdamW for the reference and our preset's optimizer (`lm.optim.build_optimizer`,
fused AdamW / Muon). The reference is the nanoGPT design: learned position
embeddings, LayerNorm with bias, GELU MLP, SDPA (`is_causal`, flash on GPU),
tied input/output embeddings, N(0, 0.02) init.

Prints tokens/s for each, the ratio (ours / reference) and MFU against the
GPU's dense bf16 peak (H100: 989 TFLOP/s): FLOPs per token = 6 × non-position-
embedding matmul parameters + 12 × layers × width × context, for both models.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lm.model import GPT, GPTConfig  # noqa: E402
from lm.optim import build_optimizer  # noqa: E402
from lm.runtime import peak_flops_for  # noqa: E402

GPT2_VOCAB = 50304  # GPT-2's 50257 padded to a multiple of 64 (as nanoGPT does)

# Used when conf/ (pydantic, yaml) is not installed, e.g. on a bare GPU box;
# keep in step with conf/presets/{gpt2,d20}.yaml.
FALLBACK_PRESETS = {
    "gpt2": dict(depth=12, sequence_len=1024, device_batch_size=32, total_batch_tokens=524288, optimizer="muon", lr=0.004,
                 embedding_lr=0.2, muon_lr=0.02, weight_decay=0.0, aspect_ratio=64, head_dim=64, kv_ratio=1),
    "d20": dict(depth=20, sequence_len=2048, device_batch_size=16, total_batch_tokens=524288, optimizer="muon", lr=0.004,
                embedding_lr=0.2, muon_lr=0.02, weight_decay=0.0, aspect_ratio=64, head_dim=64, kv_ratio=1),
}


def preset(name: str) -> dict:
    try:
        import conf
        from conf.pretrain import PretrainConfig

        return conf.load(PretrainConfig, name).model_dump()
    except ImportError:
        print(f"(conf/ not importable here: using the built-in copy of preset {name!r})")
        return dict(FALLBACK_PRESETS[name])


# ----------------------------------------------------------- reference model
class RefBlock(nn.Module):
    def __init__(self, n_embd: int, n_head: int):
        super().__init__()
        self.n_head = n_head
        self.ln_1 = nn.LayerNorm(n_embd)
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)
        self.attn_proj = nn.Linear(n_embd, n_embd)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.c_fc = nn.Linear(n_embd, 4 * n_embd)
        self.mlp_proj = nn.Linear(4 * n_embd, n_embd)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.attn_proj(y.transpose(1, 2).contiguous().view(B, T, C))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x))))


class RefGPT(nn.Module):
    """nanoGPT's GPT-2: learned positions, LayerNorm, GELU, tied embeddings."""

    def __init__(self, vocab_size: int, block_size: int, n_layer: int, n_head: int, n_embd: int):
        super().__init__()
        self.n_layer, self.n_embd, self.block_size = n_layer, n_embd, block_size
        self.wte = nn.Embedding(vocab_size, n_embd)
        self.wpe = nn.Embedding(block_size, n_embd)
        self.h = nn.ModuleList([RefBlock(n_embd, n_head) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(n_embd)
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * n_layer) if name.endswith("proj.weight") else 0.02
                nn.init.normal_(p, mean=0.0, std=std)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, idx, targets):
        T = idx.size(1)
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
        for block in self.h:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        return F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.view(-1))

    def estimate_flops_per_token(self) -> float:
        n = sum(p.numel() for p in self.parameters()) - self.wpe.weight.numel()
        return 6 * n + 12 * self.n_layer * self.n_embd * self.block_size

    def configure_optimizer(self, lr: float, weight_decay: float, fused: bool):
        decay = [p for p in self.parameters() if p.dim() >= 2]
        no_decay = [p for p in self.parameters() if p.dim() < 2]
        groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), fused=fused)


# ------------------------------------------------------------------ timing
def time_training(model: nn.Module, opt, batch: int, seq: int, vocab: int, device: torch.device,
                  steps: int, warmup: int, compile_: bool, accum: int = 1) -> dict:
    """Tokens/s over `steps` optimizer steps of `accum` micro-batches, after `warmup` (compile) steps."""
    run = torch.compile(model) if compile_ else model
    gen = torch.Generator(device="cpu").manual_seed(0)
    # Generated token ids (random): throughput does not depend on the text.
    x = torch.randint(0, vocab, (batch, seq), generator=gen).to(device)
    y = torch.randint(0, vocab, (batch, seq), generator=gen).to(device)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()

    def step():
        for _ in range(accum):
            with amp:
                loss = run(x, y)
            (loss / accum).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    t_compile = time.perf_counter()
    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t_compile = time.perf_counter() - t_compile
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = step()
    float(loss.detach())  # waits for the device
    dt = time.perf_counter() - t0
    out = {"tokens_per_s": batch * seq * accum * steps / dt, "step_s": dt / steps, "warmup_s": t_compile,
           "loss": float(loss.detach()), "accum": accum}
    if device.type == "cuda":
        out["max_mem_gb"] = torch.cuda.max_memory_allocated(device) / 1e9
    return out


def measure(kind: str, cfg: dict, vocab: int, device: torch.device, steps: int, warmup: int,
            compile_: bool) -> dict:
    """Build one model + optimizer from a preset dict and time its training steps."""
    torch.manual_seed(0)
    batch, seq = cfg["device_batch_size"], cfg["sequence_len"]
    if kind == "ours":
        mcfg = GPTConfig.from_depth(cfg["depth"], vocab, seq, aspect_ratio=cfg.get("aspect_ratio", 64),
                                    head_dim=cfg.get("head_dim", 64), kv_ratio=cfg.get("kv_ratio", 1))
        model = GPT(mcfg).to(device)
        opt = build_optimizer(model, optimizer=cfg["optimizer"], lr=cfg["lr"], embedding_lr=cfg["embedding_lr"],
                              muon_lr=cfg["muon_lr"], weight_decay=cfg["weight_decay"])
        n_layer, n_embd = mcfg.n_layer, mcfg.n_embd
    else:
        mcfg = GPTConfig.from_depth(cfg["depth"], vocab, seq)  # same width/heads as ours
        model = RefGPT(vocab, seq, mcfg.n_layer, mcfg.n_head, mcfg.n_embd).to(device)
        opt = model.configure_optimizer(6e-4, 0.1, fused=device.type == "cuda")
        n_layer, n_embd = mcfg.n_layer, mcfg.n_embd
    flops = model.estimate_flops_per_token()
    accum = max(1, int(cfg.get("total_batch_tokens") or 0) // (batch * seq))
    res = time_training(model, opt, batch, seq, vocab, device, steps, warmup, compile_, accum)
    res.update(kind=kind, n_params=sum(p.numel() for p in model.parameters()), flops_per_token=flops,
               batch=batch, seq=seq, n_layer=n_layer, n_embd=n_embd, optimizer=cfg.get("optimizer", "adamw")
               if kind == "ours" else "adamw(fused)" if device.type == "cuda" else "adamw")
    del model, opt
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    return res


def build_parser() -> argparse.ArgumentParser:
    """The command line (tests/test_docs_commands.py parses the documented commands with it)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny sizes on CPU (seconds): checks the script runs")
    ap.add_argument("--d20", action="store_true", help="also measure the d20 preset (MFU goal ≥ 50%%)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default 20 GPU, 3 smoke)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps incl. compilation (default 5, 1 smoke)")
    ap.add_argument("--batch", type=int, default=None, help="override device_batch_size")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--peak-flops", type=float, default=None, help="device peak FLOP/s (default: by GPU name)")
    ap.add_argument("--json", default=None, help="also write the results here")
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)

    if args.cpu_smoke:
        device = torch.device("cpu")
        torch.set_num_threads(1)  # smoke check, not a CPU benchmark: stay light on shared CI cores
        gpt2 = dict(depth=2, sequence_len=64, device_batch_size=4, optimizer="muon", lr=0.004,
                    embedding_lr=0.2, muon_lr=0.02, weight_decay=0.0, total_batch_tokens=512)
        d20 = {**gpt2, "depth": 3}
        vocab, steps, warmup = 512, args.steps or 3, args.warmup if args.warmup is not None else 1
        compile_ = False
    else:
        if not torch.cuda.is_available():
            print("no CUDA device: run with --cpu-smoke, or on a GPU machine", file=sys.stderr)
            return 2
        device = torch.device("cuda")
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        gpt2, d20 = preset("gpt2"), preset("d20")
        vocab, steps, warmup = GPT2_VOCAB, args.steps or 20, args.warmup if args.warmup is not None else 5
        compile_ = not args.no_compile
    if args.batch:
        gpt2["device_batch_size"] = args.batch
    peak = peak_flops_for(device, args.peak_flops)
    print(f"device: {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}, "
          f"torch {torch.__version__}, compile={compile_}, peak={peak or 'unknown'} FLOP/s, "
          f"batch {gpt2['device_batch_size']}×{gpt2['sequence_len']}, vocab {vocab}, {steps} timed steps "
          "(each: the preset's gradient accumulation, then one optimizer step)")

    results = [measure("reference", gpt2, vocab, device, steps, warmup, compile_),
               measure("ours", gpt2, vocab, device, steps, warmup, compile_)]
    if args.d20:
        d = measure("ours", d20, vocab if args.cpu_smoke else 65536, device, steps, warmup, compile_)
        d["kind"] = "ours-d20"
        results.append(d)
    for r in results:
        r["mfu"] = r["flops_per_token"] * r["tokens_per_s"] / peak if peak else None
    print(f"{'model':<12}{'params':>12}{'layers×width':>14}{'optimizer':>14}{'accum':>6}{'tokens/s':>14}{'MFU':>8}"
          f"{'step ms':>10}")
    for r in results:
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
        print(f"{r['kind']:<12}{r['n_params'] / 1e6:>11.1f}M{r['n_layer']:>7}×{r['n_embd']:<6}{r['optimizer']:>14}"
              f"{r['accum']:>6}{r['tokens_per_s']:>14,.0f}{mfu:>8}{1000 * r['step_s']:>10.1f}")
    ratio = results[1]["tokens_per_s"] / results[0]["tokens_per_s"]
    print(f"ratio ours/reference tokens/s: {ratio:.3f}  (goal ≥ 1.25 on GPU)")
    if args.d20 and results[-1]["mfu"] is not None:
        print(f"d20 MFU: {100 * results[-1]['mfu']:.1f}%  (goal ≥ 50%)")
    if args.json:
        Path(args.json).write_text(json.dumps({"ratio": ratio, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
