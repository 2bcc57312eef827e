"""PII redaction: what must go, and what must stay (order numbers are not personal data)."""

from __future__ import annotations

from collections import Counter

import pytest

from tasks.pii import redact_record, redact_text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail me at jane.doe+shop@example.co.uk please", "mail me at [EMAIL] please"),
        ("my card 4111 1111 1111 1111 was charged", "my card [CARD] was charged"),
        ("call +44 20 7946 0958 tomorrow", "call [PHONE] tomorrow"),
        ("call (555) 123-4567.", "call [PHONE]."),
        ("login from 192.168.10.4 failed", "login from [IPV4] failed"),
        ("iban DE89 3704 0044 0532 0130 00 thanks", "iban [IBAN] thanks"),
    ],
)
def test_personal_data_is_replaced_by_placeholders(text: str, expected: str):
    assert redact_text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "how can I cancel purchase 113542617735902?",  # order number, fails the Luhn check
        "i want assistance to cancel order 732201349959",
        "refund of $45.50 for invoice 12345",
        "version 1.2.3 of the app",
    ],
)
def test_ordinary_support_text_is_left_alone(text: str):
    assert redact_text(text) == text


def test_redact_record_counts_and_keeps_other_fields():
    counts: Counter[str] = Counter()
    record = {
        "conversation_id": "c-1",
        "messages": [
            {"role": "customer", "text": "I am bob@example.com"},
            {"role": "agent", "text": "Thanks bob@example.com, call 555-123-4567"},
        ],
    }
    redacted = redact_record(record, counts)
    assert [m["text"] for m in redacted["messages"]] == [
        "I am [EMAIL]",
        "Thanks [EMAIL], call [PHONE]",
    ]
    assert counts == {"EMAIL": 2, "PHONE": 1}
    assert record["messages"][0]["text"] == "I am bob@example.com"  # input untouched
