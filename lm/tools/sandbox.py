"""The `python` tool's sandbox: run a short, model-written snippet and return its stdout (or the error).

Threat model. The code is untrusted: a model wrote it, and through the chat or
the API anybody can ask the model to write anything. The snippet must not read
or change the host's files (the repo, /etc/passwd, the checkpoints), reach the
network (127.0.0.1 included), see the server's memory or environment (API keys,
tokens), start processes, or exhaust the machine (CPU, memory, disk, process
table, output). What it may do is compute: count letters, reverse strings,
multiply long numbers, sort, format — with the import allowlist below.
Out of scope: kernel exploits, and side channels (timing) — a container/VM
is the answer to those, and the deployment's job.

No exec, eval or compile of the snippet anywhere: not in the server, not in the
child. The child parses it and runs it with a tree-walking interpreter of an
allowlisted subset of Python (lm/tools/sandbox_interp.py). Python objects are still
reachable through what that subset allows (builtins, the allowlisted modules,
methods of values), so the interpreter is one layer of several, and each OS
layer is there for the case where another one has a hole.

Layers (tests/lm/tools/test_sandbox_redteam.py checks each one alone where it applies;
for the OS layers alone it runs raw attacks through a test-only child program
that lives in the test file — this module has no exec path, not even a flag):

1. Static check, in the server process, BEFORE anything runs (`check_code`):
   length and node-count caps, an `ast` walk that refuses imports outside
   ALLOWED_MODULES, names and attributes with a leading underscore (dunders:
   `__subclasses__`, `__globals__`, `__builtins__`, `__import__`), frame/code
   attributes (`gi_frame`, `f_back`, `tb_frame`, ...), the attributes that lead
   out of a module (`sys`, `os`, `modules`, ...), the builtins that open files or
   run code (`open`, `eval`, `exec`, `compile`, `getattr`, `globals`, ...),
   string constants containing `__` (dunder names spelled as strings), and the
   constructs the interpreter does not run (`error: unsupported: class
   definitions`). The server never runs the snippet: this layer only parses it.
2. A fresh interpreter, `python -I -S` (isolated: no site, no user site, no
   PYTHON* variables, no script dir on sys.path), started with a CLEARED
   environment, its working directory an empty temporary directory, in a new
   session (so the whole process group is killed on timeout). Its program is
   ours (`-c` CHILD_PROGRAM: import lm/tools/sandbox_interp.py by path, then the
   jail and the runner); the snippet goes in on stdin, as data; nothing of the
   server's process (memory, open files: close_fds, environment) is inherited.
3. Inside the child, before the snippet is parsed: the allowed modules are
   imported, then — when it has the privilege (root, or root of its own user
   namespace) — it chroots into the empty directory and, when really root,
   drops to uid/gid 65534 (nobody); then sets resource limits: CPU seconds
   (SIGXCPU), address space (memory), file size (the output file too), process
   count 0 (no fork), and open files capped at the three it holds (no new file
   or socket can be opened at all). After the chroot nothing can be imported.
4. No network: the child runs in a new, empty network namespace
   (`unshare --net`, or `unshare -rnm` for a non-root user) when the host allows
   it — `sandbox_info()["network"]` says `namespace`; otherwise the fd limit of
   layer 3 (no socket can be created) and the import allowlist (no `socket`)
   are what blocks it, and `network` says `fd-limit`.
5. The interpreter (lm/tools/sandbox_interp.py): only the allowlisted builtins (no
   open/eval/exec/compile/input/getattr/...), only ALLOWED_MODULES, and at run
   time again: no `_`-prefixed or DENIED_ATTRS attributes, no attributes of
   frames/code/generators/functions, no module-valued attributes outside the
   allowlist (`datetime.sys`), no attribute fields in format strings, no class
   creation; a step budget (endless loops end with a clear error before the CPU
   limit), a call-depth cap, caps on big-int `**`/`*`/`<<` and on sequence
   repetition; stdout captured with a size cap.
6. Wall-clock timeout in the parent; the output read back is capped.
"""
from __future__ import annotations

