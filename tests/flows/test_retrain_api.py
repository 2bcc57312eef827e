"""The retrain flow with `training.backend: api`: a real Prefect API, moto S3, and the local
OpenAI-compatible server that checks every request against the official OpenAPI description."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.events.filters import EventFilter

from tasks.ingest.sample_data import build_daily_logs, bundled_csv, upload_daily_logs
from tasks.promote.registry import CHAMPION, model_prefix
from tasks.storage.s3 import get_json, s3_client
from tasks.train.api.guards import ProviderCutoff
from tests.helpers.fake_openai import FakeOpenAI
from tests.helpers.flow_runs import run_retrain

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
            "promotion": settings.promotion.model_copy(update={"min_improvement": 0.0}),
            "dataset": settings.dataset.model_copy(
                update={"golden_fraction": 0.1, "golden_max_examples": 16, "golden_min_examples": 8}
            ),
        }
    )


KEY = "sk-proj-flowtest-Zq81xKeyMustNeverShow"
# Raw personal data customers typed; the redaction stage must replace it before anything
# leaves the machine or reaches a log, artifact or event.
RAW_PII = {
    "EMAIL": "jane.doe.claims@example.org",
    "PHONE": "+1 415-555-0142",
    "CARD": "4111 1111 1111 1111",
    "IP": "203.0.113.77",
}


def seed(settings, limit: int, with_pii: bool = False) -> None:
    per_day = build_daily_logs(bundled_csv(), days=2, end_date=date(2026, 11, 21), limit=limit)
    if with_pii:
        records = [r for day in per_day.values() for r in day]
        for n, raw in enumerate(RAW_PII.values()):
            for record in records[n * 7 : n * 7 + 3]:
                customer = record["messages"][0]
                customer["text"] = f"{customer['text']} (you can reach me on {raw})"
    upload_daily_logs(settings.s3, per_day)


def run_logs_artifacts_params(flow_run_id) -> str:
    """Everything Prefect stored about one run, as text: logs, artifacts, parameters."""
    with get_client(sync_client=True) as prefect:
        logs = prefect.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
        )
        artifacts = prefect.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
        run = prefect.read_flow_run(flow_run_id)
    parts = [log.message for log in logs]
    parts += [f"{a.key} {a.description} {json.dumps(a.data, default=str)}" for a in artifacts]
    parts.append(json.dumps(run.parameters, default=str))
    return "\n".join(parts)


def stored_events(must_mention: str, timeout_s: float = 30) -> str:
    """All events the Prefect server stored, once one mentions `must_mention` (they arrive
    asynchronously)."""
    deadline = time.monotonic() + timeout_s
    while True:
        with get_client(sync_client=True) as prefect:
            page = prefect.read_events(filter=EventFilter(), limit=50)
            events = list(page.events)
            while page.next_page and len(events) < 2000:
                page = prefect.read_events_page(page.next_page)
                events += page.events
        text = "\n".join(e.model_dump_json() for e in events)
        if must_mention in text or time.monotonic() > deadline:
            assert must_mention in text, "the run's events never arrived"
            return text
        time.sleep(0.5)


def test_a_run_through_the_api_backend_registers_a_hosted_version(
    settings, server: FakeOpenAI, monkeypatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, the SDK's and httpx's included
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    stop_on = datetime.now(UTC).date() + timedelta(days=20)  # inside the 30-day warning window
    config = api_flow_settings(settings, server.base_url, stop_on=stop_on.isoformat())
    seed(config, limit=160, with_pii=True)

    summary = run_retrain(config)

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
    assert golden["challenger"].similarity > golden["incumbent"].similarity
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

    # what left the machine: redacted text only (the placeholders show redaction happened)
    sent = b"\n".join(server.received).decode()
    assert "<EMAIL>" in sent and "<PHONE>" in sent
    # no API key or raw personal data in what was sent, logged, stored or emitted
    registry = [
        client.get_object(Bucket=config.s3.bucket, Key=o["Key"])["Body"].read().decode()
        for o in client.list_objects_v2(Bucket=config.s3.bucket, Prefix=model_prefix(config))[
            "Contents"
        ]
    ]
    seen = {
        "provider requests": sent,
        "python logs": caplog.text,
        "prefect logs, artifacts, parameters": run_logs_artifacts_params(runs[0].id),
        "prefect events": stored_events(summary.model_version),
        "registry objects": "\n".join(registry),
        "summary": summary.model_dump_json(),
    }
    assert "fine-tune ftjob-" in seen["prefect logs, artifacts, parameters"]  # logs were read
    for where, text in seen.items():
        assert KEY not in text, f"API key in {where}"
        for kind, raw in RAW_PII.items():
            assert raw not in text, f"raw {kind} in {where}"


def test_past_the_cut_off_a_run_is_refused_or_rerouted_to_local(
    settings, server: FakeOpenAI, tiny_model_dir, monkeypatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    refused = api_flow_settings(settings, server.base_url, stop_on="2026-01-06")
    seed(refused, limit=160)
    with pytest.raises(ProviderCutoff, match="fallback_backend"):
        run_retrain(refused)
    assert server.requests == []

    rerouted = api_flow_settings(
        settings, server.base_url, stop_on="2026-01-06", fallback_backend="local"
    )
    rerouted = rerouted.model_copy(
        update={
            "training": rerouted.training.model_copy(update={"base_model": str(tiny_model_dir)})
        }
    )
    summary = run_retrain(rerouted)
    assert summary.model_version, (summary.decision, summary.reasons)
    assert summary.train_steps == rerouted.training.max_steps
    assert "rerouted to the local backend" in summary.notes[0]
    assert server.requests == []  # nothing went to the provider
