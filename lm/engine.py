"""Inference engine: batched, KV-cached sampling with tool use.

- Prompts of different lengths run as one left-padded batch (`pad_mask`), each
  row with its own rotary positions (see `lm.model.KVCache`).
- `num_samples > 1` prefills each prompt once, then copies its cache rows
  (`KVCache.select` with repeated rows, `KVCache.expand` for one prompt).
- Finished rows leave the batch (`KVCache.select`), so a long straggler does
  not pay for the finished ones.
- Tools: when a row emits `<|tool_start|>CALL<|tool_end|>`, the engine runs
  CALL through a `ToolRegistry` and forces `<|output_start|>RESULT<|output_end|>`
  into that row, one token per step, while the other rows keep sampling.
  Forced tokens are marked in `Completion.forced_mask` (RL must not learn
  them). A per-turn budget (`tool_budget`) bounds tool calls per row; past it
  the model reads `error: tool budget exhausted`.
- Context: a row may hold at most `max_context` tokens (prompt + generated;
  default the model's training `sequence_len`). A prompt longer than that is an
  error (or, with `truncate="left"`, keeps its last tokens); a row that reaches
  the limit while generating ends with `finish_reason="context"`.
- Sampling: temperature (≤ 0 means greedy), top-k, top-p (nucleus), a seed.
  Greedy decoding with the cache gives exactly the tokens of recomputing the
  full context at every step (tests/lm/test_engine.py).
"""
from __future__ import annotations

import codecs
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from lm.model import GPT, KVCache
from lm.tokenizer import Tokenizer
from lm.tools import ToolRegistry, default_tools

_DEFAULT = object()  # "use the default tools"; None means no tools at all
# Smallest usable sampling settings: below them float32 logits/temperature overflow
# and top-p masks every token, so callers (serve, chat) refuse smaller values.
MIN_TEMPERATURE = 0.01
MIN_TOP_P = 0.01


@dataclass
class Completion:
    """One generated continuation of one prompt."""

    tokens: list[int] = field(default_factory=list)       # generated ids incl. forced tool output
    forced_mask: list[int] = field(default_factory=list)  # 1 where the engine forced the token
    text: str = ""                                        # decoded tokens, final stop token left out
    finish_reason: str = "length"                         # "stop" | "length" | "context"
    prompt_index: int = 0
    sample_index: int = 0
    prompt_len: int = 0
    tool_calls: int = 0


@dataclass
class StreamEvent:
    """One token from `Engine.stream`: its id, whether forced, and the new text it completes."""

    token: int
    forced: bool
    text: str
    finish_reason: str | None = None  # set on the last event


