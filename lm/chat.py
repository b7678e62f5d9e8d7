"""Chat format: conversations → token ids + loss mask.

A conversation is a list of messages `{"role", "content"}` with roles
`system`, `user`, `assistant`, `tool`. An assistant turn's content is a string
or a list of parts `{"type": "text"|"tool_call"|"tool_output", "text": str}`;
a `tool` message (a tool's output) continues the assistant turn before it, as
does an assistant message that follows it (tool calls happen inside one turn):

  <|bos|> [<|system_start|> … <|system_end|>]
  <|user_start|> … <|user_end|>
  <|assistant_start|> text <|tool_start|> call <|tool_end|>
      <|output_start|> result <|output_end|> text <|assistant_end|>

The mask is 1 on tokens the model must learn to produce: assistant text,
tool calls with their `<|tool_start|>`/`<|tool_end|>`, and `<|assistant_end|>`.
User and system text, `<|assistant_start|>` (the prompt ends with it) and tool
outputs (the engine forces them) are never trained on.

This is the one renderer: SFT, RL, eval, `chat` and `serve` all render here
(`render`, `render_for_completion`, and `render_prompt` for the API's looser
message lists). The persona (`Persona`: name, maker, tools) becomes the system
message the same way at train time (lm/posttrain/sft_data.py) and at chat time.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lm.tokenizer import Tokenizer
from lm.tools import TOOL_NAMES

ROLES = ("system", "user", "assistant", "tool")
PART_TYPES = ("text", "tool_call", "tool_output")


class ChatError(ValueError):
    """A conversation that cannot be rendered; `reason` is a short counter key."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass
class Rendered:
    ids: list[int]
    mask: list[int]  # 1 where the token is a training target

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class Persona:
    """Who the assistant is; `system_message()` is what the model reads first (kept short: tiny contexts)."""

    name: str = "crawl2chat"
    maker: str = "the crawl2chat project"
    tools: tuple[str, ...] = ("calculator",)

    def __post_init__(self):
        unknown = sorted(set(self.tools) - set(TOOL_NAMES))
        if unknown:
            raise ValueError(f"persona names unknown tool(s) {unknown}; known: {list(TOOL_NAMES)}")
        if not self.name.strip() or not self.maker.strip():
            raise ValueError("a persona needs a name and a maker")

    @classmethod
    def from_meta(cls, meta: dict, tools=None) -> "Persona":
        """Who SFT said the model is (`meta["persona"]`, else the default), with the tools enabled now.

        `tools`: the tools this chat/server enables; the system message names exactly those, so
        the model is never told of a tool it cannot call (or kept from one it can). None: the
        tools SFT recorded (what the model was trained to call).
        """
        recorded = meta.get("persona") if isinstance(meta.get("persona"), dict) else {}
        if tools is None:
            tools = recorded.get("tools") or cls.tools
        ordered = tuple(t for t in TOOL_NAMES if t in set(tools))  # one order, the registry's
        return cls(str(recorded.get("name", cls.name)), str(recorded.get("maker", cls.maker)),
                   ordered + tuple(t for t in tools if t not in TOOL_NAMES))

    def system_message(self) -> str:
        tools = f"Tools: {', '.join(self.tools)}." if self.tools else "No tools."
        return f"You are {self.name}, an assistant made by {self.maker}. {tools}"


def with_system(conversation: list[dict], system: str | None) -> list[dict]:
    """`conversation` with `system` as its first message, unless it has one already (or system is empty)."""
    if not system or (conversation and conversation[0].get("role") == "system"):
        return list(conversation)
    return [{"role": "system", "content": system}, *conversation]


def _parts(content) -> list[dict]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        out = []
        for p in content:
            if not isinstance(p, dict) or p.get("type") not in PART_TYPES or not isinstance(p.get("text"), str):
                raise ChatError("bad_part", f"assistant part {p!r:.80} needs type in {PART_TYPES} and text")
            out.append(p)
        return out
    raise ChatError("bad_content", f"content must be str or list of parts, got {type(content).__name__}")


def normalize(conversation: list[dict]) -> list[dict]:
    """Validate and merge a conversation into turns; tool/assistant runs become one assistant turn.

    Raises ChatError (reason: not_a_list, unknown_role, empty_turn, bad_order, no_assistant, ...).
    """
    if not isinstance(conversation, list) or not conversation:
        raise ChatError("not_a_list", "a conversation is a non-empty list of messages")
    turns: list[dict] = []
    for i, m in enumerate(conversation):
        if not isinstance(m, dict):
            raise ChatError("bad_message", f"message {i} is not an object")
        role = m.get("role")
        if role not in ROLES:
            raise ChatError("unknown_role", f"message {i} has role {role!r}; known {ROLES}")
        content = m.get("content")
        if role == "assistant":
            parts = _parts(content)
        elif role == "tool":
            if not isinstance(content, str):
                raise ChatError("bad_content", f"tool message {i} content must be a string")
            parts = [{"type": "tool_output", "text": content}]
        else:
            if not isinstance(content, str):
                raise ChatError("bad_content", f"{role} message {i} content must be a string")
            parts = None
        text = content if parts is None else "".join(p["text"] for p in parts)
        if not text.strip():
            raise ChatError("empty_turn", f"message {i} ({role}) is empty")
        if role == "system" and i != 0:
            raise ChatError("bad_order", "a system message may only come first")
        if role in ("assistant", "tool"):
            if role == "tool" and not (turns and turns[-1]["role"] == "assistant"):
                raise ChatError("bad_order", f"tool output at message {i} follows no assistant turn")
            if turns and turns[-1]["role"] == "assistant":
                turns[-1]["content"].extend(parts)
                continue
            turns.append({"role": "assistant", "content": list(parts)})
        else:
            turns.append({"role": role, "content": content})
    return turns


