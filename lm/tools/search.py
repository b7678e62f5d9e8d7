"""The `search` tool: BM25 full-text search over the corpus crawl2chat curated.

The `index` stage (tasks/index.py) cuts curated documents into passages of a few
hundred words and builds an on-disk Tantivy index of them under `RUN/index/`:

    RUN/index/tantivy/               the Tantivy index (BM25 over `text` and `title`)
    RUN/index/passages/<shard>.parquet  the same passages as Parquet (for GENERATED data)
    RUN/index/manifest.json          written last; holds the tool's settings (`tool`)

The model calls `<|tool_start|>search: QUERY<|tool_end|>`; `SearchTool.run`
returns the top-k passages, each headed by its URL, cut to a token budget, and
the engine forces that text into the context like the calculator's output:

    [1] https://example.org/page (2024-05-20)
    passage text ...
    [2] ...

A query Tantivy's parser rejects (`text:(`, `a^`, an unknown field) comes back as
`error: ...`, never as an exception. Tantivy is imported lazily: `lm/` still
imports (and the other tools still run) on a machine without it.

Token budget: counted in word pieces (`\\w+` runs and single punctuation marks),
not in one model's BPE ids, so the SFT data, eval and serving cut at the same
place whatever tokenizer the model has (a 4k-vocab BPE spends ~1-1.5 ids per piece).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TANTIVY_DIR = "tantivy"
PASSAGES_DIR = "passages"
MANIFEST = "manifest.json"
# Stored fields of every passage (tasks/index.py writes them; the schema is built here).
FIELDS = ("text", "title", "url", "domain", "date", "doc_id", "passage_id", "shard")
SEARCHED = ("text", "title")
DEFAULT_TOP_K = 3
DEFAULT_MAX_TOKENS = 256
_PIECE = re.compile(r"\w+|[^\w\s]")


class SearchError(RuntimeError):
    """The index is missing or unreadable (not a bad query: those return `error: ...`)."""


def _tantivy():
    try:
        import tantivy
    except ImportError as e:  # lm/ runs on boxes without it; only the search tool needs it
        raise SearchError("the search tool needs the `tantivy` package (pip install tantivy)") from e
    return tantivy


def schema():
    """The Tantivy schema of the passage index: searched text fields, stored metadata, raw ids."""
    tv = _tantivy()
    sb = tv.SchemaBuilder()
    sb.add_text_field("text", stored=True, tokenizer_name="en_stem")
    sb.add_text_field("title", stored=True, tokenizer_name="en_stem")
    for name in ("url", "domain", "date", "doc_id", "passage_id", "shard"):
        # raw: exact terms, so a shard's passages can be deleted by its name (incremental re-runs)
        sb.add_text_field(name, stored=True, tokenizer_name="raw")
    return sb.build()


def count_tokens(text: str) -> int:
    """Tokens as the search tool counts them: word pieces (see the module docstring)."""
    return len(_PIECE.findall(text))


def truncate_tokens(text: str, budget: int) -> str:
    """The longest prefix of `text` with at most `budget` word pieces, cut after a whole piece."""
    if budget <= 0:
        return ""
    for i, m in enumerate(_PIECE.finditer(text)):
        if i == budget:
            return text[:m.start()].rstrip()
    return text


@dataclass
class Hit:
    """One returned passage."""

    url: str
    title: str
    domain: str
    date: str
    text: str
    score: float
    doc_id: str = ""
    passage_id: str = ""

    def header(self, i: int | None) -> str:
        """`[i] URL (date)` (`[i]` only among several hits), the title first when it says more than the domain."""
        title = f"{self.title} — " if self.title and self.title != self.domain else ""
        num = f"[{i}] " if i is not None else ""
        return f"{num}{title}{self.url}" + (f" ({self.date[:10]})" if self.date else "")


def format_hits(hits: list[Hit], max_tokens: int) -> tuple[str, list[Hit]]:
    """The tool's text for `hits` within `max_tokens`, and the hits it shows (texts as shown, cut).

    Hits are shown in rank order, each as a header line (URL, domain, date) and its
    text; the last one shown is cut at the budget. A hit whose header no longer fits
    is left out, except the first: the tool always shows at least one URL.
    """
    out: list[str] = []
    shown: list[Hit] = []
    left = max_tokens
    for i, h in enumerate(hits, 1):
        head = h.header(i if len(hits) > 1 else None)
        cost = count_tokens(head)
        if shown and cost + 4 > left:  # no room for this header and a few words: stop
            break
        left -= cost
        body = truncate_tokens(h.text, left)
        left -= count_tokens(body)
        out.append(head + ("\n" + body if body else ""))
        shown.append(Hit(h.url, h.title, h.domain, h.date, body, h.score, h.doc_id, h.passage_id))
        if left <= 0:
            break
    return "\n".join(out), shown


def read_manifest(index_dir: str | Path) -> dict[str, Any]:
    path = Path(index_dir) / MANIFEST
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise SearchError(f"no complete search index at {index_dir} ({path} missing or unreadable); "
                          "build it with `crawl2chat index --data RUN/curate --out RUN/index`") from e
    if not isinstance(data, dict):
        raise SearchError(f"{path} is not a JSON object")
    return data


class SearchIndex:
    """A read-only view of an index built by the `index` stage."""

    def __init__(self, index_dir: str | Path):
        self.dir = Path(index_dir)
        self.manifest = read_manifest(self.dir)
        tv = _tantivy()
        try:
            self.index = tv.Index.open(str(self.dir / TANTIVY_DIR))
        except Exception as e:
            raise SearchError(f"cannot open the Tantivy index under {self.dir / TANTIVY_DIR}: {e}") from e
        self.searcher = self.index.searcher()

    @property
    def num_passages(self) -> int:
        return int(self.searcher.num_docs)

    def search(self, query: str, k: int = DEFAULT_TOP_K) -> list[Hit]:
        """Top-k passages by BM25; raises ValueError when Tantivy's query parser rejects `query`."""
        q = self.index.parse_query(query, list(SEARCHED))
        hits = []
        for score, addr in self.searcher.search(q, max(1, int(k))).hits:
            d = self.searcher.doc(addr).to_dict()

            def first(name: str) -> str:
                v = d.get(name) or [""]
                return str(v[0])

            hits.append(Hit(first("url"), first("title"), first("domain"), first("date"), first("text"),
                            float(score), first("doc_id"), first("passage_id")))
        return hits


