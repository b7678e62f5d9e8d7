"""The `python` tool's interpreter: walks the snippet's syntax tree node by node; never exec/eval/compile.

Why: the project forbids exec/eval of untrusted input, in the jailed child too. So the child of
lm/tools/sandbox.py parses the model's snippet (`ast.parse`) and this module evaluates the tree itself,
for the subset a calculator-style code tool needs (what lm/datasets/python_tool.py's GENERATED snippets and
the python eval use, and more):
  literals, names, assignment (tuple/starred unpacking, `+=`-style, subscripts), arithmetic, bitwise,
  boolean and comparison operators, if/elif/else, for/while (+ else, break, continue), list/set/dict
  comprehensions and (lazy) generator expressions, slicing, f-strings, lambda and `def` (defaults,
  *args/**kwargs, keyword-only, closures, decorators), try/except/else/finally, raise, assert, del,
  print, allowlisted builtins, attribute calls on values (str/list/dict/set/int methods, ...), and
  `import` / `from ... import` of ALLOWED_MODULES (their public attributes only).
Anything else (classes, with, global/nonlocal, yield, async, match) is `error: unsupported: ...`
before the first statement runs; errors of the snippet come back as `error: TypeName: message`.

Runtime refusals (independent of the server's static check, lm/sandbox.check_code): names and
attributes starting with `__`/`_`, DENIED_ATTRS, any attribute of frames, code, tracebacks,
generators, functions and this interpreter's own objects; module attributes that are modules
outside the allowlist (`datetime.sys`); attribute fields in format strings (`"{0.__class__}"`);
`type()` with three arguments (class creation). Guards: a step budget (statements, loop
iterations, comprehension items, calls) ends endless loops with a clear error before the CPU
rlimit does; a call-depth cap; int results of `**`, `*`, `<<` capped at MAX_INT_BITS and sequence
repetition/concatenation at MAX_ITEMS, so the memory rlimit is not the only guard.

The jailed child imports this file by path, as a top-level module, before the jail (lm/tools/sandbox.py's
CHILD_PROGRAM), so it must stay self-contained: stdlib only, no imports from lm/.
"""
from __future__ import annotations

import ast
import builtins
import importlib
import itertools
import numbers
import operator
import string
import sys
import types
from collections import UserString

import _string

# What a snippet may import: pure computation, nothing that reaches files, processes or the network.
ALLOWED_MODULES = frozenset({
    "math", "cmath", "re", "string", "itertools", "collections", "collections.abc", "json", "datetime",
    "fractions", "decimal", "random", "statistics", "functools", "operator", "heapq", "bisect",
    "textwrap", "unicodedata", "calendar",
})
# Builtins that open files, run code, read the interpreter's state or wait on stdin (never offered).
DENIED_NAMES = frozenset({
    "open", "eval", "exec", "compile", "__import__", "getattr", "setattr", "delattr", "globals", "locals",
    "vars", "breakpoint", "input", "help", "exit", "quit", "memoryview", "copyright", "credits", "license",
})
# Attributes that lead from an object to frames, code, globals or other modules.
DENIED_ATTRS = frozenset({
    "gi_frame", "gi_code", "gi_yieldfrom", "cr_frame", "cr_code", "cr_await", "ag_frame", "ag_code",
    "ag_await", "f_back", "f_globals", "f_locals", "f_builtins", "f_code", "tb_frame", "tb_next",
    "func_globals", "sys", "os", "modules", "builtins", "get_field", "vformat", "format_map",
    "attrgetter", "methodcaller", "mro", "system", "popen", "subprocess", "loader",
    # getattr/setattr by name, and program entry points, in the allowed modules
    "Formatter", "update_wrapper", "wraps", "main",
})
MAX_STEPS = 300_000         # statements + loop iterations + comprehension items + calls (~0.5 s CPU)
MAX_DEPTH = 200             # nested calls of the snippet's own functions
MAX_INT_BITS = 1 << 18      # ~79,000 decimal digits: exact long arithmetic, not a memory bomb
MAX_ITEMS = 10 ** 7         # chars/items a `*` repetition or `+` concatenation may produce
# Builtins a snippet gets as they are (pure functions and value types).
SAFE_BUILTINS = (
    "abs", "all", "any", "ascii", "bin", "bool", "bytearray", "bytes", "callable", "chr", "complex",
    "dict", "divmod", "enumerate", "filter", "float", "format", "frozenset", "hash", "hex", "id", "int",
    "isinstance", "issubclass", "iter", "len", "list", "map", "max", "min", "next", "oct", "ord", "range",
    "repr", "reversed", "round", "set", "slice", "sorted", "str", "sum", "tuple", "zip",
    "ArithmeticError", "AssertionError", "AttributeError", "EOFError", "Exception", "FloatingPointError",
    "ImportError", "IndexError", "KeyError", "LookupError", "MemoryError", "ModuleNotFoundError",
    "NameError", "NotImplementedError", "OverflowError", "RecursionError", "RuntimeError",
    "StopIteration", "TypeError", "UnicodeDecodeError", "UnicodeEncodeError", "UnicodeError",
    "ValueError", "ZeroDivisionError",
)
# Objects whose attributes are never handed out: they lead to frames, globals and code.
_OPAQUE = (types.FrameType, types.TracebackType, types.CodeType, types.GeneratorType, types.CoroutineType,
           types.AsyncGeneratorType, types.FunctionType, types.CellType, types.MethodType)
