"""PII scrubbing: e-mail addresses, public IP addresses and phone numbers → placeholders.

E-mail and IPv4 regexes are datatrove's (`PIIFormatter`), with guards it lacks:
- e-mail: the top-level label must be alphabetic and not an image/file
  extension, so retina asset names like `logo@2x.png` survive;
- IPv4: not inside a longer dotted/word token (`1.2.3.4.5`, `v1.2.3.4`), not
  after "version"/"release"/"build"; like datatrove's default
  (`only_remove_public_ips=True`) only *public* (globally routable) addresses
  are replaced: private, loopback, link-local, multicast and documentation
  ranges (192.168.x.x, 10.x, 127.0.0.1, 192.0.2.x …) identify no one and are
  common in technical text, so they are kept.
- IPv6: candidates validated by `ipaddress`, same public-only rule.

Phone numbers (datatrove has none), in this order:
1. international: `+` or `00`, country code, groups (`+44 20 7946 0958`,
   `+1-202-555-0143`, `+49 (0)30 1234567`), 8–15 digits;
2. North American: `(202) 555-0143`, `202-555-0143`, `202.555.0143`,
   `1 800 555 0199` — NANP rules (area code and exchange start with 2–9), the
   same separator between the groups;
3. national with a trunk 0: `020 7946 0958`, `0800 123 4567` (10–11 digits);
4. after a keyword (tel, phone, fax, mobile, call …): any 7–15 digit number
   with separators (`Tel: 555-0143`).
Not matched, by design: bare digit runs without separators or prefix (IDs,
ISBN-13, order numbers), dates (2024-01-15, 15/01/2024, 12.03.2021), times,
prices, versions, decimals, years, number ranges.
"""
from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from typing import Any, Callable

PLACEHOLDERS = {"email": "<EMAIL>", "ip": "<IP>", "phone": "<PHONE>"}
KINDS = tuple(PLACEHOLDERS)

_FILE_EXTENSIONS = frozenset(
    "png jpg jpeg gif svg webp bmp ico tif tiff avif heic pdf js css json xml html htm php "
    "mp3 mp4 webm mov zip gz".split()
)


@lru_cache(maxsize=1)
def _datatrove_patterns() -> tuple[str, str]:
    """(email, ipv4) regex sources from datatrove's PIIFormatter (single source of truth)."""
    from datatrove.pipeline.formatters.pii import PIIFormatter

    f = PIIFormatter()
    return f.emails_replacer.regex.pattern, f.ip_replacer.regex.pattern


def _valid_email(m: re.Match[str], text: str) -> bool:
    tld = m.group(0).rsplit(".", 1)[-1]
    return tld.isalpha() and len(tld) >= 2 and tld.lower() not in _FILE_EXTENSIONS


_VERSION_BEFORE = re.compile(r"\b(?:version|ver\.?|release|build|firmware|v)\s*$", re.IGNORECASE)


def _public_ip(candidate: str) -> bool:
    try:
        return ipaddress.ip_address(candidate).is_global
    except ValueError:
        return False


def _valid_ipv4(m: re.Match[str], text: str) -> bool:
    if _VERSION_BEFORE.search(text, max(0, m.start() - 12), m.start()):
        return False
    return _public_ip(m.group(0))


def _valid_ipv6(m: re.Match[str], text: str) -> bool:
    s = m.group(0)
    groups = [g for g in s.split(":") if g]
    # needs real content: ≥ 3 groups with a digit somewhere ("a::b" or "dead::beef" are not IPs here)
    if len(groups) < 3 or not any(ch.isdigit() for ch in s):
        return False
    return _public_ip(s)


def _digits(s: str) -> int:
    return sum(ch.isdigit() for ch in s)


_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")

_SEP = r"[ .\-\u2010-\u2013]"
# A phone must not continue a longer number/date/version on either side.
_BEFORE = r"(?<![\w+\-./,])"
_AFTER = r"(?![\w]|[.\-/,:]\d)"

