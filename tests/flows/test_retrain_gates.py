"""Gate semantics across runs, through the real Prefect API and moto: a small batch waits, a
rejected object is not re-read unless asked, a corrected object (new ETag) is read again.

The gate is made to reject with `quality.max_intent_share`, so no run here trains a model."""

from __future__ import annotations

from datetime import date

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from tasks.ingest.objects import WATERMARK_KEY
from tasks.ingest.sample_data import build_daily_logs, bundled_csv, upload_daily_logs
from tasks.storage.s3 import get_json, list_objects, s3_client
from tests.helpers.flow_runs import run_retrain

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_api")]


@pytest.fixture
def settings(settings):
    """A model name of its own: tests/flows/test_retrain.py looks for `retrain.data.rejected`
    events of `support-bot`, and the rejections here must not be mistaken for its own."""
    return settings.model_copy(update={"model_name": "gates-bot"})


def seed(settings, limit: int, day: date, shuffle: int = 7) -> str:
    per_day = build_daily_logs(bundled_csv(), days=1, end_date=day, limit=limit, seed=shuffle)
    (key,) = upload_daily_logs(settings.s3, per_day)
    return key


def watermark(settings) -> dict:
    body = get_json(
        s3_client(settings.s3), settings.s3.bucket, settings.s3.state_prefix + WATERMARK_KEY
    ).body
    return body or {"processed": {}, "verdicts": {}}


def strict(settings):
    """The same settings with a gate that rejects any real batch (no intent may exceed 1 %)."""
    return settings.model_copy(
        update={"quality": settings.quality.model_copy(update={"max_intent_share": 0.01})}
    )


def artifacts(flow_run_id: str) -> dict:
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key: a for a in found}


def test_a_small_batch_waits_and_the_next_run_reads_it_with_the_new_one(settings):
    small = seed(settings, limit=8, day=date(2026, 11, 20))

    first = run_retrain(settings)

    assert first.decision == "data_pending", first.reasons
    assert first.records_read == 8
    assert small not in watermark(settings)["processed"]  # still pending

    more = seed(settings, limit=30, day=date(2026, 11, 21), shuffle=9)
    second = run_retrain(strict(settings))

    assert second.decision == "data_rejected"
    assert second.objects == 2 and second.records_read == 38  # read together
    verdicts = watermark(settings)["verdicts"]
    assert {k: v["verdict"] for k, v in verdicts.items()} == {small: "rejected", more: "rejected"}


def test_a_rejected_object_is_read_again_only_when_reprocessed(settings):
    key = seed(settings, limit=30, day=date(2026, 11, 21))

    rejected = run_retrain(strict(settings))
    assert rejected.decision == "data_rejected"
    shown = artifacts(rejected.run_id)
    bias = shown["retrain-bias"].data
    assert "representation.max_intent_share (block)" in bias and "| category |" in bias
    link = shown["retrain-data-docs"].data  # stored as markdown: [text](url)
    docs_index = f"{settings.s3.reports_prefix}{rejected.run_id}/data-docs/index.html"
    assert f"]({settings.s3.endpoint_url}/{settings.s3.bucket}/{docs_index})" in link
    assert list_objects(s3_client(settings.s3), settings.s3.bucket, docs_index)

    again = run_retrain(strict(settings))
    assert again.decision == "no_new_data" and again.records_read == 0

    # after a threshold or suite change, the operator re-runs it on purpose
    uri = f"s3://{settings.s3.bucket}/{key}"
    reprocessed = run_retrain(strict(settings), reprocess=[uri])
    assert reprocessed.objects == 1 and reprocessed.records_read == 30
    assert watermark(settings)["verdicts"][key]["run_id"] == reprocessed.run_id


def test_a_corrected_object_with_a_new_etag_is_read_by_the_next_run(settings):
    key = seed(settings, limit=30, day=date(2026, 11, 21))
    rejected = run_retrain(strict(settings))
    assert rejected.decision == "data_rejected"
    old_etag = watermark(settings)["processed"][key]

    corrected = seed(settings, limit=25, day=date(2026, 11, 21), shuffle=11)  # same key
    assert corrected == key

    rerun = run_retrain(strict(settings))

    assert rerun.objects == 1 and rerun.records_read == 25
    assert watermark(settings)["processed"][key] != old_etag
    assert watermark(settings)["verdicts"][key]["run_id"] == rerun.run_id
