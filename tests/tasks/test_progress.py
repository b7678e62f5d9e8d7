"""Stage progress where users look: a line every 10 % in the flow run's log (read back from a
real Prefect API, through `prefect flow-run logs`) and a progress artifact kept current."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

from tasks.progress import StageProgress, chain, format_duration, next_mark, progress_line


def test_a_line_every_tenth_with_step_loss_rate_and_eta():
    now = [0.0]
    lines: list[str] = []

    class Sink:
        def info(self, msg, *args):
            lines.append(msg % args if args else msg)

    p = StageProgress("sft", 200, logger=Sink(), clock=lambda: now[0])
    for step in range(10, 201, 10):  # a loop that logs every 10 steps, and val metrics at the end
        now[0] += 2.0
        p({"train_loss": 3.0 - step / 100, "tokens_per_s": 1500.0}, step)
    p({"val_loss": 1.2}, 200)  # a second call at the last step says nothing new
    assert len(lines) == 10, lines
    assert lines[0] == "sft: step 20/200 (10%) · loss 2.8 · 1,500 tok/s · ETA 36s"
    assert lines[-1].startswith("sft: step 200/200 (100%) · loss 1 ·") and lines[-1].endswith("done")
    # a loop that reports only now and then still gets a line for each 10 % it crossed, not one per call
    assert [next_mark(d, 7) for d in (0, 3, 6)] == [1, 4, 7] and next_mark(0, 1000) == 100
    assert format_duration(3725) == "1h02m" and format_duration(65) == "1m05s"
    assert "ETA" not in progress_line("rl", "step", 0, 10, {}, None)
    # a resumed loop reports first at step 35: the rate is measured from there, not from step 0
    lines.clear()
    now[0] = 100.0
    p = StageProgress("pretrain", 60, logger=Sink(), clock=lambda: now[0])
    for step in range(35, 61):
        now[0] += 7.0
        p({"loss": 6.0}, step)
    assert lines[2].startswith("pretrain: step 42/60 (70%)") and lines[2].endswith("ETA 2m06s")  # 7 s × 18 steps


@contextmanager
def _info_reaches_the_api():
    """The suite runs with PREFECT_LOGGING_LEVEL=WARNING; a user's default is INFO."""
    lg = logging.getLogger("prefect")
    old = lg.level
    lg.setLevel(logging.INFO)
    try:
        yield
    finally:
        lg.setLevel(old)


def _flow_run_logs(flow_run_id: str) -> str:
    """What `prefect flow-run logs ID` prints (the CLI, against the same API)."""
    prefect = str(Path(sys.executable).parent / "prefect")  # the venv's CLI
    r = subprocess.run([prefect, "flow-run", "logs", flow_run_id], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PREFECT_LOGGING_LEVEL": "INFO"})
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def test_progress_lines_and_artifact_on_a_real_prefect_api(prefect_api):
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    seen: list[tuple[int, float]] = []

    @flow(name="progress-demo")
    def demo() -> str:
        from prefect.runtime import flow_run

        p = StageProgress("dpo", 20)
        log_fn = chain(lambda m, s: seen.append((s, m["loss"])), p)  # as tracked_stage hands it to a loop
        for step in range(1, 21):
            log_fn({"loss": 0.69 - step / 100, "tokens_per_s": 800.0}, step)
        p.finish()
        return str(flow_run.id)

    with _info_reaches_the_api():
        run_id = demo()
    assert len(seen) == 20  # the other callback still gets every record
    out = _flow_run_logs(run_id)
    lines = [ln for ln in out.splitlines() if "dpo: step" in ln]
    assert len(lines) == 10, out[-3000:]
    assert "dpo: step 2/20 (10%) · loss 0.67 · 800 tok/s · ETA" in lines[0]
    assert "dpo: step 20/20 (100%)" in lines[-1] and lines[-1].rstrip().endswith("done")
    with get_client(sync_client=True) as c:
        arts = c.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["dpo-progress"])))
    mine = [a for a in arts if str(a.flow_run_id) == run_id]
    assert mine and mine[0].type == "progress" and float(mine[0].data) == 100.0


def test_ray_worker_output_reaches_the_logs_without_dedup_notices_or_colours(prefect_api, ray_cluster, capfd):
    """Ray's driver-side echo of worker output ("[repeated 7x across cluster]", ANSI colour codes)
    stays out of what a run prints and of its Prefect log; the workers' own log lines reach the API."""
    import time

    from prefect import flow, get_run_logger, task
    from prefect_ray import RayTaskRunner

    @task(log_prints=False)  # a plain print: Ray's worker stdout, echoed by the driver
    def shout(i: int) -> int:
        print("the same line from every worker", flush=True)  # Ray would dedup and colour these
        get_run_logger().warning("worker %d done", i)  # the workers log at the suite's WARNING level
        return i

    @flow(name="ray-log-hygiene", log_prints=True, task_runner=RayTaskRunner(address="auto"))
    def noisy() -> str:
        from prefect.runtime import flow_run

        assert sum(f.result() for f in [shout.submit(i) for i in range(8)]) == 28
        return str(flow_run.id)

    run_id = noisy()
    time.sleep(2)  # the driver echoes worker output from a background thread
    printed = capfd.readouterr()
    echoed = printed.out + printed.err
    assert echoed.count("the same line from every worker") == 8  # echoed each time, not deduplicated
    assert "\x1b[" not in echoed and "across cluster" not in echoed, echoed[-3000:]
    logs = _flow_run_logs(run_id)
    assert "worker 3 done" in logs, logs[-3000:]
    assert "\x1b[" not in logs and "across cluster" not in logs, logs[-3000:]
