"""Every command shown in the docs parses with the real thing, so the docs cannot drift.

The commands are the lines of the fenced code blocks in README.md, docs/*.md, infra/README.md
and data/README.md (`python`/`yaml`/`json` blocks are code, not commands). Each is checked
in-process, without running any work:
- `crawl2chat …` (or `.venv/bin/crawl2chat …`) by `crawl2chat.cli.build_parser().parse_args`;
- `python -m lm.train …` and `torchrun … -m lm.train …` by lm.train's own parser;
- `python benchmarks/X.py …` (or infra/X.py) by that script's `build_parser()`;
- `make X` by the Makefile having target X;
- `prefect deployment run NAME …` by NAME being a deployment `flows.deployments.specs()` makes;
- `mlflow ui …` by MLflow's own click command.
Placeholders (`<dir>`, `UUID`, `…`, `$VAR`) become a dummy value.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOC_FILES = sorted({REPO / "README.md", REPO / "infra" / "README.md", REPO / "data" / "README.md",
                    *(REPO / "docs").glob("*.md")})
_NOT_COMMANDS = {"python", "py", "yaml", "yml", "json", "toml", "text", "markdown", "md", "html", "js"}
_DUMMY = "dummy"


@dataclass(frozen=True)
class Command:
    where: str  # file:line
    argv: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.where}: {shlex.join(self.argv)}"


def _blocks(text: str):
    """(first line number, lines) of each fenced block whose language is not code."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^\s*(```+|~~~+)\s*([\w+-]*)", lines[i])
        if not m:
            i += 1
            continue
        fence, lang = m.group(1), m.group(2).lower()
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            j += 1
        if lang not in _NOT_COMMANDS:
            yield i + 2, lines[i + 1:j]
        i = j + 1


def _logical_lines(start: int, lines: list[str]):
    """Join backslash continuations; drop a `$ ` prompt."""
    buf, first = "", start
    for n, line in enumerate(lines, start):
        if not buf:
            first = n
        s = line.rstrip()
        if s.endswith("\\"):
            buf += s[:-1] + " "
            continue
        buf += s
        yield first, buf.strip().removeprefix("$ ").strip()
        buf = ""
    if buf:
        yield first, buf.strip()


def _placeholder(tok: str) -> str:
    if re.fullmatch(r"<[^<>]+>", tok) or tok in {"…", "...", "UUID", "CKPT", "DIR", "N"} or tok.startswith("$"):
        return _DUMMY
    # --flag=<dir>, --out=$DIR
    return re.sub(r"<[^<>]+>|\$\{?\w+\}?", _DUMMY, tok)


def _segments(line: str) -> list[list[str]]:
    """The simple commands of one shell line (split at ; && || |), comments dropped."""
    lex = shlex.shlex(line, posix=True, punctuation_chars=";&|")
    lex.whitespace_split = True
    lex.commenters = "#"
    try:
        toks = list(lex)
    except ValueError:  # an unbalanced quote: not a shell line
        return []
    out, cur = [], []
    for t in toks:
        if t in {";", "&&", "||", "|", "&"}:
            out.append(cur)
            cur = []
        else:
            cur.append(t)
    out.append(cur)
    return [c for c in out if c]


def _strip_prefix(argv: list[str]) -> list[str]:
    """Drop `VAR=value`, `nice -n 10`, `time`, `env`; `.venv/bin/x` → `x`."""
    while argv:
        if re.fullmatch(r"[A-Za-z_]\w*=\S*", argv[0]) or argv[0] in {"env", "time", "exec"}:
            argv = argv[1:]
        elif argv[0] == "nice":
            argv = argv[3:] if len(argv) > 2 and argv[1] == "-n" else argv[1:]
        else:
            break
    if argv and argv[0].startswith((".venv/bin/", "$(BIN)/")):
        argv = [argv[0].rsplit("/", 1)[1], *argv[1:]]
    return argv


_KNOWN = ("crawl2chat", "python", "python3", "torchrun", "make", "prefect", "mlflow")
# Other words a shell line of the docs starts with; a line starting with anything else is prose or
# a diagram (e.g. "└─ pretrain … ; torchrun for >1 GPU"), not a command.
_SHELL = {"source", ".", "export", "echo", "cd", "docker", "kubectl", "ray", "open", "pip", "git", "curl", "cat",
          "ls", "mkdir", "cp", "rm", "chromium"}


