"""benchmarks/chaos.py: its kill plan (seeded, timed from each attempt's own start-up) and its
short variant: `crawl2chat pipeline` (curate → tokenize → pretrain → sft, tiny steps) SIGKILLed
twice at seeded random instants, re-run to completion, compared with an uninterrupted run:
identical curated Parquet, token shards, checkpoints and registered weights; tracking truthful."""
import importlib.util
import json
import random
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _chaos():
    spec = importlib.util.spec_from_file_location("chaos_bench", REPO / "benchmarks" / "chaos.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _prefect_store(home: Path, runs: list[tuple[str, str, float, float | None]], chaos) -> None:
    """The two tables of a Prefect sqlite store the plan reads: stage subflows with their states and times."""
    home.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(home / "prefect.db") as c:
        c.execute("create table flow (id text, name text)")
        c.execute("create table flow_run (flow_id text, parent_task_run_id text, state_type text, "
                  "start_time text, end_time text)")
        c.execute("insert into flow_run values ('p', null, 'CRASHED', ?, null)", (chaos._utc(1000.0),))  # the pipeline
        for i, (stage, state, start, end) in enumerate(runs):
            c.execute("insert into flow values (?, ?)", (str(i), stage))
            c.execute("insert into flow_run values (?, 't', ?, ?, ?)",
                      (str(i), state, chaos._utc(start), chaos._utc(end) if end else None))


def test_kill_plan_is_seeded_and_every_kill_lands_before_the_attempt_can_finish(tmp_path):
    chaos = _chaos()
    ref = {"curate": 20.0, "tokenize": 5.0, "pretrain": 30.0}

    def plans(home):
        plan = chaos.KillPlan(random.Random(0), 20, ref, startup_s=15.0)
        return plan, [plan.next(home) for _ in range(21)]

    plan, fresh = plans(tmp_path / "none")  # no store yet: all of the work is ahead
    assert fresh == plans(tmp_path / "none")[1] and fresh[-1] is None  # same seed, same plan; 20 kills, no more
    assert {p["phase"] for p in fresh[:-1]} == {"start-up", "work"}  # kills land in start-up and in the stages
    work = [p["after_s"] for p in fresh[:-1] if p["phase"] == "work"]
    assert all(0 <= p["after_s"] < 15.0 for p in fresh[:-1] if p["phase"] == "start-up")
    # on a fresh store a work kill lands at its instant (sorted, spanning the 55 s of work), below 0.9 × 55 s
    assert work == [round(min(t, 49.5), 2) for t in plan.instants] == sorted(work) and 45.0 < plan.instants[-1] < 55

    # curate and tokenize finished (25 s of the timeline), pretrain ran 27 s over killed attempts:
    # what is left is pretrain's floor (a kill can undo work), so a work kill lands within 0.9 × 6 s
    # of its first stage's start, at its instant's point of the recipe when that comes sooner
    home = tmp_path / "home"
    _prefect_store(home, [("curate", "COMPLETED", 1000.0, 1021.0), ("tokenize", "COMPLETED", 1022.0, 1027.0),
                          ("pretrain", "CRASHED", 1028.0, 1040.0), ("pretrain", "CRASHED", 1050.0, 1065.0)], chaos)
    assert [r["stage"] for r in chaos.stage_runs(home, since=1030.0)] == ["pretrain"]
    plan = chaos.KillPlan(random.Random(0), 20, ref, startup_s=15.0)
    assert plan.progress(home) == (25.0, 6.0)
    work = [p for p in (plan.next(home) for _ in range(20)) if p["phase"] == "work"]
    assert [p["after_s"] for p in work] == [round(min(max(t - 25.0, 0.0), 5.4), 2) for t in plan.instants]
    assert {p["after_s"] for p in work} >= {0.0, 5.4}  # instants in finished stages, and past what is left


@pytest.mark.slow
def test_pipeline_survives_two_random_kills(tmp_path, ray_cluster):
    out = tmp_path / "chaos"
    r = subprocess.run([sys.executable, "benchmarks/chaos.py", "--quick", "--kills", "2", "--seed", "1",
                        "--out", str(out), "--json", str(out / "chaos.json"),
                        "--ray-address", ray_cluster.get_runtime_context().gcs_address],
                       cwd=REPO, capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads((out / "chaos.json").read_text())
    assert res["kills_survived"] == 2, r.stdout  # every planned kill landed before the run could finish
    assert all(res["identical"].values()) and res["tracking_truthful"], r.stdout
    assert "kills survived:" in r.stdout and "time lost:" in r.stdout
