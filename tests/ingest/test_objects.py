"""Ingest: the record contract, quarantine reasons, gzip streaming, the S3 watermark."""

from __future__ import annotations

import gzip
import json

import pytest

from tasks.ingest.objects import (
    commit_watermark,
    find_new_objects,
    ingest_objects,
    parse_line,
    parse_object_lines,
)
from tasks.storage.s3 import ConcurrentUpdateError, get_jsonl, s3_client


def record(conversation_id: str = "c-1", **overrides) -> dict:
    base = {
        "conversation_id": conversation_id,
        "timestamp": "2026-11-21T10:04:00Z",
        "messages": [
            {"role": "customer", "text": "how do i cancel order 00123?"},
            {"role": "agent", "text": "I can help with that."},
        ],
    }
    return {**base, **overrides}


def line(value) -> bytes:
    return json.dumps(value).encode()


def test_valid_record_keeps_unknown_fields():
    parsed = parse_line(line(record(csat=5, shop="eu-1")))
    assert not isinstance(parsed, str)
    assert parsed.model_dump()["shop"] == "eu-1"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"conversation_id": "c-1", ', "malformed JSON"),
        (b'["a", "list"]', "JSON value is a list, not an object"),
        (b'"just a string"', "JSON value is a str, not an object"),
        (b'{"conversation_id": "caf\xe9"}', "invalid UTF-8"),
        (
            line({k: v for k, v in record().items() if k != "timestamp"}),
            "`timestamp`: Field required",
        ),
        (line(record(timestamp="2026-11-21T10:04:00")), "`timestamp`"),  # no timezone
        (line(record(conversation_id="")), "`conversation_id`"),
        (
            line(record(messages=[{"role": "customer", "text": "hello?"}])),
            "needs at least one customer and one agent message",
        ),
        (
            line(
                record(messages=[{"role": "customer", "text": "hi"}, {"role": "agent", "text": ""}])
            ),
            "`messages.1.text`",
        ),
        (line(record(csat=9)), "`csat`"),
    ],
)
def test_contract_violations_are_rejected_with_a_reason(raw: bytes, reason: str):
    parsed = parse_line(raw)
    assert isinstance(parsed, str)
    assert reason in parsed


def test_bad_lines_do_not_stop_the_rest_of_the_object():
    lines = [line(record("c-1")), b"{oops", b"", b"  \n", line(record("c-2")), b"[1]"]
    results = list(parse_object_lines(lines, "raw/a.jsonl"))
    assert [kind for kind, _ in results] == ["ok", "bad", "ok", "bad"]
    bad = [row for kind, row in results if kind == "bad"]
    assert [row["line"] for row in bad] == [2, 6]
    assert bad[0]["raw"] == "{oops" and bad[0]["source_key"] == "raw/a.jsonl"
    ok = [row for kind, row in results if kind == "ok"]
    assert ok[1]["_source"] == {"key": "raw/a.jsonl", "line": 5}


def test_empty_object_is_quarantined_not_ignored():
    assert list(parse_object_lines([], "raw/empty.jsonl")) == [
        (
            "bad",
            {
                "source_key": "raw/empty.jsonl",
                "line": None,
                "reason": "empty object: no records",
                "raw": "",
            },
        )
    ]


def upload(settings, key: str, body: bytes) -> None:
    s3_client(settings.s3).put_object(Bucket=settings.s3.bucket, Key=key, Body=body)


def test_ingest_streams_gzip_and_accounts_for_every_record(settings):
    raw = settings.s3.raw_prefix
    good = b"\n".join(line(record(f"c-{i}")) for i in range(5))
    upload(settings, raw + "dt=2026-11-20/a.jsonl.gz", gzip.compress(good + b"\n{broken\n"))
    upload(settings, raw + "dt=2026-11-21/b.jsonl", line(record("c-9")) + b"\n[1, 2]\n")
    upload(settings, raw + "dt=2026-11-21/empty.jsonl", b"")
    truncated = gzip.compress(good)[:-12]  # stream breaks off mid-object
    upload(settings, raw + "dt=2026-11-21/c.jsonl.gz", truncated)
    upload(settings, raw + "dt=2026-11-21/notes.txt", b"not a log")

    new = find_new_objects.fn(settings)
    assert [o.key.rsplit("/", 1)[1] for o in new.objects] == [
        "a.jsonl.gz",
        "b.jsonl",
        "c.jsonl.gz",
        "empty.jsonl",
    ]
    result = ingest_objects.fn(settings, new.objects, run_id="run-1")

    client = s3_client(settings.s3)
    accepted = get_jsonl(client, settings.s3.bucket, result.staging_key)
    rejected = get_jsonl(client, settings.s3.bucket, result.quarantine_key)
    assert (
        result.records_read == result.accepted + result.quarantined == len(accepted) + len(rejected)
    )
    assert result.accepted >= 6  # 5 from a.jsonl.gz, 1 from b.jsonl, whatever c.jsonl.gz yielded
    reasons = {r["reason"].split(":")[0] for r in rejected}
    assert {"malformed JSON", "JSON value is a list, not an object", "empty object"} <= reasons
    assert any(
        r["source_key"].endswith("c.jsonl.gz") and "unreadable" in r["reason"] for r in rejected
    )
    assert result.quarantine_key == f"{settings.s3.quarantine_prefix}run-1/rejected.jsonl"


def test_watermark_skips_processed_objects_and_rereads_changed_ones(settings):
    key = settings.s3.raw_prefix + "dt=2026-11-21/a.jsonl"
    upload(settings, key, line(record("c-1")))
    first = find_new_objects.fn(settings)
    assert [o.key for o in first.objects] == [key]
    commit_watermark.fn(settings, first)

    assert find_new_objects.fn(settings).objects == []

    upload(settings, key, line(record("c-1")) + b"\n" + line(record("c-2")))  # new ETag
    again = find_new_objects.fn(settings)
    assert [o.key for o in again.objects] == [key]


def test_watermark_refuses_to_overwrite_a_concurrent_run(settings):
    upload(settings, settings.s3.raw_prefix + "dt=2026-11-21/a.jsonl", line(record()))
    run_a = find_new_objects.fn(settings)
    run_b = find_new_objects.fn(settings)
    commit_watermark.fn(settings, run_a)
    with pytest.raises(ConcurrentUpdateError, match="another run"):
        commit_watermark.fn(settings, run_b)
