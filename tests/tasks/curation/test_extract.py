"""Main-text extraction on real pages (CC and wget WARCs, real text in generated boilerplate)."""
from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import pytest

from data.build_warc import load_english, wrap_html
from tasks.curation.extract import EXTRACTORS, extract_text, run_with_timeout, ExtractionTimeout
from tasks.curation.funnel import StageCounter
from tasks.curation.warc import iter_records

SAMPLES = Path(__file__).resolve().parents[3] / "data" / "samples"


@pytest.fixture(scope="module")
def real_pages():
    docs = list(iter_records(str(SAMPLES / "noncc_wget-2024_dolma_sample-0000.warc.gz"),
                             StageCounter("read"), {}))
    return {d.url: d.text for d in docs}


@pytest.mark.parametrize("extractor", ["trafilatura", "resiliparse"])
def test_real_pages_give_main_text(real_pages, extractor):
    text, reason = extract_text(real_pages["https://www.cs.washington.edu/people/faculty/weld"], extractor)
    assert reason is None and "entrepreneur" in text and "<div" not in text
    n_ok = sum(extract_text(h, extractor)[1] is None for h in real_pages.values())
    assert n_ok >= 0.8 * len(real_pages)


@pytest.mark.parametrize("extractor", ["trafilatura", "resiliparse"])
def test_boilerplate_is_dropped_and_article_kept(repo_data, extractor):
    paras = load_english(repo_data)[305]  # a Wikipedia window
    html = wrap_html(paras[0][:60], paras, random.Random(0))
    text, reason = extract_text(html, extractor)
    assert reason is None
    assert paras[1][:80] in text and paras[-1][-60:] in text
    assert "Accept all" not in text and "All rights reserved" not in text


def test_not_html_gives_no_text():
    assert extract_text("\x89PNG binary junk", "trafilatura") == (None, "no_text")
    with pytest.raises(ValueError, match="unknown extractor"):
        extract_text("<p>x</p>", "nope")


def test_timeout_on_a_10mb_page():
    filler = "<p>" + "All work and no play makes a very large page. " * 40 + "</p>\n"
    big = "<html><body>" + filler * (10_000_000 // len(filler)) + "</body></html>"
    t0 = time.perf_counter()
    text, reason = extract_text(big, "trafilatura", timeout_s=0.3)
    assert reason == "timeout" and text is None
    assert time.perf_counter() - t0 < 10  # interrupted, not run to the end


def _slow(_html, _precision):
    end = time.perf_counter() + 30
    try:
        while time.perf_counter() < end:
            pass
    except Exception:  # an extractor swallowing errors must not swallow the timeout
        pass
    return "never"


def test_timeout_fires_through_broad_except_and_restores_alarm(monkeypatch):
    import signal
    monkeypatch.setitem(EXTRACTORS, "slow", _slow)
    handler_before = signal.getsignal(signal.SIGALRM)
    prof_before = signal.getsignal(signal.SIGPROF)
    outer_before = signal.getitimer(signal.ITIMER_REAL)[0]  # e.g. pytest-timeout's own alarm
    t0 = time.perf_counter()
    assert extract_text("<p>x</p>", "slow", timeout_s=0.2) == (None, "timeout")
    assert time.perf_counter() - t0 < 5
    assert signal.getsignal(signal.SIGALRM) is handler_before  # the budget is CPU time: SIGPROF
    assert signal.getsignal(signal.SIGPROF) is prof_before and signal.getitimer(signal.ITIMER_PROF)[0] == 0
    outer_after = signal.getitimer(signal.ITIMER_REAL)[0]
    if outer_before:
        assert outer_before - 5 < outer_after <= outer_before  # outer timer kept running
    else:
        assert outer_after == 0.0


def test_timeout_off_the_main_thread(monkeypatch):
    monkeypatch.setitem(EXTRACTORS, "sleepy", lambda h, p: time.sleep(5) or "late")
    out = {}
    t = threading.Thread(target=lambda: out.update(r=extract_text("<p>x</p>", "sleepy", timeout_s=0.2)))
    t0 = time.perf_counter()
    t.start()
    t.join()
    assert out["r"] == (None, "timeout") and time.perf_counter() - t0 < 4
    box = {}

    def direct():
        try:
            run_with_timeout(lambda: time.sleep(3), 0.1)
        except ExtractionTimeout as e:
            box["e"] = e
    th = threading.Thread(target=direct)
    th.start()
    th.join()
    assert isinstance(box.get("e"), ExtractionTimeout)
