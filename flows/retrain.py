"""The retrain flow: new support logs in S3 → a better chatbot model, or a reasoned "no".

    retrain run            # against the configured bucket and Prefect API
    retrain demo           # everything local: moto S3, ephemeral Prefect, packaged SmolLM2

Deployments (deployments/prefect.yaml) run this same flow. Its only parameter is the small
`RunParams` form below, which the Prefect UI renders from its JSON schema: endpoint, bucket,
cache and base model come from the worker's environment (`RETRAIN_*` or retrain.toml), where an
operator put them, never from whoever starts a run. In-process callers (the CLI, tests) lay
their own settings over the environment's with `tasks.config.use_settings`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from prefect import flow, get_run_logger
from prefect.events import emit_event
from prefect.runtime import flow_run
from pydantic import BaseModel, ConfigDict, Field

from flows import approval
from flows.fine_tune import fine_tune_stage
from flows.reports import evaluation, stages
from flows.reports.summary import RunSummary
from flows.run_guard import one_run_per_model
from tasks.config import ModelNameChoice, Settings, apply_runtime_env, current_settings
from tasks.environment import require_ready
from tasks.evaluate.aggregate import GOLDEN, RECENT, ModelRef, compare, score_model
from tasks.evaluate.hosted import evaluate_hosted
from tasks.gates.suites import validate_batch
from tasks.ingest.objects import commit_watermark, find_new_objects, ingest_objects
from tasks.prepare.dataset import build_dataset
from tasks.prepare.golden import golden_status
from tasks.prepare.window import build_window
from tasks.promote.policy import Decision, decide
from tasks.promote.registry import (
    apply_decision,
    current_champion,
    model_card,
    new_version_id,
    register_api_version,
    register_version,
)
from tasks.storage import layout
from tasks.train.api.guards import choose_backend
from tasks.train.api.jobs import cancel_on_flow_cancellation, train_api


class RunParams(BaseModel):
    """The choices a run exposes in the Prefect UI form; no infrastructure settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_name: ModelNameChoice = Field(
        None, description="Registry name of the model to retrain; empty = the worker's setting."
    )
    max_steps: Annotated[
        int | None,
        Field(
            ge=1,
            le=5000,
            description="Training budget in optimizer steps; empty = the worker's setting.",
        ),
    ] = None
    reprocess: Annotated[
        list[str],
        Field(
            max_length=100,
            description="Raw objects (s3://bucket/raw/...) to read again even if already handled.",
        ),
    ] = []
    reason: Annotated[
        str,
        Field(
            max_length=300,
            description="Why this run started (filled in by schedules and event triggers).",
        ),
    ] = "manual"

    def applied_to(self, settings: Settings) -> Settings:
        """`settings` with this run's choices on top."""
        training = settings.training
        if self.max_steps is not None:
            training = training.model_copy(update={"max_steps": self.max_steps})
        model_name = self.model_name or settings.model_name
        return settings.model_copy(update={"model_name": model_name, "training": training})


def _resource(settings: Settings) -> dict[str, str]:
    return {"prefect.resource.id": f"retrain.model.{settings.model_name}"}


@flow(name="retrain", on_cancellation=[cancel_on_flow_cancellation])
def retrain(params: RunParams = RunParams()) -> RunSummary:  # noqa: B008 (frozen)
    """Retrain the support chatbot on logs that arrived since the last run.

    1 ingest    new objects only (watermark; `reprocess` re-reads named ones), PII redacted
                before anything is written, bad records quarantined as pointers to their source
    2 validate  Great Expectations suites; a `block` failure stops before training, too few
                records leave the objects pending for the next run
    3 prepare   chat-format dataset version, frozen golden set, splits
    4 fine-tune LoRA with TRL/PEFT on the worker (CPU or GPU), new batch + replay window;
                or a job on a fine-tuning API (training.backend = api)
    5 evaluate  challenger vs champion (or base model) on the golden and recent held-out sets:
                loss, generated replies (ROUGE-L, similarity, safety), per category/intent/segment
    6 promote   paired-bootstrap gate (tasks/promote/policy.py), registry version, alias moved on a
    win
    """
    apply_runtime_env()  # deployments start here, not in the CLI: offline and no analytics
    settings = params.applied_to(current_settings())
    logger = get_run_logger()
    logger.info("retrain of %s started: %s", settings.model_name, params.reason)
    # one retrain of a model at a time, whoever started it (flows/run_guard.py)
    with one_run_per_model(settings.model_name, logger.info):
        return _retrain(settings, params.reprocess)


