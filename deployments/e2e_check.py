"""`make e2e-check`: the product as deployments, driven by real workers, from an S3 upload on.

Starts moto S3 (+ its SQS) and a Prefect server (SQLite in a temporary PREFECT_HOME) on free
loopback ports, creates the `cpu` and `gpu` pools, deploys `retrain/support-bot` and
`fine-tune/gpu` from deployments/prefect.yaml, starts a process worker on each pool and the
S3 → event bridge (the pieces of `make up`, deployments/local_stack.py), then uploads two days of
support logs. Their S3 notifications become `support-logs.arrived` events, the deployment's
trigger starts one retrain on the `cpu` worker, and its fine-tune stage goes through
`run_deployment("fine-tune/gpu")` to the `gpu` worker. The retrain run is read back through the
API when it ends: its state, the worker and pool of both runs, and its artifacts (one per stage,
the decision, the summary).

The workers carry the settings as RETRAIN_* variables: a tiny random model with the real SmolLM2
tokenizer (tasks/train/base_model.py `build_tiny_model`), 2 training steps, 4-token replies.

    python deployments/e2e_check.py [--out build/e2e-check]

Prints what it found and the time of each phase, writes them to <out>/e2e.json and exits non-zero
when a check fails. tests/flows/test_e2e.py runs the same thing (marker `e2e`).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

DEPLOYMENTS = Path(__file__).resolve().parent
sys.path[:0] = [str(DEPLOYMENTS), str(DEPLOYMENTS.parent)]  # run as a script or from a test

import local_stack  # noqa: E402
import ui_check  # noqa: E402

RETRAIN = "retrain/support-bot"
FINE_TUNE = "fine-tune/gpu"
BUCKET = "e2e-check"
# what one retrain needs to reach a decision in about a minute on 2 CPU cores (besides the
# tiny model and ui_check's TINY_BUDGET): short replies, a small golden set
E2E_ENV = {
    "RETRAIN_S3__BUCKET": BUCKET,
    "RETRAIN_TRAINING__WORKER__DEPLOYMENT": FINE_TUNE,
    "RETRAIN_QUALITY__MIN_RECORDS": "20",
    "RETRAIN_EVALUATION__MAX_NEW_TOKENS": "4",
    "RETRAIN_EVALUATION__MAX_LENGTH": "256",
    "RETRAIN_EVALUATION__SAMPLE_SIZE": "2",
    "RETRAIN_TIMEZONE": "UTC",
    "PREFECT_WORKER_QUERY_SECONDS": "1",
}
# one per stage, the decision and the summary: on the retrain run, which reads the training
# report back from S3; the fine-tune run on the gpu worker shows its progress while it trains
STAGE_ARTIFACTS = {
    "retrain-ingest",
    "retrain-quality",
    "retrain-bias",
    "retrain-data-docs",
    "retrain-dataset",
    "retrain-training",
    "retrain-training-curve",
    "retrain-evaluation",
    "retrain-decision",
    "retrain-summary",
}
TRAINING_ARTIFACTS = {"retrain-training-progress"}
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def tiny_model(target: Path) -> Path:
    """The tiny random model with the real SmolLM2 tokenizer (the tests' `tiny_model_dir`)."""
    from tasks.config import Settings
    from tasks.train.base_model import SMOLLM2, build_tiny_model, resolve_base_model

    return build_tiny_model(resolve_base_model(SMOLLM2, Settings().cache_dir), target)


def seed_logs(env: dict[str, str]) -> list[str]:
    """Two days of sample logs (ending yesterday: no timestamps in the future) into raw/."""
    from tasks.config import S3Settings
    from tasks.ingest.sample_data import build_daily_logs, bundled_csv, upload_daily_logs

    s3 = S3Settings(bucket=BUCKET, endpoint_url=env["RETRAIN_S3__ENDPOINT_URL"])
    end = datetime.now(UTC).date() - timedelta(days=1)
    per_day = build_daily_logs(bundled_csv(), days=2, end_date=end, limit=300, seed=11)
    with local_stack.environment(env):  # boto3 signs with the stack's credentials
        return upload_daily_logs(s3, per_day, bad_records=3)


def _triggered_runs(client: Any, deployment_id: Any) -> list:
    """The deployment's runs that an event started (not the nightly schedule's future runs)."""
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    chosen = DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
    return [r for r in client.read_flow_runs(deployment_filter=chosen) if not r.auto_scheduled]


def wait_for_retrain(client: Any, timeout_s: float, log: Callable[[str], None]) -> Any:
    """The triggered retrain run once it ended (a finished run, whatever its state)."""
    deployment = client.read_deployment_by_name(RETRAIN)
    deadline = time.monotonic() + timeout_s
    seen = ""
    while time.monotonic() < deadline:
        runs = _triggered_runs(client, deployment.id)
        if runs:
            run = runs[0]
            state = run.state_type.value if run.state_type else "?"
            if state != seen:
                log(f"retrain run {run.name}: {state}")
                seen = state
            if state in TERMINAL:
                return client.read_flow_run(run.id)
        time.sleep(1)
    raise SystemExit(f"no retrain run ended within {timeout_s:.0f} s (last seen: {seen or 'none'})")


def _state_times(client: Any, run_id: Any) -> dict[str, datetime]:
    return {s.type.value: s.timestamp for s in client.read_flow_run_states(run_id)}


def describe(client: Any, uploaded_at: datetime, run: Any) -> dict[str, Any]:
    """What a person would look up in the UI: both runs, their workers, the artifacts."""
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterParentFlowRunId,
    )

    parent = FlowRunFilterParentFlowRunId(any_=[run.id])
    children = client.read_flow_runs(flow_run_filter=FlowRunFilter(parent_flow_run_id=parent))
    deployments = {client.read_deployment_by_name(name).id: name for name in (RETRAIN, FINE_TUNE)}
    retrain_runs = _triggered_runs(client, client.read_deployment_by_name(RETRAIN).id)

    def facts(flow_run: Any) -> dict[str, Any]:
        times = _state_times(client, flow_run.id)
        return {
            "id": str(flow_run.id),
            "deployment": deployments.get(flow_run.deployment_id),
            "state": flow_run.state_type.value if flow_run.state_type else None,
            "message": flow_run.state.message if flow_run.state else None,
            "work_pool": flow_run.work_pool_name,
            "worker": flow_run.labels.get("prefect.worker.name"),
            "parameters": flow_run.parameters,
            "seconds_after_upload": {
                state: round((at - uploaded_at).total_seconds(), 1) for state, at in times.items()
            },
        }

    run_ids = [run.id, *(child.id for child in children)]
    artifacts = client.read_artifacts(
        artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=run_ids))
    )
    by_run = {str(i): sorted(a.key for a in artifacts if a.flow_run_id == i) for i in run_ids}
    contents = {
        a.key: a.data for a in artifacts if a.key in ("retrain-decision", "retrain-summary")
    }
    return {
        "retrain_runs": len(retrain_runs),
        "retrain": facts(run),
        "subruns": [facts(child) for child in children],
        "artifacts": by_run,
        "contents": contents,
    }


