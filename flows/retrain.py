"""The retrain flow: new support logs in S3 → a better chatbot model, or a reasoned "no".

retrain run            # against the configured bucket and Prefect API
retrain demo           # everything local: moto S3, ephemeral Prefect, packaged SmolLM2
"""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import flow
from prefect.events import emit_event
from prefect.runtime import flow_run

from flows import report
from flows.summary import RunSummary
from tasks.api_guards import choose_backend
from tasks.config import Settings, apply_runtime_env
from tasks.dataset import build_dataset
from tasks.evaluate import GOLDEN, RECENT, ModelRef, compare, score_model
from tasks.evaluate_api import evaluate_hosted
from tasks.ingest import commit_watermark, find_new_objects, ingest_objects
from tasks.quality import validate_batch
from tasks.registry import (
    apply_decision,
    current_champion,
    decide,
    model_card,
    register_version,
)
from tasks.train_api import cancel_on_flow_cancellation, register_api_version, train_api
from tasks.train_local import train_local


def _resource(settings: Settings) -> dict[str, str]:
    return {"prefect.resource.id": f"retrain.model.{settings.model_name}"}


@flow(name="retrain", on_cancellation=[cancel_on_flow_cancellation])
def retrain(settings: Settings | None = None) -> RunSummary:
    """Retrain the support chatbot on logs that arrived since the last run.

    1 ingest    new objects only (watermark), quarantine bad records
    2 validate  PII redaction + Great Expectations gate; a failed gate stops before training
    3 prepare   chat-format dataset version, frozen golden set, splits
    4 fine-tune LoRA with TRL/PEFT on the worker (CPU or GPU), or a job on a fine-tuning API
    5 evaluate  challenger vs champion on the golden and recent held-out sets, per category
                (API models: generated replies, ROUGE-L)
    6 promote   policy gate with guardrails, registry version, champion alias moved on a win
    """
    apply_runtime_env()  # deployments start here, not in the CLI: offline and no analytics
    settings = settings or Settings()
    run_id = str(flow_run.get_id() or datetime.now(UTC).strftime("local-%Y%m%dT%H%M%S"))
    summary = RunSummary(run_id=run_id, model_name=settings.model_name, bucket=settings.s3.bucket)
    # a fine-tuning provider past its cut-off refuses the run here, or reroutes it to local
    backend = choose_backend(settings)
    summary = summary.with_notes(backend.notes)

    # 1 ingest
    new = find_new_objects(settings)
    if not new.objects:
        where = f"s3://{settings.s3.bucket}/{settings.s3.raw_prefix}"
        reason = f"no new support logs under {where} since the last run: nothing to do"
        return report.finish(
            summary.model_copy(update={"decision": "no_new_data", "reasons": [reason]})
        )
    ingested = ingest_objects(settings, new.objects, run_id)
    summary = summary.with_ingest(new.objects, ingested)
    report.ingest(ingested, len(new.objects))

    # 2 validate
    quality = validate_batch(settings, ingested.staging_key, run_id, ingested.quarantined)
    summary = summary.with_quality(quality)
    report.quality(quality)
    if not quality.passed:
        emit_event(
            "retrain.data.rejected",
            resource=_resource(settings),
            payload={
                "run_id": run_id,
                "failed": quality.failed_critical,
                "report": quality.report_key,
            },
        )
        commit_watermark(settings, new)  # the batch is handled: rejected with a report
        return report.finish(summary.model_copy(update={"decision": "data_rejected"}))

    # 3 prepare
    dataset = build_dataset(settings, quality.redacted_key, run_id, new.objects, quality.report_key)
    summary = summary.with_dataset(dataset)
    report.dataset(dataset)

    # 4 fine-tune on the backend chosen above
    hosted = backend.backend == "api"
    trained = (
        train_api(settings, dataset, run_id) if hosted else train_local(settings, dataset, run_id)
    )
    summary = summary.with_training(trained)
    report.training(trained)

    # 5 evaluate
    eval_sets = {GOLDEN: dataset.golden_key, RECENT: dataset.heldout_key}
    if hosted:
        champion, comparisons = evaluate_hosted(settings, trained, eval_sets)
    else:
        champion = current_champion(settings)
        challenger = ModelRef(
            label="challenger",
            base_model_dir=trained.base_model_dir,
            adapter_dir=trained.adapter_dir,
        )
        comparisons = compare(
            score_model(settings, challenger, eval_sets),
            score_model(settings, champion.model, eval_sets),
        )
    report.evaluation(comparisons)

    # 6 promote
    decision = decide(comparisons, settings.evaluation)
    version = f"v{datetime.now(UTC):%Y%m%d%H%M%S}"
    card = model_card(settings, version, run_id, dataset, trained, comparisons, decision)
    if hosted:
        model_uri = register_api_version(settings, version, trained, card)
    else:
        model_uri = register_version(settings, version, trained.adapter_dir, card)
    apply_decision(settings, version, decision, champion, run_id)
    emit_event(
        "retrain.model.promoted" if decision.promote else "retrain.model.rejected",
        resource=_resource(settings),
        payload={"version": version, "run_id": run_id, "reasons": decision.reasons},
    )
    commit_watermark(settings, new)
    summary = summary.with_decision(decision, version, model_uri, comparisons)
    return report.finish(summary)