class ChatRenderer:
    """Renders conversations with one tokenizer's special ids."""

    def __init__(self, tokenizer: Tokenizer):
        self.tok = tokenizer
        s = tokenizer.encode_special
        self.bos = tokenizer.bos_id
        self.ids = {name: s(f"<|{name}|>") for name in (
            "user_start", "user_end", "assistant_start", "assistant_end", "system_start", "system_end",
            "tool_start", "tool_end", "output_start", "output_end", "pad")}

    def _assistant_body(self, parts: list[dict], ids: list[int], mask: list[int]) -> None:
        t = self.ids
        for p in parts:
            if p["type"] == "text":
                enc = self.tok.encode(p["text"])
                ids += enc
                mask += [1] * len(enc)
            elif p["type"] == "tool_call":
                enc = [t["tool_start"], *self.tok.encode(p["text"]), t["tool_end"]]
                ids += enc
                mask += [1] * len(enc)
            else:  # tool output: forced by the engine, never learned
                enc = [t["output_start"], *self.tok.encode(p["text"]), t["output_end"]]
                ids += enc
                mask += [0] * len(enc)

    def render(self, conversation: list[dict], max_len: int | None = None) -> Rendered:
        """Token ids + loss mask of a whole conversation (must contain an assistant turn)."""
        turns = normalize(conversation)
        if not any(tu["role"] == "assistant" for tu in turns):
            raise ChatError("no_assistant", "nothing to learn: the conversation has no assistant turn")
        ids, mask = [self.bos], [0]
        t = self.ids
        for tu in turns:
            role = tu["role"]
            if role == "assistant":
                ids.append(t["assistant_start"])
                mask.append(0)
                self._assistant_body(tu["content"], ids, mask)
                ids.append(t["assistant_end"])
                mask.append(1)
            else:
                enc = [t[f"{role}_start"], *self.tok.encode(tu["content"]), t[f"{role}_end"]]
                ids += enc
                mask += [0] * len(enc)
        if max_len is not None and len(ids) > max_len:
            raise ChatError("too_long", f"{len(ids)} tokens > context {max_len}")
        return Rendered(ids, mask)

    def render_for_completion(self, conversation: list[dict]) -> list[int]:
        """Prompt ids ending with `<|assistant_start|>`; a trailing assistant turn is dropped."""
        turns = normalize(conversation)
        if turns and turns[-1]["role"] == "assistant":
            turns = turns[:-1]
        if not turns or turns[-1]["role"] != "user":
            raise ChatError("bad_order", "a completion prompt must end with a user message")
        ids = [self.bos]
        t = self.ids
        for tu in turns:
            if tu["role"] == "assistant":
                ids.append(t["assistant_start"])
                self._assistant_body(tu["content"], ids, [])
                ids.append(t["assistant_end"])
            else:
                ids += [t[f"{tu['role']}_start"], *self.tok.encode(tu["content"]), t[f"{tu['role']}_end"]]
        ids.append(t["assistant_start"])
        return ids


    def render_prompt(self, messages: Sequence[dict], system: str | None = None) -> list[int]:
        """Prompt ids for an API-style message list: system/user/assistant in any order, ending ready to reply.

        Looser than `render_for_completion` (OpenAI clients send several system
        messages, empty ones, or a trailing assistant turn); `system` is prepended
        when the messages bring none. Raises ValueError naming the bad message.
        """
        ids = [self.bos]
        for i, m in enumerate(with_system(list(messages), system)):
            ids += self.message_ids(m, i)
        ids.append(self.ids["assistant_start"])
        return ids

    def message_ids(self, m: dict, i: int = 0) -> list[int]:
        """The ids one API-style message adds to a `render_prompt` prompt (lm.engine.fit_conversation counts them)."""
        t = self.ids
        role = m.get("role")
        if role not in ("system", "user", "assistant"):
            raise ValueError(f"message {i} has role {role!r}; use system, user or assistant")
        content = m.get("content") or ""
        if not isinstance(content, str):
            raise ValueError(f"message {i} content must be a string")
        if role == "assistant":
            ids = [t["assistant_start"]]
            self._assistant_body([{"type": "text", "text": content}], ids, [])
            return ids + [t["assistant_end"]]
        return [t[f"{role}_start"], *self.tok.encode(content), t[f"{role}_end"]]


def render(conversation: list[dict], tokenizer: Tokenizer, max_len: int | None = None) -> Rendered:
    """Render one conversation (see ChatRenderer.render)."""
    return ChatRenderer(tokenizer).render(conversation, max_len)


def render_for_completion(conversation: list[dict], tokenizer: Tokenizer) -> list[int]:
    """Prompt ids for sampling the next assistant turn."""
    return ChatRenderer(tokenizer).render_for_completion(conversation)


def render_prompt(messages: Sequence[dict], tokenizer: Tokenizer, system: str | None = None) -> list[int]:
    """Prompt ids for an API-style message list (see ChatRenderer.render_prompt)."""
    return ChatRenderer(tokenizer).render_prompt(messages, system)
