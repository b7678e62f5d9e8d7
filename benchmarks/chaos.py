"""Chaos: SIGKILL `crawl2chat pipeline` at random instants; the re-runs must end where an uninterrupted run ends.

    python benchmarks/chaos.py --kills 20 --seed 0            # the figures in docs/CONTRACTS.md
    python benchmarks/chaos.py --kills 2 --quick              # the short variant (tests/benchmarks)

1. An uninterrupted run of the command (steps shortened with `--set`) → ROOT/reference.
2. The same command → ROOT/chaos, its whole process group SIGKILLed `--kills` times at seeded
   random instants (`KillPlan`): instants uniform over the uninterrupted run's stage work; kill
   i lands at instant i's point of the recipe, timed within its stage from when that stage
   began in the attempt (its own Prefect store says when), and at the latest when the
   attempt sees that stage end; seeded ones land in start-up instead (as many as the
   uninterrupted run's share of start-up). Re-run after each kill; after the last kill it runs
   to completion. So the kills reach every stage and all `--kills` of them happen, however
   much faster or slower the machine runs than it did for the uninterrupted run.
3. Compare: sha256 of every final checkpoint, the curated Parquet, the tokenizer and token
   shards; eval.json's figures; the registered model versions (count per model and the
   sha256 of the weights under `@current`). Tracking: no MLflow run left RUNNING, no
   Prefect flow run left Running, each metric step once per run.

Both runs use their own run root (sqlite MLflow store + registry) and their own PREFECT_HOME
(each attempt starts the embedded Prefect API, which dies with the process group). Each attempt
starts its own local Ray (under RAY_TMPDIR=ROOT/<run>-ray: processes a kill leaves are counted,
then stopped), or joins `--ray-address` (the test suite's cluster: a kill takes the driver only).
Prints kills survived / outputs identical / time lost (chaos wall time − reference wall time).
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

# Steps shortened so 20 kills fit in minutes on a 2-core CPU machine; small checkpoint intervals
# so most kills land after a checkpoint (the interesting case), not only during start-up.
SETS = [
    "pretrain.max_steps=30", "pretrain.checkpoint_every=10", "pretrain.eval_every=15", "pretrain.eval_tokens=2048",
    "sft.steps=12", "sft.checkpoint_every=4", "sft.eval_every=6",
    "rl.steps=6", "rl.checkpoint_every=2", "rl.eval_every=6", "rl.eval_prompts=8", "rl.prompts_per_step=4",
    "rl.samples_per_prompt=4",
    "reward.steps=9", "reward.checkpoint_every=3", "reward.eval_every=9",
    "rlhf.steps=6", "rlhf.checkpoint_every=2", "rlhf.eval_every=3",
    "dpo.steps=6", "dpo.checkpoint_every=2", "dpo.eval_every=6",
    "probe.n_questions=8", "probe.batch_size=4",
    "evaluate.gsm8k_n=2", "evaluate.arithmetic_n=8", "evaluate.core_limit=4", "evaluate.chat_limit=2",
    "evaluate.honesty_n=4", "evaluate.compliance_n=2", "evaluate.n_samples=1", "evaluate.bpb_max_tokens=2048",
]
# --quick: the stages that hold every kind of state (curated shards, token shards, a pretrain and
# a post-training checkpoint), an eighth of the generated pages and steps cut further: the short
# variant the test suite runs.
QUICK_STAGES = "curate,tokenize,pretrain,sft"
QUICK_SETS = ["curate.generated_docs=100", "pretrain.max_steps=8",
              "pretrain.checkpoint_every=4", "sft.steps=4", "sft.checkpoint_every=2", "sft.eval_every=2"]
# Figures of eval.json that measure the clock, not the model.
VOLATILE = ("seconds", "wall", "time", "per_s", "_s\"", "run_id", "date", "created")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def command(root: Path, preset: str, sets: list[str], stages: str | None) -> list[str]:
    cmd = [sys.executable, "-m", "crawl2chat.cli", "pipeline", "--preset", preset, "--out", str(root)]
    if stages:
        cmd += ["--stages", stages]
    for s in sets:
        cmd += ["--set", s]
    return cmd


# ------------------------------------------------------------ when to kill
def _utc(ts: float) -> str:
    """A Unix time as Prefect's sqlite store writes timestamps (UTC, text), so the two compare as strings."""
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _ts(text: str) -> float:
    return datetime.datetime.fromisoformat(text).replace(tzinfo=datetime.UTC).timestamp()