_UNSUPPORTED = {
    ast.ClassDef: "class definitions", ast.With: "with statements", ast.AsyncWith: "async with",
    ast.AsyncFunctionDef: "async functions", ast.AsyncFor: "async for", ast.Await: "await",
    ast.Yield: "yield (generator functions)", ast.YieldFrom: "yield from", ast.Global: "global statements",
    ast.Nonlocal: "nonlocal statements",
}
if hasattr(ast, "Match"):
    _UNSUPPORTED[ast.Match] = "match statements"
if hasattr(ast, "TryStar"):
    _UNSUPPORTED[ast.TryStar] = "except* (exception groups)"


class SnippetStop(BaseException):
    """Ends the snippet with a message. A BaseException: the snippet's own `except` never catches it."""

    kind = "error"

    def line(self) -> str:
        return f"error: {self.kind}: {self}"


class Unsupported(SnippetStop):
    kind = "unsupported"


class Refused(SnippetStop):
    kind = "refused"


class StepLimit(SnippetStop):
    kind = "step budget"


class DepthLimit(SnippetStop):
    kind = "recursion limit"


def describe_error(e: BaseException) -> str:
    """The one line that reports how the snippet ended: `error: TypeName: message`."""
    if isinstance(e, SnippetStop):
        return e.line()
    if isinstance(e, MemoryError) and not str(e):
        return "error: MemoryError: the snippet exceeded the memory limit"
    msg = str(e)[:300]
    return f"error: {type(e).__name__}: {msg}" if msg else f"error: {type(e).__name__}"


def check_supported(tree: ast.AST) -> None:
    """Raise Unsupported naming the first construct this interpreter does not run (an allowlist of nodes)."""
    for node in ast.walk(tree):
        t, what = type(node), None
        if t not in _SUPPORTED_NODES:
            what = _UNSUPPORTED.get(t, f"{t.__name__} syntax")
        elif t is ast.comprehension and node.is_async:
            what = "async comprehensions"
        if what is not None:
            raise Unsupported(f"{what} (line {getattr(node, 'lineno', '?')}); the python tool runs a subset "
                              "of Python: expressions, assignments, if/for/while, def/lambda, comprehensions, "
                              "try/except, allowlisted imports")


def load_modules(names=ALLOWED_MODULES) -> dict:
    """Import the allowlisted modules (before the jail: after chroot nothing can be imported)."""
    mods = {name: importlib.import_module(name) for name in sorted(names)}
    import _strptime  # noqa: F401  datetime.strptime imports it lazily
    return mods


def run_snippet(code: str, write, modules: dict, max_steps: int = MAX_STEPS, max_depth: int = MAX_DEPTH) -> None:
    """Parse and interpret `code`; `print` goes to `write(str)`. Raises what the snippet raises."""
    tree = ast.parse(code, "<snippet>", "exec")
    check_supported(tree)
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 30 * max_depth + 1000))  # ~10 interpreter frames per snippet call
    try:
        Interpreter(modules, write, max_steps, max_depth).run(tree)
    finally:
        sys.setrecursionlimit(old)


# ------------------------------------------------------------------ values the interpreter hands out
class _Scope:
    __slots__ = ("vars", "parent", "comp")

    def __init__(self, vars: dict, parent: _Scope | None, comp: bool = False):
        self.vars, self.parent, self.comp = vars, parent, comp


class _Function:
    """A snippet's `def` or `lambda`. Opaque to the snippet (no attributes), callable from C too."""

    __slots__ = ("_interp", "_node", "_name", "_scope", "_defaults", "_kwdefaults", "_lambda")

    def __init__(self, interp, node, name, scope, defaults, kwdefaults, is_lambda):
        self._interp, self._node, self._name, self._scope = interp, node, name, scope
        self._defaults, self._kwdefaults, self._lambda = defaults, kwdefaults, is_lambda

    def __call__(self, *args, **kwargs):
        return self._interp._call_function(self, args, kwargs)

    def __repr__(self):
        return f"<function {self._name}>"


class _Builtin:
    """A builtin this interpreter implements itself (print, type, pow, ...). Opaque to the snippet."""

    __slots__ = ("_name", "_fn")

    def __init__(self, name, fn):
        self._name, self._fn = name, fn

    def __call__(self, *args, **kwargs):
        return self._fn(*args, **kwargs)

    def __repr__(self):
        return f"<built-in function {self._name}>"


