"""MinHash near-duplicate detection across all shards of a run, vectorised with numpy.

Three pure stages over files, so the flow can fan them out on Ray and Prefect can
draw them: `compute_signatures` (one per pre-dedup shard) → `lsh_band` (one per
band, over all shards) → `cluster` (one, over all bands). `tasks/curation/finalize.py`
then drops the duplicates shard by shard.

What is special, compared with datatrove's MinhashDedup* stages (same maths,
FineWeb's defaults: word 5-grams, 14 bands × 8 hashes, connected components):

- Text normalisation follows datatrove's `simplify_text` (lowercase, numbers → 0,
  punctuation → space, diacritics stripped, whitespace collapsed), but words are
  split on whitespace instead of by spaCy; after punctuation removal the two
  differ only on rare contractions ("cannot" → "can not" in spaCy).
- No Python loop per word or per shingle: a whole batch of documents becomes one
  byte array; word hashes come from polynomial prefix sums (mod 2^64), n-gram
  hashes from shifted word-hash arrays, and the 112 min-hashes from
  `np.minimum.reduceat` over per-document segments.
- The permutations are `a·x + b mod 2^64` with odd `a` (a bijection on 64-bit
  values, which is what MinHash needs); datatrove wraps in uint64 and then takes
  `mod 2^61-1`, which costs a division and is not a bijection.
- Documents with fewer than n words get no signature and are never duplicates
  (datatrove skips them too).
- A band's buckets are found by sorting rows (exact 8-hash equality), clusters by
  vectorised hook-and-compress union-find. The kept document of a cluster is the
  one with the smallest key (shard, row): deterministic across re-runs.

Doc key: `shard_index << 32 | row` in uint64 (row = position in the shard's
pre-dedup Parquet file).

Signature files (`compute_signatures`, an uncompressed .npz) store each band's
rows sorted by the band's partition hash (`band_NNN` + `band_NNN_rows`, the
rows they belong to, + `band_NNN_hi`, the hash), so `lsh_band(part=p,
n_parts=P)` reads only partition p's contiguous slice of every file (a binary
search, then one read) instead of the whole band: the P partition tasks of a
band read it once between them. Files without `band_NNN_rows` (written before)
are still read whole and filtered.
"""
from __future__ import annotations

import ast
import bisect
import logging
import os
import re
import struct
import time
import unicodedata
import zipfile
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Protocol, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from core.atomic import atomic_path

log = logging.getLogger(__name__)

_U64 = np.uint64
_MASK32 = (1 << 32) - 1
# Fixed (not seed-dependent) constants of the word/n-gram hashes: changing them
# would change every signature, like changing datatrove's hash function.
_POLY = 0x9E3779B97F4A7C15  # odd → invertible mod 2^64
_POLY_INV = pow(_POLY, -1, 1 << 64)
_NGRAM_MULT = np.array(
    [0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93, 0xFF51AFD7ED558CCD,
     0xC4CEB9FE1A85EC53, 0x9FB21C651E98DF25, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB],
    dtype=_U64,
)
# Documents are hashed in batches of about this many characters (memory: ~60 B/char).
_BATCH_CHARS = 2_000_000
# The min-hash matrix is computed in blocks of hashes × shingles of about 2 MB.
_HASH_BLOCK = 16
_CHUNK_SHINGLES = 16_384

CLUSTER_SCHEMA = pa.schema([
    ("shard", pa.int32()), ("row", pa.int64()), ("cluster_id", pa.int64()),
    ("cluster_size", pa.int64()), ("drop", pa.bool_()),
])


class MinhashSettings(Protocol):
    """The fields of `conf.curate.CurateConfig` this module reads."""

    minhash_ngram: int
    minhash_buckets: int
    minhash_hashes_per_bucket: int
    minhash_seed: int


# --------------------------------------------------------------------------- io


def _save_npz(out_path: str, arrays: dict[str, np.ndarray]) -> None:
    with atomic_path(out_path) as tmp:
        with open(tmp, "wb") as f:  # a file object stops numpy appending ".npz"
            np.savez(f, **arrays)


