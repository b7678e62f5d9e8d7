"""process_warc end to end (real WARCs, a generated WARC with planted cases, the bad-input corpus)
and the funnel helpers."""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conf.curate import CurateConfig
from data.build_warc import build_warc, write_bad_inputs
from tasks.curation.funnel import STAGE_ORDER, empty_stats, funnel_chart, funnel_table, merge_stats
from tasks.curation.process import SCHEMA, process_warc

# datatrove's URLFilter reads tldextract's deprecated `registered_domain` on every URL.
pytestmark = pytest.mark.filterwarnings("ignore:The 'registered_domain' property:DeprecationWarning")
SAMPLES = Path(__file__).resolve().parents[3] / "data" / "samples"
MALWARE = SAMPLES / "blocklists" / "ut1_malware_urls.txt"
COLUMNS = ["id", "url", "domain", "date", "warc_file", "text", "language", "language_score"]


@pytest.fixture(scope="module")
def cfg():
    return CurateConfig(url_blocklist_files=[str(MALWARE)])


def check_funnel(stats):
    """Every stage: in == kept + dropped; each stage's input is the previous stage's output."""
    stages = stats["stages"]
    assert [s["stage"] for s in stages] == list(STAGE_ORDER)
    for prev, st in zip([None] + stages, stages):
        assert st["in"] == st["kept"] + sum(st["dropped"].values()), st
        if prev is not None:
            assert st["in"] == prev["kept"], (prev, st)


def run(src, tmp_path, cfg, name="out.parquet"):
    out = tmp_path / name
    stats = process_warc(str(src), str(out), cfg)
    check_funnel(stats)
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []  # no partial files left
    return pq.read_table(out), stats


def test_real_wget_warc(tmp_path, cfg):
    src = SAMPLES / "noncc_wget-2024_dolma_sample-0000.warc.gz"
    table, stats = run(src, tmp_path, cfg)
    assert table.schema.names == COLUMNS and table.schema.equals(SCHEMA)
    assert 8 <= table.num_rows <= 22
    rows = table.to_pylist()
    assert all(r["id"].startswith("<urn:uuid:") and r["url"].startswith("https://") for r in rows)
    assert all(r["language"] == "en" and r["language_score"] > 0.65 and r["text"] for r in rows)
    assert all(r["domain"] and r["domain"] in r["url"] and r["warc_file"] == str(src) for r in rows)
    assert stats["stages"][0]["in"] == 22 and stats["errors"] == {}


def test_real_cc_warc_drops_non_english(tmp_path, cfg):
    table, stats = run(SAMPLES / "cc-main-2020-34_resiliparse_warcfile.warc.gz", tmp_path, cfg)
    lang = stats["stages"][STAGE_ORDER.index("language")]
    gate = stats["stages"][STAGE_ORDER.index("language_gate")]  # the gate takes the confident ones
    assert lang["stage"] == "language"
    assert lang["dropped"].get("other_language", 0) + gate["dropped"].get("other_language", 0) >= 8
    assert all(r == "en" for r in table.column("language").to_pylist())


def test_wet_record_skips_extraction(tmp_path, cfg):
    en_cfg = cfg.model_copy(update={"languages": ["an", "es", "pt", "en"], "language_threshold": 0.3})
    _, stats = run(SAMPLES / "cc-main-2024-22_whirlwind.warc.wet.gz", tmp_path, en_cfg)
    assert stats["stages"][STAGE_ORDER.index("extract")]["kept"] == 1  # extract passes WET text through


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    path = tmp_path_factory.mktemp("gen") / "generated_120docs_seed3.warc.gz"
    return path, build_warc(path, n_docs=120, seed=3)


def test_generated_warc_planted_cases(tmp_path, cfg, generated):
    path, manifest = generated
    table, stats = run(path, tmp_path, cfg)
    kept = set(table.column("id").to_pylist())
    by_kind = Counter((info["kind"], rid in kept) for rid, info in manifest.items())
    for kind in ("blocked", "junk", "non_english", "repetitive"):
        assert by_kind[(kind, True)] == 0, kind
        assert by_kind[(kind, False)] > 0, kind
    assert by_kind[("clean", True)] >= 0.4 * (by_kind[("clean", True)] + by_kind[("clean", False)])
    funnel = {s["stage"]: s for s in stats["stages"]}
    n_junk = sum(i["kind"] == "junk" for i in manifest.values())
    n_blocked = sum(i["kind"] == "blocked" for i in manifest.values())
    assert sum(funnel["read"]["dropped"].values()) == n_junk
    assert sum(funnel["url_filter"]["dropped"].values()) == n_blocked
    assert set(funnel["url_filter"]["dropped"]) <= {"domain", "subdomain", "hard_blacklisted",
                                                    "soft_blacklisted", "blacklisted_subword", "user_url"}
    # PII pages are kept here (scrubbing happens later) and their text still carries it
    pii_kept = [rid for rid, i in manifest.items() if i["kind"] == "pii" and rid in kept]
    texts = dict(zip(table.column("id").to_pylist(), table.column("text").to_pylist()))
    assert pii_kept and all(manifest[r]["pii"][0] in texts[r] for r in pii_kept)


