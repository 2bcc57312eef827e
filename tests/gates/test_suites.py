"""The Great Expectations gate, run for real (five suites under expectations/) on batches built
with one defect each: every bad input gets its own blocking failure, clean ones pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.reports.quality import bias_markdown
from tasks.config import QualitySettings
from tasks.gates.frames import conversation_frame, reference_mix
from tasks.gates.suites import evaluate, validate_batch
from tasks.gates.toxicity import profane_probability
from tasks.storage.s3 import get_json, list_objects, put_jsonl, s3_client
from tests.helpers import batches
from tests.helpers.synthetic_logs import make_logs


def gate(rows: list[dict], tmp_path: Path, quarantined: int = 0, reference=None, **config):
    return evaluate(rows, QualitySettings(**config), quarantined, reference, tmp_path)


def failed(report) -> set[str]:
    return set(report.failed_critical)


def test_frame_has_one_row_per_conversation_with_computed_columns():
    rows = batches.clean_batch(3)
    rows[1]["messages"][-1]["text"] = batches.INSULTS[0]
    frame = conversation_frame(rows)
    assert len(frame) == 3
    assert frame["agent_chars"].tolist() == [len(r["messages"][-1]["text"]) for r in rows]
    assert frame["agent_offensive"].tolist() == [0.0, 1.0, 0.0]
    assert "customer_text" not in frame.columns  # texts are dropped once measured


def test_one_insult_among_long_formal_replies_flags_its_conversation():
    """Logs unlike Bitext: several long, formal agent replies per conversation. Joined into one
    text, an insult scores below the threshold; classified message by message it is caught."""
    rows = make_logs(200, seed=23, formal_replies=True, longer_messages=True)
    threads = [
        i for i, r in enumerate(rows) if sum(m["role"] == "agent" for m in r["messages"]) > 1
    ]
    for n, i in enumerate(threads):
        rows[i]["messages"][-1]["text"] = batches.INSULTS[n % len(batches.INSULTS)]
    joined = [
        "\n".join(m["text"] for m in rows[i]["messages"] if m["role"] == "agent") for i in threads
    ]
    threshold = QualitySettings().offensive_probability
    assert (profane_probability(joined) < threshold).any()  # the dilution this guards against

    frame = conversation_frame(rows)

    assert frame["agent_offensive"].to_numpy().nonzero()[0].tolist() == threads
    assert frame["customer_offensive"].sum() == 0


def test_clean_batch_with_unseen_channel_values_passes_with_a_warning(tmp_path):
    rows = batches.clean_batch()
    for record in rows[::7]:
        record["channel"] = "web"  # a channel the suite has never seen
    report = gate(rows, tmp_path, reference=reference_mix(batches.clean_batch(seed=9)))
    assert report.verdict == "passed", [c.reason() for c in report.checks if c.result == "fail"]
    assert any(w.startswith("quality.channel_known") for w in report.warnings)


@pytest.mark.parametrize(
    ("spoil", "check"),
    [
        (lambda b: batches.with_offensive_agents(b, 0.05), "toxicity.agent_share"),
        (lambda b: batches.with_dominant_intent(b, 0.8), "representation.max_intent_share"),
        (
            lambda b: batches.with_short_segment_replies(b, "typos"),
            "segments.reply_length_ratio",
        ),
        (lambda b: batches.without_field(b, "category"), "quality.category_present"),
    ],
    ids=["offensive-agents-5pct", "one-intent-80pct", "short-segment-replies", "no-category"],
)
def test_each_bad_batch_gets_its_blocking_failure(tmp_path, spoil, check):
    report = gate(spoil(batches.clean_batch()), tmp_path)
    assert report.verdict == "rejected"
    assert check in failed(report)
    reason = next(c.reason() for c in report.checks if c.name == check)
    assert reason.startswith(check) and "observed" in reason


def test_customer_profanity_is_only_reported(tmp_path):
    rows = batches.clean_batch()
    for record in rows[: len(rows) // 2]:
        record["messages"][0]["text"] = "where is my damn fucking order, you idiots"
    report = gate(rows, tmp_path)
    assert report.verdict == "passed"
    assert any(w.startswith("toxicity.customer_share") for w in report.warnings)


def test_empty_and_small_batches_are_pending_not_rejected(tmp_path):
    empty = gate([], tmp_path / "empty")
    assert empty.verdict == "pending" and failed(empty) == {"quality.min_records"}
    small = gate(batches.clean_batch(10), tmp_path / "small", min_records=50)
    assert small.verdict == "pending" and failed(small) == {"quality.min_records"}


def test_too_many_quarantined_records_block(tmp_path):
    report = gate(batches.clean_batch(), tmp_path, quarantined=200)
    assert "ingest.quarantine_fraction" in failed(report)


def test_category_mix_far_from_the_reference_blocks(tmp_path):
    reference = reference_mix([{"category": c} for c in ["ORDER", "REFUND", "ACCOUNT"] * 10])
    rows = batches.clean_batch()
    report = gate(rows, tmp_path, reference=reference, max_js_divergence=0.05)
    assert "representation.js_divergence" in failed(report)
    assert report.bias["mix"] and report.bias["segments"]


def test_validate_batch_writes_report_and_data_docs_without_values(settings):
    rows = batches.clean_batch(60)
    rows[1]["language"] = "xx-secret-marker"
    rows[2]["channel"] = "channel-secret-marker"
    client = s3_client(settings.s3)
    key = f"{settings.s3.staging_prefix}r1/accepted.jsonl"
    put_jsonl(client, settings.s3.bucket, key, rows)

    report = validate_batch.fn(settings, key, "r1", quarantined=0)

    assert report.verdict == "passed", report.failed_critical
    assert get_json(client, settings.s3.bucket, report.report_key).body["verdict"] == "passed"
    docs = list(list_objects(client, settings.s3.bucket, report.data_docs_prefix))
    assert any(o["Key"].endswith("index.html") for o in docs)
    for suite in settings.quality.suites:  # Data Docs are built once, for every suite
        assert any(f"/validations/{suite}/" in o["Key"] for o in docs), suite
    for obj in list_objects(client, settings.s3.bucket, f"{settings.s3.reports_prefix}r1/"):
        body = client.get_object(Bucket=settings.s3.bucket, Key=obj["Key"])["Body"].read()
        assert b"secret-marker" not in body, obj["Key"]


def test_bias_report_shows_the_mix_and_the_failing_segment_without_record_text(tmp_path):
    rows = batches.with_short_segment_replies(batches.clean_batch(), "typos")
    reference = reference_mix(batches.clean_batch(seed=9))
    report = gate(rows, tmp_path, reference=reference)
    markdown = bias_markdown(report, QualitySettings())
    assert "segments.reply_length_ratio (block)" in markdown
    typos = next(line for line in markdown.splitlines() if line.startswith("| typos |"))
    ratio = float(typos.split("|")[3])
    assert ratio < QualitySettings().min_reply_length_ratio
    categories = {r["category"] for r in rows}
    shown = {line.split("|")[1].strip() for line in markdown.splitlines() if line.startswith("| ")}
    assert categories <= shown  # every category of the batch, against its reference share
    texts = {m["text"] for r in rows for m in r["messages"]} | {r["conversation_id"] for r in rows}
    assert not [t for t in texts if t in markdown]


def test_a_small_batch_waits_unless_a_record_level_check_fails(tmp_path):
    """Below min_records a share is noise (one insult in ten replies is 10 %): the batch waits
    for more. A leaked e-mail or a future timestamp stays wrong however much data comes: that
    small batch is rejected now, with the reason, instead of spoiling the next batch."""
    insult = batches.with_offensive_agents(batches.clean_batch(10), 0.1)
    waits = gate(insult, tmp_path / "insult", min_records=50)
    assert waits.verdict == "pending"
    assert {"quality.min_records", "toxicity.agent_share"} <= failed(waits)

    leaked = batches.clean_batch(10)
    leaked[3]["messages"][0]["text"] += " write to ann.lee@example.org"
    leaked[5]["timestamp"] = "2099-01-01T00:00:00Z"
    rejected = gate(leaked, tmp_path / "leaked", min_records=50)
    assert rejected.verdict == "rejected"
    assert failed(rejected) == {
        "quality.min_records",
        "pii.email_left",
        "quality.timestamp_not_in_future",
    }
    assert any(line.startswith("pii.email_left") for line in rejected.failed_summary())
