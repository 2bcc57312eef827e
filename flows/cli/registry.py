"""`retrain registry ...` and `retrain evaluate`: registry operations and an evaluation that
decides nothing.

    retrain registry list                      # versions, status, aliases
    retrain registry show VERSION              # the version's card (metrics, gate, lineage)
    retrain registry history                   # the audit log: promote / reject / rollback
    retrain registry promote VERSION --reason "reviewed the replies"
    retrain registry rollback --reason "answers in German since v..."
    retrain evaluate --model VERSION|base [--against VERSION|base] [--json]

Alias moves go through tasks/promote/registry.py (conditional writes, audited); `evaluate` scores
both
models on the frozen golden set and prints the gate's verdict without promoting anything.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import sys
from typing import Annotated, Any

import typer

from tasks.config import Settings, apply_runtime_env

registry_app = typer.Typer(
    help="Inspect the model registry, promote a version by hand, or roll back.",
    no_args_is_help=True,
)

ReasonOption = Annotated[str, typer.Option(help="Why (recorded in the audit event).")]
ByOption = Annotated[str | None, typer.Option(help="Who (default: the current user).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]
BASE = "base"


def _settings() -> Settings:
    apply_runtime_env()
    return Settings()


def _fail(error: Exception) -> typer.Exit:
    typer.secho(f"{type(error).__name__}: {error}", err=True, fg="red")
    return typer.Exit(1)


def _who(by: str | None) -> str:
    return by or getpass.getuser()


@registry_app.command("list")
def list_command(as_json: JsonOption = False) -> None:
    """Every registered version, oldest first, with its status and aliases."""
    from tasks.promote.registry import list_versions

    rows = list_versions(_settings())
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


@registry_app.command()
def show(version: str) -> None:
    """A version's card as JSON: lineage, metrics per slice, the gate's decision, status."""
    from tasks.promote.registry import RegistryError, read_card
    from tasks.storage.s3 import s3_client

    settings = _settings()
    try:
        card = read_card(s3_client(settings.s3), settings, version).body
    except RegistryError as error:
        raise _fail(error) from error
    typer.echo(json.dumps(card, indent=2))


@registry_app.command("history")
def history_command(as_json: JsonOption = False) -> None:
    """The audit log, oldest first."""
    from tasks.promote.registry import history

    events = history(_settings())
    if as_json:
        typer.echo(json.dumps(events, indent=2))
        return
    for event in events:
        who = event.get("by") or event.get("run_id") or ""
        reasons = "; ".join(event.get("reasons") or [])
        typer.echo(f"{event['at']}  {event['kind']:<8} {event.get('version')}  {who}  {reasons}")


@registry_app.command()
def promote(version: str, reason: ReasonOption, by: ByOption = None) -> None:
    """Make VERSION the champion (the current one becomes `previous`)."""
    from tasks.promote.registry import RegistryError, promote_version

    try:
        result = promote_version(_settings(), version, reason, _who(by))
    except RegistryError as error:
        raise _fail(error) from error
    if not result.promoted:  # another promotion or a rollback moved the alias meanwhile
        typer.secho("; ".join(result.reasons), err=True, fg="red")
        raise typer.Exit(1)
    typer.echo(f"champion is now {result.champion} (audit: {result.event_key})")


@registry_app.command()
def rollback(reason: ReasonOption, by: ByOption = None) -> None:
    """Move `champion` back to `previous`, recording who and why."""
    from tasks.promote.registry import RegistryError, rollback
    from tasks.storage.s3 import ConcurrentUpdateError

    try:
        result = rollback(_settings(), reason, _who(by))
    except (RegistryError, ConcurrentUpdateError) as error:
        raise _fail(error) from error
    typer.echo(f"rolled back: champion is now {result.champion} (audit: {result.event_key})")


# ---- retrain evaluate ------------------------------------------------------------------------


def _model_ref(settings: Settings, name: str):
    from tasks.evaluate.aggregate import ModelRef
    from tasks.promote.registry import load_version
    from tasks.train.base_model import resolve_base_model

    if name == BASE:
        base = settings.training.base_model
        return ModelRef(
            label=f"base ({base})",
            base_model_dir=str(resolve_base_model(base, settings.cache_dir, settings.s3)),
            base_model=base,
        )
    return load_version(settings, name).model_copy(update={"label": f"version {name}"})


def evaluate_against(settings: Settings, model: str, against: str | None) -> dict[str, Any]:
    """Score `model` and `against` (default: the champion, else the base model) on the golden
    set and run the gate; promotes nothing."""
    from tasks.evaluate.aggregate import GOLDEN, compare, score_model
    from tasks.prepare.golden import golden_keys, load_golden
    from tasks.promote.policy import decide
    from tasks.promote.registry import CHAMPION, alias_version, read_alias
    from tasks.storage.s3 import s3_client

    client = s3_client(settings.s3)
    if load_golden(client, settings) is None:
        raise FileNotFoundError(
            "no golden set is frozen yet: run `retrain run` on enough logs to freeze one first"
        )
    against = against or alias_version(read_alias(client, settings, CHAMPION)) or BASE
    eval_sets = {GOLDEN: golden_keys(settings)[0]}
    comparisons = compare(
        score_model.fn(settings, _model_ref(settings, model), eval_sets),
        score_model.fn(settings, _model_ref(settings, against), eval_sets),
    )
    decision = decide(comparisons, settings.promotion, has_champion=against != BASE)
    pair = comparisons[GOLDEN]
    return {
        "model": model,
        "against": against,
        "golden_examples": pair.challenger.overall.examples,
        "metrics": {
            pair.challenger.model: pair.challenger.overall.model_dump(),
            pair.incumbent.model: pair.incumbent.overall.model_dump(),
        },
        "decision": decision.model_dump(),
    }


def render_evaluation(result: dict[str, Any]) -> str:
    metrics = ("loss", "token_accuracy", "rouge_l", "similarity", "new_pii_rate", "accuracy")
    lines = [
        f"golden set, {result['golden_examples']} examples: "
        f"{result['model']} vs {result['against']}",
        "",
        f"{'model':<40}" + "".join(f"{m:>16}" for m in metrics),
    ]
    for name, values in result["metrics"].items():
        cells = ("-" if values[m] is None else f"{values[m]:.4f}" for m in metrics)
        lines.append(f"{name[:40]:<40}" + "".join(f"{c:>16}" for c in cells))
    decision = result["decision"]
    verdict = "would promote" if decision["promote"] else "would NOT promote"
    lines += ["", f"gate ({decision['primary_metric']}): {verdict} (nothing was changed)"]
    lines += [
        f"  [{'pass' if c['passed'] else 'FAIL'}] {c['rule']}: {c['detail']}"
        for c in decision["checks"]
    ]
    return "\n".join(lines)


def evaluate(
    model: Annotated[str, typer.Option(help="A registered VERSION, or `base`.")],
    against: Annotated[
        str | None, typer.Option(help="VERSION or `base` (default: the champion, else base).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Score models on the golden set and print the comparison and the gate's verdict."""
    from tasks.promote.registry import RegistryError

    settings = _settings()
    try:
        with contextlib.redirect_stdout(sys.stderr):  # stdout carries only the result (--json)
            result = evaluate_against(settings, model, against)
    except (RegistryError, FileNotFoundError) as error:
        raise _fail(error) from error
    typer.echo(json.dumps(result, indent=2) if as_json else render_evaluation(result))
