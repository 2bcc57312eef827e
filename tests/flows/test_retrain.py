"""The retrain flow end to end: a real Prefect API, a moto S3 server over HTTP, a tiny model
with the real SmolLM2 tokenizer."""

from __future__ import annotations

import json
from datetime import date

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterParentFlowRunId,
)
from safetensors.torch import load_file
from typer.testing import CliRunner

from flows.cli.app import app
from flows.reports.stages import render
from tasks.ingest.sample_data import build_daily_logs, bundled_csv, upload_daily_logs
from tasks.promote.registry import CHAMPION, model_prefix
from tasks.storage.s3 import get_json, get_jsonl, list_objects, s3_client
from tests.helpers.events import emitted_events
from tests.helpers.flow_runs import run_retrain

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_api")]


def seed(
    settings, limit: int, end: date, days: int = 3, bad_records: int = 0, shuffle: int = 7
) -> list[str]:
    per_day = build_daily_logs(bundled_csv(), days=days, end_date=end, limit=limit, seed=shuffle)
    return upload_daily_logs(settings.s3, per_day, bad_records=bad_records)


def objects(settings, prefix: str) -> list[str]:
    return [o["Key"] for o in list_objects(s3_client(settings.s3), settings.s3.bucket, prefix)]


def artifact_keys(flow_run_id: str) -> set[str]:
    """The artifacts a run and its subflow runs (fine-tune) left in the Prefect API: what a
    person sees in the UI."""
    with get_client(sync_client=True) as client:
        parent = FlowRunFilterParentFlowRunId(any_=[flow_run_id])
        children = client.read_flow_runs(flow_run_filter=FlowRunFilter(parent_flow_run_id=parent))
        run_ids = [flow_run_id, *(str(run.id) for run in children)]
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=run_ids))
        )
    return {a.key for a in artifacts}


def test_first_run_trains_registers_and_promotes_then_a_rerun_skips(flow_settings, monkeypatch):
    settings = flow_settings
    seed(settings, limit=240, end=date(2026, 11, 21), bad_records=6)

    summary = run_retrain(settings)

    assert summary.decision == "promoted", summary.reasons
    assert summary.records_read == 246
    assert summary.records_read == summary.records_curated + summary.records_quarantined
    assert summary.quarantine_reasons["malformed JSON"] == 1
    golden = summary.metrics["golden"]
    assert golden["challenger"].loss < golden["incumbent"].loss
    assert set(summary.metrics) == {"golden", "recent"}
    client = s3_client(settings.s3)
    bucket = settings.s3.bucket
    alias = get_json(client, bucket, f"{model_prefix(settings)}aliases/{CHAMPION}.json").body
    assert alias["version"] == summary.model_version
    version_prefix = f"{model_prefix(settings)}versions/{summary.model_version}/"
    card = get_json(client, bucket, version_prefix + "card.json").body
    assert card["lineage"]["dataset_version"] == summary.dataset_version
    assert card["gate"]["promote"] is True and card["status"] == "promoted"
    adapter_key = version_prefix + "adapter/adapter_model.safetensors"
    assert adapter_key in objects(settings, version_prefix)
    assert card["lineage"]["dataset_versions_trained"] == [summary.dataset_version]
    assert version_prefix + "README.md" in objects(settings, version_prefix)  # HF model card
    assert not [k for k in objects(settings, version_prefix) if k.endswith((".bin", ".pt"))]
    assert summary.train_examples_seen == min(2 * 4, summary.train_window_examples)
    seen = f"saw {summary.train_examples_seen} of {summary.train_window_examples} examples"
    assert seen in render(summary)  # the summary says how much of the data it used

    # LoRA B matrices start at zero: non-zero ones prove the weights were trained.
    local = settings.cache_dir / "pytest-adapter.safetensors"
    client.download_file(bucket, adapter_key, str(local))
    lora_b = [t for name, t in load_file(local).items() if "lora_B" in name]
    assert lora_b and any(t.abs().sum() > 0 for t in lora_b)
    assert objects(settings, f"{settings.s3.quarantine_prefix}{summary.run_id}/")
    assert objects(settings, f"{settings.s3.reports_prefix}{summary.run_id}/data-docs/")
    assert artifact_keys(summary.run_id) == {
        "retrain-ingest",
        "retrain-quality",
        "retrain-bias",
        "retrain-data-docs",
        "retrain-dataset",
        "retrain-training",
        "retrain-training-progress",
        "retrain-training-curve",
        "retrain-evaluation",
        "retrain-decision",
        "retrain-summary",
    }

    promoted = emitted_events("retrain.model.promoted", f"retrain.model.{settings.model_name}")
    # other tests' runs promote the same model name on this Prefect API: keep this run's events
    ours = [e for e in promoted if e.payload["run_id"] == summary.run_id]
    assert [e.payload["version"] for e in ours] == [summary.model_version]

    # Second run with NEW logs: the champion is downloaded from S3 and scored on the same
    # golden examples as the new challenger.
    seed(settings, limit=200, end=date(2026, 11, 23), days=2, shuffle=8)  # not in the future
    second = run_retrain(settings)

    assert second.decision in ("promoted", "not_promoted"), second.reasons
    assert second.model_version != summary.model_version
    new_card = get_json(
        client, bucket, f"{model_prefix(settings)}versions/{second.model_version}/card.json"
    ).body
    champion_side = new_card["evaluation"]["golden"]["incumbent"]
    assert champion_side["model"] == f"champion {summary.model_version}"
    # the champion, reloaded from S3, scores exactly as it did when it was the challenger
    first_golden = card["evaluation"]["golden"]["challenger"]["overall"]
    assert champion_side["overall"]["loss"] == pytest.approx(first_golden["loss"], rel=1e-4)
    assert champion_side["overall"]["examples"] == first_golden["examples"]
    assert new_card["gate"]["branch"] == "champion" and new_card["gate"]["interval"]["examples"]
    champion_now = get_json(client, bucket, f"{model_prefix(settings)}aliases/{CHAMPION}.json")
    expected = second.model_version if second.decision == "promoted" else summary.model_version
    assert champion_now.body["version"] == expected
    assert new_card["status"] == ("promoted" if second.decision == "promoted" else "rejected")

    # Third run through the CLI: nothing new, so no ingest or training, exit code 0.
    monkeypatch.setenv("RETRAIN_S3__BUCKET", bucket)
    monkeypatch.setenv("RETRAIN_S3__ENDPOINT_URL", settings.s3.endpoint_url)
    result = CliRunner().invoke(app, ["run", "--json"])
    assert result.exit_code == 0, result.output
    rerun = json.loads(result.stdout[result.stdout.index("{") :])
    assert rerun["decision"] == "no_new_data" and rerun["records_read"] == 0
    assert "no new support logs" in rerun["reasons"][0]

    # `retrain evaluate` scores two registered versions on the golden set and changes nothing.
    for name, value in {
        "RETRAIN_CACHE_DIR": str(settings.cache_dir),
        "RETRAIN_TRAINING__BASE_MODEL": settings.training.base_model,
        "RETRAIN_EVALUATION__MAX_NEW_TOKENS": "4",
        "RETRAIN_EVALUATION__MAX_LENGTH": "256",
    }.items():
        monkeypatch.setenv(name, value)
    args = ["evaluate", "--model", second.model_version, "--against", summary.model_version]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    verdict = json.loads(result.stdout)
    assert verdict["golden_examples"] == first_golden["examples"]
    assert verdict["decision"]["branch"] == "champion" and verdict["decision"]["checks"]
    assert verdict["metrics"][f"version {summary.model_version}"]["loss"] == pytest.approx(
        first_golden["loss"], rel=1e-4
    )
    still = get_json(client, bucket, f"{model_prefix(settings)}aliases/{CHAMPION}.json").body
    assert still["version"] == expected


