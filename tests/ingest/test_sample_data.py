"""Sample data: the bundled Bitext CSV becomes daily support-log objects that meet the contract."""

from __future__ import annotations

import gzip
import json
from datetime import date

from typer.testing import CliRunner

from flows.cli.app import app
from tasks.ingest.objects import parse_object_lines
from tasks.ingest.sample_data import build_daily_logs, bundled_csv
from tasks.storage.s3 import list_objects, s3_client


def test_every_bundled_row_meets_the_record_contract():
    per_day = build_daily_logs(bundled_csv(), days=5, end_date=date(2026, 11, 21))
    assert sorted(per_day) == [date(2026, 11, d) for d in range(17, 22)]
    records = [r for day in per_day.values() for r in day]
    assert len(records) == 6480
    assert len({r["conversation_id"] for r in records}) == 6480
    lines = [json.dumps(r).encode() for r in records]
    assert all(kind == "ok" for kind, _ in parse_object_lines(lines, "bundled"))
    assert {s for r in records for s in r["segments"]} >= {"offensive", "typos", "polite"}


def test_seed_command_uploads_one_gzipped_object_per_day(settings, monkeypatch):
    monkeypatch.setenv("RETRAIN_S3__BUCKET", settings.s3.bucket)
    monkeypatch.setenv("RETRAIN_S3__ENDPOINT_URL", settings.s3.endpoint_url)
    result = CliRunner().invoke(
        app,
        ["seed", "--days", "3", "--end-date", "2026-11-21", "--limit", "30", "--bad-records", "2"],
    )
    assert result.exit_code == 0, result.output
    client = s3_client(settings.s3)
    keys = [o["Key"] for o in list_objects(client, settings.s3.bucket, settings.s3.raw_prefix)]
    assert keys == [
        f"raw/support-logs/dt=2026-11-{d}/support-logs-2026-11-{d}.jsonl.gz" for d in (19, 20, 21)
    ]
    first = client.get_object(Bucket=settings.s3.bucket, Key=keys[0])["Body"].read()
    kinds = [kind for kind, _ in parse_object_lines(gzip.decompress(first).splitlines(), keys[0])]
    assert kinds.count("ok") == 10 and kinds.count("bad") == 2
