"""Start the flows in this process with a test's settings, as the CLI does (`use_settings`)."""

from __future__ import annotations

from flows.monitor import MonitorResult, monitor
from flows.reports.summary import RunSummary
from flows.retrain import RunParams, retrain
from tasks.config import Settings, use_settings


def run_retrain(settings: Settings, reprocess: list[str] | None = None) -> RunSummary:
    """One retrain flow run with `settings` laid over the environment's."""
    with use_settings(settings):
        return retrain(RunParams(reprocess=reprocess or [], reason="pytest"))


def run_monitor(settings: Settings) -> MonitorResult:
    """One monitor flow run with `settings` laid over the environment's."""
    with use_settings(settings):
        return monitor()
