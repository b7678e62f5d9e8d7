"""Progress of a long stage where people look: its Prefect flow-run log and a progress artifact.

`StageProgress(stage, total, unit)` is a callback for any loop: call it with the
units done so far (and the figures of the moment: loss, tokens/s, ...). It writes a
line to the run's log at every 10 % of the work (and at the end):

    pretrain: step 45/150 (30%) · loss 5.412 · 10,234 tok/s · ETA 1m02s

so `prefect flow-run logs <id>` and the UI show it, and it keeps the Prefect progress
artifact `<stage>-progress` current (0–100). As a training loop's `log_fn(metrics, step)`
it takes the loop's own metric keys. The loops in lm/ stay Prefect-free: the flows and
tasks build this and hand it over as a plain callable. Outside a Prefect run it logs
to the Python logger `crawl2chat.progress` and creates no artifact.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("crawl2chat.progress")

# The loops' metric keys shown in a progress line, first match wins per figure.
LOSS_KEYS = ("loss", "train_loss")
RATE_KEYS = (("tokens_per_s", "tok/s"), ("gen_tokens_per_s", "generated tok/s"), ("docs_per_s", "docs/s"))
EXTRA_KEYS = (("reward_mean", "reward"), ("val_loss", "val loss"), ("val_bpb", "val bpb"),
              ("val_accuracy", "held-out acc"), ("documents", "documents"), ("n_tokens", "tokens"))


def format_duration(seconds: float) -> str:
    """'45s', '3m05s', '1h02m'."""
    s = int(round(max(0.0, seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _num(v: float) -> str:
    if abs(v) >= 100 or float(v).is_integer():
        return f"{v:,.0f}"
    return f"{v:.4g}" if abs(v) < 10 else f"{v:.1f}"


def progress_line(stage: str, unit: str, done: int, total: int, figures: dict[str, Any],
                  eta_s: float | None) -> str:
    """'pretrain: step 45/150 (30%) · loss 5.412 · 10,234 tok/s · ETA 1m02s' (pure)."""
    pct = 100.0 * done / total if total else 100.0
    parts = [f"{stage}: {unit} {done}/{total} ({pct:.0f}%)"]
    loss = next((figures[k] for k in LOSS_KEYS if _finite(figures.get(k))), None)
    if loss is not None:
        parts.append(f"loss {loss:.4g}")
    for key, label in EXTRA_KEYS:
        if _finite(figures.get(key)):
            parts.append(f"{label} {_num(float(figures[key]))}")
    rate = next(((figures[k], label) for k, label in RATE_KEYS if _finite(figures.get(k))), None)
    if rate is not None:
        parts.append(f"{_num(float(rate[0]))} {rate[1]}")
    if done >= total:
        parts.append("done")
    elif eta_s is not None:
        parts.append(f"ETA {format_duration(eta_s)}")
    return " · ".join(parts)


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def next_mark(done: int, total: int, every: float = 0.1) -> int:
    """The smallest count past `done` that crosses the next `every` fraction of `total` (pure)."""
    if total <= 0:
        return 1
    k = math.floor(done / (total * every) + 1e-9) + 1
    return min(total, max(done + 1, math.ceil(k * total * every - 1e-9)))


def _run_logger():
    """The current Prefect run's logger (its lines reach the API), else None."""
    try:
        from prefect import get_run_logger
        from prefect.exceptions import MissingContextError
    except ImportError:  # a bare GPU box: no Prefect
        return None
    try:
        return get_run_logger()
    except MissingContextError:
        return None


class StageProgress:
    """A progress callback: `p(metrics, done)` (a loop's log_fn) or `p.update(done, **figures)`."""

    def __init__(self, stage: str, total: int, unit: str = "step", *, every: float = 0.1, start: int = 0,
                 artifact: bool = True, logger: Any = None, clock: Callable[[], float] = time.monotonic):
        self.stage, self.total, self.unit, self.every = stage, max(0, int(total)), unit, every
        self.clock = clock
        run_logger = _run_logger()
        self.logger = logger or run_logger or log
        self.t0, self.start = clock(), start
        self.mark = next_mark(start, self.total, every)
        self.figures: dict[str, Any] = {}
        self.lines: list[str] = []
        self.done = start
        self._artifact_id = None
        self._first: tuple[float, int] | None = None  # (time, units done) of the first report
        self._last_pct = -1
        if artifact and run_logger is not None:  # in a Prefect run
            self._artifact_id = self._create_artifact()

    # ---------------------------------------------------------------- API
    def __call__(self, metrics: dict[str, Any], step: int) -> None:
        self.update(step, **metrics)

    def update(self, done: int, **figures: Any) -> None:
        """Record `done` units (absolute, not a delta) and the figures of the moment."""
        self.figures.update({k: v for k, v in figures.items() if _finite(v)})
        self.done = max(self.done, int(done))
        if self._first is None:
            self._first = (self.clock(), self.done)
        if self.done >= self.mark or self.done >= self.total:
            if self.lines and self.done >= self.total and self.lines[-1].endswith("done"):
                return  # the end is said once (a loop may call again at the last step with val metrics)
            self._emit()
            self.mark = next_mark(self.done, self.total, self.every)
        self._update_artifact()

    def eta(self) -> float | None:
        """Seconds left at the rate since the first report (a resumed loop's first report comes late),
        or since this object was made while there is one report only; None before any unit."""
        t0, d0 = self._first if self._first and self.done > self._first[1] else (self.t0, self.start)
        n = self.done - d0
        if n <= 0:
            return None
        return (self.clock() - t0) / n * max(0, self.total - self.done)

    def finish(self) -> None:
        """The work is over: the artifact goes to 100 %; a loop that stopped early says where."""
        if self.done < self.total:
            line = f"{self.stage}: stopped at {self.unit} {self.done}/{self.total}, before the planned end"
            self.lines.append(line)
            self.logger.info(line)
        self.done = max(self.done, self.total)
        self._update_artifact(force=True)

    # ---------------------------------------------------------------- output
    def _emit(self) -> None:
        line = progress_line(self.stage, self.unit, min(self.done, self.total), self.total, self.figures, self.eta())
        self.lines.append(line)
        self.logger.info(line)

    def _create_artifact(self):
        try:
            from prefect.artifacts import create_progress_artifact

            key = "".join(c if c.isalnum() else "-" for c in f"{self.stage}-progress".lower())
            return create_progress_artifact(progress=0.0, key=key,
                                            description=f"{self.stage}: {self.unit}s done of {self.total}")
        except Exception as e:  # a view, never a reason to fail the stage
            log.warning("no progress artifact for %s: %s", self.stage, e)
            return None

    def _update_artifact(self, force: bool = False) -> None:
        if self._artifact_id is None:
            return
        pct = int(100 * min(self.done, self.total) / self.total) if self.total else 100
        if pct == self._last_pct and not force:
            return
        self._last_pct = pct
        try:
            from prefect.artifacts import update_progress_artifact

            update_progress_artifact(self._artifact_id, progress=float(pct))
        except Exception as e:
            log.warning("progress artifact of %s not updated: %s", self.stage, e)
            self._artifact_id = None


def chain(*fns: Callable[[dict[str, Any], int], None] | None) -> Callable[[dict[str, Any], int], None]:
    """One log_fn(metrics, step) calling each of `fns` in turn (None skipped)."""
    live = [f for f in fns if f is not None]

    def call(metrics: dict[str, Any], step: int) -> None:
        for f in live:
            f(metrics, step)
    return call
