"""The `index` stage: passages, the Tantivy index, incremental re-runs, the flow on a real Prefect API + MLflow.

Input: curated-style Parquet shards GENERATED here from real C4 web text in
data/text (URLs, ids and dates made up here, named `generated_*`).
"""
from __future__ import annotations

import json

import pyarrow.parquet as pq

from conf import load
from conf.index import IndexConfig
from lm.tools.search import SearchIndex, count_tokens
from tasks.index import split_passages
from tests.support.curated_data import write_generated_shards
from tests.support.search_index import build_index


def test_split_passages_closes_at_line_breaks_and_bounds_lengths():
    line = " ".join(f"w{i}" for i in range(12))
    text = "\n".join([line] * 10)  # 120 words in lines of 12
    ps = split_passages(text, words=30, max_words=60, min_words=5)
    assert [len(p.split()) for p in ps] == [36, 36, 36, 12]  # closes at the first line break past 30
    assert " ".join(" ".join(ps).split()) == " ".join(text.split())  # nothing lost or duplicated
    long_line = " ".join(f"x{i}" for i in range(100))
    assert [len(p.split()) for p in split_passages(long_line, 30, 60, 5)] == [30, 30, 30, 10]
    # a short tail joins the passage before it
    assert [len(p.split()) for p in split_passages(line * 1 + "\n" + "tail end", 10, 60, 5)] == [14]
    assert split_passages("   \n\n", 10, 60, 5) == []


def test_index_flow_builds_tracks_and_adds_only_new_shards(repo_data, tmp_path, prefect_api, mlflow_uri):
    import mlflow

    from flows.index import run_index

    data = tmp_path / "curate"
    first = write_generated_shards(repo_data, data / "curated", n_files=2, per_file=15)
    broken = data / "curated" / "00009-generated_broken.parquet"
    broken.write_bytes(first[0].read_bytes()[:100])  # unreadable: recorded, the rest indexed
    out = tmp_path / "index"
    over = {"passage_words": 60, "top_k": 2, "max_tokens": 80}

    m1 = run_index(str(data), str(out), preset=None, overrides=over)
    assert json.loads((out / "manifest.json").read_text()) == m1
    assert m1["new_shards"] == 2 and [f["source"] for f in m1["failed_inputs"]] == [str(broken.resolve())]
    per_shard = {s["source"]: s["passages"] for s in m1["shards"]}
    assert m1["passages"] == sum(per_shard.values()) == SearchIndex(out).num_passages > 30
    assert m1["documents"] == 30 and m1["tool"] == {"top_k": 2, "max_tokens": 80}
    # every passage keeps its document's URL, domain and date
    rows = pq.read_table(out / m1["shards"][0]["passages_path"]).to_pylist()
    assert all(r["url"].startswith("https://c4-0.example.org/p/") and r["date"].startswith("2024-05-20")
               and r["domain"] == "c4-0.example.org" and 0 < len(r["text"].split()) <= 300 for r in rows)

    runs = mlflow.search_runs(experiment_names=["crawl2chat"], output_format="list")
    assert [r.info.run_name for r in runs] == ["index"] and runs[0].info.run_id == m1["mlflow_run_id"]
    assert runs[0].data.tags["stage"] == "index" and runs[0].data.tags.get("prefect_flow_run_id")
    assert runs[0].data.metrics["passages"] == m1["passages"] and runs[0].data.params["passage_words"] == "60"

    # Nothing new (the broken shard still fails): the committed index is left as it was.
    broken.unlink()
    tv_files = {p.name: p.stat().st_mtime_ns for p in (out / "tantivy").iterdir()}
    m2 = run_index(str(data), str(out), preset=None, overrides=over)
    assert m2 == m1 and {p.name: p.stat().st_mtime_ns for p in (out / "tantivy").iterdir()} == tv_files
    assert len(mlflow.search_runs(experiment_names=["crawl2chat"], output_format="list")) == 1

    # One new shard: only its passages are read and added.
    third = write_generated_shards(repo_data, data / "curated", n_files=1, per_file=15, start=2)[0]
    m3 = run_index(str(data), str(out), preset=None, overrides=over)
    new = {s["source"]: s["passages"] for s in m3["shards"]}
    assert m3["new_shards"] == 1 and m3["added_passages"] == new[str(third.resolve())]
    assert m3["passages"] == m1["passages"] + new[str(third.resolve())] == SearchIndex(out).num_passages
    hits = SearchIndex(out).search("efficiency filters", k=50)
    assert len({h.passage_id for h in hits}) == len(hits)  # no passage indexed twice


def test_incremental_update_recovers_from_a_commit_not_yet_recorded_and_drops_gone_shards(repo_data, tmp_path):
    """A crash after the commit but before state.json: re-adding the shard replaces, never duplicates."""
    cfg = load(IndexConfig, None, {"passage_words": 60})
    shards = write_generated_shards(repo_data, tmp_path / "curated", n_files=2, per_file=10)
    out = tmp_path / "index"
    upd = build_index(out, shards, cfg)
    (out / "state.json").unlink()  # as if the run died right after committing
    again = build_index(out, shards, cfg)
    assert again["num_passages"] == upd["num_passages"] == SearchIndex(out).num_passages
    # A shard curate no longer lists is dropped from the index, its passages file removed.
    gone = again["state"][str(shards[0].resolve())]
    after = build_index(out, shards[1:], cfg)
    assert after["removed_shards"] == 1 and after["num_passages"] == upd["num_passages"] - gone["passages"]
    assert not (out / gone["passages_path"]).exists()
    assert all(not h.url.startswith("https://c4-0.") for h in SearchIndex(out).search("the", k=500))
    assert count_tokens("a b, c") == 4


def test_report_card_shows_the_index_and_search_figures(tmp_path):
    from tasks.report import build_report

    (tmp_path / "index").mkdir()
    (tmp_path / "index" / "manifest.json").write_text(json.dumps(
        {"documents": 30, "passages": 77, "new_shards": 2, "engine": "tantivy (BM25)", "wall_seconds": 1.5,
         "tool": {"top_k": 1, "max_tokens": 28}}))
    evaluation = {"models": {"sft": {"search_rate": 0.75, "search_grounded": 0.5, "search_cited": 0.25,
                                     "search_retrieved": 0.6, "search_n": 20}}}
    md = build_report(tmp_path, tmp_path / "report", evaluation, with_mlflow=False).read_text()
    assert "- **index → search tool**" in md and "The index holds 77 passages of 30 curated documents" in md
    assert "20 questions about passages held out of SFT" in md and "searched / grounded / cited: sft 0.75 / 0.50 / 0.25" in md
    assert "## index" in md and "| search_grounded | the same: answer taken from a returned passage | 0.5 |" in md
