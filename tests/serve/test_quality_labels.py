"""The FineWeb-Edu labelling path (tasks/quality_classifier.label_with_endpoint) against the
project's own OpenAI-compatible server (`crawl2chat serve` on a toy model: its replies are
not real judgements and its context is 512 tokens, so the plumbing is what is tested)."""
from __future__ import annotations

import json
from pathlib import Path

from tasks.curation.quality_classifier import label_with_endpoint, parse_edu_score

from .conftest import MODEL_ID

C4 = Path(__file__).resolve().parents[2] / "data" / "text" / "llamafactory_c4_demo.jsonl"


def test_label_documents_with_own_server(server):
    docs = [json.loads(line)["text"] for line in C4.open()][:2]
    # a prompt the toy's context holds: replies come back and are parsed
    short = label_with_endpoint(docs, f"{server}/v1", MODEL_ID, max_tokens=16,
                                template="Score 0-5. {extract}", extract_chars=120)
    assert [lab["error"] for lab in short] == [None, None]
    assert all(lab["score"] == parse_edu_score(lab["reply"]) for lab in short)
    # the published prompt does not fit the toy's context: each document is refused (413) and
    # recorded as unlabelled, not a crash
    full = label_with_endpoint(docs, f"{server}/v1", MODEL_ID, max_tokens=16)
    assert all(lab["score"] is None and lab["error"].startswith("413") for lab in full)
