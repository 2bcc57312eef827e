"""`retrain evaluate`: score two models on the frozen golden set and print the gate's verdict;
promotes nothing.

    retrain evaluate --model VERSION|base [--against VERSION|base] [--json]
"""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Annotated, Any

import typer

from flows.cli.common import JsonOption, fail, load_settings
from tasks.config import Settings

BASE = "base"


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

    settings = load_settings()
    try:
        with contextlib.redirect_stdout(sys.stderr):  # stdout carries only the result (--json)
            result = evaluate_against(settings, model, against)
    except (RegistryError, FileNotFoundError) as error:
        raise fail(error) from error
    typer.echo(json.dumps(result, indent=2) if as_json else render_evaluation(result))
