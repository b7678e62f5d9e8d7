"""Remote reads through faults, resume inside a file, --shard-of, bounded memory.

The server is tests/support/flaky_http.py on 127.0.0.1, serving the repo's real sample
WARCs (data/samples) and GENERATED ones (data/build_warc.py, real text) in
Common Crawl's crawl-data/ layout, with faults on a fixed script (by request
count, never by time). Stalls are detected with short configured read timeouts.
"""
from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from data.build_warc import build_warc
from tasks.curation.funnel import StageCounter
from tasks.curation.remote import RemoteFault, RemoteStream, RetryPolicy, remote_stat
from tasks.curation.warc import crawl_warc_urls, iter_records, take_shard
from tests.support.flaky_http import SAMPLE_FILES, FlakyServer, crawl_mirror

REPO = Path(__file__).resolve().parents[3]
CRAWL = "CC-MAIN-2099-13"
FILES = SAMPLE_FILES
# Short waits and a short read timeout: a stall costs 1.5 s, a retry ~10 ms. Client-side counts
# are asserted as lower bounds (a loaded machine may add a timeout); the server's are exact.
FAST = RetryPolicy(retries=4, backoff_s=0.01, backoff_max_s=0.05, read_timeout_s=1.5, connect_timeout_s=5)


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    root = tmp_path_factory.mktemp("cc-mirror")
    listing = crawl_mirror(root, CRAWL, FILES)
    server = FlakyServer(root)
    yield server, root, listing
    server.close()


def _read(src, policy=FAST, **kw):
    read, errors, net = StageCounter("read"), {}, {}
    docs = list(iter_records(src, read, errors, policy=policy, net=net, **kw))
    return [(d.id, d.url, d.text) for d in docs], read.as_dict(), errors, net


def test_stream_through_every_fault_equals_the_file(mirror):
    server, root, listing = mirror
    path = "/" + listing[0]
    server.reset({path: ["503", "429", "drop:0.3", "500", "stall:0.5", "drop:0.8"]})
    net: dict[str, int] = {}
    with RemoteStream(server.url + path, FAST, net=net) as s:
        got = b""
        while chunk := s.read(7000):
            got += chunk
    assert got == (root / listing[0]).read_bytes()
    assert dict(server.faults) == {"http_503": 1, "http_429": 1, "http_500": 1, "drop": 2, "stall": 1}
    assert net["http_503"] == net["http_429"] == net["http_500"] == 1
    assert net["timeout"] >= 1 and net["connection_dropped"] >= 2 and net["resumes"] >= 3
    # every resume asked for the first byte it did not have, never from 0
    starts = server.ranges[path]
    assert starts[:3] == [0, 0, 0] and 0 < starts[3] == starts[4] < starts[5] < starts[6]