class _Return:
    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value


for _cls, _shown in ((_Function, "function"), (_Builtin, "builtin_function_or_method")):
    _cls.__module__, _cls.__name__, _cls.__qualname__ = "builtins", _shown, _shown
_INTERNAL = (_Function, _Builtin, _Scope, _Return)
_BREAK, _CONTINUE = object(), object()
_MISSING = object()
_SEQ = (str, bytes, bytearray, list, tuple)


# ------------------------------------------------------------------ guarded operators
def _int_too_big(bits: int, what: str):
    return OverflowError(f"{what} would have about {bits} bits; the limit is {MAX_INT_BITS}")


def _check_mul(a, b) -> None:
    if isinstance(a, int) and isinstance(b, int):
        if a.bit_length() + b.bit_length() > MAX_INT_BITS:
            raise _int_too_big(a.bit_length() + b.bit_length(), "the product")
    elif isinstance(b, int) and isinstance(a, _SEQ) or isinstance(a, int) and isinstance(b, _SEQ):
        n, s = (b, a) if isinstance(b, int) else (a, b)
        if len(s) * n > MAX_ITEMS:
            raise MemoryError(f"repetition would make {len(s) * n} items; the limit is {MAX_ITEMS}")


def _mul(a, b):
    _check_mul(a, b)
    return a * b


def _imul(a, b):
    _check_mul(a, b)
    return operator.imul(a, b)


def _add(a, b):
    if isinstance(a, _SEQ) and isinstance(b, _SEQ) and len(a) + len(b) > MAX_ITEMS:
        raise MemoryError(f"concatenation would make {len(a) + len(b)} items; the limit is {MAX_ITEMS}")
    return a + b


def _iadd(a, b):
    if isinstance(a, _SEQ) and isinstance(b, _SEQ) and len(a) + len(b) > MAX_ITEMS:
        raise MemoryError(f"concatenation would make {len(a) + len(b)} items; the limit is {MAX_ITEMS}")
    return operator.iadd(a, b)


def _pow(a, b, mod=None):
    if mod is None and isinstance(b, int) and not isinstance(b, bool):
        if isinstance(a, int) and b > 0 and abs(a) > 1:
            bits = (abs(a).bit_length() - 1) * b
        elif isinstance(a, numbers.Rational) and not isinstance(a, int) and b:
            bits = (max(abs(a.numerator).bit_length(), a.denominator.bit_length()) - 1) * abs(b)
        else:
            bits = 0
        if bits > MAX_INT_BITS:
            raise _int_too_big(bits, "the power")
    return pow(a, b) if mod is None else pow(a, b, mod)


def _lshift(a, b):
    if isinstance(a, int) and isinstance(b, int) and a and b > 0 and a.bit_length() + b > MAX_INT_BITS:
        raise _int_too_big(a.bit_length() + b, "the shift")
    return a << b


_BINOPS = {
    ast.Add: _add, ast.Sub: operator.sub, ast.Mult: _mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: _pow, ast.LShift: _lshift,
    ast.RShift: operator.rshift, ast.BitOr: operator.or_, ast.BitXor: operator.xor, ast.BitAnd: operator.and_,
    ast.MatMult: operator.matmul,
}
_INPLACE = {
    ast.Add: _iadd, ast.Sub: operator.isub, ast.Mult: _imul, ast.Div: operator.itruediv,
    ast.FloorDiv: operator.ifloordiv, ast.Mod: operator.imod, ast.Pow: _pow, ast.LShift: _lshift,
    ast.RShift: operator.irshift, ast.BitOr: operator.ior, ast.BitXor: operator.ixor,
    ast.BitAnd: operator.iand, ast.MatMult: operator.imatmul,
}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg, ast.Not: operator.not_, ast.Invert: operator.invert}
_COMPARE = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt,
    ast.GtE: operator.ge, ast.Is: operator.is_, ast.IsNot: operator.is_not,
    ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
}
_FORMATTER = string.Formatter()  # its parse() only; the snippet never gets a Formatter


def _check_format(fmt) -> None:
    """Refuse attribute fields in a format string (`"{0.__class__}"` is getattr by another name)."""
    if not isinstance(fmt, str):
        return
    for _lit, field, spec, _conv in _FORMATTER.parse(fmt):
        if field:
            _first, rest = _string.formatter_field_name_split(field)
            if any(is_attr for is_attr, _key in rest):
                raise Refused(f"attribute access in format fields is not allowed: {{{field}}}")
        if spec:
            _check_format(spec)


def _safe_format(fmt, *args, **kwargs):
    if not isinstance(fmt, str):
        raise TypeError(f"descriptor 'format' for 'str' objects doesn't apply to a '{type(fmt).__name__}' object")
    _check_format(fmt)
    return str.format(fmt, *args, **kwargs)


