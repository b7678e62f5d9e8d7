"""Main-text extraction from HTML: trafilatura (FineWeb's choice) or resiliparse (fast).

trafilatura runs as in datatrove's FineWeb recipe — favour precision, no
comments — but with `deduplicate=False`: its dedup cache is process-global and
drops paragraphs seen in *earlier* documents, so results would depend on which
pages a worker happened to see first (and benchmarks would measure the cache).

Every call has a time budget. In a process's main thread (a plain run, a Ray
worker's task) it is a budget of *CPU* time, enforced by a SIGPROF interval
timer (ITIMER_PROF counts the process's CPU time, not the clock): a worker
that shares its cores with others gets the same verdict as one alone, so the
output does not depend on the number of workers or the machine's load — with
a wall-clock timer (datatrove's), a busy 2-worker run dropped pages a 1-worker
run kept. No per-document subprocess either, which is what datatrove pays for.
Off the main thread (where signals cannot be used) the extraction runs in a
helper thread that is abandoned after a wall-clock timeout; input size is
already capped by the reader (`max_body_bytes`), which bounds its work.

A page over budget is retried once with a longer budget (`extract_with_retry`)
before it is dropped, and a drop for time has its own reason ("timeout").
"""
from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Callable

log = logging.getLogger(__name__)
# trafilatura logs an ERROR for every page it finds no text in; we count those
# as "no_text" in the funnel instead of flooding worker logs.
logging.getLogger("trafilatura").setLevel(logging.CRITICAL)


class ExtractionTimeout(BaseException):
    """The extractor ran past `extract_timeout_s` for one document.

    A BaseException so the extractor's own `except Exception` blocks cannot
    swallow it and carry on past the deadline.
    """


def _alarm(signum, frame):  # noqa: ARG001 — signal handler signature
    raise ExtractionTimeout()


def run_with_timeout(fn: Callable[[], str | None], timeout_s: float) -> str | None:
    """Run `fn()`; raise ExtractionTimeout once it has used `timeout_s` seconds of CPU (main thread)
    or of wall-clock time (other threads)."""
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGPROF, _alarm)
        # An outer CPU timer (a sampling profiler) may own ITIMER_PROF: suspend
        # it and give it back with the CPU time spent here deducted.
        t0 = time.process_time()
        outer_left, _ = signal.setitimer(signal.ITIMER_PROF, timeout_s)
        try:
            try:
                return fn()
            finally:
                signal.setitimer(signal.ITIMER_PROF, 0)
        finally:  # restore even if the timer fired just as fn() returned
            signal.signal(signal.SIGPROF, previous)
            if outer_left:
                signal.setitimer(signal.ITIMER_PROF, max(outer_left - (time.process_time() - t0), 1e-3))
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["out"] = fn()
        except BaseException as e:  # noqa: BLE001 — re-raised in the caller
            box["err"] = e

    t = threading.Thread(target=target, daemon=True, name="extract")
    t.start()
    t.join(timeout_s)
    if t.is_alive():
        log.warning("extraction thread still running after %.1fs; abandoned", timeout_s)
        raise ExtractionTimeout()
    if "err" in box:
        raise box["err"]  # type: ignore[misc]
    return box.get("out")  # type: ignore[return-value]


def extract_trafilatura(html: str, favour_precision: bool = True) -> str | None:
    """Main text with trafilatura, FineWeb settings (dedup off, see module doc)."""
    import trafilatura

    return trafilatura.extract(html, favor_precision=favour_precision, include_comments=False,
                               deduplicate=False)


def extract_resiliparse(html: str, favour_precision: bool = True) -> str | None:  # noqa: ARG001
    """Main text with resiliparse's main-content heuristics (several times faster)."""
    from resiliparse.extract.html2text import extract_plain_text

    return extract_plain_text(html, preserve_formatting=True, main_content=True, list_bullets=True,
                              alt_texts=False, links=False, form_fields=False, noscript=False)


EXTRACTORS = {"trafilatura": extract_trafilatura, "resiliparse": extract_resiliparse}


def extract_text(html: str, extractor: str = "trafilatura", timeout_s: float = 5.0,
                 favour_precision: bool = True) -> tuple[str | None, str | None]:
    """Extract main text; returns (text, None) or (None, drop reason).

    Reasons: "timeout", "extract_error" (the extractor raised), "no_text".
    """
    try:
        fn = EXTRACTORS[extractor]
    except KeyError:
        raise ValueError(f"unknown extractor {extractor!r}; choose one of {sorted(EXTRACTORS)}") from None
    try:
        text = run_with_timeout(lambda: fn(html, favour_precision), timeout_s)
    except ExtractionTimeout:
        return None, "timeout"
    except Exception as e:  # noqa: BLE001 — any extractor failure is one skipped page
        log.debug("extractor %s failed: %s: %s", extractor, type(e).__name__, e)
        return None, "extract_error"
    text = (text or "").strip()
    return (text, None) if text else (None, "no_text")


def extract_with_retry(html: str, extractor: str = "trafilatura", timeout_s: float = 5.0,
                       retry_timeout_s: float = 30.0, favour_precision: bool = True
                       ) -> tuple[str | None, str | None, bool]:
    """`extract_text` with one retry at `retry_timeout_s` after a timeout: (text, reason, retried).

    The retry makes the boundary case (a page just over budget on one run,
    just under on another) a non-issue: only a page that needs more than the
    long budget is dropped, with reason "timeout".
    """
    text, reason = extract_text(html, extractor, timeout_s, favour_precision)
    if reason != "timeout" or retry_timeout_s <= timeout_s:
        return text, reason, False
    text, reason = extract_text(html, extractor, retry_timeout_s, favour_precision)
    return text, reason, True
