"""Build GENERATED WARC files from real text, for tests and benchmarks.

Real multi-MB Common Crawl files cannot be had here, so this script makes
larger WARCs whose *text* is real (data/text: C4 documents, Wikipedia
articles, Tiny Shakespeare, the CS336 corpus, TinyStories; data/langid:
Tatoeba sentences in 80+ languages) and whose *pages* are built: the text is
wrapped in typical HTML boilerplate (nav menu, sidebar, cookie banner, footer).
Everything is seeded: the same arguments give byte-identical record content.

A generated WARC (`generated_<n>docs_seed<s>.warc.gz`, one gzip member per
record, CC-style `WARC-Identified-Payload-Type` headers) plants, in known
proportions:

- ``clean``        English pages (most of the file);
- ``near_dup``     copies of earlier pages with a few words changed, on another host;
- ``pii``          English pages with e-mails, IPv4 addresses and phone numbers
                   (international, North-American formats) plus non-PII numbers
                   (dates, prices, version numbers) that must survive scrubbing;
- ``blocked``      pages on UT1 adult domains (sample list), UT1 malware URLs, or
                   with banned words in the URL;
- ``non_english``  pages of Tatoeba sentences in other languages;
- ``repetitive``   pages made of one repeated line (fail Gopher repetition);
- ``junk``         binary bodies, empty bodies, non-HTML payloads (PNG, JSON).

`planted_manifest()` returns, per record id, what was planted, so tests can
check the pipeline against it. `write_bad_inputs()` writes the small bad-input
corpus (truncated gzip, corrupt record, binary/empty/undecodable bodies, a
>10 MB page) that the tests feed to `process_warc`.

Usage:
    python data/build_warc.py --docs 2000 --seed 0 --out /tmp/gen/
"""
from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import random
import re
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

# The real source text ships in data/ (text/, langid/, blocklists/); override
# with $CRAWL2CHAT_DATA to build from another copy of the same layout.
SHARED = Path(os.environ.get("CRAWL2CHAT_DATA", Path(__file__).resolve().parent))
SAMPLES = Path(__file__).resolve().parent / "samples"

MIX = {  # share of records per kind (junk split evenly among its sub-kinds)
    "clean": 0.62, "near_dup": 0.08, "pii": 0.08, "blocked": 0.06,
    "non_english": 0.07, "repetitive": 0.03, "junk": 0.06,
}
# A Common-Crawl-like language mix (benchmarks/curate_vs_datatrove.py): CC pages
# are under half English. English kinds total 44 % of records, other languages
# 52 %, junk 4 %; the other languages follow the rough order of Common Crawl's
# published per-crawl language shares (cc-crawl-statistics, CC-MAIN-2024-*,
# rounded), the remaining share spread evenly over every other Tatoeba language.
CC_LANGUAGE_MIX = {
    "clean": 0.34, "near_dup": 0.03, "pii": 0.03, "blocked": 0.02,
    "non_english": 0.52, "repetitive": 0.02, "junk": 0.04,
}
CC_LANGUAGE_WEIGHTS = {  # Tatoeba ISO 639-3 code: share of all CC pages
    "rus": 0.062, "deu": 0.056, "jpn": 0.050, "cmn": 0.048, "spa": 0.046, "fra": 0.044,
    "ita": 0.025, "por": 0.022, "nld": 0.019, "pol": 0.018, "ces": 0.010, "tur": 0.010,
    "vie": 0.010, "ind": 0.010, "swe": 0.007, "ukr": 0.007, "ara": 0.006, "kor": 0.006,
    "*": 0.024,  # every other language in the Tatoeba sample, evenly
}
TOPICS = ["news", "blog", "wiki", "guide", "forum", "library", "notes", "journal", "review", "archive"]
WORDS_SWAP = {"the": "a", "and": "and also", "is": "was", "of": "of the", "in": "within"}


# --------------------------------------------------------------------------- text
def _sentences(paragraph: str) -> list[str]:
    # The wiki demo glues paragraphs ("socialism.Humans"); split there too.
    paragraph = re.sub(r"(?<=[a-z]\.)(?=[A-Z])", " ", paragraph)
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", paragraph) if s.strip()]


