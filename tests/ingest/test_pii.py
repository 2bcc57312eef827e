"""PII redaction with Presidio: what must go, and what must stay (order numbers, the
organisation's own contact details and Bitext's `{{placeholders}}` are not personal data)."""

from __future__ import annotations

import csv
import json
from collections import Counter
from itertools import islice

import pandas as pd
import pytest

from tasks.config import PiiSettings
from tasks.gates.pii_check import count_leaks, is_iban, luhn_valid
from tasks.ingest.pii import get_redactor
from tasks.ingest.sample_data import bundled_csv
from tests.helpers.pii_scoring import LABELLED, labelled_rows, scores


def spans(findings: list) -> set[tuple]:
    return {(r.entity_type, r.start, r.end) for r in findings}


@pytest.fixture(scope="module")
def redactor():
    return get_redactor(PiiSettings())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail me at jane.doe+shop@example.co.uk please", "mail me at <EMAIL> please"),
        ("my card 4111 1111 1111 1111 was charged", "my card <CREDIT_CARD> was charged"),
        ("my card 5500-0000-0000-0004 was charged", "my card <CREDIT_CARD> was charged"),
        ("call +44 20 7946 0958 tomorrow", "call <PHONE> tomorrow"),
        ("call (555) 123-4567.", "call <PHONE>."),
        ("login from 192.168.10.4 failed", "login from <IP_ADDRESS> failed"),
        ("iban DE89 3704 0044 0532 0130 00 thanks", "iban <IBAN> thanks"),
        ("Hi, this is Margaret Thompson again", "Hi, this is <PERSON> again"),
        ("Tel. +49 30 901820", "Tel. <PHONE>"),  # "Tel" was taken for a person
        (
            "I spoke to Anna Schmidt. 3 days later nothing",
            "I spoke to <PERSON>. 3 days later nothing",
        ),
    ],
)
def test_personal_data_is_replaced_by_typed_placeholders(redactor, text: str, expected: str):
    assert redactor.redact_text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "how can I cancel purchase 113542617735902?",  # order number, not a card
        "i want assistance to cancel order {{Order Number}}",
        "refund of $45.50 for invoice 12345 dated 2026-11-21",
        "please write to support@example.com or call (123) 456-7890",  # the allow list
        "click 'Cancel Order' in the 'Order History' section",
    ],
)
def test_ordinary_support_text_is_left_alone(redactor, text: str):
    assert redactor.redact_text(text) == text


def test_records_are_redacted_everywhere_extra_fields_included(redactor):
    counts: Counter[str] = Counter()
    record = {
        "conversation_id": "c-1",
        "channel": "chat",
        "customer_email": "bob@example.org",
        "messages": [
            {"role": "customer", "text": "I am bob@example.org"},
            {"role": "agent", "text": "Thanks, we will call +1 415 555 0134"},
        ],
    }
    ((redacted, reason),) = list(redactor.redact_records([record], counts))
    assert reason is None
    assert redacted["customer_email"] == "<EMAIL>"
    assert [m["text"] for m in redacted["messages"]] == [
        "I am <EMAIL>",
        "Thanks, we will call <PHONE>",
    ]
    assert redacted["conversation_id"] == "c-1" and redacted["channel"] == "chat"
    assert counts == {"EMAIL": 2, "PHONE": 1}
    assert record["messages"][0]["text"] == "I am bob@example.org"  # input untouched


def test_independent_leak_detector_finds_what_redaction_would_remove():
    texts = pd.Series(
        [
            "write to a.b@c.org",
            "card 4111-1111-1111-1111",
            "iban GB82 WEST 1234 5698 7654 32",
            "ssn 123-45-6789",
            "call +49 30 9018 2000",
            "order 113542617735902 costs $45.50 on 2026-11-21",
            "support@example.com",
        ]
    )
    leaks = count_leaks(texts, allow_list=["support@example.com"])
    # a value may match two kinds (an SSN looks like a phone number too): any count blocks
    assert (leaks.sum(axis=1) > 0).tolist() == [True] * 5 + [False] * 2
    assert leaks[["pii_email", "pii_card", "pii_iban", "pii_ssn"]].sum().tolist() == [1, 1, 1, 1]


def test_repeated_texts_are_analysed_once_but_counted_each_time(redactor):
    counts: Counter[str] = Counter()
    texts = ["mail me at ann@example.org", "thanks", "mail me at ann@example.org"]
    assert redactor.redact_texts(texts, counts) == [
        "mail me at <EMAIL>",
        "thanks",
        "mail me at <EMAIL>",
    ]
    assert counts == {"EMAIL": 2}