import ast
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from lm.tools.sandbox_interp import ALLOWED_MODULES, DENIED_ATTRS, DENIED_NAMES, MAX_STEPS, Unsupported, check_supported

__all__ = ["ALLOWED_MODULES", "DENIED_ATTRS", "DENIED_NAMES", "CodeRefused", "JAIL_SOURCE", "Limits", "check_code",
           "python_tool", "run_in_jail", "run_python", "sandbox_info"]
MAX_CODE_CHARS = 4000
MAX_NODES = 3000


@dataclass(frozen=True)
class Limits:
    """Resource limits of one run (the defaults suit a 2-core box under load)."""

    cpu_seconds: int = 2
    memory_bytes: int = 256 << 20
    wall_seconds: float = 10.0
    output_chars: int = 2000        # what comes back to the model (more is cut and said so)
    file_bytes: int = 1 << 20       # RLIMIT_FSIZE: largest file the child may write (its output file)
    steps: int = MAX_STEPS          # the interpreter's step budget (statements, iterations, calls)


class CodeRefused(ValueError):
    """The static check refused the snippet (never ran)."""


def check_code(code: str) -> None:
    """Refuse code outside the allowed subset (CodeRefused, or Unsupported for constructs); never runs it."""
    if not isinstance(code, str) or not code.strip():
        raise CodeRefused("empty code")
    if len(code) > MAX_CODE_CHARS:
        raise CodeRefused(f"code is {len(code)} characters; the limit is {MAX_CODE_CHARS}")
    try:
        tree = ast.parse(code, mode="exec")
    except SyntaxError as e:
        # Python 3.10+ already says "(detected at line N)" for some errors: naming the line twice cost the
        # model 5 tokens of its reply budget (and 128-token context) per refused snippet, for nothing
        where = "" if f"line {e.lineno})" in (e.msg or "") else f" (line {e.lineno})"
        raise CodeRefused(f"SyntaxError: {e.msg}{where}") from None
    except (ValueError, RecursionError, MemoryError) as e:  # NUL bytes, absurd nesting
        raise CodeRefused(f"cannot parse: {type(e).__name__}") from None
    nodes = list(ast.walk(tree))
    if len(nodes) > MAX_NODES:
        raise CodeRefused(f"code has more than {MAX_NODES} syntax nodes")
    for node in nodes:
        if isinstance(node, ast.Import):
            for a in node.names:
                _check_module(a.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                raise CodeRefused("relative imports are not allowed")
            _check_module(node.module or "")
            for a in node.names:
                if a.name == "*" or a.name.startswith("_"):
                    raise CodeRefused(f"from {node.module} import {a.name} is not allowed")
        elif isinstance(node, ast.Attribute):
            if node.attr.startswith("_") or node.attr in DENIED_ATTRS:
                raise CodeRefused(f"attribute {node.attr!r} is not allowed")
        elif isinstance(node, ast.Name):
            if node.id.startswith("__") or node.id in DENIED_NAMES:
                raise CodeRefused(f"name {node.id!r} is not allowed")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if node.name.startswith("__"):
                raise CodeRefused(f"name {node.name!r} is not allowed")
        elif isinstance(node, ast.arg) and node.arg.startswith("__"):
            raise CodeRefused(f"name {node.arg!r} is not allowed")
        elif isinstance(node, ast.keyword) and node.arg and node.arg.startswith("__"):
            raise CodeRefused(f"keyword {node.arg!r} is not allowed")
        elif isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)):
            if (b"__" if isinstance(node.value, bytes) else "__") in node.value:
                raise CodeRefused("string constants containing '__' are not allowed")
    check_supported(tree)


def _check_module(name: str) -> None:
    if name not in ALLOWED_MODULES:
        raise CodeRefused(f"import of {name!r} is not allowed; allowed: {', '.join(sorted(ALLOWED_MODULES))}")


