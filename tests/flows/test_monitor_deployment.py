"""The monitor is scheduled and its event starts the retrain deployment."""

from __future__ import annotations

from pathlib import Path

import yaml
from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger
from prefect.flows import load_flow_from_entrypoint

from flows.monitor import EVENT

PREFECT_YAML = Path(__file__).resolve().parents[2] / "deployments" / "prefect.yaml"


def test_the_monitor_is_scheduled_and_its_event_triggers_the_retrain_deployment(monkeypatch):
    monkeypatch.chdir(PREFECT_YAML.parents[1])
    deployments = {d["name"]: d for d in yaml.safe_load(PREFECT_YAML.read_text())["deployments"]}
    monitor = deployments["drift-monitor"]
    assert load_flow_from_entrypoint(monitor["entrypoint"]).name == "monitor"
    assert monitor["schedules"] and monitor["concurrency_limit"]["limit"] == 1

    retrain = deployments["support-bot"]
    triggers = [DeploymentEventTrigger.model_validate(t) for t in retrain["triggers"]]
    drift = [t for t in triggers if EVENT in t.expect]
    assert len(drift) == 1 and drift[0].enabled
    # the resource the monitor emits on, e.g. retrain.model.support-bot, matches the pattern
    pattern = drift[0].match.root["prefect.resource.id"]
    assert "retrain.model.support-bot".startswith(pattern.rstrip("*"))
