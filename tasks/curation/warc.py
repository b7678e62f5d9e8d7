"""Read WARC / WET records from local paths, globs, https:// and s3:// URLs.

`iter_records` yields the documents a curation run wants (HTML responses and
WET text conversions) with their provenance, and counts everything else by
reason. Damage never raises out: a truncated gzip or a corrupt record ends the
file after the records before it and is counted in `errors`.

Which records count as HTML follows datatrove's WarcReader (FineWeb): record
type response/conversion; WARC-Identified-Payload-Type text/html or
application/xhtml+xml (text/plain for WET); older crawls without that header
fall back to the HTTP Content-Type, then to libmagic on the bytes.
"""
from __future__ import annotations

import glob as globlib
import gzip
import logging
import os
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from tasks.curation.funnel import StageCounter
from tasks.curation.remote import RemoteFault, RemoteStream, RetryPolicy, is_remote, read_remote

log = logging.getLogger(__name__)

HTML_TYPES = ("text/html", "application/xhtml+xml")
WARC_SUFFIXES = (".warc", ".warc.gz", ".wet", ".wet.gz", ".warc.wet.gz", ".arc.gz")
_GLOB_CHARS = set("*?[")


@dataclass(frozen=True, slots=True)
class WarcDoc:
    """One HTML page (kind="html") or WET text (kind="text") with its provenance."""

    id: str            # WARC-Record-ID
    url: str           # WARC-Target-URI
    date: str          # WARC-Date (ISO 8601)
    warc_file: str     # the input it came from
    content_type: str  # payload MIME type
    body: bytes        # raw payload bytes
    text: str          # payload decoded to str (HTML or plain text)
    kind: str          # "html" | "text"


def _is_remote(path: str) -> bool:
    return is_remote(path)


def expand_inputs(inputs: list[str]) -> list[str]:
    """Expand local globs/directories, keep URLs; refuse a local path that does not exist.

    Raises ValueError naming the first missing input, before any work is done.
    """
    out: list[str] = []
    for raw in inputs:
        item = str(raw)
        if _is_remote(item):
            if item.startswith("s3://") and _GLOB_CHARS & set(item):
                import fsspec
                fs, _ = fsspec.core.url_to_fs(item)
                matches = sorted("s3://" + p for p in fs.glob(item))
                if not matches:
                    raise ValueError(f"input glob {item!r} matched no objects; check the bucket/prefix")
                out.extend(matches)
            else:
                out.append(item)
            continue
        local = item[len("file://"):] if item.startswith("file://") else item
        if _GLOB_CHARS & set(local):
            matches = sorted(p for p in globlib.glob(local, recursive=True) if os.path.isfile(p))
            if not matches:
                raise ValueError(f"input glob {item!r} matched no files; check the pattern")
            out.extend(matches)
        elif os.path.isdir(local):
            matches = sorted(
                os.path.join(d, f) for d, _, files in os.walk(local) for f in files
                if f.endswith(WARC_SUFFIXES))
            if not matches:
                raise ValueError(f"input directory {item!r} holds no .warc/.warc.gz/.wet.gz files")
            out.extend(matches)
        elif os.path.isfile(local):
            out.append(local)
        else:
            raise ValueError(f"input {item!r} does not exist; give an existing file, directory, "
                             f"glob, https:// or s3:// URL")
    seen: set[str] = set()
    return [p for p in out if not (p in seen or seen.add(p))]


def take_shard(inputs: list[str], k: int, m: int) -> list[str]:
    """Part `k` of `m` (1-based) of `inputs`: every m-th one from the (k-1)-th, in order.

    Parts of the same list are disjoint and together cover it; striding keeps
    them balanced when neighbouring files differ in size.
    """
    if not 1 <= k <= m:
        raise ValueError(f"shard {k}/{m}: need 1 ≤ K ≤ M")
    return list(inputs)[k - 1::m]


def crawl_warc_urls(crawl: str, n: int, base_url: str = "https://data.commoncrawl.org",
                    policy: RetryPolicy | None = None) -> list[str]:
    """URLs of the first `n` WARC files of a Common Crawl crawl (from its warc.paths.gz)."""
    base = base_url.rstrip("/")
    listing = f"{base}/crawl-data/{crawl}/warc.paths.gz"
    try:
        raw = read_remote(listing, policy) if _is_remote(listing) else open(listing, "rb").read()
    except Exception as e:  # noqa: BLE001 — any transport error means the same to the user
        raise ValueError(f"cannot read {listing} ({type(e).__name__}: {e}); check --crawl "
                         f"and the base URL, or use --input with local files") from e
    try:
        lines = gzip.decompress(raw).decode().splitlines()
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise ValueError(f"{listing} is not a gzip list of paths ({e})") from e
    paths = [ln.strip() for ln in lines if ln.strip()][:n]
    return [f"{base}/{p}" for p in paths]


