"""`retrain monitor`: run the drift monitor flow once (flows/monitor.py).

retrain monitor --json
"""

from __future__ import annotations

import contextlib
import sys
from typing import Annotated

import typer

from flows.cli.drift import text_table
from tasks.config import apply_runtime_env


def monitor(
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Run the drift monitor once against the configured S3 and Prefect API."""
    from flows.monitor import monitor as monitor_flow

    apply_runtime_env()
    try:
        with contextlib.redirect_stdout(sys.stderr):
            result = monitor_flow()
    except Exception as error:
        typer.secho(f"monitor failed: {type(error).__name__}: {error}", err=True, fg="red")
        raise typer.Exit(1) from error
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
    else:
        typer.echo(f"{result.verdict}: {result.alert.reason}")
        typer.echo("\n".join(result.messages))
        if result.statistics:
            typer.echo("\n" + text_table(result.statistics))
        typer.echo(f"\nreport: {result.report_key}")
