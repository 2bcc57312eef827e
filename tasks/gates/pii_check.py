"""The second line of defence: find personal data that redaction let through.

Deliberately independent of the redactor (Presidio + spaCy in tasks/ingest/pii.py): plain patterns
with
their own checksums (Luhn for cards, ISO 7064 mod-97 for IBANs), run over a whole column
(a vectorised prefilter, then the exact pattern on the candidates). A leak found here means the
redactor missed something, and the PII suite blocks.
Only counts leave this module, never the matched text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

EMAIL = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"
CARD = r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)"
PHONE = (
    r"(?<![\w+])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{1,4}\)[\s.-]?)?\d{2,5}(?:[\s.-]\d{2,6}){1,4}"
    r"(?!\w|\.\d)"
)
IBAN = r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){3,7}(?: ?[A-Z0-9]{1,3})?\b"
SSN = r"(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])"
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
CARD_ISSUER = re.compile(r"(?:4|5[1-5]|2[2-7]|3[04-9]|6)")


def _digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit())


def luhn_valid(number: str) -> bool:
    checksum = 0
    for position, digit in enumerate(int(d) for d in reversed(number)):
        if position % 2 == 1:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        checksum += digit
    return checksum % 10 == 0


def _is_card(match: str) -> bool:
    digits = _digits(match)
    return bool(CARD_ISSUER.match(digits)) and luhn_valid(digits)


def _is_phone(match: str) -> bool:
    digits = len(_digits(match))
    return 8 <= digits <= 15 and not ISO_DATE.fullmatch(match) and not _is_card(match)


def is_iban(match: str) -> bool:
    compact = match.replace(" ", "")
    rearranged = compact[4:] + compact[:4]
    number = "".join(str(int(c, 36)) for c in rearranged)
    return int(number) % 97 == 1


class Detector(NamedTuple):
    pattern: str
    # A looser RE2 pattern that pyarrow runs over the whole column in C: every text the exact
    # pattern can match also matches it (Python's `\d` is any Unicode digit: RE2's `\p{Nd}`),
    # so only its hits go through Python's regex and the checksum.
    prefilter: str
    validate: Callable[[str], bool] | None


DIGIT = r"\p{Nd}"
DETECTORS: dict[str, Detector] = {
    "email": Detector(EMAIL, "@", None),
    "card": Detector(CARD, rf"(?:{DIGIT}[ -]?){{12,18}}{DIGIT}", _is_card),
    "iban": Detector(IBAN, rf"[A-Z]{{2}}{DIGIT}{{2}}", is_iban),
    "ssn": Detector(SSN, rf"{DIGIT}{{3}}-{DIGIT}{{2}}-{DIGIT}{{4}}", None),
    # the phone pattern always holds two digits, one separator, two digits
    "phone": Detector(PHONE, rf"{DIGIT}{{2}}\P{{Nd}}{DIGIT}{{2}}", _is_phone),
}


def count_leaks(texts: pd.Series, allow_list: Iterable[str] = ()) -> pd.DataFrame:
    """Per text, how many matches of each kind (`pii_email`, `pii_card`...), not counting the
    organisation's own contact details (`pii.allow_list`).

    Each distinct text is checked once (support replies repeat templates); the prefilter
    picks the few candidate texts in C, and only those go through the exact pattern and its
    checksum in Python.
    """
    codes, uniques = pd.factorize(texts.fillna("").astype(str))
    distinct = pa.array(uniques)
    for allowed in allow_list:
        distinct = pc.replace_substring(distinct, allowed, " ")
    counts = {}
    for kind, (pattern, prefilter, validate) in DETECTORS.items():
        column = np.zeros(len(distinct), dtype="int64")
        candidates = np.flatnonzero(
            pc.match_substring_regex(distinct, prefilter).to_numpy(zero_copy_only=False)
        )
        if len(candidates):
            compiled = re.compile(pattern)
            column[candidates] = [
                sum(1 for m in compiled.findall(text) if validate is None or validate(m))
                for text in distinct.take(candidates).to_pylist()
            ]
        counts[f"pii_{kind}"] = column[codes]
    return pd.DataFrame(counts, index=texts.index)
