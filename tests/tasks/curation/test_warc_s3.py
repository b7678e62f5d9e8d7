"""s3:// inputs: expansion of an s3 glob and reading WARCs from a local S3 API (moto server)."""
from __future__ import annotations

from pathlib import Path

import pytest

from tasks.curation.funnel import StageCounter
from tasks.curation.warc import expand_inputs, iter_records

SAMPLES = Path(__file__).resolve().parents[3] / "data" / "samples"
FILES = ("cc-main-2020-34_resiliparse_warcfile.warc.gz", "noncc_wget-2024_dolma_sample-0000.warc.gz")


@pytest.fixture(scope="module")
def bucket(s3_server):
    s3_server.create_bucket(Bucket="warc-test")
    for name in FILES:
        s3_server.upload_file(str(SAMPLES / name), "warc-test", f"crawl-data/seg/{name}")
    s3_server.put_object(Bucket="warc-test", Key="crawl-data/seg/readme.txt", Body=b"not a warc")
    return "warc-test"


def _read(src: str):
    read, errors = StageCounter("read"), {}
    return list(iter_records(src, read, errors)), read, errors


def test_s3_glob_expands_to_the_matching_objects(bucket):
    got = expand_inputs([f"s3://{bucket}/crawl-data/*/*.warc.gz"])
    assert got == [f"s3://{bucket}/crawl-data/seg/{n}" for n in sorted(FILES)]
    with pytest.raises(ValueError, match="matched no objects"):
        expand_inputs([f"s3://{bucket}/nothing-here/*.warc.gz"])


def test_s3_object_reads_the_same_records_as_the_local_file(bucket):
    for name in FILES:
        remote, r_read, r_err = _read(f"s3://{bucket}/crawl-data/seg/{name}")
        local, l_read, l_err = _read(str(SAMPLES / name))
        assert remote and not r_err and not l_err
        assert [(d.id, d.url, d.body) for d in remote] == [(d.id, d.url, d.body) for d in local]
        assert remote[0].warc_file == f"s3://{bucket}/crawl-data/seg/{name}"
        assert r_read.as_dict() == l_read.as_dict()


def test_missing_s3_object_is_counted_not_raised(bucket):
    docs, _, errors = _read(f"s3://{bucket}/crawl-data/seg/gone.warc.gz")
    assert docs == [] and errors == {"remote_not_found": 1}  # a missing object is not retried
