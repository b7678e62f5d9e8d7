"""The fastText quality classifier (tasks/curation/quality_classifier.py): metrics, cut-offs, training, labels."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tasks.curation.quality_classifier import (DEFAULT_MODEL, edu_prompt, histogram, load_classifier, parse_edu_score,
                                      precision_recall, read_texts, roc_auc, score_texts, share_cutoff,
                                      train_classifier, windows)

DATA = Path(__file__).resolve().parents[3] / "data"


def test_metrics():
    labels = np.array([1, 1, 0, 0, 1, 0], dtype=bool)
    assert roc_auc(labels, np.array([0.9, 0.8, 0.1, 0.2, 0.7, 0.3])) == 1.0
    assert roc_auc(labels, np.array([0.5] * 6)) == 0.5  # ties count half
    assert precision_recall(labels, np.array([0.9, 0.2, 0.6, 0.1, 0.7, 0.3])) == (2 / 3, 2 / 3)


def test_share_cutoff_keeps_the_share():
    scores = np.linspace(0, 0.999, 1000)
    cut = share_cutoff([histogram(scores[:500]), histogram(scores[500:])], 0.25)
    assert abs((scores >= cut).mean() - 0.25) <= 0.002
    assert share_cutoff([histogram(scores)], 1.0) == 0.0


def test_edu_prompt_and_score_parsing():
    p = edu_prompt("x" * 5000)
    assert "additive 5-point scoring system" in p and "x" * 1000 in p and "x" * 1001 not in p
    assert parse_edu_score("Justification ... Educational score: 3") == 3
    assert parse_edu_score("**Educational score: 4**") == 4 and parse_edu_score("no idea") is None


def test_shipped_model_separates_reference_text_from_raw_pages():
    model = load_classifier(str(DEFAULT_MODEL))
    c4 = [json.loads(line)["text"] for line in (DATA / "text" / "llamafactory_c4_demo.jsonl").open()][:50]
    raw = read_texts(DATA / "samples" / "noncc_wget-2024_dolma_sample-0000.warc.gz")
    assert np.median(score_texts(c4, model)) > 0.9 and np.median(score_texts(raw, model)) < 0.1
    figures = json.loads((DATA / "quality" / "quality_fasttext.ftz.json").read_text())
    assert {"precision", "recall", "auc", "sources"} <= set(figures)


def test_train_small_model(tmp_path):
    wiki = read_texts(DATA / "text" / "llamafactory_wiki_demo.txt")[:40]
    speeches = read_texts(DATA / "text" / "tinyshakespeare.txt")[:600]  # any two kinds of real text
    shakespeare = ["\n\n".join(speeches[i:i + 15]) for i in range(0, len(speeches), 15)]
    assert len(windows(wiki, 100)) > 40
    fig = train_classifier(wiki, shakespeare, tmp_path / "m.ftz", window_words=100, epoch=5, quantize=False)
    assert fig["auc"] > 0.9 and Path(fig["model"]).exists()
    with pytest.raises(ValueError, match="need positive and negative"):
        train_classifier(wiki, [], tmp_path / "n.ftz")


def test_quality_train_command_refuses_without_text(tmp_path, capsys):
    from crawl2chat.cli import main

    assert main(["quality-train", "--out", str(tmp_path / "m.ftz")]) == 2
    assert "give --positive and --negative" in capsys.readouterr().err
    assert main(["quality-train", "--label-endpoint", "http://127.0.0.1:9/v1", "--out", str(tmp_path / "m.ftz")]) == 2