def problems(found: dict[str, Any]) -> list[str]:
    """The checks, as sentences a person can act on; empty when everything held."""
    wrong = []
    retrain, subruns = found["retrain"], found["subruns"]
    if found["retrain_runs"] != 1:
        wrong.append(f"{found['retrain_runs']} retrain runs for one burst of uploads, not 1")
    if retrain["state"] != "COMPLETED":
        wrong.append(f"the retrain run ended {retrain['state']}: {retrain['message']}")
    if (retrain["work_pool"], retrain["worker"]) != ("cpu", "cpu-worker"):
        wrong.append(f"retrain ran on {retrain['work_pool']}/{retrain['worker']}, not cpu")
    from tasks.config import S3Settings
    from tasks.storage.layout import raw_uri

    arrival = f"new support logs: {raw_uri(S3Settings(bucket=BUCKET))}"
    if not retrain["parameters"]["params"]["reason"].startswith(arrival):
        wrong.append(f"the run's reason is not the arrival: {retrain['parameters']}")
    fine_tunes = [r for r in subruns if r["deployment"] == FINE_TUNE]
    if len(fine_tunes) != 1:
        wrong.append(f"{len(fine_tunes)} {FINE_TUNE} subruns, not 1: {subruns}")
    for sub in fine_tunes:
        if (sub["state"], sub["work_pool"], sub["worker"]) != ("COMPLETED", "gpu", "gpu-worker"):
            wrong.append(f"the fine-tune subrun: {sub}")
        trained = set(found["artifacts"].get(sub["id"], []))
        if missing := TRAINING_ARTIFACTS - trained:
            wrong.append(f"the fine-tune subrun lacks the artifacts {sorted(missing)}")
    stages = set(found["artifacts"].get(retrain["id"], []))
    if missing := STAGE_ARTIFACTS - stages:
        wrong.append(f"the retrain run lacks the artifacts {sorted(missing)}")
    summary = found["contents"].get("retrain-summary", "")
    decision = found["contents"].get("retrain-decision", "")
    if "**promoted**" not in summary and "**not_promoted**" not in summary:
        wrong.append(f"the summary reaches no promotion decision: {summary[:300]}")
    if "## Gate:" not in decision:
        wrong.append(f"the decision artifact has no gate verdict: {decision[:300]}")
    return wrong