def _open(src: str, policy: RetryPolicy | None = None, start: int = 0,
          net: dict[str, int] | None = None):
    """A binary stream of `src` from byte `start`: remote ones resume by themselves (tasks/curation/remote.py)."""
    if _is_remote(src):
        return RemoteStream(src, policy, start=start, net=net)
    import fsspec

    f = fsspec.open(src, "rb").open()
    if start:
        f.seek(start)
    return f


def fault_of(errors: dict[str, int]) -> str | None:
    """The remote fault (`remote_<reason>`) that ended a file early, if any: its output is incomplete."""
    return next((k for k in sorted(errors) if k.startswith("remote_")), None)


class NotWarc(ValueError):
    """The file holds no WARC record where one must start."""


class CheckpointMismatch(RuntimeError):
    """The record at a checkpoint's offset is not the one it recorded: start the file again."""


def _mime_of(record) -> str | None:
    mime = record.rec_headers.get_header("WARC-Identified-Payload-Type")
    if not mime:
        if record.rec_type == "conversion":
            mime = record.rec_headers.get_header("Content-Type")
        elif record.http_headers is not None:
            mime = record.http_headers.get_header("Content-Type")
    return mime.split(";")[0].strip().lower() if mime else None


def _charset_of(record) -> str | None:
    ct = record.http_headers.get_header("Content-Type") if record.http_headers is not None else None
    if ct and "charset=" in ct.lower():
        return ct.lower().split("charset=")[-1].split(";")[0].strip().strip("\"'") or None
    return None


def decode_body(body: bytes, declared: str | None = None) -> str | None:
    """Decode page bytes: declared charset, then UTF-8, then chardet's guess; None if all fail."""
    tried = []
    for enc in (declared, "utf-8"):
        if enc and enc not in tried:
            tried.append(enc)
            try:
                return body.decode(enc)
            except (UnicodeDecodeError, LookupError):
                pass
    import cchardet

    guess = cchardet.detect(body).get("encoding")
    if guess and guess.lower() not in tried:
        try:
            return body.decode(guess)
        except (UnicodeDecodeError, LookupError):
            return None
    return None


def _looks_binary(body: bytes) -> bool:
    # NUL bytes do not occur in real HTML/text in any ASCII-compatible charset.
    return b"\x00" in body[:8192]