# The jail, as source text for the child's `-c` program (our code, trusted): layer 3, the output
# capture, and how the child reports. A program using it reads the snippet from stdin, imports what
# it needs, calls `_jail(...)`, runs, and ends with `_finish(out, error_line)`.
# argv of the child: cpu_seconds memory_bytes file_bytes output_chars steps.
JAIL_SOURCE = r'''
import os, resource, sys


def _jail_args():
    return tuple(int(a) for a in sys.argv[1:6])


def _jail(cpu, mem, fsize):
    # An empty root, an unprivileged user, then limits (lowering needs no privilege).
    if os.geteuid() == 0:
        try:
            os.chroot(".")
            os.chdir("/")
        except OSError:
            pass
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
        except OSError:
            pass  # root of a user namespace: uid 65534 is not mapped there; the chroot still holds
    for what, soft, hard in [(resource.RLIMIT_CPU, cpu, cpu + 1), (resource.RLIMIT_AS, mem, mem),
                             (resource.RLIMIT_FSIZE, fsize, fsize), (resource.RLIMIT_NPROC, 0, 0),
                             (resource.RLIMIT_NOFILE, 3, 3), (resource.RLIMIT_CORE, 0, 0)]:
        resource.setrlimit(what, (soft, hard))


class _Capture:
    # The snippet's stdout (and stderr), cut at `limit` characters.
    def __init__(self, limit):
        self.parts, self.n, self.cut, self.limit = [], 0, False, limit

    def write(self, s):
        s = str(s)
        room = self.limit - self.n
        if len(s) > room:
            s, self.cut = s[:max(room, 0)], True
        if s:
            self.parts.append(s)
            self.n += len(s)
        return len(s)

    def flush(self):
        pass


def _finish(out, error_line):
    if error_line and error_line.startswith("error: MemoryError"):
        out.cut = False
    text = "".join(out.parts) + ("\n" + error_line if error_line else "")
    if out.cut:
        text += "\n[output cut at %d characters]" % out.limit
    os.write(1, text.encode("utf-8", "replace"))
    os._exit(1 if error_line else 0)
'''

# The product's child program: import the interpreter (lm/tools/sandbox_interp.py: stdlib only, loaded by
# path so that its cached bytecode is used; compiling its source in every child cost ~30% per call,
# see benchmarks/sandbox_latency.py), then the jail and this runner. The snippet is only ever parsed
# and interpreted.
_RUNNER = r'''
def _main():
    code = sys.stdin.read()
    cpu, mem, fsize, out_chars, steps = _jail_args()
    modules = load_modules()  # before the jail: after chroot nothing can be imported
    _jail(cpu, mem, fsize)
    out = _Capture(out_chars)
    sys.stdout = sys.stderr = out
    error = None
    try:
        run_snippet(code, out.write, modules, max_steps=steps)
    except BaseException as e:  # the snippet's own error (or a limit), reported as one line
        error = describe_error(e)
    _finish(out, error)


_main()
'''
_LOAD_INTERPRETER = f"""
import sys
sys.path.append({str(Path(__file__).resolve().parent)!r})  # last: the stdlib always wins over lm/'s names
from sandbox_interp import describe_error, load_modules, run_snippet
del sys.path[-1]
"""
CHILD_PROGRAM = _LOAD_INTERPRETER + JAIL_SOURCE + _RUNNER

_PROBE_LOCK = threading.Lock()
_PREFIX: list[str] | None = None
_NETWORK = "fd-limit"


def _namespace_prefix() -> list[str]:
    """The `unshare` command that gives the child an empty network namespace here (probed once), or []."""
    global _PREFIX, _NETWORK
    with _PROBE_LOCK:
        if _PREFIX is None:
            _PREFIX = []
            exe = shutil.which("unshare")
            if exe and sys.platform.startswith("linux"):
                tries = [[exe, "--net", "--"]] if os.geteuid() == 0 else []
                tries.append([exe, "--user", "--map-root-user", "--net", "--mount", "--"])
                for cmd in tries:
                    try:
                        ok = subprocess.run([*cmd, "/bin/true"], capture_output=True, timeout=10).returncode == 0
                    except (OSError, subprocess.TimeoutExpired):
                        ok = False
                    if ok:
                        _PREFIX, _NETWORK = cmd, "namespace"
                        break
        return _PREFIX


