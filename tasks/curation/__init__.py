"""Curation, per document and per corpus: read WARC, extract, filter, dedup, scrub PII, write."""
