"""When a verdict becomes `retrain.drift.detected`: hysteresis, cooldown, resolved said once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tasks.config import DriftSettings
from tasks.monitor.alerts import MonitorState, decide_alert, with_history
from tasks.monitor.data_drift import DriftStatistic

CONFIG = DriftSettings(cooldown_hours=24, resolve_fraction=0.8)
T0 = datetime(2026, 11, 22, 6, tzinfo=UTC)


def js(value: float, name: str = "category_mix") -> DriftStatistic:
    """A class-mix statistic with threshold 0.1, drifted exactly when above it."""
    return DriftStatistic(
        name=name, method="JS", value=value, threshold=0.1, p_value=0.0, drifted=value > 0.1
    )


def run_sequence(values: list[list[DriftStatistic]], hours: float = 1.0):
    """Feed one monitor run per entry, `hours` apart; the alerts in order."""
    state, alerts = MonitorState(), []
    for i, statistics in enumerate(values):
        alert, state = decide_alert(state, statistics, T0 + timedelta(hours=hours * i), CONFIG)
        alerts.append(alert)
    return alerts, state


def test_no_drift_never_fires():
    alerts, state = run_sequence([[js(0.02)], [js(0.05)], [js(0.09)]])
    assert not any(a.fire or a.active or a.resolved for a in alerts)
    assert state.last_alert_at is None and alerts[-1].reason == "no active drift"


def test_a_drift_fires_once_and_hysteresis_keeps_it_active_near_the_threshold():
    # 0.15 drifts; 0.095 and 0.085 are below the threshold but above 0.8 * 0.1: still active
    alerts, state = run_sequence([[js(0.15)], [js(0.095)], [js(0.12)], [js(0.085)], [js(0.05)]])
    assert [a.fire for a in alerts] == [True, False, False, False, False]
    assert alerts[0].new == ["category_mix"] and "drift detected" in alerts[0].reason
    assert [a.active for a in alerts[1:4]] == [["category_mix"]] * 3
    assert "already announced" in alerts[1].reason
    assert [a.resolved for a in alerts] == [[], [], [], [], ["category_mix"]]
    assert "resolved: category_mix" in alerts[4].reason
    assert state.active == {}


def test_resolved_is_said_once_and_a_later_drift_fires_again_after_the_cooldown():
    alerts, _ = run_sequence([[js(0.2)], [js(0.01)], [js(0.01)], [js(0.3)]], hours=12)
    assert [a.resolved for a in alerts] == [[], ["category_mix"], [], []]
    assert [a.fire for a in alerts] == [True, False, False, True]  # 36 h later: past cooldown


def test_a_new_drift_during_the_cooldown_waits_and_fires_when_it_ends_if_still_active():
    lengths = [
        [js(0.2), js(0.01, "agent_length")],
        [js(0.2), js(0.5, "agent_length")],  # 1 h later: in cooldown
        [js(0.2), js(0.5, "agent_length")],  # 25 h after the alert: fires
        [js(0.2), js(0.5, "agent_length")],
    ]
    alerts, state = run_sequence(lengths[:2])
    assert not alerts[1].fire and "held back: cooldown until" in alerts[1].reason
    later, _ = decide_alert(state, lengths[2][:], T0 + timedelta(hours=25), CONFIG)
    assert later.fire and later.new == ["agent_length"]


def test_a_window_without_statistics_keeps_the_state():
    alerts, state = run_sequence([[js(0.2)], []])
    assert alerts[1].active == ["category_mix"] and not alerts[1].resolved
    assert state.active["category_mix"].announced


def test_history_keeps_the_last_runs_numbers_only():
    state = MonitorState()
    for i in range(5):
        state = with_history(state, f"run-{i}", T0, "no_drift", [js(0.01 * i)], keep=3)
    assert [h["run_id"] for h in state.history] == ["run-2", "run-3", "run-4"]
    assert state.history[-1]["statistics"]["category_mix"] == {
        "value": 0.04,
        "threshold": 0.1,
        "drifted": False,
    }