def sandbox_info() -> dict:
    """How this host isolates the child: network (namespace | fd-limit), chroot, dropped user."""
    prefix = _namespace_prefix()
    root = os.geteuid() == 0
    return {"network": _NETWORK, "chroot": root or bool(prefix), "drops_to_nobody": root,
            "rlimits": ["cpu", "address_space", "file_size", "nproc=0", "nofile=3"],
            "runs_snippet_with": "ast interpreter (lm/tools/sandbox_interp.py; no exec/eval)",
            "allowed_modules": sorted(ALLOWED_MODULES)}


def run_python(code: str, limits: Limits = Limits(), *, static_checks: bool = True) -> str:
    """Run `code` in the sandbox; returns its stdout, with `error: ...` on failure (never raises).

    `static_checks=False` turns layer 1 off: for the red-team tests that show the
    interpreter's own run-time refusals (layer 5). Never turn it off for model code.
    """
    if static_checks:
        try:
            check_code(code)
        except CodeRefused as e:
            return f"error: refused: {e}"
        except Unsupported as e:
            return e.line()
    elif not isinstance(code, str) or len(code) > MAX_CODE_CHARS:
        return "error: refused: code too long"
    return run_in_jail(CHILD_PROGRAM, code, limits)


def run_in_jail(program: str, data: str, limits: Limits = Limits()) -> str:
    """Run our own `program` (source text, trusted) in the jailed child (layers 2-4, 6) with `data` on stdin.

    The product's program is CHILD_PROGRAM (interpreter + JAIL_SOURCE + runner); untrusted input only
    ever travels as `data`. Returns the child's output with `error: ...` for limits hit (never raises).
    """
    cmd = [*_namespace_prefix(), sys.executable, "-I", "-S", "-c", program, str(limits.cpu_seconds),
           str(limits.memory_bytes), str(limits.file_bytes), str(limits.output_chars), str(limits.steps)]
    with tempfile.TemporaryDirectory(prefix="c2c-sandbox-") as tmp:
        work = os.path.join(tmp, "work")
        os.mkdir(work, 0o755)  # the child's cwd (its root after chroot): empty
        out_path = os.path.join(tmp, "out")
        t0 = time.monotonic()
        with open(out_path, "w+b") as out:
            try:
                proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT,
                                        cwd=work, env={}, close_fds=True, start_new_session=True)
            except OSError as e:
                return f"error: sandbox could not start: {e}"
            timed_out = False
            try:
                proc.communicate(data.encode("utf-8", "replace"), timeout=limits.wall_seconds)
            except subprocess.TimeoutExpired:
                timed_out = True
                _kill_group(proc)
            finally:
                if proc.poll() is None:
                    _kill_group(proc)
            out.seek(0)
            raw = out.read(limits.output_chars * 4 + 256)
        text = raw.decode("utf-8", "replace")
        if len(text) > limits.output_chars + 200:
            text = text[:limits.output_chars] + f"\n[output cut at {limits.output_chars} characters]"
        rc = proc.returncode
        if timed_out:
            return _join(text, f"error: timed out after {limits.wall_seconds:g} s wall clock")
        if rc in (-signal.SIGXCPU, -signal.SIGKILL) and time.monotonic() - t0 < limits.wall_seconds:
            return _join(text, f"error: CPU time limit of {limits.cpu_seconds} s exceeded")
        if rc == -signal.SIGXFSZ:
            return _join(text, "error: output or file size limit exceeded")
        if rc is not None and rc < 0:
            return _join(text, f"error: the snippet was killed by signal {-rc}")
        if rc not in (0, 1):
            return _join(text, f"error: the sandbox exited with status {rc}")
        return text.strip("\n") if text.strip() else "(no output: print what you want to see)"


def _join(text: str, err: str) -> str:
    text = text.strip("\n")
    return f"{text}\n{err}" if text else err


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    proc.wait()


def python_tool(code: str) -> str:
    """The `python` tool for the registry: stdout of the snippet, or `error: ...`."""
    return run_python(code)
