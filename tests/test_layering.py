"""Imports point downward only (docs/DESIGN.md, "Layers"): crawl2chat -> flows -> tasks -> lm -> conf, core.

A structural check of the import graph, read with `ast`: every import statement counts, at module
level or inside a function, and a comment or string naming a module does not. (Importing each module
with the upper layers blocked would only see the imports that one run executes; lazy imports inside
functions are exactly where upward imports hide.)
"""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Higher may import lower; conf/ and core/ import nothing of the project.
RANK = {"crawl2chat": 4, "flows": 3, "tasks": 2, "lm": 1}
LEAVES = ("conf", "core")
# Upward edges allowed, each with why (none today: the telemetry switch moved to core/).
KNOWN: dict[tuple[str, str], str] = {}  # (file, module) -> why it may point up; empty: none may


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module


def upward_imports(repo: Path = REPO) -> list[str]:
    bad = []
    for top in (*RANK, *LEAVES):
        for path in sorted((repo / top).rglob("*.py")):
            rel = path.relative_to(repo).as_posix()
            for line, mod in _imports(path):
                dep = mod.split(".")[0]
                if dep == top or dep not in (*RANK, *LEAVES) or (rel, mod) in KNOWN:
                    continue
                if top in LEAVES or (dep in RANK and RANK[dep] >= RANK[top]):
                    bad.append(f"{rel}:{line}: {top}/ imports {mod}")
    return sorted(bad)


def test_imports_point_down_only():
    bad = upward_imports()
    assert not bad, "imports that point up or sideways (docs/DESIGN.md, Layers):\n" + "\n".join(bad)


def test_the_check_sees_lazy_imports_and_ignores_comments(tmp_path):
    """The rule on a small tree: an import inside a function is caught; the same name in a comment is not."""
    for top in (*RANK, *LEAVES):
        (tmp_path / top).mkdir()
    (tmp_path / "lm" / "ok.py").write_text("# from flows import x: only a comment\nimport core.atomic\n")
    (tmp_path / "tasks" / "lazy.py").write_text("def f():\n    from flows.pipeline import stage\n")
    (tmp_path / "core" / "leaf.py").write_text("from conf import load\n")
    assert upward_imports(tmp_path) == ["core/leaf.py:1: core/ imports conf",
                                        "tasks/lazy.py:2: tasks/ imports flows.pipeline"]
