"""Remote reads (https://, s3://) that survive a flaky network: nothing lost, nothing capped.

`RemoteStream` is a read-only, forward-only file object over one remote object.
When a read fails on a transient fault — HTTP 429/500/502/503/504 (S3's
"SlowDown"), a connection reset or a body cut short, a read timeout — it waits
(exponential backoff with full jitter, honouring Retry-After) and re-opens the
object at the first byte it has not yet handed out, with an HTTP Range request
guarded by the ETag (`If-Range`), so the bytes its reader sees are exactly those
of an uninterrupted read. Common Crawl WARCs are one gzip member per record, so
a resume point is also always inside or at a record boundary; the in-file
checkpoint (tasks/curation/shard_checkpoint.py) re-opens at a record boundary the same
way.

Limits are `RetryPolicy` fields (from `conf.curate.CurateConfig.remote_*`):
`retries` consecutive failed attempts *without a new byte* end the read with
`RemoteFault(reason)`; a read that makes progress resets the count. There is no
cap on a whole download: a stall is a read timeout between bytes, then resumed.
(aiohttp, under fsspec's http filesystem, cuts every request at 300 s by
default — `aiohttp.client.DEFAULT_TIMEOUT` total=300 — which is what truncated
long downloads before; https:// no longer goes through it.)

Counters of what was overcome (`retries`, `resumes`, one per fault reason) go
into the `net` dict the caller passes, so a run can report them.
"""
from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}
_CHUNK = 1 << 16


@dataclass(frozen=True)
class RetryPolicy:
    """How hard a remote read tries before the input counts as failed."""

    retries: int = 10                 # consecutive failed attempts (no new byte) before giving up
    backoff_s: float = 1.0            # first wait; doubles per consecutive failure
    backoff_max_s: float = 60.0       # cap of one wait (also caps a server's Retry-After)
    read_timeout_s: float = 60.0      # longest silence between two bytes before a resume
    connect_timeout_s: float = 30.0

    @classmethod
    def from_config(cls, cfg: Any) -> "RetryPolicy":
        return cls(retries=cfg.remote_retries, backoff_s=cfg.remote_backoff_s,
                   backoff_max_s=cfg.remote_backoff_max_s, read_timeout_s=cfg.remote_read_timeout_s,
                   connect_timeout_s=cfg.remote_connect_timeout_s)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Wait before attempt `attempt` (1-based): full jitter over an exponential ceiling."""
        ceiling = min(self.backoff_max_s, self.backoff_s * (2 ** (attempt - 1)))
        wait = random.uniform(0.5 * ceiling, ceiling)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.backoff_max_s))
        return wait


class RemoteFault(OSError):
    """A remote read failed for good: after the policy's limits, or on a permanent error.

    `reason` is short and stable (counted in stats.json): http_503, timeout,
    connection_dropped, not_found, changed, ...
    """

    def __init__(self, message: str, reason: str = "read_error", transient: bool = True):
        super().__init__(message)
        self.reason = reason
        self.transient = transient

    def __reduce__(self):  # keep `reason` across pickling (Ray, Prefect states)
        return (type(self), (str(self), self.reason, self.transient))


def is_remote(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def _count(net: dict[str, int] | None, key: str, n: int = 1) -> None:
    if net is not None:
        net[key] = net.get(key, 0) + n


# ------------------------------------------------------------------ https
_POOL = None


def _pool():
    global _POOL
    if _POOL is None:
        import urllib3

        _POOL = urllib3.PoolManager(num_pools=16, maxsize=4, retries=False)
    return _POOL


def _discard(r) -> None:
    """Drop a response we will not read (error status): close its connection, never reuse it half-read."""
    try:
        r.close()
    except Exception:  # noqa: BLE001
        pass


class _Transient(Exception):
    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


def _retry_after(headers) -> float | None:
    v = headers.get("Retry-After") if headers is not None else None
    try:
        return float(v) if v is not None else None
    except ValueError:
        return None  # an HTTP date: use our own backoff


def _classify(exc: BaseException) -> str | None:
    """Reason of a transient network error, or None if it is not one."""
    import urllib3.exceptions as ue

    if isinstance(exc, _Transient):
        return exc.reason
    if isinstance(exc, ue.NewConnectionError):  # (a ConnectTimeoutError subclass: test it first)
        return "connection_refused"
    if isinstance(exc, (ue.ReadTimeoutError, ue.ConnectTimeoutError, TimeoutError)):
        return "timeout"
    if isinstance(exc, (ue.ProtocolError, ue.SSLError, ConnectionError, ue.DecodeError)):
        return "connection_dropped"
    if isinstance(exc, ue.MaxRetryError):
        return _classify(exc.reason) if exc.reason is not None else "connection_dropped"
    if isinstance(exc, (ue.HTTPError, OSError)) and not isinstance(exc, RemoteFault):
        return "connection_dropped"
    return None


class _HttpSource:
    """Opens one https:// object at a byte offset (Range + If-Range on the first ETag)."""

    def __init__(self, url: str, policy: RetryPolicy):
        self.url, self.policy = url, policy
        self.etag: str | None = None
        self.size: int | None = None
        self.resp = None

    def open_at(self, pos: int) -> None:
        import urllib3

        headers = {"Accept-Encoding": "identity"}
        if pos:
            headers["Range"] = f"bytes={pos}-"
            if self.etag:
                headers["If-Range"] = self.etag
        r = _pool().request("GET", self.url, headers=headers, preload_content=False, redirect=True,
                            timeout=urllib3.Timeout(connect=self.policy.connect_timeout_s,
                                                    read=self.policy.read_timeout_s),
                            decode_content=False, enforce_content_length=True)
        if r.status in TRANSIENT_STATUS:
            ra = _retry_after(r.headers)
            _discard(r)
            raise _Transient(f"http_{r.status}", ra)
        if r.status == 404 or r.status == 410:
            _discard(r)
            raise RemoteFault(f"{self.url}: HTTP {r.status}", "not_found", transient=False)
        if r.status not in (200, 206):
            _discard(r)
            raise RemoteFault(f"{self.url}: HTTP {r.status}", f"http_{r.status}", transient=False)
        etag = r.headers.get("ETag")
        if self.etag and etag and etag != self.etag:
            _discard(r)
            raise RemoteFault(f"{self.url}: the object changed while it was read (ETag {self.etag} → {etag})",
                              "changed", transient=False)
        self.etag = self.etag or etag
        skip = 0
        if r.status == 206:
            start = int((r.headers.get("Content-Range") or "bytes 0-").split()[1].split("-")[0])
            if start != pos:
                _discard(r)
                raise RemoteFault(f"{self.url}: asked for byte {pos}, got {start}", "bad_range",
                                  transient=False)
            total = (r.headers.get("Content-Range") or "").rsplit("/", 1)[-1]
            if total.isdigit():
                self.size = int(total)
        else:  # 200: the whole object (first open, or a server that ignores Range)
            if r.headers.get("Content-Length", "").isdigit():
                self.size = int(r.headers["Content-Length"])
            skip = pos
        self.resp = r
        while skip:  # a server without Range support: stream past what we already have
            got = r.read(min(skip, _CHUNK))
            if not got:
                raise _Transient("connection_dropped")
            skip -= len(got)

    def read(self, n: int) -> bytes:
        return self.resp.read(n)

    def close(self) -> None:
        if self.resp is not None:
            _discard(self.resp)  # possibly half-read: its connection must not go back to the pool
            self.resp = None


