"""GENERATED curated-stage Parquet shards holding real C4 documents (data/text; ids, URLs, dates made up)."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def _c4_texts(repo_data: Path) -> list[str]:
    lines = (repo_data / "text" / "llamafactory_c4_demo.jsonl").read_text().splitlines()
    return [json.loads(line)["text"] for line in lines]


def write_generated_curated(repo_data: Path, out: Path, n_files: int = 3, per_file: int = 60) -> list[Path]:
    """Minimal shards (id, url, text) in `out`/curated, as the tokenize stage reads them."""
    texts = _c4_texts(repo_data)
    (out / "curated").mkdir(parents=True, exist_ok=True)
    paths = []
    for f in range(n_files):
        chunk = texts[f * per_file:(f + 1) * per_file]
        ids = [f"<urn:uuid:generated-{f}-{i}>" for i in range(len(chunk))]
        table = pa.table({"id": ids, "url": [f"https://example.org/{f}/{i}" for i in range(len(chunk))],
                          "text": chunk})
        path = out / "curated" / f"generated_c4_{f:05d}.parquet"
        pq.write_table(table, path)
        paths.append(path)
    return paths


def write_generated_shards(repo_data: Path, curated: Path, n_files: int, per_file: int, start: int = 0) -> list[Path]:
    """Full shards (every column of docs/CONTRACTS.md) in `curated`, files `start`.. (for incremental runs)."""
    texts = _c4_texts(repo_data)
    curated.mkdir(parents=True, exist_ok=True)
    paths = []
    for f in range(start, start + n_files):
        chunk = texts[f * per_file:(f + 1) * per_file]
        n = len(chunk)
        table = pa.table({
            "id": [f"<urn:uuid:generated-{f}-{i}>" for i in range(n)],
            "url": [f"https://c4-{f}.example.org/p/{i}" for i in range(n)],
            "domain": [f"c4-{f}.example.org"] * n, "date": ["2024-05-20T00:00:00Z"] * n,
            "warc_file": ["generated"] * n, "text": chunk, "language": ["en"] * n,
            "language_score": [0.9] * n, "dup_cluster_size": [1] * n, "pii_replacements": [0] * n})
        path = curated / f"{f:05d}-generated_c4-{f}.parquet"
        pq.write_table(table, path)
        paths.append(path)
    return paths