def load_english(shared: Path = SHARED) -> list[list[str]]:
    """Real English documents as lists of paragraphs (C4, Wikipedia windows, Shakespeare, ...)."""
    docs: list[list[str]] = []
    with open(shared / "text" / "llamafactory_c4_demo.jsonl", encoding="utf-8") as f:
        for line in f:
            text = json.loads(line)["text"]
            paras = [p.strip() for p in text.split("\n") if p.strip()]
            if sum(len(p) for p in paras) > 300:
                docs.append(paras)
    with open(shared / "text" / "llamafactory_wiki_demo.txt", encoding="utf-8") as f:
        for article in f:
            sents = _sentences(article)
            # windows of ~40 sentences, 5 sentences a paragraph
            for i in range(0, max(1, len(sents) - 20), 40):
                win = sents[i:i + 40]
                docs.append([" ".join(win[j:j + 5]) for j in range(0, len(win), 5)])
    lines = (shared / "text" / "tinyshakespeare.txt").read_text(encoding="utf-8").split("\n\n")
    for i in range(0, len(lines) - 40, 40):  # scenes of ~40 speeches
        docs.append([blk.replace("\n", " ") for blk in lines[i:i + 40]])
    corpus = [ln.strip() for ln in (shared / "text" / "cs336_corpus.en").read_text(encoding="utf-8").splitlines()
              if ln.strip()]
    for i in range(0, len(corpus) - 30, 30):
        docs.append([" ".join(corpus[j:j + 6]) for j in range(i, i + 30, 6)])
    stories = (shared / "text" / "cs336_tinystories_sample.txt").read_text(encoding="utf-8")
    for story in stories.split("<|endoftext|>"):
        paras = [p.strip() for p in story.split("\n") if p.strip()]
        if paras:
            docs.append(paras)
    return docs


def load_non_english(shared: Path = SHARED) -> dict[str, list[str]]:
    """Tatoeba snippets by ISO 639-3 code, English excluded."""
    by_lang: dict[str, list[str]] = {}
    with open(shared / "langid" / "tatoeba_long_cld2.tsv", encoding="utf-8") as f:
        next(f)
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) >= 4 and parts[2] != "eng":
                by_lang.setdefault(parts[2], []).append(parts[3])
    return by_lang


def _load_list(path: Path, limit: int = 5000) -> list[str]:
    out = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            s = line.strip()
            if s and not s.startswith("#") and not s[0].isdigit():
                out.append(s)
            if len(out) >= limit:
                break
    return out


# --------------------------------------------------------------------------- PII
def pii_sentences(rng: random.Random) -> tuple[list[str], list[str], list[str]]:
    """A few sentences with planted PII; returns (sentences, pii strings, non-PII numbers)."""
    user = rng.choice(["jane.doe", "m.smith", "info", "contact_us", "r-jones42", "support+web"])
    email = f"{user}@{rng.choice(['example.com', 'mail.example.org', 'univ.example.edu'])}"
    ip = f"{rng.randint(11, 99)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    a, b, c = rng.randint(201, 989), rng.randint(200, 999), rng.randint(1000, 9999)
    phone = rng.choice([f"({a}) {b}-{c}", f"{a}-{b}-{c}", f"+1 {a} {b} {c}", f"{a}.{b}.{c}",
                        f"+44 20 {rng.randint(7000, 8999)} {rng.randint(1000, 9999)}",
                        f"+49 30 {rng.randint(100000, 999999)}", f"+33 1 {a % 90 + 10} {b % 90 + 10} {c % 90 + 10} {a % 89 + 10}"])
    year = rng.randint(1995, 2024)
    date = f"{year}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    price = f"${rng.randint(5, 999)}.{rng.randint(0, 99):02d}"
    version = f"{rng.randint(1, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}"
    sents = [
        f"For questions about this article, write to {email} and we will reply within two days.",
        f"The server that hosted the original page was at {ip} until it moved in {year}.",
        f"You can also call our office at {phone} on weekdays between nine and five.",
        f"The report was published on {date}, the print edition costs {price}, "
        f"and the software described here is version {version}.",
    ]
    return sents, [email, ip, phone], [date, price, version]


