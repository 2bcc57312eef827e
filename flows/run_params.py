"""What a person may choose when starting a retrain, and the flow deployments run.

The retrain flow in flows/retrain.py takes the whole `Settings` object, which includes the S3
endpoint, the cache directory and the base model: letting anyone who may start a run from the UI
set those would let them point a run at another endpoint or model. Deployments therefore run
`retrain_deployment`, whose only parameter is the small `RunParams` form below (the UI renders it
from the JSON schema, with these descriptions and limits); everything else comes from the
worker's environment (`RETRAIN_*` variables or retrain.toml), where an operator put it.

It carries the flow name `retrain`, so its runs, artifacts and events read as retrain runs.
"""

from __future__ import annotations

from typing import Annotated

from prefect import flow, get_run_logger
from pydantic import BaseModel, ConfigDict, Field

from flows.reports.summary import RunSummary  # light; resolvable, so Prefect reads the signature
from flows.run_guard import one_run_per_model
from tasks.config import Settings, apply_runtime_env

MODEL_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"


class RunParams(BaseModel):
    """The choices a run exposes in the Prefect UI form; no infrastructure settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_name: Annotated[
        str,
        Field(
            pattern=MODEL_NAME_PATTERN,
            description="Registry name of the model to retrain (lower-case letters, digits, -).",
        ),
    ] = "support-bot"
    max_steps: Annotated[
        int | None,
        Field(
            ge=1,
            le=5000,
            description="Training budget in optimizer steps; empty = the worker's setting.",
        ),
    ] = None
    reason: Annotated[
        str,
        Field(
            max_length=300,
            description="Why this run started (filled in by schedules and event triggers).",
        ),
    ] = "manual"


def settings_for(params: RunParams) -> Settings:
    """The worker's settings with the run's choices applied on top."""
    settings = Settings()
    training = settings.training
    if params.max_steps is not None:
        training = training.model_copy(update={"max_steps": params.max_steps})
    return settings.model_copy(update={"model_name": params.model_name, "training": training})


@flow(name="retrain")
def retrain_deployment(params: RunParams = RunParams()) -> RunSummary:  # noqa: B008 (frozen)
    """Retrain one model with the worker's infrastructure settings and the run's choices."""
    apply_runtime_env()
    logger = get_run_logger()
    logger.info("retrain of %s started: %s", params.model_name, params.reason)
    # imported here, not at module level: the pipeline's libraries (torch, transformers, GX)
    # take seconds to import, and the run shows as Running (with this log line) meanwhile
    from flows.retrain import retrain

    # one retrain of a model at a time, whoever started it (flows/run_guard.py); .fn: the
    # pipeline runs as this flow run (one run in the UI), not as a nested one
    with one_run_per_model(params.model_name, logger.info):
        return retrain.fn(settings=settings_for(params))


class MonitorParams(BaseModel):
    """The drift monitor's form: which model to watch; no infrastructure settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_name: Annotated[
        str,
        Field(pattern=MODEL_NAME_PATTERN, description="Registry name of the model to watch."),
    ] = "support-bot"


@flow(name="monitor")
def monitor_deployment(params: MonitorParams = MonitorParams()) -> dict:  # noqa: B008 (frozen)
    """Watch one model for drift with the worker's settings (flows/monitor.py)."""
    apply_runtime_env()
    from flows.monitor import monitor

    settings = Settings().model_copy(update={"model_name": params.model_name})
    return monitor.fn(settings=settings).model_dump()
