"""The step runner (counts, times, samples drops) and the dropped-samples file of process_warc."""
from __future__ import annotations

import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conf.curate import CurateConfig
from tasks.curation.funnel import STAGE_ORDER, funnel_table, merge_stats
from tasks.curation.process import dropped_path, process_warc
from tasks.curation.steps import DROPPED_SCHEMA, Drop, FnStep, StepRunner

pytestmark = pytest.mark.filterwarnings("ignore:The 'registered_domain' property:DeprecationWarning")
SAMPLES = Path(__file__).resolve().parents[3] / "data" / "samples"


def _steps():
    def short(doc):
        return Drop("too_short") if len(doc["text"]) < 5 else doc

    def upper(doc):
        if "boom" in doc["text"]:
            raise RuntimeError("step bug")
        time.sleep(0.002)
        return {**doc, "text": doc["text"].upper()}

    def vowels(doc):
        return Drop("no_vowel") if not set("AEIOU") & set(doc["text"]) else doc
    return [FnStep("short", short), FnStep("upper", upper), FnStep("vowels", vowels)]


def test_runner_counts_times_and_keeps_first_samples_per_reason():
    docs = [{"id": f"d{i}", "url": f"u{i}", "text": t} for i, t in enumerate(
        ["hi", "hello world", "ok", "rhythm dry", "x", "boom box", "nymph crypt", "a cat sat"])]
    runner = StepRunner(_steps(), samples_per_reason=2,
                        describe=lambda d: {"id": d["id"], "url": d["url"], "text": d["text"]}, source="f.warc")
    out = [runner.run(d) for d in docs]
    assert [o["text"] for o in out if o] == ["HELLO WORLD", "A CAT SAT"]
    stats = runner.stats()
    assert stats["stages"] == [
        {"stage": "short", "in": 8, "kept": 5, "dropped": {"too_short": 3}},
        {"stage": "upper", "in": 5, "kept": 4, "dropped": {"error": 1}},
        {"stage": "vowels", "in": 4, "kept": 2, "dropped": {"no_vowel": 2}}]
    assert stats["errors"] == {"doc_error": 1}
    assert stats["seconds"]["upper"] >= 4 * 0.002 and set(stats["seconds"]) == {"short", "upper", "vowels"}
    table = runner.samples_table()
    assert table.schema.equals(DROPPED_SCHEMA)
    rows = [(r["stage"], r["reason"], r["id"]) for r in table.to_pylist()]
    # first two per reason, in input order; the vowel drop shows the text as that step saw it
    assert rows == [("short", "too_short", "d0"), ("short", "too_short", "d2"), ("upper", "error", "d5"),
                    ("vowels", "no_vowel", "d3"), ("vowels", "no_vowel", "d6")]
    assert table.to_pylist()[3]["text"] == "RHYTHM DRY" and table.to_pylist()[3]["warc_file"] == "f.warc"
    merged = merge_stats([stats, stats])
    assert merged["seconds"]["upper"] == pytest.approx(2 * stats["seconds"]["upper"], abs=1e-3)
    assert "| upper | 10 | 8 | 2 | 80.0% | error: 2 |" in funnel_table(merged)  # + s and docs/s columns


def test_no_samples_when_off():
    runner = StepRunner(_steps(), samples_per_reason=0)
    runner.run({"text": "x"})
    assert runner.samples_table().num_rows == 0


def test_process_warc_writes_dropped_samples(tmp_path):
    cfg = CurateConfig(use_ut1_adult=False, dropped_samples_per_reason=3)
    src = SAMPLES / "cc-main-2020-34_resiliparse_warcfile.warc.gz"
    out = tmp_path / "00000-cc.parquet"
    stats = process_warc(str(src), str(out), cfg)
    kept = set(pq.read_table(out).column("id").to_pylist())
    dropped = pq.read_table(dropped_path(str(out))).to_pylist()
    assert dropped_path(str(out)) == str(tmp_path / "00000-cc.dropped.parquet")
    by = {}
    for r in dropped:
        by.setdefault((r["stage"], r["reason"]), []).append(r)
    funnel = {s["stage"]: s for s in stats["stages"]}
    for stage, st in funnel.items():  # min(N, dropped) samples for every reason the funnel counts
        for reason, n in st["dropped"].items():
            if stage != "read":  # the reader's drops (junk records) are counted, not sampled
                assert len(by[(stage, reason)]) == min(3, n), (stage, reason)
    assert len(by[("language_gate", "other_language")]) == 3  # 10 non-English pages in this file
    assert by[("language_gate", "other_language")][0]["text"].lstrip().startswith("<")  # HTML: before extraction
    assert all(r["id"] not in kept and r["url"].startswith("http") and r["text"] for r in dropped)
    assert all(r["warc_file"] == str(src) for r in dropped)
    assert set(stats["seconds"]) == set(STAGE_ORDER) and stats["seconds"]["extract"] > 0
