"""lm/tokens.py: shard writer/reader, manifest checks, dtype choice, token_bytes."""
from __future__ import annotations

import json

import numpy as np
import pytest

from lm.tokenizer import Tokenizer
from lm.tokens import (ShardWriter, TokenShards, dtype_for_vocab, read_meta, shard_name, token_bytes,
                       write_meta)


@pytest.fixture(scope="module")
def tok(repo_data) -> Tokenizer:
    text = (repo_data / "text" / "tinyshakespeare.txt").read_text()[:60_000]
    return Tokenizer.train(text.split("\n\n"), vocab_size=600)


def test_dtype_for_vocab_boundaries():
    assert dtype_for_vocab(600) == np.uint16
    assert dtype_for_vocab(65536) == np.uint16  # ids 0..65535 fit
    assert dtype_for_vocab(65537) == np.uint32
    assert dtype_for_vocab(200_000) == np.uint32
    with pytest.raises(ValueError):
        dtype_for_vocab(0)


def _write_dataset(tmp_path, docs_by_shard, vocab_size, bos=0, split="train"):
    tdir = tmp_path / "tokens"
    entries = []
    for i, docs in enumerate(docs_by_shard):
        with ShardWriter(tdir / shard_name(split, i), vocab_size, bos) as w:
            for d in docs:
                w.add(d)
        entries.append({"path": w.path.name, "split": split, "n_tokens": w.n_tokens, "n_docs": w.n_docs,
                        "source": f"generated-{i}"})
    meta = {"dtype": dtype_for_vocab(vocab_size).name, "vocab_size": vocab_size, "bos_id": bos,
            "shards": entries, "n_tokens": sum(e["n_tokens"] for e in entries)}
    write_meta(tdir, meta)
    return tdir


@pytest.mark.parametrize("vocab_size,dtype", [(1000, np.uint16), (70_000, np.uint32)])
def test_write_read_bos_separated(tmp_path, vocab_size, dtype):
    """Generated id lists; the big vocab forces uint32 and ids above 65535 survive."""
    rng = np.random.default_rng(0)
    docs = [[list(rng.integers(1, vocab_size, size=n)) for n in (5, 0, 17)], [[vocab_size - 1, 1, 2]]]
    tdir = _write_dataset(tmp_path, docs, vocab_size)
    raw = np.fromfile(tdir / "train_00000.bin", dtype=dtype)
    assert raw.dtype.itemsize == np.dtype(dtype).itemsize
    assert list(raw[:6]) == [0, *docs[0][0]]
    ds = TokenShards(tmp_path, "train")  # the stage dir works as well as tokens/
    assert ds.dtype == dtype and ds.shards[0].dtype == dtype
    assert ds.n_tokens == 6 + 1 + 18 + 4 == len(ds)
    assert ds.n_docs == 4
    got = [list(d) for d in ds.iter_docs()]
    assert got == [[0, *d] for shard in docs for d in shard]
    # read() crosses the shard boundary as one stream.
    stream = np.concatenate([np.fromfile(tdir / f"train_0000{i}.bin", dtype=dtype) for i in range(2)])
    assert list(ds.read(20, 9)) == list(stream[20:29])
    assert ds.read(0, ds.n_tokens).tolist() == stream.tolist()
    with pytest.raises(IndexError):
        ds.read(ds.n_tokens - 2, 3)


def test_empty_split_and_val_selection(tmp_path):
    tdir = tmp_path / "tokens"
    ShardWriter(tdir / "val_00000.bin", 100, 0).close()
    with ShardWriter(tdir / "train_00000.bin", 100, 0) as w:
        w.add([5, 6])
    meta = {"dtype": "uint16", "vocab_size": 100, "bos_id": 0, "n_tokens": 3,
            "shards": [{"path": "train_00000.bin", "split": "train", "n_tokens": 3, "n_docs": 1},
                       {"path": "val_00000.bin", "split": "val", "n_tokens": 0, "n_docs": 0}]}
    write_meta(tdir, meta)
    assert TokenShards(tdir, "val").n_tokens == 0
    assert list(TokenShards(tdir, "val").iter_docs()) == []
    assert TokenShards(tdir, "train").n_tokens == 3
    with pytest.raises(ValueError, match="unknown split"):
        TokenShards(tdir, "test")


def test_writer_is_atomic_and_validates_ids(tmp_path):
    path = tmp_path / "train_00000.bin"
    with pytest.raises(ValueError, match="outside"):
        with ShardWriter(path, 100, 0) as w:
            w.add([1, 2])
            w.add([100])
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []  # temp file removed too
    w = ShardWriter(path, 100, 0)
    w.add([3])
    assert not path.exists()  # nothing under the final name before close()
    w.close()
    assert np.fromfile(path, dtype=np.uint16).tolist() == [0, 3]


def test_reader_refuses_missing_truncated_or_incomplete(tmp_path):
    with pytest.raises(FileNotFoundError, match="tokenize"):
        TokenShards(tmp_path, "train")
    tdir = _write_dataset(tmp_path, [[[1, 2, 3]]], 100)
    (tdir / "train_00000.bin").write_bytes(b"\x00\x00")  # truncated
    with pytest.raises(ValueError, match="truncated or stale"):
        TokenShards(tdir, "train")
    (tdir / "train_00000.bin").unlink()
    with pytest.raises(FileNotFoundError, match="missing"):
        TokenShards(tdir, "train")
    (tdir / "meta.json").write_text("{not json")
    with pytest.raises(ValueError, match="corrupt token manifest"):
        read_meta(tdir)
    (tdir / "meta.json").write_text(json.dumps({"dtype": "uint16"}))
    with pytest.raises(ValueError, match="lacks"):
        read_meta(tdir)


def test_token_bytes_matches_decoding(tok):
    tb = token_bytes(tok)
    assert tb.shape == (tok.vocab_size,)
    assert all(tb[i] == 0 for i in tok.special_ids)
    byte_ids = [tok.encode_bytes(bytes([b])) for b in range(256)]
    assert all(len(ids) == 1 and tb[ids[0]] == 1 for ids in byte_ids)
    assert tb.max() == max(len(b) for b in tok.id_bytes_table()[:tok.bos_id])
    text = "Bits per byte counts UTF-8 bytes: é 😀 中"
    ids = tok.encode(text)
    assert int(tb[ids].sum()) == len(text.encode("utf-8"))
    assert int(tb[[tok.bos_id, *ids]].sum()) == len(text.encode("utf-8"))


def test_tokenizer_check_on_load(tmp_path, tok):
    tok.save(tmp_path / "tokenizer.json")
    tdir = _write_dataset(tmp_path, [[[1, 2]]], tok.vocab_size, bos=tok.bos_id)
    meta = read_meta(tdir)
    meta.update(tokenizer_sha256=tok.sha256(), tokenizer_path="../tokenizer.json")
    write_meta(tdir, meta)
    assert TokenShards(tdir).load_tokenizer().sha256() == tok.sha256()
    meta["tokenizer_sha256"] = "0" * 64
    write_meta(tdir, meta)
    with pytest.raises(ValueError, match="not the tokenizer"):
        TokenShards(tdir).load_tokenizer()
