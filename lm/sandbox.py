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

Layers, each enough to stop the red-team cases on its own where it applies
(tests/lm/test_sandbox_redteam.py checks each one alone):

1. Static check, in the server process, BEFORE anything runs (`check_code`):
   length and node-count caps, an `ast` walk that refuses imports outside
   ALLOWED_MODULES, names and attributes with a leading underscore (dunders:
   `__subclasses__`, `__globals__`, `__builtins__`, `__import__`), frame/code
   attributes (`gi_frame`, `f_back`, `tb_frame`, `co_code`, ...), the
   attributes that lead out of a module (`sys`, `os`, `modules`, ...), the
   builtins that open files or run code (`open`, `eval`, `exec`, `compile`,
   `getattr`, `globals`, ...), and string constants containing `__` (dunder
   names spelled as strings for `getattr`-like tricks). The server never
   evaluates or executes the snippet: this layer only parses it.
2. A fresh interpreter, `python -I -S` (isolated: no site, no user site, no
   PYTHON* variables, no script dir on sys.path), started with a CLEARED
   environment, its working directory an empty temporary directory, in a new
   session (so the whole process group is killed on timeout). The code goes in
   on stdin; nothing of the server's process (memory, open files: close_fds,
   environment) is inherited.
3. Inside the child, the trusted runner (`_RUNNER`, below) prepares the jail
   before the snippet runs: it pre-imports the allowed modules, then — when it
   has the privilege (root, or root of its own user namespace) — chroots into
   the empty directory and, when really root, drops to uid/gid 65534 (nobody);
   then sets resource limits: CPU seconds (SIGXCPU), address space (memory),
   file size (the output file too), process count 0 (no fork), and open files
   capped at the three it holds (no new file or socket can be opened at all).
4. No network: the child runs in a new, empty network namespace
   (`unshare --net`, or `unshare -rnm` for a non-root user) when the host allows
   it — `sandbox_info()["network"]` says `namespace`; otherwise the fd limit of
   layer 3 (no socket can be created) and the import allowlist (no `socket`)
   are what blocks it, and `network` says `fd-limit`.
5. Restricted runtime: the snippet runs with builtins that lack
   open/eval/exec/compile/input/getattr/..., an `__import__` that serves only
   the allowlisted modules, and each module as a read-only copy without its
   module-valued attributes outside the allowlist (`datetime.sys`,
   `fractions.sys`, `re.enum` are gone), stdout captured with a size cap.
6. Wall-clock timeout in the parent; the output read back is capped.

About `exec`: the project forbids eval/exec of untrusted input in the server
process. The only `exec` is in `_RUNNER`, which runs in the jailed child of
layers 2–5 after the jail is set up: executing the snippet there is the point
of a code tool. This module itself only parses the code (`ast.parse`).
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

# What a snippet may import: pure computation, nothing that reaches files, processes or the network.
ALLOWED_MODULES = frozenset({
    "math", "cmath", "re", "string", "itertools", "collections", "collections.abc", "json", "datetime",
    "fractions", "decimal", "random", "statistics", "functools", "operator", "heapq", "bisect",
    "textwrap", "unicodedata", "calendar",
})
# Builtins that open files, run code, read the interpreter's state or wait on stdin.
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
})
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


class CodeRefused(ValueError):
    """The static check refused the snippet (never ran)."""


def check_code(code: str) -> None:
    """Refuse code outside the allowed subset (raises CodeRefused naming the reason); never runs it."""
    if not isinstance(code, str) or not code.strip():
        raise CodeRefused("empty code")
    if len(code) > MAX_CODE_CHARS:
        raise CodeRefused(f"code is {len(code)} characters; the limit is {MAX_CODE_CHARS}")
    try:
        tree = ast.parse(code, mode="exec")
    except SyntaxError as e:
        raise CodeRefused(f"SyntaxError: {e.msg} (line {e.lineno})") from None
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


def _check_module(name: str) -> None:
    if name not in ALLOWED_MODULES:
        raise CodeRefused(f"import of {name!r} is not allowed; allowed: {', '.join(sorted(ALLOWED_MODULES))}")


