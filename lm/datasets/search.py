"""GENERATED search conversations from the indexed corpus, and the search eval.

A question is made from one passage of the index: its query is the passage's
rarest words near its start (what the search tool still shows after its budget
cut); the question names them. The assistant calls `search: QUERY`; the tool's
real output (lm/tools/search.py, the same settings serving uses) is the tool output;
the answer copies a span of the returned passage and cites its URL:

    user:      What does the web say about Netbot Jango Excite?
    assistant: <|tool_start|>search: Netbot Jango Excite<|tool_end|>
               <|output_start|>[1] https://… (2024-04-25)\\nDan is … <|output_end|>
               He co-founded Netbot Incorporated, creator of Jango Shopping Search …
               Source: https://…

Only questions whose source passage the search returns are kept (the rest are
counted as `not_retrieved`). Passages are split by document: held-in documents
make SFT data, held-out ones the eval (`search_eval`), so the eval asks about
passages the model never saw as answers.

Eval (per model, greedy): search rate (the reply calls `search`), grounded rate
(the reply copies ≥ `min_copy` consecutive words of a returned passage), cite
rate (the reply names a URL the tool returned), and how often the search
returned the passage the question was made from.
"""
from __future__ import annotations

import hashlib
import json
import math
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lm.tools.search import MANIFEST, SearchTool, read_manifest

SOURCE = "generated_search"  # its name in the SFT mixture and its skip counters
QUESTION_TEMPLATES = [
    "What does the web say about {q}?",
    "Search the crawl: what is known about {q}?",
    "Tell me about {q}.",
    "I read something about {q}. What was it?",
    "Look up {q} for me.",
    "What can you find on {q}?",
]
STOPWORDS = frozenset("""a about above after again against all also am an and any are as at be because been before
being below between both but by can could did do does doing down during each few for from further had has have
having he her here hers herself him himself his how i if in into is it its itself just more most my myself no nor
not now of off on once only or other our ours out over own same she should so some such than that the their them
then there these they this those through to too under until up very was we were what when where which while who
whom why will with would you your yours also many much one two new may might must shall since upon within without
""".split())
_WORD = re.compile(r"[A-Za-z][A-Za-z\-']+")
_URL = re.compile(r"https?://\S+")
_CITATION = re.compile(r"\b(?:sources?|see|from)\s*:?\s*(?=https?://)", re.I)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def read_passages(index_dir: str | Path) -> list[dict[str, str]]:
    """Every passage the index holds (from the Parquet beside it), in manifest order."""
    import pyarrow.parquet as pq

    m = read_manifest(index_dir)
    out: list[dict[str, str]] = []
    for s in m.get("shards", []):
        path = Path(index_dir) / s["passages_path"]
        out += pq.read_table(path).to_pylist()
    return out


def is_heldout(doc_id: str, fraction: float, salt: str = "crawl2chat-search") -> bool:
    """Stable split by document: the same document is always on the same side."""
    h = int(hashlib.sha256(f"{salt}:{doc_id}".encode()).hexdigest()[:8], 16)
    return h < fraction * 0xFFFFFFFF


def doc_freq(passages: list[dict[str, str]]) -> Counter:
    """In how many passages each lowercase word occurs (for picking rare query words)."""
    df: Counter = Counter()
    for p in passages:
        df.update({w.lower() for w in _WORD.findall(p["text"])})
    return df


def query_terms(text: str, df: Counter, n_passages: int, n_terms: int = 3, window: int = 30) -> list[str]:
    """The `n_terms` rarest content words among the first `window` words, in text order."""
    words = text.split()[:window]
    seen, cands = set(), []
    for pos, raw in enumerate(words):
        m = _WORD.fullmatch(raw.strip(".,;:!?()[]\"'"))
        if not m:
            continue
        w = m.group(0)
        lw = w.lower()
        if lw in STOPWORDS or len(lw) < 4 or lw in seen:
            continue
        seen.add(lw)
        idf = math.log((n_passages + 1) / (df.get(lw, 0) + 1))
        cands.append((idf, pos, w))
    best = sorted(cands, key=lambda c: (-c[0], c[1]))[:n_terms]
    return [w for _, _, w in sorted(best, key=lambda c: c[1])]


def answer_span(text: str, terms: list[str], max_words: int) -> str:
    """A span of `text` to copy: the sentence holding the first query term, cut to `max_words` words."""
    sentences = [s for s in _SENTENCE_END.split(text.replace("\n", " ")) if s.strip()]
    first = terms[0].lower() if terms else ""
    pick = next((s for s in sentences if first and first in s.lower()), sentences[0] if sentences else "")
    words = pick.split()
    return " ".join(words[:max_words])