# --------------------------------------------------------------------------- HTML
def _esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def wrap_html(title: str, paragraphs: list[str], rng: random.Random, lang: str = "en") -> str:
    """Real paragraphs inside generated site boilerplate (nav, sidebar, cookie banner, footer)."""
    site = rng.choice(TOPICS).title()
    nav = "".join(f'<li><a href="/{t}">{t.title()}</a></li>' for t in rng.sample(TOPICS, 6))
    side = "".join(f'<li><a href="/post/{rng.randint(1, 9999)}">Related post {k + 1}</a></li>' for k in range(5))
    body = "\n".join(f"<p>{_esc(p)}</p>" for p in paragraphs)
    return (
        f'<!DOCTYPE html>\n<html lang="{lang}"><head><meta charset="utf-8">'
        f"<title>{_esc(title)} | {site} Daily</title>"
        f'<script>window.dataLayer=[];function gtag(){{dataLayer.push(arguments)}}</script>'
        f"<style>body{{font-family:sans-serif}} .nav li{{display:inline}}</style></head>\n"
        f'<body><div class="cookie-banner">We use cookies to improve your experience. '
        f'<button>Accept all</button></div>\n'
        f'<header><div class="logo">{site} Daily</div><nav><ul class="nav">{nav}</ul></nav></header>\n'
        f'<main><article><h1>{_esc(title)}</h1>\n<div class="byline">Posted by staff</div>\n{body}\n'
        f"</article></main>\n"
        f'<aside class="sidebar"><h3>Popular</h3><ul>{side}</ul></aside>\n'
        f'<footer><p>Copyright {rng.randint(2005, 2024)} {site} Daily. All rights reserved.</p>'
        f'<a href="/privacy">Privacy</a> | <a href="/terms">Terms</a> | <a href="/contact">Contact</a>'
        f"</footer></body></html>\n"
    )


def _slug(text: str) -> str:
    words = re.findall(r"[a-z0-9]+", text.lower())[:6]
    return "-".join(words) or "page"


