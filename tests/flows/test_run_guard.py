"""One retrain of a model at a time, whoever starts it: a manual `retrain run` (its own process)
and a deployment run of the same model, started while a third run holds the model's slot, each
say they wait and for what, then run one after the other, never together."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
    FlowRunFilter,
    FlowRunFilterName,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.settings import PREFECT_API_URL

from flows.reports.summary import RunSummary
from flows.retrain import RunParams, retrain
from flows.run_guard import one_run_per_model, slot_name

ROOT = str(Path(__file__).resolve().parents[2])

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


def _wait_until(what: str, check, timeout_s: float = 90):
    deadline = time.monotonic() + timeout_s
    while not (found := check()):
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.5)
    return found


def test_a_manual_and_a_deployment_run_of_one_model_wait_and_never_overlap(settings, monkeypatch):
    model = f"guard-{uuid.uuid4().hex[:8]}"  # a fresh slot per test session
    monkeypatch.setenv("RETRAIN_S3__BUCKET", settings.s3.bucket)  # empty: each run is quick
    monkeypatch.setenv("RETRAIN_S3__ENDPOINT_URL", settings.s3.endpoint_url)
    monkeypatch.setenv("RETRAIN_MODEL_NAME", model)
    waiting = f"waiting for the concurrency slot {slot_name(model)!r}"
    deployment_run_name = f"deployment-{model}"
    deployment_result: dict[str, RunSummary] = {}

    def deployment_run() -> None:
        flow = retrain.with_options(flow_run_name=deployment_run_name)
        deployment_result["summary"] = flow(params=RunParams(model_name=model))

    holder_said: list[str] = []
    with (
        get_client(sync_client=True) as client,
        one_run_per_model(model, holder_said.append),  # a scheduled run of this model is going
    ):
        # a manual `retrain run` in its own process, and a deployment run in this one
        manual = subprocess.Popen(
            [sys.executable, "-c", "from flows.cli.app import app; app()", "run", "--json"],
            env={**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PYTHONPATH": ROOT},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deployment = threading.Thread(target=deployment_run)
        deployment.start()
        manual_said = _wait_until(
            "the manual run says it waits", lambda: _line_with(manual, waiting)
        )
        deployment_said = _wait_until(
            "the deployment run logs that it waits",
            lambda: _run_logs_with(client, _run_id_named(client, deployment_run_name), waiting),
        )
        assert deployment.is_alive() and manual.poll() is None
        released = datetime.now().astimezone()
    manual_out, manual_err = manual.communicate(timeout=90)
    deployment.join(timeout=90)

    assert holder_said == []  # the first holder found the slot free and said nothing
    assert f"another retrain of {model} is running" in manual_said
    assert manual.returncode == 0, manual_err
    manual_summary = json.loads(manual_out)
    deployment_summary = deployment_result["summary"]
    assert manual_summary["decision"] == deployment_summary.decision == "no_new_data"
    assert deployment_said.flow_run_id == uuid.UUID(deployment_summary.run_id)

    with get_client(sync_client=True) as client:
        # both runs are Running while they wait; each one's log says when it got the slot
        spans = []
        for run_id in (manual_summary["run_id"], deployment_summary.run_id):
            got = _wait_until(
                f"run {run_id} logs that it got the slot",
                lambda run_id=run_id: _run_logs_with(client, run_id, "got the concurrency slot"),
                timeout_s=15,
            )
            spans.append((got.timestamp, _summary_written_at(client, run_id)))
        manual_span, deployment_span = spans

    assert manual_span[0] >= released and deployment_span[0] >= released
    first, second = sorted([manual_span, deployment_span])
    assert first[1] <= second[0], f"the runs overlapped: {first} and {second}"


def _line_with(process: subprocess.Popen, text: str) -> str | None:
    """Read the process's stderr line by line (blocking) until a line holds `text`."""
    for line in process.stderr:
        if text in line:
            return line
    return None


def _run_id_named(client, run_name: str):
    runs = client.read_flow_runs(
        flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[run_name]))
    )
    return runs[0].id if runs else None


def _run_logs_with(client, run_id, text: str):
    """The first log line of the flow run `run_id` that holds `text`, once the API has it."""
    if run_id is None:
        return None
    logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
    return next((log for log in logs if text in log.message), None)
