"""`retrain drift`: two batches from files, folders or S3 in, statistics and an exit code out."""

from __future__ import annotations

import gzip
import json

import pytest
from typer.testing import CliRunner

from flows.cli.app import app
from tests.helpers.synthetic_logs import make_logs


def write_jsonl(path, records, gz: bool = False):
    text = "".join(json.dumps(r) + "\n" for r in records)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(text.encode()) if gz else text.encode())
    return path


@pytest.fixture
def small_embedding_sample(monkeypatch):
    monkeypatch.setenv("RETRAIN_DRIFT__EMBEDDING_SAMPLE", "60")


def invoke(*args: str):
    return CliRunner().invoke(app, ["drift", *args])


def test_same_distribution_exits_0_and_lists_every_statistic(tmp_path, small_embedding_sample):
    reference = tmp_path / "reference"  # a folder of days, one gzipped, one with a bad line
    write_jsonl(reference / "dt=2026-11-01" / "a.jsonl.gz", make_logs(120, 51), gz=True)
    write_jsonl(reference / "dt=2026-11-02" / "b.jsonl", make_logs(120, 52))
    with (reference / "dt=2026-11-02" / "b.jsonl").open("a") as handle:
        handle.write("{not json\n")
    current = write_jsonl(tmp_path / "current.jsonl", make_logs(150, 53))

    result = invoke("--reference", str(reference), "--current", str(current))

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("no_drift: no data drift")
    assert "lines rejected by the log contract: 1, 0" in result.stdout
    for name in ("category_mix", "customer_length", "agent_oov_rate", "agent_embedding"):
        assert name in result.stdout


def test_drift_exits_3_and_the_json_carries_every_statistic(tmp_path):
    reference = write_jsonl(tmp_path / "ref.jsonl", make_logs(200, 54))
    current = write_jsonl(tmp_path / "cur.jsonl.gz", make_logs(150, 55, longer_messages=True), True)

    result = invoke(
        "--reference", str(reference), "--current", str(current), "--json", "--no-embeddings"
    )

    assert result.exit_code == 3, result.output
    report = json.loads(result.stdout)
    assert report["verdict"] == "drift" and report["current_records"] == 150
    stats = {s["name"]: s for s in report["statistics"]}
    assert len(stats) == 6 and stats["customer_length"]["drifted"]
    assert not stats["agent_length"]["drifted"]
    assert all({"value", "threshold", "p_value", "drifted"} <= set(s) for s in stats.values())


def test_too_little_data_or_a_bad_path_exits_1_a_usage_error_2(tmp_path):
    reference = write_jsonl(tmp_path / "ref.jsonl", make_logs(200, 56))
    small = write_jsonl(tmp_path / "small.jsonl", make_logs(20, 57))

    little = invoke("--reference", str(reference), "--current", str(small), "--json")
    assert little.exit_code == 1 and json.loads(little.stdout)["verdict"] == "not_enough_data"

    missing = invoke("--reference", str(reference), "--current", str(tmp_path / "nope"))
    assert missing.exit_code == 1
    assert "does not exist: pass a .jsonl/.jsonl.gz file" in missing.stderr

    assert invoke("--reference", str(reference)).exit_code == 2


def test_an_s3_prefix_is_a_batch(settings, monkeypatch, tmp_path):
    monkeypatch.setenv("RETRAIN_S3__ENDPOINT_URL", settings.s3.endpoint_url)
    from tasks.storage.s3 import s3_client

    client, bucket = s3_client(settings.s3), settings.s3.bucket
    for day, seed in (("2026-11-20", 58), ("2026-11-21", 59)):
        body = "".join(json.dumps(r) + "\n" for r in make_logs(80, seed)).encode()
        client.put_object(Bucket=bucket, Key=f"raw/dt={day}/logs.jsonl", Body=body)
    current = write_jsonl(tmp_path / "cur.jsonl", make_logs(120, 60, new_topic_share=0.4))

    result = invoke(
        "--reference", f"s3://{bucket}/raw/", "--current", str(current), "--json", "--no-embeddings"
    )

    assert result.exit_code == 3, result.output
    report = json.loads(result.stdout)
    assert report["reference_records"] == 160
    mix = next(s for s in report["statistics"] if s["name"] == "category_mix")
    assert mix["drifted"] and mix["shares"]["SOLAR"]["reference"] == 0