def iter_records(src: str, read: StageCounter, errors: dict[str, int],
                 max_body_bytes: int = 10_000_000, *, policy: RetryPolicy | None = None,
                 net: dict[str, int] | None = None, start: dict[str, Any] | None = None,
                 on_boundary: Callable[[int, str, int], None] | None = None,
                 every: int = 0) -> Iterator[WarcDoc]:
    """Yield HTML/WET documents of one WARC; count skips in `read` and file errors in `errors`.

    Never raises for bad input: an unreachable/unopenable source, truncated gzip
    or corrupt record is logged and counted, and reading stops there. A remote
    source retries and resumes within `policy` (tasks/curation/remote.py); a fault past
    its limits is counted as `remote_<reason>` and ends the file.

    Resume inside a file: every `every` records, before reading the next one,
    `on_boundary(offset, record_id, records_consumed)` is called — by then the
    caller has handled every document yielded so far, so its state plus
    `offset` is a checkpoint. `start` ({offset, record_id, records}) re-opens
    the file at such a point; if the record there is not `record_id`,
    `CheckpointMismatch` is raised before anything is counted.

    Memory stays bounded by `max_body_bytes`: a larger payload is skipped by
    its declared length without being read, or read only up to the limit.
    """
    from warcio.archiveiterator import ArchiveIterator
    from warcio.exceptions import ArchiveLoadFailed

    def error(kind: str, exc: BaseException) -> None:
        errors[kind] = errors.get(kind, 0) + 1
        text = str(exc)
        text = text if len(text) <= 200 else text[:200] + "…"  # a parser may quote a whole binary line
        log.warning("%s: %s (%s: %s); kept the records before it", src, kind, type(exc).__name__, text)

    offset0 = int(start["offset"]) if start else 0
    n_records = int(start["records"]) if start else 0
    try:
        stream = _open(src, policy, offset0, net)
    except RemoteFault as e:
        error(f"remote_{e.reason}", e)
        return
    except FileNotFoundError as e:
        error("remote_not_found" if _is_remote(src) else "missing_file", e)
        return
    except Exception as e:  # noqa: BLE001 — network/auth errors come in many types
        error("unreachable", e)
        return
    open_doc = False  # a record was counted as seen but not yet kept/dropped
    verifying = start is not None  # the first record must be the checkpoint's
    since = 0
    try:
        it = ArchiveIterator(stream, check_digests=False)
        for record in it:
            if record.format != "warc":
                # warcio also reads the legacy ARC format, and takes any text line for an ARC header:
                # crawl2chat reads WARC/WET only, so such a file is not_warc (counted, not guessed at).
                raise NotWarc(f"not a WARC record (warcio read it as {record.format!r})")
            rid = record.rec_headers.get_header("WARC-Record-ID") or ""
            if verifying:
                if rid != start.get("record_id"):
                    raise CheckpointMismatch(f"{src}: record at offset {offset0} is {rid!r}, "
                                             f"not {start.get('record_id')!r}")
                verifying = False
            elif on_boundary is not None and every and since >= every:
                on_boundary(it.offset, rid, n_records)
                since = 0
            since += 1
            n_records += 1
            if record.rec_type not in ("response", "conversion"):
                read.ignore(record.rec_type or "unknown")
                continue
            read.seen()
            open_doc = True
            declared = (record.rec_headers.get_header("Content-Length") or "").strip()
            if not declared.isdigit():
                # warcio warns and resyncs on the next record; count it, keep going.
                read.drop("corrupt_record")
                open_doc = False
                errors["corrupt_record"] = errors.get("corrupt_record", 0) + 1
                log.warning("%s: record with invalid Content-Length %r skipped", src, declared)
                continue
            mime = _mime_of(record)
            kind = "text" if record.rec_type == "conversion" else "html"
            length = record.length or 0
            if length > max_body_bytes + 65536:  # + HTTP headers
                # Skipped by its declared length: warcio streams past the payload in
                # 16 KiB blocks when the next record is asked for; it is never held.
                read.drop("too_large")
                open_doc = False
                continue
            body = record.content_stream().read(max_body_bytes + 1)
            if len(body) > max_body_bytes:
                read.drop("too_large")
                open_doc = False
                continue
            if getattr(record.raw_stream, "limit", 0) > 0:
                # The record promised more bytes than the file holds: the file ends here.
                raise EOFError(f"record {rid} is cut short")
            if not body.strip():
                read.drop("empty_body")
                open_doc = False
                continue
            if mime is None:
                import magic
                mime = magic.from_buffer(body[:8192], mime=True)
            ok_types = HTML_TYPES + (("text/plain",) if kind == "text" else ())
            if mime not in ok_types:
                read.drop("non_html")
                open_doc = False
                continue
            if _looks_binary(body):
                read.drop("binary_body")
                open_doc = False
                continue
            text = decode_body(body, _charset_of(record) if kind == "html" else "utf-8")
            if text is None:
                read.drop("undecodable")
                open_doc = False
                continue
            h = record.rec_headers
            url = h.get_header("WARC-Target-URI") or h.get_header("uri") or ""
            date = h.get_header("WARC-Date") or h.get_header("archive-date") or ""
            read.keep()
            open_doc = False
            yield WarcDoc(id=rid or f"{src}#{read.n_in}", url=url,
                          date=date, warc_file=src, content_type=mime, body=body, text=text,
                          kind=kind)
        if verifying:
            raise CheckpointMismatch(f"{src}: nothing to read at checkpoint offset {offset0}")
    except CheckpointMismatch:
        raise
    except RemoteFault as e:  # past the retry limits: the rest of the file is lost this run
        error(f"remote_{e.reason}", e)
    except Exception as e:  # noqa: BLE001 — classified below
        if verifying:  # the checkpoint's offset does not start a readable record
            raise CheckpointMismatch(f"{src}: no record at checkpoint offset {offset0} ({e})") from e
        if n_records == 0 and offset0 == 0 and not isinstance(e, (EOFError, zlib.error)):
            # Not one record could be parsed from the start: this file is no WARC/WET (a named
            # reason, not the parser's internal error text; a truncated real WARC is EOF/zlib).
            error("not_warc", e)
        elif isinstance(e, (EOFError, zlib.error, gzip.BadGzipFile)):
            error("truncated_gzip" if src.endswith(".gz") else "truncated_file", e)
        elif isinstance(e, (ArchiveLoadFailed, ValueError, KeyError, IndexError, UnicodeError)):
            error("corrupt_record", e)
        else:  # OSError and anything else, e.g. a local disk error mid-file
            error("read_error", e)
    finally:
        if open_doc:  # the damage hit inside this record's body
            read.drop("damaged_record")
        try:
            stream.close()
        except Exception:  # noqa: BLE001 — closing a broken stream must not mask the count
            pass