MAX_QUERY_CHARS = 300


class SearchTool:
    """`search: QUERY` → the top-k passages with their URLs, within a token budget (never raises).

    top_k / max_tokens default to what the index stage recorded in its manifest
    (`tool`), so SFT data, eval and serving show the model the same thing.
    """

    def __init__(self, index_dir: str | Path, top_k: int | None = None, max_tokens: int | None = None):
        self.index_dir = Path(index_dir)
        self._index: SearchIndex | None = None
        self._top_k, self._max_tokens = top_k, max_tokens
        self.last_hits: list[Hit] = []  # what the latest call showed (eval reads it)

    @property
    def index(self) -> SearchIndex:
        if self._index is None:
            self._index = SearchIndex(self.index_dir)
        return self._index

    @property
    def top_k(self) -> int:
        return int(self._top_k or self.index.manifest.get("tool", {}).get("top_k") or DEFAULT_TOP_K)

    @property
    def max_tokens(self) -> int:
        return int(self._max_tokens or self.index.manifest.get("tool", {}).get("max_tokens") or DEFAULT_MAX_TOKENS)

    def run_hits(self, query: str) -> tuple[str, list[Hit]]:
        """The tool's text and the hits it shows; failures are `error: ...` text with no hits."""
        query = (query or "").strip()
        if not query:
            return "error: empty search query", []
        if len(query) > MAX_QUERY_CHARS:
            return f"error: search query longer than {MAX_QUERY_CHARS} characters", []
        try:
            index = self.index
        except SearchError as e:
            return f"error: {e}", []
        try:
            hits = index.search(query, self.top_k)
        except ValueError as e:  # the query parser's verdict, for the model to read
            return f"error: cannot parse search query {query[:60]!r}: {e}", []
        if not hits:
            return f"no results for {query[:60]!r}", []
        return format_hits(hits, self.max_tokens)

    def __call__(self, query: str) -> str:
        text, self.last_hits = self.run_hits(query)
        return text
