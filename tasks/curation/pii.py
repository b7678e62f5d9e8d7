"""PII scrubbing: e-mail addresses, public IP addresses, US social security numbers, payment
card numbers, street addresses and phone numbers → placeholders.

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
US social security numbers (`123-45-6789` form; `-`, space or `.` the same both times; a bare
9-digit run only after "SSN"/"social security"): the SSA's rules, as presidio-analyzer's
UsSsnRecognizer validates them — no area 000, 666 or 900–999, no group 00, no serial 0000,
not one digit repeated, not the published sample numbers (123-45-6789, 078-05-1120, 219-09-9999).

Payment cards: 13–19 digits, bare or in groups split by one kind of separator, a known issuer
prefix (Visa, Mastercard, Amex, Discover, JCB, Diners, UnionPay) and a valid Luhn check digit.

Street addresses (US, UK, Canadian forms): a house number (`221B`, `10-12`), one to four
capitalised words and a street type (`Street`, `St`, `Avenue`, `Rd`, `Close`, `Crescent` …),
an optional direction/unit, then — taken into the same placeholder when present — the town
and a US state + ZIP code, a Canadian province + postal code (`ON M5V 2T6`) or a UK postcode
(`SW1A 2AA`). Measured before choosing (docs/CURATION.md): pyap 0.3.1 missed
"1600 Pennsylvania Avenue NW, Washington, DC 20500" and took ~28 ms per 1,000 characters
(~140 ms a web page, more than the rest of curation); presidio-analyzer has no address
recognizer, and its SSN/card rules are the ones above.

Not matched, by design: bare digit runs without separators or prefix (IDs,
ISBN-13, order numbers), dates (2024-01-15, 15/01/2024, 12.03.2021), times,
prices, versions, decimals, years, number ranges.
"""
from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from typing import Any, Callable

PLACEHOLDERS = {"email": "<EMAIL>", "ip": "<IP>", "ssn": "<SSN>", "card": "<CARD>", "address": "<ADDRESS>",
                "phone": "<PHONE>"}
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


# --- US social security numbers ----------------------------------------------------------------
_SSN = re.compile(r"(?<![\w\-./,])(?P<a>\d{3})(?P<s>[-. ])(?P<g>\d{2})(?P=s)(?P<n>\d{4})(?![\w]|[.\-/,:]\d)")
_SSN_KEYWORD = re.compile(r"(?i:\b(?:ssn|social security(?: number| no\.?)?)\s*(?:#|no\.?|number)?\s*[:.]?\s*)"
                  r"(?P<num>\d{9})\b")
_SAMPLE_SSNS = frozenset({"123456789", "078051120", "219099999"})


def valid_ssn(digits: str) -> bool:
    """The SSA's structure rules: area not 000/666/9xx, group not 00, serial not 0000; no sample numbers."""
    if len(digits) != 9 or not digits.isdigit() or digits in _SAMPLE_SSNS or len(set(digits)) == 1:
        return False
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    return area != "000" and area != "666" and area[0] != "9" and group != "00" and serial != "0000"


def _ssn_ok(m: re.Match[str], text: str) -> bool:
    num = m.group("num") if "num" in m.re.groupindex else m.group("a") + m.group("g") + m.group("n")
    return valid_ssn(num)


# --- payment cards ------------------------------------------------------------------------------
_CARD = re.compile(r"(?<![\w\-./,+])\d{4}(?P<s>[ -]?)\d{2,6}(?:(?P=s)\d{1,6}){1,3}(?![\w]|[.\-/,:]\d)")
_CARD_PREFIX = re.compile(r"4|5[1-5]|2(?:2[2-9][1-9]|[3-6]\d\d|7[01]\d|720)|3[47]|6(?:011|5|4[4-9]|2)|35|3(?:0[0-5]|[68])")


