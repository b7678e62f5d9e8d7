"""Byte-level BPE tokenizer with chat/tool special tokens (HF `tokenizers`, Rust).

- GPT-4-style pre-tokenisation regex, then byte-level mapping: any byte string
  is representable, so encoding never fails and decoding round-trips.
- Special tokens are only ever produced on purpose (`encode_special`): plain
  text that happens to contain `<|assistant_start|>` encodes as ordinary tokens
  (`encode_special_tokens = True` turns off special-token matching in text).
- `encode_bytes` / `decode_bytes` round-trip arbitrary bytes, invalid UTF-8 too.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Regex, Tokenizer as HFTokenizer, decoders, models, pre_tokenizers, trainers

SPECIAL_TOKENS = [
    "<|bos|>",
    "<|user_start|>", "<|user_end|>",
    "<|assistant_start|>", "<|assistant_end|>",
    "<|system_start|>", "<|system_end|>",
    "<|tool_start|>", "<|tool_end|>",
    "<|output_start|>", "<|output_end|>",
    "<|pad|>",
]

# GPT-4 (cl100k) split pattern, with numbers split into groups of 1–2 digits
# (as nanochat does) which helps small vocabularies with arithmetic.
SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,2}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"""
)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte → printable-unicode map (what ByteLevel uses)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


BYTE_TO_CHAR = _bytes_to_unicode()
CHAR_TO_BYTE = {c: b for b, c in BYTE_TO_CHAR.items()}
_UTF8_RUNS = re.compile(rb"(?:[\x00-\x7f]|[\xc2-\xdf][\x80-\xbf]|\xe0[\xa0-\xbf][\x80-\xbf]|[\xe1-\xec\xee\xef][\x80-\xbf]{2}"
                        rb"|\xed[\x80-\x9f][\x80-\xbf]|\xf0[\x90-\xbf][\x80-\xbf]{2}|[\xf1-\xf3][\x80-\xbf]{3}|\xf4[\x80-\x8f][\x80-\xbf]{2})+")


