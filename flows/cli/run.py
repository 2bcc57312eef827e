"""`retrain run`: one retrain run against the configured S3 and Prefect API.

    retrain run --json
    retrain run --reprocess s3://bucket/raw/support-logs/dt=2026-11-21/support-logs.jsonl.gz

Exit 0 when the run completed, whatever it decided; 1 when it failed.
"""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Annotated

import typer

from flows.cli.common import JsonOption, load_settings
from flows.cli.doctor import exit_unless_ready
from tasks.config import Settings


def run_and_print(settings: Settings, as_json: bool, reprocess: list[str] | None = None) -> None:
    """Run the retrain flow with `settings`; print its summary (or why it failed, exit 1)."""
    from flows.reports.stages import render
    from flows.retrain import RunParams, retrain
    from tasks.config import use_settings

    started = time.perf_counter()
    try:
        # stdout carries only the summary (so `--json` output parses); anything a library
        # prints during the run goes to stderr with the logs.
        with contextlib.redirect_stdout(sys.stderr), use_settings(settings):
            summary = retrain(RunParams(reprocess=reprocess or [], reason="retrain run"))
    except Exception as error:  # report and exit non-zero; Prefect has already marked it Failed
        typer.secho(f"retrain run failed: {type(error).__name__}: {error}", err=True, fg="red")
        raise typer.Exit(1) from error
    if as_json:
        typer.echo(summary.model_dump_json(indent=2))
    else:
        typer.echo(render(summary))
        typer.echo(f"\nfinished in {time.perf_counter() - started:.0f} s")


def run(
    as_json: JsonOption = False,
    reprocess: Annotated[
        list[str] | None,
        typer.Option(help="Re-run this raw object (s3://bucket/raw/...) even if already handled."),
    ] = None,
) -> None:
    """Run the retrain flow once against the configured S3 and Prefect API."""
    settings = load_settings()
    exit_unless_ready(settings)  # in seconds, before a Prefect server starts
    run_and_print(settings, as_json, reprocess)