def luhn_ok(digits: str) -> bool:
    """Luhn (mod 10) check digit of a card number."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card_ok(m: re.Match[str], text: str) -> bool:
    digits = re.sub(r"\D", "", m.group(0))
    if not m.group("s") and len(digits) not in (15, 16):  # bare 17–19 digit runs are mostly IDs (tweets …)
        return False
    return (13 <= len(digits) <= 19 and _CARD_PREFIX.match(digits) is not None and len(set(digits)) > 1
            and luhn_ok(digits))


# --- street addresses (US, UK, Canada) ------------------------------------------------------------
_STREET_TYPES = (
    "Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Place|Pl|Terrace|Terr?|"
    "Parkway|Pkwy|Highway|Hwy|Circle|Cir|Square|Sq|Way|Close|Crescent|Cres|Gardens|Gdns|Grove|Gr|Mews|"
    "Row|Walk|Hill|Trail|Trl|Plaza|Alley|Broadway|Expressway|Freeway|Pike|Loop|Path|Crossing|Green|Rue")
_US_STATES = (
    "AL|AK|AZ|AR|CA|CO|CT|DE|DC|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|NH|NJ|NM|NY|"
    "NC|ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY|PR")
_CA_PROVINCES = "AB|BC|MB|NB|NL|NS|NT|NU|ON|PE|QC|SK|YT"
_TAIL = (r"(?:,?[ \t]+(?:[A-Z][A-Za-z.'\-]+[ \t]?){1,3})?,?[ \t]+(?:"
         r"(?:" + _US_STATES + r")[ \t]+\d{5}(?:-\d{4})?"                      # US: state + ZIP
         r"|(?:" + _CA_PROVINCES + r")[ \t]+[A-CEGHJ-NPR-TVXY]\d[A-CEGHJ-NPR-TV-Z][ \t]?\d[A-CEGHJ-NPR-TV-Z]\d"  # CA
         r"|[A-Z]{1,2}\d[A-Z\d]?[ \t]?\d[ABD-HJLNP-UW-Z]{2}"                 # UK postcode
         r")(?:,?[ \t]+(?:USA|U\.S\.A\.|United States|Canada|UK|United Kingdom|England))?\b")
_ADDRESS = re.compile(
    r"(?<![\w\-./,#])\d{1,6}[A-Za-z]?(?:-\d{1,6})?,?[ \t]+"           # house number (221B, 10-12)
    r"(?:(?:N|S|E|W|North|South|East|West)\.?[ \t]+)?"
    r"(?:(?:[A-Z][a-z'’\-]+|\d{1,3}(?:st|nd|rd|th)|[A-Z])[ \t]+){1,4}"    # street name words
    r"(?:" + _STREET_TYPES + r")\b\.?"
    r"(?:[ \t]+(?:NW|NE|SW|SE|N|S|E|W)\b\.?)?"
    r"(?:,?[ \t]+(?:Apt|Apartment|Suite|Ste|Unit|Flat|#)\.?[ \t]*#?[\w\-]+)?"
    r"(?:" + _TAIL + r")?")


def _address_ok(m: re.Match[str], text: str) -> bool:
    # "in 1999 Main Street" is a year, not a house number, unless a postcode/ZIP follows
    num = re.match(r"\d+", m.group(0)).group(0)
    tail = re.search(r"\d{5}|[A-Z]\d[A-Z] ?\d[A-Z]\d|\d[A-Z]{2}\b", m.group(0)[len(num):])
    return tail is not None or not (len(num) == 4 and num[:2] in ("18", "19", "20"))


_HAS_STREET_TYPE = re.compile(r"\d[^\n]{0,60}\b(?:" + _STREET_TYPES + r")\b")


@lru_cache(maxsize=1)
def _rules() -> dict[str, list[tuple[re.Pattern[str], Callable[..., bool], str | int]]]:
    email, ipv4 = _datatrove_patterns()
    return {
        "email": [(re.compile(email), _valid_email, 0)],
        "ip": [(re.compile(r"(?<![\w.])" + ipv4 + r"(?![\w]|\.\d)"), _valid_ipv4, 0),
               (_IPV6, _valid_ipv6, 0)],
        "ssn": [(_SSN, _ssn_ok, 0), (_SSN_KEYWORD, _ssn_ok, "num")],
        "card": [(_CARD, _card_ok, 0)],
        "address": [(_ADDRESS, _address_ok, 0)],
        "phone": [(_INTERNATIONAL, _phone_ok(8, 15), 0),
                  (_NORTH_AMERICAN, _phone_ok(10, 11), 0),
                  (_NATIONAL, _phone_ok(10, 11), 0),
                  (_KEYWORD, _phone_ok(7, 15), "num")],
    }


def scrub_pii(text: str, cfg: Any = None) -> tuple[str, dict[str, int]]:
    """Replace PII in `text` by placeholders (`<EMAIL>`, `<IP>`, `<SSN>`, `<CARD>`, `<ADDRESS>`, `<PHONE>`).

    `cfg` needs `pii_<kind>` for each kind (bools; missing → True).
    Returns the scrubbed text and the number of replacements per kind.
    E-mails go first (their local parts hold digits), then IPs, SSNs, cards, addresses
    (their ZIP codes would otherwise look like parts of numbers), then phones.
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
        if kind == "address" and not _HAS_STREET_TYPE.search(text):
            continue
        for pattern, valid, group in rules:
            if pattern is _IPV6 and ":" not in text:
                continue
            text, n = _replace(text, pattern, PLACEHOLDERS[kind], valid, group)
            counts[kind] += n
    return text, counts