def _near_dup(paragraphs: list[str], rng: random.Random) -> list[str]:
    """Same document with a handful of small word edits (a planted near-duplicate)."""
    out = []
    for p in paragraphs:
        words = p.split(" ")
        for _ in range(max(1, len(words) // 80)):
            i = rng.randrange(len(words))
            words[i] = WORDS_SWAP.get(words[i].lower(), words[i])
        out.append(" ".join(words))
    return out


# --------------------------------------------------------------------------- WARC
class _Writer:
    """Minimal deterministic WARC/1.0 writer (one gzip member per record, mtime 0)."""

    def __init__(self, f, rng: random.Random, start: datetime):
        self.f, self.rng, self.t = f, rng, start

    def record(self, url: str, payload: bytes, http_type: str | None, payload_type: str | None,
               rec_type: str = "response", extra: dict[str, str] | None = None) -> str:
        rid = f"<urn:uuid:{uuid.UUID(int=self.rng.getrandbits(128), version=4)}>"
        self.t += timedelta(seconds=self.rng.randint(1, 30))
        if rec_type == "response":
            head = "HTTP/1.1 200 OK\r\n"
            if http_type is not None:
                head += f"Content-Type: {http_type}\r\n"
            head += f"Content-Length: {len(payload)}\r\n\r\n"
            block = head.encode() + payload
            ctype = "application/http; msgtype=response"
        else:
            block, ctype = payload, http_type or "application/octet-stream"
        headers = {"WARC-Type": rec_type, "WARC-Target-URI": url,
                   "WARC-Date": self.t.strftime("%Y-%m-%dT%H:%M:%SZ"), "WARC-Record-ID": rid,
                   "Content-Type": ctype}
        if payload_type:
            headers["WARC-Identified-Payload-Type"] = payload_type
        headers.update(extra or {})
        headers["Content-Length"] = str(len(block))
        raw = ("WARC/1.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode()
        raw += block + b"\r\n\r\n"
        self.f.write(gzip.compress(raw, compresslevel=6, mtime=0))
        return rid

    def warcinfo(self, filename: str) -> None:
        info = (f"software: crawl2chat data/build_warc.py (GENERATED)\r\nisPartOf: generated\r\n"
                f"description: generated WARC: real text in built HTML pages\r\n").encode()
        self.record(f"warcinfo:{filename}", info, "application/warc-fields", None, rec_type="warcinfo",
                    extra={"WARC-Filename": filename})


def build_warc(out_path: str | Path, n_docs: int = 2000, seed: int = 0,
               shared: Path = SHARED, mix: dict[str, float] | None = None,
               language_weights: dict[str, float] | None = None) -> dict[str, dict]:
    """Write a generated WARC with `n_docs` records; returns the planted manifest {record id: info}.

    `mix` (default MIX) sets the share of each kind; `language_weights` (ISO 639-3
    → weight, "*" for all others; default: every language alike) picks the
    language of each non-English page, e.g. CC_LANGUAGE_MIX + CC_LANGUAGE_WEIGHTS.
    """
    rng = random.Random(seed)
    english = load_english(shared)
    foreign = load_non_english(shared)
    adult = _load_list(shared / "blocklists" / "ut1_adult_domains_every100th_from_datatrove.txt")
    malware_list = SAMPLES / "blocklists" / "ut1_malware_urls.txt"
    malware = [u for u in _load_list(malware_list if malware_list.exists()
                                     else shared / "blocklists" / "ut1_malware_urls.txt") if "/" in u]
    kinds = [k for k, share in (mix or MIX).items() for _ in range(round(share * n_docs))]
    langs = sorted(foreign)
    weights = None
    if language_weights:
        rest = [lg for lg in langs if lg not in language_weights]
        weights = [language_weights.get(lg, language_weights.get("*", 0.0) / max(1, len(rest)))
                   for lg in langs]
    kinds = (kinds + ["clean"] * n_docs)[:n_docs]
    rng.shuffle(kinds)
    manifest: dict[str, dict] = {}
    emitted: list[tuple[str, list[str]]] = []  # (url, paragraphs) for near-dup sources
    order = list(range(len(english)))
    rng.shuffle(order)
    next_doc = 0
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + f".tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        w = _Writer(f, rng, datetime(2024, 5, 20, tzinfo=timezone.utc))
        w.warcinfo(out_path.name)
        for i, kind in enumerate(kinds):
            host = f"www.{rng.choice(TOPICS)}{i}-generated.org"
            info: dict = {"kind": kind}
            if kind == "near_dup" and not emitted:
                kind = info["kind"] = "clean"
            if kind in ("clean", "pii", "repetitive", "blocked"):
                paras = english[order[next_doc % len(order)]]
                # beyond one pass over the corpus, shift windows so pages stay distinct
                if next_doc >= len(order):
                    paras = paras[(next_doc // len(order)) % max(1, len(paras) - 1):] or paras
                next_doc += 1
                title = paras[0][:70]
                if kind == "pii":
                    sents, pii, keep = pii_sentences(rng)
                    paras = paras[:1] + [" ".join(sents)] + paras[1:]
                    info.update(pii=pii, non_pii=keep)
                if kind == "repetitive":
                    line = paras[0][:120]
                    paras = [line] * 60
                url = f"https://{host}/{rng.choice(TOPICS)}/{_slug(title)}-{i}.html"
                if kind == "blocked":
                    which = rng.choice(["ut1_adult_domain", "ut1_malware_url", "banned_word"])
                    if which == "ut1_adult_domain":
                        url = f"https://{rng.choice(adult)}/{_slug(title)}.html"
                    elif which == "ut1_malware_url":
                        url = "http://" + rng.choice(malware)
                    else:
                        url = f"https://{host}/{rng.choice(['porn', 'xxx', 'hentai'])}/{_slug(title)}"
                    info["blocked_by"] = which
                html = wrap_html(title, paras, rng)
                if kind in ("clean", "pii"):
                    emitted.append((url, paras))
                rid = w.record(url, html.encode(), "text/html; charset=utf-8", "text/html")
            elif kind == "near_dup":
                src_url, src_paras = rng.choice(emitted)
                paras = _near_dup(src_paras, rng)
                url = f"https://{host}/copy/{_slug(paras[0])}-{i}.html"
                info["dup_of"] = src_url
                rid = w.record(url, wrap_html(paras[0][:70], paras, rng).encode(),
                               "text/html; charset=utf-8", "text/html")
            elif kind == "non_english":
                lang = rng.choices(langs, weights)[0] if weights else rng.choice(langs)
                snippets = foreign[lang]
                paras = [rng.choice(snippets) for _ in range(rng.randint(3, 6))]
                info["lang"] = lang
                url = f"https://{host}/{lang}/{i}.html"
                rid = w.record(url, wrap_html(paras[0][:50], paras, rng, lang=lang).encode(),
                               "text/html; charset=utf-8", "text/html")
            else:  # junk
                sub = rng.choice(["binary_octet", "binary_as_html", "empty", "png", "json"])
                info["junk"] = sub
                url = f"https://{host}/files/{sub}-{i}"
                blob = bytes(rng.getrandbits(8) for _ in range(rng.randint(200, 2000)))
                if sub == "binary_octet":
                    rid = w.record(url, blob, "application/octet-stream", "application/octet-stream")
                elif sub == "binary_as_html":
                    rid = w.record(url, b"\x00\x01" + blob, "text/html", "text/html")
                elif sub == "empty":
                    rid = w.record(url, b"", "text/html", "text/html")
                elif sub == "png":
                    rid = w.record(url, b"\x89PNG\r\n\x1a\n" + blob, "image/png", "image/png")
                else:
                    rid = w.record(url, json.dumps({"id": i, "items": list(range(20))}).encode(),
                                   "application/json", "application/json")
            info["url"] = url
            manifest[rid] = info
    os.replace(tmp, out_path)
    return manifest


def generated_name(n_docs: int, seed: int) -> str:
    return f"generated_{n_docs}docs_seed{seed}.warc.gz"


# --------------------------------------------------------------------------- bad inputs
def write_bad_inputs(out_dir: str | Path, big_page_bytes: int = 10_500_000,
                     shared: Path = SHARED) -> dict[str, Path]:
    """Write the GENERATED bad-input corpus for tests; returns {name: path}.

    - ``truncated``: 6 good pages, the file cut inside the 7th record's gzip member;
    - ``corrupt``: 3 good pages, a record with a garbled WARC header, then 3 more;
    - ``garbage``: 2 good pages, a gzip member that is not WARC at all, then 2 more;
    - ``junk``: one WARC holding a good page plus a binary body declared as HTML,
      an empty body, a non-HTML (PNG) body, undecodable bytes, and a page of
      `big_page_bytes` (> the 10 MB default cap).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(1234)
    english = load_english(shared)[:12]
    paths = {}

    def good(w: _Writer, k: int) -> None:
        paras = english[k]
        w.record(f"https://www.good{k}-generated.org/a/{k}.html", wrap_html(paras[0][:60], paras, rng).encode(),
                 "text/html; charset=utf-8", "text/html")

    buf = io.BytesIO()
    w = _Writer(buf, rng, datetime(2024, 1, 1, tzinfo=timezone.utc))
    for k in range(6):
        good(w, k)
    start7 = buf.tell()
    good(w, 6)
    data = buf.getvalue()
    cut = start7 + (len(data) - start7) // 2  # inside the 7th record's gzip member
    paths["truncated"] = out_dir / "generated_bad_truncated.warc.gz"
    paths["truncated"].write_bytes(data[:cut])

    buf = io.BytesIO()
    w = _Writer(buf, rng, datetime(2024, 1, 1, tzinfo=timezone.utc))
    for k in range(3):
        good(w, k)
    buf.write(gzip.compress(b"WARC/1.0\r\nWARC-Type: response\r\nContent-Length: banana\r\n\r\n<html>broken",
                            mtime=0))
    for k in range(3, 6):
        good(w, k)
    paths["corrupt"] = out_dir / "generated_bad_corrupt.warc.gz"
    paths["corrupt"].write_bytes(buf.getvalue())

    buf = io.BytesIO()
    w = _Writer(buf, rng, datetime(2024, 1, 1, tzinfo=timezone.utc))
    for k in range(2):
        good(w, k)
    buf.write(gzip.compress(b"this is not a WARC record at all\r\n" * 20, mtime=0))
    for k in range(2, 4):
        good(w, k)
    paths["garbage"] = out_dir / "generated_bad_garbage.warc.gz"
    paths["garbage"].write_bytes(buf.getvalue())

    buf = io.BytesIO()
    w = _Writer(buf, rng, datetime(2024, 1, 1, tzinfo=timezone.utc))
    good(w, 0)
    w.record("https://www.bin-generated.org/x", b"\x00\x01\x02binary" * 50, "text/html", "text/html")
    w.record("https://www.empty-generated.org/x", b"", "text/html", "text/html")
    w.record("https://www.png-generated.org/x.png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)), "image/png",
             "image/png")
    # Every high byte in a row: invalid UTF-8, and chardet's guess for it is UTF-8 again.
    w.record("https://www.undecodable-generated.org/x", bytes(range(128, 256)) * 20,
             "text/html; charset=utf-8", "text/html")
    filler = "<p>" + "All work and no play makes a very large page. " * 40 + "</p>\n"
    big = ("<html><body>" + filler * (big_page_bytes // len(filler) + 1) + "</body></html>").encode()
    w.record("https://www.big-generated.org/x", big, "text/html; charset=utf-8", "text/html")
    good(w, 1)
    paths["junk"] = out_dir / "generated_bad_junk.warc.gz"
    paths["junk"].write_bytes(buf.getvalue())
    return paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=2000, help="records to generate")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=".", help="output directory")
    ap.add_argument("--manifest", action="store_true", help="also write the planted manifest (json)")
    ap.add_argument("--bad-inputs", action="store_true", help="also write the bad-input corpus")
    args = ap.parse_args(argv)
    path = Path(args.out) / generated_name(args.docs, args.seed)
    manifest = build_warc(path, args.docs, args.seed)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {len(manifest)} records, GENERATED)")
    if args.manifest:
        mpath = path.with_suffix("").with_suffix(".manifest.json")
        mpath.write_text(json.dumps(manifest, indent=1))
        print(f"wrote {mpath}")
    if args.bad_inputs:
        for name, p in write_bad_inputs(args.out).items():
            print(f"wrote {p} ({name})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
