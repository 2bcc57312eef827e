"""`retrain preflight`: check chat-format fine-tuning files before anything is uploaded.

    retrain preflight train.jsonl --validation validation.jsonl --model gpt-4o-mini-2024-07-18
    retrain preflight train.jsonl --json          # machine-readable report

Exit 0 when the files are fit to upload, 1 when a blocking error is found or the estimated
cost exceeds `training.api.budget_usd`, 2 on a usage error (missing file, unpriced model).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from flows.cli.common import load_settings

ExistingFile = Annotated[
    Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="Training JSONL file.")
]


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8", errors="replace").splitlines()


def preflight(
    file: ExistingFile,
    validation: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, readable=True, help="Validation JSONL file."),
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Base model to fine-tune (default: training.api.model).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Pre-flight a fine-tuning file: format errors by line, tokens, epochs, cost, budget."""
    from tasks.train.api.preflight import preflight as run_checks
    from tasks.train.api.preflight import render

    api = load_settings(exit_code=2).training.api  # bad settings are a usage error
    try:
        report = run_checks(
            _lines(file), _lines(validation) if validation else None, api, model=model
        )
    except ValueError as error:  # e.g. no price for the model: a usage problem
        typer.secho(str(error), err=True, fg="red")
        raise typer.Exit(2) from error
    if as_json:
        typer.echo(json.dumps({**report.model_dump(), "fit": report.fit}, indent=2))
    else:
        typer.echo(render(report))
    raise typer.Exit(0 if report.fit else 1)
