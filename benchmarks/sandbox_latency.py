"""Per-call latency of the python tool: the AST interpreter vs an exec reference, measured in the same run.

Input: GENERATED python_data snippets (letters, reverse, digitsum, multiply), held-in side.
Two figures, each a ratio interpreter / reference on the same snippets in the same run:
  1. end to end, `run_python` (static check + jailed child + interpreter) vs the same jail with a
     BENCHMARK-ONLY child program that execs the snippet (the pre-interpreter design). The reference
     runs only these trusted GENERATED snippets; the product has no exec path.
  2. in process, the interpreter alone (`run_snippet`) vs CPython `exec`, per snippet: what the
     tree walk itself costs, without process start-up. Plus one loop-heavy snippet.
Usage: python benchmarks/sandbox_latency.py [N_SNIPPETS]   (default 24; state `uptime` with figures)
"""
import contextlib
import io
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from lm.datasets.python_tool import python_problems  # noqa: E402
from lm.tools.sandbox import JAIL_SOURCE, Limits, run_in_jail, run_python  # noqa: E402
from lm.tools.sandbox_interp import load_modules, run_snippet  # noqa: E402

# BENCHMARK-ONLY reference child: the product's jail, the allowlisted modules imported as before, raw exec.
EXEC_REFERENCE = JAIL_SOURCE + r'''
def _main():
    import importlib
    code = sys.stdin.read()
    cpu, mem, fsize, out_chars, _steps = _jail_args()
    for name in %r:
        importlib.import_module(name)
    _jail(cpu, mem, fsize)
    out = _Capture(out_chars)
    sys.stdout = sys.stderr = out
    error = None
    try:
        exec(code, {"__name__": "__main__"})  # benchmark-only reference, trusted GENERATED snippets
    except BaseException as e:
        error = "error: %%s: %%s" %% (type(e).__name__, e)
    _finish(out, error)


_main()
''' % sorted(load_modules())


def _median_ms(fn, reps):
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts) * 1e3


def main(n: int) -> None:
    probs = python_problems(n, seed=0)
    limits = Limits()
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {n} GENERATED snippets")
    # 1. end to end, interleaved so both sides see the same load
    interp_s, exec_s = [], []
    for p in probs:
        t = time.perf_counter()
        a = run_python(p["code"], limits)
        interp_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        b = run_in_jail(EXEC_REFERENCE, p["code"], limits)
        exec_s.append(time.perf_counter() - t)
        assert a == b == p["output"], (p["code"], a, b)
    mi, me = statistics.median(interp_s) * 1e3, statistics.median(exec_s) * 1e3
    print(f"end to end per call (median): interpreter {mi:.1f} ms, exec reference {me:.1f} ms, "
          f"ratio interpreter/exec {mi / me:.2f}")
    # 2. in process: the tree walk alone
    mods = load_modules()
    ratios = []
    for p in probs:
        ti = _median_ms(lambda: run_snippet(p["code"], lambda s: None, mods), 20)
        te = _median_ms(lambda: _exec_quiet(p["code"]), 20)
        ratios.append(ti / te)
    print(f"in process per snippet (median of {len(probs)}): ratio interpreter/exec {statistics.median(ratios):.2f}")
    loop = "t = 0\nfor i in range(20000):\n    if i % 3 == 0:\n        t += i * i\nprint(t)"
    pairs = [(_median_ms(lambda: run_snippet(loop, lambda s: None, mods), 1), _median_ms(lambda: _exec_quiet(loop), 1))
             for _ in range(7)]  # interleaved, so both sides see the same load
    ti, te = statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)
    print(f"in process, a 20000-iteration loop (median of 7): interpreter {ti:.1f} ms, exec {te:.1f} ms, "
          f"ratio {statistics.median(a / b for a, b in pairs):.1f}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def _exec_quiet(code: str) -> None:
    with contextlib.redirect_stdout(io.StringIO()):
        exec(code, {"__name__": "__main__"})  # benchmark-only reference, trusted GENERATED snippets


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 24)