def _safe_type(*args):
    if len(args) != 1:
        raise Refused("type() with three arguments (class creation) is not allowed")
    t = type(args[0])
    if issubclass(t, type):
        raise Refused("type() of a class (a metaclass: it builds classes) is not allowed")
    return t


# operator's functions that would bypass the guarded `*`, `**`, `<<`, `+`
_GUARDED_OPERATOR = {name: _Builtin(name, fn) for name, fn in (
    ("mul", _mul), ("imul", _imul), ("pow", _pow), ("ipow", _pow), ("lshift", _lshift), ("ilshift", _lshift),
    ("add", _add), ("iadd", _iadd), ("concat", _add), ("iconcat", _iadd))}


# ------------------------------------------------------------------ the interpreter
# Dispatch: node type -> Interpreter method. With the operators and the parts nodes are made of,
# these are ALL the node types a snippet may contain (check_supported refuses any other).
_STMT_TABLE = {
    ast.Expr: "_s_expr", ast.Assign: "_s_assign", ast.AugAssign: "_s_augassign", ast.AnnAssign: "_s_annassign",
    ast.If: "_s_if", ast.For: "_s_for", ast.While: "_s_while", ast.Break: "_s_break", ast.Continue: "_s_continue",
    ast.Pass: "_s_pass", ast.FunctionDef: "_s_def", ast.Return: "_s_return", ast.Import: "_s_import",
    ast.ImportFrom: "_s_importfrom", ast.Try: "_s_try", ast.Raise: "_s_raise", ast.Assert: "_s_assert",
    ast.Delete: "_s_delete",
}
_EXPR_TABLE = {
    ast.Constant: "_e_constant", ast.Name: "_e_name", ast.Attribute: "_e_attribute", ast.Subscript: "_e_subscript",
    ast.Slice: "_e_slice", ast.BinOp: "_e_binop", ast.UnaryOp: "_e_unaryop", ast.BoolOp: "_e_boolop",
    ast.Compare: "_e_compare", ast.IfExp: "_e_ifexp", ast.Call: "_e_call", ast.List: "_e_list",
    ast.Tuple: "_e_tuple", ast.Set: "_e_set", ast.Dict: "_e_dict", ast.ListComp: "_e_listcomp",
    ast.SetComp: "_e_setcomp", ast.DictComp: "_e_dictcomp", ast.GeneratorExp: "_e_genexp", ast.Lambda: "_e_lambda",
    ast.JoinedStr: "_e_joinedstr", ast.FormattedValue: "_e_formatted", ast.NamedExpr: "_e_namedexpr",
    ast.Starred: "_e_starred",
}
_SUPPORTED_NODES = frozenset({
    *_STMT_TABLE, *_EXPR_TABLE, *_BINOPS, *_UNARY, *_COMPARE, ast.And, ast.Or, ast.Module, ast.Load, ast.Store,
    ast.Del, ast.arguments, ast.arg, ast.keyword, ast.alias, ast.comprehension, ast.ExceptHandler,
})


