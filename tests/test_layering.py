"""Imports point downward only (docs/DESIGN.md, "Layers"): crawl2chat -> flows -> tasks -> lm -> conf, core.

A structural check of the import graph, read with `ast`: every import statement counts, at module
level or inside a function, and a comment or string naming a module does not. (Importing each module
with the upper layers blocked would only see the imports that one run executes; lazy imports inside
functions are exactly where upward imports hide.)
"""
from __future__ import annotations

import ast
import re
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


# Rooms inside lm/ and tasks/ (docs/DESIGN.md, "Layout"), lowest first: a room may import its own
# and lower ones. lm/: the tools the model calls; the model core (model, tokenizer, engine, chat,
# checkpoint, ...), which runs those tools; the datasets (one home each: items, split, rendering,
# grader); the evaluations over them; post-training, which reads all of these.
LM_ROOMS = {"tools": 0, "": 1, "datasets": 2, "evals": 3, "posttrain": 4}
# The pretraining loop sits beside the core files but runs in-loop evaluations: a loop, like posttrain.
LM_LOOPS = {"lm/train.py": 4}
TASKS_ROOMS = {"curation": 0, "": 1}  # the curation library below the stage wrappers and the report card


def _room(parts: tuple[str, ...], rooms: dict[str, int]) -> str:
    return parts[1] if len(parts) > 2 and parts[1] in rooms else ""


def room_violations(repo: Path = REPO) -> list[str]:
    bad = []
    for top, rooms in (("lm", LM_ROOMS), ("tasks", TASKS_ROOMS)):
        for path in sorted((repo / top).rglob("*.py")):
            rel = path.relative_to(repo)
            rank = LM_LOOPS.get(rel.as_posix(), rooms[_room(rel.parts, rooms)])
            for line, mod in _imports(path):
                parts = mod.split(".")
                if parts[0] != top:
                    continue
                dep = parts[1] if len(parts) > 1 and parts[1] in rooms else ""
                if rooms[dep] > rank:
                    bad.append(f"{rel.as_posix()}:{line}: {top}/{_room(rel.parts, rooms) or '(core)'} imports {mod}")
    return bad


def test_rooms_import_their_own_and_lower_rooms_only():
    bad = room_violations()
    assert not bad, "imports that point up between rooms (docs/DESIGN.md, Layout):\n" + "\n".join(bad)


def test_every_module_of_lm_and_tasks_sits_in_a_known_room():
    for top, rooms in (("lm", LM_ROOMS), ("tasks", TASKS_ROOMS)):
        for path in (REPO / top).iterdir():
            if path.is_dir() and not path.name.startswith("__"):
                assert path.name in rooms, f"{top}/{path.name}/ is a room the layering test does not know"


# One home per dataset (docs/DESIGN.md, "Layout"): a dataset's items, held-out split, rendering and
# grader live in lm/datasets/, and everyone else (SFT, RL, eval, the report, benchmarks) calls them.
# So outside lm/datasets/ no code may name a dataset's file (conf/ names default paths only), define a
# grader (`grade*`, a number or letter extractor), or define a generator of items (`generate_*`, `*_problems`).
DATASET_FILES = ("train.jsonl", "ai2_arc/", "trivia_qa/")
DATASET_DEFS = re.compile(r"^(grade\w*|\w+_grader|generate_\w+|\w+_problems|extract_number|same_number|"
                          r"reply_text|reply_answer|parse_letter)$")
DATASET_USERS = ("lm", "tasks", "flows", "benchmarks", "crawl2chat")


def dataset_violations(repo: Path = REPO) -> list[str]:
    bad = []
    for top in DATASET_USERS:
        for path in sorted((repo / top).rglob("*.py")):
            rel = path.relative_to(repo).as_posix()
            if rel.startswith("lm/datasets/"):
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"), rel)
            for node in tree.body:  # module-level functions (a method such as lm-eval's generate_until is an API)
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and DATASET_DEFS.match(node.name):
                    bad.append(f"{rel}:{node.lineno}: defines {node.name}() (a dataset's generator or grader)")
            docs = {id(n.body[0].value) for n in ast.walk(tree)
                    if isinstance(n, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                    and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
            for node in ast.walk(tree):  # a docstring may say where the data is; code may not open it
                if (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs
                        and any(f in node.value for f in DATASET_FILES)):
                    bad.append(f"{rel}:{node.lineno}: names a dataset file ({node.value[:60]!r})")
    return bad


def test_datasets_have_one_home():
    bad = dataset_violations()
    assert not bad, "dataset code outside lm/datasets/ (docs/DESIGN.md, Layout):\n" + "\n".join(bad)


def test_the_dataset_check_sees_a_second_home(tmp_path):
    """The rule on a small tree: a grader, a generator and a dataset path outside lm/datasets are caught."""
    for top in DATASET_USERS:
        (tmp_path / top).mkdir()
    (tmp_path / "lm" / "datasets").mkdir()
    (tmp_path / "lm" / "datasets" / "gsm8k.py").write_text("def grade(c): ...\nP = 'gsm8k/train.jsonl'\n")
    (tmp_path / "lm" / "evals").mkdir()
    (tmp_path / "lm" / "evals" / "basic.py").write_text(
        "def arithmetic_problems(n): ...\ndef gsm8k_eval(e): ...\nP = 'data/gsm8k/train.jsonl'\n")
    (tmp_path / "tasks" / "report.py").write_text('"""Reads train.jsonl."""\ndef grade_reply(c): ...\n'
                                                  "# train.jsonl in a comment\n")
    assert dataset_violations(tmp_path) == [
        "lm/evals/basic.py:1: defines arithmetic_problems() (a dataset's generator or grader)",
        "lm/evals/basic.py:3: names a dataset file ('data/gsm8k/train.jsonl')",
        "tasks/report.py:2: defines grade_reply() (a dataset's generator or grader)"]
