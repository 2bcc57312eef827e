"""When a drift verdict becomes an alert: hysteresis, cooldown, "resolved" said once, history.

The monitor's state lives in `state/drift-<model>.json`, written with a conditional write so two
monitor runs cannot both announce the same drift:

- a statistic becomes an *active* drift when its verdict is drift, and stays active until its
  value falls below `resolve_fraction` of the way from no drift to the threshold (hysteresis),
  so a statistic hovering around its threshold does not flap;
- `retrain.drift.detected` fires when an active drift has not been announced yet and the last
  alert is more than `cooldown_hours` old; a drift found during the cooldown is announced
  once the cooldown is over, if it is still active then;
- a statistic that stops being active is reported as resolved in that run only;
- a statistic with no value this run (not enough data) keeps its state: no evidence either way.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from prefect import task
from pydantic import BaseModel

from tasks.config import DriftSettings, Settings
from tasks.monitor.data_drift import DriftStatistic
from tasks.storage import layout
from tasks.storage.s3 import get_json, put_json, put_json_if, s3_client


class ActiveDrift(BaseModel):
    since: datetime
    announced: bool = False


class MonitorState(BaseModel):
    active: dict[str, ActiveDrift] = {}
    last_alert_at: datetime | None = None
    history: list[dict[str, Any]] = []  # per run: at, run_id, verdict, {name: value, threshold}


class Alert(BaseModel):
    """What this run says: fire or not, and why."""

    fire: bool
    active: list[str]
    new: list[str]
    resolved: list[str]
    reason: str


def resolve_level(statistic: DriftStatistic, config: DriftSettings) -> float:
    span = statistic.threshold - statistic.baseline
    return statistic.baseline + span * config.resolve_fraction


def still_active(statistic: DriftStatistic, config: DriftSettings) -> bool:
    return statistic.drifted or statistic.value > resolve_level(statistic, config)


def decide_alert(
    state: MonitorState, statistics: list[DriftStatistic], now: datetime, config: DriftSettings
) -> tuple[Alert, MonitorState]:
    """The alert for this run's statistics and the state to store for the next run."""
    active = dict(state.active)
    resolved = []
    for statistic in statistics:
        if statistic.name in active:
            if not still_active(statistic, config):
                resolved.append(statistic.name)
                del active[statistic.name]
        elif statistic.drifted:
            active[statistic.name] = ActiveDrift(since=now)
    unannounced = sorted(name for name, drift in active.items() if not drift.announced)
    cooldown_ends = (
        state.last_alert_at + timedelta(hours=config.cooldown_hours)
        if state.last_alert_at
        else None
    )
    in_cooldown = cooldown_ends is not None and now < cooldown_ends
    fire = bool(unannounced) and not in_cooldown
    if fire:
        reason = f"drift detected: {', '.join(unannounced)}"
        active = {
            name: drift.model_copy(update={"announced": True}) for name, drift in active.items()
        }
    elif unannounced:
        until = f"{cooldown_ends:%Y-%m-%d %H:%M} UTC"
        reason = f"drift in {', '.join(unannounced)} held back: cooldown until {until}"
    elif active:
        reason = f"drift already announced, still active: {', '.join(sorted(active))}"
    else:
        reason = "no active drift"
    if resolved:
        reason += f"; resolved: {', '.join(resolved)}"
    alert = Alert(
        fire=fire,
        active=sorted(active),
        new=unannounced if fire else [],
        resolved=resolved,
        reason=reason,
    )
    new_state = MonitorState(
        active=active, last_alert_at=now if fire else state.last_alert_at, history=state.history
    )
    return alert, new_state


def with_history(
    state: MonitorState,
    run_id: str,
    now: datetime,
    verdict: str,
    statistics: list[DriftStatistic],
    keep: int,
) -> MonitorState:
    entry = {
        "at": now.isoformat(),
        "run_id": run_id,
        "verdict": verdict,
        "statistics": {
            s.name: {"value": s.value, "threshold": s.threshold, "drifted": s.drifted}
            for s in statistics
        },
    }
    return state.model_copy(update={"history": [*state.history, entry][-keep:]})


def _state_key(settings: Settings) -> str:
    return layout.drift_state_key(settings.s3, settings.model_name)


@task(retries=2, retry_delay_seconds=5)
def load_state(settings: Settings) -> tuple[MonitorState, str | None]:
    """The monitor's state and its ETag (None when the monitor never ran)."""
    stored = get_json(s3_client(settings.s3), settings.s3.bucket, _state_key(settings))
    return MonitorState.model_validate(stored.body or {}), stored.etag


@task  # conditional write: a lost race must fail, not be retried over the winner's state
def save_state(settings: Settings, state: MonitorState, etag: str | None) -> None:
    body = state.model_dump(mode="json")
    put_json_if(s3_client(settings.s3), settings.s3.bucket, _state_key(settings), body, etag)


@task(retries=2, retry_delay_seconds=5)
def store_report(settings: Settings, run_id: str, report: dict[str, Any], chart_png: bytes) -> str:
    """reports/<run-id>/drift.json (+ drift.png): every statistic, threshold and verdict."""
    s3 = settings.s3
    client = s3_client(s3)
    report_key = layout.drift_report_key(s3, run_id)
    put_json(client, s3.bucket, report_key, report)
    client.put_object(
        Bucket=s3.bucket,
        Key=layout.drift_chart_key(s3, run_id),
        Body=chart_png,
        ContentType="image/png",
    )
    return report_key