class StoredNpz:
    """Row ranges of the members of an uncompressed .npz (`np.savez`), read without reading the rest.

    `np.load` on an .npz reads a whole member; here a member's data offset comes
    from its zip local header and .npy header, and `rows(name, lo, hi)` reads only
    those rows (C order). `nbytes` counts what was read from the file.
    """

    def __init__(self, path: str):
        self.path = path
        self.nbytes = 0
        self._fd = os.open(path, os.O_RDONLY)
        with open(path, "rb") as f, zipfile.ZipFile(f) as zf:
            self._info = {i.filename[:-4] if i.filename.endswith(".npy") else i.filename: i for i in zf.infolist()}
        self._meta: dict[str, tuple[int, np.dtype, tuple[int, ...]]] = {}

    def __enter__(self) -> "StoredNpz":
        return self

    def __exit__(self, *exc) -> None:
        os.close(self._fd)

    def _pread(self, n: int, offset: int) -> bytes:
        data = os.pread(self._fd, n, offset)
        self.nbytes += len(data)
        if len(data) != n:
            raise ValueError(f"{self.path} is truncated; recompute its signatures")
        return data

    def meta(self, name: str) -> tuple[int, np.dtype, tuple[int, ...]]:
        """(data offset, dtype, shape) of member `name`."""
        if name not in self._meta:
            info = self._info[name]
            if info.compress_type != zipfile.ZIP_STORED:
                raise ValueError(f"{self.path}: {name} is compressed; signature files are written by np.savez")
            head = self._pread(30, info.header_offset)  # zip local file header
            name_len, extra_len = struct.unpack("<HH", head[26:30])
            at = info.header_offset + 30 + name_len + extra_len
            pre = self._pread(10, at)  # .npy: magic, version, header length
            major = pre[6]
            hlen_size = 2 if major == 1 else 4
            hlen = int.from_bytes(pre[8:8 + hlen_size], "little")
            header = self._pread(hlen, at + 8 + hlen_size).decode("latin1")
            d = ast.literal_eval(header)  # a dict literal of plain values (numpy's own format)
            if d["fortran_order"]:
                raise ValueError(f"{self.path}: {name} is not in C order")
            self._meta[name] = (at + 8 + hlen_size + hlen, np.dtype(d["descr"]), tuple(d["shape"]))
        return self._meta[name]

    def names(self) -> set[str]:
        return set(self._info)

    def length(self, name: str) -> int:
        return self.meta(name)[2][0]

    def rows(self, name: str, lo: int, hi: int) -> np.ndarray:
        """Rows lo..hi-1 of member `name`."""
        off, dt, shape = self.meta(name)
        width = int(np.prod(shape[1:], dtype=np.int64)) * dt.itemsize
        hi = max(lo, hi)
        buf = self._pread((hi - lo) * width, off + lo * width) if hi > lo else b""
        return np.frombuffer(buf, dtype=dt).reshape((hi - lo, *shape[1:])).copy()

    def search(self, name: str, value: int) -> int:
        """First index of sorted 1-d member `name` whose value is ≥ `value` (binary search, one read a probe)."""
        view = _Probe(self, name)
        return bisect.bisect_left(view, value)


class _Probe:
    """A sorted 1-d npz member as a sequence for `bisect`: each item read on demand."""

    def __init__(self, z: StoredNpz, name: str):
        self.z, (self.off, dt, shape) = z, z.meta(name)
        if len(shape) != 1 or dt.kind != "u" or dt.byteorder == ">":
            raise ValueError(f"{z.path}: {name} is not a 1-d unsigned array")
        self.n, self.size = shape[0], dt.itemsize

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return int.from_bytes(self.z._pread(self.size, self.off + i * self.size), "little")


def _save_npy(out_path: str, array: np.ndarray) -> None:
    with atomic_path(out_path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array, allow_pickle=False)


# ------------------------------------------------------------------ normalising


def _setting(cfg: Any, name: str, default: int) -> int:
    return int(getattr(cfg, name, default)) if cfg is not None else default


