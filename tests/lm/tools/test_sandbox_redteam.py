"""Red team for the `python` tool (lm/tools/sandbox.py): every attack returns an `error: ...` string quickly
and leaves the host untouched.

Each attack runs through the tool as the model would reach it (`default_tools(python=True)`). The
ones the static check stops are run again with the static check OFF, so the interpreter's own
run-time refusals (lm/tools/sandbox_interp.py) are shown to stop them alone, and once more as raw Python
through a TEST-ONLY child program (`_RAW_EXEC`, below: the product's jail, JAIL_SOURCE, with `exec`
in place of the interpreter), so the OS layers (chroot, nobody, rlimits, namespaces, cleared env)
are shown to stop them alone too. The product has no exec path; this one lives only here. Real
processes, a real listener on 127.0.0.1, real files.
"""
import os
import socket
import time
from pathlib import Path

import pytest

from lm.tools.sandbox import JAIL_SOURCE, Limits, check_code, run_in_jail, run_python, sandbox_info
from lm.tools import default_tools

REPO = Path(__file__).resolve().parents[3]
FAST = Limits(cpu_seconds=1, wall_seconds=8.0)
tool = default_tools(python=True)


# TEST-ONLY: the product's jail with raw `exec` of the (trusted, test-written) attack instead of the
# interpreter, to test the OS layers alone. `socket` is imported before the jail so that the network
# layer itself (namespace / fd limit), not a failed import, is what the socket case meets.
_RAW_EXEC = JAIL_SOURCE + r'''
import socket


def _main():
    code = sys.stdin.read()
    cpu, mem, fsize, out_chars, _steps = _jail_args()
    _jail(cpu, mem, fsize)
    out = _Capture(out_chars)
    sys.stdout = sys.stderr = out
    error = None
    try:
        exec(code, {"__name__": "__main__", "socket": socket})  # test-only, see above
    except BaseException as e:
        msg = str(e)[:300]
        error = "error: %s: %s" % (type(e).__name__, msg) if msg else "error: %s" % type(e).__name__
    _finish(out, error)


_main()
'''


def _os_only(code: str, limits: Limits = FAST) -> str:
    return run_in_jail(_RAW_EXEC, code, limits)


def _interp_only(code: str, limits: Limits = FAST) -> str:  # static check off: the interpreter alone
    return run_python(code, limits, static_checks=False)


def _quick(fn, *args, limit_s: float = 12.0) -> str:  # wall limit + spawn time on a loaded 2-core box
    t = time.monotonic()
    out = fn(*args)
    assert time.monotonic() - t < limit_s, f"took {time.monotonic() - t:.1f}s"
    assert isinstance(out, str)
    return out


def test_normal_snippets_work():
    assert tool.run("python: print('strawberry'.count('r'))") == "3"
    assert tool.run("python: print('hello'[::-1])") == "olleh"
    assert tool.run("python: print(123456789 * 987654321)") == str(123456789 * 987654321)
    code = "import math, json, collections\nprint(json.dumps(collections.Counter('aab')), math.gcd(12, 18))"
    assert tool.run("python: " + code) == '{"a": 2, "b": 1} 6'
    assert tool.run("python: x = 1") .startswith("(no output")
    assert tool.run("python: 1/0") == "error: ZeroDivisionError: division by zero"
    # constructs the interpreter does not run are named, before any process starts
    assert _quick(tool.run, "python: class A:\n    pass", limit_s=1.0).startswith("error: unsupported: class definitions")


# (attack, code): each refused by the static check before anything runs
STATIC = {
    "fork_bomb": "import os\nwhile True:\n    os.fork()",
    "import_subprocess": "import subprocess\nsubprocess.run(['touch', '/tmp/c2c_pwned'])",
    "import_ctypes": "import ctypes\nctypes.CDLL(None).system(b'touch /tmp/c2c_pwned')",
    "import_socket": "import socket\nsocket.create_connection(('127.0.0.1', 1))",
    "from_os": "from os import system\nsystem('touch /tmp/c2c_pwned')",
    "dunder_import": "__import__('os').system('touch /tmp/c2c_pwned')",
    "subclasses": "print([c for c in ().__class__.__base__.__subclasses__() if c.__name__ == '_wrap_close'])",
    "globals_via_function": "def f(): pass\nprint(f.__globals__['__builtins__'])",
    "open_passwd": "print(open('/etc/passwd').read())",
    "write_repo": f"open({str(REPO / 'PWNED_BY_SANDBOX')!r}, 'w').write('x')",
    "eval": "eval('1+1')",
    "exec": "exec('import os')",
    "compile": "compile('1', 'x', 'eval')",
    "getattr_dunder": "print(getattr((), '__cla' + 'ss__'))",
    "dunder_string": "print(''.join(['_', '_']) + '__class__')",
    "sys_modules": "import sys\nprint(sys.modules['os'].environ)",
    "module_sys_attribute": "import datetime\nprint(datetime.sys.modules['os'].environ)",
    "frame_walk": "def g():\n    yield 1\nx = g()\nprint(x.gi_frame.f_back.f_globals)",
    "format_field": "import string\nprint(string.Formatter().get_field('0.x', [1], {}))",
    "relative_import": "from . import x",
    "very_long_code": "x = 1\n" * 5000,
    "syntax_error": "def (:",
}


