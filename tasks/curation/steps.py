"""Steps and the one runner that counts, times and samples them (datatrove's base block, built in).

A step is any callable with a `name`: `step(doc) -> doc | Drop(reason)`. It only
decides; the runner does the bookkeeping once for every step:

- the funnel: per step in / kept / dropped by reason (`tasks.curation.funnel` format);
- wall time per step, so a run shows where its time goes and each step's docs/s;
- the first `samples_per_reason` documents dropped for each (step, reason), in
  input order (so the same input gives the same samples), for a user to see
  what a filter removed — datatrove's exclusion writer without a second pipeline.

An exception inside a step is one dropped document (reason "error", counted in
`errors["doc_error"]`), never the end of the file.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Protocol

import pyarrow as pa

from tasks.curation.funnel import StageCounter

log = logging.getLogger(__name__)

# A dropped sample keeps this much of the document's text (HTML for drops
# before extraction): enough to judge the filter, bounded per sample.
SAMPLE_TEXT_CHARS = 10_000
DROPPED_SCHEMA = pa.schema([
    ("stage", pa.string()), ("reason", pa.string()), ("id", pa.string()), ("url", pa.string()),
    ("warc_file", pa.string()), ("text", pa.string()),
])


@dataclass(frozen=True, slots=True)
class Drop:
    """A step's verdict that the document leaves the pipeline, and why."""

    reason: str


class Step(Protocol):
    name: str

    def __call__(self, doc: Any) -> Any: ...  # the (possibly changed) doc, or a Drop


class FnStep:
    """A step from a plain function (for steps that need no state)."""

    def __init__(self, name: str, fn: Callable[[Any], Any]):
        self.name, self.fn = name, fn

    def __call__(self, doc: Any) -> Any:
        return self.fn(doc)


class StepRunner:
    """Runs documents through `steps` in order; keeps the funnel, the time and dropped samples.

    `describe(doc)` gives a dropped document's sample row (id, url, warc_file, text).
    Timed stages that are not steps (the WARC reader) are added with `add_time`.
    """

    # The clock of the per-stage times: wall time (the funnel's `seconds`); a profile sets
    # time.thread_time for CPU seconds per stage (benchmarks/curate_vs_datatrove.py).
    clock: Callable[[], float] = staticmethod(time.perf_counter)

    def __init__(self, steps: Iterable[Step], samples_per_reason: int = 0,
                 describe: Callable[[Any], dict[str, Any]] | None = None, source: str = ""):
        self.steps = list(steps)
        self.counters = {s.name: StageCounter(s.name) for s in self.steps}
        self.seconds: dict[str, float] = {s.name: 0.0 for s in self.steps}
        self.samples_per_reason = samples_per_reason
        self.describe = describe or (lambda doc: {"text": str(doc)})
        self.samples: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.errors: dict[str, int] = {}
        self.source = source

    def run(self, doc: Any) -> Any | None:
        """The document after every step, or None if a step dropped it."""
        for step in self.steps:
            counter = self.counters[step.name]
            counter.seen()
            t0 = self.clock()
            try:
                out = step(doc)
            except Exception as e:  # noqa: BLE001 — one bad document must not stop the file
                self.errors["doc_error"] = self.errors.get("doc_error", 0) + 1
                log.warning("%s: a document failed in %s: %s: %s", self.source, step.name,
                            type(e).__name__, e)
                out = Drop("error")
            finally:
                self.seconds[step.name] += self.clock() - t0
            if isinstance(out, Drop):
                counter.drop(out.reason)
                self._sample(step.name, out.reason, doc)
                return None
            counter.keep()
            doc = out
        return doc

    def _sample(self, stage: str, reason: str, doc: Any) -> None:
        kept = self.samples.setdefault((stage, reason), [])
        if len(kept) < self.samples_per_reason:
            row = {"stage": stage, "reason": reason, "id": "", "url": "", "warc_file": self.source,
                   "text": ""}
            row.update(self.describe(doc))
            row["text"] = (row.get("text") or "")[:SAMPLE_TEXT_CHARS]
            kept.append(row)

    def add_time(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds

    def stats(self, before: Iterable[StageCounter] = ()) -> dict[str, Any]:
        """The funnel of this file: `before` counters (e.g. the reader's), then the steps.

        `seconds` (wall time per stage) sits outside `stages` on purpose: the
        stages are a function of the input, the times are not.
        """
        counters = [*before, *(self.counters[s.name] for s in self.steps)]
        return {"stages": [c.as_dict() for c in counters], "errors": dict(sorted(self.errors.items())),
                "seconds": {c.name: round(self.seconds.get(c.name, 0.0), 4) for c in counters}}

    def samples_table(self) -> pa.Table:
        """The dropped samples, in step order then reason (schema DROPPED_SCHEMA)."""
        order = {s.name: i for i, s in enumerate(self.steps)}
        rows = [r for key in sorted(self.samples, key=lambda k: (order.get(k[0], -1), k[1]))
                for r in self.samples[key]]
        return pa.Table.from_pylist(rows, schema=DROPPED_SCHEMA)