def stage_runs(home: Path, since: float = 0.0) -> list[dict[str, Any]]:
    """The stage flow runs (subflows of the pipeline) that started at `since` or later, oldest first.

    Read from the attempt's own Prefect store (sqlite in WAL mode: a reader never blocks the
    server); a store that does not exist yet, or is busy, reads as no runs."""
    db = home / "prefect.db"
    if not db.exists():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1.0) as c:
            rows = c.execute(
                "select f.name, fr.state_type, fr.start_time, fr.end_time from flow_run fr join flow f on f.id = "
                "fr.flow_id where fr.parent_task_run_id is not null and fr.start_time >= ? order by fr.start_time",
                (_utc(since),)).fetchall()
    except sqlite3.Error:
        return []
    return [{"stage": n, "state": s, "start": _ts(a), "end": _ts(b) if b else None} for n, s, a, b in rows]


class KillPlan:
    """Seeded kill instants on the uninterrupted run's timeline, each anchored to its stage.

    Drawn once from the seed: which kills land in an attempt's start-up (as many as the share of
    the uninterrupted run spent starting up) and, for the others, instants uniform over the
    uninterrupted run's stage work, sorted. Instant t falls in stage S, `offset` seconds into it;
    its kill lands once S has run `offset` seconds in its attempt (less what earlier attempts
    already spent in S), so it reaches every stage in proportion to its time whatever a re-run's
    start-up costs, whatever work earlier kills undid and whatever the machine's load does to
    the other stages. Timing only within the stage keeps a kill inside it on a machine
    running faster or slower than it did for the uninterrupted run (CI's load varies by 40 %
    between the two runs): the delay is at most `cap` of what is left of S (its uninterrupted
    time less the time spent in it, ≥ `floor` of its time: a kill can undo work), and should
    S still end first, the kill lands the moment the attempt sees it end or a later stage
    start (`due`). An instant in a stage this run already finished lands at the start of the
    first stage it has not. A start-up kill lands a seeded share of the start-up the attempt
    before it measured. So every planned kill lands: `--kills` kills happen."""

    floor = 0.2
    cap = 0.5

    def __init__(self, rng: random.Random, kills: int, ref_stage_s: dict[str, float], startup_s: float):
        self.ref, self.startup = ref_stage_s, startup_s  # stage → seconds, in the order they ran
        work = sum(ref_stage_s.values())
        at_startup = set(rng.sample(range(kills), round(kills * startup_s / (startup_s + work))))
        self.phases = ["start-up" if i in at_startup else "work" for i in range(kills)]
        self.instants = sorted(rng.uniform(0, work) for _ in range(self.phases.count("work")))
        self.shares = [rng.random() for _ in range(kills)]
        self.i = self.j = 0

    def progress(self, home: Path) -> tuple[set[str], dict[str, float]]:
        """(the stages this run finished, seconds spent so far in each unfinished one)."""
        runs = stage_runs(home)
        done = {r["stage"] for r in runs if r["state"] == "COMPLETED"}
        spent: dict[str, float] = {}
        for r in runs:
            if r["stage"] not in done:
                spent[r["stage"]] = spent.get(r["stage"], 0.0) + ((r["end"] or r["start"]) - r["start"])
        return done, spent

    def locate(self, t: float) -> tuple[str, float]:
        """The stage instant t of the uninterrupted run's work falls in, and how far into it."""
        acc = 0.0
        for stage, secs in self.ref.items():
            if t < acc + secs:
                return stage, t - acc
            acc += secs
        stage = list(self.ref)[-1]
        return stage, self.ref[stage]

    def next(self, home: Path) -> dict[str, Any] | None:
        """{"phase": "start-up", "after_s": seconds after the attempt began} or {"phase": "work",
        "stage": S, "after_s": seconds after S began in the attempt, "instant_s": t}; None once
        all are planned."""
        if self.i >= len(self.phases):
            return None
        phase, share = self.phases[self.i], self.shares[self.i]
        self.i += 1
        if phase == "start-up":
            return {"phase": phase, "after_s": round(share * self.startup, 2)}
        t, self.j = self.instants[self.j], self.j + 1
        stage, offset = self.locate(t)
        done, spent = self.progress(home)
        if stage in done:
            stage = next((s for s in self.ref if s not in done), stage)
            after = 0.0
        else:
            secs, gone = self.ref[stage], spent.get(stage, 0.0)
            after = min(max(offset - gone, 0.0), self.cap * max(secs - gone, self.floor * secs))
        return {"phase": phase, "stage": stage, "after_s": round(after, 2), "instant_s": round(t, 1)}


