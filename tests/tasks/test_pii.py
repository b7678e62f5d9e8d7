"""PII scrubbing (tasks/pii.py): e-mails, public IPs, phones replaced; other numbers kept.

The example strings are written for the tests (the phone numbers are from
reserved fictional ranges: 555-01xx, Ofcom's 020 7946 0xxx drama range).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.pii import scrub_pii

PII = [
    # (text, kind, expected output)
    ("Write to john.doe@example.com today", "email", "Write to <EMAIL> today"),
    ("<a.b+tag@mail.co.uk>", "email", "<<EMAIL>>"),
    ("Contact: jane_doe99@uni-heidelberg.de.", "email", "Contact: <EMAIL>."),
    ("Server 8.8.8.8 is down", "ip", "Server <IP> is down"),
    ("from 93.184.216.34.", "ip", "from <IP>."),
    ("listening on 151.101.1.69:443", "ip", "listening on <IP>:443"),
    ("resolver 2606:4700:4700::1111 answered", "ip", "resolver <IP> answered"),
    ("host 2a00:1450:4001:82b::200e up", "ip", "host <IP> up"),
    ("call +44 20 7946 0958 today", "phone", "call <PHONE> today"),
    ("+1-202-555-0143", "phone", "<PHONE>"),
    ("+1 (202) 555-0143", "phone", "<PHONE>"),
    ("(202) 555-0143", "phone", "<PHONE>"),
    ("ring 202-555-0143.", "phone", "ring <PHONE>."),
    ("202.555.0143", "phone", "<PHONE>"),
    ("202 555 0143", "phone", "<PHONE>"),
    ("1 800 555 0199", "phone", "<PHONE>"),
    ("1-800-555-0199", "phone", "<PHONE>"),
    ("+49 (0)30 1234567", "phone", "<PHONE>"),
    ("+33 1 42 68 53 00", "phone", "<PHONE>"),
    ("+91 98765 43210", "phone", "<PHONE>"),
    ("+442079460958", "phone", "<PHONE>"),
    ("0044 20 7946 0958", "phone", "<PHONE>"),
    ("020 7946 0958", "phone", "<PHONE>"),
    ("Fax. 0800 123 4567", "phone", "Fax. <PHONE>"),
    ("Tel: 555-0143", "phone", "Tel: <PHONE>"),
    ("Phone:202-555-0143", "phone", "Phone:<PHONE>"),
]

NOT_PII = [
    "on 2024-01-15 at 10:30", "15/01/2024", "12.03.2021", "2024-01-15T10:30:00Z", "12:30:45",
    "costs $1,299.99 or €20", "Total: 12,345.67", "pi is 3.14159", "1,234,567 people",
    "v1.2.3", "version 1.2.3.4", "Python 3.10.4", "Chrome 120.0.6099.109", "1.2.3.4.5",
    "router 192.168.1.1", "localhost 127.0.0.1", "docs use 192.0.2.5", "10.0.0.1", "172.16.254.1",
    "ISBN 978-3-16-148410-0", "ISBN 0-306-40615-2", "order 1234567890123", "SKU 4006381333931",
    "A/C No. 00632000001783", "ID 123-45-6789", "in 1999-2000", "the years 1914 1918 1939 1945",
    "population 8 000 000", "coords 40.7128, -74.0060", "+5 degrees", "100 200 3000", "call 911",
    "pages 100-200", "Room 1203, ext. 4567", "5.5 x 8.5 in", "score 10-2", "logo@2x.png",
    "std::vector<int>", "a::b", "@user mentioned #42", "Call 2019-2020 season", "phone 2024-01-15 release",
    "call 15/01/2024",
]


@pytest.mark.parametrize("text,kind,expected", PII)
def test_pii_is_replaced(text, kind, expected):
    out, counts = scrub_pii(text)
    assert out == expected
    assert counts[kind] == 1 and sum(counts.values()) == 1


@pytest.mark.parametrize("text", NOT_PII)
def test_non_pii_numbers_are_kept(text):
    out, counts = scrub_pii(text)
    assert out == text, f"mangled: {text!r} → {out!r}"
    assert sum(counts.values()) == 0


def test_mixed_text_counts_each_kind():
    text = ("Email info@example.org or sales@example.com, Tel. +44 (0) 20 7946 0958, "
            "server 8.8.4.4, released 2024-01-15 for $19.99 (v2.0.1).")
    out, counts = scrub_pii(text)
    assert counts == {"email": 2, "ip": 1, "phone": 1}
    assert out == ("Email <EMAIL> or <EMAIL>, Tel. <PHONE>, "
                   "server <IP>, released 2024-01-15 for $19.99 (v2.0.1).")


class Flags:
    def __init__(self, email=True, ip=True, phone=True):
        self.pii_email, self.pii_ip, self.pii_phone = email, ip, phone


def test_config_switches_kinds_off():
    text = "a@example.com 8.8.8.8 202-555-0143"
    assert scrub_pii(text, Flags(email=False))[0] == "a@example.com <IP> <PHONE>"
    assert scrub_pii(text, Flags(ip=False, phone=False))[0] == "<EMAIL> 8.8.8.8 202-555-0143"
    assert scrub_pii(text, Flags(False, False, False)) == (text, {"email": 0, "ip": 0, "phone": 0})
    assert scrub_pii("", None) == ("", {"email": 0, "ip": 0, "phone": 0})


def test_real_c4_text_changes_only_around_pii():
    """On real C4 documents every change is a placeholder; digits elsewhere are untouched."""
    path = Path(__file__).resolve().parents[2] / "data" / "text" / "llamafactory_c4_demo.jsonl"
    docs = [json.loads(line)["text"] for line in path.read_text().splitlines()]
    total = {"email": 0, "ip": 0, "phone": 0}
    for doc in docs:
        out, counts = scrub_pii(doc)
        for k, v in counts.items():
            total[k] += v
        n = sum(counts.values())
        assert out.count("<EMAIL>") + out.count("<IP>") + out.count("<PHONE>") == n + sum(
            doc.count(p) for p in ("<EMAIL>", "<IP>", "<PHONE>"))
        if n == 0:
            assert out == doc
    # the sample holds real contact details (e-mails, US/UK phone numbers)
    assert total["email"] >= 5 and total["phone"] >= 5
