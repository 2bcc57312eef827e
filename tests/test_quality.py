"""The Great Expectations gate, run for real on a good and on a bad batch."""

from __future__ import annotations

from tasks.quality import to_frame, validate_batch
from tasks.s3 import get_json, list_objects, put_jsonl, s3_client


def record(i: int, **overrides) -> dict:
    return {
        "conversation_id": f"c-{i}",
        "timestamp": "2026-11-21T10:00:00Z",
        "channel": "chat",
        "language": "en",
        "segments": ["polite"],
        "messages": [
            {"role": "customer", "text": f"where is my order {i}?"},
            {"role": "agent", "text": "It ships tomorrow."},
        ],
        **overrides,
    }


def stage(settings, rows: list[dict], run_id: str) -> str:
    key = f"{settings.s3.staging_prefix}{run_id}/accepted.jsonl"
    put_jsonl(s3_client(settings.s3), settings.s3.bucket, key, rows)
    return key


def test_frame_has_one_row_per_conversation_with_computed_columns():
    frame = to_frame([record(1), record(2, segments=["offensive"])])
    assert list(frame["customer_chars"]) == [len("where is my order 1?")] * 2
    assert list(frame["is_offensive"]) == [0.0, 1.0]


def test_good_batch_passes_and_pii_is_redacted_before_checks(settings):
    rows = [record(i) for i in range(30)]
    rows[3]["messages"][0]["text"] = "I am jane@example.com, where is my order?"
    report = validate_batch.fn(settings, stage(settings, rows, "good"), "good", quarantined=1)

    assert report.passed, report.failed_critical
    assert report.pii_redactions == {"EMAIL": 1}
    client = s3_client(settings.s3)
    redacted = client.get_object(Bucket=settings.s3.bucket, Key=report.redacted_key)["Body"].read()
    assert b"jane@example.com" not in redacted and b"[EMAIL]" in redacted
    assert get_json(client, settings.s3.bucket, report.report_key).body["passed"] is True
    docs = [o["Key"] for o in list_objects(client, settings.s3.bucket, report.data_docs_prefix)]
    assert any(key.endswith("index.html") for key in docs)


def test_bad_batch_fails_the_gate_and_names_the_failed_checks(settings):
    rows = [record(i, language="de", channel="carrier-pigeon") for i in range(10)]
    report = validate_batch.fn(settings, stage(settings, rows, "bad"), "bad", quarantined=10)

    assert not report.passed
    failed = set(report.failed_critical)
    assert "expect_table_row_count_to_be_between" in failed  # 10 < quality.min_records (20)
    assert "expect_column_values_to_be_in_set(language)" in failed
    assert "expect_column_values_to_be_in_set(channel)" in failed
    assert "quarantine_fraction_at_most" in failed  # 10 of 20 records were quarantined


def test_reports_and_data_docs_never_contain_the_unexpected_values(settings):
    # A value that fails an expectation is counted, never copied into Data Docs or the report.
    rows = [record(i) for i in range(25)]
    rows[1]["language"] = "xx-secret-marker"
    report = validate_batch.fn(settings, stage(settings, rows, "pii"), "pii", quarantined=0)
    client = s3_client(settings.s3)
    for obj in list_objects(client, settings.s3.bucket, f"{settings.s3.reports_prefix}pii/"):
        body = client.get_object(Bucket=settings.s3.bucket, Key=obj["Key"])["Body"].read()
        assert b"xx-secret-marker" not in body, obj["Key"]
    assert report.passed  # language check has mostly=0.95: one odd row is tolerated
