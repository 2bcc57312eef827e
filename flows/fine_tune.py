"""The fine-tune flow: stage 4 of a retrain, runnable on another machine (a GPU worker).

It takes small typed references (tasks/train/handoff.py `FineTuneParams`) and answers with S3 URIs:
the adapter, the training report, the checkpoints. The retrain flow calls it

- as the deployment `training.worker.deployment` (e.g. `fine-tune/gpu`, on the `gpu` work
  pool) with `run_deployment`, when that setting is set; the run holds one slot of the Prefect
  global concurrency limit `gpu` while it trains;
- in its own process otherwise (the demo, most tests), as a subflow.

Either way the answer comes back through S3, never as a local path.

Several GPUs, or a run outside Prefect (the same entry point, no server needed):

    accelerate launch --config_file deployments/accelerate/ddp.yaml -m flows.fine_tune params.json
    python -m flows.fine_tune params.json      # one process (CPU or one GPU)

A deployment run does the same when `training.worker.launch_command` is set (e.g.
`accelerate launch --config_file deployments/accelerate/ddp.yaml`, with `worker.gpus = 2`).
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.concurrency.sync import concurrency
from prefect.context import FlowRunContext
from prefect.deployments import run_deployment

from tasks.config import Settings, apply_runtime_env, current_settings, use_settings
from tasks.prepare.dataset import DatasetRef
from tasks.prepare.window import TrainingWindow
from tasks.promote.registry import Champion, version_key
from tasks.storage import layout
from tasks.train.handoff import (
    FineTuneOutput,
    FineTuneParams,
    challenger_result,
    read_output,
    run_fine_tune,
    write_params,
)
from tasks.train.result import TrainResult


@contextmanager
def gpu_slot(limit: str, gpus: int = 1) -> Iterator[None]:
    """Hold `gpus` slots of the global concurrency limit `limit`; say so when none are free."""
    from prefect.client.orchestration import get_client

    log = get_run_logger()
    with get_client(sync_client=True) as client:
        state = client.read_global_concurrency_limit_by_name(limit)
    if state.active_slots + gpus > state.limit:
        log.info(
            "waiting for a `%s` slot: %d of %d are in use by other fine-tune runs",
            limit,
            state.active_slots,
            state.limit,
        )
    asked = time.monotonic()
    with concurrency(limit, occupy=gpus, strict=True):
        log.info("holding a `%s` slot (waited %.1f s)", limit, time.monotonic() - asked)
        yield


def _own_deployment_id() -> str | None:
    """This run's own deployment; None for a subflow (even of a deployed retrain run)."""
    context = FlowRunContext.get()
    run = context.flow_run if context else None
    return str(run.deployment_id) if run and run.deployment_id else None


def launch(command: str, params: FineTuneParams, settings: Settings) -> FineTuneOutput:
    """Train in processes started by `command` (accelerate launch: one per GPU); rank 0
    uploads, and the answer is read back from S3."""
    run_dir = settings.cache_dir / "runs" / params.run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    params_file = write_params(params, run_dir / "params.json")
    argv = [*shlex.split(command), "-m", "flows.fine_tune", str(params_file)]
    get_run_logger().info("training in separate processes: %s", shlex.join(argv))
    s3 = settings.s3  # the processes read Settings() from the environment: same S3, same cache
    env = {
        **os.environ,
        "RETRAIN_CACHE_DIR": str(settings.cache_dir),
        "RETRAIN_S3__BUCKET": s3.bucket,
        "RETRAIN_S3__REGION": s3.region,
        **({"RETRAIN_S3__ENDPOINT_URL": s3.endpoint_url} if s3.endpoint_url else {}),
    }
    subprocess.run(argv, check=True, env=env, cwd=Path(__file__).resolve().parents[1])
    return read_output(settings, params.run_id)


def _train(params: FineTuneParams, settings: Settings) -> FineTuneOutput:
    worker = params.training.worker
    slot = gpu_slot(worker.gpu_limit, worker.gpus) if _own_deployment_id() else nullcontext()
    with slot:  # a worker's run holds its GPUs' slots while it trains
        if worker.launch_command:
            return launch(worker.launch_command, params, settings)
        output = run_fine_tune(settings, params)
    assert output is not None  # a flow run is a single process: rank 0
    return output


@flow(name="fine-tune")
def fine_tune(params: FineTuneParams) -> FineTuneOutput:
    """Train the challenger from S3 references on this worker, upload adapter + report; returns
    their URIs. Endpoint, bucket and cache come from the worker's environment (RETRAIN_* or
    retrain.toml), never from whoever starts the run; as a subflow of retrain, from the retrain
    run's settings (`use_settings`)."""
    apply_runtime_env()
    return _train(params, current_settings())


def fine_tune_stage(
    settings: Settings,
    dataset: DatasetRef,
    run_id: str,
    window: TrainingWindow,
    champion: Champion,
) -> TrainResult:
    """Stage 4 (local backend): train on a GPU worker or here; the challenger comes via S3."""
    init_uri = None
    if settings.training.init == "champion" and champion.model.version:
        adapter_prefix = version_key(settings, champion.model.version, "adapter/")
        init_uri = layout.uri(settings.s3, adapter_prefix)
    params = FineTuneParams(
        run_id=run_id,
        bucket=settings.s3.bucket,
        dataset=dataset,
        window=window,
        training=settings.training,
        init_adapter_uri=init_uri,
    )
    deployment = settings.training.worker.deployment
    if deployment:
        run = run_deployment(
            deployment, parameters={"params": params.model_dump(mode="json")}, timeout=None
        )
        if not run.state or not run.state.is_completed():
            state = run.state.name if run.state else "unknown"
            raise RuntimeError(
                f"fine-tune deployment {deployment!r} run {run.id} ended {state}: see its "
                "logs in the Prefect UI; the checkpoints in S3 let a re-run resume"
            )
    else:
        with use_settings(settings):
            fine_tune(params)
    return challenger_result(settings, read_output(settings, run_id))


def main(params_file: str) -> None:
    """`python -m flows.fine_tune params.json`: train without Prefect (accelerate launch)."""
    apply_runtime_env()
    # Prefect configured the root logger on import; outside a run, plain lines on stderr
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", force=True)
    params = FineTuneParams.model_validate_json(Path(params_file).read_text())
    output = run_fine_tune(Settings(), params)
    if output is not None:
        print(output.adapter_uri)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(
            "usage: python -m flows.fine_tune PARAMS.json (see tasks/train/handoff.py)"
        )
    main(sys.argv[1])