ENDED = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


def due(plan: dict[str, Any] | None, order: list[str], t0: float, runs: list[dict[str, Any]], now: float) -> bool:
    """Whether `plan`'s kill is due `now` in an attempt begun at t0 whose stage runs so far are `runs`.

    A work kill is due once its stage has run `after_s` here, or has ended, or a stage after it
    in the recipe (`order`) has started: a stage that runs faster than planned is still killed
    before the attempt can finish."""
    if plan is None:
        return False
    if plan["phase"] == "start-up":
        return now - t0 >= plan["after_s"]
    target = plan["stage"]
    later = set(order[order.index(target) + 1:]) if target in order else set()
    for r in runs:
        if r["stage"] == target and (r["state"] in ENDED or now - r["start"] >= plan["after_s"]):
            return True
        if r["stage"] in later:
            return True
    return False


def attempt(cmd: list[str], env: dict[str, str], log: Path, home: Path, plan: dict[str, Any] | None,
            timeout: float, order: list[str] | None = None) -> dict[str, Any]:
    """Run `cmd` once in its own process group, SIGKILLing the group when `plan`'s kill is `due`."""
    t0 = time.time()
    status = None
    with open(log, "ab") as fh:
        fh.write(f"\n=== attempt at {time.strftime('%H:%M:%S')} kill plan={plan}\n".encode())
        fh.flush()
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        while status is None:
            try:
                proc.wait(timeout=0.25)
                status = f"exit {proc.returncode}"
                break
            except subprocess.TimeoutExpired:
                pass
            now = time.time()
            kill = due(plan, order or [], t0, stage_runs(home, t0) if plan is not None else [], now)
            if kill or now - t0 > timeout:
                os.killpg(proc.pid, signal.SIGKILL)  # the whole group: driver, Prefect API server, workers
                proc.wait()
                status = "killed" if kill else "timeout"
    secs = time.time() - t0
    runs = stage_runs(home, t0)
    began = runs[0]["start"] if runs else None
    return {"status": status, "seconds": round(secs, 1), "plan": plan,
            "startup_s": round(began - t0, 1) if began else None,
            "killed_in": (runs[-1]["stage"] if runs else "start-up") if status == "killed" else None}


def parquet_digest(path: Path, root: Path) -> str:
    """sha256 of a Parquet table's rows, with the run root in its values replaced (the generated
    WARC input lives under the run root, and curated rows name their WARC file)."""
    import pyarrow.parquet as pq

    rows = json.dumps(pq.read_table(path).to_pylist(), sort_keys=True, default=str).replace(str(root), "<root>")
    return hashlib.sha256(rows.encode()).hexdigest()