@dataclass
class _Row:
    prompt_index: int
    sample_index: int
    prompt_len: int
    budget: int            # tokens this row may still add
    budget_is_context: bool
    tokens: list[int] = field(default_factory=list)
    forced: list[int] = field(default_factory=list)
    queue: deque = field(default_factory=deque)
    in_tool: bool = False
    tool_buf: list[int] = field(default_factory=list)
    tool_calls: int = 0
    finish: str | None = None


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Sample one id per row from logits (B, V); temperature ≤ 0 is greedy. Returns (B,)."""
    if temperature is None or temperature <= 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k is not None and 0 < top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and 0 < top_p < 1:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = F.softmax(sorted_logits, dim=-1)
        # Drop a token when the mass before it already reaches top_p (keeps ≥ 1 token).
        drop = (probs.cumsum(dim=-1) - probs) >= top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    probs = F.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


class Engine:
    """Generate from a GPT with a KV cache, batching, sampling controls and tools."""

    def __init__(self, model: GPT, tokenizer: Tokenizer, tools: ToolRegistry | None | object = _DEFAULT,
                 max_context: int | None = None):
        self.model = model  # its train/eval mode is left alone (RL samples from the model it trains)
        self.tokenizer = tokenizer
        self.tools = default_tools() if tools is _DEFAULT else tools
        self.max_context = int(max_context or model.config.sequence_len)
        if self.max_context > model.rotary_len:
            raise ValueError(f"max_context {self.max_context} exceeds the model's rotary range {model.rotary_len}")
        sp = tokenizer.encode_special
        self.bos = sp("<|bos|>")
        self.assistant_end = sp("<|assistant_end|>")
        self.tool_start, self.tool_end = sp("<|tool_start|>"), sp("<|tool_end|>")
        self.output_start, self.output_end = sp("<|output_start|>"), sp("<|output_end|>")
        self.pad = sp("<|pad|>")
        self.default_stop = {self.assistant_end, self.bos}

    @property
    def device(self) -> torch.device:
        return self.model.lm_head.weight.device

    # ---------------------------------------------------------------- public
    @torch.inference_mode()
    def generate(self, prompts: Sequence[Sequence[int]], max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None, seed: int = 0,
                 stop_ids: Iterable[int] | None = None, num_samples: int = 1, tool_budget: int = 4,
                 truncate: str | None = None, should_stop: Callable[[], bool] | None = None,
                 tools: ToolRegistry | None | object = _DEFAULT) -> list[Completion]:
        """Sample `num_samples` continuations of every prompt; returns them prompt-major.

        Result i*num_samples + j is sample j of prompt i. `should_stop`, polled after every
        generated token, ends generation early (a server cancelling a request). `tools`
        replaces the engine's registry for this call (a request's own tool choice; None: none).
        """
        rows: list[_Row] = []
        for _ in self._run(prompts, max_new_tokens, temperature, top_k, top_p, seed, stop_ids,
                           num_samples, tool_budget, truncate, rows_out=rows, tools=tools):
            if should_stop is not None and should_stop():
                break
        return [self._completion(r) for r in rows]

    @torch.inference_mode()
    def stream(self, prompt_ids: Sequence[int], max_new_tokens: int, temperature: float = 1.0,
               top_k: int | None = None, top_p: float | None = None, seed: int = 0,
               stop_ids: Iterable[int] | None = None, tool_budget: int = 4,
               truncate: str | None = None, skip_stop_text: bool = True,
               tools: ToolRegistry | None | object = _DEFAULT) -> Iterator[StreamEvent]:
        """Yield one StreamEvent per generated token of one prompt (text pieces are whole UTF-8)."""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        stops = self.default_stop if stop_ids is None else set(stop_ids)
        rows: list[_Row] = []
        for _, tok, forced, finish in self._run([list(prompt_ids)], max_new_tokens, temperature, top_k,
                                                top_p, seed, stop_ids, 1, tool_budget, truncate, rows_out=rows,
                                                tools=tools):
            if skip_stop_text and finish == "stop" and tok in stops and not forced:
                piece = decoder.decode(b"", final=True)
            else:
                piece = decoder.decode(self.tokenizer.decode_bytes([tok]), final=finish is not None)
            yield StreamEvent(token=tok, forced=forced, text=piece, finish_reason=finish)

    # -------------------------------------------------------------- internals
    def _prepare(self, prompts: Sequence[Sequence[int]], truncate: str | None) -> list[list[int]]:
        out = []
        for i, p in enumerate(prompts):
            p = [int(t) for t in p]
            if not p:
                raise ValueError(f"prompt {i} is empty; start it with <|bos|>")
            if len(p) >= self.max_context:
                if truncate == "left":
                    p = p[-(self.max_context - 1):]
                else:
                    raise ValueError(f"prompt {i} has {len(p)} tokens; the context holds {self.max_context} "
                                     f"(prompt + reply). Shorten it, or pass truncate='left' to keep its end")
            bad = [t for t in p if not 0 <= t < self.model.config.vocab_size]
            if bad:
                raise ValueError(f"prompt {i} has token ids outside the vocabulary: {bad[:5]}")
            out.append(p)
        return out

    def _run(self, prompts, max_new_tokens, temperature, top_k, top_p, seed, stop_ids, num_samples,
             tool_budget, truncate, rows_out: list[_Row], tools: ToolRegistry | None | object = _DEFAULT):
        """Decode loop; yields (row, token, forced, finish_reason|None) per generated token."""
        tools = self.tools if tools is _DEFAULT else tools
        if max_new_tokens < 0 or num_samples < 1:
            raise ValueError("max_new_tokens must be ≥ 0 and num_samples ≥ 1")
        prompts = self._prepare(prompts, truncate)
        stops = self.default_stop if stop_ids is None else {int(s) for s in stop_ids}
        device = self.device
        gen = torch.Generator(device=device).manual_seed(int(seed))

        for i, p in enumerate(prompts):
            room = self.max_context - len(p)
            for j in range(num_samples):
                rows_out.append(_Row(i, j, len(p), budget=min(max_new_tokens, room),
                                     budget_is_context=room < max_new_tokens))
        rows = rows_out
        if max_new_tokens == 0:
            return

        # Prefill: one left-padded batch over the distinct prompts.
        T = max(len(p) for p in prompts)
        idx = torch.full((len(prompts), T), self.pad, dtype=torch.long)
        pad_mask = torch.zeros((len(prompts), T), dtype=torch.bool)
        for i, p in enumerate(prompts):
            idx[i, T - len(p):] = torch.tensor(p)
            pad_mask[i, T - len(p):] = True
        longest_reply = max(r.budget for r in rows)
        cache = KVCache(len(prompts), T + longest_reply, self.model.config, device=device,
                        dtype=self.model.lm_head.weight.dtype)
        logits = self._last_logits(idx.to(device), cache, pad_mask.to(device))
        if num_samples > 1:
            if len(prompts) == 1:
                cache = cache.expand(num_samples)
            else:
                cache = cache.select(torch.arange(len(prompts), device=device).repeat_interleave(num_samples))
            logits = logits.repeat_interleave(num_samples, dim=0)

        active = list(range(len(rows)))  # indices into rows, in cache-row order
        while active:
            sampled = sample_next(logits, temperature, top_k, top_p, gen).tolist()
            next_ids = []
            for k, ri in enumerate(active):
                r = rows[ri]
                if r.queue:
                    tok, forced = r.queue.popleft(), True
                else:
                    tok, forced = int(sampled[k]), False
                r.tokens.append(tok)
                r.forced.append(int(forced))
                r.budget -= 1
                if not forced:
                    self._track_tool(r, tok, tool_budget, tools)
                    if tok in stops:
                        r.finish = "stop"
                if r.finish is None and r.budget <= 0:
                    r.finish = "context" if r.budget_is_context else "length"
                next_ids.append(tok)
                yield ri, tok, forced, r.finish
            keep = [k for k, ri in enumerate(active) if rows[ri].finish is None]
            if not keep:
                break
            if len(keep) < len(active):
                cache = cache.select(torch.tensor(keep, device=device))
                active = [active[k] for k in keep]
                next_ids = [next_ids[k] for k in keep]
            x = torch.tensor(next_ids, dtype=torch.long, device=device)[:, None]
            logits = self._last_logits(x, cache)

    def _last_logits(self, idx: torch.Tensor, cache: KVCache, pad_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of the last position only: the head over a whole prompt would cost T×V for nothing."""
        h = self.model.hidden(idx, kv_cache=cache, pad_mask=pad_mask)[:, -1]
        logits = self.model.lm_head(h).float()
        cap = self.model.config.softcap
        return cap * torch.tanh(logits / cap) if cap else logits

    def _track_tool(self, r: _Row, tok: int, tool_budget: int, tools: ToolRegistry | None) -> None:
        """Follow a row's tool-call markup; on <|tool_end|> queue the forced output."""
        if tok == self.tool_start:
            r.in_tool, r.tool_buf = True, []
        elif tok == self.tool_end and r.in_tool:
            r.in_tool = False
            if tools is None:
                return
            if r.tool_calls >= tool_budget:
                result = "error: tool budget exhausted"
            else:
                call = self.tokenizer.decode(r.tool_buf, skip_special=True)
                result = tools.run(call)
            r.tool_calls += 1
            r.queue.extend([self.output_start, *self.tokenizer.encode(result), self.output_end])
        elif r.in_tool:
            r.tool_buf.append(tok)

    def _completion(self, r: _Row) -> Completion:
        toks = r.tokens
        body = toks[:-1] if r.finish == "stop" else toks
        return Completion(tokens=list(toks), forced_mask=list(r.forced), text=self.tokenizer.decode(body),
                          finish_reason=r.finish or "length", prompt_index=r.prompt_index,
                          sample_index=r.sample_index, prompt_len=r.prompt_len, tool_calls=r.tool_calls)


