"""`retrain seed`: upload the bundled Bitext sample (or a Bitext-format CSV) as daily logs.

retrain seed --days 7 --bad-records 6
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated

import typer

from flows.cli.common import load_settings
from tasks.config import Settings
from tasks.storage import layout


def seed_logs(
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
    settings = load_settings()
    keys = seed_logs(settings, csv, days, end_date.date() if end_date else None, limit, bad_records)
    for key in keys:
        typer.echo(layout.uri(settings.s3, key))
