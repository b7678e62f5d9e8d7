"""The python tool's interpreter (lm/tools/sandbox_interp.py), in process: same output as CPython on the
GENERATED python_data snippets and on calculator-style code, clear refusals, and its guards.

The expected outputs come from real CPython `exec` of the same snippets HERE, in the test: these are
trusted, test-written or GENERATED snippets; the product never execs (see lm/tools/sandbox.py).
"""
import contextlib
import io

import pytest

from lm.datasets.python_tool import python_problems
from lm.tools.sandbox_interp import describe_error, load_modules, run_snippet

MODULES = load_modules()


def interp(code: str, **kw) -> str:
    out: list[str] = []
    try:
        run_snippet(code, out.append, MODULES, **kw)
    except BaseException as e:  # what the child's runner does with it
        out.append("\n" + describe_error(e))
    return "".join(out)


def cpython(code: str) -> str:
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            exec(code, {"__name__": "__main__"})  # trusted test code: the reference
    except Exception as e:
        buf.write("\n" + describe_error(e))
    return buf.getvalue()


def test_every_generated_snippet_prints_what_cpython_prints():
    probs = [p for seed in range(3) for held in (False, True) for p in python_problems(150, seed=seed, heldout=held)]
    assert len({p["code"] for p in probs}) > 300
    for p in probs:
        got = interp(p["code"])
        assert got == cpython(p["code"]) == p["output"] + "\n", p


CALCULATOR_CODE = [
    "x, *y = [1, 2, 3]\nprint(x, y)",
    "a, (b, c) = 1, (2, 3)\nprint(a + b * c)",
    "d = {}\nd['a'] = 1\nd['a'] += 2\nd.setdefault('b', []).append(4)\nprint(d)",
    "n = 10\nn //= 3\nn **= 2\nn <<= 1\nn ^= 5\nprint(n, 7 & 3, 7 | 8, ~5, -7 % 3, 7 / 2)",
    "def fact(n):\n    return 1 if n < 2 else n * fact(n - 1)\nprint(fact(30))",
    "import functools\n@functools.lru_cache(maxsize=None)\ndef fib(n):\n    return n if n < 2 else fib(n-1) + fib(n-2)\n"
    "print(fib(90))",
    "def h(a, b=2, *args, c=3, **kw):\n    return (a, b, args, c, kw)\nprint(h(1), h(1, 5, 6, c=7, z=8))",
    "def outer():\n    k = 3\n    def inner(x):\n        return x * k\n    return inner\nprint(outer()(5))",
    "print(f\"{3.14159:.2f} {'x'!r} {2 + 3=} {255:#x} {12345678:,} {'ab':>5}|\")",
    "print([x * y for x in range(4) for y in range(3) if x != y])",
    "print({k: v for k, v in zip('abc', range(3))}, {c for c in 'hello'} == set('helo'))",
    "print(sorted({3, 1, 2}, reverse=True), sorted(['bb', 'a', 'ccc'], key=len))",
    "w = 'Mississippi'\nprint(w.lower().count('s'), w[::-1], w[2:5], w[-3:], w.upper().replace('SS', '-'))",
    "print(' '.join(reversed('a b c'.split())), 'x,y'.split(','), '  pad '.strip(), 'abc'.find('c'))",
    "import math, json, collections\nprint(json.dumps(collections.Counter('aab')), math.gcd(12, 18), "
    "math.isqrt(10 ** 20), round(math.pi, 5))",
    "from fractions import Fraction\nprint(Fraction(1, 3) + Fraction(1, 6), Fraction(3, 4) ** 2)",
    "import re\nprint(re.findall(r'\\d+', 'a1b22c333'), re.sub('[aeiou]', '', 'education'))",
    "import itertools\nprint(list(itertools.permutations('abc', 2))[:4], next(x for x in itertools.count() if x > 3))",
    "from collections import defaultdict, deque, Counter\nd = defaultdict(list)\nd['a'].append(1)\n"
    "print(dict(d), deque([1, 2], maxlen=1), Counter('banana').most_common(2))",
    "import decimal\nctx = decimal.getcontext()\nctx.prec = 40\nprint(decimal.Decimal(1) / 7)",
    "import statistics\nprint(statistics.mean([1, 2, 3, 4]), statistics.median([3, 1, 2]))",
    "import datetime\nd = datetime.date(2024, 3, 1) - datetime.date(2024, 2, 1)\nprint(d.days, "
    "datetime.datetime.strptime('2020-01-02', '%Y-%m-%d').strftime('%A'))",
    "total = 0\nfor i in range(20):\n    if i % 2:\n        continue\n    if i > 12:\n        break\n    total += i\n"
    "else:\n    total = -1\nprint(total)",
    "i = 0\nwhile i < 5:\n    i += 1\nelse:\n    print('done', i)",
    "try:\n    1 / 0\nexcept ZeroDivisionError as e:\n    print('caught', e)\nelse:\n    print('no')\n"
    "finally:\n    print('fin')",
    "try:\n    int('x')\nexcept (TypeError, ValueError):\n    print('bad int')",
    "def f():\n    try:\n        return 1\n    finally:\n        print('cleanup')\nprint(f())",
    "print(max([3, 1, 2], key=lambda v: -v), divmod(7, 2), hex(255), bin(5), oct(8), chr(65), ord('a'), "
    "round(2.675, 2), abs(-3), pow(3, 4, 5), sum([1, 2], 10))",
    "print(isinstance(3, (int, float)), list(map(str.upper, 'ab')), list(filter(None, [0, 1, 2])), any([]), "
    "all([]), list(enumerate('ab', 1)), list(zip('ab', 'cd')), bool(''), len({1: 2}))",
    "print(1, 2, sep='-', end='!\\n')\nprint()",
    "if __name__ == '__main__':\n    print('main')",
    "print([(y := x * 2) for x in range(3)], y)",
    "nums = [5, 3, 8]\nnums.sort()\nnums[1:2] = [9, 9]\ndel nums[0]\nprint(nums, nums.index(9), 8 in nums)",
    "print(2 ** 100, 2 ** -1, (-8) ** (1 / 3) == (-8) ** (1 / 3), 10 ** 50 // 7 ** 20)",
    "s = set([1, 2])\ns |= {3}\ns.discard(1)\nprint(s, frozenset([1]) <= {1, 2}, 1 < 2 < 3, 3 > 2 > 5)",
    "print(int('ff', 16), float('1e3'), str(12)[::-1], tuple('ab'), list(range(10, 0, -3)), int(True))",
    "print('%05.1f|%s|%d' % (3.14159, 'a', 7), '{:>4}|{}'.format('x', [1]), 'a{0}b{0}'.format(1))",
    "x = 5\nassert x == 5\nprint('ok' if x > 3 else 'no', not x, x and 0, x or 0)",
    "raise ValueError('bad value')",
    "print(undefined_name)",
    "print([1, 2][5])",
    "a, b = [1, 2, 3]",
    "print({}['k'])",
    "import heapq, bisect\nh = [5, 1, 4]\nheapq.heapify(h)\nprint(heapq.heappop(h), bisect.bisect([1, 3, 5], 4))",
    "import string, textwrap\nprint(string.ascii_lowercase[:5], textwrap.wrap('a b c d e f', 5))",
    "print(2 ** 100000 > 0, (2 ** 100000).bit_length(), 'ab' * 3, [0] * 3)",
]


