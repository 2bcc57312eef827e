"""`retrain doctor`: is this machine ready to run the pipeline? The start-up checks every run
does first (tasks/environment.py), answered in seconds with what to set or do.

    retrain doctor            # one line per check
    retrain doctor --json     # {"checks": [{"name", "status", "message"}], "ok": bool}

Exit 0 when nothing failed (skipped checks are fine), 1 when a check failed.
"""

from __future__ import annotations

from typing import Annotated

import typer

from flows.cli.common import load_settings
from tasks.config import Settings


def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Print the checks as JSON.")] = False,
) -> None:
    """Check S3 credentials, endpoint and bucket, the Prefect API and the base model."""
    from tasks.environment import check_environment

    report = check_environment(load_settings())
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
    else:
        for check in report.checks:
            colour = {"ok": "green", "failed": "red"}.get(check.status)
            typer.secho(f"{check.status:<8}{check.name:<16}{check.message}", fg=colour)
        verdict = "ready to run" if report.ok else f"{len(report.failures)} check(s) failed"
        typer.echo(f"\n{verdict}")
    if not report.ok:
        raise typer.Exit(1)


def exit_unless_ready(settings: Settings) -> None:
    """For `retrain run`: fail before a Prefect server starts, with each failure's fix."""
    from tasks.environment import EnvironmentNotReady, require_ready

    try:
        require_ready(settings)
    except EnvironmentNotReady as not_ready:
        typer.secho(str(not_ready), err=True, fg="red")
        raise typer.Exit(1) from not_ready
