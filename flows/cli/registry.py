"""`retrain registry ...`: list, show and audit versions; promote or roll back by hand.

    retrain registry list                      # versions, status, aliases
    retrain registry show VERSION              # the version's card (metrics, gate, lineage)
    retrain registry history                   # the audit log: promote / reject / rollback
    retrain registry promote VERSION --reason "reviewed the replies"
    retrain registry rollback --reason "answers in German since v..."

Alias moves go through tasks/promote/registry.py (conditional writes, audited).
"""

from __future__ import annotations

import getpass
import json
from typing import Annotated

import typer

from flows.cli.common import JsonOption, fail, load_settings

app = typer.Typer(
    help="Inspect the model registry, promote a version by hand, or roll back.",
    no_args_is_help=True,
)

ReasonOption = Annotated[str, typer.Option(help="Why (recorded in the audit event).")]
ByOption = Annotated[str | None, typer.Option(help="Who (default: the current user).")]


def _who(by: str | None) -> str:
    return by or getpass.getuser()


@app.command("list")
def list_command(as_json: JsonOption = False) -> None:
    """Every registered version, oldest first, with its status and aliases."""
    from tasks.promote.registry import list_versions

    rows = list_versions(load_settings())
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo("no versions registered yet")
    for row in rows:
        aliases = f" [{', '.join(row['aliases'])}]" if row["aliases"] else ""
        typer.echo(
            f"{row['version']}  {row['status']:<11} {row['created_at']}  "
            f"data {row['dataset_version']}{aliases}"
        )


@app.command()
def show(version: str) -> None:
    """A version's card as JSON: lineage, metrics per slice, the gate's decision, status."""
    from tasks.promote.registry import RegistryError, read_card
    from tasks.storage.s3 import s3_client

    settings = load_settings()
    try:
        card = read_card(s3_client(settings.s3), settings, version).body
    except RegistryError as error:
        raise fail(error) from error
    typer.echo(json.dumps(card, indent=2))


@app.command("history")
def history_command(as_json: JsonOption = False) -> None:
    """The audit log, oldest first."""
    from tasks.promote.registry import history

    events = history(load_settings())
    if as_json:
        typer.echo(json.dumps(events, indent=2))
        return
    for event in events:
        who = event.get("by") or event.get("run_id") or ""
        reasons = "; ".join(event.get("reasons") or [])
        typer.echo(f"{event['at']}  {event['kind']:<8} {event.get('version')}  {who}  {reasons}")


@app.command()
def promote(version: str, reason: ReasonOption, by: ByOption = None) -> None:
    """Make VERSION the champion (the current one becomes `previous`)."""
    from tasks.promote.registry import RegistryError, promote_version

    try:
        result = promote_version(load_settings(), version, reason, _who(by))
    except RegistryError as error:
        raise fail(error) from error
    if not result.promoted:  # another promotion or a rollback moved the alias meanwhile
        typer.secho("; ".join(result.reasons), err=True, fg="red")
        raise typer.Exit(1)
    typer.echo(f"champion is now {result.champion} (audit: {result.event_key})")


@app.command()
def rollback(reason: ReasonOption, by: ByOption = None) -> None:
    """Move `champion` back to `previous`, recording who and why."""
    from tasks.promote.registry import RegistryError, rollback
    from tasks.storage.s3 import ConcurrentUpdateError

    try:
        result = rollback(load_settings(), reason, _who(by))
    except (RegistryError, ConcurrentUpdateError) as error:
        raise fail(error) from error
    typer.echo(f"rolled back: champion is now {result.champion} (audit: {result.event_key})")