def outputs(root: Path) -> dict[str, str]:
    """sha256 of what must be identical: checkpoints, curated Parquet, tokenizer, token shards, probe data.

    Curated shards are keyed by position: their names end in a hash of the input's path."""
    out = {f"curate/curated/shard-{i}": parquet_digest(p, root)
           for i, p in enumerate(sorted((root / "curate" / "curated").glob("*.parquet")))}
    files: list[Path] = [root / "tokenize" / "tokenizer.json", *sorted((root / "tokenize" / "tokens").glob("*.bin"))]
    for stage in ("pretrain", "sft", "rl", "reward", "rlhf", "dpo"):
        for name in ("model.safetensors", "extra.safetensors"):
            files += sorted((root / stage).glob(f"**/final/{name}")) or []
    files += [root / "probe" / "refusal_sft.GENERATED.jsonl"]
    out.update({str(p.relative_to(root)): sha256(p) for p in files if p.exists()})
    return out


def _figures(doc: Any) -> Any:
    if isinstance(doc, dict):
        return {k: _figures(v) for k, v in doc.items() if not any(s in k for s in VOLATILE)}
    if isinstance(doc, list):
        return [_figures(v) for v in doc]
    return doc


def eval_figures(root: Path) -> str | None:
    p = root / "evaluate" / "eval.json"
    if not p.exists():
        return None
    return json.dumps(_figures(json.loads(p.read_text())), sort_keys=True).replace(str(root), "<root>")


def tracking(root: Path, prefect_home: Path) -> dict[str, Any]:
    """Registered versions, runs left RUNNING, metric steps logged twice, Prefect flow runs left Running."""
    db = root / "mlflow.db"
    out: dict[str, Any] = {"versions": {}, "running_runs": None, "killed_runs": None, "duplicate_steps": None,
                           "running_flow_runs": None, "crashed_flow_runs": None}
    if db.exists():
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
            for name, version, source, run_id in c.execute(
                    "select name, version, source, run_id from model_versions where current_stage != 'Deleted_Internal' "
                    "order by name, version"):
                out["versions"].setdefault(name, []).append(int(version))
            out["running_runs"] = c.execute("select count(*) from runs where status = 'RUNNING'").fetchone()[0]
            out["killed_runs"] = c.execute("select count(*) from runs where status = 'KILLED'").fetchone()[0]
            out["duplicate_steps"] = c.execute(  # `metrics` holds every point of every history
                "select count(*) from (select run_uuid, key, step from metrics "
                "group by run_uuid, key, step having count(*) > 1)").fetchone()[0]
    pdb = prefect_home / "prefect.db"
    if pdb.exists():
        with sqlite3.connect(f"file:{pdb}?mode=ro", uri=True) as c:
            out["running_flow_runs"] = c.execute("select count(*) from flow_run where state_type = 'RUNNING'").fetchone()[0]
            out["crashed_flow_runs"] = c.execute("select count(*) from flow_run where state_type = 'CRASHED'").fetchone()[0]
    return out


def registered_weights(root: Path) -> dict[str, str]:
    """sha256 of the weights each model's `@current` version points at (its logged artifact)."""
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{root}/mlflow.db")
    out = {}
    for rm in client.search_registered_models():
        try:
            mv = client.get_model_version_by_alias(rm.name, "current")
        except Exception:
            continue
        local = mlflow.artifacts.download_artifacts(run_id=mv.run_id, artifact_path="checkpoint",
                                                    tracking_uri=f"sqlite:///{root}/mlflow.db")
        out[rm.name] = sha256(Path(local) / "model.safetensors")
    return out


# ------------------------------------------------------------------------- main
def leftovers(mark: str) -> list[int]:
    """Live processes whose command line names `mark` (this run's Ray temp dir): what a kill left behind."""
    import psutil

    out = []
    for p in psutil.process_iter(["pid", "cmdline", "status"]):
        if p.info["status"] != psutil.STATUS_ZOMBIE and mark in " ".join(p.info["cmdline"] or []):
            out.append(p.pid)
    return out


