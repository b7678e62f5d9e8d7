"""The calculator tool: arithmetic right, everything else refused quickly, nothing executed."""
import time

import pytest

from lm.tools import ToolRegistry, calculate, calculator


@pytest.mark.parametrize("expr,want", [
    ("2+3", "5"), ("48/2", "24"), ("7//2", "3"), ("10 % 3", "1"), ("2**10", "1024"),
    ("-(3+4)*2", "-14"), ("2**-1", "0.5"), ("12 × 3", "36"), ("9 ÷ 4", "2.25"),
    ("1,000*3", "3000"), ("0.1+0.2", "0.3"), ("2^8", "256"), ("+5", "5"),
])
def test_arithmetic(expr, want):
    assert calculator(expr) == want


@pytest.mark.parametrize("expr", [
    "__import__('os').system('touch /tmp/engine_pwned')",
    "open('/etc/passwd').read()",
    "(9**9)**(9**9)", "9**9**9", "10**31", "2**5000", "1e400",
    "().__class__.__bases__[0].__subclasses__()", "lambda: 1", "[1]*10**9", "'a'*10",
    "x", "True+1", "1/0", "5 % 0", "0**-1", "(-8)**0.5", "", "1+" * 200 + "1",
    "(" * 300 + "1" + ")" * 300,
])
def test_refused_quickly_and_nothing_runs(expr, tmp_path):
    t = time.perf_counter()
    out = calculator(expr)
    assert time.perf_counter() - t < 0.5
    assert out.startswith("error: "), out
    import os
    assert not os.path.exists("/tmp/engine_pwned")


def test_magnitude_bound_applies_to_intermediates():
    with pytest.raises(ValueError):
        calculate("99999999999999999*99999999999999999")


def test_registry_dispatch_and_errors():
    seen = []

    def echo(arg: str) -> str:
        seen.append(arg)
        return arg.upper()

    def broken(arg: str) -> str:
        raise RuntimeError("boom")

    reg = ToolRegistry(tools={"calculator": calculator, "echo": echo, "broken": broken})
    assert reg.run("echo: hi") == "HI"
    assert reg.run("echo(there)") == "THERE"
    assert reg.run("3*4") == "12"  # bare expression → default tool
    assert reg.run("broken: x").startswith("error: tool broken failed: RuntimeError")
    assert seen == ["hi", "there"]
    assert ToolRegistry(tools={}, default=None).run("1+1").startswith("error: no tool")