@pytest.mark.parametrize("name", sorted(STATIC))
def test_static_check_refuses(name):
    out = _quick(tool.run, "python: " + STATIC[name], limit_s=1.0)
    assert out.startswith("error: refused: "), out
    assert not Path("/tmp/c2c_pwned").exists()


def test_fork_bomb_stopped_by_os_layer():
    out = _quick(_os_only, "import os\nn = 0\nwhile n < 200:\n    os.fork()\n    n += 1")
    assert "error:" in out and ("BlockingIOError" in out or "Resource temporarily unavailable" in out), out


def test_memory_bomb():
    out = _quick(tool.run, "python: x = 'a' * (10 ** 10)")  # the interpreter's repetition cap
    assert out.startswith("error: MemoryError: repetition would make"), out
    out = _quick(_os_only, "x = 'a' * (10 ** 10)")  # the address-space rlimit alone
    assert out.startswith("error: MemoryError"), out
    # list growth the interpreter allows: the address-space rlimit (or the CPU limit) ends it
    out = _quick(tool.run, "python: x = []\nwhile True:\n    x.append([0] * 100000)")
    assert out.startswith("error: MemoryError") or "CPU time limit" in out or "timed out" in out, out


# on a box so loaded that 1 CPU second takes over 8 s of wall clock, the wall clock ends it first
_CPU_OR_WALL = ("error: CPU time limit of 1 s exceeded", "error: timed out after 8 s wall clock")


def test_infinite_loop_hits_step_budget_and_cpu_limit():
    out = _quick(run_python, "while True:\n    pass", Limits(cpu_seconds=1, wall_seconds=8.0, steps=20_000))
    assert out == "error: step budget: more than 20000 steps (an endless loop?)", out
    out = _quick(run_python, "while True:\n    pass", Limits(cpu_seconds=1, wall_seconds=8.0, steps=10 ** 12))
    assert out in _CPU_OR_WALL, out  # no step budget to speak of: the CPU rlimit ends it
    out = _quick(_os_only, "while True:\n    pass")
    assert out in _CPU_OR_WALL, out


def test_wall_clock_timeout_when_not_using_cpu():
    # A blocked child (here: waiting on a pipe it holds itself) burns no CPU; the wall clock ends it.
    out = _quick(_os_only, "import os\nr, w = os.pipe()\nos.read(r, 1)", Limits(cpu_seconds=5, wall_seconds=1.5))
    assert "error:" in out, out  # pipe() past the fd limit, or the timeout: either way it ends


def test_huge_print_is_cut():
    out = _quick(tool.run, "python: print('a' * 10 ** 7)")
    assert len(out) < 2100 and out.endswith("[output cut at 2000 characters]"), out[-80:]
    out = _quick(run_python, "while True:\n    print('spam' * 1000)", FAST)
    assert len(out) < 2200 and ("CPU time limit" in out or "timed out" in out or "step budget" in out), out[-200:]
    out = _quick(_os_only, "while True:\n    print('spam' * 1000)")
    assert len(out) < 2200 and ("CPU time limit" in out or "timed out" in out), out[-200:]


def test_files_outside_the_sandbox_unreachable_by_os_layer():
    target = REPO / "PWNED_BY_SANDBOX"
    out = _quick(_os_only, "print(open('/etc/passwd').read())")
    assert out.startswith("error:") and "root:" not in out, out
    out = _quick(_os_only, f"open({str(target)!r}, 'w').write('x')")
    assert out.startswith("error:"), out
    assert not target.exists()
    out = _quick(_os_only, f"import os\nprint(os.listdir({str(REPO)!r}))")
    assert out.startswith("error:") and "pyproject" not in out, out


