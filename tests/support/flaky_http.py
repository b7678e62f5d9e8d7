"""A flaky "Common Crawl" for tests: a 127.0.0.1 HTTP server over a folder that fails on a script.

It serves files with what the reader relies on — HEAD, `Range: bytes=N-`
(206 + Content-Range), a strong ETag and `If-Range` — and, for the n-th GET of
a path, does what `plan[path][n]` says (then serves normally once the list is
used up):

- "503" / "500" / "429": that status, no body ("429" adds Retry-After: 0);
- "drop:F": the headers of the full answer, the first F (0..1) of the body,
  then the connection is closed — a body cut short;
- "stall:F": the first F of the body, then nothing until the server stops — a
  stall, which the client sees as a read timeout.

Deterministic: faults are keyed by request count per path, not by time.
`gets[path]` counts GETs, `ranges[path]` lists the Range start of each.
"""
from __future__ import annotations

import hashlib
import http.server
import shutil
import socket
import threading
from collections import Counter, defaultdict
from pathlib import Path


class FlakyServer:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.plan: dict[str, list[str]] = {}
        self.gets: Counter = Counter()
        self.ranges: dict[str, list[int]] = defaultdict(list)
        self.faults: Counter = Counter()  # fault kind → how many were served
        self.release = threading.Event()
        self.lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _file(self) -> Path | None:
                rel = self.path.split("?", 1)[0].lstrip("/")
                p = (server.root / rel).resolve()
                return p if p.is_file() and server.root.resolve() in p.parents else None

            def do_HEAD(self):
                p = self._file()
                if p is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(p.stat().st_size))
                self.send_header("ETag", _etag(p))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()

            def do_GET(self):
                p = self._file()
                path = self.path.split("?", 1)[0]
                with server.lock:
                    n = server.gets[path]
                    server.gets[path] += 1
                    steps = server.plan.get(path, [])
                    action = steps[n] if n < len(steps) else "ok"
                if p is None:
                    self.send_error(404)
                    return
                data = p.read_bytes()
                etag = _etag(p)
                start = 0
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes=") and self.headers.get("If-Range", etag) == etag:
                    start = int(rng[len("bytes="):].split("-")[0])
                server.ranges[path].append(start)
                if action in ("503", "500", "429"):
                    server.faults[f"http_{action}"] += 1
                    self.send_response(int(action))
                    if action == "429":
                        self.send_header("Retry-After", "0")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = data[start:]
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", etag)
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                kind, _, frac = action.partition(":")
                if kind in ("drop", "stall"):
                    cut = int(len(body) * float(frac))
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    server.faults[kind] += 1
                    if kind == "stall":
                        server.release.wait(60)
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    self.close_connection = True
                    return
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def reset(self, plan: dict[str, list[str]] | None = None) -> None:
        with self.lock:
            self.plan = dict(plan or {})
            self.gets.clear()
            self.ranges.clear()
            self.faults.clear()

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


SAMPLES = Path(__file__).resolve().parents[2] / "data" / "samples"
# The mirror both flaky-network suites serve: every kind of real sample (a wget WARC, two Common
# Crawl WARCs, a WET), under short names.
SAMPLE_FILES = {"a.warc.gz": SAMPLES / "noncc_wget-2024_dolma_sample-0000.warc.gz",
                "b.warc.gz": SAMPLES / "cc-main-2020-34_resiliparse_warcfile.warc.gz",
                "c.warc.gz": SAMPLES / "cc-main-2024-22_whirlwind.warc.gz",
                "d.warc.wet.gz": SAMPLES / "cc-main-2024-22_whirlwind.warc.wet.gz"}


def _etag(p: Path) -> str:
    st = p.stat()
    return '"' + hashlib.sha1(f"{st.st_size}-{st.st_mtime_ns}".encode()).hexdigest()[:16] + '"'


def crawl_mirror(root: Path, crawl: str, files: dict[str, Path]) -> list[str]:
    """Lay out `files` ({name: source}) as crawl-data/<crawl>/segments/.../warc/<name> + warc.paths.gz.

    Returns the listed paths (relative to the server root), in listing order.
    """
    import gzip

    seg = f"crawl-data/{crawl}/segments/1700000000000.0/warc"
    (root / seg).mkdir(parents=True, exist_ok=True)
    listing = []
    for name, src in files.items():
        shutil.copy(src, root / seg / name)
        listing.append(f"{seg}/{name}")
    (root / f"crawl-data/{crawl}/warc.paths.gz").write_bytes(gzip.compress("\n".join(listing).encode()))
    return listing
