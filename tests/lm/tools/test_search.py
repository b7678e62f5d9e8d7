"""The search tool (lm/tools/search.py), its GENERATED SFT data and its eval (lm/datasets/search.py).

The index is built here (tasks/index.py, no Prefect) from curated-style shards
GENERATED from real C4 web text in data/text (made-up URLs and ids).
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import torch

from conf import load
from conf.index import IndexConfig
from lm.chat import ChatRenderer
from lm.tools.search import SearchTool, count_tokens, format_hits, Hit, truncate_tokens
from lm.datasets.search import (SearchDataStats, generate_items, generate_search, grade_reply, is_heldout,
                            longest_copy, read_passages, search_eval, split_completion)
from lm.posttrain.sft_data import SkipStats, load_sources
from lm.tokenizer import Tokenizer
from lm.tools import default_tools
from tests.support.curated_data import write_generated_shards
from tests.support.search_index import build_index


URL = re.compile(r"https?://\S+")


@pytest.fixture(scope="module")
def index_dir(repo_data, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("search")
    shards = write_generated_shards(repo_data, root / "curated", n_files=2, per_file=40)
    cfg = load(IndexConfig, None, {"passage_words": 60, "top_k": 2, "max_tokens": 60})
    build_index(root / "index", shards, cfg)
    return root / "index"


@pytest.fixture(scope="module")
def tok(index_dir) -> Tokenizer:
    return Tokenizer.train([p["text"] for p in read_passages(index_dir)], vocab_size=600)


def test_search_returns_urled_passages_within_the_budget(index_dir):
    tool = SearchTool(index_dir)
    out = tool("air cleaners filters")
    assert tool.top_k == 2 and tool.max_tokens == 60  # read from the index manifest
    assert count_tokens(out) <= 60 and 1 <= len(tool.last_hits) <= 2
    urls = URL.findall(out)
    assert urls and [h.url for h in tool.last_hits] == urls[:len(tool.last_hits)]
    assert out.startswith("[1] https://c4-") and "(2024-05-20)" in out
    assert any(w in out.lower() for w in ("air", "filter", "cleaner"))
    # a bigger budget shows more of the same passages, still within it
    wide = SearchTool(index_dir, top_k=3, max_tokens=400)("air cleaners filters")
    assert count_tokens(wide) <= 400 and len(wide) > len(out)
    # through the one registry, as the engine calls it
    assert default_tools(search=index_dir).run("search: air cleaners filters") == out


@pytest.mark.parametrize("query", ["text:(", "a^", '"unclosed', "nofield:x", "url:[a TO", "AND", ""])
def test_bad_queries_come_back_as_error_strings(index_dir, query):
    out = default_tools(search=index_dir).run(f"search: {query}")
    assert out.startswith("error:") and "\n" not in out


def test_missing_index_and_long_query_are_error_strings(tmp_path, index_dir):
    assert SearchTool(tmp_path)("anything").startswith("error: no complete search index")
    assert SearchTool(index_dir)("x" * 1000).startswith("error: search query longer")


def test_format_hits_keeps_one_url_and_cuts_at_a_whole_piece():
    hits = [Hit("https://a.example/x", "", "a.example", "2024-01-02", "one two three four five six", 1.0),
            Hit("https://b.example/y", "", "b.example", "", "seven eight", 0.5)]
    text, shown = format_hits(hits, max_tokens=3)  # smaller than a header: the first URL still shows
    assert text.startswith("[1] https://a.example/x") and len(shown) == 1
    text, shown = format_hits(hits, max_tokens=40)  # 25 pieces for the first; the second's header needs 12 + 4
    assert len(shown) == 1 and count_tokens(text) == 25
    text, shown = format_hits(hits, max_tokens=45)
    assert "[2] https://b.example/y\nseven eight" in text and count_tokens(text) <= 45 and len(shown) == 2
    assert truncate_tokens("alpha, beta gamma", 3) == "alpha, beta"


def test_generated_conversations_copy_the_returned_passage_and_mask_the_tool_output(index_dir, tok):
    stats = SearchDataStats()
    items = generate_items(index_dir, 20, "train", stats=stats)
    assert len(items) == stats.kept >= 10
    docs = {p["passage_id"]: p["doc_id"] for p in read_passages(index_dir)}
    assert not any(is_heldout(docs[it.passage_id], 0.2) for it in items)  # held-in documents only
    evals = generate_items(index_dir, 20, "eval", require_answer=False)
    assert evals and all(is_heldout(docs[it.passage_id], 0.2) for it in evals)
    r = ChatRenderer(tok)
    for it in items:
        assert it.url in it.tool_output and it.answer.endswith(f"Source: {it.url}")
        span = it.answer.rsplit("\nSource:", 1)[0]
        assert span in it.tool_output.replace("\n", " ")  # copied from what the tool returned
        assert SearchTool(index_dir)(it.query) == it.tool_output  # what the engine would force
        g = grade_reply([f"search: {it.query}"], [it.tool_output], it.answer, it.url)
        assert g == {"searched": True, "grounded": True, "cited": True, "retrieved": True}
        rendered = r.render(it.conversation())
        o_start, o_end = tok.encode_special("<|output_start|>"), tok.encode_special("<|output_end|>")
        a, b = rendered.ids.index(o_start), rendered.ids.index(o_end)
        assert not any(rendered.mask[a:b + 1])  # the forced output is never trained on
        t_start = rendered.ids.index(tok.encode_special("<|tool_start|>"))
        assert all(rendered.mask[t_start:a]) and all(rendered.mask[b + 1:])  # call and answer are
        assert tok.decode(rendered.ids[t_start + 1:a - 1]) == f"search: {it.query}"


def test_sft_mixture_takes_search_conversations_at_its_ratio(index_dir, tok):
    stats = SkipStats()
    convs = load_sources({}, stats, n_identity=40, n_arithmetic=40, search_index=str(index_dir), search_ratio=0.2,
                         tokenizer=tok, max_len=400)
    n = sum(1 for s, _ in convs if s == "generated_search")
    assert n == round(0.2 / 0.8 * 80) == 20
    fit = generate_search(index_dir, 50, tokenizer=tok, max_len=120, stats=(st := SearchDataStats()))
    assert st.skipped["too_long"] > 0 and all(len(ChatRenderer(tok).render(c)) <= 120 for c in fit)


def test_grading_a_known_reply():
    out = "[1] https://x.example/a (2024-05-20)\nThe heat pump moves warm air from outside into the house in winter."
    calls = ["search: heat pump winter"]
    good = "The heat pump moves warm air from outside into the house.\nSource: https://x.example/a"
    assert grade_reply(calls, [out], good, "https://x.example/a") == {
        "searched": True, "grounded": True, "cited": True, "retrieved": True}
    made_up = "Pumps are loud and cost a lot of money. Source: https://y.example/b"
    assert grade_reply(calls, [out], made_up, "https://x.example/a") == {
        "searched": True, "grounded": False, "cited": False, "retrieved": True}
    # no search call: nothing returned, so nothing is grounded or cited even if the words match
    assert grade_reply([], [], good) == {"searched": False, "grounded": False, "cited": False, "retrieved": False}
    # an error from the tool returns nothing to ground on
    assert grade_reply(calls, ["error: cannot parse"], good)["grounded"] is False
    assert longest_copy("a b c d e", "x b c d y") == 3


def test_split_completion_and_search_eval_run_on_a_real_model(index_dir, tok):
    from lm.engine import Engine
    from lm.model import GPT, GPTConfig

    sp = tok.encode_special
    out = "[1] https://x.example/a\nwarm air"
    tokens = [*tok.encode("Let me look."), sp("<|tool_start|>"), *tok.encode("search: warm air"), sp("<|tool_end|>"),
              sp("<|output_start|>"), *tok.encode(out), sp("<|output_end|>"), *tok.encode("warm air, see "),
              *tok.encode("https://x.example/a"), sp("<|assistant_end|>")]
    forced = [0] * len(tokens)
    a = tokens.index(sp("<|output_start|>"))
    b = tokens.index(sp("<|output_end|>"))
    forced[a:b + 1] = [1] * (b + 1 - a)
    calls, outputs, text = split_completion(tokens, forced, tok)
    assert calls == ["search: warm air"] and outputs == [out]
    assert text == "Let me look. warm air, see https://x.example/a"

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, sequence_len=256, n_layer=1, n_head=2, n_kv_head=2, n_embd=32))
    model.eval()
    r = search_eval(Engine(model, tok), index_dir, n=6, max_new_tokens=8)
    assert r["n"] == 6 and all(0.0 <= r[k] <= 1.0 for k in ("search_rate", "grounded_rate", "cite_rate"))
    assert r["samples"] and {"question", "reply", "searched"} <= set(r["samples"][0])


def test_without_tantivy_the_tool_answers_with_an_error(index_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "tantivy", None)  # as on a GPU box without the package: import fails
    out = default_tools(search=index_dir).run("search: air filters")
    assert out == "error: the search tool needs the `tantivy` package (pip install tantivy)"
    assert default_tools(search=index_dir).run("2+3") == "5"  # the other tools still run