# --------------------------------------------------------------------- s3
class _FsspecSource:
    """Opens one s3:// (or other fsspec) object at a byte offset: a fresh file object + seek."""

    def __init__(self, url: str, policy: RetryPolicy):
        import fsspec

        self.url, self.policy = url, policy
        opts = {}
        if url.startswith("s3://"):
            # botocore's read timeout is between bytes, never a total cap; its own retries are
            # off so that RetryPolicy is the one policy (s3fs adds a few quick ones of its own).
            opts = {"config_kwargs": {"read_timeout": policy.read_timeout_s,
                                      "connect_timeout": policy.connect_timeout_s,
                                      "retries": {"mode": "standard", "total_max_attempts": 1}}}
        self.fs, self.path = fsspec.core.url_to_fs(url, **opts)
        self.etag: str | None = None
        self.size: int | None = None
        self.f = None

    def open_at(self, pos: int) -> None:
        try:
            info = self.fs.info(self.path)
        except FileNotFoundError as e:
            raise RemoteFault(f"{self.url}: no such object", "not_found", transient=False) from e
        except PermissionError as e:
            raise RemoteFault(f"{self.url}: access denied ({e})", "forbidden", transient=False) from e
        except Exception as e:  # noqa: BLE001 — SlowDown, 5xx, resets: all retried
            raise _Transient(_s3_reason(e)) from e
        etag = info.get("ETag") or info.get("etag")
        if self.etag and etag and etag != self.etag:
            raise RemoteFault(f"{self.url}: the object changed while it was read", "changed", transient=False)
        self.etag, self.size = self.etag or etag, info.get("size")
        # 8 MiB ranged reads (s3fs's default is 50 MiB): memory per reader stays small.
        self.f = self.fs.open(self.path, "rb", block_size=8 << 20)
        self.f.seek(pos)

    def read(self, n: int) -> bytes:
        try:
            return self.f.read(n)
        except (FileNotFoundError, PermissionError):
            raise
        except Exception as e:  # noqa: BLE001
            raise _Transient(_s3_reason(e)) from e

    def close(self) -> None:
        if self.f is not None:
            try:
                self.f.close()
            except Exception:  # noqa: BLE001
                pass
            self.f = None


