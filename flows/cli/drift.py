"""`retrain drift`: compare two batches of support logs, statistic by statistic.

    retrain drift --reference logs/october/ --current s3://bucket/raw/support-logs/dt=2026-11-22/
    retrain drift --reference a.jsonl.gz --current b.jsonl --json

`drift` exit codes: 0 no drift, 3 drift, 1 an error or too little data, 2 a usage error.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Annotated

import typer

from flows.cli.common import load_settings

EXIT_DRIFT = 3

SourceOption = Annotated[
    str,
    typer.Option(help="Local .jsonl/.jsonl.gz file, a folder of them, or s3://bucket/prefix."),
]


def text_table(statistics: list) -> str:
    rows = [("statistic", "value", "threshold", "p-value", "verdict")]
    rows += [
        (
            s.name,
            f"{s.value:.4g}",
            f"{s.threshold:.4g}",
            "" if s.p_value is None else f"{s.p_value:.3g}",
            "DRIFT" if s.drifted else "ok",
        )
        for s in statistics
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows
    )


def drift(
    reference: SourceOption,
    current: SourceOption,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    embeddings: Annotated[
        bool, typer.Option(help="Include the MiniLM domain-classifier statistics.")
    ] = True,
) -> None:
    """Compare two batches of support logs: each statistic, its threshold and the verdict."""
    import json

    from flows.reports.drift import shares_table
    from tasks.monitor.data_drift import compare_batches
    from tasks.monitor.sources import read_batch

    settings = load_settings()
    try:
        with contextlib.redirect_stdout(sys.stderr):  # stdout carries only the report
            batches = [read_batch(source, settings.s3) for source in (reference, current)]
            report = compare_batches(
                batches[0].records, batches[1].records, settings.drift, embeddings=embeddings
            )
    except Exception as error:  # bad path, unreadable S3 prefix: say what, exit 1
        typer.secho(f"retrain drift failed: {type(error).__name__}: {error}", err=True, fg="red")
        raise typer.Exit(1) from error
    if not report.enough_data:
        verdict = "not_enough_data"
    else:
        verdict = "drift" if report.drifted else "no_drift"
    rejected = {"reference": batches[0].rejected, "current": batches[1].rejected}
    if as_json:
        body = {"verdict": verdict, "rejected_lines": rejected, **report.model_dump()}
        typer.echo(json.dumps(body, indent=2))
    else:
        typer.echo(f"{verdict}: {report.message}")
        typer.echo(
            f"reference {report.reference_records} records, current {report.current_records} "
            f"(lines rejected by the log contract: {rejected['reference']}, {rejected['current']})"
        )
        if report.statistics:
            typer.echo("\n" + text_table(report.statistics))
            typer.echo("\n".join(shares_table(report.statistics)))
    raise typer.Exit({"drift": EXIT_DRIFT, "no_drift": 0}.get(verdict, 1))
