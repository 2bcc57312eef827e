"""`retrain check-data`: the gate on a local file or an S3 prefix, exit codes 0/1/2, JSON with
counts only."""

from __future__ import annotations

import gzip
import json

from typer.testing import CliRunner

from flows.cli.app import app
from tasks.storage.s3 import list_objects, put_jsonl, s3_client
from tests.helpers import batches

PLANTED = ["noah.fischer@web.de", "+33 6 12 34 56 78", "4111-1111-1111-1111"]


def test_clean_batch_with_planted_pii_and_malformed_lines_passes(tmp_path):
    rows = batches.clean_batch(120)
    for record, value in zip(rows, PLANTED, strict=False):
        record["messages"][0]["text"] += f" my details: {value}"
    lines = [json.dumps(r) for r in rows] + ['{"conversation_id": "x", ', "[1, 2]"]
    path = tmp_path / "logs.jsonl.gz"
    path.write_bytes(gzip.compress("\n".join(lines).encode()))

    result = CliRunner().invoke(app, ["check-data", str(path), "--json"])

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["accepted"] == 120 and report["records_read"] == 122
    assert report["quarantine_reasons"] == {
        "malformed JSON": 1,
        "JSON value is a list, not an object": 1,
    }
    assert report["pii_redactions"]["EMAIL"] == 1 and report["pii_redactions"]["CREDIT_CARD"] == 1
    assert {c["severity"] for c in report["checks"]} == {"block", "warn"}
    assert not any(value in result.output for value in PLANTED)


def test_a_blocking_failure_on_an_s3_prefix_exits_1_and_writes_nothing(settings, monkeypatch):
    client, bucket = s3_client(settings.s3), settings.s3.bucket
    put_jsonl(
        client,
        bucket,
        "raw/day-1.jsonl",
        batches.with_offensive_agents(batches.clean_batch(), 0.05),
    )
    monkeypatch.setenv("RETRAIN_S3__ENDPOINT_URL", settings.s3.endpoint_url)

    result = CliRunner().invoke(app, ["check-data", f"s3://{bucket}/raw/", "--json"])

    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["failed_block"] == ["toxicity.agent_share"]
    assert [o["Key"] for o in list_objects(client, bucket, "")] == ["raw/day-1.jsonl"]


def test_usage_errors_exit_2_with_what_to_pass(tmp_path):
    result = CliRunner().invoke(app, ["check-data", str(tmp_path / "nope.jsonl")])
    assert result.exit_code == 2
    assert "no such file or folder" in result.output
    (tmp_path / "notes.txt").write_text("hello")
    result = CliRunner().invoke(app, ["check-data", str(tmp_path / "notes.txt")])
    assert result.exit_code == 2 and ".jsonl" in result.output
