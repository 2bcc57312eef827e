"""No single record can stop the pipeline: contract-valid records with odd roles, unicode, empty
optional fields and unknown extra fields go through ingest parsing → redaction → computed
columns → chat conversion and each ends curated or quarantined with a reason."""

from __future__ import annotations

import json
from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.config import PiiSettings, QualitySettings
from tasks.gates.frames import conversation_frame
from tasks.ingest.objects import parse_object_lines
from tasks.ingest.pii import get_redactor
from tasks.prepare.curation import split_convertible

texts = st.text(min_size=1, max_size=60).filter(str.strip)
messages = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["customer", "agent", "system"]), "text": texts},
        optional={"lang_hint": st.text(max_size=5), "n": st.integers()},
    ),
    min_size=2,
    max_size=5,
)
extras = st.dictionaries(
    st.sampled_from(["customer_email", "note", "tags", "shop", "meta"]),
    st.one_of(
        st.none(), texts, st.lists(texts, max_size=2), st.dictionaries(texts, texts, max_size=2)
    ),
    max_size=3,
)
records = st.builds(
    lambda i, msgs, extra, csat, channel: {
        **extra,
        "conversation_id": f"c-{i}",
        "timestamp": "2026-11-21T10:00:00+02:00",
        "messages": [
            {"role": "customer", "text": "hello?"},
            *msgs,
            {"role": "agent", "text": "Happy to help."},
        ][: len(msgs) + 2],
        "csat": csat,
        "channel": channel,
    },
    st.integers(0, 10**6),
    messages,
    extras,
    st.one_of(st.none(), st.integers(1, 5)),
    st.one_of(st.none(), st.just(""), texts),
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(records, min_size=1, max_size=6))
def test_every_record_ends_curated_or_quarantined(batch):
    lines = [json.dumps(r).encode() + b"\n" for r in batch]
    parsed, quarantined = [], []
    for kind, row in parse_object_lines(lines, "raw/x.jsonl"):
        (parsed if kind == "ok" else quarantined).append(row)

    redacted = []
    for record, (clean, reason) in zip(
        parsed, get_redactor(PiiSettings()).redact_records(parsed, Counter()), strict=True
    ):
        if clean is None:
            quarantined.append({"line": record["_source"]["line"], "reason": reason})
        else:
            redacted.append(clean)
    conversation_frame(redacted, QualitySettings())  # computed columns never raise
    curated, unconvertible = split_convertible(redacted, "You are a support assistant.")
    quarantined += unconvertible

    assert len(curated) + len(quarantined) == len(batch)
    assert all(row["reason"] for row in quarantined)
    lines_seen = sorted([r["_source"]["line"] for r in curated] + [q["line"] for q in quarantined])
    assert lines_seen == list(range(1, len(batch) + 1))


def test_unknown_extra_fields_are_kept_but_redacted():
    line = json.dumps(
        {
            "conversation_id": "c-1",
            "timestamp": "2026-11-21T10:00:00Z",
            "customer_email": "kim.lee@mailbox.org",
            "profile": {"phone": "+1 415 555 0134", "tier": "gold"},
            "messages": [
                {"role": "system", "text": "transferred from the bot"},
                {"role": "customer", "text": "my card is 4111 1111 1111 1111"},
                {"role": "agent", "text": "Thanks, I removed it."},
            ],
        }
    ).encode()
    ((kind, record),) = list(parse_object_lines([line], "raw/x.jsonl"))
    ((clean, reason),) = list(get_redactor(PiiSettings()).redact_records([record], Counter()))
    assert kind == "ok" and reason is None
    assert clean["customer_email"] == "<EMAIL>"
    assert clean["profile"] == {"phone": "<PHONE>", "tier": "gold"}
    curated, quarantined = split_convertible([clean], "sys")
    assert len(curated) == 1 and not quarantined  # the system note is left out, not a crash
