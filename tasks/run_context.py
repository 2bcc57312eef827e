"""Where a task is running: inside a Prefect run (log to the run, publish artifacts) or called
as a plain function (`task.fn(...)`, a `python -m` worker process), where it logs to Python's
logging and publishes nothing.
"""

from __future__ import annotations

import logging

from prefect import get_run_logger
from prefect.context import get_run_context
from prefect.exceptions import MissingContextError


def run_logger(name: str = "retrain") -> logging.Logger | logging.LoggerAdapter:
    """The Prefect run logger inside a run; the plain logger `name` outside one."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(name)


def in_prefect_run() -> bool:
    """True inside a flow or task run."""
    try:
        get_run_context()
    except MissingContextError:
        return False
    return True
