"""`retrain check-data`: every data gate on a file, a folder or an S3 prefix, nothing written.

    retrain check-data logs.jsonl.gz --json
    retrain check-data s3://support-logs/raw/support-logs/2026-11-21/ --reference golden.jsonl

Exit 0 when nothing blocks, 1 when a `block` check fails, 2 on a usage error.
"""

from __future__ import annotations

from typing import Annotated

import typer

from flows.cli.common import load_settings


def check_data(
    source: Annotated[
        str, typer.Argument(help="JSONL/JSONL.gz file, folder, or s3://bucket/prefix.")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    reference: Annotated[
        str | None,
        typer.Option(
            help="Category mix to compare with: a golden set or support logs (path or s3://)."
        ),
    ] = None,
) -> None:
    """Run ingest parsing, redaction and every suite on a batch, without training."""
    from tasks.gates.check_data import UsageError
    from tasks.gates.check_data import check_data as run_checks

    settings = load_settings(exit_code=2)
    try:
        result = run_checks(source, settings, reference)
    except UsageError as error:
        typer.secho(f"check-data: {error}", err=True, fg="red")
        raise typer.Exit(2) from error
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
    else:
        for check in result.checks:
            mark = "ok  " if check.result != "fail" else check.severity.upper()
            typer.echo(f"{mark:6} {check.name:40} {check.observed}")
        typer.echo(
            f"\n{result.accepted} of {result.records_read} records checked; quarantined "
            f"{result.quarantine_reasons}; redacted {result.pii_redactions}; "
            f"verdict {result.verdict}"
        )
    raise typer.Exit(1 if result.blocked else 0)
