"""Personal-data redaction applied to every message before training or any third party sees it.

Patterns cover what can be recognised reliably without a model: e-mail addresses, payment-card
numbers (issuer prefix + Luhn check, so order numbers survive), phone numbers written with
separators, IPv4 addresses and IBANs. Each match becomes a placeholder such as `[EMAIL]`, in
the same spirit as the `{{Order Number}}` placeholders support templates already use.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{1,4}\)[\s.-]?)?\d{2,4}(?:[\s.-]\d{2,4}){1,4}(?!\w|\.\d)"
)
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
# Issuer prefixes of the major card networks (Visa, Mastercard, Amex, Discover/UnionPay...).
CARD_PREFIX = re.compile(r"(?:4|5[1-5]|2[2-7]|3[47]|6)")
IPV4 = re.compile(
    r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?![\d.])"
)
IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){3,7}(?: ?[A-Z0-9]{1,3})?\b")

# Order matters: an e-mail or IBAN may contain digit runs that the card/phone patterns would
# otherwise half-redact.
PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("EMAIL", EMAIL),
    ("IBAN", IBAN),
    ("CARD", CARD),
    ("IPV4", IPV4),
    ("PHONE", PHONE),
)

# For checks that must see no remaining PII (the GX suite uses the same expressions).
DETECTORS = {"email": EMAIL.pattern, "ipv4": IPV4.pattern}


def _is_card(number: str) -> bool:
    digits = "".join(d for d in number if d.isdigit())
    return bool(CARD_PREFIX.match(digits)) and _luhn_valid(digits)


def _is_phone(number: str) -> bool:
    digits = sum(c.isdigit() for c in number)
    return 7 <= digits <= 15 and not ISO_DATE.fullmatch(number)


def _luhn_valid(number: str) -> bool:
    digits = [int(d) for d in number]
    checksum = 0
    for position, digit in enumerate(reversed(digits)):
        if position % 2 == 1:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        checksum += digit
    return checksum % 10 == 0


def redact_text(text: str, counts: Counter[str] | None = None) -> str:
    """Replace every recognised piece of personal data with its placeholder."""
    for label, pattern in PATTERNS:

        def replace(match: re.Match[str], label: str = label) -> str:
            is_match = {"CARD": _is_card, "PHONE": _is_phone}.get(label, bool)
            if not is_match(match.group()):
                return match.group()
            if counts is not None:
                counts[label] += 1
            return f"[{label}]"

        text = pattern.sub(replace, text)
    return text


def redact_record(record: dict[str, Any], counts: Counter[str]) -> dict[str, Any]:
    """A copy of a support-log record with every message text redacted."""
    messages = [{**m, "text": redact_text(m["text"], counts)} for m in record["messages"]]
    return {**record, "messages": messages}