def test_no_cap_on_a_slow_download_only_on_silence(mirror, tmp_path):
    """A body trickled over longer than the read timeout is read whole: the timeout is between bytes."""
    server, root, listing = mirror
    import http.server
    import threading

    data = (root / listing[1]).read_bytes()

    class Slow(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            step = len(data) // 30 + 1
            for i in range(0, len(data), step):
                self.wfile.write(data[i:i + step])
                self.wfile.flush()
                time.sleep(0.1)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        policy = RetryPolicy(retries=0, read_timeout_s=2.0)  # 30 × 0.1 s = 3 s > the read timeout
        net: dict[str, int] = {}
        with RemoteStream(f"http://127.0.0.1:{httpd.server_address[1]}/x.warc.gz", policy, net=net) as s:
            assert s.read() == data
        assert net == {}
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_records_over_a_flaky_server_equal_a_local_read(mirror):
    server, root, listing = mirror
    for i, (name, local) in enumerate(FILES.items()):
        path = "/" + listing[i]
        server.reset({path: ["503", "drop:0.5", "drop:0.5", "stall:0.9"][i:]})
        docs, read, errors, net = _read(server.url + path)
        ref_docs, ref_read, ref_errors, _ = _read(str(local))
        assert docs == ref_docs and read == ref_read and errors == ref_errors == {}, name
        assert net.get("resumes", 0) + net.get("retries", 0) > 0


def test_past_the_limits_the_file_is_counted_failed_by_reason(mirror):
    server, root, listing = mirror
    path = "/" + listing[1]
    server.reset({path: ["503"] * 100})
    docs, read, errors, _ = _read(server.url + path)
    assert docs == [] and errors == {"remote_http_503": 1}
    assert server.gets[path] == FAST.retries + 1  # the limit, exactly
    # mid-file: the first answer breaks half-way, then every resume is dropped at once
    server.reset({path: ["drop:0.5"] + ["drop:0.0"] * 100})
    docs, read, errors, _ = _read(server.url + path)
    assert errors == {"remote_connection_dropped": 1} and 0 < len(docs) < 16
    assert read["dropped"] == {"damaged_record": 1}  # the record it was inside when it gave up
    # a 404 is not retried
    server.reset()
    docs, _, errors, _ = _read(server.url + "/crawl-data/nope.warc.gz")
    assert errors == {"remote_not_found": 1} and server.gets["/crawl-data/nope.warc.gz"] == 1


def test_s3_reads_through_faults(mirror, monkeypatch):
    """s3:// through the same flaky server (path-style S3 API: HEAD/GET with Range): the bytes are exact."""
    from s3fs import S3FileSystem

    server, root, listing = mirror
    for k, v in {"AWS_ENDPOINT_URL": server.url, "AWS_ACCESS_KEY_ID": "test-key",
                 "AWS_SECRET_ACCESS_KEY": "test-secret", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    S3FileSystem.clear_instance_cache()
    url = "s3://" + listing[1]  # bucket "crawl-data"
    try:
        assert remote_stat(url, FAST)["size"] == (root / listing[1]).stat().st_size
        server.reset({"/" + listing[1]: ["503", "drop:0.5", "500", "stall:0.3"]})
        docs, read, errors, net = _read(url)
        assert dict(server.faults) == {"http_503": 1, "drop": 1, "http_500": 1, "stall": 1}
        assert (docs, read, errors) == _read(str(FILES["b.warc.gz"]))[:3]
    finally:
        S3FileSystem.clear_instance_cache()


def test_listing_and_stat_retry(mirror):
    server, root, listing = mirror
    server.reset({f"/crawl-data/{CRAWL}/warc.paths.gz": ["503", "drop:0.5"]})
    urls = crawl_warc_urls(CRAWL, 10, server.url, FAST)
    assert urls == [f"{server.url}/{p}" for p in listing]
    meta = remote_stat(urls[0], FAST)
    assert meta["size"] == (root / listing[0]).stat().st_size and meta["etag"]
    assert remote_stat(server.url + "/crawl-data/nope.warc.gz", FAST) is None


def test_a_changed_object_is_never_spliced(mirror, tmp_path):
    server, root, listing = mirror
    target = root / listing[2]
    original = target.read_bytes()
    path = "/" + listing[2]
    server.reset({path: ["drop:0.5"]})
    s = RemoteStream(server.url + path, FAST)
    first = s.read(1000)
    try:
        target.write_bytes(original + b"\n")  # the object is replaced between two reads (new ETag)
        with pytest.raises(RemoteFault) as e:
            while s.read(65536):
                pass
        assert e.value.reason == "changed" and first == original[:1000]
    finally:
        s.close()
        target.write_bytes(original)


def test_shard_of_splits_a_crawl_without_overlap(mirror):
    server, root, listing = mirror
    import argparse

    from conf.curate import CurateConfig
    from crawl2chat.commands.curate import parse_shard, resolve_inputs

    server.reset()
    cfg = CurateConfig(crawl_base_url=server.url)
    every = crawl_warc_urls(CRAWL, 4, server.url, FAST)
    for m in (1, 2, 3, 4, 5):
        parts = []
        for k in range(1, m + 1):
            args = argparse.Namespace(input=[], crawl=CRAWL, warc_files=4, shard_of=f"{k}/{m}")
            parts.append(resolve_inputs(args, cfg))
        assert sorted(u for p in parts for u in p) == sorted(every)  # coverage, no overlap
        assert max(map(len, parts)) - min(map(len, parts)) <= 1  # balanced
    assert take_shard(list("abcdefg"), 2, 3) == ["b", "e"]
    for bad in ("0/3", "4/3", "1", "a/b", "1/0"):
        with pytest.raises(ValueError, match="K/M"):
            parse_shard(bad)


def test_oversized_page_is_skipped_without_being_held(tmp_path):
    """An 8 MB page in a WARC is skipped by reason while Python never holds more than ~0.5 MB of it."""
    # Page-like compressibility (~2x): a 16 KiB compressed block must not inflate to megabytes.
    body = b"<html><body><p>" + os.urandom(4_000_000).hex().encode() + b"</p></body></html>"
    http = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n"
    small = b"<html><body><p>" + b"a small page. " * 50 + b"</p></body></html>"

    def record(rid: str, payload: bytes) -> bytes:
        head = (f"WARC/1.0\r\nWARC-Type: response\r\nWARC-Record-ID: <urn:uuid:{rid}>\r\n"
                f"WARC-Target-URI: http://example.com/{rid}\r\nWARC-Date: 2024-01-01T00:00:00Z\r\n"
                f"Content-Type: application/http; msgtype=response\r\nContent-Length: {len(http) + len(payload)}"
                f"\r\n\r\n").encode()
        return gzip.compress(head + http + payload + b"\r\n\r\n", compresslevel=1)

    path = tmp_path / "GENERATED_big_page.warc.gz"
    path.write_bytes(record("small-1", small) + record("big", body) + record("small-2", small))
    del body
    tracemalloc.start()
    try:
        read, errors = StageCounter("read"), {}
        docs = list(iter_records(str(path), read, errors, max_body_bytes=500_000))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [d.id for d in docs] == ["<urn:uuid:small-1>", "<urn:uuid:small-2>"] and not errors
    assert read.dropped == {"too_large": 1}
    assert peak < 3_000_000, peak  # the page is 8 MB


# ------------------------------------------------------- resume inside a file
# The checkpoint is what is under test, not the filters: the recipe without the costly ones
# (UT1 list, Gopher/C4/FineWeb) keeps each relaunch of a worker to seconds.
LEAN = {"use_ut1_adult": False, "gopher_repetition": False, "gopher_quality": False, "c4": False,
        "fineweb": False, "checkpoint_every_records": 5, "dropped_samples_per_reason": 2}


def _process_cfg(**kw):
    from conf.curate import CurateConfig

    return CurateConfig(**{**LEAN, **kw})


def _shard(out: Path) -> list[dict]:
    return pq.read_table(out).to_pylist()


def _funnel(stats: dict) -> dict:
    return {k: v for k, v in stats.items() if k != "seconds"}


_WORKER = """
import sys
from conf.curate import CurateConfig
from tasks.curation.process import process_warc
process_warc(sys.argv[1], sys.argv[2], CurateConfig(**{lean!r}), key="k1")
"""


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    d = tmp_path_factory.mktemp("gen")
    path = d / "GENERATED_60docs_seed3.warc.gz"
    build_warc(path, 60, seed=3)
    return path


def test_sigkill_mid_file_resumes_to_identical_output(generated, tmp_path):
    """Killed with SIGKILL at several points mid-file, each relaunch resumes; output and funnel are exact."""
    from tasks.curation.process import dropped_path, process_warc

    ref = tmp_path / "ref.parquet"
    ref_stats = process_warc(str(generated), str(ref), _process_cfg(checkpoint_every_records=0), key="ref")
    out = tmp_path / "killed.parquet"
    state = Path(f"{out}.ckpt") / "state.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    kills = []
    for target in (10, 25, 40):  # records consumed at the last checkpoint before the kill (of 61)
        proc = subprocess.Popen([sys.executable, "-c", _WORKER.format(lean=LEAN), str(generated), str(out)],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            while proc.poll() is None:
                try:
                    if json.loads(state.read_text())["position"]["records"] >= target:
                        break
                except (OSError, ValueError, KeyError):
                    pass
                time.sleep(0.01)
            assert proc.poll() is None, "finished before the kill: " + proc.stderr.read().decode()[-2000:]
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.stderr.close()
        kills.append(json.loads(state.read_text())["position"]["records"])
        assert not out.exists()
    assert kills == sorted(kills) and kills[0] >= 10  # each relaunch went on from where the last stopped
    stats = process_warc(str(generated), str(out), _process_cfg(), key="k1")
    assert _shard(out) == _shard(ref)
    assert _funnel(stats) == _funnel(ref_stats)  # no record counted twice, none missed
    assert pq.read_table(dropped_path(str(out))).equals(pq.read_table(dropped_path(str(ref))))
    assert not Path(f"{out}.ckpt").exists()


def test_fault_past_limits_keeps_checkpoint_and_next_run_resumes_by_range(mirror, generated, tmp_path):
    """A remote file that ends early writes no shard; the next run resumes it with a Range request."""
    from tasks.curation.process import process_warc

    server, root, listing = mirror
    rel = f"crawl-data/{CRAWL}/segments/1700000000000.0/warc/{generated.name}"
    (root / rel).write_bytes(generated.read_bytes())
    url = f"{server.url}/{rel}"
    ref = tmp_path / "ref.parquet"
    ref_stats = process_warc(str(generated), str(ref), _process_cfg(checkpoint_every_records=0), key="ref")

    strict = dict(remote_retries=1, remote_backoff_s=0.01, remote_backoff_max_s=0.05, remote_read_timeout_s=5)
    out = tmp_path / "remote.parquet"
    server.reset({"/" + rel: ["drop:0.6", "drop:0.0", "drop:0.0"]})
    stats = process_warc(url, str(out), _process_cfg(**strict), key="k2")
    assert stats["errors"] == {"remote_connection_dropped": 1} and not out.exists()
    saved = json.loads((Path(f"{out}.ckpt") / "state.json").read_text())["position"]
    assert saved["records"] > 0 and saved["offset"] > 0

    server.reset()  # healthy again
    stats = process_warc(url, str(out), _process_cfg(**strict), key="k2")
    assert server.ranges["/" + rel][0] == saved["offset"]  # resumed at the checkpoint's record boundary
    assert _shard(out) == [{**r, "warc_file": url} for r in _shard(ref)]
    assert _funnel(stats)["stages"] == ref_stats["stages"] and stats["errors"] == ref_stats["errors"]
