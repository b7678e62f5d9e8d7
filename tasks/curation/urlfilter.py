"""URL filter: datatrove's FineWeb URLFilter plus user-supplied domain/URL blocklists.

The datatrove block does the FineWeb part unchanged: the UT1 adult list bundled
in its wheel (4.5 M domains, ~4 s to load), banned words, banned subwords and
soft-banned words (threshold 2). What it lacks, and this module adds:

- user lists in UT1's format (one `domain` or `host/path` per line, no scheme):
  domains go to datatrove's `extra_domains`; URL entries match a page when its
  scheme-less URL (leading `www.` dropped) equals the entry or continues it with
  `/`, `?` or `#` — datatrove compares full URLs, which never equal UT1 entries;
- an offline public-suffix list: datatrove's default `TLDExtract()` tries to
  fetch publicsuffix.org on first use; we use tldextract's bundled snapshot.
"""
from __future__ import annotations

import functools
import logging
import os
import time
import warnings

# datatrove reads tldextract's deprecated `registered_domain` once per URL.
warnings.filterwarnings("ignore", message="The 'registered_domain' property", category=DeprecationWarning)

log = logging.getLogger(__name__)


def _strip_url(url: str) -> str:
    u = url.strip()
    if "://" in u:
        u = u.split("://", 1)[1]
    u = u.lower()
    return u[4:] if u.startswith("www.") else u


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def resolve_list_path(path: str) -> str:
    """Absolute path of a blocklist: as given, else relative to the repository root."""
    if os.path.isfile(path) or os.path.isabs(path):
        return os.path.abspath(path)
    in_repo = os.path.join(REPO_ROOT, path)
    return in_repo if os.path.isfile(in_repo) else os.path.abspath(path)


def read_blocklist(path: str) -> tuple[set[str], set[str]]:
    """Read one UT1-style list: returns (domains, scheme-less URL prefixes)."""
    path = resolve_list_path(path)
    if not os.path.isfile(path):
        raise ValueError(f"URL blocklist {path!r} does not exist; fix url_blocklist_files")
    domains: set[str] = set()
    urls: set[str] = set()
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            entry = line.strip()
            if not entry or entry.startswith("#"):
                continue
            entry = _strip_url(entry).rstrip("/")
            (urls if "/" in entry else domains).add(entry)
    return domains, urls


class UrlBlocker:
    """FineWeb's URL filter (datatrove) + user URL prefixes; `check(url) -> None | reason`."""

    def __init__(self, use_ut1_adult: bool = True, soft_banned_threshold: int = 2,
                 blocklist_files: tuple[str, ...] = ()):
        from datatrove.pipeline.filters import URLFilter
        from datatrove.utils._import_utils import ASSETS_PATH
        from tldextract import TLDExtract

        domains: set[str] = set()
        self.user_urls: set[str] = set()
        for path in blocklist_files:
            d, u = read_blocklist(path)
            domains |= d
            self.user_urls |= u
        kwargs = {}
        if not use_ut1_adult:
            # Without the integrated lists datatrove also skips its word lists; pass them.
            def words(name: str) -> list[str]:
                with open(os.path.join(ASSETS_PATH, name)) as f:
                    return [ln.strip() for ln in f if ln.strip()]
            kwargs = dict(banned_words=words("banned_words.txt"),
                          banned_subwords=words("banned_subwords.txt"),
                          soft_banned_words=words("soft_banned_words.txt"))
        t0 = time.perf_counter()
        self.block = URLFilter(soft_word_threshold=soft_banned_threshold,
                               extra_domains=domains or None,
                               use_integrated_lists=use_ut1_adult, **kwargs)
        self.block.tldextractor = TLDExtract(suffix_list_urls=())  # offline: bundled snapshot
        self.block.download_data()  # loads the bundled lists now, not on the first page
        self.check("https://example.com/")  # and tldextract's suffix trie (0.5 s), built on its first URL
        log.info("URL filter ready in %.1fs (%d blocked domains, %d user URL prefixes)",
                 time.perf_counter() - t0, len(self.block.block_listed_domains), len(self.user_urls))

    def _user_url_hit(self, url: str) -> bool:
        if not self.user_urls:
            return False
        u = _strip_url(url)
        if u.rstrip("/") in self.user_urls:
            return True
        # every prefix of the URL that ends right before a /, ? or #
        for i, ch in enumerate(u):
            if ch in "/?#" and u[:i] in self.user_urls:
                return True
        return False

    def check(self, url: str) -> str | None:
        """None if the URL may pass, else the drop reason (datatrove's, or "user_url")."""
        from datatrove.data import Document

        if not url:
            return "no_url"
        res = self.block.filter(Document(text="", id="", metadata={"url": url}))
        if res is not True:
            return res[1] if isinstance(res, tuple) else "url_filter"
        if self._user_url_hit(url):
            return "user_url"
        return None


# Per-process resource cache: the 4.5 M-domain set takes seconds and ~1 GB to
# build, so each process (a Ray worker) builds it once and reuses it across
# tasks. This is a read-only cache keyed on config values, not mutable state;
# one entry only, so a worker never holds two copies of the big set.
@functools.lru_cache(maxsize=1)
def load_url_blocker(use_ut1_adult: bool, soft_banned_threshold: int,
                     blocklist_files: tuple[str, ...]) -> UrlBlocker:
    """The UrlBlocker for these settings, built once per process."""
    return UrlBlocker(use_ut1_adult, soft_banned_threshold, blocklist_files)