# ------------------------------------------------------------------ chat prompts
def render_prompt(tokenizer: Tokenizer, messages: Sequence[dict], system: str | None = None) -> list[int]:
    """Token ids for a conversation that ends ready for the assistant's reply (lm/chat.py renders it).

    Format (DESIGN.md): <|bos|> then per message `<|role_start|>content<|role_end|>`
    for role in system/user/assistant, then `<|assistant_start|>`; `system` is
    prepended when the messages bring no system message.
    """
    from lm.chat import render_prompt as _render

    return _render(messages, tokenizer, system)


def load_engine(path_or_uri: str, device: str = "cpu", max_context: int | None = None,
                max_memory_bytes: int | None = None, tools: ToolRegistry | None | object = _DEFAULT
                ) -> tuple[Engine, dict]:
    """(Engine, checkpoint meta) for a checkpoint directory or MLflow model URI; device "auto" picks CUDA if present.

    `tools`: the registry (lm.tools.default_tools(...)); default the calculator alone, None for no tools.
    """
    from lm.checkpoint import load_model
    from lm.runtime import resolve_device

    device = str(resolve_device(device))  # the one device rule (lm/runtime.py)
    model, tokenizer, meta = load_model(path_or_uri, device=device, max_memory_bytes=max_memory_bytes)
    return Engine(model, tokenizer, tools=tools, max_context=max_context), meta
