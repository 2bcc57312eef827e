"""The product as deployments, end to end, driven by real workers (deployments/e2e_check.py).

A Prefect server and moto S3 + SQS of its own (a worker on the session's test server would pick
up the runs other tests leave scheduled there), the `cpu` and `gpu` pools with a process worker
each, and the S3 bridge. Logs uploaded to S3 must start exactly one retrain on the cpu worker,
whose fine-tune stage runs as `fine-tune/gpu` on the gpu worker; both runs and their artifacts
are read back through the API.

It takes about 2 minutes on 2 CPU cores (a new Python process per flow run imports the whole
pipeline), over the suite's budget, so it runs only when asked for: `pytest -m e2e` (or
`make e2e-check`, the same check as a script).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

E2E_CHECK = Path(__file__).resolve().parents[2] / "deployments" / "e2e_check.py"


@pytest.fixture(scope="session", autouse=True)
def only_when_asked(request: pytest.FixtureRequest) -> None:
    # session-scoped and autouse: it runs before the session fixtures the test needs (the tiny
    # model), so skipping costs nothing
    if "e2e" not in (request.config.option.markexpr or ""):
        pytest.skip("about 2 minutes: run with `pytest -m e2e` or `make e2e-check`")


@pytest.fixture
def e2e_check():
    spec = importlib.util.spec_from_file_location("e2e_check", E2E_CHECK)
    module = importlib.util.module_from_spec(spec)
    sys.modules["e2e_check"] = module
    spec.loader.exec_module(module)
    return module


def test_an_upload_retrains_through_the_cpu_and_gpu_workers(e2e_check, tiny_model_dir, tmp_path):
    found = e2e_check.run_e2e(tmp_path, tiny_model_dir, log=print)

    retrain, subruns = found["retrain"], found["subruns"]
    assert found["retrain_runs"] == 1  # two uploads, two events, one run
    assert retrain["state"] == "COMPLETED", retrain["message"]
    assert (retrain["work_pool"], retrain["worker"]) == ("cpu", "cpu-worker")
    reason = retrain["parameters"]["params"]["reason"]
    assert reason.startswith("new support logs: s3://e2e-check/raw/support-logs/dt=")

    (fine_tune,) = subruns
    assert fine_tune["deployment"] == "fine-tune/gpu"
    assert (fine_tune["state"], fine_tune["work_pool"], fine_tune["worker"]) == (
        "COMPLETED",
        "gpu",
        "gpu-worker",
    )
    training = fine_tune["parameters"]["params"]["training"]
    assert training["base_model"] == str(tiny_model_dir)  # the workers' settings reached it
    assert training["max_steps"] == 2

    assert set(found["artifacts"][retrain["id"]]) == e2e_check.STAGE_ARTIFACTS
    assert set(found["artifacts"][fine_tune["id"]]) == {"retrain-training-progress"}
    summary = found["contents"]["retrain-summary"]
    assert f"## Retrain run {retrain['id']}: **" in summary
    assert "- training: 2 steps" in summary
    assert found["contents"]["retrain-decision"].startswith("## Gate: **")
    assert e2e_check.problems(found) == []
