"""The retrain flow with `training.backend: api`: a real Prefect API, moto S3, and the local
OpenAI-compatible server that checks every request against the official OpenAPI description."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from fake_openai import FakeOpenAI
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from flows.retrain import retrain
from tasks.api_guards import ProviderCutoff
from tasks.registry import CHAMPION, model_prefix
from tasks.s3 import get_json, s3_client
from tasks.sample_data import build_daily_logs, bundled_csv, upload_daily_logs

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_api")]


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake
    assert fake.violations == [], "requests or responses outside the OpenAPI description"


def api_flow_settings(settings, base_url: str, stop_on: str, **api):
    providers = {name: p.model_dump() for name, p in settings.training.api.providers.items()}
    providers["openai"] = {"base_url": base_url, "new_jobs_stop_on": stop_on}
    api_config = settings.training.api.model_validate(
        {
            "providers": providers,
            "max_retries": 2,
            "timeout_seconds": 5,
            "poll_min_seconds": 0.01,
            "poll_max_seconds": 0.05,
            **api,
        }
    )
    return settings.model_copy(
        update={
            "training": settings.training.model_copy(update={"backend": "api", "api": api_config}),
            "evaluation": settings.evaluation.model_copy(update={"min_improvement": 0.0}),
            "dataset": settings.dataset.model_copy(
                update={"golden_fraction": 0.1, "golden_max_examples": 16}
            ),
        }
    )


def seed(settings, limit: int) -> None:
    per_day = build_daily_logs(bundled_csv(), days=2, end_date=date(2026, 11, 21), limit=limit)
    upload_daily_logs(settings.s3, per_day)


def test_a_run_through_the_api_backend_registers_a_hosted_version(
    settings, server: FakeOpenAI, monkeypatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-flow")
    stop_on = datetime.now(UTC).date() + timedelta(days=20)  # inside the 30-day warning window
    config = api_flow_settings(settings, server.base_url, stop_on=stop_on.isoformat())
    seed(config, limit=160)

    summary = retrain(settings=config)

    assert summary.decision == "promoted", summary.reasons
    (job,) = server.job_list()
    client = s3_client(config.s3)
    prefix = f"{model_prefix(config)}versions/{summary.model_version}/"
    record = get_json(client, config.s3.bucket, prefix + "api.json").body
    assert record["job_id"] == job["id"]
    assert record["fine_tuned_model"] == job["fine_tuned_model"]
    assert record["trained_tokens"] == job["trained_tokens"]
    assert record["actual_cost_usd"] > 0 and record["estimated_cost_usd"] > 0
    card = get_json(client, config.s3.bucket, prefix + "card.json").body
    assert card["format"] == "hosted-fine-tune" and card["lineage"]["dataset_version"]
    assert job["metadata"]["dataset_version"] == card["lineage"]["dataset_version"]
    alias = get_json(client, config.s3.bucket, f"{model_prefix(config)}aliases/{CHAMPION}.json")
    assert alias.body["version"] == summary.model_version
    # the decision rests on generated replies: the tuned model beat the base model's
    golden = summary.metrics["golden"]
    assert golden["challenger"].token_accuracy > golden["incumbent"].token_accuracy
    assert server.chat_calls > 0
    assert f"new fine-tuning jobs on {stop_on.isoformat()} (20 days left)" in summary.notes[0]

    with get_client(sync_client=True) as prefect:
        runs = prefect.read_flow_runs(limit=1, sort="START_TIME_DESC")
        artifacts = prefect.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[runs[0].id]))
        )
    by_key = {a.key: a for a in artifacts}
    assert {"retrain-api-progress", "retrain-api-checkpoints", "retrain-summary"} <= set(by_key)
    assert "(20 days left)" in by_key["retrain-summary"].data
    assert by_key["retrain-api-progress"].data == 100


def test_past_the_cut_off_a_run_is_refused_or_rerouted_to_local(
    settings, server: FakeOpenAI, tiny_model_dir, monkeypatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-flow")
    refused = api_flow_settings(settings, server.base_url, stop_on="2026-01-06")
    seed(refused, limit=120)
    with pytest.raises(ProviderCutoff, match="fallback_backend"):
        retrain(settings=refused)
    assert server.requests == []

    rerouted = api_flow_settings(
        settings, server.base_url, stop_on="2026-01-06", fallback_backend="local"
    )
    rerouted = rerouted.model_copy(
        update={
            "training": rerouted.training.model_copy(update={"base_model": str(tiny_model_dir)})
        }
    )
    summary = retrain(settings=rerouted)
    assert summary.model_version and summary.train_steps == rerouted.training.max_steps
    assert "rerouted to the local backend" in summary.notes[0]
    assert server.requests == []  # nothing went to the provider
