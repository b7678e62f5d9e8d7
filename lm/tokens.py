"""Token shards: the tokenize stage's output and the pretraining input.

Layout (docs/CONTRACTS.md), under a tokenize output directory `<out>`:
  tokenizer.json              the tokenizer that produced the ids
  tokens/train_NNNNN.bin      raw little-endian uint16 (vocab ≤ 65536) or uint32
  tokens/val_NNNNN.bin        held-out documents, same format
  tokens/meta.json            the manifest, written last: {dtype, vocab_size, bos_id,
                              tokenizer_sha256, shards: [{path, split, n_tokens,
                              n_docs, source}], n_tokens, splits: {split: {...}}}

Each document starts with BOS, so a shard is `BOS doc BOS doc ...` and document
boundaries are the BOS positions. Shards are read as memory maps: opening a
dataset costs nothing and many processes share the page cache.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

META_NAME = "meta.json"
TOKENS_DIR = "tokens"
FORMAT_VERSION = 1
SPLITS = ("train", "val")


def dtype_for_vocab(vocab_size: int) -> np.dtype:
    """Smallest unsigned dtype that holds every id of a `vocab_size` vocabulary."""
    if vocab_size <= 0:
        raise ValueError(f"vocab_size must be positive, got {vocab_size}")
    return np.dtype("<u2") if vocab_size <= 1 << 16 else np.dtype("<u4")


def shard_name(split: str, index: int) -> str:
    """File name of shard `index` of `split`, e.g. `train_00003.bin`."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {SPLITS}")
    return f"{split}_{index:05d}.bin"


