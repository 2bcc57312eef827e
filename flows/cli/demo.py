"""`retrain demo`: the whole job on this machine, on embedded defaults.

    retrain demo                    # local moto S3 + ephemeral Prefect + packaged SmolLM2
    retrain demo --json --state-dir /tmp/demo-s3

The bucket is restored from and saved to `--state-dir`, so a second demo finds no new logs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows.cli.common import JsonOption, load_settings
from flows.cli.run import run_and_print
from flows.cli.seed import seed_logs
from tasks.config import Settings


def demo(
    as_json: JsonOption = False,
    state_dir: Annotated[
        Path, typer.Option(help="Where the embedded S3 bucket is kept between demo runs.")
    ] = Path(".demo/s3"),
    days: Annotated[int, typer.Option(min=1, help="Days of sample logs to seed.")] = 7,
) -> None:
    """Run the whole job locally: S3 (moto server unless an endpoint is configured), sample
    logs, the retrain flow through Prefect (ephemeral unless PREFECT_API_URL is set)."""
    settings = load_settings()
    if settings.s3.endpoint_url:
        _seed_if_empty(settings, days)
        run_and_print(settings, as_json)
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
            run_and_print(settings, as_json)
        finally:
            saved = mirror_bucket(settings.s3, state_dir)
            typer.echo(f"saved {saved} objects to {state_dir} (delete it to start over)", err=True)


def _seed_if_empty(settings: Settings, days: int) -> None:
    from tasks.storage.s3 import ensure_bucket, list_objects, s3_client

    client = s3_client(settings.s3)
    ensure_bucket(client, settings.s3.bucket)
    if next(list_objects(client, settings.s3.bucket, settings.s3.raw_prefix), None) is None:
        keys = seed_logs(settings, None, days, None, None, bad_records=6)
        typer.echo(f"seeded {len(keys)} days of sample logs", err=True)
