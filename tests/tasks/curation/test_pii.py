"""PII scrubbing (tasks/curation/pii.py): e-mails, public IPs, phones replaced; other numbers kept.

The example strings are written for the tests (the phone numbers are from
reserved fictional ranges: 555-01xx, Ofcom's 020 7946 0xxx drama range).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.curation.pii import scrub_pii

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
    assert counts == {"email": 2, "ip": 1, "ssn": 0, "card": 0, "address": 0, "phone": 1}
    assert out == ("Email <EMAIL> or <EMAIL>, Tel. <PHONE>, "
                   "server <IP>, released 2024-01-15 for $19.99 (v2.0.1).")


class Flags:
    def __init__(self, email=True, ip=True, phone=True):
        self.pii_email, self.pii_ip, self.pii_phone = email, ip, phone


def test_config_switches_kinds_off():
    text = "a@example.com 8.8.8.8 202-555-0143"
    assert scrub_pii(text, Flags(email=False))[0] == "a@example.com <IP> <PHONE>"
    assert scrub_pii(text, Flags(ip=False, phone=False))[0] == "<EMAIL> 8.8.8.8 202-555-0143"
    zero = {"email": 0, "ip": 0, "ssn": 0, "card": 0, "address": 0, "phone": 0}
    assert scrub_pii(text, Flags(False, False, False)) == (text, zero)
    assert scrub_pii("", None) == ("", zero)


def test_real_c4_text_changes_only_around_pii():
    """On real C4 documents every change is a placeholder; digits elsewhere are untouched."""
    path = Path(__file__).resolve().parents[3] / "data" / "text" / "llamafactory_c4_demo.jsonl"
    docs = [json.loads(line)["text"] for line in path.read_text().splitlines()]
    total = dict.fromkeys(scrub_pii("")[1], 0)
    for doc in docs:
        out, counts = scrub_pii(doc)
        for k, v in counts.items():
            total[k] += v
        n = sum(counts.values())
        holders = ("<EMAIL>", "<IP>", "<SSN>", "<CARD>", "<ADDRESS>", "<PHONE>")
        assert sum(out.count(p) for p in holders) == n + sum(doc.count(p) for p in holders)
        if n == 0:
            assert out == doc
    # the sample holds real contact details (e-mails, US/UK phone numbers)
    assert total["email"] >= 5 and total["phone"] >= 5


# ---------------------------------------------- SSNs, payment cards, street addresses (issue 26)
NEW_PII = [
    ("SSN 536-22-8711 on file", "ssn", "SSN <SSN> on file"),
    ("ssn: 536228711.", "ssn", "ssn: <SSN>."),
    ("social security number 412 33 9087", "ssn", "social security number <SSN>"),
    ("Visa 4111 1111 1111 1111 expires", "card", "Visa <CARD> expires"),
    ("card 5500-0000-0000-0004", "card", "card <CARD>"),
    ("amex 378282246310005", "card", "amex <CARD>"),
    ("Visit 1600 Pennsylvania Avenue NW, Washington, DC 20500 today.", "address", "Visit <ADDRESS> today."),
    ("He lived at 350 Fifth Avenue, New York, NY 10118 for years.", "address", "He lived at <ADDRESS> for years."),
    ("Write to 10 Downing Street, London SW1A 2AA.", "address", "Write to <ADDRESS>."),
    ("221B Baker Street, London NW1 6XE", "address", "<ADDRESS>"),
    ("Mail 301 Front St W, Toronto, ON M5V 2T6, Canada.", "address", "Mail <ADDRESS>."),
    ("Suite at 290 Bremner Blvd, Toronto, ON M5V 3L9", "address", "Suite at <ADDRESS>"),
]

NOT_NEW_PII = [
    "SSN 078-05-1120", "area 000-12-3456", "area 666-12-3456", "area 912-12-3456", "group 536-00-8711",
    "serial 536-22-0000", "card 4111 1111 1111 1112", "tweet 424245737585537024", "In 1999 Main Street was busy.",
    "Chapter 3 Road Trips", "ISBN 978-0-306-40615-7", "1,234 5678 9012",
]


@pytest.mark.parametrize("text,kind,expected", NEW_PII)
def test_new_pii_is_replaced(text, kind, expected):
    out, counts = scrub_pii(text)
    assert out == expected and counts[kind] == 1 and sum(counts.values()) == 1


@pytest.mark.parametrize("text", NOT_NEW_PII)
def test_new_pii_lookalikes_are_kept(text):
    assert scrub_pii(text) == (text, dict.fromkeys(scrub_pii("")[1], 0))


def test_validators():
    from tasks.curation.pii import luhn_ok, valid_ssn

    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112") and luhn_ok("79927398713")
    assert valid_ssn("536228711") and not valid_ssn("666228711") and not valid_ssn("900228711")
    assert not valid_ssn("536008711") and not valid_ssn("536220000") and not valid_ssn("111111111")


def test_new_kinds_on_real_text_precision_recall(repo_data):
    """Real C4 documents with the PII above planted between their sentences (positives), and the
    untouched documents (negatives): recall and precision per kind."""
    with open(repo_data / "text" / "llamafactory_c4_demo.jsonl") as f:
        docs = [json.loads(line)["text"] for line in f][:200]
    planted = {k: 0 for k in ("ssn", "card", "address")}
    found = dict(planted)
    false_pos = dict(planted)
    for i, doc in enumerate(docs):
        _, base = scrub_pii(doc)
        for k in planted:
            false_pos[k] += base[k]
        text, kind, _ = NEW_PII[i % len(NEW_PII)]
        cut = doc.find(". ") + 2 if ". " in doc else 0
        _, counts = scrub_pii(doc[:cut] + text + " " + doc[cut:])
        planted[kind] += 1
        found[kind] += min(1, counts[kind] - base[kind])
    assert found == planted  # recall 1.0 on every kind
    # the untouched documents: no SSN or card; the two addresses found are real ones, read by hand
    # ("6633 Oakmont Dr.", "4221 Myra Street, Gibson, NC"): true positives, not false ones
    assert false_pos == {"ssn": 0, "card": 0, "address": 2}