@pytest.mark.parametrize("code", CALCULATOR_CODE, ids=range(len(CALCULATOR_CODE)))
def test_calculator_style_code_matches_cpython(code):
    assert interp(code) == cpython(code)


@pytest.mark.parametrize("code,what", [
    ("class A:\n    pass", "class definitions"),
    ("with x:\n    pass", "with statements"),
    ("def f():\n    global x\n    x = 1", "global statements"),
    ("def f():\n    x = 1\n    def g():\n        nonlocal x", "nonlocal statements"),
    ("def g():\n    yield 1", "yield (generator functions)"),
    ("async def f():\n    pass", "async functions"),
    ("match 1:\n    case 1:\n        pass", "match statements"),
])
def test_unsupported_constructs_are_named_before_anything_runs(code, what):
    out = interp("print('ran')\n" + code)
    assert out.startswith(f"\nerror: unsupported: {what} (line "), out  # nothing printed: refused up front


def test_step_budget_ends_endless_loops_and_cannot_be_caught():
    assert interp("while True:\n    pass", max_steps=5000) == \
        "\nerror: step budget: more than 5000 steps (an endless loop?)"
    out = interp("import itertools\nprint(sum(1 for _ in itertools.count()))", max_steps=5000)
    assert out.endswith("error: step budget: more than 5000 steps (an endless loop?)")
    code = "try:\n    while True:\n        pass\nexcept BaseException:\n    print('caught')"
    assert "caught" not in interp(code, max_steps=5000)
    assert interp("for i in range(1000):\n    pass\nprint('ok')", max_steps=5000) == "ok\n"


def test_recursion_depth_cap():
    code = "def f(n):\n    return 0 if n == 0 else 1 + f(n - 1)\nprint(f({}))"
    assert interp(code.format(150)) == "150\n"  # what CPython prints too
    assert interp(code.format(10 ** 6), max_depth=50) == "\nerror: recursion limit: more than 50 nested calls (in f)"
    # through C (a decorator's wrapper) as well
    out = interp("import functools\n@functools.lru_cache(None)\ndef g(n):\n    return g(n + 1)\ng(0)", max_depth=50)
    assert out.endswith("error: recursion limit: more than 50 nested calls (in g)"), out