def _retrain(settings: Settings, reprocess: list[str]) -> RunSummary:
    require_ready(settings)  # credentials, S3, bucket, Prefect API, base model: fail in seconds
    run_id = str(flow_run.get_id() or datetime.now(UTC).strftime("local-%Y%m%dT%H%M%S"))
    summary = RunSummary(run_id=run_id, model_name=settings.model_name, bucket=settings.s3.bucket)
    # a fine-tuning provider past its cut-off refuses the run here, or reroutes it to local
    backend = choose_backend(settings)
    summary = summary.with_notes(backend.notes)

    # 1 ingest
    new = find_new_objects(settings, reprocess)
    if not new.objects:
        where = layout.raw_uri(settings.s3)
        reason = f"no new support logs under {where} since the last run: nothing to do"
        return stages.finish(
            summary.model_copy(update={"decision": "no_new_data", "reasons": [reason]})
        )
    ingested = ingest_objects(settings, new.objects, run_id)
    summary = summary.with_ingest(new.objects, ingested)
    stages.ingest(ingested, len(new.objects))

    # 2 validate (records arrive redacted: ingest removed personal data before writing)
    quality = validate_batch(
        settings, ingested.staging_key, run_id, ingested.quarantined, ingested.pii_redactions
    )
    summary = summary.with_quality(quality)
    stages.quality(quality, settings.quality)
    if quality.verdict == "pending":  # too few records: the objects stay for the next run
        return stages.finish(summary.model_copy(update={"decision": "data_pending"}))
    if quality.verdict == "rejected":
        emit_event(
            "retrain.data.rejected",
            resource=_resource(settings),
            payload={
                "run_id": run_id,
                "failed": quality.failed_counts,
                "report": quality.report_key,
            },
        )
        commit_watermark(settings, new, "rejected", run_id, quality.failed_critical)
        return stages.finish(summary.model_copy(update={"decision": "data_rejected"}))

    # 3 prepare (until a golden set can be frozen, the run waits for more logs: no training)
    golden = golden_status(settings, quality.redacted_key)
    if golden.pending:
        return stages.finish(
            summary.model_copy(
                update={"decision": "waiting_for_golden", "reasons": [golden.pending]}
            )
        )
    dataset = build_dataset(settings, quality.redacted_key, run_id, new.objects, quality.report_key)
    summary = summary.with_dataset(dataset)
    stages.dataset(dataset)

    # 4 fine-tune on the backend chosen above: locally on the window (new batch + replay),
    # from the base model or the champion; or as a job on a fine-tuning API
    hosted = backend.backend == "api"
    if hosted:
        trained = train_api(settings, dataset, run_id)
    else:
        window = build_window(settings, dataset)
        champion = current_champion(settings)
        # here or as the GPU deployment (training.worker.deployment); the adapter comes via S3
        trained = fine_tune_stage(settings, dataset, run_id, window, champion)
    summary = summary.with_training(trained)
    stages.training(trained)

    # 5 evaluate
    eval_sets = {GOLDEN: dataset.golden_key, RECENT: dataset.heldout_key}
    if hosted:
        champion, comparisons = evaluate_hosted(settings, trained, eval_sets)
    else:
        challenger = ModelRef(
            label="challenger",
            base_model_dir=trained.base_model_dir,
            adapter_dir=trained.adapter_dir,
            base_model=trained.base_model,
        )
        comparisons = compare(
            score_model(settings, challenger, eval_sets),
            score_model(settings, champion.model, eval_sets),
        )
    evaluation.evaluation(comparisons)

    # 6 promote
    decision = decide(
        comparisons, settings.promotion, has_champion=champion.model.version is not None
    )
    evaluation.decision(decision, comparisons)
    version = new_version_id()
    card = model_card(settings, version, run_id, dataset, trained, comparisons, decision)
    if hosted:
        model_uri = register_api_version(settings, version, trained, card)
    else:
        model_uri = register_version(
            settings, version, trained.adapter_dir, card, trained.merged_dir
        )
    if decision.promote and settings.promotion.require_approval:  # pauses for a person
        decision = approval.review(decision, version, settings.promotion.approval_timeout_s)
    outcome = apply_decision(settings, version, decision, champion, run_id)
    emit_event(
        "retrain.model.promoted" if outcome.promoted else "retrain.model.rejected",
        resource=_resource(settings),
        payload={"version": version, "run_id": run_id, "reasons": outcome.reasons},
    )
    commit_watermark(settings, new, "accepted", run_id)
    final = Decision(promote=outcome.promoted, reasons=outcome.reasons)
    summary = summary.with_decision(final, version, model_uri, comparisons)
    return stages.finish(summary)