def reap(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def run(args) -> dict[str, Any]:
    root = Path(args.out).resolve()
    root.mkdir(parents=True, exist_ok=True)
    sets = SETS + (QUICK_SETS if args.quick else []) + args.set
    stages = QUICK_STAGES if args.quick and not args.stages else args.stages
    base_env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL")}
    base_env.update({"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "PREFECT_SERVER_ANALYTICS_ENABLED":
                     "false", "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(REPO)})
    if args.ray_address:
        base_env["RAY_ADDRESS"] = args.ray_address
    result: dict[str, Any] = {"kills": args.kills, "seed": args.seed, "sets": sets, "stages": stages}
    runs: dict[str, Any] = {}
    for name in ("reference", "chaos"):
        run_root, home = root / name, root / f"{name}-prefect-home"
        if name == "reference" and args.reuse_reference:  # an earlier run's uninterrupted result, same command
            runs[name] = json.loads((root / "reference.json").read_text())["runs"]["reference"]
            runs[name].update(outputs=outputs(run_root), eval=eval_figures(run_root),
                              tracking=tracking(run_root, home), registered=registered_weights(run_root))
            continue
        if not args.keep:
            subprocess.run(["rm", "-rf", str(run_root), str(home)], check=True)
        # Without --ray-address each attempt starts its own local Ray, under its own temp dir, so
        # what a kill leaves of it can be found (and counted) by that path.
        ray_tmp = root / f"{name}-ray"
        env = {**base_env, "PREFECT_HOME": str(home), "RAY_TMPDIR": str(ray_tmp)}
        cmd = command(run_root, args.preset, sets, stages)
        log = root / f"{name}.log"
        planner = None
        if name == "chaos":
            ref = runs["reference"]
            # the reference's start-up sets the share of start-up kills and the first start-up guess;
            # after that, a start-up kill takes a share of the start-up the attempt before it measured
            planner = KillPlan(random.Random(args.seed), args.kills, ref["stage_seconds"],
                               ref["attempts"][0]["startup_s"] or 15.0)
        t0, kills, attempts, stray = time.time(), 0, [], 0
        while True:
            plan = planner.next(home) if planner else None
            a = attempt(cmd, env, log, home, plan, args.timeout, list(planner.ref) if planner else None)
            attempts.append(a)
            if planner and a["startup_s"] is not None:
                planner.startup = a["startup_s"]
            where = f" in {a['killed_in']}" if a["killed_in"] else ""
            print(f"{name}: attempt {len(attempts)}: {a['status']}{where} after {a['seconds']:.1f}s "
                  f"(start-up {a['startup_s']}s, plan {plan})", flush=True)
            if a["status"] == "killed":
                kills += 1
                if not args.ray_address:  # a kill takes only the driver of a joined cluster
                    time.sleep(2)  # Ray's own fate-sharing gets a moment to stop what it started
                left = leftovers(str(ray_tmp))
                stray = max(stray, len(left))
                reap(left)
                continue
            break
        runs[name] = {"seconds": round(time.time() - t0, 1), "kills": kills, "attempts": attempts,
                      "max_processes_left_by_a_kill": stray,
                      "stage_seconds": {r["stage"]: round(r["end"] - r["start"], 2) for r in stage_runs(home)
                                        if r["state"] == "COMPLETED"},
                      "final_status": attempts[-1]["status"], "outputs": outputs(run_root),
                      "eval": eval_figures(run_root), "tracking": tracking(run_root, home),
                      "registered": registered_weights(run_root)}
        if name == "reference":
            (root / "reference.json").write_text(json.dumps({"runs": {"reference": runs[name]}}, indent=2))
        if name == "reference" and runs[name]["final_status"] != "exit 0":
            raise SystemExit(f"chaos: the uninterrupted run failed ({runs[name]['final_status']}); see {log}")
    ref, ch = runs["reference"], runs["chaos"]
    same, diff = identical(runs)
    killed_in: dict[str, int] = {}
    for a in ch["attempts"]:
        if a["killed_in"]:
            killed_in[a["killed_in"]] = killed_in.get(a["killed_in"], 0) + 1
    result.update(runs=runs, differing_files=diff, identical=same, kills_survived=ch["kills"], killed_in=killed_in,
                  time_lost_s=round(ch["seconds"] - ref["seconds"], 1),
                  tracking_truthful=(ch["tracking"]["running_runs"] == 0 and ch["tracking"]["duplicate_steps"] == 0
                                     and ch["tracking"]["running_flow_runs"] in (0, None)))
    return result


def identical(runs: dict[str, Any]) -> tuple[dict[str, bool], list[str]]:
    """What is the same in the reference and the chaos run, and which output files differ."""
    ref, ch = runs["reference"], runs["chaos"]
    diff = sorted(k for k in set(ref["outputs"]) | set(ch["outputs"]) if ref["outputs"].get(k) != ch["outputs"].get(k))
    same = {"files": not diff, "eval": ref["eval"] == ch["eval"],
            "registered_weights": ref["registered"] == ch["registered"],
            "version_counts": {k: len(v) for k, v in ref["tracking"]["versions"].items()}
            == {k: len(v) for k, v in ch["tracking"]["versions"].items()}}
    return same, diff


def recompare(args) -> dict[str, Any]:
    """Compare the outputs a finished chaos run left under --out again (its --json has the attempts)."""
    res = json.loads(Path(args.json).read_text())
    root = Path(args.out).resolve()
    for name, r in res["runs"].items():
        r["outputs"], r["eval"] = outputs(root / name), eval_figures(root / name)
    res["identical"], res["differing_files"] = identical(res["runs"])
    return res


def build_parser() -> argparse.ArgumentParser:
    """The command line (tests/test_docs_commands.py parses the documented commands with it)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--preset", default="tiny")
    p.add_argument("--out", default=str(REPO / "runs" / "chaos"))
    p.add_argument("--stages", default=None, help="comma list (default: every stage)")
    p.add_argument("--set", action="append", default=[], metavar="STAGE.KEY=VALUE", help="more overrides")
    p.add_argument("--quick", action="store_true", help=f"stages {QUICK_STAGES}, fewer steps (the test's variant)")
    p.add_argument("--timeout", type=float, default=3600.0, help="limit of an uninterrupted attempt")
    p.add_argument("--ray-address", default=None, help="join this Ray cluster (default: each attempt starts its own)")
    p.add_argument("--keep", action="store_true", help="do not clear earlier outputs under --out")
    p.add_argument("--json", default=None, help="write the result here")
    p.add_argument("--reuse-reference", action="store_true",
                   help="take the uninterrupted run an earlier run left under --out (OUT/reference.json)")
    p.add_argument("--recompare", action="store_true", help="only compare again what a run left under --out "
                   "(reads and rewrites --json)")
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if args.kills < 0:
        p.error(f"--kills must be 0 or more, not {args.kills}")
    res = recompare(args) if args.recompare else run(args)
    ref, ch = res["runs"]["reference"], res["runs"]["chaos"]
    print(f"kills survived: {res['kills_survived']}/{res['kills']} (chaos ended: {ch['final_status']}, "
          f"{len(ch['attempts'])} attempts; reference: {ref['final_status']})")
    print(f"outputs identical: files {res['identical']['files']} ({len(ref['outputs'])} files"
          + (f"; differ: {res['differing_files']}" if res["differing_files"] else "") + f"), eval.json figures "
          f"{res['identical']['eval']}, registered weights {res['identical']['registered_weights']}, "
          f"versions per model {res['identical']['version_counts']} "
          f"(reference {ref['tracking']['versions']}, chaos {ch['tracking']['versions']})")
    t = ch["tracking"]
    print(f"tracking: MLflow runs RUNNING {t['running_runs']}, KILLED {t['killed_runs']}, metric steps logged twice "
          f"{t['duplicate_steps']}; Prefect flow runs Running {t['running_flow_runs']}, Crashed {t['crashed_flow_runs']}")
    print(f"processes a kill left behind (most after one kill): {ch['max_processes_left_by_a_kill']}")
    print(f"kills landed in: {res.get('killed_in')} (start-up = before the attempt's first stage ran)")
    print(f"time lost: {res['time_lost_s']:.1f}s (reference {ref['seconds']:.1f}s, chaos {ch['seconds']:.1f}s)")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(res, indent=2))
    ok = (ref["final_status"] == "exit 0" and ch["final_status"] == "exit 0" and all(
        v for v in res["identical"].values()) and res["tracking_truthful"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