def test_a_batch_that_fails_the_gate_stops_before_training(flow_settings):
    settings = flow_settings.model_copy(
        update={"quality": flow_settings.quality.model_copy(update={"max_intent_share": 0.01})}
    )
    seed(settings, limit=60, end=date(2026, 11, 21))

    summary = run_retrain(settings)

    assert summary.decision == "data_rejected"
    assert "representation.max_intent_share" in summary.reasons[0]
    assert summary.records_quarantined == summary.records_read == 60
    assert summary.train_steps is None
    assert objects(settings, settings.s3.models_prefix) == []
    assert objects(settings, settings.s3.datasets_prefix) == []
    rejected = emitted_events("retrain.data.rejected", f"retrain.model.{settings.model_name}")
    (event,) = [e for e in rejected if e.payload["run_id"] == summary.run_id]
    assert "representation.max_intent_share" in event.payload["failed"]  # names and counts only
    assert objects(settings, f"{settings.s3.reports_prefix}{summary.run_id}/quality.json")
    held_back = f"{settings.s3.quarantine_prefix}{summary.run_id}/gate-rejected.jsonl"
    rows = get_jsonl(s3_client(settings.s3), settings.s3.bucket, held_back)
    assert len(rows) == 60


def test_a_failing_run_exits_non_zero_with_a_fix_in_the_message(settings, monkeypatch):
    seed(settings, limit=60, end=date(2026, 11, 21))
    monkeypatch.setenv("RETRAIN_S3__BUCKET", settings.s3.bucket)
    monkeypatch.setenv("RETRAIN_S3__ENDPOINT_URL", settings.s3.endpoint_url)
    monkeypatch.setenv("RETRAIN_QUALITY__MIN_RECORDS", "10")
    monkeypatch.setenv("RETRAIN_DATASET__GOLDEN_FRACTION", "0.2")  # 60 records: enough golden
    monkeypatch.setenv("RETRAIN_DATASET__GOLDEN_MIN_EXAMPLES", "5")
    monkeypatch.setenv("RETRAIN_TRAINING__BASE_MODEL", "/nonexistent/model")

    result = CliRunner().invoke(app, ["run"])

    assert result.exit_code == 1
    assert "`training.base_model`" in result.output
    # the failed run did not advance the watermark: the logs are picked up again next time
    assert not objects(settings, settings.s3.state_prefix)