# The trusted runner, executed by the child interpreter with `-c`. It reads the
# snippet from stdin, builds the jail (layers 3 and 5), then execs the snippet
# there. argv: cpu_seconds memory_bytes file_bytes output_chars restricted(0/1).
_RUNNER = r'''
import sys
def _main():
    import builtins, io, os, resource, types
    code = sys.stdin.read()
    cpu, mem, fsize, out_chars, restricted = (int(a) for a in sys.argv[1:6])
    allowed = %(allowed)r
    denied = %(denied)r
    mods = {}
    for name in sorted(allowed):
        mods[name] = __import__(name, fromlist=["_"])
    import _strptime  # datetime.strptime imports it lazily; after chroot nothing can be imported
    strptime = types.SimpleNamespace(_strptime_datetime=_strptime._strptime_datetime,
                                     _strptime_time=_strptime._strptime_time)
    # Jail: an empty root, an unprivileged user, then limits (lowering needs no privilege).
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
    lim = [(resource.RLIMIT_CPU, cpu, cpu + 1), (resource.RLIMIT_AS, mem, mem),
           (resource.RLIMIT_FSIZE, fsize, fsize), (resource.RLIMIT_NPROC, 0, 0),
           (resource.RLIMIT_NOFILE, 3, 3), (resource.RLIMIT_CORE, 0, 0)]
    for what, soft, hard in lim:
        resource.setrlimit(what, (soft, hard))

    class Capture(io.TextIOBase):
        def __init__(self):
            self.parts, self.n, self.cut = [], 0, False
        def write(self, s):
            s = str(s)
            room = out_chars - self.n
            if len(s) > room:
                s, self.cut = s[:max(room, 0)], True
            if s:
                self.parts.append(s)
                self.n += len(s)
            return len(s)

    out = Capture()
    sys.stdout = sys.stderr = out
    if restricted:
        def proxy(m):
            p = types.ModuleType(m.__name__)
            for k, v in vars(m).items():
                if k.startswith("_"):
                    continue
                if isinstance(v, types.ModuleType):
                    if v.__name__ not in allowed:
                        continue
                    v = proxies.get(v.__name__) or proxy(v)
                setattr(p, k, v)
            return p
        proxies = {}
        for name in sorted(allowed):
            proxies[name] = proxy(mods[name])
        def safe_import(name, globals=None, locals=None, fromlist=(), level=0):
            if name == "_strptime" and not level:  # what datetime/time's C code asks for, no more
                return strptime
            if level or name not in proxies:
                raise ImportError("import of %%r is not allowed" %% name)
            if fromlist or "." not in name:
                return proxies[name]
            return proxies[name.split(".")[0]]
        safe = {k: v for k, v in vars(builtins).items() if k not in denied}
        safe["__import__"] = safe_import
        g = {"__builtins__": safe, "__name__": "__main__"}
    else:  # tests of the OS layers alone
        g = {"__builtins__": builtins, "__name__": "__main__"}
    status = 0
    try:
        exec(compile(code, "<snippet>", "exec"), g)  # the jailed child: see lm/sandbox.py's docstring
    except MemoryError:
        out.cut = False
        out.parts.append("\nerror: MemoryError: the snippet exceeded the memory limit")
        status = 1
    except BaseException as e:
        msg = str(e)[:300]
        out.parts.append("\nerror: %%s: %%s" %% (type(e).__name__, msg) if msg else "\nerror: %%s" %% type(e).__name__)
        status = 1
    text = "".join(out.parts)
    if out.cut:
        text += "\n[output cut at %%d characters]" %% out_chars
    os.write(1, text.encode("utf-8", "replace"))
    os._exit(status)
_main()
''' % {"allowed": sorted(ALLOWED_MODULES), "denied": sorted(DENIED_NAMES)}

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
            "allowed_modules": sorted(ALLOWED_MODULES)}


def run_python(code: str, limits: Limits = Limits(), *, static_checks: bool = True,
               restricted_runtime: bool = True) -> str:
    """Run `code` in the sandbox; returns its stdout, with `error: ...` on failure (never raises).

    `static_checks` / `restricted_runtime` turn layers 1 / 5 off: for the red-team
    tests that check the OS layers (2–4, 6) alone. Never turn them off for model code.
    """
    if static_checks:
        try:
            check_code(code)
        except CodeRefused as e:
            return f"error: refused: {e}"
    elif not isinstance(code, str) or len(code) > MAX_CODE_CHARS:
        return "error: refused: code too long"
    cmd = [*_namespace_prefix(), sys.executable, "-I", "-S", "-c", _RUNNER, str(limits.cpu_seconds),
           str(limits.memory_bytes), str(limits.file_bytes), str(limits.output_chars), str(int(restricted_runtime))]
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
                proc.communicate(code.encode("utf-8", "replace"), timeout=limits.wall_seconds)
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