class ShardWriter:
    """Append documents to one token shard; the file appears only on `close()`.

    Writes to `<path>.tmp-<pid>` and renames on success, so a killed worker never
    leaves a truncated shard under the final name. Use as a context manager: an
    exception inside the block deletes the temp file.
    """

    def __init__(self, path: str | Path, vocab_size: int, bos_id: int):
        self.path = Path(path)
        self.vocab_size = vocab_size
        self.bos_id = bos_id
        self.dtype = dtype_for_vocab(vocab_size)
        self.n_tokens = 0
        self.n_docs = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(f"{self.path.name}.tmp-{os.getpid()}")
        self._fh = open(self._tmp, "wb")

    def add(self, ids: Iterable[int] | np.ndarray) -> None:
        """Append one document's ids (without BOS; BOS is written in front)."""
        arr = np.asarray(ids if isinstance(ids, np.ndarray) else list(ids), dtype=np.int64)
        if arr.size and (arr.min() < 0 or arr.max() >= self.vocab_size):
            raise ValueError(f"token id outside 0..{self.vocab_size - 1} while writing {self.path}")
        out = np.empty(arr.size + 1, dtype=self.dtype)
        out[0] = self.bos_id
        out[1:] = arr
        self._fh.write(out.tobytes())
        self.n_tokens += out.size
        self.n_docs += 1

    def close(self) -> Path:
        """Finish the shard: flush, fsync and rename into place."""
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Drop the partial shard."""
        self._fh.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_meta(tokens_dir: str | Path, meta: dict[str, Any]) -> Path:
    """Write the manifest atomically (call last: it marks the dataset complete)."""
    path = Path(tokens_dir) / META_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True))
    os.replace(tmp, path)
    return path


def resolve_tokens_dir(path: str | Path) -> Path:
    """The directory holding meta.json: `path` itself or its `tokens/` child."""
    p = Path(path)
    if (p / META_NAME).exists():
        return p
    if (p / TOKENS_DIR / META_NAME).exists():
        return p / TOKENS_DIR
    raise FileNotFoundError(
        f"no token shards at {p}: {META_NAME} missing (the tokenize stage did not finish); "
        "run `crawl2chat tokenize --data <curated> --out <dir>` and pass <dir>")


def read_meta(path: str | Path) -> dict[str, Any]:
    """The manifest of a token dataset (`<out>` or `<out>/tokens`)."""
    p = resolve_tokens_dir(path) / META_NAME
    try:
        meta = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"corrupt token manifest {p}: {e}; re-run the tokenize stage") from e
    for key in ("dtype", "vocab_size", "shards", "n_tokens"):
        if key not in meta:
            raise ValueError(f"token manifest {p} lacks {key!r}; re-run the tokenize stage")
    return meta


class TokenShards:
    """Read-only view of one split of a token dataset, as memory-mapped arrays.

    `TokenShards(dir, "train")`: `dir` is the tokenize output (`<out>`) or its
    `tokens/` folder. The split reads as one stream of `n_tokens` ids, the shards
    concatenated in manifest order; `read(start, length)` slices that stream
    across shard boundaries (what a pretraining loader needs).
    """

    def __init__(self, path: str | Path, split: str = "train"):
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; use one of {SPLITS}")
        self.dir = resolve_tokens_dir(path)
        self.meta = read_meta(self.dir)
        self.split = split
        self.dtype = np.dtype(self.meta["dtype"])
        self.vocab_size = int(self.meta["vocab_size"])
        self.bos_id = self.meta.get("bos_id")
        self.entries = [s for s in self.meta["shards"] if s.get("split", "train") == split]
        self.shards: list[np.ndarray] = []
        for s in self.entries:
            f = self.dir / s["path"]
            if not f.exists():
                raise FileNotFoundError(f"token shard {f} listed in {self.dir / META_NAME} is missing; "
                                        "re-run the tokenize stage")
            expected = int(s["n_tokens"]) * self.dtype.itemsize
            if f.stat().st_size != expected:
                raise ValueError(f"token shard {f} has {f.stat().st_size} bytes, manifest says {expected}; "
                                 "the file is truncated or stale: re-run the tokenize stage")
            # np.memmap refuses empty files; an empty split shard is legal.
            arr = np.memmap(f, dtype=self.dtype, mode="r") if expected else np.empty(0, self.dtype)
            self.shards.append(arr)
        self.offsets = np.cumsum([0] + [len(a) for a in self.shards])

    @property
    def n_tokens(self) -> int:
        """Total tokens in this split (BOS included)."""
        return int(self.offsets[-1])

    @property
    def n_docs(self) -> int:
        return sum(int(s.get("n_docs", 0)) for s in self.entries)

    @property
    def tokenizer_path(self) -> Path:
        """Where the tokenizer that produced these ids lives."""
        return (self.dir / self.meta.get("tokenizer_path", "../tokenizer.json")).resolve()

    def load_tokenizer(self):
        """Load the dataset's tokenizer and check it is the one in the manifest."""
        from lm.tokenizer import Tokenizer

        tok = Tokenizer.load(self.tokenizer_path)
        want = self.meta.get("tokenizer_sha256")
        if want and tok.sha256() != want:
            raise ValueError(f"{self.tokenizer_path} is not the tokenizer these shards were made with "
                             f"(sha256 {tok.sha256()[:12]} != {want[:12]}); re-run the tokenize stage")
        return tok

    def __len__(self) -> int:
        return self.n_tokens

    def read(self, start: int, length: int) -> np.ndarray:
        """`length` ids from position `start` of the split's stream (a copy, int64)."""
        if start < 0 or length < 0 or start + length > self.n_tokens:
            raise IndexError(f"read({start}, {length}) outside the {self.n_tokens} tokens of split {self.split!r}")
        out = np.empty(length, dtype=np.int64)
        pos, filled = start, 0
        i = int(np.searchsorted(self.offsets, start, side="right")) - 1
        while filled < length:
            a = self.shards[i]
            lo = pos - int(self.offsets[i])
            take = min(len(a) - lo, length - filled)
            out[filled:filled + take] = a[lo:lo + take]
            filled += take
            pos += take
            i += 1
        return out

    def iter_docs(self) -> Iterator[np.ndarray]:
        """Each document's ids (BOS first), shard by shard."""
        for a in self.shards:
            if not len(a):
                continue
            if self.bos_id is None:
                raise ValueError(f"manifest {self.dir / META_NAME} has no bos_id; cannot split documents")
            starts = np.flatnonzero(a == self.bos_id)
            ends = np.append(starts[1:], len(a))
            for s, e in zip(starts, ends):
                yield a[s:e]


def token_bytes(tokenizer) -> np.ndarray:
    """UTF-8 byte length of every token id (special tokens 0), for bits-per-byte.

    bpb = sum(loss_nats over targets) / (ln 2 * sum(token_bytes[targets])).
    """
    table = tokenizer.id_bytes_table()
    out = np.fromiter((len(b) for b in table), dtype=np.int32, count=len(table))
    out[sorted(tokenizer.special_ids)] = 0
    return out
