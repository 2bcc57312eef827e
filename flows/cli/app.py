"""The `retrain` command: seed sample logs, run one retrain, or the whole demo on this machine.

    retrain demo                    # local moto S3 + ephemeral Prefect + packaged SmolLM2
    retrain seed --days 7           # upload the bundled Bitext sample to the configured bucket
    retrain run --json              # one run against the configured S3 and Prefect API

Exit code 0 when the run completed, whatever it decided; 1 when it failed.
"""

from __future__ import annotations

import contextlib
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated

import typer

from flows.cli import drift as cli_monitor
from flows.cli.doctor import doctor, exit_unless_ready
from flows.cli.events import events_app
from flows.cli.registry import evaluate, registry_app
from tasks.config import Settings, apply_runtime_env

app = typer.Typer(help=__doc__.split("\n\n")[0], no_args_is_help=True, add_completion=False)
app.add_typer(registry_app, name="registry")
app.command()(evaluate)
app.command()(cli_monitor.drift)  # drift monitor commands: flows/cli/drift.py
app.command()(cli_monitor.monitor)
app.add_typer(events_app, name="events")  # flows/cli/events.py: the S3 → Prefect event bridge
app.command()(doctor)  # start-up checks: flows/cli/doctor.py

JsonOption = Annotated[bool, typer.Option("--json", help="Print the run summary as JSON.")]


def _run_and_print(settings: Settings, as_json: bool, reprocess: list[str] | None = None) -> None:
    from flows.reports.stages import render
    from flows.retrain import retrain
    from flows.run_guard import one_run_per_model

    started = time.perf_counter()
    try:
        # stdout carries only the summary (so `--json` output parses); anything a library
        # prints during the run goes to stderr with the logs.
        with (
            contextlib.redirect_stdout(sys.stderr),
            # one retrain of a model at a time, shared with the deployments: flows/run_guard.py
            one_run_per_model(settings.model_name, lambda line: typer.echo(line, err=True)),
        ):
            summary = retrain(settings=settings, reprocess=reprocess)
    except Exception as error:  # report and exit non-zero; Prefect has already marked it Failed
        typer.secho(f"retrain run failed: {type(error).__name__}: {error}", err=True, fg="red")
        raise typer.Exit(1) from error
    if as_json:
        typer.echo(summary.model_dump_json(indent=2))
    else:
        typer.echo(render(summary))
        typer.echo(f"\nfinished in {time.perf_counter() - started:.0f} s")


def _seed(
    settings: Settings,
    csv: Path | None,
    days: int,
    end_date: date | None,
    limit: int | None,
    bad_records: int,
) -> list[str]:
    from tasks.ingest.sample_data import build_daily_logs, bundled_csv, upload_daily_logs

    per_day = build_daily_logs(
        csv or bundled_csv(), days=days, end_date=end_date or datetime.now(UTC).date(), limit=limit
    )
    return upload_daily_logs(settings.s3, per_day, bad_records=bad_records)


@app.command()
def seed(
    csv: Annotated[
        Path | None, typer.Option(help="Bitext-format CSV; default: the bundled sample.")
    ] = None,
    days: Annotated[int, typer.Option(min=1, help="Spread the rows over this many days.")] = 7,
    end_date: Annotated[
        datetime | None, typer.Option(formats=["%Y-%m-%d"], help="Last day (default: today).")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Use only this many rows.")] = None,
    bad_records: Annotated[
        int, typer.Option(min=0, help="Mix this many contract-breaking lines into the first day.")
    ] = 0,
) -> None:
    """Upload sample support logs to the configured bucket, one gzipped JSONL object per day."""
    settings = Settings()
    keys = _seed(settings, csv, days, end_date.date() if end_date else None, limit, bad_records)
    for key in keys:
        typer.echo(f"s3://{settings.s3.bucket}/{key}")


@app.command()
def run(
    as_json: JsonOption = False,
    reprocess: Annotated[
        list[str] | None,
        typer.Option(help="Re-run this raw object (s3://bucket/raw/...) even if already handled."),
    ] = None,
) -> None:
    """Run the retrain flow once against the configured S3 and Prefect API."""
    apply_runtime_env()
    settings = Settings()
    exit_unless_ready(settings)  # in seconds, before a Prefect server starts
    _run_and_print(settings, as_json, reprocess)


@app.command()
def demo(
    as_json: JsonOption = False,
    state_dir: Annotated[
        Path, typer.Option(help="Where the embedded S3 bucket is kept between demo runs.")
    ] = Path(".demo/s3"),
    days: Annotated[int, typer.Option(min=1, help="Days of sample logs to seed.")] = 7,
) -> None:
    """Run the whole job locally: S3 (moto server unless an endpoint is configured), sample
    logs, the retrain flow through Prefect (ephemeral unless PREFECT_API_URL is set)."""
    apply_runtime_env()
    settings = Settings()
    if settings.s3.endpoint_url:
        _seed_if_empty(settings, days)
        _run_and_print(settings, as_json)
        return

    from tasks.storage.local_server import mirror_bucket, moto_server, restore_bucket

    with moto_server() as endpoint:
        settings = settings.model_copy(
            update={"s3": settings.s3.model_copy(update={"endpoint_url": endpoint})}
        )
        restored = restore_bucket(settings.s3, state_dir)
        typer.echo(
            f"local S3 at {endpoint}; restored {restored} objects from {state_dir}", err=True
        )
        _seed_if_empty(settings, days)
        try:
            _run_and_print(settings, as_json)
        finally:
            saved = mirror_bucket(settings.s3, state_dir)
            typer.echo(f"saved {saved} objects to {state_dir} (delete it to start over)", err=True)


def _seed_if_empty(settings: Settings, days: int) -> None:
    from tasks.storage.s3 import ensure_bucket, list_objects, s3_client

    client = s3_client(settings.s3)
    ensure_bucket(client, settings.s3.bucket)
    if next(list_objects(client, settings.s3.bucket, settings.s3.raw_prefix), None) is None:
        keys = _seed(settings, None, days, None, None, bad_records=6)
        typer.echo(f"seeded {len(keys)} days of sample logs", err=True)


from flows.cli.check_data import check_data  # noqa: E402 - registered last, in its own module

app.command("check-data")(check_data)

from flows.cli.preflight import preflight  # noqa: E402 - `retrain preflight`

app.command()(preflight)
