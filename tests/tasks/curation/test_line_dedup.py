"""Exact line dedup across the corpus (tasks/curation/line_dedup.py) and its place in finalize.

Documents are real C4 text; the boilerplate lines planted into them are GENERATED here.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tasks.curation.line_dedup import (apply_line_dedup, count_duplicates, doc_line_hashes, duplicate_hashes,
                              n_partitions, normalise_line, part_slice, partition_of, remove_lines,
                              shard_line_hashes)

C4 = Path(__file__).resolve().parents[3] / "data" / "text" / "llamafactory_c4_demo.jsonl"
BANNER = "We use cookies to improve your experience on our site. Accept all cookies."
NEWSLETTER = "Sign up for our newsletter to get the latest stories in your inbox."


@pytest.fixture(scope="module")
def c4() -> list[str]:
    return [json.loads(line)["text"] for line in C4.read_text().splitlines()][:60]


def test_normalise_and_exempt_short_lines():
    assert normalise_line("  We  use\tCOOKIES. ") == "we use cookies."
    hs = doc_line_hashes("Short line\n" + BANNER + "\n" + BANNER.upper(), min_chars=30)
    assert hs[0] is None and hs[1] == hs[2] is not None


def test_duplicates_counted_once_per_document():
    a = shard_line_hashes([BANNER + "\n" + BANNER + "\nonly in the first document, long enough"], 30)
    b = shard_line_hashes([NEWSLETTER + "\n" + BANNER], 30)
    dups = duplicate_hashes([a, b])
    assert dups.tolist() == sorted(doc_line_hashes(BANNER, 30))  # twice in one document is not "in two"


def test_partitions_are_hash_ranges():
    h = np.sort(np.random.default_rng(0).integers(0, 2**64 - 1, 5000, dtype=np.uint64))
    for n in (1, 2, 5):
        parts = partition_of(h, n)
        assert np.all(np.diff(parts) >= 0)
        assert sum(len(part_slice(h, p, n)) for p in range(n)) == len(h)
    assert n_partitions(0, 10) == 1 and n_partitions(25, 10) == 3


def test_remove_lines_keeps_order():
    text = "a first line that is long enough\n" + BANNER + "\nthe last line, also long enough"
    hs = doc_line_hashes(text, 30)
    assert remove_lines(text, hs, [False, True, False]) == (
        "a first line that is long enough\nthe last line, also long enough", 1)


def _corpus(c4):
    rng = random.Random(0)
    docs = []
    for i, d in enumerate(c4):
        lines = d.split("\n")
        if i % 3 == 0:
            lines.insert(rng.randint(0, len(lines)), BANNER)
        if i % 5 == 0:
            lines.append(NEWSLETTER)
        docs.append("\n".join(lines))
    docs.append(BANNER + "\n" + NEWSLETTER + "\nA page with little else on it.")  # left too short
    return docs


def _run(docs, tmp_path, n_shards, n_parts, tag):
    shards = [docs[i::n_shards] for i in range(n_shards)]
    paths = []
    for k, sh in enumerate(shards):
        paths.append(str(tmp_path / f"{tag}-{k}.npy"))
        np.save(paths[-1], shard_line_hashes(sh, 30))
    count_duplicates(paths, tmp_path / f"{tag}-dups", n_parts, map_fn=lambda f, calls: [f(*c) for c in calls])
    out = {}
    for sh in shards:
        texts, keep, counts, _ = apply_line_dedup(sh, tmp_path / f"{tag}-dups", n_parts, 30, 50)
        out.update({d: (t if k else None) for d, t, k in zip(sh, texts, keep)})
    return out


def test_result_independent_of_partitions_shards_and_order(tmp_path, c4):
    docs = _corpus(c4)
    base = _run(docs, tmp_path, 1, 1, "a")
    shuffled = list(docs)
    random.Random(1).shuffle(shuffled)
    assert _run(shuffled, tmp_path, 3, 4, "b") == base
    kept = [t for t in base.values() if t is not None]
    assert all(BANNER not in t and NEWSLETTER not in t for t in kept)
    assert base[docs[-1]] is None  # nothing left but boilerplate: dropped
    assert base[docs[1]] == docs[1]  # untouched where no line repeats


def test_finalize_runs_classifier_and_line_dedup(tmp_path, c4):
    """finalize with the line/score pass: quality_score column, low-quality cut, lines removed."""
    from tests.tasks.curation.test_finalize import Cfg, shard_table

    from tasks.curation.finalize import finalize_shard
    from tasks.curation.line_dedup import shard_pass

    class Full(Cfg):
        line_dedup_min_chars, line_dedup_min_words, quality_model = 30, 50, None

    from tasks.curation.quality_classifier import warc_texts

    # + the boilerplate of a real page (menus, footers): what the shipped classifier learnt to score low
    warc = Path(__file__).resolve().parents[3] / "data" / "samples" / "noncc_wget-2024_dolma_sample-0000.warc.gz"
    docs = _corpus(c4)[:20] + warc_texts(warc, "boilerplate")[:1]
    src = tmp_path / "pre.parquet"
    pq.write_table(shard_table(docs, 0), src)
    hp, sp = str(tmp_path / "h.npy"), str(tmp_path / "s.npy")
    res = shard_pass(str(src), 0, None, hp, sp, Full())
    assert res["documents"] == len(docs) and sum(res["histogram"]) == len(docs)
    count_duplicates([hp], tmp_path / "dups", 1)
    stats = finalize_shard(str(src), 0, None, str(tmp_path / "out.parquet"), Full(), str(tmp_path / "dups"), 1,
                           sp, 0.1)
    t = pq.read_table(tmp_path / "out.parquet")
    scores = t.column("quality_score").to_pylist()
    assert all(0.1 <= s <= 1 for s in scores)
    names = [s["stage"] for s in stats["stages"]]
    assert names == ["minhash_dedup", "quality_classifier", "line_dedup", "pii"]
    q, ld = stats["stages"][1], stats["stages"][2]
    assert q["dropped"]["low_quality"] >= 1  # the raw page
    assert ld["lines_removed"] >= 6 and ld["docs_changed"] >= 6
    assert not any(BANNER in x for x in t.column("text").to_pylist())


def test_count_on_ray(tmp_path, c4, ray_cluster):
    """The counting partitions run as Ray tasks and give the same duplicates as in-process."""
    docs = _corpus(c4)
    paths = []
    for k in range(2):
        paths.append(str(tmp_path / f"s{k}.npy"))
        np.save(paths[-1], shard_line_hashes(docs[k::2], 30))
    on_ray = count_duplicates(paths, tmp_path / "ray", 3)
    local = count_duplicates(paths, tmp_path / "local", 3, map_fn=lambda f, calls: [f(*c) for c in calls])
    assert on_ray == local and on_ray["duplicate_lines"] == 2
    for p in range(3):
        name = f"dups_{p:04d}-of-0003.npy"
        assert np.array_equal(np.load(tmp_path / "ray" / name), np.load(tmp_path / "local" / name))
