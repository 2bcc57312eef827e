"""The monitor flow: is the champion still fit for today's conversations? On drift it emits
`retrain.drift.detected`, which the retrain deployment's trigger turns into a run.

    retrain monitor                       # once, against the configured S3 and Prefect API
    prefect deploy --prefect-file deployments/prefect.yaml --name drift-monitor   # hourly

Like the retrain flow, its one parameter is a small form (`MonitorParams`): which model to
watch. Everything else comes from the worker's environment, or from `tasks.config.use_settings`
for an in-process caller.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.events import emit_event
from prefect.runtime import flow_run
from pydantic import BaseModel, ConfigDict, Field

from flows.reports import drift as drift_report
from tasks.config import ModelNameChoice, Settings, apply_runtime_env, current_settings
from tasks.environment import require_ready
from tasks.monitor.alerts import (
    Alert,
    decide_alert,
    load_state,
    save_state,
    store_report,
    with_history,
)
from tasks.monitor.data_drift import DataDriftReport, DriftStatistic, compare_batches
from tasks.monitor.performance_drift import performance_drift
from tasks.monitor.sources import Batch, read_batch, recent_window, training_batch
from tasks.promote.registry import (
    CHAMPION,
    alias_version,
    current_champion,
    read_alias,
    read_card,
)
from tasks.storage.s3 import s3_client

Verdict = Literal["drift", "no_drift", "not_enough_data"]
EVENT = "retrain.drift.detected"


class MonitorParams(BaseModel):
    """The drift monitor's form: which model to watch; no infrastructure settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_name: ModelNameChoice = Field(
        None, description="Registry name of the model to watch; empty = the worker's setting."
    )


class Reference(BaseModel):
    batch: Batch
    champion_version: str | None
    card: dict[str, Any] | None


class MonitorResult(BaseModel):
    run_id: str
    verdict: Verdict
    alert: Alert
    statistics: list[DriftStatistic]
    messages: list[str]
    report_key: str


@task(retries=2, retry_delay_seconds=10)
def read_window(settings: Settings, now: datetime) -> Batch:
    """Recent raw logs; the ingest watermark is not read or moved."""
    return recent_window(settings, now)


@task(retries=2, retry_delay_seconds=10)
def read_reference(settings: Settings) -> Reference | None:
    """The champion's training logs (from its card), else `drift.reference`, else None."""
    s3 = settings.s3
    client = s3_client(s3)
    version = alias_version(read_alias(client, settings, CHAMPION))
    if version is not None:
        card = read_card(client, settings, version)
        return Reference(
            batch=training_batch(settings, card.body), champion_version=version, card=card.body
        )
    if settings.drift.reference:
        return Reference(
            batch=read_batch(settings.drift.reference, s3), champion_version=None, card=None
        )
    return None


@task
def data_drift(reference: Batch, window: Batch, settings: Settings) -> DataDriftReport:
    return compare_batches(reference.records, window.records, settings.drift)


@task
def champion_performance(
    settings: Settings, reference: Reference, window: Batch
) -> DriftStatistic | str:
    champion = current_champion(settings)
    return performance_drift(settings, champion.model, reference.card or {}, window.records)


def _verdict(statistics: list[DriftStatistic]) -> Verdict:
    if not statistics:
        return "not_enough_data"
    return "drift" if any(s.drifted for s in statistics) else "no_drift"


def evidence(statistics: list[DriftStatistic]) -> list[dict[str, Any]]:
    """What an event or report may carry: numbers and class names, never conversation text."""
    return [s.model_dump(exclude_none=True) for s in statistics]


@flow(name="monitor")
def monitor(params: MonitorParams = MonitorParams()) -> MonitorResult:  # noqa: B008 (frozen)
    """Compare recent support logs with the champion's training data and its promotion metrics.

    1 window      raw logs of the last `drift.window_hours` (the watermark is left alone)
    2 reference   the champion's training logs (card → dataset manifest) or `drift.reference`
    3 data drift  class mix, text lengths, out-of-vocabulary rate, MiniLM domain classifier
    4 performance the champion's answer loss on recent conversations vs at promotion
    5 alert       hysteresis + cooldown against the stored state; resolved drifts said once
    6 report      reports/<run-id>/drift.json + chart, artifact, `retrain.drift.detected`
    """
    apply_runtime_env()
    settings = current_settings()
    if params.model_name:
        settings = settings.model_copy(update={"model_name": params.model_name})
    require_ready(settings)  # credentials, S3, bucket, Prefect API, base model: fail in seconds
    now = datetime.now(UTC)
    run_id = str(flow_run.get_id() or now.strftime("local-%Y%m%dT%H%M%S"))
    messages: list[str] = []

    # 1 window, 2 reference
    window = read_window(settings, now)
    reference = read_reference(settings)

    # 3 data drift
    statistics: list[DriftStatistic] = []
    if reference is None:
        messages.append(
            "not enough data: no champion and no `drift.reference` batch to compare with"
        )
    else:
        data = data_drift(reference.batch, window, settings)
        statistics += data.statistics
        messages.append(data.message)

    # 4 performance
    if reference is not None and reference.card is not None:
        performance = champion_performance(settings, reference, window)
        if isinstance(performance, str):
            messages.append(performance)
        else:
            statistics.append(performance)
            messages.append(
                f"champion loss {performance.detail['recent_loss']:.4f} on recent conversations, "
                f"{performance.detail['promotion_loss']:.4f} at promotion"
            )

    # 5 alert
    verdict = _verdict(statistics)
    state, etag = load_state(settings)
    alert, state = decide_alert(state, statistics, now, settings.drift)
    state = with_history(state, run_id, now, verdict, statistics, settings.drift.history_runs)

    # 6 report
    report = {
        "run_id": run_id,
        "at": now.isoformat(),
        "model": settings.model_name,
        "champion_version": reference.champion_version if reference else None,
        "verdict": verdict,
        "messages": messages,
        "alert": alert.model_dump(),
        "window": {
            "hours": settings.drift.window_hours,
            "records": len(window.records),
            "rejected_lines": window.rejected,
        },
        "reference": {
            "source": reference.batch.source if reference else None,
            "records": len(reference.batch.records) if reference else 0,
        },
        "statistics": evidence(statistics),
    }
    chart = drift_report.trend_chart(state.history)
    report_key = store_report(settings, run_id, report, chart)
    create_markdown_artifact(
        drift_report.markdown(report, statistics, chart),
        key="drift-monitor",
        description=f"drift monitor: {verdict}",
    )
    save_state(settings, state, etag)
    if alert.fire:
        emit_event(
            EVENT,
            resource={"prefect.resource.id": f"retrain.model.{settings.model_name}"},
            payload={
                **{k: report[k] for k in ("run_id", "champion_version", "window")},
                "drifted": alert.new,
                "statistics": evidence(statistics),
                "report": report_key,
            },
        )
    get_run_logger().info("%s; %s; report %s", verdict, alert.reason, report_key)
    return MonitorResult(
        run_id=run_id,
        verdict=verdict,
        alert=alert,
        statistics=statistics,
        messages=messages,
        report_key=report_key,
    )
