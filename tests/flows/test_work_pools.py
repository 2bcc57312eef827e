"""The `gpu` pool's Kubernetes base job template: accepted by a real Prefect API as a
kubernetes pool and rendered by Prefect's Kubernetes worker into a Job that requests
nvidia.com/gpu (no cluster runs here, so the Job is checked, not started)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect_kubernetes.worker import KubernetesWorker, KubernetesWorkerJobConfiguration

TEMPLATE = Path(__file__).resolve().parents[2] / "deployments" / "gpu-k8s-job-template.json"


def _render(template: dict, values: dict) -> dict:
    config = asyncio.run(
        KubernetesWorkerJobConfiguration.from_template_and_values(template, values)
    )
    return config.job_manifest["spec"]["template"]["spec"]


def test_gpu_template_keeps_every_variable_of_the_kubernetes_worker():
    template = json.loads(TEMPLATE.read_text())
    default = KubernetesWorker.get_default_base_job_template()
    assert set(default["variables"]["properties"]) <= set(template["variables"]["properties"])
    assert set(default["job_configuration"]) == set(template["job_configuration"])


@pytest.mark.integration
def test_gpu_template_renders_a_job_that_requests_gpus(prefect_api):
    """Rendering resolves block and variable references through the Prefect API."""
    template = json.loads(TEMPLATE.read_text())
    pod = _render(template, {"image": "registry.local/support-retrain:1", "gpu_count": 2})
    (container,) = pod["containers"]
    assert container["image"] == "registry.local/support-retrain:1"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert container["resources"]["requests"]["nvidia.com/gpu"] == 2
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    assert _render(template, {})["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1


@pytest.mark.integration
def test_prefect_api_accepts_the_gpu_pool(prefect_api):
    template = json.loads(TEMPLATE.read_text())
    pool = WorkPoolCreate(name="gpu-k8s", type="kubernetes", base_job_template=template)
    with get_client(sync_client=True) as client:
        client.create_work_pool(pool, overwrite=True)
        stored = client.read_work_pool("gpu-k8s")
    assert stored.type == "kubernetes"
    assert stored.base_job_template["variables"]["properties"]["gpu_count"]["default"] == 1
