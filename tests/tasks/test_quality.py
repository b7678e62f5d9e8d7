"""FineWeb's quality filters (datatrove blocks) on real text and on real text made bad."""
from __future__ import annotations

import json

import pytest

from tasks.quality import check_text, load_quality_filters


@pytest.fixture(scope="module")
def wiki(repo_data):
    from data.build_warc import load_english
    docs = load_english(repo_data)
    return ["\n\n".join(d) for d in docs[300:315]]  # Wikipedia windows (the C4 docs come first)


@pytest.fixture(scope="module")
def good_wiki(wiki):
    return [t for t in wiki if check_text(t)[1] is None]


@pytest.fixture(scope="module")
def c4(repo_data):
    with open(repo_data / "text" / "llamafactory_c4_demo.jsonl") as f:
        return [json.loads(line)["text"] for line in f][:30]


def test_wikipedia_paragraphs_pass_every_filter(wiki, good_wiki):
    # the few that fail are list-like articles (numbers, years) below Gopher's alpha ratio
    assert len(good_wiki) >= 0.7 * len(wiki)


def test_most_c4_documents_pass(c4):
    passed = sum(check_text(t)[1] is None for t in c4)
    assert passed >= 0.6 * len(c4)  # C4 text is already cleaned CC text


def test_repeated_lines_fail_gopher_repetition(wiki):
    line = wiki[0].split("\n")[0][:150]
    _, stage, reason = check_text("\n".join([line] * 40))
    assert stage == "gopher_repetition" and reason in ("dup_line_frac", "dup_para_frac", "top_2_gram",
                                                       "dup_line_char_frac", "dup_para_char_frac")


def test_short_or_symbol_text_fails_gopher_quality(good_wiki):
    only_gopher_quality = load_quality_filters(False, True, False, False)
    assert check_text("Too short to be a document.", only_gopher_quality)[1:] == (
        "gopher_quality", "gopher_short_doc")
    table = "\n".join(f"{i} | {i * 7} | {i * 13} | {i * 17} | {i * 19}" for i in range(200))
    assert check_text(table, only_gopher_quality)[1] == "gopher_quality"
    hashed = " ".join(f"#{w}" for w in good_wiki[0].split()[:300])
    assert check_text(hashed, only_gopher_quality)[1:] == ("gopher_quality", "gopher_too_many_hashes")


def test_c4_lorem_ipsum_drops_and_code_lines_are_removed(good_wiki):
    assert check_text(good_wiki[0] + "\nLorem ipsum dolor sit amet, consectetur adipiscing elit.")[1:] == (
        "c4", "lorem_ipsum")
    text, stage, _ = check_text(good_wiki[1] + "\nPlease enable JavaScript to view the comments.")
    assert stage is None and "JavaScript" not in text and text.startswith(good_wiki[1][:50])


def test_fineweb_line_punctuation(good_wiki):
    # the real words, chopped into lines with no terminal punctuation (a menu/list page)
    words = good_wiki[2].replace(".", "").split()
    lines = [" ".join(words[i:i + 6]) for i in range(0, min(len(words), 600), 6)]
    only_fineweb = load_quality_filters(False, False, False, True)
    _, stage, reason = check_text("\n".join(lines), only_fineweb)
    assert stage == "fineweb" and reason == "line_punct_ratio"
    assert check_text(good_wiki[2], only_fineweb)[1] is None


def test_toggles_choose_the_filters():
    names = [n for n, _ in load_quality_filters(False, True, False, True)]
    assert names == ["gopher_quality", "fineweb"]
    assert load_quality_filters() is load_quality_filters()  # built once per process