def test_socket_to_localhost_never_connects():
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(4)
        srv.settimeout(0.5)
        port = srv.getsockname()[1]
        # a raw socket: past the static check and the interpreter, it meets the fd limit / empty namespace
        code = ("import socket\ns = socket.socket()\ns.settimeout(2)\n"
                f"s.connect(('127.0.0.1', {port}))\nprint('connected')")
        assert _quick(tool.run, "python: " + code).startswith("error: refused")
        out = _quick(_os_only, code)
        assert out.startswith("error:") and "connected" not in out, out
        with pytest.raises(socket.timeout):
            srv.accept()  # nothing ever arrived


def test_environment_is_cleared(monkeypatch):
    monkeypatch.setenv("C2C_SECRET_TOKEN", "hunter2-secret")
    assert "hunter2" not in _quick(tool.run, "python: import os\nprint(os.environ)")
    out = _quick(_os_only, "import os\nprint(dict(os.environ))")
    assert "hunter2" not in out and "C2C_SECRET" not in out, out


def test_escapes_without_static_check_stopped_at_runtime():
    """The interpreter alone (static check off): no open/eval, no dunders, no module-valued side doors."""
    rt = _interp_only
    assert rt("open('/etc/passwd')") == "error: NameError: name 'open' is not defined"
    assert "NameError" in rt("eval('1')") and "NameError" in rt("exec('1')")
    assert rt("import os").startswith("error: ImportError: import of 'os' is not allowed")
    assert rt("__import__('socket')") == "error: NameError: name '__import__' is not defined"
    assert rt("import datetime\nprint(datetime.sys)") == "error: refused: attribute 'sys' is not allowed"
    # the classic escape reaches os.system through __subclasses__: refused at its first step
    out = rt("w = [c for c in ().__class__.__base__.__subclasses__() if c.__name__ == '_wrap_close'][0]\n"
             f"print(w.__init__.__globals__['system']('touch {REPO / 'PWNED_BY_SANDBOX'}'))")
    assert out == "error: refused: attribute '__class__' is not allowed", out
    assert not (REPO / "PWNED_BY_SANDBOX").exists(), out
    # getattr by other names, frames, class creation: each refused at run time
    assert rt("print('{0.__class__}'.format(1))").startswith("error: refused: attribute access in format fields")
    assert rt("print(str.format('{0.real}', 1))").startswith("error: refused: attribute access in format fields")
    assert rt("print(type(type(1))('X', (), {}))").startswith("error: refused: type() of a class")
    assert rt("g = (i for i in [1])\nprint(g.gi_frame)") == "error: refused: attribute 'gi_frame' is not allowed"
    assert rt("f = lambda: 0\nprint(f.__globals__)") == "error: refused: attribute '__globals__' is not allowed"
    assert rt("import operator\nprint(operator.attrgetter('real'))") == \
        "error: refused: attribute 'attrgetter' is not allowed"
    assert rt("from functools import update_wrapper") == "error: refused: attribute 'update_wrapper' is not allowed"
    assert rt("import string\nstring.Formatter().format('{0.x}', 1)").startswith("error: refused")
    assert rt("import math\nmath.pi = 3").startswith("error: refused: setting attributes of module")
    assert rt("print(hasattr(1, '_' + '_class__'))") == "False"
    assert rt("class A:\n    pass").startswith("error: unsupported: class definitions")


def test_isolation_is_reported():
    info = sandbox_info()
    assert info["network"] in ("namespace", "fd-limit")
    assert "nofile=3" in info["rlimits"]


def test_a_syntax_error_names_its_line_once():
    # the tiny demo model's snippet `print("[:-33333)`: Python's message already says "(detected at line 1)"
    with pytest.raises(ValueError) as e:
        check_code('print("[:-33333)')
    assert str(e.value) == "SyntaxError: unterminated string literal (detected at line 1)"
    with pytest.raises(ValueError) as e:
        check_code("x = 1\ny = (")
    assert str(e.value) == "SyntaxError: '(' was never closed (line 2)"
    with pytest.raises(ValueError) as e:  # detected past its start: both lines say something
        check_code('x = """a\nb')
    assert str(e.value) == "SyntaxError: unterminated triple-quoted string literal (detected at line 2) (line 1)"


def test_check_code_passes_ordinary_code():
    check_code("import re\nprint(sorted(re.findall(r'[a-z]', 'b a c')))")
    with pytest.raises(ValueError):
        check_code("")
    assert not os.path.exists(REPO / "PWNED_BY_SANDBOX")