def test_skipping_ner_where_no_name_can_be_kept_changes_no_finding(redactor):
    """The gate (`may_hold_name`) against running NER on every text, one by one, on the
    labelled set, its lower-cased copy (names spaCy may still tag, which the redactor drops)
    and Bitext's customer messages (about half have no capital letter)."""
    from tasks.ingest.pii import may_hold_name

    labelled = [json.loads(line)["text"] for line in LABELLED.read_text().splitlines()]
    with bundled_csv().open() as file:
        bitext = [row["instruction"] for row in islice(csv.DictReader(file), 300)]
    texts = labelled + [t.lower() for t in labelled] + bitext
    assert 0 < sum(map(may_hold_name, texts)) < len(texts)  # both paths are exercised
    engine = redactor.batch.analyzer_engine
    every_text_through_ner = [
        redactor._keep(
            text,
            engine.analyze(
                text=text,
                language="en",
                entities=redactor.config.entities,
                score_threshold=redactor.config.score_threshold,
            ),
        )
        for text in texts
    ]

    assert [spans(f) for f in redactor.analyze(texts)] == [spans(f) for f in every_text_through_ner]


def test_leak_detector_counts_every_row_whatever_the_separators_and_digits():
    """Each distinct text is checked once and its counts go to every row that holds it; the
    vectorised prefilter must let through what the exact patterns catch (Unicode spaces,
    non-ASCII digits)."""
    phone = "call +49\u00a030\u00a09018\u00a02000"  # no-break spaces
    ssn = "ssn \u0661\u0662\u0663-\u0664\u0665-\u0666\u0667\u0668\u0669"  # Arabic-Indic digits
    texts = pd.Series(
        [phone, "ring 030\u20099018\u20092000 today", "a.b@c.org", phone, None, "", "ok", ssn]
    )
    leaks = count_leaks(texts)
    assert leaks["pii_phone"].tolist() == [1, 1, 0, 1, 0, 0, 0, 1]
    assert leaks["pii_email"].tolist() == [0, 0, 1, 0, 0, 0, 0, 0]
    assert leaks["pii_ssn"].tolist() == [0] * 7 + [1]
    assert leaks.index.equals(texts.index)


def test_recognizer_gates_only_skip_texts_their_patterns_cannot_match(redactor):
    """Each gated recognizer against the same recognizer ungated, on the labelled set, Bitext's
    messages and edge cases (IPv6 without digits, Unicode digits, a bare '+')."""
    with bundled_csv().open() as file:
        bitext = [row["instruction"] for row in islice(csv.DictReader(file), 200)]
    labelled = [json.loads(line)["text"] for line in LABELLED.read_text().splitlines()]
    edge = ["login from fe80::abcd failed", "host :: only", "+ 44", "ssn ١٢٣-٤٥-٦٧٨٩", ""]
    texts = labelled + bitext + edge
    engine = redactor.batch.analyzer_engine
    gated = [
        r
        for r in engine.registry.recognizers
        if "analyze" in vars(type(r)) and "PERSON" not in r.supported_entities
    ]
    assert len(gated) == 7  # e-mail, 2 phone, card, IBAN, IP, SSN
    found = 0
    for text in texts:
        artifacts = engine.nlp_engine.process_text(text, "en")
        for recognizer in gated:
            entities = recognizer.supported_entities
            ungated = super(type(recognizer), recognizer).analyze(text, entities, artifacts)
            assert spans(recognizer.analyze(text, entities, artifacts)) == spans(ungated), (
                recognizer.name
            )
            found += len(ungated)
    assert found > len(labelled) / 2  # the comparison saw real findings


def test_labelled_set_meets_the_recall_and_precision_targets(redactor):
    """The issue's targets on the labelled set (bench/data_gates.py pii records the figures):
    recall >= 99 % on the structured types, >= 90 % on names, precision >= 95 %."""
    rows = labelled_rows()
    figures = scores(rows, redactor.analyze([row["text"] for row in rows]))
    assert figures["labelled_values"] >= 300
    assert set(figures["recall_by_type"]) == {
        "EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "IP_ADDRESS", "US_SSN", "PERSON"
    }  # fmt: skip
    assert figures["recall_structured"] >= 0.99, figures
    assert figures["recall_names"] >= 0.90, figures
    assert figures["precision"] >= 0.95, figures


def test_labelled_cards_and_ibans_carry_valid_check_digits():
    """A value with a wrong check digit would be no card or IBAN at all: the labelled set
    measures recall on real-shaped ones only (tests/data/make_pii_labelled.py computes them)."""
    values = [(e["type"], e["value"]) for row in labelled_rows() for e in row["entities"]]
    cards = [v for kind, v in values if kind == "CREDIT_CARD"]
    ibans = [v for kind, v in values if kind == "IBAN"]
    assert len(cards) >= 40 and len(ibans) >= 40
    assert all(luhn_valid("".join(c for c in card if c.isdigit())) for card in cards)
    assert all(is_iban(iban) for iban in ibans)
