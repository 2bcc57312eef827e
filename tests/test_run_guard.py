"""One retrain of a model at a time, whoever starts it: a manual `retrain run` and a deployment
run of the same model, started while a third run holds the model's slot, each say they wait,
then run one after the other, never together."""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import datetime

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
    LogFilter,
    LogFilterFlowRunId,
)
from typer.testing import CliRunner

from flows.cli import app
from flows.run_guard import one_run_per_model, slot_name
from flows.run_params import RunParams, retrain_deployment

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_api")]


def _summary_written_at(client, run_id: str) -> datetime:
    """When the run wrote its summary artifact: its last act inside the guard."""
    (summary,) = client.read_artifacts(
        artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]),
            key=ArtifactFilterKey(any_=["retrain-summary"]),
        )
    )
    return summary.created


def _log_lines(client, run_id: str, timeout_s: float = 15) -> list:
    """The run's log lines in the Prefect API; they are shipped in batches, so poll briefly."""
    deadline = time.monotonic() + timeout_s
    while True:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
        if any("got the concurrency slot" in log.message for log in logs):
            return logs
        assert time.monotonic() < deadline, [log.message for log in logs]
        time.sleep(0.5)


def test_a_manual_and_a_deployment_run_of_one_model_wait_and_never_overlap(settings, monkeypatch):
    model = f"guard-{uuid.uuid4().hex[:8]}"  # a fresh slot per test session
    monkeypatch.setenv("RETRAIN_S3__BUCKET", settings.s3.bucket)  # empty: each run is quick
    monkeypatch.setenv("RETRAIN_S3__ENDPOINT_URL", settings.s3.endpoint_url)
    monkeypatch.setenv("RETRAIN_MODEL_NAME", model)
    results: dict[str, object] = {}

    def manual_run() -> None:
        results["manual"] = CliRunner().invoke(app, ["run", "--json"])

    def deployment_run() -> None:
        results["deployment"] = retrain_deployment(params=RunParams(model_name=model))

    holder_said: list[str] = []
    with one_run_per_model(model, holder_said.append):  # a scheduled run of this model is going
        runs = [threading.Thread(target=manual_run), threading.Thread(target=deployment_run)]
        for run in runs:
            run.start()
        time.sleep(6)  # both reach the guard and find the slot taken
        assert all(run.is_alive() for run in runs), "a run did not wait for the slot"
        released = datetime.now().astimezone()
    for run in runs:
        run.join(timeout=60)
    assert holder_said == []  # the first holder found the slot free and said nothing

    manual = results["manual"]
    assert manual.exit_code == 0, manual.output
    assert f"waiting for the concurrency slot {slot_name(model)!r}" in manual.stderr
    assert f"another retrain of {model} is running" in manual.stderr
    manual_summary = json.loads(manual.stdout)
    deployment_summary = results["deployment"]
    assert manual_summary["decision"] == deployment_summary.decision == "no_new_data"

    with get_client(sync_client=True) as client:
        # the manual run's flow run starts only once it holds the slot
        manual_run_record = client.read_flow_run(manual_summary["run_id"])
        manual_span = (
            manual_run_record.start_time,
            _summary_written_at(client, manual_run_record.id),
        )
        # the deployment run is Running while it waits; its log says so and when it got the slot
        logs = _log_lines(client, deployment_summary.run_id)
        messages = [log.message for log in logs]
        assert any(f"waiting for the concurrency slot {slot_name(model)!r}" in m for m in messages)
        got = next(log.timestamp for log in logs if "got the concurrency slot" in log.message)
        deployment_span = (got, _summary_written_at(client, deployment_summary.run_id))

    assert manual_span[0] >= released and deployment_span[0] >= released
    first, second = sorted([manual_span, deployment_span])
    assert first[1] <= second[0], f"the runs overlapped: {first} and {second}"
