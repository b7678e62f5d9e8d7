"""A fresh clone needs nothing beside it: no file points outside the checkout for
data or docs, and the tests that read real data pass in a copy of the checkout
(what `git clone` would give) placed where no sibling data folder exists."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TEXT_SUFFIXES = {".py", ".md", ".sh", ".yaml", ".yml", ".toml", ".cfg", ".ini", ".txt", ".json", ".html", ".js"}
SKIP_DIRS = {".venv", "runs", ".crawl2chat", "__pycache__", ".pytest_cache", ".git", "build"}
# Written in pieces so this file does not match itself.
SHARED = "shared"
FORBIDDEN = re.compile("|".join([
    r"\.\./" + SHARED + r"\b",                                    # a relative path up and over
    r"/work/" + SHARED + r"\b",                                   # an absolute path to it
    r"parents?(\[\d+\])?\s*/\s*[\"']" + SHARED + r"[\"']",        # REPO.parent / <that name>
]))
# The tests that read real data from data/ (text, langid, blocklists); cheap ones.
DATA_TESTS = ["tests/tasks/curation/test_langid.py", "tests/tasks/curation/test_minhash.py", "tests/tasks/curation/test_pii.py",
              "tests/tasks/curation/test_urlfilter.py", "tests/lm/test_tokens.py"]


def checkout_files() -> list[Path]:
    """The files a clone of the working tree would hold (tracked + untracked, not ignored)."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             cwd=REPO, capture_output=True, check=True, timeout=60).stdout
        names = [n for n in out.decode().split("\0") if n]
        return [REPO / n for n in names if (REPO / n).is_file()]
    except (OSError, subprocess.SubprocessError):  # not a git checkout (e.g. an unpacked archive)
        return [p for p in REPO.rglob("*") if p.is_file()
                and not SKIP_DIRS.intersection(p.relative_to(REPO).parts) and p.suffix != ".pyc"]


def test_no_file_points_at_a_folder_beside_the_checkout():
    hits = []
    for path in checkout_files():
        if path.suffix not in TEXT_SUFFIXES and path.name not in {"Makefile", "Dockerfile"}:
            continue
        if path.stat().st_size > 2_000_000:  # data files, not code or docs
            continue
        for i, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if FORBIDDEN.search(line):
                hits.append(f"{path.relative_to(REPO)}:{i}: {line.strip()[:120]}")
    assert not hits, "files that need something outside the checkout:\n" + "\n".join(hits)


def test_the_design_doc_and_readme_links_resolve_inside_the_repo():
    readme = (REPO / "README.md").read_text()
    assert (REPO / "docs" / "DESIGN.md").is_file()
    for target in re.findall(r"\]\(([^)#\s]+)", readme):
        if "://" in target:
            continue
        assert (REPO / target).exists(), f"README links to {target}, which is not in the repo"


def test_data_tests_pass_in_a_copy_of_the_checkout_with_nothing_beside_it(tmp_path):
    clone = tmp_path / "clone" / "crawl2chat"
    for src in checkout_files():
        dst = clone / src.relative_to(REPO)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
    assert not (clone.parent / SHARED).exists() and not (clone.parent.parent / SHARED).exists()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "PREFECT_API_URL"))}
    env["PYTHONPATH"] = str(clone)
    # The copy's own modules must be the ones imported (not this checkout's editable install).
    where = subprocess.run([sys.executable, "-c", "import tasks, lm, conf, flows; print(tasks.__file__)"],
                           cwd=clone, env=env, capture_output=True, text=True, timeout=120)
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(clone), where.stdout
    # Every test module imports (module-level data paths resolve) and the data tests pass.
    collect = subprocess.run([sys.executable, "-m", "pytest", "-q", "--collect-only", "-p", "no:cacheprovider",
                              "tests"], cwd=clone, env=env, capture_output=True, text=True, timeout=600)
    assert collect.returncode == 0, collect.stdout[-3000:] + collect.stderr[-2000:]
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *DATA_TESTS],
                         cwd=clone, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "skipped" not in run.stdout, run.stdout[-1000:]
