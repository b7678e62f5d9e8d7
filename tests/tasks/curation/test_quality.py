"""FineWeb's quality filters (datatrove blocks) on real text and on real text made bad."""
from __future__ import annotations

import json

import pytest

from tasks.curation.quality import check_text, load_quality_filters


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


# ------------------------------------------------ equal decisions to datatrove's blocks (the reference)
def edge_case_texts(n: int, seed: int = 0) -> list[str]:
    """GENERATED edge cases: texts built from the pieces the four filters look at (punctuation,
    bullets, ellipses, citations, odd whitespace, long words, repeated lines/paragraphs, stop words)."""
    import random

    rng = random.Random(seed)
    words = ("the of and to with that have be a in is it was for on are as he she they we you this "
             "water river city school history music science people house night children").split()
    odd = ["#", "#tag", "...", "…", "•", "-", "—", "[1]", "[edit]", "[citation needed]", "[]", "{", "}",
           "lorem ipsum", "JavaScript", "cookie policy", "Terms of Use", "don't", "U.S.", "a.m.", ":)", "?!",
           "!!", "。", "！", "?", ".", "'s", "\"quoted.\"", "(see", "above)", "e-mail", "http://x.org/a?b=1",
           "x" * 1001, "12", "3.14", "1,000", "n't", "__", "::", "Wow!", "end.", "ORTH", "LIKE_URL", "ab.cd", "A'B"]
    spaces = [" "] * 12 + ["  ", "\t", " \t", "\xa0", "\u2028", "\x1c", "\u3000", "\r"]
    breaks = ["\n"] * 6 + ["\n\n", "\n\n\n", " \n", "\n "]

    def line() -> str:
        k = rng.choice([1, 2, 3, 4, 6, 9, 14, 25])
        toks = [rng.choice(odd) if rng.random() < 0.15 else rng.choice(words) for _ in range(k)]
        if rng.random() < 0.6:
            toks[-1] += rng.choice([".", ".", "!", "?", "...", "…", "\"", ""])
        if rng.random() < 0.1:
            toks.insert(0, rng.choice(["•", "-", "*", "1."]))
        return "".join(t + rng.choice(spaces) for t in toks).rstrip(" ") if rng.random() < 0.9 else "".join(
            t + rng.choice(spaces) for t in toks)

    out = []
    for _ in range(n):
        lines = [line() for _ in range(rng.choice([0, 1, 3, 6, 12, 25, 40]))]
        if lines and rng.random() < 0.3:  # repeated lines / paragraphs
            lines += [rng.choice(lines) for _ in range(rng.randint(1, 10))]
            rng.shuffle(lines)
        text = "".join(ln + rng.choice(breaks) for ln in lines)
        if rng.random() < 0.1:
            text = rng.choice(["", " ", "\n", "\n\n"]) + text
        out.append(text)
    return out


def _same_as_datatrove(texts):
    from tasks.curation.quality import datatrove_check_text

    return [(i, check_text(t)[1:], datatrove_check_text(t)[1:]) for i, t in enumerate(texts)
            if check_text(t) != datatrove_check_text(t)]


def test_equal_to_datatrove_on_generated_edge_cases():
    texts = edge_case_texts(2000)
    assert not _same_as_datatrove(texts)[:5]
    # the cases reach every filter's every reason that the generator can produce
    reasons = {check_text(t)[1:] for t in texts}
    assert {s for s, _ in reasons} >= {"gopher_repetition", "gopher_quality", "c4", "fineweb", None}


def test_equal_to_datatrove_on_real_text(wiki, c4, repo_data):
    from data.build_warc import load_english

    docs = ["\n\n".join(d) for d in load_english(repo_data)[::25]]  # C4 + Wikipedia windows
    assert not _same_as_datatrove(wiki + c4 + docs)[:5]


def test_numpy_n_grams_equal_datatrove_s_functions(c4):
    """The n-gram statistics without one string per n-gram (ids for " ".join, hashed spans for
    "".join) equal datatrove's functions — on real text and on words from a tiny alphabet, where
    different word tuples glue into the same string (hash groups that must be told apart)."""
    import random

    from datatrove.pipeline.filters.gopher_repetition_filter import (find_all_duplicate, find_top_duplicate,
                                                                     get_n_grams)

    from tasks.curation.quality import QualityDoc, _GluedGrams, _top_grams

    rng = random.Random(0)
    tiny = [[rng.choice(["a", "b", "ab", "ba", "aa", "the", "there", "re", "é"]) for _ in range(rng.randint(1, 80))]
            for _ in range(400)]
    for words in [QualityDoc(t).words() for t in c4] + tiny:
        tops = {n: chars * count for n, chars, count in _top_grams(words, (2, 3, 4))}
        for n in (2, 3, 4):
            assert tops.get(n, 0) == (find_top_duplicate(get_n_grams(words, n)) if len(words) >= n else 0)
        glued = _GluedGrams(words)
        for n in range(5, 11):
            if len(words) >= n:
                got = glued.repeated_chars(n)
                assert got is None or got == find_all_duplicate(words, n), (words, n)


_FRESH_PROCESS = """
import sys, threading
from tasks.curation.quality import check_text
# another thread importing torch while spaCy loads gets torch: only thinc.compat is refused it
seen = []
t = threading.Thread(target=lambda: seen.append(__import__("torch").__name__))
t.start()
verdict = check_text("The quick brown fox can't jump over the lazy dog's 10km fence. " * 20)
t.join()
import thinc.compat
print(isinstance(verdict, tuple), seen, thinc.compat.has_torch)
"""


def test_spacy_loads_without_torch_and_torch_stays_importable():
    """A filtering process (a Ray worker) imports spaCy without thinc's torch (~1.2 s each); torch
    is still there for anyone else who imports it, in any thread."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[3]
    quiet = _FRESH_PROCESS.replace("t.start()", "").replace("t.join()", "")
    out = subprocess.run([sys.executable, "-c", quiet + "print('torch' in sys.modules)"], cwd=repo,
                         capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[:2] == ["True [] False", "False"]  # verdict made, no torch loaded, thinc without it
    out = subprocess.run([sys.executable, "-c", _FRESH_PROCESS], cwd=repo, capture_output=True, text=True,
                         check=True).stdout
    assert out.startswith("True ['torch']")