_ASCII_SPACES = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f"
_OTHER_SPACES = "\x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000" + "".join(map(chr, range(0x2000, 0x200B)))


def _char_class(codepoints: Iterable[int]) -> str:
    """A regex character class of contiguous ranges (sre scans lists of literals linearly)."""
    cps = sorted(set(codepoints))
    parts, lo, hi = [], cps[0], cps[0]
    for c in cps[1:] + [-1]:
        if c == hi + 1:
            hi = c
            continue
        parts.append(re.escape(chr(lo)) if lo == hi else f"{re.escape(chr(lo))}-{re.escape(chr(hi))}")
        lo = hi = c
    return "[" + "".join(parts) + "]"


@lru_cache(maxsize=1)
def _punctuation() -> tuple[np.ndarray, re.Pattern[str], dict[int, str]]:
    """Punctuation + whitespace → space: a byte table for ASCII, a regex for the rest of
    the BMP, a translate table for astral chars (regex classes are only fast in the BMP).

    Punctuation is datatrove's PUNCTUATION plus its TERMINAL_PUNCTUATION (spaCy
    would split those off as separate tokens). ASCII is mapped on bytes in numpy
    because `str.translate` with a dict costs ~50 ns per character.
    """
    from datatrove.utils.text import PUNCTUATION, TERMINAL_PUNCTUATION

    chars = {ord(c) for c in PUNCTUATION} | {ord(c) for c in TERMINAL_PUNCTUATION if len(c) == 1}
    chars |= {ord(c) for c in _ASCII_SPACES + _OTHER_SPACES}
    lut = np.arange(256, dtype=np.uint8)
    lut[[c for c in chars if c < 128]] = 32
    lut[0] = 0  # NUL is our document separator (inputs have theirs mapped to space)
    bmp = _char_class(c for c in chars if 128 <= c <= 0xFFFF)
    astral = {c: " " for c in chars if c > 0xFFFF}
    return lut, re.compile(bmp), astral


@lru_cache(maxsize=1)
def _combining_marks() -> tuple[re.Pattern[str], dict[int, None]]:
    """Combining marks (category Mn), stripped after NFD to drop diacritics: BMP regex + astral table."""
    marks = [c for c in range(0x300, 0x20000) if unicodedata.category(chr(c)) == "Mn"]
    return (re.compile(_char_class(c for c in marks if c <= 0xFFFF) + "+"),
            {c: None for c in marks if c > 0xFFFF})


# datatrove's NUMBERS_PATTERN, with `re` (its \d is Unicode Nd on str patterns)
_NUMBERS = re.compile(r"\d+(?:[.,،٫⎖⎗⎘]\d+)?")


def _prenormalize(text: str) -> str:
    """Everything of `normalize_text` except mapping ASCII punctuation/whitespace (done on bytes)."""
    text = _NUMBERS.sub("0", text.lower())
    if not text.isascii():
        _, punct, punct_astral = _punctuation()
        marks, marks_astral = _combining_marks()
        text = marks.sub("", unicodedata.normalize("NFD", punct.sub(" ", text)))
        if max(text) > "\uffff":
            text = text.translate(punct_astral).translate(marks_astral)
    if "\x00" in text:  # NUL separates documents in the joined batch
        text = text.replace("\x00", " ")
    return text


def normalize_text(text: str) -> str:
    """datatrove-style simplification: lowercase, numbers → 0, punctuation/whitespace → space, no diacritics.

    Words are `normalize_text(t).split()`; this is the reference the vectorised
    hashing in `shingle_hashes` reproduces.
    """
    raw = np.frombuffer(_prenormalize(text).encode("utf-8"), dtype=np.uint8)
    return _punctuation()[0][raw].tobytes().decode("utf-8")


# ---------------------------------------------------------------------- hashing