def _s3_reason(e: BaseException) -> str:
    text = f"{type(e).__name__} {e}"
    for code in ("503", "500", "502", "504", "429"):
        if code in text:
            return f"http_{code}"
    if "SlowDown" in text:
        return "http_503"
    if "imeout" in text:
        return "timeout"
    return "connection_dropped"


# ------------------------------------------------------------ the stream
class RemoteStream:
    """Forward-only binary file over a remote object, resumed transparently after faults.

    `tell()` is the absolute offset in the object (warcio records offsets from
    it, the in-file checkpoint stores them).
    """

    def __init__(self, url: str, policy: RetryPolicy | None = None, start: int = 0,
                 net: dict[str, int] | None = None):
        self.url = url
        self.policy = policy or RetryPolicy()
        self.pos = start
        self.net = net
        self.src = _HttpSource(url, self.policy) if url.startswith(("http://", "https://")) \
            else _FsspecSource(url, self.policy)
        self.opened = False
        self.closed = False
        self._reopen(first=True)

    @property
    def etag(self) -> str | None:
        return self.src.etag

    @property
    def size(self) -> int | None:
        return self.src.size

    def _reopen(self, first: bool = False) -> None:
        """Open at self.pos, retrying transient faults within the policy."""
        failures = 0
        last = "connection_dropped"
        retry_after = None
        while True:
            if failures:
                if failures > self.policy.retries:
                    raise RemoteFault(f"{self.url}: gave up at byte {self.pos} after {failures} failed "
                                      f"attempts in a row (last: {last})", last)
                time.sleep(self.policy.delay(failures, retry_after))
                _count(self.net, "retries")
            try:
                self.src.close()
                self.src.open_at(self.pos)
                if not first or self.pos:
                    _count(self.net, "resumes")
                self.opened = True
                return
            except RemoteFault:
                raise
            except Exception as e:  # noqa: BLE001 — classified below; unknown errors are not retried
                reason = _classify(e)
                if reason is None:
                    raise
                failures += 1
                last = reason
                retry_after = getattr(e, "retry_after", None)
                _count(self.net, reason)
                log.warning("%s: %s at byte %d (attempt %d of %d); retrying", self.url, reason, self.pos,
                            failures, self.policy.retries + 1)

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            chunks = []
            while True:
                b = self.read(_CHUNK)
                if not b:
                    return b"".join(chunks)
                chunks.append(b)
        failures = 0
        while True:
            try:
                data = self.src.read(n)
                if not data and self.src.size is not None and self.pos < self.src.size:
                    raise _Transient("connection_dropped")  # a body that ended early without an error
                self.pos += len(data)
                return data
            except RemoteFault:
                raise
            except Exception as e:  # noqa: BLE001
                reason = _classify(e)
                if reason is None:
                    raise
                failures += 1
                _count(self.net, reason)
                log.warning("%s: %s at byte %d; resuming with a Range request", self.url, reason, self.pos)
                if failures > self.policy.retries:
                    raise RemoteFault(f"{self.url}: gave up at byte {self.pos} after {failures} failed "
                                      f"reads in a row (last: {reason})", reason) from e
                if failures > 1:  # the first drop resumes at once; repeated ones back off
                    time.sleep(self.policy.delay(failures - 1))
                self._reopen()

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def close(self) -> None:
        self.closed = True
        self.src.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def remote_stat(url: str, policy: RetryPolicy | None = None) -> dict[str, Any] | None:
    """{"size", "etag"} of a remote object (HEAD / info, with retries); None if it cannot be reached."""
    policy = policy or RetryPolicy()
    for attempt in range(policy.retries + 1):
        if attempt:
            time.sleep(policy.delay(attempt))
        try:
            if url.startswith(("http://", "https://")):
                import urllib3

                r = _pool().request("HEAD", url, redirect=True, timeout=urllib3.Timeout(
                    connect=policy.connect_timeout_s, read=policy.read_timeout_s))
                if r.status in TRANSIENT_STATUS:
                    continue
                if r.status != 200:
                    return None
                size = r.headers.get("Content-Length")
                return {"size": int(size) if size and size.isdigit() else None, "etag": r.headers.get("ETag")}
            src = _FsspecSource(url, policy)
            info = src.fs.info(src.path)
            return {"size": info.get("size"), "etag": info.get("ETag") or info.get("etag")}
        except FileNotFoundError:
            return None
        except Exception as e:  # noqa: BLE001
            if _classify(e) is None and not url.startswith("s3://"):
                return None
    return None


def read_remote(url: str, policy: RetryPolicy | None = None) -> bytes:
    """The whole (small) object, e.g. a crawl's warc.paths.gz, with the same retries and resumes."""
    with RemoteStream(url, policy) as s:
        return s.read()
