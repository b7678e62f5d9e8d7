"""URL filter: FineWeb's datatrove block (UT1 adult list, banned words) + user blocklists."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tasks.curation.urlfilter import HashedDomains, UrlBlocker, domain_index, load_url_blocker, read_blocklist

# datatrove's URLFilter reads tldextract's deprecated `registered_domain` on every URL.
pytestmark = pytest.mark.filterwarnings("ignore:The 'registered_domain' property:DeprecationWarning")
SAMPLES = Path(__file__).resolve().parents[3] / "data" / "samples"
MALWARE = SAMPLES / "blocklists" / "ut1_malware_urls.txt"


@pytest.fixture(scope="module")
def full():
    """The FineWeb configuration with the 4.5 M-domain UT1 list (built once per process)."""
    return load_url_blocker(True, 2, (str(MALWARE),))


def _real_adult_domains(repo_data, n=5):
    path = repo_data / "blocklists" / "ut1_adult_domains_every100th_from_datatrove.txt"
    return [ln.strip() for ln in path.read_text().splitlines()[1000:1000 + n]]


def test_ut1_adult_domains_from_the_bundled_list_are_blocked(full, repo_data):
    for dom in _real_adult_domains(repo_data):
        assert full.check(f"https://{dom}/some/page.html") in ("domain", "subdomain"), dom


def test_banned_and_soft_banned_words(full):
    assert full.check("https://www.example.org/porn/video-1") == "hard_blacklisted"
    # one soft-banned word is allowed, two reach FineWeb's threshold of 2
    assert full.check("https://www.example.org/news/sexy") is None
    assert full.check("https://www.example.org/sexy/nude") == "soft_blacklisted"


def test_real_pages_pass(full):
    for url in ["https://www.cs.washington.edu/people/faculty/weld", "https://soldaini.net/facts/",
                "https://an.wikipedia.org/wiki/Escopete", "http://0900-hovenier.nl/gelderland/oosterbeek/"]:
        assert full.check(url) is None, url


def test_user_url_list_matches_entry_and_paths_below_it(full):
    domains, urls = read_blocklist(str(MALWARE))
    entry = sorted(urls)[100]
    assert full.check("http://" + entry) == "user_url"
    assert full.check("https://www." + entry + "/deeper?q=1") == "user_url"
    assert full.check("http://" + entry + "xyz") is None or entry + "xyz" in urls  # not a path boundary


def test_user_domain_list_and_no_ut1(tmp_path):
    lst = tmp_path / "mine.txt"
    lst.write_text("# my list\nbad-site.example.com\nexample.net/private\n")
    blk = UrlBlocker(use_ut1_adult=False, blocklist_files=(str(lst),))
    assert blk.check("https://bad-site.example.com/x") in ("domain", "subdomain")
    assert blk.check("https://example.net/private/a") == "user_url"
    assert blk.check("https://example.net/public") is None
    assert blk.check("https://www.example.org/porn/video") == "hard_blacklisted"  # word lists kept
    assert blk.check("") == "no_url"


def test_missing_blocklist_is_refused(tmp_path):
    with pytest.raises(ValueError, match="missing.txt"):
        UrlBlocker(use_ut1_adult=False, blocklist_files=(str(tmp_path / "missing.txt"),))


def test_loader_builds_once_per_process(full):
    assert load_url_blocker(True, 2, (str(MALWARE),)) is full


def test_domain_index_gives_datatrove_s_own_verdicts(repo_data):
    """The mapped index stands in for datatrove's 4.5 M-entry set: same entries, same verdict on every URL."""
    from datatrove.data import Document
    from datatrove.pipeline.filters import URLFilter
    from tldextract import TLDExtract

    ref = URLFilter(soft_word_threshold=2)  # datatrove's own loading: the whole list into a set
    ref.tldextractor = TLDExtract(suffix_list_urls=())
    ref.download_data()
    ours = UrlBlocker(True, 2, ()).block
    assert isinstance(ours.block_listed_domains, HashedDomains)
    assert len(ours.block_listed_domains) == len(ref.block_listed_domains)  # no entry lost, no hash collision
    listed = [ln.strip() for ln in (repo_data / "blocklists" / "ut1_adult_domains_every100th_from_datatrove.txt")
              .read_text().splitlines() if ln.strip() and not ln.startswith("#")][::20]
    urls = [f"https://{d}/page" for d in listed] + [f"http://www.shop.{d}/a?b=1" for d in listed[:200]]
    urls += ["https://www.cs.washington.edu/people", "https://an.wikipedia.org/wiki/Escopete", "http://127.0.0.1/x",
             "https://www.example.org/porn/video-1", "https://www.example.org/sexy/nude", "https://xn--80ak6aa92e.com/",
             *[f"https://{d[::-1]}.example/" for d in listed[:200]]]
    blocked = 0
    for url in urls:
        doc = Document(text="", id="", metadata={"url": url})
        assert ours.filter(doc) == ref.filter(doc), url
        blocked += ours.filter(doc) is not True
    assert blocked >= len(listed)  # the listed domains really are blocked


def test_domain_index_is_built_once_and_again_when_the_list_changes(tmp_path):
    lst = tmp_path / "domains"
    lst.write_text("# a comment\nbad.example\nworse.example\nbad.example\n")
    first = domain_index(str(lst))
    assert domain_index(str(lst)) == first and first.exists()
    index = HashedDomains(np.load(first, mmap_mode="r"), {"extra.example"})
    assert len(index) == 3 and "bad.example" in index and "extra.example" in index
    assert "good.example" not in index and "" not in index and None not in index
    lst.write_text("good.example\n")
    second = domain_index(str(lst))
    assert second != first and "good.example" in HashedDomains(np.load(second), set())
