"""`crawl2chat chat --model MODEL`: multi-turn chat in the terminal, replies streamed.

Commands inside the chat: /reset, /temp X, /top_p X, /top_k N, /tokens, /system, /tools, /help, /quit.
Tool calls and their results are printed dimmed (ANSI dim on a terminal) inside the reply:
`[python: print(1) → 1]`.
"""
from __future__ import annotations

import argparse
import sys

HELP = """commands:
  /reset      start a new conversation
  /temp X     sampling temperature (0 = greedy)
  /top_p X    nucleus sampling mass in (0, 1]; 1 turns it off
  /top_k N    keep the N most likely tokens; 0 turns it off
  /tokens     token counts of the conversation and the context limit
  /system     the system message the model reads first (--system or --persona)
  /tools      the tools the model may call in this chat (--tools)
  /quit       leave (Ctrl-D works too)"""


def register(subparsers) -> None:
    p = subparsers.add_parser("chat", help="chat with a model in the terminal",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", required=True, help="checkpoint directory or MLflow URI (models:/crawl2chat-sft/latest)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--top-k", type=int, default=50)
    p.add_argument("--max-tokens", type=int, default=256, help="cap on the reply length")
    p.add_argument("--context", type=int, default=None,
                   help="tokens the conversation may fill (prompt + reply); default: the length the model was "
                        "trained on, at most its rotary range (4x that)")
    p.add_argument("--system", default=None, help="system prompt")
    p.add_argument("--persona", action="store_true",
                   help="use the persona's system message (the checkpoint's, from SFT; else conf/persona.py's)")
    p.add_argument("--tools", default="calculator", help="comma list of tools: calculator,python,search ('' none)")
    p.add_argument("--search-index", default=None, help="index directory for the search tool (crawl2chat index)")
    p.add_argument("--tool-budget", type=int, default=4, help="tool calls per reply")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


class ChatSession:
    """Conversation state + settings; `handle(line)` returns what to print (testable without a tty)."""

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

    def context_note(self) -> str | None:
        """What to tell the user when the last reply was cut off by the context limit (else None)."""
        if self.last_finish != "context":
            return None
        model = self.engine.model
        trained, most = model.config.sequence_len, model.rotary_len
        limit = self.engine.max_context
        more = (f", or restart with --context {min(most, 2 * limit)} (this model was trained on {trained}-token "
                f"contexts and takes up to {most}; replies past {trained} tokens may degrade)") if limit < most else ""
        return f"(reply cut off: the conversation filled the context of {limit} tokens; /reset to start over{more})"

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
                from lm.engine import MIN_TEMPERATURE
                v = float(arg)
                if not (v == 0 or MIN_TEMPERATURE <= v <= 100):  # below the floor float32 sampling overflows
                    return f"(temperature must be 0 (greedy) or between {MIN_TEMPERATURE} and 100)"
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
                self.top_k = int(arg) or None
                return f"(top_k = {self.top_k or 'off'})"
            if cmd == "/tokens":
                from lm.engine import render_prompt
                n = len(render_prompt(self.engine.tokenizer, self.messages))
                return (f"(conversation: {n} tokens incl. the reply prompt; last reply: {self.last_reply_tokens}; "
                        f"context limit: {self.engine.max_context})")
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
        """Yield the reply's text pieces as they are generated; the turn is kept in the history."""
        from lm.engine import render_prompt

        self.messages.append({"role": "user", "content": text})
        ids = render_prompt(self.engine.tokenizer, self.messages)
        room = self.engine.max_context - len(ids)
        if room <= 0:
            self.messages.pop()
            raise ValueError(f"the conversation ({len(ids)} tokens) fills the model's context "
                             f"({self.engine.max_context}); /reset to start over")
        pieces, n = [], 0
        self.turn += 1
        # The engine caps the reply at the context's room and then says finish_reason="context".
        self.last_finish = None
        for ev in self.engine.stream(ids, self.max_tokens, temperature=self.temperature,
                                     top_k=self.top_k, top_p=self.top_p, seed=self.seed + self.turn,
                                     tool_budget=self.tool_budget):
            n += 1
            pieces.append(ev.text)
            if ev.finish_reason:
                self.last_finish = ev.finish_reason
            yield ev.text
        self.last_reply_tokens = n
        self.messages.append({"role": "assistant", "content": "".join(pieces)})


class ToolDisplay:
    """Turns a streamed reply's tool markup into `[call → result]`, dimmed with ANSI codes on a terminal."""

    DIM, RESET = "\x1b[2m", "\x1b[0m"

    def __init__(self, dim: bool):
        self.dim = dim
        self.open = False
        self.marks = {"<|tool_start|>": (self.DIM if dim else "") + "[",
                      "<|tool_end|>": " → ", "<|output_start|>": "",
                      "<|output_end|>": "]" + (self.RESET if dim else "") + " "}

    def feed(self, piece: str) -> str:
        """What to print for one streamed piece (special tokens arrive as whole pieces)."""
        if piece in self.marks:
            self.open = piece not in ("<|output_end|>",)
            return self.marks[piece]
        return piece

    def end(self) -> str:
        """Close a dimmed span the reply left open (cut off inside a tool call)."""
        if self.open and self.dim:
            self.open = False
            return self.RESET
        return ""


def run(args) -> int:
    from lm.engine import MIN_TEMPERATURE, MIN_TOP_P, load_engine

    if not (args.temperature == 0 or MIN_TEMPERATURE <= args.temperature <= 100):
        raise ValueError(f"--temperature must be 0 (greedy) or between {MIN_TEMPERATURE} and 100")
    if args.top_p is not None and not MIN_TOP_P <= args.top_p <= 1:
        raise ValueError(f"--top-p must be in [{MIN_TOP_P}, 1]")
    from lm.chat import Persona
    from lm.tools import tools_from_names

    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    registry = tools_from_names(tools, args.search_index)
    engine, meta = load_engine(args.model, device=args.device, max_context=args.context, tools=registry)
    system = args.system
    if args.persona and system is None:
        system = Persona.from_meta(meta, tools).system_message()
    s = ChatSession(engine, args.temperature, args.top_p, args.top_k, args.max_tokens, system, args.seed,
                    tool_budget=args.tool_budget)
    show = ToolDisplay(dim=sys.stdout.isatty())
    print(f"crawl2chat chat — {meta.get('path', args.model)} ({meta.get('kind', 'model')}); "
          f"context {engine.max_context} tokens; /help for commands")
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
        sys.stdout.write("bot> ")
        try:
            for piece in s.reply(line):
                sys.stdout.write(show.feed(piece))
                sys.stdout.flush()
        except ValueError as e:
            print(f"\n({e})")
            continue
        except KeyboardInterrupt:
            print("\n(interrupted)")
            s.messages.pop()
            continue
        sys.stdout.write(show.end())
        print()
        note = s.context_note()
        if note:
            print(note)
