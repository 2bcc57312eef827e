"""deployments/prefect.yaml: deployed with `prefect deploy --all` to a real Prefect API, it
creates the retrain deployment with its schedule, its event triggers, a small typed parameter
form and a concurrency limit of one; duplicate arrival events make one run."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.events import Event
from prefect.flows import load_flow_from_entrypoint
from prefect.settings import PREFECT_API_URL

from flows.retrain import RunParams
from tasks.config import Settings
from tasks.ingest.notifications import ARRIVED, post_events

ROOT = Path(__file__).resolve().parents[2]
PREFECT_YAML = ROOT / "deployments" / "prefect.yaml"
RETRAIN = "retrain/support-bot"


def test_every_entrypoint_loads_and_exposes_no_infrastructure_setting(monkeypatch):
    monkeypatch.chdir(ROOT)
    deployments = yaml.safe_load(PREFECT_YAML.read_text())["deployments"]
    assert {d["name"] for d in deployments} >= {"support-bot", "s3-sensor", "gpu"}
    for deployment in deployments:
        flow = load_flow_from_entrypoint(deployment["entrypoint"])
        assert "settings" not in flow.parameters.properties
        if deployment["work_pool"]["name"] == "gpu":  # slots: the global limit `gpu`
            assert "concurrency_limit" not in deployment
            assert set(flow.parameters.properties) == {"params"}
        else:
            assert deployment["concurrency_limit"]["limit"] == 1


def test_run_params_override_only_the_run_choices(monkeypatch):
    monkeypatch.setenv("RETRAIN_S3__ENDPOINT_URL", "http://s3.internal:9000")
    settings = RunParams(model_name="billing-bot", max_steps=7).applied_to(Settings())
    assert (settings.model_name, settings.training.max_steps) == ("billing-bot", 7)
    assert settings.s3.endpoint_url == "http://s3.internal:9000"  # from the worker, not the run
    with pytest.raises(ValueError, match="extra"):
        RunParams.model_validate({"s3": {"endpoint_url": "http://elsewhere"}})
    with pytest.raises(ValueError, match="pattern"):
        RunParams(model_name="../other bucket")


def _deploy() -> None:
    env = {
        **os.environ,
        "PREFECT_API_URL": PREFECT_API_URL.value(),
        "RETRAIN_PROJECT_DIR": str(ROOT),
        "RETRAIN_TIMEZONE": "Europe/Berlin",
    }
    prefect = [sys.executable, "-m", "prefect", "--no-prompt"]
    subprocess.run(
        [*prefect, "deploy", "--prefect-file", str(PREFECT_YAML), "--all"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )


def _runs_of(client, deployment_id: uuid.UUID, expected: int, timeout: float = 20.0) -> list:
    """Triggers act asynchronously: wait for `expected` runs, then a little longer for extras."""
    deployment_filter = DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(client.read_flow_runs(deployment_filter=deployment_filter)) >= expected:
            break
        time.sleep(0.5)
    time.sleep(3.0)
    return client.read_flow_runs(deployment_filter=deployment_filter)


@pytest.mark.integration
def test_prefect_deploy_creates_schedules_triggers_and_one_run_per_burst(prefect_api):
    with get_client(sync_client=True) as client:
        for pool in ("cpu", "gpu"):
            client.create_work_pool(WorkPoolCreate(name=pool, type="process"), overwrite=True)
    _deploy()

    with get_client(sync_client=True) as client:
        fine_tune = client.read_deployment_by_name("fine-tune/gpu")
        assert fine_tune.work_pool_name == "gpu"
        assert fine_tune.entrypoint == "flows/fine_tune.py:fine_tune"
        assert set(fine_tune.parameter_openapi_schema["properties"]) == {"params"}
        retrain = client.read_deployment_by_name(RETRAIN)
        assert retrain.entrypoint == "flows/retrain.py:retrain"
        assert retrain.work_pool_name == "cpu"
        assert retrain.parameters["params"]["model_name"] == "support-bot"
        schema = retrain.parameter_openapi_schema
        assert set(schema["properties"]) == {"params"}
        form = schema["definitions"]["RunParams"]["properties"]
        assert set(form) == {"model_name", "max_steps", "reprocess", "reason"}
        assert retrain.global_concurrency_limit.limit == 1
        assert retrain.concurrency_options.collision_strategy == "ENQUEUE"
        (nightly,) = retrain.schedules
        assert (nightly.schedule.cron, nightly.schedule.timezone) == ("0 2 * * *", "Europe/Berlin")
        assert nightly.parameters["params"]["reason"] == "nightly schedule"

        automations = client.read_resource_related_automations(f"prefect.deployment.{retrain.id}")
        triggers = {next(iter(a.trigger.expect)): a for a in automations}
        assert set(triggers) == {ARRIVED, "retrain.drift.detected"}
        arrived = triggers[ARRIVED]
        assert (arrived.trigger.threshold, arrived.trigger.within.total_seconds()) == (1, 600)
        (action,) = arrived.actions
        assert action.deployment_id == retrain.id
        assert "{{ event.resource.id }}" in action.parameters["params"]["reason"]

        sensor = client.read_deployment_by_name("sensor/s3-sensor")
        assert sensor.schedules[0].schedule.interval.total_seconds() == 60
        assert sensor.parameter_openapi_schema["properties"] == {}

        # A burst: one object announced 20 times (re-delivered notifications) plus other objects,
        # all within the trigger's window → exactly one retrain run, its reason from the event.
        now = datetime.now(UTC)
        key = "raw/support-logs/dt=2026-11-23/burst.jsonl.gz"
        same = {"prefect.resource.id": f"s3://deploy-test/{key}", "s3.key": key}
        burst = [Event(event=ARRIVED, occurred=now, resource=same) for _ in range(20)]
        burst += [
            Event(event=ARRIVED, occurred=now, resource={"prefect.resource.id": f"s3://b/{n}"})
            for n in range(5)
        ]
        assert post_events(burst) == 25
        (run,) = _runs_of(client, retrain.id, expected=1)
        assert run.parameters["params"]["reason"] == f"new support logs: s3://deploy-test/{key}"

        drift = Event(
            event="retrain.drift.detected",
            occurred=datetime.now(UTC),
            resource={"prefect.resource.id": "retrain.model.support-bot"},
            payload={"reason": "golden loss up 12%"},
        )
        post_events([drift])
        runs = _runs_of(client, retrain.id, expected=2)
        reasons = sorted(r.parameters["params"]["reason"] for r in runs)
        assert reasons[0] == "drift detected: golden loss up 12%"
        assert len(runs) == 2


@pytest.mark.integration
def test_notify_automation_fires_on_a_data_rejected_retrain(prefect_api, monkeypatch):
    from prefect.blocks.notifications import SlackWebhook
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
    from prefect.events.schemas.automations import AutomationCore

    block_id = SlackWebhook(url="http://127.0.0.1:9/unreachable").save("ops-test", overwrite=True)
    monkeypatch.setenv("NOTIFY_BLOCK_ID", str(block_id))
    spec = yaml.safe_load(
        os.path.expandvars((ROOT / "deployments/automations/notify-on-failure.yaml").read_text())
    )
    automation = AutomationCore.model_validate(spec)
    with get_client(sync_client=True) as client:
        automation_id = client.create_automation(automation)
        rejected = Event(
            event="retrain.data.rejected",
            occurred=datetime.now(UTC),
            resource={"prefect.resource.id": "retrain.model.notify-test"},
            related=[
                {
                    "prefect.resource.id": f"prefect.flow.{uuid.uuid4()}",
                    "prefect.resource.role": "flow",
                    "prefect.resource.name": "retrain",
                }
            ],
            payload={"run_id": "notify-test", "report": "reports/notify-test/quality.html"},
        )
        unrelated = rejected.model_copy(update={"id": uuid.uuid4(), "related": []})
        post_events([rejected, unrelated])

        def action_events() -> list[Event]:
            # a new filter each time: its default `occurred.until` is the moment it is built
            acted = EventFilter(
                event=EventNameFilter(prefix=["prefect.automation.action."]),
                resource=EventResourceFilter(id=[f"prefect.automation.{automation_id}"]),
            )
            return client.read_events(filter=acted, limit=50).events

        deadline = time.monotonic() + 30
        while not action_events():
            assert time.monotonic() < deadline, "the automation did not act on the rejection"
            time.sleep(0.5)
        time.sleep(2)
        fired = action_events()
        # acted once, for the rejection of a retrain run, not for the unrelated event
        triggering = {r.id for e in fired for r in e.related if r.role == "triggering-event"}
        client.delete_automation(automation_id)  # later tests' retrain runs must not notify
        assert triggering == {f"prefect.event.{rejected.id}"}
