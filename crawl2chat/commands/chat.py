"""`crawl2chat chat --model MODEL`: multi-turn chat in the terminal, replies streamed.

Commands inside the chat: /reset, /temp X, /top_p X, /top_k N, /tokens, /system, /tools, /help, /quit.
Tool calls and their results are printed dimmed (ANSI dim on a terminal) inside the reply:
`[python: print(1) → 1]`; no chat markup is ever printed. A conversation longer than the
context keeps its newest turns (lm.engine.fit_conversation) and says, dimmed, that the
model no longer sees the oldest ones.
"""
from __future__ import annotations

import argparse
import sys

HELP = """commands:
  /reset      start a new conversation
  /temp X     sampling temperature: 0 (greedy) or 0.01 to 2
  /top_p X    nucleus sampling mass in (0, 1]; 1 turns it off
  /top_k N    keep the N most likely tokens; 0 turns it off
  /tokens     token counts of the conversation and the context limit
  /system     the system message the model reads first (--system or --persona)
  /tools      the tools the model may call in this chat (--tools)
  /help       this list
  /quit       leave (Ctrl-D works too)"""


def register(subparsers) -> None:
    p = subparsers.add_parser("chat", help="chat with a model in the terminal",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", required=True, help="checkpoint directory or MLflow URI (models:/crawl2chat-sft@latest)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--temperature", type=float, default=0.7, help="0 (greedy) or 0.01 to 2")
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--top-k", type=int, default=50)
    p.add_argument("--max-tokens", type=int, default=256, help="cap on the reply length")
    p.add_argument("--context", type=int, default=None,
                   help="tokens the conversation may fill (prompt + reply); default: the length the model was "
                        "trained on, at most its rotary range (4x that). Longer conversations drop their oldest turns")
    p.add_argument("--system", default=None, help="system prompt")
    p.add_argument("--persona", action="store_true",
                   help="use the persona's system message (the checkpoint's, from SFT; else conf/persona.py's)")
    p.add_argument("--tools", default=None,
                   help="comma list of tools: calculator,python,search ('' none); default: the tools the "
                        "checkpoint was trained to call")
    p.add_argument("--search-index", default=None,
                   help="index directory for the search tool (default: the index of the checkpoint's run, if any)")
    p.add_argument("--tool-budget", type=int, default=4, help="tool calls per reply")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def check_temperature(v: float) -> str | None:
    """Why `v` is not a temperature the chat and the API accept (None: it is)."""
    from lm.engine import MAX_TEMPERATURE, MIN_TEMPERATURE

    if v == 0 or MIN_TEMPERATURE <= v <= MAX_TEMPERATURE:  # NaN fails both
        return None
    return f"temperature must be 0 (greedy) or between {MIN_TEMPERATURE} and {MAX_TEMPERATURE:g}"


class ChatSession:
    """Conversation state + settings; `reply(text)` yields what the reader saw, `command(line)` what to print.

    Testable without a tty. The conversation is cut to the context by lm.engine's one policy:
    turns the model can no longer see leave `messages`, and `dropped_note` says so once per reply.
    """

    def __init__(self, engine, temperature=0.7, top_p=None, top_k=50, max_tokens=256, system=None, seed=0,
                 tool_budget=4):
        self.engine = engine
        self.temperature, self.top_p, self.top_k = temperature, top_p, top_k
        self.max_tokens, self.system, self.seed = max_tokens, system, seed
        self.tool_budget = tool_budget
        self.turn = 0
        self.reset()

    def reset(self) -> None:
        self.messages = [{"role": "system", "content": self.system}] if self.system else []
        self.last_reply_tokens = 0
        self.last_finish: str | None = None
        self.last_cut: str | None = None
        self.dropped_turns = 0       # turns the model no longer sees, this conversation
        self.dropped_note: str | None = None  # set by the reply that dropped turns

    def context_note(self) -> str | None:
        """What to tell the user when the last reply was cut off by the context limit (else None)."""
        if self.last_finish != "context":
            return None
        model = self.engine.model
        trained, most = model.config.sequence_len, model.rotary_len
        limit = self.engine.max_context
        more = (f"; restart with --context {min(most, 2 * limit)} for longer replies (this model was trained on "
                f"{trained}-token contexts and takes up to {most}; replies past {trained} tokens may degrade)"
                ) if limit < most else ""
        return f"(reply cut off: it reached the end of the {limit}-token context{more})"

    def command(self, line: str) -> str | None:
        """Run a /command; returns a message, or None to quit."""
        cmd, _, arg = line.strip().partition(" ")
        try:
            if cmd in ("/quit", "/exit"):
                return None
            if cmd == "/reset":
                self.reset()
                return "(new conversation)"
            if cmd == "/temp":
                v = float(arg)
                why = check_temperature(v)
                if why:
                    return f"({why})"
                self.temperature = v
                return f"(temperature = {self.temperature})"
            if cmd == "/top_p":
                from lm.engine import MIN_TOP_P
                v = float(arg)
                if not MIN_TOP_P <= v <= 1:
                    return f"(top_p must be in [{MIN_TOP_P}, 1])"
                self.top_p = None if v == 1 else v
                return f"(top_p = {self.top_p or 'off'})"
            if cmd == "/top_k":
                v = int(arg)
                if v < 0:
                    return "(top_k must be ≥ 0; 0 turns it off)"
                self.top_k = v or None
                return f"(top_k = {self.top_k or 'off'})"
            if cmd == "/tokens":
                from lm.engine import render_prompt
                n = len(render_prompt(self.engine.tokenizer, self.messages))
                dropped = f"; turns dropped: {self.dropped_turns}" if self.dropped_turns else ""
                return (f"(conversation: {n} tokens incl. the reply prompt; last reply: {self.last_reply_tokens}; "
                        f"context limit: {self.engine.max_context}{dropped})")
            if cmd == "/system":
                return f"(system: {self.system})" if self.system else "(no system message: --system or --persona)"
            if cmd == "/tools":
                names = getattr(self.engine.tools, "names", None) or []
                return f"(tools: {', '.join(names)})" if names else "(no tools)"
            if cmd == "/help":
                return HELP
        except ValueError:
            return f"(bad value {arg!r} for {cmd})"
        return f"(unknown command {cmd}; /help lists them)"

    def reply(self, text: str):
        """Yield the reply as the reader sees it — ("text", piece), ("tool_call"/"tool_result", ToolRun) —
        while it is generated; the turn is kept in the history. Raises ContextError (a ValueError) when
        the message alone cannot fit."""
        from lm.engine import ReplyReader, fit_conversation, reply_suffix

        fitted = fit_conversation(self.engine.tokenizer, [*self.messages, {"role": "user", "content": text}],
                                  self.engine.max_context, self.max_tokens)
        # Turns the model can no longer see leave the history for good: the conversation only grows.
        head = 1 if self.system else 0
        self.messages = self.messages[:head] + self.messages[head + fitted.dropped_messages:]
        self.messages.append({"role": "user", "content": text})
        self.dropped_turns += fitted.dropped_turns
        self.dropped_note = None
        if fitted.dropped_turns:
            self.dropped_note = (f"(the model no longer sees the oldest {self.dropped_turns} turn"
                                 f"{'s' if self.dropped_turns > 1 else ''}: its context holds "
                                 f"{self.engine.max_context} tokens; /reset starts over)")
        reader, n = ReplyReader(self.engine.tokenizer), 0
        self.turn += 1
        self.last_finish = self.last_cut = None
        try:
            # the engine caps the reply at the context's room itself, and then says finish_reason="context"
            for ev in self.engine.stream(fitted.ids, self.max_tokens, temperature=self.temperature,
                                         top_k=self.top_k, top_p=self.top_p, seed=self.seed + self.turn,
                                         tool_budget=self.tool_budget, min_tokens=1):
                n += 1
                yield from reader.feed(ev.token)
                if ev.finish_reason:
                    self.last_finish = ev.finish_reason
                    yield from reader.close(ev.finish_reason)
                    suffix = reply_suffix(reader)
                    if suffix:
                        yield ("note", suffix)
        except BaseException:
            self.messages.pop()  # an interrupted turn is not part of the conversation
            raise
        self.last_reply_tokens, self.last_cut = n, reader.cut
        self.messages.append({"role": "assistant", "content": reader.text.strip() or reply_suffix(reader)})


class ReplyDisplay:
    """What the terminal prints for a reply's events: text, `[call → result]` and notes, dimmed on a terminal."""

    DIM, RESET = "\x1b[2m", "\x1b[0m"

    def __init__(self, dim: bool):
        self.dim = dim
        self.open = False  # a call shown, its result not yet

    def _dim(self, s: str) -> str:
        return f"{self.DIM}{s}{self.RESET}" if self.dim else s

    def show(self, kind: str, value) -> str:
        if kind == "tool_result":
            shown = self._dim(f"{value.result}]" if self.open else f"[{value.result}]") + " "
            self.open = False
            return shown
        close = self._dim("…] ") if self.open else ""  # a call no result followed (tools off)
        self.open = kind == "tool_call"
        if kind == "text":
            return close + value if value else ""
        if kind == "tool_call":
            return close + self._dim(f"[{value.call} → ")
        return close + self._dim(value)  # a note

    def end(self) -> str:
        """Close a call left without a result at the end of the reply."""
        shown, self.open = (self._dim("…]") if self.open else ""), False
        return shown

    def note(self, text: str) -> str:
        return self._dim(text)


def run(args) -> int:
    from crawl2chat.serve.setup import build_tools, choose_tools, persona_system
    from lm.engine import MIN_TOP_P, load_engine

    why = check_temperature(args.temperature)
    if why:
        raise ValueError(f"--{why}")
    if args.top_p is not None and not MIN_TOP_P <= args.top_p <= 1:
        raise ValueError(f"--top-p must be in [{MIN_TOP_P}, 1]")
    engine, meta = load_engine(args.model, device=args.device, max_context=args.context, tools=None)
    choice = choose_tools(args.tools, meta, args.search_index)
    engine.tools = build_tools(choice)
    system = args.system
    if args.persona and system is None:
        system = persona_system(meta, choice)
    s = ChatSession(engine, args.temperature, args.top_p, args.top_k, args.max_tokens, system, args.seed,
                    tool_budget=args.tool_budget)
    show = ReplyDisplay(dim=sys.stdout.isatty())
    print(f"crawl2chat chat — {meta.get('path', args.model)} ({meta.get('kind', 'model')}); "
          f"context {engine.max_context} tokens; tools: {', '.join(choice.names) or 'none'}; /help for commands")
    for note in choice.notes:
        print(show.note(f"(note: {note})"))
    while True:
        try:
            line = input("you> ")
        except (EOFError, KeyboardInterrupt):
            print()
            return 0
        if not line.strip():
            continue
        if line.startswith("/"):
            msg = s.command(line)
            if msg is None:
                return 0
            print(msg)
            continue
        events = s.reply(line)
        try:
            first = next(events, None)  # fitting happens here: a message too long says so before "bot> "
            if s.dropped_note:
                print(show.note(s.dropped_note))
            sys.stdout.write("bot> ")
            for ev in ([first] if first is not None else []):
                sys.stdout.write(show.show(*ev))
            for ev in events:
                sys.stdout.write(show.show(*ev))
                sys.stdout.flush()
        except ValueError as e:
            print(show.note(f"({e})"))
            continue
        except KeyboardInterrupt:
            events.close()
            print(show.end() + "\n(interrupted)")
            continue
        print(show.end())
        note = s.context_note()
        if note:
            print(show.note(note))