@pytest.mark.parametrize("code,start", [
    ("x = 2 ** 10 ** 7", "error: OverflowError: the power would have about 10000000 bits"),
    ("x = 10 ** 5000\nwhile True:\n    x = x * x", "error: OverflowError: the product would have about"),
    ("x = 1 << 10 ** 9", "error: OverflowError: the shift would have about"),
    ("x = pow(7, 10 ** 9)", "error: OverflowError: the power would have about"),
    ("import operator\nx = operator.pow(10, 10 ** 9)", "error: OverflowError: the power would have about"),
    ("from fractions import Fraction\nx = Fraction(3, 2) ** 10 ** 8", "error: OverflowError: the power would"),
    ("x = 'a' * 10 ** 10", "error: MemoryError: repetition would make 10000000000 items"),
    ("x = [0] * 10 ** 9", "error: MemoryError: repetition would make 1000000000 items"),
    ("x = 'ab'\nwhile True:\n    x += x", "error: MemoryError: concatenation would make"),
])
def test_big_results_capped_before_they_are_built(code, start):
    assert interp(code).lstrip("\n").startswith(start), interp(code)


@pytest.mark.parametrize("code,expected", [
    ("print((1).__class__)", "error: refused: attribute '__class__' is not allowed"),
    ("print(''.__class__.__mro__)", "error: refused: attribute '__class__' is not allowed"),
    ("print(getattr(1, 'real'))", "error: NameError: name 'getattr' is not defined"),
    ("print(vars())", "error: NameError: name 'vars' is not defined"),
    ("print('{0.__class__}'.format(1))", "error: refused: attribute access in format fields is not allowed: "
                                          "{0.__class__}"),
    ("print('{:{0.real}}'.format(1))", "error: refused: attribute access in format fields is not allowed: "
                                        "{0.real}"),
    ("from collections import UserString\nprint(UserString('{0.real}').format(1))",
     "error: refused: attribute access in format fields is not allowed: {0.real}"),
    ("print(str.format_map('{x}', {}))", "error: refused: attribute 'format_map' is not allowed"),
    ("print(type(type(1)))", "error: refused: type() of a class (a metaclass: it builds classes) is not allowed"),
    ("print(type('X', (), {}))", "error: refused: type() with three arguments (class creation) is not allowed"),
    ("f = lambda: 0\nprint(type(f)(1, 2, 3, 4, 5, 6, 7))",
     "error: refused: calling function is not allowed (it builds classes or interpreter objects)"),
    ("def f():\n    pass\nprint(f.interp)", "error: refused: attributes of function objects are not allowed"),
    ("print(print.fn)", "error: refused: attributes of builtin_function_or_method objects are not allowed"),
    ("g = (i for i in [1])\nprint(g.gi_frame)", "error: refused: attribute 'gi_frame' is not allowed"),
    ("g = (i for i in [1])\nprint(g.send)", "error: refused: attributes of generator objects are not allowed"),
    ("import json\nprint(json.dumps.__globals__)", "error: refused: attribute '__globals__' is not allowed"),
    ("import datetime\nprint(datetime.sys)", "error: refused: attribute 'sys' is not allowed"),
    ("import re\nprint(re.enum)", "error: refused: attribute 'enum' is a module outside the allowlist"),
    ("import json\nprint(json.decoder)", "error: refused: attribute 'decoder' is a module outside the allowlist"),
    ("from json import decoder", "error: refused: attribute 'decoder' is a module outside the allowlist"),
    ("import random\nprint(random._os)", "error: refused: attribute '_os' is not allowed"),
    ("from random import _os", "error: refused: attribute '_os' is not allowed"),
    ("import os", "error: ImportError: import of 'os' is not allowed; allowed: bisect, calendar, cmath, "),
    ("from os import path", "error: ImportError: import of 'os' is not allowed"),
    ("from . import x", "error: ImportError: relative imports are not allowed"),
    ("from math import *", "error: unsupported: from ... import * (name what you import)"),
    ("import math\nmath.pi = 3", "error: refused: setting attributes of module objects is not allowed"),
    ("__builtins__ = 1", "error: refused: name '__builtins__' is not allowed"),
    ("print(1, file=None)\nprint(2, file=1)", "1\n\nerror: unsupported: print(file=...)"),
])
def test_refusals_at_run_time(code, expected):
    assert interp(code).lstrip("\n").startswith(expected), interp(code)


def test_errors_come_back_as_type_and_message():
    assert interp("print('partial')\n1 / 0") == "partial\n\nerror: ZeroDivisionError: division by zero"
    assert interp("def (:") .startswith("\nerror: SyntaxError: ")
    assert interp("return 1") == "\nerror: SyntaxError: 'return' outside function"
    assert describe_error(MemoryError()) == "error: MemoryError: the snippet exceeded the memory limit"
