"""Model registry in S3: versions, aliases moved by conditional writes, an audit log of events.

    models/<name>/versions/<version>/adapter/...   LoRA adapter + tokenizer (safetensors)
    models/<name>/versions/<version>/card.json     metrics, lineage, decision
    models/<name>/aliases/<alias>.json             {"version": ...}: champion, previous
    models/<name>/events/<timestamp>-<kind>.json   one object per promote / reject

An alias moves only with If-Match on the ETag read before the decision (If-None-Match when it
does not exist yet), so two runs can never both think they promoted.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import task
from pydantic import BaseModel

from tasks.base_model import resolve_base_model
from tasks.config import EvaluationSettings, Settings
from tasks.dataset import DatasetRef
from tasks.evaluate import GOLDEN, RECENT, Comparison, ModelRef
from tasks.s3 import (
    download_prefix,
    get_json,
    put_bytes_if,
    put_json,
    put_json_if,
    s3_client,
    upload_dir,
)
from tasks.train_local import TrainResult

CHAMPION = "champion"
PREVIOUS = "previous"


class Decision(BaseModel):
    promote: bool
    reasons: list[str]


class Champion(BaseModel):
    """The incumbent to beat, and the alias ETag a promotion must match."""

    model: ModelRef
    alias_etag: str | None


def model_prefix(settings: Settings) -> str:
    return f"{settings.s3.models_prefix}{settings.model_name}/"


def _regression(new: float, old: float) -> float:
    return (new - old) / old if old else 0.0


def decide(comparisons: dict[str, Comparison], policy: EvaluationSettings) -> Decision:
    """Promote only if the golden loss drops by the margin and no guardrail is broken.

    Guardrails: no golden category with enough examples, and not the recent held-out set, may
    be worse than the incumbent by more than `max_slice_regression`.
    """
    golden = comparisons[GOLDEN]
    new, old = golden.challenger.overall.loss, golden.incumbent.overall.loss
    change = -_regression(new, old)
    headline = (
        f"golden loss {old:.4f} → {new:.4f} "
        f"({change:+.1%} improvement, need ≥ {policy.min_improvement:.1%})"
    )
    blockers = []
    if change < policy.min_improvement:
        blockers.append(f"not enough improvement: {headline}")
    for name, after in golden.challenger.slices.items():
        before = golden.incumbent.slices.get(name)
        if before is None or after.examples < policy.slice_min_examples:
            continue
        if _regression(after.loss, before.loss) > policy.max_slice_regression:
            blockers.append(
                f"golden slice {name} regressed: loss {before.loss:.4f} → {after.loss:.4f}"
            )
    if RECENT in comparisons:
        recent = comparisons[RECENT]
        after, before = recent.challenger.overall.loss, recent.incumbent.overall.loss
        if _regression(after, before) > policy.max_slice_regression:
            blockers.append(f"recent held-out regressed: loss {before:.4f} → {after:.4f}")
    if blockers:
        return Decision(promote=False, reasons=blockers)
    return Decision(promote=True, reasons=[f"challenger wins: {headline}"])


def model_card(
    settings: Settings,
    version: str,
    run_id: str,
    dataset: DatasetRef,
    trained: TrainResult,
    comparisons: dict[str, Comparison],
    decision: Decision,
) -> dict[str, Any]:
    """What a version is and where it came from: enough to reproduce or audit it."""
    return {
        "name": settings.model_name,
        "version": version,
        "created_at": datetime.now(UTC).isoformat(),
        "base_model": trained.base_model,
        "format": "peft-lora-safetensors" if trained.method == "lora" else "safetensors",
        "training": {
            **settings.training.model_dump(),
            "steps": trained.steps,
            "train_loss": trained.train_loss,
            "seconds": trained.seconds,
            "device": trained.device,
            "examples_seen": trained.examples_seen,
            "fraction_seen": trained.fraction_seen,
            "best_val_loss": trained.best_val_loss,
            "truncated_examples": trained.truncated_examples,
            "stopped_by": trained.stopped_by,
            "init": trained.init,
            "trainer_args": trained.training_args,  # as JSON: no pickled training_args.bin
        },
        "lineage": {
            "run_id": run_id,
            "dataset_version": dataset.version,
            "dataset_prefix": dataset.prefix,
            "dataset_versions_trained": trained.dataset_versions,
        },
        "evaluation": {name: pair.model_dump() for name, pair in comparisons.items()},
        "decision": decision.model_dump(),
    }


@task(retries=2, retry_delay_seconds=5)
def current_champion(settings: Settings) -> Champion:
    """The champion model, downloaded to the cache; the base model when none exists yet."""
    s3 = settings.s3
    client = s3_client(s3)
    alias = get_json(client, s3.bucket, f"{model_prefix(settings)}aliases/{CHAMPION}.json")
    if alias.body is None:
        base_dir = resolve_base_model(settings.training.base_model, settings.cache_dir)
        return Champion(
            model=ModelRef(
                label=f"base ({settings.training.base_model})", base_model_dir=str(base_dir)
            ),
            alias_etag=None,
        )
    version = alias.body["version"]
    version_prefix = f"{model_prefix(settings)}versions/{version}/"
    card = get_json(client, s3.bucket, version_prefix + "card.json").body
    local = settings.cache_dir / "registry" / settings.model_name / version
    adapter_dir = download_prefix(client, s3.bucket, version_prefix + "adapter/", local)
    base_dir = resolve_base_model(card["base_model"], settings.cache_dir)
    return Champion(
        model=ModelRef(
            label=f"champion {version}",
            base_model_dir=str(base_dir),
            adapter_dir=str(adapter_dir),
            version=version,
        ),
        alias_etag=alias.etag,
    )


@task  # no retries: the card is created once (If-None-Match); boto3 retries transient errors
def register_version(
    settings: Settings, version: str, adapter_dir: str, card: dict[str, Any]
) -> str:
    """Upload the adapter and its card as a new, immutable version; returns its S3 prefix."""
    s3 = settings.s3
    client = s3_client(s3)
    prefix = f"{model_prefix(settings)}versions/{version}/"
    upload_dir(client, Path(adapter_dir), s3.bucket, prefix + "adapter/")
    put_json_if(client, s3.bucket, prefix + "card.json", card, expected_etag=None)
    readme = Path(adapter_dir) / "README.md"  # the Hugging Face model card, beside card.json
    if readme.is_file():
        put_bytes_if(client, s3.bucket, prefix + "README.md", readme.read_bytes(), None)
    return f"s3://{s3.bucket}/{prefix}"


def _write_event(client: Any, settings: Settings, kind: str, body: dict[str, Any]) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    key = f"{model_prefix(settings)}events/{stamp}-{kind}.json"
    put_json(client, settings.s3.bucket, key, {"kind": kind, "at": stamp, **body})
    return key


@task
def apply_decision(
    settings: Settings, version: str, decision: Decision, champion: Champion, run_id: str
) -> str:
    """Move the champion alias (conditionally) or record the rejection; returns the event key."""
    s3 = settings.s3
    client = s3_client(s3)
    event = {"version": version, "reasons": decision.reasons, "run_id": run_id}
    if not decision.promote:
        return _write_event(client, settings, "reject", event)
    aliases = f"{model_prefix(settings)}aliases/"
    now = datetime.now(UTC).isoformat()
    put_json_if(
        client,
        s3.bucket,
        aliases + f"{CHAMPION}.json",
        {"version": version, "updated_at": now, "run_id": run_id},
        expected_etag=champion.alias_etag,
    )
    if champion.model.version:
        put_json(
            client,
            s3.bucket,
            aliases + f"{PREVIOUS}.json",
            {"version": champion.model.version, "updated_at": now, "run_id": run_id},
        )
    return _write_event(client, settings, "promote", {**event, "replaced": champion.model.version})
