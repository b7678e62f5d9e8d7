"""The language gate before extraction: tag stripping, the verdict on real pages, and that the
gate changes which pages are extracted but not which documents are kept."""
from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conf.curate import CurateConfig
from data.build_warc import CC_LANGUAGE_MIX, CC_LANGUAGE_WEIGHTS, build_warc
from tasks.curation.funnel import StageCounter
from tasks.curation.langid import gate_verdict, strip_tags
from tasks.curation.process import process_warc
from tasks.curation.warc import iter_records

pytestmark = pytest.mark.filterwarnings("ignore:The 'registered_domain' property:DeprecationWarning")
SAMPLES = Path(__file__).resolve().parents[2] / "data" / "samples"
CC = SAMPLES / "cc-main-2020-34_resiliparse_warcfile.warc.gz"


def test_strip_tags_keeps_only_visible_text():
    html = ('<html><head><title>T&amp;C</title><style>p{color:red}</style>'
            '<script>var x = "<p>not text</p>";</script></head>'
            '<body><!-- hidden --><p>Grüße&nbsp;aus <b>Köln</b></p>\n\n<div>zwei</div></body></html>')
    assert strip_tags(html) == "T&C Grüße aus Köln zwei"  # &nbsp; is whitespace too


def test_gate_on_real_cc_pages():
    pages = list(iter_records(str(CC), StageCounter("read"), {}))
    verdicts = {p.url: gate_verdict(p.text, ["en"], 0.8) for p in pages}
    gated = [u for u, (_, _, reason) in verdicts.items() if reason]
    assert len(gated) >= 8  # the file holds 10 pages in zh/ru/de/nl/fr
    assert all(verdicts[u][0] != "en" for u in gated)
    assert all(reason is None for lang, _, reason in verdicts.values() if lang == "en")
    assert gate_verdict(pages[0].text, None, 0.8)[2] is None  # no language list: nothing to gate
    assert gate_verdict(pages[0].text, ["en"], 1.0)[2] is None  # never that sure: everything passes


def _kept(src: Path, out: Path, gate: bool):
    cfg = CurateConfig(use_ut1_adult=False, language_gate=gate, dropped_samples_per_reason=0)
    stats = process_warc(str(src), str(out), cfg)
    return set(pq.read_table(out).column("id").to_pylist()), {s["stage"]: s for s in stats["stages"]}


def test_gate_skips_extraction_keeps_same_documents(tmp_path):
    src = tmp_path / "generated_ccmix_50docs_seed5.warc.gz"
    build_warc(src, n_docs=50, seed=5, mix=CC_LANGUAGE_MIX, language_weights=CC_LANGUAGE_WEIGHTS)
    plain, f_plain = _kept(src, tmp_path / "plain.parquet", gate=False)
    gated, f_gate = _kept(src, tmp_path / "gate.parquet", gate=True)
    assert f_plain["language_gate"]["in"] == f_plain["language_gate"]["kept"]  # off: pass-through
    skipped = f_gate["language_gate"]["dropped"].get("other_language", 0)
    assert skipped >= 15  # of ~26 non-English pages
    assert f_gate["extract"]["in"] == f_plain["extract"]["in"] - skipped
    assert plain and gated == plain


def test_english_article_on_a_foreign_language_site_is_not_skipped(repo_data):
    """The gate's risk case: page-level fastText says "not English", extraction would keep the article."""
    import random

    from data.build_warc import load_english, load_non_english, wrap_html
    from tasks.curation.langid import predict

    rng = random.Random(0)
    english, foreign = load_english(repo_data), load_non_english(repo_data)
    risky = []
    for paras in english[:60]:
        html = wrap_html(paras[0][:60], paras, rng)
        menu = "".join(f"<li>{s}</li>" for s in foreign["rus"][:4])
        html = html.replace("<body>", f"<body><nav><ul>{menu}</ul></nav>", 1)
        lang, score = predict(strip_tags(html))
        if lang != "en" and score >= 0.8:
            risky.append(html)
    assert len(risky) >= 3  # the whole-page verdict alone would have skipped these
    assert all(gate_verdict(h, ["en"], 0.8)[2] is None for h in risky)
