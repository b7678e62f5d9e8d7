"""GPT, the crawl2chat way.

Notable choices (after nanochat and modern open models):
- rotary position embeddings (no learned positions), base 10,000
- RMSNorm without learnable weights, before attention and MLP, and on the output
- QK-norm: queries and keys are RMS-normalised before rotary, which keeps
  attention logits bounded and training stable at higher learning rates
  (`qk_norm=False` turns it off, for the recipe ablation)
- optional value embeddings (`value_embeds`, after modded-nanogpt/nanochat):
  on every other layer, counted from the last, a token embedding table of
  the value width is added to the values, gated per head by
  2·sigmoid(W·x[:, :32]) (W starts at zero: gate 1). Extra parameters, almost
  no extra FLOPs; benchmarks/recipe_ablation.py measures what it buys.
- no bias in any linear layer; untied input embedding and output head
- ReLU² MLP (4× width)
- optional grouped-query attention (`n_kv_head < n_head`)
- `scaled_dot_product_attention` everywhere: flash attention on GPU when the
  mask is causal, a boolean mask only when a KV cache holds padded rows
- logit soft-capping (tanh, 15) so early training cannot blow up the logits
- one size dial, `depth`: width = 64·depth, heads of 64 dims (GPTConfig.from_depth)

Options for a stock architecture (all off by default; lm/hf.py exports a model
whose options match as transformers' Qwen3 or Llama, with no custom code, and
imports those families onto this class): `mlp="swiglu"` (silu(gate)·up, width
`mlp_hidden`), `norm_weights` (learned RMSNorm gains), `norm_eps`,
`embed_norm=False` (the embeddings enter the blocks un-normalised),
`tie_embeddings` (the head reuses the embedding matrix), `head_size` (heads
wider or narrower than n_embd/n_head, as Qwen3-0.6B), and `softcap=0`.

The KV cache supports left-padded batches: every row keeps its own count of
real tokens, so rotary positions and attention masks are per row.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class GPTConfig:
    vocab_size: int = 8192
    sequence_len: int = 256
    n_layer: int = 4
    n_head: int = 4
    n_kv_head: int = 4
    n_embd: int = 256
    softcap: float = 15.0
    rope_base: float = 10000.0
    qk_norm: bool = True
    value_embeds: bool = False
    # a learned scale of the residual stream and a learned share of the first layer's input (x0) at every
    # layer's input: x ← λ_resid·x + λ_x0·x0 (as modded-nanogpt / nanochat); init 1 and 0, i.e. off at step 0
    resid_scalars: bool = False
    # stock-architecture options (module docstring); OPTION_DEFAULTS: left out of to_dict at their default
    mlp: str = "relu2"  # "relu2" | "swiglu"
    mlp_hidden: int = 0  # MLP width; 0: 4·n_embd (relu2), 8/3·n_embd rounded up to 32 (swiglu)
    norm_weights: bool = False  # a learned gain on every RMSNorm (ones at init: the same function)
    norm_eps: float = 0.0  # RMSNorm epsilon; 0: torch's default (the dtype's machine epsilon)
    embed_norm: bool = True  # RMS-normalise the token embeddings before the first block
    tie_embeddings: bool = False  # the output head is the embedding matrix
    head_size: int = 0  # per-head width; 0: n_embd // n_head

    @classmethod
    def from_depth(cls, depth: int, vocab_size: int, sequence_len: int,
                   aspect_ratio: int = 64, head_dim: int = 64, kv_ratio: int = 1, **options) -> "GPTConfig":
        """Derive width and heads from depth (the one size dial); `options`: other fields (rope_base, ...)."""
        n_embd = depth * aspect_ratio
        n_head = max(1, (n_embd + head_dim - 1) // head_dim)
        n_embd = n_head * head_dim
        n_kv_head = max(1, n_head // kv_ratio)
        while n_head % n_kv_head:
            n_kv_head -= 1
        return cls(vocab_size=vocab_size, sequence_len=sequence_len, n_layer=depth,
                   n_head=n_head, n_kv_head=n_kv_head, n_embd=n_embd, **options)

    def to_dict(self) -> dict:
        """All fields; the stock-architecture options only when set, so older configs serialise as before."""
        return {k: v for k, v in asdict(self).items() if k not in OPTION_DEFAULTS or v != OPTION_DEFAULTS[k]}

    @classmethod
    def from_dict(cls, d: dict) -> "GPTConfig":
        """Known fields of `d`; fields it lacks (checkpoints older than an option) take their defaults."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def has_value_embeds(self, layer_idx: int) -> bool:
        """Value embeddings sit on every other layer, the last one included."""
        return self.value_embeds and (self.n_layer - 1 - layer_idx) % 2 == 0

    @property
    def head_dim(self) -> int:
        return self.head_size or self.n_embd // self.n_head

    @property
    def mlp_width(self) -> int:
        if self.mlp_hidden:
            return self.mlp_hidden
        return 4 * self.n_embd if self.mlp == "relu2" else -(-8 * self.n_embd // 3 // 32) * 32

    def memory_bytes(self) -> int:
        """fp32 bytes to hold the model, its rotary tables and one full-context KV cache."""
        hd, c = self.head_dim, self.n_embd
        mlp = (2 if self.mlp == "relu2" else 3) * c * self.mlp_width
        per_layer = 2 * c * self.n_head * hd + 2 * c * self.n_kv_head * hd + mlp
        params = (1 if self.tie_embeddings else 2) * self.vocab_size * c + self.n_layer * per_layer
        params += sum(self.has_value_embeds(i) for i in range(self.n_layer)) * self.vocab_size * self.n_kv_head * hd
        rotary = 2 * (4 * self.sequence_len) * (hd // 2)
        kv = 2 * self.n_layer * self.n_kv_head * hd * self.sequence_len
        return 4 * (params + rotary + kv)

    def validate(self, max_bytes: int | None = None) -> "GPTConfig":
        """Raise ValueError naming the field unless a GPT can be built from these values (within `max_bytes`)."""
        for name in ("vocab_size", "sequence_len", "n_layer", "n_head", "n_kv_head", "n_embd", "mlp_hidden",
                     "head_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < (0 if name in OPTION_DEFAULTS else 1):
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if self.mlp not in MLP_KINDS:
            raise ValueError(f"mlp must be one of {MLP_KINDS}, got {self.mlp!r}")
        for name in ("qk_norm", "value_embeds", "resid_scalars", "norm_weights", "embed_norm", "tie_embeddings"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        for name in ("softcap", "rope_base", "norm_eps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"{name} must be a finite number ≥ 0, got {v!r}")
        if self.rope_base <= 0:
            raise ValueError(f"rope_base must be > 0, got {self.rope_base!r}")
        if self.n_embd % self.n_head and not self.head_size:
            raise ValueError(f"n_head {self.n_head} must divide n_embd {self.n_embd}")
        if self.n_head % self.n_kv_head:
            raise ValueError(f"n_kv_head {self.n_kv_head} must divide n_head {self.n_head}")
        if self.head_dim % 2:
            raise ValueError(f"head size n_embd/n_head = {self.head_dim} must be even (rotary embeddings)")
        if max_bytes is not None and self.memory_bytes() > max_bytes:
            raise ValueError(f"this model (vocab_size {self.vocab_size}, sequence_len {self.sequence_len}, "
                             f"n_layer {self.n_layer}, n_embd {self.n_embd}) needs ~{self.memory_bytes() / 2**30:.1f} "
                             f"GiB, over the limit of {max_bytes / 2**30:.1f} GiB")
        return self


OPTION_DEFAULTS = {"mlp": "relu2", "mlp_hidden": 0, "norm_weights": False, "norm_eps": 0.0, "embed_norm": True,
                   "tie_embeddings": False, "head_size": 0}
MLP_KINDS = ("relu2", "swiglu")


def norm(x: torch.Tensor) -> torch.Tensor:
    return F.rms_norm(x, (x.size(-1),))


class RMSNorm(nn.Module):
    """RMSNorm with the config's epsilon and, with `norm_weights`, a learned gain (else none: `norm`)."""

    def __init__(self, dim: int, config: GPTConfig):
        super().__init__()
        self.eps = config.norm_eps or None
        self.weight = nn.Parameter(torch.ones(dim)) if config.norm_weights else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the gain multiplies the normalised input in the input's dtype, as Llama/Qwen3 do
        y = F.rms_norm(x, (x.size(-1),), eps=self.eps)
        return y if self.weight is None else self.weight * y


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: (B, H, T, D); cos/sin broadcastable to (B, H, T, D/2)."""
    d = x.shape[-1] // 2
    x1, x2 = x[..., :d], x[..., d:]
    y1 = x1 * cos + x2 * sin
    y2 = x1 * (-sin) + x2 * cos
    return torch.cat([y1, y2], dim=-1).to(x.dtype)


class KVCache:
    """Per-layer key/value buffers for incremental decoding.

    `pos` is the number of slots written (shared by all rows); `valid` marks
    which slots hold real tokens (False for left padding), and `n_real` counts
    real tokens per row, which gives each row its own rotary positions.
    """

    def __init__(self, batch_size: int, max_len: int, config: GPTConfig,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        shape = (batch_size, config.n_kv_head, max_len, config.head_dim)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.valid = torch.zeros(batch_size, max_len, dtype=torch.bool, device=device)
        self.n_real = torch.zeros(batch_size, dtype=torch.long, device=device)
        self.pos = 0
        self.max_len = max_len
        self.batch_size = batch_size

    def reset(self) -> None:
        self.pos = 0
        self.valid.zero_()
        self.n_real.zero_()

    def expand(self, n: int) -> "KVCache":
        """Copy a batch-1 cache into n rows (prefill once, sample n continuations)."""
        assert self.batch_size == 1, "expand() needs a batch-1 cache"
        new = object.__new__(KVCache)
        new.k = [t.expand(n, -1, -1, -1).clone() for t in self.k]
        new.v = [t.expand(n, -1, -1, -1).clone() for t in self.v]
        new.valid = self.valid.expand(n, -1).clone()
        new.n_real = self.n_real.expand(n).clone()
        new.pos, new.max_len, new.batch_size = self.pos, self.max_len, n
        return new

    def select(self, rows: torch.Tensor) -> "KVCache":
        """Keep only some rows (drop finished sequences from a batch)."""
        new = object.__new__(KVCache)
        new.k = [t[rows] for t in self.k]
        new.v = [t[rows] for t in self.v]
        new.valid, new.n_real = self.valid[rows], self.n_real[rows]
        new.pos, new.max_len, new.batch_size = self.pos, self.max_len, int(rows.numel())
        return new


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.n_head, self.n_kv_head, self.head_dim = config.n_head, config.n_kv_head, config.head_dim
        self.c_q = nn.Linear(config.n_embd, self.n_head * self.head_dim, bias=False)
        self.c_k = nn.Linear(config.n_embd, self.n_kv_head * self.head_dim, bias=False)
        self.c_v = nn.Linear(config.n_embd, self.n_kv_head * self.head_dim, bias=False)
        self.c_proj = nn.Linear(self.n_head * self.head_dim, config.n_embd, bias=False)
        self.qk_norm = config.qk_norm
        self.q_norm = RMSNorm(self.head_dim, config) if config.qk_norm else None
        self.k_norm = RMSNorm(self.head_dim, config) if config.qk_norm else None
        self.ve_channels = min(VE_GATE_CHANNELS, config.n_embd)
        self.ve_gate = (nn.Linear(self.ve_channels, self.n_kv_head, bias=False)
                        if config.has_value_embeds(layer_idx) else None)

    def forward(self, x, cos, sin, kv_cache: KVCache | None = None, attn_mask=None, ve=None):
        B, T, C = x.shape
        q = self.c_q(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        k = self.c_k(x).view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)
        v = self.c_v(x).view(B, T, self.n_kv_head, self.head_dim)
        if ve is not None:  # value embedding of the input tokens, gated per head
            gate = 2 * torch.sigmoid(self.ve_gate(x[..., :self.ve_channels]))
            v = v + gate.unsqueeze(-1) * ve.view(B, T, self.n_kv_head, self.head_dim)
        v = v.transpose(1, 2)
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if kv_cache is not None:
            p = kv_cache.pos
            kv_cache.k[self.layer_idx][:, :, p:p + T] = k.to(kv_cache.k[0].dtype)
            kv_cache.v[self.layer_idx][:, :, p:p + T] = v.to(kv_cache.v[0].dtype)
            k = kv_cache.k[self.layer_idx][:, :, :p + T].to(q.dtype)
            v = kv_cache.v[self.layer_idx][:, :, :p + T].to(q.dtype)
        if self.n_kv_head != self.n_head:
            rep = self.n_head // self.n_kv_head
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
        if attn_mask is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        y = y.transpose(1, 2).contiguous().view(B, T, self.n_head * self.head_dim)
        return self.c_proj(y)


VE_GATE_CHANNELS = 32  # the value-embedding gate reads the first 32 channels (nanochat's choice)


class MLP(nn.Module):
    """ReLU² (c_fc → relu² → c_proj), or SwiGLU (silu(c_gate x) · c_fc x → c_proj) with `mlp="swiglu"`."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        h = config.mlp_width
        self.c_fc = nn.Linear(config.n_embd, h, bias=False)
        self.c_gate = nn.Linear(config.n_embd, h, bias=False) if config.mlp == "swiglu" else None
        self.c_proj = nn.Linear(h, config.n_embd, bias=False)

    def forward(self, x):
        if self.c_gate is not None:
            return self.c_proj(F.silu(self.c_gate(x)) * self.c_fc(x))
        return self.c_proj(F.relu(self.c_fc(x)).square())


class Block(nn.Module):
    def __init__(self, config: GPTConfig, layer_idx: int):
        super().__init__()
        self.attn = CausalSelfAttention(config, layer_idx)
        self.mlp = MLP(config)
        self.norm_1, self.norm_2 = RMSNorm(config.n_embd, config), RMSNorm(config.n_embd, config)

    def forward(self, x, cos, sin, kv_cache=None, attn_mask=None, ve=None):
        x = x + self.attn(self.norm_1(x), cos, sin, kv_cache, attn_mask, ve)
        x = x + self.mlp(self.norm_2(x))
        return x


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config.validate()
        self.transformer = nn.ModuleDict({
            "wte": nn.Embedding(config.vocab_size, config.n_embd),
            "h": nn.ModuleList([Block(config, i) for i in range(config.n_layer)]),
        })
        kv_dim = config.n_kv_head * config.head_dim
        # nn.Embedding, so lm.optim puts them in the `embedding` group (embedding lr, no weight decay)
        self.value_embeds = nn.ModuleDict({str(i): nn.Embedding(config.vocab_size, kv_dim)
                                           for i in range(config.n_layer) if config.has_value_embeds(i)})
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.tie_weights()
        self.norm_f = RMSNorm(config.n_embd, config)
        # 1-D parameters, so lm.optim puts them in the `other` group (AdamW at `lr`, no weight decay)
        scalars = (nn.Parameter(torch.ones(config.n_layer)), nn.Parameter(torch.zeros(config.n_layer)))
        self.resid_lambdas, self.x0_lambdas = scalars if config.resid_scalars else (None, None)
        # Rotary tables cover 4× the training context so generation may run past it.
        self.rotary_len = config.sequence_len * 4
        cos, sin = self._rotary_tables(self.rotary_len)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        self.reset_parameters()

    def tie_weights(self) -> None:
        """With `tie_embeddings`, make the head the embedding matrix (again: to_empty/.to() may part them)."""
        if self.config.tie_embeddings:
            self.lm_head.weight = self.transformer.wte.weight

    def _rotary_tables(self, length: int, device=None):
        d = self.config.head_dim
        inv_freq = 1.0 / (self.config.rope_base ** (torch.arange(0, d, 2, dtype=torch.float32, device=device) / d))
        t = torch.arange(length, dtype=torch.float32, device=device)
        freqs = torch.outer(t, inv_freq)
        return freqs.cos(), freqs.sin()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Init: embeddings N(0,1); projections into the residual stream at zero."""
        nn.init.normal_(self.transformer.wte.weight, mean=0.0, std=1.0)
        if not self.config.tie_embeddings:
            nn.init.normal_(self.lm_head.weight, mean=0.0, std=0.001)
        bound = math.sqrt(3.0) / math.sqrt(self.config.n_embd)  # uniform with std 1/sqrt(fan_in)
        for block in self.transformer.h:
            for lin in (block.attn.c_q, block.attn.c_k, block.attn.c_v, block.mlp.c_fc, block.mlp.c_gate):
                if lin is not None:
                    nn.init.uniform_(lin.weight, -bound, bound)
            nn.init.zeros_(block.attn.c_proj.weight)
            nn.init.zeros_(block.mlp.c_proj.weight)
            if block.attn.ve_gate is not None:
                nn.init.zeros_(block.attn.ve_gate.weight)  # gate 2·sigmoid(0) = 1
        for ve in self.value_embeds.values():
            nn.init.uniform_(ve.weight, -bound, bound)  # as nanochat: the matrices' init range
        for m in self.modules():
            if isinstance(m, RMSNorm) and m.weight is not None:
                nn.init.ones_(m.weight)
        if self.resid_lambdas is not None:
            self.resid_lambdas.fill_(1.0)
            self.x0_lambdas.zero_()

    # ---------------------------------------------------------------- helpers
    def num_params(self, exclude_embedding: bool = False) -> int:
        n = sum(p.numel() for p in self.parameters())
        if exclude_embedding:  # lookups, not matmuls: they cost no FLOPs (a tied head is a matmul)
            n -= sum(ve.weight.numel() for ve in self.value_embeds.values())
            n -= 0 if self.config.tie_embeddings else self.transformer.wte.weight.numel()
        return n

    def estimate_flops_per_token(self) -> float:
        """Training FLOPs per token: 6·(non-embedding params) + attention (12·L·C·T)."""
        c = self.config
        return 6 * self.num_params(exclude_embedding=True) + 12 * c.n_layer * c.n_embd * c.sequence_len

    def _positions(self, idx: torch.Tensor, kv_cache: KVCache | None, pad_mask: torch.Tensor | None):
        B, T = idx.shape
        if kv_cache is None:
            if T > self.rotary_len:
                raise ValueError(f"sequence of {T} tokens exceeds the model's rotary range {self.rotary_len}")
            return self.cos[None, None, :T], self.sin[None, None, :T], None
        if kv_cache.pos + T > kv_cache.max_len:
            raise ValueError(f"KV cache overflow: {kv_cache.pos}+{T} > {kv_cache.max_len} slots")
        real = torch.ones(B, T, dtype=torch.bool, device=idx.device) if pad_mask is None else pad_mask.bool()
        pos = kv_cache.n_real[:, None] + torch.cumsum(real.long(), dim=1) - 1
        pos = pos.clamp(min=0)
        if int(pos.max()) >= self.rotary_len:
            raise ValueError(f"position {int(pos.max())} exceeds the model's rotary range {self.rotary_len}")
        cos = self.cos[pos][:, None]  # (B,1,T,D/2)
        sin = self.sin[pos][:, None]
        # Attention mask over slots [0, pos+T): real slots, causal; each query may
        # always see itself so a padded query never gets an all-masked row (NaN).
        p = kv_cache.pos
        kv_cache.valid[:, p:p + T] = real
        keys_valid = kv_cache.valid[:, :p + T]  # (B, S)
        S = p + T
        q_slot = torch.arange(p, p + T, device=idx.device)
        k_slot = torch.arange(S, device=idx.device)
        causal = k_slot[None, :] <= q_slot[:, None]  # (T,S)
        mask = causal[None] & keys_valid[:, None, :]
        mask |= (k_slot[None, :] == q_slot[:, None])[None]
        return cos, sin, mask[:, None]  # (B,1,T,S)

    def _trunk(self, idx, kv_cache=None, pad_mask=None):
        cos, sin, mask = self._positions(idx, kv_cache, pad_mask)
        x = x0 = norm(self.transformer.wte(idx)) if self.config.embed_norm else self.transformer.wte(idx)
        for i, block in enumerate(self.transformer.h):
            if self.resid_lambdas is not None:
                x = self.resid_lambdas[i] * x + self.x0_lambdas[i] * x0
            ve = self.value_embeds[str(i)](idx) if str(i) in self.value_embeds else None
            x = block(x, cos, sin, kv_cache, mask, ve)
        if kv_cache is not None:
            real = torch.ones_like(idx, dtype=torch.bool) if pad_mask is None else pad_mask.bool()
            kv_cache.n_real += real.sum(dim=1)
            kv_cache.pos += idx.size(1)
        return self.norm_f(x)

    def hidden(self, idx: torch.Tensor, kv_cache: KVCache | None = None, pad_mask=None) -> torch.Tensor:
        """Final normalised hidden states (B, T, C), e.g. for a reward head."""
        return self._trunk(idx, kv_cache, pad_mask)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None,
                kv_cache: KVCache | None = None, pad_mask: torch.Tensor | None = None,
                loss_reduction: str = "mean"):
        x = self._trunk(idx, kv_cache, pad_mask)
        logits = self.lm_head(x).float()
        if self.config.softcap:
            logits = self.config.softcap * torch.tanh(logits / self.config.softcap)
        if targets is None:
            return logits
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1),
                               ignore_index=-1, reduction=loss_reduction)
        if loss_reduction == "none":
            loss = loss.view(targets.shape)
        return loss

    @torch.no_grad()
    def generate(self, idx: list[int], max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, seed: int = 0, stop: set[int] | None = None):
        """Minimal KV-cached sampler for one prompt (the full engine is lm/engine.py)."""
        device = self.lm_head.weight.device
        g = torch.Generator(device=device).manual_seed(seed)
        cache = KVCache(1, len(idx) + max_new_tokens, self.config, device=device,
                        dtype=self.lm_head.weight.dtype)
        x = torch.tensor([idx], dtype=torch.long, device=device)
        out: list[int] = []
        for _ in range(max_new_tokens):
            logits = self(x, kv_cache=cache)[:, -1]
            if temperature <= 0:
                nxt = logits.argmax(-1, keepdim=True)
            else:
                logits = logits / temperature
                if top_k:
                    v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
                    logits[logits < v[:, [-1]]] = -float("inf")
                nxt = torch.multinomial(F.softmax(logits, -1), 1, generator=g)
            tok = int(nxt)
            out.append(tok)
            if stop and tok in stop:
                break
            x = nxt.view(1, 1)
        return out
