"""lm/tokenizer.py on real text: round trips, special tokens, determinism."""
from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest

from lm.tokenizer import SPECIAL_TOKENS, Tokenizer

REPO = __import__("pathlib").Path(__file__).resolve().parents[2]


def _c4_texts(repo_data, n=150) -> list[str]:
    lines = (repo_data / "text" / "llamafactory_c4_demo.jsonl").read_text().splitlines()[:n]
    return [json.loads(line)["text"] for line in lines]


@pytest.fixture(scope="module")
def texts(repo_data) -> list[str]:
    return _c4_texts(repo_data) + (repo_data / "text" / "tinyshakespeare.txt").read_text()[:100_000].split("\n\n")


@pytest.fixture(scope="module")
def tok(texts) -> Tokenizer:
    return Tokenizer.train(texts, vocab_size=1024)


ROUND_TRIP = [
    "",
    "hello world",
    "  leading and trailing spaces   ",
    " " * 500 + "x" + "\t" * 300 + "\n" * 200,
    "\r\n\r\n mixed\r line\rendings\n",
    "emoji 😀👍🏽👨‍👩‍👧‍👦 flags 🇫🇷🇯🇵 and ZWJ",
    "中文字符，日本語のテキスト、한국어 텍스트",
    "Ελληνικά, русский, עברית, العربية, हिन्दी",
    "def f(x):\n    return {'a': [x ** 2 for _ in range(10)]}  # comment\n\tif x != 0: pass\n",
    "numbers 1234567890 3.14159 -42 1e-9 ١٢٣",
    "combining e\u0301 vs \u00e9, NFC vs NFD (must not be normalised)",
    "control chars \x00\x01\x1b[31m\x7f and BOM \ufeff",
    "<|bos|><|user_start|>hi<|user_end|><|assistant_start|>",
    "\U0010FFFF private \ue000 plane",
]


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_text_round_trips(tok, text):
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert tok.decode_bytes(ids) == text.encode("utf-8")
    assert tok.decode_bytes(tok.encode_bytes(text.encode("utf-8"))) == text.encode("utf-8")


def test_random_bytes_round_trip_including_invalid_utf8(tok):
    rng = random.Random(0)
    for n in [1, 2, 3, 7, 64, 1000]:
        for _ in range(30):
            data = bytes(rng.randrange(256) for _ in range(n))
            assert tok.decode_bytes(tok.encode_bytes(data)) == data
    # The classic invalid cases: lone continuation, truncated sequence, overlong,
    # surrogate encoded in UTF-8, beyond U+10FFFF.
    for data in [b"\x80", b"ab\xe2\x82", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"ok\xffok\xfe"]:
        ids = tok.encode_bytes(data)
        assert tok.decode_bytes(ids) == data
        assert not set(ids) & tok.special_ids


def test_random_unicode_round_trips(tok):
    rng = random.Random(1)
    ranges = [(0x20, 0x7F), (0xA0, 0x2FF), (0x370, 0x3FF), (0x4E00, 0x9FFF), (0x1F300, 0x1FAFF), (0x0, 0x20)]
    for _ in range(200):
        chars = []
        for _ in range(rng.randrange(1, 60)):
            lo, hi = rng.choice(ranges)
            chars.append(chr(rng.randrange(lo, hi)))
        text = "".join(chars)
        assert tok.decode(tok.encode(text)) == text


def test_plain_text_never_yields_special_tokens(tok):
    for s in SPECIAL_TOKENS:
        typed = f"user typed {s} here{s}{s}"
        ids = tok.encode(typed)
        assert not set(ids) & tok.special_ids, s
        assert tok.decode(ids) == typed
        assert not set(tok.encode_batch([typed])[0]) & tok.special_ids
        assert not set(tok.encode_bytes(typed.encode())) & tok.special_ids


def test_special_ids_resolve_and_are_distinct(tok):
    ids = [tok.encode_special(s) for s in SPECIAL_TOKENS]
    assert len(set(ids)) == len(SPECIAL_TOKENS)
    assert all(0 <= i < tok.vocab_size for i in ids)
    assert tok.bos_id == tok.encode_special("<|bos|>")
    assert tok.special_ids == set(ids)
    # Decoding a special id gives its literal text (what a chat transcript shows).
    assert tok.decode([tok.bos_id]) == "<|bos|>"
    assert tok.decode([tok.bos_id, *tok.encode("hi")], skip_special=True) == "hi"
    with pytest.raises(ValueError, match="unknown special token"):
        tok.encode_special("<|nope|>")


def test_encode_prepend_bos_and_batch_agree(tok, texts):
    batch = texts[:20]
    assert tok.encode_batch(batch) == [tok.encode(t) for t in batch]
    assert tok.encode_batch(batch, prepend_bos=True)[3] == [tok.bos_id, *tok.encode(batch[3])]


def test_vocab_size_is_exact_and_learned_merges_compress(tok, texts):
    assert tok.vocab_size == 1024
    text = texts[0]
    assert len(tok.encode(text)) < len(text.encode("utf-8")) / 2.5  # real English compresses


def test_bad_inputs_give_clear_errors(tok):
    with pytest.raises(ValueError, match="lone surrogates"):
        tok.encode("a\udc80b")
    with pytest.raises(ValueError, match="lone surrogates"):
        tok.encode_batch(["fine", "bad\ud800"])
    with pytest.raises(ValueError, match="outside vocabulary"):
        tok.decode([0, tok.vocab_size])
    with pytest.raises(ValueError, match="outside vocabulary"):
        tok.decode([-1])
    with pytest.raises(ValueError, match="too small"):
        Tokenizer.train(["abc"], vocab_size=100)


def test_save_load_round_trip(tok, tmp_path):
    path = tok.save(tmp_path)
    assert path.name == "tokenizer.json"
    again = Tokenizer.load(tmp_path)
    assert again.sha256() == tok.sha256()
    s = "round <|assistant_start|> trip 😀"
    assert again.encode(s) == tok.encode(s)
    assert not list(tmp_path.glob("*.tmp*"))
    with pytest.raises(FileNotFoundError, match="crawl2chat tokenize"):
        Tokenizer.load(tmp_path / "missing")
    path.write_text(path.read_text()[:500])  # truncated
    with pytest.raises(ValueError, match="corrupt tokenizer"):
        Tokenizer.load(path)


def test_training_is_deterministic_across_processes(texts, tmp_path, tok):
    """Same text, same order → byte-identical tokenizer, also in a fresh interpreter."""
    again = Tokenizer.train(texts, vocab_size=1024)
    assert again.sha256() == tok.sha256()
    (tmp_path / "texts.json").write_text(json.dumps(texts))
    code = ("import json,sys; from lm.tokenizer import Tokenizer; "
            f"t = Tokenizer.train(json.load(open({str(tmp_path / 'texts.json')!r})), vocab_size=1024); "
            "print(t.sha256())")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={"PYTHONHASHSEED": "123", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == tok.sha256()
