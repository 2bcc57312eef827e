"""`retrain events`: the S3-notification → Prefect-event bridge as a long-running command.

    retrain events bridge --queue-url https://sqs.eu-west-1.amazonaws.com/123/support-logs

Point the bucket's `s3:ObjectCreated:*` notifications at an SQS queue (with a dead-letter
queue), run this next to a worker; each new support log under `raw/` becomes one
`support-logs.arrived` event on the Prefect API in PREFECT_API_URL.
"""

from __future__ import annotations

from typing import Annotated

import typer

from flows.cli.common import load_settings
from tasks.storage import layout

app = typer.Typer(help=__doc__.split("\n\n")[0], no_args_is_help=True)


@app.callback()
def events() -> None:
    """Keeps `bridge` a subcommand also when run as `python -m flows.cli.events`."""


@app.command()
def bridge(
    queue_url: Annotated[str, typer.Option(help="SQS queue that receives the S3 notifications.")],
    once: Annotated[bool, typer.Option(help="Handle one batch and exit (for cron).")] = False,
    wait_seconds: Annotated[
        int, typer.Option(min=0, max=20, help="SQS long-poll wait per receive.")
    ] = 10,
) -> None:
    """Forward S3 object-created notifications from SQS as `support-logs.arrived` events."""
    from tasks.ingest.notifications import drain_queue
    from tasks.storage.aws_session import aws_session

    s3 = load_settings().s3
    sqs = aws_session(s3).client("sqs", endpoint_url=s3.endpoint_url, region_name=s3.region)
    where = layout.raw_uri(s3)
    typer.echo(f"forwarding {where} notifications from {queue_url}")
    while True:
        posted = drain_queue(sqs, queue_url, s3, wait_seconds=wait_seconds)
        if posted:
            typer.echo(f"posted {posted} support-logs.arrived event(s)")
        if once:
            return


if __name__ == "__main__":
    app()
