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
- Conversation memory (`fit_conversation`): the one policy chat, serve, the web
  page and the API share. A conversation longer than the context keeps its
  leading system message and the newest whole turns that fit, leaving the reply
  its room; the oldest turns are dropped (and counted, so every front end can
  say so). Only a newest message that cannot fit on its own is an error.
- What a person sees (`ReplyReader`): text, and each tool call with its result,
  never the special-token markup; a tool call cut off by the token limit is
  dropped and reported (`cut`).
- `min_tokens`: stop tokens are masked until a row has that many tokens, so a
  chat reply is never empty.
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
MAX_TEMPERATURE = 2.0  # OpenAI's range; past it a small model's samples are noise (chat and serve both refuse)
# Smallest reply room a conversation must leave: a newest message that leaves less cannot be answered.
MIN_REPLY_TOKENS = 16
# Chars per token no BPE token of ours exceeds: a message longer than limit × this is too long
# without tokenizing it (a client cannot make the server tokenize megabytes to learn that).
MAX_CHARS_PER_TOKEN = 16


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
                 tools: ToolRegistry | None | object = _DEFAULT, min_tokens: int = 0) -> list[Completion]:
        """Sample `num_samples` continuations of every prompt; returns them prompt-major.

        Result i*num_samples + j is sample j of prompt i. `should_stop`, polled after every
        generated token, ends generation early (a server cancelling a request). `tools`
        replaces the engine's registry for this call (a request's own tool choice; None: none).
        `min_tokens`: no stop token before a row has this many tokens (a chat reply is never empty).
        """
        rows: list[_Row] = []
        for _ in self._run(prompts, max_new_tokens, temperature, top_k, top_p, seed, stop_ids,
                           num_samples, tool_budget, truncate, rows_out=rows, tools=tools, min_tokens=min_tokens):
            if should_stop is not None and should_stop():
                break
        return [self._completion(r) for r in rows]

    @torch.inference_mode()
    def stream(self, prompt_ids: Sequence[int], max_new_tokens: int, temperature: float = 1.0,
               top_k: int | None = None, top_p: float | None = None, seed: int = 0,
               stop_ids: Iterable[int] | None = None, tool_budget: int = 4,
               truncate: str | None = None, skip_stop_text: bool = True,
               tools: ToolRegistry | None | object = _DEFAULT, min_tokens: int = 0) -> Iterator[StreamEvent]:
        """Yield one StreamEvent per generated token of one prompt (text pieces are whole UTF-8)."""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        stops = self.default_stop if stop_ids is None else set(stop_ids)
        rows: list[_Row] = []
        for _, tok, forced, finish in self._run([list(prompt_ids)], max_new_tokens, temperature, top_k,
                                                top_p, seed, stop_ids, 1, tool_budget, truncate, rows_out=rows,
                                                tools=tools, min_tokens=min_tokens):
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
             tool_budget, truncate, rows_out: list[_Row], tools: ToolRegistry | None | object = _DEFAULT,
             min_tokens: int = 0):
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
        stop_list = torch.tensor(sorted(stops), dtype=torch.long, device=device)
        while active:
            if min_tokens > 0 and len(stop_list):
                early = [k for k, ri in enumerate(active) if len(rows[ri].tokens) < min_tokens]
                if early:  # the stop tokens cannot be sampled yet (a forced token is unaffected)
                    rows_idx = torch.tensor(early, device=device)[:, None]
                    logits = logits.clone()
                    logits[rows_idx, stop_list[None, :]] = float("-inf")
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


class ContextError(ValueError):
    """The newest message cannot fit in the context (with room for a reply), whatever is dropped."""


@dataclass
class FittedPrompt:
    """A conversation cut to fit the context: the prompt ids and what was left out."""

    ids: list[int]
    max_new_tokens: int        # the reply's budget: the request's, capped by the room left
    dropped_messages: int = 0  # the caller's oldest messages left out (after its leading system messages)
    dropped_turns: int = 0     # the same, in turns (a user message and the replies after it)
    context: int = 0

    def note(self) -> str | None:
        """One line saying what the model no longer sees (None when it sees everything)."""
        if not self.dropped_turns:
            return None
        turns = "turn" if self.dropped_turns == 1 else f"{self.dropped_turns} turns"
        return (f"the model no longer sees the oldest {turns} (its context holds {self.context} tokens, "
                f"the reply included)")


