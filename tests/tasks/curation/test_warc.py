"""WARC reading: real Common Crawl samples, local/glob/https inputs, and damaged files."""
from __future__ import annotations

import functools
import gzip
import http.server
import shutil
import socket
import threading
from pathlib import Path

import pytest

from data.build_warc import write_bad_inputs
from tasks.curation.funnel import StageCounter
from tasks.curation.remote import RetryPolicy
from tasks.curation.warc import crawl_warc_urls, expand_inputs, iter_records

FAST = RetryPolicy(retries=2, backoff_s=0.01, backoff_max_s=0.05, read_timeout_s=5, connect_timeout_s=5)

SAMPLES = Path(__file__).resolve().parents[3] / "data" / "samples"
CC2020 = SAMPLES / "cc-main-2020-34_resiliparse_warcfile.warc.gz"
WET = SAMPLES / "cc-main-2024-22_whirlwind.warc.wet.gz"


def read_all(src, max_body_bytes=10_000_000):
    read, errors = StageCounter("read"), {}
    docs = list(iter_records(str(src), read, errors, max_body_bytes, policy=FAST))
    return docs, read, errors


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    return write_bad_inputs(tmp_path_factory.mktemp("bad"))


def test_real_cc_warc_yields_html_with_provenance():
    docs, read, errors = read_all(CC2020)
    assert len(docs) == 16 and read.kept == 16 and not errors
    assert read.ignored == {"metadata": 16, "request": 17, "warcinfo": 1}
    assert len({d.id for d in docs}) == 16
    d = docs[0]
    assert d.id.startswith("<urn:uuid:") and d.url == "http://003338.cn/l41/481397.html"
    assert d.date.startswith("2020-08-") and d.kind == "html" and "<html" in d.text.lower()
    # charset from the HTTP header: the Russian page decodes as Cyrillic, not mojibake
    ru = next(d for d in docs if "01spb.ru" in d.url)
    assert any("\u0400" <= ch <= "\u04ff" for ch in ru.text)


def test_wet_conversion_record_is_plain_text():
    docs, read, _ = read_all(WET)
    assert len(docs) == 1 and docs[0].kind == "text" and docs[0].content_type == "text/plain"
    assert "Escopete" in docs[0].text and "<html" not in docs[0].text


def test_expand_inputs_dir_glob_url_and_missing(tmp_path):
    from_dir = expand_inputs([str(SAMPLES)])
    assert len(from_dir) == 4 and all(p.endswith(".gz") for p in from_dir)
    assert expand_inputs([str(SAMPLES / "cc-main-*.warc.gz")]) == sorted(
        str(p) for p in SAMPLES.glob("cc-main-*.warc.gz"))
    url = "https://data.commoncrawl.org/crawl-data/x.warc.gz"
    assert expand_inputs([url, str(CC2020), str(CC2020)]) == [url, str(CC2020)]
    missing = tmp_path / "nope.warc.gz"
    with pytest.raises(ValueError, match="nope.warc.gz"):
        expand_inputs([str(CC2020), str(missing)])
    with pytest.raises(ValueError, match="matched no files"):
        expand_inputs([str(tmp_path / "*.warc.gz")])


def test_truncated_gzip_keeps_records_before_damage(bad):
    docs, read, errors = read_all(bad["truncated"])
    assert len(docs) == 6 and errors == {"truncated_gzip": 1}
    assert read.dropped == {"damaged_record": 1}


def test_corrupt_record_is_counted_and_reading_resyncs(bad):
    docs, read, errors = read_all(bad["corrupt"])
    assert len(docs) == 6 and errors == {"corrupt_record": 1}
    assert read.dropped == {"corrupt_record": 1}


def test_non_warc_garbage_stops_file_without_raising(bad):
    docs, _, errors = read_all(bad["garbage"])
    assert len(docs) == 2 and errors == {"corrupt_record": 1}


@pytest.mark.parametrize("name,content", [
    ("notes.txt", b"hello world, this is a text file\nand a second line\n"),  # warcio would read it as ARC
    ("random.bin", bytes(range(256)) * 20),
    ("fake.warc.gz", gzip.compress(b"GARBAGE, not a WARC record", mtime=0)),
    ("not-gzip.warc.gz", b"plain bytes named .gz"),
], ids=["text", "random-bytes", "fake-gzip", "not-gzip"])  # byte ids would carry gzip's clock: xdist workers must agree
def test_a_file_that_is_no_warc_is_counted_as_not_warc(tmp_path, name, content):
    """Issue 23: a named drop reason, never a parser's internal exception text (was read_error AttributeError)."""
    path = tmp_path / name
    path.write_bytes(content)
    docs, read, errors = read_all(str(path))
    assert docs == [] and errors == {"not_warc": 1} and read.n_in == 0


def test_junk_bodies_are_skipped_by_reason(bad):
    docs, read, errors = read_all(bad["junk"])
    assert len(docs) == 2 and not errors
    assert read.dropped == {"binary_body": 1, "empty_body": 1, "non_html": 1, "too_large": 1,
                            "undecodable": 1}


def test_unreachable_url_and_missing_file_are_counted():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    docs, _, errors = read_all(f"http://127.0.0.1:{port}/crawl-data/x.warc.gz")
    assert docs == [] and errors == {"remote_connection_refused": 1}
    docs, _, errors = read_all("/nonexistent/x.warc.gz")
    assert docs == [] and errors == {"missing_file": 1}


@pytest.fixture(scope="module")
def http_root(tmp_path_factory):
    """A local HTTP server on 127.0.0.1 laid out like Common Crawl's crawl-data/."""
    root = tmp_path_factory.mktemp("cc")
    seg = root / "crawl-data" / "CC-MAIN-TEST" / "segments" / "1" / "warc"
    seg.mkdir(parents=True)
    shutil.copy(CC2020, seg / "a.warc.gz")
    shutil.copy(SAMPLES / "cc-main-2024-22_whirlwind.warc.gz", seg / "b.warc.gz")
    listing = "crawl-data/CC-MAIN-TEST/segments/1/warc/a.warc.gz\ncrawl-data/CC-MAIN-TEST/segments/1/warc/b.warc.gz\n"
    (root / "crawl-data" / "CC-MAIN-TEST" / "warc.paths.gz").write_bytes(gzip.compress(listing.encode()))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_crawl_listing_and_http_reading(http_root):
    urls = crawl_warc_urls("CC-MAIN-TEST", 1, http_root)
    assert urls == [f"{http_root}/crawl-data/CC-MAIN-TEST/segments/1/warc/a.warc.gz"]
    assert len(crawl_warc_urls("CC-MAIN-TEST", 10, http_root + "/")) == 2
    docs, read, errors = read_all(urls[0])
    assert len(docs) == 16 and not errors and docs[0].warc_file == urls[0]
    with pytest.raises(ValueError, match="CC-MAIN-NOPE"):
        crawl_warc_urls("CC-MAIN-NOPE", 1, http_root)