def _mix64(z: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser, in place on a uint64 array (spreads low-entropy bits)."""
    z ^= z >> _U64(30)
    z *= _U64(0xBF58476D1CE4E5B9)
    z ^= z >> _U64(27)
    z *= _U64(0x94D049BB133111EB)
    z ^= z >> _U64(31)
    return z


def permutations(n_hashes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The (a, b) of the `a·x + b mod 2^64` permutations; `a` odd so each is a bijection."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, np.iinfo(np.uint64).max, size=n_hashes, dtype=np.uint64, endpoint=True) | _U64(1)
    b = rng.integers(0, np.iinfo(np.uint64).max, size=n_hashes, dtype=np.uint64, endpoint=True)
    return a, b


def shingle_hashes(texts: Sequence[str], ngram: int) -> tuple[np.ndarray, np.ndarray]:
    """64-bit hashes of the word n-grams of each text, all texts at once.

    Returns (hashes, doc) where doc[i] is the index into `texts` of hashes[i]
    (non-decreasing). A text with fewer than `ngram` words contributes nothing.
    """
    if ngram > len(_NGRAM_MULT):
        raise ValueError(f"minhash_ngram={ngram} is above the supported maximum {len(_NGRAM_MULT)}")
    joined = "\x00".join(_prenormalize(t) for t in texts).encode("utf-8")
    buf = _punctuation()[0][np.frombuffer(joined, dtype=np.uint8)]
    n = buf.size
    empty = (np.empty(0, _U64), np.empty(0, np.int64))
    if n == 0:
        return empty
    is_word = (buf != 32) & (buf != 0)
    edges = np.diff(is_word.astype(np.int8), prepend=np.int8(0), append=np.int8(0))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    if starts.size == 0:
        return empty
    doc_of_word = np.cumsum(buf == 0)[starts]

    # Polynomial hash of every word from prefix sums: H(w) = Σ b_j P^(j-start).
    pows = np.full(n + 1, _POLY, dtype=_U64)
    pows[0] = 1
    np.cumprod(pows, out=pows)  # wraps mod 2^64, as intended
    prefix = np.zeros(n + 1, dtype=_U64)
    np.cumsum(buf.astype(_U64) * pows[:n], out=prefix[1:])
    del pows
    inv_pows = np.full(n + 1, _POLY_INV, dtype=_U64)
    inv_pows[0] = 1
    np.cumprod(inv_pows, out=inv_pows)
    inv_pow = inv_pows[starts]
    del inv_pows
    words = (prefix[ends] - prefix[starts]) * inv_pow
    words += (ends - starts).astype(_U64)  # the length too: cheap extra separation of words
    _mix64(words)

    m = words.size - ngram + 1
    if m <= 0:
        return empty
    valid = doc_of_word[ngram - 1:] == doc_of_word[:m]
    grams = words[:m] * _NGRAM_MULT[0]
    for i in range(1, ngram):
        grams += words[i:i + m] * _NGRAM_MULT[i]
    grams = _mix64(grams[valid])
    return grams, doc_of_word[:m][valid]


def signatures(texts: Sequence[str], cfg: MinhashSettings | None = None) -> tuple[np.ndarray, np.ndarray]:
    """MinHash signatures of `texts`: (doc indices that have one, uint64 matrix [n, bands·rows])."""
    ngram = _setting(cfg, "minhash_ngram", 5)
    n_hashes = _setting(cfg, "minhash_buckets", 14) * _setting(cfg, "minhash_hashes_per_bucket", 8)
    a, b = permutations(n_hashes, _setting(cfg, "minhash_seed", 1))
    docs_out, sigs_out = [], []
    batch: list[int] = []
    size = 0

    def flush() -> None:
        log.debug("minhash: hashing docs %d..%d of %d", batch[0], batch[-1], len(texts))
        grams, doc = shingle_hashes([texts[i] for i in batch], ngram)
        if grams.size == 0:
            return
        seg = np.flatnonzero(np.diff(doc, prepend=-1))
        sig = np.empty((n_hashes, seg.size), dtype=_U64)
        # Chunks of whole documents keep the [hashes × shingles] block cache-sized.
        bounds = np.append(seg, grams.size)
        i = 0
        while i < seg.size:
            j = max(i + 1, int(np.searchsorted(bounds, bounds[i] + _CHUNK_SHINGLES, side="right")) - 1)
            j = min(j, seg.size)
            lo, hi = bounds[i], bounds[j]
            x = grams[None, lo:hi]
            local = seg[i:j] - lo
            for h in range(0, n_hashes, _HASH_BLOCK):
                block = a[h:h + _HASH_BLOCK, None] * x
                block += b[h:h + _HASH_BLOCK, None]
                sig[h:h + _HASH_BLOCK, i:j] = np.minimum.reduceat(block, local, axis=1)
            i = j
        sig = np.ascontiguousarray(sig.T)
        docs_out.append(np.asarray(batch, dtype=np.int64)[doc[seg]])
        sigs_out.append(sig)

    for i, t in enumerate(texts):
        batch.append(i)
        size += len(t)
        if size >= _BATCH_CHARS:
            flush()
            batch, size = [], 0
    if batch:
        flush()
    if not docs_out:
        return np.empty(0, np.int64), np.empty((0, n_hashes), _U64)
    return np.concatenate(docs_out), np.concatenate(sigs_out)


# ----------------------------------------------------------------------- stages


def _band_names(files: Iterable[str]) -> list[str]:
    """The band matrices of a signature file (`band_NNN`; not their `_rows`/`_hi` companions)."""
    return sorted(f for f in files if re.fullmatch(r"band_\d{3}", f))


def signature_arrays(shard_index: int, n_docs: int, rows: np.ndarray, sig: np.ndarray, n_bands: int,
                     hashes_per_band: int) -> dict[str, np.ndarray]:
    """The members of one signature file: each band sorted by `band_hash_hi`, with its rows and hashes."""
    arrays = {"shard": np.asarray(shard_index, np.int64), "n_docs": np.asarray(n_docs, np.int64),
              "rows": np.asarray(rows, np.int64)}
    r = hashes_per_band
    for band in range(n_bands):
        mat = np.ascontiguousarray(sig[:, band * r:(band + 1) * r], dtype=_U64)
        hi = band_hash_hi(mat)
        order = np.argsort(hi, kind="stable")
        arrays[f"band_{band:03d}"] = np.ascontiguousarray(mat[order])
        arrays[f"band_{band:03d}_rows"] = np.asarray(rows, np.int64)[order].astype(np.uint32)
        arrays[f"band_{band:03d}_hi"] = hi[order]
    return arrays


def write_signatures(out_path: str, arrays: dict[str, np.ndarray]) -> None:
    """Write `signature_arrays` to `out_path` atomically (uncompressed, so bands can be read by range)."""
    _save_npz(out_path, arrays)


def compute_signatures(parquet_path: str, out_path: str, shard_index: int,
                       cfg: MinhashSettings | None = None) -> int:
    """Write the MinHash signatures of one pre-dedup Parquet shard to `out_path` (.npz).

    The file holds `shard`, `n_docs`, `rows` (row of each signed doc in the shard)
    and per band a `band_NNN` matrix [n, hashes_per_bucket] sorted by its
    partition hash, with `band_NNN_rows` and `band_NNN_hi` (`signature_arrays`),
    so `lsh_band` reads only its band, or only its partition of it. Returns the
    number of signed documents.
    """
    if not 0 <= shard_index < 2**31:  # int32 in the cluster table, high half of the uint64 key
        raise ValueError(f"shard_index {shard_index} must be in [0, 2^31)")
    if not Path(parquet_path).exists():
        raise FileNotFoundError(f"pre-dedup shard {parquet_path} does not exist; run the process stage first")
    t0 = time.perf_counter()
    table = pq.read_table(parquet_path, columns=["text"])
    texts = [t if t is not None else "" for t in table.column("text").to_pylist()]
    rows, sig = signatures(texts, cfg)
    n_bands = _setting(cfg, "minhash_buckets", 14)
    r = _setting(cfg, "minhash_hashes_per_bucket", 8)
    write_signatures(out_path, signature_arrays(shard_index, len(texts), rows, sig, n_bands, r))
    log.info("minhash shard %d: %d/%d docs signed in %.2fs → %s", shard_index, rows.size,
             len(texts), time.perf_counter() - t0, out_path)
    return int(rows.size)


def band_hash_hi(band_rows: np.ndarray) -> np.ndarray:
    """A 32-bit hash of each band row (uint32): equal rows (one bucket) get equal values."""
    band_rows = band_rows.astype(_U64, copy=False)
    if len(band_rows) == 0 or band_rows.ndim != 2 or band_rows.shape[1] == 0:
        return np.empty(len(band_rows), np.uint32)
    h = np.ascontiguousarray(band_rows[:, 0]).copy()  # min-hashes are small numbers: mix first
    for j in range(1, band_rows.shape[1]):
        h ^= band_rows[:, j] * _NGRAM_MULT[j % len(_NGRAM_MULT)]
    return (_mix64(h) >> _U64(32)).astype(np.uint32)


def partition_range(part: int, n_parts: int) -> tuple[int, int]:
    """The `band_hash_hi` values [lo, hi) of partition `part`: n_parts equal ranges of 0..2^32."""
    return -(-part * 2**32 // n_parts), -(-(part + 1) * 2**32 // n_parts)


def band_partition(band_rows: np.ndarray, n_parts: int) -> np.ndarray:
    """Partition (0..n_parts-1) of each band row: rows in one bucket always share a partition.

    A range of `band_hash_hi` (`partition_range`), not a modulo: a file sorted by
    the hash holds each partition as one contiguous slice, for any n_parts.
    """
    if n_parts <= 1:
        return np.zeros(len(band_rows), dtype=np.int64)
    return ((band_hash_hi(band_rows).astype(_U64) * _U64(n_parts)) >> _U64(32)).astype(np.int64)


def read_band(path: str, band: int, part: int = 0, n_parts: int = 1) -> tuple[np.ndarray, np.ndarray, int]:
    """(doc keys, band rows, bytes read) of partition `part` of one band of one signature file.

    A sorted file (`signature_arrays`) is read by range: the partition's slice
    only. An older file (no `band_NNN_rows`) is read whole and filtered.
    """
    name = f"band_{band:03d}"
    with StoredNpz(path) as z:
        files = z.names()
        if name not in files:
            have = _band_names(files)
            raise ValueError(f"{path} has no {name} (it has {len(have)} bands); "
                             "recompute signatures with the same minhash_buckets")
        shard = int(z.rows("shard", 0, 1).reshape(-1)[0])  # a 0-d member: one item
        if f"{name}_rows" in files:
            lo, hi = 0, z.length(name)
            if n_parts > 1:
                v_lo, v_hi = partition_range(part, n_parts)
                lo = z.search(f"{name}_hi", v_lo)
                hi = z.search(f"{name}_hi", v_hi) if v_hi < 2**32 else z.length(name)
            mat = z.rows(name, lo, hi)
            rows = z.rows(f"{name}_rows", lo, hi).astype(_U64)
        else:  # written before bands were sorted: the whole band, then this partition's rows
            n = z.length(name)
            mat = z.rows(name, 0, n).astype(_U64)
            rows = z.rows("rows", 0, z.length("rows")).astype(_U64)
            if n_parts > 1:
                mine = band_partition(mat, n_parts) == part
                rows, mat = rows[mine], mat[mine]
        nbytes = z.nbytes
    keys = (_U64(shard) << _U64(32)) | rows
    return keys, mat.astype(_U64, copy=False), nbytes


def bucket_pairs(keys: np.ndarray, mat: np.ndarray) -> np.ndarray:
    """Pairs [m, 2] (bucket's smallest key, member) of the rows of `mat` that are equal (one band)."""
    pairs = np.empty((0, 2), _U64)
    if keys.size > 1:
        # sort by (hashes..., key) so each bucket is a run with its smallest key first
        order = np.lexsort((keys,) + tuple(mat[:, j] for j in range(mat.shape[1] - 1, -1, -1)))
        mat, keys = mat[order], keys[order]
        same = np.all(mat[1:] == mat[:-1], axis=1)
        if same.any():
            run_start = np.flatnonzero(np.concatenate(([True], ~same)))
            run_of = np.cumsum(np.concatenate(([True], ~same))) - 1
            members = np.flatnonzero(np.concatenate(([False], same)))
            pairs = np.stack([keys[run_start[run_of[members]]], keys[members]], axis=1)
    return pairs


def lsh_band(signature_paths: list[str], band: int, out_path: str, part: int = 0, n_parts: int = 1) -> int:
    """Bucket all documents of all shards by one band; write candidate pairs to `out_path` (.npy).

    The output is a uint64 array [m, 2] of doc keys (lower key first): each
    member of a bucket is paired with the bucket's smallest key. Returns m.
    With `n_parts` > 1 only the rows of partition `part` (`band_partition`) are
    bucketed: memory is 1/n_parts of the band, and the n_parts outputs together
    hold exactly the pairs of the whole band (a bucket never spans partitions).
    """
    if not 0 <= part < n_parts:
        raise ValueError(f"partition {part} is outside 0..{n_parts - 1}")
    t0 = time.perf_counter()
    keys_l, bands_l, nbytes = [], [], 0
    for path in signature_paths:
        keys, mat, n = read_band(path, band, part, n_parts)
        nbytes += n
        keys_l.append(keys)
        bands_l.append(mat)
    if keys_l:
        keys = np.concatenate(keys_l)
        mat = np.concatenate(bands_l)
    else:
        keys, mat = np.empty(0, _U64), np.empty((0, 1), _U64)
    pairs = bucket_pairs(keys, mat)
    _save_npy(out_path, pairs)
    log.info("lsh band %d part %d/%d: %d docs (%d bytes read), %d candidate pairs in %.2fs", band, part, n_parts,
             keys.size, nbytes, len(pairs), time.perf_counter() - t0)
    return int(len(pairs))


def read_pairs(path: str) -> np.ndarray:
    """One pair file of `lsh_band`, checked: uint64 [m, 2]."""
    a = np.load(path, allow_pickle=False)
    if a.ndim != 2 or a.shape[1] != 2:
        raise ValueError(f"{path} is not a pair file ([m, 2] uint64); re-run lsh_band for it")
    return a.astype(_U64, copy=False)


def jaccard_filter(pairs: np.ndarray, signature_paths: list[str], threshold: float) -> np.ndarray:
    """The pairs whose estimated Jaccard (share of equal min-hashes, all bands) is ≥ `threshold`.

    LSH pairs documents that agree on one band; this exact check drops pairs
    whose full signatures say they are less similar (FineWeb does not check).
    Reads the signature file of each shard the pairs touch, one at a time;
    memory: two signatures (bands·rows·8 bytes each) per pair.
    """
    if pairs.size == 0:
        return pairs
    by_shard: dict[int, str] = {}
    for p in signature_paths:
        with np.load(p, allow_pickle=False) as z:
            by_shard[int(z["shard"])] = p
    sides = []
    for col in (0, 1):
        keys = pairs[:, col]
        shard = (keys >> _U64(32)).astype(np.int64)
        row = (keys & _U64(_MASK32)).astype(np.int64)
        out = None
        for s in np.unique(shard):
            if int(s) not in by_shard:
                raise ValueError(f"pairs name shard {int(s)}, which has no signature file among the "
                                 f"{len(signature_paths)} given; re-run the minhash steps")
            with np.load(by_shard[int(s)], allow_pickle=False) as z:
                sig, rows = _full_signatures(z)
            if out is None:
                out = np.empty((len(pairs), sig.shape[1]), _U64)
            sel = shard == s
            at = np.searchsorted(rows, row[sel])  # rows are increasing (the signed docs, in order)
            if np.any(at >= rows.size) or np.any(rows[np.minimum(at, rows.size - 1)] != row[sel]):
                raise ValueError(f"pairs name rows of shard {int(s)} that have no signature; "
                                 "re-run the minhash steps")
            out[sel] = sig[at]
        sides.append(out)
    agree = (sides[0] == sides[1]).mean(axis=1)
    return pairs[agree >= threshold]


def _full_signatures(z) -> tuple[np.ndarray, np.ndarray]:
    """(all bands side by side [n, bands·rows] in the order of `rows`, rows) of an open signature file."""
    rows = z["rows"]
    blocks = []
    for name in _band_names(z.files):
        mat = z[name]
        if f"{name}_rows" in z.files:  # sorted by its partition hash: back to the order of `rows`
            block = np.empty_like(mat)
            block[np.searchsorted(rows, z[f"{name}_rows"].astype(np.int64))] = mat
            mat = block
        blocks.append(mat)
    return np.concatenate(blocks, axis=1), rows


def connected_components(u: np.ndarray, v: np.ndarray, n: int) -> np.ndarray:
    """Label of each of `n` nodes = smallest node index in its component (edges u[i]–v[i])."""
    parent = np.arange(n, dtype=np.int64)
    while True:
        pu, pv = parent[u], parent[v]
        differ = pu != pv
        if not differ.any():
            return parent
        pu, pv = pu[differ], pv[differ]
        # hook the larger root under the smaller: parent[x] <= x always, so no cycles
        np.minimum.at(parent, np.maximum(pu, pv), np.minimum(pu, pv))
        while True:  # pointer jumping until every node points at its root
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped


def cluster(pair_paths: list[str], out_path: str, signature_paths: list[str] | None = None,
            jaccard_threshold: float | None = None) -> dict[str, int]:
    """Connected components over the pairs of all bands; write the cluster table (Parquet).

    One row per document that is in a cluster (size ≥ 2): shard, row,
    cluster_id (the smallest key of the cluster), cluster_size, drop (True for
    all but the smallest key). Documents not listed are unique. Returns
    {"pairs", "clusters", "docs_in_clusters", "docs_dropped", "largest_cluster"}
    (+ "pairs_below_jaccard" when `jaccard_threshold` is set: then only pairs
    whose full signatures (from `signature_paths`) agree that much join clusters).
    This is the single-node version; `tasks.curation.dedup_ray.cluster_partitioned` gives
    the same table with bounded memory per worker.
    """
    t0 = time.perf_counter()
    arrays = [read_pairs(p) for p in pair_paths]
    n_in = sum(len(a) for a in arrays)
    if jaccard_threshold is not None:
        arrays = [jaccard_filter(a, signature_paths or [], jaccard_threshold) for a in arrays]
    pairs = np.concatenate(arrays).astype(_U64) if arrays else np.empty((0, 2), _U64)
    nodes, inverse = np.unique(pairs.reshape(-1), return_inverse=True)
    inverse = inverse.reshape(-1, 2)
    labels = connected_components(inverse[:, 0], inverse[:, 1], nodes.size)
    sizes = np.bincount(labels, minlength=nodes.size)
    cluster_key = nodes[labels]
    drop = labels != np.arange(nodes.size)
    table = cluster_table(nodes, cluster_key, sizes[labels])
    with atomic_path(out_path) as tmp:
        pq.write_table(table, tmp)
    n_clusters = int(np.count_nonzero(labels == np.arange(nodes.size)))
    stats = {"pairs": int(n_in), "clusters": n_clusters, "docs_in_clusters": int(nodes.size),
             "docs_dropped": int(drop.sum()), "largest_cluster": int(sizes.max()) if nodes.size else 0}
    if jaccard_threshold is not None:
        stats["pairs_below_jaccard"] = int(n_in - len(pairs))
    log.info("minhash cluster: %s in %.2fs", stats, time.perf_counter() - t0)
    return stats


def cluster_table(nodes: np.ndarray, cluster_key: np.ndarray, size: np.ndarray) -> pa.Table:
    """The cluster table (CLUSTER_SCHEMA) of doc keys `nodes` with their cluster's smallest key and size."""
    nodes = nodes.astype(_U64, copy=False)
    return pa.table({
        "shard": (nodes >> _U64(32)).astype(np.int32),
        "row": (nodes & _U64(_MASK32)).astype(np.int64),
        "cluster_id": cluster_key.astype(np.int64),
        "cluster_size": size.astype(np.int64),
        "drop": nodes != cluster_key.astype(_U64, copy=False),
    }, schema=CLUSTER_SCHEMA)
