"""Tools the model may call: a safe calculator, and a registry the engine dispatches through.

The model writes `<|tool_start|>CALL<|tool_end|>`; the engine hands CALL to
`ToolRegistry.run`, which returns a string that the engine forces into the
context as `<|output_start|>RESULT<|output_end|>`.

CALL is either `name: args` / `name(args)` for a registered tool, or a bare
arithmetic expression, which goes to the default tool (the calculator).

The one registry: `default_tools(calculator=..., python=..., search=...)`
builds it from config (serve, chat, eval and the SFT data all name tools the
same way), and `ToolRegistry.only(names)` narrows it per request. Tools:
- calculator (`12 * 7`, or `calculator: 12 * 7`): below.
- python (`python: print(...)`): lm/tools/sandbox.py runs the snippet in a jailed
  child process (threat model in its docstring) and returns its stdout.
- search (`search: QUERY`): lm/tools/search.py, top passages of the corpus index.
The engine enforces the per-turn budget (`tool_budget`); every tool's output is
forced by the engine and masked out of training by lm/chat.py.

The calculator never calls `eval`/`exec`: it parses the expression with
`ast.parse(mode="eval")` and walks a whitelist of node types (numbers, + - * /
// % **, parentheses, unary +/-). Names, calls, attributes, subscripts … are
refused. Exponents, magnitudes, expression length and node count are bounded
before any arithmetic runs, so `(9**9)**(9**9)` is refused in microseconds
instead of eating the CPU; a wall-clock deadline guards the walk as well.
Every failure is returned as an `error: ...` string for the model to read,
never raised into the engine.
"""
from __future__ import annotations

import ast
import math
import operator
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

MAX_EXPR_CHARS = 256
MAX_NODES = 128
MAX_ABS = 10.0 ** 30      # largest magnitude of any intermediate or final value
MAX_EXPONENT = 1000       # |b| of a**b
MAX_SECONDS = 0.05

_BINOPS: dict[type, Callable] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type, Callable] = {ast.USub: operator.neg, ast.UAdd: operator.pos}
# Characters people (and GSM8K) write that Python spells differently.
_SPELLINGS = str.maketrans({"×": "*", "÷": "/", "−": "-", "–": "-"})
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")


class CalculatorError(ValueError):
    """An expression the calculator refuses or cannot compute."""


def _check(x: int | float) -> int | float:
    if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
        raise CalculatorError("result is not a finite number")
    if abs(x) > MAX_ABS:
        raise CalculatorError(f"magnitude exceeds {MAX_ABS:.0e}")
    return x


def _pow(a: int | float, b: int | float) -> int | float:
    if abs(b) > MAX_EXPONENT:
        raise CalculatorError(f"exponent {b} exceeds ±{MAX_EXPONENT}")
    # Predict the size before computing: |a|**b > MAX_ABS means refuse.
    if abs(a) > 1 and b > 0 and b * math.log10(abs(a)) > math.log10(MAX_ABS):
        raise CalculatorError(f"magnitude exceeds {MAX_ABS:.0e}")
    if a == 0 and b < 0:
        raise CalculatorError("division by zero")
    r = a ** b
    if isinstance(r, complex):
        raise CalculatorError("result is complex")
    return r


def _eval_node(node: ast.AST, deadline: float) -> int | float:
    if time.monotonic() > deadline:
        raise CalculatorError("took too long")
    if isinstance(node, ast.Expression):
        return _eval_node(node.body, deadline)
    if isinstance(node, ast.Constant):
        # bool is an int subclass; refuse it (and strings, None, ...).
        if type(node.value) not in (int, float):
            raise CalculatorError(f"unsupported literal {node.value!r}")
        return _check(node.value)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _check(_UNARY[type(node.op)](_eval_node(node.operand, deadline)))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        a = _eval_node(node.left, deadline)
        b = _eval_node(node.right, deadline)
        if isinstance(node.op, ast.Pow):
            return _check(_pow(a, b))
        if isinstance(node.op, (ast.Div, ast.FloorDiv, ast.Mod)) and b == 0:
            raise CalculatorError("division by zero")
        return _check(_BINOPS[type(node.op)](a, b))
    raise CalculatorError(f"unsupported syntax: {type(node).__name__}")


def _format(x: int | float) -> str:
    if isinstance(x, float):
        if x.is_integer() and abs(x) < 1e15:
            return str(int(x))
        return f"{x:.10g}"
    return str(x)


def calculate(expression: str) -> int | float:
    """Evaluate an arithmetic expression safely; raises CalculatorError on anything else."""
    expr = expression.strip().translate(_SPELLINGS).replace("^", "**")
    expr = _THOUSANDS.sub("", expr).replace("$", "")
    if not expr:
        raise CalculatorError("empty expression")
    if len(expr) > MAX_EXPR_CHARS:
        raise CalculatorError(f"expression longer than {MAX_EXPR_CHARS} characters")
    try:
        tree = ast.parse(expr, mode="eval")
    except (SyntaxError, ValueError) as e:
        raise CalculatorError(f"cannot parse {expression!r}: {getattr(e, 'msg', e)}") from None
    if sum(1 for _ in ast.walk(tree)) > MAX_NODES:
        raise CalculatorError(f"expression has more than {MAX_NODES} parts")
    try:
        return _eval_node(tree, time.monotonic() + MAX_SECONDS)
    except (OverflowError, ZeroDivisionError, RecursionError) as e:
        raise CalculatorError(str(e) or type(e).__name__) from None