def answer_words(max_tokens: int) -> int:
    """Words an answer copies: a fifth of the tool budget, 5–40 (the tiny model's context is 128 tokens)."""
    return min(40, max(5, max_tokens // 5))


@dataclass
class SearchItem:
    """One GENERATED search question about one passage, with the tool output it gets."""

    question: str
    query: str
    passage_id: str
    url: str
    tool_output: str
    answer: str

    def conversation(self) -> list[dict]:
        return [{"role": "user", "content": self.question},
                {"role": "assistant", "content": [
                    {"type": "tool_call", "text": f"search: {self.query}"},
                    {"type": "tool_output", "text": self.tool_output},
                    {"type": "text", "text": self.answer}]}]


@dataclass
class SearchDataStats:
    kept: int = 0
    skipped: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {"kept": self.kept, "skipped": dict(self.skipped)}


def generate_items(index_dir: str | Path, n: int, split: str = "train", heldout_fraction: float = 0.2,
                   seed: int = 0, tool: SearchTool | None = None, stats: SearchDataStats | None = None,
                   tokenizer=None, max_len: int | None = None, require_answer: bool = True) -> list[SearchItem]:
    """Up to `n` GENERATED search items from held-in (`split="train"`) or held-out (`"eval"`) passages.

    `require_answer` (SFT): keep only questions whose passage the search shows with
    words to copy. Without it (eval) every question counts: whether the model
    searches, copies and cites is measured on whatever the search returns.

    With `tokenizer` and `max_len`, only items whose rendered conversation fits
    `max_len` tokens are kept (the rest counted `too_long`): a small model's
    context holds only passages with short URLs.
    """
    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', not {split!r}")
    stats = stats if stats is not None else SearchDataStats()
    tool = tool or SearchTool(index_dir)
    passages = read_passages(index_dir)
    df = doc_freq(passages)
    want_heldout = split == "eval"
    pool = [p for p in passages if is_heldout(p["doc_id"], heldout_fraction) == want_heldout]
    random.Random(seed).shuffle(pool)
    rng = random.Random(seed + 1)
    max_words = answer_words(tool.max_tokens)
    renderer = None
    if tokenizer is not None and max_len:
        from lm.chat import ChatRenderer

        renderer = ChatRenderer(tokenizer)
    items: list[SearchItem] = []
    for p in pool:
        if len(items) >= n:
            break
        terms = query_terms(p["text"], df, len(passages))
        if len(terms) < 2:
            stats.skipped["too_few_terms"] += 1
            continue
        query = " ".join(terms)
        output, hits = tool.run_hits(query)
        hit = next((h for h in hits if h.passage_id == p["passage_id"]), None)
        if not require_answer:
            question = rng.choice(QUESTION_TEMPLATES).format(q=query)
            items.append(SearchItem(question, query, p["passage_id"], p["url"], output, ""))
            stats.kept += 1
            continue
        if hit is None:
            stats.skipped["not_retrieved"] += 1  # the search would not show it: no honest answer to copy
            continue
        span = answer_span(hit.text, terms, max_words)
        if len(span.split()) < 3:
            stats.skipped["nothing_to_copy"] += 1
            continue
        question = rng.choice(QUESTION_TEMPLATES).format(q=query)
        item = SearchItem(question, query, p["passage_id"], hit.url, output, f"{span}\nSource: {hit.url}")
        if renderer is not None and len(renderer.render(item.conversation())) > max_len:
            stats.skipped["too_long"] += 1
            continue
        items.append(item)
        stats.kept += 1
    return items


def generate_search(index_dir: str | Path, n: int, seed: int = 0, heldout_fraction: float = 0.2,
                    stats: SearchDataStats | None = None, tokenizer=None,
                    max_len: int | None = None) -> list[list[dict]]:
    """GENERATED search conversations (SFT) from the index's held-in passages."""
    return [it.conversation() for it in generate_items(index_dir, n, "train", heldout_fraction, seed, stats=stats,
                                                       tokenizer=tokenizer, max_len=max_len)]


# ------------------------------------------------------------------------ eval
_CALL = re.compile(r"^\s*search\s*[:(]", re.I)


def longest_copy(answer: str, source: str) -> int:
    """Length in words of the longest run of consecutive words `answer` shares with `source`."""
    a = [w.lower() for w in re.findall(r"\w+", answer)]
    b = [w.lower() for w in re.findall(r"\w+", source)]
    if not a or not b:
        return 0
    best = 0
    prev = [0] * (len(b) + 1)
    for i in range(1, len(a) + 1):
        cur = [0] * (len(b) + 1)
        ai = a[i - 1]
        for j in range(1, len(b) + 1):
            if ai == b[j - 1]:
                cur[j] = prev[j - 1] + 1
                if cur[j] > best:
                    best = cur[j]
        prev = cur
    return best


def grade_reply(calls: list[str], outputs: list[str], answer: str, target_url: str | None = None,
                min_copy: int = 5) -> dict[str, bool]:
    """Did the reply search, copy ≥ `min_copy` words of a returned passage, cite a returned URL?"""
    searched = any(_CALL.match(c) for c in calls)
    returned = [o for c, o in zip(calls, outputs) if _CALL.match(c) and not o.startswith("error:")]
    urls = {u.rstrip(").,") for o in returned for u in _URL.findall(o)}
    answer_urls = {u.rstrip(").,") for u in _URL.findall(answer)}
    prose = _URL.sub(" ", _CITATION.sub(" ", answer))  # the claim, without its citation
    need = min(min_copy, len(re.findall(r"\w+", prose)))
    grounded = bool(returned) and need >= 3 and any(longest_copy(prose, _URL.sub(" ", o)) >= need for o in returned)
    return {"searched": searched, "grounded": grounded, "cited": bool(urls & answer_urls),
            "retrieved": target_url is not None and target_url in urls}


def split_completion(tokens: list[int], forced: list[int], tokenizer) -> tuple[list[str], list[str], str]:
    """(tool calls, tool outputs, the model's own text outside calls) of one engine Completion."""
    sp = tokenizer.encode_special
    t_start, t_end, o_start, o_end = (sp(f"<|{n}|>") for n in ("tool_start", "tool_end", "output_start",
                                                               "output_end"))
    stops = {sp("<|assistant_end|>"), sp("<|bos|>")}
    calls, outputs, text = [], [], []
    cur: list[int] = []
    mode = "text"
    for tok, f in zip(tokens, forced):
        if tok in stops and not f:
            break
        if tok == t_start and not f:
            text.append(tokenizer.decode(cur)); cur, mode = [], "call"
        elif tok == t_end and mode == "call":
            calls.append(tokenizer.decode(cur)); cur, mode = [], "text"
        elif tok == o_start and f:
            cur, mode = [], "output"
        elif tok == o_end and mode == "output":
            outputs.append(tokenizer.decode(cur)); cur, mode = [], "text"
        else:
            cur.append(tok)
    if mode == "text":
        text.append(tokenizer.decode(cur))
    while len(outputs) < len(calls):
        outputs.append("")
    return calls, outputs, " ".join(t.strip() for t in text if t.strip())


def search_eval(engine, index_dir: str | Path, n: int, max_new_tokens: int = 64, heldout_fraction: float = 0.2,
                seed: int = 0, batch_size: int = 8, min_copy: int = 5) -> dict[str, Any]:
    """Greedy replies to `n` questions about held-out passages, with the search tool on; rates + samples."""
    from lm.chat import ChatRenderer
    from lm.engine import Engine
    from lm.tools import default_tools

    tool = SearchTool(index_dir)
    stats = SearchDataStats()
    items = generate_items(index_dir, n, "eval", heldout_fraction, seed, tool=tool, stats=stats,
                           require_answer=False)
    eng = Engine(engine.model, engine.tokenizer, tools=default_tools(search=tool), max_context=engine.max_context)
    r = ChatRenderer(engine.tokenizer)
    counts: Counter = Counter()
    samples = []
    for b in range(0, len(items), batch_size):
        chunk = items[b:b + batch_size]
        prompts = [r.render_for_completion([{"role": "user", "content": it.question}]) for it in chunk]
        comps = eng.generate(prompts, max_new_tokens=max_new_tokens, temperature=0.0, seed=seed,
                             truncate="left")
        for it, c in zip(chunk, comps):
            calls, outputs, answer = split_completion(c.tokens, c.forced_mask, engine.tokenizer)
            g = grade_reply(calls, outputs, answer, it.url, min_copy)
            counts.update(k for k, v in g.items() if v)
            if len(samples) < 3:
                samples.append({"question": it.question, "reply": c.text, **g})
    m = len(items)
    rate = (lambda k: counts[k] / m) if m else (lambda k: None)
    return {"n": m, "search_rate": rate("searched"), "grounded_rate": rate("grounded"),
            "cite_rate": rate("cited"), "retrieved_rate": rate("retrieved"),
            "skipped": stats.as_dict()["skipped"], "samples": samples}


def index_available(index_dir: str | Path | None) -> bool:
    """Whether a complete index (manifest written) is at `index_dir`."""
    return bool(index_dir) and (Path(index_dir) / MANIFEST).exists()


def describe(items: list[SearchItem]) -> str:
    """JSON lines of items (for inspecting the GENERATED data)."""
    return "".join(json.dumps(it.__dict__) + "\n" for it in items)