class Interpreter:
    """Evaluates one parsed snippet. `modules`: the pre-imported allowlisted modules by name."""

    def __init__(self, modules: dict, write, max_steps: int = MAX_STEPS, max_depth: int = MAX_DEPTH):
        self.modules = {k: v for k, v in modules.items() if k in ALLOWED_MODULES}
        self.write = write
        self.max_steps, self.steps = max_steps, 0
        self.max_depth, self.depth = max_depth, 0
        self.handling: list[BaseException] = []  # exceptions being handled, for a bare `raise`
        b = {name: getattr(builtins, name) for name in SAFE_BUILTINS}
        b.update(print=_Builtin("print", self._print), type=_Builtin("type", _safe_type),
                 pow=_Builtin("pow", _pow), hasattr=_Builtin("hasattr", self._hasattr))
        self.builtins = b
        self.globals = {"__name__": "__main__"}
        self._stmt = {t: getattr(self, name) for t, name in _STMT_TABLE.items()}
        self._expr = {t: getattr(self, name) for t, name in _EXPR_TABLE.items()}

    def run(self, tree: ast.Module) -> None:
        r = self._block(tree.body, _Scope(self.globals, None))
        if r is not None:
            raise SyntaxError("'return' outside function" if type(r) is _Return else "'break' or 'continue' outside loop")

    # -------------------------------------------------------------- helpers
    def _tick(self) -> None:
        self.steps += 1
        if self.steps > self.max_steps:
            raise StepLimit(f"more than {self.max_steps} steps (an endless loop?)")

    def _evaluate(self, node, scope):
        try:
            f = self._expr[type(node)]
        except KeyError:
            raise Unsupported(f"{type(node).__name__} expressions") from None
        return f(node, scope)

    def _block(self, body, scope):
        for node in body:
            self.steps += 1
            if self.steps > self.max_steps:
                raise StepLimit(f"more than {self.max_steps} steps (an endless loop?)")
            try:
                f = self._stmt[type(node)]
            except KeyError:
                raise Unsupported(f"{type(node).__name__} statements") from None
            r = f(node, scope)
            if r is not None:
                return r
        return None

    def _lookup(self, name, scope):
        s = scope
        while s is not None:
            v = s.vars.get(name, _MISSING)
            if v is not _MISSING:
                return v
            s = s.parent
        v = self.builtins.get(name, _MISSING)
        if v is _MISSING:
            raise NameError(f"name {name!r} is not defined")
        return v

    def _bind_name(self, name, value, scope):
        if name.startswith("__"):
            raise Refused(f"name {name!r} is not allowed")
        scope.vars[name] = value

    def _getattr(self, obj, name):
        if name.startswith("_") or name in DENIED_ATTRS:
            raise Refused(f"attribute {name!r} is not allowed")
        if isinstance(obj, _OPAQUE) or isinstance(obj, _INTERNAL) or (isinstance(obj, type) and obj in _INTERNAL):
            raise Refused(f"attributes of {type(obj).__name__} objects are not allowed")
        if name == "format" and (obj is str or obj is UserString or isinstance(obj, (str, UserString))):
            if obj is str or obj is UserString:  # format_map: in DENIED_ATTRS
                return _Builtin("str.format", lambda fmt, *a, **k: _safe_format(
                    fmt.data if isinstance(fmt, UserString) else fmt, *a, **k))
            return _Builtin("str.format", lambda *a, **k: _safe_format(str(obj), *a, **k))
        if obj is self.modules.get("operator") and name in _GUARDED_OPERATOR:
            return _GUARDED_OPERATOR[name]
        value = getattr(obj, name)
        if isinstance(value, types.ModuleType) and value.__name__ not in self.modules:
            raise Refused(f"attribute {name!r} is a module outside the allowlist")
        if isinstance(value, (types.FrameType, types.TracebackType, types.CodeType, types.CellType)):
            raise Refused(f"attribute {name!r} is not allowed")
        return value

    def _setattr(self, obj, name, value):
        """`ctx.prec = 50` on a value; never on modules, classes or the interpreter's own objects."""
        if name.startswith("_") or name in DENIED_ATTRS:
            raise Refused(f"attribute {name!r} is not allowed")
        if isinstance(obj, (types.ModuleType, type, *_OPAQUE, *_INTERNAL)):
            raise Refused(f"setting attributes of {type(obj).__name__} objects is not allowed")
        setattr(obj, name, value)

    def _hasattr(self, obj, name):
        if not isinstance(name, str):
            raise TypeError("hasattr(): attribute name must be string")
        try:
            self._getattr(obj, name)
        except (AttributeError, Refused):
            return False
        return True

    def _print(self, *args, sep=" ", end="\n", file=None, flush=False):
        if file is not None:
            raise Unsupported("print(file=...): print writes to the tool's output only")
        if sep is None:
            sep = " "
        if end is None:
            end = "\n"
        if not isinstance(sep, str):
            raise TypeError(f"sep must be None or a string, not {type(sep).__name__}")
        if not isinstance(end, str):
            raise TypeError(f"end must be None or a string, not {type(end).__name__}")
        self.write(sep.join([str(a) for a in args]) + end)

    def _module(self, name):
        mod = self.modules.get(name)
        if mod is None:
            raise ImportError(f"import of {name!r} is not allowed; allowed: {', '.join(sorted(self.modules))}")
        return mod

    # -------------------------------------------------------------- calls
    def _call(self, func, args, kwargs):
        if type(func) is _Function:
            return self._call_function(func, args, kwargs)
        if isinstance(func, type) and (issubclass(func, type) or func in _INTERNAL):
            raise Refused(f"calling {func.__name__} is not allowed (it builds classes or interpreter objects)")
        return func(*args, **kwargs)

    def _call_function(self, fn: _Function, args, kwargs):
        self._tick()
        if self.depth >= self.max_depth:
            raise DepthLimit(f"more than {self.max_depth} nested calls (in {fn._name})")
        self.depth += 1
        try:
            scope = _Scope(self._bind_args(fn, args, kwargs), fn._scope)
            if fn._lambda:
                return self._evaluate(fn._node.body, scope)
            r = self._block(fn._node.body, scope)
            if type(r) is _Return:
                return r.value
            if r is not None:
                raise SyntaxError("'break' or 'continue' outside loop")
            return None
        finally:
            self.depth -= 1

    def _bind_args(self, fn: _Function, args, kwargs) -> dict:
        a, name = fn._node.args, fn._name
        params = [p.arg for p in a.posonlyargs] + [p.arg for p in a.args]
        posonly = {p.arg for p in a.posonlyargs}
        kwonly = [p.arg for p in a.kwonlyargs]
        local: dict = {}
        if len(args) > len(params) and a.vararg is None:
            raise TypeError(f"{name}() takes {len(params)} positional argument{'s' * (len(params) != 1)} "
                            f"but {len(args)} were given")
        for p, v in zip(params, args):
            local[p] = v
        if a.vararg is not None:
            local[a.vararg.arg] = tuple(args[len(params):])
        extra = {}
        for k, v in kwargs.items():
            if (k in params and k not in posonly) or k in kwonly:
                if k in local:
                    raise TypeError(f"{name}() got multiple values for argument {k!r}")
                local[k] = v
            elif a.kwarg is not None:
                extra[k] = v
            else:
                raise TypeError(f"{name}() got an unexpected keyword argument {k!r}")
        if a.kwarg is not None:
            local[a.kwarg.arg] = extra
        first_default = len(params) - len(fn._defaults)
        for i, p in enumerate(params):
            if p not in local:
                if i >= first_default:
                    local[p] = fn._defaults[i - first_default]
                else:
                    raise TypeError(f"{name}() missing required positional argument: {p!r}")
        for p in kwonly:
            if p not in local:
                if p not in fn._kwdefaults:
                    raise TypeError(f"{name}() missing required keyword-only argument: {p!r}")
                local[p] = fn._kwdefaults[p]
        return local

    def _make_function(self, node, name, scope, is_lambda):
        a = node.args
        defaults = tuple(self._evaluate(d, scope) for d in a.defaults)
        kwdefaults = {p.arg: self._evaluate(d, scope) for p, d in zip(a.kwonlyargs, a.kw_defaults) if d is not None}
        for p in [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg]:
            if p is not None and p.arg.startswith("__"):
                raise Refused(f"name {p.arg!r} is not allowed")
        return _Function(self, node, name, scope, defaults, kwdefaults, is_lambda)

    # -------------------------------------------------------------- assignment targets
    def _assign(self, target, value, scope):
        t = type(target)
        if t is ast.Name:
            self._bind_name(target.id, value, scope)
        elif t is ast.Tuple or t is ast.List:
            self._unpack(target.elts, value, scope)
        elif t is ast.Subscript:
            obj = self._evaluate(target.value, scope)
            obj[self._evaluate(target.slice, scope)] = value
        elif t is ast.Attribute:
            self._setattr(self._evaluate(target.value, scope), target.attr, value)
        else:
            raise Unsupported(f"assignment to {t.__name__}")

    def _unpack(self, elts, value, scope):
        n = len(elts)
        stars = [i for i, e in enumerate(elts) if type(e) is ast.Starred]
        if not stars:
            items = list(itertools.islice(iter(value), n + 1))
            if len(items) < n:
                raise ValueError(f"not enough values to unpack (expected {n}, got {len(items)})")
            if len(items) > n:
                raise ValueError(f"too many values to unpack (expected {n})")
            for e, v in zip(elts, items):
                self._assign(e, v, scope)
            return
        if len(stars) > 1:
            raise SyntaxError("multiple starred expressions in assignment")
        i, items = stars[0], list(value)
        after = n - i - 1
        if len(items) < n - 1:
            raise ValueError(f"not enough values to unpack (expected at least {n - 1}, got {len(items)})")
        for e, v in zip(elts[:i], items[:i]):
            self._assign(e, v, scope)
        self._assign(elts[i].value, items[i:len(items) - after], scope)
        for e, v in zip(elts[i + 1:], items[len(items) - after:]):
            self._assign(e, v, scope)

    # -------------------------------------------------------------- statements
    def _s_expr(self, node, scope):
        v = node.value
        self._expr[type(v)](v, scope)

    def _s_break(self, node, scope):
        return _BREAK

    def _s_continue(self, node, scope):
        return _CONTINUE

    def _s_pass(self, node, scope):
        return None

    def _s_assign(self, node, scope):
        value = self._evaluate(node.value, scope)
        for t in node.targets:
            self._assign(t, value, scope)

    def _s_annassign(self, node, scope):
        if node.value is not None:
            self._assign(node.target, self._evaluate(node.value, scope), scope)

    def _s_augassign(self, node, scope):
        op, t = _INPLACE[type(node.op)], node.target
        if type(t) is ast.Name:
            cur = self._lookup(t.id, scope)
            self._bind_name(t.id, op(cur, self._evaluate(node.value, scope)), scope)
        elif type(t) is ast.Subscript:
            obj, key = self._evaluate(t.value, scope), self._evaluate(t.slice, scope)
            obj[key] = op(obj[key], self._evaluate(node.value, scope))
        elif type(t) is ast.Attribute:
            obj = self._evaluate(t.value, scope)
            self._setattr(obj, t.attr, op(self._getattr(obj, t.attr), self._evaluate(node.value, scope)))
        else:
            raise Unsupported(f"augmented assignment to {type(t).__name__}")

    def _s_if(self, node, scope):
        t = node.test
        return self._block(node.body if self._expr[type(t)](t, scope) else node.orelse, scope)

    def _s_for(self, node, scope):
        items = self._evaluate(node.iter, scope)
        return self._loop((self._assign(node.target, item, scope) for item in items), node, scope)

    def _s_while(self, node, scope):
        # iter(f, False): call f before each iteration until the test is false
        return self._loop(iter(lambda: bool(self._evaluate(node.test, scope)), False), node, scope)

    def _loop(self, iterations, node, scope):
        """The body once per item of `iterations` (which binds the loop variable or tests the
        condition); break skips the `else:` block, return/raise leave the loop."""
        for _ in iterations:
            self._tick()
            r = self._block(node.body, scope)
            if r is not None:
                if r is _BREAK:
                    return None
                if r is not _CONTINUE:
                    return r
        return self._block(node.orelse, scope) if node.orelse else None

    def _s_def(self, node, scope):
        fn = self._make_function(node, node.name, scope, False)
        for d in reversed(node.decorator_list):
            fn = self._call(self._evaluate(d, scope), [fn], {})
        self._bind_name(node.name, fn, scope)

    def _s_return(self, node, scope):
        return _Return(None if node.value is None else self._evaluate(node.value, scope))

    def _s_import(self, node, scope):
        for a in node.names:
            mod = self._module(a.name)
            if a.asname:
                self._bind_name(a.asname, mod, scope)
            else:
                top = a.name.split(".")[0]
                self._bind_name(top, self._module(top), scope)

    def _s_importfrom(self, node, scope):
        if node.level:
            raise ImportError("relative imports are not allowed")
        mod = self._module(node.module or "")
        for a in node.names:
            if a.name == "*":
                raise Unsupported("from ... import * (name what you import)")
            full = f"{node.module}.{a.name}"
            if full in self.modules:
                value = self.modules[full]
            else:
                try:
                    value = self._getattr(mod, a.name)
                except AttributeError:
                    raise ImportError(f"cannot import name {a.name!r} from {node.module!r}") from None
            self._bind_name(a.asname or a.name, value, scope)

    def _s_try(self, node, scope):
        try:
            try:
                r = self._block(node.body, scope)
            except Exception as e:  # never SnippetStop (a BaseException): limits can't be caught
                for h in node.handlers:
                    if h.type is None or isinstance(e, self._evaluate(h.type, scope)):
                        if h.name:
                            self._bind_name(h.name, e, scope)
                        self.handling.append(e)
                        try:
                            r = self._block(h.body, scope)
                        finally:
                            self.handling.pop()
                            if h.name:
                                scope.vars.pop(h.name, None)
                        break
                else:
                    raise
            else:
                if r is None and node.orelse:
                    r = self._block(node.orelse, scope)
        finally:
            if node.finalbody:
                fr = self._block(node.finalbody, scope)
                if fr is not None:
                    return fr  # noqa: B012  (as in Python: a return in finally wins)
        return r

    def _s_raise(self, node, scope):
        if node.exc is None:
            if not self.handling:
                raise RuntimeError("No active exception to reraise")
            raise self.handling[-1]
        exc = self._evaluate(node.exc, scope)
        if isinstance(exc, type) and issubclass(exc, BaseException):
            exc = exc()
        if not isinstance(exc, Exception):
            raise TypeError("exceptions must derive from Exception")
        if node.cause is not None:
            raise exc from self._evaluate(node.cause, scope)
        raise exc

    def _s_assert(self, node, scope):
        if not self._evaluate(node.test, scope):
            raise AssertionError(self._evaluate(node.msg, scope)) if node.msg is not None else AssertionError()

    def _s_delete(self, node, scope):
        for t in node.targets:
            if type(t) is ast.Name:
                if t.id not in scope.vars:
                    raise NameError(f"name {t.id!r} is not defined")
                del scope.vars[t.id]
            elif type(t) is ast.Subscript:
                obj = self._evaluate(t.value, scope)
                del obj[self._evaluate(t.slice, scope)]
            elif type(t) in (ast.Tuple, ast.List):
                self._s_delete(ast.Delete(targets=t.elts), scope)
            else:
                raise Unsupported("del of attributes")

    # -------------------------------------------------------------- expressions
    def _e_constant(self, node, scope):
        return node.value

    def _e_name(self, node, scope):
        return self._lookup(node.id, scope)

    def _e_attribute(self, node, scope):
        return self._getattr(self._evaluate(node.value, scope), node.attr)

    def _e_subscript(self, node, scope):
        ex, v, i = self._expr, node.value, node.slice
        return ex[type(v)](v, scope)[ex[type(i)](i, scope)]

    def _e_slice(self, node, scope):
        ev = self._evaluate
        return slice(None if node.lower is None else ev(node.lower, scope),
                     None if node.upper is None else ev(node.upper, scope),
                     None if node.step is None else ev(node.step, scope))

    def _e_binop(self, node, scope):  # the hot paths dispatch inline: a call less per node
        ex, l, r = self._expr, node.left, node.right
        return _BINOPS[type(node.op)](ex[type(l)](l, scope), ex[type(r)](r, scope))

    def _e_unaryop(self, node, scope):
        return _UNARY[type(node.op)](self._evaluate(node.operand, scope))

    def _e_boolop(self, node, scope):
        is_and = type(node.op) is ast.And
        v = None
        for e in node.values:
            v = self._evaluate(e, scope)
            if (not v) if is_and else v:
                return v
        return v

    def _e_compare(self, node, scope):
        ex, left = self._expr, node.left
        left = ex[type(left)](left, scope)
        if len(node.ops) == 1:
            right = node.comparators[0]
            return _COMPARE[type(node.ops[0])](left, ex[type(right)](right, scope))
        for op, comp in zip(node.ops, node.comparators):
            right = ex[type(comp)](comp, scope)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True

    def _e_ifexp(self, node, scope):
        return self._evaluate(node.body if self._evaluate(node.test, scope) else node.orelse, scope)

    def _e_call(self, node, scope):
        func = self._evaluate(node.func, scope)
        ex, args = self._expr, []
        for a in node.args:
            if type(a) is ast.Starred:
                args.extend(self._evaluate(a.value, scope))
            else:
                args.append(ex[type(a)](a, scope))
        kwargs = {}
        for k in node.keywords:
            if k.arg is None:
                m = self._evaluate(k.value, scope)
                for key in m.keys():
                    if key in kwargs:
                        raise TypeError(f"got multiple values for keyword argument {key!r}")
                    kwargs[key] = m[key]
            else:
                kwargs[k.arg] = self._evaluate(k.value, scope)
        return self._call(func, args, kwargs)

    def _elts(self, elts, scope):
        out = []
        for e in elts:
            if type(e) is ast.Starred:
                out.extend(self._evaluate(e.value, scope))
            else:
                out.append(self._evaluate(e, scope))
        return out

    def _e_list(self, node, scope):
        return self._elts(node.elts, scope)

    def _e_tuple(self, node, scope):
        return tuple(self._elts(node.elts, scope))

    def _e_set(self, node, scope):
        return set(self._elts(node.elts, scope))

    def _e_dict(self, node, scope):
        out = {}
        for k, v in zip(node.keys, node.values):
            if k is None:
                out.update(self._evaluate(v, scope))
            else:
                out[self._evaluate(k, scope)] = self._evaluate(v, scope)
        return out

    def _e_starred(self, node, scope):
        raise SyntaxError("can't use starred expression here")

    def _e_lambda(self, node, scope):
        return self._make_function(node, "<lambda>", scope, True)

    def _e_namedexpr(self, node, scope):
        value = self._evaluate(node.value, scope)
        s = scope
        while s.comp and s.parent is not None:  # as in Python: binds outside the comprehension
            s = s.parent
        self._bind_name(node.target.id, value, s)
        return value

    def _e_joinedstr(self, node, scope):
        return "".join([v.value if type(v) is ast.Constant else self._evaluate(v, scope) for v in node.values])

    def _e_formatted(self, node, scope):
        v = self._evaluate(node.value, scope)
        if node.conversion == 115:
            v = str(v)
        elif node.conversion == 114:
            v = repr(v)
        elif node.conversion == 97:
            v = ascii(v)
        return format(v, "" if node.format_spec is None else self._evaluate(node.format_spec, scope))

    # Comprehensions: one scope for the loop variables, as in Python 3; all four run on _gen
    # (list/set/dict consume it at once, a generator expression lazily).
    def _comprehension(self, node, scope, produce):
        inner = _Scope({}, scope, comp=True)
        first = iter(self._evaluate(node.generators[0].iter, scope))  # evaluated now, as in Python
        return self._gen(node.generators, 0, inner, first, produce)

    def _e_listcomp(self, node, scope):
        return list(self._comprehension(node, scope, lambda s: self._evaluate(node.elt, s)))

    def _e_setcomp(self, node, scope):
        return set(self._comprehension(node, scope, lambda s: self._evaluate(node.elt, s)))

    def _e_dictcomp(self, node, scope):
        return dict(self._comprehension(node, scope,
                                        lambda s: (self._evaluate(node.key, s), self._evaluate(node.value, s))))

    def _e_genexp(self, node, scope):
        return self._comprehension(node, scope, lambda s: self._evaluate(node.elt, s))

    def _gen(self, gens, i, scope, iterable, produce):
        g = gens[i]
        last = i == len(gens) - 1
        for item in iterable:
            self._tick()
            self._assign(g.target, item, scope)
            if all(self._evaluate(c, scope) for c in g.ifs):
                if last:
                    yield produce(scope)
                else:
                    yield from self._gen(gens, i + 1, scope, self._evaluate(gens[i + 1].iter, scope), produce)