def _build_empty() -> HFTokenizer:
    tok = HFTokenizer(models.BPE(byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    return tok


class Tokenizer:
    """Thin wrapper over a HF `tokenizers.Tokenizer` with our special tokens."""

    def __init__(self, hf: HFTokenizer):
        self.hf = hf
        self.hf.encode_special_tokens = True  # text never turns into special tokens
        missing = [s for s in SPECIAL_TOKENS if hf.token_to_id(s) is None]
        if missing:
            raise ValueError(f"tokenizer lacks special tokens {missing}")
        self._special = {s: hf.token_to_id(s) for s in SPECIAL_TOKENS}
        self._special_ids = set(self._special.values())
        self._byte_ids = [hf.token_to_id(BYTE_TO_CHAR[b]) for b in range(256)]
        if None in self._byte_ids:
            raise ValueError("tokenizer is not byte-level: some of the 256 byte tokens are missing")
        self._id_bytes: list[bytes] | None = None  # id -> bytes, built on first decode

    # ------------------------------------------------------------ train / io
    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, min_frequency: int = 2) -> "Tokenizer":
        """Train byte-level BPE on an iterator of documents.

        `vocab_size` counts the 256 byte tokens, the merges and SPECIAL_TOKENS (which
        take the last ids). Too little text for that many merges (given
        `min_frequency`) yields a smaller vocabulary; check `.vocab_size`.
        The result is deterministic for the same texts in the same order.
        """
        n_special = len(SPECIAL_TOKENS)
        if vocab_size < 256 + n_special:
            raise ValueError(f"vocab_size {vocab_size} too small: need ≥ {256 + n_special} (bytes + specials)")
        hf = _build_empty()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size - n_special,
            min_frequency=min_frequency,
            show_progress=False,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            special_tokens=[],
        )
        hf.train_from_iterator(texts, trainer=trainer)
        hf.add_special_tokens(SPECIAL_TOKENS)
        return cls(hf)

    @classmethod
    def load(cls, path: str | Path) -> "Tokenizer":
        """Load `tokenizer.json` (a file, or a directory holding one)."""
        path = Path(path)
        if path.is_dir():
            path = path / "tokenizer.json"
        if not path.exists():
            raise FileNotFoundError(f"no tokenizer at {path}; run `crawl2chat tokenize` first")
        try:
            hf = HFTokenizer.from_file(str(path))
        except Exception as e:  # the Rust side raises a bare Exception for bad JSON
            raise ValueError(f"corrupt tokenizer file {path}: {e}; re-run `crawl2chat tokenize`") from e
        return cls(hf)

    def save(self, path: str | Path) -> Path:
        """Write `tokenizer.json` atomically (`path`: the file or its directory)."""
        path = Path(path)
        if path.is_dir() or path.suffix != ".json":
            path = path / "tokenizer.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
        tmp.write_text(self.to_json())
        tmp.replace(path)
        return path

    def to_json(self) -> str:
        return self.hf.to_str()

    def sha256(self) -> str:
        """Content hash of the tokenizer (key-order independent): names it in manifests."""
        return hashlib.sha256(json.dumps(json.loads(self.to_json()), sort_keys=True).encode()).hexdigest()

    # ------------------------------------------------------------- encoding
    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size()

    @property
    def bos_id(self) -> int:
        return self._special["<|bos|>"]

    @property
    def special_ids(self) -> set[int]:
        return set(self._special_ids)

    def encode_special(self, name: str) -> int:
        """Id of a special token by name, e.g. `"<|assistant_start|>"`."""
        try:
            return self._special[name]
        except KeyError:
            raise ValueError(f"unknown special token {name!r}; known: {SPECIAL_TOKENS}") from None

    def encode(self, text: str, prepend_bos: bool = False) -> list[int]:
        """Ordinary token ids for `text` (never special ids), optionally after BOS."""
        try:
            ids = self.hf.encode(text, add_special_tokens=False).ids
        except TypeError:
            raise ValueError(_bad_text_message(text)) from None
        return [self.bos_id, *ids] if prepend_bos else ids

    def encode_batch(self, texts: list[str], prepend_bos: bool = False) -> list[list[int]]:
        """`encode` over many texts at once (parallel in Rust)."""
        try:
            encs = self.hf.encode_batch(texts, add_special_tokens=False)
        except TypeError:
            bad = next((t for t in texts if not _is_encodable(t)), None)
            raise ValueError(_bad_text_message(bad)) from None
        if prepend_bos:
            return [[self.bos_id, *e.ids] for e in encs]
        return [e.ids for e in encs]

    def decode(self, ids: Iterable[int], skip_special: bool = False) -> str:
        """Text for `ids`; bytes that are not valid UTF-8 become U+FFFD."""
        ids = list(ids)
        if skip_special:
            ids = [i for i in ids if i not in self._special_ids]
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def encode_bytes(self, data: bytes) -> list[int]:
        """Encode arbitrary bytes: valid UTF-8 runs via BPE, other bytes as byte tokens."""
        out: list[int] = []
        pos = 0
        for m in _UTF8_RUNS.finditer(data):
            out.extend(self._byte_ids[b] for b in data[pos:m.start()])
            out.extend(self.encode(m.group().decode("utf-8")))
            pos = m.end()
        out.extend(self._byte_ids[b] for b in data[pos:])
        return out

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """Exact inverse of encode_bytes (special tokens decode to their text)."""
        table = self.id_bytes_table()
        ids = [int(i) for i in ids]
        if ids and not 0 <= min(ids) <= max(ids) < len(table):
            bad = next(i for i in ids if not 0 <= i < len(table))
            raise ValueError(f"token id {bad} outside vocabulary of {self.vocab_size}")
        return b"".join([table[i] for i in ids])

    def id_bytes_table(self) -> list[bytes]:
        """Bytes of every token id (special tokens: their UTF-8 text); index = id."""
        if self._id_bytes is None:
            table = []
            added = self.hf.get_added_tokens_decoder()  # ours, and an imported base model's own (lm/hf.py)
            for i in range(self.vocab_size):
                piece = self.hf.id_to_token(i)
                if piece is None:
                    raise ValueError(f"tokenizer has a hole at id {i}: ids must be 0..vocab_size-1")
                if i in self._special_ids or i in added:
                    table.append(piece.encode("utf-8"))
                else:
                    table.append(bytes(CHAR_TO_BYTE[c] for c in piece))
            self._id_bytes = table
        return self._id_bytes

    def id_to_token(self, i: int) -> str:
        """The token's string in the byte-level alphabet (e.g. `Ġthe`)."""
        return self.hf.id_to_token(int(i))


def _is_encodable(text: object) -> bool:
    if not isinstance(text, str):
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _bad_text_message(text: object) -> str:
    if not isinstance(text, str):
        return f"can only encode str, got {type(text).__name__}; use encode_bytes for bytes"
    return ("text contains lone surrogates (not valid Unicode); encode the raw bytes with "
            "encode_bytes, or decode the source with errors='replace'")