def commands_in(text: str, where: str) -> list[Command]:
    """The commands of one Markdown text's code blocks."""
    cmds = []
    for start, lines in _blocks(text):
        for n, line in _logical_lines(start, lines):
            segments = _segments(line)
            if not segments or (_strip_prefix(segments[0]) or [""])[0] not in (*_KNOWN, *_SHELL):
                continue
            for seg in segments:
                argv = _strip_prefix(seg)
                if argv and argv[0] in _KNOWN:
                    cmds.append(Command(f"{where}:{n}", tuple(_placeholder(t) for t in argv)))
    return cmds


def doc_commands() -> list[Command]:
    return [c for path in DOC_FILES if path.exists()
            for c in commands_in(path.read_text(), str(path.relative_to(REPO)))]


# --- the real parsers ------------------------------------------------------------------------


def _parse(parser, args: list[str]) -> str | None:
    """None when `args` parse; else argparse's error message. `--help` counts as parsing."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            parser.parse_args(args)
    except SystemExit as e:
        if e.code not in (0, None):
            return err.getvalue().strip().splitlines()[-1] if err.getvalue().strip() else f"exit {e.code}"
    return None


def _crawl2chat_parser():
    from crawl2chat.cli import build_parser

    return build_parser()


def _script_parser(rel: str):
    path = REPO / rel
    if not path.is_file():
        return f"{rel} does not exist"
    if "def build_parser(" not in path.read_text():  # never import a script that runs at import time
        return f"{rel} has no build_parser(): add one (its argparse parser) so its documented command is checked"
    spec = importlib.util.spec_from_file_location(f"_docs_{path.stem}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.build_parser()


def _module_parser(module: str):
    mod = importlib.import_module(module)
    if not hasattr(mod, "build_parser"):
        return f"{module} has no build_parser()"
    return mod.build_parser()


def _check_values(parser, args: list[str]) -> str | None:
    """What a command checks before any work, without the work: the preset and every `--set` key."""
    from crawl2chat.stage_cli import check_keys, check_preset, parse_sets

    if "--help" in args or "-h" in args:
        return None
    ns = parser.parse_args(args)
    try:
        if getattr(ns, "preset", None):
            check_preset(ns.preset)
        check_keys(parse_sets(getattr(ns, "set", None) or []))
    except ValueError as e:  # core.errors.Refused is a ValueError
        return str(e)
    return None


def _make_targets() -> set[str]:
    text = (REPO / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", text, re.M))


def _deployment_names() -> set[str]:
    from flows.deployments import deployment_names

    return set(deployment_names())


def _python_target(argv: list[str]) -> tuple[str, list[str]] | None:
    """(module or script, its args) of `python -m M …`, `python S.py …` or `torchrun [opts] -m M …`."""
    rest = argv[1:]
    if argv[0] == "torchrun":
        if "-m" in rest:
            i = rest.index("-m")
            return rest[i + 1], rest[i + 2:]
        script = next((t for t in rest if t.endswith(".py")), None)
        return (script, rest[rest.index(script) + 1:]) if script else None
    if rest[:1] == ["-m"] and len(rest) > 1:
        return rest[1], rest[2:]
    if rest and rest[0].endswith(".py"):
        return rest[0], rest[1:]
    return None


def _cached(cache: dict, key: str, make):
    """Build each parser (or list) once per session: importing is the slow part."""
    if key not in cache:
        cache[key] = make()
    return cache[key]


def check(cmd: Command, cache: dict) -> str | None:
    """None when the command is right; else what is wrong."""
    argv = list(cmd.argv)
    tool = argv[0]
    if tool == "crawl2chat":
        p = _cached(cache, "crawl2chat", _crawl2chat_parser)
        return _parse(p, argv[1:]) or _check_values(p, argv[1:])
    if tool == "make":
        targets = [a for a in argv[1:] if not a.startswith("-") and "=" not in a]
        missing = [t for t in targets if t not in _cached(cache, "make", _make_targets)]
        return f"Makefile has no target {missing[0]!r}" if missing else None
    if tool in ("python", "python3", "torchrun"):
        target = _python_target(argv)
        if target is None:
            return None  # `python -c …`, a bare interpreter: nothing to check
        what, args = target
        if what.endswith(".py"):
            if not what.startswith(("benchmarks/", "infra/", "scripts/", "data/")):
                return None
            p = _cached(cache, what, lambda: _script_parser(what))
        elif what == "lm.train":
            p = _cached(cache, what, lambda: _module_parser("lm.train"))
        elif what.startswith(("crawl2chat.", "flows.", "lm.", "tasks.", "benchmarks.")):
            if importlib.util.find_spec(what) is None:
                return f"no module {what}"
            return None  # a module with its own CLI (lm-eval's, flows.deployments'): it exists
        else:
            return None
        return p if isinstance(p, str) else _parse(p, args)
    if tool == "prefect":
        if argv[1:3] == ["deployment", "run"]:
            names = _cached(cache, "deployments", _deployment_names)
            name = next((a for a in argv[3:] if not a.startswith("-")), None)
            if name not in names:
                return f"no deployment {name!r}; deployments: {', '.join(sorted(names))}"
        return None
    if tool == "mlflow":
        if argv[1:2] == ["ui"]:
            import click
            from mlflow.cli import cli

            try:  # `ui` is an alias of `server` in MLflow's command group
                cli.get_command(click.Context(cli), "ui").make_context("ui", argv[2:])
            except click.exceptions.Exit:
                return None
            except click.UsageError as e:
                return str(e)
        return None
    return None


COMMANDS = doc_commands()


_PARSERS: dict = {}


@pytest.fixture(scope="module")
def parsers() -> dict:
    return _PARSERS


@pytest.mark.parametrize("cmd", COMMANDS, ids=[c.where for c in COMMANDS])
def test_documented_command_parses(cmd: Command, parsers: dict):
    problem = check(cmd, parsers)
    assert problem is None, f"{cmd}\n  → {problem}"


def test_the_docs_show_the_front_door_commands():
    shown = {c.argv[:2] for c in COMMANDS}
    assert ("make", "demo") in shown and ("make", "test") in shown
    assert len(COMMANDS) >= 40, len(COMMANDS)


def test_drift_is_caught():
    """The drift this test exists for: `lm.train` takes --tokens, not --data; a stage command lost a flag."""
    cache: dict = {}
    text = "```bash\ntorchrun --standalone --nproc-per-node=8 \\\n  -m lm.train --preset gpt2 --data <dir> --out x\n```\n"
    bad, = commands_in(text, "x")
    assert "--tokens" in (check(bad, cache) or "")  # required, and --data is not it
    good = Command("x:2", ("python", "-m", "lm.train", "--tokens", _DUMMY, "--out", _DUMMY, "--preset", "gpt2"))
    assert check(good, cache) is None
    assert "--no-such-flag" in (check(Command("x:3", ("crawl2chat", "sft", "--model", "m", "--out", "o",
                                                        "--no-such-flag")), cache) or "")
    assert "required" in (check(Command("x:4", ("crawl2chat", "sft", "--out", "o")), cache) or "")
    assert "valid keys" in (check(Command("x:7", ("crawl2chat", "pipeline", "--set", "sft.no_such_key=1")), cache)
                            or "")
    assert "preset" in (check(Command("x:8", ("crawl2chat", "sft", "--model", "m", "--out", "o", "--preset",
                                              "no-such-preset")), cache) or "")
    assert not commands_in("```\n└─ pretrain (flow)  lm.train; torchrun for >1 GPU\n```\n", "x")
    assert "--no-such" in (check(Command("x:9", ("mlflow", "ui", "--no-such")), cache) or "")
    assert check(Command("x:5", ("make", "no-such-target")), cache)
    assert check(Command("x:6", ("python", "benchmarks/no_such_benchmark.py")), cache)


def _anchors(md: Path) -> set[str]:
    """GitHub's heading anchors of a Markdown file."""
    out = set()
    for line in md.read_text().splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*$", line)
        if m:
            out.add(re.sub(r"[^\w\- ]", "", m.group(1).lower()).replace(" ", "-"))
    return out


def test_doc_links_resolve():
    """Every relative link of the docs names a file that exists (and a heading that exists, with #)."""
    broken = []
    for path in DOC_FILES:
        if not path.exists():
            continue
        text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # http(s)://, mailto:
            file, _, anchor = target.partition("#")
            dest = (path.parent / file).resolve() if file else path
            if not dest.exists():
                broken.append(f"{path.relative_to(REPO)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                broken.append(f"{path.relative_to(REPO)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)