def calculator(expression: str) -> str:
    """The calculator tool: result as text, or `error: ...` (never raises)."""
    try:
        return _format(calculate(expression))
    except CalculatorError as e:
        return f"error: {e}"


# How each tool is called: the persona's system message lists these (lm/chat.py).
TOOL_USAGE = {
    "calculator": "calculator: arithmetic, e.g. 12 * 7",
    "python": "python: a short Python snippet; you read what it prints",
    "search": "search: a query over the crawled web pages; you read the top passages",
}
TOOL_NAMES = tuple(TOOL_USAGE)


@dataclass
class ToolRegistry:
    """Named tools (str -> str); a call without a known name goes to `default`."""

    tools: dict[str, Callable[[str], str]] = field(default_factory=lambda: {"calculator": calculator})
    default: str | None = "calculator"

    _NAMED = re.compile(r"^\s*([A-Za-z_]\w*)\s*(?::\s*(.*)|\((.*)\))\s*$", re.S)

    @property
    def names(self) -> list[str]:
        return sorted(self.tools)

    def only(self, names: Iterable[str]) -> "ToolRegistry":
        """The same registry narrowed to `names` (per request); unknown names are an error."""
        names = list(names)
        unknown = sorted(set(names) - set(self.tools))
        if unknown:
            raise ValueError(f"tool(s) {unknown} not enabled here; enabled: {self.names}")
        tools = {n: self.tools[n] for n in names}
        return ToolRegistry(tools=tools, default=self.default if self.default in tools else None)

    def run(self, call: str) -> str:
        """Run one tool call; every failure comes back as an `error: ...` string."""
        m = self._NAMED.match(call)
        if m and m.group(1) in self.tools:
            name, args = m.group(1), m.group(2) if m.group(2) is not None else m.group(3)
        elif m and m.group(1) in TOOL_USAGE:  # a known tool that is switched off here
            return f"error: tool {m.group(1)} is not enabled; enabled: {self.names}"
        elif self.default is not None:
            name, args = self.default, call
        else:
            return f"error: no tool named in {call[:40]!r}; known: {self.names}"
        try:
            return str(self.tools[name](args))
        except Exception as e:  # a tool bug must not take the engine down
            return f"error: tool {name} failed: {type(e).__name__}: {e}"


def default_tools(calculator: bool = True, python: bool = False,
                  search: str | Path | Callable[[str], str] | None = None) -> ToolRegistry:
    """The registry from config: the calculator (the default tool, on unless told), python, search.

    `search` is an index directory (`crawl2chat index --out DIR`) or a callable.
    """
    tools: dict[str, Callable[[str], str]] = {}
    if calculator:
        tools["calculator"] = globals()["calculator"]  # the flag shadows the function's name here
    if python:
        from lm.tools.sandbox import python_tool
        tools["python"] = python_tool
    if search is not None:
        if callable(search):
            tools["search"] = search
        else:
            from lm.tools.search import SearchTool
            tools["search"] = SearchTool(search)
    return ToolRegistry(tools=tools, default="calculator" if calculator else None)


def checkpoint_tools(meta: dict, max_hops: int = 4) -> list[str]:
    """The tools a checkpoint was trained to call, in the registry's order.

    SFT records them (`meta["persona"]["tools"]`, tasks/posttrain.py); the stages after
    it (rl, dpo, rlhf) keep the SFT model's tools, so their parents are followed
    (`meta["parent"]["path"]`, up to `max_hops`). A checkpoint with no record anywhere
    (pretrain, older or GENERATED ones) gets the calculator, what every tool-using
    conversation before personas taught.
    """
    import json

    for _ in range(max_hops + 1):
        persona = meta.get("persona") if isinstance(meta, dict) else None
        if isinstance(persona, dict) and isinstance(persona.get("tools"), list):
            return [t for t in TOOL_NAMES if t in persona["tools"]]
        parent = meta.get("parent") if isinstance(meta, dict) else None
        path = parent.get("path") if isinstance(parent, dict) else None
        try:
            meta = json.loads((Path(path) / "config.json").read_text()) if path else None
        except (OSError, ValueError):
            meta = None
        if meta is None:
            break
    return ["calculator"]


def tools_from_names(names: Iterable[str], search: str | Path | Callable[[str], str] | None = None) -> ToolRegistry:
    """The registry for a list of tool names (`serve.tools`, `chat --tools`); unknown names are an error."""
    names = set(names)
    unknown = sorted(names - set(TOOL_NAMES))
    if unknown:
        raise ValueError(f"unknown tool(s) {unknown}; known: {list(TOOL_NAMES)}")
    if "search" in names and search is None:
        raise ValueError("the search tool needs an index directory (crawl2chat index --out DIR; --search-index DIR)")
    return default_tools(calculator="calculator" in names, python="python" in names,
                         search=search if "search" in names else None)