def reply_reserve(context: int, max_new_tokens: int) -> int:
    """Tokens kept free for the reply when history is cut: what it asked for, at most half the context.

    Half: a request for more than the model can hold must not starve the history to nothing
    (the tiny model's 256-token reply budget in a 128-token context).
    """
    return max(1, min(max_new_tokens, context // 2))


def fit_conversation(tokenizer: Tokenizer, messages: Sequence[dict], context: int, max_new_tokens: int,
                     system: str | None = None, max_prompt_tokens: int | None = None) -> FittedPrompt:
    """The prompt for `messages` that fits `context`: leading system message(s) and the newest whole turns.

    The one memory policy (chat, serve, web page, API). Turns are dropped oldest first
    until the prompt leaves the reply `reply_reserve` tokens (and is at most
    `max_prompt_tokens`); the newest turn is always kept, with a smaller reply budget
    if need be. Raises ContextError only when the newest turn (with the system
    message) leaves fewer than MIN_REPLY_TOKENS (or `max_new_tokens`, if fewer) —
    the one case no dropping can fix. `system` is prepended when the messages bring none.
    Message lengths are counted one message at a time, newest first, and a message
    too long to fit is never tokenized.
    """
    from lm.chat import ChatRenderer, with_system

    if max_new_tokens < 1:
        raise ValueError("max_new_tokens must be ≥ 1")
    r = ChatRenderer(tokenizer)
    msgs = with_system(list(messages), system)
    n_own = len(msgs) - len(messages)  # 1 when `system` was prepended
    head = 0
    while head < len(msgs) and msgs[head].get("role") == "system":
        head += 1
    # turns: each starts at a user message (anything before the first one is a turn of its own)
    starts = [i for i in range(head, len(msgs)) if msgs[i].get("role") == "user" or i == head]
    turns = [(a, b) for a, b in zip(starts, [*starts[1:], len(msgs)])]
    hard = context - min(MIN_REPLY_TOKENS, max_new_tokens)  # the newest turn must leave at least this room
    soft = context - reply_reserve(context, max_new_tokens)  # older turns must leave the reply its reserve
    if max_prompt_tokens is not None:
        hard, soft = min(hard, max_prompt_tokens), min(soft, max_prompt_tokens)

    def count(i: int, limit: int) -> int | None:
        """Tokens of message i, or None when it cannot fit in `limit` (decided without tokenizing when long)."""
        content = msgs[i].get("content")
        if isinstance(content, str) and len(content) > max(limit, 0) * MAX_CHARS_PER_TOKEN:
            return None
        return len(r.message_ids(msgs[i], max(i - n_own, 0)))

    used = 2  # <|bos|> and <|assistant_start|>
    for i in range(head):
        n = count(i, hard - used)
        if n is None or used + n > hard:
            raise ContextError(_too_long(used + n if n is not None else None, context, hard, max_prompt_tokens,
                                                head > 0))
        used += n
    kept = len(turns)
    for k in range(len(turns) - 1, -1, -1):
        a, b = turns[k]
        limit = hard if k == len(turns) - 1 else soft
        n = 0
        for i in range(a, b):
            m = count(i, limit - used - n)
            if m is None:
                n = None
                break
            n += m
        if n is None or used + n > limit:
            if k == len(turns) - 1:
                raise ContextError(_too_long(used + n if n is not None else None, context, hard, max_prompt_tokens,
                                                head > 0))
            break
        used += n
        kept = k
    keep = list(range(head)) + list(range(turns[kept][0] if kept < len(turns) else len(msgs), len(msgs)))
    ids = r.render_prompt([msgs[i] for i in keep])
    dropped = (turns[kept][0] - head) if kept < len(turns) else 0
    return FittedPrompt(ids=ids, max_new_tokens=min(max_new_tokens, context - len(ids)),
                        dropped_messages=dropped, dropped_turns=kept, context=context)


def _too_long(n: int | None, context: int, hard: int, max_prompt_tokens: int | None, system: bool) -> str:
    what = f"the newest message{' with the system message' if system else ''} is "
    what += f"{n} tokens" if n is not None else f"over {hard} tokens"
    if max_prompt_tokens is not None and hard == max_prompt_tokens:
        return f"{what}; the prompt limit is {max_prompt_tokens} tokens: shorten the message"
    return (f"{what}; the model's context holds {context} tokens and the reply needs {context - hard}: "
            f"shorten the message")


@dataclass
class ToolRun:
    """One tool call the reply made and what came back (None until it has)."""

    call: str
    result: str | None = None


class ReplyReader:
    """Reads a reply token by token into what a person sees: text, and tool calls with their results.

    The markup (`<|tool_start|>…<|tool_end|><|output_start|>…<|output_end|>`, stop tokens,
    stray special tokens) never reaches the text. `feed` returns the events of one token:
    ("text", piece), ("tool_call", ToolRun) when a call is complete, ("tool_result", ToolRun)
    when its output is. `close()` ends the reply: a call cut off mid-way (the token limit)
    is dropped and `cut` says so; an output cut off keeps what arrived, marked "…".
    """

    def __init__(self, tokenizer: Tokenizer):
        self.tok = tokenizer
        sp = tokenizer.encode_special
        self.tool_start, self.tool_end = sp("<|tool_start|>"), sp("<|tool_end|>")
        self.output_start, self.output_end = sp("<|output_start|>"), sp("<|output_end|>")
        self.special = tokenizer.special_ids
        self.ends = {sp("<|assistant_end|>"), sp("<|bos|>")}
        self.state = "text"  # text | call | output
        self.buf: list[int] = []
        self.dec = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.parts: list[str] = []
        self.runs: list[ToolRun] = []
        self.cut: str | None = None  # "limit" | "ended" when the reply ended inside a tool call (close())

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def feed(self, tok: int) -> list[tuple[str, object]]:
        tok = int(tok)
        if tok not in self.special:
            if self.state == "text":
                piece = self.dec.decode(self.tok.decode_bytes([tok]))
                self.parts.append(piece)
                return [("text", piece)] if piece else []
            self.buf.append(tok)
            return []
        out = self._flush()
        if self.state == "call" and tok != self.tool_end:  # a malformed call (no <|tool_end|>): dropped, never run
            self.state, self.buf = "text", []
            if tok in self.ends:
                self.cut = "ended"
        elif self.state == "output" and tok != self.output_end:  # an output left open: what arrived
            out.append(("tool_result", self._result(self.tok.decode(self.buf, skip_special=True))))
            self.state, self.buf = "text", []
        if tok == self.tool_start and self.state == "text":
            self.state, self.buf = "call", []
        elif tok == self.tool_end and self.state == "call":
            self.runs.append(ToolRun(self.tok.decode(self.buf, skip_special=True).strip()))
            self.state, self.buf = "text", []
            out.append(("tool_call", self.runs[-1]))
        elif tok == self.output_start and self.state == "text":
            self.state, self.buf = "output", []
        elif tok == self.output_end and self.state == "output":
            out.append(("tool_result", self._result(self.tok.decode(self.buf, skip_special=True))))
            self.state, self.buf = "text", []
        return out  # any other special token (a stop, stray markup) shows nothing

    def close(self, finish_reason: str | None = None) -> list[tuple[str, object]]:
        """Events that end the reply (the last text; a cut-off output); sets `cut` for an unfinished call.

        `cut` is "limit" when the token limit (`finish_reason` length/context) cut the call
        off, "ended" when the model stopped inside it.
        """
        out = self._flush(final=True)
        if self.state == "call":
            self.cut = "limit" if finish_reason in ("length", "context") else "ended"
        elif self.state == "output":
            out.append(("tool_result", self._result(self.tok.decode(self.buf, skip_special=True) + "…")))
        self.state, self.buf = "text", []
        return out

    def _flush(self, final: bool = False) -> list[tuple[str, object]]:
        piece = self.dec.decode(b"", final=True) if final or self.state == "text" else ""
        if piece:
            self.parts.append(piece)
            return [("text", piece)]
        return []

    def _result(self, text: str) -> ToolRun:
        if self.runs and self.runs[-1].result is None:
            self.runs[-1].result = text
        else:  # an output the model wrote with no call before it (tools off): shown, not run
            self.runs.append(ToolRun("", text))
        return self.runs[-1]


# What the reader of a reply is told when a tool call was left unfinished (`ReplyReader.cut`).
CUT_NOTES = {"limit": "[reply cut off by its token limit inside a tool call; the call was not run]",
             "ended": "[the reply ended inside a tool call, which was not run]"}
EMPTY_NOTE = "[no answer]"


def read_reply(tokenizer: Tokenizer, tokens: Sequence[int], finish_reason: str | None = None) -> ReplyReader:
    """A whole reply's tokens read by ReplyReader (non-streamed replies)."""
    reader = ReplyReader(tokenizer)
    for t in tokens:
        reader.feed(t)
    reader.close(finish_reason)
    return reader


def reply_suffix(reader: ReplyReader) -> str:
    """What a closed reply's text needs after it: the cut-off note, or EMPTY_NOTE for a reply with nothing to show."""
    text = reader.text
    if reader.cut:
        return (" " if text.strip() and not text.endswith(" ") else "") + CUT_NOTES[reader.cut]
    if not text.strip():  # nothing written, perhaps only tool calls: a client that ignores tool_runs sees this
        return EMPTY_NOTE
    return ""


def visible_reply(reader: ReplyReader) -> str:
    """The reply as a client shows it (a streamed one: its text pieces, then `reply_suffix`)."""
    return reader.text + reply_suffix(reader)


def load_engine(path_or_uri: str, device: str = "cpu", max_context: int | None = None,
                max_memory_bytes: int | None = None, tools: ToolRegistry | None | object = _DEFAULT
                ) -> tuple[Engine, dict]:
    """(Engine, checkpoint meta) for a checkpoint directory or MLflow model URI; device "auto" picks CUDA if present.

    `tools`: the registry (lm.tools.tools_from_names(...)), None for no tools; default: the tools
    the checkpoint was trained to call (lm.tools.checkpoint_tools), search left out (it needs
    an index: pass the registry).
    """
    from lm.checkpoint import load_model
    from lm.runtime import resolve_device
    from lm.tools import checkpoint_tools, tools_from_names

    device = str(resolve_device(device))  # the one device rule (lm/runtime.py)
    model, tokenizer, meta = load_model(path_or_uri, device=device, max_memory_bytes=max_memory_bytes)
    if tools is _DEFAULT:
        tools = tools_from_names([t for t in checkpoint_tools(meta) if t != "search"])
    return Engine(model, tokenizer, tools=tools, max_context=max_context), meta