_INTERNATIONAL = re.compile(
    _BEFORE + r"(?:\+|\b00)[1-9]\d{0,2}"
    r"(?:" + _SEP + r"?\(\d{1,4}\)|" + _SEP + r"?\d{1,5}){2,6}" + _AFTER
)
_NORTH_AMERICAN = re.compile(
    _BEFORE + r"(?:"
    r"(?:\+?1" + _SEP + r"?)?\([2-9]\d{2}\)" + _SEP + r"?[2-9]\d{2}" + _SEP + r"\d{4}"
    r"|(?:\+?1(?P<s0>" + _SEP + r"))?[2-9]\d{2}(?P<s1>" + _SEP + r")[2-9]\d{2}(?P=s1)\d{4}"
    r")" + _AFTER
)
_NATIONAL = re.compile(_BEFORE + r"(?:\(0\d{2,4}\)|0\d{2,4})[ \-]\d{3,4}[ \-]?\d{3,4}" + _AFTER)
_KEYWORD = re.compile(
    r"(?i:\b(?:tel|telephone|phone|ph|fax|mobile|mob|cell|call|whatsapp)\b\.?\s*(?:no\.?|number|#)?\s*[:.]?\s*)"
    r"(?P<num>\+?\(?\d[\d ().\-]{5,}\d)" + _AFTER
)


# dates and year ranges a keyword rule could otherwise take ("call 2019-2020", "phone 2024-01-15")
_DATE_LIKE = re.compile(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{4}|(?:1[89]|20)\d{2}\s*-\s*(?:1[89]|20)\d{2}")


def _phone_ok(lo: int, hi: int) -> Callable[[re.Match[str], str], bool]:
    def ok(m: re.Match[str], text: str) -> bool:
        number = m.group("num") if "num" in m.re.groupindex else m.group(0)
        if _DATE_LIKE.fullmatch(number.strip()):
            return False
        n = _digits(number)
        if number.startswith("00"):
            if number.isdigit():
                return False  # a bare digit run starting 00 is an account/ID number, not a phone
            n -= 2  # the international call prefix is not part of the number
        return lo <= n <= hi
    return ok


def _replace(text: str, pattern: re.Pattern[str], placeholder: str,
             valid: Callable[[re.Match[str], str], bool], group: str | int = 0) -> tuple[str, int]:
    count = 0

    def sub(m: re.Match[str]) -> str:
        nonlocal count
        if not valid(m, text):
            return m.group(0)
        count += 1
        whole = m.group(0)
        if group == 0:
            return placeholder
        s, e = m.start(group) - m.start(), m.end(group) - m.start()
        return whole[:s] + placeholder + whole[e:]

    return pattern.sub(sub, text), count


@lru_cache(maxsize=1)
def _rules() -> dict[str, list[tuple[re.Pattern[str], Callable[..., bool], str | int]]]:
    email, ipv4 = _datatrove_patterns()
    return {
        "email": [(re.compile(email), _valid_email, 0)],
        "ip": [(re.compile(r"(?<![\w.])" + ipv4 + r"(?![\w]|\.\d)"), _valid_ipv4, 0),
               (_IPV6, _valid_ipv6, 0)],
        "phone": [(_INTERNATIONAL, _phone_ok(8, 15), 0),
                  (_NORTH_AMERICAN, _phone_ok(10, 11), 0),
                  (_NATIONAL, _phone_ok(10, 11), 0),
                  (_KEYWORD, _phone_ok(7, 15), "num")],
    }


def scrub_pii(text: str, cfg: Any = None) -> tuple[str, dict[str, int]]:
    """Replace e-mails, public IPs and phone numbers in `text` by `<EMAIL>`, `<IP>`, `<PHONE>`.

    `cfg` needs `pii_email`, `pii_ip`, `pii_phone` (bools; missing → True).
    Returns the scrubbed text and the number of replacements per kind.
    E-mails go first (their local parts hold digits), then IPs, then phones.
    """
    counts = dict.fromkeys(KINDS, 0)
    if not text:
        return text, counts
    for kind, rules in _rules().items():
        if not getattr(cfg, f"pii_{kind}", True):
            continue
        # cheap pre-checks skip the regexes on most documents
        if kind == "email" and "@" not in text:
            continue
        for pattern, valid, group in rules:
            if pattern is _IPV6 and ":" not in text:
                continue
            text, n = _replace(text, pattern, PLACEHOLDERS[kind], valid, group)
            counts[kind] += n
    return text, counts