def test_generated_warc_is_deterministic(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = build_warc(tmp_path / "a" / "g.warc.gz", n_docs=30, seed=7)
    b = build_warc(tmp_path / "b" / "g.warc.gz", n_docs=30, seed=7)
    assert a == b
    assert (tmp_path / "a" / "g.warc.gz").read_bytes() == (tmp_path / "b" / "g.warc.gz").read_bytes()
    assert build_warc(tmp_path / "c.warc.gz", n_docs=30, seed=8) != a


def test_bad_input_corpus_counts_by_reason(tmp_path, cfg):
    bad = write_bad_inputs(tmp_path / "bad")
    all_stats = []
    for name, src in bad.items():
        table, stats = run(src, tmp_path, cfg, name=f"{name}.parquet")
        all_stats.append(stats)
    missing_table, missing = run(tmp_path / "does-not-exist.warc.gz", tmp_path, cfg, name="missing.parquet")
    assert missing_table.num_rows == 0 and missing_table.schema.equals(SCHEMA)  # written even if empty
    all_stats.append(missing)
    total = merge_stats(all_stats)
    check_funnel(total)
    assert total["errors"] == {"corrupt_record": 2, "missing_file": 1, "truncated_gzip": 1}
    assert total["stages"][0]["dropped"] == {
        "binary_body": 1, "corrupt_record": 1, "damaged_record": 1, "empty_body": 1, "non_html": 1,
        "too_large": 1, "undecodable": 1}
    assert total["stages"][0]["kept"] == 6 + 6 + 2 + 2


def test_resiliparse_option_and_disabled_filters(tmp_path, cfg):
    src = SAMPLES / "noncc_wget-2024_dolma_sample-0000.warc.gz"
    fast = cfg.model_copy(update={"extractor": "resiliparse", "gopher_quality": False, "fineweb": False})
    table, stats = run(src, tmp_path, fast)
    gq = stats["stages"][STAGE_ORDER.index("gopher_quality")]
    assert gq["in"] == gq["kept"] and table.num_rows > 0


def test_output_replaced_atomically(tmp_path, cfg):
    out = tmp_path / "shard.parquet"
    out.write_bytes(b"old partial junk")
    process_warc(str(SAMPLES / "cc-main-2024-22_whirlwind.warc.gz"), str(out), cfg)
    assert pq.read_table(out).num_rows == 0  # Aragonese page dropped; file is valid Parquet
    assert sorted(os.listdir(tmp_path)) == ["shard.dropped.parquet", "shard.parquet"]  # + its drop samples


def test_merge_stats_sums_and_keeps_order():
    a = {"stages": [{"stage": "read", "in": 5, "kept": 4, "dropped": {"empty_body": 1}},
                    {"stage": "url_filter", "in": 4, "kept": 4, "dropped": {}}],
         "errors": {"truncated_gzip": 1}}
    b = {"stages": [{"stage": "read", "in": 3, "kept": 1, "dropped": {"empty_body": 1, "non_html": 1},
                     "ignored": {"request": 3}},
                    {"stage": "url_filter", "in": 1, "kept": 0, "dropped": {"domain": 1}},
                    {"stage": "minhash_dedup", "in": 0, "kept": 0, "dropped": {}}],
         "errors": {"unreachable": 2}}
    m = merge_stats([a, b])
    assert [s["stage"] for s in m["stages"]] == ["read", "url_filter", "minhash_dedup"]
    assert m["stages"][0] == {"stage": "read", "in": 8, "kept": 5, "dropped": {"empty_body": 2, "non_html": 1},
                              "ignored": {"request": 3}}
    assert m["errors"] == {"truncated_gzip": 1, "unreachable": 2}
    assert merge_stats([m]) == m
    table = funnel_table(m)
    assert "| read | 8 | 5 | 3 | 62.5% | empty_body: 2, non_html: 1 |" in table
    assert "unreachable: 2" in table
    chart = funnel_chart(m)
    assert chart.startswith("```") and "url_filter" in chart and chart.count("\n") == 5  # fence, input + 3 stages, fence
    assert merge_stats([empty_stats()])["stages"][0] == {"stage": "read", "in": 0, "kept": 0, "dropped": {}}