def run_e2e(
    home: Path, model_dir: Path | None = None, timeout_s: float = 600, log=print
) -> dict[str, Any]:
    """The whole check in `home` (a temporary directory); returns what was found and timings."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    started = time.monotonic()
    phases: dict[str, float] = {}

    def phase(name: str) -> None:
        phases[name] = round(time.monotonic() - started, 1)
        log(f"{phases[name]:6.1f} s  {name}")

    model_dir = model_dir or tiny_model(home / "tiny-model")
    phase("tiny model ready")
    logs = home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    pids: dict[str, int] = {}
    with ui_check.local_stack(home) as env:
        env.update(
            E2E_ENV,
            RETRAIN_PROJECT_DIR=str(local_stack.ROOT),
            RETRAIN_CACHE_DIR=str(home / "cache"),
            RETRAIN_TRAINING__BASE_MODEL=str(model_dir),
        )
        phase("moto S3 and the Prefect server answer")
        queue_url = local_stack.s3_notifications(env)
        local_stack.pools_and_gpu_slots(env)
        try:
            for name, command in local_stack.workers_and_bridge(queue_url).items():
                pids[name] = local_stack.start(name, command, env, logs)
            local_stack.deploy(env, ["support-bot", "gpu"])
            phase("pools, workers, bridge and deployments up")
            uploaded_at = datetime.now(UTC)
            keys = seed_logs(env)
            phase(f"{len(keys)} log objects uploaded")
            with (
                temporary_settings({PREFECT_API_URL: env["PREFECT_API_URL"]}),
                get_client(sync_client=True) as client,
            ):
                run = wait_for_retrain(client, timeout_s, log)
                phase("retrain run ended")
                found = describe(client, uploaded_at, run)
        finally:
            local_stack.stop(pids)
            phase("workers and bridge stopped")
    phase("moto S3 and the Prefect server stopped")
    found["phases_s"] = phases
    found["logs"] = str(logs)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=local_stack.ROOT / "build" / "e2e-check")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="e2e-check-") as home:
        try:
            found = run_e2e(Path(home))
        finally:  # the processes' logs outlive the temporary directory
            for log in (Path(home) / "logs").glob("*.log"):
                (args.out / log.name).write_bytes(log.read_bytes())
            if (Path(home) / "servers.log").exists():
                (args.out / "servers.log").write_bytes((Path(home) / "servers.log").read_bytes())
    (args.out / "e2e.json").write_text(json.dumps(found, indent=2, default=str))
    wrong = problems(found)
    for line in wrong:
        print(f"FAIL: {line}")
    print(f"{'FAILED' if wrong else 'OK'}: details in {args.out}/e2e.json and its *.log files")
    raise SystemExit(1 if wrong else 0)


if __name__ == "__main__":
    main()
