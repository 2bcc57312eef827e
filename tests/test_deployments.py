"""deployments/prefect.yaml points at a flow that exists and takes the settings object."""

from __future__ import annotations

from pathlib import Path

import yaml
from prefect.flows import load_flow_from_entrypoint

PREFECT_YAML = Path(__file__).resolve().parents[1] / "deployments" / "prefect.yaml"


def test_every_deployment_entrypoint_loads_the_retrain_flow(monkeypatch):
    monkeypatch.chdir(PREFECT_YAML.parents[1])
    deployments = yaml.safe_load(PREFECT_YAML.read_text())["deployments"]
    assert deployments
    for deployment in deployments:
        flow = load_flow_from_entrypoint(deployment["entrypoint"])
        assert flow.name in {"retrain", "monitor"}
        assert "settings" in flow.parameters.properties
        assert deployment["concurrency_limit"] == 1
